//! A static HTTP file server over a folder (Python's `http.server`, extended): files by path,
//! range requests with an `ETag`, `/cut/<path>` sending half of a file then hanging up,
//! `/redirect/<path>` answering 302 to `/<path>`, `/status/<code>` answering that status, and,
//! when started with a user and password, 401 to any request without them (Basic) or the
//! bearer token given.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{free_port, python, wait_listening, Reaped};

const SERVER: &str = r#"
import base64, functools, http.server, os, sys
root, port, user, password, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def allowed(self):
        if not user and not token:
            return True
        got = self.headers.get("Authorization", "")
        if token and got == "Bearer " + token:
            return True
        if user and got == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode():
            return True
        return False
    def do_GET(self):
        if not self.allowed():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="files"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "/" + self.path[len("/redirect/"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/cut/") or self.headers.get("Range"):
            # Range requests with an ETag; /cut/<path> sends half the body, then hangs up.
            cut = self.path.startswith("/cut/")
            rel = self.path[len("/cut/"):] if cut else self.path.lstrip("/")
            data = open(os.path.join(root, rel), "rb").read()
            etag = '"%d-%d"' % (len(data), int(os.path.getmtime(os.path.join(root, rel))))
            rng = self.headers.get("Range")
            if rng:
                start, _, end = rng.split("=", 1)[1].partition("-")
                start = int(start)
                end = int(end) if end else len(data) - 1
                body = data[start:end + 1]
                self.send_response(206)
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, start + len(body) - 1, len(data)))
            else:
                body = data
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            if cut and not rng:
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(body)
            return
        if self.path.startswith("/status/"):
            code = int(self.path[len("/status/"):].split("/")[0])
            body = b"status page"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()
    do_HEAD = do_GET
handler = functools.partial(Handler, directory=root)
http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
"#;

/// Files of a folder served over HTTP on a free loopback port, stopped when dropped.
pub struct HttpFiles {
    _child: Reaped,
    address: String,
    root: PathBuf,
}

impl HttpFiles {
    /// Serves `root` to anyone.
    pub fn start(root: &Path) -> HttpFiles {
        Self::start_with(root, "", "", "")
    }

    /// Serves `root` only to requests with Basic `user:password` (when `user` is not empty)
    /// or `Bearer token` (when `token` is not empty).
    pub fn start_with(root: &Path, user: &str, password: &str, token: &str) -> HttpFiles {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let python = python();
        let child = Command::new(&python)
            .arg("-c")
            .arg(SERVER)
            .arg(root)
            .arg(port.to_string())
            .args([user, password, token])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} for the HTTP file server: {e}"));
        let mut child = Reaped(child);
        wait_listening(&mut child.0, &address, "the HTTP file server");
        HttpFiles {
            _child: child,
            address,
            root: root.to_path_buf(),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The folder served.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

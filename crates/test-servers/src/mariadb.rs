//! A private MariaDB server: `mariadb-install-db` into a temporary folder, `mariadbd` on a
//! free loopback port with its socket in that folder, a database and a user with a password.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::postgres::{is_root, temp_dir};
use crate::{free_port, wait_listening, Reaped};

const MISSING: &str =
    "MariaDB is missing: apt-get install mariadb-server (scripts/setup installs it)";

/// A MariaDB server of its own on a free loopback port, stopped and removed when dropped.
/// The test user connects over TCP with a password; `root` over the server's socket
/// without one ([`MariaDbServer::sql`]). Packets up to 256 MiB are allowed (a 64 MiB
/// record fits). Run as root, the server runs as the `mysql` user.
pub struct MariaDbServer {
    child: Option<Reaped>,
    dir: PathBuf,
    port: u16,
}

impl MariaDbServer {
    /// The user tests connect as.
    pub const USER: &'static str = "tester";
    /// Its password.
    pub const PASSWORD: &'static str = "tester-secret-2";
    /// The database it may use.
    pub const DATABASE: &'static str = "testdb";

    pub fn start() -> MariaDbServer {
        let install = program("mariadb-install-db");
        let server = program("mariadbd");
        let run_as = is_root().then_some("mysql");
        let dir = temp_dir(run_as, "mariadb-test");
        let data = dir.join("data");
        let mut cmd = Command::new(&install);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]);
        if let Some(user) = run_as {
            cmd.arg(format!("--user={user}"));
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}. {MISSING}", install.display()));
        let mut me = MariaDbServer {
            child: None,
            dir,
            port: 0,
        };
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        me.port = free_port();
        let mut cmd = Command::new(&server);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", me.socket().display()))
            .arg(format!(
                "--pid-file={}",
                me.dir.join("mariadbd.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                me.dir.join("error.log").display()
            ))
            .arg(format!("--port={}", me.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--max-allowed-packet=256M",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
                "--max-connections=60",
            ]);
        if let Some(user) = run_as {
            cmd.arg(format!("--user={user}"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}. {MISSING}", server.display()));
        let address = me.address();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_listening(&mut child, &address, "mariadbd")
        }))
        .is_err()
        {
            let log = std::fs::read_to_string(me.dir.join("error.log")).unwrap_or_default();
            drop(Reaped(child));
            panic!("mariadbd did not start:\n{log}");
        }
        me.child = Some(Reaped(child));
        me.sql_db(
            "mysql",
            &format!(
                "CREATE DATABASE {db}; CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'; \
                 GRANT ALL ON {db}.* TO '{user}'@'%';",
                db = Self::DATABASE,
                user = Self::USER,
                pw = Self::PASSWORD
            ),
        );
        me
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `mysql://tester:PASSWORD@127.0.0.1:PORT/testdb`.
    pub fn url(&self) -> String {
        format!(
            "mysql://{}:{}@127.0.0.1:{}/{}",
            Self::USER,
            Self::PASSWORD,
            self.port,
            Self::DATABASE
        )
    }

    /// `jdbc:mariadb://127.0.0.1:PORT/testdb?user=tester&password=PASSWORD`.
    pub fn jdbc_url(&self) -> String {
        format!(
            "jdbc:mariadb://127.0.0.1:{}/{}?user={}&password={}",
            self.port,
            Self::DATABASE,
            Self::USER,
            Self::PASSWORD
        )
    }

    /// Runs `sql` (statements separated by `;`) in the test database as `root` and returns
    /// what it printed: rows one per line, columns separated by tabs. Panics on an error,
    /// with the server's message.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_db(Self::DATABASE, sql)
    }

    fn sql_db(&self, db: &str, sql: &str) -> String {
        let client = program("mariadb");
        let out = Command::new(&client)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "-D", db, "-N", "-B", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}. {MISSING}", client.display()));
        if !out.status.success() {
            panic!(
                "mariadb failed on {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mariadbd.sock")
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        drop(self.child.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A MariaDB program, found where Debian installs it.
fn program(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    panic!("no {name} in /usr/sbin or /usr/bin. {MISSING}");
}

//! A private PostgreSQL cluster: `initdb` into a temporary folder, the server on a free
//! loopback port with its socket in that folder, a database and a user with a password.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::free_port;

const MISSING: &str =
    "PostgreSQL is missing: apt-get install postgresql (scripts/setup installs it)";

/// A PostgreSQL cluster of its own on a free loopback port, stopped and removed when
/// dropped. Connections over TCP need a password (SCRAM); the superuser `postgres` connects
/// over the cluster's socket without one ([`PostgresServer::psql`]). Run as root, the
/// cluster runs as the `postgres` user (the server refuses root).
pub struct PostgresServer {
    bin: PathBuf,
    /// The temporary folder: the cluster in `data/`, the socket, the log.
    dir: PathBuf,
    port: u16,
    /// `Some("postgres")` when the tests run as root.
    run_as: Option<&'static str>,
}

impl PostgresServer {
    /// The user tests connect as.
    pub const USER: &'static str = "tester";
    /// Its password.
    pub const PASSWORD: &'static str = "tester-secret-1";
    /// The database it owns.
    pub const DATABASE: &'static str = "testdb";

    pub fn start() -> PostgresServer {
        let bin = binaries();
        let run_as = is_root().then_some("postgres");
        let dir = temp_dir(run_as, "pg-test");
        let mut server = PostgresServer {
            bin,
            dir,
            port: 0,
            run_as,
        };
        let pwfile = server.dir.join("superuser-password");
        server.run_ok(
            "sh",
            &["-c", &format!("echo postgres-pw > {}", pwfile.display())],
        );
        let data = server.dir.join("data");
        let initdb = server.bin.join("initdb");
        server.run_ok(
            &initdb.display().to_string(),
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                "postgres",
                "--pwfile",
                &pwfile.display().to_string(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        );
        // A free port can be taken between the look and the start: try a few.
        for attempt in 0..5 {
            server.port = free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=50",
                server.port,
                server.dir.display()
            );
            let pg_ctl = server.bin.join("pg_ctl").display().to_string();
            let log = server.dir.join("server.log").display().to_string();
            let out = server.run(
                &pg_ctl,
                &[
                    "-D",
                    &data.display().to_string(),
                    "-l",
                    &log,
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            if out.status.success() {
                break;
            }
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            if attempt == 4 || !log.contains("could not") {
                panic!(
                    "PostgreSQL did not start: {}{}\n{log}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        server.psql_db(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD '{}'",
                Self::USER,
                Self::PASSWORD
            ),
        );
        server.psql_db(
            "postgres",
            &format!("CREATE DATABASE {} OWNER {}", Self::DATABASE, Self::USER),
        );
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `postgresql://tester:PASSWORD@127.0.0.1:PORT/testdb`.
    pub fn url(&self) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/{}",
            Self::USER,
            Self::PASSWORD,
            self.port,
            Self::DATABASE
        )
    }

    /// `jdbc:postgresql://127.0.0.1:PORT/testdb?user=tester&password=PASSWORD`, as ModelOp
    /// sends them.
    pub fn jdbc_url(&self) -> String {
        format!(
            "jdbc:postgresql://127.0.0.1:{}/{}?user={}&password={}",
            self.port,
            Self::DATABASE,
            Self::USER,
            Self::PASSWORD
        )
    }

    /// Runs `sql` in the test database as the superuser (each statement in its own
    /// transaction, stopping at the first error) and returns what it printed: rows one per
    /// line, columns separated by `|`. Panics on an error, with the server's message.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db(Self::DATABASE, sql)
    }

    /// [`PostgresServer::psql`] in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        let psql = self.bin.join("psql").display().to_string();
        let host = self.dir.display().to_string();
        let port = self.port.to_string();
        let out = self.run(
            &psql,
            &[
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                db,
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        );
        if !out.status.success() {
            panic!(
                "psql failed on {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a database owned by the test user, in `encoding` (`SQL_ASCII` holds bytes
    /// that are not UTF-8, as old databases do).
    pub fn create_database(&self, name: &str, encoding: &str) {
        self.psql_db(
            "postgres",
            &format!(
                "CREATE DATABASE {name} OWNER {} ENCODING '{encoding}' TEMPLATE template0 \
                 LC_COLLATE 'C' LC_CTYPE 'C'",
                Self::USER
            ),
        );
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}. {MISSING}"))
    }

    fn run_ok(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        if !out.status.success() {
            panic!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if self.port != 0 {
            let pg_ctl = self.bin.join("pg_ctl").display().to_string();
            let _ = self
                .command(
                    &pg_ctl,
                    &[
                        "-D",
                        &data.display().to_string(),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ],
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest PostgreSQL's programs, where Debian installs them.
fn binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!("no /usr/lib/postgresql/*/bin/initdb. {MISSING}"),
    }
}

/// Whether this process runs as root, which database servers refuse to run as.
pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A fresh folder under the system's temporary folder, owned by `user` when given (made by
/// that user, so that its server can write there).
pub(crate) fn temp_dir(user: Option<&str>, prefix: &str) -> PathBuf {
    let template = std::env::temp_dir().join(format!("{prefix}.XXXXXXXX"));
    let template = template.display().to_string();
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "mktemp", "-d", &template]);
            c
        }
        None => {
            let mut c = Command::new("mktemp");
            c.args(["-d", &template]);
            c
        }
    };
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run mktemp: {e}"));
    assert!(
        out.status.success(),
        "mktemp -d {template}{}: {}",
        user.map(|u| format!(" as {u}")).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(Path::new(&dir).is_dir(), "mktemp made no folder: {dir:?}");
    dir
}

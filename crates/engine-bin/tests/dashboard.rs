//! The dashboard in a real browser: the engine with a token and a deployed model, and
//! `tests/browser/dashboard.mjs` driving Chromium through it with playwright-core (login,
//! the model and its libraries, jobs to their end, load on the charts, cancel, a failed
//! job's traceback, re-run, tags, a path prefix, undeploy). Needs node, Chromium and
//! `tests/browser/node_modules` (scripts/setup installs them).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo_root, Engine, ENGINE};
use engine_client::{Client, ClientOptions, Token};
use serde_json::{json, Value};

const TOKEN: &str = "dashboard-token-0123456789abcdef";

/// How long the browser script may take before it is stopped (it takes well under a
/// minute; this only keeps a hung browser from hanging the test run).
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium is not at {}: run scripts/setup (it installs Debian's chromium), or set \
         CHROMIUM to a Chromium or Chrome executable",
        path.display()
    );
    path
}

fn browser_dir() -> PathBuf {
    let dir = repo_root().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run scripts/setup (or `npm ci` there)",
        dir.display()
    );
    dir
}

/// Where the script's screenshots go: under the cargo target folder, the one the engine
/// binary was built into.
fn artifacts() -> PathBuf {
    let target = Path::new(ENGINE)
        .parent()
        .and_then(Path::parent)
        .expect("the engine binary lies in the target folder");
    let dir = target.join("artifacts/dashboard");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn client(e: &Engine) -> Client {
    Client::with_options(
        &e.url,
        &ClientOptions {
            token: Some(Token::new(TOKEN).unwrap()),
            ..Default::default()
        },
    )
    .unwrap()
}

fn deployment_document() -> Value {
    let dir = repo_root().join("tests/models/dashboard_scorer");
    let file = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    json!({
        "name": "fraud-scorer",
        "deployableModel": {"storedModel": {"modelAssets": [
            {"name": "model.py", "assetType": "SOURCE_CODE", "assetRole": "MODEL_SOURCE",
             "primaryModelSource": true, "sourceCode": file("model.py")},
            {"name": "transaction.avsc", "assetType": "FILE",
             "fileContentString": file("transaction.avsc")},
            {"name": "scored_transaction.avsc", "assetType": "FILE",
             "fileContentString": file("scored_transaction.avsc")},
        ]}},
    })
}

/// Runs `node dashboard.mjs` to its end (or the deadline), its output collected.
fn run_script(dir: &Path, env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = Command::new("node");
    cmd.arg("dashboard.mjs")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("node does not start ({e}): install Node.js 20 or later"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    (status, text)
}

#[test]
fn the_dashboard_shows_the_engine_and_drives_it_in_a_browser() {
    let chromium = chromium();
    let browser = browser_dir();
    let artifacts = artifacts();
    eprintln!("dashboard screenshots: {}", artifacts.display());

    let data = tempfile::tempdir().unwrap();
    let e = Engine::start(
        data.path(),
        &[],
        &[
            ("ENGINE_TOKEN", TOKEN),
            ("ENGINE_NAME", "fraud-engine-1"),
            ("ENGINE_GROUP", "payments"),
            ("ENGINE_TAGS", "DEV, cc-fraud"),
            // Small batches: a job's progress moves in visible steps.
            ("ENGINE_JOB_BATCH_SIZE", "10"),
        ],
    );
    let c = client(&e);
    let doc = deployment_document().to_string();
    let a = c
        .put("/api/deployment", "application/json", doc.as_bytes())
        .unwrap();
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    // Outputs first: a REST stream's records go to slot 1, which writes them nowhere.
    for (slot, descriptor) in [(1, "discard:"), (0, "rest:")] {
        let a = c
            .put(
                &format!("/2/active/stream/{slot}"),
                "text/plain",
                descriptor.as_bytes(),
            )
            .unwrap();
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    }

    let models = repo_root().join("tests/models");
    let started = Instant::now();
    let (code, output) = run_script(
        &browser,
        &[
            ("ENGINE_URL", e.url.clone()),
            ("ENGINE_TOKEN", TOKEN.to_owned()),
            ("ARTIFACTS", artifacts.display().to_string()),
            ("CHROMIUM", chromium.display().to_string()),
            (
                "SLOW_MODEL",
                models.join("slow-progress/model.py").display().to_string(),
            ),
            (
                "BROKEN_MODEL",
                models.join("init_fails.py").display().to_string(),
            ),
        ],
    );
    eprintln!("{output}");
    eprintln!(
        "the browser script took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        code,
        Some(0),
        "the browser script failed (screenshots in {}):\n{output}",
        artifacts.display()
    );
}

//! The installers (uv, or venv + pip), the base interpreter's self-description, and running
//! a tool with its output streamed into the job's log.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

use runtime_core::{JobLog, LogSource};

use crate::error::{Error, Result};

/// Which installer builds environments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tool {
    /// uv when it is installed (as the base Python's `uv` module or on PATH), else venv + pip.
    #[default]
    Auto,
    /// uv only; an error when it is not installed.
    Uv,
    /// `python -m venv` + pip only.
    Pip,
}

/// The installer that built an environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolUsed {
    Uv,
    Pip,
}

impl ToolUsed {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolUsed::Uv => "uv",
            ToolUsed::Pip => "pip",
        }
    }
}

/// The installer chosen for this cache, with what it needs to run.
#[derive(Clone, Debug)]
pub(crate) enum Installer {
    Uv { program: PathBuf },
    Pip { base_has_pip: bool },
}

impl Installer {
    pub(crate) fn used(&self) -> ToolUsed {
        match self {
            Installer::Uv { .. } => ToolUsed::Uv,
            Installer::Pip { .. } => ToolUsed::Pip,
        }
    }
}

/// What the base interpreter says about itself.
#[derive(Clone, Debug)]
pub(crate) struct Interpreter {
    /// `X.Y.Z`.
    pub version: String,
    /// `X.Y`, as in `lib/pythonX.Y/site-packages`.
    pub minor: String,
    /// `sysconfig.get_platform()` plus the implementation's cache tag and ABI flags.
    pub platform: String,
}

// `-S`: without `site` the interpreter starts in a third of the time, and the answer does
// not depend on it.
const PROBE: &str = r#"
import sys, sysconfig
v = sys.version_info
print("%d.%d.%d" % (v[0], v[1], v[2]))
print("%d.%d" % (v[0], v[1]))
print(sysconfig.get_platform() + "-" + sys.implementation.cache_tag + getattr(sys, "abiflags", ""))
"#;

// With `site`: whether the base has the `uv` package (its binary) and pip.
const TOOLS_PROBE: &str = r#"
try:
    import uv
    print(uv.find_uv_bin())
except Exception:
    print("")
try:
    import pip
    print("pip")
except Exception:
    print("")
"#;

fn ask(python: &Path, extra_env: &[(String, String)], args: &[&str]) -> Result<Vec<String>> {
    let fail = |message: String| Error::Interpreter {
        python: python.to_owned(),
        message,
    };
    let output = command(python.as_os_str(), extra_env, false)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !output.status.success() {
        return Err(fail(format!(
            "{}: {}",
            describe_status(output.status),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .collect())
}

pub(crate) fn probe(python: &Path, extra_env: &[(String, String)]) -> Result<Interpreter> {
    let lines = ask(python, extra_env, &["-S", "-c", PROBE])?;
    match lines.as_slice() {
        [version, minor, platform, ..] => Ok(Interpreter {
            version: version.clone(),
            minor: minor.clone(),
            platform: platform.clone(),
        }),
        _ => Err(Error::Interpreter {
            python: python.to_owned(),
            message: format!("unexpected answer {lines:?}"),
        }),
    }
}

/// Picks the installer: uv when asked for or found, else venv + pip.
pub(crate) fn choose(
    tool: Tool,
    python: &Path,
    extra_env: &[(String, String)],
) -> Result<Installer> {
    let lines = ask(python, extra_env, &["-c", TOOLS_PROBE])?;
    let uv_module = lines
        .first()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let pip = Installer::Pip {
        base_has_pip: lines.get(1).is_some_and(|l| l == "pip"),
    };
    if tool == Tool::Pip {
        return Ok(pip);
    }
    if let Some(program) = uv_module {
        return Ok(Installer::Uv { program });
    }
    // Let the OS search PATH (the engine's, or one given in extra_env).
    let on_path = command("uv".as_ref(), extra_env, true)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if on_path {
        return Ok(Installer::Uv {
            program: PathBuf::from("uv"),
        });
    }
    match tool {
        Tool::Uv => Err(Error::ToolMissing(
            "the engine is configured to build model environments with uv, but uv is \
             neither a package of the engine's Python nor on PATH (pip install uv)"
                .to_owned(),
        )),
        _ => Ok(pip),
    }
}

/// Variables of the engine's own environment that would send an install somewhere else
/// than the environment being built.
const SCRUBBED: &[&str] = &[
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PIP_USER",
    "PIP_TARGET",
    "PIP_PREFIX",
    "PIP_ROOT",
    "PIP_REQUIRE_VIRTUALENV",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "UV_SYSTEM_PYTHON",
    "UV_PYTHON",
    "UV_PROJECT_ENVIRONMENT",
];

/// pip's settings that uv spells differently: (pip, uv, separator uv expects instead of
/// pip's spaces, if another).
const PIP_TO_UV: &[(&str, &str, Option<&str>)] = &[
    ("PIP_INDEX_URL", "UV_INDEX_URL", None),
    ("PIP_EXTRA_INDEX_URL", "UV_EXTRA_INDEX_URL", None),
    ("PIP_FIND_LINKS", "UV_FIND_LINKS", Some(",")),
    ("PIP_TRUSTED_HOST", "UV_INSECURE_HOST", None),
    ("PIP_NO_INDEX", "UV_NO_INDEX", None),
    ("PIP_CERT", "SSL_CERT_FILE", None),
    ("PIP_CLIENT_CERT", "SSL_CLIENT_CERT", None),
    ("PIP_DEFAULT_TIMEOUT", "UV_HTTP_TIMEOUT", None),
];

/// A command with the engine's environment minus what would misdirect an install, plus
/// `extra_env` (and, for uv, pip's index settings under uv's names unless given as such).
pub(crate) fn command(
    program: &std::ffi::OsStr,
    extra_env: &[(String, String)],
    uv: bool,
) -> Command {
    let mut cmd = Command::new(program);
    for key in SCRUBBED {
        cmd.env_remove(key);
    }
    if uv {
        let given = |k: &str| extra_env.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        for (pip_key, uv_key, separator) in PIP_TO_UV {
            if given(uv_key).is_some() {
                continue;
            }
            if let Some(value) = given(pip_key) {
                let value = match separator {
                    Some(sep) => value.split_whitespace().collect::<Vec<_>>().join(sep),
                    None => value.clone(),
                };
                cmd.env(uv_key, value);
            }
        }
    }
    for (key, value) in extra_env {
        cmd.env(key, value);
    }
    cmd
}

/// How often a running tool is checked for a stop.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How many of a tool's last lines an error carries.
const TAIL_LINES: usize = 20;

/// Runs one step of a build, each output line going to the job's log as it comes, prefixed
/// with `prefix`. A failure carries the tool's decisive lines (`error:`, `cause:`, `×`,
/// `hint:`...), else its last stderr lines (stdout's if it wrote nothing on stderr).
pub(crate) fn run(
    mut cmd: Command,
    step: &str,
    prefix: &str,
    log: &dyn JobLog,
    timeout: Duration,
    stopping: &AtomicBool,
) -> Result<()> {
    tracing::debug!(step, command = ?cmd, "environment build step");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout or a stop ends the tool's children too.
        .process_group(0);
    // Safety: prctl is async-signal-safe and touches no memory of ours. The thread that
    // spawns the tool waits for it, so the signal comes only when the engine dies.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("cannot start {step}"), e))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out_tail = Mutex::new(Tail::default());
    let err_tail = Mutex::new(Tail::default());
    let timed_out = AtomicBool::new(false);
    let stopped = AtomicBool::new(false);
    let pid = child.id() as libc::pid_t;
    let (done_tx, done_rx) = mpsc::channel::<()>();

    let status = thread::scope(|s| {
        let readers = [
            stdout.map(|r| s.spawn(|| forward(r, prefix, log, &out_tail))),
            stderr.map(|r| s.spawn(|| forward(r, prefix, log, &err_tail))),
        ];
        let (timed_out, stopped) = (&timed_out, &stopped);
        s.spawn(move || {
            let started = std::time::Instant::now();
            loop {
                let left = timeout.saturating_sub(started.elapsed());
                match done_rx.recv_timeout(left.min(STOP_POLL)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let why = if stopping.load(Ordering::SeqCst) {
                    stopped
                } else if started.elapsed() >= timeout {
                    timed_out
                } else {
                    continue;
                };
                why.store(true, Ordering::SeqCst);
                // Safety: signals the process group this function created; no memory involved.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
                return;
            }
        });
        let status = child.wait();
        // The readers end when the pipes close; the watchdog still covers a descendant
        // that keeps them open.
        for reader in readers.into_iter().flatten() {
            let _ = reader.join();
        }
        let _ = done_tx.send(());
        status
    });
    let status = status.map_err(|e| Error::io(format!("cannot wait for {step}"), e))?;
    if stopped.load(Ordering::SeqCst) {
        log.warn(
            LogSource::Engine,
            format!("{step} was stopped: the engine is shutting down"),
        );
        return Err(Error::Stopped {
            step: step.to_owned(),
        });
    }
    if timed_out.load(Ordering::SeqCst) {
        return Err(Error::Timeout {
            step: step.to_owned(),
            timeout,
        });
    }
    if status.success() {
        return Ok(());
    }
    let take = |tail: Mutex<Tail>| -> Tail { tail.into_inner().unwrap_or_else(|p| p.into_inner()) };
    let (err_tail, out_tail) = (take(err_tail), take(out_tail));
    // The tool's own verdict (the unsatisfiable pin, the missing wheel) rather than the
    // last lines of a compiler's output.
    let exception = err_tail.exception.clone().or(out_tail.exception.clone());
    let mut lines = err_tail.decisive;
    if lines.is_empty() {
        lines = out_tail.decisive;
    }
    if !lines.is_empty() {
        // A source build's own last error says more than "the build backend returned an
        // error"; and such a build means no wheel matched this Python.
        if let Some(exception) = exception {
            lines.push(format!("the build's last error: {exception}"));
        }
        if lines.iter().any(|l| l.contains("Failed to build")) {
            lines.push(
                "(no wheel of this version matches this Python, so it was built from source; \
                 relaxing the pins may find a version that has one)"
                    .to_owned(),
            );
        }
    }
    if lines.is_empty() {
        lines = Vec::from(err_tail.last);
    }
    if lines.is_empty() {
        lines = Vec::from(out_tail.last);
    }
    Err(Error::Install {
        step: step.to_owned(),
        status: describe_status(status),
        lines: lines.join("\n"),
    })
}

/// What a failed step's error quotes of one stream: its decisive lines, else its last ones.
#[derive(Default)]
struct Tail {
    last: VecDeque<String>,
    decisive: Vec<String>,
    /// The last line naming a Python exception (`NameError: ...`), as a failed build ends.
    exception: Option<String>,
}

/// `NameError: name 'x' is not defined`, `distutils.errors.CompileError: ...`.
fn is_exception(line: &str) -> bool {
    let t = line.trim_start();
    t.split_once(": ").is_some_and(|(head, _)| {
        !head.is_empty()
            && !head.contains(' ')
            && (head.ends_with("Error") || head.ends_with("Exception"))
    })
}

/// How uv and pip word the lines that say why they failed.
fn is_decisive(line: &str) -> bool {
    let t = line.trim_start();
    const STARTS: &[&str] = &[
        "error:",
        "ERROR:",
        "cause:",
        "Caused by:",
        "hint:",
        "help:",
        "×",
        "╰─▶",
        "├─▶",
        "Because ",
        "And because ",
    ];
    STARTS.iter().any(|s| t.starts_with(s))
        || t.contains("No matching distribution")
        || t.contains("Could not find a version")
        || t.contains("unsatisfiable")
}

fn forward(reader: impl Read, prefix: &str, log: &dyn JobLog, tail: &Mutex<Tail>) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if line.trim().is_empty() {
            continue;
        }
        log.info(LogSource::Runner, format!("{prefix}: {line}"));
        if let Ok(mut tail) = tail.lock() {
            if tail.last.len() == TAIL_LINES {
                tail.last.pop_front();
            }
            tail.last.push_back(line.to_owned());
            if is_decisive(line) && tail.decisive.len() < TAIL_LINES {
                tail.decisive.push(line.trim().to_owned());
            } else if is_exception(line) {
                tail.exception = Some(line.trim().to_owned());
            }
        }
    }
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

#[cfg(test)]
mod decisive_tests {
    use super::is_decisive;

    #[test]
    fn the_verdict_lines_of_uv_and_pip() {
        for line in [
            "  × No solution found when resolving dependencies:",
            "  ╰─▶ Because there is no version of numpy==0.0.1 and you require numpy==0.0.1, we can conclude that your requirements are unsatisfiable.",
            "error: No solution found when resolving dependencies",
            "  cause: Because ...",
            "ERROR: No matching distribution found for numpy==0.0.1",
            "      hint: This usually indicates a problem with the package or the build environment.",
        ] {
            assert!(is_decisive(line), "{line}");
        }
        for line in [
            "gcc -pthread -c numpy/core/src/multiarray.c",
            "Resolved 3 packages in 1.2s",
        ] {
            assert!(!is_decisive(line), "{line}");
        }
        assert!(super::is_exception(
            "      NameError: name 'CCompiler' is not defined. Did you mean: 'ccompiler'?"
        ));
        assert!(super::is_exception(
            "distutils.errors.CompileError: command failed"
        ));
        assert!(!super::is_exception(
            "cause: The build backend returned an error"
        ));
        assert!(!super::is_exception("Some Error: in words"));
    }
}

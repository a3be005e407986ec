//! The environment cache: one folder per requirements key under `root`.
//!
//! Layout:
//! - `<key>/`: a complete environment (a venv); `.complete` inside it is written last, so a
//!   folder without it is never used. `.last-used` (its mtime) orders eviction; `.size` holds
//!   the size measured after the build; `.requirements/` the files it was built from.
//! - `tmp-<key>-<pid>-<n>/`: a build in progress, renamed to `<key>` once complete.
//! - `trash-<key>-<pid>-<n>/`: an evicted environment being deleted.
//! - `.locks/<key>.lock`: shared while a job uses `<key>`, exclusive while one builds or
//!   evicts it. Lock files are never deleted (deleting one could let two holders in).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use runtime_core::{JobLog, LogSource};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::lock::LockFile;
use crate::tool::{self, Installer, Interpreter, Tool, ToolUsed};

const COMPLETE: &str = ".complete";
const LAST_USED: &str = ".last-used";
const SIZE: &str = ".size";
const REQUIREMENTS_DIR: &str = ".requirements";
const LOCKS_DIR: &str = ".locks";
/// Changes whenever the layout of an environment changes, so old ones are not reused.
const LAYOUT: &[u8] = b"model-runtime environment layout 1";

/// How the cache builds and bounds environments. The engine binary fills it; the library
/// reads no environment variables of its own.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// The folder holding the environments (created when missing).
    pub root: PathBuf,
    /// After a build, least recently used environments are deleted until the cache holds at
    /// most this many bytes (an environment in use is never deleted).
    pub max_bytes: u64,
    /// When false nothing is installed: a model whose requirements have no cached
    /// environment fails.
    pub installs_enabled: bool,
    /// The interpreter the engine embeds: environments are built for it and see its packages.
    pub python: PathBuf,
    pub tool: Tool,
    /// Variables for pip and uv (`PIP_INDEX_URL`, `PIP_EXTRA_INDEX_URL`, `UV_INDEX_URL`,
    /// `UV_CACHE_DIR`...). pip's index settings are also given to uv under uv's names.
    pub extra_env: Vec<(String, String)>,
    /// The longest one step of a build (creating the venv, resolving, installing) may take.
    pub step_timeout: Duration,
    /// The longest resolving the requirements may take (uv): past it, pins that cannot be
    /// met (uv building old source distributions one after the other to read their
    /// metadata) fail the job in minutes at most rather than `step_timeout`.
    pub resolve_timeout: Duration,
}

impl CacheConfig {
    /// A cache in `root` for `python`: installs on, the fastest tool, 5 GiB, 10 minutes a step
    /// and 2 minutes to resolve.
    pub fn new(root: impl Into<PathBuf>, python: impl Into<PathBuf>) -> CacheConfig {
        CacheConfig {
            root: root.into(),
            max_bytes: 5 << 30,
            installs_enabled: true,
            python: python.into(),
            tool: Tool::Auto,
            extra_env: Vec::new(),
            step_timeout: Duration::from_secs(600),
            resolve_timeout: Duration::from_secs(120),
        }
    }
}

/// One requirements file of a model (an asset named `requirements.txt`, or one with the
/// "required libraries" role).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequirementsFile {
    pub name: String,
    pub content: String,
}

/// Where the time of a `prepare` went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timings {
    pub total: Duration,
    /// Waiting for another job (or engine) building the same environment.
    pub lock_wait: Duration,
    /// Creating the venv.
    pub create: Duration,
    /// Resolving the requirements against the base packages (uv only).
    pub resolve: Duration,
    pub install: Duration,
}

/// An environment ready for a model. Keep it alive while the model's worker runs: it holds
/// the lock that stops the environment from being evicted under the model.
#[derive(Debug)]
pub struct PreparedEnv {
    /// The hex sha256 naming the environment.
    pub key: String,
    /// The environment's folder (a venv).
    pub dir: PathBuf,
    /// The folder to put into `ModelSpec::import_paths`.
    pub site_packages: PathBuf,
    /// True when nothing was installed for this job.
    pub cache_hit: bool,
    /// The tool that built it, when this job built it.
    pub built_with: Option<ToolUsed>,
    pub timings: Timings,
    _in_use: LockFile,
}

/// Builds, caches and evicts model environments. Share one per engine (it is `Sync`);
/// `prepare` blocks for as long as an install takes, so call it off the async threads.
#[derive(Debug)]
pub struct EnvironmentCache {
    config: CacheConfig,
    interpreter: Mutex<Option<Arc<Interpreter>>>,
    installer: Mutex<Option<Installer>>,
    serial: AtomicU64,
    /// Set when the engine stops: builds in progress stop their tool, later ones do not
    /// start.
    stopping: AtomicBool,
    counts: CacheCountsAtomic,
}

/// How the environments asked of a cache were found, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Environments built.
    pub builds: u64,
    /// Builds that failed.
    pub build_failures: u64,
    /// Environments found built already.
    pub cache_hits: u64,
}

#[derive(Debug, Default)]
struct CacheCountsAtomic {
    builds: AtomicU64,
    build_failures: AtomicU64,
    cache_hits: AtomicU64,
}

impl EnvironmentCache {
    pub fn new(mut config: CacheConfig) -> EnvironmentCache {
        // The worker changes directory before it adds the site-packages to `sys.path`, and
        // the tools run in other folders: every path handed out must be absolute.
        if let Ok(root) = std::path::absolute(&config.root) {
            config.root = root;
        }
        EnvironmentCache {
            config,
            interpreter: Mutex::new(None),
            installer: Mutex::new(None),
            serial: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            counts: CacheCountsAtomic::default(),
        }
    }

    /// Builds, failed builds and cache hits so far.
    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            builds: self.counts.builds.load(Ordering::Relaxed),
            build_failures: self.counts.build_failures.load(Ordering::Relaxed),
            cache_hits: self.counts.cache_hits.load(Ordering::Relaxed),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Stops the builds in progress (their tool and its children are killed, their
    /// temporary folders removed, each `prepare` returns `Error::Stopped`) and refuses new
    /// ones: for an engine shutting down.
    pub fn stop_builds(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The environment for these requirements: the cached one, or one built now (its tool's
    /// output streamed into `log`). None when there are no requirements.
    pub fn prepare(
        &self,
        requirements: &[RequirementsFile],
        log: &dyn JobLog,
    ) -> Result<Option<PreparedEnv>> {
        if requirements.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let mut timings = Timings::default();
        let interpreter = self.interpreter()?;
        let key = cache_key(requirements, &interpreter);
        let root = &self.config.root;
        let locks = root.join(LOCKS_DIR);
        fs::create_dir_all(&locks)
            .map_err(|e| Error::io(format!("cannot create {}", locks.display()), e))?;
        let lock = LockFile::open(&locks.join(format!("{key}.lock")))?;
        let dir = root.join(&key);
        let site_packages = dir
            .join("lib")
            .join(format!("python{}", interpreter.minor))
            .join("site-packages");
        let names = file_names(requirements);

        let mut built_with = None;
        // A second round only when another engine evicted the environment in the instant
        // between this one's exclusive and shared locks.
        for _ in 0..3 {
            let wait = Instant::now();
            lock.shared()?;
            timings.lock_wait += wait.elapsed();
            if !is_complete(&dir) {
                lock.unlock();
                if !self.config.installs_enabled {
                    return Err(installs_off(requirements));
                }
                let wait = Instant::now();
                if !lock.try_exclusive()? {
                    log.info(
                        LogSource::Engine,
                        format!("waiting for another job building the environment for {names}"),
                    );
                    lock.exclusive()?;
                }
                timings.lock_wait += wait.elapsed();
                if !is_complete(&dir) {
                    match self.build(&key, requirements, &interpreter, log, &mut timings) {
                        Ok(b) => {
                            self.counts.builds.fetch_add(1, Ordering::Relaxed);
                            built_with = Some(b);
                        }
                        Err(e) => {
                            self.counts.build_failures.fetch_add(1, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
                // Not atomic: the exclusive lock is dropped, then the shared one taken.
                lock.shared()?;
                if !is_complete(&dir) {
                    continue;
                }
            }
            touch_last_used(&dir);
            if built_with.is_some() {
                if let Err(e) = self.evict(&key) {
                    tracing::warn!(error = %e, "environment cache: eviction failed");
                }
            } else {
                self.counts.cache_hits.fetch_add(1, Ordering::Relaxed);
                log.info(
                    LogSource::Engine,
                    format!("using the cached environment {} for {names}", short(&key)),
                );
            }
            timings.total = started.elapsed();
            return Ok(Some(PreparedEnv {
                key,
                dir,
                site_packages,
                cache_hit: built_with.is_none(),
                built_with,
                timings,
                _in_use: lock,
            }));
        }
        Err(Error::io(
            format!(
                "the environment {} kept vanishing after its build",
                dir.display()
            ),
            io::Error::other("evicted by another engine"),
        ))
    }

    fn interpreter(&self) -> Result<Arc<Interpreter>> {
        let mut slot = self
            .interpreter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = slot.as_ref() {
            return Ok(found.clone());
        }
        let found = Arc::new(tool::probe(&self.config.python, &self.config.extra_env)?);
        *slot = Some(found.clone());
        Ok(found)
    }

    fn installer(&self) -> Result<Installer> {
        let mut slot = self
            .installer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = slot.as_ref() {
            return Ok(found.clone());
        }
        let found = tool::choose(
            self.config.tool,
            &self.config.python,
            &self.config.extra_env,
        )?;
        *slot = Some(found.clone());
        Ok(found)
    }

    /// Builds `<key>` under the exclusive lock: in a fresh temporary folder, renamed into
    /// place once complete.
    fn build(
        &self,
        key: &str,
        requirements: &[RequirementsFile],
        interpreter: &Interpreter,
        log: &dyn JobLog,
        timings: &mut Timings,
    ) -> Result<ToolUsed> {
        let root = &self.config.root;
        if self.stopping.load(Ordering::SeqCst) {
            return Err(Error::Stopped {
                step: "the environment build".into(),
            });
        }
        // Holding the exclusive lock: any other folder of this key is a dead build.
        remove_leftovers_of(root, key);
        let installer = self.installer()?;
        let tmp = root.join(format!(
            "tmp-{key}-{}-{}",
            std::process::id(),
            self.serial.fetch_add(1, Ordering::Relaxed)
        ));
        log.info(
            LogSource::Engine,
            format!(
                "building an environment for {} with {}",
                file_names(requirements),
                installer.used().as_str()
            ),
        );
        let build = Build {
            config: &self.config,
            interpreter,
            requirements,
            dir: &tmp,
            log,
            stopping: &self.stopping,
        };
        let mut result = build.run(&installer, timings);
        if let (Err(BuildError::VenvCreation(e)), Tool::Auto, Installer::Uv { .. }) =
            (&result, self.config.tool, &installer)
        {
            log.warn(
                LogSource::Engine,
                format!("uv could not create the environment ({e}); trying python -m venv"),
            );
            remove_dir_quietly(&tmp);
            let pip = Installer::Pip {
                base_has_pip: base_has_pip(&self.config),
            };
            result = build.run(&pip, timings);
        }
        let used = match result {
            Ok(used) => used,
            Err(e) => {
                remove_dir_quietly(&tmp);
                return Err(e.into_public());
            }
        };
        let dir = root.join(key);
        if let Err(e) = fs::rename(&tmp, &dir) {
            remove_dir_quietly(&tmp);
            // Someone not honouring the lock got there first: theirs is as good as ours.
            if !is_complete(&dir) {
                return Err(Error::io(
                    format!("cannot move the environment into {}", dir.display()),
                    e,
                ));
            }
        }
        tracing::info!(key, tool = used.as_str(), "environment built");
        Ok(used)
    }

    /// Deletes least recently used environments until the cache fits `max_bytes`; also
    /// clears dead builds and half-deleted folders. Skips `keep` and anything in use.
    fn evict(&self, keep: &str) -> Result<()> {
        let root = &self.config.root;
        let entries = fs::read_dir(root)
            .map_err(|e| Error::io(format!("cannot list {}", root.display()), e))?;
        let mut complete = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with("trash-") {
                remove_dir_quietly(&path);
            } else if let Some(key) = name.strip_prefix("tmp-").and_then(key_prefix) {
                if key != keep {
                    self.with_exclusive(key, || remove_dir_quietly(&path))?;
                }
            } else if is_key(&name) {
                if is_complete(&path) {
                    complete.push((last_used(&path), env_size(&path), name));
                } else if name != keep {
                    self.with_exclusive(&name, || {
                        if !is_complete(&path) {
                            remove_dir_quietly(&path)
                        }
                    })?;
                }
            }
        }
        let mut total: u64 = complete.iter().map(|(_, size, _)| size).sum();
        complete.sort();
        for (used, size, key) in complete {
            if total <= self.config.max_bytes {
                break;
            }
            if key == keep {
                continue;
            }
            let evicted = self.with_exclusive(&key, || {
                let dir = root.join(&key);
                if !is_complete(&dir) {
                    return false;
                }
                let trash = root.join(format!(
                    "trash-{key}-{}-{}",
                    std::process::id(),
                    self.serial.fetch_add(1, Ordering::Relaxed)
                ));
                // The rename makes it vanish at once; the deletion may take a while.
                if fs::rename(&dir, &trash).is_err() {
                    return false;
                }
                remove_dir_quietly(&trash);
                true
            })?;
            if evicted == Some(true) {
                total = total.saturating_sub(size);
                tracing::info!(key, size, last_used = ?used, "environment evicted");
            }
        }
        Ok(())
    }

    /// Runs `f` holding `key`'s exclusive lock; None when someone holds the lock.
    fn with_exclusive<T>(&self, key: &str, f: impl FnOnce() -> T) -> Result<Option<T>> {
        let lock = LockFile::open(&self.config.root.join(LOCKS_DIR).join(format!("{key}.lock")))?;
        if !lock.try_exclusive()? {
            return Ok(None);
        }
        let out = f();
        lock.unlock();
        Ok(Some(out))
    }
}

/// One build of one environment in one folder.
struct Build<'a> {
    config: &'a CacheConfig,
    interpreter: &'a Interpreter,
    requirements: &'a [RequirementsFile],
    dir: &'a Path,
    log: &'a dyn JobLog,
    stopping: &'a AtomicBool,
}

/// An internal error: creating the venv failed (uv may then give way to venv + pip).
enum BuildError {
    VenvCreation(Error),
    Other(Error),
}

impl From<Error> for BuildError {
    fn from(e: Error) -> Self {
        BuildError::Other(e)
    }
}

impl BuildError {
    fn into_public(self) -> Error {
        match self {
            BuildError::VenvCreation(e) | BuildError::Other(e) => e,
        }
    }
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::VenvCreation(e) | BuildError::Other(e) => e.fmt(f),
        }
    }
}

impl Build<'_> {
    fn run(
        &self,
        installer: &Installer,
        timings: &mut Timings,
    ) -> std::result::Result<ToolUsed, BuildError> {
        let python = &self.config.python;
        let started = Instant::now();
        match installer {
            Installer::Uv { program } => {
                let mut cmd = self.uv(program);
                cmd.args(["venv", "--quiet", "--system-site-packages", "--python"])
                    .arg(python)
                    .arg(self.dir)
                    .current_dir(&self.config.root);
                self.step(cmd, "uv venv", "uv")
                    .map_err(BuildError::VenvCreation)?;
            }
            Installer::Pip { base_has_pip } => {
                let mut cmd = tool::command(python.as_os_str(), &self.config.extra_env, false);
                cmd.args(["-m", "venv", "--system-site-packages"]);
                // The base pip, visible through the system site-packages, installs into the
                // venv; bootstrapping a pip of its own (ensurepip) costs seconds.
                if *base_has_pip {
                    cmd.arg("--without-pip");
                }
                cmd.arg(self.dir).current_dir(&self.config.root);
                self.step(cmd, "python -m venv", "venv")
                    .map_err(BuildError::VenvCreation)?;
            }
        }
        timings.create += started.elapsed();
        let files = self.write_requirements()?;
        let venv_python = self.dir.join("bin").join("python");
        match installer {
            Installer::Uv { program } => self.uv_install(program, &files, &venv_python, timings)?,
            Installer::Pip { .. } => {
                let started = Instant::now();
                let mut cmd = tool::command(venv_python.as_os_str(), &self.config.extra_env, false);
                cmd.args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--progress-bar",
                    "off",
                    "--no-color",
                    "--no-warn-script-location",
                ]);
                for file in &files {
                    cmd.arg("-r").arg(file);
                }
                cmd.current_dir(self.dir.join(REQUIREMENTS_DIR));
                self.step(cmd, "pip install", "pip")?;
                timings.install += started.elapsed();
            }
        }
        self.finish(installer.used())?;
        Ok(installer.used())
    }

    fn uv(&self, program: &Path) -> std::process::Command {
        let mut cmd = tool::command(program.as_os_str(), &self.config.extra_env, true);
        // Never a project's or user's uv.toml: the engine's settings only.
        cmd.args(["--no-config", "--color", "never"]);
        cmd
    }

    fn step(&self, cmd: std::process::Command, step: &str, prefix: &str) -> Result<()> {
        tool::run(
            cmd,
            step,
            prefix,
            self.log,
            self.config.step_timeout,
            self.stopping,
        )
    }

    /// uv does not count the base interpreter's packages as installed (pip does, through
    /// the venv's system site-packages), so it would install a second, newer copy of every
    /// base package a requirement names. Instead: resolve with the base packages' versions
    /// as preferences, then install with `--no-deps` only what the base lacks or pins
    /// differently.
    fn uv_install(
        &self,
        program: &Path,
        files: &[PathBuf],
        venv_python: &Path,
        timings: &mut Timings,
    ) -> Result<()> {
        let req_dir = self.dir.join(REQUIREMENTS_DIR);
        let hashed = self
            .requirements
            .iter()
            .any(|r| r.content.contains("--hash"));
        let to_install = if hashed {
            // Hash-checked requirements must be installed as written.
            files.to_vec()
        } else {
            let started = Instant::now();
            let base = self.base_pins(program)?;
            let resolved = req_dir.join(".resolved.txt");
            let prefs: String = base.iter().map(|(n, v)| format!("{n}=={v}\n")).collect();
            fs::write(&resolved, prefs)
                .map_err(|e| Error::io(format!("cannot write {}", resolved.display()), e))?;
            let mut cmd = self.uv(program);
            cmd.args(["pip", "compile", "--quiet", "--no-header", "--no-annotate"])
                .arg("--python")
                .arg(&self.config.python)
                .arg("--output-file")
                .arg(&resolved)
                .args(files)
                .current_dir(&req_dir);
            let resolve_timeout = self.config.resolve_timeout.min(self.config.step_timeout);
            tool::run(
                cmd,
                "uv pip compile",
                "uv",
                self.log,
                resolve_timeout,
                self.stopping,
            )?;
            timings.resolve += started.elapsed();
            let text = fs::read_to_string(&resolved)
                .map_err(|e| Error::io(format!("cannot read {}", resolved.display()), e))?;
            let missing = not_in_base(&text, &base);
            if missing.is_empty() {
                self.log.info(
                    LogSource::Engine,
                    "the engine's base packages already satisfy the requirements".to_owned(),
                );
                return Ok(());
            }
            let list = req_dir.join(".install.txt");
            fs::write(&list, missing.join("\n") + "\n")
                .map_err(|e| Error::io(format!("cannot write {}", list.display()), e))?;
            vec![list]
        };
        let started = Instant::now();
        let mut cmd = self.uv(program);
        cmd.args(["pip", "install", "--python"]).arg(venv_python);
        if !hashed {
            cmd.arg("--no-deps");
        }
        for file in &to_install {
            cmd.arg("-r").arg(file);
        }
        cmd.current_dir(&req_dir);
        self.step(cmd, "uv pip install", "uv")?;
        timings.install += started.elapsed();
        Ok(())
    }

    /// The base interpreter's distributions as (normalized name, version).
    fn base_pins(&self, program: &Path) -> Result<Vec<(String, String)>> {
        let output = self
            .uv(program)
            .args(["pip", "freeze", "--exclude-editable", "--python"])
            .arg(&self.config.python)
            .current_dir(&self.config.root)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io("cannot start uv pip freeze", e))?;
        if !output.status.success() {
            return Err(Error::Install {
                step: "uv pip freeze".to_owned(),
                status: output.status.to_string(),
                lines: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(pinned)
            .collect())
    }

    /// Writes each requirements file under its own name (so `-r other.txt` between them
    /// works); returns their paths.
    fn write_requirements(&self) -> Result<Vec<PathBuf>> {
        let dir = self.dir.join(REQUIREMENTS_DIR);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let mut paths: Vec<PathBuf> = Vec::new();
        for (i, req) in self.requirements.iter().enumerate() {
            let mut name = safe_file_name(&req.name);
            if paths.iter().any(|p| p.ends_with(&name)) {
                name = format!("{i}-{name}");
            }
            let path = dir.join(name);
            fs::write(&path, &req.content)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            paths.push(path);
        }
        Ok(paths)
    }

    /// Checks the build and marks it usable: `.complete` is written last.
    fn finish(&self, used: ToolUsed) -> Result<()> {
        let site = self
            .dir
            .join("lib")
            .join(format!("python{}", self.interpreter.minor))
            .join("site-packages");
        if !site.is_dir() {
            return Err(Error::io(
                format!("the new environment has no {}", site.display()),
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        // uv's venvs may carry a distutils shim loaded by a .pth file; the worker processes
        // .pth files, and the shim is of no use to a model.
        for shim in ["_virtualenv.pth", "_virtualenv.py"] {
            let _ = fs::remove_file(site.join(shim));
        }
        let write = |name: &str, text: String| {
            let path = self.dir.join(name);
            fs::write(&path, text)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
        };
        write(LAST_USED, String::new())?;
        write(SIZE, dir_size(self.dir).to_string())?;
        let path = self.dir.join(COMPLETE);
        let text = format!(
            "tool = {}\npython = {}\nplatform = {}\nrequirements = {}\n",
            used.as_str(),
            self.interpreter.version,
            self.interpreter.platform,
            file_names(self.requirements)
        );
        let file = fs::File::create(&path)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        io::Write::write_all(&mut &file, text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        Ok(())
    }
}

/// Whether the base interpreter has pip (the installer was uv, which did not need to know).
fn base_has_pip(config: &CacheConfig) -> bool {
    tool::command(config.python.as_os_str(), &config.extra_env, false)
        .args(["-c", "import pip"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// sha256 of the sorted requirement contents, the Python version and the platform.
pub(crate) fn cache_key(requirements: &[RequirementsFile], interpreter: &Interpreter) -> String {
    let mut contents: Vec<&str> = requirements.iter().map(|r| r.content.as_str()).collect();
    contents.sort_unstable();
    let mut hash = Sha256::new();
    hash.update(LAYOUT);
    for content in contents {
        hash.update((content.len() as u64).to_le_bytes());
        hash.update(content.as_bytes());
    }
    for part in [&interpreter.version, &interpreter.platform] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The key at the start of `<key>-<pid>-<n>`.
fn key_prefix(rest: &str) -> Option<&str> {
    let key = rest.get(..64)?;
    is_key(key).then_some(key)
}

fn short(key: &str) -> &str {
    key.get(..12).unwrap_or(key)
}

fn is_complete(dir: &Path) -> bool {
    dir.join(COMPLETE).is_file()
}

fn touch_last_used(dir: &Path) {
    let path = dir.join(LAST_USED);
    let touched = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .and_then(|f| f.set_modified(SystemTime::now()));
    if let Err(e) = touched {
        tracing::warn!(path = %path.display(), error = %e, "cannot mark an environment used");
    }
}

fn last_used(dir: &Path) -> SystemTime {
    fs::metadata(dir.join(LAST_USED))
        .or_else(|_| fs::metadata(dir.join(COMPLETE)))
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn env_size(dir: &Path) -> u64 {
    fs::read_to_string(dir.join(SIZE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| dir_size(dir))
}

/// Bytes of the regular files under `dir`, not following symbolic links.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// Removes `tmp-<key>-*` folders and an incomplete `<key>`: call holding `key`'s exclusive
/// lock only.
fn remove_leftovers_of(root: &Path, key: &str) {
    let dir = root.join(key);
    if dir.exists() && !is_complete(&dir) {
        remove_dir_quietly(&dir);
    }
    let prefix = format!("tmp-{key}-");
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                remove_dir_quietly(&entry.path());
            }
        }
    }
}

fn remove_dir_quietly(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove");
        }
    }
}

fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match cleaned.trim_start_matches('.') {
        "" => "requirements.txt".to_owned(),
        rest => rest.to_owned(),
    }
}

fn file_names(requirements: &[RequirementsFile]) -> String {
    requirements
        .iter()
        .map(|r| r.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// PEP 503 normalization: lower case, runs of `-_.` as one `-`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// `name==version` as (normalized name, version); None for anything else.
fn pinned(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let (name, version) = line.split_once("==")?;
    let name = name.trim();
    let version = version.trim();
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '!'))
    };
    (plain(name) && plain(version)).then(|| (normalize(name), version.to_owned()))
}

/// The lines of a resolution that the base packages do not already provide at that version.
fn not_in_base(resolved: &str, base: &[(String, String)]) -> Vec<String> {
    resolved
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| match pinned(l) {
            Some(pin) => !base.contains(&pin),
            None => true,
        })
        .map(str::to_owned)
        .collect()
}

/// The requirement lines of the files, for a message.
fn wanted(requirements: &[RequirementsFile]) -> String {
    let lines: Vec<&str> = requirements
        .iter()
        .flat_map(|r| r.content.lines())
        .map(|l| l.split(" #").next().unwrap_or(l).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.is_empty() {
        "nothing but options".to_owned()
    } else {
        lines.join(", ")
    }
}

fn installs_off(requirements: &[RequirementsFile]) -> Error {
    Error::InstallsOff {
        files: file_names(requirements),
        verb: if requirements.len() == 1 {
            "asks"
        } else {
            "ask"
        },
        wanted: wanted(requirements),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interp(version: &str) -> Interpreter {
        Interpreter {
            version: version.to_owned(),
            minor: "3.11".to_owned(),
            platform: "linux-x86_64-cpython-311".to_owned(),
        }
    }

    fn req(name: &str, content: &str) -> RequirementsFile {
        RequirementsFile {
            name: name.to_owned(),
            content: content.to_owned(),
        }
    }

    #[test]
    fn key_ignores_file_order_and_names_but_not_python() {
        let a = [req("a.txt", "six\n"), req("b.txt", "idna\n")];
        let b = [req("x.txt", "idna\n"), req("y.txt", "six\n")];
        let k = cache_key(&a, &interp("3.11.7"));
        assert_eq!(k, cache_key(&b, &interp("3.11.7")));
        assert!(is_key(&k));
        assert_ne!(k, cache_key(&a, &interp("3.11.8")));
        // Framing: moving a byte between files changes the key.
        let c = [req("a.txt", "six\ni"), req("b.txt", "dna\n")];
        assert_ne!(k, cache_key(&c, &interp("3.11.7")));
    }

    #[test]
    fn resolution_minus_base() {
        let base = vec![
            ("six".to_owned(), "1.17.0".to_owned()),
            ("typing-extensions".to_owned(), "4.12.2".to_owned()),
        ];
        let resolved =
            "six==1.16.0\nTyping_Extensions==4.12.2\nidna==3.7\nfoo @ https://x/foo.whl\n";
        assert_eq!(
            not_in_base(resolved, &base),
            vec!["six==1.16.0", "idna==3.7", "foo @ https://x/foo.whl"]
        );
    }

    #[test]
    fn file_names_are_kept_inside_the_folder() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("req s.txt"), "req_s.txt");
        assert_eq!(safe_file_name(".."), "requirements.txt");
        assert_eq!(
            safe_file_name("models/requirements.txt"),
            "requirements.txt"
        );
    }

    #[test]
    fn installs_off_message_lists_the_requirements() {
        let e = installs_off(&[req(
            "requirements.txt",
            "# pinned\nsix==1.16.0  # old\n\nidna\n",
        )]);
        assert_eq!(
            e.to_string(),
            "this engine does not install model requirements (installs are turned off); \
             requirements.txt asks for: six==1.16.0, idna"
        );
    }
}

//! The CLI client of a running engine: `engine job ...`, `engine deploy`, `engine stream
//! ...`, `engine score`, `engine status`. Human tables by default, `--json` for scripts.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use engine_client::{error_text, Answer, Client, ClientOptions, Part, Token};

use crate::exit;

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The engine's address (`host:port` means `http://host:port`).
    #[arg(
        long,
        global = true,
        env = "ENGINE_URL",
        default_value = "http://127.0.0.1:8003"
    )]
    pub engine: String,
    /// Print the engine's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// A file holding the engine's token (ENGINE_TOKEN_FILE; default: $ENGINE_TOKEN, if
    /// set).
    #[arg(long, global = true, value_name = "PATH", env = "ENGINE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM certificates to trust for an https:// engine instead of the system's roots.
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

impl ClientArgs {
    /// The client these arguments describe; on a problem, says so (as `engine WHAT: ...`)
    /// and returns `None`.
    fn connect(&self, what: &str) -> Option<Client> {
        self.connect_within(what, None)
    }

    /// [`Self::connect`] with requests bounded by `timeout` (else the client's default).
    fn connect_within(&self, what: &str, timeout: Option<Duration>) -> Option<Client> {
        match self.options().and_then(|mut o| {
            o.timeout = timeout;
            Client::with_options(&engine_url(&self.engine), &o).map_err(|e| e.to_string())
        }) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("engine {what}: {e}");
                None
            }
        }
    }

    fn options(&self) -> Result<ClientOptions, String> {
        let mut options = ClientOptions {
            ca_file: self.ca_file.clone(),
            ..ClientOptions::default()
        };
        // Named in messages by where it came from: the file (--token-file or
        // ENGINE_TOKEN_FILE) or ENGINE_TOKEN.
        let (source, token) =
            match &self.token_file {
                Some(path) => (
                    format!("the token file {}", path.display()),
                    Some(std::fs::read_to_string(path).map_err(|e| {
                        format!("cannot read the token file {}: {e}", path.display())
                    })?),
                ),
                None => (
                    "ENGINE_TOKEN".to_owned(),
                    std::env::var("ENGINE_TOKEN")
                        .ok()
                        .filter(|t| !t.trim().is_empty()),
                ),
            };
        if let Some(t) = token {
            options.token = Some(Token::new(&t).map_err(|e| format!("{source}: {e}"))?);
        }
        Ok(options)
    }
}

/// The engine's base URL: an address given without a scheme (`localhost:8003`) is HTTP.
fn engine_url(given: &str) -> String {
    let given = given.trim();
    if given.contains("://") {
        given.to_owned()
    } else {
        format!("http://{given}")
    }
}

/// A job id (or other value) as one segment of a URL path or a query value: whatever
/// the user typed stays that value (`../x` or `a&b` cannot change the route).
fn seg(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// How often plain progress lines are printed when standard error is not a terminal.
const DEFAULT_INTERVAL_SECS: u64 = 5;

#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(subcommand)]
    pub command: JobCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum JobTypeArg {
    Batchjob,
    Testjob,
    Trainingjob,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job: MODEL (file or folder), INPUT files, then OUTPUT (a path on the
    /// engine's machine, or '-' to keep the output with the job).
    Create {
        kind: JobTypeArg,
        model: PathBuf,
        /// INPUT... OUTPUT
        #[arg(num_args = 2.., required = true)]
        paths: Vec<PathBuf>,
        /// A job parameter as KEY=VALUE (VALUE read as JSON when it parses).
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Where the job runs: `local` (the engine's workers) or `spark` (docs/spark.md);
        /// the engine's default when not given.
        #[arg(long, value_name = "RUNTIME", value_parser = ["local", "spark"])]
        runtime: Option<String>,
        /// Wait for the job to finish, showing its progress, and exit with its status (0
        /// SUCCESS, 1 COMPLETE with FAILURE, 2 ERROR or CANCELLED).
        #[arg(long)]
        wait: bool,
        /// With --wait and standard error not a terminal: seconds between progress lines.
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_INTERVAL_SECS,
              value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
    },
    /// A job's status and counts; a failed job's reason and first traceback.
    Status {
        id: String,
        /// Follow the job until it ends, showing its progress, and exit with its status (0
        /// SUCCESS, 1 COMPLETE with FAILURE, 2 ERROR or CANCELLED).
        #[arg(long)]
        watch: bool,
        /// With --watch and standard error not a terminal: seconds between progress lines.
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_INTERVAL_SECS,
              value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
    },
    /// A finished job's result (its embedded output, or where it was written).
    Result {
        id: String,
        /// Write every product of a training job (the files its model wrote under
        /// `outputDir/`) into this folder (created), keeping their sub-folders.
        #[arg(long, value_name = "DIR")]
        products: Option<PathBuf>,
    },
    /// A job's log lines.
    Log { id: String },
    /// Jobs, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Cancel a waiting or running job.
    Cancel { id: String },
    /// Queue a finished or interrupted job again.
    Rerun { id: String },
    /// Delete a finished job with its log and files (cancel a waiting or running one
    /// first).
    Delete { id: String },
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The model: a source file or a folder.
    pub model: PathBuf,
    #[arg(long)]
    pub name: Option<String>,
    /// The most records a worker takes in one batch, for this model (`scoreBatchMax`;
    /// the engine's setting otherwise). Raise it for a record-set model.
    #[arg(long, value_name = "RECORDS")]
    pub batch_max: Option<u64>,
    /// How long a batch short of --batch-max waits for more, for this model
    /// (`scoreBatchWaitMs`; the engine's setting otherwise).
    #[arg(long, value_name = "MS")]
    pub batch_wait_ms: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct UndeployArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    #[arg(long, default_value_t = 0)]
    pub input_slot: u32,
    #[arg(long, default_value_t = 1)]
    pub output_slot: u32,
    /// Milliseconds the engine waits for the model per record.
    #[arg(long)]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    #[command(subcommand)]
    pub command: StreamCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum StreamCommand {
    /// Attach a stream descriptor to a slot of the deployed model, replacing the stream on it.
    Attach {
        /// Even: an input read through the model; odd: an output for what it yields there;
        /// `errors`: where records refused or failed go, one error record each.
        #[arg(value_parser = parse_slot)]
        slot: String,
        /// A JSON descriptor or a short form (file:/srv/in.jsonl, rest:, inline:1,2,3,
        /// discard:); a relative file path is made absolute.
        descriptor: String,
        /// Print the descriptor with every default filled in; attach nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The streams attached to the deployed model, with their state and counts.
    List,
    /// Detach the stream on SLOT, once what it holds is scored and written.
    Detach {
        #[arg(value_parser = parse_slot)]
        slot: String,
    },
}

/// A slot on the command line: a number, or `errors`.
fn parse_slot(text: &str) -> Result<String, String> {
    runtime_core::Slot::parse(text)
        .map(|s| s.to_string())
        .ok_or_else(|| format!("'{text}' is not a slot: a number, or errors"))
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also print the deployed model's latest log lines: its console, failed records with
    /// their tracebacks, worker restarts.
    #[arg(long)]
    pub log: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A failed command: its message and exit status.
struct Failed(String, i32);

impl From<engine_client::Error> for Failed {
    fn from(e: engine_client::Error) -> Self {
        Failed(e.to_string(), exit::ERROR)
    }
}

/// `engine token`: 32 random bytes from the kernel, as 64 hex digits.
pub fn token() -> i32 {
    let mut bytes = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut bytes)
    });
    if let Err(e) = read {
        eprintln!("engine token: cannot read random bytes: {e}");
        return exit::ERROR;
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    out(&format!("{hex}\n"));
    exit::OK
}

fn report(r: Result<(), Failed>, what: &str) -> i32 {
    match r {
        Ok(()) => exit::OK,
        Err(Failed(msg, code)) => {
            eprintln!("engine {what}: {msg}");
            code
        }
    }
}

fn value(answer: Answer) -> Result<serde_json::Value, Failed> {
    Ok(Client::json(answer)?)
}

fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

fn print_json(v: &serde_json::Value) {
    out(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ));
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A plain table: columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut l = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ");
        l.truncate(l.trim_end().len());
        l + "\n"
    };
    let mut t = line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        t += &line(r.clone());
    }
    t
}

fn job_table(jobs: &[serde_json::Value]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                s(&j["id"]),
                s(&j["jobType"]),
                s(&j["jobStatus"]),
                s(&j["jobResult"]),
                format!("{}/{}", s(&j["recordsIn"]), s(&j["recordsOut"])),
                s(&j["recordsRejected"]),
                s(&j["createdAt"]),
            ]
        })
        .collect();
    table(
        &[
            "ID", "TYPE", "STATUS", "RESULT", "IN/OUT", "REJECTED", "CREATED",
        ],
        &rows,
    )
}

pub fn job(args: JobArgs) -> i32 {
    let Some(c) = args.client.connect("job") else {
        return exit::USAGE;
    };
    let json = args.client.json;
    let r = match args.command {
        JobCommand::Create {
            kind,
            model,
            paths,
            params,
            runtime,
            wait,
            interval,
        } => {
            let wait = wait.then(|| Duration::from_secs(interval));
            let how = Submit {
                params: &params,
                runtime: runtime.as_deref(),
                wait,
            };
            create(&c, json, kind, &model, &paths, how)
        }
        JobCommand::Status {
            id,
            watch: true,
            interval,
        } => follow(&c, &id, Duration::from_secs(interval)).and_then(|v| show_final(&c, v, json)),
        JobCommand::Status { id, .. } => c
            .get(&format!("/api/jobs/{}", seg(&id)))
            .map_err(Failed::from)
            .and_then(value)
            .map(|v| show_job(&c, &v, json)),
        JobCommand::Result { id, products } => match products {
            Some(dir) => fetch_products(&c, json, &id, &dir),
            None => result(&c, json, &id),
        },
        JobCommand::Log { id } => c
            .get(&format!("/api/jobs/{}/log", seg(&id)))
            .map_err(Failed::from)
            .and_then(value)
            .map(|v| {
                if json {
                    print_json(&v)
                } else {
                    print_log_lines(&v);
                }
            }),
        JobCommand::List { status } => {
            let path = match status {
                Some(st) => format!("/api/jobs?status={}", seg(&st)),
                None => "/api/jobs".to_owned(),
            };
            c.get(&path).map_err(Failed::from).and_then(value).map(|v| {
                if json {
                    print_json(&v)
                } else {
                    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
                    out(&job_table(&jobs));
                }
            })
        }
        JobCommand::Cancel { id } => c
            .post(
                &format!("/api/jobs/{}/cancel", seg(&id)),
                "application/json",
                b"",
            )
            .map_err(Failed::from)
            .and_then(value)
            .map(|v| show_job(&c, &v, json)),
        JobCommand::Rerun { id } => c
            .post(
                &format!("/api/jobs/{}/rerun", seg(&id)),
                "application/json",
                b"",
            )
            .map_err(Failed::from)
            .and_then(value)
            .map(|v| show_job(&c, &v, json)),
        JobCommand::Delete { id } => c
            .delete(&format!("/api/jobs/{}", seg(&id)))
            .map_err(Failed::from)
            .and_then(|a| {
                if a.status == 409 {
                    return Err(Failed(
                        format!("{} (engine job cancel {id})", error_text(&a)),
                        exit::ERROR,
                    ));
                }
                if a.status >= 400 {
                    return Err(Failed(error_text(&a), exit::ERROR));
                }
                if !json {
                    out(&format!("job {id} deleted\n"));
                }
                Ok(())
            }),
    };
    report(r, "job")
}

fn is_final(status: &str) -> bool {
    ["COMPLETE", "ERROR", "CANCELLED"].contains(&status)
}

/// A job's table; for a job that ended without SUCCESS, its reason, first problems and
/// first traceback.
fn show_job(c: &Client, v: &serde_json::Value, json: bool) {
    if json {
        print_json(v);
        return;
    }
    let mut t = job_table(std::slice::from_ref(v));
    // IN/OUT are the final counts; a running job's live ones are in its progress.
    if s(&v["jobStatus"]) == "RUNNING" && v["progress"].is_object() {
        let line = progress_line(v);
        if let Some((_, figures)) = line.split_once(": ") {
            t += &format!("progress: {figures}\n");
        }
    }
    if let Some(reason) = v["reason"].as_str() {
        t += &format!("reason: {reason}\n");
    }
    if is_final(&s(&v["jobStatus"])) && v["jobResult"] != "SUCCESS" {
        t += &failure_details(c, v);
    }
    out(&t);
}

/// Problems kept with a failed job's result that are printed.
const PROBLEMS_SHOWN: usize = 5;

/// The first problems of a failed job and its first traceback (the job's own, else the first
/// in its log).
fn failure_details(c: &Client, v: &serde_json::Value) -> String {
    let id = s(&v["id"]);
    let result = c
        .get(&format!("/api/jobs/{}/result", seg(&id)))
        .ok()
        .and_then(|a| Client::json::<serde_json::Value>(a).ok())
        .unwrap_or_default();
    let mut t = String::new();
    let problems = result["problems"].as_array().cloned().unwrap_or_default();
    for p in problems.iter().take(PROBLEMS_SHOWN) {
        t += &format!(
            "problem: slot {}, {}: {}\n",
            s(&p["slot"]),
            s(&p["position"]),
            s(&p["reason"])
        );
    }
    if problems.len() > PROBLEMS_SHOWN {
        t += &format!("problem: ... and more (engine job log {id})\n");
    }
    let traceback = result["traceback"].as_str().map(str::to_owned).or_else(|| {
        let messages = match v["jobMessages"].as_array() {
            Some(m) => m.clone(),
            None => c
                .get(&format!("/api/jobs/{}", seg(&id)))
                .ok()
                .and_then(|a| Client::json::<serde_json::Value>(a).ok())
                .and_then(|j| j["jobMessages"].as_array().cloned())
                .unwrap_or_default(),
        };
        messages.iter().find_map(|m| first_traceback(m.as_str()?))
    });
    if let Some(tb) = traceback {
        t += &format!("first traceback:\n{}\n", tb.trim_end());
    }
    t
}

/// The traceback in a log line, from its `Traceback` header on.
fn first_traceback(line: &str) -> Option<String> {
    let at = line.find("Traceback (most recent call last)")?;
    Some(line[at..].to_owned())
}

/// `, N failed, M rejected` when any are.
pub fn failed_and_rejected(failed: u64, rejected: u64) -> String {
    let mut t = String::new();
    if failed > 0 {
        t += &format!(", {failed} failed");
    }
    if rejected > 0 {
        t += &format!(", {rejected} rejected");
    }
    t
}

/// One line of a job's progress: `job ID RUNNING: 120 read, 100 scored, ...`.
fn progress_line(v: &serde_json::Value) -> String {
    let p = &v["progress"];
    let mut line = format!("job {} {}", s(&v["id"]), s(&v["jobStatus"]));
    if p.is_object() {
        line += &format!(
            ": {} read, {} scored, {} failed, {} rejected, {} records/s, {:.1} s",
            s(&p["recordsRead"]),
            s(&p["recordsScored"]),
            s(&p["recordsFailed"]),
            s(&p["recordsRejected"]),
            s(&p["recordsPerSecond"]),
            p["elapsedMs"].as_f64().unwrap_or(0.0) / 1000.0
        );
    }
    line
}

/// Follows job `id` until it ends: a progress bar on a terminal (standard error), plain
/// lines every `interval` (and at each change of status) otherwise. Returns the final view.
fn follow(c: &Client, id: &str, interval: Duration) -> Result<serde_json::Value, Failed> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed} {prefix} {human_pos} records scored{msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let poll = if bar.is_some() {
        Duration::from_millis(250)
    } else {
        Duration::from_millis(500).min(interval)
    };
    let mut printed: Option<(Instant, String)> = None;
    loop {
        let v = value(c.get(&format!("/api/jobs/{}?messages=false", seg(id)))?)?;
        let status = s(&v["jobStatus"]);
        let done = is_final(&status);
        let p = &v["progress"];
        match &bar {
            Some(bar) => {
                bar.set_prefix(status.clone());
                bar.set_position(p["recordsScored"].as_u64().unwrap_or(0));
                bar.set_message(format!(
                    "{} ({} records/s)",
                    failed_and_rejected(
                        p["recordsFailed"].as_u64().unwrap_or(0),
                        p["recordsRejected"].as_u64().unwrap_or(0)
                    ),
                    p["recordsPerSecond"].as_f64().unwrap_or(0.0)
                ));
                if done {
                    bar.finish_and_clear();
                }
            }
            None => {
                let due = match &printed {
                    None => true,
                    Some((at, last)) => *last != status || at.elapsed() >= interval,
                };
                if due && !done {
                    eprintln!("{}", progress_line(&v));
                    printed = Some((Instant::now(), status.clone()));
                }
            }
        }
        if done {
            return Ok(v);
        }
        std::thread::sleep(poll);
    }
}

/// Prints a followed job's final status and turns it into the exit status.
fn show_final(c: &Client, mut v: serde_json::Value, json: bool) -> Result<(), Failed> {
    if !std::io::stderr().is_terminal() {
        eprintln!("{}", progress_line(&v));
    }
    if json {
        if let Some(o) = v.as_object_mut() {
            o.remove("jobMessages");
        }
    }
    show_job(c, &v, json);
    let code = exit::of_job(&s(&v["jobStatus"]), &s(&v["jobResult"]));
    if code != 0 {
        return Err(Failed(
            format!(
                "job {} ended {} {}",
                s(&v["id"]),
                s(&v["jobStatus"]),
                s(&v["jobResult"])
            ),
            code,
        ));
    }
    Ok(())
}

/// The model's parts for an upload: a source file alone, or a folder's main source and
/// every other file under its relative path. The main source of a folder is the only
/// `.py`/`.R` at its top, else the one carrying `modelop.` markers.
fn model_parts(model: &Path) -> Result<Vec<Part>, Failed> {
    let usage = |e: &dyn std::fmt::Display| Failed(e.to_string(), exit::USAGE);
    let located = jobs::LocatedModel::from_path(model, None).map_err(|e| usage(&e))?;
    let mut parts = vec![Part::File {
        name: "source".into(),
        file_name: located.source_name.clone(),
        bytes: located.source_text.into_bytes(),
    }];
    for (rel, path) in &located.assets {
        parts.push(Part::file("asset", path, &rel.to_string_lossy()).map_err(|e| usage(&e))?);
    }
    Ok(parts)
}

/// How `engine job create` submits a job, besides its model and files.
struct Submit<'a> {
    params: &'a [String],
    runtime: Option<&'a str>,
    /// Follow the job, printing its progress this often.
    wait: Option<Duration>,
}

fn create(
    c: &Client,
    json: bool,
    kind: JobTypeArg,
    model: &Path,
    paths: &[PathBuf],
    how: Submit<'_>,
) -> Result<(), Failed> {
    let Submit {
        params,
        runtime,
        wait,
    } = how;
    let Some((output, inputs)) = paths.split_last() else {
        return Err(Failed("give INPUT... OUTPUT".into(), exit::USAGE));
    };
    let mut parts = model_parts(model)?;
    let job_type = match kind {
        JobTypeArg::Batchjob => "batchjob",
        JobTypeArg::Testjob => "testjob",
        JobTypeArg::Trainingjob => "trainingjob",
    };
    parts.push(Part::text("jobType", job_type));
    if let Some(r) = runtime {
        parts.push(Part::text("runtime", r));
    }
    for input in inputs {
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "input.json".into());
        parts.push(
            Part::file("input", input, &name).map_err(|e| Failed(e.to_string(), exit::USAGE))?,
        );
    }
    if output.as_os_str() != "-" {
        let abs = std::path::absolute(output)
            .map_err(|e| Failed(format!("{}: {e}", output.display()), exit::USAGE))?;
        parts.push(Part::text("output", abs.display().to_string()));
    }
    if !params.is_empty() {
        let mut map = serde_json::Map::new();
        for p in params {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| Failed(format!("--param {p}: expected KEY=VALUE"), exit::USAGE))?;
            let v = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
            map.insert(k.to_owned(), v);
        }
        parts.push(Part::text(
            "params",
            serde_json::Value::Object(map).to_string(),
        ));
    }
    let v = value(c.upload("POST", "/api/jobs/upload", &parts)?)?;
    match wait {
        Some(interval) => {
            let done = follow(c, &s(&v["id"]), interval)?;
            show_final(c, done, json)
        }
        None => {
            show_job(c, &v, json);
            Ok(())
        }
    }
}

fn result(c: &Client, json: bool, id: &str) -> Result<(), Failed> {
    let v = value(c.get(&format!("/api/jobs/{}/result", seg(id)))?)?;
    if json {
        print_json(&v);
        return Ok(());
    }
    let outputs = v["outputs"].as_array().cloned().unwrap_or_default();
    for o in &outputs {
        match o["content"].as_str() {
            Some(text) => out(text),
            None => eprintln!(
                "slot {}: {} record(s) written to {}",
                s(&o["slot"]),
                s(&o["records"]),
                s(&o["path"])
            ),
        }
    }
    let trained = v["trainedFiles"].as_array().cloned().unwrap_or_default();
    for f in &trained {
        eprintln!("trained: {} (in {})", s(f), s(&v["trainedDir"]));
    }
    if !trained.is_empty() {
        eprintln!("`engine job result {id} --products DIR` writes them into DIR");
    }
    eprintln!("job {id}: {} {}", s(&v["jobStatus"]), s(&v["jobResult"]));
    Ok(())
}

/// `engine job result ID --products DIR`: every product of the job, streamed into DIR.
fn fetch_products(c: &Client, json: bool, id: &str, dir: &Path) -> Result<(), Failed> {
    let v = value(c.get(&format!("/api/jobs/{}/products", seg(id)))?)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| Failed(format!("cannot create {}: {e}", dir.display()), exit::ERROR))?;
    let mut written = Vec::new();
    for p in v["products"].as_array().into_iter().flatten() {
        let name = s(&p["name"]);
        // Only plain relative names are written, whatever the engine answers.
        let rel = Path::new(&name);
        if name.is_empty()
            || !rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Failed(
                format!("the engine named a product '{name}' that is not a relative path"),
                exit::ERROR,
            ));
        }
        let dest = dir.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Failed(
                    format!("cannot create {}: {e}", parent.display()),
                    exit::ERROR,
                )
            })?;
        }
        let path = format!(
            "/api/jobs/{}/products/{}",
            seg(id),
            name.split('/').map(seg).collect::<Vec<_>>().join("/")
        );
        let bytes = c.download(&path, &dest)?;
        if !json {
            out(&format!("{} ({bytes} bytes)\n", dest.display()));
        }
        written.push(
            serde_json::json!({"name": name, "size": bytes, "path": dest.display().to_string()}),
        );
    }
    if json {
        print_json(&serde_json::json!({ "id": id, "products": written }));
    } else {
        eprintln!(
            "job {id}: {} product(s) written into {}",
            written.len(),
            dir.display()
        );
    }
    Ok(())
}

pub fn deploy(args: DeployArgs) -> i32 {
    let Some(c) = args.client.connect("deploy") else {
        return exit::USAGE;
    };
    let r = (|| {
        let mut parts = model_parts(&args.model)?;
        if let Some(n) = &args.name {
            parts.push(Part::text("name", n.clone()));
        }
        if let Some(n) = args.batch_max {
            parts.push(Part::text("scoreBatchMax", n.to_string()));
        }
        if let Some(n) = args.batch_wait_ms {
            parts.push(Part::text("scoreBatchWaitMs", n.to_string()));
        }
        let v = value(c.upload("PUT", "/api/deployment/upload", &parts)?)?;
        show_deployment(&v, args.client.json);
        Ok(())
    })();
    report(r, "deploy")
}

pub fn undeploy(args: UndeployArgs) -> i32 {
    let Some(c) = args.client.connect("undeploy") else {
        return exit::USAGE;
    };
    let r = (|| {
        let a = c.delete("/api/deployment")?;
        if a.status >= 400 {
            return Err(Failed(error_text(&a), exit::ERROR));
        }
        if !args.client.json {
            out("model undeployed\n");
        }
        Ok(())
    })();
    report(r, "undeploy")
}

/// `engine stream attach|list|detach`.
pub fn stream(args: StreamArgs) -> i32 {
    let Some(c) = args.client.connect("stream") else {
        return exit::USAGE;
    };
    let json = args.client.json;
    let r = (|| match &args.command {
        StreamCommand::Attach {
            slot,
            descriptor,
            dry_run,
        } => {
            let body = absolute_file_path(descriptor)?;
            let query = if *dry_run { "?dry-run=true" } else { "" };
            let v = value(c.put(
                &format!("/2/active/stream/{slot}{query}"),
                "application/json",
                body.as_bytes(),
            )?)?;
            if json || *dry_run {
                print_json(&v);
            } else {
                out(&stream_table(std::slice::from_ref(&v)));
            }
            Ok(())
        }
        StreamCommand::List => {
            let v = value(c.get("/2/active/stream")?)?;
            if json {
                print_json(&v);
            } else {
                let streams = v["streams"].as_array().cloned().unwrap_or_default();
                out(&stream_table(&streams));
            }
            Ok(())
        }
        StreamCommand::Detach { slot } => {
            let a = c.delete(&format!("/2/active/stream/{slot}"))?;
            if a.status >= 400 {
                return Err(Failed(error_text(&a), exit::ERROR));
            }
            if !json {
                out(&format!("stream on slot {slot} detached\n"));
            }
            Ok(())
        }
    })();
    report(r, "stream")
}

/// The descriptor as sent: a `file` stream's relative path made absolute (the engine reads
/// and writes paths of its machine from their root), anything else as given.
fn absolute_file_path(descriptor: &str) -> Result<String, Failed> {
    use endpoints::descriptor::Transport;
    let Ok(mut parsed) = endpoints::StreamDescriptor::parse(descriptor) else {
        // The engine says what is wrong with it.
        return Ok(descriptor.to_owned());
    };
    let Transport::File { path } = &mut parsed.transport else {
        return Ok(descriptor.to_owned());
    };
    if Path::new(path.as_str()).is_absolute() {
        return Ok(descriptor.to_owned());
    }
    let abs = std::path::absolute(path.as_str())
        .map_err(|e| Failed(format!("{path}: {e}"), exit::USAGE))?;
    *path = abs.display().to_string();
    Ok(parsed.to_json().to_string())
}

fn stream_table(streams: &[serde_json::Value]) -> String {
    let rows: Vec<Vec<String>> = streams
        .iter()
        .map(|v| {
            let mut state = s(&v["state"]);
            if let Some(why) = v["reason"].as_str() {
                state = format!("{state}: {why}");
            }
            vec![
                s(&v["slot"]),
                s(&v["endpoint"]),
                state,
                s(&v["recordsIn"]),
                s(&v["recordsOut"]),
                s(&v["recordsRejected"]),
                s(&v["recordsFailed"]),
                s(&v["lag"]),
            ]
        })
        .collect();
    table(
        &[
            "SLOT", "ENDPOINT", "STATE", "IN", "OUT", "REJECTED", "FAILED", "LAG",
        ],
        &rows,
    )
}

fn show_deployment(v: &serde_json::Value, json: bool) {
    if json {
        print_json(v);
        return;
    }
    let f = &v["functions"];
    out(&table(
        &[
            "NAME", "LANGUAGE", "SCORE", "INIT", "STATE", "SCORED", "SINCE",
        ],
        &[vec![
            s(&v["name"]),
            s(&v["language"]),
            s(&f["score"]),
            s(&f["init"]),
            s(&v["workerState"]),
            s(&v["recordsScored"]),
            s(&v["since"]),
        ]],
    ));
}

/// Each line of standard input is one record sent to the roundtrip route; each answer is
/// printed on its own line.
pub fn score(args: ScoreArgs) -> i32 {
    let Some(c) = args.client.connect("score") else {
        return exit::USAGE;
    };
    let mut path = format!("/api/roundtrip/{}/{}", args.input_slot, args.output_slot);
    if let Some(t) = args.timeout {
        path += &format!("?timeout={t}");
    }
    let r = (|| {
        let mut failed = 0u64;
        let mut hinted = false;
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let n = n + 1;
            let line = line.map_err(|e| {
                Failed(
                    format!("cannot read standard input at line {n}: {e}"),
                    exit::ERROR,
                )
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let a = c
                .post(&path, "application/json", line.as_bytes())
                .map_err(|e| Failed(format!("line {n}: {e}"), exit::ERROR))?;
            match a.status {
                200 => out(&format!(
                    "{}\n",
                    String::from_utf8_lossy(&a.body).trim_end()
                )),
                204 => {}
                _ => {
                    failed += 1;
                    eprintln!("engine score: line {n}: {}", answer_error(&a));
                    if a.status == 422 && !hinted {
                        hinted = true;
                        eprintln!(
                            "engine score: the model's traceback is in its log: engine status --log"
                        );
                    }
                }
            }
        }
        if failed > 0 {
            return Err(Failed(format!("{failed} record(s) failed"), 1));
        }
        Ok(())
    })();
    report(r, "score")
}

/// The deployed model's log lines, as `engine job log` prints a job's; nothing deployed
/// says so.
fn print_deployment_log(c: &Client) -> Result<(), Failed> {
    let a = c.get("/api/deployment/log")?;
    if a.status == 404 {
        out("no model is deployed: no deployment log\n");
        return Ok(());
    }
    let v = value(a)?;
    print_log_lines(&v);
    Ok(())
}

/// The engine's error, with its detail when it gives one.
fn answer_error(a: &Answer) -> String {
    let text = error_text(a);
    match a.detail.as_deref().map(str::trim) {
        Some(detail) if !detail.is_empty() && !text.contains(detail) => {
            format!("{text}: {detail}")
        }
        _ => text,
    }
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Ask `/ready` instead: whether the deployed model is loaded and its workers warm.
    #[arg(long)]
    pub ready: bool,
    /// Give up (not healthy) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub timeout: u64,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A probe for container health checks and scripts: exit 0 when the engine answers
/// `/1/health` (with `--ready`: `/ready`) with 200, 1 otherwise (not ready, not reachable,
/// no answer within the timeout). Both routes are open, so no token is needed.
pub fn health(args: HealthArgs) -> i32 {
    let what = if args.ready {
        "health --ready"
    } else {
        "health"
    };
    // The client waits long for big answers; a probe must not.
    let within = Duration::from_secs(args.timeout.max(1));
    let Some(c) = args.client.connect_within(what, Some(within)) else {
        return exit::USAGE;
    };
    let path = if args.ready { "/ready" } else { "/1/health" };
    let answer = match c.get(path) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "engine {what}: {} did not answer (waited {} s at most): {e}",
                engine_url(&args.client.engine),
                within.as_secs()
            );
            return exit::FAILURE;
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    if args.client.json {
        print_json(&v);
    } else if args.ready && answer.status == 200 {
        out(&format!(
            "ready: model {}, {} worker(s)\n",
            s(&v["model"]),
            s(&v["workers"])
        ));
    } else if args.ready {
        out(&format!("not ready: {}\n", s(&v["reason"])));
    } else if answer.status == 200 {
        out(&format!(
            "ok: engine {} release {}\n",
            s(&v["id"]),
            s(&v["release"])
        ));
    } else {
        out(&format!("not healthy: {}\n", error_text(&answer)));
    }
    if answer.status == 200 {
        exit::OK
    } else {
        exit::FAILURE
    }
}

pub fn status(args: StatusArgs) -> i32 {
    let Some(c) = args.client.connect("status") else {
        return exit::USAGE;
    };
    let r = (|| {
        let v = value(c.get("/api/engine")?)?;
        if args.client.json {
            if args.log {
                let log = value(c.get("/api/deployment/log")?)?;
                print_json(&serde_json::json!({"engine": v, "deploymentLog": log}));
            } else {
                print_json(&v);
            }
            return Ok(());
        }
        let jobs = &v["jobs"];
        let tags: Vec<String> = v["tags"].as_array().into_iter().flatten().map(s).collect();
        let mut t = table(
            &[
                "NAME", "STATE", "RELEASE", "TAGS", "RUNNING", "WAITING", "COMPLETE", "FAILED",
            ],
            &[vec![
                s(&v["name"]),
                s(&v["state"]),
                s(&v["release"]),
                if tags.is_empty() {
                    "-".into()
                } else {
                    tags.join(",")
                },
                s(&jobs["running"]),
                s(&jobs["waiting"]),
                s(&jobs["complete"]),
                s(&jobs["failed"]),
            ]],
        );
        if v["deployedModel"].is_object() {
            let d = &v["deployedModel"];
            t += &format!(
                "deployed: {} ({}), {} scored, worker {}\n",
                s(&d["name"]),
                s(&d["language"]),
                s(&d["recordsScored"]),
                s(&d["workerState"])
            );
        }
        out(&t);
        if args.log {
            print_deployment_log(&c)?;
        }
        Ok(())
    })();
    report(r, "status")
}

/// A log answer's lines (`{"lines": [{at, level, source, message}]}`), one a line.
fn print_log_lines(v: &serde_json::Value) {
    for l in v["lines"].as_array().into_iter().flatten() {
        out(&format!(
            "{} {} {} {}\n",
            s(&l["at"]),
            s(&l["level"]),
            s(&l["source"]),
            s(&l["message"]).trim_end()
        ));
    }
}

//! The engine side: spawning a worker process and talking to it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtime_core::{
    AllRecordsFunction, Error, InitContext, JobLog, LogLine, LogSource, ModelSpec, Result,
    ScoreItem, ScoreOutcome, Session, SessionConfig, Slot, Value,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::console::ConsoleLimits;
use crate::limits::WorkerLimits;
use crate::protocol::{
    decode_body, encode_frame, frame_len, FromWorker, ItemsRef, LoadSpec, ToWorkerRef, WireInit,
    WireOutcome, PROTOCOL_VERSION,
};
use crate::serve::PROTOCOL_FD;
use crate::supervisor::{spawn_error, Broken, WorkerProcess};

/// How to start a worker process.
#[derive(Clone, Debug, Default)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The environment the worker starts from; `None`: the engine's own, whole. See
    /// [`crate::env::worker_environment`].
    pub base_env: Option<Vec<(OsString, OsString)>>,
    /// Set on top of `base_env`.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
    /// Per-record timeout and memory limit, enforced by the engine.
    pub limits: WorkerLimits,
    /// Bounds on the model's console output in the job's log.
    pub console: ConsoleLimits,
}

impl WorkerCommand {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        WorkerCommand {
            program: program.into(),
            ..WorkerCommand::default()
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn with_limits(mut self, limits: WorkerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The worker starts from exactly these variables instead of the engine's environment.
    pub fn with_base_env(mut self, vars: Vec<(OsString, OsString)>) -> Self {
        self.base_env = Some(vars);
        self
    }

    pub fn with_console(mut self, console: ConsoleLimits) -> Self {
        self.console = console;
        self
    }
}

/// How long a worker that closed its connection gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long a shutting-down worker gets to run `end` and exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A scored batch goes to the worker in this many chunks, two in flight.
const SCORE_CHUNKS: usize = 4;
/// Batches smaller than this go as one chunk: a frame each way costs more than it saves.
const MIN_SCORE_CHUNK: usize = 128;
/// How long the frames a worker wrote just before it died are waited for.
const LAST_WORDS: Duration = Duration::from_millis(100);

/// What the worker said about itself once the model was loaded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerInfo {
    pub pid: u32,
    /// Facts from the language runner (`("python", "3.11.7")`).
    pub facts: Vec<(String, String)>,
}

/// A running worker process, speaking the protocol over a socket pair (its fd 3), with its
/// stdout and stderr drained into the job's log. Dropping it kills the process.
///
/// Besides [`Session::score`] (send a batch, wait for its outcomes) it can pipeline:
/// [`WorkerSession::submit_score`] sends a batch without waiting, and
/// [`WorkerSession::next_score_result`] returns the outcomes of the oldest batch not yet
/// returned, so the worker scores the next batch while the engine handles the last one.
pub struct WorkerSession {
    process: WorkerProcess,
    reader: OwnedReadHalf,
    writer: Option<mpsc::Sender<Vec<u8>>>,
    writer_task: JoinHandle<()>,
    failed_seqno: Option<u64>,
    log: Arc<dyn JobLog>,
    /// Batches submitted and not yet answered: `(id, items)`, oldest first (their items
    /// are with the supervisor, which names the record a worker dies on).
    in_flight: VecDeque<(u64, usize)>,
    next_batch: u64,
    body: Vec<u8>,
    broken: Option<Broken>,
    info: WorkerInfo,
    /// The loaded model takes record sets (`recordsets.<slot>: true`): its batches go
    /// whole, since a record-set model gets its batch as one data frame.
    whole_batches: bool,
}

impl std::fmt::Debug for WorkerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSession")
            .field("pid", &self.process.pid())
            .field("in_flight", &self.in_flight.len())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl WorkerSession {
    /// Starts a worker and waits for its greeting. Its stdout and stderr lines go to `log`
    /// as the model's console.
    pub async fn spawn(command: &WorkerCommand, log: Arc<dyn JobLog>) -> Result<WorkerSession> {
        let (engine_end, worker_end) =
            std::os::unix::net::UnixStream::pair().map_err(|e| spawn_error(command, e))?;
        let process =
            WorkerProcess::spawn(command, &[(worker_end.as_fd(), PROTOCOL_FD)], log.clone())?;
        drop(worker_end);
        let pid = process.pid();

        engine_end
            .set_nonblocking(true)
            .map_err(|e| spawn_error(command, e))?;
        let stream =
            tokio::net::UnixStream::from_std(engine_end).map_err(|e| spawn_error(command, e))?;
        let (reader, mut write_half) = stream.into_split();
        // Frames are written by their own task, so the engine can read outcomes while a
        // large batch is still being written (pipelining never deadlocks on full buffers).
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
        let writer_task = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if write_half.write_all(&frame).await.is_err() {
                    break;
                }
            }
        });

        let mut session = WorkerSession {
            process,
            reader,
            writer: Some(tx),
            writer_task,
            failed_seqno: None,
            log,
            in_flight: VecDeque::new(),
            next_batch: 1,
            body: Vec::with_capacity(1 << 16),
            broken: None,
            info: WorkerInfo {
                pid,
                facts: Vec::new(),
            },
            whole_batches: false,
        };
        match session.read_message().await? {
            FromWorker::Hello { version, pid } if version == PROTOCOL_VERSION => {
                session.info.pid = pid;
                Ok(session)
            }
            FromWorker::Hello { version, .. } => Err(session.protocol(format!(
                "the worker {} speaks protocol version {version}, the engine {PROTOCOL_VERSION}",
                command.program.display()
            ))),
            other => Err(session.protocol(format!(
                "the worker began with {}, not a greeting",
                message_name(&other)
            ))),
        }
    }

    /// Spawns a worker, loads `model` into it and calls its init: what a runner's
    /// `start` does. `config.env` is added to the command's environment.
    pub async fn start(
        command: &WorkerCommand,
        model: &ModelSpec,
        config: SessionConfig,
    ) -> Result<WorkerSession> {
        let mut command = command.clone();
        command
            .env
            .extend(config.env.iter().map(|(k, v)| (k.into(), v.into())));
        let mut session = WorkerSession::spawn(&command, config.log.clone()).await?;
        let info = session.load(model).await?;
        let facts: Vec<String> = info.facts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        config.log.info(
            LogSource::Runner,
            format!(
                "worker pid {} loaded {} ({})",
                info.pid,
                model.main_source.display(),
                facts.join(", ")
            ),
        );
        session.init(&config.init).await?;
        Ok(session)
    }

    pub fn info(&self) -> &WorkerInfo {
        &self.info
    }

    /// Batches submitted whose outcomes were not yet returned.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub async fn load(&mut self, model: &ModelSpec) -> Result<WorkerInfo> {
        let spec = LoadSpec::from_model(model);
        self.whole_batches = model.recordsets.values().any(|on| *on);
        self.request(&ToWorkerRef::Load {
            version: PROTOCOL_VERSION,
            spec: &spec,
        })
        .await?;
        match self.read_message().await? {
            FromWorker::Loaded { info } => {
                self.info.facts = info;
                Ok(self.info.clone())
            }
            other => Err(self.unexpected(other, "Loaded")),
        }
    }

    pub async fn init(&mut self, init: &InitContext) -> Result<()> {
        self.request(&ToWorkerRef::Init(&WireInit::from(init)))
            .await?;
        self.expect_done().await
    }

    /// Sends a batch to be scored without waiting for its outcomes.
    pub async fn submit_score(&mut self, batch: Vec<ScoreItem>) -> Result<()> {
        self.usable()?;
        let id = self.next_batch;
        self.next_batch += 1;
        let mut frame = Vec::with_capacity(64 + 48 * batch.len());
        encode_frame(
            &mut frame,
            &ToWorkerRef::Score {
                batch: id,
                items: ItemsRef(&batch),
            },
        )
        .map_err(Error::Protocol)?;
        self.in_flight.push_back((id, batch.len()));
        self.process.batch_started(id, batch);
        self.send_frame(frame).await
    }

    /// The outcomes of the oldest submitted batch, one per item, in order.
    pub async fn next_score_result(&mut self) -> Result<Vec<ScoreOutcome>> {
        self.usable()?;
        let Some(expected) = self.in_flight.front().copied() else {
            return Err(Error::Protocol(
                "asked for score outcomes with no batch submitted".into(),
            ));
        };
        let msg = self.read_message().await?;
        match msg {
            FromWorker::Scored { batch, outcomes } => {
                self.in_flight.pop_front();
                self.process.batch_done(expected.0);
                if batch != expected.0 || outcomes.len() != expected.1 {
                    return Err(self.protocol(format!(
                        "expected {} outcomes of batch {}, got {} of batch {batch}",
                        expected.1,
                        expected.0,
                        outcomes.len()
                    )));
                }
                Ok(outcomes
                    .into_iter()
                    .map(|o| match o {
                        WireOutcome::Ok(outs) => {
                            Ok(outs.into_iter().map(|(s, v)| (Slot(s), v)).collect())
                        }
                        WireOutcome::Failed { message, traceback } => {
                            Err(runtime_core::RecordFailure { message, traceback })
                        }
                    })
                    .collect())
            }
            FromWorker::Failed(f) => {
                self.in_flight.pop_front();
                self.process.batch_done(expected.0);
                Err(f.into())
            }
            other => Err(self.unexpected(other, "Scored")),
        }
    }

    /// Sends Shutdown (the model's `end` runs), waits for the worker to exit and for its
    /// last console lines.
    pub async fn shutdown(mut self) -> Result<()> {
        self.idle("close")?;
        self.request(&ToWorkerRef::Shutdown).await?;
        let ended = self.expect_done().await;
        self.writer = None;
        if let Some(reason) = self.process.wait_exit(SHUTDOWN_GRACE).await? {
            self.log.warn(
                LogSource::Engine,
                format!("the model's worker {reason} at shutdown"),
            );
        }
        ended
    }

    fn usable(&self) -> Result<()> {
        match &self.broken {
            Some(b) => Err(b.error()),
            None => Ok(()),
        }
    }

    fn idle(&self, what: &str) -> Result<()> {
        self.usable()?;
        if !self.in_flight.is_empty() {
            return Err(Error::Protocol(format!(
                "{what} while {} score batches are in flight",
                self.in_flight.len()
            )));
        }
        Ok(())
    }

    fn protocol(&mut self, message: String) -> Error {
        let b = Broken::Protocol(message);
        let e = b.error();
        self.broken = Some(b);
        // The stream is out of step: nothing more can be said to this worker.
        self.process.kill();
        e
    }

    fn unexpected(&mut self, got: FromWorker, wanted: &str) -> Error {
        match got {
            FromWorker::Failed(f) => f.into(),
            other => {
                let m = format!(
                    "expected {wanted} from the worker, got {}",
                    message_name(&other)
                );
                self.protocol(m)
            }
        }
    }

    async fn expect_done(&mut self) -> Result<()> {
        match self.read_message().await? {
            FromWorker::Done => Ok(()),
            other => Err(self.unexpected(other, "Done")),
        }
    }

    async fn request(&mut self, msg: &ToWorkerRef<'_>) -> Result<()> {
        self.usable()?;
        let mut frame = Vec::new();
        encode_frame(&mut frame, msg).map_err(Error::Protocol)?;
        self.send_frame(frame).await
    }

    async fn send_frame(&mut self, frame: Vec<u8>) -> Result<()> {
        let sent = match &self.writer {
            Some(w) => w.send(frame).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.died().await)
        }
    }

    async fn read_message(&mut self) -> Result<FromWorker> {
        loop {
            self.usable()?;
            // Watching the process as well as the socket: a process the model forked may
            // hold the socket open after the worker itself is gone.
            let read = tokio::select! {
                biased;
                r = read_frame(&mut self.reader, &mut self.body) => r,
                _ = self.process.exited() => {
                    // The process is gone, but what it wrote before it died may not have
                    // been seen yet: read what is left before calling it dead.
                    tokio::time::timeout(LAST_WORDS, read_frame(&mut self.reader, &mut self.body))
                        .await
                        .unwrap_or(Err(None))
                }
            };
            match read {
                Ok(()) => {}
                Err(Some(e)) => return Err(self.protocol(e)),
                Err(None) => return Err(self.died().await),
            }
            let msg: FromWorker = match decode_body(&self.body) {
                Ok(m) => m,
                Err(e) => return Err(self.protocol(e)),
            };
            match msg {
                FromWorker::Log { level, message } => {
                    self.log
                        .log(LogLine::new(level.into(), LogSource::Runner, message));
                }
                other => return Ok(other),
            }
        }
    }

    /// The connection broke: find out how the worker ended and which record it was on.
    async fn died(&mut self) -> Error {
        if let Some(b) = &self.broken {
            return b.error();
        }
        let death = self.process.death(EXIT_GRACE).await;
        self.failed_seqno = death.seqno;
        let e = death.broken.error();
        self.broken = Some(death.broken);
        e
    }
}

/// Reads one frame body into `body`. `Err(None)`: the connection ended or failed;
/// `Err(Some(_))`: the frame is malformed.
async fn read_frame(
    reader: &mut OwnedReadHalf,
    body: &mut Vec<u8>,
) -> std::result::Result<(), Option<String>> {
    let mut header = [0u8; 4];
    reader.read_exact(&mut header).await.map_err(|_| None)?;
    let len = frame_len(header).map_err(Some)?;
    body.clear();
    body.resize(len, 0);
    reader.read_exact(body).await.map_err(|_| None)?;
    Ok(())
}

fn message_name(m: &FromWorker) -> &'static str {
    match m {
        FromWorker::Hello { .. } => "Hello",
        FromWorker::Loaded { .. } => "Loaded",
        FromWorker::Done => "Done",
        FromWorker::Scored { .. } => "Scored",
        FromWorker::Outputs(_) => "Outputs",
        FromWorker::Failed(_) => "Failed",
        FromWorker::Log { .. } => "Log",
    }
}

impl Drop for WorkerSession {
    fn drop(&mut self) {
        // The process is killed by its supervisor's drop.
        self.writer_task.abort();
    }
}

#[async_trait]
impl Session for WorkerSession {
    /// Sends the batch as a few chunks with two in flight, so the worker scores one chunk
    /// while the engine encodes the next or decodes the last: neither side waits for the
    /// other's whole batch. A record-set model's batch goes whole: it is one data frame,
    /// one model call (four calls would pay the frame's and the model's fixed cost four
    /// times).
    async fn score(&mut self, batch: Vec<ScoreItem>) -> Result<Vec<ScoreOutcome>> {
        self.idle("score")?;
        let n = batch.len();
        let mut chunks = Vec::with_capacity(SCORE_CHUNKS);
        let size = if self.whole_batches {
            n.max(1)
        } else {
            n.div_ceil(SCORE_CHUNKS).max(MIN_SCORE_CHUNK)
        };
        let mut rest = batch;
        while rest.len() > size {
            let tail = rest.split_off(size);
            chunks.push(rest);
            rest = tail;
        }
        chunks.push(rest);
        let mut pending = chunks.into_iter();
        for chunk in pending.by_ref().take(2) {
            self.submit_score(chunk).await?;
        }
        let mut outcomes = Vec::with_capacity(n);
        while self.in_flight() > 0 {
            match self.next_score_result().await {
                Ok(o) => outcomes.extend(o),
                Err(e) => {
                    // The worker refused a chunk but lives on: take the answers to the
                    // chunks still in flight, so the session stays in step.
                    while self.in_flight() > 0 && self.broken.is_none() {
                        if self.next_score_result().await.is_err() {
                            break;
                        }
                    }
                    return Err(e);
                }
            }
            if let Some(chunk) = pending.next() {
                self.submit_score(chunk).await?;
            }
        }
        Ok(outcomes)
    }

    async fn collect(&mut self, slot: Slot, batch: Vec<Value>) -> Result<()> {
        self.idle("collect")?;
        self.request(&ToWorkerRef::Collect {
            slot: slot.0,
            values: &batch,
        })
        .await?;
        self.expect_done().await
    }

    async fn run_all(&mut self, function: AllRecordsFunction) -> Result<Vec<(Slot, Value)>> {
        self.idle(function.as_str())?;
        self.request(&ToWorkerRef::RunAll(function.into())).await?;
        match self.read_message().await? {
            FromWorker::Outputs(outs) => Ok(outs.into_iter().map(|(s, v)| (Slot(s), v)).collect()),
            other => Err(self.unexpected(other, "Outputs")),
        }
    }

    async fn close(self: Box<Self>) -> Result<()> {
        (*self).shutdown().await
    }

    fn failed_seqno(&self) -> Option<u64> {
        self.failed_seqno
    }
}

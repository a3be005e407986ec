//! The worker side: the loop a worker process runs on fd 3, dispatching to the language
//! runner's [`WorkerBackend`].

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;

use runtime_core::{AllRecordsFunction, InitContext, Level, ModelSpec, ScoreOutcome, Slot, Value};

use crate::progress::ProgressPage;
use crate::protocol::{
    decode_body, read_frame_blocking, write_frame_blocking, FromWorker, ToWorker, WireFailure,
    WireItem, WireOutcome, PROTOCOL_VERSION,
};

/// The fd the protocol socket has in the worker.
pub const PROTOCOL_FD: i32 = 3;

/// What the language runner gets along with each request: the progress page and a way to
/// send log lines to the job's log.
#[derive(Debug)]
pub struct Context {
    progress: ProgressPage,
    logs: Vec<(Level, String)>,
}

impl Context {
    /// The shared progress page. The backend calls `set_record(i)` (1-based) before scoring
    /// the i-th record of a batch, or maps `progress_fd()` and writes word 1 itself.
    pub fn progress(&self) -> &ProgressPage {
        &self.progress
    }

    /// A line for the job's log, from the runner (not the model's console).
    pub fn log(&mut self, level: Level, message: impl Into<String>) {
        self.logs.push((level, message.into()));
    }
}

/// What a language runner implements. Every method runs on the worker's one thread.
pub trait WorkerBackend {
    /// Loads the model; returns facts for the log (`("python", "3.11.7")`).
    fn load(
        &mut self,
        model: ModelSpec,
        cx: &mut Context,
    ) -> Result<Vec<(String, String)>, WireFailure>;

    fn init(&mut self, init: InitContext, cx: &mut Context) -> Result<(), WireFailure>;

    /// One outcome per item, in order. An `Err` fails the session (not just the batch).
    fn score_batch(
        &mut self,
        items: Vec<WireItem>,
        cx: &mut Context,
    ) -> Result<Vec<ScoreOutcome>, WireFailure>;

    fn collect(
        &mut self,
        slot: Slot,
        values: Vec<Value>,
        cx: &mut Context,
    ) -> Result<(), WireFailure>;

    fn run_all(
        &mut self,
        function: AllRecordsFunction,
        cx: &mut Context,
    ) -> Result<Vec<(Slot, Value)>, WireFailure>;

    /// Calls the model's `end` if it has one.
    fn end(&mut self, cx: &mut Context) -> Result<(), WireFailure>;

    /// Runs a blocking wait for the next request. A runner holding an interpreter lock
    /// releases it here so the model's own threads can run meanwhile.
    fn idle<T: Send>(&mut self, wait: impl FnOnce() -> T + Send) -> T {
        wait()
    }
}

/// Serves requests on fd 3 until Shutdown or the engine goes away; returns the process exit
/// code (0 after Shutdown, 2 on a protocol or I/O failure).
pub fn serve(backend: &mut impl WorkerBackend) -> i32 {
    // Safety: F_GETFD only asks whether fd 3 is open.
    if unsafe { libc::fcntl(PROTOCOL_FD, libc::F_GETFD) } < 0 {
        let _ = writeln!(
            std::io::stderr(),
            "model worker: fd 3 is not open; this program is started by the engine"
        );
        return 2;
    }
    // Programs the model runs must not inherit the protocol socket or the progress page
    // (a process holding the socket would hide the worker's death from the engine).
    for fd in [PROTOCOL_FD, crate::progress::PROGRESS_FD] {
        // Safety: F_SETFD on an fd number; harmless if it is not open.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    crate::lifeline::guard(PROTOCOL_FD);
    // Safety: the engine passes the protocol socket as fd 3; this is the one place that takes
    // ownership of it.
    let conn = unsafe { File::from_raw_fd(PROTOCOL_FD) };
    let mut server = Server {
        conn,
        out: Vec::with_capacity(1 << 16),
        cx: Context {
            progress: ProgressPage::inherited(),
            logs: Vec::new(),
        },
    };
    match server.run(backend) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "model worker: {e}");
            2
        }
    }
}

struct Server {
    conn: File,
    out: Vec<u8>,
    cx: Context,
}

impl Server {
    fn send(&mut self, msg: &FromWorker) -> std::io::Result<()> {
        write_frame_blocking(&mut self.conn, &mut self.out, msg)
    }

    fn flush_logs(&mut self) -> std::io::Result<()> {
        for (level, message) in std::mem::take(&mut self.cx.logs) {
            self.send(&FromWorker::Log {
                level: level.into(),
                message,
            })?;
        }
        Ok(())
    }

    fn answer(&mut self, msg: Result<FromWorker, WireFailure>) -> std::io::Result<()> {
        self.flush_logs()?;
        match msg {
            Ok(m) => self.send(&m),
            Err(f) => self.send(&FromWorker::Failed(f)),
        }
    }

    fn run(&mut self, backend: &mut impl WorkerBackend) -> std::io::Result<()> {
        self.send(&FromWorker::Hello {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
        })?;
        let mut body = Vec::with_capacity(1 << 16);
        loop {
            let conn = &mut self.conn;
            let got = backend.idle(|| read_frame_blocking(conn, &mut body))?;
            if got.is_none() {
                // The engine went away without a Shutdown: nothing left to answer, and
                // nothing the model started may outlive it.
                crate::lifeline::engine_gone();
            }
            let request: ToWorker = match decode_body(&body) {
                Ok(r) => r,
                Err(e) => {
                    self.answer(Err(WireFailure::Worker(e)))?;
                    continue;
                }
            };
            let cx = &mut self.cx;
            let reply = match request {
                ToWorker::Load { version, spec } => {
                    if version != PROTOCOL_VERSION {
                        Err(WireFailure::Worker(format!(
                            "engine speaks protocol {version}, this worker {PROTOCOL_VERSION}"
                        )))
                    } else {
                        match (*spec).into_model() {
                            Ok(model) => backend
                                .load(model, cx)
                                .map(|info| FromWorker::Loaded { info }),
                            Err(e) => Err(WireFailure::Worker(e)),
                        }
                    }
                }
                ToWorker::Init(init) => backend.init(init.into(), cx).map(|()| FromWorker::Done),
                ToWorker::Score { batch, items } => {
                    cx.progress.set_batch(batch);
                    let outcomes = backend.score_batch(items, cx);
                    cx.progress.set_record(0);
                    outcomes.map(|o| FromWorker::Scored {
                        batch,
                        outcomes: o
                            .into_iter()
                            .map(|r| match r {
                                Ok(outs) => WireOutcome::Ok(
                                    outs.into_iter().map(|(s, v)| (s.0, v)).collect(),
                                ),
                                Err(f) => WireOutcome::Failed {
                                    message: f.message,
                                    traceback: f.traceback,
                                },
                            })
                            .collect(),
                    })
                }
                ToWorker::Collect { slot, values } => backend
                    .collect(Slot(slot), values, cx)
                    .map(|()| FromWorker::Done),
                ToWorker::RunAll(f) => backend.run_all(f.into(), cx).map(|outs| {
                    FromWorker::Outputs(outs.into_iter().map(|(s, v)| (s.0, v)).collect())
                }),
                ToWorker::Shutdown => {
                    crate::lifeline::ending();
                    let r = backend.end(cx).map(|()| FromWorker::Done);
                    self.answer(r)?;
                    return Ok(());
                }
            };
            self.answer(reply)?;
        }
    }
}

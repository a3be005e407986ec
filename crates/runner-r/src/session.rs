//! The engine side of an R worker: requests and replies over pipes, supervision (and the
//! per-record time and memory limits, read off the progress page the driver writes, and the
//! batches in flight) by `worker::WorkerProcess`, the supervisor of every worker.

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runtime_core::{
    AllRecordsFunction, Error, InitContext, JobLog, LogSource, ModelSpec, RecordFailure, Result,
    ScoreItem, ScoreOutcome, Session, SessionConfig, Slot, Value,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use worker::{Broken, WorkerCommand, WorkerLimits, WorkerProcess};

use crate::rds::{self, RObj, RValue, Writer};

/// How long a worker whose pipe broke gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long a worker gets to run `end` and exit.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// R reads a frame with one `readBin`, whose length is an R integer.
const MAX_FRAME: usize = i32::MAX as usize;

/// One running R model: an `Rscript` process. Dropping it kills the process.
pub struct RSession {
    process: WorkerProcess,
    requests: Option<pipe::Sender>,
    replies: pipe::Receiver,
    log: Arc<dyn JobLog>,
    next_batch: u64,
    failed_seqno: Option<u64>,
    broken: Option<Broken>,
    body: Vec<u8>,
    /// Input slots whose batches reach the model as one data.frame (`recordsets.<slot>`).
    recordsets: Vec<u32>,
    /// The driver script, removed with the session.
    _driver: tempfile::TempPath,
}

impl std::fmt::Debug for RSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RSession")
            .field("pid", &self.process.pid())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(context, e)
}

/// A pipe whose both ends close on exec (the child gets its end through dup2).
fn pipe_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // Safety: pipe2 writes two new fds into the array we pass; the result is checked.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Safety: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

enum Field<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    Ints(&'a [i32]),
    Strs(&'a [&'a str]),
}

fn request(fields: &[(&str, Field<'_>)]) -> Vec<u8> {
    let mut w = Writer::new();
    w.named_list(fields, |w, f| match f {
        Field::Str(s) => w.string(s),
        Field::OptStr(Some(s)) => w.string(s),
        Field::OptStr(None) => w.null(),
        Field::Ints(v) => w.ints(v),
        Field::Strs(v) => w.strings(v.iter().map(|s| Some(*s))),
    });
    w.finish()
}

fn string_field(v: &RValue, name: &str) -> String {
    match v.field(name).map(|f| &f.obj) {
        Some(RObj::Character(s)) => s.iter().flatten().cloned().collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

fn is_true(v: Option<&RValue>) -> bool {
    matches!(v.map(|v| &v.obj), Some(RObj::Logical(b)) if b.first() == Some(&1))
}

/// Outputs as the driver sends them: `list(slots, values)`.
fn outputs(v: &RValue) -> std::result::Result<Vec<(Slot, Value)>, String> {
    let RObj::List(pair) = &v.obj else {
        return Err("the worker sent outputs in an unknown form".to_owned());
    };
    let (Some(slots), Some(values)) = (pair.first(), pair.get(1)) else {
        return Err("the worker sent outputs in an unknown form".to_owned());
    };
    let slots: Vec<i32> = match &slots.obj {
        RObj::Integer(s) => s.clone(),
        RObj::Null => Vec::new(),
        _ => return Err("the worker sent output slots in an unknown form".to_owned()),
    };
    let values: &[RValue] = match &values.obj {
        RObj::List(v) => v,
        RObj::Null => &[],
        _ => return Err("the worker sent output values in an unknown form".to_owned()),
    };
    slots
        .iter()
        .zip(values)
        .map(|(s, v)| {
            let slot = u32::try_from(*s).map_err(|_| format!("emitTo: there is no slot {s}"))?;
            let value = rds::to_value(v)
                .map_err(|e| format!("an output cannot become a record value: {e}"))?;
            Ok((Slot(slot), value))
        })
        .collect()
}

impl RSession {
    pub(crate) async fn start(
        rscript: &Path,
        base_env: Option<&[(std::ffi::OsString, std::ffi::OsString)]>,
        limits: WorkerLimits,
        model: &ModelSpec,
        config: SessionConfig,
    ) -> Result<RSession> {
        // The driver goes next to the working directory (the job's folder), never in it.
        let driver_dir = model
            .work_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        // File work, on the blocking pool.
        let driver = tokio::task::spawn_blocking(move || {
            let mut driver = tempfile::Builder::new()
                .prefix(".r-driver-")
                .suffix(".R")
                .tempfile_in(&driver_dir)
                .or_else(|_| tempfile::Builder::new().suffix(".R").tempfile())?;
            std::io::Write::write_all(&mut driver, crate::DRIVER.as_bytes())?;
            Ok(driver.into_temp_path())
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r: std::io::Result<_>| r)
        .map_err(io("cannot write the R driver script"))?;

        let mut command = WorkerCommand::new(rscript);
        command.args = vec!["--vanilla".into(), driver.as_os_str().to_owned()];
        command.base_env = base_env.map(<[_]>::to_vec);
        // R needs a UTF-8 locale to hand strings to the model as they are.
        command.env.push(("LC_CTYPE".into(), "C.UTF-8".into()));
        command
            .env
            .extend(config.env.iter().map(|(k, v)| (k.into(), v.into())));
        command.cwd = Some(model.work_dir.clone());
        command.limits = limits;

        let cannot = "cannot start the R worker";
        let (req_child, req_engine) = pipe_pair().map_err(io(cannot))?;
        let (rep_engine, rep_child) = pipe_pair().map_err(io(cannot))?;
        // Requests on fd 3, replies on fd 5; the supervisor puts the progress page at 4.
        let process = WorkerProcess::spawn(
            &command,
            &[(req_child.as_fd(), 3), (rep_child.as_fd(), 5)],
            config.log.clone(),
        )?;
        drop(req_child);
        drop(rep_child);
        let requests = pipe::Sender::from_owned_fd(req_engine).map_err(io(cannot))?;
        let replies = pipe::Receiver::from_owned_fd(rep_engine).map_err(io(cannot))?;

        let mut session = RSession {
            process,
            requests: Some(requests),
            replies,
            log: config.log.clone(),
            next_batch: 1,
            failed_seqno: None,
            broken: None,
            body: Vec::with_capacity(1 << 16),
            recordsets: model
                .recordsets
                .iter()
                .filter(|(_, on)| **on)
                .map(|(slot, _)| slot.0)
                .collect(),
            _driver: driver,
        };
        let hello = session.read_reply().await?;
        if !is_true(hello.field("ok")) {
            return Err(session.protocol("the R worker did not greet the engine".to_owned()));
        }

        let e = &model.entry_points;
        let source = model.main_source.to_string_lossy();
        let slot_score_slots: Vec<i32> = e
            .slot_scores
            .keys()
            .map(|s| i32::try_from(s.0).unwrap_or(i32::MAX))
            .collect();
        let slot_score_names: Vec<&str> = e.slot_scores.values().map(String::as_str).collect();
        let loaded = session
            .call(request(&[
                ("op", Field::Str("load")),
                ("source", Field::Str(&source)),
                ("init", Field::OptStr(e.init.as_deref())),
                ("score", Field::OptStr(e.score.as_deref())),
                ("metrics", Field::OptStr(e.metrics.as_deref())),
                ("train", Field::OptStr(e.train.as_deref())),
                ("end", Field::OptStr(e.end.as_deref())),
                ("slot_score_slots", Field::Ints(&slot_score_slots)),
                ("slot_score_names", Field::Strs(&slot_score_names)),
            ]))
            .await?;
        let info = string_field(&loaded, "info").replace('\n', " ");
        config.log.info(
            LogSource::Runner,
            format!(
                "worker pid {} loaded {} ({info})",
                session.process.pid(),
                model.main_source.display()
            ),
        );
        let (kind, raw) = match &config.init {
            InitContext::Job { raw_json } => ("job", raw_json),
            InitContext::Deployment { raw_json } => ("deployedModel", raw_json),
        };
        session
            .call(request(&[
                ("op", Field::Str("init")),
                ("kind", Field::Str(kind)),
                ("raw", Field::Str(raw)),
            ]))
            .await?;
        Ok(session)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn usable(&self) -> Result<()> {
        match &self.broken {
            Some(b) => Err(b.error()),
            None => Ok(()),
        }
    }

    fn protocol(&mut self, message: String) -> Error {
        let b = Broken::Protocol(message);
        let e = b.error();
        self.broken = Some(b);
        self.process.kill();
        e
    }

    /// Sends a request and returns its reply, turning `ok = FALSE` into the error it names.
    async fn call(&mut self, body: Vec<u8>) -> Result<RValue> {
        self.send(body).await?;
        let reply = self.read_reply().await?;
        if is_true(reply.field("ok")) {
            return Ok(reply);
        }
        let message = string_field(&reply, "message");
        let traceback = string_field(&reply, "traceback");
        Err(match string_field(&reply, "kind").as_str() {
            "load" => {
                if !traceback.is_empty() {
                    self.log.warn(LogSource::Runner, traceback);
                }
                Error::ModelLoad(message)
            }
            "failed" => Error::ModelFailed {
                function: string_field(&reply, "fn"),
                message,
                traceback,
            },
            _ => Error::Protocol(format!("the R worker refused a request: {message}")),
        })
    }

    async fn send(&mut self, body: Vec<u8>) -> Result<()> {
        self.usable()?;
        if body.len() > MAX_FRAME {
            return Err(Error::Protocol(format!(
                "a request of {} bytes is too large for the R worker",
                body.len()
            )));
        }
        let Some(w) = self.requests.as_mut() else {
            return Err(self.died().await);
        };
        let header = (body.len() as u32).to_le_bytes();
        // R reads the whole request before it writes anything, so writing it all first
        // cannot deadlock; a worker that dies meanwhile breaks the pipe.
        let sent = async {
            w.write_all(&header).await?;
            w.write_all(&body).await
        };
        let ok = tokio::select! {
            r = sent => r.is_ok(),
            _ = self.process.exited() => false,
        };
        if ok {
            Ok(())
        } else {
            Err(self.died().await)
        }
    }

    async fn read_reply(&mut self) -> Result<RValue> {
        self.usable()?;
        let replies = &mut self.replies;
        let body = &mut self.body;
        let read = async {
            let mut header = [0u8; 4];
            replies.read_exact(&mut header).await?;
            let len = u32::from_le_bytes(header) as usize;
            body.clear();
            body.resize(len, 0);
            replies.read_exact(body).await?;
            Ok::<(), std::io::Error>(())
        };
        // Watching the process as well as the pipe: a process the model started may hold
        // the pipe open after the worker itself is gone.
        let ok = tokio::select! {
            biased;
            r = read => r.is_ok(),
            _ = self.process.exited() => false,
        };
        if !ok {
            return Err(self.died().await);
        }
        match rds::read(&self.body) {
            Ok(v) => Ok(v),
            Err(e) => Err(self.protocol(format!("cannot read a reply of the R worker: {e}"))),
        }
    }

    /// The worker is gone: find out how it ended (a limit when the watchdog killed it) and
    /// which record it was on.
    async fn died(&mut self) -> Error {
        if let Some(b) = &self.broken {
            return b.error();
        }
        self.requests = None;
        let death = self.process.death(EXIT_GRACE).await;
        if death.seqno.is_some() {
            self.failed_seqno = death.seqno;
        }
        let e = death.broken.error();
        self.broken = Some(death.broken);
        e
    }

    /// A score request; a batch of a record-set slot goes as one data.frame (`frame`)
    /// instead of a list of records, and the driver answers per record all the same.
    fn score_request(&self, batch: u64, items: &[ScoreItem]) -> Vec<u8> {
        let mut w = Writer::new();
        let as_frame = items
            .first()
            .is_some_and(|i| self.recordsets.contains(&i.slot.0));
        let fields: &[&str] = if as_frame {
            &["op", "batch", "slots", "seqnos", "frame"]
        } else {
            &["op", "batch", "slots", "seqnos", "records"]
        };
        let fields: Vec<(&str, &str)> = fields.iter().map(|f| (*f, *f)).collect();
        w.named_list(&fields, |w, f| match *f {
            "op" => w.string("score"),
            "batch" => w.ints(&[i32::try_from(batch).unwrap_or(i32::MAX)]),
            "slots" => w.ints(
                &items
                    .iter()
                    .map(|i| i32::try_from(i.slot.0).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            ),
            "seqnos" => w.doubles(&items.iter().map(|i| i.seqno as f64).collect::<Vec<_>>()),
            "frame" => {
                let records: Vec<Value> = items.iter().map(|i| i.value.clone()).collect();
                w.data_frame(&records);
            }
            _ => {
                w.list_header(items.len());
                for i in items {
                    w.value(&i.value);
                }
            }
        });
        w.finish()
    }
}

impl Drop for RSession {
    fn drop(&mut self) {
        self.process.kill();
    }
}

#[async_trait]
impl Session for RSession {
    async fn score(&mut self, batch: Vec<ScoreItem>) -> Result<Vec<ScoreOutcome>> {
        self.usable()?;
        let id = self.next_batch;
        self.next_batch += 1;
        let body = self.score_request(id, &batch);
        let n = batch.len();
        self.process.batch_started(id, batch);
        let reply = self.call(body).await;
        self.process.batch_done(id);
        let reply = reply?;
        let status: Vec<i32> = match reply.field("status").map(|s| &s.obj) {
            Some(RObj::Logical(s)) => s.clone(),
            _ => Vec::new(),
        };
        let outs: &[RValue] = match reply.field("outs").map(|o| &o.obj) {
            Some(RObj::List(o)) => o,
            _ => &[],
        };
        if status.len() != n || outs.len() != n {
            return Err(self.protocol(format!(
                "expected {n} outcomes from the R worker, got {}",
                outs.len()
            )));
        }
        Ok(status
            .iter()
            .zip(outs)
            .map(|(ok, out)| {
                if *ok == 1 {
                    outputs(out).map_err(|message| RecordFailure {
                        message,
                        traceback: String::new(),
                    })
                } else {
                    let lines = match &out.obj {
                        RObj::Character(l) => l.clone(),
                        _ => Vec::new(),
                    };
                    let mut lines = lines.into_iter().map(Option::unwrap_or_default);
                    Err(RecordFailure {
                        message: lines.next().unwrap_or_default(),
                        traceback: lines.next().unwrap_or_default(),
                    })
                }
            })
            .collect())
    }

    /// Each batch goes to the worker as it comes (a data.frame), so the engine holds one
    /// batch at a time, never the whole input.
    async fn collect(&mut self, slot: Slot, batch: Vec<Value>) -> Result<()> {
        self.usable()?;
        let mut w = Writer::new();
        let fields = [("op", 0), ("slot", 1), ("frame", 2)];
        w.named_list(&fields, |w, f| match f {
            0 => w.string("collect"),
            1 => w.ints(&[i32::try_from(slot.0).unwrap_or(i32::MAX)]),
            _ => w.data_frame(&batch),
        });
        drop(batch);
        self.call(w.finish()).await.map(|_| ())
    }

    async fn run_all(&mut self, function: AllRecordsFunction) -> Result<Vec<(Slot, Value)>> {
        self.usable()?;
        let reply = self
            .call(request(&[
                ("op", Field::Str("run_all")),
                ("fn", Field::Str(function.as_str())),
            ]))
            .await?;
        let outs = reply
            .field("outs")
            .ok_or_else(|| Error::Protocol("the R worker sent no outputs".into()))?;
        outputs(outs).map_err(|message| Error::ModelFailed {
            function: function.as_str().to_owned(),
            message,
            traceback: String::new(),
        })
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.usable()?;
        let ended = self.call(request(&[("op", Field::Str("end"))])).await;
        self.requests = None;
        match self.process.wait_exit(SHUTDOWN_GRACE).await? {
            None => {}
            Some(reason) => self
                .log
                .warn(LogSource::Engine, format!("the model's R worker {reason}")),
        }
        ended.map(|_| ())
    }

    fn failed_seqno(&self) -> Option<u64> {
        self.failed_seqno
    }
}

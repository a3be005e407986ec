//! The messages engine and worker exchange, and their framing.
//!
//! A frame is a little-endian `u32` byte length followed by one MessagePack message
//! (rmp-serde's compact form: structs as arrays, enums tagged by variant name). The worker
//! speaks first with [`FromWorker::Hello`], naming its [`PROTOCOL_VERSION`]; the engine
//! refuses any other version before sending anything else.
//!
//! Records travel as [`Value`]s, never as JSON text, and a batch is one frame each way, so
//! the protocol costs two syscalls per batch, not per record.
//!
//! The engine serializes score batches from borrowed items ([`ToWorkerRef`]) so it can keep
//! the batch (to name the record a dying worker was scoring) without cloning it; the worker
//! decodes the same bytes as the owned [`ToWorker`]. Both enums must keep the same variants
//! in the same order (a test checks they agree).

use std::io::{Read, Write};
use std::path::PathBuf;

use runtime_core::{
    AllRecordsFunction, EntryPoints, InitContext, Language, ModelSpec, ScoreItem, Slot, Value,
};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u32 = 2;

/// Frames larger than this are refused as a protocol error rather than allocated.
pub const MAX_FRAME: usize = 1 << 30;

/// The model as the worker needs it: [`ModelSpec`] in wire form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    pub language: String,
    pub work_dir: PathBuf,
    pub main_source: PathBuf,
    pub init: Option<String>,
    pub score: Option<String>,
    pub metrics: Option<String>,
    pub train: Option<String>,
    pub end: Option<String>,
    pub recordsets: Vec<(u32, bool)>,
    pub import_paths: Vec<PathBuf>,
    /// Input slots with a score function of their own (`action.<slot>`).
    pub slot_scores: Vec<(u32, String)>,
}

impl LoadSpec {
    pub fn from_model(model: &ModelSpec) -> LoadSpec {
        let e = &model.entry_points;
        LoadSpec {
            language: model.language.as_str().to_owned(),
            work_dir: model.work_dir.clone(),
            main_source: model.main_source.clone(),
            init: e.init.clone(),
            score: e.score.clone(),
            metrics: e.metrics.clone(),
            train: e.train.clone(),
            end: e.end.clone(),
            recordsets: model.recordsets.iter().map(|(s, b)| (s.0, *b)).collect(),
            import_paths: model.import_paths.clone(),
            slot_scores: e
                .slot_scores
                .iter()
                .map(|(s, f)| (s.0, f.clone()))
                .collect(),
        }
    }

    /// Back to the domain type; an unknown language is a protocol error.
    pub fn into_model(self) -> Result<ModelSpec, String> {
        let language = match self.language.as_str() {
            "python" => Language::Python,
            "R" => Language::R,
            other => return Err(format!("unknown model language '{other}'")),
        };
        Ok(ModelSpec {
            language,
            work_dir: self.work_dir,
            main_source: self.main_source,
            entry_points: EntryPoints {
                init: self.init,
                score: self.score,
                metrics: self.metrics,
                train: self.train,
                end: self.end,
                slot_scores: self
                    .slot_scores
                    .into_iter()
                    .map(|(s, f)| (Slot(s), f))
                    .collect(),
            },
            recordsets: self
                .recordsets
                .into_iter()
                .map(|(s, b)| (Slot(s), b))
                .collect(),
            import_paths: self.import_paths,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireInit {
    Job { raw_json: String },
    Deployment { raw_json: String },
}

impl From<&InitContext> for WireInit {
    fn from(c: &InitContext) -> Self {
        match c {
            InitContext::Job { raw_json } => WireInit::Job {
                raw_json: raw_json.clone(),
            },
            InitContext::Deployment { raw_json } => WireInit::Deployment {
                raw_json: raw_json.clone(),
            },
        }
    }
}

impl From<WireInit> for InitContext {
    fn from(c: WireInit) -> Self {
        match c {
            WireInit::Job { raw_json } => InitContext::Job { raw_json },
            WireInit::Deployment { raw_json } => InitContext::Deployment { raw_json },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireAllFunction {
    Metrics,
    Train,
}

impl From<AllRecordsFunction> for WireAllFunction {
    fn from(f: AllRecordsFunction) -> Self {
        match f {
            AllRecordsFunction::Metrics => WireAllFunction::Metrics,
            AllRecordsFunction::Train => WireAllFunction::Train,
        }
    }
}

impl From<WireAllFunction> for AllRecordsFunction {
    fn from(f: WireAllFunction) -> Self {
        match f {
            WireAllFunction::Metrics => AllRecordsFunction::Metrics,
            WireAllFunction::Train => AllRecordsFunction::Train,
        }
    }
}

/// One input record on the wire: `(slot, seqno, value)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireItem(pub u32, pub u64, pub Value);

/// Engine to worker, as the worker decodes it.
#[derive(Debug, PartialEq, Deserialize)]
pub enum ToWorker {
    Load {
        version: u32,
        spec: Box<LoadSpec>,
    },
    Init(WireInit),
    /// `batch` numbers the batch, so the progress page can say which one was being scored.
    Score {
        batch: u64,
        items: Vec<WireItem>,
    },
    Collect {
        slot: u32,
        values: Vec<Value>,
    },
    RunAll(WireAllFunction),
    Shutdown,
}

/// Engine to worker, as the engine encodes it (borrowing the records).
#[derive(Debug, Serialize)]
pub enum ToWorkerRef<'a> {
    Load { version: u32, spec: &'a LoadSpec },
    Init(&'a WireInit),
    Score { batch: u64, items: ItemsRef<'a> },
    Collect { slot: u32, values: &'a [Value] },
    RunAll(WireAllFunction),
    Shutdown,
}

/// Serializes score items as a sequence of [`WireItem`]s without copying them.
#[derive(Debug, Clone, Copy)]
pub struct ItemsRef<'a>(pub &'a [ScoreItem]);

impl Serialize for ItemsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&(item.slot.0, item.seqno, &item.value))?;
        }
        seq.end()
    }
}

/// The outcome of one record on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireOutcome {
    Ok(Vec<(u32, Value)>),
    Failed { message: String, traceback: String },
}

/// Why a whole request failed in the worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireFailure {
    /// The model cannot be loaded (missing function, refused arity, import error).
    ModelLoad(String),
    /// Model code raised where the whole job depends on it (init, metrics, train, end).
    ModelFailed {
        function: String,
        message: String,
        traceback: String,
    },
    /// The worker itself could not do what was asked (a request out of order, a bug).
    Worker(String),
}

impl From<WireFailure> for runtime_core::Error {
    fn from(f: WireFailure) -> Self {
        match f {
            WireFailure::ModelLoad(reason) => runtime_core::Error::ModelLoad(reason),
            WireFailure::ModelFailed {
                function,
                message,
                traceback,
            } => runtime_core::Error::ModelFailed {
                function,
                message,
                traceback,
            },
            WireFailure::Worker(reason) => {
                runtime_core::Error::Protocol(format!("the worker refused a request: {reason}"))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl From<runtime_core::Level> for WireLevel {
    fn from(l: runtime_core::Level) -> Self {
        match l {
            runtime_core::Level::Debug => WireLevel::Debug,
            runtime_core::Level::Info => WireLevel::Info,
            runtime_core::Level::Warn => WireLevel::Warn,
            runtime_core::Level::Error => WireLevel::Error,
        }
    }
}

impl From<WireLevel> for runtime_core::Level {
    fn from(l: WireLevel) -> Self {
        match l {
            WireLevel::Debug => runtime_core::Level::Debug,
            WireLevel::Info => runtime_core::Level::Info,
            WireLevel::Warn => runtime_core::Level::Warn,
            WireLevel::Error => runtime_core::Level::Error,
        }
    }
}

/// Worker to engine.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The first message, unasked.
    Hello {
        version: u32,
        pid: u32,
    },
    /// The model is loaded; facts for the log (`python` -> `3.11.7`).
    Loaded {
        info: Vec<(String, String)>,
    },
    /// Init, collect or shutdown went well.
    Done,
    Scored {
        batch: u64,
        outcomes: Vec<WireOutcome>,
    },
    /// What metrics or train produced.
    Outputs(Vec<(u32, Value)>),
    Failed(WireFailure),
    /// A line from the language runner (not the model's console), sent before the answer
    /// it belongs to.
    Log {
        level: WireLevel,
        message: String,
    },
}

/// Appends one frame holding `msg` to `buf`.
pub fn encode_frame<T: Serialize>(buf: &mut Vec<u8>, msg: &T) -> Result<(), String> {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    rmp_serde::encode::write(buf, msg).map_err(|e| format!("cannot encode a message: {e}"))?;
    let len = buf.len() - start - 4;
    let len32 = u32::try_from(len)
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or_else(|| format!("a message of {len} bytes is too large for one frame"))?;
    buf[start..start + 4].copy_from_slice(&len32.to_le_bytes());
    Ok(())
}

/// Decodes a frame body.
pub fn decode_body<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, String> {
    rmp_serde::from_slice(body).map_err(|e| format!("cannot decode a message: {e}"))
}

/// The body length announced by a frame header, checked against [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, String> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(format!(
            "a frame announces {len} bytes, more than the {MAX_FRAME} allowed"
        ));
    }
    Ok(len)
}

/// Blocking frame reader (the worker side). `Ok(None)` at a clean end of stream.
pub fn read_frame_blocking(r: &mut impl Read, body: &mut Vec<u8>) -> std::io::Result<Option<()>> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame header",
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len =
        frame_len(header).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    body.clear();
    body.resize(len, 0);
    r.read_exact(body)?;
    Ok(Some(()))
}

/// Blocking frame writer (the worker side).
pub fn write_frame_blocking<T: Serialize>(
    w: &mut impl Write,
    buf: &mut Vec<u8>,
    msg: &T,
) -> std::io::Result<()> {
    buf.clear();
    encode_frame(buf, msg).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    w.write_all(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime_core::Map;

    fn sample_items() -> Vec<ScoreItem> {
        let mut m = Map::new();
        m.push("id", 7);
        m.push("x", 1.5);
        m.push(Value::Int(3), Value::Bytes(vec![0, 1]));
        vec![
            ScoreItem {
                slot: Slot(0),
                seqno: 1,
                value: Value::Map(m),
            },
            ScoreItem {
                slot: Slot(2),
                seqno: 2,
                value: Value::Array(vec![Value::Null, Value::Int(i128::from(u64::MAX))]),
            },
        ]
    }

    fn round_trip(msg: &ToWorkerRef<'_>) -> ToWorker {
        let mut buf = Vec::new();
        encode_frame(&mut buf, msg).unwrap();
        let mut body = Vec::new();
        read_frame_blocking(&mut &buf[..], &mut body)
            .unwrap()
            .unwrap();
        decode_body(&body).unwrap()
    }

    #[test]
    fn borrowed_requests_decode_as_owned_ones() {
        let items = sample_items();
        let got = round_trip(&ToWorkerRef::Score {
            batch: 9,
            items: ItemsRef(&items),
        });
        let want = ToWorker::Score {
            batch: 9,
            items: items
                .iter()
                .map(|i| WireItem(i.slot.0, i.seqno, i.value.clone()))
                .collect(),
        };
        assert_eq!(got, want);

        let spec = LoadSpec {
            language: "python".into(),
            work_dir: "/w".into(),
            main_source: "m.py".into(),
            init: None,
            score: Some("action".into()),
            metrics: None,
            train: Some("fit".into()),
            end: None,
            recordsets: vec![(0, true)],
            import_paths: vec!["/venv".into()],
            slot_scores: vec![(2, "other".into())],
        };
        let got = round_trip(&ToWorkerRef::Load {
            version: PROTOCOL_VERSION,
            spec: &spec,
        });
        assert_eq!(
            got,
            ToWorker::Load {
                version: PROTOCOL_VERSION,
                spec: Box::new(spec)
            }
        );
        let init = WireInit::Job {
            raw_json: "{}".into(),
        };
        assert_eq!(round_trip(&ToWorkerRef::Init(&init)), ToWorker::Init(init));
        let values = vec![Value::from("a")];
        assert_eq!(
            round_trip(&ToWorkerRef::Collect {
                slot: 2,
                values: &values
            }),
            ToWorker::Collect { slot: 2, values }
        );
        assert_eq!(
            round_trip(&ToWorkerRef::RunAll(WireAllFunction::Train)),
            ToWorker::RunAll(WireAllFunction::Train)
        );
        assert_eq!(round_trip(&ToWorkerRef::Shutdown), ToWorker::Shutdown);
    }

    #[test]
    fn worker_messages_round_trip() {
        let msg = FromWorker::Scored {
            batch: 3,
            outcomes: vec![
                WireOutcome::Ok(vec![(1, Value::Float(f64::INFINITY))]),
                WireOutcome::Failed {
                    message: "ValueError: x".into(),
                    traceback: "Traceback...".into(),
                },
            ],
        };
        let mut buf = Vec::new();
        encode_frame(&mut buf, &msg).unwrap();
        let back: FromWorker = decode_body(&buf[4..]).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        assert!(frame_len(u32::MAX.to_le_bytes()).is_err());
        let mut body = Vec::new();
        let truncated = [5u8, 0, 0, 0, 1];
        assert!(read_frame_blocking(&mut &truncated[..], &mut body).is_err());
        assert!(read_frame_blocking(&mut &[][..], &mut body)
            .unwrap()
            .is_none());
        assert!(decode_body::<FromWorker>(&[0xc1]).is_err());
    }
}

//! Helpers shared by the integration tests.
#![allow(dead_code)]

use codecs::{CodecConfig, RecordEncoder};
use runtime_core::{ReadItem, Value};

/// Decodes all of `bytes`; the error, if reading broke, comes last as a string.
pub fn decode_all(cfg: &CodecConfig, bytes: &[u8]) -> (Vec<ReadItem>, Option<String>) {
    let mut dec = codecs::decoder(cfg, std::io::Cursor::new(bytes.to_vec()), "test").unwrap();
    let mut items = Vec::new();
    let mut err = None;
    while let Some(item) = dec.next_item() {
        match item {
            Ok(item) => items.push(item),
            Err(e) => err = Some(e.to_string()),
        }
    }
    (items, err)
}

pub fn values(items: &[ReadItem]) -> Vec<Value> {
    items
        .iter()
        .map(|i| match i {
            ReadItem::Record(r) => r.value.clone(),
            ReadItem::Rejected(r) => panic!("unexpected rejection: {r}"),
        })
        .collect()
}

/// A `Write` that hands its bytes back after the encoder is done with it.
#[derive(Clone, Default)]
pub struct SharedBuf(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

/// Encodes `values`, returning the bytes and the rejection reasons by index.
pub fn encode_all(cfg: &CodecConfig, values: &[Value]) -> (Vec<u8>, Vec<(usize, String)>) {
    let buf = SharedBuf::default();
    let mut enc: Box<dyn RecordEncoder> = codecs::encoder(cfg, buf.clone()).unwrap();
    let mut rejected = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match enc.write(v) {
            Ok(()) => {}
            Err(e @ codecs::EncodeError::Rejected(_)) => rejected.push((i, e.to_string())),
            Err(e) => panic!("{e}"),
        }
    }
    enc.finish().unwrap();
    drop(enc);
    (buf.bytes(), rejected)
}

/// The Python the build embeds (`PYO3_PYTHON`, set by scripts/env.sh), else `python3`.
pub fn python() -> String {
    std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs `script` with `args` under [`python`] and returns its standard output; fails the test,
/// with Python's standard error, when it does not exit 0 (a missing package included:
/// scripts/setup installs them from scripts/requirements-test.txt).
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", python()));
    assert!(
        out.status.success(),
        "python failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

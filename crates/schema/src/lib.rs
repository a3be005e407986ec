//! Avro schema checking of records, per slot: a schema is compiled once into a [`Checker`],
//! and every record of its slot is checked against it (or conformed to it) without the
//! schema being looked at again. The compiled form is the codecs' own
//! (`codecs::avro::schema`, the model their Avro decoder and encoder walk): this crate has no
//! schema compiler, so the two cannot disagree on what a schema means.
//!
//! - [`Checker::parse`] / [`Checker::compile`]: a schema from its text or from a
//!   [`codecs::AvroSchema`]; [`Checker::avro`] gives the codecs' schema back, for typing CSV
//!   and encoding Avro outputs with the same schema.
//! - [`Checker::check`] only looks; [`Checker::conform`] also normalizes a conforming record
//!   (fills defaults, widens numbers, unwraps Avro-JSON union wrappers). The pipeline uses
//!   `conform`, so a model sees what its schema promises.
//! - [`resolve_model_schemas`] reads a model's `schema.<slot>` smart comments into
//!   [`SlotSchemas`]; [`SlotSchemas::screen_inputs`] / [`SlotSchemas::screen_outputs`] apply
//!   them to a batch.
//! - [`masked`] renders a rejected record for logs without its data.
//! - [`check_stream`] checks a whole stream (`engine schema check SCHEMA DATA`).
//!
//! docs/schemas.md has the rules (widening, defaults, extra fields, unions, logical types).
//!
//! Not here: schema resolution between a writer's and a reader's schema (Avro container
//! files are read with their own schema), and aliases.
//!
//! ```
//! use runtime_core::{Map, Value};
//! use schema::Checker;
//!
//! let checker = Checker::parse(
//!     r#"{"type": "record", "name": "point", "fields": [{"name": "x", "type": "double"}]}"#,
//! )?;
//! let mut point = Map::new();
//! point.insert("x", 1);
//! let mut record = Value::Map(point);
//! checker.conform(&mut record)?; // the int is widened to the double the schema says
//! assert_eq!(record.get("x"), Some(&Value::Float(1.0)));
//!
//! let mut text = Map::new();
//! text.insert("x", "one");
//! assert!(checker.check(&Value::Map(text)).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod check;
mod iso;
mod mask;
mod slots;
mod stream;

use std::sync::Arc;

use codecs::AvroSchema;
use runtime_core::Value;

pub use check::{CheckOptions, Detailed, Violation};
pub use mask::{masked, rejection_reason, Masked};
pub use slots::{
    resolve_checked_schemas, resolve_model_schemas, resolve_schema, OutputRejection, SlotSchemas,
};
pub use stream::{check_stream, CheckReport, StreamProblem};

/// Why a schema could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The text is not a valid Avro schema.
    #[error("invalid Avro schema: {0}")]
    Invalid(String),

    /// A slot's schema is named but no file holds it.
    #[error("slot {slot}: schema '{name}' not found (looked for {looked})")]
    NotFound {
        slot: runtime_core::Slot,
        name: String,
        looked: String,
    },

    /// A slot's schema names a file that is not a valid schema.
    #[error("slot {slot}: schema '{name}' ({path}) is not a valid Avro schema: {reason}")]
    InvalidForSlot {
        slot: runtime_core::Slot,
        name: String,
        path: String,
        reason: String,
    },

    /// A slot's schema name fits several files of the model.
    #[error("slot {slot}: schema '{name}' is ambiguous: {candidates}")]
    Ambiguous {
        slot: runtime_core::Slot,
        name: String,
        candidates: String,
    },

    /// A slot's schema name that cannot name a file of the model (absolute, or leaving the
    /// working directory).
    #[error("slot {slot}: schema '{name}' must be a path inside the model's directory")]
    BadName {
        slot: runtime_core::Slot,
        name: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A codec for reading records could not be built.
    #[error("{0}")]
    Codec(String),
}

/// Schema problems stop a model from loading.
impl From<SchemaError> for runtime_core::Error {
    fn from(e: SchemaError) -> Self {
        runtime_core::Error::ModelLoad(e.to_string())
    }
}

/// A compiled schema. Cheap to clone and to share between threads.
#[derive(Clone)]
pub struct Checker {
    inner: Arc<Inner>,
    opts: CheckOptions,
}

struct Inner {
    /// The schema, compiled once by the codecs: the checker walks the same model.
    avro: AvroSchema,
    defaults: check::Defaults,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("schema", &self.inner.avro.json())
            .field("opts", &self.opts)
            .finish()
    }
}

impl Checker {
    /// Compiles a schema from its JSON text. Vendor attributes (`role`, `dataClass`, ...)
    /// are ignored.
    pub fn parse(text: &str) -> Result<Checker, SchemaError> {
        let avro = AvroSchema::parse(text).map_err(|e| match e {
            codecs::CodecError::Schema(reason) => SchemaError::Invalid(reason),
            other => SchemaError::Invalid(other.to_string()),
        })?;
        Checker::compile(&avro)
    }

    /// Compiles a schema the codecs already parsed.
    /// Nothing is parsed again: the checker walks the codecs' compiled schema, and only the
    /// fields' defaults are conformed to their types here.
    pub fn compile(avro: &AvroSchema) -> Result<Checker, SchemaError> {
        let defaults = check::Defaults::build(avro.compiled()).map_err(SchemaError::Invalid)?;
        Ok(Checker {
            inner: Arc::new(Inner {
                avro: avro.clone(),
                defaults,
            }),
            opts: CheckOptions::default(),
        })
    }

    /// The same schema checked with other options.
    pub fn with_options(mut self, opts: CheckOptions) -> Checker {
        self.opts = opts;
        self
    }

    pub fn options(&self) -> CheckOptions {
        self.opts
    }

    /// The schema as the codecs know it: put it in `CodecConfig::schema` to type CSV cells
    /// and to encode Avro.
    pub fn avro(&self) -> &AvroSchema {
        &self.inner.avro
    }

    /// The schema's JSON text, as given.
    pub fn json(&self) -> &str {
        self.inner.avro.json()
    }

    /// The full name of the root record, when the schema is a record.
    pub fn record_name(&self) -> Option<&str> {
        self.inner.avro.compiled().root_name()
    }

    /// Whether `value` conforms. Changes nothing, allocates nothing when it does.
    pub fn check(&self, value: &Value) -> Result<(), Violation> {
        check::check_value(
            self.inner.avro.compiled(),
            &self.inner.defaults,
            self.opts,
            value,
        )
    }

    /// Checks `value` and normalizes it where it conforms by a rule rather than as is:
    /// missing fields get their default (or null), integers where a float is expected become
    /// floats, whole floats where an integer is expected become integers, and Avro-JSON
    /// union wrappers (`{"string": "x"}`) are unwrapped. On error `value` may be partly
    /// normalized; reject it whole.
    pub fn conform(&self, value: &mut Value) -> Result<(), Violation> {
        check::conform_root(
            self.inner.avro.compiled(),
            &self.inner.defaults,
            self.opts,
            value,
        )
    }
}

impl std::str::FromStr for Checker {
    type Err = SchemaError;

    fn from_str(s: &str) -> Result<Checker, SchemaError> {
        Checker::parse(s)
    }
}

//! A model's schemas by slot, from its `schema.<slot>` smart comments, and their use on a
//! batch of records.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use runtime_core::model::SlotUse;
use runtime_core::{ReadItem, Rejection, RejectionKind, Slot, SmartComments, Value};

use crate::{rejection_reason, Checker, SchemaError, Violation};

/// How deep below the working directory a schema named without a folder is looked for.
const SEARCH_DEPTH: usize = 4;
/// Directory entries looked at in that search, at most.
const SEARCH_ENTRIES: usize = 20_000;

/// The checkers of a model's slots. Switching checking off for a side is emptying its map
/// (`schemas.inputs.clear()`).
#[derive(Clone, Debug, Default)]
pub struct SlotSchemas {
    /// Even slots.
    pub inputs: BTreeMap<Slot, Checker>,
    /// Odd slots.
    pub outputs: BTreeMap<Slot, Checker>,
}

/// An output value a schema rejected: its index in the batch given to
/// [`SlotSchemas::screen_outputs`], and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRejection {
    pub index: usize,
    pub violation: Violation,
    /// [`rejection_reason`]: the violation and the record, masked unless debug.
    pub reason: String,
}

impl SlotSchemas {
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty() && self.outputs.is_empty()
    }

    /// Sets the checker of `slot`, on the input or output side by its parity.
    pub fn insert(&mut self, slot: Slot, checker: Checker) {
        if slot.is_input() {
            self.inputs.insert(slot, checker);
        } else {
            self.outputs.insert(slot, checker);
        }
    }

    /// The checker of `slot`, if it has one.
    pub fn get(&self, slot: Slot) -> Option<&Checker> {
        if slot.is_input() {
            self.inputs.get(&slot)
        } else {
            self.outputs.get(&slot)
        }
    }

    /// Keeps checking only where switched on (`enableInputSchemaChecking`,
    /// `enableOutputSchemaChecking`, `--no-input-schema-check`, ...).
    pub fn switched(mut self, inputs: bool, outputs: bool) -> SlotSchemas {
        if !inputs {
            self.inputs.clear();
        }
        if !outputs {
            self.outputs.clear();
        }
        self
    }

    /// Conforms every record of a batch read for input `slot`; a record that does not conform
    /// becomes a [`ReadItem::Rejected`] of kind `Schema` in its place, with its position.
    /// Returns how many were rejected. Without a checker for `slot`, nothing happens.
    pub fn screen_inputs(&self, slot: Slot, items: &mut [ReadItem], debug: bool) -> usize {
        let Some(checker) = self.inputs.get(&slot) else {
            return 0;
        };
        let mut rejected = 0;
        for item in items.iter_mut() {
            let ReadItem::Record(record) = item else {
                continue;
            };
            // The original is kept for the log line only when conforming fails.
            if let Err(v) = checker.check(&record.value) {
                rejected += 1;
                *item = ReadItem::Rejected(Rejection {
                    kind: RejectionKind::Schema,
                    position: std::mem::take(&mut record.position),
                    reason: rejection_reason(&v, &record.value, debug),
                    receipt: std::mem::take(&mut record.receipt),
                    raw: None,
                });
                continue;
            }
            if let Err(v) = checker.conform(&mut record.value) {
                // `check` passed, so this cannot happen; reject rather than trust it.
                rejected += 1;
                *item = ReadItem::Rejected(Rejection {
                    kind: RejectionKind::Schema,
                    position: std::mem::take(&mut record.position),
                    reason: v.to_string(),
                    receipt: std::mem::take(&mut record.receipt),
                    raw: None,
                });
            }
        }
        rejected
    }

    /// Conforms the values a model yielded to output `slot`; those that do not conform are
    /// taken out of `values` and returned (with their index in the batch as given).
    pub fn screen_outputs(
        &self,
        slot: Slot,
        values: &mut Vec<Value>,
        debug: bool,
    ) -> Vec<OutputRejection> {
        let Some(checker) = self.outputs.get(&slot) else {
            return Vec::new();
        };
        let mut rejections = Vec::new();
        let mut index = 0;
        values.retain_mut(|value| {
            let i = index;
            index += 1;
            let verdict = checker.check(value).and_then(|()| checker.conform(value));
            match verdict {
                Ok(()) => true,
                Err(violation) => {
                    rejections.push(OutputRejection {
                        index: i,
                        reason: rejection_reason(&violation, value, debug),
                        violation,
                    });
                    false
                }
            }
        });
        rejections
    }
}

/// Reads the schemas a model's smart comments name (`# modelop.schema.0: input_schema.avsc`)
/// from its working directory. A name is looked for as given, then with `.avsc` (and
/// `.json`) appended; a bare file name not at the top is looked for in sub-folders (it must
/// be found once). An Avro primitive type name with no such file is that type (`double`),
/// and inline JSON (`{"type": ...}`) is the schema itself. Slots turned off with
/// `slot.<n>: unused` are skipped. Each file is compiled once, however many slots name it.
pub fn resolve_model_schemas(
    work_dir: &Path,
    comments: &SmartComments,
) -> Result<SlotSchemas, SchemaError> {
    resolve_checked_schemas(work_dir, comments, true, true).map(|(schemas, _)| schemas)
}

/// The schemas a job or deployment checks, with inputs and outputs switched on or off
/// (`enableInputSchemaChecking`, `--no-output-schema-check`, ...). A schema of a side that
/// is not checked is not needed to run the model: if it cannot be found or read, the answer
/// carries a warning for the log instead of failing the load. The schemas of a checked side
/// must resolve as with [`resolve_model_schemas`].
pub fn resolve_checked_schemas(
    work_dir: &Path,
    comments: &SmartComments,
    inputs: bool,
    outputs: bool,
) -> Result<(SlotSchemas, Vec<String>), SchemaError> {
    let mut out = SlotSchemas::default();
    let mut warnings = Vec::new();
    let mut by_name: HashMap<&str, Checker> = HashMap::new();
    for (slot, name) in &comments.schemas {
        if comments.slots.get(slot) == Some(&SlotUse::Unused) {
            continue;
        }
        let checked = if slot.is_input() { inputs } else { outputs };
        let resolved = match by_name.get(name.as_str()) {
            Some(c) => Ok(c.clone()),
            None => resolve_schema(work_dir, *slot, name).inspect(|c| {
                by_name.insert(name, c.clone());
            }),
        };
        match resolved {
            Ok(c) => {
                if checked {
                    out.insert(*slot, c);
                }
            }
            Err(e) if !checked => warnings.push(format!(
                "{e}; {} schema checking is off, so the model runs without it",
                if slot.is_input() { "input" } else { "output" }
            )),
            Err(e) => return Err(e),
        }
    }
    Ok((out, warnings))
}

/// One slot's schema by name, as [`resolve_model_schemas`] finds it.
pub fn resolve_schema(work_dir: &Path, slot: Slot, name: &str) -> Result<Checker, SchemaError> {
    let name = name.trim();
    if name.starts_with('{') || name.starts_with('[') || name.starts_with('"') {
        return Checker::parse(name).map_err(|e| SchemaError::InvalidForSlot {
            slot,
            name: name.to_owned(),
            path: "inline".to_owned(),
            reason: reason_of(e),
        });
    }
    let rel = Path::new(name);
    if name.is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(SchemaError::BadName {
            slot,
            name: name.to_owned(),
        });
    }
    let candidates = candidate_names(name);
    let mut path = candidates
        .iter()
        .map(|c| work_dir.join(c))
        .find(|p| p.is_file());
    if path.is_none() && rel.components().count() == 1 {
        let mut found = Vec::new();
        search(work_dir, &candidates, 0, &mut 0, &mut found);
        found.sort();
        match found.len() {
            0 => {}
            1 => path = found.pop(),
            _ => {
                let list: Vec<String> = found
                    .iter()
                    .map(|p| p.strip_prefix(work_dir).unwrap_or(p).display().to_string())
                    .collect();
                return Err(SchemaError::Ambiguous {
                    slot,
                    name: name.to_owned(),
                    candidates: list.join(", "),
                });
            }
        }
    }
    let Some(path) = path else {
        if is_primitive(name) {
            return Checker::parse(&format!("\"{name}\"")).map_err(|e| {
                SchemaError::InvalidForSlot {
                    slot,
                    name: name.to_owned(),
                    path: "inline".to_owned(),
                    reason: reason_of(e),
                }
            });
        }
        return Err(SchemaError::NotFound {
            slot,
            name: name.to_owned(),
            looked: format!(
                "{} in {} and its sub-folders",
                candidates.join(", "),
                work_dir.display()
            ),
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|e| SchemaError::Io {
        context: format!("slot {slot}: reading schema {}", path.display()),
        source: e,
    })?;
    Checker::parse(&text).map_err(|e| SchemaError::InvalidForSlot {
        slot,
        name: name.to_owned(),
        path: path.display().to_string(),
        reason: reason_of(e),
    })
}

fn reason_of(e: SchemaError) -> String {
    match e {
        SchemaError::Invalid(reason) => reason,
        other => other.to_string(),
    }
}

fn candidate_names(name: &str) -> Vec<String> {
    let mut c = vec![name.to_owned()];
    if !name.ends_with(".avsc") {
        c.push(format!("{name}.avsc"));
    }
    if !name.ends_with(".json") && !name.ends_with(".avsc") {
        c.push(format!("{name}.json"));
    }
    c
}

fn is_primitive(name: &str) -> bool {
    matches!(
        name,
        "null" | "boolean" | "int" | "long" | "float" | "double" | "bytes" | "string"
    )
}

/// Files under `dir` (not at its top, which was looked at already) named like one of
/// `names`, skipping hidden folders; bounded in depth and entries.
fn search(dir: &Path, names: &[String], depth: usize, seen: &mut usize, found: &mut Vec<PathBuf>) {
    if depth > SEARCH_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        *seen += 1;
        if *seen > SEARCH_ENTRIES {
            return;
        }
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Ok(ty) = entry.file_type() else {
            continue;
        };
        if ty.is_dir() && !file_name.starts_with('.') {
            search(&entry.path(), names, depth + 1, seen, found);
        } else if ty.is_file() && depth > 0 && names.iter().any(|n| n == file_name) {
            found.push(entry.path());
        }
    }
}

//! The worker side: CPython embedded, the model loaded as module `__model`, requests served
//! on the worker's one thread with the interpreter attached (released while waiting).

use std::collections::BTreeMap;
use std::ffi::CString;

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule, PyTuple};
use runtime_core::{
    AllRecordsFunction, InitContext, Language, Level, ModelSpec, RecordFailure, ScoreOutcome, Slot,
    Value,
};
use worker::protocol::{WireFailure, WireItem};
use worker::{Context, WorkerBackend};

use crate::convert::{from_py, number_values, to_py, to_py_columns};

const DRIVER: &str = include_str!("driver.py");

/// A model function and how it is called.
struct Entry<'py> {
    name: String,
    func: Bound<'py, PyAny>,
    /// Positional arguments passed.
    arity: usize,
}

struct Score<'py> {
    entry: Entry<'py>,
    /// The driver loop for this arity.
    run: Bound<'py, PyAny>,
}

#[derive(Default)]
struct Model<'py> {
    init: Option<Entry<'py>>,
    score: Option<Score<'py>>,
    metrics: Option<Entry<'py>>,
    train: Option<Entry<'py>>,
    end: Option<Entry<'py>>,
    /// Input slots scored by a function of their own (`action.<slot>`).
    slot_scores: Vec<(u32, Score<'py>)>,
}

impl<'py> Model<'py> {
    /// The score function of an input slot.
    fn score_of(&self, slot: u32) -> Option<&Score<'py>> {
        self.slot_scores
            .iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, score)| score)
            .or(self.score.as_ref())
    }
}

pub(crate) struct PythonBackend<'py> {
    py: Python<'py>,
    driver: Bound<'py, PyModule>,
    simplify: Bound<'py, PyAny>,
    failure: Bound<'py, PyAny>,
    /// The driver's `Columns`: a record-set model's frame of answers, column by column.
    columns: Bound<'py, PyAny>,
    generator: Bound<'py, PyAny>,
    progress: Option<Bound<'py, PyAny>>,
    model: Option<Model<'py>>,
    /// Input slots whose batches arrive as one data frame (`recordsets.<slot>: true`).
    recordsets: Vec<u32>,
    collected: BTreeMap<u32, Bound<'py, PyList>>,
}

/// The slot an output is routed to, by the int of its `(slot, value)` tuple.
fn slot_of(int: &Bound<'_, PyAny>) -> PyResult<Slot> {
    let slot: i64 = int.extract()?;
    u32::try_from(slot).map(Slot).map_err(|_| {
        pyo3::exceptions::PyValueError::new_err(format!("output slot {slot} is not a slot number"))
    })
}

/// `(message, traceback)` of a Python exception, formatted by the driver without its own
/// frame. A traceback-less exception (raised by the runner) gets an empty traceback.
fn describe_err(py: Python<'_>, failure: &Bound<'_, PyAny>, err: &PyErr) -> (String, String) {
    match failure.call1((err.value(py), err.traceback(py))) {
        Ok(f) => {
            let get = |name: &str| {
                f.getattr(name)
                    .and_then(|v| v.extract::<String>())
                    .unwrap_or_default()
            };
            (get("message"), get("traceback"))
        }
        Err(_) => (err.to_string(), String::new()),
    }
}

impl<'py> PythonBackend<'py> {
    pub(crate) fn new(py: Python<'py>) -> PyResult<Self> {
        let code = CString::new(DRIVER)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let driver = PyModule::from_code(py, &code, c"<model-runtime runner>", c"__runner")?;
        let simplify = driver.getattr("simplify")?;
        let failure = driver.getattr("Failure")?;
        let columns = driver.getattr("Columns")?;
        let generator = py.import("types")?.getattr("GeneratorType")?;
        Ok(PythonBackend {
            py,
            driver,
            simplify,
            failure,
            columns,
            generator,
            progress: None,
            model: None,
            recordsets: Vec::new(),
            collected: BTreeMap::new(),
        })
    }

    pub(crate) fn flush(&self) {
        let _ = self.driver.call_method0("flush");
    }

    fn err(&self, err: &PyErr) -> (String, String) {
        describe_err(self.py, &self.failure, err)
    }

    fn model_failed(&self, function: &str, err: &PyErr) -> WireFailure {
        let (message, traceback) = self.err(err);
        WireFailure::ModelFailed {
            function: function.to_owned(),
            message,
            traceback,
        }
    }

    fn model(&self) -> Result<&Model<'py>, WireFailure> {
        self.model
            .as_ref()
            .ok_or_else(|| WireFailure::Worker("no model is loaded".into()))
    }

    fn describe(&self, func: &Bound<'py, PyAny>) -> PyResult<(i64, bool, String)> {
        self.driver.call_method1("describe", (func,))?.extract()
    }

    fn entry(
        &self,
        module: &Bound<'py, PyAny>,
        role: &str,
        name: &Option<String>,
        required: bool,
    ) -> Result<Option<(String, Bound<'py, PyAny>)>, WireFailure> {
        let Some(name) = name else {
            return Ok(None);
        };
        match module.getattr(name.as_str()) {
            Ok(f) if f.is_callable() => Ok(Some((name.clone(), f))),
            Ok(f) => Err(WireFailure::ModelLoad(format!(
                "the {role} function '{name}' is not a function but a {}",
                f.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))),
            Err(_) if !required => Ok(None),
            Err(_) => Err(WireFailure::ModelLoad(format!(
                "the model defines no function '{name}' (its {role} function)"
            ))),
        }
    }

    fn load_model(
        &mut self,
        spec: &ModelSpec,
        cx: &mut Context,
    ) -> Result<Model<'py>, WireFailure> {
        let progress = self
            .driver
            .call_method1(
                "prepare",
                (
                    spec.work_dir.as_path(),
                    spec.main_source.as_path(),
                    spec.import_paths.clone(),
                    cx.progress().fd(),
                ),
            )
            .map_err(|e| {
                let (message, _) = self.err(&e);
                WireFailure::ModelLoad(format!("cannot prepare the model's process: {message}"))
            })?;
        self.progress = Some(progress);
        let module = self
            .driver
            .call_method1(
                "load_module",
                (spec.work_dir.as_path(), spec.main_source.as_path()),
            )
            .map_err(|e| {
                let (message, traceback) = self.err(&e);
                if !traceback.is_empty() {
                    cx.log(Level::Error, traceback);
                }
                WireFailure::ModelLoad(format!(
                    "importing {} raised {message}",
                    spec.main_source.display()
                ))
            })?;
        let e = &spec.entry_points;
        let mut model = Model::default();
        let load_err = |e: PyErr| WireFailure::ModelLoad(format!("cannot inspect the model: {e}"));

        let score_fn = |name: String, func: Bound<'py, PyAny>| {
            let (n, varargs, sig) = self.describe(&func).map_err(load_err)?;
            let arity = match n {
                1..=3 => n as usize,
                -1 => 1,
                0 if varargs => 1,
                _ => {
                    return Err(WireFailure::ModelLoad(format!(
                        "the score function {sig} takes {n} positional arguments; a score \
                         function takes 1 (datum), 2 (datum, slot) or 3 (datum, slot, seqno)"
                    )))
                }
            };
            let run = self
                .driver
                .call_method1("make_loop", (arity,))
                .map_err(load_err)?;
            Ok(Score {
                entry: Entry { name, func, arity },
                run,
            })
        };
        if let Some((name, func)) = self.entry(&module, "score", &e.score, true)? {
            model.score = Some(score_fn(name, func)?);
        }
        for (slot, name) in &e.slot_scores {
            let role = format!("slot {slot} score");
            if let Some((name, func)) = self.entry(&module, &role, &Some(name.clone()), true)? {
                model.slot_scores.push((slot.0, score_fn(name, func)?));
            }
        }
        if let Some((name, func)) = self.entry(&module, "init", &e.init, true)? {
            let (n, varargs, sig) = self.describe(&func).map_err(load_err)?;
            let arity = match n {
                0 if !varargs => 0,
                -1..=1 => 1,
                _ => {
                    return Err(WireFailure::ModelLoad(format!(
                        "the init function {sig} takes {n} positional arguments; an init \
                         function takes none or one (a dict with rawJson and job or deployedModel)"
                    )))
                }
            };
            model.init = Some(Entry { name, func, arity });
        }
        for (role, name, slot) in [
            ("metrics", &e.metrics, &mut model.metrics),
            ("train", &e.train, &mut model.train),
        ] {
            if let Some((name, func)) = self.entry(&module, role, name, true)? {
                let (n, varargs, _) = self.describe(&func).map_err(load_err)?;
                let arity = if n == 0 && !varargs { 0 } else { 1 };
                *slot = Some(Entry { name, func, arity });
            }
        }
        // `end` is called if the model defines it; a name that is not there is no error.
        if let Some((name, func)) = self.entry(&module, "end", &e.end, false)? {
            model.end = Some(Entry {
                name,
                func,
                arity: 0,
            });
        }
        Ok(model)
    }

    /// Where one output goes: a `(int, value)` tuple to that slot, anything else to slot 1.
    fn route(&self, out: &Bound<'py, PyAny>) -> PyResult<(Slot, Value)> {
        if let Ok(t) = out.cast_exact::<PyTuple>() {
            if t.len() == 2 {
                let first = t.get_item(0)?;
                if first.is_exact_instance_of::<pyo3::types::PyInt>() {
                    return Ok((slot_of(&first)?, from_py(&t.get_item(1)?, &self.simplify)?));
                }
            }
        }
        Ok((Slot::DEFAULT_OUTPUT, from_py(out, &self.simplify)?))
    }

    fn outcome(&self, r: &Bound<'py, PyAny>) -> ScoreOutcome {
        let fail = |e: PyErr| {
            let (message, traceback) = self.err(&e);
            RecordFailure { message, traceback }
        };
        if r.is_none() {
            return Ok(Vec::new());
        }
        if let Ok(list) = r.cast_exact::<PyList>() {
            let mut outs = Vec::with_capacity(list.len());
            for out in list.iter() {
                outs.push(self.route(&out).map_err(fail)?);
            }
            return Ok(outs);
        }
        if let Ok(t) = r.cast_exact::<PyTuple>() {
            let out = t.get_item(0).map_err(fail)?;
            return Ok(vec![self.route(&out).map_err(fail)?]);
        }
        let get = |name: &str| {
            r.getattr(name)
                .and_then(|v| v.extract::<String>())
                .unwrap_or_default()
        };
        Err(RecordFailure {
            message: get("message"),
            traceback: get("traceback"),
        })
    }

    /// A whole batch as one data frame: each output row belongs to the record its index
    /// label names (other outputs to the batch's first record); a failure fails every
    /// record of the batch.
    fn score_recordset(
        &self,
        entry: &Entry<'py>,
        items: Vec<WireItem>,
        slot: u32,
        seqno: u64,
    ) -> Result<Vec<ScoreOutcome>, WireFailure> {
        let py = self.py;
        let internal =
            |e: PyErr| WireFailure::Worker(format!("cannot pass records to Python: {e}"));
        let n = items.len();
        // Records of one shape go as columns (the frame is built column by column, as
        // pandas does fastest), others as a list of records.
        let values: Vec<&Value> = items.iter().map(|WireItem(_, _, v)| v).collect();
        let data = match to_py_columns(py, &values).map_err(internal)? {
            Some(columns) => (columns, n).into_pyobject(py).map_err(internal)?.into_any(),
            None => {
                let mut data = Vec::with_capacity(n);
                for v in &values {
                    data.push(to_py(py, v).map_err(internal)?);
                }
                PyList::new(py, data).map_err(internal)?.into_any()
            }
        };
        drop(values);
        drop(items);
        let result = self
            .driver
            .call_method1(
                "run_recordset",
                (
                    &entry.func,
                    entry.arity,
                    data,
                    slot,
                    seqno,
                    &self.failure,
                    &self.generator,
                ),
            )
            .map_err(|e| self.model_failed(&entry.name, &e))?;
        if result.is_instance(&self.columns).unwrap_or(false) {
            // A frame that cannot be read (a column label no record value can hold) fails
            // every record of the batch, as the model's own failure would.
            return Ok(self.column_outcomes(&result, n).unwrap_or_else(|e| {
                let (message, traceback) = self.err(&e);
                let failure = RecordFailure { message, traceback };
                (0..n).map(|_| Err(failure.clone())).collect()
            }));
        }
        if let Ok(per_record) = result.cast_exact::<PyList>() {
            if per_record.len() == n {
                return Ok(per_record.iter().map(|r| self.outcome(&r)).collect());
            }
        }
        let mut outcomes = Vec::with_capacity(n);
        match self.outcome(&result) {
            Ok(_) => {
                return Err(WireFailure::Worker(format!(
                    "the record-set loop returned no outcome per record for a batch of {n}"
                )))
            }
            Err(f) => outcomes.resize_with(n, || Err(f.clone())),
        }
        Ok(outcomes)
    }

    /// The outcomes of a batch of `n` records from a frame of answers handed over by column
    /// (the driver's `Columns`): each row one output record of the record that owns it. A
    /// cell that cannot be a record value fails its row's record, as when rows come as dicts.
    fn column_outcomes(&self, c: &Bound<'py, PyAny>, n: usize) -> PyResult<Vec<ScoreOutcome>> {
        let slot = match c.getattr("slot")? {
            s if s.is_none() => Slot::DEFAULT_OUTPUT,
            s => slot_of(&s)?,
        };
        let owners = c.getattr("owners")?;
        let owners: Vec<usize> = match owners.extract::<usize>() {
            Ok(first_rows) => (0..first_rows).collect(),
            Err(_) => owners.extract()?,
        };
        let keys = c
            .getattr("keys")?
            .cast_into::<PyList>()?
            .iter()
            .map(|k| from_py(&k, &self.simplify))
            .collect::<PyResult<Vec<Value>>>()?;
        let rows = owners.len();
        // Numbers read from their bytes at once; other columns cell by cell, row by row.
        enum Column<'py> {
            Numbers(std::vec::IntoIter<Value>),
            Cells(Bound<'py, PyList>),
        }
        let mut columns = Vec::with_capacity(keys.len());
        for column in c.getattr("columns")?.cast_into::<PyList>()?.iter() {
            let (column, len) = match column.cast_into_exact::<PyList>() {
                Ok(list) => {
                    let len = list.len();
                    (Column::Cells(list), len)
                }
                Err(e) => {
                    let pair = e.into_inner().cast_into::<PyTuple>()?;
                    let code: String = pair.get_item(0)?.extract()?;
                    let bytes = pair.get_item(1)?.cast_into::<pyo3::types::PyBytes>()?;
                    let numbers = number_values(&code, bytes.as_bytes())?;
                    let len = numbers.len();
                    (Column::Numbers(numbers.into_iter()), len)
                }
            };
            if len != rows {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "a column of the model's data frame has {len} values for {rows} rows"
                )));
            }
            columns.push(column);
        }
        let mut outcomes: Vec<ScoreOutcome> = (0..n).map(|_| Ok(Vec::new())).collect();
        for (row, owner) in owners.into_iter().enumerate() {
            let mut map = runtime_core::Map::with_capacity(keys.len());
            let mut failed = None;
            for (key, column) in keys.iter().zip(columns.iter_mut()) {
                let value = match column {
                    Column::Numbers(it) => Ok(it.next().unwrap_or(Value::Null)),
                    Column::Cells(list) => list
                        .get_item(row)
                        .and_then(|cell| from_py(&cell, &self.simplify)),
                };
                match value {
                    Ok(v) => map.push(key.clone(), v),
                    Err(e) if failed.is_none() => failed = Some(e),
                    Err(_) => {}
                }
            }
            let Some(outcome) = outcomes.get_mut(owner) else {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "row {row} belongs to no record of a batch of {n}"
                )));
            };
            match (failed, outcome) {
                (Some(e), outcome) => {
                    if outcome.is_ok() {
                        let (message, traceback) = self.err(&e);
                        *outcome = Err(RecordFailure { message, traceback });
                    }
                }
                (None, Ok(outs)) => outs.push((slot, Value::Map(map))),
                (None, Err(_)) => {}
            }
        }
        Ok(outcomes)
    }

    fn score_py(&self, items: Vec<WireItem>) -> Result<Vec<ScoreOutcome>, WireFailure> {
        let model = self.model()?;
        let no_score = || WireFailure::ModelFailed {
            function: "score".into(),
            message: "the model has no score function".into(),
            traceback: String::new(),
        };
        if model.slot_scores.is_empty() {
            let score = model.score.as_ref().ok_or_else(no_score)?;
            return self.score_with(score, items, 0);
        }
        // Slots with functions of their own: each run of records with the same function is
        // scored by it, outcomes kept in order.
        let mut outcomes = Vec::with_capacity(items.len());
        let mut items = items.into_iter().peekable();
        while let Some(first) = items.next() {
            let score = model.score_of(first.0).ok_or_else(no_score)?;
            let offset = outcomes.len();
            let mut run = vec![first];
            while let Some(next) = items.peek() {
                match model.score_of(next.0) {
                    Some(s) if std::ptr::eq(s, score) => run.extend(items.next()),
                    _ => break,
                }
            }
            outcomes.extend(self.score_with(score, run, offset)?);
        }
        Ok(outcomes)
    }

    fn score_with(
        &self,
        score: &Score<'py>,
        items: Vec<WireItem>,
        // Records of the batch before these (the progress page counts from the batch's
        // first record).
        offset: usize,
    ) -> Result<Vec<ScoreOutcome>, WireFailure> {
        let py = self.py;
        let arity = score.entry.arity;
        let internal =
            |e: PyErr| WireFailure::Worker(format!("cannot pass records to Python: {e}"));
        if let Some(WireItem(slot, seqno, _)) = items.first() {
            if self.recordsets.contains(slot) {
                let (slot, seqno) = (*slot, *seqno);
                return self.score_recordset(&score.entry, items, slot, seqno);
            }
        }
        let n = items.len();
        let mut data = Vec::with_capacity(n);
        let mut slots = Vec::with_capacity(if arity >= 2 { n } else { 0 });
        let mut seqnos = Vec::with_capacity(if arity >= 3 { n } else { 0 });
        for WireItem(slot, seqno, value) in &items {
            data.push(to_py(py, value).map_err(internal)?);
            if arity >= 2 {
                slots.push(*slot);
            }
            if arity >= 3 {
                seqnos.push(*seqno);
            }
        }
        drop(items);
        let data = PyList::new(py, data).map_err(internal)?;
        let slots = PyList::new(py, slots).map_err(internal)?;
        let seqnos = PyList::new(py, seqnos).map_err(internal)?;
        let progress = self
            .progress
            .clone()
            .unwrap_or_else(|| py.None().into_bound(py));
        let results = score
            .run
            .call1((
                data,
                slots,
                seqnos,
                progress,
                &score.entry.func,
                &self.failure,
                &self.generator,
                offset,
            ))
            .map_err(|e| self.model_failed(&score.entry.name, &e))?;
        let results = results
            .cast_into::<PyList>()
            .map_err(|e| WireFailure::Worker(format!("the runner loop returned {e}")))?;
        Ok(results.iter().map(|r| self.outcome(&r)).collect())
    }
}

impl<'py> WorkerBackend for PythonBackend<'py> {
    fn load(
        &mut self,
        model: ModelSpec,
        cx: &mut Context,
    ) -> Result<Vec<(String, String)>, WireFailure> {
        if model.language != Language::Python {
            return Err(WireFailure::ModelLoad(format!(
                "the Python runner cannot run a model in {}",
                model.language
            )));
        }
        if self.model.is_some() {
            return Err(WireFailure::Worker("a model is already loaded".into()));
        }
        let loaded = self.load_model(&model, cx)?;
        self.model = Some(loaded);
        self.recordsets = model
            .recordsets
            .iter()
            .filter(|(_, on)| **on)
            .map(|(slot, _)| slot.0)
            .collect();
        let sys = self
            .py
            .import("sys")
            .map_err(|e| WireFailure::Worker(e.to_string()))?;
        let fact = |name: &str| {
            sys.getattr(name)
                .and_then(|v| v.str())
                .map(|s| s.to_string())
                .unwrap_or_default()
        };
        let version = fact("version");
        let version = version.split_whitespace().next().unwrap_or("").to_owned();
        Ok(vec![
            ("python".into(), version),
            ("executable".into(), fact("executable")),
        ])
    }

    fn init(&mut self, init: InitContext, _cx: &mut Context) -> Result<(), WireFailure> {
        let model = self.model()?;
        let (key, raw) = match init {
            InitContext::Job { raw_json } => ("job", raw_json),
            InitContext::Deployment { raw_json } => ("deployedModel", raw_json),
        };
        // Without an init function the driver still settles the heap (`settle`).
        let (func, arity, name) = match &model.init {
            Some(e) => (Some(&e.func), e.arity, e.name.as_str()),
            None => (None, 0, "init"),
        };
        self.driver
            .call_method1("call_init", (func, arity, key, raw))
            .map(|_| ())
            .map_err(|e| self.model_failed(name, &e))
    }

    fn score_batch(
        &mut self,
        items: Vec<WireItem>,
        _cx: &mut Context,
    ) -> Result<Vec<ScoreOutcome>, WireFailure> {
        self.score_py(items)
    }

    fn collect(
        &mut self,
        slot: Slot,
        values: Vec<Value>,
        _cx: &mut Context,
    ) -> Result<(), WireFailure> {
        let py = self.py;
        let list = self
            .collected
            .entry(slot.0)
            .or_insert_with(|| PyList::empty(py));
        for v in &values {
            let obj = to_py(py, v).map_err(|e| WireFailure::Worker(e.to_string()))?;
            list.append(obj)
                .map_err(|e| WireFailure::Worker(e.to_string()))?;
        }
        Ok(())
    }

    fn run_all(
        &mut self,
        function: AllRecordsFunction,
        _cx: &mut Context,
    ) -> Result<Vec<(Slot, Value)>, WireFailure> {
        let collected = std::mem::take(&mut self.collected);
        let model = self.model()?;
        let entry = match function {
            AllRecordsFunction::Metrics => &model.metrics,
            AllRecordsFunction::Train => &model.train,
        };
        let Some(entry) = entry else {
            return Err(WireFailure::ModelFailed {
                function: function.as_str().into(),
                message: format!("the model has no {} function", function.as_str()),
                traceback: String::new(),
            });
        };
        let has_pandas = self
            .driver
            .call_method0("has_pandas")
            .and_then(|v| v.extract::<bool>())
            .unwrap_or(false);
        if !has_pandas && entry.arity > 0 {
            // Said at once: handed lists, the model would fail deep inside with a TypeError.
            return Err(WireFailure::ModelFailed {
                function: entry.name.clone(),
                message: format!(
                    "{} functions receive pandas DataFrames; pandas is not installed in this \
                     model's environment (add it to requirements.txt)",
                    function.as_str()
                ),
                traceback: String::new(),
            });
        }
        let mut frames = Vec::with_capacity(collected.len());
        for (_, records) in collected {
            let frame = self
                .driver
                .call_method1("make_frame", (records,))
                .map_err(|e| self.model_failed(&entry.name, &e))?;
            frames.push(frame);
        }
        let outputs = self
            .driver
            .call_method1("call_all", (&entry.func, entry.arity, frames))
            .map_err(|e| self.model_failed(&entry.name, &e))?;
        let outputs = outputs
            .cast_into::<PyList>()
            .map_err(|e| WireFailure::Worker(format!("the runner returned {e}")))?;
        let mut out = Vec::with_capacity(outputs.len());
        for o in outputs.iter() {
            out.push(
                self.route(&o)
                    .map_err(|e| self.model_failed(&entry.name, &e))?,
            );
        }
        Ok(out)
    }

    fn end(&mut self, _cx: &mut Context) -> Result<(), WireFailure> {
        let result = match self.model.as_ref().and_then(|m| m.end.as_ref()) {
            Some(entry) => entry
                .func
                .call0()
                .map(|_| ())
                .map_err(|e| self.model_failed(&entry.name, &e)),
            None => Ok(()),
        };
        self.flush();
        result
    }

    fn idle<T: Send>(&mut self, wait: impl FnOnce() -> T + Send) -> T {
        self.py.detach(wait)
    }
}

//! What the runtime knows of a model before running it: its language, its entry points and
//! the smart comments in its source. Parsing happens here, in Rust, once per load, so every
//! language runner gets the same answer.
//!
//! Entry points resolve in this order: names given explicitly (CLI flags, the job document)
//! > `# modelop.<fn>` markers on the next definition > the defaults `begin`/`action`/`end`.

use std::collections::BTreeMap;
use std::fmt;

use crate::record::Slot;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    Python,
    R,
}

impl Language {
    /// The language of a source file, by its extension.
    pub fn from_path(path: &str) -> Option<Language> {
        let ext = path.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "py" | "py3" => Some(Language::Python),
            "R" | "r" => Some(Language::R),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::R => "R",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The functions a runner calls. `None` means the model has no such function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryPoints {
    pub init: Option<String>,
    pub score: Option<String>,
    pub metrics: Option<String>,
    pub train: Option<String>,
    /// Called at shutdown if defined.
    pub end: Option<String>,
    /// Input slots scored by a function of their own (`action.<slot>: NAME` naming another
    /// function than `score`); every other slot is scored by `score`.
    pub slot_scores: BTreeMap<Slot, String>,
}

/// Names given explicitly by the user; they win over markers and defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExplicitNames {
    pub init: Option<String>,
    pub score: Option<String>,
    pub metrics: Option<String>,
    pub train: Option<String>,
}

/// Whether a slot is turned on or off by a `slot.<n>` comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotUse {
    InUse,
    Unused,
}

/// Everything the smart comments of a source say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmartComments {
    /// `# modelop.score` and friends: which function each marker points at.
    pub markers: EntryPoints,
    /// `schema.<slot>`: a schema name or file per slot.
    pub schemas: BTreeMap<Slot, String>,
    /// `slot.<slot>`: explicitly turned on or off.
    pub slots: BTreeMap<Slot, SlotUse>,
    /// `recordsets.<slot>`: deliver a batch as a data frame.
    pub recordsets: BTreeMap<Slot, bool>,
    /// `action.<slot>` (or `score.<slot>`): the function scoring that input slot, `None`
    /// for `unused`/`none`.
    pub actions: BTreeMap<Slot, Option<String>>,
    /// `<prefix>.init: NAME`, `<prefix>.score: NAME` and friends without a slot: the
    /// function named outright.
    pub named: ExplicitNames,
    /// Comments that looked like smart comments but could not be understood, with their
    /// line number, so the load can say why.
    pub problems: Vec<(usize, String)>,
}

impl SmartComments {
    /// Reads every smart comment of `source`, a model in `language`.
    pub fn parse(source: &str, language: Language) -> SmartComments {
        let mut out = SmartComments::default();
        let mut pending: Vec<(usize, Marker)> = Vec::new();
        for (idx, line) in source.lines().enumerate() {
            let lineno = idx + 1;
            let trimmed = line.trim();
            if let Some(body) = comment_body(trimmed) {
                if let Some(marker) = parse_marker(body) {
                    pending.push((lineno, marker));
                } else {
                    out.parse_tagged(lineno, body);
                }
                continue;
            }
            if pending.is_empty() || trimmed.is_empty() || trimmed.starts_with('@') {
                continue;
            }
            // The first definition after a marker takes it; anything else in between voids
            // it (a marker must sit right above its function, decorators and blank lines aside).
            match definition_name(trimmed, language) {
                Some(name) => {
                    for (_, marker) in pending.drain(..) {
                        let slot = match marker {
                            Marker::Init => &mut out.markers.init,
                            Marker::Score => &mut out.markers.score,
                            Marker::Metrics => &mut out.markers.metrics,
                            Marker::Train => &mut out.markers.train,
                        };
                        slot.get_or_insert_with(|| name.to_owned());
                    }
                }
                None => {
                    for (at, marker) in pending.drain(..) {
                        out.problems.push((
                            at,
                            format!(
                                "marker '{}' is not followed by a function definition",
                                marker.as_str()
                            ),
                        ));
                    }
                }
            }
        }
        for (at, marker) in pending {
            out.problems.push((
                at,
                format!(
                    "marker '{}' at the end of the source marks nothing",
                    marker.as_str()
                ),
            ));
        }
        out
    }

    fn parse_tagged(&mut self, lineno: usize, body: &str) {
        let Some((prefix, rest)) = body.split_once('.') else {
            return;
        };
        if !matches!(prefix.trim(), "modelop" | "fastscore" | "odg") {
            return;
        }
        let Some((key, value)) = rest.split_once(':') else {
            return;
        };
        let key = key.trim();
        let value = value.trim();
        let (tag, scope) = match key.split_once('.') {
            Some((t, s)) => (t, Some(s.trim())),
            None => (key, None),
        };
        if scope.is_none() {
            let named = match tag {
                "init" | "begin" => Some(&mut self.named.init),
                "score" | "action" => Some(&mut self.named.score),
                "metrics" => Some(&mut self.named.metrics),
                "train" | "training" => Some(&mut self.named.train),
                _ => None,
            };
            if let Some(named) = named {
                if !value.is_empty() && !matches!(value, "unused" | "none") {
                    named.get_or_insert_with(|| value.to_owned());
                }
                return;
            }
        }
        let slots = match (tag, scope) {
            ("input", None) => vec![Slot(0)],
            ("output", None) => vec![Slot(1)],
            (_, Some(scope)) => match scope_slots(scope) {
                Some(s) => s,
                None => {
                    self.problems.push((
                        lineno,
                        format!("'{key}': '{scope}' is not a slot number, $all, $in or $out"),
                    ));
                    return;
                }
            },
            (_, None) => return,
        };
        match tag {
            "schema" | "input" | "output" => {
                for s in slots {
                    self.schemas.insert(s, value.to_owned());
                    self.slots.entry(s).or_insert(SlotUse::InUse);
                }
            }
            "slot" => {
                let use_ = match value.to_ascii_lowercase().as_str() {
                    "in-use" | "inuse" | "in_use" | "on" | "true" | "yes" => SlotUse::InUse,
                    "unused" | "off" | "false" | "no" => SlotUse::Unused,
                    other => {
                        self.problems.push((
                            lineno,
                            format!("'{key}': '{other}' is neither in-use nor unused"),
                        ));
                        return;
                    }
                };
                for s in slots {
                    self.slots.insert(s, use_);
                }
            }
            "recordsets" => {
                let on = match value.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "1" => true,
                    "false" | "no" | "off" | "0" | "none" => false,
                    other => {
                        self.problems.push((
                            lineno,
                            format!("'{key}': '{other}' is not true/false/yes/no"),
                        ));
                        return;
                    }
                };
                for s in slots {
                    self.recordsets.insert(s, on);
                }
            }
            "action" | "score" => {
                let f = match value.to_ascii_lowercase().as_str() {
                    "unused" | "none" | "" => None,
                    _ => Some(value.to_owned()),
                };
                for s in slots {
                    self.actions.insert(s, f.clone());
                }
            }
            _ => {}
        }
    }

    /// The function an `action.<slot>`/`score.<slot>` comment names for the lowest input
    /// slot that has one.
    pub fn slot_action(&self) -> Option<&str> {
        self.actions
            .iter()
            .filter(|(slot, _)| slot.is_input())
            .find_map(|(_, f)| f.as_deref())
    }

    /// Resolves entry points: explicit names, then markers (`# modelop.score` above a
    /// definition, then `modelop.score: NAME`, then `action.<slot>: NAME`), then
    /// `begin`/`action`/`end` when the source defines them (`defined` answers whether a
    /// name is defined).
    pub fn entry_points(
        &self,
        explicit: &ExplicitNames,
        defined: impl Fn(&str) -> bool,
    ) -> EntryPoints {
        let pick = |given: &Option<String>, marked: Option<String>, default: Option<&str>| {
            given
                .clone()
                .or(marked)
                .or_else(|| default.filter(|d| defined(d)).map(str::to_owned))
        };
        let or = |a: &Option<String>, b: &Option<String>| a.clone().or_else(|| b.clone());
        let score_marked = or(&self.markers.score, &self.named.score)
            .or_else(|| self.slot_action().map(str::to_owned));
        let score = pick(&explicit.score, score_marked, Some("action"));
        // A function named explicitly scores every slot.
        let slot_scores = match &explicit.score {
            Some(_) => BTreeMap::new(),
            None => self
                .actions
                .iter()
                .filter(|(slot, _)| slot.is_input())
                .filter_map(|(slot, f)| match f {
                    Some(f) if Some(f) != score.as_ref() => Some((*slot, f.clone())),
                    _ => None,
                })
                .collect(),
        };
        EntryPoints {
            init: pick(
                &explicit.init,
                or(&self.markers.init, &self.named.init),
                Some("begin"),
            ),
            score,
            metrics: pick(
                &explicit.metrics,
                or(&self.markers.metrics, &self.named.metrics),
                None,
            ),
            train: pick(
                &explicit.train,
                or(&self.markers.train, &self.named.train),
                None,
            ),
            end: pick(&None, None, Some("end")),
            slot_scores,
        }
    }
}

/// Why a model's score function may keep state between records, if it looks so: Python
/// code with a `global` statement, or R code assigning with `<<-` or `assign(`, anywhere
/// but in the init function. Such a model sees only some records in each of several
/// workers, so it runs in one unless asked otherwise. A plain text scan: a statement in
/// a string or comment counts too, which errs on the side of one worker.
pub fn state_kept_between_records(
    source: &str,
    language: Language,
    init: Option<&str>,
) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let init_body = init.and_then(|name| function_lines(&lines, language, name));
    for (idx, line) in lines.iter().enumerate() {
        if init_body.as_ref().is_some_and(|r| r.contains(&idx)) {
            continue;
        }
        let code = line.trim();
        if code.starts_with('#') {
            continue;
        }
        let found = match language {
            Language::Python => ["global ", "nonlocal "]
                .iter()
                .any(|kw| code.starts_with(kw) || code.contains(&format!("; {kw}"))),
            Language::R => code.contains("<<-") || code.contains("assign("),
        };
        if found {
            return Some(format!(
                "line {} changes global state ('{code}'), so its records must all go to one \
                 worker",
                idx + 1
            ));
        }
    }
    None
}

/// The lines (indices) of the definition of `name`, from its `def`/`<-` line to its end.
fn function_lines(
    lines: &[&str],
    language: Language,
    name: &str,
) -> Option<std::ops::Range<usize>> {
    let start = lines
        .iter()
        .position(|l| definition_name(l.trim(), language) == Some(name))?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let end = match language {
        Language::Python => {
            let base = indent(lines[start]);
            lines[start + 1..]
                .iter()
                .position(|l| {
                    let t = l.trim();
                    !t.is_empty() && !t.starts_with('#') && indent(l) <= base
                })
                .map_or(lines.len(), |n| start + 1 + n)
        }
        Language::R => {
            let mut depth = 0i64;
            let mut opened = false;
            let mut end = lines.len();
            for (i, l) in lines.iter().enumerate().skip(start) {
                for c in l.chars() {
                    match c {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if !opened || depth <= 0 {
                    end = i + 1;
                    break;
                }
            }
            end
        }
    };
    Some(start..end)
}

/// The names a source defines at its top level (`def name(` in Python, `name <- function(`
/// in R), for resolving defaults.
pub fn top_level_definitions(source: &str, language: Language) -> Vec<String> {
    source
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .filter_map(|l| definition_name(l.trim(), language).map(str::to_owned))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    Init,
    Score,
    Metrics,
    Train,
}

impl Marker {
    fn as_str(self) -> &'static str {
        match self {
            Marker::Init => "modelop.init",
            Marker::Score => "modelop.score",
            Marker::Metrics => "modelop.metrics",
            Marker::Train => "modelop.train",
        }
    }
}

/// The text after the leading `#` characters of a comment line.
fn comment_body(trimmed: &str) -> Option<&str> {
    let rest = trimmed.strip_prefix('#')?;
    Some(rest.trim_start_matches('#').trim())
}

fn parse_marker(body: &str) -> Option<Marker> {
    let name = body.strip_prefix("modelop.")?.trim_end();
    match name {
        "init" => Some(Marker::Init),
        "score" => Some(Marker::Score),
        "metrics" => Some(Marker::Metrics),
        "train" | "training" => Some(Marker::Train),
        _ => None,
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_' || c == '.')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '.')
}

fn definition_name(trimmed: &str, language: Language) -> Option<&str> {
    match language {
        Language::Python => {
            let rest = trimmed
                .strip_prefix("async def ")
                .or_else(|| trimmed.strip_prefix("def "))?;
            let name = rest.split('(').next()?.trim();
            is_ident(name).then_some(name)
        }
        Language::R => {
            let (name, rhs) = trimmed
                .split_once("<-")
                .or_else(|| trimmed.split_once('='))?;
            let name = name.trim().trim_matches('`');
            let rhs = rhs.trim_start();
            (is_ident(name) && rhs.starts_with("function")).then_some(name)
        }
    }
}

fn scope_slots(scope: &str) -> Option<Vec<Slot>> {
    // The wildcard scopes name the slots a model can have in practice.
    const MAX_SLOT: u32 = 16;
    match scope {
        "$all" => Some((0..MAX_SLOT).map(Slot).collect()),
        "$in" => Some((0..MAX_SLOT).step_by(2).map(Slot).collect()),
        "$out" => Some((1..MAX_SLOT).step_by(2).map(Slot).collect()),
        n => n.parse().ok().map(|n| vec![Slot(n)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"
import pandas as pd
#modelop.init
def setup():
    pass

# modelop.score   
def predict(d):
    yield d

## modelop.metrics
@some_decorator
def metrics(df):
    return {}

# modelop.training
def fit(df):
    pass

# fastscore.schema.0: input_schema.avsc
#modelop.slot.2:in-use
# odg.recordsets.0: yes
# fastscore.action.2: other
# modelop.slot.$out: unused
# modelop.schema.x: bad
# fastscore.input: old_in
"#;

    #[test]
    fn markers_bind_to_the_next_definition_whatever_the_spacing() {
        let c = SmartComments::parse(SRC, Language::Python);
        assert_eq!(c.markers.init.as_deref(), Some("setup"));
        assert_eq!(c.markers.score.as_deref(), Some("predict"));
        assert_eq!(c.markers.metrics.as_deref(), Some("metrics"));
        assert_eq!(c.markers.train.as_deref(), Some("fit"));
    }

    #[test]
    fn tagged_comments_fill_slots_schemas_and_recordsets() {
        let c = SmartComments::parse(SRC, Language::Python);
        assert_eq!(c.schemas.get(&Slot(0)).map(String::as_str), Some("old_in"));
        assert_eq!(c.slots.get(&Slot(2)), Some(&SlotUse::InUse));
        assert_eq!(c.slots.get(&Slot(3)), Some(&SlotUse::Unused));
        assert_eq!(c.recordsets.get(&Slot(0)), Some(&true));
        assert_eq!(c.actions.get(&Slot(2)), Some(&Some("other".to_owned())));
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert!(c.problems[0].1.contains("'x' is not a slot number"));
    }

    #[test]
    fn explicit_names_win_then_markers_then_defaults() {
        let c = SmartComments::parse(
            "def begin():\n  pass\ndef action(x):\n  yield x\n",
            Language::Python,
        );
        let defs = top_level_definitions(
            "def begin():\n  pass\ndef action(x):\n  yield x\n",
            Language::Python,
        );
        let ep = c.entry_points(&ExplicitNames::default(), |n| defs.iter().any(|d| d == n));
        assert_eq!(ep.init.as_deref(), Some("begin"));
        assert_eq!(ep.score.as_deref(), Some("action"));
        assert_eq!(ep.end, None);
        let explicit = ExplicitNames {
            score: Some("other".into()),
            ..ExplicitNames::default()
        };
        let ep = c.entry_points(&explicit, |n| defs.iter().any(|d| d == n));
        assert_eq!(ep.score.as_deref(), Some("other"));
    }

    #[test]
    fn r_markers_bind_to_assignments_of_functions() {
        let src = "# modelop.score\nscore_it <- function(datum) {\n  datum\n}\n#modelop.init\nstart = function() {}\n";
        let c = SmartComments::parse(src, Language::R);
        assert_eq!(c.markers.score.as_deref(), Some("score_it"));
        assert_eq!(c.markers.init.as_deref(), Some("start"));
    }

    #[test]
    fn a_marker_on_something_else_is_reported() {
        let c = SmartComments::parse("# modelop.score\nx = 1\n", Language::Python);
        assert_eq!(c.markers.score, None);
        assert_eq!(c.problems.len(), 1);
    }

    #[test]
    fn action_and_score_tags_name_the_score_function() {
        let defs = |_: &str| false;
        let c = SmartComments::parse("# fastscore.action.0: predict\n", Language::Python);
        let ep = c.entry_points(&ExplicitNames::default(), defs);
        assert_eq!(ep.score.as_deref(), Some("predict"));
        let c = SmartComments::parse("#modelop.score.0:go\n", Language::R);
        let ep = c.entry_points(&ExplicitNames::default(), defs);
        assert_eq!(ep.score.as_deref(), Some("go"));
        let c = SmartComments::parse(
            "# modelop.score: s\n# modelop.init: i\n# fastscore.metrics: m\n# modelop.train: t\n",
            Language::Python,
        );
        let ep = c.entry_points(&ExplicitNames::default(), defs);
        assert_eq!(ep.score.as_deref(), Some("s"));
        assert_eq!(ep.init.as_deref(), Some("i"));
        assert_eq!(ep.metrics.as_deref(), Some("m"));
        assert_eq!(ep.train.as_deref(), Some("t"));
        let c = SmartComments::parse("# odg.action.$in: both\n", Language::Python);
        assert_eq!(c.slot_action(), Some("both"));
        assert!(c.problems.is_empty());
        let c = SmartComments::parse(
            "# fastscore.action.0: a\n# fastscore.action.2: b\n# fastscore.action.4: a\n",
            Language::Python,
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let ep = c.entry_points(&ExplicitNames::default(), defs);
        assert_eq!(ep.score.as_deref(), Some("a"));
        assert_eq!(
            ep.slot_scores.into_iter().collect::<Vec<_>>(),
            vec![(Slot(2), "b".to_owned())]
        );
        let explicit = ExplicitNames {
            score: Some("given".into()),
            ..ExplicitNames::default()
        };
        let ep = c.entry_points(&explicit, defs);
        assert_eq!(ep.score.as_deref(), Some("given"));
        assert!(ep.slot_scores.is_empty());
    }

    #[test]
    fn global_state_outside_init_is_found() {
        let py = "count = 0\ndef begin():\n    global count\n    count = 0\n\ndef action(d):\n    yield d\n";
        assert_eq!(
            state_kept_between_records(py, Language::Python, Some("begin")),
            None
        );
        let py = "def begin():\n    global n\n    n = 0\ndef action(d):\n    global n\n    n += 1\n    yield n\n";
        let why = state_kept_between_records(py, Language::Python, Some("begin")).unwrap();
        assert!(why.contains("line 5"), "{why}");
        let r = "begin <- function() {\n  n <<- 0\n}\naction <- function(d) {\n  n <<- n + 1\n  emit(n)\n}\n";
        let why = state_kept_between_records(r, Language::R, Some("begin")).unwrap();
        assert!(why.contains("line 5"), "{why}");
        let r = "begin <- function() {\n  n <<- 0\n}\naction <- function(d) d\n";
        assert_eq!(
            state_kept_between_records(r, Language::R, Some("begin")),
            None
        );
    }
}

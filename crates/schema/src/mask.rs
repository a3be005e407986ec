//! Rejected records in log lines without their data: keys kept, values replaced by their
//! kind (`{"age": <integer>, "name": <string>, "tags": [<string> x3]}`).

use std::fmt;

use runtime_core::Value;

use crate::Violation;

/// Beyond this many characters a masked rendering is cut.
const MAX_CHARS: usize = 1000;
/// Mixed arrays show this many items, then a count.
const ARRAY_ITEMS: usize = 5;
/// Deeper than this, a value is shown as its kind alone.
const MAX_DEPTH: usize = 32;

/// `value` without its data, for a log line: map keys that are strings are kept (they are
/// field names), every scalar becomes its kind, arrays of one kind are counted.
pub fn masked(value: &Value) -> Masked<'_> {
    Masked(value)
}

/// See [`masked`].
pub struct Masked<'a>(&'a Value);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        write_masked(&mut out, self.0, 0);
        if out.chars().count() > MAX_CHARS {
            let cut: String = out.chars().take(MAX_CHARS).collect();
            write!(f, "{cut}...")
        } else {
            f.write_str(&out)
        }
    }
}

fn write_masked(out: &mut String, v: &Value, depth: usize) {
    if out.len() > MAX_CHARS {
        return;
    }
    match v {
        Value::Array(items) if depth < MAX_DEPTH => {
            let same_scalar = items.first().is_some_and(|first| {
                !matches!(first, Value::Array(_) | Value::Map(_))
                    && items.iter().all(|x| x.kind() == first.kind())
            });
            if same_scalar && items.len() > 1 {
                out.push_str(&format!("[<{}> x{}]", items[0].kind(), items.len()));
                return;
            }
            out.push('[');
            for (i, x) in items.iter().take(ARRAY_ITEMS).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_masked(out, x, depth + 1);
            }
            if items.len() > ARRAY_ITEMS {
                out.push_str(&format!(", ... {} items", items.len()));
            }
            out.push(']');
        }
        Value::Map(map) if depth < MAX_DEPTH => {
            out.push('{');
            for (i, (k, x)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match k {
                    Value::String(s) => out.push_str(&format!("{s:?}")),
                    other => out.push_str(&format!("<{}>", other.kind())),
                }
                out.push_str(": ");
                write_masked(out, x, depth + 1);
                if out.len() > MAX_CHARS {
                    break;
                }
            }
            out.push('}');
        }
        // null and booleans carry no data worth hiding beyond their kind; show the kind
        // anyway so every masked scalar reads the same.
        other => {
            out.push('<');
            out.push_str(other.kind());
            out.push('>');
        }
    }
}

/// The text of a rejection for the job log and the job's outcome: the violation, and the
/// record masked, or in full (with the offending value) when `debug` is on.
pub fn rejection_reason(violation: &Violation, record: &Value, debug: bool) -> String {
    if debug {
        format!("{}; record: {record}", violation.detailed())
    } else {
        format!("{violation}; record: {}", masked(record))
    }
}

#[cfg(test)]
mod tests {
    use runtime_core::Map;

    use super::*;

    #[test]
    fn keys_stay_and_values_go() {
        let mut inner = Map::new();
        inner.push("zip", "12345");
        let mut m = Map::new();
        m.push("name", "Ada");
        m.push("age", 36);
        m.push("tags", vec![Value::from("a"), Value::from("b")]);
        m.push("mixed", vec![Value::from(1), Value::Null]);
        m.push("address", inner);
        m.push(7, true);
        let text = masked(&Value::Map(m)).to_string();
        assert_eq!(
            text,
            r#"{"name": <string>, "age": <integer>, "tags": [<string> x2], "mixed": [<integer>, <null>], "address": {"zip": <string>}, <integer>: <boolean>}"#
        );
        assert!(!text.contains("Ada") && !text.contains("12345"));
    }

    #[test]
    fn long_renderings_are_cut() {
        let m: Map = (0..500).map(|i| (format!("field{i}"), i)).collect();
        let text = masked(&Value::Map(m)).to_string();
        assert!(text.chars().count() <= MAX_CHARS + 3, "{}", text.len());
        assert!(text.ends_with("..."));
    }
}

//! The one compiled form of an Avro schema, shared by the datum walker (decoding and encoding
//! here) and the record checker (the `schema` crate): a flat arena of nodes, children by
//! index, so a record that refers to itself by name is just an index back to itself. Names
//! are resolved once, when the schema is compiled.
//!
//! Logical types are kept as [`Node::Logical`] over their underlying node: the checker checks
//! a `timestamp-millis` as a timestamp, the datum walker reads and writes its `long`. Named
//! types remember their short name for Avro-JSON union wrappers (`{"Address": {...}}` as well
//! as `{"com.acme.Address": {...}}`). Field defaults are kept as written (as [`Value`]s); the
//! checker conforms them to their field's type once, when it is built.
//!
//! Schema text is parsed once, by apache-avro (names, namespaces, aliases, logical types, and
//! the field defaults it resolves), and its parsed form is compiled here; nothing else parses
//! it. A logical type on a type it does not fit is the underlying type, as apache-avro and the
//! specification say. Field defaults are then checked once more by `check_defaults`, which
//! knows what the checker takes for each logical type.

use std::collections::HashMap;

use apache_avro::schema::{FixedSchema, InnerDecimalSchema, Name, UuidSchema};
use apache_avro::Schema;
use runtime_core::{Str, Value};

/// One type of the schema.
#[derive(Debug)]
pub enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(Named, usize),
    Enum(Named, Vec<String>),
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Record(Named, Vec<Field>),
    /// A logical type over its underlying node (`inner` is never itself `Logical`).
    Logical(Logical, usize),
}

/// The names of a named type.
#[derive(Debug)]
pub struct Named {
    pub full: String,
    /// The name without its namespace.
    pub short: String,
}

#[derive(Debug)]
pub struct Field {
    pub name: String,
    pub node: usize,
    /// The schema's default, as written.
    pub default: Option<Value>,
    /// The name as a record's key (a name of up to 24 bytes is copied without allocating).
    key: Str,
}

impl Field {
    pub(crate) fn new(name: String, node: usize, default: Option<Value>) -> Field {
        Field {
            key: Str::from(name.as_str()),
            name,
            node,
            default,
        }
    }

    /// The name as a record's key: a copy of the name.
    #[inline]
    pub(crate) fn key(&self) -> Str {
        self.key.clone()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logical {
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    LocalTimestampMillis,
    LocalTimestampMicros,
    LocalTimestampNanos,
    Decimal { precision: u32, scale: u32 },
    Uuid,
    Duration,
}

impl Node {
    /// The type's name in the datum walker's messages: a named type's full name, else its
    /// kind (a logical type by its own name).
    pub fn type_name(&self) -> &str {
        match self {
            Node::Null => "null",
            Node::Boolean => "boolean",
            Node::Int => "int",
            Node::Long => "long",
            Node::Float => "float",
            Node::Double => "double",
            Node::Bytes => "bytes",
            Node::String => "string",
            Node::Fixed(n, _) | Node::Enum(n, _) | Node::Record(n, _) => &n.full,
            Node::Array(_) => "array",
            Node::Map(_) => "map",
            Node::Union(_) => "union",
            Node::Logical(l, _) => l.name(),
        }
    }
}

impl Logical {
    pub fn name(self) -> &'static str {
        match self {
            Logical::Date => "date",
            Logical::TimeMillis => "time-millis",
            Logical::TimeMicros => "time-micros",
            Logical::TimestampMillis => "timestamp-millis",
            Logical::TimestampMicros => "timestamp-micros",
            Logical::TimestampNanos => "timestamp-nanos",
            Logical::LocalTimestampMillis => "local-timestamp-millis",
            Logical::LocalTimestampMicros => "local-timestamp-micros",
            Logical::LocalTimestampNanos => "local-timestamp-nanos",
            Logical::Decimal { .. } => "decimal",
            Logical::Uuid => "uuid",
            Logical::Duration => "duration",
        }
    }
}

/// A compiled schema: its nodes and the root's index.
#[derive(Debug)]
pub struct Compiled {
    pub nodes: Vec<Node>,
    pub root: usize,
}

impl Compiled {
    /// The name a type goes by in the checker's messages: a named type's full name, else its
    /// kind.
    pub fn type_name(&self, idx: usize) -> String {
        match &self.nodes[idx] {
            Node::Null => "null".into(),
            Node::Boolean => "boolean".into(),
            Node::Int => "int".into(),
            Node::Long => "long".into(),
            Node::Float => "float".into(),
            Node::Double => "double".into(),
            Node::Bytes => "bytes".into(),
            Node::String => "string".into(),
            Node::Fixed(n, size) => format!("fixed {} ({size} bytes)", n.full),
            Node::Enum(n, _) => format!("enum {}", n.full),
            Node::Record(n, _) => format!("record {}", n.full),
            Node::Array(_) => "array".into(),
            Node::Map(_) => "map".into(),
            Node::Union(branches) => {
                let names: Vec<String> = branches.iter().map(|&b| self.type_name(b)).collect();
                format!("one of [{}]", names.join(", "))
            }
            Node::Logical(l, inner) => format!("{} ({})", self.type_name(*inner), l.name()),
        }
    }

    /// Whether null is a value of this type.
    pub fn accepts_null(&self, idx: usize) -> bool {
        match &self.nodes[idx] {
            Node::Null => true,
            Node::Union(branches) => branches
                .iter()
                .any(|&b| matches!(self.nodes[b], Node::Null)),
            _ => false,
        }
    }

    /// The root record's name, if the schema is a record.
    pub fn root_name(&self) -> Option<&str> {
        match &self.nodes[self.root] {
            Node::Record(n, _) => Some(&n.full),
            _ => None,
        }
    }
}

/// Parses schema text with apache-avro (names, namespaces, aliases, logical types, the
/// defaults it resolves) and compiles its parsed form.
pub(crate) fn compile(text: &str) -> Result<Compiled, String> {
    let parsed = apache_avro::Schema::parse_str(text).map_err(|e| e.to_string())?;
    let mut c = Compiler {
        nodes: Vec::new(),
        names: HashMap::new(),
    };
    let root = c.compile(&parsed)?;
    Ok(Compiled {
        nodes: c.nodes,
        root,
    })
}

/// Checks that every field default is a value of its field's type, logical type included:
/// one the datum writer can write (so a record lacking the field can be encoded) and the
/// checker can conform (a `uuid` default is a UUID, a `float` default fits in 32 bits). Done
/// for schemas given as text, not for the schemas of container files being read, where
/// defaults play no part.
pub(crate) fn check_defaults(c: &Compiled) -> Result<(), String> {
    let mut scratch = Vec::new();
    for node in &c.nodes {
        let Node::Record(named, fields) = node else {
            continue;
        };
        for f in fields {
            let Some(default) = &f.default else {
                continue;
            };
            scratch.clear();
            super::datum::write_default(&c.nodes, f.node, default, &mut scratch).map_err(|e| {
                format!(
                    "the default of field '{}' of record '{}' does not match its type: {e}",
                    f.name, named.full
                )
            })?;
        }
    }
    Ok(())
}

/// Whether a string is a UUID in its canonical text form (`8-4-4-4-12` hex digits).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

struct Compiler {
    nodes: Vec<Node>,
    /// Named types by full name, for apache-avro's `Ref`s (full names already).
    names: HashMap<String, usize>,
}

fn named(name: &Name) -> Named {
    Named {
        full: name.fullname(None),
        short: name.name().to_owned(),
    }
}

impl Compiler {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Reserves the node of a named type before its children, so that they can refer to it.
    fn declare(&mut self, named: &Named) -> Result<usize, String> {
        let idx = self.push(Node::Null);
        if self.names.insert(named.full.clone(), idx).is_some() {
            return Err(format!("the type '{}' is defined twice", named.full));
        }
        Ok(idx)
    }

    fn logical(&mut self, l: Logical, inner: Node) -> usize {
        let inner = self.push(inner);
        self.push(Node::Logical(l, inner))
    }

    fn fixed(&mut self, f: &FixedSchema) -> Result<usize, String> {
        let n = named(&f.name);
        let idx = self.declare(&n)?;
        self.nodes[idx] = Node::Fixed(n, f.size);
        Ok(idx)
    }

    fn compile(&mut self, s: &Schema) -> Result<usize, String> {
        Ok(match s {
            Schema::Null => self.push(Node::Null),
            Schema::Boolean => self.push(Node::Boolean),
            Schema::Int => self.push(Node::Int),
            Schema::Long => self.push(Node::Long),
            Schema::Float => self.push(Node::Float),
            Schema::Double => self.push(Node::Double),
            // A decimal without a fixed scale has no logical type here: its bytes.
            Schema::Bytes | Schema::BigDecimal => self.push(Node::Bytes),
            Schema::String => self.push(Node::String),
            Schema::Array(a) => {
                let items = self.compile(&a.items)?;
                self.push(Node::Array(items))
            }
            Schema::Map(m) => {
                let values = self.compile(&m.types)?;
                self.push(Node::Map(values))
            }
            Schema::Union(u) => {
                let branches = u
                    .variants()
                    .iter()
                    .map(|b| self.compile(b))
                    .collect::<Result<Vec<_>, _>>()?;
                self.push(Node::Union(branches))
            }
            Schema::Record(r) => {
                let n = named(&r.name);
                let idx = self.declare(&n)?;
                let mut fields: Vec<Field> = Vec::with_capacity(r.fields.len());
                for f in &r.fields {
                    if fields.iter().any(|x| x.name == f.name) {
                        return Err(format!(
                            "record {} has two fields named '{}'",
                            n.full, f.name
                        ));
                    }
                    let node = self.compile(&f.schema)?;
                    fields.push(Field::new(
                        f.name.clone(),
                        node,
                        f.default.clone().map(Value::from),
                    ));
                }
                self.nodes[idx] = Node::Record(n, fields);
                idx
            }
            Schema::Enum(e) => {
                let n = named(&e.name);
                let idx = self.declare(&n)?;
                self.nodes[idx] = Node::Enum(n, e.symbols.clone());
                idx
            }
            Schema::Fixed(f) => self.fixed(f)?,
            Schema::Decimal(d) => {
                let precision = u32::try_from(d.precision)
                    .map_err(|_| format!("decimal precision {} is too large", d.precision))?;
                let scale = u32::try_from(d.scale)
                    .map_err(|_| format!("decimal scale {} is too large", d.scale))?;
                let inner = match &d.inner {
                    InnerDecimalSchema::Bytes => self.push(Node::Bytes),
                    InnerDecimalSchema::Fixed(f) => self.fixed(f)?,
                };
                self.push(Node::Logical(Logical::Decimal { precision, scale }, inner))
            }
            // A UUID in bytes has no text form to check: its bytes.
            Schema::Uuid(UuidSchema::Bytes) => self.push(Node::Bytes),
            Schema::Uuid(UuidSchema::String) => self.logical(Logical::Uuid, Node::String),
            Schema::Uuid(UuidSchema::Fixed(f)) => {
                let inner = self.fixed(f)?;
                self.push(Node::Logical(Logical::Uuid, inner))
            }
            Schema::Date => self.logical(Logical::Date, Node::Int),
            Schema::TimeMillis => self.logical(Logical::TimeMillis, Node::Int),
            Schema::TimeMicros => self.logical(Logical::TimeMicros, Node::Long),
            Schema::TimestampMillis => self.logical(Logical::TimestampMillis, Node::Long),
            Schema::TimestampMicros => self.logical(Logical::TimestampMicros, Node::Long),
            Schema::TimestampNanos => self.logical(Logical::TimestampNanos, Node::Long),
            Schema::LocalTimestampMillis => self.logical(Logical::LocalTimestampMillis, Node::Long),
            Schema::LocalTimestampMicros => self.logical(Logical::LocalTimestampMicros, Node::Long),
            Schema::LocalTimestampNanos => self.logical(Logical::LocalTimestampNanos, Node::Long),
            Schema::Duration(f) => {
                let inner = self.fixed(f)?;
                self.push(Node::Logical(Logical::Duration, inner))
            }
            Schema::Ref { name } => {
                let full = name.fullname(None);
                self.names
                    .get(&full)
                    .copied()
                    .ok_or_else(|| format!("unknown type '{full}'"))?
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_default(inner: Node, logical: Option<Logical>, default: Value) -> Compiled {
        let mut nodes = vec![inner];
        if let Some(l) = logical {
            nodes.push(Node::Logical(l, 0));
        }
        let node = nodes.len() - 1;
        nodes.push(Node::Record(
            Named {
                full: "R".into(),
                short: "R".into(),
            },
            vec![Field::new("a".into(), node, Some(default))],
        ));
        let root = nodes.len() - 1;
        Compiled { nodes, root }
    }

    // The datum writer alone takes these; the default check holds them to their logical type.
    #[test]
    fn defaults_are_held_to_their_logical_type() {
        let uuid = with_default(Node::String, Some(Logical::Uuid), Value::String("x".into()));
        let err = check_defaults(&uuid).unwrap_err();
        assert!(
            err.contains("field 'a' of record 'R'") && err.contains("UUID"),
            "{err}"
        );
        let good = "123e4567-e89b-12d3-a456-426614174000";
        let uuid = with_default(
            Node::String,
            Some(Logical::Uuid),
            Value::String(good.into()),
        );
        check_defaults(&uuid).unwrap();

        let float = with_default(Node::Float, None, Value::Float(1e39));
        assert!(check_defaults(&float).unwrap_err().contains("too large"));
        let float = with_default(Node::Float, None, Value::Float(1.5));
        check_defaults(&float).unwrap();
    }

    #[test]
    fn logical_types_compile_over_their_underlying_types() {
        let c = compile(
            r#"{"type": "record", "name": "R", "namespace": "n", "fields": [
                {"name": "d", "type": {"type": "int", "logicalType": "date"}},
                {"name": "bad", "type": {"type": "string", "logicalType": "date"}},
                {"name": "m", "type": {"type": {"type": "fixed", "name": "F", "size": 8},
                    "logicalType": "decimal", "precision": 10, "scale": 2}},
                {"name": "f", "type": "F"}]}"#,
        )
        .unwrap();
        let Node::Record(named, fields) = &c.nodes[c.root] else {
            panic!("{c:?}")
        };
        assert_eq!((named.full.as_str(), named.short.as_str()), ("n.R", "R"));
        let kinds: Vec<String> = fields.iter().map(|f| c.type_name(f.node)).collect();
        assert_eq!(
            kinds,
            [
                "int (date)",
                "string",
                "fixed n.F (8 bytes) (decimal)",
                "fixed n.F (8 bytes)"
            ]
        );
    }
}

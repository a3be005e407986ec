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
//! Schema text is validated by [`AvroSchema::parse`](super::AvroSchema::parse) (apache-avro)
//! before it gets here; the errors below are a second line, for what that parser lets through
//! and for the schemas of container file headers.

use std::collections::HashMap;

use runtime_core::Value;
use serde_json::Value as J;

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

/// Compiles a schema's JSON.
pub(crate) fn compile(json: &J) -> Result<Compiled, String> {
    let mut c = Compiler {
        nodes: Vec::new(),
        names: HashMap::new(),
    };
    let root = c.compile(json, None)?;
    Ok(Compiled {
        nodes: c.nodes,
        root,
    })
}

/// Checks that every field default is a value of its field's type: one the datum writer can
/// write (so a record lacking the field can be encoded). Done for schemas given as text, not
/// for the schemas of container files being read, where defaults play no part.
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
            super::datum::write(&c.nodes, f.node, default, &mut scratch, 0).map_err(|e| {
                format!(
                    "the default of field '{}' of record '{}' does not match its type: {e}",
                    f.name, named.full
                )
            })?;
        }
    }
    Ok(())
}

struct Compiler {
    nodes: Vec<Node>,
    names: HashMap<String, usize>,
}

fn primitive(name: &str) -> Option<Node> {
    Some(match name {
        "null" => Node::Null,
        "boolean" => Node::Boolean,
        "int" => Node::Int,
        "long" => Node::Long,
        "float" => Node::Float,
        "double" => Node::Double,
        "bytes" => Node::Bytes,
        "string" => Node::String,
        _ => return None,
    })
}

impl Compiler {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn declare(&mut self, named: &Named, idx: usize) -> Result<(), String> {
        if self.names.insert(named.full.clone(), idx).is_some() {
            return Err(format!("the type '{}' is defined twice", named.full));
        }
        Ok(())
    }

    fn compile(&mut self, json: &J, ns: Option<&str>) -> Result<usize, String> {
        match json {
            J::String(name) => self.reference(name, ns),
            J::Array(branches) => {
                let mut idx = Vec::with_capacity(branches.len());
                for b in branches {
                    idx.push(self.compile(b, ns)?);
                }
                Ok(self.push(Node::Union(idx)))
            }
            J::Object(obj) => {
                let ty = match obj.get("type") {
                    Some(J::String(t)) => t.as_str(),
                    // {"type": {...}} or {"type": [...]}: attributes around another schema.
                    Some(other) => return self.compile(other, ns),
                    None => return Err("a schema object needs a 'type'".into()),
                };
                let base = match ty {
                    "record" | "error" => self.record(obj, ns)?,
                    "enum" => {
                        let (named, _) = names(obj, ns)?;
                        let symbols = obj
                            .get("symbols")
                            .and_then(J::as_array)
                            .ok_or_else(|| format!("enum {} needs 'symbols'", named.full))?
                            .iter()
                            .map(|s| s.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| {
                                format!("enum {} has a symbol that is not a string", named.full)
                            })?;
                        let idx = self.push(Node::Null);
                        self.declare(&named, idx)?;
                        self.nodes[idx] = Node::Enum(named, symbols);
                        idx
                    }
                    "fixed" => {
                        let (named, _) = names(obj, ns)?;
                        let size = obj
                            .get("size")
                            .and_then(J::as_u64)
                            .and_then(|s| usize::try_from(s).ok())
                            .ok_or_else(|| format!("fixed {} needs a 'size'", named.full))?;
                        let idx = self.push(Node::Null);
                        self.declare(&named, idx)?;
                        self.nodes[idx] = Node::Fixed(named, size);
                        idx
                    }
                    "array" => {
                        let items = obj.get("items").ok_or("an array needs 'items'")?;
                        let i = self.compile(items, ns)?;
                        self.push(Node::Array(i))
                    }
                    "map" => {
                        let values = obj.get("values").ok_or("a map needs 'values'")?;
                        let v = self.compile(values, ns)?;
                        self.push(Node::Map(v))
                    }
                    other => self.reference(other, ns)?,
                };
                Ok(match logical(obj, &self.nodes[base]) {
                    Some(l) => self.push(Node::Logical(l, base)),
                    None => base,
                })
            }
            other => Err(format!("{other} is not a schema")),
        }
    }

    fn record(
        &mut self,
        obj: &serde_json::Map<String, J>,
        ns: Option<&str>,
    ) -> Result<usize, String> {
        let (named, inner_ns) = names(obj, ns)?;
        let idx = self.push(Node::Null);
        self.declare(&named, idx)?;
        let fields_json = obj
            .get("fields")
            .and_then(J::as_array)
            .ok_or_else(|| format!("record {} needs a 'fields' array", named.full))?;
        let mut fields: Vec<Field> = Vec::with_capacity(fields_json.len());
        for f in fields_json {
            let name = f
                .get("name")
                .and_then(J::as_str)
                .ok_or_else(|| format!("a field of record {} has no name", named.full))?;
            if fields.iter().any(|x| x.name == name) {
                return Err(format!(
                    "record {} has two fields named '{name}'",
                    named.full
                ));
            }
            let fty = f
                .get("type")
                .ok_or_else(|| format!("field '{name}' of record {} has no type", named.full))?;
            let node = self.compile(fty, inner_ns.as_deref())?;
            fields.push(Field {
                name: name.to_owned(),
                node,
                default: f.get("default").cloned().map(Value::from),
            });
        }
        self.nodes[idx] = Node::Record(named, fields);
        Ok(idx)
    }

    fn reference(&mut self, name: &str, ns: Option<&str>) -> Result<usize, String> {
        if let Some(node) = primitive(name) {
            return Ok(self.push(node));
        }
        let qualified = match ns {
            Some(ns) if !name.contains('.') && !ns.is_empty() => Some(format!("{ns}.{name}")),
            _ => None,
        };
        qualified
            .and_then(|q| self.names.get(&q).copied())
            .or_else(|| self.names.get(name).copied())
            .ok_or_else(|| format!("unknown type '{name}'"))
    }
}

/// The logical type an object declares, if it is one this checker knows and it sits on a
/// type the Avro specification allows for it; anything else is the underlying type, as the
/// specification says readers must do.
fn logical(obj: &serde_json::Map<String, J>, base: &Node) -> Option<Logical> {
    let name = obj.get("logicalType")?.as_str()?;
    let int = matches!(base, Node::Int);
    let long = matches!(base, Node::Long);
    let l = match name {
        "date" if int => Logical::Date,
        "time-millis" if int => Logical::TimeMillis,
        "time-micros" if long => Logical::TimeMicros,
        "timestamp-millis" if long => Logical::TimestampMillis,
        "timestamp-micros" if long => Logical::TimestampMicros,
        "timestamp-nanos" if long => Logical::TimestampNanos,
        "local-timestamp-millis" if long => Logical::LocalTimestampMillis,
        "local-timestamp-micros" if long => Logical::LocalTimestampMicros,
        "local-timestamp-nanos" if long => Logical::LocalTimestampNanos,
        "uuid" if matches!(base, Node::String) || matches!(base, Node::Fixed(_, 16)) => {
            Logical::Uuid
        }
        "duration" if matches!(base, Node::Fixed(_, 12)) => Logical::Duration,
        "decimal" if matches!(base, Node::Bytes | Node::Fixed(..)) => {
            let precision = obj.get("precision")?.as_u64()?;
            let scale = obj.get("scale").map_or(Some(0), J::as_u64)?;
            if precision == 0 || scale > precision {
                return None;
            }
            Logical::Decimal {
                precision: u32::try_from(precision).ok()?,
                scale: u32::try_from(scale).ok()?,
            }
        }
        _ => return None,
    };
    Some(l)
}

/// A named type's names and the namespace its children inherit.
fn names(
    obj: &serde_json::Map<String, J>,
    ns: Option<&str>,
) -> Result<(Named, Option<String>), String> {
    let name = obj
        .get("name")
        .and_then(J::as_str)
        .ok_or("a named type needs a 'name'")?;
    if let Some((space, short)) = name.rsplit_once('.') {
        let named = Named {
            full: name.to_owned(),
            short: short.to_owned(),
        };
        return Ok((named, Some(space.to_owned())));
    }
    let space = obj
        .get("namespace")
        .and_then(J::as_str)
        .or(ns)
        .filter(|s| !s.is_empty());
    let full = match space {
        Some(space) => format!("{space}.{name}"),
        None => name.to_owned(),
    };
    let named = Named {
        full,
        short: name.to_owned(),
    };
    Ok((named, space.map(str::to_owned)))
}

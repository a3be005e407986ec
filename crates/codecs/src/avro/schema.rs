//! A schema compiled for decoding and encoding: a flat arena of nodes, children by index, so
//! recursive types (a record that refers to itself by name) need no reference counting.
//!
//! Logical types are dropped at compile time: a `timestamp-millis` is its `long`, a `decimal`
//! its `bytes`/`fixed`, which keeps every value lossless.

use std::collections::HashMap;

use runtime_core::Value;
use serde_json::Value as J;

#[derive(Debug)]
pub(crate) enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed { name: String, size: usize },
    Enum { name: String, symbols: Vec<String> },
    Array(usize),
    Map(usize),
    Union(Vec<usize>),
    Record { name: String, fields: Vec<Field> },
}

#[derive(Debug)]
pub(crate) struct Field {
    pub name: String,
    pub node: usize,
    /// The schema's default, used when a record to encode lacks the field.
    pub default: Option<Value>,
}

#[derive(Debug)]
pub(crate) struct Compiled {
    pub nodes: Vec<Node>,
    pub root: usize,
}

impl Node {
    /// The type's name, for error messages.
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
            Node::Fixed { name, .. } | Node::Enum { name, .. } | Node::Record { name, .. } => name,
            Node::Array(_) => "array",
            Node::Map(_) => "map",
            Node::Union(_) => "union",
        }
    }
}

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

    fn compile(&mut self, json: &J, ns: Option<&str>) -> Result<usize, String> {
        match json {
            J::String(name) => self.named(name, ns),
            J::Array(branches) => {
                let mut idx = Vec::with_capacity(branches.len());
                for b in branches {
                    idx.push(self.compile(b, ns)?);
                }
                Ok(self.push(Node::Union(idx)))
            }
            J::Object(obj) => {
                let ty = obj.get("type").ok_or("a schema object needs a 'type'")?;
                let ty = match ty {
                    J::String(t) => t.as_str(),
                    // {"type": {...}} or {"type": [...]}: the attributes wrap another schema.
                    other => return self.compile(other, ns),
                };
                match ty {
                    "record" | "error" => {
                        let (full, inner_ns) = full_name(obj, ns)?;
                        let idx = self.push(Node::Null);
                        self.names.insert(full.clone(), idx);
                        let fields_json = obj
                            .get("fields")
                            .and_then(J::as_array)
                            .ok_or_else(|| format!("record {full} needs a 'fields' array"))?;
                        let mut fields = Vec::with_capacity(fields_json.len());
                        for f in fields_json {
                            let name = f
                                .get("name")
                                .and_then(J::as_str)
                                .ok_or_else(|| format!("a field of {full} has no name"))?;
                            let fty = f
                                .get("type")
                                .ok_or_else(|| format!("field {full}.{name} has no type"))?;
                            let node = self.compile(fty, inner_ns.as_deref())?;
                            fields.push(Field {
                                name: name.to_owned(),
                                node,
                                default: f.get("default").cloned().map(Value::from),
                            });
                        }
                        self.nodes[idx] = Node::Record { name: full, fields };
                        Ok(idx)
                    }
                    "enum" => {
                        let (full, _) = full_name(obj, ns)?;
                        let symbols = obj
                            .get("symbols")
                            .and_then(J::as_array)
                            .ok_or_else(|| format!("enum {full} needs 'symbols'"))?
                            .iter()
                            .map(|s| s.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| {
                                format!("enum {full} has a symbol that is not a string")
                            })?;
                        let idx = self.push(Node::Enum {
                            name: full.clone(),
                            symbols,
                        });
                        self.names.insert(full, idx);
                        Ok(idx)
                    }
                    "fixed" => {
                        let (full, _) = full_name(obj, ns)?;
                        let size = obj
                            .get("size")
                            .and_then(J::as_u64)
                            .and_then(|s| usize::try_from(s).ok())
                            .ok_or_else(|| format!("fixed {full} needs a 'size'"))?;
                        let idx = self.push(Node::Fixed {
                            name: full.clone(),
                            size,
                        });
                        self.names.insert(full, idx);
                        Ok(idx)
                    }
                    "array" => {
                        let items = obj.get("items").ok_or("an array needs 'items'")?;
                        let i = self.compile(items, ns)?;
                        Ok(self.push(Node::Array(i)))
                    }
                    "map" => {
                        let values = obj.get("values").ok_or("a map needs 'values'")?;
                        let v = self.compile(values, ns)?;
                        Ok(self.push(Node::Map(v)))
                    }
                    // A primitive with attributes (logicalType and the like) or a reference.
                    other => self.named(other, ns),
                }
            }
            other => Err(format!("{other} is not a schema")),
        }
    }

    fn named(&mut self, name: &str, ns: Option<&str>) -> Result<usize, String> {
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

/// A named type's full name and the namespace its children inherit.
fn full_name(
    obj: &serde_json::Map<String, J>,
    ns: Option<&str>,
) -> Result<(String, Option<String>), String> {
    let name = obj
        .get("name")
        .and_then(J::as_str)
        .ok_or("a named type needs a 'name'")?;
    if let Some((space, _)) = name.rsplit_once('.') {
        return Ok((name.to_owned(), Some(space.to_owned())));
    }
    let space = obj
        .get("namespace")
        .and_then(J::as_str)
        .or(ns)
        .filter(|s| !s.is_empty());
    Ok(match space {
        Some(space) => (format!("{space}.{name}"), Some(space.to_owned())),
        None => (name.to_owned(), None),
    })
}

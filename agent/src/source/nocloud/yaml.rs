//! The seed's YAML documents (JSON is read as YAML too): bounded before parsing, and small
//! typed getters whose errors name the file and the field.

use crate::source::userdata::yaml_depth;
use serde_norway::{Mapping, Value};

/// Parses `bytes` as the document `file`; the nesting is bounded first (libyaml's work grows
/// with its square). Errors read `file: why (line N …)`.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{file}: not UTF-8: {e}"))?;
    yaml_depth::check(text).map_err(|e| format!("{file}: {e}"))?;
    serde_norway::from_str(text).map_err(|e| format!("{file}: not valid YAML: {e}"))
}

/// A field path for messages: `config[0].subnets[1].address`.
#[derive(Clone)]
pub struct At<'a> {
    pub file: &'a str,
    pub path: String,
}

impl<'a> At<'a> {
    pub fn new(file: &'a str) -> Self {
        At {
            file,
            path: String::new(),
        }
    }
    pub fn key(&self, k: &str) -> At<'a> {
        let path = if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        };
        At {
            file: self.file,
            path,
        }
    }
    pub fn index(&self, i: usize) -> At<'a> {
        At {
            file: self.file,
            path: format!("{}[{i}]", self.path),
        }
    }
    pub fn err(&self, why: impl std::fmt::Display) -> String {
        if self.path.is_empty() {
            format!("{}: {why}", self.file)
        } else {
            format!("{}: {}: {why}", self.file, self.path)
        }
    }
}

pub fn mapping<'v>(v: &'v Value, at: &At) -> Result<&'v Mapping, String> {
    match v {
        Value::Mapping(m) => Ok(m),
        _ => Err(at.err("expected a mapping")),
    }
}

/// A scalar as text (numbers and booleans too: `id: 10`, `mtu: 1500`).
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn get<'v>(m: &'v Mapping, k: &str) -> Option<&'v Value> {
    m.get(k).filter(|v| !v.is_null())
}

pub fn string(m: &Mapping, k: &str, at: &At) -> Result<Option<String>, String> {
    get(m, k)
        .map(|v| text(v).ok_or_else(|| at.key(k).err("expected a string")))
        .transpose()
}

/// A list of scalars, or one scalar (also space-separated, as cloud-init's `dns_nameservers`).
pub fn strings(m: &Mapping, k: &str, at: &At) -> Result<Vec<String>, String> {
    match get(m, k) {
        None => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, x)| text(x).ok_or_else(|| at.key(k).index(i).err("expected a string")))
            .collect(),
        Some(v) => text(v)
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .ok_or_else(|| at.key(k).err("expected a list of strings")),
    }
}

pub fn number(m: &Mapping, k: &str, at: &At) -> Result<Option<u32>, String> {
    string(m, k, at)?
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| at.key(k).err(format!("{s:?} is not a number")))
        })
        .transpose()
}

/// `true`/`false`, and the YAML 1.1 words cloud-init accepts (`yes`, `on`, …).
pub fn flag(m: &Mapping, k: &str, at: &At) -> Result<Option<bool>, String> {
    match get(m, k) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => match text(v).map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("true" | "yes" | "on" | "1") => Ok(Some(true)),
            Some("false" | "no" | "off" | "0") => Ok(Some(false)),
            _ => Err(at.key(k).err("expected true or false")),
        },
    }
}

pub fn mac(m: &Mapping, k: &str, at: &At) -> Result<Option<crate::context::MacAddr>, String> {
    string(m, k, at)?
        .map(|s| s.parse().map_err(|e| at.key(k).err(e)))
        .transpose()
}

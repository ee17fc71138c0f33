//! `cloud-init query [--all] [--list-keys] [--format TEMPLATE] [VARNAME]` over the instance data
//! apply wrote (see `instance`), as cloudinit/cmd/query.py does it: root reads the sensitive
//! file, others the redacted one; `v1` keys are also top-level keys; a key with `-` or `.` is
//! also reachable by its `_` alias (`ds.meta_data.local_hostname`); strings print as they are,
//! anything else as JSON (indent 1, sorted). `--format` takes cloud-init's `{{ var.path }}`
//! substitutions (no other Jinja).

use super::instance::{INSTANCE_DATA, INSTANCE_DATA_SENSITIVE, REDACTED};
use super::output::py_json;
use crate::files::Root;
use serde_json::{Map, Value};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Args {
    pub all: bool,
    pub list_keys: bool,
    pub format: Option<String>,
    pub varname: Option<String>,
    /// `-i FILE`: this instance-data file instead of the default.
    pub instance_data: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    #[error("Expected one of the options: --all, --format, --list-keys or varname")]
    NothingAsked,
    #[error("Missing instance-data file: {0}")]
    Missing(String),
    #[error("No read permission on '{0}'. Try sudo")]
    Permission(String),
    #[error("{0}: not JSON ({1})")]
    Malformed(String, String),
    #[error("Undefined instance-data key '{0}'")]
    Undefined(String),
    #[error("instance-data '{walked}' has no '{leaf}'")]
    NoLeaf { walked: String, leaf: String },
    #[error("--list-keys provided but '{0}' is not a dict")]
    NotADict(String),
    #[error("Failed to render templated data. only {{{{ variable }}}} substitutions are supported here (vmctx)")]
    Template,
}

/// Reads the instance data for this user: root gets the sensitive file (or, when it is
/// missing, the redacted one), others the redacted one with user- and vendor-data marked.
pub fn read(root: &Path, file: Option<&str>, as_root: bool) -> Result<Value, QueryError> {
    let r = Root::new(root);
    let redacted = r.path(INSTANCE_DATA);
    let sensitive = r.path(INSTANCE_DATA_SENSITIVE);
    let path = match file {
        Some(f) => Path::new(f).to_path_buf(),
        None if as_root && sensitive.exists() => sensitive.clone(),
        None => redacted,
    };
    let shown = path.display().to_string();
    // O_NOFOLLOW: /run/vmctx is root's, but never read through a link.
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => QueryError::Permission(shown.clone()),
            _ => QueryError::Missing(shown.clone()),
        })?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .map_err(|e| QueryError::Malformed(shown.clone(), e.to_string()))?;
    let mut doc: Value =
        serde_json::from_str(&text).map_err(|e| QueryError::Malformed(shown, e.to_string()))?;
    if !as_root {
        let mark = format!(
            "<{REDACTED}> file:{}",
            Path::new(INSTANCE_DATA_SENSITIVE).display()
        );
        doc["userdata"] = mark.clone().into();
        doc["vendordata"] = mark.into();
    }
    Ok(doc)
}

/// cloud-init's `convert_jinja_instance_data`: `vN` keys copied to the top level, and with
/// `aliases` every key with an operator character also under its `_` name.
pub fn convert(v: &Value, aliases: bool) -> Value {
    let Value::Object(m) = v else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in m {
        let converted = convert(val, aliases);
        if let Value::Object(inner) = &converted {
            if is_version_key(k) {
                for (sk, sv) in inner {
                    out.insert(sk.clone(), sv.clone());
                }
            }
        }
        out.insert(k.clone(), converted.clone());
        if aliases {
            let alias = alias(k);
            if alias != *k {
                out.insert(alias, converted);
            }
        }
    }
    Value::Object(out)
}

fn is_version_key(k: &str) -> bool {
    k.len() > 1 && k.starts_with('v') && k[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Jinja's operator characters (`-`, `.`, `+`, `/`, …) replaced by `_`.
fn alias(k: &str) -> String {
    k.chars()
        .map(|c| {
            if "-.+*/%~|&^<>=!,:;()[]{}".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The value at the dotted `varname`, walking names or their `_` aliases.
pub fn lookup(plain: &Value, with_aliases: &Value, varname: &str) -> Result<Value, QueryError> {
    let mut walked = String::new();
    let mut response = plain;
    let mut aliased = with_aliases;
    for part in varname.split('.') {
        aliased = match aliased.get(part) {
            Some(a) => a,
            None if walked.is_empty() => return Err(QueryError::Undefined(varname.into())),
            None => {
                return Err(QueryError::NoLeaf {
                    walked,
                    leaf: part.into(),
                })
            }
        };
        response = match response.get(part) {
            Some(r) => r,
            None => response
                .as_object()
                .and_then(|m| m.iter().find(|(k, _)| alias(k) == part).map(|(_, v)| v))
                .unwrap_or(aliased),
        };
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
    }
    Ok(response.clone())
}

/// `{{ a.b }}` replaced by the value (strings as they are, `None`, `True`/`False`, else JSON);
/// an undefined name gives cloud-init's `CI_MISSING_JINJA_VAR/a.b`.
pub fn render(template: &str, doc: &Value) -> Result<String, QueryError> {
    if template.contains("{%") || template.contains("{#") {
        return Err(QueryError::Template);
    }
    let plain = convert(doc, false);
    let aliased = convert(doc, true);
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(QueryError::Template)?;
        let name = after[..end].trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "._".contains(c))
        {
            return Err(QueryError::Template);
        }
        match lookup(&plain, &aliased, name) {
            Ok(Value::String(s)) => out.push_str(&s),
            Ok(Value::Null) => out.push_str("None"),
            Ok(Value::Bool(b)) => out.push_str(if b { "True" } else { "False" }),
            Ok(v) => out.push_str(&v.to_string()),
            Err(_) => out.push_str(&format!("CI_MISSING_JINJA_VAR/{name}")),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What `cloud-init query` prints for `args` over `doc` (without the final newline).
pub fn answer(doc: &Value, args: &Args) -> Result<String, QueryError> {
    if let Some(t) = &args.format {
        return render(t, doc);
    }
    if !args.all && !args.list_keys && args.varname.is_none() {
        return Err(QueryError::NothingAsked);
    }
    let plain = convert(doc, false);
    let response = match &args.varname {
        Some(name) => lookup(&plain, &convert(doc, true), name)?,
        None => plain,
    };
    if args.list_keys {
        let Value::Object(m) = &response else {
            return Err(QueryError::NotADict(
                args.varname.clone().unwrap_or_default(),
            ));
        };
        return Ok(m.keys().cloned().collect::<Vec<_>>().join("\n"));
    }
    Ok(match response {
        Value::String(s) => s,
        other => py_json(&other, 1),
    })
}

/// `cloud-init query`: prints the answer, or cloud-init's error line; the exit code.
pub fn run(root: &Path, args: &Args) -> u8 {
    if !args.all && !args.list_keys && args.varname.is_none() && args.format.is_none() {
        super::log_error("query.py", &QueryError::NothingAsked.to_string());
        return 1;
    }
    let as_root = nix::unistd::geteuid().is_root();
    let result = read(root, args.instance_data.as_deref(), as_root).and_then(|d| answer(&d, args));
    match result {
        Ok(text) if args.format.is_some() && text.is_empty() => 1,
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            super::log_error("query.py", &e.to_string());
            1
        }
    }
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;

//! Output the way cloud-init's Python prints it, so scripts that compare or parse it keep
//! working: `json.dumps(…, indent=N, sort_keys=True)` (ASCII only, `\uXXXX` escapes) and
//! PyYAML's `safe_dump(…, indent=4, explicit_start, explicit_end)` for the plain data the
//! status report holds.

use serde::Serialize;
use serde_json::Value;

/// `json.dumps(v, indent=indent, sort_keys=True, separators=(",", ": "))`: serde_json's maps
/// are already sorted; non-ASCII is escaped as Python's default `ensure_ascii` does.
pub fn py_json(v: &Value, indent: usize) -> String {
    let pad = vec![b' '; indent];
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing a Value into memory cannot fail.
    let _ = v.serialize(&mut ser);
    ascii_only(&String::from_utf8_lossy(&out))
}

/// Non-ASCII characters occur only inside JSON strings, so escaping them in the text is safe.
fn ascii_only(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// A YAML document as PyYAML's `safe_dump(indent=4, default_flow_style=False,
/// explicit_start=True, explicit_end=True)` writes it: sorted keys, nested mappings indented
/// by 4, sequences not indented under their key, `---` and `...` around.
pub fn py_yaml(v: &Value) -> String {
    let mut out = String::from("---\n");
    match v {
        Value::Object(m) if !m.is_empty() => mapping(&mut out, v, 0),
        Value::Array(a) if !a.is_empty() => sequence(&mut out, v, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out.push_str("...\n");
    out
}

fn mapping(out: &mut String, v: &Value, indent: usize) {
    let Value::Object(m) = v else { return };
    let pad = " ".repeat(indent);
    for (k, val) in m {
        out.push_str(&format!("{pad}{}:", string(k)));
        match val {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(out, val, indent + 4);
            }
            // PyYAML does not indent a block sequence under its mapping key.
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                sequence(out, val, indent);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other));
                out.push('\n');
            }
        }
    }
}

fn sequence(out: &mut String, v: &Value, indent: usize) {
    let Value::Array(items) = v else { return };
    let pad = " ".repeat(indent);
    for item in items {
        match item {
            Value::Object(inner) if !inner.is_empty() => {
                // `-   key: value`, the following keys aligned under the first.
                let mut nested = String::new();
                mapping(&mut nested, item, indent + 4);
                out.push_str(&format!("{pad}-   {}", &nested[indent + 4..]));
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push_str(&format!("{pad}-\n"));
                sequence(out, item, indent + 4);
            }
            other => out.push_str(&format!("{pad}- {}\n", scalar(other))),
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string plain when PyYAML would leave it plain, else single-quoted, else (control
/// characters, line breaks) double-quoted.
fn string(s: &str) -> String {
    if plain_ok(s) {
        return s.to_string();
    }
    if s.chars().all(|c| !c.is_control()) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.starts_with(' ') || s.ends_with(' ') || s.chars().any(|c| c.is_control()) {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        // `-x`, `?x`, `:x` are plain in PyYAML when not followed by a space.
        let second = s.chars().nth(1);
        if !("-?:".contains(first) && second.is_some_and(|c| c != ' ')) {
            return false;
        }
    }
    if s.contains(": ") || s.ends_with(':') || s.contains(" #") {
        return false;
    }
    !resolves_to_other_type(s)
}

/// Strings YAML 1.1 would read back as null, a boolean, a number or a timestamp.
fn resolves_to_other_type(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "-.inf", "+.inf", ".nan", ".NaN", ".NAN", "<<", "=",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let numeric = !body.is_empty()
        && body.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_hexdigit() || "._:xXoOeE+-".contains(c));
    let date =
        s.len() >= 8 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) && s.as_bytes()[4] == b'-';
    numeric && body.chars().any(|c| c.is_ascii_digit()) || date
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_like_python() {
        let v = json!({"b": [], "a": {"x": 1.5, "é": "ü"}, "c": {}});
        assert_eq!(
            py_json(&v, 2),
            "{\n  \"a\": {\n    \"x\": 1.5,\n    \"\\u00e9\": \"\\u00fc\"\n  },\n  \"b\": [],\n  \"c\": {}\n}"
        );
        assert_eq!(
            py_json(&json!({"k": "😀"}), 1),
            "{\n \"k\": \"\\ud83d\\ude00\"\n}"
        );
    }

    /// cloud-init's own expectation (tests/unittests/cmd/test_status.py, running_yaml_format).
    #[test]
    fn yaml_like_pyyaml() {
        let v = json!({
            "boot_status_code": "enabled-by-kernel-command-line",
            "datasource": "",
            "detail": "Running in stage: init",
            "errors": [],
            "extended_status": "running",
            "init": {"finished": null, "start": 124.456},
            "init-local": {"finished": 123.46, "start": 123.45},
            "last_update": "Thu, 01 Jan 1970 00:02:04 +0000",
            "recoverable_errors": {},
            "stage": "init",
            "status": "running",
        });
        let want = "---\nboot_status_code: enabled-by-kernel-command-line\ndatasource: ''\n\
detail: 'Running in stage: init'\nerrors: []\nextended_status: running\ninit:\n    \
finished: null\n    start: 124.456\ninit-local:\n    finished: 123.46\n    start: 123.45\n\
last_update: Thu, 01 Jan 1970 00:02:04 +0000\nrecoverable_errors: {}\nstage: init\n\
status: running\n...\n";
        assert_eq!(py_yaml(&v), want);
    }

    #[test]
    fn yaml_quotes_what_would_read_back_otherwise() {
        let v = json!({"e": ["a: b", "yes", "12", "2024-01-01", "it's", "x\ny", "-x", "- x"],
                       "r": {"WARNING": ["w"]}});
        assert_eq!(
            py_yaml(&v),
            "---\ne:\n- 'a: b'\n- 'yes'\n- '12'\n- '2024-01-01'\n- it's\n- \"x\\ny\"\n- -x\n\
- '- x'\nr:\n    WARNING:\n    - w\n...\n"
        );
        assert_eq!(
            py_yaml(&json!([{"a": 1, "b": 2}])),
            "---\n-   a: 1\n    b: 2\n...\n"
        );
    }
}

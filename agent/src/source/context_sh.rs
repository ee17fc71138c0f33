//! `context.sh` parser: OpenNebula's `NAME='value'` format, read as data and never executed.
//!
//! The grammar OpenNebula writes: a `#` header, then one `NAME='value'` per variable, where
//! every `'` inside the value is written `'\''` and nothing else is escaped, so a value may
//! hold `$`, backticks and raw newlines. Policy for everything else (cloud-init's B1/B2):
//! legacy `NAME="value"` (OpenNebula 3.x) is taken literally with a warning, and any other line
//! is skipped with a warning naming its line number; nothing is ever fatal for the rest.

use std::collections::BTreeMap;

/// At most this many warnings are kept; a garbage file of a million lines must not make a
/// million-line report.
const MAX_WARNINGS: usize = 50;

/// The variables of one context, in name order. An empty value is kept here (its *presence*
/// matters for the MAC rule) but [`Vars::get`] treats it as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(BTreeMap<String, String>);

impl Vars {
    /// The value of `name` when it is present and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Whether the context has the key at all, even as `NAME=''`.
    pub fn has_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Vars {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Vars(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub vars: Vars,
    /// `line N: what` — lines skipped or read with a caveat.
    pub warnings: Vec<String>,
}

impl Parsed {
    fn warn(&mut self, line: usize, what: impl std::fmt::Display) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(format!("line {line}: {what}"));
        } else if self.warnings.len() == MAX_WARNINGS {
            self.warnings
                .push("more lines were skipped; later warnings not shown".into());
        }
    }
}

/// Parses the bytes of a `context.sh`. Never fails: what cannot be read is skipped and reported.
pub fn parse(input: &[u8]) -> Parsed {
    let text = String::from_utf8_lossy(input);
    let mut out = Parsed::default();
    if matches!(text, std::borrow::Cow::Owned(_)) {
        out.warnings
            .push("not valid UTF-8: invalid bytes replaced by U+FFFD".into());
    }
    // CRLF files (B9): the `\r` is line-ending noise, never part of a value.
    let text = text.replace("\r\n", "\n");

    let mut pos = 0;
    let mut lineno = 1;
    while pos < text.len() {
        let eol = text[pos..].find('\n').map_or(text.len(), |n| pos + n);
        let line = &text[pos..eol];
        let trimmed = line.trim_start();
        let mut next = eol + 1;
        if !(trimmed.is_empty() || trimmed.starts_with('#')) {
            match parse_assignment(&text, pos, eol) {
                Ok(a) => {
                    if a.legacy {
                        out.warn(
                            lineno,
                            format_args!(
                                "{} uses legacy double quotes; value taken literally, nothing expanded",
                                a.name
                            ),
                        );
                    }
                    next = a.end + 1;
                    let first_line = lineno;
                    lineno += text[pos..a.end].matches('\n').count();
                    if a.value.contains('\0') {
                        // No program's environment can carry it: every start script would fail.
                        out.warn(
                            first_line,
                            format_args!("{} holds a NUL byte; variable dropped", a.name),
                        );
                    } else {
                        out.vars.0.insert(a.name, a.value);
                    }
                }
                Err(why) => out.warn(lineno, format_args!("skipped: {why}")),
            }
        }
        lineno += 1;
        pos = next;
    }
    out
}

struct Assignment {
    name: String,
    value: String,
    legacy: bool,
    /// Byte offset of the end of the assignment's last line.
    end: usize,
}

/// Reads the assignment on the line `text[start..eol]`; a quoted value may run on past `eol`.
fn parse_assignment(text: &str, start: usize, eol: usize) -> Result<Assignment, String> {
    let line = &text[start..eol];
    let Some((name, rest)) = line.split_once('=') else {
        return Err("not a NAME='value' line".into());
    };
    if !is_name(name) {
        // The text is not quoted: a broken line may be a piece of a secret.
        return Err("the text before '=' is not a variable name".into());
    }
    let value_start = start + name.len() + 1;
    let tail = &text[value_start..];
    let (value, consumed, legacy) = match rest.chars().next() {
        Some('\'') => {
            let (v, n) = single_quoted(tail)?;
            (v, n, false)
        }
        Some('"') => {
            let (v, n) = double_quoted(tail)?;
            (v, n, true)
        }
        None => return Err(format!("{name}= has no quoted value")),
        Some(_) if is_plain_word(rest) => return Ok(unquoted(text, name, rest, eol)),
        Some(_) => return Err(format!("{name} has an unquoted value (never evaluated)")),
    };
    let after = &tail[consumed..];
    let end = after
        .find('\n')
        .map_or(text.len(), |n| value_start + consumed + n);
    let rest_of_line = &text[value_start + consumed..end];
    if !rest_of_line.trim().is_empty() {
        return Err(format!("{name} has text after its closing quote"));
    }
    Ok(Assignment {
        name: name.to_string(),
        value,
        legacy,
        end,
    })
}

/// `'…'` with OpenNebula's `'\''` escape; returns the value and the bytes consumed.
fn single_quoted(s: &str) -> Result<(String, usize), String> {
    let mut value = String::new();
    let mut pos = 1; // after the opening quote
    loop {
        let Some(close) = s[pos..].find('\'') else {
            return Err("unterminated single quote".into());
        };
        value.push_str(&s[pos..pos + close]);
        pos += close + 1;
        if s[pos..].starts_with("\\''") {
            value.push('\'');
            pos += 3;
        } else {
            return Ok((value, pos));
        }
    }
}

/// Legacy `"…"`: OpenNebula 3.x wrote these with no escaping, so the value is everything up to
/// the next `"`, taken literally (no `$` or backtick expansion).
fn double_quoted(s: &str) -> Result<(String, usize), String> {
    match s[1..].find('"') {
        Some(close) => Ok((s[1..1 + close].to_string(), close + 2)),
        None => Err("unterminated double quote".into()),
    }
}

/// An unquoted value a shell would take literally too (Proxmox writes `ETH0_IP=10.0.0.5`):
/// nothing that expands, quotes, splits or ends a command.
fn is_plain_word(v: &str) -> bool {
    v.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:/+=@,-%".contains(&b))
}

/// Length of a MIME base64 line (Perl's `encode_base64`, which Proxmox uses).
const MIME_LINE: usize = 76;

/// `NAME=word`; a `*_BASE64` value wrapped at 76 characters (Proxmox's
/// `CRYPTED_PASSWORD_BASE64`) is joined with its continuation lines.
fn unquoted(text: &str, name: &str, first: &str, eol: usize) -> Assignment {
    let mut value = first.to_string();
    let mut end = eol;
    let mut last = first.len();
    while name.ends_with("_BASE64") && last == MIME_LINE && end < text.len() {
        let next_end = text[end + 1..]
            .find('\n')
            .map_or(text.len(), |n| end + 1 + n);
        let line = &text[end + 1..next_end];
        let data = line.trim_end_matches('=');
        let is_b64 = !line.is_empty()
            && line.len() <= MIME_LINE
            && data
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
        if !is_b64 {
            break;
        }
        value.push_str(line);
        last = line.len();
        end = next_end;
    }
    Assignment {
        name: name.to_string(),
        value,
        legacy: false,
        end,
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(input: &str) -> Parsed {
        parse(input.as_bytes())
    }

    #[test]
    fn opennebula_format() {
        let p =
            vars("# Context variables generated by OpenNebula\nDISK_ID='1'\nETH0_IP='10.0.3.40'\n");
        assert_eq!(p.vars.get("DISK_ID"), Some("1"));
        assert_eq!(p.vars.get("ETH0_IP"), Some("10.0.3.40"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn escaped_quote_and_multiline() {
        let p = vars("S='#!/bin/bash\necho '\\''vpn ready'\\'' > /run/x'\nN='2'\n");
        assert_eq!(
            p.vars.get("S"),
            Some("#!/bin/bash\necho 'vpn ready' > /run/x")
        );
        assert_eq!(p.vars.get("N"), Some("2"));
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn only_a_quote_escape_counts() {
        // A value that ends in a backslash is not an escape of the closing quote.
        let p = vars("A='C:\\'\nB='x'\n");
        assert_eq!(p.vars.get("A"), Some("C:\\"));
        assert_eq!(p.vars.get("B"), Some("x"));
    }

    #[test]
    fn shell_syntax_is_data() {
        let p = vars("A='$(touch /tmp/x) `id` ${HOME}'\n");
        assert_eq!(p.vars.get("A"), Some("$(touch /tmp/x) `id` ${HOME}"));
    }

    #[test]
    fn crlf_is_tolerated() {
        let p = vars("# h\r\nETH0_MASK='255.255.255.0'\r\nS='a\r\nb'\r\n");
        assert_eq!(p.vars.get("ETH0_MASK"), Some("255.255.255.0"));
        assert_eq!(p.vars.get("S"), Some("a\nb"));
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn empty_is_unset_but_present() {
        let p = vars("ETH0_IP=''\n");
        assert_eq!(p.vars.get("ETH0_IP"), None);
        assert!(p.vars.has_key("ETH0_IP"));
        assert!(!p.vars.has_key("ETH1_IP"));
    }

    #[test]
    fn last_wins() {
        let p = vars("A='1'\nA='2'\nB='x'\nB=''\n");
        assert_eq!(p.vars.get("A"), Some("2"));
        assert_eq!(p.vars.get("B"), None);
    }

    #[test]
    fn legacy_double_quotes_literal_with_warning() {
        let p = vars("HOSTNAME=\"web-$VMID\"\n");
        assert_eq!(p.vars.get("HOSTNAME"), Some("web-$VMID"));
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].starts_with("line 1:"), "{:?}", p.warnings);
    }

    #[test]
    fn garbage_lines_are_skipped_with_line_numbers() {
        let p =
            vars("A='1'\ntouch /tmp/pwned\nB=$(id)\nC=pl ain\n'x'='y'\nD='2' ; rm -rf /\nE='3'\n");
        assert_eq!(p.vars.get("A"), Some("1"));
        assert_eq!(p.vars.get("E"), Some("3"));
        for bad in ["B", "C", "D"] {
            assert!(!p.vars.has_key(bad), "{bad} must not be set");
        }
        let lines: Vec<&str> = p.warnings.iter().map(|w| &w[..7]).collect();
        assert_eq!(
            lines,
            ["line 2:", "line 3:", "line 4:", "line 5:", "line 6:"]
        );
    }

    /// Proxmox's `opennebula` format: plain words unquoted, base64 wrapped at 76 columns.
    #[test]
    fn proxmox_unquoted_words_and_wrapped_base64() {
        let b64 = "JDUkV3EyZUNrYlJrM1ZmTXowcCRRNmRKM29VMHAybVVxdlZtVzJ5SzloVDhsWDFuUjRzRTdhQjVj";
        let text = format!(
            "USERNAME=debian\nCRYPTED_PASSWORD_BASE64={b64}\nRDZmRy5I\n\nNETWORK=YES\nX=a$b\nY=`id`\n"
        );
        let p = vars(&text);
        assert_eq!(p.vars.get("USERNAME"), Some("debian"));
        assert_eq!(
            p.vars.get("CRYPTED_PASSWORD_BASE64"),
            Some(format!("{b64}RDZmRy5I").as_str())
        );
        assert_eq!(p.vars.get("NETWORK"), Some("YES"));
        assert!(!p.vars.has_key("X") && !p.vars.has_key("Y"));
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        // A 76-character value not named *_BASE64 takes no continuation.
        let p = vars(&format!("A={b64}\nRDZmRy5I\n"));
        assert_eq!(p.vars.get("A"), Some(b64));
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
    }

    #[test]
    fn unterminated_quote_skips_only_its_line() {
        let p = vars("A='oops\nB='2'\n");
        // The open quote of A would swallow B's line and leave `2'` dangling; A is refused and
        // parsing resumes on the next line.
        assert_eq!(p.vars.get("B"), Some("2"));
        assert!(!p.vars.has_key("A"));
        assert!(
            p.warnings[0].starts_with("line 1: skipped"),
            "{:?}",
            p.warnings
        );
    }

    #[test]
    fn warnings_are_bounded() {
        let garbage = "junk\n".repeat(1000);
        let p = vars(&garbage);
        assert_eq!(p.warnings.len(), MAX_WARNINGS + 1);
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let p = parse(b"A='h\xffllo'\n");
        assert_eq!(p.vars.get("A"), Some("h\u{fffd}llo"));
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn a_nul_byte_drops_the_variable_by_name() {
        let p = parse(b"A='1'\nPASSWORD='se\0cret'\nS='multi\nline\0'\nB='2'\n");
        assert_eq!(p.vars.get("A"), Some("1"));
        assert_eq!(p.vars.get("B"), Some("2"));
        assert!(!p.vars.has_key("PASSWORD") && !p.vars.has_key("S"));
        assert_eq!(
            p.warnings,
            [
                "line 2: PASSWORD holds a NUL byte; variable dropped",
                "line 3: S holds a NUL byte; variable dropped"
            ]
        );
    }

    #[test]
    fn warnings_never_quote_values() {
        let p = parse(b"PASSWORD='hunter2'xyzzy'\nhunter3 rest=x\nT='ok'\n");
        assert_eq!(p.vars.get("T"), Some("ok"));
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        for w in &p.warnings {
            assert!(!w.contains("hunter") && !w.contains("xyzzy"), "{w}");
        }
        assert!(p.warnings[0].contains("PASSWORD"), "{:?}", p.warnings);
    }
}

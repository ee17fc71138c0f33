//! The MIME multipart subset user-data uses (what `cloud-init devel make-mime` and
//! `write-mime-multipart` write): headers, a boundary, parts with their own Content-Type and
//! an optional base64 or quoted-printable transfer encoding; nested multiparts are followed.

use super::UserDataError;
use base64::Engine;

pub struct MimePart {
    pub name: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// User-data that starts with MIME headers.
pub fn is_mime(body: &[u8]) -> bool {
    let head: Vec<u8> = body.iter().take(64).map(u8::to_ascii_lowercase).collect();
    head.starts_with(b"content-type:") || head.starts_with(b"mime-version:")
}

/// Headers (names lower-cased, continuation lines folded) and the body after the blank line.
fn split_headers(data: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut rest = data;
    loop {
        let (line, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(line)).into_owned();
        if line.trim().is_empty() {
            return (headers, next);
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if next.is_empty() {
            return (headers, next);
        }
        rest = next;
    }
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `text/x-shellscript; charset="us-ascii"` → (`text/x-shellscript`, the `param` value).
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn mime_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

pub fn parts(data: &[u8]) -> Result<Vec<MimePart>, UserDataError> {
    let mut out = Vec::new();
    walk(data, 0, &mut out)?;
    Ok(out)
}

fn walk(data: &[u8], depth: usize, out: &mut Vec<MimePart>) -> Result<(), UserDataError> {
    if depth > 4 {
        return Err(UserDataError::Mime("multiparts nested too deep".into()));
    }
    let (headers, body) = split_headers(data);
    let ctype = header(&headers, "content-type").unwrap_or("text/plain");
    if !mime_type(ctype).starts_with("multipart/") {
        return Err(UserDataError::Mime(format!(
            "{ctype:?} is not a multipart type"
        )));
    }
    let boundary = param(ctype, "boundary")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| UserDataError::Mime("the multipart has no boundary".into()))?;
    let delim = format!("--{boundary}");
    let mut current: Option<Vec<&[u8]>> = None;
    let mut closed = false;
    for line in body.split_inclusive(|b| *b == b'\n') {
        let trimmed = String::from_utf8_lossy(line);
        let trimmed = trimmed.trim_end();
        if trimmed == delim || trimmed == format!("{delim}--") {
            if let Some(lines) = current.take() {
                part(&lines.concat(), out.len(), depth, out)?;
            }
            if trimmed.ends_with("--") && trimmed != delim {
                closed = true;
                break;
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line);
        }
    }
    if let Some(lines) = current.take() {
        part(&lines.concat(), out.len(), depth, out)?; // a missing closing delimiter is tolerated
    } else if !closed && out.is_empty() {
        return Err(UserDataError::Mime(format!(
            "no part starts with {delim:?}"
        )));
    }
    Ok(())
}

fn part(
    raw: &[u8],
    index: usize,
    depth: usize,
    out: &mut Vec<MimePart>,
) -> Result<(), UserDataError> {
    // The line break before a delimiter belongs to the delimiter (RFC 2046).
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let (headers, body) = split_headers(raw);
    let ctype = header(&headers, "content-type").map(str::to_string);
    if ctype
        .as_deref()
        .is_some_and(|t| mime_type(t).starts_with("multipart/"))
    {
        return walk(raw, depth + 1, out);
    }
    let name = header(&headers, "content-disposition")
        .and_then(|d| param(d, "filename"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("part-{:03}", index + 1));
    let body = match header(&headers, "content-transfer-encoding")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("7bit" | "8bit" | "binary") => body.to_vec(),
        Some("base64") => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(&compact)
                .map_err(|e| UserDataError::Mime(format!("part {name}: bad base64: {e}")))?
        }
        Some("quoted-printable") => quoted_printable(body),
        Some(other) => {
            return Err(UserDataError::Mime(format!(
                "part {name}: unknown transfer encoding {other:?}"
            )))
        }
    };
    out.push(MimePart {
        name,
        content_type: ctype.map(|t| mime_type(&t)),
        body,
    });
    Ok(())
}

fn quoted_printable(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'=' {
            let rest = &body[i + 1..];
            if rest.starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if rest.starts_with(b"\n") {
                i += 2;
                continue;
            }
            if let Some(v) = rest
                .get(..2)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(body[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &str = "Content-Type: multipart/mixed; boundary=\"===b===\"\r\nMIME-Version: 1.0\r\n\r\n\
--===b===\r\nContent-Type: text/cloud-config; charset=\"us-ascii\"\r\nContent-Disposition: attachment; filename=\"cfg.yaml\"\r\n\r\n\
#cloud-config\r\nruncmd: [ls]\r\n\r\n--===b===\r\nContent-Type: text/x-shellscript\r\nContent-Transfer-Encoding: base64\r\n\r\n\
IyEvYmluL3NoCmVjaG8gaGkK\r\n--===b===--\r\n";

    #[test]
    fn multipart_with_base64() {
        assert!(is_mime(MULTI.as_bytes()));
        let p = parts(MULTI.as_bytes()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].content_type.as_deref()),
            ("cfg.yaml", Some("text/cloud-config"))
        );
        assert_eq!(p[0].body, b"#cloud-config\r\nruncmd: [ls]\r\n");
        assert_eq!(
            (p[1].name.as_str(), p[1].body.as_slice()),
            ("part-002", &b"#!/bin/sh\necho hi\n"[..])
        );
    }

    #[test]
    fn no_boundary_is_an_error() {
        let e = parts(b"Content-Type: multipart/mixed\n\nx\n")
            .map(|_| ())
            .unwrap_err();
        assert_eq!(e.to_string(), "MIME: the multipart has no boundary");
        assert_eq!(quoted_printable(b"a=3Db=\nc"), b"a=bc");
    }
}

//! User-data, from EC2 or OpenNebula's `USER_DATA`: gzip undone, MIME multipart split, each
//! part sorted into shell scripts (`#!`, `text/x-shellscript`) and `#cloud-config` documents
//! (`text/cloud-config`), the latter read into the context ([`cloud_config`]).
//!
//! Decoding happens when the context is loaded, so a broken user-data (corrupt gzip, malformed
//! YAML, a bad value for a known key) is a context error: `plan` shows it, `apply` changes
//! nothing. Unknown keys and part types are warnings.

pub mod cloud_config;
mod mime;
pub mod yaml_depth;

use crate::context::{CloudConfig, Context, UserData, UserScript};
use std::io::Read;

/// Largest user-data after decompression (EC2 allows 16 KiB raw; gzip can hide much more).
pub const MAX_DECODED: u64 = 16 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserDataError {
    #[error("gzip: {0}")]
    Gzip(String),
    #[error("larger than {} MiB once decompressed", MAX_DECODED >> 20)]
    TooLarge,
    #[error("MIME: {0}")]
    Mime(String),
    #[error("#cloud-config{part}: {why}")]
    CloudConfig { part: String, why: String },
}

/// One piece of user-data, sorted by what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Script { name: String, body: Vec<u8> },
    CloudConfig { name: String, text: String },
}

/// User-data as a source delivered it; `None` when it is empty.
pub fn user_data(body: Vec<u8>) -> Option<UserData> {
    (!body.is_empty()).then(|| UserData {
        bytes: body.len(),
        kind: kind(&body),
        body,
    })
}

/// The kind, as `vmctx show` tells it: `gzip`, `multipart`, or the first line.
pub fn kind(body: &[u8]) -> String {
    if body.starts_with(&[0x1f, 0x8b]) {
        return "gzip".into();
    }
    if mime::is_mime(body) {
        return "multipart".into();
    }
    let first = body.split(|b| *b == b'\n').next().unwrap_or(&[]);
    String::from_utf8_lossy(first)
        .trim()
        .chars()
        .take(40)
        .collect()
}

/// Splits user-data into its parts; `warnings` gets what is skipped and why.
pub fn decode(body: &[u8], warnings: &mut Vec<String>) -> Result<Vec<Part>, UserDataError> {
    let body = gunzip(body)?;
    if mime::is_mime(&body) {
        let mut out = Vec::new();
        for p in mime::parts(&body)? {
            sort(
                &p.name,
                p.content_type.as_deref(),
                p.body,
                &mut out,
                warnings,
            );
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    sort("user-data", None, body, &mut out, warnings);
    Ok(out)
}

/// gzip (EC2 user-data is often compressed to fit 16 KiB); anything else is returned as is.
fn gunzip(body: &[u8]) -> Result<Vec<u8>, UserDataError> {
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_DECODED + 1)
        .read_to_end(&mut out)
        .map_err(|e| UserDataError::Gzip(e.to_string()))?;
    if out.len() as u64 > MAX_DECODED {
        return Err(UserDataError::TooLarge);
    }
    Ok(out)
}

/// By MIME type when there is one, else (or for text/plain) by the first line, as cloud-init.
fn sort(
    name: &str,
    ctype: Option<&str>,
    body: Vec<u8>,
    out: &mut Vec<Part>,
    warnings: &mut Vec<String>,
) {
    let first = String::from_utf8_lossy(body.split(|b| *b == b'\n').next().unwrap_or(&[]))
        .trim()
        .to_string();
    let sniffed = if body.starts_with(b"#!") {
        "text/x-shellscript"
    } else if first.eq_ignore_ascii_case("#cloud-config") {
        "text/cloud-config"
    } else if first.starts_with('#') {
        "" // #include, #cloud-boothook, #part-handler, …: named below
    } else if body.iter().all(u8::is_ascii_whitespace) {
        return;
    } else {
        ""
    };
    let ctype = match ctype {
        Some(t) if !t.eq_ignore_ascii_case("text/plain") => t.to_ascii_lowercase(),
        _ => sniffed.to_string(),
    };
    match ctype.as_str() {
        "text/x-shellscript" => out.push(Part::Script {
            name: name.to_string(),
            body,
        }),
        "text/cloud-config" => match String::from_utf8(body) {
            Ok(text) => out.push(Part::CloudConfig {
                name: name.to_string(),
                text,
            }),
            Err(_) => warnings.push(format!(
                "user-data {name}: #cloud-config that is not UTF-8: skipped"
            )),
        },
        // Only a `#directive`'s name is shown: the rest of the line may hold a secret.
        "" => warnings.push(format!(
            "user-data {name}: {} is not a kind vmctx runs (#! scripts and #cloud-config): skipped",
            directive(&first)
        )),
        other => warnings.push(format!(
            "user-data {name}: {other} is not supported: skipped"
        )),
    }
}

/// `#include`, `#cloud-boothook`, …: the first word of a `#` line; else a plain description.
fn directive(first: &str) -> String {
    let word: String = first
        .chars()
        .take_while(|c| *c == '#' || *c == '-' || c.is_ascii_alphanumeric())
        .take(30)
        .collect();
    if word.len() > 1 && word.starts_with('#') {
        format!("{word:?}")
    } else {
        "plain text".into()
    }
}

/// Decodes `ctx`'s user-data and folds it in: scripts and the executors' items into
/// `ctx.cloud_config`, hostname/keys/users/`vmctx:` settings into the context's own fields.
/// Problems land in `ctx.errors` / `ctx.warnings`.
pub fn merge(ctx: &mut Context) {
    let Some(ud) = ctx.scripts.user_data.clone() else {
        return;
    };
    let mut warnings = Vec::new();
    let parts = match decode(&ud.body, &mut warnings) {
        Ok(p) => p,
        Err(e) => {
            ctx.errors.push(format!("user-data: {e}"));
            return;
        }
    };
    let mut cc = CloudConfig::default();
    let mut docs = Vec::new();
    for p in parts {
        match p {
            Part::Script { name, body } => cc.scripts.push(UserScript {
                name,
                bytes: body.len(),
                body,
            }),
            Part::CloudConfig { name, text } => match cloud_config::parse(&text, &mut warnings) {
                Ok(doc) => docs.push(doc),
                Err(why) => {
                    let part = if name == "user-data" {
                        String::new()
                    } else {
                        format!(" ({name})")
                    };
                    ctx.errors.push(format!(
                        "user-data: {}",
                        UserDataError::CloudConfig { part, why }
                    ));
                }
            },
        }
    }
    for doc in docs {
        doc.fold_into(ctx, &mut cc, &mut warnings);
    }
    ctx.warnings.extend(warnings);
    ctx.cloud_config = Some(cc);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_script_a_config_and_gzip() {
        let mut w = Vec::new();
        let p = decode(b"#!/bin/sh\necho hi\n", &mut w).unwrap();
        assert!(matches!(&p[0], Part::Script { name, .. } if name == "user-data"));
        let p = decode(&gz(b"#cloud-config\nruncmd: [ls]\n"), &mut w).unwrap();
        assert!(matches!(&p[0], Part::CloudConfig { text, .. } if text.contains("runcmd")));
        assert_eq!(kind(&gz(b"x")), "gzip");
        assert!(w.is_empty(), "{w:?}");
        let e = decode(&[0x1f, 0x8b, 8, 0, 1, 2, 3], &mut w).unwrap_err();
        assert!(matches!(e, UserDataError::Gzip(_)), "{e}");
    }

    #[test]
    fn unknown_kinds_are_warnings() {
        let mut w = Vec::new();
        assert!(decode(b"#include http://x/y\n", &mut w).unwrap().is_empty());
        assert!(decode(b"just some text\n", &mut w).unwrap().is_empty());
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("#include"), "{w:?}");
    }

    /// Through the whole user-data path: a context whose gzipped `USER_DATA` unpacks to
    /// nearly 16 MiB of `[`. libyaml took over 120 s on it; the pre-scan refuses it at once.
    #[test]
    fn deeply_nested_yaml_is_refused_before_parsing() {
        use base64::Engine;
        let mut doc = b"#cloud-config\nhostname: a\nruncmd: ".to_vec();
        doc.resize(MAX_DECODED as usize - 16, b'[');
        let body = gz(&doc);
        assert!(body.len() < 64 << 10, "{} bytes of gzip", body.len());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
        let text = format!("VMID='1'\nUSER_DATA='{b64}'\nUSER_DATA_ENCODING='base64'\n");
        let started = std::time::Instant::now();
        let raw = crate::source::Raw {
            origin: "dir:test".parse().unwrap(),
            parsed: crate::source::context_sh::parse(text.as_bytes()),
            files: Vec::new(),
            warnings: Vec::new(),
            cloud: None,
        };
        let ctx = crate::source::to_context(raw);
        let took = started.elapsed();
        // Under 2 s on an idle machine, minutes before the fix; generous for shared CI cores.
        assert!(took.as_secs() < 15, "took {took:?}");
        assert!(
            ctx.errors
                .iter()
                .any(|e| e.contains("nested deeper than 64 levels (line 3)")),
            "{:?}",
            ctx.errors
        );
        assert!(
            ctx.hostname.is_none(),
            "a refused document configures nothing"
        );
    }
}

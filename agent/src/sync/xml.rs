//! The two S3 XML documents vmctx reads: a ListObjectsV2 page and an error.

use super::s3::Object;
use quick_xml::events::Event;
use quick_xml::Reader;

/// Nesting an S3 document needs (`ListBucketResult/Contents/Owner/ID` is 4): a server nesting
/// deeper is refused, never followed.
pub const MAX_DEPTH: usize = 16;
/// Text of one element (S3 keys are at most 1024 bytes).
pub const MAX_TEXT: usize = 8 << 10;

#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<Object>,
    pub truncated: bool,
    pub next: Option<String>,
    /// Objects whose key cannot be a file name anywhere (an XML reference to NUL…): left out,
    /// each with a line saying why (its key escaped).
    pub skipped: Vec<String>,
}

/// Streams `xml` and calls `leaf(path, text)` at the end of every element, `path` its
/// local names from the root (`text` empty for elements holding only elements), and `bad`
/// when it held a character reference XML forbids (shown in the text as U+FFFD). Memory:
/// the depth times [`MAX_TEXT`].
fn walk(
    xml: &[u8],
    mut leaf: impl FnMut(&[Vec<u8>], String, Option<String>),
) -> Result<(), String> {
    let mut r = Reader::from_reader(xml);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut text = String::new();
    let mut bad: Option<String> = None;
    let add = |text: &mut String, s: &str| {
        if text.len() + s.len() > MAX_TEXT {
            return Err(format!("an element's text is longer than {MAX_TEXT} bytes"));
        }
        text.push_str(s);
        Ok(())
    };
    loop {
        match r.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                if path.len() >= MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                path.push(e.local_name().as_ref().to_vec());
                text.clear();
                bad = None;
            }
            Event::Text(t) => add(&mut text, &t.decode().map_err(|e| e.to_string())?)?,
            Event::CData(t) => add(&mut text, &String::from_utf8_lossy(&t))?,
            Event::GeneralRef(g) => match g.resolve_char_ref() {
                Ok(Some(c)) => add(&mut text, c.encode_utf8(&mut [0; 4]))?,
                Ok(None) => {
                    let name = g.decode().map_err(|e| e.to_string())?;
                    let c = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{}", name.escape_debug()))?;
                    add(&mut text, c)?;
                }
                Err(e) => {
                    add(&mut text, "\u{fffd}")?;
                    bad = Some(format!("&{};: {e}", g.escape_ascii()));
                }
            },
            Event::End(_) => {
                let t = std::mem::take(&mut text);
                leaf(&path, t, bad.take());
                path.pop();
            }
            // A cut document must not read as a short listing.
            Event::Eof if path.is_empty() => return Ok(()),
            Event::Eof => return Err("the document ends inside an element".into()),
            _ => {}
        }
    }
}

fn is(path: &[Vec<u8>], want: &[&str]) -> bool {
    path.len() == want.len() && path.iter().zip(want).all(|(a, b)| a == b.as_bytes())
}

fn c(leaf: &'static str) -> [&'static str; 3] {
    ["ListBucketResult", "Contents", leaf]
}

pub fn list_page(xml: &[u8]) -> Result<Page, String> {
    let mut page = Page::default();
    let mut cur = Object {
        key: String::new(),
        etag: String::new(),
        size: 0,
    };
    let mut why_not: Option<String> = None;
    let mut whole = false;
    walk(xml, |path, text, bad| {
        if is(path, &c("Key")) {
            cur.key = text;
            why_not = bad;
        } else if is(path, &c("ETag")) {
            cur.etag = text.trim_matches('"').to_string();
        } else if is(path, &c("Size")) {
            cur.size = text.trim().parse().unwrap_or(0);
        } else if is(path, &["ListBucketResult", "Contents"]) {
            let o = std::mem::replace(
                &mut cur,
                Object {
                    key: String::new(),
                    etag: String::new(),
                    size: 0,
                },
            );
            match why_not.take() {
                None if !o.key.contains('\0') => page.objects.push(o),
                why => page.skipped.push(format!(
                    "key {:?}: {}, skipped",
                    o.key,
                    why.unwrap_or_else(|| "holds NUL".into())
                )),
            }
        } else if is(path, &["ListBucketResult"]) {
            whole = true;
        } else if is(path, &["ListBucketResult", "IsTruncated"]) {
            page.truncated = text.trim() == "true";
        } else if is(path, &["ListBucketResult", "NextContinuationToken"]) {
            page.next = Some(text);
        }
    })?;
    if !whole {
        return Err("not a ListBucketResult document".into());
    }
    Ok(page)
}

/// `(Code, Message)` of an S3 error document; empty strings when it is not one.
pub fn error(xml: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    let _ = walk(xml, |path, text, _| {
        if is(path, &["Error", "Code"]) {
            code = text;
        } else if is(path, &["Error", "Message"]) {
            message = text;
        }
    });
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_page() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>a &amp; b #1+%.ipynb</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>
<ETag>&quot;9e107d9d372bb6826bd81d3542a419d6&quot;</ETag><Size>43</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>d/caf&#233;.txt</Key><ETag>"abc-2"</ETag><Size>7</Size></Contents>
<NextContinuationToken>tok/+=</NextContinuationToken></ListBucketResult>"#;
        let p = list_page(xml).unwrap();
        assert!(p.truncated);
        assert_eq!(p.next.as_deref(), Some("tok/+="));
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[0].key, "a & b #1+%.ipynb");
        assert_eq!(p.objects[0].etag, "9e107d9d372bb6826bd81d3542a419d6");
        assert_eq!(p.objects[0].size, 43);
        assert_eq!(p.objects[1].key, "d/café.txt");
        assert_eq!(p.objects[1].etag, "abc-2");
    }

    #[test]
    fn error_document() {
        let xml = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(error(xml).0, "NoSuchBucket");
        assert_eq!(error(b"not xml").0, "");
    }

    #[test]
    fn deep_or_long_documents_are_refused_in_bounded_memory() {
        let deep = format!("{}{}", "<a>".repeat(80_000), "</a>".repeat(80_000));
        let e = list_page(deep.as_bytes()).unwrap_err();
        assert!(e.contains("nested deeper"), "{e}");
        let cut = list_page(b"<ListBucketResult><Contents><Key>a</Key>").unwrap_err();
        assert!(cut.contains("ends inside"), "{cut}");
        assert!(list_page(b"<html>hello</html>").is_err());
        let long = format!(
            "<ListBucketResult><Name>{}</Name></ListBucketResult>",
            "x".repeat(MAX_TEXT + 1)
        );
        assert!(list_page(long.as_bytes())
            .unwrap_err()
            .contains("longer than"));
    }

    #[test]
    fn a_key_with_a_nul_reference_is_skipped_not_fatal() {
        let xml = b"<ListBucketResult><Contents><Key>a&#0;b</Key><Size>1</Size></Contents>\
<Contents><Key>line&#10;FAKE</Key><Size>2</Size></Contents>\
<Contents><Key>ok</Key><Size>3</Size></Contents></ListBucketResult>";
        let p = list_page(xml).unwrap();
        let keys: Vec<&str> = p.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["line\nFAKE", "ok"]);
        assert_eq!(p.skipped.len(), 1, "{:?}", p.skipped);
        assert!(p.skipped[0].starts_with("key \"a"), "{:?}", p.skipped);
        assert!(!p.skipped[0].contains('\n'));
    }
}

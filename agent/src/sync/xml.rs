//! The two S3 XML documents vmctx reads: a ListObjectsV2 page and an error.

use super::s3::Object;
use quick_xml::events::Event;
use quick_xml::Reader;

#[derive(Debug, Default)]
pub struct Page {
    pub objects: Vec<Object>,
    pub truncated: bool,
    pub next: Option<String>,
}

/// Calls `leaf(path, text)` at the end of every element, `path` like
/// `ListBucketResult/Contents/Key` (text empty for elements holding only elements).
fn walk(xml: &[u8], mut leaf: impl FnMut(&str, String)) -> Result<(), String> {
    let mut r = Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        match r.read_event_into(&mut buf).map_err(|e| e.to_string())? {
            Event::Start(e) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| e.to_string())?),
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(g) => {
                if let Some(c) = g.resolve_char_ref().map_err(|e| e.to_string())? {
                    text.push(c);
                } else {
                    let name = g.decode().map_err(|e| e.to_string())?;
                    let c = quick_xml::escape::resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?;
                    text.push_str(c);
                }
            }
            Event::End(_) => {
                let joined = path.join("/");
                leaf(&joined, std::mem::take(&mut text));
                path.pop();
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

pub fn list_page(xml: &[u8]) -> Result<Page, String> {
    let mut page = Page::default();
    let mut cur = Object {
        key: String::new(),
        etag: String::new(),
        size: 0,
    };
    // Leaves arrive before their element's end: collect them, and cut at each `Contents` end.
    let mut events: Vec<(String, String)> = Vec::new();
    walk(xml, |path, text| events.push((path.to_string(), text)))?;
    for (path, text) in events {
        match path.strip_prefix("ListBucketResult/") {
            Some("Contents/Key") => cur.key = text,
            Some("Contents/ETag") => cur.etag = text.trim_matches('"').to_string(),
            Some("Contents/Size") => cur.size = text.trim().parse().unwrap_or(0),
            Some("Contents") => page.objects.push(std::mem::replace(
                &mut cur,
                Object {
                    key: String::new(),
                    etag: String::new(),
                    size: 0,
                },
            )),
            Some("IsTruncated") => page.truncated = text.trim() == "true",
            Some("NextContinuationToken") => page.next = Some(text),
            _ => {}
        }
    }
    Ok(page)
}

/// `(Code, Message)` of an S3 error document; empty strings when it is not one.
pub fn error(xml: &[u8]) -> (String, String) {
    let (mut code, mut message) = (String::new(), String::new());
    let _ = walk(xml, |path, text| match path {
        "Error/Code" => code = text,
        "Error/Message" => message = text,
        _ => {}
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
}

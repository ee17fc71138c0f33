//! AWS Signature Version 4 for S3 requests, and UTC date formatting (no chrono for two
//! timestamps). Written here rather than taken from aws-sigv4: that crate pulls the SDK's
//! runtime crates for about 80 lines of HMAC.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
pub const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

/// Keys for one request. The secret is never formatted anywhere.
pub struct Signer<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a str,
    pub session_token: Option<&'a str>,
    pub region: &'a str,
}

impl Signer<'_> {
    /// The headers to add: `x-amz-date`, `x-amz-content-sha256`, maybe `x-amz-security-token`,
    /// and `authorization`. `headers` are the other headers sent (host included), any case.
    pub fn sign(
        &self,
        method: &str,
        canonical_uri: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
        payload_sha256: &str,
        now_secs: u64,
    ) -> Vec<(String, String)> {
        let amz_date = amz_date(now_secs);
        let day = &amz_date[..8];
        let mut added = vec![
            (
                "x-amz-content-sha256".to_string(),
                payload_sha256.to_string(),
            ),
            ("x-amz-date".to_string(), amz_date.clone()),
        ];
        if let Some(t) = self.session_token {
            added.push(("x-amz-security-token".to_string(), t.to_string()));
        }
        let mut all: Vec<(String, String)> = headers
            .iter()
            .chain(added.iter())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        all.sort();
        let signed: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
            .collect();
        q.sort();
        let canonical_query: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let canonical_headers: String = all.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let request = format!(
            "{method}\n{canonical_uri}\n{}\n{canonical_headers}\n{signed}\n{payload_sha256}",
            canonical_query.join("&")
        );
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(request.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret).as_bytes(), day.as_bytes());
        for part in [self.region, "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, to_sign.as_bytes()));
        added.push((
            "authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                self.access_key_id
            ),
        ));
        added
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// S3's URI encoding: everything but `A-Za-z0-9-._~` as `%XX`; `/` kept in paths.
pub fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                o.push(b as char)
            }
            b'/' if !encode_slash => o.push('/'),
            _ => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}

/// (year, month, day, hour, minute, second) in UTC.
pub fn utc(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem / 60 % 60) as u32,
        (rem % 60) as u32,
    )
}

/// `20130524T000000Z`
pub fn amz_date(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = utc(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked examples of AWS's "Signature Calculations for the Authorization Header"
    // (S3 API reference), 2013-05-24.
    const SIGNER: Signer = Signer {
        access_key_id: "AKIAIOSFODNN7EXAMPLE",
        secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        session_token: None,
        region: "us-east-1",
    };
    const T: u64 = 1_369_353_600; // 2013-05-24T00:00:00Z

    fn signature(h: &[(String, String)]) -> String {
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        auth.rsplit("Signature=").next().unwrap().to_string()
    }

    #[test]
    fn aws_example_get_object() {
        let headers = vec![
            ("Host".into(), "examplebucket.s3.amazonaws.com".into()),
            ("Range".into(), "bytes=0-9".into()),
        ];
        let h = SIGNER.sign("GET", "/test.txt", &[], &headers, EMPTY_SHA256, T);
        assert_eq!(
            signature(&h),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn aws_example_list_objects() {
        let headers = vec![("host".into(), "examplebucket.s3.amazonaws.com".into())];
        let q = vec![
            ("max-keys".into(), "2".into()),
            ("prefix".into(), "J".into()),
        ];
        let h = SIGNER.sign("GET", "/", &q, &headers, EMPTY_SHA256, T);
        assert_eq!(
            signature(&h),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn dates_and_encoding() {
        assert_eq!(amz_date(T), "20130524T000000Z");
        assert_eq!(amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(
            uri_encode("a b/é+%&#.ipynb", false),
            "a%20b/%C3%A9%2B%25%26%23.ipynb"
        );
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
    }
}

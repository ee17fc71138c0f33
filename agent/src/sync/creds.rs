//! Where the sync's keys come from, first found wins: the `AWS_*` environment, the context's
//! keys in `/etc/vmctx/sync.toml`, a `~/.aws/credentials` profile, then the EC2 instance role
//! over IMDSv2 (vmctx's own emulator serves one). Only the last one touches the network, and
//! only when nothing before it gave keys.

use super::http::{HttpClient, UploadBody};
use super::s3::error_chain;
use crate::context::{AwsCredentials, Secret};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret: Secret,
    pub session_token: Option<Secret>,
    /// Which link of the chain gave them (for messages; never the keys).
    pub from: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CredsError {
    #[error("no credentials: none in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the sync settings or {profile_file}, and the instance metadata service gave none ({imds})")]
    None { profile_file: String, imds: String },
    #[error("{0}")]
    Profile(String),
}

/// The environment as the chain sees it (tests pass their own).
pub type Env = HashMap<String, String>;

pub async fn resolve(
    env: &Env,
    from_config: Option<&AwsCredentials>,
    http: &HttpClient,
) -> Result<Credentials, CredsError> {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    if let (Some(id), Some(secret)) = (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials {
            access_key_id: id,
            secret: Secret::new(secret),
            session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
            from: "environment".into(),
        });
    }
    if let Some(c) = from_config {
        return Ok(Credentials {
            access_key_id: c.access_key_id.clone(),
            secret: c.secret_access_key.clone(),
            session_token: c.session_token.clone(),
            from: "sync settings".into(),
        });
    }
    let file = get("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")));
    let profile = get("AWS_PROFILE").unwrap_or_else(|| "default".into());
    if let Some(f) = &file {
        if let Ok(text) = std::fs::read_to_string(f) {
            if let Some(c) = from_profile(&text, &profile) {
                return Ok(Credentials {
                    from: format!("{} [{profile}]", f.display()),
                    ..c
                });
            }
        }
    }
    let profile_file = file.map_or("~/.aws/credentials".into(), |f| f.display().to_string());
    if get("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let imds = "disabled by AWS_EC2_METADATA_DISABLED".into();
        return Err(CredsError::None { profile_file, imds });
    }
    let endpoint =
        get("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into());
    imds(http, endpoint.trim_end_matches('/'))
        .await
        .map_err(|imds| CredsError::None { profile_file, imds })
}

/// `[profile]` → `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`.
fn from_profile(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_section = false;
    let mut kv: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == profile;
            continue;
        }
        if in_section {
            if let Some((k, v)) = line.split_once('=') {
                kv.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    Some(Credentials {
        access_key_id: kv.remove("aws_access_key_id")?,
        secret: Secret::new(kv.remove("aws_secret_access_key")?),
        session_token: kv.remove("aws_session_token").map(Secret::new),
        from: String::new(),
    })
}

/// IMDSv2: a token (PUT), the role name, then the role's keys. Short timeouts: off EC2 (and
/// without vmctx's emulator) nothing answers.
async fn imds(http: &HttpClient, base: &str) -> Result<Credentials, String> {
    let call = |method: &'static str, path: &str, header: (&'static str, String)| {
        let uri = format!("{base}{path}");
        async move {
            let req = hyper::Request::builder()
                .method(method)
                .uri(&uri)
                .header(header.0, header.1)
                .body(UploadBody::empty())
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(Duration::from_secs(2), http.request(req))
                .await
                .map_err(|_| format!("{uri}: no answer in 2 s"))?
                .map_err(|e| format!("{uri}: {}", error_chain(&e)))?;
            let status = resp.status();
            let body = tokio::time::timeout(Duration::from_secs(2), resp.into_body().collect())
                .await
                .map_err(|_| format!("{uri}: body timed out"))?
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!("{uri}: {status}"));
            }
            String::from_utf8(body.to_vec()).map_err(|_| format!("{uri}: not text"))
        }
    };
    let token = call(
        "PUT",
        "/latest/api/token",
        ("x-aws-ec2-metadata-token-ttl-seconds", "300".into()),
    )
    .await?;
    let auth = ("x-aws-ec2-metadata-token", token.trim().to_string());
    let roles = call(
        "GET",
        "/latest/meta-data/iam/security-credentials/",
        auth.clone(),
    )
    .await?;
    let role = roles
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("the instance has no IAM role")?
        .to_string();
    let doc = call(
        "GET",
        &format!("/latest/meta-data/iam/security-credentials/{role}"),
        auth,
    )
    .await?;
    let v: serde_json::Value =
        serde_json::from_str(&doc).map_err(|e| format!("role {role}: {e}"))?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Ok(Credentials {
        access_key_id: field("AccessKeyId").ok_or("no AccessKeyId in the role's document")?,
        secret: Secret::new(field("SecretAccessKey").ok_or("no SecretAccessKey")?),
        session_token: field("Token").map(Secret::new),
        from: format!("instance role {role}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_file() {
        let text = "[default]\naws_access_key_id = AK1\naws_secret_access_key=S1\n\n[lab]\n# c\naws_access_key_id=AK2\naws_secret_access_key = S2\naws_session_token = T2\n";
        let d = from_profile(text, "default").unwrap();
        assert_eq!(d.access_key_id, "AK1");
        assert!(d.session_token.is_none());
        let l = from_profile(text, "lab").unwrap();
        assert_eq!((l.access_key_id.as_str(), l.secret.expose()), ("AK2", "S2"));
        assert!(from_profile(text, "other").is_none());
        assert!(!format!("{l:?}").contains("S2"), "the secret never prints");
    }

    #[test]
    fn environment_first_and_nothing_probed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = super::super::http::client(None).unwrap();
        let env: Env = [
            ("AWS_ACCESS_KEY_ID", "AKENV"),
            ("AWS_SECRET_ACCESS_KEY", "SENV"),
            // would fail if probed: nothing listens on port 9
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = rt.block_on(resolve(&env, None, &http)).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.from.as_str()),
            ("AKENV", "environment")
        );
        let mut none = env.clone();
        none.remove("AWS_ACCESS_KEY_ID");
        none.insert("HOME".into(), "/nonexistent".into());
        let e = rt.block_on(resolve(&none, None, &http)).unwrap_err();
        assert!(e.to_string().contains("no credentials"), "{e}");
    }
}

//! The sync's settings: command-line flags, else `/etc/vmctx/sync.toml` (rendered by `apply`
//! from the context). With `--dir` and `--bucket` given the file is not read unless named.

use super::creds::Env;
use super::local::{Excludes, DEFAULT_EXCLUDES};
use crate::context::{AwsCredentials, Secret, SyncMode};
use crate::files::Root;
use serde::Deserialize;
use std::path::PathBuf;

pub const DEFAULT_CONFIG: &str = "/etc/vmctx/sync.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vmctx/sync";

/// What the command line said; `None` = not given.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub mode: Option<String>,
    pub interval: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub max_delete: Option<u8>,
    pub excludes: Vec<String>,
    pub jobs: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub bucket: String,
    /// Empty or ending in `/`.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub ca_file: Option<PathBuf>,
    pub mode: SyncMode,
    pub interval_secs: u64,
    pub state_dir: PathBuf,
    /// Refuse a cycle that would delete more than this share (percent) of the known files.
    pub max_delete_pct: u8,
    pub excludes: Excludes,
    /// Parallel transfers.
    pub jobs: usize,
    pub credentials: Option<AwsCredentials>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    bucket: Option<String>,
    prefix: Option<String>,
    dir: Option<String>,
    mode: Option<String>,
    interval: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    ca_file: Option<String>,
    exclude: Option<Vec<String>>,
    credentials: Option<FileCreds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCreds {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

pub fn parse_mode(s: &str) -> Result<SyncMode, String> {
    match s {
        "pull" => Ok(SyncMode::Pull),
        "push" => Ok(SyncMode::Push),
        "both" => Ok(SyncMode::Both),
        o => Err(format!("mode {o:?}: expected pull, push or both")),
    }
}

pub fn resolve(f: Flags, root: &Root, env: &Env) -> Result<Options, String> {
    let explicit = f.dir.is_some() && f.bucket.is_some();
    let file = match (&f.config, explicit) {
        (Some(p), _) => Some(read(p)?),
        (None, true) => None,
        (None, false) => {
            let p = root.path(DEFAULT_CONFIG);
            if !p.exists() {
                return Err(format!(
                    "give --dir and --bucket, or configure the sync in the context (S3_SYNC_BUCKET) so that apply writes {}",
                    p.display()
                ));
            }
            Some(read(&p)?)
        }
    };
    let file = file.unwrap_or_default();
    let dir = match (f.dir, file.dir) {
        (Some(d), _) => d,
        (None, Some(d)) => root.path(d),
        (None, None) => return Err("no folder: give --dir (or `dir` in the settings)".into()),
    };
    let bucket = f
        .bucket
        .or(file.bucket)
        .ok_or("no bucket: give --bucket (or `bucket` in the settings)")?;
    let mut prefix = f.prefix.or(file.prefix).unwrap_or_default();
    prefix = prefix.trim_start_matches('/').to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let region = f
        .region
        .or(file.region)
        .or_else(|| get("AWS_REGION"))
        .or_else(|| get("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let mode = parse_mode(f.mode.or(file.mode).as_deref().unwrap_or("both"))?;
    let interval = f
        .interval
        .or(file.interval)
        .unwrap_or_else(|| "5min".into());
    let interval_secs = crate::schedule::parse_timespan(&interval)?;
    let mut excludes: Vec<String> = DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect();
    excludes.extend(file.exclude.unwrap_or_default());
    excludes.extend(f.excludes);
    let credentials = file.credentials.map(|c| AwsCredentials {
        access_key_id: c.access_key_id,
        secret_access_key: Secret::new(c.secret_access_key),
        session_token: c.session_token.map(Secret::new),
    });
    Ok(Options {
        dir,
        bucket,
        prefix,
        endpoint: f.endpoint.or(file.endpoint),
        region,
        ca_file: f.ca_file.or(file.ca_file.map(|c| root.path(c))),
        mode,
        interval_secs,
        state_dir: f.state_dir.unwrap_or_else(|| root.path(DEFAULT_STATE_DIR)),
        max_delete_pct: f.max_delete.unwrap_or(50),
        excludes: Excludes(excludes),
        jobs: f.jobs.unwrap_or(8).clamp(1, 64),
        credentials,
    })
}

fn read(p: &std::path::Path) -> Result<File, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    // toml's messages quote the offending line: never echo it, it may hold the secret key.
    toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| text[..s.start].lines().count())
            .unwrap_or(0);
        format!("{}: not valid sync settings (near line {at})", p.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::schedule::render_sync_toml;
    use crate::context::SyncSettings;

    #[test]
    fn rendered_settings_read_back() {
        let s = SyncSettings {
            bucket: "hol02-notebooks".into(),
            prefix: "team/".into(),
            dir: "/home/ec2-user/notebooks".into(),
            mode: SyncMode::Pull,
            interval: "15min".into(),
            endpoint: Some("http://10.0.0.5:9000".into()),
            region: None,
            ca_file: None,
            credentials: Some(AwsCredentials {
                access_key_id: "AK".into(),
                secret_access_key: Secret::new("se\"cr\\et"),
                session_token: None,
            }),
        };
        let t = tempfile::tempdir().unwrap();
        let root = Root::new(t.path());
        let p = root.path(DEFAULT_CONFIG);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, render_sync_toml(&s)).unwrap();
        let o = resolve(Flags::default(), &root, &Env::new()).unwrap();
        assert_eq!(o.bucket, "hol02-notebooks");
        assert_eq!(o.prefix, "team/");
        assert_eq!(o.dir, t.path().join("home/ec2-user/notebooks"));
        assert_eq!(o.mode, SyncMode::Pull);
        assert_eq!(o.interval_secs, 900);
        assert_eq!(o.region, "us-east-1");
        assert_eq!(
            o.credentials.unwrap().secret_access_key.expose(),
            "se\"cr\\et"
        );
        let flags = Flags {
            bucket: Some("other".into()),
            mode: Some("push".into()),
            ..Flags::default()
        };
        let o = resolve(flags, &root, &Env::new()).unwrap();
        assert_eq!((o.bucket.as_str(), o.mode), ("other", SyncMode::Push));
    }

    #[test]
    fn explicit_flags_need_no_file() {
        let t = tempfile::tempdir().unwrap();
        let flags = Flags {
            dir: Some(t.path().join("nb")),
            bucket: Some("b".into()),
            prefix: Some("/p".into()),
            ..Flags::default()
        };
        let o = resolve(flags, &Root::new(t.path()), &Env::new()).unwrap();
        assert_eq!(o.prefix, "p/");
        assert!(resolve(Flags::default(), &Root::new(t.path()), &Env::new()).is_err());
    }
}

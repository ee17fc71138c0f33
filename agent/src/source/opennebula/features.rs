//! Start scripts, user-data, and vmctx's own variables (`UPDATE_*`, `S3_SYNC_*`, `AWS_*`,
//! `EC2_*`): parsed and validated here, acted on by the apply step.

use super::Reader;
use crate::context::{
    AwsCredentials, Ec2Settings, HostKeys, IamRole, ScriptMode, Scripts, Secret, StartScript,
    SyncMode, SyncSettings, System, UpdateSchedule, UserData,
};
use crate::schedule;
use base64::Engine;

const DEFAULT_SCRIPT_TIMEOUT: u64 = 300;

pub(super) fn scripts(r: &mut Reader, files: &[String]) -> Scripts {
    let start = start_script(r);
    let mut init = init_scripts(r, files);
    if r.errors
        .iter()
        .any(|e| e.starts_with("START_SCRIPT_TIMEOUT:"))
    {
        init.clear();
    }
    let user_data = user_data(r);
    Scripts {
        start,
        init,
        user_data,
    }
}

fn start_script(r: &mut Reader) -> Option<StartScript> {
    let (from, body) = if let Some(b64) = r.get("START_SCRIPT_BASE64") {
        match decode_base64(b64) {
            Some(body) => ("START_SCRIPT_BASE64", body),
            None => {
                r.error(
                    "START_SCRIPT_BASE64",
                    "not valid base64; no start script will run",
                );
                return None;
            }
        }
    } else {
        // one-context writes it with `echo`, which ends it with a newline.
        let mut body = r.vars.get("START_SCRIPT")?.as_bytes().to_vec();
        if body.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        body.push(b'\n');
        ("START_SCRIPT", body)
    };
    let mode = match r
        .get("START_SCRIPT_MODE")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("once") => ScriptMode::Once,
        Some("always") => ScriptMode::Always,
        Some(_) => {
            r.error(
                "START_SCRIPT_MODE",
                "expected once or always; taken as once",
            );
            ScriptMode::Once
        }
    };
    let timeout_secs = script_timeout(r)?;
    Some(StartScript {
        bytes: body.len(),
        body,
        from: from.into(),
        mode,
        timeout_secs,
    })
}

/// `START_SCRIPT_TIMEOUT` (default 300 s). An invalid one runs no script: none is run under a
/// limit it was not given (`None`, with the error).
fn script_timeout(r: &mut Reader) -> Option<u64> {
    if r.get("START_SCRIPT_TIMEOUT").is_none() {
        return Some(DEFAULT_SCRIPT_TIMEOUT);
    }
    r.parse_with("START_SCRIPT_TIMEOUT", |v| match v.parse::<u64>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(n),
        _ => Err(
            "expected seconds from 1 to 86400; the start script and INIT_SCRIPTS are not run"
                .into(),
        ),
    })
}

/// `INIT_SCRIPTS`: file names on the CD (no paths); default `init.sh` when the CD has one.
fn init_scripts(r: &mut Reader, files: &[String]) -> Vec<String> {
    let Some(list) = r.get("INIT_SCRIPTS") else {
        return files.iter().filter(|f| *f == "init.sh").cloned().collect();
    };
    let mut out: Vec<String> = Vec::new();
    let names: Vec<&str> = list.split_whitespace().collect();
    for (i, name) in names.iter().enumerate() {
        // They run in order and a later one may need an earlier one's work: the first that
        // cannot run stops the rest. File names, not secrets: which ones is the point.
        let why = if name.contains('/') || *name == "." || *name == ".." {
            format!("{name:?} must be a file name on the context CD, not a path")
        } else if !files.iter().any(|f| f == name) {
            format!("{name:?}: no such file on the context CD")
        } else {
            if !out.iter().any(|o| o == name) {
                out.push(name.to_string());
            }
            continue;
        };
        let after = &names[i + 1..];
        let skipped = if after.is_empty() {
            String::new()
        } else {
            format!(
                "; not run either, as they come after it: {}",
                after.join(" ")
            )
        };
        r.error("INIT_SCRIPTS", format_args!("{why}{skipped}"));
        break;
    }
    out
}

fn user_data(r: &mut Reader) -> Option<UserData> {
    let (var, raw) = r.first(&["USER_DATA", "USERDATA"])?;
    let encoding = r.first(&["USER_DATA_ENCODING", "USERDATA_ENCODING"]);
    let body = match encoding.map(|(n, e)| (n, e.to_ascii_lowercase())) {
        None => raw.as_bytes().to_vec(),
        Some((_, e)) if e == "base64" => match decode_base64(raw) {
            Some(b) => b,
            None => {
                r.error(var, "not valid base64 (USERDATA_ENCODING=base64)");
                return None;
            }
        },
        Some((name, _)) => {
            r.error(name, "the only encoding is base64");
            return None;
        }
    };
    crate::source::userdata::user_data(body)
}

/// Base64 as OpenNebula users paste it: line breaks and blanks allowed, padding optional.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let e = &base64::engine::general_purpose::STANDARD;
    e.decode(&compact)
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(compact.trim_end_matches('='))
        })
        .ok()
}

/// `UPDATE_SCHEDULE` and `UPDATE_COMMAND`. The command runs as root through `/bin/sh -c`,
/// from a systemd `EnvironmentFile=` or a cron line: one line, or a line break would add a
/// line of its own there. A bad command drops the schedule (not the detected default).
pub(super) fn update(r: &mut Reader) -> Option<UpdateSchedule> {
    let command = r.parse_with("UPDATE_COMMAND", update_command);
    if command.is_none() && r.get("UPDATE_COMMAND").is_some() {
        return None;
    }
    let Some(schedule) = r.parse_with("UPDATE_SCHEDULE", schedule::parse_schedule) else {
        if command.is_some() && r.get("UPDATE_SCHEDULE").is_none() {
            r.warn("UPDATE_COMMAND is set but UPDATE_SCHEDULE is not: no updates are scheduled");
        }
        return None;
    };
    Some(UpdateSchedule { schedule, command })
}

/// One command line, run as root by `/bin/sh -c`: no line break or other control character.
pub(crate) fn update_command(v: &str) -> Result<String, String> {
    if v.contains(|c: char| c.is_control()) {
        return Err(
            "has a line break or another control character: one command line, run as root by \
             /bin/sh -c"
                .into(),
        );
    }
    Ok(v.to_string())
}

pub(super) fn sync(r: &mut Reader) -> Option<SyncSettings> {
    let Some(bucket) = r.get("S3_SYNC_BUCKET") else {
        if let Some(k) = r
            .vars
            .keys()
            .find(|k| k.starts_with("S3_SYNC_") && r.get(k).is_some())
        {
            r.errors.push(format!(
                "{k} is set but S3_SYNC_BUCKET is not: no notebook sync"
            ));
        }
        return None;
    };
    if !valid_bucket(bucket) {
        r.error(
            "S3_SYNC_BUCKET",
            "not an S3 bucket name (3-63 of a-z, 0-9, '.', '-')",
        );
        return None;
    }
    let prefix = r
        .get("S3_SYNC_PREFIX")
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let user = r.get("USERNAME").unwrap_or("root");
    let home = if user == "root" {
        "/root".to_string()
    } else {
        format!("/home/{user}")
    };
    let dir = match r.get("S3_SYNC_DIR") {
        Some(d) if d.starts_with('/') && !d.split('/').any(|c| c == "..") => d.to_string(),
        Some(_) => {
            r.error("S3_SYNC_DIR", "must be an absolute path");
            return None;
        }
        None => format!("{home}/notebooks"),
    };
    let mode = match r
        .get("S3_SYNC_MODE")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("both") => SyncMode::Both,
        Some("pull") => SyncMode::Pull,
        Some("push") => SyncMode::Push,
        Some(_) => {
            r.error("S3_SYNC_MODE", "expected pull, push or both");
            return None;
        }
    };
    let interval = match r.parse_with("S3_SYNC_INTERVAL", schedule::parse_timespan) {
        Some(_) => r.get("S3_SYNC_INTERVAL").unwrap_or_default().to_string(),
        None => "15min".to_string(),
    };
    let endpoint = r.parse_with("S3_SYNC_ENDPOINT", |v| {
        if (v.starts_with("http://") || v.starts_with("https://"))
            && !v.contains(char::is_whitespace)
        {
            Ok(v.trim_end_matches('/').to_string())
        } else {
            Err("expected an http:// or https:// URL".into())
        }
    });
    let region = r.parse_with("S3_SYNC_REGION", region);
    let ca_file = r.parse_with("S3_SYNC_CA_FILE", |v| {
        if v.starts_with('/') {
            Ok(v.to_string())
        } else {
            Err("must be an absolute path".into())
        }
    });
    let credentials = credentials(
        r,
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    );
    Some(SyncSettings {
        bucket: bucket.into(),
        prefix,
        dir,
        mode,
        interval,
        endpoint,
        region,
        ca_file,
        credentials,
    })
}

/// Access key and secret must come together; the secret is never echoed in errors.
fn credentials(r: &mut Reader, id: &str, secret: &str, token: &str) -> Option<AwsCredentials> {
    match (r.get(id), r.get(secret)) {
        (Some(key), Some(sec)) => Some(AwsCredentials {
            access_key_id: key.to_string(),
            secret_access_key: Secret::new(sec),
            session_token: r.get(token).map(Secret::new),
        }),
        (None, None) => None,
        (Some(_), None) => {
            r.errors.push(format!("{id} is set without {secret}"));
            None
        }
        (None, Some(_)) => {
            r.errors.push(format!("{secret} is set without {id}"));
            None
        }
    }
}

pub(super) fn ec2(r: &mut Reader) -> Option<Ec2Settings> {
    const OWN: [&str; 2] = ["EC2_PUBLIC_KEY", "EC2_HOSTNAME"];
    let any = r
        .vars
        .iter()
        .any(|(k, v)| k.starts_with("EC2_") && !OWN.contains(&k) && !v.trim().is_empty());
    if !any {
        return None;
    }
    let metadata = r.flag("EC2_METADATA", false);
    let instance_id = r.parse_with("EC2_INSTANCE_ID", |v| aws_id(v, "i-"));
    let ami_id = r.parse_with("EC2_AMI_ID", |v| aws_id(v, "ami-"));
    let instance_type = r.parse_with("EC2_INSTANCE_TYPE", |v| {
        if v.len() <= 32
            && v.contains('.')
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            Ok(v.to_string())
        } else {
            Err("not an instance type like m1.small".into())
        }
    });
    let region_name = r.parse_with("EC2_REGION", region);
    let availability_zone = r.parse_with("EC2_AVAILABILITY_ZONE", region);
    let tokens_required = match r
        .get("EC2_IMDS_TOKENS")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("optional") => false,
        Some("required") => true,
        Some(_) => {
            r.error(
                "EC2_IMDS_TOKENS",
                "expected optional or required; taken as required",
            );
            true // the safer reading of a typo
        }
    };
    let hop_limit = r
        .parse_with("EC2_IMDS_HOP_LIMIT", |v| match v.parse::<u8>() {
            Ok(n) if (1..=64).contains(&n) => Ok(n),
            _ => Err("expected 1 to 64".into()),
        })
        .unwrap_or(1);
    let iam = r.parse_with("EC2_IAM_ROLE", |v| {
        if !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        {
            Ok(v.to_string())
        } else {
            Err("not an IAM role name".into())
        }
    });
    let iam = iam.map(|name| IamRole {
        name,
        credentials: credentials(
            r,
            "EC2_IAM_ACCESS_KEY_ID",
            "EC2_IAM_SECRET_ACCESS_KEY",
            "EC2_IAM_SESSION_TOKEN",
        ),
    });
    Some(Ec2Settings {
        metadata,
        instance_id,
        ami_id,
        instance_type,
        region: region_name,
        availability_zone,
        tokens_required,
        hop_limit,
        iam,
    })
}

/// `GROW_ROOTFS`, `GROW_FS`, `TIMEZONE` and `SSH_HOST_KEYS`. Whether the zone exists is
/// checked against the system by apply (`apply::timezone::check`).
pub(super) fn system(r: &mut Reader) -> System {
    let grow_rootfs = r.flag("GROW_ROOTFS", true);
    let mut grow_fs: Vec<String> = Vec::new();
    for m in r.get("GROW_FS").unwrap_or("").split_whitespace() {
        match mount_point(m) {
            Ok(m) if !grow_fs.contains(&m) => grow_fs.push(m),
            Ok(_) => {}
            Err(e) => r.error("GROW_FS", e),
        }
    }
    let timezone = r.parse_with("TIMEZONE", timezone_name);
    let ssh_host_keys = match r
        .get("SSH_HOST_KEYS")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("regenerate") => HostKeys::Regenerate,
        Some("keep") => HostKeys::Keep,
        Some(_) => {
            r.error(
                "SSH_HOST_KEYS",
                "expected REGENERATE (new keys for a new instance) or KEEP",
            );
            HostKeys::Regenerate
        }
    };
    System {
        grow_rootfs,
        grow_fs,
        timezone,
        ssh_host_keys,
    }
}

/// An absolute path without `.`/`..` components; trailing slashes dropped.
fn mount_point(v: &str) -> Result<String, String> {
    if !v.starts_with('/') {
        return Err("must be an absolute mount point".into());
    }
    if v.split('/').any(|c| c == "." || c == "..") {
        return Err("must not contain . or .. components".into());
    }
    let trimmed = v.trim_end_matches('/');
    let mut out = String::new();
    for c in trimmed.split('/').filter(|c| !c.is_empty()) {
        out.push('/');
        out.push_str(c);
    }
    Ok(if out.is_empty() { "/".into() } else { out })
}

/// A zone name as tzdata spells them (`Europe/Prague`, `Etc/GMT+1`, `UTC`): relative, no
/// `.`/`..` components, letters, digits and `_+-`.
pub(crate) fn timezone_name(v: &str) -> Result<String, String> {
    if v.starts_with('/') {
        return Err("a zone name such as Europe/Prague, not a path".into());
    }
    if v.len() > 64
        || v.split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.starts_with('.'))
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
    {
        return Err("not a zone name such as Europe/Prague".into());
    }
    Ok(v.to_string())
}

fn aws_id(v: &str, prefix: &str) -> Result<String, String> {
    match v.strip_prefix(prefix) {
        Some(hex)
            if matches!(hex.len(), 8 | 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) =>
        {
            Ok(v.to_string())
        }
        _ => Err(format!(
            "expected {prefix} and 8 or 17 lower-case hex digits"
        )),
    }
}

fn region(v: &str) -> Result<String, String> {
    if !v.is_empty()
        && v.len() <= 32
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(v.to_string())
    } else {
        Err("not a region or zone name like us-east-1".into())
    }
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
        && !b.contains("..")
}

#[cfg(test)]
#[path = "features_tests.rs"]
mod tests;

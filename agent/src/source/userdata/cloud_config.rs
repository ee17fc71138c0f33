//! The `#cloud-config` subset vmctx acts on: `hostname`/`fqdn`, `ssh_authorized_keys`, `users`,
//! `write_files`, `runcmd`, `package_update`/`package_upgrade`, and `vmctx:` (its own
//! settings: `update_schedule`, `update_command`, `s3_sync`). A malformed document or a bad
//! value for one of these keys is an error; any other key is a warning.
//!
//! YAML through serde_norway (a maintained fork of the deprecated serde_yaml): its `Value`
//! lets each key be checked on its own, so one unknown key never hides the others.

use super::yaml_depth;
use crate::context::{CloudConfig, CloudUser, Context, Hostname, WriteFile};
use crate::source::context_sh::Vars;
use base64::Engine;
use serde_norway::Value;
use std::io::Read;

/// One `#cloud-config` document, checked.
#[derive(Debug, Default)]
pub struct Doc {
    hostname: Option<String>,
    fqdn: Option<String>,
    keys: Vec<String>,
    users: Vec<CloudUser>,
    write_files: Vec<WriteFile>,
    runcmd: Vec<String>,
    package_update: bool,
    package_upgrade: bool,
    /// `user:` (the image's default user, as Proxmox's `ciuser`) and `password:` (its
    /// password: crypted when it starts with `$`, as Proxmox stores it).
    user: Option<String>,
    password: Option<String>,
    /// `vmctx:` settings under their context variable names.
    vmctx: Option<Vars>,
}

pub fn parse(text: &str, warnings: &mut Vec<String>) -> Result<Doc, String> {
    // Bounded before libyaml sees it: its work grows with the square of the nesting.
    yaml_depth::check(text).map_err(|e| e.to_string())?;
    let value: Value = serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    let map = match value {
        Value::Null => return Ok(Doc::default()),
        Value::Mapping(m) => m,
        _ => return Err("the document is not a mapping of keys".into()),
    };
    let mut d = Doc::default();
    for (k, v) in map {
        let Some(key) = k.as_str() else {
            warnings.push("#cloud-config: a key that is not a string was ignored".into());
            continue;
        };
        let ctx = |e: String| format!("{key}: {e}");
        match key {
            "hostname" => {
                d.hostname = Some(scalar(&v).ok_or_else(|| ctx("expected a string".into()))?)
            }
            "fqdn" => d.fqdn = Some(scalar(&v).ok_or_else(|| ctx("expected a string".into()))?),
            "ssh_authorized_keys" => d.keys = strings(&v).map_err(ctx)?,
            "users" => d.users = users(&v, warnings).map_err(ctx)?,
            "write_files" => d.write_files = write_files(&v, warnings).map_err(ctx)?,
            "runcmd" => d.runcmd = runcmd(&v).map_err(ctx)?,
            "package_update" => d.package_update = flag(&v).map_err(ctx)?,
            "package_upgrade" => d.package_upgrade = flag(&v).map_err(ctx)?,
            "vmctx" => d.vmctx = Some(vmctx(&v, warnings).map_err(ctx)?),
            "user" => d.user = Some(default_user(&v).map_err(ctx)?),
            "password" => {
                d.password = Some(scalar(&v).ok_or_else(|| ctx("expected a string".into()))?)
            }
            "chpasswd" => chpasswd(&v, warnings).map_err(ctx)?,
            // vmctx keeps its own block in /etc/hosts and adds no keys for root that would
            // refuse logins: both settings as Proxmox writes them hold already.
            "manage_etc_hosts" | "disable_root" => {}
            other => warnings.push(format!(
                "#cloud-config: key {other:?} is not supported by vmctx: ignored"
            )),
        }
    }
    Ok(d)
}

/// `user: NAME` or `user: {name: NAME}`.
fn default_user(v: &Value) -> Result<String, String> {
    let name = match v {
        Value::Mapping(m) => m.get("name").and_then(scalar),
        other => scalar(other),
    }
    .ok_or("expected a name or a mapping with name")?;
    if !valid_name(&name) {
        return Err("not a valid user name".into());
    }
    Ok(name)
}

/// `chpasswd: {expire: false}` is what vmctx does anyway; anything else is said.
fn chpasswd(v: &Value, warnings: &mut Vec<String>) -> Result<(), String> {
    let Value::Mapping(m) = v else {
        return Err("expected a mapping".into());
    };
    for (k, val) in m {
        match k.as_str().unwrap_or("") {
            "expire" if !flag(val)? => {}
            "expire" => warnings.push(
                "#cloud-config chpasswd.expire: true is not supported: the password does not \
                 expire"
                    .into(),
            ),
            other => warnings.push(format!(
                "#cloud-config chpasswd: {other:?} is not supported: ignored"
            )),
        }
    }
    Ok(())
}

impl Doc {
    /// Hostname, keys and settings into the context's own fields (a later document wins);
    /// the rest into `cc` for the cloud-config executors.
    pub fn fold_into(self, ctx: &mut Context, cc: &mut CloudConfig, warnings: &mut Vec<String>) {
        let named = self
            .fqdn
            .map(|f| (f, "fqdn"))
            .or(self.hostname.map(|h| (h, "hostname")));
        if let Some((raw, key)) = named {
            match crate::derive::sanitize_hostname(&raw) {
                Some((name, domain)) => {
                    ctx.hostname = Some(Hostname {
                        name,
                        domain,
                        from: format!("user-data {key}"),
                    })
                }
                None => ctx
                    .errors
                    .push(format!("user-data {key}: has no usable label")),
            }
        }
        for k in self.keys {
            if !ctx.ssh_keys.contains(&k) {
                ctx.ssh_keys.push(k);
            }
        }
        if let Some(name) = self.user {
            let password = ctx.user.as_ref().and_then(|u| u.password.clone());
            ctx.user = Some(crate::context::User {
                sudo: name != "root",
                name,
                shell: "/bin/bash".into(),
                password,
                lock_password: false,
            });
        }
        if let Some(p) = self.password {
            let password = if p.starts_with('$') {
                crate::context::Password::Crypted(crate::context::Secret::new(p))
            } else {
                crate::context::Password::Plain(crate::context::Secret::new(p))
            };
            let user = ctx.user.get_or_insert_with(|| crate::context::User {
                name: "root".into(),
                sudo: false,
                shell: "/bin/bash".into(),
                password: None,
                lock_password: false,
            });
            user.password = Some(password);
            user.lock_password = false;
        }
        cc.users.extend(self.users);
        cc.write_files.extend(self.write_files);
        cc.runcmd.extend(self.runcmd);
        cc.runcmd_lines = cc.runcmd.len();
        cc.package_update |= self.package_update || self.package_upgrade;
        cc.package_upgrade |= self.package_upgrade;
        if let Some(mut vars) = self.vmctx {
            if let Some(u) = &ctx.user {
                vars.insert("USERNAME", u.name.clone());
            }
            let (update, sync, w, e) = crate::source::opennebula::settings(&vars);
            warnings.extend(w.into_iter().map(|w| format!("user-data vmctx: {w}")));
            ctx.errors
                .extend(e.into_iter().map(|e| format!("user-data vmctx: {e}")));
            ctx.update = update.or(ctx.update.take());
            ctx.sync = sync.or(ctx.sync.take());
        }
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flag(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Null => Ok(false),
        Value::String(s) => crate::source::opennebula::parse_flag(s),
        _ => Err("expected true or false".into()),
    }
}

/// A list of strings, or one string (cloud-init takes both in most places).
fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, x)| scalar(x).ok_or_else(|| format!("[{i}]: expected a string")))
            .collect(),
        other => scalar(other)
            .map(|s| vec![s])
            .ok_or_else(|| "expected a list of strings".into()),
    }
}

/// User and group names: the context's rule for user names (the sudoers drop-ins rely on it).
fn valid_name(n: &str) -> bool {
    crate::context::valid_username(n)
}

fn users(v: &Value, warnings: &mut Vec<String>) -> Result<Vec<CloudUser>, String> {
    let Value::Sequence(items) = v else {
        return Err("expected a list".into());
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |e: &str| format!("[{i}]: {e}");
        let mut u = CloudUser {
            name: String::new(),
            sudo: None,
            shell: None,
            groups: Vec::new(),
            ssh_authorized_keys: Vec::new(),
            lock_passwd: true,
        };
        match item {
            // "default" is the image's default user: the context's own user here.
            Value::String(s) if s == "default" => continue,
            Value::String(s) => u.name = s.clone(),
            Value::Mapping(m) => {
                for (k, val) in m {
                    let key = k.as_str().unwrap_or("");
                    match key {
                        "name" => {
                            u.name = scalar(val).ok_or_else(|| at("name: expected a string"))?
                        }
                        "sudo" => {
                            u.sudo = match val {
                                Value::Bool(false) | Value::Null => None,
                                Value::Bool(true) => Some("ALL=(ALL) NOPASSWD:ALL".into()),
                                other => Some(
                                    strings(other)
                                        .map_err(|e| at(&format!("sudo{e}")))?
                                        .join("\n"),
                                ),
                            }
                        }
                        "shell" => u.shell = scalar(val),
                        "groups" => {
                            let list = match val {
                                Value::String(s) => {
                                    s.split(',').map(|g| g.trim().to_string()).collect()
                                }
                                other => strings(other).map_err(|e| at(&format!("groups{e}")))?,
                            };
                            u.groups = list.into_iter().filter(|g| !g.is_empty()).collect();
                        }
                        "ssh_authorized_keys" => {
                            u.ssh_authorized_keys =
                                strings(val).map_err(|e| at(&format!("ssh_authorized_keys{e}")))?
                        }
                        "lock_passwd" => {
                            u.lock_passwd =
                                flag(val).map_err(|e| at(&format!("lock_passwd: {e}")))?
                        }
                        other => warnings.push(format!(
                            "#cloud-config users[{i}]: {other:?} is not supported: ignored"
                        )),
                    }
                }
            }
            _ => return Err(at("expected a name or a mapping")),
        }
        if !valid_name(&u.name) {
            return Err(at("name: not a valid user name"));
        }
        if let Some(s) = &u.shell {
            if !s.starts_with('/') || s.contains([':', '\n', ' ']) {
                return Err(at("shell: not an absolute path"));
            }
        }
        if u.groups.iter().any(|g| !valid_name(g)) {
            return Err(at("groups: not valid group names"));
        }
        out.push(u);
    }
    Ok(out)
}

fn write_files(v: &Value, warnings: &mut Vec<String>) -> Result<Vec<WriteFile>, String> {
    let Value::Sequence(items) = v else {
        return Err("expected a list".into());
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |e: String| format!("[{i}]: {e}");
        let Value::Mapping(m) = item else {
            return Err(at("expected a mapping".into()));
        };
        let get = |k: &str| m.get(k);
        let path = get("path")
            .and_then(scalar)
            .ok_or_else(|| at("path is missing".into()))?;
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.ends_with('/') {
            return Err(at("path: must be an absolute file path".into()));
        }
        let encoding = get("encoding")
            .and_then(scalar)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let raw: Vec<u8> = match get("content") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Tagged(t)) => scalar(&t.value).unwrap_or_default().into_bytes(),
            Some(c) => scalar(c)
                .ok_or_else(|| at("content: expected a string".into()))?
                .into_bytes(),
        };
        let content = decode_content(&raw, &encoding).map_err(|e| at(format!("content: {e}")))?;
        let permissions = match get("permissions") {
            None | Some(Value::Null) => 0o644,
            Some(p) => permissions(p)
                .ok_or_else(|| at("permissions: expected octal such as '0644'".into()))?,
        };
        let owner = get("owner")
            .and_then(scalar)
            .unwrap_or_else(|| "root:root".into());
        if owner.split(':').count() > 2 || owner.split(':').any(|p| !valid_name(p)) {
            return Err(at("owner: not user[:group]".into()));
        }
        let append = match get("append") {
            Some(a) => flag(a).map_err(|e| at(format!("append: {e}")))?,
            None => false,
        };
        for (k, _) in m {
            let k = k.as_str().unwrap_or("");
            if ![
                "path",
                "content",
                "encoding",
                "permissions",
                "owner",
                "append",
            ]
            .contains(&k)
            {
                warnings.push(format!(
                    "#cloud-config write_files[{i}]: {k:?} is not supported: ignored"
                ));
            }
        }
        out.push(WriteFile {
            path,
            bytes: content.len(),
            content,
            permissions,
            owner,
            append,
        });
    }
    Ok(out)
}

fn decode_content(raw: &[u8], encoding: &str) -> Result<Vec<u8>, String> {
    let b64 = |d: &[u8]| {
        let compact: Vec<u8> = d
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| format!("bad base64: {e}"))
    };
    let gunzip = |d: &[u8]| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(d)
            .take(super::MAX_DECODED)
            .read_to_end(&mut out)
            .map(|_| out)
            .map_err(|e| format!("gzip: {e}"))
    };
    match encoding {
        "" | "text/plain" => Ok(raw.to_vec()),
        "b64" | "base64" => b64(raw),
        "gz" | "gzip" => gunzip(raw),
        "gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64" => gunzip(&b64(raw)?),
        other => Err(format!("unknown encoding {other:?} (b64, gzip, gz+b64)")),
    }
}

/// `'0644'`, `'644'`, `'0o644'`; a bare YAML number's digits are read as octal too (`0644`
/// is octal in cloud-init's YAML 1.1 but 644 in YAML 1.2).
fn permissions(v: &Value) -> Option<u32> {
    let s = scalar(v)?;
    let s = s.trim().trim_start_matches("0o");
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// Each entry a shell line: strings as written, lists as quoted argv (as cloud-init).
fn runcmd(v: &Value) -> Result<Vec<String>, String> {
    let Value::Sequence(items) = v else {
        return Err("expected a list".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Sequence(argv) => argv
                .iter()
                .map(|a| scalar(a).map(|s| shell_quote(&s)))
                .collect::<Option<Vec<_>>>()
                .map(|a| a.join(" "))
                .ok_or_else(|| format!("[{i}]: expected strings")),
            other => scalar(other).ok_or_else(|| format!("[{i}]: expected a string or a list")),
        })
        .collect()
}

/// `vmctx:` → the context variables it stands for.
fn vmctx(v: &Value, warnings: &mut Vec<String>) -> Result<Vars, String> {
    let Value::Mapping(m) = v else {
        return Err("expected a mapping".into());
    };
    let mut vars = Vars::default();
    for (k, val) in m {
        match k.as_str().unwrap_or("") {
            "update_schedule" => vars.insert("UPDATE_SCHEDULE", scalar(val).unwrap_or_default()),
            "update_command" => vars.insert("UPDATE_COMMAND", scalar(val).unwrap_or_default()),
            "s3_sync" => {
                let Value::Mapping(s) = val else {
                    return Err("s3_sync: expected a mapping".into());
                };
                for (sk, sv) in s {
                    let name = match sk.as_str().unwrap_or("") {
                        "access_key_id" => "AWS_ACCESS_KEY_ID".to_string(),
                        "secret_access_key" => "AWS_SECRET_ACCESS_KEY".to_string(),
                        "session_token" => "AWS_SESSION_TOKEN".to_string(),
                        k @ ("bucket" | "prefix" | "dir" | "mode" | "interval" | "endpoint"
                        | "region" | "ca_file") => {
                            format!("S3_SYNC_{}", k.to_ascii_uppercase())
                        }
                        other => {
                            warnings.push(format!(
                                "#cloud-config vmctx.s3_sync: {other:?} is not a setting: ignored"
                            ));
                            continue;
                        }
                    };
                    vars.insert(name, scalar(sv).unwrap_or_default());
                }
            }
            other => warnings.push(format!(
                "#cloud-config vmctx: {other:?} is not a setting: ignored"
            )),
        }
    }
    Ok(vars)
}

#[cfg(test)]
#[path = "cloud_config_tests.rs"]
mod tests;

//! cloud-init's instance data, written by `vmctx apply` at the end of a stage for
//! `cloud-init query` and for tools that read the file itself: `/run/vmctx/instance-data.json`
//! (0644, secrets replaced by cloud-init's "redacted for non-root user") and
//! `instance-data-sensitive.json` (0600; the only place user-data is kept).
//!
//! The layout is cloud-init's (sources/__init__.py `persist_instance_data`): `ds` (the
//! source's own metadata: OpenNebula's variables, EC2's `meta-data` tree, OpenStack's
//! `meta_data`), the standardized `v1` keys, `sensitive_keys` (the key paths redacted) and
//! `base64_encoded_keys`; cloud-init's own configuration (`merged_cfg`, `sys_info`) has no
//! counterpart and is left out.

use crate::context::{Context, Origin};
use crate::files::{self, NewFile, Root};
use crate::source::{Cloud, Raw};
use serde_json::{json, Map, Value};
use std::path::Path;

pub const INSTANCE_DATA: &str = "/run/vmctx/instance-data.json";
pub const INSTANCE_DATA_SENSITIVE: &str = "/run/vmctx/instance-data-sensitive.json";
pub const REDACTED: &str = "redacted for non-root user";

const EXPERIMENTAL_TEXT: &str = "EXPERIMENTAL: The structure and format of content scoped under \
the 'ds' key may change in subsequent releases of cloud-init.";

/// Key names (any depth, any case) and key paths cloud-init redacts for non-root users.
const SENSITIVE_KEYS: &[&str] = &[
    "combined_cloud_config",
    "merged_cfg",
    "merged_system_cfg",
    "security-credentials",
    "userdata",
    "user-data",
    "user_data",
    "vendordata",
    "vendor-data",
    "ds/vendor_data",
    // Not cloud-init's, but a password all the same (OpenStack's meta_data).
    "admin_pass",
];

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The datasource as cloud-init names it, from a context's origin (`opennebula:/dev/sr0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `DataSourceOpenNebula [seed=/dev/sr0]`: status's `detail`.
    pub description: String,
    pub cloud_name: &'static str,
    pub platform: &'static str,
    pub subplatform: String,
}

impl Platform {
    /// status's `datasource`: the class name, lower-case, without `DataSource`.
    pub fn short_name(&self) -> String {
        let class = self.description.split(' ').next().unwrap_or_default();
        class.to_lowercase().replace("datasource", "")
    }
}

pub fn platform(origin: &Origin) -> Platform {
    let p = |description: String, cloud_name, platform, subplatform: String| Platform {
        description,
        cloud_name,
        platform,
        subplatform,
    };
    match origin {
        Origin::OpenNebula(dev) => p(
            format!("DataSourceOpenNebula [seed={}]", dev.display()),
            "opennebula",
            "opennebula",
            format!("config-disk ({})", dev.display()),
        ),
        Origin::Dir(dir) => p(
            format!("DataSourceOpenNebula [seed={}]", dir.display()),
            "opennebula",
            "opennebula",
            format!("seed-dir ({})", dir.display()),
        ),
        Origin::Ec2(url) => p(
            "DataSourceEc2".into(),
            "aws",
            "ec2",
            format!("metadata ({url})"),
        ),
        Origin::ConfigDrive(dev) => p(
            format!("DataSourceConfigDrive [source={}]", dev.display()),
            "openstack",
            "openstack",
            format!("config-disk ({})", dev.display()),
        ),
        Origin::NoCloud(seed) => p(
            format!("DataSourceNoCloud [seed={}]", seed.display()),
            "nocloud",
            "nocloud",
            format!("config-disk ({})", seed.display()),
        ),
        Origin::NoCloudNet(url) => p(
            format!("DataSourceNoCloudNet [seed={url}]"),
            "nocloud-net",
            "nocloud",
            format!("seed-url ({url})"),
        ),
        Origin::OpenStack(url) => p(
            format!("DataSourceOpenStack [{url}]"),
            "openstack",
            "openstack",
            format!("metadata ({url})"),
        ),
    }
}

/// As [`platform`], for an origin read back as text (`status.json`); one vmctx does not know
/// is cloud-init's `DataSourceNone`.
pub fn platform_named(origin: &str) -> Platform {
    match origin.parse::<Origin>() {
        Ok(o) => platform(&o),
        Err(_) => Platform {
            description: "DataSourceNone".into(),
            cloud_name: "unknown",
            platform: "none",
            subplatform: "unknown".into(),
        },
    }
}

/// The source's own metadata (cloud-init's `ds`), kept from the raw read before it is
/// normalized, and the key paths in it that are secret.
#[derive(Debug, Clone, Default)]
pub struct Ds {
    pub ds: Map<String, Value>,
    pub secret_paths: Vec<String>,
}

impl Ds {
    pub fn from_raw(raw: &Raw) -> Ds {
        let mut out = Ds::default();
        match &raw.cloud {
            None => {
                // OpenNebula: every context variable, as cloud-init's datasource keeps them.
                let mut meta = Map::new();
                for (k, v) in raw.parsed.vars.iter() {
                    if secret_var(k) {
                        out.secret_paths.push(format!("ds/meta_data/{k}"));
                    }
                    meta.insert(k.to_string(), v.into());
                }
                out.ds.insert("meta_data".into(), Value::Object(meta));
            }
            Some(Cloud::Ec2(md)) => {
                let mut tree = Map::new();
                for (path, v) in &md.leaves {
                    insert_path(&mut tree, path, v);
                }
                out.ds.insert("meta-data".into(), Value::Object(tree));
            }
            Some(Cloud::OpenStack(md)) => {
                let parse = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
                out.ds.insert("meta_data".into(), parse(&md.meta_data));
                if let Some(n) = &md.network_data {
                    out.ds.insert("network_json".into(), parse(n));
                }
            }
            Some(Cloud::NoCloud(seed)) => {
                // As cloud-init keeps it: meta-data as read (YAML → JSON).
                let text = String::from_utf8_lossy(&seed.meta_data);
                let meta = match crate::source::userdata::yaml_depth::check(&text) {
                    Ok(()) => serde_norway::from_str::<Value>(&text).unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                out.ds.insert("meta_data".into(), meta);
            }
        }
        out
    }
}

/// An OpenNebula variable that may hold a secret: passwords, tokens, keys other than public
/// ones, credentials, and the scripts and user-data (which often carry them).
pub fn secret_var(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    let public_key = n.ends_with("PUBLIC_KEY") || n == "SSH_KEY";
    ["PASS", "TOKEN", "SECRET", "PRIVATE", "CREDENTIAL", "AUTH"]
        .iter()
        .any(|w| n.contains(w))
        || (n.contains("KEY") && !public_key)
        || n.starts_with("USER_DATA")
        || n.starts_with("USERDATA")
        || n.starts_with("START_SCRIPT")
}

/// `a/b/c` → `{"a": {"b": {"c": value}}}` inside `tree`.
fn insert_path(tree: &mut Map<String, Value>, path: &str, value: &str) {
    let mut parts = path.split('/').filter(|p| !p.is_empty()).peekable();
    let mut node = tree;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            node.insert(part.to_string(), value.into());
            return;
        }
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else { return };
        node = next;
    }
}

/// The whole (sensitive) document for `ctx`, read from `ds`.
pub fn document(root: &Path, ds: &Ds, ctx: &Context) -> Value {
    let p = platform(&ctx.source);
    let ec2 = ctx.ec2.as_ref().filter(|_| p.platform == "ec2");
    let region = ec2.and_then(|e| e.region.clone());
    let zone = ec2.and_then(|e| e.availability_zone.clone()).or_else(|| {
        ds.ds
            .get("meta_data")
            .and_then(|m| m.get("availability_zone"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let os = os_release(root);
    let hostname = ctx
        .hostname
        .as_ref()
        .map(|h| h.name.clone())
        .or_else(|| {
            std::fs::read_to_string(Root::new(root).path("/etc/hostname"))
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".into());
    let kernel = std::fs::read_to_string(Root::new(root).path("/proc/sys/kernel/osrelease"))
        .ok()
        .map(|k| k.trim().to_string());
    let v1 = json!({
        "_beta_keys": ["subplatform"],
        "availability-zone": zone,
        "availability_zone": zone,
        "cloud_id": cloud_id(p.cloud_name, region.as_deref(), p.platform),
        "cloud-name": p.cloud_name,
        "cloud_name": p.cloud_name,
        "distro": os.0,
        "distro_version": os.1,
        "distro_release": os.2,
        "instance-id": ctx.instance_id,
        "instance_id": ctx.instance_id,
        "kernel_release": kernel,
        "local-hostname": hostname,
        "local_hostname": hostname,
        "machine": std::env::consts::ARCH,
        "platform": p.platform,
        "public_ssh_keys": ctx.ssh_keys,
        "region": region,
        "subplatform": p.subplatform,
        "variant": os.0,
    });
    let mut ds_doc = ds.ds.clone();
    ds_doc.insert("_doc".into(), EXPERIMENTAL_TEXT.into());
    let userdata = ctx
        .scripts
        .user_data
        .as_ref()
        .map_or(String::new(), |u| user_data_text(&u.body));
    let mut doc = json!({
        "base64_encoded_keys": [],
        "ds": ds_doc,
        "userdata": userdata,
        "v1": v1,
        "vendordata": "",
    });
    let mut sensitive = Vec::new();
    sensitive_paths(&doc, "", &ds.secret_paths, &mut sensitive);
    sensitive.sort();
    sensitive.dedup();
    doc["sensitive_keys"] = json!(sensitive);
    doc
}

/// `(ID, VERSION_ID, VERSION_CODENAME)` of the root's os-release, as cloud-init's `dist`.
fn os_release(root: &Path) -> (String, String, String) {
    let r = Root::new(root);
    let text = std::fs::read_to_string(r.path("/etc/os-release"))
        .or_else(|_| std::fs::read_to_string(r.path("/usr/lib/os-release")))
        .unwrap_or_default();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (get("ID"), get("VERSION_ID"), get("VERSION_CODENAME"))
}

/// cloud-init's `canonical_cloud_id`.
fn cloud_id(cloud_name: &str, region: Option<&str>, platform: &str) -> String {
    match region {
        Some(r) if cloud_name == "aws" && r.starts_with("cn-") => "aws-china".into(),
        Some(r) if cloud_name == "aws" && r.starts_with("us-gov-") => "aws-gov".into(),
        _ if cloud_name != "unknown" => cloud_name.into(),
        _ => platform.into(),
    }
}

/// User-data as `cloud-init query userdata` shows it: text, gunzipped text, else base64 with
/// cloud-init's `ci-b64:` prefix.
fn user_data_text(body: &[u8]) -> String {
    use base64::Engine;
    if let Ok(s) = std::str::from_utf8(body) {
        return s.to_string();
    }
    let mut text = String::new();
    let gz = std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(body), &mut text);
    if gz.is_ok() {
        return text;
    }
    format!(
        "ci-b64:{}",
        base64::engine::general_purpose::STANDARD.encode(body)
    )
}

/// The key paths (`ds/meta_data/PASSWORD`) whose name or path is sensitive, as cloud-init's
/// `process_instance_metadata` lists them.
fn sensitive_paths(v: &Value, prefix: &str, extra: &[String], out: &mut Vec<String>) {
    let Value::Object(m) = v else { return };
    for (k, val) in m {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}/{k}")
        };
        let lower = (k.to_lowercase(), path.to_lowercase());
        if SENSITIVE_KEYS.contains(&lower.0.as_str())
            || SENSITIVE_KEYS.contains(&lower.1.as_str())
            || extra.contains(&path)
        {
            out.push(path.clone());
        }
        sensitive_paths(val, &path, extra, out);
    }
}

/// The document with every `sensitive_keys` path replaced by [`REDACTED`].
pub fn redacted(doc: &Value) -> Value {
    let mut out = doc.clone();
    let paths: Vec<String> = doc["sensitive_keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for p in paths {
        let mut node = &mut out;
        let parts: Vec<&str> = p.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let Some(next) = node.get_mut(*part) else {
                break;
            };
            if i + 1 == parts.len() {
                *next = REDACTED.into();
                break;
            }
            node = next;
        }
    }
    out
}

/// Writes both files atomically under `root`; the sensitive one is always 0600 (a copy
/// with another mode is replaced, never reused).
pub fn write(root: &Path, ds: &Ds, ctx: &Context) -> Result<(), InstanceError> {
    use std::os::unix::fs::PermissionsExt;
    let r = Root::new(root);
    let doc = document(root, ds, ctx);
    let sensitive = r.path(INSTANCE_DATA_SENSITIVE);
    let fail = |path: &Path| {
        let path = path.display().to_string();
        move |source| InstanceError::Write { path, source }
    };
    if let Ok(m) = std::fs::symlink_metadata(&sensitive) {
        if m.permissions().mode() & 0o7777 != 0o600 || !m.is_file() {
            files::remove(&sensitive).map_err(fail(&sensitive))?;
        }
    }
    let body = super::output::py_json(&doc, 1) + "\n";
    files::write_atomic(&sensitive, body.as_bytes(), NewFile::mode(0o600))
        .map_err(fail(&sensitive))?;
    let public = r.path(INSTANCE_DATA);
    let body = super::output::py_json(&redacted(&doc), 1) + "\n";
    files::write_atomic(&public, body.as_bytes(), NewFile::mode(0o644)).map_err(fail(&public))?;
    Ok(())
}

/// After a stage applied `ctx`: the instance data, or a warning (like status.json, it never
/// fails the stage).
pub fn record(root: &Path, ds: &Ds, ctx: &Context) {
    if let Err(e) = write(root, ds, ctx) {
        tracing::warn!("instance data: {e}");
    }
}

#[cfg(test)]
#[path = "instance_tests.rs"]
mod tests;

//! `meta-data`: YAML or JSON with `instance-id`, `local-hostname`/`hostname`, `public-keys`
//! (a string, a list, or a map of names to keys or to EC2-style `{openssh-key: …}`) and the
//! legacy `network-interfaces` (a Debian interfaces file).

use super::yaml::{self, At};
use super::META_DATA;
use crate::context::Hostname;
use serde_norway::Value;

#[derive(Debug, Default)]
pub struct MetaData {
    pub instance_id: String,
    pub hostname: Option<Hostname>,
    pub ssh_keys: Vec<String>,
    pub network_interfaces: Option<String>,
    pub warnings: Vec<String>,
}

pub fn parse(bytes: &[u8]) -> Result<MetaData, String> {
    let at = At::new(META_DATA);
    let doc = yaml::parse(META_DATA, bytes)?;
    let m = yaml::mapping(&doc, &at)?;
    let mut out = MetaData::default();
    let id =
        yaml::string(m, "instance-id", &at)?.ok_or_else(|| at.key("instance-id").err("missing"))?;
    if !crate::context::valid_instance_id(&id) {
        return Err(at
            .key("instance-id")
            .err("not an instance id (letters, digits, - _ . up to 64)"));
    }
    out.instance_id = id;
    for key in ["local-hostname", "hostname"] {
        if let Some(raw) = yaml::string(m, key, &at)? {
            out.hostname = crate::derive::sanitize_hostname(&raw).map(|(name, domain)| Hostname {
                name,
                domain,
                from: format!("{META_DATA} {key}"),
            });
            if out.hostname.is_none() {
                out.warnings
                    .push(format!("{META_DATA}: {key} has no usable label; ignored"));
            }
            break;
        }
    }
    let mut values: Vec<(String, String)> = Vec::new();
    if let Some(v) = yaml::get(m, "public-keys") {
        keys(v, &at.key("public-keys"), &mut values)?;
    }
    out.ssh_keys = crate::ssh_keys::from_values(
        values.iter().map(|(w, k)| (w.clone(), k.as_str())),
        &mut out.warnings,
    );
    out.network_interfaces = yaml::string(m, "network-interfaces", &at)?;
    Ok(out)
}

/// Every key value with where it came from; EC2's `{0: {openssh-key: …}}` form included.
fn keys(v: &Value, at: &At, out: &mut Vec<(String, String)>) -> Result<(), String> {
    match v {
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                keys(item, &at.index(i), out)?;
            }
        }
        Value::Mapping(m) => {
            for (k, item) in m {
                let name = yaml::text(k).unwrap_or_default();
                keys(item, &at.key(&name), out)?;
            }
        }
        other => {
            let s = yaml::text(other).ok_or_else(|| at.err("expected a key"))?;
            out.push((format!("{}: {}", at.file, at.path), s));
        }
    }
    Ok(())
}

//! The JSON documents of a config drive or the Nova metadata service, as far as vmctx reads
//! them. Unknown keys are ignored (newer versions add fields); every error names the file and
//! the field (`serde_path_to_error`).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;

pub const META_DATA: &str = "meta_data.json";
pub const NETWORK_DATA: &str = "network_data.json";

/// Parses `bytes` as the document `file`: `meta_data.json: hostname: invalid type: …`.
pub fn parse<T: DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            format!("{file}: {inner}")
        } else {
            format!("{file}: field {path}: {inner}")
        }
    })
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MetaData {
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub public_keys: BTreeMap<String, String>,
    #[serde(default)]
    pub keys: Vec<Key>,
    pub admin_pass: Option<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, MetaValue>,
    #[serde(default)]
    pub files: Vec<serde_json::Value>,
    pub network_config: Option<serde_json::Value>,
    pub availability_zone: Option<String>,
    pub project_id: Option<String>,
    pub launch_index: Option<u32>,
    pub random_seed: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Key {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub data: Option<String>,
}

/// `meta` values are strings from Nova; other producers send numbers or booleans.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MetaValue {
    Text(String),
    Other(serde_json::Value),
}

impl MetaValue {
    pub fn as_text(&self) -> String {
        match self {
            MetaValue::Text(s) => s.clone(),
            MetaValue::Other(v) => v.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkData {
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default)]
    pub networks: Vec<Net>,
    #[serde(default)]
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub id: String,
    /// `"type": null` is read as no type (cloud-init takes it for a physical NIC).
    #[serde(rename = "type", default, deserialize_with = "null_as_empty")]
    pub kind: String,
    pub ethernet_mac_address: Option<String>,
    pub mtu: Option<u32>,
    pub name: Option<String>,
    pub vlan_id: Option<u32>,
    pub vlan_link: Option<String>,
    #[serde(default)]
    pub bond_links: Vec<String>,
    pub bond_mode: Option<String>,
    pub bond_miimon: Option<u32>,
    pub bond_xmit_hash_policy: Option<String>,
    pub vlan_mac_address: Option<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Deserialize)]
pub struct Net {
    pub id: Option<String>,
    pub link: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub ip_address: Option<String>,
    pub netmask: Option<String>,
    /// Not Nova's, but other producers put the default gateway here.
    pub gateway: Option<String>,
    #[serde(default)]
    pub routes: Vec<NetRoute>,
    #[serde(default)]
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NetRoute {
    pub network: String,
    pub netmask: String,
    pub gateway: String,
    #[serde(default)]
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    #[serde(rename = "type")]
    pub kind: String,
    pub address: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_and_field() {
        let e = parse::<MetaData>(META_DATA, br#"{"uuid": "x", "hostname": 5}"#).unwrap_err();
        assert!(
            e.starts_with("meta_data.json: field hostname: invalid type"),
            "{e}"
        );
        let e = parse::<NetworkData>(
            NETWORK_DATA,
            br#"{"links": [], "networks": [{"id": "n0", "type": "ipv4"}]}"#,
        )
        .unwrap_err();
        assert!(
            e.starts_with("network_data.json: field networks[0]: missing field `link`"),
            "{e}"
        );
        let e = parse::<MetaData>(META_DATA, b"{\"uuid\": ").unwrap_err();
        assert!(
            e.starts_with("meta_data.json: field uuid: EOF while parsing"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_odd_meta_values() {
        let m: MetaData = parse(
            META_DATA,
            br#"{"uuid": "u", "dedicated_cpus": [1], "meta": {"a": "b", "n": 3, "t": true}}"#,
        )
        .unwrap();
        assert_eq!(m.meta["a"].as_text(), "b");
        assert_eq!(m.meta["n"].as_text(), "3");
        assert_eq!(m.meta["t"].as_text(), "true");
    }
}

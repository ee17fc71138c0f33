//! OpenNebula context → EC2 metadata tree: the one place that knows both worlds (spec §2).
//!
//! What the context gives is used as given (`EC2_*`, the NICs, keys, hostname, user-data); what
//! EC2 has and OpenNebula does not (reservation, ENI, subnet and VPC ids, account) is
//! synthesised from stable facts (the VMID, MACs, networks), so it stays the same across
//! reboots. Only what is served is listed: no `kernel-id`, no public IP, no signatures.

use crate::context::{Context, IamRole, Nic};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vmctx_imds::tree::{Builder, DEFAULT_SIZE_LIMIT};
use vmctx_imds::{Tree, TreeError};

pub const DEFAULT_INSTANCE_TYPE: &str = "m5.large";
pub const DEFAULT_REGION: &str = "opennebula-1";
/// Twelve digits, as an AWS account id; no real account is meant.
pub const ACCOUNT_ID: &str = "000000000000";
/// How long served role credentials claim to last; the server rebuilds the tree well before.
pub const CREDENTIALS_LIFETIME: Duration = Duration::from_secs(6 * 3600);

/// The tree for this context, as of `now` (pendingTime, credential times).
pub fn build(ctx: &Context, now: SystemTime) -> Result<Tree, TreeError> {
    let mut b = Builder::new(DEFAULT_SIZE_LIMIT);
    let ec2 = ctx.ec2.as_ref();
    let opt = |f: fn(&crate::context::Ec2Settings) -> &Option<String>| {
        ec2.and_then(|e| f(e).clone()).filter(|s| !s.is_empty())
    };
    let instance_id = opt(|e| &e.instance_id).unwrap_or_else(|| instance_id_for(ctx));
    let ami_id = opt(|e| &e.ami_id).unwrap_or_else(|| format!("ami-{}", hex17("ami", "")));
    let instance_type =
        opt(|e| &e.instance_type).unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.to_string());
    let (region, az) = placement(opt(|e| &e.region), opt(|e| &e.availability_zone));
    let eth0 = ctx.network.nics.first();
    let local_ipv4 = eth0.and_then(|n| ipv4s(n).next());
    let hostname = match (&ctx.hostname, local_ipv4) {
        (Some(h), _) => Some(match &h.domain {
            Some(d) => format!("{}.{d}", h.name),
            None => h.name.clone(),
        }),
        (None, Some(ip)) => Some(crate::derive::ipv4_hostname(ip)),
        (None, None) => None,
    };

    let md = "meta-data";
    let mut leaf = |path: &str, v: &str| b.leaf(&format!("{md}/{path}"), v.to_string());
    leaf("ami-id", &ami_id)?;
    leaf("ami-launch-index", "0")?;
    leaf("ami-manifest-path", "(unknown)")?;
    leaf("block-device-mapping/ami", "/dev/vda")?;
    leaf("block-device-mapping/root", "/dev/vda")?;
    leaf("events/maintenance/history", "[]")?;
    leaf("events/maintenance/scheduled", "[]")?;
    if let Some(h) = &hostname {
        leaf("hostname", h)?;
        leaf("local-hostname", h)?;
    }
    leaf("instance-action", "none")?;
    leaf("instance-id", &instance_id)?;
    leaf("instance-life-cycle", "on-demand")?;
    leaf("instance-type", &instance_type)?;
    if let Some(ip) = local_ipv4 {
        leaf("local-ipv4", &ip.to_string())?;
    }
    if let Some(n) = eth0 {
        leaf("mac", &n.mac.to_string())?;
        if let Some(ip6) = ipv6s(n).next() {
            leaf("ipv6", &ip6.to_string())?;
        }
    }
    leaf("placement/availability-zone", &az)?;
    leaf("placement/region", &region)?;
    leaf(
        "reservation-id",
        &format!("r-{}", hex17("reservation", &instance_id)),
    )?;
    leaf("security-groups", "default")?;
    leaf("services/domain", "amazonaws.com")?;
    leaf("services/partition", "aws")?;
    for (i, key) in ctx.ssh_keys.iter().enumerate() {
        let name = key_name(key, i);
        leaf(&format!("public-keys/{i}={name}/openssh-key"), key)?;
    }
    for nic in &ctx.network.nics {
        nic_entries(&mut b, nic, hostname.as_deref())?;
    }
    let stamp = iso8601(now);
    if let Some(role) = ec2.and_then(|e| e.iam.as_ref()) {
        iam_entries(&mut b, role, &stamp, now)?;
    }
    let document = json!({
        "accountId": ACCOUNT_ID,
        "architecture": architecture(),
        "availabilityZone": az,
        "billingProducts": null,
        "devpayProductCodes": null,
        "marketplaceProductCodes": null,
        "imageId": ami_id,
        "instanceId": instance_id,
        "instanceType": instance_type,
        "kernelId": null,
        "pendingTime": stamp,
        "privateIp": local_ipv4.map(|i| i.to_string()),
        "ramdiskId": null,
        "region": region,
        "version": "2017-09-30",
    });
    let doc = serde_json::to_string_pretty(&document).expect("a JSON value serializes");
    b.leaf("dynamic/instance-identity/document", doc)?;
    if let Some(ud) = &ctx.scripts.user_data {
        b.leaf("user-data", ud.body.clone())?;
    }
    Ok(b.build())
}

/// `EC2_REGION` and `EC2_AVAILABILITY_ZONE`, each completing the other (an AZ is its region
/// plus one letter, which is how botocore reads the region).
fn placement(region: Option<String>, az: Option<String>) -> (String, String) {
    match (region, az) {
        (Some(r), Some(a)) => (r, a),
        (Some(r), None) => (r.clone(), format!("{r}a")),
        (None, Some(a)) if a.len() > 1 => (a[..a.len() - 1].to_string(), a),
        _ => (DEFAULT_REGION.to_string(), format!("{DEFAULT_REGION}a")),
    }
}

/// `i-` and 17 hex digits: the VMID itself when the context has one (`one-6` →
/// `i-00000000000000006`), else a hash of the context's own id.
pub fn instance_id_for(ctx: &Context) -> String {
    match ctx
        .instance_id
        .strip_prefix("one-")
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(vmid) => format!("i-{vmid:017x}"),
        None => format!("i-{}", hex17("instance", &ctx.instance_id)),
    }
}

/// 17 hex digits from a hash of (kind, value): stable synthetic EC2 ids.
fn hex17(kind: &str, value: &str) -> String {
    let h = Sha256::digest(format!("vmctx {kind} {value}").as_bytes());
    let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
    hex[..17].to_string()
}

/// The key's comment (`gsg-keypair`), as EC2 names a key pair; `key-N` without one. `=` and `/`
/// would break the `N=name` listing, so they become `-`.
fn key_name(key: &str, i: usize) -> String {
    let fields: Vec<&str> = key.split_whitespace().collect();
    // Options may come first: the key type is the field before the base64 blob.
    let kind = fields
        .iter()
        .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-") || f.starts_with("sk-"));
    let comment = kind.and_then(|k| fields.get(k + 2..)).map(|c| c.join(" "));
    match comment.filter(|c| !c.is_empty()) {
        Some(c) => c
            .chars()
            .map(|ch| {
                if ch == '=' || ch == '/' || ch.is_control() {
                    '-'
                } else {
                    ch
                }
            })
            .collect(),
        None => format!("key-{i}"),
    }
}

fn ipv4s(n: &Nic) -> impl Iterator<Item = Ipv4Addr> + '_ {
    n.addresses.iter().filter_map(|c| match c.addr {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    })
}

fn ipv6s(n: &Nic) -> impl Iterator<Item = std::net::Ipv6Addr> + '_ {
    n.addresses.iter().filter_map(|c| match c.addr {
        IpAddr::V6(a) => Some(a),
        IpAddr::V4(_) => None,
    })
}

/// `10.0.3.40/24` → `10.0.3.0/24`.
fn network_of(addr: IpAddr, prefix: u8) -> String {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            format!("{}/{prefix}", Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            format!(
                "{}/{prefix}",
                std::net::Ipv6Addr::from(u128::from(a) & mask)
            )
        }
    }
}

fn nic_entries(b: &mut Builder, n: &Nic, hostname: Option<&str>) -> Result<(), TreeError> {
    let mac = n.mac.to_string();
    let base = format!("meta-data/network/interfaces/macs/{mac}");
    let mut leaf = |name: &str, v: String| b.leaf(&format!("{base}/{name}"), v);
    leaf("device-number", n.index.to_string())?;
    leaf("interface-id", format!("eni-{}", hex17("eni", &mac)))?;
    leaf("mac", mac.clone())?;
    leaf("owner-id", ACCOUNT_ID.to_string())?;
    leaf("security-groups", "default".to_string())?;
    leaf(
        "security-group-ids",
        format!("sg-{}", hex17("sg", "default")),
    )?;
    let v4: Vec<String> = ipv4s(n).map(|a| a.to_string()).collect();
    if !v4.is_empty() {
        leaf("local-ipv4s", v4.join("\n"))?;
        if let Some(h) = hostname.filter(|_| n.index == 0) {
            leaf("local-hostname", h.to_string())?;
        }
    }
    // The subnet is the NIC's first IPv4 network; OpenNebula's VNET is not in the context, so
    // the VPC is the same block.
    if let Some(c) = n.addresses.iter().find(|c| c.addr.is_ipv4()) {
        let net = network_of(c.addr, c.prefix);
        leaf("subnet-id", format!("subnet-{}", hex17("subnet", &net)))?;
        leaf("subnet-ipv4-cidr-block", net.clone())?;
        leaf("vpc-id", format!("vpc-{}", hex17("vpc", &net)))?;
        leaf("vpc-ipv4-cidr-block", net.clone())?;
        leaf("vpc-ipv4-cidr-blocks", net)?;
    }
    let v6: Vec<_> = n.addresses.iter().filter(|c| c.addr.is_ipv6()).collect();
    if !v6.is_empty() {
        let ips: Vec<String> = v6.iter().map(|c| c.addr.to_string()).collect();
        leaf("ipv6s", ips.join("\n"))?;
        let nets: Vec<String> = v6.iter().map(|c| network_of(c.addr, c.prefix)).collect();
        leaf("subnet-ipv6-cidr-blocks", nets.join("\n"))?;
        leaf("vpc-ipv6-cidr-blocks", nets.join("\n"))?;
    }
    Ok(())
}

/// `iam/info` and `iam/security-credentials/<role>`: only with a role and its credentials, since
/// a listed role that answers 404 breaks every SDK's credential chain.
fn iam_entries(
    b: &mut Builder,
    role: &IamRole,
    stamp: &str,
    now: SystemTime,
) -> Result<(), TreeError> {
    let Some(creds) = &role.credentials else {
        return Ok(());
    };
    let info = json!({
        "Code": "Success",
        "LastUpdated": stamp,
        "InstanceProfileArn": format!("arn:aws:iam::{ACCOUNT_ID}:instance-profile/{}", role.name),
        "InstanceProfileId": format!("AIPA{}", hex17("profile", &role.name).to_uppercase()),
    });
    let sec = json!({
        "Code": "Success",
        "LastUpdated": stamp,
        "Type": "AWS-HMAC",
        "AccessKeyId": creds.access_key_id,
        "SecretAccessKey": creds.secret_access_key.expose(),
        "Token": creds.session_token.as_ref().map(|t| t.expose()).unwrap_or(""),
        "Expiration": iso8601(now + CREDENTIALS_LIFETIME),
    });
    let pretty = |v| serde_json::to_string_pretty(&v).expect("a JSON value serializes");
    b.leaf("meta-data/iam/info", pretty(info))?;
    b.leaf(
        &format!("meta-data/iam/security-credentials/{}", role.name),
        pretty(sec),
    )
}

/// The architecture name EC2 uses for this build's target.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "i386",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `2024-05-01T12:34:56Z`.
pub fn iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86400, secs % 86400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
#[path = "imds_tree_tests.rs"]
mod tests;

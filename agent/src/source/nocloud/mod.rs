//! NoCloud as a context source: a volume labelled `cidata`/`CIDATA` (ISO9660 or FAT, read
//! without mounting; Proxmox VE, libvirt, LXD/Incus, multipass and bare-metal provisioners
//! write one) or a folder, holding `meta-data`, `user-data`, `vendor-data` and
//! `network-config` (cloud-init's network config version 1 or 2).
//!
//! [`read_seed`] reads the four files as bytes; [`to_context`] parses them, so a malformed one
//! is reported with its file (and line): nothing is applied.

pub mod eni;
pub mod meta_data;
mod network;
mod network_v1;
mod network_v2;
mod yaml;

use crate::context::{Context, Network, Nic, Origin, Scripts, User};
use crate::context::{Ip6Method, MacAddr, Method};
use std::path::Path;

/// The label cloud-init looks for; FAT tools store it upper-cased. Compared case-insensitively.
pub const SEED_LABEL: &str = "cidata";

pub fn is_seed_label(label: &str) -> bool {
    label.eq_ignore_ascii_case(SEED_LABEL)
}

/// Largest `meta-data` or `network-config` read (Proxmox's are a few hundred bytes).
pub const MAX_DOC: u64 = 1 << 20;
/// Largest `user-data` or `vendor-data` read (as the other sources).
pub const MAX_USER_DATA: u64 = super::openstack::MAX_USER_DATA;

pub const META_DATA: &str = "meta-data";
pub const USER_DATA: &str = "user-data";
pub const VENDOR_DATA: &str = "vendor-data";
pub const NETWORK_CONFIG: &str = "network-config";

/// The seed's files, as bytes.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    pub meta_data: Vec<u8>,
    pub user_data: Option<Vec<u8>>,
    pub vendor_data: Option<Vec<u8>>,
    pub network_config: Option<Vec<u8>>,
    /// Worth a warning: an unexpected volume label, …
    pub notes: Vec<String>,
}

/// Reads the seed at `path` (a device, an image file or a folder). A seed named explicitly
/// with another label is still read, with a warning.
pub fn read_seed(path: &Path) -> Result<Seed, String> {
    let mut tree = super::openstack::drive::open_tree(path)?;
    let mut notes = Vec::new();
    if let Some(label) = tree.label().filter(|l| !is_seed_label(l)) {
        notes.push(format!(
            "{}: volume label is {label:?}, not {SEED_LABEL:?}",
            path.display()
        ));
    }
    let mut read =
        |name: &str, limit: u64| tree.read(name, limit).map_err(|e| format!("{name}: {e}"));
    let meta_data = read(META_DATA, MAX_DOC)?
        .ok_or_else(|| format!("{META_DATA}: missing (every NoCloud seed has one)"))?;
    Ok(Seed {
        meta_data,
        user_data: read(USER_DATA, MAX_USER_DATA)?,
        vendor_data: read(VENDOR_DATA, MAX_USER_DATA)?,
        network_config: read(NETWORK_CONFIG, MAX_DOC)?,
        notes,
    })
}

/// A seed served over http (`nocloud:http://10.0.0.1:8000/seed/`): the four files under that
/// URL, fetched together with the metadata client's retries inside a 60 s budget
/// (`VMCTX_IMDS_TIMEOUT`, in `imds`); an IP literal only (no name is resolved).
pub fn read_service(url: &str, imds: &crate::settings::Imds) -> Result<Seed, String> {
    use crate::source::ec2::{self, client::Client};
    const BUDGET: std::time::Duration = std::time::Duration::from_secs(60);
    let opts = ec2::Options::new(Some(url), BUDGET, imds).map_err(|e| e.to_string())?;
    let client = Client::tokenless(opts.endpoint.clone(), opts.budget, opts.concurrency);
    let rt = ec2::runtime().map_err(|e| e.to_string())?;
    let (meta, user, vendor, net) = rt
        .block_on(async {
            futures::try_join!(
                client.get(META_DATA),
                client.get(USER_DATA),
                client.get(VENDOR_DATA),
                client.get(NETWORK_CONFIG)
            )
        })
        .map_err(|e| e.to_string())?;
    let meta = meta.ok_or_else(|| format!("{META_DATA}: 404 (every NoCloud seed has one)"))?;
    for (name, b) in [(META_DATA, Some(&meta)), (NETWORK_CONFIG, net.as_ref())] {
        if let Some(len) = b.map(|b| b.len() as u64).filter(|l| *l > MAX_DOC) {
            return Err(format!(
                "{name}: {len} bytes, over the {MAX_DOC}-byte limit"
            ));
        }
    }
    let notes = std::mem::take(&mut *client.notes.lock().expect("notes lock"));
    Ok(Seed {
        meta_data: meta.to_vec(),
        user_data: user.map(|b| b.to_vec()),
        vendor_data: vendor.map(|b| b.to_vec()),
        network_config: net.map(|b| b.to_vec()),
        notes,
    })
}

/// What the kernel command line says of NoCloud: `ds=nocloud;s=file:///path/` (also
/// `seedfrom=`, and `nocloud-net`). `Ok(path)` under `root`; `Err(why)` for a form vmctx does not
/// read (a seed over http); `None` when the command line names no NoCloud seed.
pub fn cmdline_seed(root: &Path) -> Option<Result<std::path::PathBuf, String>> {
    use std::io::Read;
    let mut text = String::new();
    let f = std::fs::File::open(root.join("proc/cmdline")).ok()?;
    f.take(64 << 10).read_to_string(&mut text).ok()?;
    parse_cmdline(&text).map(|r| r.map(|p| root.join(p.trim_start_matches('/'))))
}

fn parse_cmdline(text: &str) -> Option<Result<String, String>> {
    let arg = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ds="))?;
    let mut parts = arg.split(';');
    let ds = parts.next()?;
    if ds != "nocloud" && ds != "nocloud-net" {
        return None;
    }
    let seed = parts.find_map(|p| p.strip_prefix("s=").or(p.strip_prefix("seedfrom=")));
    Some(match seed {
        Some(url) => match url.strip_prefix("file://") {
            Some(path) if path.starts_with('/') && !path.split('/').any(|c| c == "..") => {
                Ok(path.to_string())
            }
            _ if url.starts_with('/') => Ok(url.to_string()),
            _ => Err(format!(
                "kernel command line ds={ds}: seed {url:?} is not a file:/// path (a seed over the \
                 network is not read by vmctx yet)"
            )),
        },
        // Only `ds=nocloud`: the seed is the cidata volume.
        None => Err(
            "kernel command line ds=nocloud names no seed path: the cidata volume is used".into(),
        ),
    })
}

/// The seed → the context. Malformed files are errors naming the file (and line).
pub fn to_context(seed: &Seed, origin: &Origin) -> Result<Context, String> {
    let meta = meta_data::parse(&seed.meta_data)?;
    let mut warnings = seed.notes.clone();
    warnings.extend(meta.warnings.iter().cloned());
    let network = match &seed.network_config {
        Some(bytes) => network::parse(bytes, &mut warnings)?,
        None => match &meta.network_interfaces {
            Some(eni) => eni::to_network(eni, "meta-data network-interfaces", &mut warnings)?,
            None => fallback_network(&mut warnings),
        },
    };
    let mut env = vec![("INSTANCE_ID".to_string(), meta.instance_id.clone())];
    if let Some(h) = &meta.hostname {
        env.push(("HOSTNAME".into(), h.name.clone()));
    }
    let mut ctx = Context {
        instance_id: meta.instance_id,
        source: origin.clone(),
        files: Vec::new(),
        hostname: meta.hostname,
        network,
        ssh_keys: meta.ssh_keys,
        user: Some(User {
            name: "root".into(),
            sudo: false,
            shell: "/bin/bash".into(),
            password: None,
            lock_password: false,
        }),
        scripts: Scripts::default(),
        update: None,
        sync: None,
        ec2: None,
        onegate: None,
        system: crate::context::System::default(),
        cloud_config: None,
        warnings,
        errors: Vec::new(),
        env,
    };
    merge_user_data(&mut ctx, seed);
    // Malformed YAML in user-data or vendor-data makes the seed unreadable, as it does in
    // meta-data and network-config: nothing is changed, rather than the rest applied.
    let unreadable = |e: &&String| {
        [USER_DATA, VENDOR_DATA]
            .iter()
            .any(|f| e.starts_with(&format!("{f}: #cloud-config: not valid YAML")))
    };
    if let Some(e) = ctx.errors.iter().find(unreadable) {
        return Err(e.clone());
    }
    Ok(ctx)
}

/// cloud-init's rule without a `network-config`: DHCP on the first NIC.
fn fallback_network(warnings: &mut Vec<String>) -> Network {
    warnings.push(format!(
        "{NETWORK_CONFIG}: none: DHCP on the first NIC, as cloud-init does"
    ));
    let placeholder = MacAddr([0; 6]);
    Network {
        configure: true,
        by_order: vec![Nic::new(0, placeholder, Method::Dhcp, Ip6Method::Skip)],
        ..Network::default()
    }
}

/// vendor-data, then user-data, through the shared user-data path: what user-data says wins
/// (its hostname, its keys after vendor-data's, its scripts after vendor-data's).
fn merge_user_data(ctx: &mut Context, seed: &Seed) {
    let vendor = seed
        .vendor_data
        .clone()
        .and_then(crate::source::userdata::user_data);
    let user = seed
        .user_data
        .clone()
        .and_then(crate::source::userdata::user_data);
    let mut first = None;
    if let Some(v) = vendor {
        ctx.scripts.user_data = Some(v);
        let before = ctx.errors.len();
        crate::source::userdata::merge(ctx);
        for e in &mut ctx.errors[before..] {
            *e = e.replacen("user-data", VENDOR_DATA, 1);
        }
        first = ctx.cloud_config.take();
        for s in first.iter_mut().flat_map(|c| c.scripts.iter_mut()) {
            if s.name == USER_DATA {
                s.name = VENDOR_DATA.into();
            }
        }
    }
    ctx.scripts.user_data = user;
    crate::source::userdata::merge(ctx);
    if let Some(mut v) = first {
        let cc = ctx.cloud_config.get_or_insert_with(Default::default);
        v.scripts.append(&mut cc.scripts);
        v.users.append(&mut cc.users);
        v.write_files.append(&mut cc.write_files);
        v.runcmd.append(&mut cc.runcmd);
        v.runcmd_lines = v.runcmd.len();
        v.package_update |= cc.package_update;
        v.package_upgrade |= cc.package_upgrade;
        *cc = v;
    }
}

#[cfg(test)]
#[test]
fn kernel_command_line() {
    let p = |t: &str| parse_cmdline(t);
    assert_eq!(
        p("ro ds=nocloud;s=file:///var/seed/ quiet"),
        Some(Ok("/var/seed/".into()))
    );
    assert_eq!(p("ds=nocloud;seedfrom=file:///s"), Some(Ok("/s".into())));
    assert!(
        matches!(p("ds=nocloud-net;s=http://10.0.0.1/"), Some(Err(e)) if e.contains("network"))
    );
    assert!(matches!(p("ds=nocloud;s=file:///a/../etc"), Some(Err(_))));
    assert_eq!(p("ro quiet"), None);
    assert_eq!(p("ds=ec2"), None);
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

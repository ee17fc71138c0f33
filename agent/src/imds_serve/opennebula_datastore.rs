//! `--host-map opennebula:DIR`: the VMs of an OpenNebula KVM host, read from the files the
//! cloud already wrote. DIR is the datastores folder (`/var/lib/one/datastores`, holding
//! `<datastore>/<vmid>/`) or one datastore (holding `<vmid>/`). A VM's folder holds its
//! context CD as `disk.N`, an ISO9660 image labelled `CONTEXT`: it is found by reading each
//! regular `disk.N`'s primary volume descriptor (one sector), and only again when the folder
//! itself changes. Its addresses come from its context, once its tree is built.

use super::host_map::{stamp_of, Stamp, VmSource};
use crate::context::{Context, Method};
use crate::source::iso9660;
use crate::source::opennebula::CONTEXT_LABEL;
use std::collections::HashMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Folders looked at in DIR and in each datastore: more are left out (with a warning).
const MAX_FOLDERS: usize = 100_000;
/// `disk.N` files looked at in one VM's folder.
const MAX_DISKS: usize = 64;

/// What was found in each VM folder, kept from one look at DIR to the next so that the
/// volume labels are read again only where a folder changed.
#[derive(Default)]
pub struct Datastore {
    folders: HashMap<PathBuf, (Stamp, Option<PathBuf>)>,
}

/// Every address a context gives its VM: each NIC's own (`ETHx_IP`, or the MAC rule's when
/// `ETHx_IP` is absent, `ETHx_IP6`…) and its aliases', and for NICs the guest leaves to DHCP
/// the `ETHx_IP`/`ETHx_IP6` the cloud leased them. Never an unspecified or multicast address.
pub fn addresses(ctx: &Context) -> Vec<IpAddr> {
    let env: HashMap<&str, &str> = ctx
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut out: Vec<IpAddr> = Vec::new();
    for nic in &ctx.network.nics {
        let mut add = |a: IpAddr| {
            let a = a.to_canonical();
            if !a.is_unspecified() && !a.is_multicast() && !out.contains(&a) {
                out.push(a);
            }
        };
        for c in &nic.addresses {
            add(c.addr);
        }
        if nic.method == Method::Dhcp {
            for key in ["IP", "IP6", "IP6_GLOBAL", "IP6_ULA"] {
                let name = format!("ETH{}_{key}", nic.index);
                if let Some(a) = env.get(name.as_str()).and_then(|v| v.parse().ok()) {
                    add(a);
                }
            }
        }
    }
    out
}

impl Datastore {
    /// The VMs of DIR by folder: each with its context CD and the stamp of both (the folder's
    /// entries and the image's contents). Folders without a context CD are left out.
    pub fn list(&mut self, dir: &Path) -> std::io::Result<HashMap<PathBuf, (VmSource, Stamp)>> {
        let mut vms = HashMap::new();
        let mut seen = Vec::new();
        for top in numbered_folders(dir)? {
            if has_disks(&top) {
                seen.push(top);
                continue;
            }
            // A datastore: its VM folders one level down (image datastores have no numbered
            // folders).
            seen.extend(numbered_folders(&top).unwrap_or_default());
        }
        let mut kept = HashMap::with_capacity(seen.len());
        for folder in seen {
            let stamp = stamp_of(std::slice::from_ref(&folder));
            let iso = match self.folders.remove(&folder) {
                Some((s, iso)) if s == stamp => iso,
                // A CD being rewritten in place has no label for a moment: while its file is
                // there, it stays the VM's CD (its build fails, its tree stays served).
                Some((_, prev)) => find_context_cd(&folder).or_else(|| {
                    prev.filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
                }),
                None => find_context_cd(&folder),
            };
            if let Some(iso) = &iso {
                let mut full = stamp.clone();
                full.extend(stamp_of(std::slice::from_ref(iso)));
                vms.insert(folder.clone(), (VmSource::ContextIso(iso.clone()), full));
            }
            kept.insert(folder, (stamp, iso));
        }
        self.folders = kept;
        Ok(vms)
    }
}

/// DIR's sub-folders named by a number (VM ids, datastore ids), not through symlinks.
fn numbered_folders(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten().take(MAX_FOLDERS) {
        let name = entry.file_name();
        let numbered = name
            .to_str()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered && entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// `disk.N` names in a folder, by N.
fn disks(folder: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut found: Vec<(u32, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix("disk.")?.parse::<u32>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().take(MAX_DISKS).map(|(_, p)| p).collect()
}

fn has_disks(folder: &Path) -> bool {
    !disks(folder).is_empty()
}

/// The first regular `disk.N` (never a symlink: persistent images link elsewhere) whose
/// primary volume descriptor says `CONTEXT`; only that sector of each is read.
fn find_context_cd(folder: &Path) -> Option<PathBuf> {
    disks(folder).into_iter().find(|p| {
        let file = File::options()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(p);
        match file {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => {
                matches!(iso9660::read_volume_id(f), Ok(Some(label)) if label == CONTEXT_LABEL)
            }
            _ => false,
        }
    })
}

#[cfg(test)]
/// A fake image: 16 empty sectors, then a primary volume descriptor with this label.
pub(super) fn fake_image(label: &str) -> Vec<u8> {
    let mut b = vec![0u8; 17 * 2048];
    let pvd = &mut b[16 * 2048..];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    let mut id = [b' '; 32];
    id[..label.len()].copy_from_slice(label.as_bytes());
    pvd[40..72].copy_from_slice(&id);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{self, Source};

    fn ctx(text: &str) -> Context {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("context.sh"), text).unwrap();
        source::load(
            &Source::Dir(d.path().into()),
            Path::new("/"),
            &Default::default(),
        )
        .unwrap()
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn every_address_a_context_gives() {
        let c = ctx("VMID='5'\n\
             ETH0_MAC='02:00:0a:00:00:05'\n\
             ETH0_IP6='2001:db8::5'\nETH0_IP6_PREFIX_LENGTH='64'\n\
             ETH0_ALIAS0_MAC='02:00:0a:00:00:09'\nETH0_ALIAS0_IP='10.0.0.9'\n\
             ETH1_MAC='02:00:c0:00:02:07'\nETH1_IP='192.0.2.7'\nETH1_MASK='255.255.255.0'\n\
             ETH2_MAC='02:00:c6:33:64:08'\nETH2_METHOD='dhcp'\nETH2_IP='198.51.100.8'\n\
             ETH3_MAC='02:00:0a:00:00:0a'\nETH3_IP=''\n");
        // ETH0: no ETH0_IP, but an IPv6 address: the MAC rule does not apply.
        assert_eq!(
            addresses(&c),
            ips(&["10.0.0.9", "2001:db8::5", "192.0.2.7", "198.51.100.8"])
        );
        let legacy = ctx("VMID='6'\nETH0_MAC='02:00:0a:00:00:06'\n");
        assert_eq!(addresses(&legacy), ips(&["10.0.0.6"]));
    }

    #[test]
    fn finds_each_vm_s_context_cd_by_label_and_looks_again_only_where_a_folder_changed() {
        let d = tempfile::tempdir().unwrap();
        let ds = d.path().join("0");
        for (vm, files) in [
            ("5", &[("disk.0", "DATA"), ("disk.1", "CONTEXT")][..]),
            ("6", &[("disk.0", "CONTEXT")]),
            ("7", &[("disk.0", "OTHER")]),
        ] {
            std::fs::create_dir_all(ds.join(vm)).unwrap();
            for (name, label) in files {
                std::fs::write(ds.join(vm).join(name), fake_image(label)).unwrap();
            }
        }
        // A symlinked CONTEXT image (a persistent disk elsewhere) is not taken.
        std::fs::create_dir_all(ds.join("8")).unwrap();
        std::os::unix::fs::symlink(ds.join("6/disk.0"), ds.join("8/disk.2")).unwrap();
        std::fs::create_dir_all(d.path().join("1/0123abcd")).unwrap(); // an image datastore
        let mut store = Datastore::default();
        let one = |store: &mut Datastore, p: &Path| store.list(p).unwrap();
        for dir in [d.path(), ds.as_path()] {
            let vms = one(&mut store, dir);
            assert_eq!(vms.len(), 2, "{vms:?}");
            assert_eq!(
                vms[&ds.join("5")].0,
                VmSource::ContextIso(ds.join("5/disk.1"))
            );
            assert_eq!(
                vms[&ds.join("6")].0,
                VmSource::ContextIso(ds.join("6/disk.0"))
            );
        }
        let before = one(&mut store, d.path());
        // The image rewritten in place: a new stamp, the same image.
        let mut img = fake_image("CONTEXT");
        img.push(0);
        std::fs::write(ds.join("5/disk.1"), &img).unwrap();
        let after = one(&mut store, d.path());
        assert_ne!(after[&ds.join("5")].1, before[&ds.join("5")].1);
        assert_eq!(after[&ds.join("6")].1, before[&ds.join("6")].1);
        // A label is read again only when its folder changes, and a CD caught half rewritten
        // then stays the VM's (its image's stamp changed: it is built again, and fails)…
        std::fs::write(ds.join("6/disk.0"), b"").unwrap();
        assert!(one(&mut store, d.path()).contains_key(&ds.join("6")));
        std::fs::write(ds.join("6/disk.1"), fake_image("DATA")).unwrap();
        let vms = one(&mut store, d.path());
        assert_eq!(
            vms[&ds.join("6")].0,
            VmSource::ContextIso(ds.join("6/disk.0"))
        );
        // …until it is removed: no CONTEXT image left, the VM is gone.
        std::fs::remove_file(ds.join("6/disk.0")).unwrap();
        let vms = one(&mut store, d.path());
        assert!(!vms.contains_key(&ds.join("6")), "{vms:?}");
        std::fs::remove_dir_all(ds.join("5")).unwrap();
        assert!(one(&mut store, d.path()).is_empty());
    }
}

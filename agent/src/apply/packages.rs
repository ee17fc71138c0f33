//! `package_update` / `package_upgrade` of a `#cloud-config`: a small shell job for the image's
//! package manager (detected under `--root`), run once per instance by the scripts executor.

use crate::files::Root;
use crate::os::PackageManager;

/// Refreshes the package lists only.
fn update_command(pm: PackageManager) -> &'static str {
    match pm {
        PackageManager::Apt => "apt-get -q update",
        PackageManager::Dnf => "dnf -y -q makecache",
        PackageManager::Yum => "yum -y -q makecache",
        PackageManager::Zypper => "zypper --non-interactive --quiet refresh",
        PackageManager::Apk => "apk update -q",
    }
}

/// The job's body. Under `--root DIR`, DIR's own bin folders come first on PATH: the tree's
/// package manager is the one asked, never the host's.
pub fn script(root: &Root, pm: Option<PackageManager>, upgrade: bool) -> Result<Vec<u8>, String> {
    let pm = pm.ok_or("no package manager found (apt-get, dnf, yum, zypper, apk)")?;
    let mut s = String::from("#!/bin/sh\nset -e\n");
    if !root.is_real() {
        let d = root.dir().display().to_string().replace('\'', "");
        s.push_str(&format!(
            "PATH='{d}/usr/sbin:{d}/usr/bin:{d}/sbin:{d}/bin':\"$PATH\"\n"
        ));
    }
    s.push_str("export DEBIAN_FRONTEND=noninteractive\n");
    s.push_str(if upgrade {
        pm.upgrade_command()
    } else {
        update_command(pm)
    });
    s.push('\n');
    Ok(s.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_under_a_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("usr/bin")).unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/os-release"), "ID=debian\n").unwrap();
        let root = Root::new(t.path());
        let pm = |r: &Root| {
            let os = crate::os::OsRelease::read(r.dir());
            PackageManager::detect(r.dir(), &os)
        };
        assert!(script(&root, pm(&root), false).is_err());
        std::fs::write(t.path().join("usr/bin/apt-get"), "").unwrap();
        let s = String::from_utf8(script(&root, pm(&root), true).unwrap()).unwrap();
        assert!(
            s.contains(&format!("PATH='{}/usr/sbin", t.path().display())),
            "{s}"
        );
        assert!(
            s.contains("apt-get -q update && ") && s.contains("upgrade"),
            "{s}"
        );
        let s = String::from_utf8(script(&root, pm(&root), false).unwrap()).unwrap();
        assert!(s.ends_with("apt-get -q update\n"), "{s}");
    }
}

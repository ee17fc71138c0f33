//! `TIMEZONE`: `/etc/localtime` becomes a link to `../usr/share/zoneinfo/<zone>` (made at a
//! temporary name and renamed over the old one), and Debian's `/etc/timezone` names the zone.
//! The name's form is checked when the context is read; that the zone exists in this system's
//! tzdata is a fact gathered before planning (`crate::facts::Zone`).

use super::Apply;
use crate::context::System;
use crate::files::NewFile;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const ZONEINFO: &str = "/usr/share/zoneinfo";
const LOCALTIME: &str = "/etc/localtime";

/// The zone's file, when it is a TZif file that stays inside `dir` (links resolved).
pub fn zone_file(dir: &Path, zone: &str) -> Result<PathBuf, String> {
    let not_found = || format!("no such zone in {ZONEINFO}");
    let base = std::fs::canonicalize(dir).map_err(|e| e.to_string())?;
    let real = std::fs::canonicalize(dir.join(zone)).map_err(|_| not_found())?;
    if !real.starts_with(&base) {
        return Err(format!("leads outside {ZONEINFO}"));
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(&real)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|_| not_found())?;
    if &magic != b"TZif" {
        return Err(format!("not a zone file of {ZONEINFO}"));
    }
    Ok(real)
}

pub fn apply(ap: &mut Apply, sys: &System) {
    let Some(zone) = sys.timezone.as_deref() else {
        return;
    };
    if !ap.root.path(ZONEINFO).is_dir() {
        return ap.skipped(
            "timezone",
            zone,
            format!("no {ZONEINFO} (tzdata is not installed): time zone not set"),
        );
    }
    let target = format!("..{ZONEINFO}/{zone}");
    let link = ap.root.path(LOCALTIME);
    let current = std::fs::read_link(&link).ok();
    if current.as_deref() == Some(Path::new(&target)) {
        ap.unchanged("timezone", LOCALTIME, format!("→ {target}"));
    } else if ap.dry_run {
        ap.changed("timezone", LOCALTIME, format!("would link → {target}"));
    } else {
        let was = match &current {
            Some(c) => c.display().to_string(),
            None if link.exists() => "a file".to_string(),
            None => "none".to_string(),
        };
        match ap.symlink(&link, &target) {
            Ok(()) => ap.changed("timezone", LOCALTIME, format!("→ {target} (was {was})")),
            Err(e) => ap.failed("timezone", LOCALTIME, e),
        }
    }
    // Debian's name of the zone, beside the link (tools such as tzdata's debconf read it).
    let tz = ap.root.path("/etc/timezone");
    if tz.exists() || ap.root.path("/etc/debian_version").exists() {
        ap.file(
            "timezone",
            &tz,
            format!("{zone}\n").as_bytes(),
            NewFile::mode(0o644),
        );
    }
}

#[cfg(test)]
mod tests {
    fn tzdata() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let z = t.path().join("usr/share/zoneinfo");
        std::fs::create_dir_all(z.join("Europe")).unwrap();
        std::fs::write(z.join("Europe/Prague"), b"TZif2\0\0rest").unwrap();
        std::fs::write(z.join("zone.tab"), b"CZ\t+5005+01426\tEurope/Prague\n").unwrap();
        std::os::unix::fs::symlink("Europe/Prague", z.join("CET-ish")).unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/secret"), b"TZif but not a zone").unwrap();
        std::os::unix::fs::symlink("../../../etc/secret", z.join("Escape")).unwrap();
        t
    }

    #[test]
    fn zones_are_checked_against_tzdata() {
        use crate::facts::{zone, Zone};
        let t = tzdata();
        assert_eq!(zone(t.path(), Some("Europe/Prague")), Zone::Found);
        assert_eq!(
            zone(t.path(), Some("CET-ish")),
            Zone::Found,
            "links inside tzdata are zones"
        );
        for bad in ["Europe/Atlantis", "Europe", "zone.tab", "Escape"] {
            assert!(
                matches!(zone(t.path(), Some(bad)), Zone::Missing(_)),
                "{bad} accepted"
            );
        }
        assert_eq!(zone(t.path(), None), Zone::Found, "no TIMEZONE");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            zone(empty.path(), Some("Europe/Atlantis")),
            Zone::NoTzdata,
            "no tzdata: apply reports it, the zone is not an error"
        );
    }
}

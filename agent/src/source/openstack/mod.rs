//! OpenStack (Nova) as a context source: the config drive (an ISO9660 or FAT volume labelled
//! `config-2`, read without mounting), else the metadata service at
//! `169.254.169.254/openstack/`, with Nova's EC2-compatible tree as the last resort. Both
//! yield the same [`Metadata`]; [`map`] turns it into the context model.
//!
//! Version rule (shared/spec/openstack.md §1): `latest` when it holds `meta_data.json`, else
//! the newest `YYYY-MM-DD` folder that does; every optional file from that same folder.

pub mod drive;
pub mod map;
pub mod schema;
mod service;

pub use drive::{read_drive, DRIVE_LABEL};
pub use service::{has_service, read_service, ServiceAnswer};

/// The document read from the chosen version folder, as bytes (parsed by [`map`], so that a
/// malformed one is reported with its file and field).
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// The folder read, e.g. `openstack/latest` or `openstack/2018-08-27`.
    pub version: String,
    pub meta_data: Vec<u8>,
    pub network_data: Option<Vec<u8>>,
    pub user_data: Option<Vec<u8>>,
    /// Without network_data.json: the Debian interfaces file that `meta_data.json`'s
    /// `network_config.content_path` names (Proxmox's configdrive2), and its path.
    pub network_eni: Option<(String, Vec<u8>)>,
    /// Worth a warning: ignored vendor data, the version chosen when `latest` was missing, …
    pub notes: Vec<String>,
}

/// Largest JSON document read; Nova's are a few KiB.
pub const MAX_JSON: u64 = 1 << 20;
/// Largest user-data read (Nova caps it at 64 KiB; other producers allow more).
pub const MAX_USER_DATA: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OpenStackError {
    #[error("no openstack/ folder: not a config drive")]
    NoOpenStack,
    #[error("openstack/: no version folder holds meta_data.json (found: {0})")]
    NoVersion(String),
    #[error(
        "openstack/latest is a symbolic link to {0:?}, which is not a version folder on the drive"
    )]
    DanglingLatest(String),
    #[error("{0}: {1}")]
    Drive(String, String),
    #[error("{0}")]
    Http(#[from] super::ec2::Ec2Error),
}

/// What a version folder entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    /// A symbolic link and its target, as written.
    Link(String),
}

/// Picks the version folder among the entries of `openstack/` (`has_meta` says whether
/// `openstack/<name>/meta_data.json` exists). Returns the folder name and a note when it is
/// not plain `latest`.
pub fn choose_version(
    entries: &[(String, Kind)],
    mut has_meta: impl FnMut(&str) -> bool,
) -> Result<(String, Option<String>), OpenStackError> {
    let is_dated = |n: &str| {
        n.len() == 10
            && n.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
    };
    let dated_dir =
        |name: &str| is_dated(name) && entries.iter().any(|(n, k)| n == name && *k == Kind::Dir);
    let mut note = None;
    match entries.iter().find(|(n, _)| n == "latest").map(|(_, k)| k) {
        Some(Kind::Dir) if has_meta("latest") => return Ok(("latest".into(), None)),
        Some(Kind::Link(target)) => {
            // `latest -> 2018-08-27` (or `./2018-08-27/`, `/openstack/2018-08-27`).
            let name = target
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            let inside = !target.contains("..")
                && (target.trim_start_matches("./").trim_end_matches('/') == name
                    || target
                        .trim_end_matches('/')
                        .ends_with(&format!("openstack/{name}")));
            if inside && dated_dir(name) && has_meta(name) {
                return Ok((
                    name.to_string(),
                    Some(format!("openstack/latest links to {name}")),
                ));
            }
            return Err(OpenStackError::DanglingLatest(target.clone()));
        }
        Some(Kind::Dir) => note = Some("openstack/latest has no meta_data.json".to_string()),
        _ => {}
    }
    let mut dated: Vec<&str> = entries
        .iter()
        .filter(|(n, k)| *k == Kind::Dir && is_dated(n))
        .map(|(n, _)| n.as_str())
        .collect();
    dated.sort_unstable_by(|a, b| b.cmp(a));
    for d in dated {
        if has_meta(d) {
            let why = note.unwrap_or_else(|| "no openstack/latest".into());
            return Ok((
                d.to_string(),
                Some(format!("{why}: using {d}, the newest version")),
            ));
        }
    }
    let found: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    Err(OpenStackError::NoVersion(if found.is_empty() {
        "nothing".into()
    } else {
        found.join(", ")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(n: &str) -> (String, Kind) {
        (n.into(), Kind::Dir)
    }

    #[test]
    fn latest_first_then_newest_date() {
        let all = |_: &str| true;
        let e = [dir("2012-08-10"), dir("latest"), dir("2018-08-27")];
        assert_eq!(choose_version(&e, all).unwrap(), ("latest".into(), None));
        let e = [dir("2012-08-10"), dir("2018-08-27"), dir("content")];
        let (v, note) = choose_version(&e, all).unwrap();
        assert_eq!(v, "2018-08-27");
        assert!(note.unwrap().contains("no openstack/latest"));
        // The newest without meta_data.json is passed over; so is an empty `latest`.
        let e = [dir("2012-08-10"), dir("2018-08-27"), dir("latest")];
        let (v, note) = choose_version(&e, |n| n == "2012-08-10").unwrap();
        assert_eq!(v, "2012-08-10");
        assert!(note.unwrap().contains("latest has no meta_data.json"));
    }

    #[test]
    fn latest_as_a_link() {
        let all = |_: &str| true;
        let link = |t: &str| ("latest".to_string(), Kind::Link(t.into()));
        let e = [dir("2018-08-27"), link("2018-08-27")];
        assert_eq!(choose_version(&e, all).unwrap().0, "2018-08-27");
        let e = [dir("2018-08-27"), link("./2018-08-27/")];
        assert_eq!(choose_version(&e, all).unwrap().0, "2018-08-27");
        for bad in ["2020-10-14", "../../etc", "content", ""] {
            let e = [dir("2018-08-27"), dir("content"), link(bad)];
            let err = choose_version(&e, all).unwrap_err();
            assert!(
                matches!(&err, OpenStackError::DanglingLatest(t) if t == bad),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn nothing_usable() {
        let err = choose_version(&[dir("content"), dir("2012-8-10")], |_| true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "openstack/: no version folder holds meta_data.json (found: content, 2012-8-10)"
        );
        let err = choose_version(&[dir("2012-08-10")], |_| false).unwrap_err();
        assert!(matches!(err, OpenStackError::NoVersion(_)));
    }
}

//! What kind of system an image is, read from files under `--root`: os-release, the package
//! manager and whether systemd is the init. Used by the update schedule and the sync units.

use std::path::Path;

/// The fields of `/etc/os-release` vmctx looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// `/etc/os-release`, else `/usr/lib/os-release` (os-release(5)); empty when neither is there.
    pub fn read(root: &Path) -> OsRelease {
        ["etc/os-release", "usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(root.join(p)).ok())
            .map(|t| OsRelease::parse(&t))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> OsRelease {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
            match k {
                "ID" => os.id = v.to_ascii_lowercase(),
                "ID_LIKE" => {
                    os.id_like = v.split_whitespace().map(str::to_ascii_lowercase).collect()
                }
                "PRETTY_NAME" => os.pretty_name = Some(v),
                _ => {}
            }
        }
        os
    }

    /// ID then ID_LIKE: the most specific name first.
    fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.id_like.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Apt,
    Dnf,
    Yum,
    Zypper,
    Apk,
}

impl PackageManager {
    const ALL: [PackageManager; 5] = [
        PackageManager::Apt,
        PackageManager::Dnf,
        PackageManager::Yum,
        PackageManager::Zypper,
        PackageManager::Apk,
    ];

    fn binary(self) -> &'static str {
        match self {
            PackageManager::Apt => "apt-get",
            PackageManager::Dnf => "dnf",
            PackageManager::Yum => "yum",
            PackageManager::Zypper => "zypper",
            PackageManager::Apk => "apk",
        }
    }

    /// The non-interactive full upgrade. apt keeps changed config files (confold) rather than
    /// stopping at a prompt no one will answer.
    pub fn upgrade_command(self) -> &'static str {
        match self {
            PackageManager::Apt => {
                "apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y \
                 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold upgrade"
            }
            PackageManager::Dnf => "dnf -y -q upgrade --refresh",
            PackageManager::Yum => "yum -y -q update",
            PackageManager::Zypper => "zypper --non-interactive --quiet update",
            PackageManager::Apk => "apk update -q && apk upgrade -q",
        }
    }

    /// The manager os-release names (ID, then ID_LIKE) whose binary is present; else the
    /// first binary present. An image that ships both dnf and yum gets dnf on Fedora-likes.
    pub fn detect(root: &Path, os: &OsRelease) -> Option<PackageManager> {
        let present = |pm: PackageManager| has_binary(root, pm.binary());
        for name in os.names() {
            let wanted: &[PackageManager] = match name {
                "debian" | "ubuntu" => &[PackageManager::Apt],
                "fedora" | "rhel" | "centos" | "rocky" | "almalinux" | "amzn" | "ol" => {
                    &[PackageManager::Dnf, PackageManager::Yum]
                }
                "suse" | "opensuse" | "sles" | "opensuse-leap" | "opensuse-tumbleweed" => {
                    &[PackageManager::Zypper]
                }
                "alpine" => &[PackageManager::Apk],
                _ => &[],
            };
            if let Some(pm) = wanted.iter().copied().find(|p| present(*p)) {
                return Some(pm);
            }
        }
        Self::ALL.into_iter().find(|p| present(*p))
    }
}

/// Whether `name` is an executable in one of the usual bin directories under `root`.
pub fn has_binary(root: &Path, name: &str) -> bool {
    ["usr/bin", "bin", "usr/sbin", "sbin", "usr/local/bin"]
        .iter()
        .any(|d| root.join(d).join(name).is_file())
}

/// A program of the running system: on `PATH` or in the usual system folders (tools act on
/// this machine's devices and files, also under `--root`).
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(std::path::PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// For unit tests that run a tool (listed in `.ci/tools`): whether it is here; a skip with a
/// message when not, a failure under CI.
#[cfg(test)]
pub fn test_tool(name: &str) -> bool {
    let have = which(name).is_some();
    assert!(
        have || std::env::var_os("CI").is_none(),
        "{name} is missing"
    );
    if !have {
        eprintln!("SKIP: {name} is not installed");
    }
    have
}

/// Whether the system under `root` runs systemd: booted with it (`/run/systemd/system`, as
/// sd_booted(3) checks) or, for an image not booted yet, ships it as its init.
pub fn has_systemd(root: &Path) -> bool {
    [
        "run/systemd/system",
        "usr/lib/systemd/systemd",
        "lib/systemd/systemd",
    ]
    .iter()
    .any(|p| root.join(p).exists())
}

/// Booted with systemd right now (so units can be started, not only enabled).
pub fn systemd_running(root: &Path) -> bool {
    root.join("run/systemd/system").is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for f in files {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        t
    }

    #[test]
    fn os_release_fields() {
        let os = OsRelease::parse(
            "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n# c\nPRETTY_NAME='Rocky 9'\n",
        );
        assert_eq!(os.id, "rocky");
        assert_eq!(os.id_like, ["rhel", "centos", "fedora"]);
        assert_eq!(os.pretty_name.as_deref(), Some("Rocky 9"));
    }

    #[test]
    fn package_manager_from_os_release_and_binaries() {
        let rocky = OsRelease::parse("ID=rocky\nID_LIKE=\"rhel centos fedora\"\n");
        let t = tree(&["usr/bin/dnf", "usr/bin/yum"]);
        assert_eq!(
            PackageManager::detect(t.path(), &rocky),
            Some(PackageManager::Dnf)
        );
        let t = tree(&["usr/bin/yum"]);
        assert_eq!(
            PackageManager::detect(t.path(), &rocky),
            Some(PackageManager::Yum)
        );
        let ubuntu = OsRelease::parse("ID=ubuntu\nID_LIKE=debian\n");
        let t = tree(&["usr/bin/apt-get", "usr/bin/dnf"]);
        assert_eq!(
            PackageManager::detect(t.path(), &ubuntu),
            Some(PackageManager::Apt)
        );
        let t = tree(&["sbin/apk"]);
        assert_eq!(
            PackageManager::detect(t.path(), &OsRelease::default()),
            Some(PackageManager::Apk),
            "no os-release: the binary decides"
        );
        let t = tree(&[]);
        assert_eq!(PackageManager::detect(t.path(), &ubuntu), None);
    }

    #[test]
    fn systemd_detection() {
        assert!(has_systemd(tree(&["usr/lib/systemd/systemd"]).path()));
        assert!(!has_systemd(tree(&["usr/sbin/crond"]).path()));
    }
}

//! SELinux labels on what vmctx writes. A file made by a rename (every atomic write) or a new
//! folder gets the default label of the folder it is in (`etc_t`, `user_home_t`), not the one
//! the policy gives its path: sshd then refuses `~/.ssh/authorized_keys` (it wants
//! `ssh_home_t`) on Fedora and RHEL-family images. So every path a stage created or replaced
//! (recorded by [`super::Apply`]'s writers) gets its labels back at the end of the stage, as
//! `restorecon` sets them. Where SELinux is off or absent nothing is run.

use super::Apply;
use crate::files::Root;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether SELinux labels files on the system under a root: libselinux's
/// `is_selinux_enabled()` (a read-write selinuxfs and an `/etc/selinux/config`), read from
/// files, and a policy that is not disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Status {
    /// No selinuxfs (`/sys/fs/selinux/enforce`): a kernel without SELinux, or `selinux=0`.
    #[default]
    Absent,
    /// selinuxfs is mounted read-only (inside a container): libselinux takes it as absent.
    ReadOnly,
    /// No `/etc/selinux/config`: libselinux says disabled.
    NoConfig,
    /// `SELINUX=disabled`: no policy is loaded.
    Disabled,
    /// Labels are enforced or logged (`enforcing`, `permissive`); the policy's name
    /// (`SELINUXTYPE`, by default `targeted`).
    Enabled { policy: String },
}

/// Where selinuxfs is mounted: the usual place, then the one before `/sys/fs` existed.
const MOUNTS: [&str; 2] = ["/sys/fs/selinux", "/selinux"];

impl Status {
    pub fn read(root: &Path) -> Status {
        let root = Root::new(root);
        let Some(mount) = MOUNTS
            .into_iter()
            .find(|m| root.path(m).join("enforce").exists())
        else {
            return Status::Absent;
        };
        // libselinux checks the mount with statvfs; mountinfo says the same for this process
        // (under --root it is usually absent: then the mount counts as read-write).
        let mountinfo = std::fs::read_to_string(root.path("/proc/self/mountinfo"));
        if mountinfo.is_ok_and(|m| read_only(&m, mount)) {
            return Status::ReadOnly;
        }
        match std::fs::read_to_string(root.path("/etc/selinux/config")) {
            Ok(text) => Status::from_config(&text),
            Err(_) => Status::NoConfig,
        }
    }

    /// `SELINUX=` and `SELINUXTYPE=` of `/etc/selinux/config`, read as libselinux does
    /// (comments and blanks skipped, the mode case-insensitive).
    pub fn from_config(text: &str) -> Status {
        let mut disabled = false;
        let mut policy = "targeted".to_string();
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("SELINUX=") {
                disabled = v.trim().eq_ignore_ascii_case("disabled");
            } else if let Some(v) = line.strip_prefix("SELINUXTYPE=") {
                let v = v.trim();
                // A name, not a path: it goes into a path below the root.
                if !v.is_empty() && !v.contains('/') && v != ".." {
                    policy = v.to_string();
                }
            }
        }
        if disabled {
            Status::Disabled
        } else {
            Status::Enabled { policy }
        }
    }

    pub fn enabled(&self) -> bool {
        matches!(self, Status::Enabled { .. })
    }
}

/// Whether the last mount at `point` in mountinfo is read-only (its per-mount options).
fn read_only(mountinfo: &str, point: &str) -> bool {
    mountinfo
        .lines()
        .rev()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 5 && f[4] == point).then(|| f[5].split(',').any(|o| o == "ro"))
        })
        .unwrap_or(false)
}

/// One run of a labelling tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub program: &'static str,
    pub args: Vec<OsString>,
    /// How many paths it labels.
    pub paths: usize,
}

/// The tool runs that restore the labels of `files` and of the `trees` with all in them.
///
/// On the real root: `restorecon -F` on the exact files, `restorecon -F -R` on the trees (never
/// a folder vmctx does not own, such as /etc). Under `--root DIR`, restorecon would match the
/// running policy's rules against `DIR/home/u/.ssh` — a path under DIR, not `/home/u/.ssh` —
/// and label it as such; `setfiles -r DIR` strips DIR before matching and takes the rules of
/// DIR's own policy (`DIR/etc/selinux/<type>/contexts/files/file_contexts`), which is what
/// `restorecon` would set once that system runs. setfiles always descends into folders, and is
/// only given vmctx's files and trees. Neither follows a symlink given to it (only its folder
/// is resolved): a `~/.ssh` a user swapped for a link relabels the link alone.
pub fn runs(root: &Root, policy: &str, files: &[PathBuf], trees: &[PathBuf]) -> Vec<Run> {
    let os = |p: &Path| OsString::from(p.as_os_str());
    if root.is_real() {
        let mut out = Vec::new();
        for (list, recursive) in [(files, false), (trees, true)] {
            if list.is_empty() {
                continue;
            }
            let mut args: Vec<OsString> = vec!["-F".into(), "-v".into()];
            if recursive {
                args.push("-R".into());
            }
            args.push("--".into());
            args.extend(list.iter().map(|p| os(p)));
            out.push(Run {
                program: "restorecon",
                args,
                paths: list.len(),
            });
        }
        return out;
    }
    if files.is_empty() && trees.is_empty() {
        return Vec::new();
    }
    // setfiles compares the paths with the root as strings: both absolute, not resolved.
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut args: Vec<OsString> = vec!["-F".into(), "-v".into(), "-r".into()];
    args.push(os(&abs(root.dir())));
    args.push(os(&spec_file(root, policy)));
    args.push("--".into());
    args.extend(files.iter().chain(trees).map(|p| os(&abs(p))));
    vec![Run {
        program: "setfiles",
        args,
        paths: files.len() + trees.len(),
    }]
}

/// The file contexts of the policy under the root.
fn spec_file(root: &Root, policy: &str) -> PathBuf {
    root.path(format!(
        "/etc/selinux/{policy}/contexts/files/file_contexts"
    ))
}

/// Relabels what the stage wrote so far (and forgets it), when SELinux is enabled.
pub fn relabel(ap: &mut Apply, status: &Status) {
    let (files, trees) = ap.written.take();
    let Status::Enabled { policy } = status else {
        return;
    };
    // A path written and removed again in the stage is not there to label.
    let there = |p: &PathBuf| std::fs::symlink_metadata(p).is_ok() || ap.dry_run;
    let files: Vec<PathBuf> = files.into_iter().filter(there).collect();
    let trees: Vec<PathBuf> = trees.into_iter().filter(there).collect();
    let n = files.len() + trees.len();
    if !ap.root.is_real() && n > 0 {
        let spec = spec_file(&ap.root, policy);
        if !spec.is_file() {
            let why = format!(
                "no {} (the policy's file contexts): {n} paths keep their folder's label",
                spec.display()
            );
            return ap.skipped(KIND, "setfiles", why);
        }
    }
    for run in runs(&ap.root, policy, &files, &trees) {
        execute(ap, &run);
    }
}

const KIND: &str = "selinux";

fn execute(ap: &mut Apply, run: &Run) {
    let n = run.paths;
    if crate::os::which(run.program).is_none() {
        let why = format!(
            "{} is not installed (policycoreutils): {n} paths keep their folder's label, not the policy's",
            run.program
        );
        return ap.skipped(KIND, run.program, why);
    }
    if ap.dry_run {
        // Not every writer records a path it only would write: no count here.
        let what = "would restore the policy's labels of what this stage writes";
        return ap.changed(KIND, run.program, what);
    }
    match Command::new(run.program).args(&run.args).output() {
        // -v names each path whose label changed.
        Ok(o) if o.status.success() => {
            let relabelled = String::from_utf8_lossy(&o.stdout).lines().count();
            if relabelled == 0 {
                ap.unchanged(
                    KIND,
                    run.program,
                    format!("labels of {n} paths already right"),
                );
            } else {
                let detail = format!("labels restored ({relabelled} changed, {n} paths)");
                ap.changed(KIND, run.program, detail);
            }
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let err: Vec<&str> = err.lines().take(3).collect();
            let detail = format!("{} ({n} paths): {}", o.status, err.join("; "));
            ap.failed(KIND, run.program, detail);
        }
        Err(e) => ap.failed(KIND, run.program, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (f, body) in files {
            let p = t.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        t
    }

    const FS: (&str, &str) = ("sys/fs/selinux/enforce", "1");
    const CONFIG: (&str, &str) = (
        "etc/selinux/config",
        "# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n",
    );

    fn targeted() -> Status {
        Status::Enabled {
            policy: "targeted".into(),
        }
    }

    #[test]
    fn enabled_with_selinuxfs_and_a_config() {
        assert_eq!(Status::read(tree(&[FS, CONFIG]).path()), targeted());
        let old_mount = tree(&[("selinux/enforce", "0"), CONFIG]);
        assert_eq!(Status::read(old_mount.path()), targeted());
        let permissive = (
            "etc/selinux/config",
            "SELINUX=permissive\nSELINUXTYPE=mls\n",
        );
        assert_eq!(
            Status::read(tree(&[FS, permissive]).path()),
            Status::Enabled {
                policy: "mls".into()
            }
        );
        assert!(targeted().enabled());
    }

    #[test]
    fn absent_without_selinuxfs() {
        let t = tree(&[CONFIG]);
        std::fs::create_dir_all(t.path().join("sys/fs/selinux")).unwrap();
        assert_eq!(
            Status::read(t.path()),
            Status::Absent,
            "an empty mount point"
        );
        assert_eq!(Status::read(tree(&[]).path()), Status::Absent);
        assert!(!Status::Absent.enabled());
    }

    #[test]
    fn disabled_in_the_config_or_without_one() {
        let off = (
            "etc/selinux/config",
            "SELINUX=Disabled\nSELINUXTYPE=targeted\n",
        );
        assert_eq!(Status::read(tree(&[FS, off]).path()), Status::Disabled);
        assert_eq!(Status::read(tree(&[FS]).path()), Status::NoConfig);
        assert!(!Status::Disabled.enabled() && !Status::NoConfig.enabled());
    }

    #[test]
    fn read_only_selinuxfs_is_absent() {
        let ro = (
            "proc/self/mountinfo",
            "22 1 0:21 / /sys rw - sysfs sysfs rw\n\
             30 22 0:27 / /sys/fs/selinux ro,relatime - selinuxfs selinuxfs rw\n",
        );
        assert_eq!(
            Status::read(tree(&[FS, CONFIG, ro]).path()),
            Status::ReadOnly
        );
        let rw = (
            "proc/self/mountinfo",
            "30 22 0:27 / /sys/fs/selinux rw,relatime - selinuxfs selinuxfs rw\n",
        );
        assert_eq!(Status::read(tree(&[FS, CONFIG, rw]).path()), targeted());
    }

    #[test]
    fn policy_name_stays_a_name() {
        let s = Status::from_config("SELINUX=enforcing\nSELINUXTYPE=../../tmp\n");
        assert_eq!(s, targeted());
    }

    fn strings(r: &Run) -> Vec<String> {
        r.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn restorecon_on_the_real_root() {
        let files = [
            PathBuf::from("/etc/hostname"),
            PathBuf::from("/etc/localtime"),
        ];
        let trees = [PathBuf::from("/home/u/.ssh")];
        let r = runs(&Root::new("/"), "targeted", &files, &trees);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].program, "restorecon");
        assert_eq!(
            strings(&r[0]),
            ["-F", "-v", "--", "/etc/hostname", "/etc/localtime"]
        );
        assert_eq!(strings(&r[1]), ["-F", "-v", "-R", "--", "/home/u/.ssh"]);
        assert!(runs(&Root::new("/"), "targeted", &[], &[]).is_empty());
    }

    #[test]
    fn setfiles_under_another_root() {
        let root = Root::new("/tmp/img");
        let files = [root.path("/etc/hostname")];
        let trees = [root.path("/home/u/.ssh")];
        let r = runs(&root, "targeted", &files, &trees);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].program, "setfiles");
        assert_eq!(
            strings(&r[0]),
            [
                "-F",
                "-v",
                "-r",
                "/tmp/img",
                "/tmp/img/etc/selinux/targeted/contexts/files/file_contexts",
                "--",
                "/tmp/img/etc/hostname",
                "/tmp/img/home/u/.ssh"
            ]
        );
        assert_eq!(r[0].paths, 2);
    }
}

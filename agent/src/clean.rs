//! `vmctx clean`: reset vmctx's state before an image is captured, so the image's next boot is
//! a first boot (a new instance: per-instance work runs again).
//!
//! Always: everything under `/var/lib/vmctx` (instance id, per-instance markers and plans, the
//! network state, the private copy of the context files — it may hold `token.txt` — and the
//! sync state) except the scripts' logs, and everything under `/run/vmctx`. On request: the
//! logs (`--logs`: the scripts' logs and `/var/log/vmctx*`), the SSH host keys
//! (`--host-keys`: `/etc/ssh/ssh_host_*key*`), and the machine id (`--machine-id`:
//! `/etc/machine-id` emptied, systemd then makes a new one at the next boot;
//! `/var/lib/dbus/machine-id` removed unless it is a symlink to it). Nothing else is touched;
//! symlinks are removed, never followed.

use crate::files::Root;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub logs: bool,
    pub host_keys: bool,
    pub machine_id: bool,
    pub dry_run: bool,
}

/// One thing done (or, in a dry run, that would be done).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cleaned {
    /// The path as seen inside the root (`/var/lib/vmctx/instance-id`).
    pub path: String,
    /// `removed` or `emptied`.
    pub action: &'static str,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub cleaned: Vec<Cleaned>,
    pub errors: Vec<String>,
}

impl Report {
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let verb = |a: &str| {
            if self.dry_run {
                format!("would be {a}")
            } else {
                a.to_string()
            }
        };
        for c in &self.cleaned {
            out.push_str(&format!("{:<16} {}\n", verb(c.action), c.path));
        }
        for e in &self.errors {
            out.push_str(&format!("FAILED           {e}\n"));
        }
        if self.cleaned.is_empty() && self.errors.is_empty() {
            out.push_str("nothing to clean\n");
        }
        out
    }
}

struct Cleaner {
    root: Root,
    opts: Options,
    report: Report,
}

pub fn clean(root: &Path, opts: Options) -> Report {
    let mut c = Cleaner {
        root: Root::new(root),
        opts,
        report: Report {
            dry_run: opts.dry_run,
            ..Report::default()
        },
    };
    let keep_logs = !opts.logs;
    c.tree("/var/lib/vmctx", keep_logs);
    c.tree("/run/vmctx", false);
    if opts.logs {
        c.matching("/var/log", |n| n.starts_with("vmctx"));
    }
    if opts.host_keys {
        // ssh_host_*_key, its .pub and -cert.pub.
        c.matching("/etc/ssh", |n| {
            n.starts_with("ssh_host_") && n.contains("_key")
        });
    }
    if opts.machine_id {
        c.machine_id();
    }
    c.report
}

impl Cleaner {
    fn shown(&self, p: &Path) -> String {
        match p.strip_prefix(self.root.dir()) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => p.display().to_string(),
        }
    }

    fn fail(&mut self, p: &Path, e: io::Error) {
        let s = format!("{}: {e}", self.shown(p));
        self.report.errors.push(s);
    }

    fn remove_one(&mut self, p: &Path, is_dir: bool) {
        let shown = self.shown(p);
        if !self.opts.dry_run {
            let r = if is_dir {
                std::fs::remove_dir(p)
            } else {
                std::fs::remove_file(p)
            };
            if let Err(e) = r {
                return self.fail(p, e);
            }
        }
        self.report.cleaned.push(Cleaned {
            path: shown,
            action: "removed",
        });
    }

    /// Empties the folder `abs` (the folder itself stays); with `keep_logs`, `*.log` files
    /// and the folders holding them stay too.
    fn tree(&mut self, abs: &str, keep_logs: bool) {
        let dir = self.root.path(abs);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return self.remove_one(&dir, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return self.fail(&dir, e),
        }
        self.empty(&dir, keep_logs);
    }

    /// Removes what `dir` holds, depth first; returns whether something was kept.
    fn empty(&mut self, dir: &Path, keep_logs: bool) -> bool {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(e) => {
                self.fail(dir, e);
                return true;
            }
        };
        entries.sort();
        let mut kept = false;
        // The lock `vmctx clean` itself holds (against a concurrent apply).
        let lock = self.root.path(crate::status::LOCK_FILE);
        for p in entries {
            if p == lock {
                kept = true;
                continue;
            }
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) => {
                    self.fail(&p, e);
                    kept = true;
                    continue;
                }
            };
            if meta.is_dir() {
                if self.empty(&p, keep_logs) {
                    kept = true;
                } else {
                    self.remove_one(&p, true);
                }
            } else if keep_logs && p.extension().is_some_and(|x| x == "log") {
                kept = true;
            } else {
                self.remove_one(&p, false);
            }
        }
        kept
    }

    /// Removes the files (or symlinks) directly in `abs` whose name matches.
    fn matching(&mut self, abs: &str, want: impl Fn(&str) -> bool) {
        let dir = self.root.path(abs);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut found: Vec<(PathBuf, bool)> = rd
            .flatten()
            .filter(|e| want(&e.file_name().to_string_lossy()))
            .map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir())))
            .collect();
        found.sort();
        for (p, is_dir) in found {
            if is_dir {
                if !self.empty(&p, false) {
                    self.remove_one(&p, true);
                }
            } else {
                self.remove_one(&p, false);
            }
        }
    }

    fn machine_id(&mut self) {
        let etc = self.root.path("/etc/machine-id");
        match std::fs::symlink_metadata(&etc) {
            Ok(m) if m.is_file() && m.len() > 0 => {
                if !self.opts.dry_run {
                    // Truncated in place (not removed): systemd then writes a new id at boot;
                    // a missing file would make some images boot read-only-confused.
                    let r = std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .custom_flags_nofollow()
                        .open(&etc);
                    if let Err(e) = r {
                        return self.fail(&etc, e);
                    }
                }
                self.report.cleaned.push(Cleaned {
                    path: "/etc/machine-id".into(),
                    action: "emptied",
                });
            }
            Ok(_) | Err(_) => {}
        }
        let dbus = self.root.path("/var/lib/dbus/machine-id");
        if let Ok(m) = std::fs::symlink_metadata(&dbus) {
            // A symlink points at /etc/machine-id: it stays right by itself.
            if !m.file_type().is_symlink() {
                self.remove_one(&dbus, false);
            }
        }
    }
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, body: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn keeps_logs_unless_asked_and_dry_run_changes_nothing() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(r, "var/lib/vmctx/instance-id", "one-1\n");
        put(
            r,
            "var/lib/vmctx/instances/one-1/script-start_script.done",
            "",
        );
        put(r, "var/lib/vmctx/instances/one-1/start_script.log", "hi");
        put(r, "run/vmctx/context", "x");
        let dry = clean(
            r,
            Options {
                dry_run: true,
                logs: true,
                ..Options::default()
            },
        );
        assert_eq!(dry.cleaned.len(), 6, "{dry:?}");
        assert!(r.join("var/lib/vmctx/instance-id").exists());
        assert!(dry.summary().contains("would be removed"));

        let rep = clean(r, Options::default());
        assert!(rep.errors.is_empty(), "{rep:?}");
        assert!(!r.join("var/lib/vmctx/instance-id").exists());
        assert!(!r.join("run/vmctx/context").exists());
        assert!(r
            .join("var/lib/vmctx/instances/one-1/start_script.log")
            .exists());
        assert!(!r
            .join("var/lib/vmctx/instances/one-1/script-start_script.done")
            .exists());
        let rep = clean(
            r,
            Options {
                logs: true,
                ..Options::default()
            },
        );
        let paths: Vec<&str> = rep.cleaned.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/var/lib/vmctx/instances/one-1/start_script.log",
                "/var/lib/vmctx/instances/one-1",
                "/var/lib/vmctx/instances"
            ]
        );
        assert!(r.join("var/lib/vmctx").is_dir());
    }
}

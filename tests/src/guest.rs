//! A guest for apply tests: network and UTS namespaces and a scratch root.

use crate::*;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A guest for apply tests: its own network namespace (veth pairs with given MACs) and its own
/// UTS namespace (so `sethostname` never touches the test machine), plus a scratch root tree
/// with the files `useradd --prefix` needs. Everything is removed on drop.
pub struct Guest {
    pub netns: String,
    uts: PathBuf,
    pub root: tempfile::TempDir,
}

impl Guest {
    /// `None` (skipped) without root, outside CI.
    pub fn new(tag: &str) -> Option<Guest> {
        if !need("root (network and UTS namespaces)", is_root())
            || !need("iproute2", have_tool("ip"))
        {
            return None;
        }
        let netns = format!("vmctx-{tag}-{}", std::process::id());
        sh(&["ip", "netns", "add", &netns]);
        let root = tempfile::tempdir().unwrap();
        let uts = root.path().join(".uts");
        std::fs::write(&uts, "").unwrap();
        sh(&["unshare", &format!("--uts={}", uts.display()), "true"]);
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
        std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
        std::fs::write(etc.join("gshadow"), "root:*::\n").unwrap();
        if let Ok(defs) = std::fs::read("/etc/login.defs") {
            std::fs::write(etc.join("login.defs"), defs).unwrap();
        }
        std::fs::create_dir_all(root.path().join("root")).unwrap();
        Some(Guest { netns, uts, root })
    }

    /// A veth pair inside the namespace, both ends with the given MACs.
    pub fn veth(&self, a: (&str, &str), b: (&str, &str)) {
        self.ip(&[
            "link", "add", a.0, "address", a.1, "type", "veth", "peer", "name", b.0, "address", b.1,
        ]);
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "-n", self.netns.as_str()];
        full.extend_from_slice(args);
        sh(&full)
    }

    pub fn root_str(&self) -> &str {
        self.root.path().to_str().unwrap()
    }

    /// Runs vmctx inside the guest's namespaces with `--root` set to its scratch tree.
    pub fn vmctx(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// The command [`Guest::vmctx`] runs, to add to its environment first.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "nsenter"])
            .arg(format!("--uts={}", self.uts.display()))
            .arg(vmctx_bin())
            .args(args)
            .args(["--root", self.root_str()]);
        c
    }

    pub fn hostname(&self) -> String {
        let o = Command::new("nsenter")
            .arg(format!("--uts={}", self.uts.display()))
            .arg("hostname")
            .output()
            .unwrap();
        stdout(&o).trim().to_string()
    }

    pub fn file(&self, abs: &str) -> String {
        std::fs::read_to_string(self.root.path().join(abs.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{abs}: {e}"))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("umount").arg(&self.uts).status();
    }
}

/// vmctx's emulator serving a tree inside a [`Guest`]'s namespace; stopped on drop.
pub struct NsImds(std::process::Child);

impl Drop for NsImds {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guest {
    /// The emulator serving `tree` (a JSON tree file) on the namespace's own loopback, and the
    /// source (`ec2:http://ADDR`) that reads it.
    pub fn imds(&self, tree: &std::path::Path) -> (NsImds, String) {
        self.ip(&["link", "set", "lo", "up"]);
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(vmctx_bin())
            .args(["imds", "serve", "--listen", "127.0.0.1:0", "--tree"])
            .arg(tree)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = listening_addr(&mut child).expect("imds serve started");
        (NsImds(child), format!("ec2:http://{addr}"))
    }
}

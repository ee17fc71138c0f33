//! vmctx's state under `/var/lib/vmctx`: the current instance id, per-instance done markers,
//! the last applied plan, and what vmctx added to the network (so it removes exactly that).

use crate::apply::network::{Added, Owned};
use crate::context::MacAddr;
use crate::files::{self, Dir, NewFile, Root};
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// 0700, when group or others had any access to the folder (an older vmctx made them 0755).
fn private(dir: &Dir) -> io::Result<()> {
    if dir.metadata()?.permissions().mode() & 0o077 != 0 {
        dir.set_mode_owner(0o700, None)?;
    }
    Ok(())
}

pub const STATE_DIR: &str = "/var/lib/vmctx";

pub struct State {
    dir: PathBuf,
}

impl State {
    pub fn new(root: &Root) -> Self {
        State {
            dir: root.path(STATE_DIR),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn instance_id(&self) -> Option<String> {
        let s = std::fs::read_to_string(self.dir.join("instance-id")).ok()?;
        Some(s.trim().to_string()).filter(|s| !s.is_empty())
    }

    pub fn set_instance_id(&self, id: &str) -> io::Result<bool> {
        files::write_atomic(
            &self.dir.join("instance-id"),
            format!("{id}\n").as_bytes(),
            NewFile::mode(0o644),
        )
    }

    pub fn instance_dir(&self, id: &str) -> PathBuf {
        self.dir.join("instances").join(id)
    }

    /// Whether per-instance work `what` already ran for instance `id`.
    pub fn done(&self, id: &str, what: &str) -> bool {
        self.instance_dir(id).join(format!("{what}.done")).exists()
    }

    /// The instance's folder, made 0700 (and `instances` too): the scripts' logs in it may
    /// hold the secrets their environment carries.
    pub fn open_instance_dir(&self, id: &str) -> io::Result<Dir> {
        let instances = Dir::open(&self.dir.join("instances"), Some(0o700))?;
        private(&instances)?;
        let dir = instances.child(id, Some(0o700))?;
        private(&dir)?;
        Ok(dir)
    }

    pub fn mark_done(&self, id: &str, what: &str, detail: &str) -> io::Result<()> {
        let name = format!("{what}.done");
        self.open_instance_dir(id)?
            .write(
                name.as_ref(),
                format!("{detail}\n").as_bytes(),
                NewFile::mode(0o600),
            )
            .map(|_| ())
    }

    pub fn save_plan(&self, id: &str, json: &str) -> io::Result<bool> {
        self.open_instance_dir(id)?.write(
            "plan.json".as_ref(),
            json.as_bytes(),
            NewFile::mode(0o600),
        )
    }

    /// What vmctx added to each link (by MAC). Not per instance: a new instance must still be
    /// able to remove what the old one added.
    pub fn network(&self) -> BTreeMap<MacAddr, Added> {
        std::fs::read(self.dir.join("network.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save_network(&self, added: &BTreeMap<MacAddr, Added>) -> io::Result<bool> {
        self.save_json("network.json", added)
    }

    /// The bonds, VLANs and bridges vmctx configured (by name), and which it created.
    pub fn devices(&self) -> BTreeMap<String, Owned> {
        std::fs::read(self.dir.join("devices.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save_devices(&self, owned: &BTreeMap<String, Owned>) -> io::Result<bool> {
        self.save_json("devices.json", owned)
    }

    fn save_json(&self, name: &str, v: &impl serde::Serialize) -> io::Result<bool> {
        let json = serde_json::to_string_pretty(v).map_err(io::Error::other)?;
        files::write_atomic(&self.dir.join(name), json.as_bytes(), NewFile::mode(0o600))
    }
}

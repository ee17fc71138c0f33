//! vmctx's state under `/var/lib/vmctx`: the current instance id, per-instance done markers,
//! the last applied plan, and what vmctx added to the network (so it removes exactly that).

use crate::apply::files::{self, NewFile, Root};
use crate::apply::network::Added;
use crate::context::MacAddr;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

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

    pub fn mark_done(&self, id: &str, what: &str, detail: &str) -> io::Result<()> {
        let p = self.instance_dir(id).join(format!("{what}.done"));
        files::write_atomic(&p, format!("{detail}\n").as_bytes(), NewFile::mode(0o600)).map(|_| ())
    }

    pub fn save_plan(&self, id: &str, json: &str) -> io::Result<bool> {
        files::write_atomic(
            &self.instance_dir(id).join("plan.json"),
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
        let json = serde_json::to_string_pretty(added).map_err(io::Error::other)?;
        files::write_atomic(
            &self.dir.join("network.json"),
            json.as_bytes(),
            NewFile::mode(0o600),
        )
    }
}

//! Executes a plan on the system: one executor per kind of action, each idempotent, each
//! reporting `changed`, `unchanged` or `failed`. Apply never reads the context or its source:
//! what invalid values configure is not in the plan, the rest is done (and the run exits 1).

mod cloud_users;
pub mod growfs;
pub mod hostkeys;
mod identity;
pub mod network;
mod onegate;
mod packages;
pub mod schedule;
mod scripts;
pub mod selinux;
pub mod timezone;
mod users;
mod write_files;

use crate::context::HeldNic;
use crate::facts::Facts;
use crate::files::{self, Dir, NewFile, Root};
use crate::plan::{ManagerFile, Plan, MANAGED_DIRS};
use crate::settings::Settings;
use crate::state::State;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// Before the network: links, addresses, routes, DNS, hostname, users, keys.
    Local,
    /// After the network: start scripts and INIT_SCRIPTS.
    Final,
    /// Both, in order.
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Changed,
    Unchanged,
    Failed,
    /// Not done, and not an error: a tool it needs is missing, or there is nothing to act on.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Action {
    pub kind: &'static str,
    pub target: String,
    pub result: Outcome,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub instance_id: String,
    /// The instance id differs from the one vmctx last applied: per-instance work ran.
    pub new_instance: bool,
    pub changed: usize,
    pub failed: usize,
    pub dry_run: bool,
    pub actions: Vec<Action>,
    /// The plan's errors (`NAME: reason`): what they configure was not done; exit 1.
    pub errors: Vec<String>,
}

/// The executors' shared state: where files go, whether to act, the report so far, and what
/// was written (every write goes through the methods below, which record it for [`selinux`]).
pub struct Apply {
    pub root: Root,
    pub dry_run: bool,
    actions: Vec<Action>,
    written: files::Written,
}

impl Apply {
    fn push(
        &mut self,
        kind: &'static str,
        target: &str,
        result: Outcome,
        detail: impl Into<String>,
    ) {
        let detail = detail.into();
        if matches!(result, Outcome::Failed | Outcome::Skipped) {
            tracing::warn!("{kind} {target}: {detail}");
        }
        self.actions.push(Action {
            kind,
            target: target.to_string(),
            result,
            detail,
        });
    }
    pub fn changed(&mut self, kind: &'static str, target: &str, detail: impl Into<String>) {
        self.push(kind, target, Outcome::Changed, detail);
    }
    pub fn unchanged(&mut self, kind: &'static str, target: &str, detail: impl Into<String>) {
        self.push(kind, target, Outcome::Unchanged, detail);
    }
    pub fn failed(&mut self, kind: &'static str, target: &str, detail: impl std::fmt::Display) {
        self.push(kind, target, Outcome::Failed, detail.to_string());
    }
    fn count(&self, result: Outcome) -> usize {
        self.actions.iter().filter(|a| a.result == result).count()
    }

    /// Did an action after the first `before` change something?
    pub fn changed_since(&self, before: usize) -> bool {
        self.actions[before.min(self.actions.len())..]
            .iter()
            .any(|a| a.result == Outcome::Changed)
    }

    /// [`files::write_atomic`], recording the path when it changed.
    pub fn write(&mut self, path: &Path, content: &[u8], new: NewFile) -> std::io::Result<bool> {
        let changed = files::write_atomic(path, content, new)?;
        if changed {
            self.written.file(path);
        }
        Ok(changed)
    }

    /// [`Dir::write`] of `name` in an open folder, recording the path when it changed.
    pub fn write_at(
        &mut self,
        dir: &Dir,
        name: &str,
        content: &[u8],
        new: NewFile,
    ) -> std::io::Result<bool> {
        let changed = dir.write(name.as_ref(), content, new)?;
        if changed {
            self.written.file(&dir.path().join(name));
        }
        Ok(changed)
    }

    /// [`Apply::file_detail`] for `name` in an open folder.
    pub fn file_at(
        &mut self,
        kind: &'static str,
        (dir, name): (&Dir, &str),
        content: &[u8],
        new: NewFile,
        detail: &str,
    ) {
        let path = dir.path().join(name);
        let target = path.display().to_string();
        match dir.differs(name.as_ref(), content, new) {
            Ok(false) => self.unchanged(kind, &target, detail),
            Ok(true) if self.dry_run => {
                self.written.file(&path);
                self.changed(kind, &target, detail)
            }
            Ok(true) => match self.write_at(dir, name, content, new) {
                Ok(_) => self.changed(kind, &target, detail),
                Err(e) => self.failed(kind, &target, e),
            },
            Err(e) => self.failed(kind, &target, e),
        }
    }

    /// [`files::replace_symlink`], recording the link.
    pub fn symlink(&mut self, link: &Path, target: &str) -> std::io::Result<()> {
        files::replace_symlink(link, target)?;
        self.written.file(link);
        Ok(())
    }

    /// A file made by another program (a host key), to be relabelled with the rest.
    pub fn wrote(&mut self, path: &Path) {
        self.written.file(path);
    }

    /// A folder to relabel with everything in it (`~/.ssh`).
    pub fn wrote_tree(&mut self, dir: &Path) {
        self.written.tree(dir);
    }

    /// A warning: reported and logged, but apply goes on and exits 0.
    pub fn skipped(&mut self, kind: &'static str, target: &str, detail: impl Into<String>) {
        self.push(kind, target, Outcome::Skipped, detail);
    }

    /// Writes a whole file (atomically) when its content differs.
    pub fn file(&mut self, kind: &'static str, path: &Path, content: &[u8], new: NewFile) {
        self.file_detail(kind, path, content, new, "written");
    }

    pub fn file_detail(
        &mut self,
        kind: &'static str,
        path: &Path,
        content: &[u8],
        new: NewFile,
        detail: &str,
    ) {
        let target = path.display().to_string();
        match files::differs(path, content, new) {
            Ok(false) => self.unchanged(kind, &target, detail),
            Ok(true) if self.dry_run => {
                self.written.file(path);
                self.changed(kind, &target, detail)
            }
            Ok(true) => match self.write(path, content, new) {
                Ok(_) => self.changed(kind, &target, detail),
                Err(e) => self.failed(kind, &target, e),
            },
            Err(e) => self.failed(kind, &target, e),
        }
    }

    /// Sets vmctx's block in the file at `abs` (under the root); an empty body removes it.
    pub fn block(&mut self, kind: &'static str, abs: &str, body: &str, new: NewFile, top: bool) {
        let path = self.root.path(abs);
        let existing = match files::read_optional(&path) {
            Ok(e) => e,
            Err(e) => return self.failed(kind, abs, e),
        };
        if existing.is_none() && body.is_empty() {
            return;
        }
        let text = files::with_block(existing.as_deref().unwrap_or(""), body, top);
        self.file_detail(kind, &path, text.as_bytes(), new, "managed block");
    }

    /// Removes a file vmctx wrote, if it is there.
    pub fn remove(&mut self, kind: &'static str, path: &Path) {
        if !path.exists() {
            return;
        }
        let target = path.display().to_string();
        if self.dry_run {
            return self.changed(kind, &target, "removed");
        }
        match files::remove(path) {
            Ok(_) => self.changed(kind, &target, "removed"),
            Err(e) => self.failed(kind, &target, e),
        }
    }
}

/// Executes `plan` for `stage`, given what the system has (`facts`, as the plan was made) and the
/// environment's knobs (`settings`).
pub fn apply(
    plan: &Plan,
    facts: &Facts,
    root: &Path,
    stage: Stage,
    dry_run: bool,
    settings: &Settings,
) -> Report {
    let mut ap = Apply {
        root: Root::new(root),
        dry_run,
        actions: Vec::new(),
        written: files::Written::default(),
    };
    let state = State::new(&ap.root);
    let previous = state.instance_id();
    let new_instance = previous.as_deref() != Some(plan.instance_id.as_str());

    // Network sources (EC2, Nova's metadata service) are read after the network is up: their network, hostname, users
    // and keys are applied in the final stage.
    let from_network = plan.source.is_network();
    let identity_stage = if from_network {
        Stage::Final
    } else {
        Stage::Local
    };
    if matches!(stage, Stage::All) || stage == identity_stage {
        let (mut added, mut owned) = (state.network(), state.devices());
        network::apply(&mut ap, &plan.network, &mut added, &mut owned);
        if !dry_run {
            if let Err(e) = state.save_network(&added) {
                ap.failed("state", "network", e);
            }
            if let Err(e) = state.save_devices(&owned) {
                ap.failed("state", "devices", e);
            }
        }
        manager_files(&mut ap, &plan.network_files, &plan.network.left_alone);
        run_flags(&mut ap, plan);
        identity::hostname(&mut ap, plan.hostname.as_ref());
        identity::hosts(&mut ap, &plan.hosts);
        identity::dns(&mut ap, &plan.dns);
        timezone::apply(&mut ap, &plan.system);
        hostkeys::apply(
            &mut ap,
            plan.system.ssh_host_keys,
            new_instance,
            &state,
            &plan.instance_id,
            stage == Stage::Local,
        );
        // What the units after vmctx-local read when they start is in place (and labelled):
        // networkd and sshd go on while users are made and the disk grows (seconds of useradd
        // and resize2fs on a small VM).
        if stage == Stage::Local && !dry_run && crate::notify::expected() {
            selinux::relabel(&mut ap, &facts.selinux);
            crate::notify::ready("links, hostname and host keys applied; users next");
        }
        for u in &plan.users {
            users::apply(&mut ap, &u.account, &plan.ssh_keys);
        }
        cloud_users::apply(&mut ap, plan.cloud_config.as_ref());
        growfs::apply(&mut ap, &plan.system, &state, &plan.instance_id);
        selinux::relabel(&mut ap, &facts.selinux);
    }
    if new_instance {
        let detail = format!("was {}", previous.as_deref().unwrap_or("none"));
        if dry_run {
            ap.changed("instance", &plan.instance_id, detail);
        } else {
            match state.set_instance_id(&plan.instance_id) {
                Ok(_) => ap.changed("instance", &plan.instance_id, detail),
                Err(e) => ap.failed("instance", &plan.instance_id, e),
            }
        }
    }
    if matches!(stage, Stage::Final | Stage::All) {
        final_stage(&mut ap, plan, facts, &state, settings);
    }
    if !dry_run {
        if let Err(e) = state.save_plan(&plan.instance_id, &plan.to_json()) {
            ap.failed("state", "plan", e);
        }
    }
    let changed = ap.count(Outcome::Changed);
    let failed = ap.count(Outcome::Failed);
    Report {
        instance_id: plan.instance_id.clone(),
        new_instance,
        changed,
        failed,
        dry_run,
        actions: ap.actions,
        errors: plan.errors.clone(),
    }
}

/// After the network: timers, user-data's files, the scripts, then OneGate.
fn final_stage(ap: &mut Apply, plan: &Plan, facts: &Facts, state: &State, settings: &Settings) {
    schedule::update(ap, plan.update.as_ref(), facts.package_manager);
    let owner = plan.users.first().map_or("root", |u| u.name.as_str());
    schedule::sync(ap, plan.sync.as_ref(), owner);
    write_files::apply(ap, plan.cloud_config.as_ref(), &plan.instance_id, state);
    // Before the scripts: they may use what was just written.
    selinux::relabel(ap, &facts.selinux);
    scripts::run(ap, plan, facts, state);
    // Last: tell OneGate the VM is ready (REPORT_READY=YES), when nothing failed.
    let failed = ap.count(Outcome::Failed);
    onegate::report(ap, plan, state, failed, &settings.onegate);
}

/// Flags in `/run/vmctx` that gate the other units: `context` (the final stage has work: the
/// plan's `final_stage`, or the files of a schedule the context dropped are left to remove)
/// and `imds` (serve emulated EC2 metadata).
fn run_flags(ap: &mut Apply, plan: &Plan) {
    let flag = ap.root.path(crate::status::CONTEXT_FLAG);
    if plan.final_stage.is_empty() && !schedule::leftovers(&ap.root) {
        ap.remove("flag", &flag);
    } else {
        ap.file(
            "flag",
            &flag,
            format!("{}\n", plan.source).as_bytes(),
            NewFile::mode(0o644),
        );
    }
    let imds = ap.root.path("/run/vmctx/imds");
    // With cloud-init in the image, point its Ec2 datasource at the emulator (on a non-AWS DMI)
    // and leave the network to vmctx.
    let cloud_cfg = ap.root.path("/etc/cloud/cloud.cfg.d/90-vmctx-imds.cfg");
    match &plan.ec2 {
        Some(e) if e.metadata => {
            ap.file("flag", &imds, b"EC2_METADATA=YES\n", NewFile::mode(0o644));
            if plan.cloud_init_dropin {
                ap.file(
                    "cloud-init",
                    &cloud_cfg,
                    CLOUD_INIT_DROP_IN.as_bytes(),
                    NewFile::mode(0o644),
                );
                // This boot's choice was made by ds-identify before any unit ran (it saw the
                // CONTEXT CD and picked OpenNebula); its runtime config outranks the drop-in.
                let run_cfg = ap.root.path("/run/cloud-init/cloud.cfg");
                ap.file(
                    "cloud-init",
                    &run_cfg,
                    CLOUD_INIT_RUN_CFG.as_bytes(),
                    NewFile::mode(0o644),
                );
            }
        }
        _ => {
            ap.remove("flag", &imds);
            ap.remove("cloud-init", &cloud_cfg);
        }
    }
}

const CLOUD_INIT_RUN_CFG: &str = "datasource_list: [ Ec2, None ]\nnetwork: {config: disabled}\n";

const CLOUD_INIT_DROP_IN: &str = "\
# Written by vmctx: this imported AMI's EC2 metadata is vmctx's emulator (EC2_METADATA=YES).
datasource_list: [Ec2, None]
datasource:
  Ec2:
    strict_id: false
    metadata_urls: ['http://169.254.169.254']
network:
  config: disabled
";

/// Writes the manager files of the plan and removes vmctx's files that it no longer lists,
/// except those of a NIC the plan leaves alone.
fn manager_files(ap: &mut Apply, wanted: &[ManagerFile], left_alone: &[HeldNic]) {
    for f in wanted {
        let path = ap.root.path(&f.path);
        ap.file_detail(
            "network_file",
            &path,
            f.content.as_bytes(),
            NewFile::mode(f.mode),
            &f.purpose,
        );
    }
    for (dir, prefix) in MANAGED_DIRS {
        let Ok(entries) = std::fs::read_dir(ap.root.path(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let abs = format!("{dir}/{name}");
            if name.starts_with(prefix)
                && !wanted.iter().any(|f| f.path == abs)
                && !crate::plan::is_held_file(&name, left_alone)
            {
                ap.remove("network_file", &e.path());
            }
        }
    }
}

impl Report {
    /// The readable form: what changed and what failed (unchanged actions are counted only).
    pub fn summary(&self) -> String {
        let mut o = String::new();
        for a in self
            .actions
            .iter()
            .filter(|a| a.result != Outcome::Unchanged)
        {
            let verb = match (a.result, self.dry_run) {
                (Outcome::Failed, _) => "FAILED",
                (Outcome::Skipped, _) => "skipped",
                (_, true) => "would change",
                _ => "changed",
            };
            o.push_str(&format!(
                "{verb:<13} {:<9} {}: {}\n",
                a.kind, a.target, a.detail
            ));
        }
        for e in &self.errors {
            o.push_str(&format!("error: {e}\n"));
        }
        let unchanged = self.actions.len() - self.changed - self.failed;
        for e in &self.errors {
            o.push_str(&format!("error: {e}\n"));
        }
        o.push_str(&format!(
            "instance {}: {} changed, {} unchanged, {} failed{}\n",
            self.instance_id,
            self.changed,
            unchanged,
            self.failed,
            if self.dry_run {
                " (dry run: nothing was changed)"
            } else {
                ""
            }
        ));
        o
    }
}

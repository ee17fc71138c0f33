//! Context + system facts → the plan: what apply would change, printable as JSON. No I/O:
//! the facts (the machine's links) are passed in.

mod managers;
mod network;
pub mod online;
mod summary;

pub use managers::{ManagerFile, MANAGED_DIRS};
pub use network::{Ethernet, Netplan};

use crate::context::{
    Context, Ec2Settings, Hostname, Password, ScriptMode, SyncSettings, System, UpdateSchedule,
};
use crate::facts::Facts;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub instance_id: String,
    pub source: String,
    pub hostname: Option<Hostname>,
    pub network: Netplan,
    /// Files that keep the image's network manager off vmctx's NICs (or give it their DHCP).
    pub network_files: Vec<ManagerFile>,
    /// What holds `network-online.target` once vmctx configured its links.
    pub wait_online: Vec<online::WaitOnline>,
    /// Why the final stage runs; empty: `vmctx.service` is not started.
    pub final_stage: Vec<&'static str>,
    /// resolv.conf: the global resolvers and search list.
    pub dns: Dns,
    pub ssh_keys: Vec<String>,
    pub users: Vec<UserPlan>,
    pub scripts: Vec<ScriptPlan>,
    pub update: Option<UpdateSchedule>,
    pub sync: Option<SyncSettings>,
    pub ec2: Option<Ec2Settings>,
    /// Disks to grow, time zone, SSH host keys.
    pub system: System,
    /// SELinux is enabled: the files apply writes get the policy's labels back (restorecon).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub selinux_relabel: bool,
    pub warnings: Vec<String>,
    /// Values that were set but are invalid: what they configure is left out of the plan.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dns {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserPlan {
    pub name: String,
    pub sudo: bool,
    pub shell: String,
    /// `crypted`, `plain`, `lock` or none: how the password is set (never the password).
    pub password: Option<&'static str>,
    pub ssh_keys: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScriptPlan {
    /// `start_script`, `init_script` or `user_data`.
    pub kind: &'static str,
    /// The variable or file it comes from.
    pub from: String,
    /// `once` per instance or `always` (every boot).
    pub run: ScriptMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

pub fn build(ctx: &Context, facts: &Facts) -> Plan {
    let mut warnings = ctx.warnings.clone();
    let network = network::netplan(&ctx.network, &facts.links, &mut warnings);
    let mut network_files =
        managers::files(&ctx.network, &facts.links, &facts.managers, &mut warnings);
    let (wait_online, wait_file) = online::wait_online(&ctx.network, &facts.links, &facts.managers);
    network_files.extend(wait_file);
    let final_stage = online::final_work(ctx, crate::source::origin_is_network(&ctx.source));
    let configure = ctx.network.configure;
    let users = ctx
        .user
        .iter()
        .map(|u| UserPlan {
            name: u.name.clone(),
            sudo: u.sudo,
            shell: u.shell.clone(),
            password: match (&u.password, u.lock_password) {
                (Some(Password::Crypted(_)), _) => Some("crypted"),
                (Some(Password::Plain(_)), _) => Some("plain"),
                (None, true) => Some("lock"),
                (None, false) => None,
            },
            ssh_keys: ctx.ssh_keys.len(),
        })
        .collect();
    Plan {
        instance_id: ctx.instance_id.clone(),
        source: ctx.source.clone(),
        hostname: ctx.hostname.clone(),
        network,
        network_files,
        wait_online,
        final_stage,
        dns: Dns {
            nameservers: if configure {
                ctx.network.dns.clone()
            } else {
                Vec::new()
            },
            search: if configure {
                ctx.network.search.clone()
            } else {
                Vec::new()
            },
        },
        ssh_keys: ctx.ssh_keys.clone(),
        users,
        scripts: scripts(ctx),
        update: ctx.update.clone(),
        sync: ctx.sync.clone(),
        ec2: ctx.ec2.clone(),
        system: ctx.system.clone(),
        selinux_relabel: facts.selinux.enabled(),
        warnings,
        errors: ctx.errors.clone(),
    }
}

fn scripts(ctx: &Context) -> Vec<ScriptPlan> {
    let s = &ctx.scripts;
    let mut out = Vec::new();
    if let Some(u) = &s.user_data {
        out.push(ScriptPlan {
            kind: "user_data",
            from: "USER_DATA".into(),
            run: ScriptMode::Once,
            bytes: Some(u.bytes),
            timeout_secs: None,
            type_: Some(u.kind.clone()),
        });
    }
    if let Some(st) = &s.start {
        out.push(ScriptPlan {
            kind: "start_script",
            from: st.from.clone(),
            run: st.mode,
            bytes: Some(st.bytes),
            timeout_secs: Some(st.timeout_secs),
            type_: None,
        });
    }
    for name in &s.init {
        out.push(ScriptPlan {
            kind: "init_script",
            from: name.clone(),
            run: s.start.as_ref().map_or(ScriptMode::Once, |st| st.mode),
            bytes: None,
            timeout_secs: s.start.as_ref().map(|st| st.timeout_secs),
            type_: None,
        });
    }
    out
}

impl Plan {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serializes")
    }

    /// The short readable form.
    pub fn summary(&self) -> String {
        summary::render(self)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

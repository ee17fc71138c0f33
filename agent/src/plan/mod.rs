//! Context + system facts → the plan: what apply would change, printable as JSON. No I/O:
//! the facts (the machine's links) are passed in.

mod devices;
mod managers;
mod network;
pub mod online;
mod routes;
mod summary;
mod system;

#[cfg(test)]
pub(crate) use devices::tests as devices_tests;
pub use devices::{BondParameters, Device, Kind, BOND_MODES, HASH_POLICIES};
pub use managers::{is_held_file, ManagerFile, MANAGED_DIRS};
pub use network::{Ethernet, Netplan};
pub use routes::{Route, Rule, Scope, MAIN_TABLE};
pub use system::{OneGatePlan, Private};

use crate::context::{
    CloudConfig, Context, Ec2Settings, Hostname, Password, ScriptMode, SyncSettings, System,
    UpdateSchedule, User,
};
use crate::facts::Facts;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub instance_id: String,
    pub source: crate::context::Origin,
    pub hostname: Option<Hostname>,
    pub network: Netplan,
    /// Files that keep the image's network manager off vmctx's NICs (or give it their DHCP).
    pub network_files: Vec<ManagerFile>,
    /// vmctx's block in `/etc/hosts`, as written (empty: the block is removed).
    pub hosts: String,
    /// What holds `network-online.target` once vmctx configured its links.
    pub wait_online: Vec<online::WaitOnline>,
    /// Why the final stage runs; empty: `vmctx.service` is not started.
    pub final_stage: Vec<&'static str>,
    /// resolv.conf (or resolved's drop-in): the global resolvers and search list, the
    /// hostname's domain first.
    pub dns: Dns,
    pub ssh_keys: Vec<String>,
    pub users: Vec<UserPlan>,
    /// What runs in the final stage, in order: the start script, INIT_SCRIPTS, user-data's jobs.
    pub scripts: Vec<ScriptPlan>,
    /// User-data is left to the image's own cloud-init (EC2_METADATA=YES with `/etc/cloud`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub user_data_to_cloud_init: bool,
    /// `#cloud-config` work beside the scripts: its users, write_files, runcmd, packages.
    pub cloud_config: Option<CloudConfig>,
    pub update: Option<UpdateSchedule>,
    pub sync: Option<SyncSettings>,
    pub ec2: Option<Ec2Settings>,
    /// cloud-init's drop-ins that point it at the emulated metadata (EC2_METADATA=YES, and
    /// the image has `/etc/cloud`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cloud_init_dropin: bool,
    /// `REPORT_READY=YES`: tell OneGate when the final stage is done.
    pub onegate: Option<OneGatePlan>,
    /// Disks to grow, time zone (a zone this system has), SSH host keys.
    pub system: System,
    /// SELinux is enabled: the files apply writes get the policy's labels back (restorecon).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub selinux_relabel: bool,
    pub warnings: Vec<String>,
    /// Values that were set but are invalid: what they configure is left out of the plan.
    pub errors: Vec<String>,
    /// The scripts' environment: the context's variables. Never printed.
    #[serde(skip)]
    pub env: Private<Vec<(String, String)>>,
    /// The context's files as read, for the scripts' private copy (only when scripts run).
    #[serde(skip)]
    pub files: Private<Vec<(String, Vec<u8>)>>,
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
    /// The account as apply sets it, password included: never printed.
    #[serde(skip)]
    pub account: User,
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
    /// Its name for the done marker and the log (`start_script`, the file name, `runcmd`, …).
    #[serde(skip)]
    pub job: String,
    /// What runs (empty for the package job, made for the image's package manager).
    #[serde(skip)]
    pub body: Private<Vec<u8>>,
}

pub fn build(ctx: &Context, facts: &Facts) -> Plan {
    let mut warnings = ctx.warnings.clone();
    let mut errors = ctx.errors.clone();
    let net = ctx
        .network
        .with_nic_order(&facts.links.macs(), &mut warnings);
    let network = network::netplan(&net, facts, &mut warnings, &mut errors);
    let devices: Vec<&str> = (network.bonds.keys())
        .chain(network.bridges.keys())
        .chain(network.vlans.keys())
        .map(String::as_str)
        .collect();
    let mut network_files =
        managers::files(&net, &devices, &facts.links, &facts.managers, &mut warnings);
    let (wait_online, wait_file) = online::wait_online(&net, &facts.links, &facts.managers);
    network_files.extend(wait_file);
    let final_stage = online::final_work(ctx, ctx.source.is_network());
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
            account: u.clone(),
        })
        .collect();
    let system = system::system(ctx, facts, &mut errors);
    let (scripts, user_data_to_cloud_init) = system::scripts(ctx, facts);
    let files = if scripts.is_empty() {
        Vec::new()
    } else {
        ctx.files.clone()
    };
    Plan {
        instance_id: ctx.instance_id.clone(),
        source: ctx.source.clone(),
        hostname: ctx.hostname.clone(),
        network,
        network_files,
        hosts: system::hosts(ctx),
        wait_online,
        final_stage,
        dns: system::dns(ctx),
        ssh_keys: ctx.ssh_keys.clone(),
        users,
        scripts,
        user_data_to_cloud_init,
        cloud_config: ctx.cloud_config.clone(),
        update: ctx.update.clone(),
        sync: ctx.sync.clone(),
        ec2: ctx.ec2.clone(),
        cloud_init_dropin: facts.cloud_init && ctx.ec2.as_ref().is_some_and(|e| e.metadata),
        onegate: system::onegate(ctx),
        system,
        selinux_relabel: facts.selinux.enabled(),
        warnings,
        errors,
        env: Private(ctx.env.clone()),
        files: Private(files),
    }
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

//! The readable form of a plan (`vmctx plan` without `--json`).

use super::Plan;
use crate::context::{HostKeys, Schedule, ScriptMode, SyncMode};
use std::fmt::Write;

/// `default via 10.0.3.1 table 101 metric 10 from 10.0.3.5`, `10.0.3.0/24 scope link ...`.
fn route(r: &super::Route) -> String {
    let mut s = if r.to.prefix == 0 {
        "default".to_string()
    } else {
        r.to.to_string()
    };
    match r.via {
        Some(v) => {
            let _ = write!(s, " via {v}");
        }
        None => s.push_str(" scope link"),
    }
    if r.table != super::MAIN_TABLE {
        let _ = write!(s, " table {}", r.table);
    }
    if let Some(m) = r.metric {
        let _ = write!(s, " metric {m}");
    }
    if let Some(src) = r.src {
        let _ = write!(s, " from {src}");
    }
    s
}

/// One link's line (`head` then its addresses and settings), its routes and rules.
fn l3(o: &mut String, head: &str, e: &super::Ethernet) {
    let mut line = head.to_string();
    for a in &e.addresses {
        let _ = write!(line, "  {a}");
    }
    if e.dhcp4 {
        line.push_str("  dhcp4");
    }
    if e.dhcp6 {
        line.push_str("  dhcp6");
    } else if e.accept_ra == Some(true) {
        line.push_str("  slaac");
    }
    if let Some(m) = e.mtu {
        let _ = write!(line, "  mtu {m}");
    }
    if e.disable_ipv6 {
        line.push_str("  no ipv6");
    }
    let _ = writeln!(o, "{line}");
    for r in &e.routes {
        let _ = writeln!(o, "           route {}", route(r));
    }
    for r in &e.routing_policy {
        let _ = writeln!(
            o,
            "           rule  from {} table {} priority {}",
            r.from, r.table, r.priority
        );
    }
}

/// `#cloud-config` work: its users, files and commands (its scripts are listed as scripts).
fn cloud_config(o: &mut String, p: &Plan) {
    let Some(cc) = &p.cloud_config else { return };
    for u in &cc.users {
        let sudo = u
            .sudo
            .as_deref()
            .map(|s| format!(", sudo {s}"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "user      {} (user-data{sudo}), {} ssh key{}",
            u.name,
            u.ssh_authorized_keys.len(),
            if u.ssh_authorized_keys.len() == 1 {
                ""
            } else {
                "s"
            }
        );
    }
    for f in &cc.write_files {
        let how = if f.append { "appended" } else { "written" };
        let _ = writeln!(
            o,
            "file      {} ({} bytes {how}, {:04o} {}), once per instance",
            f.path, f.bytes, f.permissions, f.owner
        );
    }
    for c in &cc.runcmd {
        let _ = writeln!(o, "runcmd    {c}");
    }
}

pub(super) fn render(p: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "instance  {}   (from {})", p.instance_id, p.source);
    match &p.hostname {
        Some(h) => {
            let fqdn = h
                .domain
                .as_ref()
                .map(|d| format!(" (fqdn {}.{d})", h.name))
                .unwrap_or_default();
            let _ = writeln!(o, "hostname  {}{fqdn}   from {}", h.name, h.from);
        }
        None => o.push_str("hostname  unchanged\n"),
    }
    if !p.hosts.is_empty() {
        let _ = write!(o, "hosts     {}", p.hosts);
    }
    let net = &p.network;
    let devices = net.bonds.iter().chain(&net.bridges).chain(&net.vlans);
    if net.ethernets.is_empty() && devices.clone().next().is_none() {
        o.push_str("network   no interface to configure\n");
    } else {
        o.push_str("network\n");
        for (name, e) in &net.ethernets {
            l3(&mut o, &format!("  {name:<8} {}", e.match_.macaddress), e);
        }
        for (name, d) in devices {
            let mut head = match &d.kind {
                super::Kind::Bond {
                    interfaces,
                    parameters,
                } => format!(
                    "  {name:<8} bond {} of {}",
                    parameters.mode.as_deref().unwrap_or("balance-rr"),
                    interfaces.join(", ")
                ),
                super::Kind::Bridge { interfaces } => {
                    format!("  {name:<8} bridge of {}", interfaces.join(", "))
                }
                super::Kind::Vlan { id, link } => format!("  {name:<8} vlan {id} on {link}"),
            };
            if let Some(m) = d.macaddress {
                let _ = write!(head, "  mac {m}");
            }
            l3(&mut o, &head, &d.l3);
        }
    }
    for h in &p.network.left_alone {
        let mac = h.mac.map(|m| format!(" ({m})")).unwrap_or_default();
        let _ = writeln!(
            o,
            "  ETH{}{mac}  left as it is: an invalid value (see errors)",
            h.index
        );
    }
    for f in &p.network_files {
        let _ = writeln!(o, "  file     {}   ({})", f.path, f.purpose);
    }
    for w in &p.wait_online {
        let list = |l: &[String]| {
            if l.is_empty() {
                "no link".to_string()
            } else {
                l.join(" ")
            }
        };
        let _ = if w.skipped {
            writeln!(
                o,
                "online    {} skipped: nothing to wait for ({} vmctx's)",
                w.unit,
                list(&w.not_waited)
            )
        } else {
            writeln!(
                o,
                "online    {} waits for {} (DHCP), not for {} (vmctx's)",
                w.unit,
                list(&w.waits_for),
                list(&w.not_waited)
            )
        };
    }
    if !p.dns.nameservers.is_empty() || !p.dns.search.is_empty() {
        let ns: Vec<String> = p.dns.nameservers.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            o,
            "dns       {}{}",
            ns.join(" "),
            if p.dns.search.is_empty() {
                String::new()
            } else {
                format!("   search {}", p.dns.search.join(" "))
            }
        );
    }
    for u in &p.users {
        let _ = writeln!(
            o,
            "user      {} ({}{}, {}), {} ssh key{}",
            u.name,
            if u.sudo { "sudo, " } else { "" },
            u.shell,
            u.password
                .map_or("password unchanged".to_string(), |k| format!(
                    "password {k}"
                )),
            u.ssh_keys,
            if u.ssh_keys == 1 { "" } else { "s" }
        );
    }
    cloud_config(&mut o, p);
    for s in &p.scripts {
        let size = s.bytes.map(|b| format!(", {b} bytes")).unwrap_or_default();
        let run = if s.run == ScriptMode::Always {
            "every boot"
        } else {
            "once per instance"
        };
        let _ = writeln!(o, "script    {} {}{size}, {run}", s.kind, s.from);
    }
    if p.user_data_to_cloud_init {
        o.push_str("script    user-data left to the image's cloud-init (EC2_METADATA=YES)\n");
    }
    if let Some(g) = &p.onegate {
        let _ = writeln!(
            o,
            "onegate   READY=YES to {}/vm (VMID {}), once",
            g.endpoint, g.vmid
        );
    }
    if let Some(u) = &p.update {
        let what = match &u.schedule {
            Schedule::Cron(c) => format!("cron {c:?}"),
            Schedule::Calendar(c) => format!("calendar {c:?}"),
        };
        let cmd = u
            .command
            .as_deref()
            .unwrap_or("the package manager's upgrade");
        let _ = writeln!(o, "updates   {what}: {cmd}");
    }
    if let Some(s) = &p.sync {
        let arrow = match s.mode {
            SyncMode::Pull => "->",
            SyncMode::Push => "<-",
            SyncMode::Both => "<->",
        };
        let _ = writeln!(
            o,
            "sync      s3://{}/{} {arrow} {} every {}",
            s.bucket, s.prefix, s.dir, s.interval
        );
    }
    if let Some(e) = &p.ec2 {
        if e.metadata {
            let _ = writeln!(
                o,
                "ec2       emulated metadata for {} (tokens {})",
                e.instance_id.as_deref().unwrap_or(&p.instance_id),
                if e.tokens_required {
                    "required"
                } else {
                    "optional"
                }
            );
        }
    }
    let sys = &p.system;
    let mut grow: Vec<&str> = Vec::new();
    if sys.grow_rootfs {
        grow.push("/");
    }
    grow.extend(sys.grow_fs.iter().map(String::as_str));
    if !grow.is_empty() {
        let _ = writeln!(
            o,
            "disks     grow {} to the disk's size, once per instance and disk size",
            grow.join(" ")
        );
    }
    if let Some(tz) = &sys.timezone {
        let _ = writeln!(o, "timezone  {tz}");
    }
    let _ = writeln!(
        o,
        "host keys {}",
        match sys.ssh_host_keys {
            HostKeys::Regenerate => {
                "new SSH host keys on a new instance (ed25519, ECDSA before sshd; RSA after it)"
            }
            HostKeys::Keep => "the image's SSH host keys kept (SSH_HOST_KEYS=KEEP)",
        }
    );
    if p.final_stage.is_empty() {
        o.push_str("final     nothing to do: vmctx.service is not started\n");
    } else {
        let _ = writeln!(o, "final     {}", p.final_stage.join(", "));
    }
    if p.selinux_relabel {
        o.push_str("selinux   enabled: labels restored (restorecon) on the files apply writes\n");
    }
    for (title, list) in [("warning", &p.warnings), ("error", &p.errors)] {
        for w in list {
            let _ = writeln!(o, "{title}: {w}");
        }
    }
    o
}

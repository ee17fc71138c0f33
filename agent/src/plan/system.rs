//! Everything but the network, resolved for apply: the hosts and DNS blocks as written, the
//! zone checked against this system, the scripts in the order they run with their bodies,
//! OneGate's report with its token. Secrets are carried but never serialized.

use super::{Dns, ScriptPlan};
use crate::context::{Context, Method, ScriptMode, Secret, System};
use crate::facts::{Facts, Zone};
use serde::Serialize;
use std::net::IpAddr;

/// Carried in the plan for apply but never printed: serialization skips it (`#[serde(skip)]`
/// where it is used), and Debug shows only that something is there.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Private<T>(pub T);

impl<T> std::fmt::Debug for Private<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> std::ops::Deref for Private<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Timeout of user-data's jobs without `START_SCRIPT_TIMEOUT` (a package upgrade is slow).
const USER_DATA_TIMEOUT: u64 = 3600;

#[derive(Debug, Clone, Serialize)]
pub struct OneGatePlan {
    /// `PUT <endpoint>/vm`.
    pub endpoint: String,
    pub vmid: String,
    /// `ONEGATE_TOKEN` or the CD's `token.txt`, as read with the context: never printed.
    #[serde(skip)]
    pub token: Option<Secret>,
}

/// The context's system settings; a zone this system does not have is an error and left out.
pub(super) fn system(ctx: &Context, facts: &Facts, errors: &mut Vec<String>) -> System {
    let mut sys = ctx.system.clone();
    if let Zone::Missing(why) = &facts.timezone {
        if sys.timezone.take().is_some() {
            errors.push(format!("TIMEZONE: {why}"));
        }
    }
    sys
}

/// `/etc/hosts`: `<first static IPv4 address or 127.0.1.1> <fqdn> <name>`.
pub(super) fn hosts(ctx: &Context) -> String {
    let Some(h) = &ctx.hostname else {
        return String::new();
    };
    let ip = ctx
        .network
        .nics
        .iter()
        .filter(|n| n.method == Method::Static)
        .flat_map(|n| n.addresses.iter())
        .map(|a| a.addr)
        .find(IpAddr::is_ipv4)
        .map_or("127.0.1.1".to_string(), |a| a.to_string());
    match &h.domain {
        Some(d) => format!("{ip} {}.{d} {}\n", h.name, h.name),
        None => format!("{ip} {}\n", h.name),
    }
}

/// The resolvers and search list; the hostname's domain is searched first. None with
/// `NETWORK=NO`.
pub(super) fn dns(ctx: &Context) -> Dns {
    let net = &ctx.network;
    if !net.configure {
        return Dns {
            nameservers: Vec::new(),
            search: Vec::new(),
        };
    }
    let mut search = net.search.clone();
    if let Some(d) = ctx.hostname.as_ref().and_then(|h| h.domain.as_ref()) {
        if !search.contains(d) {
            search.insert(0, d.clone());
        }
    }
    Dns {
        nameservers: net.dns.clone(),
        search,
    }
}

pub(super) fn onegate(ctx: &Context) -> Option<OneGatePlan> {
    ctx.onegate.as_ref().map(|g| OneGatePlan {
        endpoint: g.endpoint.clone(),
        vmid: g.vmid.clone(),
        token: g.token.clone(),
    })
}

/// The final stage's jobs in order: the start script, INIT_SCRIPTS (with their files as read),
/// then user-data's (package update, runcmd, its scripts). Also whether user-data is left to
/// the image's cloud-init instead.
pub(super) fn scripts(ctx: &Context, facts: &Facts) -> (Vec<ScriptPlan>, bool) {
    let s = &ctx.scripts;
    let (mode, timeout) = s
        .start
        .as_ref()
        .map_or((ScriptMode::Once, 300), |st| (st.mode, st.timeout_secs));
    let mut out = Vec::new();
    if let Some(st) = &s.start {
        out.push(job(
            "start_script",
            &st.from,
            mode,
            timeout,
            "start_script",
            &st.body,
        ));
    }
    for name in &s.init {
        // The parser kept only names the context's files have.
        let Some((_, body)) = ctx.files.iter().find(|(n, _)| n == name) else {
            continue;
        };
        out.push(job("init_script", name, mode, timeout, name, body));
    }
    let Some(cc) = &ctx.cloud_config else {
        return (out, false);
    };
    let has_jobs = !cc.scripts.is_empty() || !cc.runcmd.is_empty() || cc.package_update;
    if ctx.ec2.as_ref().is_some_and(|e| e.metadata) && facts.cloud_init {
        return (out, has_jobs);
    }
    let timeout = s
        .start
        .as_ref()
        .map_or(USER_DATA_TIMEOUT, |st| st.timeout_secs);
    let once = ScriptMode::Once;
    if cc.package_update {
        let name = if cc.package_upgrade {
            "package-upgrade"
        } else {
            "package-update"
        };
        out.push(job("user_data", name, once, timeout, name, b""));
    }
    if !cc.runcmd.is_empty() {
        let mut body = b"#!/bin/sh\n".to_vec();
        for line in &cc.runcmd {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        out.push(job("user_data", "runcmd", once, timeout, "runcmd", &body));
    }
    for (i, sc) in cc.scripts.iter().enumerate() {
        // The name comes from a MIME header: keep it to a safe file name.
        let safe: String = sc
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let name = format!("user-data-{}-{}", i + 1, safe.trim_start_matches('.'));
        out.push(job("user_data", &sc.name, once, timeout, &name, &sc.body));
    }
    (out, false)
}

fn job(
    kind: &'static str,
    from: &str,
    run: ScriptMode,
    timeout: u64,
    name: &str,
    body: &[u8],
) -> ScriptPlan {
    ScriptPlan {
        kind,
        from: from.to_string(),
        run,
        bytes: (!body.is_empty()).then_some(body.len()),
        timeout_secs: Some(timeout),
        type_: (kind == "user_data" && body.starts_with(b"#!"))
            .then(|| crate::source::userdata::kind(body)),
        job: name.to_string(),
        body: Private(body.to_vec()),
    }
}

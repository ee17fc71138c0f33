//! Hostname (file and `sethostname`), vmctx's block in `/etc/hosts`, and DNS: a managed block in
//! resolv.conf, or a systemd-resolved drop-in when resolv.conf is resolved's link (B17).

use super::Apply;
use crate::context::Hostname;
use crate::files::NewFile;
use crate::plan::Dns;

pub fn hostname(ap: &mut Apply, h: Option<&Hostname>) {
    let Some(h) = h else { return };
    let path = ap.root.path("/etc/hostname");
    ap.file(
        "hostname",
        &path,
        format!("{}\n", h.name).as_bytes(),
        NewFile::mode(0o644),
    );

    // The live name of this UTS namespace (also under --root: tests give vmctx its own).
    let current = nix::unistd::gethostname()
        .ok()
        .and_then(|s| s.into_string().ok());
    if current.as_deref() == Some(h.name.as_str()) {
        ap.unchanged("hostname", &h.name, "set");
    } else if ap.dry_run {
        ap.changed(
            "hostname",
            &h.name,
            format!("sethostname (was {})", current.unwrap_or_default()),
        );
    } else {
        match nix::unistd::sethostname(&h.name) {
            Ok(()) => ap.changed(
                "hostname",
                &h.name,
                format!("sethostname (was {})", current.unwrap_or_default()),
            ),
            Err(e) => ap.failed("hostname", &h.name, format!("sethostname: {e}")),
        }
    }
}

/// vmctx's block in `/etc/hosts`, as planned (empty: removed).
pub fn hosts(ap: &mut Apply, body: &str) {
    ap.block("hosts", "/etc/hosts", body, NewFile::mode(0o644), false);
}

/// Where the resolvers go, decided by what `/etc/resolv.conf` is.
pub fn dns(ap: &mut Apply, dns: &Dns) {
    let search = &dns.search;
    if dns.nameservers.is_empty() && search.is_empty() {
        return;
    }
    let resolv = ap.root.path("/etc/resolv.conf");
    let link = std::fs::symlink_metadata(&resolv)
        .ok()
        .filter(|m| m.file_type().is_symlink());
    if link.is_some() {
        let target = std::fs::read_link(&resolv).unwrap_or_default();
        if target.to_string_lossy().contains("systemd/resolve") {
            // B17: systemd-resolved owns the link; tell resolved instead of replacing it.
            let servers: Vec<String> = dns.nameservers.iter().map(ToString::to_string).collect();
            let mut text =
                String::from("# Written by vmctx from the instance's context.\n[Resolve]\n");
            if !servers.is_empty() {
                text.push_str(&format!("DNS={}\n", servers.join(" ")));
            }
            if !search.is_empty() {
                text.push_str(&format!("Domains={}\n", search.join(" ")));
            }
            let path = ap.root.path("/etc/systemd/resolved.conf.d/90-vmctx.conf");
            ap.file("dns", &path, text.as_bytes(), NewFile::mode(0o644));
        } else {
            let t = target.display().to_string();
            ap.failed(
                "dns",
                "/etc/resolv.conf",
                format!("a link to {t} (not systemd-resolved): left alone"),
            );
        }
        return;
    }
    let mut body = String::new();
    if !search.is_empty() {
        body.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in &dns.nameservers {
        body.push_str(&format!("nameserver {s}\n"));
    }
    // At the top: the resolver uses the first three nameservers.
    ap.block("dns", "/etc/resolv.conf", &body, NewFile::mode(0o644), true);
}

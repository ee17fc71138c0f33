//! OpenNebula context variables → [`Context`]: where every variable is read.
//!
//! `network` holds the `ETHx_*` rules, `identity` the hostname, user and keys, `features` the
//! scripts, user-data and vmctx's own variables. Invalid values become errors naming the
//! variable: `plan` shows them beside everything else it could read, `apply` refuses to act
//! on a context that has any.

mod cd;
mod features;
mod identity;
mod network;
mod onegate;

pub use cd::{read_cd, read_cd_context, read_cd_files, CONTEXT_LABEL};

use super::context_sh::Vars;
use crate::cloud_init::instance::secret_var;
use crate::context::{Context, Origin, SyncSettings, UpdateSchedule};
use sha2::{Digest, Sha256};
use std::str::FromStr;

/// Builds the normalized context from parsed variables. `files` names the other files of the
/// context CD (for `INIT_SCRIPTS`' default `init.sh`); `source` says where it came from.
pub fn to_context(vars: &Vars, files: &[String], source: &Origin) -> Context {
    let mut r = Reader::new(vars);
    let network = network::network(&mut r);
    let hostname = identity::hostname(&mut r);
    let ssh_keys = identity::ssh_keys(&mut r);
    let user = identity::user(&mut r);
    let scripts = features::scripts(&mut r, files);
    let update = features::update(&mut r);
    let sync = features::sync(&mut r);
    let ec2 = features::ec2(&mut r);
    let onegate = onegate::onegate(&mut r, files);
    let system = features::system(&mut r);
    let instance_id = instance_id(&mut r, &network);
    Context {
        instance_id,
        source: source.clone(),
        hostname,
        network,
        ssh_keys,
        user,
        scripts,
        update,
        sync,
        ec2,
        onegate,
        system,
        cloud_config: None,
        warnings: r.warnings,
        errors: r.errors,
        files: Vec::new(),
        env: vars
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Without `ONEGATE_TOKEN`, OneGate's token is the CD's `token.txt` as read with the context
/// (trimmed); an empty one is a warning and readiness is not reported.
pub fn token_from_file(ctx: &mut Context) {
    let Some(gate) = ctx.onegate.as_mut() else {
        return;
    };
    if gate.token.is_some() {
        return;
    }
    let token = ctx
        .files
        .iter()
        .find(|(n, _)| n == "token.txt")
        .map(|(_, b)| String::from_utf8_lossy(b).trim().to_string())
        .filter(|t| !t.is_empty());
    match token {
        Some(t) => gate.token = Some(crate::context::Secret::new(t)),
        None => {
            ctx.onegate = None;
            ctx.warnings.push(
                "REPORT_READY=YES but token.txt on the context CD is empty: readiness is not \
                 reported"
                    .into(),
            );
        }
    }
}

/// vmctx's own settings given another way (the `vmctx:` key of a `#cloud-config`, under their
/// variable names): the same rules and messages as in a context. (update, sync, warnings, errors)
pub fn settings(
    vars: &Vars,
) -> (
    Option<UpdateSchedule>,
    Option<SyncSettings>,
    Vec<String>,
    Vec<String>,
) {
    let mut r = Reader::new(vars);
    let update = features::update(&mut r);
    let sync = features::sync(&mut r);
    (update, sync, r.warnings, r.errors)
}

/// `one-<VMID>`; without a VMID, a hash of the NICs' MACs (stable across reboots, different
/// between VMs) — never a constant such as cloud-init's `iid-dsopennebula`.
fn instance_id(r: &mut Reader, net: &crate::context::Network) -> String {
    if let Some(vmid) = r.get("VMID") {
        if !vmid.is_empty() && vmid.bytes().all(|b| b.is_ascii_digit()) {
            return format!("one-{vmid}");
        }
        r.error("VMID", "is not a number");
    }
    let mut macs: Vec<String> = net.nics.iter().map(|n| n.mac.to_string()).collect();
    let what = if macs.is_empty() {
        // No NICs either: the variables themselves are all there is to tell VMs apart. Not
        // the secret ones: a short hash of a few known values can be reversed offline.
        macs = r
            .vars
            .iter()
            .filter(|(k, _)| !secret_var(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        "the context's variables (secrets left out)"
    } else {
        macs.sort();
        "the NICs' MACs"
    };
    let digest = Sha256::digest(macs.join("\n").as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("one-mac-{hex}");
    r.warn(format!(
        "no VMID in the context: instance id {id} is a hash of {what}"
    ));
    id
}

/// Reads variables and collects what was wrong with them.
pub(crate) struct Reader<'a> {
    pub vars: &'a Vars,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

impl<'a> Reader<'a> {
    pub fn new(vars: &'a Vars) -> Self {
        Reader {
            vars,
            warnings: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The trimmed value, if present and non-blank (empty means unset everywhere: B3).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.vars.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The first of `names` that has a value, with its name.
    pub fn first(&self, names: &[&'static str]) -> Option<(&'static str, &'a str)> {
        names.iter().find_map(|n| self.get(n).map(|v| (*n, v)))
    }

    pub fn warn(&mut self, msg: impl Into<String>) {
        self.warnings.push(msg.into());
    }

    /// An invalid value: named by its variable and why, never quoted (it may be a secret).
    pub fn error(&mut self, name: &str, why: impl std::fmt::Display) {
        self.errors.push(format!("{name}: {why}"));
    }

    /// Parses `name` with `FromStr`; a bad value is an error and reads as unset.
    pub fn parse<T: FromStr>(&mut self, name: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.get(name)?;
        match v.parse() {
            Ok(x) => Some(x),
            Err(e) => {
                self.error(name, e);
                None
            }
        }
    }

    /// Parses with a function returning `Result<T, String>`.
    pub fn parse_with<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let v = self.get(name)?;
        match f(v) {
            Ok(x) => Some(x),
            Err(e) => {
                self.error(name, e);
                None
            }
        }
    }

    /// A YES/NO flag (also true/false, 1/0, case-insensitive); unset gives `default`.
    pub fn flag(&mut self, name: &str, default: bool) -> bool {
        self.parse_with(name, parse_flag).unwrap_or(default)
    }
}

pub(crate) fn parse_flag(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err("expected YES or NO".into()),
    }
}

#[cfg(test)]
pub(crate) fn ctx(text: &str) -> Context {
    let parsed = super::context_sh::parse(text.as_bytes());
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    to_context(&parsed.vars, &[], &"dir:test".parse().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_id_from_vmid() {
        assert_eq!(ctx("VMID='42'\n").instance_id, "one-42");
    }

    #[test]
    fn instance_id_without_vmid_is_a_mac_hash() {
        let a = ctx("ETH0_MAC='02:00:0a:00:00:01'\nETH0_IP='10.0.0.1'\n");
        let b = ctx("ETH0_MAC='02:00:0a:00:00:02'\nETH0_IP='10.0.0.2'\n");
        let a2 = ctx("ETH0_MAC='02:00:0A:00:00:01'\nETH0_IP='10.0.0.1'\nSET_HOSTNAME='x'\n");
        assert!(a.instance_id.starts_with("one-mac-"));
        assert_ne!(a.instance_id, b.instance_id);
        assert_eq!(a.instance_id, a2.instance_id, "same MACs, same instance");
        assert!(a.warnings.iter().any(|w| w.contains("no VMID")));
        let none1 = ctx("SET_HOSTNAME='a'\n");
        let none2 = ctx("SET_HOSTNAME='b'\n");
        assert_ne!(none1.instance_id, none2.instance_id, "never a constant");
    }

    /// The hash of the variables must not be a way to check guesses of a password offline.
    #[test]
    fn instance_id_hash_leaves_secrets_out() {
        let a = ctx("SET_HOSTNAME='a'\nPASSWORD='hunter2'\nONEGATE_TOKEN='t1'\n");
        let b = ctx("SET_HOSTNAME='a'\nPASSWORD='letmein'\nONEGATE_TOKEN='t2'\n");
        let plain = ctx("SET_HOSTNAME='a'\n");
        assert_eq!(a.instance_id, b.instance_id, "secrets are no input");
        assert_eq!(a.instance_id, plain.instance_id);
        assert!(a.warnings.iter().any(|w| w.contains("secrets left out")));
    }

    /// A malformed value may be a secret put in the wrong place: errors and warnings name
    /// the variable and the reason only.
    #[test]
    fn errors_name_the_variable_not_the_value() {
        let c = ctx(
            "VMID='1'\nETH0_MAC='hunter1'\nETH1_MAC='02:00:0a:00:00:01'\n\
                     ETH1_IP='hunter2'\nETH1_METHOD='hunter3'\nDNS='10.0.0.1 hunter4'\n\
                     USERNAME='Hunter 5'\nSTART_SCRIPT_BASE64='hunter6!'\n",
        );
        let all = format!("{:?} {:?}", c.errors, c.warnings);
        assert!(!all.contains("unter"), "{all}");
        for want in [
            "ETH0_MAC: not a MAC address",
            "ETH1_IP: invalid IPv4 address syntax",
            "DNS: entry 2: not an IP address",
        ] {
            assert!(c.errors.iter().any(|e| e == want), "{want} not in {all}");
        }
        assert!(
            c.errors.iter().any(|e| e.starts_with("USERNAME: ")),
            "{all}"
        );
        assert!(c
            .errors
            .iter()
            .any(|e| e.starts_with("START_SCRIPT_BASE64: ")));
        assert!(c
            .warnings
            .iter()
            .any(|w| w.starts_with("ETH1_METHOD is not")));
    }

    #[test]
    fn bad_vmid_is_an_error() {
        let c = ctx("VMID='4x'\n");
        assert_eq!(c.errors, ["VMID: is not a number"]);
    }

    #[test]
    fn flags() {
        for (v, want) in [
            ("YES", true),
            ("yes", true),
            ("NO", false),
            ("false", false),
        ] {
            assert_eq!(parse_flag(v), Ok(want));
        }
        assert!(parse_flag("maybe").is_err());
    }
}

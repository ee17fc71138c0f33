//! vmctx answering as `cloud-init` (the packages link `/usr/bin/cloud-init` to vmctx on images
//! without cloud-init), so image pipelines and provisioners that wait with
//! `cloud-init status --wait` or read `cloud-init query` keep working: `status`, `query` and
//! `clean` are answered from vmctx's own state; every other subcommand says that this is vmctx
//! and exits 1. Paths are taken under `--root DIR` (or `VMCTX_ROOT`), as in the rest of vmctx.

pub mod clean;
pub mod instance;
pub mod output;
pub mod query;
pub mod status;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The name the shim answers to (argv[0]'s file name).
pub const NAME: &str = "cloud-init";

/// Whether this process was started as `cloud-init` (through the link).
pub fn invoked_as_cloud_init() -> bool {
    std::env::args_os()
        .next()
        .is_some_and(|a| Path::new(&a).file_name().is_some_and(|n| n == NAME))
}

/// Runs the cloud-init command line `args` (argv[0] first); `env_root` is `VMCTX_ROOT`, the
/// root when `--root` is not given. Returns the exit code.
pub fn main(args: Vec<OsString>, env_root: Option<OsString>) -> u8 {
    let args: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (root, args) = take_root(args, env_root);
    let mut rest = args.iter().map(String::as_str);
    // cloud-init's global options come before the subcommand.
    let sub = loop {
        match rest.next() {
            None => {
                eprintln!("usage: {}", usage());
                return 1;
            }
            Some("-h" | "--help") => {
                println!("usage: {}\n\n{}", usage(), HELP);
                return 0;
            }
            Some("-v" | "--version") => {
                println!("{}", version());
                return 0;
            }
            Some("-d" | "--debug" | "--force" | "--all-stages") => continue,
            Some("-f" | "--file") => {
                rest.next();
            }
            Some(sub) => break sub,
        }
    };
    let rest: Vec<&str> = rest.collect();
    let parsed = match sub {
        "status" => parse(&rest, STATUS_OPTS).and_then(|o| status_args(&o)),
        "query" => parse(&rest, QUERY_OPTS).and_then(|o| query_args(&o)),
        "clean" => parse(&rest, CLEAN_OPTS).map(|o| clean_args(&o)),
        other => {
            eprintln!("{}", unsupported(other));
            return 1;
        }
    };
    match parsed {
        Ok(Parsed::Help) => {
            println!("usage: {NAME} {sub} [options]; see `vmctx --help` (vmctx standing in for cloud-init)");
            0
        }
        Ok(Parsed::Status(a)) => status::run(&root, a),
        Ok(Parsed::Query(a)) => query::run(&root, &a),
        Ok(Parsed::Clean(a)) => clean::run(&root, a),
        Err(msg) => {
            eprintln!("usage: {NAME} {sub} [-h] ...\n{NAME} {sub}: error: {msg}");
            2
        }
    }
}

const HELP: &str = "vmctx standing in for cloud-init: `status [--wait] [--long] [--format \
tabular|json|yaml]`, `query [--all] [--list-keys] [--format TEMPLATE] [VARNAME]` and `clean \
[--logs] [--machine-id] [--seed]` answer from vmctx's state; nothing else is available. \
See `vmctx --help`.";

fn usage() -> String {
    format!("{NAME} [-h] [--version] {{status,query,clean}} ...")
}

pub fn version() -> String {
    format!(
        "{NAME} vmctx {} (vmctx standing in for cloud-init; see vmctx --help)",
        env!("CARGO_PKG_VERSION")
    )
}

/// The one line for a subcommand vmctx does not offer.
pub fn unsupported(sub: &str) -> String {
    format!(
        "{NAME} {sub}: not available: this is vmctx standing in for cloud-init (only status, \
         query and clean are answered); see `vmctx --help`"
    )
}

/// cloud-init's log line on stderr: `2024-05-01 10:00:00,123 - query.py[ERROR]: …`.
pub fn log_error(file: &str, msg: &str) {
    let t = crate::status::rfc3339(std::time::SystemTime::now());
    let t = t
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
        .replacen('.', ",", 1);
    eprintln!("{t} - {file}[ERROR]: {msg}");
}

/// `--root DIR` (or `--root=DIR`) anywhere, else `env_root` (`VMCTX_ROOT`), else `/`; the other
/// arguments.
fn take_root(args: Vec<String>, env_root: Option<OsString>) -> (PathBuf, Vec<String>) {
    let mut root = env_root
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--root" {
            if let Some(dir) = it.next() {
                root = dir.into();
            }
        } else if let Some(dir) = a.strip_prefix("--root=") {
            root = dir.into();
        } else {
            rest.push(a);
        }
    }
    (root, rest)
}

/// An option: short letter, long name, whether it takes a value.
type Opt = (Option<char>, &'static str, bool);

const STATUS_OPTS: &[Opt] = &[
    (Some('w'), "wait", false),
    (Some('l'), "long", false),
    (None, "format", true),
];
const QUERY_OPTS: &[Opt] = &[
    (Some('a'), "all", false),
    (Some('l'), "list-keys", false),
    (Some('f'), "format", true),
    (Some('i'), "instance-data", true),
    (Some('d'), "debug", false),
];
const CLEAN_OPTS: &[Opt] = &[
    (Some('l'), "logs", false),
    (None, "machine-id", false),
    (Some('s'), "seed", false),
    (Some('r'), "reboot", false),
];

/// Options by long name (`help` for -h), with their values, and the positional arguments.
#[derive(Debug, Default)]
struct Opts {
    flags: Vec<(&'static str, Option<String>)>,
    positional: Vec<String>,
}

impl Opts {
    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == name)
    }
    fn value(&self, name: &str) -> Option<String> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.clone())
    }
}

/// argparse's rules: `--long[=value]`, `--long value`, grouped short flags (`-wl`), `-fVALUE`.
fn parse(args: &[&str], spec: &[Opt]) -> Result<Opts, String> {
    let mut out = Opts::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if a == "-h" || a == "--help" {
            out.flags.push(("help", None));
        } else if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let opt = spec
                .iter()
                .find(|o| o.1 == name)
                .ok_or_else(|| format!("unrecognized arguments: {a}"))?;
            let value = match (opt.2, inline) {
                (false, None) => None,
                (false, Some(_)) => {
                    return Err(format!("argument --{name}: ignored explicit argument"))
                }
                (true, Some(v)) => Some(v),
                (true, None) => {
                    i += 1;
                    Some(
                        args.get(i - 1)
                            .map(|s| s.to_string())
                            .ok_or_else(|| format!("argument --{name}: expected one argument"))?,
                    )
                }
            };
            out.flags.push((opt.1, value));
        } else if a.len() > 1 && a.starts_with('-') {
            let letters: Vec<char> = a[1..].chars().collect();
            for (j, c) in letters.iter().enumerate() {
                let opt = spec
                    .iter()
                    .find(|o| o.0 == Some(*c))
                    .ok_or_else(|| format!("unrecognized arguments: {a}"))?;
                if !opt.2 {
                    out.flags.push((opt.1, None));
                    continue;
                }
                let attached: String = letters[j + 1..].iter().collect();
                let value = if attached.is_empty() {
                    i += 1;
                    args.get(i - 1)
                        .map(|s| s.to_string())
                        .ok_or_else(|| format!("argument -{c}: expected one argument"))?
                } else {
                    attached
                };
                out.flags.push((opt.1, Some(value)));
                break;
            }
        } else {
            out.positional.push(a.to_string());
        }
    }
    Ok(out)
}

enum Parsed {
    Help,
    Status(status::Args),
    Query(query::Args),
    Clean(clean::Args),
}

fn status_args(o: &Opts) -> Result<Parsed, String> {
    if o.has("help") {
        return Ok(Parsed::Help);
    }
    if let Some(p) = o.positional.first() {
        return Err(format!("unrecognized arguments: {p}"));
    }
    let format = match o.value("format").as_deref() {
        None | Some("tabular") => status::Format::Tabular,
        Some("json") => status::Format::Json,
        Some("yaml") => status::Format::Yaml,
        Some(other) => {
            return Err(format!(
            "argument --format: invalid choice: '{other}' (choose from 'json', 'tabular', 'yaml')"
        ))
        }
    };
    Ok(Parsed::Status(status::Args {
        wait: o.has("wait"),
        long: o.has("long"),
        format,
    }))
}

fn query_args(o: &Opts) -> Result<Parsed, String> {
    if o.has("help") {
        return Ok(Parsed::Help);
    }
    if o.positional.len() > 1 {
        return Err(format!(
            "unrecognized arguments: {}",
            o.positional[1..].join(" ")
        ));
    }
    Ok(Parsed::Query(query::Args {
        all: o.has("all"),
        list_keys: o.has("list-keys"),
        format: o.value("format"),
        varname: o.positional.first().cloned(),
        instance_data: o.value("instance-data"),
    }))
}

fn clean_args(o: &Opts) -> Parsed {
    if o.has("help") {
        return Parsed::Help;
    }
    Parsed::Clean(clean::Args {
        logs: o.has("logs"),
        machine_id: o.has("machine-id"),
        seed: o.has("seed"),
        reboot: o.has("reboot"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argparse_forms() {
        let o = parse(&["-wl", "--format=json"], STATUS_OPTS).unwrap();
        assert!(o.has("wait") && o.has("long"));
        assert_eq!(o.value("format").as_deref(), Some("json"));
        let o = parse(&["-f", "{{ v1.region }}", "-a", "v1.x"], QUERY_OPTS).unwrap();
        assert_eq!(o.value("format").as_deref(), Some("{{ v1.region }}"));
        assert_eq!(o.positional, ["v1.x"]);
        assert!(parse(&["--bogus"], STATUS_OPTS).is_err());
        assert!(parse(&["--format"], STATUS_OPTS).is_err());
        assert!(matches!(
            status_args(&parse(&["--format", "xml"], STATUS_OPTS).unwrap()),
            Err(e) if e.contains("invalid choice: 'xml'")
        ));
        let (root, rest) = take_root(vec!["status".into(), "--root=/tmp/r".into()], None);
        assert_eq!(
            (root, rest),
            (PathBuf::from("/tmp/r"), vec!["status".into()])
        );
    }

    #[test]
    fn other_subcommands_name_vmctx() {
        for sub in [
            "init", "modules", "single", "devel", "analyze", "schema", "bogus",
        ] {
            assert_eq!(main(vec!["cloud-init".into(), sub.into()], None), 1);
            let line = unsupported(sub);
            assert!(
                line.contains("vmctx") && line.contains("vmctx --help"),
                "{line}"
            );
            assert!(!line.contains('\n'));
        }
        assert!(version().contains(env!("CARGO_PKG_VERSION")) && version().contains("vmctx"));
    }
}

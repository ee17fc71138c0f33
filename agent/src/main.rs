//! The `vmctx` command line: parse, call the library, print, map errors to exit codes
//! (0 done; 1 failed; 2 usage).

mod assets;
mod cli;

use clap::Parser;
use cli::{Cli, Command, ImdsOp, IsoOp};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use vmctx::imds_serve::host_rules::{self, Rules};
use vmctx::settings::{Imds, Settings};
use vmctx::source::iso9660::IsoImage;
use vmctx::source::{self, Source};
use vmctx::{derive, facts, plan};

/// Largest file `vmctx iso cat` prints.
const MAX_CAT: u64 = 64 << 20;

fn main() -> ExitCode {
    // Started through the `cloud-init` link: answer as cloud-init does.
    if vmctx::cloud_init::invoked_as_cloud_init() {
        return ExitCode::from(vmctx::cloud_init::main(
            std::env::args_os().collect(),
            std::env::var_os("VMCTX_ROOT"),
        ));
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("vmctx: {msg}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let root = cli.root.as_path();
    // The environment's knobs, read here only: the library is handed them.
    let settings = Settings::from_lookup(|k| std::env::var(k).ok());
    match cli.command {
        Command::Detect { json } => detect(root, json, &settings),
        Command::Show { source, json } => show(root, &source, json, &settings),
        Command::Plan {
            source,
            links_file,
            json,
        } => plan(root, &source, links_file.as_deref(), json, &settings),
        Command::Apply {
            source,
            stage,
            dry_run,
            json,
            wait,
        } => apply(root, source, stage, dry_run, json, wait, &settings),
        Command::Reconfigure {
            source,
            settle_ms,
            json,
        } => reconfigure(
            root,
            &source,
            Duration::from_millis(settle_ms),
            json,
            &settings,
        ),
        Command::Status {
            wait,
            timeout,
            json,
        } => status(root, wait, timeout, json),
        Command::Clean {
            logs,
            host_keys,
            machine_id,
            dry_run,
            json,
        } => {
            let opts = vmctx::clean::Options {
                logs,
                host_keys,
                machine_id,
                dry_run,
            };
            clean(root, opts, json)
        }
        Command::Hostkeys => {
            // sshd (and so this) starts while the local stage still makes users: wait until it
            // is done, but do not hold the final stage up during the seconds of RSA.
            drop(vmctx::status::lock(root));
            let report = vmctx::apply::hostkeys::finish_slow(root);
            print!("{}", report.summary());
            Ok(if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Mac2ip {
            mac,
            mac_prefix,
            ipv6_prefix,
        } => {
            let ip = derive::mac_to_ipv4(mac, mac_prefix)?;
            println!("{ip}");
            if let Some(p6) = ipv6_prefix {
                println!("{}", derive::mac_to_ipv6(mac, p6));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Iso { op } => iso(op),
        Command::GenerateAssets { out } => {
            for f in assets::generate(&out)? {
                println!("{}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Imds { op } => imds(op, root, &settings.imds),
        Command::ImdsBuildVm { path } => {
            vmctx::imds_serve::build_vm_child(&path)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(a) => sync(root, a),
    }
}

/// 0 when `ok`, else 1.
fn code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `value` as pretty JSON with `--json`, else the text `summary` makes.
fn print_either<T: serde::Serialize>(
    json: bool,
    value: &T,
    summary: impl FnOnce() -> String,
) -> Result<(), String> {
    if json {
        let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
        println!("{text}");
    } else {
        print!("{}", summary());
    }
    Ok(())
}

fn show(root: &Path, source: &Source, json: bool, settings: &Settings) -> Result<ExitCode, String> {
    let ctx = source::load(source, root, &settings.imds).map_err(|e| e.to_string())?;
    let out = if json {
        serde_json::to_string(&ctx)
    } else {
        serde_json::to_string_pretty(&ctx)
    };
    println!("{}", out.map_err(|e| e.to_string())?);
    Ok(exit_for(&ctx.errors))
}

fn plan(
    root: &Path,
    source: &Source,
    links_file: Option<&Path>,
    json: bool,
    settings: &Settings,
) -> Result<ExitCode, String> {
    let ctx = source::load(source, root, &settings.imds).map_err(|e| e.to_string())?;
    let links = match links_file {
        Some(f) => facts::read_links_file(f),
        None => facts::live_links(),
    }
    .map_err(|e| e.to_string())?;
    let mut facts = facts::Facts::gather(root, links, &ctx);
    // Another machine's links (--links-file): its IPv6 is taken to be on.
    facts.ipv6_disabled &= links_file.is_none();
    let plan = plan::build(&ctx, &facts);
    if json {
        println!("{}", plan.to_json());
    } else {
        print!("{}", plan.summary());
    }
    Ok(exit_for(&plan.errors))
}

/// One stage of `vmctx apply`, recorded in `/run/vmctx/status.json` unless a dry run.
fn apply(
    root: &Path,
    source: Source,
    stage: vmctx::apply::Stage,
    dry_run: bool,
    json: bool,
    wait: u64,
    settings: &Settings,
) -> Result<ExitCode, String> {
    let name = match stage {
        vmctx::apply::Stage::Local => "local",
        vmctx::apply::Stage::Final => "final",
        vmctx::apply::Stage::All => "all",
    };
    // A dry run changes nothing, so it neither waits for nor records a stage.
    let _lock = (!dry_run).then(|| vmctx::status::lock(root));
    let rec = (!dry_run).then(|| vmctx::status::Recorder::begin(root, name));
    let (result, end) =
        vmctx::stage::apply_stage(root, source, stage, dry_run, json, wait, settings);
    if let Some(rec) = rec {
        rec.finish(end);
    }
    // vmctx-local.service is Type=notify: it is ready when done, if it did not say so before
    // (no context, a context read later, nothing readable).
    vmctx::notify::ready(&format!("{name} stage done"));
    result
}

fn clean(root: &Path, opts: vmctx::clean::Options, json: bool) -> Result<ExitCode, String> {
    let _lock = (!opts.dry_run).then(|| vmctx::status::lock(root));
    let report = vmctx::clean::clean(root, opts);
    print_either(json, &report, || report.summary())?;
    Ok(code(report.errors.is_empty()))
}

fn reconfigure(
    root: &Path,
    source: &Source,
    settle: Duration,
    json: bool,
    settings: &Settings,
) -> Result<ExitCode, String> {
    use vmctx::status::StageEnd;
    let _lock = vmctx::status::lock(root);
    let rec = vmctx::status::Recorder::begin(root, "reconfigure");
    let r = match vmctx::reconfigure::run(source, root, settle, settings) {
        Ok(r) => r,
        Err(e) => {
            rec.finish(StageEnd::error(e.clone()));
            return Err(e);
        }
    };
    let mut end = match r.rounds.last() {
        Some(last) => StageEnd::from_report(&last.report, r.source.as_deref().unwrap_or("")),
        None => StageEnd {
            no_context: true,
            ..Default::default()
        },
    };
    end.changed = r.changed();
    rec.finish(end);
    print_either(json, &r, || r.summary())?;
    Ok(code(r.failed() == 0))
}

fn status(root: &Path, wait: bool, timeout: Option<u64>, json: bool) -> Result<ExitCode, String> {
    use vmctx::status;
    let (o, st) = if wait {
        status::wait(root, timeout.map(Duration::from_secs))
    } else {
        let mut st = status::read(root);
        (status::overall(root, &mut st), st)
    };
    print_either(json, &status::to_json(o, &st), || status::summary(o, &st))?;
    Ok(ExitCode::from(o.exit_code()))
}

fn sync(root: &Path, a: cli::SyncArgs) -> Result<ExitCode, String> {
    let flags = vmctx::sync::config::Flags {
        config: a.config,
        dir: a.dir,
        bucket: a.bucket,
        prefix: a.prefix,
        endpoint: a.endpoint,
        region: a.region,
        ca_file: a.ca_file,
        mode: a.mode,
        interval: a.interval,
        state_dir: a.state_dir,
        max_delete: a.max_delete,
        excludes: a.exclude,
        jobs: a.jobs,
    };
    // The sync's credentials may come from the environment (AWS_*), read here.
    let env = std::env::vars().collect();
    let in_step = vmctx::sync::command::run(flags, root, &env, a.once, a.json)?;
    Ok(code(in_step))
}

fn imds(op: ImdsOp, root: &Path, imds_settings: &Imds) -> Result<ExitCode, String> {
    use vmctx::imds_serve::{self, Mode, ServeOptions};
    match op {
        ImdsOp::Serve {
            tree,
            listen,
            guest,
            host_map,
            device,
            status_socket,
            require_token,
            hop_limit,
        } => {
            let mode = match (guest, host_map) {
                (true, _) => Mode::Guest,
                (false, Some(from)) => Mode::HostMap(from),
                (false, None) => Mode::Plain,
            };
            imds_serve::serve(ServeOptions {
                tree: tree.from(),
                root: root.to_path_buf(),
                mode,
                listen,
                require_token,
                hop_limit,
                imds: imds_settings.clone(),
                host: imds_serve::HostOptions {
                    device,
                    status_socket,
                },
            })
            .map_err(|e| e.to_string())?;
        }
        ImdsOp::HostRules {
            bridge,
            l2,
            ports,
            to,
            apply,
            remove,
        } => {
            let sys = root.join("sys");
            return host_rules(Rules::new(&sys, bridge, l2, ports, to), apply, remove);
        }
        ImdsOp::HostStatus { socket, json } => {
            let doc = imds_serve::host_status::ask(&socket)?;
            if json {
                println!("{doc:#}");
            } else {
                for line in imds_serve::host_status::lines(&doc) {
                    println!("{line}");
                }
            }
        }
        ImdsOp::Tree { tree } => {
            let t = imds_serve::load_tree(&tree.from(), root, imds_settings)
                .map_err(|e| e.to_string())?;
            let mut value = t.to_json();
            imds_serve::redact(&mut value);
            let json = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
            println!("{json}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vmctx imds host-rules`: print, apply or remove vmctx's nftables tables.
fn host_rules(
    rules: Result<Rules, host_rules::RulesError>,
    apply: bool,
    remove: bool,
) -> Result<ExitCode, String> {
    if remove {
        let had = host_rules::remove().map_err(|e| e.to_string())?;
        println!("{}", if had { "removed" } else { "nothing to remove" });
        return Ok(ExitCode::SUCCESS);
    }
    let rules = rules.map_err(|e| e.to_string())?;
    if apply {
        let changed = host_rules::apply(&rules).map_err(|e| e.to_string())?;
        println!("{}", if changed { "applied" } else { "unchanged" });
    } else {
        print!("{}", rules.script());
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit 1 when some values were invalid (the rest was still planned).
fn exit_for(errors: &[String]) -> ExitCode {
    code(errors.is_empty())
}

fn detect(root: &Path, json: bool, settings: &Settings) -> Result<ExitCode, String> {
    let url = source::detect::probe_url(root, &settings.imds);
    let d = source::detect::decide(root, url.as_deref());
    if json {
        println!("{}", serde_json::to_string(&d).map_err(|e| e.to_string())?);
    } else {
        let found = d.source.as_ref().map(ToString::to_string);
        println!("{}", found.as_deref().unwrap_or("none"));
        for p in d.probes.iter().chain(&d.evidence) {
            println!("  {}: {}", p.device, p.found);
        }
    }
    match d.source {
        Some(_) => Ok(ExitCode::SUCCESS),
        None if json => Ok(ExitCode::from(1)),
        None => Err(d.summary),
    }
}

fn iso(op: IsoOp) -> Result<ExitCode, String> {
    let (image, path) = match &op {
        IsoOp::Ls { image, path } => (image, path.clone().unwrap_or_else(|| "/".into())),
        IsoOp::Cat { image, path } => (image, path.clone()),
    };
    let fail = |e: source::iso9660::IsoError| format!("{}: {e}", image.display());
    let mut iso = IsoImage::open(image).map_err(fail)?;
    match op {
        IsoOp::Ls { .. } => {
            let entries = iso.list(&path).map_err(fail)?;
            println!("volume {:?}", iso.volume_id());
            for e in entries {
                let mode = e
                    .mode
                    .map(|m| format!("{:04o}", m & 0o7777))
                    .unwrap_or_else(|| "----".into());
                let kind = if e.is_dir { 'd' } else { '-' };
                println!("{kind} {mode} {:>10} {}", e.size, e.name);
            }
        }
        IsoOp::Cat { .. } => {
            let bytes = iso.read_file(&path, MAX_CAT).map_err(fail)?;
            std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

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
use vmctx::source;
use vmctx::source::iso9660::IsoImage;
use vmctx::{derive, facts, plan};

/// Largest file `vmctx iso cat` prints.
const MAX_CAT: u64 = 64 << 20;

fn main() -> ExitCode {
    // Started through the `cloud-init` link: answer as cloud-init does.
    if vmctx::cloud_init::invoked_as_cloud_init() {
        return ExitCode::from(vmctx::cloud_init::main(std::env::args_os().collect()));
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
    match cli.command {
        Command::Detect { json } => detect(root, json),
        Command::Show { source, json } => {
            let ctx = source::load(&source, root).map_err(|e| e.to_string())?;
            let out = if json {
                serde_json::to_string(&ctx)
            } else {
                serde_json::to_string_pretty(&ctx)
            };
            println!("{}", out.map_err(|e| e.to_string())?);
            Ok(exit_for(&ctx.errors))
        }
        Command::Plan {
            source,
            links_file,
            json,
        } => {
            let ctx = source::load(&source, root).map_err(|e| e.to_string())?;
            let links = match links_file {
                Some(f) => facts::read_links_file(&f),
                None => facts::live_links(),
            }
            .map_err(|e| e.to_string())?;
            let facts = facts::Facts {
                links,
                managers: facts::Managers::detect(root),
                selinux: vmctx::apply::selinux::Status::read(root),
            };
            let plan = plan::build(&ctx, &facts);
            if json {
                println!("{}", plan.to_json());
            } else {
                print!("{}", plan.summary());
            }
            Ok(exit_for(&plan.errors))
        }
        Command::Apply {
            source,
            stage,
            dry_run,
            json,
            wait,
        } => {
            let name = match stage {
                vmctx::apply::Stage::Local => "local",
                vmctx::apply::Stage::Final => "final",
                vmctx::apply::Stage::All => "all",
            };
            // A dry run changes nothing, so it neither waits for nor records a stage.
            let _lock = (!dry_run).then(|| vmctx::status::lock(root));
            let rec = (!dry_run).then(|| vmctx::status::Recorder::begin(root, name));
            let (result, end) = vmctx::stage::apply_stage(root, source, stage, dry_run, json, wait);
            if let Some(rec) = rec {
                rec.finish(end);
            }
            result
        }
        Command::Reconfigure {
            source,
            settle_ms,
            json,
        } => {
            let _lock = vmctx::status::lock(root);
            let rec = vmctx::status::Recorder::begin(root, "reconfigure");
            let settle = Duration::from_millis(settle_ms);
            match vmctx::reconfigure::run(&source, root, settle) {
                Ok(r) => {
                    let mut end = match r.rounds.last() {
                        Some(last) => vmctx::status::StageEnd::from_report(
                            &last.report,
                            r.source.as_deref().unwrap_or(""),
                        ),
                        None => vmctx::status::StageEnd {
                            no_context: true,
                            ..Default::default()
                        },
                    };
                    end.changed = r.changed();
                    rec.finish(end);
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
                        );
                    } else {
                        print!("{}", r.summary());
                    }
                    Ok(if r.failed() == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    })
                }
                Err(e) => {
                    rec.finish(vmctx::status::StageEnd::error(e.clone()));
                    Err(e)
                }
            }
        }
        Command::Status {
            wait,
            timeout,
            json,
        } => {
            use vmctx::status;
            let (o, st) = if wait {
                status::wait(root, timeout.map(Duration::from_secs))
            } else {
                let mut st = status::read(root);
                (status::overall(root, &mut st), st)
            };
            if json {
                let v = status::to_json(o, &st);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", status::summary(o, &st));
            }
            Ok(ExitCode::from(o.exit_code()))
        }
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
            let _lock = (!dry_run).then(|| vmctx::status::lock(root));
            let report = vmctx::clean::clean(root, opts);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", report.summary());
            }
            Ok(if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Hostkeys => {
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
        Command::Imds { op } => imds(op, root),
        Command::ImdsBuildVm { path } => {
            vmctx::imds_serve::build_vm_child(&path)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(a) => {
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
            let in_step = vmctx::sync::command::run(flags, root, a.once, a.json)?;
            Ok(if in_step {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn imds(op: ImdsOp, root: &Path) -> Result<ExitCode, String> {
    use vmctx::imds_serve::{self, Mode, ServeOptions};
    match op {
        ImdsOp::Serve {
            tree,
            listen,
            guest,
            host_map,
            require_token,
            hop_limit,
        } => {
            let mode = match (guest, host_map) {
                (true, _) => Mode::Guest,
                (false, Some(dir)) => Mode::HostMap(dir),
                (false, None) => Mode::Plain,
            };
            imds_serve::serve(ServeOptions {
                tree: tree.from(),
                root: root.to_path_buf(),
                mode,
                listen,
                require_token,
                hop_limit,
            })
            .map_err(|e| e.to_string())?;
        }
        ImdsOp::Tree { tree } => {
            let t = imds_serve::load_tree(&tree.from(), root).map_err(|e| e.to_string())?;
            let mut value = t.to_json();
            imds_serve::redact(&mut value);
            let json = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
            println!("{json}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit 1 when some values were invalid (the rest was still planned).
fn exit_for(errors: &[String]) -> ExitCode {
    if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn detect(root: &Path, json: bool) -> Result<ExitCode, String> {
    let url = source::detect::probe_url(root);
    let d = source::detect::decide(root, url.as_deref());
    if json {
        println!("{}", serde_json::to_string(&d).map_err(|e| e.to_string())?);
    } else {
        println!("{}", d.source.as_deref().unwrap_or("none"));
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

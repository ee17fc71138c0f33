//! The `vmctx` command line: parse, call the library, print, map errors to exit codes
//! (0 done; 1 failed; 2 usage).

use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use vmctx::context::MacAddr;
use vmctx::source::iso9660::IsoImage;
use vmctx::source::{self, Source};
use vmctx::{derive, facts, plan};

#[derive(Parser)]
#[command(
    name = "vmctx",
    version,
    about = "Make a generic VM image fit the instance it became"
)]
struct Cli {
    /// Take every system path (/sys, /dev, /etc, …) under this directory.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Say which context source is present, and the evidence. Order: a CONTEXT or config-2
    /// volume (CD-ROMs first, ISO9660 or FAT), then DMI (EC2 → its IMDS; OpenStack Nova → its
    /// metadata service, EC2 tree as fallback), then a short IMDS probe.
    Detect {
        #[arg(long)]
        json: bool,
    },
    /// The normalized context, secrets redacted.
    Show {
        #[arg(long, default_value = "auto")]
        source: Source,
        #[arg(long)]
        json: bool,
    },
    /// What apply would change, changing nothing.
    Plan {
        /// auto, opennebula[:DEVICE_OR_IMAGE], dir:PATH, ec2[:URL],
        /// configdrive[:DEVICE_IMAGE_OR_DIR], openstack[:URL]
        #[arg(long, default_value = "auto")]
        source: Source,
        /// Lines `MAC=ifname` standing in for this machine's links.
        #[arg(long, value_name = "FILE")]
        links_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Plan, validate, then change the system: network, hostname, users, keys, scripts.
    Apply {
        #[arg(long, default_value = "auto")]
        source: Source,
        #[arg(long, value_enum, default_value = "all")]
        stage: vmctx::apply::Stage,
        /// Say what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Seconds to wait for the CONTEXT device to appear (udev may be slower than vmctx).
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        wait: u64,
        #[arg(long)]
        json: bool,
    },
    /// Re-apply the local stage after a NIC or the context CD changed (udev starts it through
    /// vmctx-reconfigure.service); per-instance work runs only for a new instance id.
    Reconfigure {
        #[arg(long, default_value = "auto")]
        source: Source,
        /// Milliseconds links and context must stay unchanged before applying.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        settle_ms: u64,
        #[arg(long)]
        json: bool,
    },
    /// Which stages ran this boot, when, how long, what failed (exit 0 done, 1 a stage failed,
    /// 3 not run yet or still running).
    Status {
        /// Wait until the boot's contextualization finished.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this many seconds (exit 3); default: no limit.
        #[arg(long, value_name = "SECS", requires = "wait")]
        timeout: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Reset vmctx's state (and optionally logs, SSH host keys, machine id) before capturing
    /// an image, so its next boot is a first boot.
    Clean {
        /// Also the scripts' logs and /var/log/vmctx*.
        #[arg(long)]
        logs: bool,
        /// Also the SSH host keys (/etc/ssh/ssh_host_*key*).
        #[arg(long)]
        host_keys: bool,
        /// Also the machine id (/etc/machine-id emptied, /var/lib/dbus/machine-id removed).
        #[arg(long)]
        machine_id: bool,
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// OpenNebula's MAC → IPv4 rule (and the EUI-64 IPv6 address in a /64).
    Mac2ip {
        mac: MacAddr,
        #[arg(long, default_value = "02:00", value_parser = derive::parse_mac_prefix)]
        mac_prefix: [u8; 2],
        /// A /64 prefix such as 2001:db8:1:2:: to also print the SLAAC address.
        #[arg(long, value_name = "P6")]
        ipv6_prefix: Option<std::net::Ipv6Addr>,
    },
    /// Read an ISO9660 image or device without mounting it.
    Iso {
        #[command(subcommand)]
        op: IsoOp,
    },
    /// The emulated EC2 instance metadata service.
    Imds {
        #[command(subcommand)]
        op: ImdsOp,
    },
    /// Keep a folder and an S3 prefix in step (settings: flags, else /etc/vmctx/sync.toml).
    Sync(SyncArgs),
}

#[derive(clap::Args)]
#[command(args_override_self = true)]
struct SyncArgs {
    /// One cycle, then exit (0 in step, 1 on any failure); without it, a cycle every interval.
    #[arg(long)]
    once: bool,
    /// Settings file (default /etc/vmctx/sync.toml, read only when --dir or --bucket is missing).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_name = "D")]
    dir: Option<PathBuf>,
    #[arg(long, value_name = "B")]
    bucket: Option<String>,
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// S3-compatible endpoint URL (path-style addressing), e.g. http://10.0.0.5:9000.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    #[arg(long, value_name = "R")]
    region: Option<String>,
    /// Extra CA certificates (PEM) to trust, besides the system's.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// pull, push or both (default both).
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// Time between cycles without --once (systemd time span, default 5min).
    #[arg(long, value_name = "SPAN")]
    interval: Option<String>,
    /// Where the per-file state lives (default /var/lib/vmctx/sync).
    #[arg(long, value_name = "S")]
    state_dir: Option<PathBuf>,
    /// Largest share of known files (percent) one cycle may delete (default 50).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    max_delete: Option<u8>,
    /// Skip matching files (`*.tmp`), folders (`build/`) or paths (`a/*.log`); repeatable.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Parallel transfers (default 8).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ImdsOp {
    /// Serve the metadata tree built from the context (or a tree file) until SIGTERM.
    Serve {
        #[command(flatten)]
        tree: ImdsTreeArgs,
        /// Address to serve on (default with --guest: 169.254.169.254:80; port 0 picks one).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Inside the guest: add 169.254.169.254/32 to lo (removed on exit) and serve there.
        #[arg(long, conflicts_with = "host_map")]
        guest: bool,
        /// On a host: one tree per VM address, from DIR/<addr>/context.sh or DIR/<addr>.json.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["source", "tree"])]
        host_map: Option<PathBuf>,
        /// Answer 401 to GETs without a valid IMDSv2 token (default: the context's EC2_IMDS_TOKENS).
        #[arg(long)]
        require_token: bool,
        /// IP TTL of token responses, 1..=64 (default: the context's EC2_IMDS_HOP_LIMIT, else 1).
        #[arg(long, value_name = "N", value_parser = vmctx_imds::policy::parse_hop_limit)]
        hop_limit: Option<u8>,
    },
    /// Print the metadata tree as JSON (the form --tree reads).
    Tree {
        #[command(flatten)]
        tree: ImdsTreeArgs,
    },
}

#[derive(clap::Args)]
struct ImdsTreeArgs {
    /// auto, opennebula[:DEVICE_OR_IMAGE], dir:PATH
    #[arg(long, conflicts_with = "tree")]
    source: Option<Source>,
    /// A JSON tree: objects are directories, strings are leaves.
    #[arg(long, value_name = "FILE")]
    tree: Option<PathBuf>,
}

impl ImdsTreeArgs {
    fn from(self) -> vmctx::imds_serve::TreeFrom {
        use vmctx::imds_serve::TreeFrom;
        match (self.tree, self.source) {
            (Some(f), _) => TreeFrom::File(f),
            (None, s) => TreeFrom::Source(s.unwrap_or(Source::Auto)),
        }
    }
}

#[derive(Subcommand)]
enum IsoOp {
    /// List a directory (default: the root) and the volume label.
    Ls {
        image: PathBuf,
        path: Option<String>,
    },
    /// Write a file's contents to standard output.
    Cat { image: PathBuf, path: String },
}

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
        Command::Imds { op } => imds(op, root),
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

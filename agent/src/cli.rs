//! The command line's definitions: clap parses them, and `vmctx generate-assets` renders the man
//! pages and shell completions from them, so the two cannot drift apart.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use vmctx::context::MacAddr;
use vmctx::derive;
use vmctx::source::Source;

#[derive(Parser)]
#[command(
    name = "vmctx",
    version,
    about = "Make a generic VM image fit the instance it became"
)]
pub struct Cli {
    /// Take every system path (/sys, /dev, /etc, …) under this directory.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Say which context source is present, and the evidence. Order: the kernel command line's
    /// ds=nocloud seed, a CONTEXT, config-2 or cidata volume (CD-ROMs first, ISO9660 or FAT), then DMI (EC2 → its IMDS; OpenStack Nova → its
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
        /// configdrive[:DEVICE_IMAGE_OR_DIR], nocloud[:DEVICE_IMAGE_OR_DIR|URL], openstack[:URL]
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
    /// Make the SSH host keys the local stage left for after sshd started (RSA), reload sshd
    /// and print the fingerprints of all keys (run by vmctx-hostkeys.service).
    Hostkeys,
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
    /// Build one VM's metadata tree for `imds serve --host-map` (which runs it, one process per
    /// build, and kills it at its time budget).
    #[command(hide = true, name = "imds-build-vm")]
    ImdsBuildVm {
        /// A folder holding context.sh, or a .json tree file.
        path: PathBuf,
    },
    /// Write the man pages and shell completions made from these definitions (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Folder that gets man/ and completions/.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
#[command(args_override_self = true)]
pub struct SyncArgs {
    /// One cycle, then exit (0 in step, 1 on any failure); without it, a cycle every interval.
    #[arg(long)]
    pub once: bool,
    /// Settings file (default /etc/vmctx/sync.toml, read only when --dir or --bucket is missing).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, value_name = "D")]
    pub dir: Option<PathBuf>,
    #[arg(long, value_name = "B")]
    pub bucket: Option<String>,
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,
    /// S3-compatible endpoint URL (path-style addressing), e.g. http://10.0.0.5:9000.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// Extra CA certificates (PEM) to trust, besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// pull, push or both (default both).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// Time between cycles without --once (systemd time span, default 5min).
    #[arg(long, value_name = "SPAN")]
    pub interval: Option<String>,
    /// Where the per-file state lives (default /var/lib/vmctx/sync).
    #[arg(long, value_name = "S")]
    pub state_dir: Option<PathBuf>,
    /// Largest share of known files (percent) one cycle may delete (default 50).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    pub max_delete: Option<u8>,
    /// Skip matching files (`*.tmp`), folders (`build/`) or paths (`a/*.log`); repeatable.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Parallel transfers (default 8).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ImdsOp {
    /// Serve the metadata tree built from the context (or a tree file) until SIGTERM.
    Serve {
        #[command(flatten)]
        tree: ImdsTreeArgs,
        /// Address to serve on (default with --guest: 169.254.169.254:80; port 0 picks one).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Inside the guest: add 169.254.169.254/32 to lo (removed on exit) and serve there,
        /// to this machine's own processes only (the socket is bound to lo).
        #[arg(long, conflicts_with = "host_map")]
        guest: bool,
        /// On a host: one tree per VM address, from DIR/<addr>/context.sh or DIR/<addr>.json,
        /// or with opennebula:DIR from OpenNebula's datastores (each VM folder's context CD,
        /// served at every address its context gives); other addresses are refused. Each VM's
        /// policy is the stricter of its context and the flags.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["source", "tree"])]
        host_map: Option<vmctx::imds_serve::HostMap>,
        /// With --host-map: take only connections arriving on this interface; replies leave by
        /// it even where the host has no route to the guests (a plain L2 bridge).
        #[arg(long, value_name = "IFACE", requires = "host_map")]
        device: Option<String>,
        /// With --host-map: answer `vmctx imds host-status` on this socket.
        #[arg(long, value_name = "PATH", requires = "host_map")]
        status_socket: Option<PathBuf>,
        /// Answer 401 to GETs without a valid IMDSv2 token (default: the context's EC2_IMDS_TOKENS;
        /// with --host-map, every VM).
        #[arg(long)]
        require_token: bool,
        /// IP TTL of token responses, 1..=64 (default: the context's EC2_IMDS_HOP_LIMIT, else 1;
        /// with --host-map, the most any VM's context may ask for).
        #[arg(long, value_name = "N", value_parser = vmctx_imds::policy::parse_hop_limit)]
        hop_limit: Option<u8>,
    },
    /// Print the metadata tree as JSON (the form --tree reads).
    Tree {
        #[command(flatten)]
        tree: ImdsTreeArgs,
    },
    /// Print (or --apply, or --remove) the nftables rules that bring the guests'
    /// 169.254.169.254:80 to a --host-map sidecar, in vmctx's own tables only.
    HostRules {
        /// The guests' bridge (default: packets arriving on any interface).
        #[arg(long, value_name = "BRIDGE")]
        bridge: Option<String>,
        /// A plain L2 bridge whose gateway is elsewhere: take the frames off the bridge to
        /// this host (the sidecar then runs with --device BRIDGE).
        #[arg(long, requires = "bridge")]
        l2: bool,
        /// With --l2, on kernels without nftables' bridge meta: take the frames that come in on
        /// these bridge ports (a name, or a prefix and `*`: `one-*`) instead of the bridge's.
        #[arg(long, value_name = "NAME", requires = "l2")]
        ports: Option<String>,
        /// Where the sidecar listens: :PORT (on the address the packet arrived at) or IPV4:PORT.
        #[arg(long, value_name = "TARGET", default_value = ":8775")]
        to: vmctx::imds_serve::host_rules::Target,
        /// Load the rules (replacing vmctx's tables whole; a second run changes nothing).
        #[arg(long, conflicts_with = "remove")]
        apply: bool,
        /// Remove vmctx's tables, and nothing else.
        #[arg(long)]
        remove: bool,
    },
    /// What a --host-map sidecar serves: each VM's addresses, state, tree age and counts.
    HostStatus {
        /// The sidecar's --status-socket.
        #[arg(long, value_name = "PATH", default_value = vmctx::imds_serve::host_status::DEFAULT_SOCKET)]
        socket: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct ImdsTreeArgs {
    /// auto, opennebula[:DEVICE_OR_IMAGE], dir:PATH
    #[arg(long, conflicts_with = "tree")]
    pub source: Option<Source>,
    /// A JSON tree: objects are directories, strings are leaves.
    #[arg(long, value_name = "FILE")]
    pub tree: Option<PathBuf>,
}

impl ImdsTreeArgs {
    pub fn from(self) -> vmctx::imds_serve::TreeFrom {
        use vmctx::imds_serve::TreeFrom;
        match (self.tree, self.source) {
            (Some(f), _) => TreeFrom::File(f),
            (None, s) => TreeFrom::Source(s.unwrap_or(Source::Auto)),
        }
    }
}

#[derive(Subcommand)]
pub enum IsoOp {
    /// List a directory (default: the root) and the volume label.
    Ls {
        image: PathBuf,
        path: Option<String>,
    },
    /// Write a file's contents to standard output.
    Cat { image: PathBuf, path: String },
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Clap's own checks of the definitions (conflicting names, bad `requires`, …), which
    /// parsing alone only runs for the arguments it meets.
    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}

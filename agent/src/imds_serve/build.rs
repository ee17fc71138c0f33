//! Building one host-map VM's tree: read its files, parse them, and, in the server, do both
//! in a confined process of its own that is killed at the time budget.

use super::*;

/// What a build gives: a VM's tree, the policy its context asks for (none for a tree file),
/// and the addresses its context gives it (none for a tree file).
#[derive(Debug)]
pub struct Built {
    pub tree: Tree,
    pub policy: Option<Policy>,
    pub addrs: Vec<IpAddr>,
}

/// One VM's tree, in this process. The host-map server runs it in a process of its own
/// ([`build_vm_child`]).
pub fn build_vm(src: &VmSource) -> Result<Built, String> {
    let read = read_vm(src)?;
    parse_vm(read)
}

/// A VM's files, read (as whoever runs this) but not yet parsed.
enum VmFiles {
    Context(Box<source::Raw>),
    TreeFile(PathBuf, Vec<u8>),
}

fn read_vm(src: &VmSource) -> Result<VmFiles, String> {
    match src {
        VmSource::TreeFile(p) => {
            let fail = |why: String| format!("{}: {why}", p.display());
            let len = std::fs::metadata(p).map_err(|e| fail(e.to_string()))?.len();
            if len > MAX_TREE_FILE {
                return Err(fail(format!("larger than {MAX_TREE_FILE} bytes")));
            }
            let bytes = std::fs::read(p).map_err(|e| fail(e.to_string()))?;
            Ok(VmFiles::TreeFile(p.clone(), bytes))
        }
        VmSource::Context(dir) => {
            let file = dir.join("context.sh");
            let len = std::fs::metadata(&file)
                .map_err(|e| format!("{}: {e}", file.display()))?
                .len();
            if len > MAX_HOST_CONTEXT {
                return Err(format!(
                    "{}: larger than {MAX_HOST_CONTEXT} bytes",
                    file.display()
                ));
            }
            let raw = source::read(
                &Source::Dir(dir.clone()),
                Path::new("/"),
                &Default::default(),
            )
            .map_err(|e| e.to_string())?;
            Ok(VmFiles::Context(Box::new(raw)))
        }
        VmSource::ContextIso(iso) => {
            // Only the volume descriptors, the root folder and context.sh (bounded) are read.
            let raw = source::opennebula::read_cd_context(iso).map_err(|e| e.to_string())?;
            Ok(VmFiles::Context(Box::new(raw)))
        }
    }
}

fn parse_vm(files: VmFiles) -> Result<Built, String> {
    match files {
        VmFiles::TreeFile(p, bytes) => {
            let fail = |why: String| format!("{}: {why}", p.display());
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
            let tree = Tree::from_json(&v, vmctx_imds::tree::DEFAULT_SIZE_LIMIT)
                .map_err(|e| fail(e.to_string()))?;
            Ok(Built {
                tree,
                policy: None,
                addrs: Vec::new(),
            })
        }
        VmFiles::Context(raw) => {
            let ctx = source::to_context_checked(*raw).map_err(|e| e.to_string())?;
            let (tree, p) = from_context(&ctx).map_err(|e| e.to_string())?;
            Ok(Built {
                tree,
                policy: Some(p),
                addrs: super::opennebula_datastore::addresses(&ctx),
            })
        }
    }
}

/// The hidden command a host-map server runs to build one VM's tree: `vmctx imds-build-vm PATH`.
pub const BUILD_VM_COMMAND: &str = "imds-build-vm";
/// Address space of a build process: what a VM's context may cost the host in memory.
pub const BUILD_MEMORY: u64 = 256 << 20;
/// Largest answer read from a build process (a tree is at most 1 MiB, base64 in JSON).
const MAX_WIRE: u64 = 4 << 20;
/// The user a build process parses as, once it has read the VM's files: `nobody`.
const BUILD_UID: u32 = 65534;

/// `vmctx imds-build-vm PATH`: builds one host-map VM's tree from `PATH` (a folder holding
/// `context.sh`, a `.json` tree file, or a context CD image) and writes it to stdout in the form
/// [`build_in_child`] reads. It limits itself first (address space, CPU time, no files
/// written, no core), reads the files, and then, when it runs as root, drops to `nobody` with
/// no new privileges before it parses anything: a VM's context (its user-data, gzip and YAML)
/// is parsed in a process that can neither take the host's memory nor act as root.
pub fn build_vm_child(path: &Path) -> Result<(), String> {
    confine::limits().map_err(|e| format!("limiting the build process: {e}"))?;
    let src = if path.is_dir() {
        VmSource::Context(path.to_path_buf())
    } else if path.extension().is_some_and(|e| e == "json") {
        VmSource::TreeFile(path.to_path_buf())
    } else {
        VmSource::ContextIso(path.to_path_buf())
    };
    let files = read_vm(&src)?;
    confine::drop_privileges().map_err(|e| format!("dropping privileges: {e}"))?;
    let built = parse_vm(files)?;
    let wire = wire::encode(&built);
    let mut out = std::io::stdout().lock();
    out.write_all(wire.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing the tree: {e}"))
}

/// Builds a VM's tree in a process of its own (this binary's [`BUILD_VM_COMMAND`]); dropping
/// the future (the host map's time budget) kills the process.
pub fn build_in_child(src: VmSource) -> futures::future::BoxFuture<'static, Result<Built, String>> {
    Box::pin(async move {
        use std::os::unix::process::ExitStatusExt;
        use tokio::io::AsyncReadExt;
        let path = src.path().to_path_buf();
        let mut child = tokio::process::Command::new("/proc/self/exe")
            .arg(BUILD_VM_COMMAND)
            .arg(&path)
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting a build process: {e}"))?;
        let (Some(so), Some(se)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("no pipes to the build process".into());
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut so, mut se) = (so.take(MAX_WIRE), se.take(64 << 10));
        let (r_out, _, status) = tokio::join!(
            so.read_to_end(&mut out),
            se.read_to_end(&mut err),
            child.wait(),
        );
        let status = status.map_err(|e| format!("waiting for the build process: {e}"))?;
        let err = String::from_utf8_lossy(&err);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let last = plain(last);
        let last = last.as_str();
        if !status.success() {
            return Err(match status.signal() {
                Some(sig) => format!(
                    "the build process was killed by signal {sig} (its memory or CPU budget?) {last}"
                ),
                None => last.strip_prefix("vmctx: ").unwrap_or(last).to_string(),
            });
        }
        for line in err.lines().filter(|l| !l.trim().is_empty()) {
            tracing::warn!("{}: {}", path.display(), plain(line).trim());
        }
        r_out.map_err(|e| format!("reading the build process: {e}"))?;
        wire::decode(&out)
    })
}

/// A log line of a build process without its terminal colours (`ESC [ … m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

mod confine {
    //! What a build process does to itself before it parses a VM's files.
    use nix::libc;

    fn set(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
        let r = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: setrlimit reads the struct passed.
        if unsafe { libc::setrlimit(resource, &r) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    pub fn limits() -> std::io::Result<()> {
        set(libc::RLIMIT_AS, super::BUILD_MEMORY)?;
        // A backstop: the server kills the process at its budget already.
        set(libc::RLIMIT_CPU, super::BUILD_BUDGET.as_secs() + 2)?;
        set(libc::RLIMIT_FSIZE, 0)?;
        set(libc::RLIMIT_CORE, 0)
    }

    /// As root: no supplementary groups, `nobody`'s uid and gid, no new privileges.
    pub fn drop_privileges() -> std::io::Result<()> {
        let last = std::io::Error::last_os_error;
        // SAFETY: plain system calls on no memory of ours but a null group list of length 0.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(last());
            }
            if libc::geteuid() != 0 {
                return Ok(());
            }
            let id = super::BUILD_UID;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(id, id, id) != 0
                || libc::setresuid(id, id, id) != 0
            {
                return Err(last());
            }
            if libc::setuid(0) == 0 {
                return Err(std::io::Error::other("could regain root"));
            }
        }
        Ok(())
    }
}

mod wire {
    //! A built tree and its policy between a build process and the server: JSON with every
    //! leaf in base64 (user-data may be gzip), read back through the tree builder (names and
    //! the size limit checked again).
    use super::*;
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use vmctx_imds::tree::{Builder, Dir, Node, DEFAULT_SIZE_LIMIT};

    pub fn encode(built: &Built) -> String {
        let (tree, policy) = (&built.tree, built.policy);
        fn walk(d: &Dir, prefix: &str, leaves: &mut Vec<(String, String)>, dirs: &mut Vec<String>) {
            for (label, node) in d.iter() {
                let path = if prefix.is_empty() {
                    label.to_string()
                } else {
                    format!("{prefix}/{label}")
                };
                match node {
                    Node::Leaf(b) => leaves.push((path, B64.encode(b))),
                    Node::Dir(sub) if sub.iter().next().is_none() => dirs.push(path),
                    Node::Dir(sub) => walk(sub, &path, leaves, dirs),
                }
            }
        }
        let (mut leaves, mut dirs) = (Vec::new(), Vec::new());
        walk(tree.root(), "", &mut leaves, &mut dirs);
        serde_json::json!({
            "policy": policy.map(|p| serde_json::json!({
                "tokens_required": p.tokens_required,
                "hop_limit": p.hop_limit,
            })),
            "leaves": leaves,
            "dirs": dirs,
            "addrs": built.addrs,
        })
        .to_string()
    }

    pub fn decode(bytes: &[u8]) -> Result<Built, String> {
        #[derive(serde::Deserialize)]
        struct Wire {
            policy: Option<WirePolicy>,
            leaves: Vec<(String, String)>,
            dirs: Vec<String>,
            #[serde(default)]
            addrs: Vec<IpAddr>,
        }
        #[derive(serde::Deserialize)]
        struct WirePolicy {
            tokens_required: bool,
            hop_limit: u8,
        }
        let bad = |why: String| format!("the build process's answer: {why}");
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let mut b = Builder::new(DEFAULT_SIZE_LIMIT);
        for (path, body) in w.leaves {
            let body = B64.decode(body).map_err(|e| bad(e.to_string()))?;
            b.leaf(&path, body).map_err(|e| bad(e.to_string()))?;
        }
        for path in w.dirs {
            b.dir(&path).map_err(|e| bad(e.to_string()))?;
        }
        let policy = match w.policy {
            None => None,
            Some(p) => Some(Policy {
                tokens_required: p.tokens_required,
                hop_limit: vmctx_imds::policy::parse_hop_limit(&p.hop_limit.to_string())
                    .map_err(bad)?,
            }),
        };
        Ok(Built {
            tree: b.build(),
            policy,
            addrs: w.addrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_map_context_has_a_size_budget() {
        let d = tempfile::tempdir().unwrap();
        let big = format!("VMID='3'\nX='{}'\n", "a".repeat(MAX_HOST_CONTEXT as usize));
        std::fs::write(d.path().join("context.sh"), big).unwrap();
        let e = build_vm(&VmSource::Context(d.path().into())).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn trees_cross_from_a_build_process_intact() {
        let v = serde_json::json!({
            "meta-data": {
                "instance-id": "i-0a1b2c3d4e5f60718",
                "public-keys": {"0=gsg-keypair": {"openssh-key": "ssh-rsa AAAA gsg-keypair"}},
                "events": {"maintenance": {"scheduled": []}},
                "block-device-mapping": {},
            },
            "user-data": "x",
        });
        let mut b = vmctx_imds::tree::Builder::new(vmctx_imds::tree::DEFAULT_SIZE_LIMIT);
        let t = Tree::from_json(&v, vmctx_imds::tree::DEFAULT_SIZE_LIMIT).unwrap();
        // Binary user-data (gzip) stays byte for byte.
        let gz: Vec<u8> = vec![0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00, 0x80];
        b.leaf("meta-data/instance-id", "i-0a1b2c3d4e5f60718")
            .unwrap();
        b.leaf("meta-data/public-keys/0=gsg-keypair/openssh-key", "k")
            .unwrap();
        b.dir("meta-data/block-device-mapping").unwrap();
        b.leaf("user-data", gz.clone()).unwrap();
        let bin = b.build();
        let p = Policy {
            tokens_required: true,
            hop_limit: 2,
        };
        let addrs: Vec<IpAddr> = vec!["192.0.2.5".parse().unwrap(), "2001:db8::5".parse().unwrap()];
        for (tree, policy) in [(t, None), (bin, Some(p))] {
            let built = Built {
                tree,
                policy,
                addrs: addrs.clone(),
            };
            let tree = &built.tree;
            let back = wire::decode(wire::encode(&built).as_bytes()).unwrap();
            assert_eq!(back.policy, policy);
            assert_eq!(back.addrs, addrs);
            let back = back.tree;
            assert_eq!(back.size(), tree.size());
            assert_eq!(back.root().listing(), tree.root().listing());
            assert_eq!(back.instance_id(), "i-0a1b2c3d4e5f60718");
            let listing = |t: &Tree, path: &[&str]| match t.lookup(path.iter().copied()) {
                Some(vmctx_imds::tree::Node::Dir(d)) => d.listing().clone(),
                Some(vmctx_imds::tree::Node::Leaf(b)) => b.clone(),
                None => panic!("{path:?}"),
            };
            for path in [
                &["meta-data"][..],
                &["meta-data", "public-keys"],
                &["meta-data", "public-keys", "0"],
                &["meta-data", "block-device-mapping"],
                &["user-data"],
            ] {
                assert_eq!(listing(&back, path), listing(tree, path), "{path:?}");
            }
        }
        assert!(wire::decode(br#"{"policy":null,"leaves":[["../x","AA=="]],"dirs":[]}"#).is_err());
        assert!(wire::decode(
            br#"{"policy":{"tokens_required":true,"hop_limit":0},"leaves":[],"dirs":[]}"#
        )
        .is_err());
    }
}

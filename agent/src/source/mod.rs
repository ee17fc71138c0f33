//! Where a context comes from. Every source yields the same [`Raw`] form (the parsed
//! `context.sh` plus the names of the other files beside it), and [`load`] turns it into the
//! normalized [`Context`].

pub mod context_sh;
pub mod detect;
pub mod ec2;
pub mod iso9660;
pub mod nocloud;
pub mod opennebula;
pub mod openstack;
pub mod userdata;
pub mod vfat;

use crate::context::{Context, Origin};
use crate::settings::Imds;
use context_sh::Parsed;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Largest `context.sh` read (OpenNebula's are a few KiB; a start script may add some MiB).
pub const MAX_CONTEXT_SH: u64 = 16 << 20;
/// Most bytes read for all the context's files together (the start scripts' private copy).
pub const MAX_CONTEXT_FILES: u64 = 256 << 20;
/// Largest single file of a context read beside `context.sh` (a script, `token.txt`).
pub const MAX_CONTEXT_FILE: u64 = 64 << 20;

/// The `--source` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The first source found: the CONTEXT volume, else a cloud's metadata service (DMI, then
    /// a short IMDS probe).
    Auto,
    /// An OpenNebula context CD: auto-detected device, or this device or image file.
    OpenNebula(Option<PathBuf>),
    /// A directory holding `context.sh`.
    Dir(PathBuf),
    /// The EC2 metadata service: `http://169.254.169.254` or this base URL (an IP literal).
    Ec2(Option<String>),
    /// An OpenStack config drive (`config-2`): auto-detected, or this device, image file or
    /// unpacked folder.
    ConfigDrive(Option<PathBuf>),
    /// A NoCloud seed (`cidata`): auto-detected, or this device, image file or folder.
    NoCloud(Option<PathBuf>),
    /// A NoCloud seed served over http (cloud-init's `nocloud-net`): this base URL, an IP
    /// literal; read in the final stage.
    NoCloudNet(String),
    /// OpenStack: the config drive if there is one, else the metadata service at
    /// `http://169.254.169.254`; with a URL, only the service there.
    OpenStack(Option<String>),
}

impl Source {
    /// The origin this source names when it names exactly one (no detection needed).
    pub fn named_origin(&self) -> Option<Origin> {
        match self {
            Source::Auto | Source::OpenNebula(None) | Source::ConfigDrive(None) => None,
            // The drive if there is one, else the service: not known before looking.
            Source::OpenStack(None) => None,
            Source::OpenNebula(Some(p)) => Some(Origin::OpenNebula(p.clone())),
            Source::Dir(p) => Some(Origin::Dir(p.clone())),
            Source::ConfigDrive(Some(p)) => Some(Origin::ConfigDrive(p.clone())),
            Source::Ec2(u) => Some(Origin::Ec2(
                u.clone().unwrap_or_else(|| ec2::DEFAULT_URL.into()),
            )),
            Source::OpenStack(Some(u)) => Some(Origin::OpenStack(u.clone())),
            Source::NoCloud(None) => None,
            Source::NoCloud(Some(p)) => Some(Origin::NoCloud(p.clone())),
            Source::NoCloudNet(u) => Some(Origin::NoCloudNet(u.clone())),
        }
    }

    /// Read over the network (after it is up, in the final stage), not from a local volume.
    pub fn is_network(&self) -> bool {
        self.named_origin().is_some_and(|o| o.is_network())
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let path = |a: &str| {
            if a.is_empty() {
                Err(format!("{s:?}: the path after ':' is empty"))
            } else {
                Ok(PathBuf::from(a))
            }
        };
        match (kind, arg) {
            ("auto", None) => Ok(Source::Auto),
            ("opennebula", None) => Ok(Source::OpenNebula(None)),
            ("opennebula", Some(a)) => Ok(Source::OpenNebula(Some(path(a)?))),
            ("dir", Some(a)) => Ok(Source::Dir(path(a)?)),
            ("ec2", a) => Ok(Source::Ec2(a.map(str::to_string))),
            ("configdrive", None) => Ok(Source::ConfigDrive(None)),
            ("configdrive", Some(a)) => Ok(Source::ConfigDrive(Some(path(a)?))),
            ("openstack", a) => Ok(Source::OpenStack(a.map(str::to_string))),
            ("nocloud", None) => Ok(Source::NoCloud(None)),
            ("nocloud", Some(a)) if a.starts_with("http") => Ok(Source::NoCloudNet(a.to_string())),
            ("nocloud", Some(a)) => Ok(Source::NoCloud(Some(path(a)?))),
            _ => Err(format!(
                "{s:?} is not a source: use auto, opennebula[:DEVICE_OR_IMAGE], dir:PATH, ec2[:URL], \
                 configdrive[:DEVICE_IMAGE_OR_DIR], nocloud[:DEVICE_IMAGE_OR_DIR|URL] or openstack[:URL]"
            )),
        }
    }
}

/// As `--source` takes it (`vmctx detect --json`).
impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Auto => f.write_str("auto"),
            Source::OpenNebula(None) => f.write_str("opennebula"),
            Source::OpenNebula(Some(p)) => write!(f, "opennebula:{}", p.display()),
            Source::Dir(p) => write!(f, "dir:{}", p.display()),
            Source::Ec2(None) => f.write_str("ec2"),
            Source::Ec2(Some(u)) => write!(f, "ec2:{u}"),
            Source::ConfigDrive(None) => f.write_str("configdrive"),
            Source::ConfigDrive(Some(p)) => write!(f, "configdrive:{}", p.display()),
            Source::NoCloud(None) => f.write_str("nocloud"),
            Source::NoCloud(Some(p)) => write!(f, "nocloud:{}", p.display()),
            Source::NoCloudNet(u) => write!(f, "nocloud:{u}"),
            Source::OpenStack(None) => f.write_str("openstack"),
            Source::OpenStack(Some(u)) => write!(f, "openstack:{u}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("no context found: {0}")]
    NotFound(String),
    #[error("{origin}: {source}")]
    Iso {
        origin: String,
        source: iso9660::IsoError,
    },
    #[error("{origin}: {source}")]
    Io {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: no context.sh in it")]
    NoContextSh { origin: String },
    #[error("{origin}: {source}")]
    Ec2 {
        origin: String,
        source: ec2::Ec2Error,
    },
    #[error("{origin}: {why}")]
    Data { origin: String, why: String },
    #[error("{origin}: {source}")]
    OpenStack {
        origin: String,
        source: openstack::OpenStackError,
    },
}

/// Metadata read from a cloud's service or drive instead of a `context.sh`.
#[derive(Debug, Clone)]
pub enum Cloud {
    Ec2(ec2::Metadata),
    OpenStack(openstack::Metadata),
    NoCloud(nocloud::Seed),
}

/// A context as read, before normalization.
#[derive(Debug, Clone)]
pub struct Raw {
    /// e.g. `opennebula:/dev/sr0`
    pub origin: Origin,
    pub parsed: Parsed,
    /// The other files beside `context.sh`, read with it (bounded by [`MAX_CONTEXT_FILE`] and
    /// [`MAX_CONTEXT_FILES`]): scripts and OneGate use these, never the CD again.
    pub files: Vec<(String, Vec<u8>)>,
    /// Not fatal, but worth saying (e.g. an unexpected volume label).
    pub warnings: Vec<String>,
    /// Read from a cloud's metadata instead of a `context.sh` (`parsed` is empty).
    pub cloud: Option<Cloud>,
}

impl Raw {
    /// A context read from a cloud's metadata (no `context.sh`, no files beside it).
    fn from_cloud(origin: Origin, cloud: Cloud) -> Raw {
        Raw {
            origin,
            parsed: Parsed::default(),
            files: Vec::new(),
            warnings: Vec::new(),
            cloud: Some(cloud),
        }
    }
}

/// Reads the context named by `source`. `root` prefixes the paths searched by detection
/// (`/sys/class/block`, `/dev`); explicit paths are used as given.
pub fn read(source: &Source, root: &Path, imds: &Imds) -> Result<Raw, SourceError> {
    match source {
        Source::OpenNebula(None) => read_volume(root, Some(detect::Volume::Context)),
        Source::ConfigDrive(None) => read_volume(root, Some(detect::Volume::ConfigDrive)),
        Source::NoCloud(None) => read_volume(root, Some(detect::Volume::NoCloud)),
        Source::NoCloud(Some(path)) => read_seed(path),
        Source::NoCloudNet(url) => {
            let origin = Origin::NoCloudNet(url.clone());
            let seed = nocloud::read_service(url, imds).map_err(|why| SourceError::Data {
                origin: origin.to_string(),
                why,
            })?;
            Ok(Raw::from_cloud(origin, Cloud::NoCloud(seed)))
        }
        Source::Auto => {
            let d = detect::decide(root, detect::probe_url(root, imds).as_deref());
            match d.source {
                Some(Source::OpenNebula(Some(dev))) => opennebula::read_cd(&dev, false),
                // Detection names a device, or a metadata service; never `auto` itself.
                Some(Source::Auto) | None => Err(SourceError::NotFound(d.summary)),
                Some(s) => read(&s, root, imds),
            }
        }
        Source::OpenNebula(Some(path)) => opennebula::read_cd(path, true),
        Source::Dir(path) => read_dir(path),
        Source::Ec2(_) => read_ec2(source, imds),
        Source::ConfigDrive(Some(path)) => read_config_drive(path),
        // The drive first, always: the service may be unreachable where a drive exists.
        Source::OpenStack(None) => match read_volume(root, Some(detect::Volume::ConfigDrive)) {
            Err(SourceError::NotFound(_)) => read_openstack_service(None, imds),
            other => other,
        },
        Source::OpenStack(Some(url)) => read_openstack_service(Some(url), imds),
    }
}

/// The first local volume of kind `want` (any kind: `None`) among the block devices.
fn read_volume(root: &Path, want: Option<detect::Volume>) -> Result<Raw, SourceError> {
    let found = detect::find_volume(root);
    match (&found.device, found.kind) {
        (Some(dev), Some(kind)) if want.map_or(true, |w| w == kind) => match kind {
            detect::Volume::Context => opennebula::read_cd(dev, false),
            detect::Volume::ConfigDrive => read_config_drive(dev),
            detect::Volume::NoCloud => read_seed(dev),
        },
        _ => Err(SourceError::NotFound(found.summary())),
    }
}

fn read_config_drive(path: &Path) -> Result<Raw, SourceError> {
    let origin = Origin::ConfigDrive(path.to_path_buf());
    let md = openstack::read_drive(path).map_err(|source| SourceError::OpenStack {
        origin: origin.to_string(),
        source,
    })?;
    Ok(Raw::from_cloud(origin, Cloud::OpenStack(md)))
}

fn read_seed(path: &Path) -> Result<Raw, SourceError> {
    let origin = Origin::NoCloud(path.to_path_buf());
    let seed = nocloud::read_seed(path).map_err(|why| SourceError::Data {
        origin: origin.to_string(),
        why,
    })?;
    Ok(Raw::from_cloud(origin, Cloud::NoCloud(seed)))
}

/// Nova's metadata service; where it has no `/openstack`, its EC2-compatible tree.
fn read_openstack_service(url: Option<&str>, imds: &Imds) -> Result<Raw, SourceError> {
    const BUDGET: std::time::Duration = std::time::Duration::from_secs(60);
    let fail = |e| SourceError::Ec2 {
        origin: Source::OpenStack(url.map(str::to_string)).to_string(),
        source: e,
    };
    let opts = ec2::Options::new(url, BUDGET, imds).map_err(fail)?;
    let origin = Origin::OpenStack(opts.endpoint.url.clone());
    match openstack::read_service(&opts) {
        Ok(openstack::ServiceAnswer::OpenStack(md)) => {
            Ok(Raw::from_cloud(origin, Cloud::OpenStack(md)))
        }
        Ok(openstack::ServiceAnswer::NoOpenStack) => {
            let mut raw = read_ec2(&Source::Ec2(Some(opts.endpoint.url.clone())), imds)?;
            raw.warnings.push(format!(
                "{}/openstack answers 404: read as an EC2-style metadata service",
                opts.endpoint.url
            ));
            Ok(raw)
        }
        Err(source) => Err(SourceError::OpenStack {
            origin: origin.to_string(),
            source,
        }),
    }
}

/// Only the CONTEXT volume (the local stage: a metadata service is not reachable yet).
pub fn read_local(
    source: &Source,
    root: &Path,
    wait: std::time::Duration,
    imds: &Imds,
) -> Result<Raw, SourceError> {
    match source {
        Source::Auto => match nocloud::cmdline_seed(root) {
            Some(Ok(path)) => read_seed(&path),
            // Any volume (CONTEXT, config-2, cidata): the first found.
            _ => waiting(root, wait, || read_volume(root, None)),
        },
        Source::OpenStack(None) => read_waiting(&Source::ConfigDrive(None), root, wait, imds),
        other => read_waiting(other, root, wait, imds),
    }
}

fn read_ec2(source: &Source, imds: &Imds) -> Result<Raw, SourceError> {
    let Source::Ec2(url) = source else {
        unreachable!("read_ec2 is called for ec2 sources")
    };
    let fail = |e| SourceError::Ec2 {
        origin: source.to_string(),
        source: e,
    };
    let opts = ec2::Options::new(url.as_deref(), ec2::DEFAULT_BUDGET, imds).map_err(fail)?;
    let md = ec2::read(&opts).map_err(fail)?;
    Ok(Raw::from_cloud(
        Origin::Ec2(opts.endpoint.url.clone()),
        Cloud::Ec2(md),
    ))
}

/// Like [`read`], but for a detected CONTEXT volume waits up to `wait` for it to appear (udev
/// can be slower than the unit that runs vmctx). It gives up after a short grace when the
/// machine has no CD-ROM drive at all, so a VM without a context CD does not wait.
pub fn read_waiting(
    source: &Source,
    root: &Path,
    wait: std::time::Duration,
    imds: &Imds,
) -> Result<Raw, SourceError> {
    match source {
        Source::Auto
        | Source::OpenNebula(None)
        | Source::ConfigDrive(None)
        | Source::NoCloud(None) => waiting(root, wait, || read(source, root, imds)),
        _ => read(source, root, imds),
    }
}

/// Calls `read` until it finds a volume, `wait` passes, or (after a short grace) it is clear
/// that the machine has no CD-ROM drive.
fn waiting(
    root: &Path,
    wait: std::time::Duration,
    read: impl Fn() -> Result<Raw, SourceError>,
) -> Result<Raw, SourceError> {
    const GRACE: std::time::Duration = std::time::Duration::from_secs(1);
    let started = std::time::Instant::now();
    loop {
        match read() {
            Err(SourceError::NotFound(why)) => {
                let elapsed = started.elapsed();
                let no_drive = !detect::has_cdrom(root) && elapsed >= GRACE;
                if elapsed >= wait || no_drive {
                    return Err(SourceError::NotFound(why));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Reads and normalizes: parse warnings are carried into the context's warnings.
pub fn load(source: &Source, root: &Path, imds: &Imds) -> Result<Context, SourceError> {
    let raw = read(source, root, imds)?;
    to_context_checked(raw)
}

/// Normalizes; EC2 metadata too broken to map (an unusable instance id) is an error.
pub fn to_context_checked(raw: Raw) -> Result<Context, SourceError> {
    let mapped = match &raw.cloud {
        None => return Ok(to_context(raw)),
        Some(Cloud::Ec2(md)) => ec2::map::to_context(md, &raw.origin),
        Some(Cloud::OpenStack(md)) => openstack::map::to_context(md, &raw.origin),
        Some(Cloud::NoCloud(seed)) => nocloud::to_context(seed, &raw.origin),
    };
    let mut ctx = mapped.map_err(|why| SourceError::Data {
        origin: raw.origin.to_string(),
        why,
    })?;
    let mut warnings = raw.warnings;
    warnings.append(&mut ctx.warnings);
    ctx.warnings = warnings;
    // A NoCloud seed merged its vendor-data and user-data already (two layers).
    if !matches!(raw.cloud, Some(Cloud::NoCloud(_))) {
        crate::source::userdata::merge(&mut ctx);
    }
    crate::ssh_keys::check(&mut ctx);
    Ok(ctx)
}

pub fn to_context(raw: Raw) -> Context {
    if raw.cloud.is_some() {
        let origin = raw.origin.clone();
        return to_context_checked(raw).unwrap_or_else(|e| broken(&origin, e.to_string()));
    }
    let names: Vec<String> = raw.files.iter().map(|(n, _)| n.clone()).collect();
    let mut ctx = opennebula::to_context(&raw.parsed.vars, &names, &raw.origin);
    ctx.files = raw.files;
    opennebula::token_from_file(&mut ctx);
    let mut warnings = raw.warnings;
    warnings.extend(
        raw.parsed
            .warnings
            .iter()
            .map(|w| format!("context.sh {w}")),
    );
    warnings.append(&mut ctx.warnings);
    ctx.warnings = warnings;
    crate::source::userdata::merge(&mut ctx);
    crate::ssh_keys::check(&mut ctx);
    ctx
}

/// A context that only carries an error (apply refuses it, plan shows it).
fn broken(origin: &Origin, error: String) -> Context {
    let mut ctx = opennebula::to_context(&Default::default(), &[], origin);
    ctx.warnings.clear();
    ctx.errors = vec![error];
    ctx
}

/// Every file of a context folder but `context.sh`, each at most `limit` bytes, all together at
/// most [`MAX_CONTEXT_FILES`].
fn read_dir_files(path: &Path, limit: u64) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
    let origin = format!("dir:{}", path.display());
    let io = |source| SourceError::Io {
        origin: origin.clone(),
        source,
    };
    let mut out = Vec::new();
    let mut total = 0u64;
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let meta = entry.metadata().map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !meta.is_file() || name == "context.sh" {
            continue;
        }
        total = total.saturating_add(meta.len());
        let source = if meta.len() > limit {
            iso9660::IsoError::TooLarge {
                path: name,
                size: meta.len(),
                limit,
            }
        } else if total > MAX_CONTEXT_FILES {
            iso9660::IsoError::FilesTooLarge {
                dir: path.display().to_string(),
                size: total,
                limit: MAX_CONTEXT_FILES,
            }
        } else {
            out.push((name, std::fs::read(entry.path()).map_err(io)?));
            continue;
        };
        return Err(SourceError::Iso { origin, source });
    }
    out.sort();
    Ok(out)
}

fn read_dir(path: &Path) -> Result<Raw, SourceError> {
    let origin = Origin::Dir(path.to_path_buf());
    let io = |source| SourceError::Io {
        origin: origin.to_string(),
        source,
    };
    let file = path.join("context.sh");
    let meta = match std::fs::metadata(&file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Say which: the folder is missing, or only context.sh is.
            std::fs::metadata(path).map_err(io)?;
            return Err(SourceError::NoContextSh {
                origin: origin.to_string(),
            });
        }
        Err(e) => return Err(io(e)),
    };
    if meta.len() > MAX_CONTEXT_SH {
        return Err(SourceError::Iso {
            origin: origin.to_string(),
            source: iso9660::IsoError::TooLarge {
                path: "context.sh".into(),
                size: meta.len(),
                limit: MAX_CONTEXT_SH,
            },
        });
    }
    let bytes = std::fs::read(&file).map_err(io)?;
    let files = read_dir_files(path, MAX_CONTEXT_FILE)?;
    Ok(Raw {
        origin,
        parsed: context_sh::parse(&bytes),
        files,
        warnings: Vec::new(),
        cloud: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_syntax() {
        assert_eq!("auto".parse::<Source>().unwrap(), Source::Auto);
        assert_eq!(
            "opennebula".parse::<Source>().unwrap(),
            Source::OpenNebula(None)
        );
        assert_eq!(
            "opennebula:/dev/sr1".parse::<Source>().unwrap(),
            Source::OpenNebula(Some("/dev/sr1".into()))
        );
        assert_eq!(
            "dir:ctx".parse::<Source>().unwrap(),
            Source::Dir("ctx".into())
        );
        assert_eq!(
            "nocloud:/dev/vdb".parse::<Source>().unwrap(),
            Source::NoCloud(Some("/dev/vdb".into()))
        );
        let net = "nocloud:http://10.0.0.1:8000/seed/"
            .parse::<Source>()
            .unwrap();
        assert_eq!(net, Source::NoCloudNet("http://10.0.0.1:8000/seed/".into()));
        assert!(net.is_network() && net.named_origin().is_some_and(|o| o.is_network()));
        assert!(!Source::NoCloud(None).is_network());
        for bad in ["dir", "dir:", "cdrom", "opennebula:", "auto:x", "nocloud:"] {
            assert!(bad.parse::<Source>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dir_errors_name_the_source() {
        let t = tempfile::tempdir().unwrap();
        let e = read(
            &Source::Dir(t.path().into()),
            Path::new("/"),
            &Default::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("dir:{}: no context.sh in it", t.path().display())
        );
        let missing = t.path().join("nope");
        let e = read(
            &Source::Dir(missing.clone()),
            Path::new("/"),
            &Default::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("dir:{}: ", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn dir_lists_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("context.sh"), "INIT_SCRIPTS='b.sh'\n").unwrap();
        std::fs::write(t.path().join("b.sh"), "#!/bin/sh\n").unwrap();
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let raw = read(
            &Source::Dir(t.path().into()),
            Path::new("/"),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(
            raw.files,
            vec![("b.sh".to_string(), b"#!/bin/sh\n".to_vec())]
        );
        let ctx = to_context(raw);
        assert_eq!(ctx.scripts.init, vec!["b.sh"]);
        assert_eq!(ctx.files.len(), 1, "carried from the read");
    }
}

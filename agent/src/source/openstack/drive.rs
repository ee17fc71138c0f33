//! Reading a config drive: an ISO9660 image (Nova's default), a FAT one (`config_drive_format
//! = vfat`), or an unpacked folder (tests, fixtures). No mount; the drive is never written.

use super::{choose_version, Kind, Metadata, OpenStackError, MAX_JSON, MAX_USER_DATA};
use crate::source::iso9660::{IsoError, IsoImage};
use crate::source::vfat::{FatError, FatImage};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Nova asks for `config-2`; FAT tools store it upper-cased. Compared case-insensitively.
pub const DRIVE_LABEL: &str = "config-2";

pub fn is_drive_label(label: &str) -> bool {
    label.eq_ignore_ascii_case(DRIVE_LABEL)
}

/// A file tree read-only: the one thing the version rule and the reader need (the NoCloud
/// seed is read through it too).
pub(crate) trait Tree {
    /// `None` when `dir` does not exist.
    fn list(&mut self, dir: &str) -> Result<Option<Vec<(String, Kind)>>, String>;
    /// `None` when `path` does not exist.
    fn read(&mut self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, String>;
    fn label(&self) -> Option<String>;
}

struct Iso(IsoImage<std::fs::File>);
struct Fat(FatImage<std::fs::File>);
struct Dir(PathBuf);

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;

impl Tree for Iso {
    fn list(&mut self, dir: &str) -> Result<Option<Vec<(String, Kind)>>, String> {
        match self.0.list(dir) {
            Ok(entries) => Ok(Some(
                entries
                    .into_iter()
                    .map(|e| {
                        let kind = match (&e.link, e.mode) {
                            (Some(t), _) => Kind::Link(t.clone()),
                            (None, Some(m)) if m & S_IFMT == S_IFLNK => Kind::Link(String::new()),
                            _ if e.is_dir => Kind::Dir,
                            _ => Kind::File,
                        };
                        (e.name, kind)
                    })
                    .collect(),
            )),
            Err(IsoError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
    fn read(&mut self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        match self.0.read_file(path, limit) {
            Ok(b) => Ok(Some(b)),
            Err(IsoError::NotFound(_)) => Ok(None),
            Err(IsoError::TooLarge { size, limit, .. }) => Err(too_large(size, limit)),
            Err(e) => Err(e.to_string()),
        }
    }
    fn label(&self) -> Option<String> {
        Some(self.0.volume_id().to_string())
    }
}

impl Tree for Fat {
    fn list(&mut self, dir: &str) -> Result<Option<Vec<(String, Kind)>>, String> {
        match self.0.list(dir) {
            Ok(entries) => Ok(Some(
                entries
                    .into_iter()
                    .map(|e| (e.name, if e.is_dir { Kind::Dir } else { Kind::File }))
                    .collect(),
            )),
            Err(FatError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
    fn read(&mut self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        match self.0.read_file(path, limit) {
            Ok(b) => Ok(Some(b)),
            Err(FatError::NotFound(_)) => Ok(None),
            Err(FatError::TooLarge { size, limit, .. }) => Err(too_large(size, limit)),
            Err(e) => Err(e.to_string()),
        }
    }
    fn label(&self) -> Option<String> {
        Some(self.0.label().to_string())
    }
}

impl Tree for Dir {
    fn list(&mut self, dir: &str) -> Result<Option<Vec<(String, Kind)>>, String> {
        let path = self.0.join(dir);
        let rd = match std::fs::read_dir(&path) {
            Ok(rd) => rd,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Ok(None)
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| e.to_string())?;
            let ft = e.file_type().map_err(|e| e.to_string())?;
            let kind = if ft.is_symlink() {
                let t = std::fs::read_link(e.path()).map_err(|e| e.to_string())?;
                Kind::Link(t.to_string_lossy().into_owned())
            } else if ft.is_dir() {
                Kind::Dir
            } else {
                Kind::File
            };
            out.push((e.file_name().to_string_lossy().into_owned(), kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Some(out))
    }
    fn read(&mut self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        let p = self.0.join(path);
        // Never follow a link out of the drive's folder.
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() && m.len() > limit => Err(too_large(m.len(), limit)),
            Ok(m) if m.is_file() => std::fs::read(&p).map(Some).map_err(|e| e.to_string()),
            Ok(_) => Err("not a regular file".into()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
    fn label(&self) -> Option<String> {
        None
    }
}

/// The readers name the file in their own message; the caller names it already.
fn too_large(size: u64, limit: u64) -> String {
    format!("{size} bytes, over the {limit}-byte limit")
}

/// Reads the drive at `path` (a device, an image file or an unpacked folder). An explicitly
/// named drive with another label is still read, with a warning.
pub fn read_drive(path: &Path) -> Result<Metadata, OpenStackError> {
    let at = |what: &str| format!("{}{what}", path.display());
    let mut tree = open_tree(path).map_err(|e| OpenStackError::Drive(at(""), e))?;
    let mut notes = Vec::new();
    if let Some(label) = tree.label().filter(|l| !is_drive_label(l)) {
        notes.push(format!(
            "{}: volume label is {label:?}, not {DRIVE_LABEL:?}",
            path.display()
        ));
    }
    let entries = tree
        .list("openstack")
        .map_err(|e| OpenStackError::Drive(at(": openstack/"), e))?
        .ok_or(OpenStackError::NoOpenStack)?;
    let mut probe_err = None;
    let (version, note) =
        choose_version(&entries, |v| match tree.list(&format!("openstack/{v}")) {
            Ok(Some(files)) => files
                .iter()
                .any(|(n, k)| n == super::schema::META_DATA && *k == Kind::File),
            Ok(None) => false,
            Err(e) => {
                probe_err.get_or_insert(OpenStackError::Drive(at(&format!(": openstack/{v}")), e));
                false
            }
        })
        .map_err(|e| probe_err.take().unwrap_or(e))?;
    notes.extend(note);
    let dir = format!("openstack/{version}");
    let mut read = |path: &str, limit: u64| {
        tree.read(path, limit)
            .map_err(|e| OpenStackError::Drive(at(&format!(": {path}")), e))
    };
    let file = |name: &str| format!("{dir}/{name}");
    let meta_data = read(&file(super::schema::META_DATA), MAX_JSON)?.unwrap_or_default();
    let network_data = read(&file(super::schema::NETWORK_DATA), MAX_JSON)?;
    let user_data = read(&file("user_data"), MAX_USER_DATA)?;
    let network_eni = match (&network_data, content_path(&meta_data)) {
        (None, Some(p)) => {
            let path = format!("openstack{p}");
            read(&path, MAX_JSON)?.map(|b| (path, b))
        }
        _ => None,
    };
    // Vendor data is never used: whatever it holds (or however large) only earns a note.
    for ignored in ["vendor_data.json", "vendor_data2.json"] {
        match read(&file(ignored), MAX_JSON) {
            Ok(Some(b)) if is_empty_json(&b) => {}
            Ok(None) => {}
            Ok(Some(_)) => notes.push(format!("{dir}/{ignored}: vendor data is not used by vmctx")),
            Err(_) => notes.push(format!(
                "{dir}/{ignored}: not read (vendor data is not used by vmctx)"
            )),
        }
    }
    Ok(Metadata {
        version: dir,
        meta_data,
        network_data,
        user_data,
        network_eni,
        notes,
    })
}

/// `network_config.content_path` of meta_data.json (`/content/0000`), when it stays inside
/// `openstack/content/`.
fn content_path(meta: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(meta).ok()?;
    let p = v.get("network_config")?.get("content_path")?.as_str()?;
    let ok = p.starts_with("/content/")
        && p[1..]
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    ok.then(|| p.to_string())
}

fn is_empty_json(b: &[u8]) -> bool {
    let t: String = String::from_utf8_lossy(b).split_whitespace().collect();
    t == "{}" || t.is_empty()
}

/// A device, image file (ISO9660 or FAT) or folder as a [`Tree`].
pub(crate) fn open_tree(path: &Path) -> Result<Box<dyn Tree>, String> {
    if path.is_dir() {
        Ok(Box::new(Dir(path.to_path_buf())))
    } else {
        open_image(path)
    }
}

fn open_image(path: &Path) -> Result<Box<dyn Tree>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    if crate::source::iso9660::read_volume_id(&file)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        let img = IsoImage::new(file).map_err(|e| e.to_string())?;
        return Ok(Box::new(Iso(img)));
    }
    if crate::source::vfat::read_label(&file)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        let img = FatImage::new(file).map_err(|e| e.to_string())?;
        return Ok(Box::new(Fat(img)));
    }
    Err("neither an ISO9660 nor a FAT filesystem".into())
}

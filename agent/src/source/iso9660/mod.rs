//! A small, read-only ISO9660 reader for contextualization CDs.
//!
//! The data comes from whoever built the VM's CD, so everything here is
//! untrusted: every offset and length is checked against the image, loops are
//! bounded, and nothing panics (the reader is fuzzed, see `agent/fuzz`).
//!
//! Supported: the primary volume descriptor (volume id, hierarchy), Rock Ridge
//! names (`NM`, with `CE` continuation areas) and modes (`PX`), relocated
//! directories (`RE`/`CL`), and Joliet names. Name resolution prefers Rock
//! Ridge, then Joliet, then the plain ISO9660 name without its `;1` version.
//!
//! Not supported, reported as [`IsoError::Malformed`] when such a file is
//! read: interleaved files (non-zero file unit size) and multi-extent files
//! (files over 4 GiB, never found on a context CD; they are listed with their
//! total size but not read). Only 2048-byte logical blocks are accepted.

mod directory;
mod joliet;
mod rock_ridge;
#[cfg(test)]
mod tests;

use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

use directory::Record;

/// Size of a logical sector (and of the only logical block size accepted).
pub const SECTOR_SIZE: u64 = 2048;
const SECTOR: usize = 2048;
/// The volume descriptor set starts at this sector.
const FIRST_VD_SECTOR: u64 = 16;
/// At most this many volume descriptors are read before giving up on a terminator.
const MAX_VOLUME_DESCRIPTORS: u64 = 64;
/// Paths deeper than this are refused.
pub const MAX_DEPTH: usize = 32;
/// Directories with more entries than this are malformed.
pub const MAX_DIR_ENTRIES: usize = 100_000;
/// Directories larger than this are malformed (keeps memory use bounded on block devices).
const MAX_DIR_BYTES: u64 = 64 << 20;

const FLAG_DIRECTORY: u8 = 0x02;
const FLAG_ASSOCIATED: u8 = 0x04;
const FLAG_MULTI_EXTENT: u8 = 0x80;

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not an ISO9660 image (no primary volume descriptor at sector 16)")]
    NotIso9660,
    #[error("truncated image: {0}")]
    Truncated(String),
    #[error("malformed image: {0}")]
    Malformed(String),
    #[error("no such file on the image: {0}")]
    NotFound(String),
    #[error("{path} is {size} bytes, over the {limit}-byte limit")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("the files in {dir} add up to {size} bytes, over the {limit}-byte limit (records sharing an extent, or too much data)")]
    FilesTooLarge { dir: String, size: u64, limit: u64 },
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Rock Ridge, Joliet or plain ISO9660 name (see [`IsoImage::name_source`]).
    pub name: String,
    pub is_dir: bool,
    /// Size in bytes (for directories: the size of the directory extent).
    pub size: u64,
    /// POSIX `st_mode` (file type and permission bits) from a Rock Ridge `PX` entry.
    pub mode: Option<u32>,
    /// The target of a Rock Ridge symbolic link (`mode` then has `S_IFLNK`).
    pub link: Option<String>,
}

/// Where the names returned by [`IsoImage::list`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// Rock Ridge `NM` entries in the primary hierarchy.
    RockRidge,
    /// The Joliet (UCS-2) supplementary hierarchy.
    Joliet,
    /// Plain ISO9660 names; path lookup falls back to case-insensitive matching.
    Iso9660,
}

#[derive(Debug, Clone, Copy)]
enum Names {
    RockRidge { skip: usize },
    Joliet,
    Iso9660,
}

/// A directory or file in the hierarchy in use.
#[derive(Debug, Clone)]
struct Node {
    entry: DirEntry,
    /// First sector of the data (after any extended attribute record).
    sector: u64,
    multi_extent: bool,
    interleaved: bool,
}

/// An ISO9660 image opened for reading.
pub struct IsoImage<R> {
    img: Image<R>,
    volume_id: String,
    root: Node,
    names: Names,
}

impl IsoImage<std::fs::File> {
    /// Opens an image file or a block device (such as `/dev/sr0`) read-only.
    pub fn open(path: &Path) -> Result<Self, IsoError> {
        Self::new(std::fs::File::open(path)?)
    }
}

impl<R: Read + Seek> IsoImage<R> {
    /// Parses the volume descriptor set and picks the hierarchy to read names from.
    pub fn new(reader: R) -> Result<Self, IsoError> {
        let mut img = Image::new(reader)?;
        let pvd = match img.read(FIRST_VD_SECTOR, 0, SECTOR_SIZE, || {
            "volume descriptor".into()
        }) {
            Ok(pvd) => pvd,
            Err(IsoError::Truncated(_)) => return Err(IsoError::NotIso9660),
            Err(e) => return Err(e),
        };
        if !is_volume_descriptor(&pvd, 1) {
            return Err(IsoError::NotIso9660);
        }
        let block_size = le16(&pvd, 128);
        if u64::from(block_size) != SECTOR_SIZE {
            return Err(malformed(format!(
                "logical block size {block_size} is not supported (only 2048)"
            )));
        }
        let volume_id = d_string(pvd.get(40..72).unwrap_or_default());
        let primary_root = root_node(&pvd, "primary")?;

        let mut joliet_root = None;
        for sector in FIRST_VD_SECTOR + 1..FIRST_VD_SECTOR + MAX_VOLUME_DESCRIPTORS {
            let vd = img.read(sector, 0, SECTOR_SIZE, || "volume descriptor".into())?;
            if vd.get(1..6) != Some(b"CD001".as_slice()) || vd[0] == 255 {
                break;
            }
            if vd[0] == 2 && joliet_root.is_none() && joliet::is_joliet(&vd) {
                // Only an error if the Joliet hierarchy is the one used.
                joliet_root = Some(root_node(&vd, "Joliet"));
            }
        }

        let names = match rock_ridge_skip(&mut img, &primary_root)? {
            Some(skip) => Names::RockRidge { skip },
            None if joliet_root.is_some() => Names::Joliet,
            None => Names::Iso9660,
        };
        let root = match (names, joliet_root) {
            (Names::Joliet, Some(root)) => root?,
            _ => primary_root,
        };
        Ok(Self {
            img,
            volume_id,
            root,
            names,
        })
    }

    /// The primary volume descriptor's volume id, trailing spaces trimmed.
    pub fn volume_id(&self) -> &str {
        &self.volume_id
    }

    /// Where names come from (Rock Ridge, Joliet or plain ISO9660).
    pub fn name_source(&self) -> NameSource {
        match self.names {
            Names::RockRidge { .. } => NameSource::RockRidge,
            Names::Joliet => NameSource::Joliet,
            Names::Iso9660 => NameSource::Iso9660,
        }
    }

    /// Lists a directory (`""` or `"/"` is the root), sorted by name, without `.` and `..`.
    pub fn list(&mut self, dir: &str) -> Result<Vec<DirEntry>, IsoError> {
        let (node, shown) = self.resolve(dir)?;
        if !node.entry.is_dir {
            return Err(IsoError::NotFound(format!("{shown} (not a directory)")));
        }
        let mut entries: Vec<DirEntry> = self
            .read_dir(&node, &shown)?
            .into_iter()
            .map(|n| n.entry)
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Describes one file or directory (the root is named `""`).
    pub fn stat(&mut self, path: &str) -> Result<DirEntry, IsoError> {
        Ok(self.resolve(path)?.0.entry)
    }

    /// Reads a whole file, refusing files over `limit` bytes.
    pub fn read_file(&mut self, path: &str, limit: u64) -> Result<Vec<u8>, IsoError> {
        let (node, shown) = self.resolve(path)?;
        if node.entry.is_dir {
            return Err(IsoError::NotFound(format!("{shown} (is a directory)")));
        }
        self.read_node(&node, shown, limit)
    }

    /// Reads every file directly in `dir`, sorted by name: one listing, then each file by its
    /// extent (a lookup by path would read the whole directory again for every file). Each is
    /// at most `limit` bytes; together at most `total` and the image's own size, since more
    /// than the image holds means records sharing an extent. Sizes are checked before any
    /// file is read.
    pub fn read_dir_files(
        &mut self,
        dir: &str,
        limit: u64,
        total: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, IsoError> {
        let (node, shown) = self.resolve(dir)?;
        if !node.entry.is_dir {
            return Err(IsoError::NotFound(format!("{shown} (not a directory)")));
        }
        let mut files: Vec<Node> = self
            .read_dir(&node, &shown)?
            .into_iter()
            .filter(|n| !n.entry.is_dir)
            .collect();
        files.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        let path = |n: &Node| format!("{}/{}", shown.trim_end_matches('/'), n.entry.name);
        let mut size = 0u64;
        for n in &files {
            if n.entry.size > limit {
                return Err(IsoError::TooLarge {
                    path: path(n),
                    size: n.entry.size,
                    limit,
                });
            }
            size = size.saturating_add(n.entry.size);
        }
        let bound = total.min(self.img.size);
        if size > bound {
            return Err(IsoError::FilesTooLarge {
                dir: shown,
                size,
                limit: bound,
            });
        }
        let mut out = Vec::with_capacity(files.len());
        for n in files {
            let bytes = self.read_node(&n, path(&n), limit)?;
            out.push((n.entry.name, bytes));
        }
        Ok(out)
    }

    /// Reads a file's data, refusing more than `limit` bytes and unsupported layouts.
    fn read_node(&mut self, node: &Node, shown: String, limit: u64) -> Result<Vec<u8>, IsoError> {
        let size = node.entry.size;
        if size > limit {
            return Err(IsoError::TooLarge {
                path: shown,
                size,
                limit,
            });
        }
        if node.multi_extent {
            return Err(malformed(format!(
                "{shown} is a multi-extent file (not supported)"
            )));
        }
        if node.interleaved {
            return Err(malformed(format!(
                "{shown} is an interleaved file (not supported)"
            )));
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        self.img
            .read(node.sector, 0, size, || format!("file {shown}"))
    }

    /// Walks `path` from the root; returns the node and the normalised path.
    fn resolve(&mut self, path: &str) -> Result<(Node, String), IsoError> {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let shown = format!("/{}", parts.join("/"));
        if parts.len() > MAX_DEPTH {
            return Err(IsoError::NotFound(format!(
                "{shown} (deeper than {MAX_DEPTH} levels)"
            )));
        }
        let fold_case = matches!(self.names, Names::Iso9660);
        let mut node = self.root.clone();
        let mut ancestors = vec![node.sector];
        let mut here = String::new();
        for part in parts {
            if !node.entry.is_dir {
                return Err(IsoError::NotFound(format!(
                    "{shown} ({here} is not a directory)"
                )));
            }
            let mut entries = self.read_dir(&node, or_root(&here))?;
            let found = entries
                .iter()
                .position(|n| n.entry.name == part)
                .or_else(|| {
                    fold_case
                        .then(|| {
                            entries
                                .iter()
                                .position(|n| n.entry.name.eq_ignore_ascii_case(part))
                        })
                        .flatten()
                });
            let Some(index) = found else {
                return Err(IsoError::NotFound(shown));
            };
            node = entries.swap_remove(index);
            here.push('/');
            here.push_str(&node.entry.name);
            if node.entry.is_dir {
                if ancestors.contains(&node.sector) {
                    return Err(malformed(format!(
                        "directory {here} loops back to an ancestor (sector {})",
                        node.sector
                    )));
                }
                ancestors.push(node.sector);
            }
        }
        Ok((node, shown))
    }
}

/// Reads only the primary volume descriptor at sector 16 and returns its volume id.
///
/// `Ok(None)` when sector 16 holds no primary volume descriptor (not an ISO9660
/// image); errors on I/O failures and on images too short to hold sector 16.
pub fn read_volume_id<R: Read + Seek>(reader: R) -> Result<Option<String>, IsoError> {
    let mut img = Image::new(reader)?;
    let pvd = img.read(FIRST_VD_SECTOR, 0, SECTOR_SIZE, || {
        "volume descriptor".into()
    })?;
    Ok(is_volume_descriptor(&pvd, 1).then(|| d_string(pvd.get(40..72).unwrap_or_default())))
}

/// The underlying reader plus its size, with bounds-checked reads.
struct Image<R> {
    reader: R,
    size: u64,
}

impl<R: Read + Seek> Image<R> {
    fn new(mut reader: R) -> Result<Self, IsoError> {
        // Seeking to the end also works for block devices, unlike metadata().len().
        let size = reader.seek(SeekFrom::End(0))?;
        Ok(Self { reader, size })
    }

    /// Reads `len` bytes at `offset` bytes into `sector`; `what` names the data in errors.
    fn read(
        &mut self,
        sector: u64,
        offset: u64,
        len: u64,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, IsoError> {
        let start = sector
            .checked_mul(SECTOR_SIZE)
            .and_then(|s| s.checked_add(offset));
        let range = start.and_then(|s| Some((s, s.checked_add(len)?)));
        let (start, buf_len) = match range {
            Some((start, end)) if end <= self.size => (start, usize::try_from(len).ok()),
            _ => return Err(self.beyond(what(), sector)),
        };
        let Some(buf_len) = buf_len else {
            return Err(self.beyond(what(), sector));
        };
        let mut buf = vec![0; buf_len];
        self.reader.seek(SeekFrom::Start(start))?;
        match self.reader.read_exact(&mut buf) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(self.beyond(what(), sector)),
            Err(e) => Err(e.into()),
        }
    }

    fn beyond(&self, what: String, sector: u64) -> IsoError {
        IsoError::Truncated(format!(
            "{what} at sector {sector} beyond end of image ({} sectors)",
            self.size / SECTOR_SIZE
        ))
    }
}

fn is_volume_descriptor(vd: &[u8], kind: u8) -> bool {
    vd.first() == Some(&kind) && vd.get(1..6) == Some(b"CD001".as_slice())
}

/// The root directory node from a primary or supplementary volume descriptor.
fn root_node(vd: &[u8], which: &str) -> Result<Node, IsoError> {
    let Some(root) = vd.get(156..190).and_then(Record::parse) else {
        return Err(malformed(format!(
            "{which} volume descriptor has a bad root directory record"
        )));
    };
    Ok(Node {
        entry: DirEntry {
            name: String::new(),
            is_dir: true,
            size: root.size,
            mode: None,
            link: None,
        },
        sector: root.sector,
        multi_extent: false,
        interleaved: root.interleaved,
    })
}

/// The SUSP skip length if the root's "." record starts with an `SP` entry.
fn rock_ridge_skip<R: Read + Seek>(
    img: &mut Image<R>,
    root: &Node,
) -> Result<Option<usize>, IsoError> {
    if root.entry.size == 0 {
        return Ok(None);
    }
    let len = root.entry.size.min(SECTOR_SIZE);
    let data = img.read(root.sector, 0, len, || "root directory".into())?;
    let len = usize::from(data[0]);
    Ok(data
        .get(..len)
        .and_then(Record::parse)
        .filter(|dot| dot.ident == [0])
        .and_then(|dot| rock_ridge::sp_skip(dot.system_use)))
}

/// A space-padded a-/d-character field (such as the volume id).
fn d_string(field: &[u8]) -> String {
    String::from_utf8_lossy(field)
        .trim_end_matches([' ', '\0'])
        .to_owned()
}

fn or_root(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

/// The little-endian half of a both-endian 32-bit field (0 if out of range).
fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn malformed(msg: String) -> IsoError {
    IsoError::Malformed(msg)
}

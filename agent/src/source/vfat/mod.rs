//! A small, read-only FAT (vfat) reader for config drives (OpenStack's `config-2`).
//!
//! The API mirrors [`super::iso9660`], so callers can treat both image kinds
//! alike. The data comes from whoever built the VM's disk, so everything here
//! is untrusted: every offset is checked against the image size, cluster
//! chains are followed with loop detection and a length bound, directories
//! are bounded ([`MAX_DIR_BYTES`]) and nothing is allocated for a file before
//! its size was checked against the caller's limit and its cluster chain.
//!
//! Supported: FAT12, FAT16 and FAT32 (told apart by the count of clusters, as
//! the Microsoft specification says), VFAT long names (UCS-2, checksum
//! verified), 8.3 names lower-cased per the NT flags, the volume label (root
//! directory entry, else the boot sector). The FAT in use is the first one,
//! or FAT32's active FAT when mirroring is off. Short names are read as
//! Latin-1 (no code page tables).
//!
//! Not supported: exFAT (reported as not FAT), and FAT32 layouts with fewer
//! than 65525 clusters (which the specification says are FAT16: reported as
//! malformed).

mod boot;
mod dir;
mod fat;
#[cfg(test)]
mod tests;

use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

/// Paths deeper than this are refused.
pub const MAX_DEPTH: usize = 32;
/// Directories larger than this (65536 entries, the limit of the specification and of
/// Linux) are malformed.
pub const MAX_DIR_BYTES: u64 = 2 << 20;
/// The part of the boot sector holding the BPB and the 0x55AA signature.
const BOOT_SECTOR: u64 = 512;
/// The label mkfs writes when none is given.
const NO_NAME: &str = "NO NAME";

#[derive(Debug, thiserror::Error)]
pub enum FatError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a FAT file system (no valid FAT boot sector)")]
    NotFat,
    #[error("truncated FAT image: {0}")]
    Truncated(String),
    #[error("malformed FAT file system: {0}")]
    Malformed(String),
    #[error("no such file on the FAT file system: {0}")]
    NotFound(String),
    #[error("{path} is {size} bytes, over the {limit}-byte limit")]
    TooLarge { path: String, size: u64, limit: u64 },
}

/// The FAT variant, decided by the count of data clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The long (VFAT) name, else the 8.3 name.
    pub name: String,
    pub is_dir: bool,
    /// Size in bytes (0 for directories: FAT does not record theirs).
    pub size: u64,
}

/// A file or directory found in a directory.
#[derive(Debug, Clone)]
struct Node {
    entry: DirEntry,
    /// The 8.3 name (also accepted in paths).
    short: String,
    /// First cluster; 0 for the root directory (and for empty files).
    cluster: u32,
}

/// Where a directory's entries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// The fixed root directory of FAT12/16: `bytes` at byte `offset`.
    Fixed { offset: u64, bytes: u64 },
    /// A cluster chain (all FAT32 directories, subdirectories of FAT12/16).
    Chain(u32),
}

/// The layout read from the boot sector, in bytes.
#[derive(Debug, Clone)]
struct Geometry {
    fat_type: FatType,
    sector_size: u64,
    cluster_size: u64,
    /// Offset and size of the FAT in use.
    fat_offset: u64,
    fat_bytes: u64,
    root: Dir,
    /// Offset of cluster 2.
    data_offset: u64,
    /// Usable data clusters: numbers 2..=clusters+1.
    clusters: u32,
    /// BS_VolLab, when the extended boot signature says it is there.
    boot_label: Option<String>,
}

/// A FAT file system opened for reading.
pub struct FatImage<R> {
    img: Image<R>,
    geo: Geometry,
    label: String,
    /// The FAT sector read last (sector index within the FAT, data).
    fat_cache: Option<(u64, Vec<u8>)>,
}

impl FatImage<std::fs::File> {
    /// Opens an image file or a block device (such as `/dev/vdb`) read-only.
    pub fn open(path: &Path) -> Result<Self, FatError> {
        Self::new(std::fs::File::open(path)?)
    }
}

impl<R: Read + Seek> FatImage<R> {
    /// Parses the boot sector and reads the volume label.
    pub fn new(reader: R) -> Result<Self, FatError> {
        let mut img = Image::new(reader)?;
        let Some((geo, label)) = probe(&mut img)? else {
            return Err(FatError::NotFat);
        };
        Ok(Self {
            img,
            geo,
            label,
            fat_cache: None,
        })
    }

    /// The volume label (root directory entry, else boot sector), trailing spaces trimmed;
    /// empty when there is none (or it is mkfs's `NO NAME`).
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn fat_type(&self) -> FatType {
        self.geo.fat_type
    }

    /// Lists a directory (`""` or `"/"` is the root), sorted by name, without `.`, `..`
    /// and volume labels.
    pub fn list(&mut self, dir: &str) -> Result<Vec<DirEntry>, FatError> {
        let (node, shown) = self.resolve(dir)?;
        if !node.entry.is_dir {
            return Err(FatError::NotFound(format!("{shown} (not a directory)")));
        }
        let mut entries: Vec<DirEntry> = self
            .read_dir(node.cluster, &shown)?
            .into_iter()
            .map(|n| n.entry)
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Describes one file or directory (the root is named `""`).
    pub fn stat(&mut self, path: &str) -> Result<DirEntry, FatError> {
        Ok(self.resolve(path)?.0.entry)
    }

    /// Reads a whole file, refusing files over `limit` bytes.
    pub fn read_file(&mut self, path: &str, limit: u64) -> Result<Vec<u8>, FatError> {
        let (node, shown) = self.resolve(path)?;
        if node.entry.is_dir {
            return Err(FatError::NotFound(format!("{shown} (is a directory)")));
        }
        let size = node.entry.size;
        if size > limit {
            return Err(FatError::TooLarge {
                path: shown,
                size,
                limit,
            });
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        let cs = self.geo.cluster_size;
        let needed = size.div_ceil(cs);
        let what = format!("file {shown}");
        if node.cluster == 0 {
            return Err(FatError::Truncated(format!(
                "{what} is {size} bytes but has no clusters"
            )));
        }
        if needed > u64::from(self.geo.clusters) {
            return Err(FatError::Truncated(format!(
                "{what} is {size} bytes, more than the whole data area ({} bytes)",
                u64::from(self.geo.clusters) * cs
            )));
        }
        let chain = self.chain(node.cluster, needed, &what)?;
        let have = chain.len() as u64;
        if have < needed {
            return Err(FatError::Truncated(format!(
                "{what} is {size} bytes, but its cluster chain ends after {have} clusters ({} bytes)",
                have * cs
            )));
        }
        // Contiguous clusters are read at once; all are checked before anything is allocated.
        let mut runs: Vec<(u32, u64)> = Vec::new();
        for c in chain {
            match runs.last_mut() {
                Some((first, n)) if u64::from(*first) + *n == u64::from(c) => *n += 1,
                _ => runs.push((c, 1)),
            }
        }
        let mut extents = Vec::with_capacity(runs.len());
        let mut left = size;
        for (first, n) in runs {
            let offset = self.geo.cluster_offset(first);
            let len = (n * cs).min(left);
            left -= len;
            if offset.saturating_add(len) > self.img.size {
                return Err(FatError::Truncated(format!(
                    "{what}: cluster {first} at byte {offset} lies beyond the end of the image ({} bytes)",
                    self.img.size
                )));
            }
            extents.push((offset, len));
        }
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for (offset, len) in extents {
            self.img
                .read_append(offset, len, &mut buf, || what.clone())?;
        }
        Ok(buf)
    }

    /// Walks `path` from the root; returns the node and the normalised path.
    fn resolve(&mut self, path: &str) -> Result<(Node, String), FatError> {
        let parts: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let shown = format!("/{}", parts.join("/"));
        if parts.len() > MAX_DEPTH {
            return Err(FatError::NotFound(format!(
                "{shown} (deeper than {MAX_DEPTH} levels)"
            )));
        }
        let mut node = Node {
            entry: DirEntry {
                name: String::new(),
                is_dir: true,
                size: 0,
            },
            short: String::new(),
            cluster: 0,
        };
        let mut ancestors = vec![self.dir_key(0)];
        let mut here = String::new();
        for part in parts {
            if !node.entry.is_dir {
                return Err(FatError::NotFound(format!(
                    "{shown} ({here} is not a directory)"
                )));
            }
            let mut entries = self.read_dir(node.cluster, or_root(&here))?;
            let found = entries
                .iter()
                .position(|n| n.entry.name == part)
                .or_else(|| entries.iter().position(|n| same_name(&n.entry.name, part)))
                .or_else(|| entries.iter().position(|n| same_name(&n.short, part)));
            let Some(index) = found else {
                return Err(FatError::NotFound(shown));
            };
            node = entries.swap_remove(index);
            here.push('/');
            here.push_str(&node.entry.name);
            if node.entry.is_dir {
                let key = self.dir_key(node.cluster);
                if ancestors.contains(&key) {
                    return Err(malformed(format!(
                        "directory {here} loops back to an ancestor (cluster {})",
                        node.cluster
                    )));
                }
                ancestors.push(key);
            }
        }
        Ok((node, shown))
    }

    /// Where the directory starting at `cluster` is (0 is the root, as in `..` entries).
    fn dir_at(&self, cluster: u32) -> Dir {
        if cluster == 0 {
            self.geo.root
        } else {
            Dir::Chain(cluster)
        }
    }

    /// Identifies a directory for loop detection.
    fn dir_key(&self, cluster: u32) -> u32 {
        match self.dir_at(cluster) {
            Dir::Fixed { .. } => 0,
            Dir::Chain(c) => c,
        }
    }

    /// Reads and decodes the entries of one directory (in on-disk order), up to its end marker.
    fn read_dir(&mut self, cluster: u32, path: &str) -> Result<Vec<Node>, FatError> {
        let mut parser = dir::Parser::new(self.geo.fat_type == FatType::Fat32);
        let cs = self.geo.cluster_size;
        let what = || format!("directory {path}");
        match self.dir_at(cluster) {
            Dir::Fixed { offset, bytes } => {
                let mut pos = 0;
                while pos < bytes && !parser.done {
                    let len = (bytes - pos).min(cs);
                    parser.feed_all(&self.img.read(offset + pos, len, what)?);
                    pos += len;
                }
            }
            Dir::Chain(first) => {
                let max = (MAX_DIR_BYTES / cs).max(1);
                let chain = self.chain(first, max + 1, &what())?;
                if chain.len() as u64 > max {
                    return Err(malformed(format!(
                        "directory {path} is larger than {MAX_DIR_BYTES} bytes"
                    )));
                }
                for c in chain {
                    if parser.done {
                        break;
                    }
                    let offset = self.geo.cluster_offset(c);
                    parser.feed_all(&self.img.read(offset, cs, what)?);
                }
            }
        }
        Ok(parser.nodes)
    }
}

/// Reads only the boot sector and the first cluster of the root directory, and returns
/// the volume label (empty if none).
///
/// `Ok(None)` when there is no FAT boot sector (not a FAT file system); errors on I/O
/// failures and on FAT file systems too damaged to read the label from.
pub fn read_label<R: Read + Seek>(reader: R) -> Result<Option<String>, FatError> {
    let mut img = Image::new(reader)?;
    Ok(probe(&mut img)?.map(|(_, label)| label))
}

/// Parses the boot sector and finds the label; `None` if this is not FAT at all.
fn probe<R: Read + Seek>(img: &mut Image<R>) -> Result<Option<(Geometry, String)>, FatError> {
    if img.size < BOOT_SECTOR {
        return Ok(None);
    }
    let boot = img.read(0, BOOT_SECTOR, || "boot sector".into())?;
    let Some(geo) = Geometry::parse(&boot)? else {
        return Ok(None);
    };
    // The label entry comes first in practice: only the root's first cluster is searched.
    let (offset, len) = match geo.root {
        Dir::Fixed { offset, bytes } => (offset, bytes.min(geo.cluster_size)),
        Dir::Chain(c) => (geo.cluster_offset(c), geo.cluster_size),
    };
    let data = img.read(offset, len, || "root directory".into())?;
    let mut parser = dir::Parser::new(geo.fat_type == FatType::Fat32);
    parser.feed_all(&data);
    let label = [parser.label, geo.boot_label.clone()]
        .into_iter()
        .flatten()
        .find(|l| !l.is_empty() && l != NO_NAME)
        .unwrap_or_default();
    Ok(Some((geo, label)))
}

/// The underlying reader plus its size, with bounds-checked reads.
struct Image<R> {
    reader: R,
    size: u64,
}

impl<R: Read + Seek> Image<R> {
    fn new(mut reader: R) -> Result<Self, FatError> {
        // Seeking to the end also works for block devices, unlike metadata().len().
        let size = reader.seek(SeekFrom::End(0))?;
        Ok(Self { reader, size })
    }

    /// Reads `len` bytes at byte `offset`; `what` names the data in errors.
    fn read(
        &mut self,
        offset: u64,
        len: u64,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, FatError> {
        let mut buf = Vec::new();
        self.read_append(offset, len, &mut buf, what)?;
        Ok(buf)
    }

    /// Like [`Image::read`], appending to `buf`.
    fn read_append(
        &mut self,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
        what: impl FnOnce() -> String,
    ) -> Result<(), FatError> {
        let fits = offset.checked_add(len).is_some_and(|end| end <= self.size);
        let start = buf.len();
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|_| fits)
        else {
            return Err(self.beyond(what(), offset));
        };
        buf.resize(end, 0);
        self.reader.seek(SeekFrom::Start(offset))?;
        match self.reader.read_exact(&mut buf[start..]) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(self.beyond(what(), offset)),
            Err(e) => Err(e.into()),
        }
    }

    fn beyond(&self, what: String, offset: u64) -> FatError {
        FatError::Truncated(format!(
            "{what} at byte {offset} runs past the end of the image ({} bytes)",
            self.size
        ))
    }
}

/// Case-insensitive name comparison (FAT names are).
fn same_name(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

fn or_root(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn malformed(msg: String) -> FatError {
    FatError::Malformed(msg)
}

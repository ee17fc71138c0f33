//! Directory entries: 32-byte short (8.3) entries, VFAT long-name entries in
//! front of them, volume labels, deleted entries and the end marker.

use super::{DirEntry, Node};

/// Size of one directory entry.
pub(super) const ENTRY: usize = 32;

const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
/// Read-only | hidden | system | volume id: the attribute byte of a long-name entry.
const ATTR_LONG_NAME: u8 = 0x0F;
const LAST_LONG_ENTRY: u8 = 0x40;
/// 255 UCS-2 characters at 13 per entry.
const MAX_LONG_ENTRIES: u8 = 20;
const CHARS_PER_ENTRY: usize = 13;
/// Byte offsets of the 13 UCS-2 characters in a long-name entry.
const LFN_OFFSETS: [usize; CHARS_PER_ENTRY] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
/// NT "lower case" flags in byte 12 of a short entry.
const LOWER_BASE: u8 = 0x08;
const LOWER_EXT: u8 = 0x10;
/// First name byte of a deleted entry, and the escape for a real 0xE5 first byte.
const DELETED: u8 = 0xE5;
const ESCAPED_E5: u8 = 0x05;

/// A long name being assembled from its entries (last part first on disk).
struct LongName {
    checksum: u8,
    /// Sequence number of the next entry expected; 0 once complete.
    next: u8,
    units: Vec<u16>,
}

/// Feeds the entries of one directory in on-disk order.
pub(super) struct Parser {
    fat32: bool,
    long: Option<LongName>,
    pub(super) nodes: Vec<Node>,
    /// The first volume-label entry seen.
    pub(super) label: Option<String>,
    /// Set at the end-of-directory marker: later entries are never read.
    pub(super) done: bool,
}

impl Parser {
    pub(super) fn new(fat32: bool) -> Self {
        Self {
            fat32,
            long: None,
            nodes: Vec::new(),
            label: None,
            done: false,
        }
    }

    /// Parses a whole chunk of entries (a cluster, or part of a fixed root directory).
    pub(super) fn feed_all(&mut self, data: &[u8]) {
        for raw in data.chunks_exact(ENTRY) {
            if self.done {
                return;
            }
            self.feed(raw);
        }
    }

    /// Parses one 32-byte entry.
    pub(super) fn feed(&mut self, e: &[u8]) {
        if self.done || e.len() < ENTRY {
            return;
        }
        let attr = e[11];
        match e[0] {
            0 => {
                self.done = true;
                return;
            }
            DELETED => {
                self.long = None;
                return;
            }
            _ => {}
        }
        if attr & 0x3F == ATTR_LONG_NAME {
            self.long_entry(e);
            return;
        }
        let long = self.long.take();
        let short: &[u8; 11] = match e[..11].try_into() {
            Ok(s) => s,
            Err(_) => return,
        };
        if attr & (ATTR_VOLUME_ID | ATTR_DIRECTORY) == ATTR_VOLUME_ID {
            if self.label.is_none() {
                self.label = Some(label_string(short));
            }
            return;
        }
        if attr & ATTR_VOLUME_ID != 0 || short == b".          " || short == b"..         " {
            return;
        }
        let short_name = short_name(short, e[12]);
        let name = long
            .filter(|l| l.next == 0 && l.checksum == checksum(short))
            .and_then(|l| decode_long(&l.units))
            .unwrap_or_else(|| short_name.clone());
        if name.is_empty() {
            return;
        }
        let hi = if self.fat32 { le16(e, 20) } else { 0 };
        let is_dir = attr & ATTR_DIRECTORY != 0;
        self.nodes.push(Node {
            entry: DirEntry {
                name,
                is_dir,
                size: if is_dir { 0 } else { u64::from(le32(e, 28)) },
            },
            short: short_name,
            cluster: u32::from(hi) << 16 | u32::from(le16(e, 26)),
        });
    }

    fn long_entry(&mut self, e: &[u8]) {
        let ord = e[0];
        let seq = ord & !LAST_LONG_ENTRY;
        // Type 0 is a name part; anything else (or a bad sequence number) is not ours.
        if seq == 0 || seq > MAX_LONG_ENTRIES || e[12] != 0 {
            self.long = None;
            return;
        }
        if ord & LAST_LONG_ENTRY != 0 {
            self.long = Some(LongName {
                checksum: e[13],
                next: seq,
                units: vec![0xFFFF; usize::from(seq) * CHARS_PER_ENTRY],
            });
        }
        match &mut self.long {
            Some(l) if l.next == seq && l.checksum == e[13] => {
                let at = usize::from(seq - 1) * CHARS_PER_ENTRY;
                for (i, off) in LFN_OFFSETS.iter().enumerate() {
                    if let Some(u) = l.units.get_mut(at + i) {
                        *u = le16(e, *off);
                    }
                }
                l.next -= 1;
            }
            // An orphan or out-of-order part: drop the whole name (the short name is used).
            _ => self.long = None,
        }
    }
}

/// The checksum of a short name stored in each of its long-name entries.
pub(super) fn checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// A long name up to its NUL (or 0xFFFF padding); `None` if empty or unusable in a path.
fn decode_long(units: &[u16]) -> Option<String> {
    let end = units
        .iter()
        .position(|&u| u == 0 || u == 0xFFFF)
        .unwrap_or(units.len());
    let name: String = char::decode_utf16(units[..end].iter().copied())
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    let usable = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
    usable.then_some(name)
}

/// The 8.3 name as `BASE.EXT`, lower-cased per the NT flags.
pub(super) fn short_name(short: &[u8; 11], nt_flags: u8) -> String {
    let mut base = oem_string(&short[..8]);
    let mut ext = oem_string(&short[8..]);
    if nt_flags & LOWER_BASE != 0 {
        base.make_ascii_lowercase();
    }
    if nt_flags & LOWER_EXT != 0 {
        ext.make_ascii_lowercase();
    }
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// An 11-byte volume label, trailing spaces trimmed.
pub(super) fn label_string(raw: &[u8; 11]) -> String {
    oem_string(raw)
}

/// Space-padded OEM bytes (read as Latin-1), with the 0x05 escape for a leading 0xE5.
fn oem_string(raw: &[u8]) -> String {
    let mut s: String = raw
        .iter()
        .enumerate()
        .map(|(i, &b)| match (i, b) {
            (0, ESCAPED_E5) => char::from(DELETED),
            _ => char::from(b),
        })
        .collect();
    s.truncate(s.trim_end_matches([' ', '\0']).len());
    s
}

pub(super) fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

pub(super) fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

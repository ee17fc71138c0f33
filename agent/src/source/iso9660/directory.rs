//! Directory records: parsing one directory's extent into entries, with names
//! from Rock Ridge, Joliet or plain ISO9660.

use std::io::{Read, Seek};

use super::{
    joliet, le32, malformed, rock_ridge, DirEntry, IsoError, IsoImage, Names, Node,
    FLAG_ASSOCIATED, FLAG_DIRECTORY, FLAG_MULTI_EXTENT, MAX_DIR_BYTES, MAX_DIR_ENTRIES, SECTOR,
    SECTOR_SIZE,
};

impl<R: Read + Seek> IsoImage<R> {
    /// Reads and decodes the records of one directory (in on-disk order).
    pub(super) fn read_dir(&mut self, dir: &Node, path: &str) -> Result<Vec<Node>, IsoError> {
        if dir.interleaved {
            return Err(malformed(format!(
                "directory {path} is interleaved (not supported)"
            )));
        }
        if dir.entry.size > MAX_DIR_BYTES {
            return Err(malformed(format!(
                "directory {path} is {} bytes, over the {MAX_DIR_BYTES}-byte limit",
                dir.entry.size
            )));
        }
        let data = self.img.read(dir.sector, 0, dir.entry.size, || {
            format!("directory {path}")
        })?;
        let mut nodes = Vec::new();
        // Multi-extent files: all records but the last carry FLAG_MULTI_EXTENT.
        let mut pending: Option<(String, u64)> = None;
        let mut count = 0usize;
        let mut pos = 0usize;
        while let Some(&len) = data.get(pos) {
            let sector_end = ((pos / SECTOR + 1) * SECTOR).min(data.len());
            let len = usize::from(len);
            if len == 0 {
                // Records never cross a sector boundary; the rest is zero padding.
                pos = sector_end;
                continue;
            }
            if pos + len > sector_end {
                let what = if sector_end == data.len() {
                    "runs past the end of the directory"
                } else {
                    "crosses a sector boundary"
                };
                return Err(malformed(format!(
                    "directory {path}: record at byte {pos} {what}"
                )));
            }
            let Some(raw) = data.get(pos..pos + len) else {
                return Err(malformed(format!(
                    "directory {path}: bad record at byte {pos}"
                )));
            };
            let Some(raw) = Record::parse(raw) else {
                return Err(malformed(format!(
                    "directory {path}: bad record at byte {pos}"
                )));
            };
            pos += len;
            if raw.ident == [0] || raw.ident == [1] {
                continue; // "." and ".."
            }
            count += 1;
            if count > MAX_DIR_ENTRIES {
                return Err(malformed(format!(
                    "directory {path} has more than {MAX_DIR_ENTRIES} entries"
                )));
            }
            if raw.flags & FLAG_ASSOCIATED != 0 {
                continue;
            }
            let Some(mut node) = self.decode(&raw, path)? else {
                continue;
            };
            if raw.flags & FLAG_MULTI_EXTENT != 0 {
                match &mut pending {
                    _ if node.entry.is_dir => {
                        return Err(malformed(format!(
                            "directory {path}: directory {:?} has the multi-extent flag",
                            node.entry.name
                        )));
                    }
                    Some((name, size)) if *name == node.entry.name => {
                        *size = size.saturating_add(node.entry.size);
                    }
                    Some((name, _)) => return Err(unfinished(path, name)),
                    None => pending = Some((node.entry.name, node.entry.size)),
                }
                continue;
            }
            if let Some((name, size)) = pending.take() {
                if name != node.entry.name {
                    return Err(unfinished(path, &name));
                }
                node.entry.size = size.saturating_add(node.entry.size);
                node.multi_extent = true;
            }
            nodes.push(node);
        }
        if let Some((name, _)) = pending {
            return Err(unfinished(path, &name));
        }
        Ok(nodes)
    }

    /// Turns a raw record into a node; `None` for entries to hide (relocated directories).
    fn decode(&mut self, raw: &Record<'_>, dir: &str) -> Result<Option<Node>, IsoError> {
        let mut node = Node {
            entry: DirEntry {
                name: String::new(),
                is_dir: raw.flags & FLAG_DIRECTORY != 0,
                size: raw.size,
                mode: None,
                link: None,
            },
            sector: raw.sector,
            multi_extent: false,
            interleaved: raw.interleaved,
        };
        node.entry.name = match self.names {
            Names::RockRidge { skip } => {
                let img = &mut self.img;
                let system_use = raw.system_use.get(skip..).unwrap_or_default();
                let rr = rock_ridge::parse(system_use, &mut |ce| {
                    img.read(ce.sector, ce.offset, ce.len, || {
                        "Rock Ridge continuation area".into()
                    })
                })?;
                if rr.relocated {
                    return Ok(None);
                }
                if let Some(sector) = rr.child_link {
                    let target = self.dot_record(sector, "relocated directory")?;
                    node.entry.is_dir = true;
                    node.entry.size = target.entry.size;
                    node.sector = target.sector;
                    node.interleaved = target.interleaved;
                }
                node.entry.mode = rr.mode;
                node.entry.link = rr.link;
                rr.name.unwrap_or_else(|| iso_name(raw.ident))
            }
            Names::Joliet => joliet::decode_name(raw.ident),
            Names::Iso9660 => iso_name(raw.ident),
        };
        let name = &node.entry.name;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(malformed(format!(
                "directory {dir}: invalid file name {name:?}"
            )));
        }
        Ok(Some(node))
    }

    /// The "." record at the start of the directory at `sector`.
    fn dot_record(&mut self, sector: u64, what: &str) -> Result<Node, IsoError> {
        let data = self.img.read(sector, 0, SECTOR_SIZE, || what.to_owned())?;
        let len = usize::from(data[0]);
        match data.get(..len).and_then(Record::parse) {
            Some(dot) if dot.ident == [0] => Ok(Node {
                entry: DirEntry {
                    name: String::new(),
                    is_dir: true,
                    size: dot.size,
                    mode: None,
                    link: None,
                },
                sector: dot.sector,
                multi_extent: false,
                interleaved: dot.interleaved,
            }),
            _ => Err(malformed(format!(
                "{what} at sector {sector} has no \".\" record"
            ))),
        }
    }
}

/// A directory record, borrowed from the directory's data.
pub(super) struct Record<'a> {
    pub(super) sector: u64,
    pub(super) size: u64,
    pub(super) flags: u8,
    pub(super) interleaved: bool,
    pub(super) ident: &'a [u8],
    pub(super) system_use: &'a [u8],
}

impl<'a> Record<'a> {
    /// Parses one record (exactly `LEN_DR` bytes); `None` if it is inconsistent.
    pub(super) fn parse(rec: &'a [u8]) -> Option<Self> {
        let ident_len = usize::from(*rec.get(32)?);
        let ident = rec.get(33..33 + ident_len).filter(|i| !i.is_empty())?;
        // A padding byte follows an even-length identifier.
        let system_use_start = 33 + ident_len + usize::from(ident_len % 2 == 0);
        Some(Self {
            // The data follows the extended attribute record, if any.
            sector: u64::from(le32(rec, 2)) + u64::from(*rec.get(1)?),
            size: u64::from(le32(rec, 10)),
            flags: *rec.get(25)?,
            interleaved: *rec.get(26)? != 0 || *rec.get(27)? != 0,
            ident,
            system_use: rec.get(system_use_start..).unwrap_or_default(),
        })
    }
}

/// A plain ISO9660 name: `FILE.EXT;1` → `FILE.EXT`, `FILE.;1` → `FILE`.
fn iso_name(ident: &[u8]) -> String {
    strip_version(&String::from_utf8_lossy(ident)).to_owned()
}

/// Removes a `;<digits>` version suffix and then one trailing `.`.
pub(super) fn strip_version(name: &str) -> &str {
    let base = match name.rsplit_once(';') {
        Some((base, version)) if version.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    };
    base.strip_suffix('.').unwrap_or(base)
}

fn unfinished(dir: &str, name: &str) -> IsoError {
    malformed(format!(
        "directory {dir}: multi-extent file {name:?} has no final extent"
    ))
}

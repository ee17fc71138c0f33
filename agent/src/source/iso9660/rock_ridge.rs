//! System Use Sharing Protocol (SUSP, IEEE P1281) and Rock Ridge (RRIP,
//! IEEE P1282) entries in the system use area of directory records.
//!
//! Only what a reader of context CDs needs: `SP` (detection and skip length),
//! `CE` (continuation areas), `ST`, `NM` (names, possibly split over several
//! entries with the CONTINUE flag), `PX` (mode), `SL` (symbolic link targets), `RE` and `CL`
//! (relocated directories). Everything else (`TF`, `ER`, ...) is skipped.

use std::borrow::Cow;

use super::{le32, IsoError, SECTOR};

/// At most this many continuation areas are followed per record (also breaks `CE` loops).
pub(super) const MAX_CONTINUATIONS: usize = 16;
/// Longer Rock Ridge names are malformed.
pub(super) const MAX_NAME_BYTES: usize = 1024;

const NM_CONTINUE: u8 = 0x01;
const NM_CURRENT: u8 = 0x02;
const NM_PARENT: u8 = 0x04;
const SL_CONTINUE: u8 = 0x01;
const SL_CURRENT: u8 = 0x02;
const SL_PARENT: u8 = 0x04;
const SL_ROOT: u8 = 0x08;

/// Where a `CE` entry says the system use entries continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Continuation {
    pub sector: u64,
    pub offset: u64,
    pub len: u64,
}

/// What the Rock Ridge entries of one directory record say.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct RockRidge {
    pub name: Option<String>,
    pub mode: Option<u32>,
    /// `SL`: the target of a symbolic link, as written (`2018-08-27`, `../x`, `/abs`).
    pub link: Option<String>,
    /// `RE`: this is a relocated directory; its real place is a `CL` entry elsewhere.
    pub relocated: bool,
    /// `CL`: this placeholder stands for the directory at this sector.
    pub child_link: Option<u64>,
}

/// The skip length (`LEN_SKP`) if `system_use` starts with a SUSP `SP` entry.
pub(super) fn sp_skip(system_use: &[u8]) -> Option<usize> {
    match *system_use {
        [b'S', b'P', len, _version, 0xBE, 0xEF, skip, ..] if len >= 7 => Some(usize::from(skip)),
        _ => None,
    }
}

/// Parses the entries of a system use area (after the skip bytes), following
/// `CE` continuation areas through `read_continuation`.
pub(super) fn parse(
    system_use: &[u8],
    read_continuation: &mut dyn FnMut(Continuation) -> Result<Vec<u8>, IsoError>,
) -> Result<RockRidge, IsoError> {
    let mut rr = RockRidge::default();
    let mut name = Vec::new();
    let mut name_done = false;
    let mut link = SymlinkTarget::default();
    let mut area = Cow::Borrowed(system_use);
    for hop in 0..=MAX_CONTINUATIONS {
        let mut next = None;
        for (sig, data) in entries(&area) {
            match &sig {
                b"CE" if data.len() >= 20 => {
                    next = Some(Continuation {
                        sector: u64::from(le32(data, 0)),
                        offset: u64::from(le32(data, 8)),
                        len: u64::from(le32(data, 16)),
                    });
                }
                b"NM" => {
                    let Some((&flags, part)) = data.split_first() else {
                        continue;
                    };
                    if name_done || flags & (NM_CURRENT | NM_PARENT) != 0 {
                        continue;
                    }
                    name.extend_from_slice(part);
                    if name.len() > MAX_NAME_BYTES {
                        return Err(IsoError::Malformed(format!(
                            "Rock Ridge name longer than {MAX_NAME_BYTES} bytes"
                        )));
                    }
                    name_done = flags & NM_CONTINUE == 0;
                }
                b"PX" if data.len() >= 4 => rr.mode = Some(le32(data, 0)),
                b"SL" => link.add(data)?,
                b"RE" => rr.relocated = true,
                b"CL" if data.len() >= 4 => rr.child_link = Some(u64::from(le32(data, 0))),
                _ => {}
            }
        }
        let Some(ce) = next else {
            break;
        };
        if hop == MAX_CONTINUATIONS {
            return Err(IsoError::Malformed(format!(
                "Rock Ridge entries chain more than {MAX_CONTINUATIONS} continuation areas"
            )));
        }
        if ce.offset.saturating_add(ce.len) > SECTOR as u64 {
            return Err(IsoError::Malformed(format!(
                "Rock Ridge continuation area at sector {} crosses a sector boundary \
                 (offset {}, length {})",
                ce.sector, ce.offset, ce.len
            )));
        }
        area = Cow::Owned(read_continuation(ce)?);
    }
    if !name.is_empty() {
        rr.name = Some(String::from_utf8_lossy(&name).into_owned());
    }
    rr.link = link.finish();
    Ok(rr)
}

/// A symbolic link's target, assembled from one or more `SL` entries (RRIP 4.1.3): each holds
/// component records `[flags, len, bytes…]`; a component flagged CONTINUE goes on in the next.
#[derive(Default)]
struct SymlinkTarget {
    parts: Vec<Vec<u8>>,
    /// The last component continues in the next record.
    open: bool,
    seen: bool,
    done: bool,
}

impl SymlinkTarget {
    fn add(&mut self, data: &[u8]) -> Result<(), IsoError> {
        let Some((&flags, mut records)) = data.split_first() else {
            return Ok(());
        };
        if self.done {
            return Ok(());
        }
        self.seen = true;
        while let [cflags, len, rest @ ..] = records {
            let len = usize::from(*len);
            let Some(bytes) = rest.get(..len) else {
                return Err(IsoError::Malformed(
                    "Rock Ridge symbolic link component runs past its entry".into(),
                ));
            };
            let piece: &[u8] = if cflags & SL_CURRENT != 0 {
                b"."
            } else if cflags & SL_PARENT != 0 {
                b".."
            } else if cflags & SL_ROOT != 0 {
                b""
            } else {
                bytes
            };
            match self.parts.last_mut() {
                Some(last) if self.open => last.extend_from_slice(piece),
                _ => self.parts.push(piece.to_vec()),
            }
            if self.parts.iter().map(Vec::len).sum::<usize>() > MAX_NAME_BYTES * 4 {
                return Err(IsoError::Malformed(
                    "Rock Ridge symbolic link target is too long".into(),
                ));
            }
            self.open = cflags & SL_CONTINUE != 0;
            records = &rest[len..];
        }
        self.done = flags & SL_CONTINUE == 0;
        Ok(())
    }

    fn finish(self) -> Option<String> {
        if !self.seen {
            return None;
        }
        let joined = self.parts.join(&b'/');
        // A ROOT component is empty and yields the leading "/".
        Some(String::from_utf8_lossy(&joined).into_owned()).map(|s| {
            if s.is_empty() {
                "/".into()
            } else {
                s
            }
        })
    }
}

/// The SUSP entries of an area as (signature, data after the 4-byte header),
/// up to an `ST` entry, the end of the area, or the first inconsistent entry.
fn entries(mut area: &[u8]) -> impl Iterator<Item = ([u8; 2], &[u8])> {
    std::iter::from_fn(move || {
        let &[a, b, len, _version, ..] = area else {
            return None;
        };
        let len = usize::from(len);
        if len < 4 || len > area.len() || [a, b] == *b"ST" {
            return None;
        }
        let data = area.get(4..len)?;
        area = area.get(len..)?;
        Some(([a, b], data))
    })
}

//! A tiny ISO9660 image builder for the tests: records and descriptors byte by byte.

const S: usize = 2048;

/// NM flag: the name continues in the next NM entry.
pub const NM_CONT: u8 = 1;

pub fn both16(v: u16) -> [u8; 4] {
    let (le, be) = (v.to_le_bytes(), v.to_be_bytes());
    [le[0], le[1], be[0], be[1]]
}

pub fn both32(v: u32) -> [u8; 8] {
    let (le, be) = (v.to_le_bytes(), v.to_be_bytes());
    [le[0], le[1], le[2], le[3], be[0], be[1], be[2], be[3]]
}

pub fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// A directory record.
pub fn record(sector: u32, size: u32, flags: u8, ident: &[u8], system_use: &[u8]) -> Vec<u8> {
    let pad = usize::from(ident.len() % 2 == 0);
    let len = 33 + ident.len() + pad + system_use.len();
    assert!(len <= 255, "record of {len} bytes");
    let mut r = vec![0u8; 33];
    r[0] = len as u8;
    r[2..10].copy_from_slice(&both32(sector));
    r[10..18].copy_from_slice(&both32(size));
    r[25] = flags;
    r[28..32].copy_from_slice(&both16(1));
    r[32] = ident.len() as u8;
    r.extend_from_slice(ident);
    r.resize(r.len() + pad, 0);
    r.extend_from_slice(system_use);
    r
}

pub fn file(sector: u32, size: u32, ident: &[u8], system_use: &[u8]) -> Vec<u8> {
    record(sector, size, 0, ident, system_use)
}

pub fn dir(sector: u32, size: u32, ident: &[u8], system_use: &[u8]) -> Vec<u8> {
    record(sector, size, 2, ident, system_use)
}

/// A SUSP entry: signature, length, version 1, data.
pub fn entry(sig: &[u8; 2], data: &[u8]) -> Vec<u8> {
    [&[sig[0], sig[1], (4 + data.len()) as u8, 1], data].concat()
}

pub fn sp(skip: u8) -> Vec<u8> {
    entry(b"SP", &[0xBE, 0xEF, skip])
}

pub fn nm(flags: u8, name: &[u8]) -> Vec<u8> {
    entry(b"NM", &[&[flags], name].concat())
}

pub fn px(mode: u32) -> Vec<u8> {
    entry(
        b"PX",
        &[both32(mode), both32(1), both32(0), both32(0)].concat(),
    )
}

pub fn ce(sector: u32, offset: u32, len: u32) -> Vec<u8> {
    entry(
        b"CE",
        &[both32(sector), both32(offset), both32(len)].concat(),
    )
}

/// Records laid out in sectors: a record never crosses a sector boundary.
fn layout(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        if out.len() % S + r.len() > S {
            out.resize(out.len().next_multiple_of(S), 0);
        }
        out.extend_from_slice(r);
    }
    out.resize(out.len().next_multiple_of(S), 0);
    out
}

pub struct Iso {
    pub bytes: Vec<u8>,
}

impl Iso {
    /// An empty system area (sectors 0-15).
    pub fn new() -> Self {
        Self {
            bytes: vec![0; 16 * S],
        }
    }

    pub fn put(&mut self, sector: u32, offset: usize, data: &[u8]) {
        let at = sector as usize * S + offset;
        let end = (at + data.len()).next_multiple_of(S);
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[at..at + data.len()].copy_from_slice(data);
    }

    /// Writes a directory with "." (carrying `dot_su`), ".." and `records`; returns its size.
    pub fn dir(&mut self, sector: u32, parent: u32, dot_su: &[u8], records: &[Vec<u8>]) -> u32 {
        let with = |size: u32| {
            let mut all = vec![dir(sector, size, &[0], dot_su), dir(parent, 0, &[1], &[])];
            all.extend_from_slice(records);
            layout(&all)
        };
        let size = with(0).len() as u32;
        self.put(sector, 0, &with(size));
        size
    }

    fn descriptor(&mut self, sector: u32, kind: u8, volume_id: &str, root: (u32, u32)) -> Vec<u8> {
        let mut vd = vec![0u8; S];
        vd[0] = kind;
        vd[1..6].copy_from_slice(b"CD001");
        vd[6] = 1;
        vd[8..40].fill(b' ');
        vd[40..72].fill(b' ');
        vd[40..40 + volume_id.len()].copy_from_slice(volume_id.as_bytes());
        vd[128..132].copy_from_slice(&both16(2048));
        vd[156..190].copy_from_slice(&dir(root.0, root.1, &[0], &[]));
        self.put(sector, 0, &vd);
        vd
    }

    pub fn pvd(&mut self, volume_id: &str, root: u32, root_size: u32) {
        self.descriptor(16, 1, volume_id, (root, root_size));
    }

    pub fn svd_joliet(&mut self, sector: u32, root: u32, root_size: u32) {
        let mut vd = self.descriptor(sector, 2, "", (root, root_size));
        vd[88..91].copy_from_slice(b"%/E");
        self.put(sector, 0, &vd);
    }

    pub fn terminator(&mut self, sector: u32) {
        let mut vd = vec![0u8; S];
        vd[0] = 255;
        vd[1..6].copy_from_slice(b"CD001");
        vd[6] = 1;
        self.put(sector, 0, &vd);
    }
}

//! The FAT: following cluster chains, with loop detection.

use std::io::{Read, Seek};

use super::{malformed, FatError, FatImage, FatType};

impl<R: Read + Seek> FatImage<R> {
    /// Follows the cluster chain from `first` for at most `max` clusters (fewer if it ends).
    /// A chain that visits a cluster twice (or is longer than the count of clusters) loops.
    pub(super) fn chain(&mut self, first: u32, max: u64, what: &str) -> Result<Vec<u32>, FatError> {
        let last = self.geo.clusters.saturating_add(1);
        if !(2..=last).contains(&first) {
            return Err(malformed(format!(
                "{what} starts at cluster {first}, outside the data area (clusters 2 to {last})"
            )));
        }
        let max = max.min(u64::from(self.geo.clusters) + 1);
        let mut out = Vec::new();
        let mut c = first;
        loop {
            out.push(c);
            if out.len() as u64 >= max {
                break;
            }
            match self.next_cluster(c, what)? {
                Some(n) => c = n,
                None => break,
            }
        }
        let mut sorted = out.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(malformed(format!(
                "{what}: its cluster chain loops (cluster {} comes twice)",
                w[0]
            )));
        }
        Ok(out)
    }

    /// The cluster after `c`, or `None` at the end of the chain.
    fn next_cluster(&mut self, c: u32, what: &str) -> Result<Option<u32>, FatError> {
        let v = self.fat_entry(c)?;
        let (bad, end) = match self.geo.fat_type {
            FatType::Fat12 => (0xFF7, 0xFF8),
            FatType::Fat16 => (0xFFF7, 0xFFF8),
            FatType::Fat32 => (0x0FFF_FFF7, 0x0FFF_FFF8),
        };
        let last = self.geo.clusters.saturating_add(1);
        match v {
            v if v >= end => Ok(None),
            v if v == bad => Err(malformed(format!(
                "{what}: cluster {c} is followed by a cluster marked bad"
            ))),
            0 | 1 => Err(malformed(format!(
                "{what}: cluster {c} is followed by a free cluster"
            ))),
            v if v > last => Err(malformed(format!(
                "{what}: cluster {c} is followed by cluster {v}, beyond the last one ({last})"
            ))),
            v => Ok(Some(v)),
        }
    }

    /// The FAT entry of cluster `c` (masked to 28 bits on FAT32).
    fn fat_entry(&mut self, c: u32) -> Result<u32, FatError> {
        let n = u64::from(c);
        let (at, width) = match self.geo.fat_type {
            FatType::Fat12 => (n + n / 2, 2),
            FatType::Fat16 => (n * 2, 2),
            FatType::Fat32 => (n * 4, 4),
        };
        if at + width > self.geo.fat_bytes {
            return Err(malformed(format!(
                "cluster {c} is beyond the end of the FAT"
            )));
        }
        let mut v = 0u32;
        for i in 0..width {
            v |= u32::from(self.fat_byte(at + i)?) << (8 * i);
        }
        Ok(match self.geo.fat_type {
            FatType::Fat12 if c & 1 == 1 => v >> 4,
            FatType::Fat12 => v & 0xFFF,
            FatType::Fat16 => v,
            FatType::Fat32 => v & 0x0FFF_FFFF,
        })
    }

    /// One byte of the FAT in use, through a one-sector cache.
    fn fat_byte(&mut self, at: u64) -> Result<u8, FatError> {
        let ss = self.geo.sector_size;
        let sector = at / ss;
        let cached = matches!(&self.fat_cache, Some((s, _)) if *s == sector);
        if !cached {
            let offset = self.geo.fat_offset + sector * ss;
            let data = self.img.read(offset, ss, || "the FAT".into())?;
            self.fat_cache = Some((sector, data));
        }
        self.fat_cache
            .as_ref()
            .and_then(|(_, data)| usize::try_from(at % ss).ok().and_then(|i| data.get(i)))
            .copied()
            .ok_or_else(|| malformed(format!("FAT byte {at} is out of range")))
    }
}

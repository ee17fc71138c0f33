//! The boot sector: telling FAT from anything else, and the layout of the file system.

use super::dir::{self, le16, le32};
use super::{malformed, Dir, FatError, FatType, Geometry};

impl Geometry {
    /// `None` when the sector is no FAT boot sector (signature, jump or basic BPB values);
    /// `Malformed` when it is one but its layout does not add up.
    pub(super) fn parse(b: &[u8]) -> Result<Option<Self>, FatError> {
        let byte = |at: usize| b.get(at).copied().unwrap_or(0);
        let bps = u64::from(le16(b, 11));
        let spc = u64::from(byte(13));
        let reserved = u64::from(le16(b, 14));
        let fats = u64::from(byte(16));
        let root_entries = u64::from(le16(b, 17));
        let media = byte(21);
        let fat16_size = le16(b, 22);
        let total = match le16(b, 19) {
            0 => u64::from(le32(b, 32)),
            n => u64::from(n),
        };
        let fat_sectors = match fat16_size {
            0 => u64::from(le32(b, 36)),
            n => u64::from(n),
        };
        let looks_fat = b.get(510..512) == Some([0x55, 0xAA].as_slice())
            && matches!(byte(0), 0xEB | 0xE9)
            && (512..=4096).contains(&bps)
            && bps.is_power_of_two()
            && spc.is_power_of_two()
            && reserved >= 1
            && fats >= 1
            && (media == 0xF0 || media >= 0xF8)
            && total != 0
            && fat_sectors != 0;
        if !looks_fat {
            return Ok(None);
        }
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let fat_start = reserved;
        let root_start = fat_start + fats * fat_sectors;
        let data_start = root_start + root_sectors;
        let Some(data_sectors) = total.checked_sub(data_start) else {
            return Err(malformed(format!(
                "the boot sector says {total} sectors, fewer than the {data_start} taken by the \
                 reserved sectors, FATs and root directory"
            )));
        };
        let count = data_sectors / spc;
        let fat_type = fat_type(count, root_entries, fat16_size)?;
        let ext_flags = le16(b, 40);
        let active = if fat_type == FatType::Fat32 && ext_flags & 0x80 != 0 {
            u64::from(ext_flags & 0x0F)
        } else {
            0
        };
        if active >= fats {
            return Err(malformed(format!(
                "the active FAT is number {active}, but there are only {fats}"
            )));
        }
        let fat_bytes = fat_sectors * bps;
        let (fat_entries, max_clusters) = match fat_type {
            FatType::Fat12 => (fat_bytes * 2 / 3, u64::MAX),
            FatType::Fat16 => (fat_bytes / 2, u64::MAX),
            FatType::Fat32 => (fat_bytes / 4, 0x0FFF_FFF5),
        };
        // Like Linux: clusters the FAT has no entry for are not used.
        let clusters = count.min(fat_entries.saturating_sub(2)).min(max_clusters);
        let clusters = u32::try_from(clusters)
            .map_err(|_| malformed(format!("{clusters} clusters are too many")))?;
        let root = if fat_type == FatType::Fat32 {
            let c = le32(b, 44);
            if !(2..=clusters.saturating_add(1)).contains(&c) {
                return Err(malformed(format!(
                    "the root directory starts at cluster {c}, outside the data area"
                )));
            }
            Dir::Chain(c)
        } else {
            Dir::Fixed {
                offset: root_start * bps,
                bytes: root_entries * 32,
            }
        };
        let (sig_at, label_at) = match fat_type {
            FatType::Fat32 => (66, 71),
            _ => (38, 43),
        };
        let boot_label = (byte(sig_at) == 0x29)
            .then(|| b.get(label_at..label_at + 11)?.try_into().ok())
            .flatten()
            .map(dir::label_string);
        Ok(Some(Self {
            fat_type,
            sector_size: bps,
            cluster_size: spc * bps,
            fat_offset: (fat_start + active * fat_sectors) * bps,
            fat_bytes,
            root,
            data_offset: data_start * bps,
            clusters,
            boot_label,
        }))
    }

    /// Byte offset of cluster `c` (2 or more).
    pub(super) fn cluster_offset(&self, c: u32) -> u64 {
        self.data_offset + u64::from(c.saturating_sub(2)) * self.cluster_size
    }
}

/// The FAT type `count` clusters make (as Microsoft's specification decides it), checked
/// against the boot sector's layout: FAT32 has no fixed root directory and a 32-bit FAT size.
fn fat_type(count: u64, root_entries: u64, fat16_size: u16) -> Result<FatType, FatError> {
    let fat_type = match count {
        0..4085 => FatType::Fat12,
        4085..65525 => FatType::Fat16,
        _ => FatType::Fat32,
    };
    if fat_type == FatType::Fat32 {
        if root_entries != 0 || fat16_size != 0 {
            return Err(malformed(format!(
                "{count} clusters make it FAT32, but the boot sector has a FAT12/16 layout"
            )));
        }
    } else if fat16_size == 0 {
        return Err(malformed(format!(
            "the boot sector has a FAT32 layout, but {count} clusters make it {fat_type:?} \
             (FAT32 needs at least 65525)"
        )));
    } else if root_entries == 0 {
        return Err(malformed(format!(
            "{fat_type:?} file system without root directory entries"
        )));
    }
    Ok(fat_type)
}

//! Reading a context CD (an image file or a block device) without mounting it.

use super::super::iso9660::{IsoError, IsoImage};
use super::super::{
    context_sh, Raw, SourceError, MAX_CONTEXT_FILE, MAX_CONTEXT_FILES, MAX_CONTEXT_SH,
};
use crate::context::Origin;
use std::path::Path;

/// The volume label OpenNebula gives the context CD.
pub const CONTEXT_LABEL: &str = "CONTEXT";

/// Reads `context.sh` and the other files (bounded) from the CD at `path`, once: nothing
/// reads the CD again, which a reconfiguration may be swapping. An explicitly named image with
/// another label is still read (with a warning); a detected one always has the label.
pub fn read_cd(path: &Path, explicit: bool) -> Result<Raw, SourceError> {
    read(path, explicit, true)
}

/// Only `context.sh` of the CD at `path`, none of the files beside it: what a host's metadata
/// sidecar needs of each VM's CD (its builds stay small however large the scripts are).
pub fn read_cd_context(path: &Path) -> Result<Raw, SourceError> {
    read(path, true, false)
}

fn read(path: &Path, explicit: bool, with_files: bool) -> Result<Raw, SourceError> {
    let at = Origin::OpenNebula(path.to_path_buf());
    let origin = at.to_string();
    let iso = |source: IsoError| SourceError::Iso {
        origin: origin.clone(),
        source,
    };
    let mut image = IsoImage::open(path).map_err(|e| match e {
        IsoError::Io(source) => SourceError::Io {
            origin: origin.clone(),
            source,
        },
        other => iso(other),
    })?;
    let mut warnings = Vec::new();
    let label = image.volume_id().to_string();
    if label != CONTEXT_LABEL && explicit {
        warnings.push(format!(
            "{origin}: volume label is {label:?}, not {CONTEXT_LABEL:?}"
        ));
    }
    let entries = image.list("/").map_err(iso)?;
    if !entries.iter().any(|e| e.name == "context.sh" && !e.is_dir) {
        return Err(SourceError::NoContextSh { origin });
    }
    let bytes = image
        .read_file("/context.sh", MAX_CONTEXT_SH)
        .map_err(iso)?;
    let mut files = if with_files {
        image
            .read_dir_files("/", MAX_CONTEXT_FILE, MAX_CONTEXT_FILES)
            .map_err(iso)?
    } else {
        Vec::new()
    };
    files.retain(|(n, _)| n != "context.sh");
    Ok(Raw {
        origin: at,
        parsed: context_sh::parse(&bytes),
        files,
        warnings,
        cloud: None,
    })
}

/// Every file in the CD's root folder, each at most `limit` bytes, all together at most
/// [`MAX_CONTEXT_FILES`] (and the image's size).
pub fn read_cd_files(path: &Path, limit: u64) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
    let origin = Origin::OpenNebula(path.to_path_buf()).to_string();
    let iso = |source: IsoError| SourceError::Iso {
        origin: origin.clone(),
        source,
    };
    let mut image = IsoImage::open(path).map_err(iso)?;
    image
        .read_dir_files("/", limit, MAX_CONTEXT_FILES)
        .map_err(iso)
}

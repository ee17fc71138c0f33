//! `write_files` of a `#cloud-config`: each file written atomically (never through a symlink)
//! with its permissions and owner, or appended to. Once per instance, as cloud-init: an
//! `append` must not grow the file on every boot.

use super::users::lookup;
use super::Apply;
use crate::context::{CloudConfig, WriteFile};
use crate::files::{Dir, NewFile};
use crate::state::State;

const MARKER: &str = "write-files";

pub fn apply(ap: &mut Apply, cc: Option<&CloudConfig>, instance_id: &str, state: &State) {
    let Some(cc) = cc else { return };
    if cc.write_files.is_empty() {
        return;
    }
    if state.done(instance_id, MARKER) {
        for f in &cc.write_files {
            ap.unchanged("write_file", &f.path, "already written for this instance");
        }
        return;
    }
    let mut failed = 0;
    for f in &cc.write_files {
        match write(ap, f) {
            Ok(detail) => ap.changed("write_file", &f.path, detail),
            Err(e) => {
                failed += 1;
                ap.failed("write_file", &f.path, e);
            }
        }
    }
    if !ap.dry_run {
        let note = format!("{} files, {failed} failed", cc.write_files.len());
        if let Err(e) = state.mark_done(instance_id, MARKER, &note) {
            ap.failed("state", MARKER, format!("done marker: {e}"));
        }
    }
}

/// `user:group` → ids, from the tree's own passwd and group files.
fn owner(ap: &Apply, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = spec.split_once(':').unwrap_or((spec, ""));
    let passwd = std::fs::read_to_string(ap.root.path("/etc/passwd")).unwrap_or_default();
    let acct = lookup(&passwd, user).ok_or_else(|| format!("owner {user:?}: no such user"))?;
    if group.is_empty() {
        return Ok((acct.uid, acct.gid));
    }
    let groups = std::fs::read_to_string(ap.root.path("/etc/group")).unwrap_or_default();
    let gid = groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3 && f[0] == group).then(|| f[2].parse::<u32>().ok())?
        })
        .ok_or_else(|| format!("owner group {group:?}: no such group"))?;
    Ok((acct.uid, gid))
}

/// Written through the target folder's descriptor, its mode and owner set before the rename:
/// a user who owns a folder on the way cannot swap it for a link, nor catch the file at a
/// wider mode.
fn write(ap: &mut Apply, f: &WriteFile) -> Result<String, String> {
    let path = ap.root.path(&f.path);
    let ids = owner(ap, &f.owner)?;
    let detail = format!(
        "{} {} bytes, {:04o} {}",
        if f.append { "appended" } else { "wrote" },
        f.bytes,
        f.permissions,
        f.owner
    );
    if ap.dry_run {
        return Ok(detail);
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err("not a file path".into());
    };
    let dir = Dir::open(parent, Some(0o755)).map_err(|e| e.to_string())?;
    let name = name.to_string_lossy();
    let mut content = f.content.clone();
    if f.append {
        let old = dir
            .read(name.as_ref().as_ref())
            .map_err(|e| e.to_string())?;
        content = [old.unwrap_or_default(), content].concat();
    }
    let new = NewFile::owned(f.permissions, Some(ids)).exact();
    ap.write_at(&dir, &name, &content, new)
        .map_err(|e| e.to_string())?;
    Ok(detail)
}

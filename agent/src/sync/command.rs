//! `vmctx sync`: settings, then one cycle (`--once`) or a cycle every interval. The environment
//! (`env`, which `main.rs` reads) is taken as a value, as the rest of the engine does.

use super::config::{self, Flags};
use super::{Report, SyncError};
use crate::files::Root;
use std::path::Path;

/// Runs the command; `Ok(true)` = in step (exit 0), `Ok(false)` = some files failed (exit 1).
pub fn run(
    flags: Flags,
    root: &Path,
    env: &super::creds::Env,
    once: bool,
    json: bool,
) -> Result<bool, String> {
    let opts = config::resolve(flags, &Root::new(root), env)?;
    let show = |r: &Result<Report, SyncError>| match r {
        Ok(rep) if json => println!("{}", serde_json::to_string(rep).unwrap_or_default()),
        Ok(rep) => print!("{}", rep.summary()),
        Err(e) => eprintln!("vmctx: sync: {}", super::local::shown(&e.to_string())),
    };
    if once {
        let rep = super::once(&opts, env)
            .map_err(|e| format!("sync: {}", super::local::shown(&e.to_string())))?;
        let in_step = rep.failed.is_empty();
        show(&Ok(rep));
        return Ok(in_step);
    }
    super::forever(&opts, env, |r| show(&r));
    Ok(true)
}

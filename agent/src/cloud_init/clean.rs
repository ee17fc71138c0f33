//! `cloud-init clean [--logs] [--machine-id] [-s/--seed]`: vmctx's own `vmctx clean` (its state,
//! and on request its logs and the machine id). Quiet on success, as cloud-init is. `--seed`
//! is accepted (vmctx keeps no seed directory); `--reboot` is refused: an image pipeline
//! reboots by itself, and a shim should not power off a machine.

use std::path::Path;

#[derive(Debug, Clone, Copy, Default)]
pub struct Args {
    pub logs: bool,
    pub machine_id: bool,
    pub seed: bool,
    pub reboot: bool,
}

pub fn run(root: &Path, args: Args) -> u8 {
    if args.reboot {
        eprintln!(
            "cloud-init clean --reboot: refused by vmctx (standing in for cloud-init); \
             run `cloud-init clean` and reboot yourself"
        );
        return 1;
    }
    let opts = crate::clean::Options {
        logs: args.logs,
        machine_id: args.machine_id,
        host_keys: false,
        dry_run: false,
    };
    let _lock = crate::status::lock(root);
    let report = crate::clean::clean(root, opts);
    for e in &report.errors {
        eprintln!("ERROR: Could not remove {e}");
    }
    u8::from(!report.errors.is_empty())
}

//! One stage of `vmctx apply` as the command runs it: read the context (waiting for the CD),
//! check it, read the links, apply, print the report; and how the stage ended, for
//! `/run/vmctx/status.json` (see `crate::status`).

use crate::facts;
use crate::source::{self, Source};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// One stage of `vmctx apply`: the exit code (or the error) and how the stage ended.
pub fn apply_stage(
    root: &Path,
    source: Source,
    stage: crate::apply::Stage,
    dry_run: bool,
    json: bool,
    wait: u64,
    settings: &crate::settings::Settings,
) -> (Result<ExitCode, String>, crate::status::StageEnd) {
    use crate::status::StageEnd;
    let failed = |msg: String| (Err(msg.clone()), StageEnd::error(msg));
    let none = |code: ExitCode| {
        let end = StageEnd {
            no_context: true,
            ..StageEnd::default()
        };
        (Ok(code), end)
    };
    let wait = Duration::from_secs(wait);
    let local = stage == crate::apply::Stage::Local;
    if local && source.is_network() {
        eprintln!("vmctx: {source} is read in the final stage (after the network is up); nothing to do now");
        return none(ExitCode::SUCCESS);
    }
    let read = if local {
        source::read_local(&source, root, wait, &settings.imds)
    } else {
        source::read_waiting(&source, root, wait, &settings.imds)
    };
    let raw = match read {
        Ok(raw) => raw,
        // A VM without any context: nothing to do, and not a failure.
        Err(source::SourceError::NotFound(why)) if source == Source::Auto => {
            if local {
                return none(local_without_cd(root, &why));
            }
            eprintln!("vmctx: no context found ({why}); nothing to do");
            return none(ExitCode::SUCCESS);
        }
        // Not readable: say so and leave the working configuration as it is.
        Err(e) => return failed(format!("{e}; nothing was changed")),
    };
    let origin = raw.origin.to_string();
    let ds = crate::cloud_init::instance::Ds::from_raw(&raw);
    let ctx = match source::to_context_checked(raw) {
        Ok(ctx) => ctx,
        Err(e) => return failed(format!("{e}; nothing was changed")),
    };
    let links = match facts::live_links() {
        Ok(l) => l,
        Err(e) => return failed(format!("{e}; nothing was changed")),
    };
    let facts = facts::Facts::gather(root, links, &ctx);
    // The plan is the program: what invalid values configure is not in it, the rest is done.
    let plan = crate::plan::build(&ctx, &facts);
    let report = crate::apply::apply(&plan, &facts, root, stage, dry_run, settings);
    let mut end = StageEnd::from_report(&report, &origin);
    end.warnings.splice(0..0, ctx.warnings.iter().cloned());
    if !dry_run {
        crate::cloud_init::instance::record(root, &ds, &ctx);
    }
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => return (Err(e.to_string()), end),
        }
    } else {
        print!("{}", report.summary());
    }
    // Invalid values (the report's errors): something asked for was not done.
    let code = if report.failed == 0 && report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    (Ok(code), end)
}

/// The local stage found no CONTEXT volume. When DMI names a cloud, its metadata service is
/// read in the final stage: leave the flag that lets `vmctx.service` start.
fn local_without_cd(root: &Path, why: &str) -> ExitCode {
    let mut evidence = Vec::new();
    match source::detect::dmi_cloud(root, &mut evidence) {
        Some(cloud) => {
            let flag = crate::files::Root::new(root).path("/run/vmctx/context");
            let new = crate::files::NewFile::mode(0o644);
            let which: &[u8] = if cloud == source::detect::OPENSTACK {
                b"openstack\n"
            } else {
                b"ec2\n"
            };
            if let Err(e) = crate::files::write_atomic(&flag, which, new) {
                eprintln!("vmctx: {}: {e}", flag.display());
                return ExitCode::from(1);
            }
            eprintln!(
                "vmctx: no context CD; DMI says {cloud}: its metadata is read in the final stage"
            );
        }
        None => eprintln!("vmctx: no context found ({why}); nothing to do"),
    }
    ExitCode::SUCCESS
}

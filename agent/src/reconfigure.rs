//! `vmctx reconfigure`: re-applies the context after a NIC was attached or detached or the
//! context CD changed (started by udev through `vmctx-reconfigure.service`).
//!
//! Events come in bursts (OpenNebula attaches the NIC and swaps the CD for one with the new
//! `ETHx_*` variables), and systemd merges a start request for a service that is already
//! starting into that run. So vmctx first waits until what it looks at — the links (by MAC and
//! name) and the CONTEXT volume's variables — stayed the same for the settle time, applies, and
//! then looks again: a change that arrived while it was applying is applied in another round.
//!
//! Only the local stage runs (links, addresses, routes, DNS, hostname, users, keys): apply is
//! idempotent, so what did not change is left alone, the addresses of a NIC that left are
//! forgotten, and a NIC that arrived gets its configuration. Per-instance work (start scripts,
//! user-data, reporting ready) does not run again — unless the CD now names another instance
//! (a new `VMID`): then this is a new instance, and the whole context is applied (both stages)
//! as at its first boot. Without a context CD at that moment (it is being swapped), nothing is
//! changed. Only the OpenNebula CD (or `--source dir:`/`opennebula:`) is read here.

use crate::apply::{self, Report, Stage};
use crate::facts::{self, Facts, Links};
use crate::settings::{Imds, Settings};
use crate::source::{self, Raw, Source, SourceError};
use crate::state::State;
use serde::Serialize;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::{Duration, Instant};

/// Rounds of apply-then-look-again at most (a steady stream of events must not loop forever).
const MAX_ROUNDS: usize = 5;
/// Longest wait for things to settle in one round.
const MAX_SETTLE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize)]
pub struct Round {
    /// `local`, or `all` when the CD named a new instance.
    pub stage: &'static str,
    pub report: Report,
}

#[derive(Debug, Default, Serialize)]
pub struct Reconfigured {
    pub rounds: Vec<Round>,
    /// Why nothing was applied, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The source of the last context applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Reconfigured {
    pub fn changed(&self) -> usize {
        self.rounds.iter().map(|r| r.report.changed).sum()
    }
    /// Failures of the last round (an earlier round's are superseded by the later apply),
    /// its invalid values counted too: what they configure was not done.
    pub fn failed(&self) -> usize {
        self.rounds
            .last()
            .map_or(0, |r| r.report.failed + r.report.errors.len())
    }
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.rounds.iter().enumerate() {
            out.push_str(&format!("round {} (stage {}):\n", i + 1, r.stage));
            out.push_str(&r.report.summary());
        }
        if let Some(n) = &self.note {
            out.push_str(&format!("{n}\n"));
        }
        out
    }
}

/// What reconfiguration depends on: the links and the context's variables.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    links: Links,
    context: Option<u64>,
}

fn look(source: &Source, root: &Path, imds: &Imds) -> Result<(Seen, Option<Raw>), String> {
    let links = facts::live_links().map_err(|e| e.to_string())?;
    let raw = match source::read_local(source, root, Duration::ZERO, imds) {
        Ok(raw) => Some(raw),
        Err(SourceError::NotFound(_)) => None,
        Err(e) => return Err(format!("{e}; nothing was changed")),
    };
    let context = raw.as_ref().map(|r| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        r.origin.hash(&mut h);
        for (k, v) in r.parsed.vars.iter() {
            (k, v).hash(&mut h);
        }
        r.files.hash(&mut h);
        h.finish()
    });
    Ok((Seen { links, context }, raw))
}

/// Looks until two looks `settle` apart agree (or [`MAX_SETTLE_WAIT`] passed).
fn settled(
    source: &Source,
    root: &Path,
    settle: Duration,
    imds: &Imds,
) -> Result<(Seen, Option<Raw>), String> {
    let started = Instant::now();
    let mut last = look(source, root, imds)?;
    loop {
        std::thread::sleep(settle);
        let now = look(source, root, imds)?;
        if now.0 == last.0 || started.elapsed() >= MAX_SETTLE_WAIT {
            return Ok(now);
        }
        last = now;
    }
}

pub fn run(
    source: &Source,
    root: &Path,
    settle: Duration,
    settings: &Settings,
) -> Result<Reconfigured, String> {
    let mut out = Reconfigured::default();
    let mut applied: Option<Seen> = None;
    for _ in 0..MAX_ROUNDS {
        let (seen, raw) = settled(source, root, settle, &settings.imds)?;
        if applied.as_ref() == Some(&seen) {
            break;
        }
        let Some(raw) = raw else {
            out.note = Some("no context CD right now: nothing was changed".into());
            applied = Some(seen);
            continue;
        };
        out.note = None;
        out.source = Some(raw.origin.to_string());
        let ds = crate::cloud_init::instance::Ds::from_raw(&raw);
        let ctx =
            source::to_context_checked(raw).map_err(|e| format!("{e}; nothing was changed"))?;
        let facts = Facts::gather(root, seen.links.clone(), &ctx);
        let state = State::new(&crate::files::Root::new(root));
        let new_instance = state.instance_id().as_deref() != Some(ctx.instance_id.as_str());
        let stage = if new_instance {
            Stage::All
        } else {
            Stage::Local
        };
        if new_instance {
            tracing::info!(
                "the context names instance {} (was {}): applying it whole",
                ctx.instance_id,
                state.instance_id().as_deref().unwrap_or("none")
            );
        }
        let plan = crate::plan::build(&ctx, &facts);
        let report = apply::apply(&plan, &facts, root, stage, false, settings);
        crate::cloud_init::instance::record(root, &ds, &ctx);
        out.rounds.push(Round {
            stage: if new_instance { "all" } else { "local" },
            report,
        });
        applied = Some(seen);
    }
    Ok(out)
}

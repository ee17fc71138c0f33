//! What vmctx did this boot, for `vmctx status`: every stage's start, end, duration, result and
//! errors in `/run/vmctx/status.json`, written atomically by `vmctx apply` when a stage starts
//! and when it ends (so image pipelines can wait for contextualization, as with
//! `cloud-init status --wait`).
//!
//! The boot is *complete* when the final stage ended, or when the local stage ended and left no
//! work for it (no `/run/vmctx/context` flag: no context at all). Exit codes of `vmctx status`:
//! 0 complete and nothing failed (or vmctx is disabled), 1 a stage failed, 3 not run yet or
//! still running (or `--wait` timed out).

use crate::files::{self, NewFile, Root};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const STATUS_FILE: &str = "/run/vmctx/status.json";
/// Taken (exclusively) by every applying vmctx: stages and reconfigurations never overlap.
pub const LOCK_FILE: &str = "/run/vmctx/lock";
/// Left by the local stage when the final stage has work (see `apply::run_flags`).
pub const CONTEXT_FLAG: &str = "/run/vmctx/context";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// By stage name: `local`, `final`, `all`, `reconfigure`.
    pub stages: BTreeMap<String, StageRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    Running,
    /// Every action succeeded (or there was nothing to do).
    Done,
    /// The context could not be read or was invalid, or some action failed.
    Failed,
    /// No context was found: nothing to do, and not a failure.
    NoContext,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRun {
    pub result: RunResult,
    /// RFC 3339, UTC.
    pub started: String,
    pub started_unix: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<f64>,
    /// The applying process (a `running` stage whose process is gone did not finish).
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub changed: usize,
    #[serde(default)]
    pub failed: usize,
    /// What failed: the read error, invalid values, or each failed action.
    #[serde(default)]
    pub errors: Vec<String>,
    /// What did not stop the stage: the context's warnings and skipped actions (cloud-init's
    /// `recoverable_errors`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// How a stage ended.
#[derive(Debug, Clone, Default)]
pub struct StageEnd {
    pub source: Option<String>,
    pub instance_id: Option<String>,
    pub changed: usize,
    pub failed: usize,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub no_context: bool,
}

impl StageEnd {
    pub fn error(msg: impl Into<String>) -> StageEnd {
        StageEnd {
            failed: 1,
            errors: vec![msg.into()],
            ..StageEnd::default()
        }
    }

    /// From an apply report: its failed actions are the errors.
    pub fn from_report(r: &crate::apply::Report, source: &str) -> StageEnd {
        StageEnd {
            source: Some(source.to_string()),
            instance_id: Some(r.instance_id.clone()),
            changed: r.changed,
            failed: r.failed,
            // The plan's invalid values first: what they configure was not done.
            errors: r
                .errors
                .iter()
                .cloned()
                .chain(
                    r.actions
                        .iter()
                        .filter(|a| a.result == crate::apply::Outcome::Failed)
                        .map(|a| format!("{} {}: {}", a.kind, a.target, a.detail)),
                )
                .collect(),
            warnings: r
                .actions
                .iter()
                .filter(|a| a.result == crate::apply::Outcome::Skipped)
                .map(|a| format!("{} {}: {}", a.kind, a.target, a.detail))
                .collect(),
            no_context: false,
        }
    }
}

/// Records one stage: `running` now, its result at [`Recorder::finish`]. Recording is best
/// effort: a status file that cannot be written is a warning, never a failed apply.
pub struct Recorder {
    root: Root,
    stage: String,
    started: Instant,
    run: StageRun,
}

impl Recorder {
    pub fn begin(root: &Path, stage: &str) -> Recorder {
        let now = SystemTime::now();
        let run = StageRun {
            result: RunResult::Running,
            started: rfc3339(now),
            started_unix: unix(now),
            finished: None,
            duration_secs: None,
            pid: std::process::id(),
            source: None,
            instance_id: None,
            changed: 0,
            failed: 0,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        let rec = Recorder {
            root: Root::new(root),
            stage: stage.to_string(),
            started: Instant::now(),
            run,
        };
        rec.save();
        rec
    }

    pub fn finish(mut self, end: StageEnd) {
        let now = SystemTime::now();
        let r = &mut self.run;
        r.finished = Some(rfc3339(now));
        r.duration_secs = Some((self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        r.result = if end.failed > 0 || !end.errors.is_empty() {
            RunResult::Failed
        } else if end.no_context {
            RunResult::NoContext
        } else {
            RunResult::Done
        };
        r.source = end.source;
        r.instance_id = end.instance_id;
        r.changed = end.changed;
        r.failed = end.failed;
        r.errors = end.errors;
        r.warnings = end.warnings;
        self.save();
    }

    fn save(&self) {
        let path = self.root.path(STATUS_FILE);
        let mut status = read(self.root.dir());
        status.stages.insert(self.stage.clone(), self.run.clone());
        let json = serde_json::to_string_pretty(&status).unwrap_or_default() + "\n";
        if let Err(e) = files::write_atomic(&path, json.as_bytes(), NewFile::mode(0o644)) {
            tracing::warn!("{}: {e}", path.display());
        }
    }
}

/// The exclusive lock of applying vmctx processes (held until dropped). `None` when the lock
/// file cannot be made (a read-only /run): vmctx then goes ahead unlocked.
pub fn lock(root: &Path) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let path = Root::new(root).path(LOCK_FILE);
    std::fs::create_dir_all(path.parent()?).ok()?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ok()?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// The status file under `root` (empty when missing or unreadable).
pub fn read(root: &Path) -> Status {
    std::fs::read(Root::new(root).path(STATUS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Overall {
    /// No stage ran yet this boot.
    NotRun,
    Running,
    Done,
    Error,
    /// `vmctx=disabled` on the kernel command line or `/etc/vmctx/disabled`, and nothing ran.
    Disabled,
}

impl Overall {
    pub fn exit_code(self) -> u8 {
        match self {
            Overall::Done | Overall::Disabled => 0,
            Overall::Error => 1,
            Overall::NotRun | Overall::Running => 3,
        }
    }
    pub fn finished(self) -> bool {
        !matches!(self, Overall::NotRun | Overall::Running)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::NotRun => "not run",
            Overall::Running => "running",
            Overall::Done => "done",
            Overall::Error => "error",
            Overall::Disabled => "disabled",
        }
    }
}

/// The state of this boot's contextualization; a `running` stage whose process is gone is
/// taken as failed (it was killed, e.g. by its unit's timeout).
pub fn overall(root: &Path, status: &mut Status) -> Overall {
    for run in status.stages.values_mut() {
        if run.result == RunResult::Running && !alive(run.pid) {
            run.result = RunResult::Failed;
            run.errors.push(format!(
                "vmctx (pid {}) ended without finishing this stage",
                run.pid
            ));
        }
    }
    let r = Root::new(root);
    if status.stages.is_empty() {
        let cmdline = std::fs::read_to_string(r.path("/proc/cmdline")).unwrap_or_default();
        let disabled = r.path("/etc/vmctx/disabled").exists()
            || cmdline.split_whitespace().any(|w| w == "vmctx=disabled");
        return if disabled {
            Overall::Disabled
        } else {
            Overall::NotRun
        };
    }
    let ended = |name: &str| {
        status
            .stages
            .get(name)
            .is_some_and(|s| s.result != RunResult::Running)
    };
    let complete =
        ended("final") || ended("all") || (ended("local") && !r.path(CONTEXT_FLAG).exists());
    let running = status
        .stages
        .values()
        .any(|s| s.result == RunResult::Running);
    let failed = status
        .stages
        .values()
        .any(|s| s.result == RunResult::Failed);
    if running || !complete {
        Overall::Running
    } else if failed {
        Overall::Error
    } else {
        Overall::Done
    }
}

/// Polls until the boot's contextualization is finished, or `timeout` passed (then the last
/// state, still running or not run).
pub fn wait(root: &Path, timeout: Option<Duration>) -> (Overall, Status) {
    let started = Instant::now();
    loop {
        let mut status = read(root);
        let o = overall(root, &mut status);
        if o.finished() || timeout.is_some_and(|t| started.elapsed() >= t) {
            return (o, status);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The readable report: the overall state, then one line per stage and its errors.
pub fn summary(o: Overall, status: &Status) -> String {
    let mut out = format!("status: {}\n", o.as_str());
    let order = ["local", "final", "all", "reconfigure"];
    let mut names: Vec<&String> = status.stages.keys().collect();
    names.sort_by_key(|n| order.iter().position(|o| o == n).unwrap_or(order.len()));
    for name in names {
        let s = &status.stages[name];
        let result = serde_json::to_value(s.result)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let took = s
            .duration_secs
            .map_or("-".to_string(), |d| format!("{d:.3} s"));
        out.push_str(&format!("{name:<12} {result:<10} {} {took:>10}", s.started));
        if s.result != RunResult::Running && s.result != RunResult::NoContext {
            out.push_str(&format!("  {} changed, {} failed", s.changed, s.failed));
        }
        if let Some(id) = &s.instance_id {
            out.push_str(&format!("  {id}"));
        }
        if let Some(src) = &s.source {
            out.push_str(&format!(" ({src})"));
        }
        out.push('\n');
        for e in &s.errors {
            out.push_str(&format!("    {e}\n"));
        }
    }
    out
}

/// The JSON report: `{"status": …, "stages": {…}}`.
pub fn to_json(o: Overall, status: &Status) -> serde_json::Value {
    serde_json::json!({
        "status": o.as_str(),
        "finished": o.finished(),
        "stages": status.stages,
    })
}

fn alive(pid: u32) -> bool {
    // Signal 0: only whether the process exists (EPERM: it exists, owned by another user).
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

fn unix(t: SystemTime) -> f64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// `2024-05-01T10:00:00.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_251_199_250); // 2024-02-29T23:59:59.250
        assert_eq!(rfc3339(t), "2024-02-29T23:59:59.250Z");
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    fn run(result: RunResult) -> StageRun {
        StageRun {
            result,
            started: String::new(),
            started_unix: 0.0,
            finished: None,
            duration_secs: None,
            pid: std::process::id(),
            source: None,
            instance_id: None,
            changed: 0,
            failed: 0,
            errors: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn overall_rules() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let mut s = Status::default();
        assert_eq!(overall(root, &mut s), Overall::NotRun);
        std::fs::create_dir_all(root.join("etc/vmctx")).unwrap();
        std::fs::write(root.join("etc/vmctx/disabled"), "").unwrap();
        assert_eq!(overall(root, &mut s), Overall::Disabled);

        s.stages.insert("local".into(), run(RunResult::Running));
        assert_eq!(overall(root, &mut s), Overall::Running);
        // Local done without a context: nothing more is coming.
        s.stages.insert("local".into(), run(RunResult::NoContext));
        assert_eq!(overall(root, &mut s), Overall::Done);
        // Local done and the final stage has work: still running until it ends.
        std::fs::create_dir_all(root.join("run/vmctx")).unwrap();
        std::fs::write(root.join("run/vmctx/context"), "x").unwrap();
        s.stages.insert("local".into(), run(RunResult::Done));
        assert_eq!(overall(root, &mut s), Overall::Running);
        s.stages.insert("final".into(), run(RunResult::Failed));
        assert_eq!(overall(root, &mut s), Overall::Error);
        assert_eq!(Overall::Error.exit_code(), 1);
        s.stages.insert("final".into(), run(RunResult::Done));
        assert_eq!(overall(root, &mut s), Overall::Done);
        // A running stage whose process is gone failed.
        let mut dead = run(RunResult::Running);
        dead.pid = 0x3fff_fff0;
        s.stages.insert("final".into(), dead);
        assert_eq!(overall(root, &mut s), Overall::Error);
        assert!(s.stages["final"].errors[0].contains("ended without finishing"));
    }
}

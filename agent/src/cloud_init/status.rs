//! `cloud-init status [--wait] [--long] [--format tabular|json|yaml]` answered from vmctx's own
//! record of the boot (`/run/vmctx/status.json`, see `crate::status`), in cloud-init's words,
//! shapes and exit codes (cloudinit/cmd/status.py): 0 done or still running, 1 an error,
//! 2 done with recoverable errors (vmctx's warnings and skipped actions).

use super::instance::platform_named;
use super::output::{py_json, py_yaml};
use crate::files::Root;
use crate::status::{self as vs, Overall, RunResult, StageRun, Status};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Running {
    NotStarted,
    Running,
    Done,
    Disabled,
}

impl Running {
    fn as_str(self) -> &'static str {
        match self {
            Running::NotStarted => "not started",
            Running::Running => "running",
            Running::Done => "done",
            Running::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Healthy,
    Degraded,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Tabular,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Args {
    pub wait: bool,
    pub long: bool,
    pub format: Format,
}

/// Why the boot is (not) contextualized: cloud-init's `boot_status_code` and its reason.
#[derive(Debug, Clone)]
pub struct Boot {
    pub code: &'static str,
    pub reason: String,
}

/// cloud-init's `StatusDetails`.
#[derive(Debug, Clone)]
pub struct Details {
    pub running: Running,
    pub condition: Condition,
    pub boot: Boot,
    pub detail: String,
    pub errors: Vec<String>,
    pub recoverable_errors: BTreeMap<String, Vec<String>>,
    pub last_update: String,
    pub datasource: String,
    /// The per-stage entries and `stage` (the one running), as cloud-init's status.json `v1`.
    pub v1: Map<String, Value>,
}

/// vmctx's stage names → cloud-init's (`apply --stage all` is both, like `cloud-init init`).
fn stage_key(vmctx: &str) -> &str {
    match vmctx {
        "local" => "init-local",
        "all" => "init",
        "final" => "modules-final",
        other => other,
    }
}

const CI_STAGES: [&str; 4] = ["init", "init-local", "modules-config", "modules-final"];

/// The details of vmctx's state `o` (from [`vs::overall`]) and its stages.
pub fn details(o: Overall, st: &Status, boot: Boot) -> Details {
    let running = match o {
        Overall::NotRun => Running::NotStarted,
        Overall::Running => Running::Running,
        Overall::Done | Overall::Error => Running::Done,
        Overall::Disabled => Running::Disabled,
    };
    let mut v1 = Map::new();
    if !st.stages.is_empty() {
        for k in CI_STAGES {
            v1.insert(k.into(), stage_entry(None));
        }
        let now = st
            .stages
            .iter()
            .find(|(_, s)| s.result == RunResult::Running);
        v1.insert(
            "stage".into(),
            now.map_or(Value::Null, |(n, _)| stage_key(n).into()),
        );
    }
    for (name, run) in &st.stages {
        v1.insert(stage_key(name).into(), stage_entry(Some(run)));
    }
    // cloud-init collects errors in the order of its sorted stage keys.
    let mut errors = Vec::new();
    let mut recoverable: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_key: Vec<(&str, &StageRun)> =
        st.stages.iter().map(|(n, r)| (stage_key(n), r)).collect();
    by_key.sort_by_key(|(k, _)| *k);
    let mut latest = 0.0f64;
    for (_, run) in &by_key {
        errors.extend(run.errors.iter().cloned());
        if !run.warnings.is_empty() {
            let w = recoverable.entry("WARNING".into()).or_default();
            w.extend(run.warnings.iter().cloned());
        }
        latest = latest
            .max(run.started_unix)
            .max(finished(run).unwrap_or(0.0));
    }
    if o == Overall::Error && errors.is_empty() {
        errors.push("vmctx: a stage failed (see `vmctx status`)".into());
    }
    let condition = if !errors.is_empty() {
        Condition::Error
    } else if !recoverable.is_empty() {
        Condition::Degraded
    } else {
        Condition::Healthy
    };
    // The source of the last stage that read one names the datasource.
    let origin = ["final", "all", "reconfigure", "local"]
        .iter()
        .find_map(|n| st.stages.get(*n).and_then(|r| r.source.clone()));
    let ds = origin.as_deref().map(platform_named);
    let detail = match (&ds, v1.get("stage").and_then(Value::as_str)) {
        (Some(p), _) => p.description.clone(),
        (None, Some(stage)) => format!("Running in stage: {stage}"),
        (None, None) => boot.reason.clone(),
    };
    Details {
        running,
        condition,
        boot,
        detail,
        errors,
        recoverable_errors: recoverable,
        last_update: if latest > 0.0 {
            http_date(latest)
        } else {
            String::new()
        },
        datasource: ds.map(|p| p.short_name()).unwrap_or_default(),
        v1,
    }
}

fn finished(run: &StageRun) -> Option<f64> {
    let d = run.duration_secs?;
    (run.result != RunResult::Running).then(|| ((run.started_unix + d) * 1000.0).round() / 1000.0)
}

fn stage_entry(run: Option<&StageRun>) -> Value {
    let Some(run) = run else {
        return json!({"errors": [], "recoverable_errors": {}, "start": null, "finished": null});
    };
    let recoverable = if run.warnings.is_empty() {
        json!({})
    } else {
        json!({ "WARNING": run.warnings })
    };
    json!({
        "errors": run.errors,
        "recoverable_errors": recoverable,
        "start": run.started_unix,
        "finished": finished(run),
    })
}

/// `Thu, 01 Jan 1970 00:02:05 +0000` (Python's `%a, %d %b %Y %H:%M:%S %z` in UTC).
pub fn http_date(unix: f64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = vs::civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

impl Details {
    /// `(status, extended_status)` as cloud-init's `translate_status`.
    pub fn words(&self) -> (String, String) {
        let r = self.running.as_str();
        match self.condition {
            Condition::Error => ("error".into(), format!("error - {r}")),
            Condition::Degraded if matches!(self.running, Running::Done | Running::Running) => {
                (r.into(), format!("degraded {r}"))
            }
            _ => (r.into(), r.into()),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.condition {
            Condition::Error => 1,
            Condition::Degraded => 2,
            Condition::Healthy => 0,
        }
    }

    /// The document `--format json|yaml` prints.
    pub fn to_value(&self) -> Value {
        let (status, extended) = self.words();
        let mut m = Map::new();
        m.insert("datasource".into(), self.datasource.clone().into());
        m.insert("boot_status_code".into(), self.boot.code.into());
        m.insert("status".into(), status.into());
        m.insert("extended_status".into(), extended.into());
        m.insert("detail".into(), self.detail.clone().into());
        m.insert("errors".into(), json!(self.errors));
        m.insert("recoverable_errors".into(), json!(self.recoverable_errors));
        m.insert("last_update".into(), self.last_update.clone().into());
        m.extend(self.v1.clone());
        Value::Object(m)
    }

    /// What `cloud-init status` prints (after the dots of `--wait`).
    pub fn render(&self, args: Args) -> String {
        match args.format {
            Format::Json => py_json(&self.to_value(), 2) + "\n",
            Format::Yaml => py_yaml(&self.to_value()) + "\n",
            Format::Tabular => self.tabular(args.long),
        }
    }

    fn tabular(&self, long: bool) -> String {
        let (status, extended) = self.words();
        let mut out = format!("status: {status}\n");
        if !long {
            return out;
        }
        let errors = if self.errors.is_empty() {
            " []".to_string()
        } else {
            format!("\n\t- {}", self.errors.join("\n\t- "))
        };
        let recoverable = if self.recoverable_errors.is_empty() {
            " {}".to_string()
        } else {
            let parts: Vec<String> = self
                .recoverable_errors
                .iter()
                .map(|(k, v)| {
                    let items: Vec<String> = v.iter().map(|i| i.replace('\n', " ")).collect();
                    format!("{k}:\n\t- {}", items.join("\n\t- "))
                })
                .collect();
            format!("\n{}", parts.join("\n"))
        };
        let last = if self.last_update.is_empty() {
            String::new()
        } else {
            format!("last_update: {}\n", self.last_update)
        };
        out.push_str(&format!(
            "extended_status: {extended}\nboot_status_code: {}\n{last}detail: {}\n\
             errors:{errors}\nrecoverable_errors:{recoverable}\n",
            self.boot.code, self.detail
        ));
        out
    }
}

/// Whether vmctx is disabled, in cloud-init's codes (its marker file is checked first, as
/// cloud-init checks its own); else enabled by its units (or, without systemd, by init).
pub fn boot(root: &Path, o: Overall) -> Boot {
    let r = Root::new(root);
    if o == Overall::Disabled {
        if r.path("/etc/vmctx/disabled").exists() {
            return Boot {
                code: "disabled-by-marker-file",
                reason: "vmctx disabled by /etc/vmctx/disabled".into(),
            };
        }
        return Boot {
            code: "disabled-by-kernel-command-line",
            reason: "vmctx disabled by kernel parameter vmctx=disabled".into(),
        };
    }
    if r.path("/run/systemd/system").is_dir() {
        Boot {
            code: "enabled-by-generator",
            reason: "vmctx enabled by its systemd units".into(),
        }
    } else {
        Boot {
            code: "enabled-by-sysvinit",
            reason: "vmctx enabled".into(),
        }
    }
}

/// The details now.
pub fn current(root: &Path) -> Details {
    let mut st = vs::read(root);
    let o = vs::overall(root, &mut st);
    details(o, &st, boot(root, o))
}

/// `cloud-init status`: prints and returns the exit code. `--wait` polls every 0.25 s and,
/// in the tabular format, prints a dot per poll, as cloud-init does.
pub fn run(root: &Path, args: Args) -> u8 {
    let mut d = current(root);
    if args.wait {
        let mut out = std::io::stdout();
        while matches!(d.running, Running::NotStarted | Running::Running) {
            if args.format == Format::Tabular {
                let _ = out.write_all(b".");
                let _ = out.flush();
            }
            d = current(root);
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    print!("{}", d.render(args));
    d.exit_code()
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

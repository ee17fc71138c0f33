//! Timers: scheduled package updates (`UPDATE_SCHEDULE`) and the notebook sync (`S3_SYNC_*`).
//!
//! On systemd, units in `/etc/systemd/system` enabled by their `timers.target.wants` link; without
//! systemd, a file in `/etc/cron.d`. Plus `/etc/vmctx/sync.toml` (0600: it holds the context's
//! keys) for `vmctx sync`. Every file goes when its variable does.

use super::files::NewFile;
use super::Apply;
use crate::context::{Context, Schedule, SyncMode, SyncSettings, UpdateSchedule};
use crate::os::{self, OsRelease, PackageManager};
use std::path::Path;

const UNIT_DIR: &str = "/etc/systemd/system";
const WANTS: &str = "/etc/systemd/system/timers.target.wants";
pub const SYNC_CONFIG: &str = "/etc/vmctx/sync.toml";
/// Where packages install the binary; the units and cron lines call it there.
const VMCTX_BIN: &str = "/usr/bin/vmctx";

/// `vmctx-update.timer` + `.service`, or `/etc/cron.d/vmctx-update`.
pub fn update(ap: &mut Apply, ctx: &Context) {
    let systemd = os::has_systemd(ap.root.dir());
    let Some(u) = &ctx.update else {
        return remove_timer(ap, "update", "vmctx-update");
    };
    let command = match &u.command {
        Some(c) => c.clone(),
        None => {
            let os = OsRelease::read(ap.root.dir());
            match PackageManager::detect(ap.root.dir(), &os) {
                Some(pm) => pm.upgrade_command().to_string(),
                None => return ap.failed(
                    "update",
                    "vmctx-update",
                    "no package manager found (apt-get, dnf, yum, zypper, apk); set UPDATE_COMMAND",
                ),
            }
        }
    };
    if systemd {
        let calendar = match to_calendar(&u.schedule) {
            Ok(c) => c,
            Err(e) => return ap.failed("update", "vmctx-update.timer", e),
        };
        let timer = format!(
            "# Written by vmctx from UPDATE_SCHEDULE ({}); removed when it goes.\n\
             [Unit]\nDescription=vmctx: scheduled package updates\n\n\
             [Timer]\nOnCalendar={calendar}\nRandomizedDelaySec=30min\nPersistent=true\n\n\
             [Install]\nWantedBy=timers.target\n",
            spec(u)
        );
        let service = format!(
            "# Written by vmctx from UPDATE_SCHEDULE; removed when it goes.\n\
             [Unit]\nDescription=vmctx: package updates\n\
             After=network-online.target\nWants=network-online.target\n\n\
             [Service]\nType=oneshot\nExecStart=/bin/sh -c {}\nNice=10\n",
            systemd_quote(&command)
        );
        install_timer(ap, "update", "vmctx-update", &service, &timer);
        ap.remove("update", &ap.root.path("/etc/cron.d/vmctx-update"));
    } else {
        let cron = match to_cron(&u.schedule) {
            Ok(c) => c,
            Err(e) => return ap.failed("update", "/etc/cron.d/vmctx-update", e),
        };
        let text = format!(
            "# Written by vmctx from UPDATE_SCHEDULE; removed when it goes.\n\
             SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             {cron} root {}\n",
            // cron turns an unescaped % into a newline
            command.replace('%', "\\%")
        );
        let path = ap.root.path("/etc/cron.d/vmctx-update");
        ap.file("update", &path, text.as_bytes(), NewFile::mode(0o644));
        remove_units(ap, "update", "vmctx-update");
    }
}

fn spec(u: &UpdateSchedule) -> &str {
    match &u.schedule {
        Schedule::Cron(s) | Schedule::Calendar(s) => s,
    }
}

/// `/etc/vmctx/sync.toml` (0600, root) and `vmctx-sync.timer` (or a cron line).
pub fn sync(ap: &mut Apply, ctx: &Context) {
    let config = ap.root.path(SYNC_CONFIG);
    let Some(s) = &ctx.sync else {
        ap.remove("sync", &config);
        return remove_timer(ap, "sync", "vmctx-sync");
    };
    let toml = render_sync_toml(s);
    let new = NewFile {
        mode: 0o600,
        owner: Some((0, 0)),
    };
    // The owner only when we are root: a test run under --root as a user still writes 0600.
    let new = if nix::unistd::geteuid().is_root() {
        new
    } else {
        NewFile::mode(0o600)
    };
    ap.file_detail(
        "sync",
        &config,
        toml.as_bytes(),
        new,
        "settings for vmctx sync (0600)",
    );
    let every = crate::schedule::parse_timespan(&s.interval).unwrap_or(300);
    if os::has_systemd(ap.root.dir()) {
        let timer = format!(
            "# Written by vmctx from S3_SYNC_INTERVAL; removed when S3_SYNC_BUCKET goes.\n\
             [Unit]\nDescription=vmctx: notebook sync every {}\n\n\
             [Timer]\nOnBootSec=1min\nOnUnitInactiveSec={every}s\nRandomizedDelaySec={}s\n\n\
             [Install]\nWantedBy=timers.target\n",
            s.interval,
            (every / 10).clamp(1, 60)
        );
        let service = format!(
            "# Written by vmctx from S3_SYNC_*; removed when S3_SYNC_BUCKET goes.\n\
             [Unit]\nDescription=vmctx: notebook sync with s3://{}/{}\n\
             After=network-online.target\nWants=network-online.target\n\n\
             [Service]\nType=oneshot\nExecStart={VMCTX_BIN} sync --once --config {SYNC_CONFIG}\n\
             Nice=10\nIOSchedulingClass=idle\n",
            s.bucket, s.prefix
        );
        install_timer(ap, "sync", "vmctx-sync", &service, &timer);
        ap.remove("sync", &ap.root.path("/etc/cron.d/vmctx-sync"));
    } else {
        let text = format!(
            "# Written by vmctx from S3_SYNC_*; removed when S3_SYNC_BUCKET goes.\n\
             {} root {VMCTX_BIN} sync --once --config {SYNC_CONFIG}\n",
            cron_every(every)
        );
        let path = ap.root.path("/etc/cron.d/vmctx-sync");
        ap.file("sync", &path, text.as_bytes(), NewFile::mode(0o644));
        remove_units(ap, "sync", "vmctx-sync");
    }
}

/// The settings file `vmctx sync` reads (see `sync::config`). Secrets are written: the file
/// is 0600 and is the only place they go.
pub fn render_sync_toml(s: &SyncSettings) -> String {
    let mut o = String::from(
        "# Written by vmctx apply from the context (S3_SYNC_*, AWS_*); `vmctx sync` flags override it.\n",
    );
    let mut kv = |k: &str, v: &str| o.push_str(&format!("{k} = {}\n", toml_str(v)));
    kv("bucket", &s.bucket);
    kv("prefix", &s.prefix);
    kv("dir", &s.dir);
    kv(
        "mode",
        match s.mode {
            SyncMode::Pull => "pull",
            SyncMode::Push => "push",
            SyncMode::Both => "both",
        },
    );
    kv("interval", &s.interval);
    for (k, v) in [
        ("endpoint", &s.endpoint),
        ("region", &s.region),
        ("ca_file", &s.ca_file),
    ] {
        if let Some(v) = v {
            kv(k, v);
        }
    }
    if let Some(c) = &s.credentials {
        o.push_str("\n[credentials]\n");
        o.push_str(&format!("access_key_id = {}\n", toml_str(&c.access_key_id)));
        o.push_str(&format!(
            "secret_access_key = {}\n",
            toml_str(c.secret_access_key.expose())
        ));
        if let Some(t) = &c.session_token {
            o.push_str(&format!("session_token = {}\n", toml_str(t.expose())));
        }
    }
    o
}

fn toml_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A cron schedule running about every `secs` seconds.
fn cron_every(secs: u64) -> String {
    let min = secs.div_ceil(60).max(1);
    match min {
        1 => "* * * * *".into(),
        m if m < 60 => format!("*/{m} * * * *"),
        m if m < 24 * 60 => format!("0 */{} * * *", (m / 60).min(23)),
        _ => "0 0 * * *".into(),
    }
}

fn install_timer(ap: &mut Apply, kind: &'static str, name: &str, service: &str, timer: &str) {
    let before = ap.actions.len();
    let svc = ap.root.path(format!("{UNIT_DIR}/{name}.service"));
    ap.file(kind, &svc, service.as_bytes(), NewFile::mode(0o644));
    let tim = ap.root.path(format!("{UNIT_DIR}/{name}.timer"));
    ap.file(kind, &tim, timer.as_bytes(), NewFile::mode(0o644));
    // Enabled as `systemctl enable` would: a link in timers.target.wants.
    let link = ap.root.path(format!("{WANTS}/{name}.timer"));
    symlink(ap, kind, &link, &format!("{UNIT_DIR}/{name}.timer"));
    let changed = ap.actions[before..]
        .iter()
        .any(|a| a.result == super::Outcome::Changed);
    if changed {
        systemctl(ap, kind, &["daemon-reload"]);
        systemctl(ap, kind, &["restart", &format!("{name}.timer")]);
    }
}

fn remove_timer(ap: &mut Apply, kind: &'static str, name: &str) {
    ap.remove(kind, &ap.root.path(format!("/etc/cron.d/{name}")));
    remove_units(ap, kind, name);
}

fn remove_units(ap: &mut Apply, kind: &'static str, name: &str) {
    let timer = ap.root.path(format!("{UNIT_DIR}/{name}.timer"));
    if !timer.exists() {
        return;
    }
    systemctl(ap, kind, &["stop", &format!("{name}.timer")]);
    ap.remove(kind, &ap.root.path(format!("{WANTS}/{name}.timer")));
    ap.remove(kind, &timer);
    ap.remove(kind, &ap.root.path(format!("{UNIT_DIR}/{name}.service")));
    systemctl(ap, kind, &["daemon-reload"]);
}

/// Tells the running systemd, only on the real root of a system booted with it.
fn systemctl(ap: &mut Apply, kind: &'static str, args: &[&str]) {
    if ap.dry_run || !ap.root.is_real() || !os::systemd_running(ap.root.dir()) {
        return;
    }
    let target = format!("systemctl {}", args.join(" "));
    match std::process::Command::new("systemctl").args(args).output() {
        Ok(o) if o.status.success() => ap.changed(kind, &target, "done"),
        Ok(o) => ap.failed(kind, &target, String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => ap.failed(kind, &target, e),
    }
}

fn symlink(ap: &mut Apply, kind: &'static str, link: &Path, target: &str) {
    let shown = link.display().to_string();
    if std::fs::read_link(link).is_ok_and(|t| t == Path::new(target)) {
        return ap.unchanged(kind, &shown, "enabled");
    }
    if ap.dry_run {
        return ap.changed(kind, &shown, "enabled");
    }
    let made = (|| {
        if let Some(dir) = link.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(target, link)
    })();
    match made {
        Ok(()) => ap.changed(kind, &shown, "enabled"),
        Err(e) => ap.failed(kind, &shown, e),
    }
}

/// `ExecStart=/bin/sh -c "…"`: systemd's own quoting; `$` and `%` are systemd specials.
fn systemd_quote(cmd: &str) -> String {
    let inner = cmd
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%")
        .replace('$', "$$");
    format!("\"{inner}\"")
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// An `OnCalendar=` value for a (validated) schedule. Cron fields become explicit lists, so
/// steps and ranges mean exactly what cron meant. One difference is kept as systemd has it:
/// cron ORs a restricted day-of-month with a restricted day-of-week, systemd ANDs them.
pub fn to_calendar(s: &Schedule) -> Result<String, String> {
    let cron = match s {
        Schedule::Calendar(c) => return Ok(c.clone()),
        Schedule::Cron(c) => c,
    };
    let short = match cron.as_str() {
        "@hourly" => Some("hourly"),
        "@daily" | "@midnight" => Some("daily"),
        "@weekly" => Some("weekly"),
        "@monthly" => Some("monthly"),
        "@yearly" | "@annually" => Some("yearly"),
        _ => None,
    };
    if let Some(s) = short {
        return Ok(s.to_string());
    }
    let f: Vec<&str> = cron.split_whitespace().collect();
    if f.len() != 5 {
        return Err(format!("{cron:?} is not a 5-field cron expression"));
    }
    let list =
        |field: &str, lo: u32, hi: u32, names: &[&str]| -> Result<Option<Vec<u32>>, String> {
            if field == "*" {
                return Ok(None);
            }
            expand(field, lo, hi, names).map(Some)
        };
    let join = |v: Option<Vec<u32>>, width: usize| match v {
        None => "*".to_string(),
        Some(v) => v
            .iter()
            .map(|n| format!("{n:0width$}"))
            .collect::<Vec<_>>()
            .join(","),
    };
    let minute = join(list(f[0], 0, 59, &[])?, 2);
    let hour = join(list(f[1], 0, 23, &[])?, 2);
    let dom = join(list(f[2], 1, 31, &[])?, 2);
    let month = join(list(f[3], 1, 12, &MONTH_NAMES)?, 2);
    let dow = list(f[4], 0, 7, &WEEKDAYS)?.map(|days| {
        let mut seen: Vec<u32> = days.iter().map(|d| d % 7).collect();
        seen.sort_unstable();
        seen.dedup();
        let names: Vec<&str> = seen.iter().map(|d| WEEKDAYS[*d as usize]).collect();
        format!("{} ", names.join(","))
    });
    Ok(format!(
        "{}*-{month}-{dom} {hour}:{minute}:00",
        dow.unwrap_or_default()
    ))
}

/// A cron field as the sorted values it selects.
fn expand(field: &str, lo: u32, hi: u32, names: &[&str]) -> Result<Vec<u32>, String> {
    let base = if names.len() == 12 { 1 } else { 0 };
    let value = |t: &str| -> Result<u32, String> {
        if let Some(p) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return Ok(p as u32 + base);
        }
        t.parse::<u32>()
            .ok()
            .filter(|v| (lo..=hi).contains(v))
            .ok_or_else(|| format!("{t:?} is not in {lo}..{hi}"))
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("bad step in {item:?}"))?,
            ),
            None => (item, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, hi),
                None => (value(r)?, value(r)?),
            },
        };
        out.extend((a..=b).step_by(step.max(1) as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A cron line for a schedule, for systems without systemd. Calendar specs are translated
/// when cron can say the same thing (shorthands, `[weekdays] [*-M-D] H:M[:00]`).
pub fn to_cron(s: &Schedule) -> Result<String, String> {
    let cal = match s {
        Schedule::Cron(c) => return Ok(c.clone()),
        Schedule::Calendar(c) => c,
    };
    let short = match cal.to_ascii_lowercase().as_str() {
        "minutely" => Some("* * * * *"),
        "hourly" => Some("0 * * * *"),
        "daily" => Some("0 0 * * *"),
        "weekly" => Some("0 0 * * 1"), // systemd's weekly is Monday 00:00
        "monthly" => Some("0 0 1 * *"),
        "yearly" | "annually" => Some("0 0 1 1 *"),
        "quarterly" => Some("0 0 1 1,4,7,10 *"),
        "semiannually" => Some("0 0 1 1,7 *"),
        _ => None,
    };
    if let Some(c) = short {
        return Ok(c.to_string());
    }
    let no = |why: &str| {
        format!("calendar spec {cal:?} has no cron equivalent ({why}); use a cron expression")
    };
    let mut parts: Vec<&str> = cal.split_whitespace().collect();
    let mut dow = "*".to_string();
    if parts
        .first()
        .is_some_and(|p| p.starts_with(|c: char| c.is_ascii_alphabetic()))
    {
        let mut days = Vec::new();
        for item in parts.remove(0).split(',') {
            let idx = |d: &str| {
                WEEKDAYS.iter().position(|w| {
                    d.len() >= 3 && d.to_ascii_lowercase().starts_with(&w.to_ascii_lowercase())
                })
            };
            match item.split_once("..") {
                Some((a, b)) => days.push(format!(
                    "{}-{}",
                    idx(a).ok_or_else(|| no("weekday"))?,
                    idx(b).ok_or_else(|| no("weekday"))?
                )),
                None => days.push(idx(item).ok_or_else(|| no("weekday"))?.to_string()),
            }
        }
        dow = days.join(",");
    }
    let (mut dom, mut month) = ("*".to_string(), "*".to_string());
    let cronish = |v: &str| v.replace("..", "-");
    if parts.first().is_some_and(|p| p.contains('-')) {
        let d: Vec<&str> = parts.remove(0).split('-').collect();
        let (y, m, day) = match d.as_slice() {
            [y, m, day] => (*y, *m, *day),
            [m, day] => ("*", *m, *day),
            _ => return Err(no("date")),
        };
        if y != "*" {
            return Err(no("a year"));
        }
        month = cronish(m);
        dom = cronish(day);
    }
    let time = match parts.as_slice() {
        [t] => *t,
        [] => "00:00:00",
        _ => return Err(no("a time zone")),
    };
    let t: Vec<&str> = time.split(':').collect();
    let (h, m) = match t.as_slice() {
        [h, m] => (*h, *m),
        [h, m, s] if s.trim_start_matches('0').is_empty() => (*h, *m),
        _ => return Err(no("seconds")),
    };
    if [h, m, &dom, &month]
        .iter()
        .any(|v| v.contains('/') || v.contains('~'))
    {
        return Err(no("a step"));
    }
    let num = |v: &str| v.trim_start_matches('0').to_string();
    let field = |v: &str| {
        if v == "*" {
            v.to_string()
        } else {
            v.split(',')
                .map(|x| {
                    x.split('-')
                        .map(|n| if n.is_empty() { "0".into() } else { num(n) })
                        .map(|n| if n.is_empty() { "0".into() } else { n })
                        .collect::<Vec<_>>()
                        .join("-")
                })
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    Ok(format!(
        "{} {} {} {} {dow}",
        field(m),
        field(h),
        field(&dom),
        field(&month)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_to_calendar() {
        let c = |s: &str| to_calendar(&Schedule::Cron(s.into())).unwrap();
        assert_eq!(c("0 0 * * 0"), "Sun *-*-* 00:00:00");
        assert_eq!(c("*/15 3 * * *"), "*-*-* 03:00,15,30,45:00");
        assert_eq!(
            c("30 2 1-3 jan,jul mon-fri"),
            "Mon,Tue,Wed,Thu,Fri *-01,07-01,02,03 02:30:00"
        );
        assert_eq!(c("0 0 * * 7"), "Sun *-*-* 00:00:00");
        assert_eq!(c("@weekly"), "weekly");
        assert_eq!(
            to_calendar(&Schedule::Calendar("Sun 00:00".into())).unwrap(),
            "Sun 00:00"
        );
    }

    #[test]
    fn calendar_to_cron() {
        let c = |s: &str| to_cron(&Schedule::Calendar(s.into()));
        assert_eq!(c("weekly").unwrap(), "0 0 * * 1");
        assert_eq!(c("Sun 00:00").unwrap(), "0 0 * * 0");
        assert_eq!(c("Mon..Fri 02:30").unwrap(), "30 2 * * 1-5");
        assert_eq!(c("*-*-01 04:05:00").unwrap(), "5 4 1 * *");
        assert!(c("2026-12-24 18:00").is_err());
        assert!(c("*:0/15").is_err());
        assert_eq!(
            to_cron(&Schedule::Cron("0 0 * * 0".into())).unwrap(),
            "0 0 * * 0"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(
            systemd_quote("echo \"$HOME\" 50%"),
            "\"echo \\\"$$HOME\\\" 50%%\""
        );
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
        assert_eq!(cron_every(300), "*/5 * * * *");
        assert_eq!(cron_every(7200), "0 */2 * * *");
    }
}

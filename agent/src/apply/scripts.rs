//! Start script and `INIT_SCRIPTS`: run by their shebang (default `/bin/sh`), in a private copy of
//! the context files, with the context variables on top of a clean minimal environment, under a
//! timeout, output to a log file. Once per instance unless `START_SCRIPT_MODE=always`.

use super::Apply;
use crate::context::{Context, ScriptMode};
use crate::files::Dir;
use crate::source;
use crate::state::State;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment scripts start from; the context's variables go on top of it.
const BASE_ENV: [(&str, &str); 4] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("LANG", "C.UTF-8"),
    ("SHELL", "/bin/sh"),
];

/// Largest file copied from the context CD for the scripts.
const MAX_CONTEXT_FILE: u64 = 64 << 20;

struct Job {
    /// `start_script` or the file name on the CD.
    name: String,
    body: Vec<u8>,
}

pub fn run(ap: &mut Apply, ctx: &Context, state: &State) {
    let s = &ctx.scripts;
    let (mode, timeout) = s
        .start
        .as_ref()
        .map_or((ScriptMode::Once, 300), |st| (st.mode, st.timeout_secs));
    let mut names: Vec<String> = s.start.iter().map(|_| "start_script".to_string()).collect();
    names.extend(s.init.iter().cloned());
    // User-data's jobs (package update, runcmd, scripts): always once per instance.
    let extra = user_data_jobs(ap, ctx);
    let user_timeout = s
        .start
        .as_ref()
        .map_or(USER_DATA_TIMEOUT, |st| st.timeout_secs);
    let mut due: Vec<(String, ScriptMode, u64)> = Vec::new();
    let jobs = names.into_iter().map(|n| (n, mode, timeout)).chain(
        extra
            .iter()
            .map(|j| (j.name.clone(), ScriptMode::Once, user_timeout)),
    );
    for (n, m, t) in jobs {
        if m == ScriptMode::Once && state.done(&ctx.instance_id, &marker(&n)) {
            ap.unchanged("script", &n, "already ran for this instance");
        } else {
            due.push((n, m, t));
        }
    }
    if due.is_empty() {
        return;
    }
    if ap.dry_run {
        for (n, _, t) in due {
            ap.changed("script", &n, format!("would run (timeout {t} s)"));
        }
        return;
    }
    // Not /run/vmctx/context (the flag the final stage is gated on), and not under /run at
    // all: it is mounted noexec on systemd distributions, and scripts run by their shebang.
    let workdir = state.dir().join("files");
    let files = match private_copy(ctx, &workdir) {
        Ok(f) => f,
        Err(e) => return ap.failed("script", "context files", e),
    };
    // 0700, the logs in it 0600: a script's output may show the secrets in its environment.
    let logdir = match state.open_instance_dir(&ctx.instance_id) {
        Ok(d) => d,
        Err(e) => return ap.failed("script", "logs", e),
    };
    for (name, mode, timeout) in due {
        let body = if name == "start_script" {
            s.start.as_ref().map(|st| st.body.clone())
        } else if let Some(j) = extra.iter().find(|j| j.name == name) {
            Some(j.body.clone())
        } else {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| b.clone())
        };
        let Some(body) = body else {
            ap.failed("script", &name, "not on the context CD");
            continue;
        };
        let job = Job { name, body };
        let outcome = execute(&job, ctx, &workdir, &logdir, Duration::from_secs(timeout));
        let (started, mark) = match outcome {
            Ran::Ok(detail) => {
                ap.changed("script", &job.name, detail.clone());
                (true, detail)
            }
            Ran::Failed(e) => {
                ap.failed("script", &job.name, e.clone());
                (true, e)
            }
            Ran::NotStarted(e) => {
                ap.failed("script", &job.name, format!("{e}; tried again next time"));
                (false, e)
            }
        };
        tracing::info!("script {}: {mark}", job.name);
        // Once per instance means once: a failed script is reported, not retried each boot.
        // One that never started did not run at all, and is not marked.
        if mode == ScriptMode::Once && started {
            if let Err(e) = state.mark_done(&ctx.instance_id, &marker(&job.name), &mark) {
                ap.failed("state", &job.name, format!("done marker: {e}"));
            }
        }
    }
}

/// How a script's run ended.
enum Ran {
    Ok(String),
    /// It started, and failed or timed out.
    Failed(String),
    /// It could not be started (its file, its log, exec).
    NotStarted(String),
}

/// Default timeout of user-data jobs without `START_SCRIPT_TIMEOUT` (a package upgrade is slow).
const USER_DATA_TIMEOUT: u64 = 3600;

/// User-data's jobs, in cloud-init's order: package update/upgrade, `runcmd`, then its scripts.
/// None when the emulated metadata service hands user-data to the image's own cloud-init.
fn user_data_jobs(ap: &mut Apply, ctx: &Context) -> Vec<Job> {
    let Some(cc) = &ctx.cloud_config else {
        return Vec::new();
    };
    let emulated = ctx.ec2.as_ref().is_some_and(|e| e.metadata);
    if emulated && ap.root.path("/etc/cloud").is_dir() {
        if !cc.scripts.is_empty() || !cc.runcmd.is_empty() || cc.package_update {
            ap.unchanged(
                "script",
                "user-data",
                "left to the image's cloud-init (EC2_METADATA=YES)",
            );
        }
        return Vec::new();
    }
    let mut jobs = Vec::new();
    if cc.package_update {
        match super::packages::script(&ap.root, cc.package_upgrade) {
            Ok(body) => jobs.push(Job {
                name: if cc.package_upgrade {
                    "package-upgrade"
                } else {
                    "package-update"
                }
                .into(),
                body,
            }),
            Err(e) => ap.failed("packages", "package_update", e),
        }
    }
    if !cc.runcmd.is_empty() {
        let mut body = b"#!/bin/sh\n".to_vec();
        for line in &cc.runcmd {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        jobs.push(Job {
            name: "runcmd".into(),
            body,
        });
    }
    for (i, sc) in cc.scripts.iter().enumerate() {
        // The name comes from a MIME header: keep it to a safe file name.
        let safe: String = sc
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let name = format!("user-data-{}-{}", i + 1, safe.trim_start_matches('.'));
        jobs.push(Job {
            name,
            body: sc.body.clone(),
        });
    }
    jobs
}

fn marker(name: &str) -> String {
    format!("script-{name}")
}

/// Copies the context's files into a fresh private folder (0700); returns them by name.
fn private_copy(ctx: &Context, dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let files = source::read_files(&ctx.source, MAX_CONTEXT_FILE).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, PermissionsExt::from_mode(0o700)).map_err(|e| e.to_string())?;
    for (name, bytes) in &files {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(files)
}

fn execute(job: &Job, ctx: &Context, workdir: &Path, logdir: &Dir, timeout: Duration) -> Ran {
    let (mut child, log_path) = match spawn(job, ctx, workdir, logdir) {
        Ok(c) => c,
        Err(e) => return Ran::NotStarted(e),
    };
    let started = Instant::now();
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let secs = started.elapsed().as_secs_f64();
                let log = log_path.display();
                return match status.code() {
                    Some(0) => Ran::Ok(format!("ran: exit 0 in {secs:.1} s, log {log}")),
                    Some(c) => Ran::Failed(format!("exit {c} after {secs:.1} s, log {log}")),
                    None => Ran::Failed(format!("killed by a signal after {secs:.1} s, log {log}")),
                };
            }
            Ok(None) if started.elapsed() >= timeout => {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Ran::Failed(format!(
                    "killed after the {} s timeout, log {}",
                    timeout.as_secs(),
                    log_path.display()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Ran::Failed(format!("waiting: {e}")),
        }
    }
}

/// The script's file, its log (0600) and the process; an error means it did not start.
fn spawn(
    job: &Job,
    ctx: &Context,
    workdir: &Path,
    logdir: &Dir,
) -> Result<(std::process::Child, PathBuf), String> {
    let script = workdir.join(format!(".vmctx-{}", job.name));
    std::fs::write(&script, &job.body).map_err(|e| format!("{}: {e}", script.display()))?;
    std::fs::set_permissions(&script, PermissionsExt::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    let log_name = format!("{}.log", job.name);
    let log_path: PathBuf = logdir.path().join(&log_name);
    let log = logdir
        .append(log_name.as_ref(), 0o600)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cmd = if job.body.starts_with(b"#!") {
        Command::new(&script)
    } else {
        let mut c = Command::new("/bin/sh");
        c.arg(&script);
        c
    };
    cmd.env_clear()
        .envs(BASE_ENV)
        .envs(ctx.env.iter().map(|(k, v)| (k, v)));
    cmd.env("MOUNT_DIR", workdir)
        .env("VMCTX_CONTEXT_DIR", workdir)
        .env("VMCTX_INSTANCE_ID", &ctx.instance_id);
    cmd.current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0); // its own group, so a timeout kills its children too
    let child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    Ok((child, log_path))
}

//! Start script and `INIT_SCRIPTS`: run by their shebang (default `/bin/sh`), in a private copy of
//! the context files, with the context variables on top of a clean minimal environment, under a
//! timeout, output to a log file. Once per instance unless `START_SCRIPT_MODE=always`.

use super::Apply;
use crate::context::ScriptMode;
use crate::facts::Facts;
use crate::files::Dir;
use crate::plan::{Plan, ScriptPlan};
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

struct Job {
    /// `start_script` or the file name on the CD.
    name: String,
    body: Vec<u8>,
}

/// Runs the plan's scripts in order (each once per instance unless planned `always`).
pub fn run(ap: &mut Apply, plan: &Plan, facts: &Facts, state: &State) {
    if plan.user_data_to_cloud_init {
        ap.unchanged(
            "script",
            "user-data",
            "left to the image's cloud-init (EC2_METADATA=YES)",
        );
    }
    let id = plan.instance_id.as_str();
    let mut due: Vec<&ScriptPlan> = Vec::new();
    for sp in &plan.scripts {
        if sp.run == ScriptMode::Once && state.done(id, &marker(&sp.job)) {
            ap.unchanged("script", &sp.job, "already ran for this instance");
        } else {
            due.push(sp);
        }
    }
    if due.is_empty() {
        return;
    }
    if ap.dry_run {
        for sp in due {
            let t = sp.timeout_secs.unwrap_or(USER_DATA_TIMEOUT);
            ap.changed("script", &sp.job, format!("would run (timeout {t} s)"));
        }
        return;
    }
    // Not /run/vmctx/context (the flag the final stage is gated on), and not under /run at
    // all: it is mounted noexec on systemd distributions, and scripts run by their shebang.
    let workdir = state.dir().join("files");
    if let Err(e) = private_copy(&plan.files, &workdir) {
        return ap.failed("script", "context files", e);
    }
    // 0700, the logs in it 0600: a script's output may show the secrets in its environment.
    let logdir = match state.open_instance_dir(id) {
        Ok(d) => d,
        Err(e) => return ap.failed("script", "logs", e),
    };
    for sp in due {
        // The package job is made for the image's package manager (a fact).
        let body = if sp.body.is_empty() {
            let upgrade = sp.job == "package-upgrade";
            match super::packages::script(&ap.root, facts.package_manager, upgrade) {
                Ok(b) => b,
                Err(e) => {
                    ap.failed("packages", "package_update", e);
                    continue;
                }
            }
        } else {
            sp.body.0.clone()
        };
        let job = Job {
            name: sp.job.clone(),
            body,
        };
        let timeout = Duration::from_secs(sp.timeout_secs.unwrap_or(USER_DATA_TIMEOUT));
        let outcome = execute(&job, plan, &workdir, &logdir, timeout);
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
        if sp.run == ScriptMode::Once && started {
            if let Err(e) = state.mark_done(id, &marker(&job.name), &mark) {
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

/// Timeout of a job the plan gave none (it always does).
const USER_DATA_TIMEOUT: u64 = 3600;

fn marker(name: &str) -> String {
    format!("script-{name}")
}

/// Copies the context's files, as read with it, into a fresh private folder (0700).
fn private_copy(files: &[(String, Vec<u8>)], dir: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, PermissionsExt::from_mode(0o700)).map_err(|e| e.to_string())?;
    for (name, bytes) in files {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

fn execute(job: &Job, plan: &Plan, workdir: &Path, logdir: &Dir, timeout: Duration) -> Ran {
    let (mut child, log_path) = match spawn(job, plan, workdir, logdir) {
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
    plan: &Plan,
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
        .envs(plan.env.iter().map(|(k, v)| (k, v)));
    cmd.env("MOUNT_DIR", workdir)
        .env("VMCTX_CONTEXT_DIR", workdir)
        .env("VMCTX_INSTANCE_ID", &plan.instance_id);
    cmd.current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0); // its own group, so a timeout kills its children too
    let child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    Ok((child, log_path))
}

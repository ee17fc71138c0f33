//! The packaged Debian guest and `cloud-init` on the command line: on an image without
//! cloud-init the package links `/usr/bin/cloud-init` to vmctx, and `cloud-init status --wait`
//! and `cloud-init query` answer from vmctx's boot; on an image with cloud-init the link is not
//! made and cloud-init's own command answers. The guest's report prints the evidence
//! (`=== CLOUD-INIT-CMD`: `link …`, `first-line …`, `cmd ARGS rc=N out=…`).

use std::path::{Path, PathBuf};
use vmctx_tests::*;

/// A disk from the cached rootfs with the package installed; `no_cloud_init` purges
/// cloud-init from it first.
fn image(deb: &Path, dir: &Path, no_cloud_init: bool) -> PathBuf {
    let img = dir.join("rootfs.img");
    let args: &[&str] = if no_cloud_init {
        &["--no-cloud-init"]
    } else {
        &[]
    };
    build_rootfs(deb, &img, args);
    img
}

fn boot(img: &Path, iso: &Path, append: &str) -> String {
    let log = img.with_extension("log");
    let started = std::time::Instant::now();
    let serial = boot_vm(
        &[
            "--disk",
            img.to_str().unwrap(),
            "--cdrom",
            iso.to_str().unwrap(),
            "--nic",
            "02:00:0a:00:03:33",
            "--append",
            append,
            "--timeout",
            "400",
        ],
        &log,
    );
    eprintln!("boot took {:.0} s", started.elapsed().as_secs_f64());
    serial
}

/// The context: network, hostname, and nothing that would leave a warning (the root
/// filesystem of the test disk cannot grow).
fn context_iso(dir: &Path) -> PathBuf {
    let ctx = context_dir(
        "VMID='61'\nSET_HOSTNAME='shim-guest'\nETH0_MAC='02:00:0a:00:03:33'\n\
         ETH0_IP='10.0.3.51'\nETH0_MASK='255.255.255.0'\nGROW_ROOTFS='NO'\n",
        &[],
    );
    build_iso(ctx.path(), &dir.join("ctx.iso")).unwrap()
}

/// The `cmd ARGS` line of the report: (exit code, output with `|` for line breaks).
fn cmd<'a>(serial: &'a str, args: &str) -> (i32, &'a str) {
    let prefix = format!("cmd {args} rc=");
    let line = serial_section(serial, "CLOUD-INIT-CMD")
        .into_iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no `cmd {args}` line:\n{serial}"));
    let (rc, out) = line.split_once(" out=").unwrap();
    (rc.parse().unwrap(), out)
}

#[test]
fn without_cloud_init_vmctx_answers_as_cloud_init() {
    let Some(deb) = packaged_vm_ready(&[]) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = image(&deb, t.path(), true);
    let iso = context_iso(t.path());
    let serial = boot(&img, &iso, "");
    let section = serial_section(&serial, "CLOUD-INIT-CMD");
    assert!(section.contains(&"link vmctx"), "{serial}");
    let (rc, out) = cmd(&serial, "status --wait");
    let long = cmd(&serial, "status --long").1;
    assert_eq!(
        (rc, out.trim_start_matches('.')),
        (0, "status: done"),
        "{long}\n{serial}"
    );
    assert!(
        long.starts_with(
            "status: done|extended_status: done|boot_status_code: enabled-by-generator|"
        ),
        "{long}"
    );
    assert!(
        long.contains("|detail: DataSourceOpenNebula [seed=/dev/"),
        "{long}"
    );
    assert_eq!(cmd(&serial, "query v1.local_hostname"), (0, "shim-guest"));
    let (rc, version) = cmd(&serial, "--version");
    assert!(rc == 0 && version.contains("vmctx"), "{version}");
    // And vmctx itself did the boot.
    assert!(serial.contains("=== HOSTNAME shim-guest"), "{serial}");
}

#[test]
fn with_cloud_init_its_own_command_answers() {
    let Some(deb) = packaged_vm_ready(&[]) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = image(&deb, t.path(), false);
    let iso = context_iso(t.path());
    let serial = boot(&img, &iso, "cloud-init=disabled");
    let section = serial_section(&serial, "CLOUD-INIT-CMD");
    assert!(section.contains(&"link none"), "{serial}");
    assert!(
        section
            .iter()
            .any(|l| l.starts_with("first-line #!") && l.contains("python3")),
        "{serial}"
    );
    // cloud-init's own answer: disabled on this kernel command line, and its own version.
    // (Bookworm's cloud-init ends the dots of --wait with a line break.)
    let (rc, out) = cmd(&serial, "status --wait");
    assert_eq!(
        (rc, out.trim_start_matches(['.', '|'])),
        (0, "status: disabled"),
        "{serial}"
    );
    let (rc, version) = cmd(&serial, "--version");
    assert!(rc == 0 && !version.contains("vmctx"), "{version}");
    assert!(serial.contains("=== HOSTNAME shim-guest"), "{serial}");
}

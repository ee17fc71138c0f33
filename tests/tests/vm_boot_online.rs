//! The packaged Debian guest with systemd-networkd enabled (as many cloud images have it):
//! `network-online.target` is reached as soon as vmctx configured its links, the final stage
//! follows at once, `vmctx status --wait` returns soon after SSH is up; SSH starts with the
//! fast host keys and the RSA key comes after it; kernel modules load in the guest. Times are
//! the guest's own clock (monotonic µs from the report's `=== BOOT` section).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use vmctx_tests::*;

/// A fresh copy of the networkd image, built once per test process.
fn image(deb: &Path, dir: &Path) -> PathBuf {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    fresh_image(&BUILT, deb, &["--networkd"], dir)
}

fn boot(img: &Path, ctx: &str, nics: &[&str]) -> String {
    let dir = context_dir(ctx, &[]);
    let iso = build_iso(dir.path(), &img.with_extension("iso")).unwrap();
    let mut args = vec![
        "--disk",
        img.to_str().unwrap(),
        "--cdrom",
        iso.to_str().unwrap(),
        "--append",
        "cloud-init=disabled",
        "--timeout",
        "500",
    ];
    for n in nics {
        args.extend(["--nic", n]);
    }
    boot_vm(&args, &img.with_extension("log"))
}

/// The fields of a `=== BOOT` line after the unit's name (numbers are monotonic µs).
fn boot_line<'a>(serial: &'a str, name: &str) -> Vec<&'a str> {
    serial_section(serial, "BOOT")
        .into_iter()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} line:\n{serial}"))
        .split_whitespace()
        .collect()
}

fn us(v: &str) -> u64 {
    v.parse().unwrap_or(0)
}

/// Seconds of guest time as printed: `[   12.345678]` or `12.34`.
fn secs_to_us(v: &str) -> u64 {
    let v = v.trim_matches(|c| c == '[' || c == ']' || c == ' ');
    (v.parse::<f64>().unwrap_or(0.0) * 1e6) as u64
}

const STATIC: &str = "VMID='81'\nSET_HOSTNAME='online-guest'\nETH0_MAC='02:00:0a:00:03:41'\n\
                      ETH0_IP='10.0.3.41'\nETH0_MASK='255.255.255.0'\nETH0_GATEWAY='10.0.3.1'\n\
                      GROW_ROOTFS='NO'\nUSERNAME='ec2-user'\n\
                      SSH_PUBLIC_KEY='ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnlineGuestKey u@h'\n";

/// "Right after" in guest µs: a second, three under a loaded TCG host (the guest clock runs on
/// while the emulator waits for a core).
const SLACK: u64 = 3_000_000;

#[test]
fn networkd_image_is_online_when_vmctx_is_done_and_ssh_comes_first() {
    let Some(deb) = packaged_vm_ready(&[]) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = image(&deb, t.path());
    let ctx =
        format!("{STATIC}START_SCRIPT='#!/bin/sh\necho ran >> /var/log/vmctx-test-start.log'\n");
    let serial = boot(&img, &ctx, &["02:00:0a:00:03:41"]);

    // The image is the real thing: modules load after the initrd.
    let modules = serial_section(&serial, "MODULES");
    assert!(modules.contains(&"autofs4 loaded"), "{serial}");
    assert!(modules.contains(&"isofs loaded"), "{serial}");
    assert!(
        !modules.iter().any(|l| l.contains("Failed to find module")),
        "{serial}"
    );

    // vmctx-local (Type=notify): started, ready (links, hostname, host keys), exited (users).
    let local = boot_line(&serial, "vmctx-local.service");
    let (local_start, local_exit, local_ready) = (us(local[1]), us(local[2]), us(local[3]));
    assert_eq!(local[0], "active", "{serial}");
    let online = boot_line(&serial, "network-online.target");
    assert_eq!(online[0], "active", "{serial}");
    let online_at = us(online[1]);
    let final_ = boot_line(&serial, "vmctx.service");
    let final_start = us(final_[1]);
    let ssh = boot_line(&serial, "ssh.service");
    let ssh_at = us(ssh[3]);
    let networkd = boot_line(&serial, "systemd-networkd.service");
    let (networkd_start, networkd_up) = (us(networkd[1]), us(networkd[3]));
    let wait = boot_line(&serial, "wait");
    let s = |t: u64| t as f64 / 1e6;
    let gap = |a: u64, b: u64| (a as f64 - b as f64) / 1e6;
    eprintln!(
        "guest times (s): local start {:.2}, ready {:.2}, exit {:.2}; networkd {:.2}..{:.2}; \
         online {:.2}; final start {:.2}; ssh {:.2}; status --wait {}",
        s(local_start),
        s(local_ready),
        s(local_exit),
        s(networkd_start),
        s(networkd_up),
        s(online_at),
        s(final_start),
        s(ssh_at),
        wait.get(1).unwrap_or(&"?"),
    );
    eprintln!(
        "online {:+.2} s after vmctx-local finished, {:+.2} s after it was ready, \
         {:+.2} s after networkd was up",
        gap(online_at, local_exit),
        gap(online_at, local_ready),
        gap(online_at, networkd_up),
    );
    assert!(
        local_start > 0 && local_start < local_ready && local_ready <= local_exit,
        "{serial}"
    );
    // networkd starts once vmctx's links and its files are in place (it reads them), not
    // before; vmctx-local goes on with the users meanwhile.
    assert!(networkd_start >= local_ready, "{serial}");
    // Every link is vmctx's: networkd's wait-online is skipped (it used to wait for its
    // 2-minute timeout), and the target follows networkd at once.
    let wait_online = boot_line(&serial, "systemd-networkd-wait-online.service");
    assert_eq!(
        (wait_online[0], wait_online.get(3).copied()),
        ("inactive", Some("no")),
        "{serial}"
    );
    assert!(
        online_at >= networkd_up && online_at <= networkd_up + SLACK,
        "{serial}"
    );
    // Nothing of vmctx's is left on the way: online follows networkd's own start, which
    // follows vmctx-local's readiness (printed above: seconds under TCG, PID 1 and networkd
    // sharing the one emulated CPU with the rest of the boot).
    assert!(online_at >= local_ready, "{serial}");
    assert!(
        final_start >= online_at && final_start <= online_at.max(local_exit) + SLACK,
        "vmctx.service started at {final_start} µs, online at {online_at} µs:\n{serial}"
    );
    assert_eq!(
        serial_section(&serial, "MARKERS"),
        ["ran"],
        "the start script ran:\n{serial}"
    );
    assert_eq!(wait[0], "0", "status --wait: {wait:?}\n{serial}");
    assert!(
        secs_to_us(wait[1]) <= ssh_at + 10_000_000,
        "status --wait returned at {} s, SSH up at {ssh_at} µs:\n{serial}",
        wait[1]
    );

    // SSH first: sshd started once the local stage was ready (with the new fast keys) and
    // before the RSA key was made; at the end all three exist and the console block lists
    // them once.
    let hostkeys = boot_line(&serial, "vmctx-hostkeys.service");
    assert!(
        local_ready <= ssh_at && us(hostkeys[1]) >= ssh_at,
        "local ready {local_ready}, ssh {ssh_at}, hostkeys {hostkeys:?}:\n{serial}"
    );
    let keys = serial_section(&serial, "HOSTKEYS").join("\n");
    for kind in ["(ED25519)", "(ECDSA)", "(RSA)"] {
        assert!(keys.contains(kind), "{kind}:\n{serial}");
    }
    // The console's block (whole lines; the journal's copy in the report has time stamps).
    let begin = "-----BEGIN SSH HOST KEY FINGERPRINTS-----";
    assert_eq!(
        serial.lines().filter(|l| *l == begin).count(),
        1,
        "{serial}"
    );
    let block: String = serial
        .lines()
        .skip_while(|l| *l != begin)
        .take_while(|l| *l != "-----END SSH HOST KEY FINGERPRINTS-----")
        .collect::<Vec<_>>()
        .join("\n");
    for kind in ["(ED25519)", "(ECDSA)", "(RSA)"] {
        assert!(
            block.contains(kind),
            "{kind} in the console block:\n{serial}"
        );
    }
}

#[test]
fn networkd_still_waits_for_the_dhcp_link_vmctx_hands_it() {
    let Some(deb) = packaged_vm_ready(&[]) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = image(&deb, t.path());
    let ctx = format!("{STATIC}ETH1_MAC='02:00:0a:00:03:42'\nETH1_METHOD='dhcp'\n");
    let serial = boot(&img, &ctx, &["02:00:0a:00:03:41", "02:00:0a:00:03:42"]);
    let online = boot_line(&serial, "network-online.target");
    assert_eq!(online[0], "active", "{serial}");
    // qemu's DHCP (10.0.2.0/24) on the second NIC, through networkd.
    assert!(
        section_has(&serial, "ADDR", "inet 10.0.2.15/24"),
        "{serial}"
    );
    let lease = serial_section(&serial, "LEASE")
        .first()
        .map(|l| secs_to_us(l.split(']').next().unwrap_or("")))
        .unwrap_or(0);
    assert!(
        lease > 0 && us(online[1]) >= lease,
        "network-online.target at {} µs, the DHCP lease at {lease} µs:\n{serial}",
        online[1]
    );
    let local = boot_line(&serial, "vmctx-local.service");
    assert!(
        us(online[1]) < us(local[2]) + 60_000_000,
        "wait-online did not run into its timeout:\n{serial}"
    );
}

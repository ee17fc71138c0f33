//! NIC hot-plug on a running guest (the packaged Debian image under qemu, systemd): the context
//! names two NICs, the VM boots with one; the test attaches the second over QMP
//! (`netdev_add` + `device_add virtio-net-pci,mac=…`), udev starts vmctx-reconfigure.service,
//! and the new NIC must get its address within seconds. The guest's reporter prints its IPv4
//! addresses on the serial console each time they change.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vmctx_tests::*;

/// A QMP session: commands and their answers (events in between are skipped).
struct Qmp {
    out: UnixStream,
    lines: BufReader<UnixStream>,
}

impl Qmp {
    fn connect(path: &Path) -> Qmp {
        let started = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(_) if started.elapsed() < Duration::from_secs(20) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("QMP {}: {e}", path.display()),
            }
        };
        let mut q = Qmp {
            out: s.try_clone().unwrap(),
            lines: BufReader::new(s),
        };
        let mut greeting = String::new();
        q.lines.read_line(&mut greeting).unwrap();
        assert!(greeting.contains("QMP"), "{greeting}");
        q.run(r#"{"execute":"qmp_capabilities"}"#);
        q
    }

    fn run(&mut self, cmd: &str) -> serde_json::Value {
        self.out.write_all(cmd.as_bytes()).unwrap();
        self.out.write_all(b"\n").unwrap();
        loop {
            let mut line = String::new();
            assert!(self.lines.read_line(&mut line).unwrap() > 0, "QMP closed");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v.get("event").is_some() {
                continue;
            }
            assert!(v.get("error").is_none(), "{cmd}: {v}");
            return v;
        }
    }
}

fn serial(log: &Path) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .replace('\r', "")
}

/// Waits until the serial log has `needle` (or the deadline passed).
fn wait_for(log: &Path, needle: &str, limit: Duration) -> Option<Instant> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if serial(log).contains(needle) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_nic_hot_added_to_a_running_guest_gets_its_address() {
    let Some(deb) = packaged_vm_ready(&[]) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("rootfs.img");
    build_rootfs(&deb, &img, &[]);
    let ctx = context_dir(
        "VMID='90'\nSET_HOSTNAME='hotplug'\n\
         ETH0_MAC='02:00:0a:00:03:28'\nETH0_IP='10.0.3.40'\nETH0_MASK='255.255.255.0'\n\
         ETH1_MAC='02:00:0a:00:04:28'\nETH1_IP='10.0.4.40'\nETH1_MASK='255.255.255.0'\n",
        &[],
    );
    let iso = build_iso(ctx.path(), &t.path().join("ctx.iso")).unwrap();
    let log = t.path().join("serial.log");
    let qmp_path = t.path().join("qmp.sock");
    let mut qemu = Command::new(workspace().join("vm-fixtures/boot"))
        .args(["--disk", img.to_str().unwrap()])
        .args(["--cdrom", iso.to_str().unwrap()])
        .args(["--nic", "02:00:0a:00:03:28"])
        .args(["--append", "cloud-init=disabled vmctx_test=hotplug"])
        .args(["--timeout", "400"])
        .args(["--qmp", qmp_path.to_str().unwrap()])
        .args(["--log", log.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut qmp = Qmp::connect(&qmp_path);
    let booted = wait_for(&log, "T_DONE", Duration::from_secs(300));
    if booted.is_none() {
        let _ = qemu.kill();
        panic!("the guest did not finish booting:\n{}", serial(&log));
    }
    let s = serial(&log);
    assert!(
        section_has(&s, "ADDR", "inet 10.0.3.40/24"),
        "first NIC:\n{s}"
    );
    // Let the boot's own reconfigure (the NIC's coldplug event) pass first.
    std::thread::sleep(Duration::from_secs(3));

    qmp.run(r#"{"execute":"netdev_add","arguments":{"type":"user","id":"hp1","restrict":true}}"#);
    let plugged = Instant::now();
    qmp.run(
        r#"{"execute":"device_add","arguments":{"driver":"virtio-net-pci","id":"hpnic","netdev":"hp1","mac":"02:00:0a:00:04:28","romfile":""}}"#,
    );
    let seen = wait_for(&log, "10.0.4.40/24", Duration::from_secs(60));
    let latency = seen.map(|s| s.duration_since(plugged));
    let _ = qmp.out.write_all(b"{\"execute\":\"quit\"}\n");
    let _ = qemu.wait();
    let s = serial(&log);
    let Some(latency) = latency else {
        panic!("the hot-plugged NIC got no address:\n{s}");
    };
    eprintln!(
        "hot-plug latency (TCG, device_add → address on the serial console): {:.1} s",
        latency.as_secs_f64()
    );
    assert!(
        latency < Duration::from_secs(30),
        "{:.1} s:\n{s}",
        latency.as_secs_f64()
    );
    // The first NIC kept its address throughout.
    let last = s
        .lines()
        .rev()
        .find(|l| l.starts_with("HOTPLUG "))
        .unwrap_or_default();
    assert!(
        last.contains("10.0.3.40/24") && last.contains("10.0.4.40/24"),
        "{s}"
    );
}

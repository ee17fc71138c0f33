//! Bad input: one line naming the source and the reason, exit 1, never a panic; usage errors
//! exit 2.

use std::process::Output;
use vmctx_tests::*;

fn fails_with(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err:?}");
    }
}

#[test]
fn not_an_iso() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("junk.img");
    std::fs::write(&f, vec![0x5a; 64 * 1024]).unwrap();
    let src = format!("opennebula:{}", f.display());
    fails_with(
        &vmctx(&["plan", "--source", &src, "--links-file", "/dev/null"]),
        1,
        &[&src, "not an ISO9660 image"],
    );
}

#[test]
fn tiny_file() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("tiny.img");
    std::fs::write(&f, b"CD001").unwrap();
    let src = format!("opennebula:{}", f.display());
    fails_with(&vmctx(&["show", "--source", &src]), 1, &[&src]);
}

#[test]
fn truncated_iso() {
    let t = tempfile::tempdir().unwrap();
    // A context with a big start script, so context.sh lies well past the descriptors.
    let body = format!("START_SCRIPT='{}'\n", "echo padding\n".repeat(20_000));
    let ctx = context_dir(&body, &[]);
    let Some(iso) = build_iso(ctx.path(), &t.path().join("full.iso")) else {
        return;
    };
    let bytes = std::fs::read(&iso).unwrap();
    let cut = t.path().join("cut.iso");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let src = format!("opennebula:{}", cut.display());
    fails_with(
        &vmctx(&["plan", "--source", &src, "--links-file", "/dev/null"]),
        1,
        &[&src, "truncated"],
    );
}

#[test]
fn iso_without_context_sh() {
    let t = tempfile::tempdir().unwrap();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("other.txt"), "x").unwrap();
    if !need("xorriso", have_tool("xorriso")) {
        return;
    }
    let iso = t.path().join("empty.iso");
    let o = std::process::Command::new("xorriso")
        .args([
            "-as", "mkisofs", "-quiet", "-V", "CONTEXT", "-J", "-R", "-o",
        ])
        .arg(&iso)
        .arg(d.path())
        .output()
        .unwrap();
    assert!(o.status.success());
    let src = format!("opennebula:{}", iso.display());
    fails_with(
        &vmctx(&["plan", "--source", &src, "--links-file", "/dev/null"]),
        1,
        &[&src, "no context.sh"],
    );
}

#[test]
fn missing_image_and_missing_dir() {
    fails_with(
        &vmctx(&[
            "plan",
            "--source",
            "opennebula:/nonexistent/ctx.iso",
            "--links-file",
            "/dev/null",
        ]),
        1,
        &["opennebula:/nonexistent/ctx.iso", "No such file"],
    );
    fails_with(
        &vmctx(&["show", "--source", "dir:/nonexistent/ctx"]),
        1,
        &["dir:/nonexistent/ctx"],
    );
}

#[test]
fn no_device_found() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("sys/class/block")).unwrap();
    fails_with(
        &vmctx(&[
            "plan",
            "--root",
            root.path().to_str().unwrap(),
            "--links-file",
            "/dev/null",
        ]),
        1,
        &["no context found"],
    );
}

#[test]
fn bad_links_file_names_the_line() {
    let ctx = context_dir("VMID='1'\n", &[]);
    let t = tempfile::tempdir().unwrap();
    let links = t.path().join("links");
    std::fs::write(&links, "# ok\n02:00:0a:00:03:28 eth0\n").unwrap();
    let o = vmctx(&[
        "plan",
        "--source",
        &format!("dir:{}", ctx.path().display()),
        "--links-file",
        links.to_str().unwrap(),
    ]);
    fails_with(&o, 1, &["line 2"]);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["plan", "--source", "floppy"][..],
        &["frobnicate"][..],
        &["mac2ip"][..],
        &["mac2ip", "not-a-mac"][..],
    ] {
        let o = vmctx(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn invalid_values_exit_1_but_plan_the_rest() {
    let ctx = context_dir(
        "VMID='1'\nSET_HOSTNAME='web'\nUPDATE_SCHEDULE='0 0 * *'\n",
        &[],
    );
    let o = vmctx(&[
        "plan",
        "--source",
        &format!("dir:{}", ctx.path().display()),
        "--links-file",
        "/dev/null",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["hostname"]["name"], "web");
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("UPDATE_SCHEDULE:"),
        "{v}"
    );
}

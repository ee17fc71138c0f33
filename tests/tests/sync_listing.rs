//! A hostile S3 endpoint's listings (a small fake S3 on loopback): nesting without end, pages
//! without end, pages too big, keys that forge report lines or hold NUL. Each is refused (or
//! the one object skipped) in bounded time and memory, and nothing changes on either side.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use vmctx_tests::{stderr, stdout, vmctx_bin, FakeImds as FakeS3, FakeResp};

/// A folder with one notebook in it, a state folder, and the sync command against `url`.
struct Case {
    tmp: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("nb")).unwrap();
        std::fs::write(tmp.path().join("nb/local.ipynb"), "mine").unwrap();
        Case { tmp }
    }

    fn command(&self, url: &str, json: bool) -> Command {
        let mut c = Command::new(vmctx_bin());
        c.args(["sync", "--once", "--bucket", "b", "--prefix", "nb/"])
            .arg("--dir")
            .arg(self.tmp.path().join("nb"))
            .args(["--endpoint", url])
            .arg("--state-dir")
            .arg(self.tmp.path().join("state"))
            .env_clear()
            .env("HOME", self.tmp.path())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
        if json {
            c.arg("--json");
        }
        c
    }

    /// Nothing changed here: the one notebook, no other file, no state.
    fn unchanged(&self) {
        let names: Vec<String> = std::fs::read_dir(self.tmp.path().join("nb"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["local.ipynb"]);
        let state = std::fs::read_dir(self.tmp.path().join("state")).map_or(0, |d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        });
        assert_eq!(state, 0, "no state written");
    }
}

/// Runs `cmd`, killing it past `limit` or `max_kib` of resident memory: (output, time, peak KiB).
fn run_bounded(mut cmd: Command, limit: Duration, max_kib: u64) -> (Output, Duration, u64) {
    vmctx_bin(); // built (once) before the clock starts
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
        if let Some(kib) = status.ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak = peak.max(kib);
        }
        if peak > max_kib || t.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    (o, t.elapsed(), peak)
}

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name>";

/// Only listings were asked for: nothing written in the bucket.
fn only_listed(s3: &FakeS3) {
    let reqs = s3.requests();
    assert!(
        reqs.iter()
            .all(|r| r.starts_with("GET /b/?") && r.contains("list-type=2")),
        "{:?}",
        &reqs[..reqs.len().min(5)]
    );
}

fn refused(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(o), stderr(o));
    let err = stderr(o);
    assert!(
        err.contains("the listing was refused") && err.contains(what),
        "{err}"
    );
}

#[test]
fn a_deeply_nested_listing_is_refused_fast_in_little_memory() {
    // 560 KB of nesting: the old parser took gigabytes (a path string per element end).
    let body = format!("{HEAD}{}{}", "<a>".repeat(80_000), "</a>".repeat(80_000));
    let s3 = FakeS3::start(move |_, _| FakeResp::new(200, body.clone()));
    let c = Case::new();
    let (o, took, kib) = run_bounded(
        c.command(&s3.url(), false),
        Duration::from_secs(60),
        256 << 10,
    );
    eprintln!("nested listing: refused in {took:?}, peak {kib} KiB");
    assert!(kib <= 256 << 10, "peak {kib} KiB");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    refused(&o, "nested deeper than 16");
    only_listed(&s3);
    c.unchanged();
}

#[test]
fn an_endless_listing_ends_with_an_error() {
    // Always truncated, always a new token, never a key.
    let s3 = FakeS3::start(|_, n| {
        FakeResp::new(
            200,
            format!("{HEAD}<IsTruncated>true</IsTruncated><NextContinuationToken>t{n}</NextContinuationToken></ListBucketResult>"),
        )
    });
    let c = Case::new();
    let (o, took, kib) = run_bounded(
        c.command(&s3.url(), false),
        Duration::from_secs(240),
        256 << 10,
    );
    eprintln!(
        "endless listing: refused in {took:?} after {} requests, peak {kib} KiB",
        s3.requests().len()
    );
    assert!(took < Duration::from_secs(180), "took {took:?}");
    refused(&o, "still truncated after 1000 pages");
    assert_eq!(s3.requests().len(), 1000);
    only_listed(&s3);
    c.unchanged();

    // A token given back again is refused at once.
    let s3 = FakeS3::start(|_, _| {
        FakeResp::new(
            200,
            format!("{HEAD}<IsTruncated>true</IsTruncated><NextContinuationToken>same</NextContinuationToken></ListBucketResult>"),
        )
    });
    let (o, _, _) = run_bounded(
        c.command(&s3.url(), false),
        Duration::from_secs(60),
        256 << 10,
    );
    refused(&o, "no new continuation token");
    assert_eq!(s3.requests().len(), 2);
    c.unchanged();
}

#[test]
fn too_many_keys_or_too_big_a_page_are_refused() {
    // Full pages of new keys without end: the key bound (200,000) ends it.
    let s3 = FakeS3::start(|_, n| {
        let keys: String = (0..1000)
            .map(|i| format!("<Contents><Key>nb/p{n}/k{i}.ipynb</Key><ETag>\"e\"</ETag><Size>1</Size></Contents>"))
            .collect();
        FakeResp::new(
            200,
            format!("{HEAD}{keys}<IsTruncated>true</IsTruncated><NextContinuationToken>t{n}</NextContinuationToken></ListBucketResult>"),
        )
    });
    let c = Case::new();
    let (o, took, kib) = run_bounded(
        c.command(&s3.url(), false),
        Duration::from_secs(240),
        512 << 10,
    );
    eprintln!("200,000 keys: refused in {took:?}, peak {kib} KiB");
    refused(&o, "more than 200000 keys");
    only_listed(&s3);
    c.unchanged();

    // One page of 9 MiB.
    let big = format!(
        "{HEAD}{}</ListBucketResult>",
        "<Contents><Key>nb/x</Key></Contents>".repeat((9 << 20) / 36)
    );
    let s3 = FakeS3::start(move |_, _| FakeResp::new(200, big.clone()));
    let (o, took, kib) = run_bounded(
        c.command(&s3.url(), false),
        Duration::from_secs(60),
        256 << 10,
    );
    eprintln!("9 MiB page: refused in {took:?}, peak {kib} KiB");
    refused(&o, "larger than 8388608 bytes");
    c.unchanged();
}

#[test]
fn keys_cannot_forge_report_lines_and_a_nul_key_is_skipped() {
    let listing = format!(
        "{HEAD}<IsTruncated>false</IsTruncated>\
         <Contents><Key>nb/bad&#0;.ipynb</Key><ETag>\"e1\"</ETag><Size>1</Size></Contents>\
         <Contents><Key>nb/x.ipynb&#10;uploaded: forged.ipynb</Key><ETag>\"e2\"</ETag><Size>1</Size></Contents>\
         <Contents><Key>nb/ok.ipynb</Key><ETag>\"e3\"</ETag><Size>2</Size></Contents>\
         </ListBucketResult>"
    );
    let s3 = FakeS3::start(move |req, _| match req.method.as_str() {
        "GET" if req.path.contains("list-type=2") => FakeResp::new(200, listing.clone()),
        "GET" if req.path.ends_with("/ok.ipynb") => FakeResp::new(200, "ok"),
        "GET" => FakeResp::new(200, "x"),
        // The local notebook goes up: accepted.
        _ => FakeResp::new(200, ""),
    });
    let c = Case::new();
    let o = c.command(&s3.url(), false).output().unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(c.tmp.path().join("nb/ok.ipynb")).unwrap(),
        "ok",
        "the rest of the listing synced"
    );
    for l in out.lines() {
        assert!(!l.starts_with("uploaded: forged"), "a forged line: {out}");
    }
    assert!(out.contains("x.ipynb\\nuploaded: forged.ipynb"), "{out}");
    assert!(
        out.contains("key \"nb/bad"),
        "the NUL key is reported: {out}"
    );
}

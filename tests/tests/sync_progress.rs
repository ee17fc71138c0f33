//! What `vmctx sync` shows while it works: without a terminal (the journal) no progress, one
//! summary line per cycle with the counts, bytes and duration; under a pseudo-terminal a status
//! line of files and bytes done of the total, redrawn in place and cleared at the end.

use std::process::Command;
use vmctx_tests::*;

/// `n` remote files of `size` bytes each.
fn remote_files(c: &SyncCase, n: usize, size: usize) {
    for i in 0..n {
        let body: String = std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), size).collect();
        c.rput(&format!("f{i:02}.ipynb"), &body);
    }
}

/// The readable summary lines (`sync: …`) of an output.
fn summaries(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("sync: ") && l.contains(" downloaded, "))
        .map(str::to_string)
        .collect()
}

/// The duration of a summary line (`…; 500.0 KiB in 0.2 s (…`), in seconds.
fn duration_of(summary: &str) -> f64 {
    let moved = summary.split("; ").nth(1).expect(summary);
    let (_, after) = moved.split_once(" in ").expect(summary);
    let d = after.split(" (").next().unwrap();
    match d.strip_suffix(" s") {
        Some(secs) => secs.parse().expect(summary),
        None => panic!("no duration in {summary:?}"),
    }
}

#[test]
fn without_a_terminal_one_line_per_cycle() {
    let Some(c) = SyncCase::new("progress_plain") else {
        return;
    };
    remote_files(&c, 5, 100 << 10);
    let o = c.text_command(&[]).output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let (out, err) = (stdout(&o), stderr(&o));
    let s = summaries(&out);
    assert_eq!(s.len(), 1, "one summary line: {out}");
    assert!(
        s[0].starts_with(
            "sync: 5 downloaded, 0 uploaded, 0 deleted here, 0 deleted in the bucket, \
             0 conflicts, 0 unchanged, 0 failed; 500.0 KiB in "
        ),
        "{}",
        s[0]
    );
    let secs = duration_of(&s[0]);
    assert!((0.0..60.0).contains(&secs), "{}", s[0]);
    assert!(
        !err.contains('\r') && !err.contains(" of 5 files"),
        "no progress without a terminal: {err:?}"
    );

    // Nothing to do: the same one line, with nothing moved.
    let o = c.text_command(&[]).output().unwrap();
    let s = summaries(&stdout(&o));
    assert_eq!(s.len(), 1, "{}", stdout(&o));
    assert!(
        s[0].contains(" 0 downloaded,") && s[0].contains(" 5 unchanged, 0 failed; 0 B in "),
        "{}",
        s[0]
    );
    // Uploads count their bytes as they are read.
    c.write("new1.ipynb", &"x".repeat(2048));
    c.write("new2.ipynb", &"y".repeat(2048));
    let o = c.text_command(&[]).output().unwrap();
    let s = summaries(&stdout(&o));
    assert_eq!(s.len(), 1, "{}", stdout(&o));
    assert!(
        s[0].starts_with(
            "sync: 0 downloaded, 2 uploaded, 0 deleted here, 0 deleted in the bucket, \
             0 conflicts, 5 unchanged, 0 failed; 4.0 KiB in "
        ),
        "{}",
        s[0]
    );
    // --json stays the report alone.
    let o = c.sync(&[]);
    assert!(summaries(&stdout(&o)).is_empty(), "{}", stdout(&o));
    assert_eq!(json(&o)["unchanged"], 7);
}

/// A shell word in single quotes.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn on_a_terminal_files_and_bytes_of_the_total() {
    if !need_tools(&["script"]) {
        return;
    }
    let Some(c) = SyncCase::new("progress_tty") else {
        return;
    };
    let (files, size) = (40, 256 << 10);
    remote_files(&c, files, size);
    // The same command, run by util-linux's script inside a new pseudo-terminal.
    let cmd = c.text_command(&["--jobs", "2"]);
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| quote(&a.to_string_lossy()))
        .collect();
    let mut script = Command::new("script");
    script
        .args(["-qfec", &line.join(" "), "/dev/null"])
        .env_clear()
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .stdin(std::process::Stdio::null());
    let o = script.output().unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    // Frames are rewritten in place: each starts after a carriage return.
    let frames: Vec<&str> = out
        .split('\r')
        .map(|f| f.trim_end_matches("\x1b[K"))
        .filter(|f| f.starts_with("sync: ") && f.contains(" files, "))
        .collect();
    assert!(!frames.is_empty(), "no progress shown: {out:?}");
    let total = format!(" of {files} files, ");
    let bytes = " of 10.0 MiB";
    for f in &frames {
        assert!(
            f.contains(&total) && f.ends_with(bytes),
            "totals from the start: {f:?}"
        );
    }
    let done: Vec<usize> = frames
        .iter()
        .map(|f| {
            f["sync: ".len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{frames:?}");
    let last = frames.last().unwrap();
    assert_eq!(
        *last,
        format!("sync: {files} of {files} files, 10.0 MiB of 10.0 MiB")
    );
    // Cleared before the summary, which is there once.
    let cleared = out.rfind("\r\x1b[K").expect("the status line is cleared");
    let summary = out.find("sync: 40 downloaded").expect(&out);
    assert!(cleared < summary, "{out:?}");
    assert_eq!(summaries(&out.replace('\r', "")).len(), 1, "{out:?}");
}

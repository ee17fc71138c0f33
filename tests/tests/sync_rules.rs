//! The notebook sync's rules against a real S3 server (moto on 127.0.0.1): first pull, the
//! cheap no-op, edits each way (same-size too), conflicts, deletions, delete-vs-edit, the
//! first-run union, excludes and temp files, and the one-way modes.

use vmctx_tests::{is_root, SyncCase};

const NAMES: [&str; 5] = [
    "plain.ipynb",
    "with space.ipynb",
    "unicode é 日本 📓.ipynb",
    "plus+pct%amp&hash#.ipynb",
    "dir/sub/deep.ipynb",
];

#[test]
fn initial_pull_then_noop_costs_one_list_request() {
    let Some(c) = SyncCase::new("initial-pull") else {
        return;
    };
    for n in NAMES {
        c.rput(n, &format!("content of {n}"));
    }
    c.rput(".ipynb_checkpoints/plain-checkpoint.ipynb", "checkpoint");
    let r = c.ok(&[]);
    assert_eq!(r["downloaded"], 5, "{r}");
    let mut want: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        c.local(),
        want,
        "every name, nothing excluded, no temp file"
    );
    for n in NAMES {
        assert_eq!(c.read(n).unwrap(), format!("content of {n}"));
    }

    let before = c.moto.log_lines().len();
    let r = c.ok(&[]);
    let seen = c.requests_since(before);
    assert_eq!(seen.len(), 1, "a no-op is one list request: {seen:?}");
    assert!(
        seen[0].contains("GET") && seen[0].contains("list-type=2"),
        "{seen:?}"
    );
    assert_eq!(r["requests"]["get"], 0);
    assert_eq!(r["requests"]["put"], 0);
    assert_eq!(r["unchanged"], 5);
}

#[test]
fn edits_travel_each_way_same_size_included() {
    let Some(c) = SyncCase::new("edits") else {
        return;
    };
    c.rput("a.ipynb", "aaaa");
    c.rput("b.ipynb", "bbbb");
    c.ok(&[]);

    c.write("a.ipynb", "local edit, longer");
    let r = c.ok(&[]);
    assert_eq!(
        (r["uploaded"].as_u64(), r["downloaded"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(c.rget("a.ipynb").unwrap(), "local edit, longer");

    c.rput("b.ipynb", "remote edit");
    let r = c.ok(&[]);
    assert_eq!(
        (r["uploaded"].as_u64(), r["downloaded"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(c.read("b.ipynb").unwrap(), "remote edit");

    // Same size as before on each side: still edits.
    c.write("a.ipynb", "LOCAL EDIT, LONGER");
    c.ok(&[]);
    assert_eq!(c.rget("a.ipynb").unwrap(), "LOCAL EDIT, LONGER");
    c.rput("b.ipynb", "REMOTE EDIT");
    c.ok(&[]);
    assert_eq!(c.read("b.ipynb").unwrap(), "REMOTE EDIT");

    let r = c.ok(&[]);
    assert_eq!(r["uploaded"], 0);
    assert_eq!(r["downloaded"], 0);
}

#[test]
fn both_edited_keeps_both_and_converges() {
    let Some(c) = SyncCase::new("conflict") else {
        return;
    };
    c.rput("dir/nb.ipynb", "base");
    c.ok(&[]);
    c.write("dir/nb.ipynb", "mine");
    c.rput("dir/nb.ipynb", "theirs");
    let r = c.ok(&[]);
    assert_eq!(r["conflicts"].as_array().unwrap().len(), 1, "{r}");
    let local = c.local();
    assert_eq!(local.len(), 2, "{local:?}");
    let copy = local
        .iter()
        .find(|n| n.contains(".conflict-"))
        .unwrap()
        .clone();
    assert!(
        copy.starts_with("dir/nb.conflict-") && copy.ends_with("Z.ipynb"),
        "{copy}"
    );
    assert_eq!(
        c.read("dir/nb.ipynb").unwrap(),
        "mine",
        "the local file keeps its name"
    );
    assert_eq!(
        c.read(&copy).unwrap(),
        "theirs",
        "the bucket's version beside it"
    );
    assert_eq!(c.rget("dir/nb.ipynb").unwrap(), "mine");
    assert_eq!(c.rget(&copy).unwrap(), "theirs");
    assert_eq!(c.remote(), local, "both sides hold both versions");
    let r = c.ok(&[]);
    assert_eq!(
        (r["uploaded"].as_u64(), r["downloaded"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn deletions_propagate_each_way() {
    let Some(c) = SyncCase::new("deletions") else {
        return;
    };
    for n in ["1", "2", "3", "4", "5"] {
        c.rput(&format!("{n}.ipynb"), n);
    }
    c.ok(&[]);
    std::fs::remove_file(c.dir().join("1.ipynb")).unwrap();
    c.rdel("2.ipynb");
    let r = c.ok(&[]);
    assert_eq!(
        (r["deleted_local"].as_u64(), r["deleted_remote"].as_u64()),
        (Some(1), Some(1))
    );
    let want = ["3.ipynb", "4.ipynb", "5.ipynb"];
    assert_eq!(c.local(), want);
    assert_eq!(c.remote(), want);
}

#[test]
fn a_deletion_never_beats_an_edit() {
    let Some(c) = SyncCase::new("delete-vs-edit") else {
        return;
    };
    for n in ["x", "y", "z"] {
        c.rput(&format!("{n}.ipynb"), n);
    }
    c.ok(&[]);
    std::fs::remove_file(c.dir().join("x.ipynb")).unwrap();
    c.rput("x.ipynb", "x edited remotely");
    c.write("y.ipynb", "y edited locally");
    c.rdel("y.ipynb");
    let r = c.ok(&[]);
    assert_eq!(r["deleted_local"], 0, "{r}");
    assert_eq!(r["deleted_remote"], 0, "{r}");
    assert_eq!(c.read("x.ipynb").unwrap(), "x edited remotely");
    assert_eq!(c.rget("y.ipynb").unwrap(), "y edited locally");
}

#[test]
fn first_run_merges_both_sides_and_deletes_nothing() {
    let Some(c) = SyncCase::new("union") else {
        return;
    };
    c.write("local-only.ipynb", "L");
    c.write("same.ipynb", "same bytes");
    c.write("differs.ipynb", "local version");
    c.rput("remote-only.ipynb", "R");
    c.rput("same.ipynb", "same bytes");
    c.rput("differs.ipynb", "remote version");
    let r = c.ok(&[]);
    assert_eq!(
        r["conflicts"].as_array().unwrap().len(),
        1,
        "only real differences: {r}"
    );
    let local = c.local();
    assert_eq!(local.len(), 5, "{local:?}");
    assert_eq!(c.remote(), local);
    assert_eq!(c.read("differs.ipynb").unwrap(), "local version");
    assert_eq!(c.read("remote-only.ipynb").unwrap(), "R");
    assert_eq!(c.rget("local-only.ipynb").unwrap(), "L");
}

#[test]
fn temp_files_are_swept_and_excludes_never_uploaded() {
    let Some(c) = SyncCase::new("excludes") else {
        return;
    };
    c.write(".half.ipynb.vmctx-part", "partial download of a killed run");
    c.write(".ipynb_checkpoints/a-checkpoint.ipynb", "checkpoint");
    c.write("scratch.tmp", "tmp");
    c.write("a.ipynb", "a");
    let r = c.ok(&["--exclude", "*.tmp"]);
    assert_eq!(r["swept"], 1);
    assert_eq!(c.remote(), ["a.ipynb"]);
    assert!(!c.dir().join(".half.ipynb.vmctx-part").exists());
}

#[test]
fn mass_deletion_and_an_empty_folder_are_refused() {
    let Some(c) = SyncCase::new("fail-closed") else {
        return;
    };
    for n in ["1", "2", "3", "4"] {
        c.write(&format!("{n}.ipynb"), n);
    }
    c.ok(&[]);
    for n in ["1", "2", "3"] {
        std::fs::remove_file(c.dir().join(format!("{n}.ipynb"))).unwrap();
    }
    let o = c.sync(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        vmctx_tests::stderr(&o).contains("3 of 4 files would be deleted"),
        "{}",
        vmctx_tests::stderr(&o)
    );
    assert_eq!(c.remote().len(), 4, "nothing deleted");

    std::fs::remove_file(c.dir().join("4.ipynb")).unwrap();
    let o = c.sync(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        vmctx_tests::stderr(&o).contains("is empty"),
        "{}",
        vmctx_tests::stderr(&o)
    );
    std::fs::remove_dir(c.dir()).unwrap();
    let o = c.sync(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        vmctx_tests::stderr(&o).contains("is missing"),
        "{}",
        vmctx_tests::stderr(&o)
    );
    assert_eq!(c.remote().len(), 4, "nothing deleted");

    std::fs::create_dir(c.dir()).unwrap();
    c.write("1.ipynb", "1");
    let r = c.ok(&["--max-delete", "100"]);
    assert_eq!(r["deleted_remote"], 3, "{r}");
}

#[test]
fn pull_mode_never_writes_the_bucket() {
    let Some(c) = SyncCase::new("pull-mode") else {
        return;
    };
    c.rput("shared.ipynb", "v1");
    c.ok(&["--mode", "pull"]);
    c.write("mine.ipynb", "local only");
    c.write("shared.ipynb", "local edit");
    c.rput("shared.ipynb", "v2");
    let before = c.moto.log_lines().len();
    let r = c.ok(&["--mode", "pull"]);
    assert!(c
        .requests_since(before)
        .iter()
        .all(|l| l.contains("\"GET ")));
    assert_eq!(r["conflicts"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(c.remote(), ["shared.ipynb"]);
    assert_eq!(c.rget("shared.ipynb").unwrap(), "v2");
    assert_eq!(
        c.read("shared.ipynb").unwrap(),
        "local edit",
        "a local edit is kept"
    );
    // The bucket changes again: the local edit still wins its name.
    c.rput("shared.ipynb", "v3");
    c.ok(&["--mode", "pull"]);
    assert_eq!(c.read("shared.ipynb").unwrap(), "local edit");
}

#[test]
fn push_mode_never_writes_the_folder() {
    let Some(c) = SyncCase::new("push-mode") else {
        return;
    };
    c.write("a.ipynb", "a");
    c.ok(&["--mode", "push"]);
    c.rput("theirs.ipynb", "remote only");
    c.rput("a.ipynb", "remote edit");
    let r = c.ok(&["--mode", "push"]);
    assert_eq!(r["downloaded"], 0, "{r}");
    assert_eq!(c.local(), ["a.ipynb"]);
    assert_eq!(c.read("a.ipynb").unwrap(), "a");
}

#[test]
fn downloads_belong_to_the_folder_owner() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to chown");
        return;
    }
    let Some(c) = SyncCase::new("owner") else {
        return;
    };
    std::os::unix::fs::chown(c.dir(), Some(4321), Some(4322)).unwrap();
    c.rput("sub/n.ipynb", "n");
    c.ok(&[]);
    use std::os::unix::fs::MetadataExt;
    for p in ["sub/n.ipynb", "sub"] {
        let m = std::fs::metadata(c.dir().join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (4321, 4322), "{p}");
    }
}

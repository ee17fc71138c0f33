//! Who owns the notebooks folder: `apply` makes `S3_SYNC_DIR` for the context's user, and a
//! root-run `vmctx sync` that finds it missing makes it for its parent's owner — never a
//! root-owned folder in a user's home, where every notebook would arrive unsaveable.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use vmctx_tests::{context_dir, is_root, json, need, stderr, stdout, vmctx, SyncCase};

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

#[test]
fn apply_makes_the_sync_folder_for_the_user() {
    if !need("root (to own files as another user)", is_root()) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(
        r.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nalice:x:4321:4322::/home/alice:/bin/sh\n",
    )
    .unwrap();
    std::fs::create_dir_all(r.join("home/alice")).unwrap();
    std::os::unix::fs::chown(r.join("home/alice"), Some(4321), Some(4322)).unwrap();
    let ctx = context_dir(
        "VMID='5'\nUSERNAME='alice'\nS3_SYNC_BUCKET='nb1'\nS3_SYNC_DIR='/home/alice/work/notebooks'\n",
        &[],
    );
    let src = format!("dir:{}", ctx.path().display());
    let args = [
        "--root",
        r.to_str().unwrap(),
        "apply",
        "--source",
        &src,
        "--stage",
        "final",
        "--json",
    ];
    let o = vmctx(&args);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    for p in ["home/alice/work", "home/alice/work/notebooks"] {
        assert_eq!(owner(&r.join(p)), (4321, 4322), "{p}");
    }
    let v = json(&o);
    let a = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "sync_dir")
        .unwrap_or_else(|| panic!("no sync_dir action: {v}"));
    assert_eq!(a["result"], "changed", "{a}");
    let o = vmctx(&args);
    assert_eq!(json(&o)["changed"], 0, "{}", stdout(&o));
}

#[test]
fn sync_never_makes_a_root_owned_folder_in_a_users_home() {
    if !need("root (to own files as another user)", is_root()) {
        return;
    }
    let Some(c) = SyncCase::new("folder-owner") else {
        return;
    };
    let home = c.tmp.path().join("home-bob");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(4400), Some(4401)).unwrap();
    let dir = home.join("notebooks");
    c.rput("sub/a.ipynb", "a");
    let r = c.ok(&["--dir", dir.to_str().unwrap()]);
    assert_eq!(r["downloaded"], 1, "{r}");
    for p in ["", "sub", "sub/a.ipynb"] {
        assert_eq!(owner(&dir.join(p)), (4400, 4401), "{p:?}");
    }
}

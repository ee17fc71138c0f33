use super::*;

#[test]
fn host_map_lists_folders_and_tree_files_by_address() {
    let d = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vm-fixtures/contexts/imported-ami/context.sh"
    );
    std::fs::create_dir(d.path().join("192.0.2.6")).unwrap();
    std::fs::copy(fixture, d.path().join("192.0.2.6/context.sh")).unwrap();
    std::fs::write(
        d.path().join("192.0.2.7.json"),
        r#"{"meta-data": {"instance-id": "i-00000000000000007"}}"#,
    )
    .unwrap();
    std::fs::write(d.path().join("not-an-ip.json"), "{}").unwrap();
    std::fs::write(d.path().join("192.0.2.8.json"), "[").unwrap();
    std::fs::create_dir(d.path().join("192.0.2.9")).unwrap(); // no context.sh
    let (m, unnamed) = list_host_map(d.path()).unwrap();
    assert_eq!(unnamed, ["not-an-ip.json"]);
    assert_eq!(m.len(), 3);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (a, _) = &m[&ip("192.0.2.6")];
    let built = build_vm(a).unwrap();
    assert_eq!(built.tree.instance_id(), "i-0a1b2c3d4e5f60718");
    assert_eq!(built.policy, Some(Policy::default()));
    let (b, before) = &m[&ip("192.0.2.7")];
    let built = build_vm(b).unwrap();
    assert_eq!(built.tree.instance_id(), "i-00000000000000007");
    assert_eq!(built.policy, None);
    assert!(build_vm(&m[&ip("192.0.2.8")].0).is_err());
    std::fs::write(d.path().join("192.0.2.7.json"), "{}").unwrap();
    let (m, _) = list_host_map(d.path()).unwrap();
    assert_ne!(&m[&ip("192.0.2.7")].1, before);
}

/// A manager running on a runtime of its own, its builds cut at 2 s.
fn running_manager(
    from: HostMap,
    build: Builder,
    status: Status,
) -> (tokio::runtime::Runtime, Arc<Imds>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let imds = Arc::new(Imds::new(Trees::ByAddr(HashMap::new()), Policy::default()).unwrap());
    let (hup_tx, hup_rx) = tokio::sync::mpsc::unbounded_channel();
    let manager = Manager::new(from, Flags::default(), imds.clone())
        .with(Duration::from_secs(2), build)
        .reporting(status);
    rt.spawn(async move {
        let _hup = hup_tx;
        manager.run(hup_rx).await
    });
    (rt, imds)
}

/// What the server answers `ip` from: an instance id, `building` or `refused`.
fn state(imds: &Imds, ip: IpAddr) -> String {
    match &*imds.trees() {
        Trees::ByAddr(m) => match m.get(&ip) {
            Some(Vm::Ready(s)) => s.tree.instance_id().to_string(),
            Some(Vm::Building) => "building".into(),
            None => "refused".into(),
        },
        Trees::Single(_) => unreachable!(),
    }
}

fn wait_for(imds: &Imds, ip: IpAddr, want: &str, within: Duration) {
    let t = Instant::now();
    while state(imds, ip) != want {
        assert!(
            t.elapsed() < within,
            "{ip}: {} after {within:?}, not {want}",
            state(imds, ip)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The host-map manager with a builder that takes `slow` long for 192.0.2.2 (and builds
/// the others at once), a budget of 2 s: the other VM is served from the first moment
/// and picks up its changes while 192.0.2.2's builds run out of time.
#[test]
fn a_vm_whose_build_is_slow_holds_up_no_other() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let d = tempfile::tempdir().unwrap();
    let write = |name: &str, id: &str| {
        std::fs::write(
            d.path().join(name),
            format!(r#"{{"meta-data": {{"instance-id": "{id}"}}}}"#),
        )
        .unwrap()
    };
    write("192.0.2.1.json", "i-00000000000000001");
    write("192.0.2.2.json", "i-00000000000000002");
    let slow = Duration::from_secs(30);
    // Builds of the slow VM started, and those still running (dropped at the budget).
    let started = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let (s2, r2) = (started.clone(), running.clone());
    let build: Builder = Arc::new(move |src: VmSource| {
        let (s2, r2) = (s2.clone(), r2.clone());
        Box::pin(async move {
            if matches!(&src, VmSource::TreeFile(p) if p.ends_with("192.0.2.2.json")) {
                struct Running(Arc<AtomicUsize>);
                impl Drop for Running {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                s2.fetch_add(1, Ordering::SeqCst);
                r2.fetch_add(1, Ordering::SeqCst);
                let _running = Running(r2);
                tokio::time::sleep(slow).await;
            }
            build_vm(&src)
        })
    });
    let (rt, imds) = running_manager(HostMap::Dir(d.path().into()), build, Status::default());
    let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    let state = |ip: IpAddr| state(&imds, ip);
    let wait_for = |ip: IpAddr, want: &str, within: Duration| wait_for(&imds, ip, want, within);
    // Ready while the slow one is still within its budget of 2 s.
    wait_for(a, "i-00000000000000001", Duration::from_secs(2));
    assert_eq!(state(b), "building");
    // Past its budget, the slow VM's build is stopped and the VM refused.
    wait_for(b, "refused", Duration::from_secs(5));
    assert_eq!(
        running.load(Ordering::SeqCst),
        0,
        "the slow build was stopped"
    );
    // Both change: each is built again at the next look at the folder; the quick one is
    // served its new tree while the slow one's new build runs.
    std::thread::sleep(Duration::from_millis(20));
    write("192.0.2.1.json", "i-00000000000000011");
    write("192.0.2.2.json", "i-00000000000000022");
    wait_for(b, "building", HOST_MAP_POLL + Duration::from_secs(3));
    wait_for(a, "i-00000000000000011", Duration::from_secs(2));
    assert_eq!(state(b), "building", "a's change waited for b's build");
    wait_for(b, "refused", Duration::from_secs(5));
    assert_eq!(started.load(Ordering::SeqCst), 2);
    assert_eq!(running.load(Ordering::SeqCst), 0);
    assert_eq!(state(a), "i-00000000000000011");
    rt.shutdown_timeout(Duration::from_millis(100));
}

/// OpenNebula VM folders are served at the addresses their builds give; an address two folders
/// claim is served to neither; a folder whose new context fails to build keeps its tree; a
/// folder that leaves is forgotten.
#[test]
fn opennebula_vms_at_their_context_s_addresses() {
    use super::super::opennebula_datastore::fake_image;
    use std::sync::Mutex;
    let d = tempfile::tempdir().unwrap();
    let ds = d.path().join("0");
    let write = |vm: &str, extra: usize| {
        std::fs::create_dir_all(ds.join(vm)).unwrap();
        let mut img = fake_image("CONTEXT");
        img.resize(img.len() + extra, 0);
        std::fs::write(ds.join(vm).join("disk.1"), img).unwrap();
    };
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    // What a build of each VM gives: its addresses, or (None) a failure.
    let plan: Arc<Mutex<HashMap<String, Option<Vec<IpAddr>>>>> = Arc::default();
    let set = |vm: &str, addrs: Option<&[&str]>| {
        let addrs = addrs.map(|a| a.iter().map(|s| ip(s)).collect());
        plan.lock().unwrap().insert(vm.to_string(), addrs);
    };
    set("5", Some(&["10.0.0.5", "2001:db8::5"]));
    set("6", Some(&["10.0.0.6"]));
    write("5", 0);
    write("6", 0);
    let p2 = plan.clone();
    let build: Builder = Arc::new(move |src: VmSource| {
        let vm = src.path().parent().unwrap().file_name().unwrap();
        let vm = vm.to_string_lossy().into_owned();
        let addrs = p2.lock().unwrap()[&vm].clone();
        Box::pin(async move {
            let id = format!("i-{vm:0>17}");
            let v = serde_json::json!({"meta-data": {"instance-id": id}});
            let tree = Tree::from_json(&v, vmctx_imds::tree::DEFAULT_SIZE_LIMIT).unwrap();
            let addrs = addrs.ok_or("broken")?;
            Ok(Built {
                tree,
                policy: None,
                addrs,
            })
        })
    });
    let status = Status::default();
    let (rt, imds) = running_manager(HostMap::OpenNebula(d.path().into()), build, status.clone());
    let wait = |addr: &str, want: &str| wait_for(&imds, ip(addr), want, Duration::from_secs(5));
    let (five, six) = ("i-00000000000000005", "i-00000000000000006");
    wait("10.0.0.5", five);
    wait("2001:db8::5", five);
    wait("10.0.0.6", six);
    // VM 6's context now claims 10.0.0.5 too: served to neither, the rest as before.
    set("6", Some(&["10.0.0.6", "10.0.0.5"]));
    write("6", 1);
    wait("10.0.0.5", "refused");
    assert_eq!(state(&imds, ip("2001:db8::5")), five);
    assert_eq!(state(&imds, ip("10.0.0.6")), six);
    let dup = |vm: &str| {
        let rows = status.lock().unwrap();
        let row = rows.iter().find(|r| r.source.ends_with(vm)).unwrap();
        (row.duplicate.clone(), row.state)
    };
    assert_eq!(dup("0/5"), (vec![ip("10.0.0.5")], "ready"));
    // VM 6 gives it up, and VM 5's new context fails to build: it keeps its tree.
    set("6", Some(&["10.0.0.6"]));
    set("5", None);
    write("6", 2);
    write("5", 1);
    wait("10.0.0.5", five);
    let t = Instant::now();
    while dup("0/5").1 != "stale" {
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", dup("0/5"));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dup("0/5"), (vec![], "stale"));
    assert_eq!(state(&imds, ip("10.0.0.5")), five);
    // VM 6 leaves.
    std::fs::remove_dir_all(ds.join("6")).unwrap();
    wait("10.0.0.6", "refused");
    assert_eq!(status.lock().unwrap().len(), 1);
    rt.shutdown_timeout(Duration::from_millis(100));
}

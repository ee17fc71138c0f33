use super::*;
use crate::tree::DEFAULT_SIZE_LIMIT;
use http_body_util::BodyExt;
use serde_json::json;

const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn tree() -> Tree {
    Tree::from_json(
        &json!({
            "meta-data": {
                "ami-id": "ami-2bb65342",
                "instance-id": "i-0a1b2c3d4e5f60718",
                "placement": {"availability-zone": "us-east-1a", "region": "us-east-1"},
                "public-keys": {"0=gsg-keypair": {"openssh-key": "ssh-rsa AAAA gsg-keypair"}},
                "network": {"interfaces": {"macs": {"02:00:c0:a8:01:06": {
                    "device-number": "0", "local-ipv4s": "192.168.1.6"}}}},
            },
            "dynamic": {"instance-identity": {"document": "{\"region\": \"us-east-1\"}"}},
            "user-data": "#!/bin/bash\n",
        }),
        DEFAULT_SIZE_LIMIT,
    )
    .unwrap()
}

fn imds(required: bool) -> Imds {
    let policy = Policy {
        tokens_required: required,
        hop_limit: 2,
    };
    Imds::new(Trees::Single(Arc::new(tree())), policy).unwrap()
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
    after: After,
}

fn call(i: &Imds, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let m = Method::from_bytes(method.as_bytes()).unwrap();
    let (r, after) = i.respond(PEER, &m, path, &h);
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = futures_lite_collect(r.into_body());
    Reply {
        status,
        headers,
        body,
        after,
    }
}

fn futures_lite_collect(b: Full<Bytes>) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bytes = rt.block_on(b.collect()).unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn get(i: &Imds, path: &str) -> Reply {
    call(i, "GET", path, &[])
}

fn token(i: &Imds) -> String {
    let r = call(
        i,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[test]
fn version_list_and_version_roots() {
    let i = imds(false);
    let r = get(&i, "/");
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("1.0\n2007-01-19\n"), "{}", r.body);
    assert!(r.body.ends_with("\n2022-09-24\nlatest"), "{}", r.body);
    assert!(!r.body.contains('\r') && !r.body.contains("\n\n"));
    assert_eq!(r.headers["content-type"], "text/plain");
    assert_eq!(r.headers["server"], "EC2ws");
    for v in VERSIONS {
        let bare = get(&i, &format!("/{v}"));
        assert_eq!((bare.status, bare.body.as_str()), (200, ""), "/{v}");
        let root = get(&i, &format!("/{v}/"));
        assert_eq!(root.body, "dynamic\nmeta-data\nuser-data", "/{v}/");
        let id = get(&i, &format!("/{v}/meta-data/instance-id"));
        assert_eq!(id.body, "i-0a1b2c3d4e5f60718", "{v}");
    }
}

#[test]
fn exact_listings_slashes_and_keys() {
    let i = imds(false);
    let md = "ami-id\ninstance-id\nnetwork/\nplacement/\npublic-keys/";
    assert_eq!(get(&i, "/latest/meta-data/").body, md);
    assert_eq!(
        get(&i, "/latest/meta-data").body,
        md,
        "a directory without its slash"
    );
    assert_eq!(get(&i, "/latest//meta-data//").body, md, "// collapsed");
    assert_eq!(
        get(&i, "/latest/meta-data/public-keys").body,
        "0=gsg-keypair"
    );
    assert_eq!(
        get(&i, "/latest/meta-data/public-keys/0/").body,
        "openssh-key"
    );
    assert_eq!(
        get(&i, "/latest/meta-data/public-keys/0/openssh-key").body,
        "ssh-rsa AAAA gsg-keypair"
    );
    let az = get(&i, "/latest/meta-data/placement/availability-zone/");
    assert_eq!(
        (az.status, az.body.as_str()),
        (200, "us-east-1a"),
        "a leaf with a slash"
    );
    assert_eq!(get(&i, "/latest//meta-data/ami-id").body, "ami-2bb65342");
    assert_eq!(get(&i, "/latest/user-data").body, "#!/bin/bash\n");
    assert_eq!(
        get(&i, "/latest/meta-data/network/interfaces/macs/").body,
        "02:00:c0:a8:01:06/"
    );
}

#[test]
fn unknown_paths_are_404_with_ec2s_body() {
    let i = imds(false);
    for p in [
        "/latest/meta-data/kernel-id",
        "/latest/meta-data/instance-id/x",
        "/latest/meta-data/public-keys/0=gsg-keypair",
        "/2099-01-01/meta-data/",
        "/meta-data/",
        "/latest/%2e%2e/meta-data",
        "/latest/meta-data/%69nstance-id",
        "/latest/api/token/x",
    ] {
        let r = get(&i, p);
        assert_eq!(r.status, 404, "{p}");
        assert!(r.body.contains("<title>404 - Not Found</title>"), "{p}");
        assert!(r
            .body
            .starts_with("<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>"));
    }
    for p in ["/latest/../meta-data", "/latest/./meta-data", "*"] {
        assert_eq!(get(&i, p).status, 400, "{p}");
    }
}

/// cloud-init's rule: every entry a listing names must answer 200. Walks all of it, in every
/// version, with and without the trailing slash.
#[test]
fn every_listed_entry_answers_200() {
    let i = imds(false);
    let mut seen = 0;
    for v in ["latest", "2009-04-04", "2021-03-23"] {
        let mut todo = vec![format!("/{v}/")];
        while let Some(dir) = todo.pop() {
            let r = get(&i, &dir);
            assert_eq!(r.status, 200, "{dir}");
            for line in r.body.lines() {
                assert!(!line.is_empty(), "{dir}: blank line");
                // `N=name` is fetched as `N/`, as every client does.
                let (name, is_dir) = match line.split_once('=') {
                    Some((n, _)) => (n, true),
                    None => (line.trim_end_matches('/'), line.ends_with('/')),
                };
                let top_dir = dir == format!("/{v}/") && name != "user-data";
                let child = format!("{dir}{name}");
                let r = get(&i, &child);
                assert_eq!(r.status, 200, "{child} is listed by {dir}");
                seen += 1;
                if is_dir || top_dir {
                    todo.push(format!("{child}/"));
                }
            }
        }
    }
    assert!(seen > 40, "{seen}");
}

#[test]
fn token_put_contract() {
    let i = imds(false);
    let r = call(
        &i,
        "PUT",
        "/latest/api/token",
        &[("x-aws-ec2-metadata-token-ttl-seconds", "300")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-aws-ec2-metadata-token-ttl-seconds"], "300");
    assert_eq!(r.headers["connection"], "close");
    assert_eq!(r.after, After::HopLimit(2));
    assert!(r.body.len() <= 70 && !r.body.is_empty());

    for ttl in [None, Some("0"), Some("21601"), Some("abc"), Some("")] {
        let h: Vec<(&str, &str)> = ttl
            .map(|t| vec![("x-aws-ec2-metadata-token-ttl-seconds", t)])
            .unwrap_or_default();
        let r = call(&i, "PUT", "/latest/api/token", &h);
        assert_eq!(r.status, 400, "{ttl:?}");
        assert_eq!(r.after, After::Nothing);
    }
    // Through a proxy: refused, whatever the TTL.
    let r = call(
        &i,
        "PUT",
        "/latest/api/token",
        &[
            ("x-aws-ec2-metadata-token-ttl-seconds", "300"),
            ("X-Forwarded-For", "203.0.113.9"),
        ],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.after, After::Nothing);
    // Only `latest` issues tokens.
    let r = call(
        &i,
        "PUT",
        "/2021-03-23/api/token",
        &[("x-aws-ec2-metadata-token-ttl-seconds", "300")],
    );
    assert_eq!(r.status, 403);
    // Reading the token path.
    for m in ["GET", "HEAD", "POST", "DELETE"] {
        let r = call(&i, m, "/latest/api/token", &[]);
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.headers["allow"], "PUT", "{m}");
    }
    // Writing metadata.
    for m in ["PUT", "POST", "DELETE", "PATCH"] {
        let r = call(&i, m, "/latest/meta-data/instance-id", &[]);
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.headers["allow"], "GET, HEAD");
    }
}

#[test]
fn required_tokens_answer_401_without_a_valid_one() {
    let i = imds(true);
    let p = "/latest/meta-data/instance-id";
    let r = get(&i, p);
    assert_eq!(r.status, 401);
    assert!(r.body.contains("401 - Unauthorized"));
    assert_eq!(get(&i, "/").status, 401);
    let bad = call(
        &i,
        "GET",
        p,
        &[(
            TOKEN_HEADER,
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )],
    );
    assert_eq!(bad.status, 401);
    let long = "A".repeat(71);
    assert_eq!(call(&i, "GET", p, &[(TOKEN_HEADER, &long)]).status, 401);
    let t = token(&i);
    let ok = call(&i, "GET", p, &[(TOKEN_HEADER, &t)]);
    assert_eq!((ok.status, ok.body.as_str()), (200, "i-0a1b2c3d4e5f60718"));
    assert_eq!(
        i.counters.to_string(),
        "requests=6 tokens_issued=1 no_token=2 bad_token=2 refused=0"
    );
}

#[test]
fn optional_tokens_serve_v1_and_count_it() {
    let i = imds(false);
    let p = "/latest/meta-data/instance-id";
    assert_eq!(get(&i, p).status, 200);
    assert_eq!(call(&i, "GET", p, &[(TOKEN_HEADER, "junk")]).status, 200);
    let t = token(&i);
    assert_eq!(call(&i, "GET", p, &[(TOKEN_HEADER, &t)]).status, 200);
    assert_eq!(
        i.counters
            .no_token
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        i.counters
            .bad_token
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn tokens_are_bound_to_the_tree_they_were_issued_for() {
    let i = imds(true);
    let t = token(&i);
    let other = Tree::from_json(
        &json!({"meta-data": {"instance-id": "i-0000000000000000f"}}),
        DEFAULT_SIZE_LIMIT,
    )
    .unwrap();
    i.replace_trees(Trees::Single(Arc::new(other)));
    let r = call(
        &i,
        "GET",
        "/latest/meta-data/instance-id",
        &[(TOKEN_HEADER, &t)],
    );
    assert_eq!(r.status, 401);
}

#[test]
fn host_map_picks_the_tree_by_source_address() {
    let a: IpAddr = "192.0.2.10".parse().unwrap();
    let mut m = HashMap::new();
    m.insert(
        a,
        Vm::Ready(Served::new(a, Arc::new(tree()), Policy::default())),
    );
    let i = Imds::new(Trees::ByAddr(m), Policy::default()).unwrap();
    let h = HeaderMap::new();
    let (r, _) = i.respond(a, &Method::GET, "/latest/meta-data/ami-id", &h);
    assert_eq!(r.status(), 200);
    let mapped: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
    let (r, _) = i.respond(mapped, &Method::GET, "/latest/meta-data/ami-id", &h);
    assert_eq!(r.status(), 200);
    let (r, _) = i.respond(PEER, &Method::GET, "/latest/meta-data/ami-id", &h);
    assert_eq!(r.status(), 404);
    let (r, _) = i.respond(PEER, &Method::GET, "/", &h);
    assert_eq!(r.status(), 404);
    assert!(i.trees().knows(mapped));
    assert!(!i.trees().knows(PEER));
}

/// Two VMs of one host with the same instance id (two clusters' VMIDs, two copies of a tree
/// file): A requires tokens by its own context, B by its own; the host's flags require none.
fn two_vms() -> (Imds, IpAddr, IpAddr) {
    let (a, b): (IpAddr, IpAddr) = ("192.0.2.10".parse().unwrap(), "192.0.2.11".parse().unwrap());
    let strict = Policy {
        tokens_required: true,
        hop_limit: 3,
    };
    let mut m = HashMap::new();
    m.insert(a, Vm::Ready(Served::new(a, Arc::new(tree()), strict)));
    m.insert(
        b,
        Vm::Ready(Served::new(
            b,
            Arc::new(tree()),
            Policy {
                tokens_required: true,
                hop_limit: 1,
            },
        )),
    );
    let host = Policy::default();
    (Imds::new(Trees::ByAddr(m), host).unwrap(), a, b)
}

fn from(i: &Imds, peer: IpAddr, method: &str, path: &str, h: &[(&str, &str)]) -> Reply {
    let mut headers = HeaderMap::new();
    for (k, v) in h {
        headers.append(
            hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let m = Method::from_bytes(method.as_bytes()).unwrap();
    let (r, after) = i.respond(peer, &m, path, &headers);
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: futures_lite_collect(r.into_body()),
        after,
    }
}

#[test]
fn each_vm_of_a_host_map_has_its_own_policy() {
    let (i, a, b) = two_vms();
    let p = "/latest/meta-data/instance-id";
    // A's context requires tokens: no token, no data (the host's own policy is optional).
    assert_eq!(from(&i, a, "GET", p, &[]).status, 401);
    let ttl = [("X-aws-ec2-metadata-token-ttl-seconds", "60")];
    let put = from(&i, a, "PUT", "/latest/api/token", &ttl);
    assert_eq!(put.status, 200);
    // Each VM's token response leaves with that VM's hop limit.
    assert_eq!(put.after, After::HopLimit(3));
    let put_b = from(&i, b, "PUT", "/latest/api/token", &ttl);
    assert_eq!(put_b.after, After::HopLimit(1));
    let ok = from(&i, a, "GET", p, &[(TOKEN_HEADER, &put.body)]);
    assert_eq!((ok.status, ok.body.as_str()), (200, "i-0a1b2c3d4e5f60718"));
}

#[test]
fn a_token_minted_for_one_vm_is_refused_for_another_with_the_same_instance_id() {
    let (i, a, b) = two_vms();
    let p = "/latest/meta-data/instance-id";
    let ttl = [("X-aws-ec2-metadata-token-ttl-seconds", "60")];
    let ta = from(&i, a, "PUT", "/latest/api/token", &ttl).body;
    let tb = from(&i, b, "PUT", "/latest/api/token", &ttl).body;
    assert_eq!(from(&i, b, "GET", p, &[(TOKEN_HEADER, &ta)]).status, 401);
    assert_eq!(from(&i, a, "GET", p, &[(TOKEN_HEADER, &tb)]).status, 401);
    assert_eq!(from(&i, a, "GET", p, &[(TOKEN_HEADER, &ta)]).status, 200);
    assert_eq!(from(&i, b, "GET", p, &[(TOKEN_HEADER, &tb)]).status, 200);
    // A v4-mapped peer is the same VM.
    let mapped: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
    assert_eq!(
        from(&i, mapped, "GET", p, &[(TOKEN_HEADER, &ta)]).status,
        200
    );
}

#[test]
fn a_vm_still_building_gets_503_and_an_unknown_address_404() {
    let a: IpAddr = "192.0.2.10".parse().unwrap();
    let mut m = HashMap::new();
    m.insert(a, Vm::Building);
    let i = Imds::new(Trees::ByAddr(m), Policy::default()).unwrap();
    let r = from(&i, a, "GET", "/latest/meta-data/instance-id", &[]);
    assert_eq!(r.status, 503);
    assert!(i.trees().knows(a));
    let r = from(&i, PEER, "GET", "/latest/meta-data/instance-id", &[]);
    assert_eq!(r.status, 404);
}

/// A VM served under two addresses counts its requests, 401s and 404s in one place, and its
/// tokens hold at both addresses and at no other VM's.
#[test]
fn a_vm_with_two_addresses_shares_its_tokens_and_counters() {
    let (a1, a2, b): (IpAddr, IpAddr, IpAddr) = (
        "192.0.2.10".parse().unwrap(),
        "2001:db8::10".parse().unwrap(),
        "192.0.2.11".parse().unwrap(),
    );
    let strict = Policy {
        tokens_required: true,
        hop_limit: 1,
    };
    let stats = Arc::new(VmStats::default());
    let va = Served::for_vm("ds/0/10", Arc::new(tree()), strict).counting(stats.clone());
    let vb = Served::for_vm("ds/0/11", Arc::new(tree()), strict);
    let mut m = HashMap::new();
    m.insert(a1, Vm::Ready(va.clone()));
    m.insert(a2, Vm::Ready(va));
    m.insert(b, Vm::Ready(vb.clone()));
    let i = Imds::new(Trees::ByAddr(m), Policy::default()).unwrap();
    let ttl = [("X-aws-ec2-metadata-token-ttl-seconds", "60")];
    let t = from(&i, a1, "PUT", "/latest/api/token", &ttl).body;
    let p = "/latest/meta-data/instance-id";
    assert_eq!(from(&i, a2, "GET", p, &[(TOKEN_HEADER, &t)]).status, 200);
    assert_eq!(from(&i, b, "GET", p, &[(TOKEN_HEADER, &t)]).status, 401);
    assert_eq!(from(&i, a1, "GET", p, &[]).status, 401);
    assert_eq!(
        from(
            &i,
            a1,
            "GET",
            "/latest/meta-data/nothing",
            &[(TOKEN_HEADER, &t)]
        )
        .status,
        404
    );
    assert_eq!(stats.get(), (4, 1, 1));
    assert_eq!(vb.stats.get(), (1, 1, 0));
}

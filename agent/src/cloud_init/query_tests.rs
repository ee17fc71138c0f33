use super::*;
use serde_json::json;

fn doc() -> Value {
    json!({
        "base64_encoded_keys": [],
        "ds": {"meta-data": {"local-hostname": "ip-1", "placement": {"availability-zone": "a1"}}},
        "sensitive_keys": ["userdata"],
        "userdata": "#cloud-config\n",
        "v1": {"instance_id": "one-3", "instance-id": "one-3", "local_hostname": "web",
               "cloud_name": "opennebula", "region": null, "public_ssh_keys": ["k1"]},
        "vendordata": ""
    })
}

fn ask(varname: &str) -> Result<String, QueryError> {
    answer(
        &doc(),
        &Args {
            varname: Some(varname.into()),
            ..Args::default()
        },
    )
}

#[test]
fn keys_aliases_and_values() {
    assert_eq!(ask("v1.local_hostname").unwrap(), "web");
    // v1's keys are also top-level keys.
    assert_eq!(ask("instance_id").unwrap(), "one-3");
    assert_eq!(ask("local_hostname").unwrap(), "web");
    // `-` keys by their `_` alias, at any depth.
    assert_eq!(ask("ds.meta_data.local_hostname").unwrap(), "ip-1");
    assert_eq!(
        ask("ds.meta-data.placement.availability_zone").unwrap(),
        "a1"
    );
    // Not strings: JSON, indent 1 ("null" for a null).
    assert_eq!(ask("v1.region").unwrap(), "null");
    assert_eq!(ask("v1.public_ssh_keys").unwrap(), "[\n \"k1\"\n]");
    assert_eq!(ask("userdata").unwrap(), "#cloud-config\n");
}

#[test]
fn missing_keys_in_cloud_inits_words() {
    assert_eq!(
        ask("v1.nope").unwrap_err().to_string(),
        "instance-data 'v1' has no 'nope'"
    );
    assert_eq!(
        ask("nope.deeper").unwrap_err().to_string(),
        "Undefined instance-data key 'nope.deeper'"
    );
    assert_eq!(
        ask("ds.meta_data.local_hostname.x")
            .unwrap_err()
            .to_string(),
        "instance-data 'ds.meta_data.local_hostname' has no 'x'"
    );
    assert_eq!(
        answer(&doc(), &Args::default()).unwrap_err(),
        QueryError::NothingAsked
    );
}

#[test]
fn all_and_list_keys() {
    let all = answer(
        &doc(),
        &Args {
            all: true,
            ..Args::default()
        },
    )
    .unwrap();
    let v: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(v["instance_id"], "one-3", "v1 keys copied to the top");
    assert_eq!(v["v1"]["instance-id"], "one-3");
    assert!(v.get("meta_data").is_none());
    assert!(all.starts_with("{\n \"base64_encoded_keys\": [],\n \"cloud_name\""));
    let keys = answer(
        &doc(),
        &Args {
            list_keys: true,
            varname: Some("v1".into()),
            ..Args::default()
        },
    )
    .unwrap();
    assert_eq!(
        keys,
        "cloud_name\ninstance-id\ninstance_id\nlocal_hostname\npublic_ssh_keys\nregion"
    );
    let not_dict = answer(
        &doc(),
        &Args {
            list_keys: true,
            varname: Some("v1.region".into()),
            ..Args::default()
        },
    );
    assert_eq!(not_dict, Err(QueryError::NotADict("v1.region".into())));
}

#[test]
fn format_templates() {
    let out = render(
        "{{ v1.cloud_name }}/{{local_hostname}} {{ v1.region }} {{ nope }}",
        &doc(),
    );
    assert_eq!(
        out.unwrap(),
        "opennebula/web None CI_MISSING_JINJA_VAR/nope"
    );
    assert_eq!(render("{% if x %}", &doc()), Err(QueryError::Template));
    assert_eq!(
        render("{{ v1.x | upper }}", &doc()),
        Err(QueryError::Template)
    );
}

#[test]
fn reads_by_privilege_and_never_through_links() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("run/vmctx");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = read(t.path(), None, false).unwrap_err();
    assert!(
        matches!(missing, QueryError::Missing(ref p) if p.ends_with("run/vmctx/instance-data.json"))
    );
    std::fs::write(
        dir.join("instance-data.json"),
        r#"{"userdata": "redacted for non-root user"}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("instance-data-sensitive.json"),
        r#"{"userdata": "ud"}"#,
    )
    .unwrap();
    assert_eq!(read(t.path(), None, true).unwrap()["userdata"], "ud");
    let user = read(t.path(), None, false).unwrap();
    assert_eq!(
        user["userdata"],
        "<redacted for non-root user> file:/run/vmctx/instance-data-sensitive.json"
    );
    // Root without the sensitive file: the redacted one.
    std::fs::remove_file(dir.join("instance-data-sensitive.json")).unwrap();
    assert_eq!(read(t.path(), None, true).unwrap()["userdata"], REDACTED);
    std::fs::rename(dir.join("instance-data.json"), dir.join("real.json")).unwrap();
    std::os::unix::fs::symlink(dir.join("real.json"), dir.join("instance-data.json")).unwrap();
    assert!(read(t.path(), None, true).is_err());
}

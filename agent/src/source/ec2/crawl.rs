//! The crawl: `meta-data/` listings followed down to the entries vmctx uses, every branch in
//! parallel (bounded by the client's permits), beside `user-data`. A listed entry that answers
//! 404 fails the read, as in cloud-init: the tree is inconsistent, so none of it is trusted.

use super::client::Client;
use super::Ec2Error;
use futures::future::{try_join, try_join_all, BoxFuture};
use futures::FutureExt;
use std::collections::BTreeMap;
use std::sync::Mutex;

const META: &str = "latest/meta-data/";

/// What was read: leaves by their path under `meta-data/` (`network/interfaces/macs/<mac>/
/// device-number`; public keys as `public-keys/<n>/openssh-key`), and the raw user-data.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub leaves: BTreeMap<String, String>,
    pub user_data: Option<Vec<u8>>,
    /// Fallbacks and refreshes worth a warning.
    pub notes: Vec<String>,
    /// HTTP requests made (the benchmark reports it).
    pub requests: u32,
}

impl Metadata {
    pub fn get(&self, path: &str) -> Option<&str> {
        self.leaves
            .get(path)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
    }
}

/// Top-level leaves and directories vmctx maps (see `map`).
const TOP: [&str; 10] = [
    "instance-id",
    "hostname",
    "local-hostname",
    "local-ipv4",
    "mac",
    "instance-type",
    "ami-id",
    "placement/",
    "public-keys/",
    "network/",
];
const NIC_LEAVES: [&str; 6] = [
    "device-number",
    "local-ipv4s",
    "subnet-ipv4-cidr-block",
    "ipv6s",
    "subnet-ipv6-cidr-blocks",
    "mac",
];

/// Whether the crawl follows `path` (relative to `meta-data/`).
fn wanted(path: &str) -> bool {
    if TOP.contains(&path) {
        return true;
    }
    if let Some(rest) = path.strip_prefix("network/") {
        let Some(macs) = rest.strip_prefix("interfaces/macs/") else {
            return rest == "interfaces/" || rest == "interfaces/macs/";
        };
        return match macs.split_once('/') {
            _ if macs.is_empty() => true,
            Some((_, "")) => true,
            Some((_, leaf)) => NIC_LEAVES.contains(&leaf),
            None => false,
        };
    }
    if let Some(rest) = path.strip_prefix("placement/") {
        return rest == "availability-zone" || rest == "region";
    }
    path.starts_with("public-keys/")
}

pub async fn crawl(client: &Client) -> Result<Metadata, Ec2Error> {
    let leaves = Mutex::new(BTreeMap::new());
    let meta = dir(client, String::new(), &leaves);
    let user_data = client.get("latest/user-data");
    // user-data is the one entry whose 404 means "none" (spec §6).
    let ((), user_data) = try_join(meta, user_data).await?;
    let leaves = leaves.into_inner().expect("crawl lock");
    if !leaves.contains_key("instance-id") {
        return Err(Ec2Error::Invalid {
            url: format!("{}/{META}", client.endpoint.url),
            what: "the listing has no instance-id".into(),
        });
    }
    Ok(Metadata {
        leaves,
        user_data: user_data.map(|b| b.to_vec()),
        ..Metadata::default()
    })
}

/// Lists `rel` (a directory under `meta-data/`, `""` for the top) and crawls what it wants.
fn dir<'a>(
    client: &'a Client,
    rel: String,
    out: &'a Mutex<BTreeMap<String, String>>,
) -> BoxFuture<'a, Result<(), Ec2Error>> {
    async move {
        let path = format!("{META}{rel}");
        let body = client.get(&path).await?.ok_or_else(|| Ec2Error::Status {
            url: format!("{}/{path}", client.endpoint.url),
            status: "404 Not Found".into(),
        })?;
        let text = String::from_utf8_lossy(&body);
        let mut jobs = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // public-keys/ lists `0=name`; its children are under `0/` (spec §1).
            let entry = match (rel.as_str(), line.split_once('=')) {
                ("public-keys/", Some((idx, _))) => format!("{idx}/"),
                _ => line.to_string(),
            };
            if entry.contains("..") || entry.starts_with('/') {
                continue; // never let a listing steer the crawl elsewhere
            }
            let child = format!("{rel}{entry}");
            if !wanted(&child) {
                continue;
            }
            let parent = format!("{}/{path}", client.endpoint.url);
            jobs.push(if child.ends_with('/') {
                dir(client, child, out)
            } else {
                leaf(client, child, parent, out)
            });
        }
        try_join_all(jobs).await.map(|_| ())
    }
    .boxed()
}

fn leaf<'a>(
    client: &'a Client,
    rel: String,
    parent: String,
    out: &'a Mutex<BTreeMap<String, String>>,
) -> BoxFuture<'a, Result<(), Ec2Error>> {
    async move {
        let path = format!("{META}{rel}");
        match client.get(&path).await? {
            Some(b) => {
                let text = String::from_utf8(b.to_vec()).map_err(|_| Ec2Error::Invalid {
                    url: format!("{}/{path}", client.endpoint.url),
                    what: "not UTF-8 text".into(),
                })?;
                out.lock().expect("crawl lock").insert(rel, text);
                Ok(())
            }
            None => Err(Ec2Error::ListedMissing {
                url: format!("{}/{path}", client.endpoint.url),
                parent,
            }),
        }
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn the_crawl_is_pruned() {
        for yes in [
            "instance-id",
            "network/",
            "network/interfaces/macs/",
            "network/interfaces/macs/02:00:00:00:00:01/",
            "network/interfaces/macs/02:00:00:00:00:01/local-ipv4s",
            "public-keys/0/openssh-key",
            "placement/region",
            "placement/",
        ] {
            assert!(wanted(yes), "{yes}");
        }
        for no in [
            "iam/",
            "ami-launch-index",
            "network/interfaces/macs/02:00:00:00:00:01/vpc-id",
            "placement/host-id",
            "block-device-mapping/",
        ] {
            assert!(!wanted(no), "{no}");
        }
    }
}

//! The Nova metadata service: `GET /openstack` lists the versions (oldest first, `latest`
//! last), then the chosen version's documents. No tokens; connect errors, 408, 429 and 5xx
//! are retried with backoff inside the budget (the service is often slow early in boot).

use super::{choose_version, schema, Kind, Metadata, OpenStackError};
use crate::source::ec2::client::Client;
use crate::source::ec2::{self, Options};

/// What the service said.
pub enum ServiceAnswer {
    OpenStack(Metadata),
    /// `/openstack` is not there: an EC2-style service only (read it as EC2).
    NoOpenStack,
}

pub fn read_service(opts: &Options) -> Result<ServiceAnswer, OpenStackError> {
    let client = Client::tokenless(opts.endpoint.clone(), opts.budget, opts.concurrency);
    ec2::runtime()?.block_on(async {
        let Some(listing) = client.get("openstack").await? else {
            return Ok(ServiceAnswer::NoOpenStack);
        };
        let listing = String::from_utf8_lossy(&listing);
        // Every listed version is taken to hold meta_data.json (Nova lists only those); the
        // GET below says so if it does not.
        let entries: Vec<(String, Kind)> = listing
            .lines()
            .map(|l| l.trim().trim_end_matches('/'))
            .filter(|l| !l.is_empty())
            .map(|l| (l.to_string(), Kind::Dir))
            .collect();
        let (version, note) = choose_version(&entries, |_| true)?;
        let dir = format!("openstack/{version}");
        let meta = format!("{dir}/{}", schema::META_DATA);
        let net = format!("{dir}/{}", schema::NETWORK_DATA);
        let user = format!("{dir}/user_data");
        let (meta_data, network_data, user_data) =
            futures::try_join!(client.get(&meta), client.get(&net), client.get(&user))?;
        let Some(meta_data) = meta_data else {
            return Err(ec2::Ec2Error::ListedMissing {
                url: format!("{}/{meta}", opts.endpoint.url),
                parent: format!("{}/openstack", opts.endpoint.url),
            }
            .into());
        };
        let mut notes = std::mem::take(&mut *client.notes.lock().expect("notes lock"));
        notes.extend(note);
        Ok(ServiceAnswer::OpenStack(Metadata {
            version: dir,
            meta_data: meta_data.to_vec(),
            network_data: network_data.map(|b| b.to_vec()),
            user_data: user_data.map(|b| b.to_vec()),
            network_eni: None,
            notes,
        }))
    })
}

/// Whether `endpoint` answers `GET /openstack` within the probe budget (one try).
pub fn has_service(endpoint: &ec2::Endpoint) -> bool {
    let client = Client::tokenless(endpoint.clone(), ec2::PROBE_BUDGET, 1);
    let Ok(rt) = ec2::runtime() else {
        return false;
    };
    rt.block_on(client.get("openstack"))
        .is_ok_and(|b| b.is_some_and(|b| b.starts_with(b"20") || b.ends_with(b"latest")))
}

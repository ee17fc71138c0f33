//! vmctx: make a generic VM image fit the instance it became.
//!
//! One data flow: [`source`] (where the facts come from) → [`context`] (what the
//! instance should be) → [`plan`] (what must change on this system) → apply.
//! [`context`] and [`derive`] are pure; [`facts`] is the only place that asks the
//! running system what it has.

pub mod apply;
pub mod clean;
pub mod cloud_init;
pub mod context;
pub mod derive;
pub mod facts;
pub mod files;
pub mod imds_serve;
pub mod imds_tree;
pub mod netlink;
pub mod notify;
pub mod os;
pub mod plan;
pub mod reconfigure;
pub mod retry;
pub mod schedule;
pub mod settings;
pub mod source;
pub mod ssh_keys;
pub mod stage;
pub mod state;
pub mod status;
pub mod sync;

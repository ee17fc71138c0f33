//! vmctx-imds: an EC2 instance metadata service (IMDSv1 and v2) that serves an in-memory
//! tree, exact to what EC2's clients probe. It knows nothing of where the tree comes from.
//!
//! [`tree`] holds the data and its rendered listings, [`path`] normalises request paths,
//! [`token`] issues and checks stateless session tokens, [`policy`] says whether tokens are
//! required, [`service`] answers one request, and [`server`] runs it over hyper.

pub mod path;
pub mod policy;
pub mod server;
pub mod service;
pub mod token;
pub mod tree;

pub use policy::Policy;
pub use service::{Imds, Served, Trees, Vm, VmStats};
pub use tree::{Tree, TreeError};

//! The metadata tree one instance sees under `/<version>/`: directories and byte leaves, with
//! every directory's EC2 listing rendered once when the tree is built (requests only look up).
//!
//! Names follow EC2's own conventions, so a tree can say everything in plain names:
//! - an entry whose name holds `=` (`0=gsg-keypair` under `public-keys`) is listed as written,
//!   without a `/`, and looked up by the part before the `=` (`public-keys/0/`);
//! - the version root lists its entries without `/` (`dynamic`, `meta-data`, `user-data`), as EC2
//!   does; deeper directories end in `/`.

use bytes::Bytes;
use serde_json::Value;
use std::collections::BTreeMap;

/// Default bound on a tree's size (names plus leaf bytes). EC2's user-data alone may be 16 KiB.
pub const DEFAULT_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("the metadata tree is larger than its limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{path:?}: a metadata name must be non-empty, without '/', and not '.' or '..'")]
    BadName { path: String },
    #[error("{path:?} is both a leaf and a directory")]
    Conflict { path: String },
    #[error("a tree file must be a JSON object, not {0}")]
    NotAnObject(&'static str),
}

#[derive(Debug, Clone)]
pub enum Node {
    Dir(Dir),
    Leaf(Bytes),
}

#[derive(Debug, Clone, Default)]
pub struct Dir {
    /// Lookup name (the part before any `=`) → (name as listed, child).
    entries: BTreeMap<String, (String, Node)>,
    /// The rendered listing; filled by [`Builder::build`].
    listing: Bytes,
}

impl Dir {
    pub fn listing(&self) -> &Bytes {
        &self.listing
    }

    pub fn get(&self, name: &str) -> Option<&Node> {
        self.entries.get(name).map(|(_, n)| n)
    }

    /// (listed name, child) in listing order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.values().map(|(l, n)| (l.as_str(), n))
    }

    fn render(&mut self, top: bool) {
        let mut out = Vec::new();
        for (label, node) in self.entries.values_mut() {
            if let Node::Dir(d) = node {
                d.render(false);
            }
            if !out.is_empty() {
                out.push(b'\n');
            }
            out.extend_from_slice(label.as_bytes());
            if matches!(node, Node::Dir(_)) && !top && !label.contains('=') {
                out.push(b'/');
            }
        }
        self.listing = Bytes::from(out);
    }
}

/// A built, immutable tree.
#[derive(Debug, Clone)]
pub struct Tree {
    root: Dir,
    instance_id: String,
    size: usize,
}

impl Tree {
    pub fn root(&self) -> &Dir {
        &self.root
    }

    /// `meta-data/instance-id`, or empty: tokens are bound to it.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Names plus leaf bytes, the measure of the size limit.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The node at these (already normalised) segments below the version root.
    pub fn lookup<'a, I: IntoIterator<Item = &'a str>>(&self, segments: I) -> Option<&Node> {
        let mut dir = &self.root;
        let mut node: Option<&Node> = None;
        for seg in segments {
            if let Some(n) = node {
                // A leaf has no children.
                let Node::Dir(d) = n else {
                    return None;
                };
                dir = d;
            }
            node = Some(dir.get(seg)?);
        }
        node
    }

    /// A tree from JSON: objects are directories, strings are leaves, any other value is a leaf
    /// holding its compact JSON text (`[]` for `events/maintenance/scheduled`).
    pub fn from_json(v: &Value, limit: usize) -> Result<Tree, TreeError> {
        fn walk(b: &mut Builder, prefix: &str, v: &Value) -> Result<(), TreeError> {
            let Value::Object(map) = v else {
                unreachable!("walk is called on objects only")
            };
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}/{k}")
                };
                match child {
                    Value::Object(m) if m.is_empty() => b.dir(&path)?,
                    Value::Object(_) => walk(b, &path, child)?,
                    Value::String(s) => b.leaf(&path, s.clone())?,
                    other => b.leaf(&path, other.to_string())?,
                }
            }
            Ok(())
        }
        let kind = match v {
            Value::Object(_) => None,
            Value::Null => Some("null"),
            Value::Bool(_) => Some("a boolean"),
            Value::Number(_) => Some("a number"),
            Value::String(_) => Some("a string"),
            Value::Array(_) => Some("an array"),
        };
        if let Some(k) = kind {
            return Err(TreeError::NotAnObject(k));
        }
        let mut b = Builder::new(limit);
        walk(&mut b, "", v)?;
        Ok(b.build())
    }

    /// The tree as JSON (leaves as UTF-8 text, lossy), the form [`Tree::from_json`] reads.
    pub fn to_json(&self) -> Value {
        fn dir(d: &Dir) -> Value {
            let map = d
                .entries
                .values()
                .map(|(label, node)| {
                    let v = match node {
                        Node::Dir(sub) => dir(sub),
                        Node::Leaf(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
                    };
                    (label.clone(), v)
                })
                .collect();
            Value::Object(map)
        }
        dir(&self.root)
    }
}

/// Builds a tree from `a/b/c` paths; parents are made as needed.
pub struct Builder {
    root: Dir,
    size: usize,
    limit: usize,
}

impl Builder {
    pub fn new(limit: usize) -> Builder {
        Builder {
            root: Dir::default(),
            size: 0,
            limit,
        }
    }

    /// Adds a leaf (replacing an earlier leaf at the same path).
    pub fn leaf(&mut self, path: &str, body: impl Into<Bytes>) -> Result<(), TreeError> {
        self.insert(path, Some(body.into()))
    }

    /// Adds an empty directory.
    pub fn dir(&mut self, path: &str) -> Result<(), TreeError> {
        self.insert(path, None)
    }

    fn insert(&mut self, path: &str, leaf: Option<Bytes>) -> Result<(), TreeError> {
        let bad = || TreeError::BadName { path: path.into() };
        let names: Vec<&str> = path.split('/').collect();
        if names
            .iter()
            .any(|n| n.is_empty() || *n == "." || *n == ".." || n.starts_with('='))
        {
            return Err(bad());
        }
        let (last, parents) = names.split_last().ok_or_else(bad)?;
        let mut dir = &mut self.root;
        let mut added = 0;
        for name in parents {
            let key = lookup_name(name);
            if !dir.entries.contains_key(key) {
                added += name.len();
            }
            let (_, node) = dir
                .entries
                .entry(key.to_string())
                .or_insert_with(|| (name.to_string(), Node::Dir(Dir::default())));
            dir = match node {
                Node::Dir(d) => d,
                Node::Leaf(_) => return Err(TreeError::Conflict { path: path.into() }),
            };
        }
        let key = lookup_name(last);
        match (dir.entries.get(key), &leaf) {
            (Some((_, Node::Dir(_))), Some(_)) | (Some((_, Node::Leaf(_))), None) => {
                return Err(TreeError::Conflict { path: path.into() })
            }
            (Some((_, Node::Dir(_))), None) => {}
            (old, _) => {
                if let Some((l, Node::Leaf(b))) = old {
                    self.size -= l.len() + b.len();
                }
                added += last.len() + leaf.as_ref().map_or(0, Bytes::len);
                let node = match leaf {
                    Some(b) => Node::Leaf(b),
                    None => Node::Dir(Dir::default()),
                };
                dir.entries
                    .insert(key.to_string(), (last.to_string(), node));
            }
        }
        self.size += added;
        if self.size > self.limit {
            return Err(TreeError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    /// The finished tree. A builder that went over its limit yields the tree as far as it fit;
    /// callers stop at the first `TooLarge`.
    pub fn build(mut self) -> Tree {
        self.root.render(true);
        let instance_id = match self.root.get("meta-data").and_then(|m| match m {
            Node::Dir(d) => d.get("instance-id"),
            Node::Leaf(_) => None,
        }) {
            Some(Node::Leaf(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        Tree {
            root: self.root,
            instance_id,
            size: self.size,
        }
    }
}

fn lookup_name(name: &str) -> &str {
    name.split_once('=').map_or(name, |(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn listing(t: &Tree, path: &str) -> String {
        let segs = path.split('/').filter(|s| !s.is_empty());
        let node = if path.is_empty() {
            return String::from_utf8(t.root().listing().to_vec()).unwrap();
        } else {
            t.lookup(segs).unwrap()
        };
        match node {
            Node::Dir(d) => String::from_utf8(d.listing().to_vec()).unwrap(),
            Node::Leaf(_) => panic!("{path} is a leaf"),
        }
    }

    fn sample() -> Tree {
        Tree::from_json(
            &json!({
                "meta-data": {
                    "instance-id": "i-0a1b2c3d4e5f60718",
                    "placement": {"availability-zone": "us-east-1a", "region": "us-east-1"},
                    "public-keys": {"0=gsg-keypair": {"openssh-key": "ssh-rsa AAAA gsg-keypair"}},
                    "events": {"maintenance": {"scheduled": []}},
                },
                "dynamic": {"instance-identity": {"document": "{}"}},
                "user-data": "#!/bin/sh\n",
            }),
            DEFAULT_SIZE_LIMIT,
        )
        .unwrap()
    }

    #[test]
    fn listings_are_ec2_shaped() {
        let t = sample();
        assert_eq!(listing(&t, ""), "dynamic\nmeta-data\nuser-data");
        assert_eq!(
            listing(&t, "meta-data"),
            "events/\ninstance-id\nplacement/\npublic-keys/"
        );
        assert_eq!(listing(&t, "meta-data/public-keys"), "0=gsg-keypair");
        assert_eq!(listing(&t, "meta-data/public-keys/0"), "openssh-key");
        assert_eq!(t.instance_id(), "i-0a1b2c3d4e5f60718");
        match t.lookup(["meta-data", "events", "maintenance", "scheduled"]) {
            Some(Node::Leaf(b)) => assert_eq!(&b[..], b"[]"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lookup_stops_at_leaves_and_unknown_names() {
        let t = sample();
        assert!(t.lookup(["meta-data", "instance-id", "x"]).is_none());
        assert!(t.lookup(["meta-data", "nope"]).is_none());
        assert!(t
            .lookup(["meta-data", "public-keys", "0=gsg-keypair"])
            .is_none());
    }

    #[test]
    fn size_limit_and_bad_names() {
        let mut b = Builder::new(20);
        b.leaf("meta-data/a", "0123456789").unwrap();
        assert_eq!(
            b.leaf("meta-data/b", "0123456789"),
            Err(TreeError::TooLarge { limit: 20 })
        );
        let mut b = Builder::new(100);
        for bad in ["", "a//b", "a/../b", "a/./b", "/a", "a/=x"] {
            assert!(
                matches!(b.leaf(bad, "x"), Err(TreeError::BadName { .. })),
                "{bad}"
            );
        }
        b.leaf("a/b", "x").unwrap();
        assert!(matches!(
            b.leaf("a/b/c", "x"),
            Err(TreeError::Conflict { .. })
        ));
        assert!(matches!(b.leaf("a", "x"), Err(TreeError::Conflict { .. })));
        assert!(matches!(
            Tree::from_json(&json!([1]), 10),
            Err(TreeError::NotAnObject(_))
        ));
    }

    #[test]
    fn replacing_a_leaf_counts_once() {
        let mut b = Builder::new(10);
        b.leaf("a", "12345678").unwrap();
        b.leaf("a", "12345678").unwrap();
        assert_eq!(b.build().size(), 9);
    }

    #[test]
    fn json_round_trip() {
        let t = sample();
        let again = Tree::from_json(&t.to_json(), DEFAULT_SIZE_LIMIT).unwrap();
        assert_eq!(again.to_json(), t.to_json());
        assert_eq!(listing(&again, "meta-data/public-keys"), "0=gsg-keypair");
    }
}

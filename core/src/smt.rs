//! The authenticated state map: a sparse Merkle tree over 256-bit keys whose root is named in
//! every block header, with proofs of presence and of absence.
//!
//! ## Shape
//! A key is a 32-byte digest (see [`crate::registry::state_key`]); its bits, most significant first,
//! give its path. Each key's leaf sits at the shallowest depth at which no other key shares its
//! path prefix; internal nodes exist exactly at prefixes shared by two or more keys. The shape is
//! therefore a function of the key set alone, so every node computes the same root whatever the
//! order of updates.
//!
//! ## Hashes (BLAKE3 `derive_key` contexts)
//! - empty subtree: 32 zero bytes;
//! - leaf: `BLAKE3("sabt/state-leaf/v1", key ‖ value_hash)`, `value_hash = BLAKE3("sabt/state-value/v1", value)`;
//! - internal node: `BLAKE3("sabt/state-node/v1", left ‖ right)`.
//!
//! Keys are never removed: the registry records status changes as new values.
//!
//! Storage comes in through [`SmtStore`] / [`SmtSink`], like the registry log's: the node backs them
//! with RocksDB inside a block's write set.

use crate::hash::{self, Hash32};
use crate::merkle::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

use hash::{STATE_LEAF as LEAF, STATE_NODE as NODE, STATE_VALUE as VALUE};

/// Where a node sits: its depth (0 = root, at most 256) and its path prefix (bits past `depth` are
/// zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodePos {
    /// Depth from the root.
    pub depth: u16,
    /// The first `depth` bits of every key below this node; the other bits are zero.
    pub prefix: Hash32,
}

impl NodePos {
    /// The root position.
    pub const ROOT: NodePos = NodePos { depth: 0, prefix: Hash32::ZERO };

    fn of(key: &Hash32, depth: u16) -> NodePos {
        let mut prefix = [0u8; 32];
        let full = usize::from(depth / 8);
        prefix[..full].copy_from_slice(&key.0[..full]);
        let rem = depth % 8;
        if rem > 0 {
            prefix[full] = key.0[full] & (0xffu8 << (8 - rem));
        }
        NodePos { depth, prefix: Hash32(prefix) }
    }

    /// A 34-byte storage key: depth (big-endian) then prefix, so nodes sort by depth.
    pub fn to_bytes(&self) -> [u8; 34] {
        let mut out = [0u8; 34];
        out[..2].copy_from_slice(&self.depth.to_be_bytes());
        out[2..].copy_from_slice(&self.prefix.0);
        out
    }
}

/// A stored node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtNode {
    /// Two children's hashes (either may be the empty hash, not both).
    Internal {
        /// Hash of the child whose next bit is 0.
        left: Hash32,
        /// Hash of the child whose next bit is 1.
        right: Hash32,
    },
    /// The only key below this position.
    Leaf {
        /// The key.
        key: Hash32,
        /// `BLAKE3("sabt/state-value/v1", value)`.
        value_hash: Hash32,
    },
}

impl SmtNode {
    /// The node's hash.
    pub fn hash(&self) -> Hash32 {
        match self {
            SmtNode::Internal { left, right } => node_hash(left, right),
            SmtNode::Leaf { key, value_hash } => leaf_hash(key, value_hash),
        }
    }
}

/// Reads nodes.
pub trait SmtStore {
    /// The node at `pos`, if any.
    fn get(&self, pos: NodePos) -> Result<Option<SmtNode>, StoreError>;
}

/// Writes nodes; a sink must read its own writes.
pub trait SmtSink: SmtStore {
    /// Stores `node` at `pos`, replacing what was there.
    fn put(&mut self, pos: NodePos, node: SmtNode) -> Result<(), StoreError>;
}

/// A sparse Merkle tree held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemorySmt {
    nodes: BTreeMap<NodePos, SmtNode>,
}

impl MemorySmt {
    /// Every stored node, by position.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodePos, &SmtNode)> {
        self.nodes.iter()
    }
}

impl SmtStore for MemorySmt {
    fn get(&self, pos: NodePos) -> Result<Option<SmtNode>, StoreError> {
        Ok(self.nodes.get(&pos).copied())
    }
}

impl SmtSink for MemorySmt {
    fn put(&mut self, pos: NodePos, node: SmtNode) -> Result<(), StoreError> {
        self.nodes.insert(pos, node);
        Ok(())
    }
}

/// The hash of a value stored under a key.
pub fn value_hash(value: &[u8]) -> Hash32 {
    hash::hash(VALUE, value)
}

/// A leaf's hash.
pub fn leaf_hash(key: &Hash32, value_hash: &Hash32) -> Hash32 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&key.0);
    buf[32..].copy_from_slice(&value_hash.0);
    hash::hash(LEAF, &buf)
}

/// An internal node's hash.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(&left.0);
    buf[32..].copy_from_slice(&right.0);
    hash::hash(NODE, &buf)
}

fn bit(key: &Hash32, depth: u16) -> bool {
    let i = usize::from(depth);
    (key.0[i / 8] >> (7 - i % 8)) & 1 == 1
}

fn missing(pos: NodePos) -> StoreError {
    StoreError::Damaged(format!("state node at depth {} prefix {}", pos.depth, pos.prefix))
}

/// The root hash of the tree in `store` (the empty hash when it holds no key).
pub fn root<S: SmtStore + ?Sized>(store: &S) -> Result<Hash32, StoreError> {
    Ok(store.get(NodePos::ROOT)?.map(|n| n.hash()).unwrap_or(Hash32::ZERO))
}

/// Sets `key` to the value whose hash is `value_hash`; returns the new root.
pub fn insert<S: SmtSink + ?Sized>(store: &mut S, key: &Hash32, value_hash: Hash32) -> Result<Hash32, StoreError> {
    // Walk down to the terminal position, remembering the path.
    let mut path: Vec<(NodePos, Hash32, Hash32)> = Vec::new();
    let mut depth: u16 = 0;
    let new_leaf = SmtNode::Leaf { key: *key, value_hash };
    let mut expect_empty = false;
    let mut hash = loop {
        let pos = NodePos::of(key, depth);
        match store.get(pos)? {
            Some(SmtNode::Internal { .. }) | Some(SmtNode::Leaf { .. }) if expect_empty => return Err(missing(pos)),
            Some(SmtNode::Internal { .. }) if depth >= 256 => return Err(missing(pos)),
            Some(SmtNode::Internal { left, right }) => {
                path.push((pos, left, right));
                expect_empty = (if bit(key, depth) { right } else { left }) == Hash32::ZERO;
                depth = depth.checked_add(1).filter(|d| *d <= 256).ok_or_else(|| missing(pos))?;
            }
            None if depth == 0 || expect_empty => {
                store.put(pos, new_leaf)?;
                break new_leaf.hash();
            }
            None => return Err(missing(pos)),
            Some(SmtNode::Leaf { key: other, .. }) if other == *key => {
                store.put(pos, new_leaf)?;
                break new_leaf.hash();
            }
            Some(old @ SmtNode::Leaf { key: other, .. }) => {
                // Push both leaves down to where their paths part, with internal nodes above.
                let split = (depth..256).find(|&d| bit(key, d) != bit(&other, d)).ok_or_else(|| missing(pos))?;
                store.put(NodePos::of(&other, split + 1), old)?;
                store.put(NodePos::of(key, split + 1), new_leaf)?;
                let (l, r) =
                    if bit(key, split) { (old.hash(), new_leaf.hash()) } else { (new_leaf.hash(), old.hash()) };
                let mut h = node_hash(&l, &r);
                store.put(NodePos::of(key, split), SmtNode::Internal { left: l, right: r })?;
                for d in (depth..split).rev() {
                    let (l, r) = if bit(key, d) { (Hash32::ZERO, h) } else { (h, Hash32::ZERO) };
                    store.put(NodePos::of(key, d), SmtNode::Internal { left: l, right: r })?;
                    h = node_hash(&l, &r);
                }
                break h;
            }
        }
    };
    // Rehash the path upwards.
    for (pos, left, right) in path.into_iter().rev() {
        let (l, r) = if bit(key, pos.depth) { (left, hash) } else { (hash, right) };
        store.put(pos, SmtNode::Internal { left: l, right: r })?;
        hash = node_hash(&l, &r);
    }
    Ok(hash)
}

/// Sets every key of `updates` (key → value hash) in one pass and returns the new root. Each node on
/// the union of the keys' paths is read, rehashed and written once, where [`insert`] key by key
/// does it once per key: a block's updates share the top of the tree. The tree is the one that
/// inserting the same keys one by one, in any order, gives.
pub fn insert_batch<S: SmtSink + ?Sized>(
    store: &mut S,
    updates: &BTreeMap<Hash32, Hash32>,
) -> Result<Hash32, StoreError> {
    let items: Vec<(Hash32, Hash32)> = updates.iter().map(|(k, v)| (*k, *v)).collect();
    let existing = store.get(NodePos::ROOT)?;
    if items.is_empty() {
        return Ok(existing.map(|n| n.hash()).unwrap_or(Hash32::ZERO));
    }
    update_at(store, 0, existing, &items)
}

/// Updates the subtree at `depth` on the path of `items` (non-empty, sorted, distinct keys sharing
/// their first `depth` bits), which holds `existing`; returns its new hash.
fn update_at<S: SmtSink + ?Sized>(
    store: &mut S,
    depth: u16,
    existing: Option<SmtNode>,
    items: &[(Hash32, Hash32)],
) -> Result<Hash32, StoreError> {
    let pos = NodePos::of(&items[0].0, depth);
    match existing {
        None => fresh(store, depth, items),
        Some(SmtNode::Leaf { key, value_hash }) => {
            // The leaf's key goes down with the others, unless one of them replaces it.
            match items.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(_) => fresh(store, depth, items),
                Err(at) => {
                    let mut all = Vec::with_capacity(items.len() + 1);
                    all.extend_from_slice(&items[..at]);
                    all.push((key, value_hash));
                    all.extend_from_slice(&items[at..]);
                    fresh(store, depth, &all)
                }
            }
        }
        Some(SmtNode::Internal { .. }) if depth >= 256 => Err(missing(pos)),
        Some(SmtNode::Internal { left, right }) => {
            let (lo, hi) = items.split_at(items.partition_point(|(k, _)| !bit(k, depth)));
            let l = if lo.is_empty() { left } else { update_child(store, depth + 1, left, lo)? };
            let r = if hi.is_empty() { right } else { update_child(store, depth + 1, right, hi)? };
            store.put(pos, SmtNode::Internal { left: l, right: r })?;
            Ok(node_hash(&l, &r))
        }
    }
}

/// [`update_at`] for the child at `depth` whose hash its parent records as `hash`.
fn update_child<S: SmtSink + ?Sized>(
    store: &mut S,
    depth: u16,
    hash: Hash32,
    items: &[(Hash32, Hash32)],
) -> Result<Hash32, StoreError> {
    let pos = NodePos::of(&items[0].0, depth);
    match (hash == Hash32::ZERO, store.get(pos)?) {
        (true, Some(_)) | (false, None) => Err(missing(pos)),
        (_, existing) => update_at(store, depth, existing, items),
    }
}

/// Writes the subtree at `depth` holding exactly `items` (non-empty, sorted, distinct, sharing
/// their first `depth` bits) where nothing is stored below; returns its hash.
fn fresh<S: SmtSink + ?Sized>(store: &mut S, depth: u16, items: &[(Hash32, Hash32)]) -> Result<Hash32, StoreError> {
    let pos = NodePos::of(&items[0].0, depth);
    if let [(key, value_hash)] = items {
        let leaf = SmtNode::Leaf { key: *key, value_hash: *value_hash };
        store.put(pos, leaf)?;
        return Ok(leaf.hash());
    }
    if depth >= 256 {
        // Two keys with the same 256 bits: the caller broke the contract.
        return Err(missing(pos));
    }
    let (lo, hi) = items.split_at(items.partition_point(|(k, _)| !bit(k, depth)));
    let l = if lo.is_empty() { Hash32::ZERO } else { fresh(store, depth + 1, lo)? };
    let r = if hi.is_empty() { Hash32::ZERO } else { fresh(store, depth + 1, hi)? };
    store.put(pos, SmtNode::Internal { left: l, right: r })?;
    Ok(node_hash(&l, &r))
}

/// What a proof ends at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Terminal {
    /// An empty subtree: the key is absent.
    Empty,
    /// A leaf: the key's own (presence) or another key's whose path it shares (absence).
    Leaf {
        /// The leaf's key.
        key: Hash32,
        /// The leaf's value hash.
        value_hash: Hash32,
    },
}

/// A proof that a key has a given value, or has none, under a root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtProof {
    /// Sibling hashes from the root down.
    pub siblings: Vec<Hash32>,
    /// Where the key's path ends.
    pub terminal: Terminal,
}

/// Why a state proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SmtProofError {
    /// More than 256 siblings.
    #[error("state proof has {0} siblings; at most 256 are possible")]
    TooLong(usize),
    /// The terminal leaf is not on the key's path.
    #[error("state proof ends at a leaf that is not on the key's path")]
    OffPath,
    /// The recomputed root differs.
    #[error("state proof does not lead to the root {expected}: it gives {computed}")]
    RootMismatch {
        /// The root the proof was checked against.
        expected: Hash32,
        /// The root it computes.
        computed: Hash32,
    },
}

/// A proof for `key` against the current root.
pub fn prove<S: SmtStore + ?Sized>(store: &S, key: &Hash32) -> Result<SmtProof, StoreError> {
    let mut siblings = Vec::new();
    let mut depth: u16 = 0;
    loop {
        let pos = NodePos::of(key, depth);
        match store.get(pos)? {
            None if depth == 0 => return Ok(SmtProof { siblings, terminal: Terminal::Empty }),
            None => return Err(missing(pos)),
            Some(SmtNode::Leaf { key, value_hash }) => {
                return Ok(SmtProof { siblings, terminal: Terminal::Leaf { key, value_hash } });
            }
            Some(SmtNode::Internal { .. }) if depth >= 256 => return Err(missing(pos)),
            Some(SmtNode::Internal { left, right }) => {
                let (next, sibling) = if bit(key, depth) { (right, left) } else { (left, right) };
                siblings.push(sibling);
                if next == Hash32::ZERO {
                    return Ok(SmtProof { siblings, terminal: Terminal::Empty });
                }
                depth = depth.checked_add(1).filter(|d| *d <= 256).ok_or_else(|| missing(pos))?;
            }
        }
    }
}

impl SmtProof {
    /// Checks the proof against `root` and returns what it proves for `key`: `Some(value_hash)` if
    /// present, `None` if absent.
    pub fn verify(&self, root: &Hash32, key: &Hash32) -> Result<Option<Hash32>, SmtProofError> {
        let n = self.siblings.len();
        if n > 256 {
            return Err(SmtProofError::TooLong(n));
        }
        let (mut h, found) = match &self.terminal {
            Terminal::Empty => (Hash32::ZERO, None),
            Terminal::Leaf { key: k, value_hash } => {
                let depth = u16::try_from(n).map_err(|_| SmtProofError::TooLong(n))?;
                if NodePos::of(k, depth) != NodePos::of(key, depth) {
                    return Err(SmtProofError::OffPath);
                }
                (leaf_hash(k, value_hash), (k == key).then_some(*value_hash))
            }
        };
        for (i, sibling) in self.siblings.iter().enumerate().rev() {
            let depth = u16::try_from(i).map_err(|_| SmtProofError::TooLong(n))?;
            h = if bit(key, depth) { node_hash(sibling, &h) } else { node_hash(&h, sibling) };
        }
        if h != *root {
            return Err(SmtProofError::RootMismatch { expected: *root, computed: h });
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(i: u32) -> Hash32 {
        hash::hash(hash::TEST, &i.to_be_bytes())
    }

    #[test]
    fn empty_and_single() {
        let mut t = MemorySmt::default();
        assert_eq!(root(&t).unwrap(), Hash32::ZERO);
        let p = prove(&t, &k(1)).unwrap();
        assert_eq!(p.verify(&Hash32::ZERO, &k(1)).unwrap(), None);
        let r = insert(&mut t, &k(1), value_hash(b"a")).unwrap();
        assert_eq!(r, leaf_hash(&k(1), &value_hash(b"a")));
        assert_eq!(root(&t).unwrap(), r);
        assert_eq!(prove(&t, &k(1)).unwrap().verify(&r, &k(1)).unwrap(), Some(value_hash(b"a")));
        assert_eq!(prove(&t, &k(2)).unwrap().verify(&r, &k(2)).unwrap(), None);
    }

    #[test]
    fn keys_sharing_a_long_prefix() {
        let mut t = MemorySmt::default();
        let a = Hash32([0u8; 32]);
        let mut b = a;
        b.0[31] = 1; // differs only in the very last bit
        insert(&mut t, &a, value_hash(b"a")).unwrap();
        let r = insert(&mut t, &b, value_hash(b"b")).unwrap();
        let pa = prove(&t, &a).unwrap();
        assert_eq!(pa.siblings.len(), 256);
        assert_eq!(pa.verify(&r, &a).unwrap(), Some(value_hash(b"a")));
        assert_eq!(prove(&t, &b).unwrap().verify(&r, &b).unwrap(), Some(value_hash(b"b")));
        let mut c = a;
        c.0[0] = 0x80;
        assert_eq!(prove(&t, &c).unwrap().verify(&r, &c).unwrap(), None);
    }

    #[test]
    fn a_batch_pushes_a_leaf_down_a_long_shared_prefix() {
        let a = Hash32([0u8; 32]);
        let mut b = a;
        b.0[31] = 1;
        let mut c = a;
        c.0[0] = 0x80;
        let mut one_by_one = MemorySmt::default();
        let mut batched = MemorySmt::default();
        insert(&mut one_by_one, &a, value_hash(b"a")).unwrap();
        insert_batch(&mut batched, &BTreeMap::from([(a, value_hash(b"a"))])).unwrap();
        insert(&mut one_by_one, &b, value_hash(b"b")).unwrap();
        let r = insert(&mut one_by_one, &c, value_hash(b"c")).unwrap();
        let got = insert_batch(&mut batched, &BTreeMap::from([(b, value_hash(b"b")), (c, value_hash(b"c"))])).unwrap();
        assert_eq!(got, r);
        assert_eq!(batched.nodes, one_by_one.nodes);
        assert_eq!(prove(&batched, &a).unwrap().siblings.len(), 256);
        // An empty batch changes nothing; a damaged store is reported, not papered over.
        assert_eq!(insert_batch(&mut batched, &BTreeMap::new()).unwrap(), r);
        batched.nodes.remove(&NodePos::of(&c, 1));
        let err = insert_batch(&mut batched, &BTreeMap::from([(c, value_hash(b"c2"))])).unwrap_err();
        assert!(matches!(err, StoreError::Damaged(_)), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn root_is_independent_of_order_and_proofs_hold(
            n in 1usize..60,
            seed in 0u32..1000,
            updates in proptest::collection::vec((0u32..60, 0u8..4), 0..30),
            split in 1usize..20,
        ) {
            let mut entries: BTreeMap<Hash32, Hash32> = BTreeMap::new();
            let mut t1 = MemorySmt::default();
            for i in 0..n as u32 {
                let v = value_hash(&(i + seed).to_be_bytes());
                insert(&mut t1, &k(i + seed), v).unwrap();
                entries.insert(k(i + seed), v);
            }
            for (i, v) in &updates {
                let key = k(*i % n as u32 + seed);
                let vh = value_hash(&[*v]);
                insert(&mut t1, &key, vh).unwrap();
                entries.insert(key, vh);
            }
            // The same final map built in reverse key order gives the same root.
            let mut t2 = MemorySmt::default();
            for (key, v) in entries.iter().rev() {
                insert(&mut t2, key, *v).unwrap();
            }
            let r = root(&t1).unwrap();
            proptest::prop_assert_eq!(r, root(&t2).unwrap());
            for (key, v) in &entries {
                let p = prove(&t1, key).unwrap();
                proptest::prop_assert_eq!(p.verify(&r, key).unwrap(), Some(*v));
                // A proof for a different value or a changed sibling fails.
                let mut bad = p.clone();
                if let Terminal::Leaf { value_hash, .. } = &mut bad.terminal { value_hash.0[0] ^= 1; }
                proptest::prop_assert!(bad.verify(&r, key).is_err());
                if !p.siblings.is_empty() {
                    let mut bad = p.clone();
                    bad.siblings[0].0[5] ^= 1;
                    proptest::prop_assert!(bad.verify(&r, key).is_err());
                }
            }
            // The same keys and updates in batches (new keys among existing ones, then updates,
            // some keys twice in one batch: the later value wins) give the same tree, node for node.
            let mut t3 = MemorySmt::default();
            let mut batches: Vec<BTreeMap<Hash32, Hash32>> = Vec::new();
            for chunk in (0..n as u32).collect::<Vec<_>>().chunks(split.max(1)) {
                batches.push(chunk.iter().map(|i| (k(i + seed), value_hash(&(i + seed).to_be_bytes()))).collect());
            }
            for chunk in updates.chunks(split.max(1)) {
                batches.push(chunk.iter().map(|(i, v)| (k(*i % n as u32 + seed), value_hash(&[*v]))).collect());
            }
            for batch in &batches {
                insert_batch(&mut t3, batch).unwrap();
            }
            proptest::prop_assert_eq!(root(&t3).unwrap(), r);
            proptest::prop_assert_eq!(&t3.nodes, &t1.nodes);
            let absent = k(10_000 + seed);
            let p = prove(&t1, &absent).unwrap();
            proptest::prop_assert_eq!(p.verify(&r, &absent).unwrap(), None);
        }
    }
}

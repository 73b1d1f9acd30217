//! Registry rules: which transactions are acceptable, and what a block does to the registry.
//!
//! Every node runs exactly these functions, at mempool admission ([`Registry::check`]), when a
//! proposer builds a block and when every node executes a decided or proposed block
//! ([`Registry::execute_block`]). They read and write through [`Ledger`], which the node backs with
//! a RocksDB write set, so execution is deterministic and a block's effects commit atomically.
//!
//! ## State
//! The state map ([`crate::smt`]) holds, under `BLAKE3("sabt/state-key/v1", tag ‖ bytes)`:
//! - tag 1, signer key → its next nonce (`u64`, canonical encoding);
//! - tag 2, SHA-256 digest of an anchored document → [`RecordLocation`];
//! - tag 3, BLAKE3 digest of an anchored document → [`RecordLocation`];
//! - tag 4, batch root → [`RecordLocation`] of the batch entry;
//! - tag 5, clerk key → [`GrantState`] (agency, record kinds, expiry, revocation height);
//! - tag 6, SHA-256 digest of a withdrawn or superseded document → [`RecordStatus`]. A document
//!   anchored and absent here is current; the state map proves either;
//! - tag 7, cadastral number → [`crate::land::ParcelState`] (current geometry, right, restrictions,
//!   version; retired parcels stay, marked);
//! - tag 8, grid cell (`x`, `y` as big-endian `i64`, cells of [`crate::land::CELL_MM`]) → the sorted
//!   cadastral numbers of the live parcels whose bounding box touches it: the spatial index the
//!   overlap rule reads, so every node finds the same neighbours;
//! - tag 9, structure number → [`crate::land::StructureState`] (a building or road, its parcels).
//!
//! ## Rules (this version)
//! A transaction is accepted when it is for this chain, its signature verifies (strict Ed25519),
//! its nonce is the signer's next, its record passes [`crate::entry::ArchiveRecord::validate`], no record with the
//! same document digest or batch with the same root is already anchored, and its signer may do what
//! it asks ([`Registry::check_authority`]): an agency's admin key named in the genesis anchors and
//! authorises or revokes its agency's clerk keys; a clerk key anchors only the record kinds its
//! grant names, before its expiry, and not in any block after the one that revoked it. A record
//! is withdrawn or superseded only by a key of the agency whose key anchored it, allowed for its
//! kind (and the new record's), only once, and only if the transaction shows it anchored: the
//! record exactly as anchored, with its batch path if batched. A block holding any other
//! transaction is invalid.

use crate::block::{BlockHeader, tx_root};
use crate::codec::{self, CodecError};
use crate::entry::{self, EntryBody, KeyGrant, LogEntry, RecordError, RecordKind, RecordRef, StatusChange};
use crate::fingerprint::Fingerprint;
use crate::genesis::Genesis;
use crate::geometry::{Polygon, overlap_area_mm2};
use crate::hash::{self, Hash32};
use crate::land::{self, LandEntry, LandOp, ParcelState, RestrictionKind, StructureState};
use crate::merkle::{self, Blake3, NodeSink, StoreError};
use crate::sign::PublicKey;
use crate::smt::{self, SmtSink};
use crate::tx::{SignedTx, TxBody};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

const TAG_NONCE: u8 = 1;
const TAG_SHA256: u8 = 2;
const TAG_BLAKE3: u8 = 3;
const TAG_BATCH: u8 = 4;
const TAG_GRANT: u8 = 5;
const TAG_STATUS: u8 = 6;
const TAG_PARCEL: u8 = 7;
const TAG_CELL: u8 = 8;
const TAG_STRUCTURE: u8 = 9;

/// Largest parcel state value read back (a parcel of [`crate::geometry::MAX_VERTICES`] vertices).
const MAX_PARCEL_VALUE: usize = 512 * 1024;
/// Largest grid-cell value read back (the cadastral numbers of the live parcels it touches).
const MAX_CELL_VALUE: usize = 4 << 20;
/// Largest other state value.
const MAX_STATE_VALUE: usize = 4096;

/// The state-map key for `tag` and `bytes`.
pub fn state_key(tag: u8, bytes: &[u8]) -> Hash32 {
    let mut buf = Vec::with_capacity(1 + bytes.len());
    buf.push(tag);
    buf.extend_from_slice(bytes);
    hash::hash(hash::STATE_KEY, &buf)
}

/// Key of a signer's next nonce.
pub fn nonce_key(signer: &PublicKey) -> Hash32 {
    state_key(TAG_NONCE, signer.as_bytes())
}

/// Key of a document anchored with this SHA-256 digest.
pub fn sha256_key(digest: &Hash32) -> Hash32 {
    state_key(TAG_SHA256, digest.as_bytes())
}

/// Key of a document anchored with this BLAKE3 digest.
pub fn blake3_key(digest: &Hash32) -> Hash32 {
    state_key(TAG_BLAKE3, digest.as_bytes())
}

/// Key of a batch anchored with this root.
pub fn batch_key(root: &Hash32) -> Hash32 {
    state_key(TAG_BATCH, root.as_bytes())
}

/// Key of a parcel's state.
pub fn parcel_key(cadastral: &str) -> Hash32 {
    state_key(TAG_PARCEL, cadastral.as_bytes())
}

/// Key of a structure's (building's, road's) state.
pub fn structure_key(id: &str) -> Hash32 {
    state_key(TAG_STRUCTURE, id.as_bytes())
}

/// Key of a grid cell of the spatial index.
pub fn cell_key(cell: (i64, i64)) -> Hash32 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&cell.0.to_be_bytes());
    b[8..].copy_from_slice(&cell.1.to_be_bytes());
    state_key(TAG_CELL, &b)
}

/// Key of a clerk key's grant.
pub fn grant_key(key: &PublicKey) -> Hash32 {
    state_key(TAG_GRANT, key.as_bytes())
}

/// Key of the status of the document with this SHA-256 digest (present once withdrawn or superseded).
pub fn status_key(sha256: &Hash32) -> Hash32 {
    state_key(TAG_STATUS, sha256.as_bytes())
}

/// What happened to a record that is no longer current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// Withdrawn: it no longer stands, and nothing replaces it.
    Withdrawn,
    /// Superseded by another record.
    Superseded,
}

impl RecordState {
    /// The name used in JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Withdrawn => "withdrawn",
            RecordState::Superseded => "superseded",
        }
    }
}

/// The status of a withdrawn or superseded record, as the state holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordStatus {
    /// Withdrawn or superseded.
    pub state: RecordState,
    /// Log index of the entry that withdrew or superseded it.
    pub index: u64,
    /// Height of the block that committed that entry.
    pub height: u64,
    /// That block's consensus time, Unix milliseconds.
    pub time_ms: u64,
    /// The reason given.
    pub reason: String,
    /// The record that replaces it, if superseded.
    pub superseded_by: Option<Fingerprint>,
}

/// A clerk key's authorisation, as the state holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantState {
    /// The agency whose admin authorised it.
    pub agency: String,
    /// Record kinds it may anchor.
    pub kinds: Vec<RecordKind>,
    /// Consensus time from which it no longer acts.
    pub expires_ms: Option<u64>,
    /// Height of the block that authorised it (or last changed the grant).
    pub granted_height: u64,
    /// Height of the block that revoked it; it acts in no later block.
    pub revoked_height: Option<u64>,
}

/// Where an anchored record or batch is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLocation {
    /// Log index of the entry.
    pub index: u64,
    /// Height of the block that committed it.
    pub height: u64,
}

/// The registry's storage, as one block sees it: state values, the state map's nodes, the log's
/// nodes and its entries. Implementations must read their own writes.
pub trait Ledger: NodeSink + SmtSink {
    /// A state value.
    fn state_get(&self, key: &Hash32) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets a state value (the state map is updated by the caller).
    fn state_put(&mut self, key: Hash32, value: Vec<u8>) -> Result<(), StoreError>;
    /// Stores log entry `index`'s canonical bytes.
    fn entry_put(&mut self, index: u64, bytes: Vec<u8>) -> Result<(), StoreError>;
    /// Log entry `index`'s canonical bytes.
    fn entry_get(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
}

/// A [`Ledger`] held in memory: for tests, tools and the offline devnet.
#[derive(Debug, Clone, Default)]
pub struct MemoryLedger {
    /// Log nodes.
    pub log: merkle::MemoryStore,
    /// State-map nodes.
    pub smt: smt::MemorySmt,
    /// State values.
    pub state: BTreeMap<Hash32, Vec<u8>>,
    /// Log entries.
    pub entries: BTreeMap<u64, Vec<u8>>,
}

impl merkle::NodeStore for MemoryLedger {
    fn get(&self, id: merkle::NodeId) -> Result<Option<Hash32>, StoreError> {
        self.log.get(id)
    }
}

impl NodeSink for MemoryLedger {
    fn put(&mut self, id: merkle::NodeId, hash: Hash32) -> Result<(), StoreError> {
        self.log.put(id, hash)
    }
}

impl smt::SmtStore for MemoryLedger {
    fn get(&self, pos: smt::NodePos) -> Result<Option<smt::SmtNode>, StoreError> {
        self.smt.get(pos)
    }
}

impl SmtSink for MemoryLedger {
    fn put(&mut self, pos: smt::NodePos, node: smt::SmtNode) -> Result<(), StoreError> {
        self.smt.put(pos, node)
    }
}

impl Ledger for MemoryLedger {
    fn state_get(&self, key: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.get(key).cloned())
    }

    fn state_put(&mut self, key: Hash32, value: Vec<u8>) -> Result<(), StoreError> {
        self.state.insert(key, value);
        Ok(())
    }

    fn entry_put(&mut self, index: u64, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.entries.insert(index, bytes);
        Ok(())
    }

    fn entry_get(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.get(&index).cloned())
    }
}

/// Why a transaction was refused. [`TxError::code`] gives a stable machine code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError {
    /// Transaction for another chain.
    #[error("transaction is for chain {got:?}, this chain is {expected:?}")]
    WrongChain {
        /// This chain.
        expected: String,
        /// The transaction's.
        got: String,
    },
    /// Bad signature (the signer's key, hex).
    #[error("transaction signature does not verify for signer {0}")]
    BadSignature(String),
    /// Signer not allowed to write (its key, hex).
    #[error("signer {0} is not authorised on this chain")]
    Unauthorised(String),
    /// Nonce already used.
    #[error("nonce {got} of signer {signer} is already used; the next nonce is {expected}")]
    NonceUsed {
        /// Signer (hex).
        signer: String,
        /// Expected.
        expected: u64,
        /// Given.
        got: u64,
    },
    /// Nonce ahead of the signer's next.
    #[error("nonce {got} of signer {signer} is ahead; the next nonce is {expected}")]
    NonceGap {
        /// Signer (hex).
        signer: String,
        /// Expected.
        expected: u64,
        /// Given.
        got: u64,
    },
    /// The signer's key was revoked in an earlier block.
    #[error("key {signer} was revoked at height {height}")]
    Revoked {
        /// Signer (hex).
        signer: String,
        /// Height of the revoking block.
        height: u64,
    },
    /// The signer's grant has expired.
    #[error("key {signer} expired at {expires_ms} (consensus time, Unix ms)")]
    Expired {
        /// Signer (hex).
        signer: String,
        /// Expiry.
        expires_ms: u64,
    },
    /// The signer may not anchor this kind of record.
    #[error("key {signer} is not authorised for records of kind {kind}")]
    KindNotAllowed {
        /// Signer (hex).
        signer: String,
        /// The record kind.
        kind: &'static str,
    },
    /// A key authorisation or revocation that the rules refuse.
    #[error("key authorisation refused: {0}")]
    BadGrant(String),
    /// Record fields invalid.
    #[error("record: {0}")]
    BadRecord(#[from] RecordError),
    /// Empty batch.
    #[error("a batch must hold at least one record")]
    EmptyBatch,
    /// Same document already anchored.
    #[error("document {digest} is already anchored at log index {index}")]
    AlreadyAnchored {
        /// The digest (hex, algorithm-tagged).
        digest: String,
        /// Where.
        index: u64,
    },
    /// The record a withdrawal or supersession names is not anchored as given.
    #[error("record not anchored as given: {0}")]
    NotAnchored(String),
    /// The record was already withdrawn or superseded.
    #[error("record sha256:{digest} was already {state} at log index {index}")]
    NotCurrent {
        /// Its SHA-256 digest (hex).
        digest: String,
        /// Withdrawn or superseded.
        state: &'static str,
        /// The entry that did it.
        index: u64,
    },
    /// The signer's agency is not the agency that anchored the record.
    #[error("record was anchored by agency {owner:?}; a key of agency {signer_agency:?} cannot change its status")]
    WrongAgency {
        /// The agency whose key anchored the record.
        owner: String,
        /// The signer's agency.
        signer_agency: String,
    },
    /// A land operation's own fields.
    #[error("land: {0}")]
    Land(#[from] crate::land::LandError),
    /// The signer's agency does not keep the land registry.
    #[error("agency {0:?} does not hold the land role in the genesis")]
    NoLandRole(String),
    /// A parcel with this number exists (or existed).
    #[error("{0} is already registered; a parcel or structure number is used once, even after retirement")]
    ParcelExists(String),
    /// No such parcel.
    #[error("no parcel or structure {0} is registered; check the number (sabt parcel show)")]
    NoSuchParcel(String),
    /// The parcel was retired.
    #[error("{cadastral} was retired at height {height}; it cannot change")]
    ParcelRetired {
        /// The parcel.
        cadastral: String,
        /// Height of the retiring block.
        height: u64,
    },
    /// The geometry overlaps a live parcel beyond the tolerance.
    #[error("parcel {cadastral} overlaps live parcel {other} by {area_mm2} mm² (the tolerance is {tolerance_mm2} mm²)")]
    Overlap {
        /// The parcel.
        cadastral: String,
        /// The neighbour.
        other: String,
        /// Area shared, mm² (rounded down).
        area_mm2: u64,
        /// The genesis tolerance.
        tolerance_mm2: u64,
    },
    /// The parcel's bounding box covers too many index cells.
    #[error("parcel {0} is too large for one registration; split it")]
    ParcelTooLarge(String),
    /// A split or merge whose parts do not fit.
    #[error("{op} of {cadastral}: {reason}")]
    Partition {
        /// `split` or `merge`.
        op: &'static str,
        /// The parcel (parent of a split, result of a merge).
        cadastral: String,
        /// What does not fit.
        reason: String,
    },
    /// Restrictions stand on a parcel that would be split or merged.
    #[error("parcel {0} has standing restrictions; release them before splitting or merging it")]
    Encumbered(String),
    /// An arrest blocks the operation.
    #[error("parcel {0} is under arrest: no transfer until the arrest is released")]
    Arrested(String),
    /// A mortgagee did not consent.
    #[error("parcel {cadastral} is mortgaged: the transfer needs the consent of the mortgagee key {key}")]
    ConsentMissing {
        /// The parcel.
        cadastral: String,
        /// The mortgagee's consent key (hex).
        key: String,
    },
    /// No restriction with that source document.
    #[error("parcel {cadastral} has no standing restriction from document sha256:{document}")]
    NoSuchRestriction {
        /// The parcel.
        cadastral: String,
        /// The document (SHA-256, hex).
        document: String,
    },
    /// Too large.
    #[error("transaction is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A stored value does not decode.
    #[error("stored state value: {0}")]
    Corrupt(#[from] CodecError),
}

impl TxError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TxError::WrongChain { .. } => "wrong_chain",
            TxError::BadSignature(_) => "bad_signature",
            TxError::Unauthorised(_) => "unauthorised",
            TxError::NonceUsed { .. } => "nonce_used",
            TxError::NonceGap { .. } => "nonce_gap",
            TxError::Revoked { .. } => "revoked",
            TxError::Expired { .. } => "expired",
            TxError::KindNotAllowed { .. } => "kind_not_allowed",
            TxError::BadGrant(_) => "bad_grant",
            TxError::BadRecord(_) => "bad_record",
            TxError::EmptyBatch => "empty_batch",
            TxError::AlreadyAnchored { .. } => "already_anchored",
            TxError::NotAnchored(_) => "not_anchored",
            TxError::NotCurrent { .. } => "not_current",
            TxError::WrongAgency { .. } => "wrong_agency",
            TxError::Land(crate::land::LandError::Geometry { error, .. }) => error.code(),
            TxError::Land(crate::land::LandError::Shares { .. }) => "shares_not_one",
            TxError::Land(crate::land::LandError::Field { .. }) => "bad_land_field",
            TxError::NoLandRole(_) => "no_land_role",
            TxError::ParcelExists(_) => "parcel_exists",
            TxError::NoSuchParcel(_) => "no_such_parcel",
            TxError::ParcelRetired { .. } => "parcel_retired",
            TxError::Overlap { .. } => "overlap",
            TxError::ParcelTooLarge(_) => "parcel_too_large",
            TxError::Arrested(_) => "arrested",
            TxError::Partition { .. } => "bad_partition",
            TxError::Encumbered(_) => "encumbered",
            TxError::ConsentMissing { .. } => "consent_missing",
            TxError::NoSuchRestriction { .. } => "no_such_restriction",
            TxError::TooLarge { .. } => "too_large",
            TxError::Store(_) => "storage",
            TxError::Corrupt(_) => "storage",
        }
    }
}

/// Why a block was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    /// A header field does not match what execution gives.
    #[error("block {height}: header field {field} is {got}, execution gives {expected}")]
    Header {
        /// Height.
        height: u64,
        /// The field.
        field: &'static str,
        /// Expected value.
        expected: String,
        /// Value in the header.
        got: String,
    },
    /// A transaction is refused.
    #[error("block {height}: transaction {position} ({id}) refused: {error}")]
    Tx {
        /// Height.
        height: u64,
        /// Position in the block.
        position: usize,
        /// Transaction id.
        id: Hash32,
        /// Why (boxed: refusals are rare, blocks are not).
        error: Box<TxError>,
    },
    /// Too large.
    #[error("block {height} is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Height.
        height: u64,
        /// Size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The chain's state before a block: what the next header must extend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// Height of the last block (0 before the first).
    pub height: u64,
    /// Hash of the last block (the genesis hash before the first).
    pub block_hash: Hash32,
    /// Time of the last block (the genesis time before the first).
    pub time_ms: u64,
    /// Log size.
    pub log_size: u64,
    /// Log root.
    pub log_root: Hash32,
    /// State root.
    pub state_root: Hash32,
}

impl Tip {
    /// The tip of an empty chain.
    pub fn genesis(genesis: &Genesis) -> Tip {
        Tip {
            height: 0,
            block_hash: genesis.hash(),
            time_ms: genesis.genesis_time_ms,
            log_size: 0,
            log_root: merkle::root::<Blake3, _>(&merkle::MemoryStore::new(), 0).unwrap_or_default(),
            state_root: Hash32::ZERO,
        }
    }

    /// The tip after `header`.
    pub fn after(header: &BlockHeader) -> Tip {
        Tip {
            height: header.height,
            block_hash: header.hash(),
            time_ms: header.time_ms,
            log_size: header.log_size,
            log_root: header.log_root,
            state_root: header.state_root,
        }
    }
}

/// What executing transactions produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// Log size after.
    pub log_size: u64,
    /// Log root after.
    pub log_root: Hash32,
    /// State root after.
    pub state_root: Hash32,
    /// Entries appended, with their indices.
    pub entries: Vec<(u64, LogEntry)>,
}

/// A block a proposer built.
#[derive(Debug, Clone)]
pub struct Built {
    /// The block.
    pub block: crate::block::Block,
    /// Its effects.
    pub executed: Executed,
    /// Candidates left out, with the reason.
    pub refused: Vec<(Hash32, TxError)>,
}

/// Signatures a caller has already verified, by transaction id. A transaction's id commits to
/// its whole signed encoding, signature included, so an id the cache vouches for stands for exactly
/// those bytes. A node passes the ids its mempool admitted (each signature is then verified once
/// per node, not again at proposal and at execution); an auditor re-executing history passes
/// [`NoCache`] and verifies every signature.
pub trait SignatureCache {
    /// Whether the signature of the transaction with id `id` was verified.
    fn verified(&self, id: &Hash32) -> bool;
}

/// A cache that vouches for nothing: every signature is verified.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

impl SignatureCache for NoCache {
    fn verified(&self, _: &Hash32) -> bool {
        false
    }
}

impl SignatureCache for std::collections::BTreeSet<Hash32> {
    fn verified(&self, id: &Hash32) -> bool {
        self.contains(id)
    }
}

/// The registry rules for one chain.
#[derive(Debug, Clone)]
pub struct Registry {
    chain_id: String,
    max_tx_bytes: usize,
    max_block_bytes: usize,
    admins: BTreeMap<PublicKey, String>,
    land_agencies: std::collections::BTreeSet<String>,
    overlap_tolerance_mm2: u64,
    validator_set_hash: Hash32,
}

/// A batch path longer than any log can need is refused before any hashing.
fn check_ref_shape(target: &RecordRef) -> Result<(), TxError> {
    match &target.batch {
        Some(p) if p.path.len() > crate::bundle::MAX_PATH_LEN => Err(TxError::NotAnchored(format!(
            "batch path of {} hashes exceeds {}",
            p.path.len(),
            crate::bundle::MAX_PATH_LEN
        ))),
        _ => Ok(()),
    }
}

/// Refuses a record whose document is already anchored as a single record.
fn check_not_anchored<L: Ledger + ?Sized>(ledger: &L, fp: &Fingerprint) -> Result<(), TxError> {
    if let Some(loc) = get_decoded::<RecordLocation, L>(ledger, &sha256_key(&fp.sha256))? {
        return Err(TxError::AlreadyAnchored { digest: format!("sha256:{}", fp.sha256), index: loc.index });
    }
    if let Some(loc) = get_decoded::<RecordLocation, L>(ledger, &blake3_key(&fp.blake3))? {
        return Err(TxError::AlreadyAnchored { digest: format!("blake3:{}", fp.blake3), index: loc.index });
    }
    Ok(())
}

fn get_decoded<T: serde::de::DeserializeOwned + Serialize, L: Ledger + ?Sized>(
    ledger: &L,
    key: &Hash32,
) -> Result<Option<T>, TxError> {
    get_bounded(ledger, key, MAX_STATE_VALUE)
}

fn get_bounded<T: serde::de::DeserializeOwned + Serialize, L: Ledger + ?Sized>(
    ledger: &L,
    key: &Hash32,
    max: usize,
) -> Result<Option<T>, TxError> {
    match ledger.state_get(key)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(codec::decode_body("state value", &bytes, max)?)),
    }
}

/// A block's writes as it executes: state values go to the ledger at once (later transactions of
/// the block read them), while the state map is updated once, at the end of the block, for every
/// key the block set ([`smt::insert_batch`]). Nothing reads the state map's nodes while a block
/// executes, so deferring changes no result; it spares rehashing the top of the tree for each key.
struct Staged<'a, L: ?Sized> {
    ledger: &'a mut L,
    changed: BTreeMap<Hash32, Hash32>,
}

impl<'a, L: Ledger + ?Sized> Staged<'a, L> {
    fn new(ledger: &'a mut L) -> Staged<'a, L> {
        Staged { ledger, changed: BTreeMap::new() }
    }

    /// Reads as of the transactions staged so far.
    fn view(&self) -> &L {
        self.ledger
    }

    /// Updates the state map with every key set; returns its root (`unchanged` if none was).
    fn finish(self, unchanged: Hash32) -> Result<Hash32, StoreError> {
        if self.changed.is_empty() {
            return Ok(unchanged);
        }
        smt::insert_batch(self.ledger, &self.changed)
    }
}

fn put_encoded<T: Serialize, L: Ledger + ?Sized>(
    staged: &mut Staged<'_, L>,
    key: Hash32,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = codec::encode_body(value);
    staged.changed.insert(key, smt::value_hash(&bytes));
    staged.ledger.state_put(key, bytes)
}

impl Registry {
    /// The rules of the chain `genesis` starts.
    pub fn new(genesis: &Genesis) -> Result<Registry, crate::validator::ValidatorSetError> {
        Ok(Registry {
            chain_id: genesis.chain_id.clone(),
            max_tx_bytes: usize::try_from(genesis.params.max_tx_bytes).unwrap_or(usize::MAX),
            max_block_bytes: usize::try_from(genesis.params.max_block_bytes).unwrap_or(usize::MAX),
            admins: genesis.agencies.iter().map(|a| (a.admin_key, a.name.clone())).collect(),
            land_agencies: genesis
                .agencies
                .iter()
                .filter(|a| a.roles.contains(&crate::genesis::AgencyRole::Land))
                .map(|a| a.name.clone())
                .collect(),
            overlap_tolerance_mm2: genesis.params.overlap_tolerance_mm2,
            validator_set_hash: genesis.validator_set()?.hash(),
        })
    }

    /// The chain id.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Largest encoded transaction accepted.
    pub fn max_tx_bytes(&self) -> usize {
        self.max_tx_bytes
    }

    /// Largest encoded block accepted.
    pub fn max_block_bytes(&self) -> usize {
        self.max_block_bytes
    }

    /// Hash of the validator set (fixed by the genesis in this version).
    pub fn validator_set_hash(&self) -> Hash32 {
        self.validator_set_hash
    }

    /// The checks that need no state: chain, size, signature, and the body's own fields.
    pub fn check_stateless(&self, stx: &SignedTx) -> Result<(), TxError> {
        self.check_stateless_cached(stx, &NoCache)
    }

    /// [`Registry::check_stateless`], skipping the signature when `cache` vouches for it.
    pub fn check_stateless_cached(&self, stx: &SignedTx, cache: &dyn SignatureCache) -> Result<(), TxError> {
        if stx.tx.chain_id != self.chain_id {
            return Err(TxError::WrongChain { expected: self.chain_id.clone(), got: stx.tx.chain_id.clone() });
        }
        let encoded = codec::encode(stx);
        let size = encoded.len();
        if size > self.max_tx_bytes {
            return Err(TxError::TooLarge { size, limit: self.max_tx_bytes });
        }
        if !cache.verified(&hash::hash(hash::TX, &encoded)) {
            stx.verify_signature().map_err(|_| TxError::BadSignature(stx.tx.signer.to_hex()))?;
        }
        match &stx.tx.body {
            TxBody::Anchor(record) => record.validate()?,
            TxBody::AnchorBatch(batch) if batch.size == 0 => return Err(TxError::EmptyBatch),
            TxBody::AnchorBatch(_) => {}
            TxBody::AuthorizeKey { kinds, .. } => {
                if kinds.is_empty() || kinds.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(TxError::BadGrant("kinds must be listed once each, in order, at least one".into()));
                }
            }
            TxBody::RevokeKey { .. } => {}
            TxBody::Land(op) => op.validate()?,
            TxBody::Withdraw { target, reason } => {
                entry::check_reason(reason)?;
                check_ref_shape(target)?;
            }
            TxBody::Supersede { target, record, reason } => {
                entry::check_reason(reason)?;
                check_ref_shape(target)?;
                record.validate()?;
                let (old, new) = (&target.record.fingerprint, &record.fingerprint);
                if old.sha256 == new.sha256 || old.blake3 == new.blake3 {
                    return Err(TxError::BadRecord(RecordError {
                        field: "record.fingerprint",
                        reason: "a record cannot supersede itself".into(),
                    }));
                }
            }
        }
        Ok(())
    }

    /// The agency a key acts for: the agency it administers, or the agency that authorised it.
    pub fn agency_of<L: Ledger + ?Sized>(&self, ledger: &L, key: &PublicKey) -> Result<Option<String>, TxError> {
        if let Some(a) = self.admins.get(key) {
            return Ok(Some(a.clone()));
        }
        Ok(self.grant(ledger, key)?.map(|g| g.agency))
    }

    /// Finds the entry that anchored the record `target` names, and the key that signed it. The
    /// record must be exactly as anchored: as a single record (or a supersession's new record), or
    /// as a leaf of an anchored batch of its kind, by the batch path given.
    pub fn resolve_record<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        target: &RecordRef,
    ) -> Result<(u64, PublicKey), TxError> {
        let record = &target.record;
        let (location, what) = match &target.batch {
            None => {
                let sha = &record.fingerprint.sha256;
                let loc = get_decoded::<RecordLocation, L>(ledger, &sha256_key(sha))?.ok_or_else(|| {
                    TxError::NotAnchored(format!(
                        "no single record with sha256:{sha} is anchored; give the batch path if it was batched"
                    ))
                })?;
                (loc, "record")
            }
            Some(p) => {
                let leaf = <Blake3 as merkle::LogHasher>::hash_leaf(&codec::encode(record));
                let root = merkle::root_from_inclusion::<Blake3>(&leaf, p.index, p.size, &p.path)
                    .map_err(|e| TxError::NotAnchored(format!("batch path: {e}")))?;
                let loc = get_decoded::<RecordLocation, L>(ledger, &batch_key(&root))?.ok_or_else(|| {
                    TxError::NotAnchored(format!("the batch path leads to root {root}, which is not anchored"))
                })?;
                (loc, "batch")
            }
        };
        let bytes = ledger.entry_get(location.index)?.ok_or_else(|| {
            TxError::Store(StoreError::Damaged(format!("log entry {} named by the state is missing", location.index)))
        })?;
        let entry: LogEntry = codec::decode(&bytes)?;
        let matches = match (&entry.body, what) {
            (EntryBody::Record(r) | EntryBody::Supersede { record: r, .. }, "record") => r == record,
            (EntryBody::Batch(b), "batch") => {
                target.batch.as_ref().is_some_and(|p| p.size == b.size) && b.kind == record.kind
            }
            _ => {
                return Err(TxError::Store(StoreError::Damaged(format!(
                    "log entry {} does not anchor a {what}",
                    location.index
                ))));
            }
        };
        if !matches {
            return Err(TxError::NotAnchored(format!(
                "the record given differs from the {what} anchored at log index {}",
                location.index
            )));
        }
        Ok((location.index, entry.signer))
    }

    /// A parcel's state (retired parcels included).
    pub fn parcel<L: Ledger + ?Sized>(&self, ledger: &L, cadastral: &str) -> Result<Option<ParcelState>, TxError> {
        get_bounded(ledger, &parcel_key(cadastral), MAX_PARCEL_VALUE)
    }

    /// The live parcels whose bounding box touches a grid cell.
    pub fn cell_members<L: Ledger + ?Sized>(&self, ledger: &L, cell: (i64, i64)) -> Result<Vec<String>, TxError> {
        Ok(get_bounded::<Vec<String>, L>(ledger, &cell_key(cell), MAX_CELL_VALUE)?.unwrap_or_default())
    }

    fn live_parcel<L: Ledger + ?Sized>(&self, ledger: &L, cadastral: &str) -> Result<ParcelState, TxError> {
        match self.parcel(ledger, cadastral)? {
            None => Err(TxError::NoSuchParcel(cadastral.to_string())),
            Some(p) => match p.retired_height {
                Some(height) => Err(TxError::ParcelRetired { cadastral: cadastral.to_string(), height }),
                None => Ok(p),
            },
        }
    }

    /// Refuses `geometry` for parcel `cadastral` if it overlaps another live parcel by more than
    /// the genesis tolerance. Neighbours come from the grid index in the state, in cadastral order.
    fn check_overlap<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        cadastral: &str,
        geometry: &Polygon,
    ) -> Result<(), TxError> {
        let cells = land::cells(&geometry.bbox()).ok_or_else(|| TxError::ParcelTooLarge(cadastral.to_string()))?;
        let mut neighbours = std::collections::BTreeSet::new();
        for c in cells {
            neighbours.extend(self.cell_members(ledger, c)?.into_iter().filter(|o| o != cadastral));
        }
        for other in neighbours {
            let st = self.parcel(ledger, &other)?.ok_or_else(|| {
                TxError::Store(StoreError::Damaged(format!("the spatial index names parcel {other}, which is missing")))
            })?;
            let area = crate::geometry::overlap_area_mm2(geometry, &st.parcel.geometry);
            if area > self.overlap_tolerance_mm2 as f64 {
                return Err(TxError::Overlap {
                    cadastral: cadastral.to_string(),
                    other,
                    area_mm2: area as u64,
                    tolerance_mm2: self.overlap_tolerance_mm2,
                });
            }
        }
        Ok(())
    }

    /// A structure's state (retired ones included).
    pub fn structure<L: Ledger + ?Sized>(&self, ledger: &L, id: &str) -> Result<Option<StructureState>, TxError> {
        get_bounded(ledger, &structure_key(id), MAX_PARCEL_VALUE)
    }

    /// The land rules that need the state.
    fn check_land<L: Ledger + ?Sized>(&self, ledger: &L, op: &LandOp) -> Result<(), TxError> {
        let field = |field: &'static str, reason: String| TxError::Land(land::LandError::Field { field, reason });
        match op {
            LandOp::RegisterStructure { structure, .. } => {
                if self.structure(ledger, &structure.id)?.is_some() {
                    return Err(TxError::ParcelExists(structure.id.clone()));
                }
                let mut inside = 0.0;
                for p in &structure.parcels {
                    let st = self.live_parcel(ledger, p)?;
                    if let Some(f) = &structure.footprint {
                        inside += overlap_area_mm2(f, &st.parcel.geometry);
                    }
                }
                if let Some(f) = &structure.footprint {
                    let outside = f.area2() as f64 / 2.0 - inside;
                    if outside > self.overlap_tolerance_mm2 as f64 {
                        return Err(TxError::Partition {
                            op: "register_structure",
                            cadastral: structure.id.clone(),
                            reason: format!("the footprint extends {outside:.0} mm² beyond the parcels it names"),
                        });
                    }
                }
                Ok(())
            }
            LandOp::RetireStructure { id, .. } => match self.structure(ledger, id)? {
                None => Err(TxError::NoSuchParcel(id.clone())),
                Some(s) => match s.retired_height {
                    Some(height) => Err(TxError::ParcelRetired { cadastral: id.clone(), height }),
                    None => Ok(()),
                },
            },
            LandOp::Register { parcel, .. } => {
                if self.parcel(ledger, &parcel.cadastral)?.is_some() {
                    return Err(TxError::ParcelExists(parcel.cadastral.clone()));
                }
                self.check_overlap(ledger, &parcel.cadastral, &parcel.geometry)
            }
            LandOp::Transfer { cadastral, right, consents, .. } => {
                let st = self.live_parcel(ledger, cadastral)?;
                if st.restrictions.iter().any(|r| r.kind == RestrictionKind::Arrest) {
                    return Err(TxError::Arrested(cadastral.clone()));
                }
                let message = land::transfer_consent_bytes(&self.chain_id, cadastral, st.version, right);
                for key in st.restrictions.iter().filter_map(|r| r.consent_key) {
                    if !consents.iter().any(|s| land::consent_verifies(&key, &message, s)) {
                        return Err(TxError::ConsentMissing { cadastral: cadastral.clone(), key: key.to_hex() });
                    }
                }
                Ok(())
            }
            LandOp::CorrectBoundary { cadastral, geometry, .. } => {
                self.live_parcel(ledger, cadastral)?;
                self.check_overlap(ledger, cadastral, geometry)
            }
            LandOp::Encumber { cadastral, restriction } => {
                let st = self.live_parcel(ledger, cadastral)?;
                if st.restrictions.len() >= land::MAX_RESTRICTIONS {
                    return Err(field("restriction", format!("at most {} restrictions", land::MAX_RESTRICTIONS)));
                }
                if st.restrictions.iter().any(|r| r.source == restriction.source) {
                    return Err(field("restriction.source", "a restriction from this document already stands".into()));
                }
                Ok(())
            }
            LandOp::Release { cadastral, restriction, .. } => {
                let st = self.live_parcel(ledger, cadastral)?;
                if !st.restrictions.iter().any(|r| r.source.sha256 == restriction.sha256) {
                    return Err(TxError::NoSuchRestriction {
                        cadastral: cadastral.clone(),
                        document: restriction.sha256.to_hex(),
                    });
                }
                Ok(())
            }
            LandOp::Retire { cadastral, .. } => self.live_parcel(ledger, cadastral).map(|_| ()),
            LandOp::Split { cadastral, children, .. } => {
                let parent = self.live_parcel(ledger, cadastral)?;
                if !parent.restrictions.is_empty() {
                    return Err(TxError::Encumbered(cadastral.clone()));
                }
                let bad = |reason: String| TxError::Partition { op: "split", cadastral: cadastral.clone(), reason };
                let tol = self.overlap_tolerance_mm2 as f64;
                let pg = &parent.parcel.geometry;
                let mut covered = 0.0;
                for (i, child) in children.iter().enumerate() {
                    if self.parcel(ledger, &child.cadastral)?.is_some() {
                        return Err(TxError::ParcelExists(child.cadastral.clone()));
                    }
                    let inside = overlap_area_mm2(&child.geometry, pg);
                    let outside = child.geometry.area2() as f64 / 2.0 - inside;
                    if outside > tol {
                        return Err(bad(format!(
                            "child {} extends {outside:.0} mm² beyond the parent",
                            child.cadastral
                        )));
                    }
                    covered += inside;
                    for other in &children[i + 1..] {
                        let shared = overlap_area_mm2(&child.geometry, &other.geometry);
                        if shared > tol {
                            return Err(bad(format!(
                                "children {} and {} overlap by {shared:.0} mm²",
                                child.cadastral, other.cadastral
                            )));
                        }
                    }
                }
                let gap = pg.area2() as f64 / 2.0 - covered;
                if gap > tol {
                    return Err(bad(format!("the children leave {gap:.0} mm² of the parent uncovered")));
                }
                Ok(())
            }
            LandOp::Merge { parents, parcel, .. } => {
                if self.parcel(ledger, &parcel.cadastral)?.is_some() {
                    return Err(TxError::ParcelExists(parcel.cadastral.clone()));
                }
                let bad =
                    |reason: String| TxError::Partition { op: "merge", cadastral: parcel.cadastral.clone(), reason };
                let tol = self.overlap_tolerance_mm2 as f64;
                let mut first: Option<ParcelState> = None;
                let mut total = 0.0;
                for p in parents {
                    let st = self.live_parcel(ledger, p)?;
                    if !st.restrictions.is_empty() {
                        return Err(TxError::Encumbered(p.clone()));
                    }
                    if let Some(f) = &first
                        && (f.right.kind != st.right.kind || f.right.holders != st.right.holders)
                    {
                        return Err(bad(format!("{p} has other holders or another right than {}", f.parcel.cadastral)));
                    }
                    let area = st.parcel.geometry.area2() as f64 / 2.0;
                    let inside = overlap_area_mm2(&st.parcel.geometry, &parcel.geometry);
                    if area - inside > tol {
                        return Err(bad(format!("the new parcel leaves out {:.0} mm² of {p}", area - inside)));
                    }
                    total += area;
                    first.get_or_insert(st);
                }
                // The new polygon is one simple polygon holding exactly the parents: they are
                // adjacent, or it would have to hold land between them.
                let extra = parcel.geometry.area2() as f64 / 2.0 - total;
                if extra > tol {
                    return Err(bad(format!(
                        "the new parcel holds {extra:.0} mm² outside the merged parcels: are they adjacent?"
                    )));
                }
                Ok(())
            }
        }
    }

    /// The version a land operation makes.
    fn next_version<L: Ledger + ?Sized>(&self, ledger: &L, op: &LandOp) -> Result<u32, TxError> {
        Ok(match op {
            LandOp::Register { .. } | LandOp::Merge { .. } | LandOp::RegisterStructure { .. } => 1,
            LandOp::RetireStructure { .. } => 2,
            other => self.live_parcel(ledger, other.cadastral())?.version.saturating_add(1),
        })
    }

    /// Writes a land operation's effects: the parcel's new state and the grid index.
    fn apply_land<L: Ledger + ?Sized>(
        &self,
        ledger: &mut Staged<'_, L>,
        op: &LandOp,
        version: u32,
        index: u64,
        height: u64,
    ) -> Result<(), TxError> {
        let damaged = |what: String| TxError::Store(StoreError::Damaged(what));
        let new_parcel = |parcel: &land::Parcel, right: &land::Right, version| ParcelState {
            parcel: parcel.clone(),
            right: right.clone(),
            restrictions: Vec::new(),
            version,
            index,
            height,
            retired_height: None,
        };
        match op {
            LandOp::RegisterStructure { structure, .. } => {
                let st = StructureState { structure: structure.clone(), index, height, retired_height: None };
                return Ok(put_encoded(ledger, structure_key(&structure.id), &st)?);
            }
            LandOp::RetireStructure { id, .. } => {
                let mut st = self.structure(ledger.view(), id)?.ok_or_else(|| TxError::NoSuchParcel(id.clone()))?;
                st.retired_height = Some(height);
                return Ok(put_encoded(ledger, structure_key(id), &st)?);
            }
            LandOp::Split { cadastral, children, .. } => {
                let parent = self.live_parcel(ledger.view(), cadastral)?;
                self.retire_parcel(ledger, parent.clone(), version, index, height)?;
                for child in children {
                    self.write_parcel(ledger, &new_parcel(child, &parent.right, 1), Vec::new())?;
                }
                return Ok(());
            }
            LandOp::Merge { parents, parcel, .. } => {
                let mut right = None;
                for p in parents {
                    let st = self.live_parcel(ledger.view(), p)?;
                    right.get_or_insert_with(|| st.right.clone());
                    let v = st.version.saturating_add(1);
                    self.retire_parcel(ledger, st, v, index, height)?;
                }
                let right = right.ok_or_else(|| damaged("merge without parents".into()))?;
                return self.write_parcel(ledger, &new_parcel(parcel, &right, version), Vec::new());
            }
            _ => {}
        }
        if let LandOp::Register { parcel, right, .. } = op {
            return self.write_parcel(ledger, &new_parcel(parcel, right, version), Vec::new());
        }
        let mut st = self.live_parcel(ledger.view(), op.cadastral())?;
        let old_cells =
            land::cells(&st.parcel.geometry.bbox()).ok_or_else(|| damaged("stored parcel too large".into()))?;
        match op {
            LandOp::Transfer { right, .. } => st.right = right.clone(),
            LandOp::CorrectBoundary { geometry, .. } => st.parcel.geometry = geometry.clone(),
            LandOp::Encumber { restriction, .. } => st.restrictions.push(restriction.clone()),
            LandOp::Release { restriction, .. } => st.restrictions.retain(|r| r.source.sha256 != restriction.sha256),
            LandOp::Retire { .. } => st.retired_height = Some(height),
            LandOp::Register { .. }
            | LandOp::Split { .. }
            | LandOp::Merge { .. }
            | LandOp::RegisterStructure { .. }
            | LandOp::RetireStructure { .. } => {}
        }
        st.version = version;
        st.index = index;
        st.height = height;
        self.write_parcel(ledger, &st, old_cells)
    }

    /// Retires a parcel as of `version`, entry `index`, block `height`.
    fn retire_parcel<L: Ledger + ?Sized>(
        &self,
        ledger: &mut Staged<'_, L>,
        mut st: ParcelState,
        version: u32,
        index: u64,
        height: u64,
    ) -> Result<(), TxError> {
        let old = land::cells(&st.parcel.geometry.bbox())
            .ok_or_else(|| TxError::Store(StoreError::Damaged("stored parcel too large".into())))?;
        st.retired_height = Some(height);
        st.version = version;
        st.index = index;
        st.height = height;
        self.write_parcel(ledger, &st, old)
    }

    /// Writes a parcel's state and moves it in the grid index from `old_cells` to the cells its
    /// geometry covers now (none once retired).
    fn write_parcel<L: Ledger + ?Sized>(
        &self,
        ledger: &mut Staged<'_, L>,
        state: &ParcelState,
        old_cells: Vec<(i64, i64)>,
    ) -> Result<(), TxError> {
        let new_cells = match state.retired_height {
            Some(_) => Vec::new(),
            None => land::cells(&state.parcel.geometry.bbox())
                .ok_or_else(|| TxError::ParcelTooLarge(state.parcel.cadastral.clone()))?,
        };
        let cadastral = state.parcel.cadastral.clone();
        put_encoded(ledger, parcel_key(&cadastral), state)?;
        // Index cells: leave the cells no longer covered, join the new ones (in cell order).
        let old: std::collections::BTreeSet<_> = old_cells.into_iter().collect();
        let new: std::collections::BTreeSet<_> = new_cells.into_iter().collect();
        for c in old.symmetric_difference(&new) {
            let mut members = self.cell_members(ledger.view(), *c)?;
            if new.contains(c) {
                if let Err(at) = members.binary_search(&cadastral) {
                    members.insert(at, cadastral.clone());
                }
            } else {
                members.retain(|m| *m != cadastral);
            }
            put_encoded(ledger, cell_key(*c), &members)?;
        }
        Ok(())
    }

    /// The status of the document with this SHA-256 digest: `None` while it is current.
    pub fn record_status<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        sha256: &Hash32,
    ) -> Result<Option<RecordStatus>, TxError> {
        get_decoded::<RecordStatus, L>(ledger, &status_key(sha256))
    }

    fn check_status_change<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        signer: &PublicKey,
        target: &RecordRef,
    ) -> Result<u64, TxError> {
        let (index, anchored_by) = self.resolve_record(ledger, target)?;
        let owner = self.agency_of(ledger, &anchored_by)?.unwrap_or_default();
        let signer_agency = self.agency_of(ledger, signer)?.unwrap_or_default();
        if owner != signer_agency {
            return Err(TxError::WrongAgency { owner, signer_agency });
        }
        let sha = &target.record.fingerprint.sha256;
        if let Some(st) = self.record_status(ledger, sha)? {
            return Err(TxError::NotCurrent { digest: sha.to_hex(), state: st.state.as_str(), index: st.index });
        }
        Ok(index)
    }

    /// The signer's next nonce in `ledger`.
    pub fn next_nonce<L: Ledger + ?Sized>(&self, ledger: &L, signer: &PublicKey) -> Result<u64, TxError> {
        Ok(get_decoded::<u64, L>(ledger, &nonce_key(signer))?.unwrap_or(0))
    }

    /// The grant of a clerk key, if any.
    pub fn grant<L: Ledger + ?Sized>(&self, ledger: &L, key: &PublicKey) -> Result<Option<GrantState>, TxError> {
        get_decoded::<GrantState, L>(ledger, &grant_key(key))
    }

    /// Checks that the nonce is the signer's next.
    pub fn check_nonce<L: Ledger + ?Sized>(&self, ledger: &L, stx: &SignedTx) -> Result<(), TxError> {
        let expected = self.next_nonce(ledger, &stx.tx.signer)?;
        let got = stx.tx.nonce;
        if got < expected {
            return Err(TxError::NonceUsed { signer: stx.tx.signer.to_hex(), expected, got });
        }
        if got > expected {
            return Err(TxError::NonceGap { signer: stx.tx.signer.to_hex(), expected, got });
        }
        Ok(())
    }

    /// Checks that the signer may do what the transaction asks in a block at `height` and consensus
    /// time `time_ms`, and that it does not anchor what is already anchored.
    ///
    /// - An agency's admin key (genesis) may anchor, and may authorise and revoke clerk keys for its
    ///   agency. It cannot authorise an admin key, a key of another agency, or a revoked key.
    /// - A clerk key acts only while authorised: not revoked in an earlier block, before its expiry,
    ///   and only for the record kinds its grant names.
    pub fn check_authority<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        stx: &SignedTx,
        height: u64,
        time_ms: u64,
    ) -> Result<(), TxError> {
        let signer = &stx.tx.signer;
        let kinds = match &stx.tx.body {
            TxBody::Anchor(r) => vec![r.kind],
            TxBody::AnchorBatch(b) => vec![b.kind],
            TxBody::Withdraw { target, .. } => vec![target.record.kind],
            TxBody::Supersede { target, record, .. } => vec![target.record.kind, record.kind],
            TxBody::Land(_) => vec![RecordKind::LandProperty],
            TxBody::AuthorizeKey { .. } | TxBody::RevokeKey { .. } => Vec::new(),
        };
        if let Some(agency) = self.admins.get(signer) {
            match &stx.tx.body {
                TxBody::AuthorizeKey { key, .. } => {
                    if self.admins.contains_key(key) {
                        return Err(TxError::BadGrant(
                            "an agency admin key cannot be authorised as a clerk key".into(),
                        ));
                    }
                    if let Some(g) = self.grant(ledger, key)? {
                        if g.agency != *agency {
                            return Err(TxError::BadGrant(format!("key {key} belongs to agency {}", g.agency)));
                        }
                        if g.revoked_height.is_some() {
                            return Err(TxError::BadGrant(format!(
                                "key {key} was revoked and cannot act again; the clerk needs a new key"
                            )));
                        }
                    }
                }
                TxBody::RevokeKey { key } => match self.grant(ledger, key)? {
                    Some(g) if g.agency != *agency => {
                        return Err(TxError::BadGrant(format!("key {key} belongs to agency {}", g.agency)));
                    }
                    Some(g) if g.revoked_height.is_some() => {
                        return Err(TxError::BadGrant(format!("key {key} is already revoked")));
                    }
                    Some(_) => {}
                    None => return Err(TxError::BadGrant(format!("key {key} was never authorised"))),
                },
                TxBody::Anchor(_)
                | TxBody::AnchorBatch(_)
                | TxBody::Withdraw { .. }
                | TxBody::Supersede { .. }
                | TxBody::Land(_) => {}
            }
        } else {
            if kinds.is_empty() {
                return Err(TxError::Unauthorised(signer.to_hex()));
            }
            let g = self.grant(ledger, signer)?.ok_or_else(|| TxError::Unauthorised(signer.to_hex()))?;
            if let Some(at) = g.revoked_height.filter(|at| *at < height) {
                return Err(TxError::Revoked { signer: signer.to_hex(), height: at });
            }
            if let Some(exp) = g.expires_ms.filter(|exp| time_ms >= *exp) {
                return Err(TxError::Expired { signer: signer.to_hex(), expires_ms: exp });
            }
            if let Some(kind) = kinds.iter().find(|k| !g.kinds.contains(k)) {
                return Err(TxError::KindNotAllowed { signer: signer.to_hex(), kind: kind.as_str() });
            }
        }
        match &stx.tx.body {
            TxBody::Anchor(record) => check_not_anchored(ledger, &record.fingerprint)?,
            TxBody::Withdraw { target, .. } => {
                self.check_status_change(ledger, signer, target)?;
            }
            TxBody::Supersede { target, record, .. } => {
                self.check_status_change(ledger, signer, target)?;
                check_not_anchored(ledger, &record.fingerprint)?;
            }
            TxBody::Land(op) => {
                let agency = self.agency_of(ledger, signer)?.unwrap_or_default();
                if !self.land_agencies.contains(&agency) {
                    return Err(TxError::NoLandRole(agency));
                }
                self.check_land(ledger, op)?;
            }
            TxBody::AnchorBatch(batch) => {
                if let Some(loc) = get_decoded::<RecordLocation, L>(ledger, &batch_key(&batch.root))? {
                    return Err(TxError::AlreadyAnchored { digest: format!("batch:{}", batch.root), index: loc.index });
                }
            }
            TxBody::AuthorizeKey { .. } | TxBody::RevokeKey { .. } => {}
        }
        Ok(())
    }

    /// The checks against state at `height` and `time_ms`, assuming [`Registry::check_stateless`]
    /// passed: nonce and authority.
    pub fn check_stateful<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        stx: &SignedTx,
        height: u64,
        time_ms: u64,
    ) -> Result<(), TxError> {
        self.check_nonce(ledger, stx)?;
        self.check_authority(ledger, stx, height, time_ms)
    }

    /// Applies one transaction that passed both checks: appends its entry to the log and sets its
    /// state values (the state map follows at the end of the block). Returns the entry's index.
    fn apply<L: Ledger + ?Sized>(
        &self,
        ledger: &mut Staged<'_, L>,
        log_size: u64,
        height: u64,
        time_ms: u64,
        stx: &SignedTx,
    ) -> Result<(u64, LogEntry), TxError> {
        let agency = || self.admins.get(&stx.tx.signer).cloned().unwrap_or_default();
        let body = match &stx.tx.body {
            TxBody::Anchor(r) => EntryBody::Record(r.clone()),
            TxBody::AnchorBatch(b) => EntryBody::Batch(b.clone()),
            TxBody::AuthorizeKey { key, kinds, expires_ms } => EntryBody::Grant(KeyGrant {
                key: *key,
                agency: agency(),
                kinds: kinds.clone(),
                expires_ms: *expires_ms,
            }),
            TxBody::RevokeKey { key } => EntryBody::Revoke { key: *key, agency: agency() },
            TxBody::Withdraw { target, reason } => EntryBody::Withdraw(StatusChange {
                target: target.record.fingerprint,
                target_index: self.resolve_record(ledger.view(), target)?.0,
                reason: reason.clone(),
            }),
            TxBody::Land(op) => {
                EntryBody::Land(LandEntry { op: op.clone(), version: self.next_version(ledger.view(), op)? })
            }
            TxBody::Supersede { target, record, reason } => EntryBody::Supersede {
                change: StatusChange {
                    target: target.record.fingerprint,
                    target_index: self.resolve_record(ledger.view(), target)?.0,
                    reason: reason.clone(),
                },
                record: record.clone(),
            },
        };
        let entry = LogEntry { height, time_ms, tx: stx.id(), signer: stx.tx.signer, body };
        let bytes = codec::encode(&entry);
        let index = log_size;
        merkle::append::<Blake3, L>(ledger.ledger, log_size, <Blake3 as merkle::LogHasher>::hash_leaf(&bytes))?;
        ledger.ledger.entry_put(index, bytes)?;
        let loc = RecordLocation { index, height };
        put_encoded(ledger, nonce_key(&stx.tx.signer), &(stx.tx.nonce + 1))?;
        let status = |state, reason: &String, superseded_by| RecordStatus {
            state,
            index,
            height,
            time_ms,
            reason: reason.clone(),
            superseded_by,
        };
        match &stx.tx.body {
            TxBody::Anchor(r) => {
                put_encoded(ledger, sha256_key(&r.fingerprint.sha256), &loc)?;
                put_encoded(ledger, blake3_key(&r.fingerprint.blake3), &loc)?
            }
            TxBody::Withdraw { target, reason } => {
                let st = status(RecordState::Withdrawn, reason, None);
                put_encoded(ledger, status_key(&target.record.fingerprint.sha256), &st)?
            }
            TxBody::Land(op) => {
                let version = match &entry.body {
                    EntryBody::Land(e) => e.version,
                    _ => 0,
                };
                self.apply_land(ledger, op, version, index, height)?
            }
            TxBody::Supersede { target, record, reason } => {
                put_encoded(ledger, sha256_key(&record.fingerprint.sha256), &loc)?;
                put_encoded(ledger, blake3_key(&record.fingerprint.blake3), &loc)?;
                let st = status(RecordState::Superseded, reason, Some(record.fingerprint));
                put_encoded(ledger, status_key(&target.record.fingerprint.sha256), &st)?
            }
            TxBody::AnchorBatch(b) => put_encoded(ledger, batch_key(&b.root), &loc)?,
            TxBody::AuthorizeKey { key, kinds, expires_ms } => {
                let g = GrantState {
                    agency: agency(),
                    kinds: kinds.clone(),
                    expires_ms: *expires_ms,
                    granted_height: height,
                    revoked_height: None,
                };
                put_encoded(ledger, grant_key(key), &g)?
            }
            TxBody::RevokeKey { key } => {
                let mut g = self.grant(ledger.view(), key)?.ok_or_else(|| {
                    TxError::Store(StoreError::Damaged(format!("revoking key {key}, whose grant is missing")))
                })?;
                g.revoked_height = Some(height);
                put_encoded(ledger, grant_key(key), &g)?
            }
        }
        Ok((index, entry))
    }

    /// Executes `txs` at `height` and `time_ms` on top of `tip`: every transaction must pass
    /// ([`BlockError::Tx`] names the first that does not).
    pub fn execute<L: Ledger + ?Sized>(
        &self,
        ledger: &mut L,
        tip: &Tip,
        height: u64,
        time_ms: u64,
        txs: &[SignedTx],
    ) -> Result<Executed, BlockError> {
        self.execute_cached(ledger, tip, height, time_ms, txs, &NoCache)
    }

    /// [`Registry::execute`], skipping the signatures `cache` vouches for.
    pub fn execute_cached<L: Ledger + ?Sized>(
        &self,
        ledger: &mut L,
        tip: &Tip,
        height: u64,
        time_ms: u64,
        txs: &[SignedTx],
        cache: &dyn SignatureCache,
    ) -> Result<Executed, BlockError> {
        let mut log_size = tip.log_size;
        let mut entries = Vec::with_capacity(txs.len());
        let mut staged = Staged::new(ledger);
        for (position, stx) in txs.iter().enumerate() {
            let refuse = |error| BlockError::Tx { height, position, id: stx.id(), error: Box::new(error) };
            self.check_stateless_cached(stx, cache).map_err(refuse)?;
            self.check_stateful(staged.view(), stx, height, time_ms).map_err(refuse)?;
            let (index, entry) = self.apply(&mut staged, log_size, height, time_ms, stx).map_err(refuse)?;
            entries.push((index, entry));
            log_size = index + 1;
        }
        let state_root = staged.finish(tip.state_root)?;
        let log_root = merkle::root::<Blake3, L>(ledger, log_size)?;
        Ok(Executed { log_size, log_root, state_root, entries })
    }

    /// Executes a proposed or decided block on top of `tip` and checks that its header is exactly
    /// what execution gives. `ledger` must be a write set over the state at `tip`.
    pub fn execute_block<L: Ledger + ?Sized>(
        &self,
        ledger: &mut L,
        tip: &Tip,
        block: &crate::block::Block,
    ) -> Result<Executed, BlockError> {
        self.execute_block_cached(ledger, tip, block, &NoCache)
    }

    /// [`Registry::execute_block`], skipping the signatures `cache` vouches for.
    pub fn execute_block_cached<L: Ledger + ?Sized>(
        &self,
        ledger: &mut L,
        tip: &Tip,
        block: &crate::block::Block,
        cache: &dyn SignatureCache,
    ) -> Result<Executed, BlockError> {
        let h = &block.header;
        let size = codec::encode(block).len();
        if size > self.max_block_bytes {
            return Err(BlockError::TooLarge { height: h.height, size, limit: self.max_block_bytes });
        }
        let field = |field: &'static str, expected: String, got: String| BlockError::Header {
            height: h.height,
            field,
            expected,
            got,
        };
        if h.chain_id != self.chain_id {
            return Err(field("chain_id", self.chain_id.clone(), h.chain_id.clone()));
        }
        if h.height != tip.height + 1 {
            return Err(field("height", (tip.height + 1).to_string(), h.height.to_string()));
        }
        if h.prev_hash != tip.block_hash {
            return Err(field("prev_hash", tip.block_hash.to_hex(), h.prev_hash.to_hex()));
        }
        if h.time_ms <= tip.time_ms {
            return Err(field("time_ms", format!("more than {}", tip.time_ms), h.time_ms.to_string()));
        }
        if h.validator_set_hash != self.validator_set_hash {
            return Err(field("validator_set_hash", self.validator_set_hash.to_hex(), h.validator_set_hash.to_hex()));
        }
        let root = tx_root(&block.txs);
        if h.tx_root != root {
            return Err(field("tx_root", root.to_hex(), h.tx_root.to_hex()));
        }
        if usize::try_from(h.tx_count).ok() != Some(block.txs.len()) {
            return Err(field("tx_count", block.txs.len().to_string(), h.tx_count.to_string()));
        }
        let ex = self.execute_cached(ledger, tip, h.height, h.time_ms, &block.txs, cache)?;
        if h.log_size != ex.log_size {
            return Err(field("log_size", ex.log_size.to_string(), h.log_size.to_string()));
        }
        if h.log_root != ex.log_root {
            return Err(field("log_root", ex.log_root.to_hex(), h.log_root.to_hex()));
        }
        if h.state_root != ex.state_root {
            return Err(field("state_root", ex.state_root.to_hex(), h.state_root.to_hex()));
        }
        Ok(ex)
    }

    /// Builds the next block on top of `tip` from `candidates`, in order, as a proposer does:
    /// transactions that are refused are left out (and returned with the reason), and filling
    /// stops before the block would exceed the size limit. `ledger` must be a write set over the
    /// state at `tip`; it ends holding the block's effects.
    pub fn build_block<L: Ledger + ?Sized>(
        &self,
        ledger: &mut L,
        tip: &Tip,
        time_ms: u64,
        proposer: PublicKey,
        candidates: impl IntoIterator<Item = SignedTx>,
    ) -> Result<Built, StoreError> {
        self.build_block_cached(ledger, tip, time_ms, proposer, candidates, &NoCache)
    }

    /// [`Registry::build_block`], skipping the signatures `cache` vouches for.
    pub fn build_block_cached<L: Ledger + ?Sized>(
        &self,
        ledger: &mut L,
        tip: &Tip,
        time_ms: u64,
        proposer: PublicKey,
        candidates: impl IntoIterator<Item = SignedTx>,
        cache: &dyn SignatureCache,
    ) -> Result<Built, StoreError> {
        let height = tip.height + 1;
        let mut log_size = tip.log_size;
        let mut entries = Vec::new();
        let mut txs = Vec::new();
        let mut refused = Vec::new();
        let mut staged = Staged::new(ledger);
        // Room for the header and the length prefixes.
        let mut bytes = 2048usize;
        for stx in candidates {
            let size = codec::encode(&stx).len();
            if bytes + size > self.max_block_bytes {
                break;
            }
            if let Err(e) = self
                .check_stateless_cached(&stx, cache)
                .and_then(|()| self.check_stateful(staged.view(), &stx, height, time_ms))
            {
                if let TxError::Store(s) = e {
                    return Err(s);
                }
                refused.push((stx.id(), e));
                continue;
            }
            let (index, entry) = match self.apply(&mut staged, log_size, height, time_ms, &stx) {
                Ok(done) => done,
                Err(TxError::Store(s)) => return Err(s),
                Err(e) => return Err(StoreError::Damaged(format!("applying a checked transaction: {e}"))),
            };
            bytes += size;
            entries.push((index, entry));
            log_size = index + 1;
            txs.push(stx);
        }
        let state_root = staged.finish(tip.state_root)?;
        let log_root = merkle::root::<Blake3, L>(ledger, log_size)?;
        let header = BlockHeader {
            chain_id: self.chain_id.clone(),
            height,
            time_ms,
            prev_hash: tip.block_hash,
            tx_root: tx_root(&txs),
            tx_count: u32::try_from(txs.len()).unwrap_or(u32::MAX),
            log_size,
            log_root,
            state_root,
            validator_set_hash: self.validator_set_hash,
            proposer,
        };
        Ok(Built {
            block: crate::block::Block { header, txs },
            executed: Executed { log_size, log_root, state_root, entries },
            refused,
        })
    }
}

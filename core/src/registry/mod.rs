//! Registry rules: which transactions are acceptable, and what a block does to the registry.
//!
//! Every node runs exactly these functions: at mempool admission, when a proposer builds a block
//! ([`Registry::build_block`]) and when every node executes a proposed or decided block
//! ([`Registry::execute_block`]). They read and write through [`Ledger`], which the node backs with
//! a RocksDB write set, so execution is deterministic and a block's effects commit atomically.
//!
//! ## Check, plan, apply
//! Checking a transaction against the state ([`Registry::check`]) either refuses it ([`TxError`],
//! with a stable code) or returns a [`Plan`]: the log entry it appends and every state value it
//! sets, typed by the state layout ([`schema`]). Every rule, limit and size check runs in the
//! check; applying a plan only writes, and can fail only on storage ([`StoreError`]). So a
//! proposer never meets a transaction it checked but cannot apply: it leaves out what is refused
//! and goes on, and a block that executes on one honest node executes on all of them.
//!
//! The rules live by family: [`authority`] (who may sign what, nonces), [`records`] (anchors,
//! batches, withdrawals, supersessions), [`land`] (parcels, rights, restrictions, structures) and
//! [`block`] (headers, building and executing blocks). [`schema`] is the one table of what the
//! state holds.
//!
//! ## Stateless checks
//! A transaction is for this chain, within the size limit, signed by its signer (strict Ed25519),
//! and its body's own fields are well formed ([`Registry::check_stateless`]). A node verifies each
//! signature once: a [`SignatureCache`] of the ids its mempool admitted is passed to every entry
//! point; an auditor passes [`NoCache`].

pub mod authority;
pub mod block;
mod error;
pub mod land;
pub mod records;
pub mod schema;

pub use authority::GrantState;
pub use block::{Built, Executed, Tip};
pub use error::{BlockError, CheckError, TxError};
pub use records::{RecordId, RecordLocation, RecordState, RecordStatus};

use crate::codec;
use crate::entry::{self, EntryBody, KeyGrant, LogEntry};
use crate::genesis::Genesis;
use crate::hash::{self, Hash32};
use crate::land::LandEntry;
use crate::merkle::{self, Blake3, LogHasher as _, NodeSink, StoreError};
use crate::sign::PublicKey;
use crate::smt::{self, SmtSink};
use crate::tx::{SignedTx, TxBody};
use schema::{BatchByRoot, NonceOf, Slot, Write};
use std::collections::{BTreeMap, BTreeSet};

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

impl SignatureCache for BTreeSet<Hash32> {
    fn verified(&self, id: &Hash32) -> bool {
        self.contains(id)
    }
}

/// Where a transaction would land: the block's height and consensus time, and the log index its
/// entry would get. Admission passes the next block's height, an estimate of its time and the
/// current log size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// Height of the block.
    pub height: u64,
    /// Its consensus time, Unix milliseconds.
    pub time_ms: u64,
    /// The log index of the entry.
    pub index: u64,
}

/// What a checked transaction does: the entry it appends at `index` and the state values it sets.
/// Applying it only writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The log index of the entry.
    pub index: u64,
    /// The entry.
    pub entry: LogEntry,
    /// The state values it sets, by key.
    pub writes: Vec<Write>,
}

/// The state as one transaction's check sees it: the ledger, under the values the transaction
/// has planned so far (a merge retires its parents before it places the new parcel in the index).
pub(crate) struct Draft<'a, L: ?Sized> {
    ledger: &'a L,
    writes: BTreeMap<Hash32, Vec<u8>>,
}

impl<'a, L: Ledger + ?Sized> Draft<'a, L> {
    fn new(ledger: &'a L) -> Self {
        Draft { ledger, writes: BTreeMap::new() }
    }

    /// The ledger under the draft.
    pub(crate) fn ledger(&self) -> &'a L {
        self.ledger
    }

    /// A value, as planned so far.
    pub(crate) fn get<S: Slot>(&self, key: &S::Key) -> Result<Option<S::Value>, StoreError> {
        match self.writes.get(&S::key(key)) {
            Some(bytes) => S::decode(bytes).map(Some),
            None => schema::get::<S, L>(self.ledger, key),
        }
    }

    /// Plans setting a value. A value larger than its slot's limit is refused here, in the check:
    /// written, it could never be read back, and every later check that reads it would fail as
    /// a damaged store.
    pub(crate) fn set<S: Slot>(&mut self, key: &S::Key, value: &S::Value) -> Result<(), TxError> {
        let w = Write::of::<S>(key, value);
        if w.value.len() > S::MAX_LEN {
            return Err(TxError::StateValueTooLarge { what: S::NAME, size: w.value.len(), limit: S::MAX_LEN });
        }
        self.writes.insert(w.key, w.value);
        Ok(())
    }

    fn into_writes(self) -> Vec<Write> {
        self.writes.into_iter().map(|(key, value)| Write { key, value }).collect()
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

    /// Applies a checked transaction's plan: appends its entry to the log and sets its values.
    /// Fails only on storage.
    fn apply(&mut self, plan: Plan) -> Result<(u64, LogEntry), StoreError> {
        let bytes = codec::encode(&plan.entry);
        merkle::append::<Blake3, L>(self.ledger, plan.index, Blake3::hash_leaf(&bytes))?;
        self.ledger.entry_put(plan.index, bytes)?;
        for w in plan.writes {
            self.changed.insert(w.key, smt::value_hash(&w.value));
            self.ledger.state_put(w.key, w.value)?;
        }
        Ok((plan.index, plan.entry))
    }

    /// Updates the state map with every key set; returns its root (`unchanged` if none was).
    fn finish(self, unchanged: Hash32) -> Result<Hash32, StoreError> {
        if self.changed.is_empty() {
            return Ok(unchanged);
        }
        smt::insert_batch(self.ledger, &self.changed)
    }
}

/// The registry rules for one chain.
#[derive(Debug, Clone)]
pub struct Registry {
    chain_id: String,
    max_tx_bytes: usize,
    max_block_bytes: usize,
    /// Largest block [`Registry::build_block`] builds: `max_block_bytes`, or less where the
    /// network that carries proposals cannot carry that much ([`Registry::with_build_limit`]).
    build_max_bytes: usize,
    admins: BTreeMap<PublicKey, String>,
    land_agencies: BTreeSet<String>,
    overlap_tolerance_mm2: u64,
    validator_set_hash: Hash32,
}

impl Registry {
    /// The rules of the chain `genesis` starts.
    pub fn new(genesis: &Genesis) -> Result<Registry, crate::validator::ValidatorSetError> {
        Ok(Registry {
            chain_id: genesis.chain_id.clone(),
            max_tx_bytes: usize::try_from(genesis.params.max_tx_bytes).unwrap_or(usize::MAX),
            max_block_bytes: usize::try_from(genesis.params.max_block_bytes).unwrap_or(usize::MAX),
            build_max_bytes: usize::try_from(genesis.params.max_block_bytes).unwrap_or(usize::MAX),
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

    /// The same rules, building blocks of at most `bytes` (never more than the genesis accepts).
    /// For a node whose network carries smaller messages than the genesis's largest block: it
    /// still accepts every block the genesis allows, and proposes only what it can send.
    #[must_use]
    pub fn with_build_limit(mut self, bytes: usize) -> Registry {
        self.build_max_bytes = bytes.min(self.max_block_bytes);
        self
    }

    /// Largest encoded block [`Registry::build_block`] builds.
    pub fn build_max_bytes(&self) -> usize {
        self.build_max_bytes
    }

    /// Hash of the validator set (fixed by the genesis in this version).
    pub fn validator_set_hash(&self) -> Hash32 {
        self.validator_set_hash
    }

    /// The checks that need no state: chain, size, signature (skipped when `cache` vouches for
    /// it), and the body's own fields.
    pub fn check_stateless(&self, stx: &SignedTx, cache: &dyn SignatureCache) -> Result<(), TxError> {
        self.check_envelope(stx, cache)?;
        self.check_body(stx)
    }

    /// Whether the signer may sign this transaction in a block at `at` (its grant, kinds, expiry
    /// and revocation; an admin key's agency). Cheap: a node admitting a submission asks it
    /// between [`Registry::check_envelope`] and [`Registry::check_body`], so that a stranger's
    /// land operation costs a key lookup, not a geometry check.
    pub fn check_authority<L: Ledger + ?Sized>(&self, ledger: &L, stx: &SignedTx, at: At) -> Result<(), CheckError> {
        self.check_signer(ledger, stx, at.height, at.time_ms).map(|_| ())
    }

    /// The envelope: chain, size, and signature (skipped when `cache` vouches for it).
    pub fn check_envelope(&self, stx: &SignedTx, cache: &dyn SignatureCache) -> Result<(), TxError> {
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
        Ok(())
    }

    /// The body's own fields (a land operation's geometry among them: the costly part).
    pub fn check_body(&self, stx: &SignedTx) -> Result<(), TxError> {
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
                records::check_ref_shape(target)?;
            }
            TxBody::Supersede { target, record, reason } => {
                entry::check_reason(reason)?;
                records::check_ref_shape(target)?;
                record.validate()?;
                let (old, new) = (&target.record.fingerprint, &record.fingerprint);
                if old.sha256 == new.sha256 || old.blake3 == new.blake3 {
                    return Err(TxError::BadRecord(entry::RecordError {
                        field: "record.fingerprint",
                        reason: "a record cannot supersede itself".into(),
                    }));
                }
            }
        }
        Ok(())
    }

    /// Checks a transaction that passed [`Registry::check_stateless`] against the state, as the
    /// transaction of a block `at`: its nonce, its signer's authority and the rules of its body.
    /// Returns what applying it writes.
    pub fn check<L: Ledger + ?Sized>(&self, ledger: &L, stx: &SignedTx, at: At) -> Result<Plan, CheckError> {
        self.check_nonce(ledger, stx)?;
        self.plan(ledger, stx, at)
    }

    /// [`Registry::check`] without the nonce: for a transaction held until the ones before it
    /// arrive.
    pub fn plan<L: Ledger + ?Sized>(&self, ledger: &L, stx: &SignedTx, at: At) -> Result<Plan, CheckError> {
        let agency = self.check_signer(ledger, stx, at.height, at.time_ms)?;
        let signer = stx.tx.signer;
        let mut d = Draft::new(ledger);
        d.set::<NonceOf>(&signer, &stx.tx.nonce.saturating_add(1))?;
        let loc = RecordLocation { index: at.index, height: at.height };
        let status = |state, reason: &String, superseded_by| RecordStatus {
            state,
            index: at.index,
            height: at.height,
            time_ms: at.time_ms,
            reason: reason.clone(),
            superseded_by,
        };
        let body = match &stx.tx.body {
            TxBody::Anchor(r) => {
                self.plan_single(&mut d, r, loc)?;
                EntryBody::Record(r.clone())
            }
            TxBody::AnchorBatch(b) => {
                self.check_batch_new(&d, &b.root)?;
                d.set::<BatchByRoot>(&b.root, &loc)?;
                EntryBody::Batch(b.clone())
            }
            TxBody::AuthorizeKey { key, kinds, expires_ms } => {
                let grant = GrantState {
                    agency: agency.clone(),
                    kinds: kinds.clone(),
                    expires_ms: *expires_ms,
                    granted_height: at.height,
                    revoked_height: None,
                };
                self.plan_grant(&mut d, &agency, key, grant)?;
                EntryBody::Grant(KeyGrant { key: *key, agency, kinds: kinds.clone(), expires_ms: *expires_ms })
            }
            TxBody::RevokeKey { key } => {
                self.plan_revoke(&mut d, &agency, key, at.height)?;
                EntryBody::Revoke { key: *key, agency }
            }
            TxBody::Withdraw { target, reason } => {
                let st = status(RecordState::Withdrawn, reason, None);
                EntryBody::Withdraw(self.plan_status_change(&mut d, &signer, target, reason, st)?)
            }
            TxBody::Supersede { target, record, reason } => {
                let st = status(RecordState::Superseded, reason, Some(record.fingerprint));
                let change = self.plan_status_change(&mut d, &signer, target, reason, st)?;
                self.plan_single(&mut d, record, loc)?;
                EntryBody::Supersede { change, record: record.clone() }
            }
            TxBody::Land(op) => {
                let version =
                    self.plan_land(&mut d, &agency, op, land::Landing { index: at.index, height: at.height })?;
                EntryBody::Land(LandEntry { op: op.clone(), version })
            }
        };
        let entry = LogEntry { height: at.height, time_ms: at.time_ms, tx: stx.id(), signer, body };
        Ok(Plan { index: at.index, entry, writes: d.into_writes() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::CellMembers;

    /// A value its slot could not read back is refused when planned, never written: a grid cell
    /// crowded past 4 MiB of cadastral numbers would otherwise make every later check of that
    /// cell fail as a damaged store, and stop every proposer.
    #[test]
    fn a_state_value_beyond_its_slot_limit_is_refused_in_the_check() {
        let ledger = MemoryLedger::default();
        let mut d = Draft::new(&ledger);
        let crowded: Vec<String> = (0..70_000).map(|i| format!("01:01:{i:0>58}")).collect();
        let err = d.set::<CellMembers>(&(0, 0), &crowded).unwrap_err();
        assert_eq!(err.code(), "state_value_too_large");
        assert!(d.into_writes().is_empty());
        let mut d = Draft::new(&ledger);
        d.set::<CellMembers>(&(0, 0), &crowded[..1000].to_vec()).unwrap();
        assert_eq!(d.get::<CellMembers>(&(0, 0)).unwrap().map(|m| m.len()), Some(1000));
    }
}

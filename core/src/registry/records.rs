//! Archive records: anchoring single records and batches, and withdrawing or superseding a record.
//!
//! **A record is the entry that anchored it** ([`RecordId`]): the document's SHA-256 digest, the log
//! index of the anchoring entry, and the record's leaf in that entry's batch (0 for a single record).
//! Two agencies that anchor the same document (one singly, the other in a batch, or both in
//! batches) hold two independent records; a status change names one of them, and only a key of the
//! agency that signed its anchoring entry, allowed for its kind, may make it.
//!
//! Rules:
//! - A document is anchored **as a single record** once: a second single anchoring of the same
//!   SHA-256 or BLAKE3 digest is refused (`already_anchored`, naming the entry and its agency).
//!   A batch root is anchored once.
//! - A withdrawal or supersession names the record by its anchoring entry, gives the record exactly
//!   as anchored and, for a batched record, its inclusion path to the batch root in that entry.
//! - A record changes status once: a withdrawn or superseded record is no longer current.
//! - A supersession anchors its new record as a single record, under the same rule as an anchor.

use super::authority::agency_or_unknown;
use super::schema::{self, BatchByRoot, SingleByBlake3, SingleBySha256, StatusOf};
use super::{CheckError, Draft, Ledger, Registry, TxError};
use crate::codec;
use crate::entry::{ArchiveRecord, EntryBody, LogEntry, RecordRef, StatusChange};
use crate::fingerprint::Fingerprint;
use crate::hash::Hash32;
use crate::merkle::{self, Blake3, LogHasher as _, StoreError};
use crate::sign::PublicKey;
use serde::{Deserialize, Serialize};

/// Which record: the document, and the anchoring that made it a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordId {
    /// SHA-256 digest of the document.
    pub sha256: Hash32,
    /// Log index of the entry that anchored it (the record itself, a supersession, or its batch).
    pub entry: u64,
    /// Its leaf index in that entry's batch; 0 for a record anchored singly.
    pub leaf: u64,
}

/// Where an anchored record or batch is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLocation {
    /// Log index of the entry.
    pub index: u64,
    /// Height of the block that committed it.
    pub height: u64,
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

/// A batch path longer than any log can need is refused before any hashing.
pub(super) fn check_ref_shape(target: &RecordRef) -> Result<(), TxError> {
    match &target.batch {
        Some(p) if p.path.len() > crate::bundle::MAX_PATH_LEN => Err(TxError::NotAnchored(format!(
            "batch path of {} hashes exceeds {}",
            p.path.len(),
            crate::bundle::MAX_PATH_LEN
        ))),
        _ => Ok(()),
    }
}

/// Reads log entry `index`, which the state or a reference names. `None` when the log is shorter.
pub(super) fn entry_at<L: Ledger + ?Sized>(ledger: &L, index: u64) -> Result<Option<LogEntry>, StoreError> {
    match ledger.entry_get(index)? {
        None => Ok(None),
        Some(bytes) => codec::decode(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Damaged(format!("log entry {index} does not decode: {e}"))),
    }
}

impl Registry {
    /// Finds the record `target` names: its anchoring entry must anchor exactly the record given
    /// (as a single record or a supersession's new record, or as a leaf of its batch by the path
    /// given). Returns the record's id and the key that signed its anchoring.
    pub fn resolve_record<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        target: &RecordRef,
    ) -> Result<(RecordId, PublicKey), CheckError> {
        let record = &target.record;
        let entry = entry_at(ledger, target.entry)?
            .ok_or_else(|| TxError::NotAnchored(format!("the log has no entry {}", target.entry)))?;
        let refuse = |why: String| TxError::NotAnchored(format!("entry {}: {why}", target.entry));
        let leaf = match (&entry.body, &target.batch) {
            (EntryBody::Record(r) | EntryBody::Supersede { record: r, .. }, None) => {
                if r != record {
                    return Err(refuse("the record given differs from the record it anchors".into()).into());
                }
                0
            }
            (EntryBody::Batch(b), Some(p)) => {
                if p.size != b.size || b.kind != record.kind {
                    return Err(refuse(format!(
                        "it anchors a batch of {} records of kind {}; the reference gives {} of kind {}",
                        b.size,
                        b.kind.as_str(),
                        p.size,
                        record.kind.as_str()
                    ))
                    .into());
                }
                let leaf_hash = Blake3::hash_leaf(&codec::encode(record));
                let root = merkle::root_from_inclusion::<Blake3>(&leaf_hash, p.index, p.size, &p.path)
                    .map_err(|e| refuse(format!("batch path: {e}")))?;
                if root != b.root {
                    return Err(
                        refuse(format!("the batch path leads to {root}, not to the batch root {}", b.root)).into()
                    );
                }
                p.index
            }
            (EntryBody::Batch(_), None) => {
                return Err(refuse("it anchors a batch: give the record's batch path".into()).into());
            }
            (EntryBody::Record(_) | EntryBody::Supersede { .. }, Some(_)) => {
                return Err(refuse("it anchors a single record: give no batch path".into()).into());
            }
            _ => return Err(refuse("it anchors no record".into()).into()),
        };
        Ok((RecordId { sha256: record.fingerprint.sha256, entry: target.entry, leaf }, entry.signer))
    }

    /// The status of record `id`: `None` while it is current.
    pub fn record_status<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        id: &RecordId,
    ) -> Result<Option<RecordStatus>, StoreError> {
        schema::get::<StatusOf, L>(ledger, id)
    }

    /// Refuses a record whose document is already anchored as a single record.
    pub(super) fn check_not_anchored<L: Ledger + ?Sized>(
        &self,
        d: &Draft<'_, L>,
        fp: &Fingerprint,
    ) -> Result<(), CheckError> {
        let found = match d.get::<SingleBySha256>(&fp.sha256)? {
            Some(loc) => Some((format!("sha256:{}", fp.sha256), loc)),
            None => d.get::<SingleByBlake3>(&fp.blake3)?.map(|loc| (format!("blake3:{}", fp.blake3), loc)),
        };
        match found {
            None => Ok(()),
            Some((digest, loc)) => Err(self.already_anchored(d.ledger(), digest, loc.index)?.into()),
        }
    }

    /// The refusal for something anchored at entry `index`, naming the agency that anchored it.
    pub(super) fn already_anchored<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        digest: String,
        index: u64,
    ) -> Result<TxError, StoreError> {
        let signer = entry_at(ledger, index)?
            .ok_or_else(|| StoreError::Damaged(format!("log entry {index} named by the state is missing")))?
            .signer;
        Ok(TxError::AlreadyAnchored { digest, index, agency: agency_or_unknown(self.agency_of(ledger, &signer)?) })
    }

    /// Refuses a batch root anchored before.
    pub(super) fn check_batch_new<L: Ledger + ?Sized>(
        &self,
        d: &Draft<'_, L>,
        root: &Hash32,
    ) -> Result<(), CheckError> {
        match d.get::<BatchByRoot>(root)? {
            None => Ok(()),
            Some(loc) => Err(self.already_anchored(d.ledger(), format!("batch:{root}"), loc.index)?.into()),
        }
    }

    /// Checks a withdrawal or supersession of `target` by `signer` and plans the status it sets;
    /// returns the body's status change.
    pub(super) fn plan_status_change<L: Ledger + ?Sized>(
        &self,
        d: &mut Draft<'_, L>,
        signer: &PublicKey,
        target: &RecordRef,
        reason: &str,
        status: RecordStatus,
    ) -> Result<StatusChange, CheckError> {
        let (id, anchored_by) = self.resolve_record(d.ledger(), target)?;
        let owner = self.agency_of(d.ledger(), &anchored_by)?;
        let signer_agency = self.agency_of(d.ledger(), signer)?;
        if owner.is_none() || owner != signer_agency {
            return Err(TxError::WrongAgency {
                owner: agency_or_unknown(owner),
                signer_agency: agency_or_unknown(signer_agency),
            }
            .into());
        }
        if let Some(st) = d.get::<StatusOf>(&id)? {
            return Err(TxError::NotCurrent {
                digest: id.sha256.to_hex(),
                entry: id.entry,
                leaf: id.leaf,
                state: st.state.as_str(),
                index: st.index,
            }
            .into());
        }
        d.set::<StatusOf>(&id, &status)?;
        Ok(StatusChange {
            target: target.record.fingerprint,
            target_index: id.entry,
            target_leaf: id.leaf,
            reason: reason.to_string(),
        })
    }

    /// Plans the anchoring of a single record at `loc`.
    pub(super) fn plan_single<L: Ledger + ?Sized>(
        &self,
        d: &mut Draft<'_, L>,
        record: &ArchiveRecord,
        loc: RecordLocation,
    ) -> Result<(), CheckError> {
        self.check_not_anchored(d, &record.fingerprint)?;
        d.set::<SingleBySha256>(&record.fingerprint.sha256, &loc)?;
        d.set::<SingleByBlake3>(&record.fingerprint.blake3, &loc)?;
        Ok(())
    }
}

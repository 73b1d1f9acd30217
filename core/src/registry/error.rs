//! Why a transaction or a block is refused, and how a refusal differs from a storage failure.
//!
//! A [`TxError`] is a **refusal**: the transaction breaks a rule, every honest node decides the same
//! way, and its [`TxError::code`] is stable (clients and the API show it). A [`StoreError`] is a
//! **failure of this node's storage**: it says nothing about the transaction, is never answered as a
//! refusal, and stops block execution. Checking returns [`CheckError`], which is one or the other.

use crate::entry::RecordError;
use crate::hash::Hash32;
use crate::merkle::StoreError;
use thiserror::Error;

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
    /// Same document (or batch) already anchored.
    #[error("{digest} is already anchored by agency {agency} at entry {index}")]
    AlreadyAnchored {
        /// The digest (hex, algorithm-tagged).
        digest: String,
        /// The entry that anchored it.
        index: u64,
        /// The agency whose key signed that entry.
        agency: String,
    },
    /// The record a withdrawal or supersession names is not anchored as given.
    #[error("record not anchored as given: {0}")]
    NotAnchored(String),
    /// The record was already withdrawn or superseded.
    #[error("record sha256:{digest} anchored at entry {entry} (leaf {leaf}) was already {state} at entry {index}")]
    NotCurrent {
        /// Its SHA-256 digest (hex).
        digest: String,
        /// Its anchoring entry.
        entry: u64,
        /// Its leaf in that entry's batch (0 for a single record).
        leaf: u64,
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
    /// Restrictions stand on a parcel that would be split, merged, retired or re-drawn.
    #[error(
        "parcel {0} has standing restrictions; release them first (a split, merge, retirement or boundary correction would escape them)"
    )]
    Encumbered(String),
    /// An arrest blocks the operation.
    #[error("parcel {0} is under arrest: no transfer until the arrest is released")]
    Arrested(String),
    /// A mortgagee did not consent to a transfer, or a restriction's key did not sign its release.
    #[error("parcel {cadastral}: the {what} needs the signature of key {key}")]
    ConsentMissing {
        /// What needs it: `transfer` or `release`.
        what: &'static str,
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
    /// A state value the transaction would write exceeds its slot's limit (a grid cell crowded
    /// with parcels, say).
    #[error("the transaction would make the state's {what} {size} bytes; the limit is {limit}")]
    StateValueTooLarge {
        /// The slot.
        what: &'static str,
        /// The value's size.
        size: usize,
        /// The slot's limit.
        limit: usize,
    },
    /// Too large.
    #[error("transaction is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Size.
        size: usize,
        /// Limit.
        limit: usize,
    },
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
            TxError::Land(crate::land::LandError::ShareOverflow) => "share_overflow",
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
            TxError::StateValueTooLarge { .. } => "state_value_too_large",
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

/// Why a transaction could not be checked: refused by the rules, or the store failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckError {
    /// The rules refuse the transaction.
    #[error(transparent)]
    Refused(#[from] TxError),
    /// This node's storage failed while checking: nothing is known about the transaction.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<crate::land::LandError> for CheckError {
    fn from(e: crate::land::LandError) -> Self {
        CheckError::Refused(TxError::Land(e))
    }
}

impl From<crate::entry::RecordError> for CheckError {
    fn from(e: crate::entry::RecordError) -> Self {
        CheckError::Refused(TxError::BadRecord(e))
    }
}

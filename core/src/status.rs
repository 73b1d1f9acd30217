//! Status proofs: whether an anchored record is still current, withdrawn or superseded, at a
//! block a quorum of validators committed, checked offline trusting only the genesis.
//!
//! A record is the anchoring that made it ([`RecordId`]: the document's SHA-256 digest, its anchoring
//! entry, its leaf in that entry's batch). A proof file (`*.sabt-status.json`) holds a block header,
//! its commit certificate and a state-map proof for the record's status key
//! ([`crate::registry::schema::StatusOf`]) against the header's state root. It proves, in layers:
//! 1. **Header → genesis**: validators holding more than 2/3 of the genesis set's power precommitted
//!    the header's hash at its height ([`crate::block::verify_commit`]).
//! 2. **Status → header**: the state map under the header's state root holds the given status for
//!    the key (presence), or nothing (absence: the record is current).
//!
//! Paired with the record's proof bundle, whose entry and leaf must be the status proof's own and
//! whose entry must be inside the header's log ([`check_applies`]), it answers "was this record
//! withdrawn or superseded since it was anchored?" at that block. Version 1 keyed the status by
//! the digest alone, so one agency's withdrawal could read as another's; it is no longer read.

use crate::block::{BlockHeader, Commit, CommitError, verify_commit};
use crate::codec;
use crate::genesis::Genesis;
use crate::hash::Hash32;
use crate::registry::schema::{Slot as _, StatusOf};
use crate::registry::{RecordId, RecordStatus};
use crate::smt::{self, SmtProof, SmtProofError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `format` field of every status proof.
pub const STATUS_FORMAT: &str = "sabt-status";
/// The status proof version this software writes and reads.
pub const STATUS_VERSION: u32 = 2;
/// The parcel proof version this software writes and reads.
pub const PARCEL_VERSION: u32 = 1;
/// The largest status proof file accepted.
pub const MAX_STATUS_LEN: usize = 256 * 1024;

/// A status proof (`*.sabt-status.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusProof {
    /// Always [`STATUS_FORMAT`].
    pub format: String,
    /// [`STATUS_VERSION`].
    pub version: u32,
    /// The chain id.
    pub chain_id: String,
    /// Hash of the genesis the chain started from.
    pub genesis_hash: Hash32,
    /// The record: the document's SHA-256 digest and the anchoring that made it a record.
    pub record: RecordId,
    /// The record's status at the header's block; absent while the record is current.
    pub status: Option<RecordStatus>,
    /// State-map proof for the status key against the header's state root.
    pub state_proof: SmtProof,
    /// The header of the block the status is proven at.
    pub header: BlockHeader,
    /// The commit certificate that decided that block.
    pub commit: Commit,
}

/// What a valid status proof proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusVerified {
    /// The record.
    pub record: RecordId,
    /// The status: `None` while current.
    pub status: Option<RecordStatus>,
    /// Height of the block it is proven at.
    pub height: u64,
    /// That block's consensus time, Unix milliseconds.
    pub time_ms: u64,
    /// Size of the log after that block: entries below it are covered.
    pub log_size: u64,
}

/// Why a status proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StatusError {
    /// Not a status proof.
    #[error("not a Sabt status proof: {0}")]
    Malformed(String),
    /// Another format or version.
    #[error(
        "unsupported status proof {format:?} version {version} (this software reads {STATUS_FORMAT:?} version {STATUS_VERSION})"
    )]
    UnsupportedVersion {
        /// Format found.
        format: String,
        /// Version found.
        version: u32,
    },
    /// Another chain or genesis.
    #[error(
        "status proof is for chain {found_chain:?} genesis {found_genesis}, not the genesis given: wrong genesis file"
    )]
    WrongGenesis {
        /// The proof's chain id.
        found_chain: String,
        /// The genesis hash it names.
        found_genesis: Hash32,
    },
    /// The header is not for this chain.
    #[error("the header is for chain {0:?}")]
    WrongChain(String),
    /// The commit certificate does not decide the header.
    #[error("commit certificate: {0}")]
    Commit(#[from] CommitError),
    /// The state proof does not lead to the header's state root.
    #[error("state proof: {0}")]
    StateProof(#[from] SmtProofError),
    /// The proven value differs from the status given.
    #[error("the status given is not what the state holds at height {height}")]
    StatusMismatch {
        /// The header's height.
        height: u64,
    },
    /// The status proof is for another record: another document, or the same document anchored by
    /// another entry.
    #[error(
        "status proof is for sha256:{} anchored at entry {} leaf {}, the record is sha256:{} at entry {} leaf {}",
        found.sha256, found.entry, found.leaf, expected.sha256, expected.entry, expected.leaf
    )]
    OtherRecord {
        /// The record.
        expected: RecordId,
        /// The proof's.
        found: RecordId,
    },
    /// The status proof is from before the record was anchored.
    #[error("status proof is at log size {log_size}, before the record's entry {index}; fetch a newer one")]
    Predates {
        /// The proof's log size.
        log_size: u64,
        /// The record's entry index.
        index: u64,
    },
}

impl StatusError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            StatusError::Malformed(_) => "malformed_status",
            StatusError::UnsupportedVersion { .. } => "unsupported_version",
            StatusError::WrongGenesis { .. } => "wrong_genesis",
            StatusError::WrongChain(_) => "wrong_chain",
            StatusError::Commit(CommitError::QuorumNotMet { .. }) => "quorum_not_met",
            StatusError::Commit(CommitError::DuplicateValidator(_)) => "duplicate_signer",
            StatusError::Commit(_) => "bad_commit",
            StatusError::StateProof(_) => "bad_state_proof",
            StatusError::StatusMismatch { .. } => "status_mismatch",
            StatusError::OtherRecord { .. } => "other_record",
            StatusError::Predates { .. } => "status_predates_record",
        }
    }
}

impl StatusProof {
    /// Parses a status proof file, bounded in size.
    pub fn from_json(text: &str) -> Result<Self, StatusError> {
        use crate::text::VersionedJsonError as E;
        crate::text::parse_versioned_json(text, MAX_STATUS_LEN, STATUS_FORMAT, STATUS_VERSION).map_err(|e| match e {
            E::Malformed(m) => StatusError::Malformed(m),
            E::Unsupported { format, version } => StatusError::UnsupportedVersion { format, version },
        })
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// Verifies a status proof, trusting only `genesis`.
pub fn verify(proof: &StatusProof, genesis: &Genesis) -> Result<StatusVerified, StatusError> {
    if proof.format != STATUS_FORMAT || proof.version != STATUS_VERSION {
        return Err(StatusError::UnsupportedVersion { format: proof.format.clone(), version: proof.version });
    }
    if proof.chain_id != genesis.chain_id || proof.genesis_hash != genesis.hash() {
        return Err(StatusError::WrongGenesis {
            found_chain: proof.chain_id.clone(),
            found_genesis: proof.genesis_hash,
        });
    }
    let h = &proof.header;
    let given = proof.status.as_ref().map(|s| smt::value_hash(&codec::encode_body(s)));
    check_value_at_block(genesis, h, &proof.commit, &StatusOf::key(&proof.record), given, &proof.state_proof)?;
    Ok(StatusVerified {
        record: proof.record,
        status: proof.status.clone(),
        height: h.height,
        time_ms: h.time_ms,
        log_size: h.log_size,
    })
}

/// Checks that a committed block's header is vouched for by the genesis validators (its commit
/// certificate), and that the state map under its state root holds `value_hash` for `key` (or
/// nothing, when `None`).
fn check_value_at_block(
    genesis: &Genesis,
    h: &BlockHeader,
    commit: &Commit,
    key: &Hash32,
    value_hash: Option<Hash32>,
    proof: &SmtProof,
) -> Result<(), StatusError> {
    if h.chain_id != genesis.chain_id {
        return Err(StatusError::WrongChain(h.chain_id.clone()));
    }
    // 1. Header → genesis.
    let set = genesis.validator_set().map_err(|e| StatusError::Malformed(format!("genesis: {e}")))?;
    verify_commit(commit, &set, &genesis.chain_id, h.height, &h.hash())?;
    // 2. Value → header.
    if proof.verify(&h.state_root, key)? != value_hash {
        return Err(StatusError::StatusMismatch { height: h.height });
    }
    Ok(())
}

/// The `format` field of a parcel's current-state proof.
pub const PARCEL_FORMAT: &str = "sabt-parcel";

/// A proof of a parcel's state at a committed block (`*.sabt-parcel.json`): its geometry, right,
/// holders and restrictions, or that it was never registered, or that it is retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParcelProof {
    /// Always [`PARCEL_FORMAT`].
    pub format: String,
    /// [`PARCEL_VERSION`].
    pub version: u32,
    /// The chain id.
    pub chain_id: String,
    /// Hash of the genesis.
    pub genesis_hash: Hash32,
    /// The cadastral number.
    pub cadastral: String,
    /// The parcel's state at the header's block; absent if never registered.
    pub state: Option<crate::land::ParcelState>,
    /// State-map proof for [`crate::registry::parcel_key`] against the header's state root.
    pub state_proof: SmtProof,
    /// The header of the block the state is proven at.
    pub header: BlockHeader,
    /// Its commit certificate.
    pub commit: Commit,
}

impl ParcelProof {
    /// Parses a parcel proof file, bounded in size.
    pub fn from_json(text: &str) -> Result<Self, StatusError> {
        use crate::text::VersionedJsonError as E;
        crate::text::parse_versioned_json(text, 4 * MAX_STATUS_LEN, PARCEL_FORMAT, PARCEL_VERSION).map_err(
            |e| match e {
                E::Malformed(m) => StatusError::Malformed(m),
                E::Unsupported { format, version } => StatusError::UnsupportedVersion { format, version },
            },
        )
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

/// Verifies a parcel proof, trusting only `genesis`; returns the height and the proven state.
pub fn verify_parcel(
    proof: &ParcelProof,
    genesis: &Genesis,
) -> Result<(u64, u64, Option<crate::land::ParcelState>), StatusError> {
    if proof.format != PARCEL_FORMAT || proof.version != PARCEL_VERSION {
        return Err(StatusError::UnsupportedVersion { format: proof.format.clone(), version: proof.version });
    }
    if proof.chain_id != genesis.chain_id || proof.genesis_hash != genesis.hash() {
        return Err(StatusError::WrongGenesis {
            found_chain: proof.chain_id.clone(),
            found_genesis: proof.genesis_hash,
        });
    }
    if let Some(st) = &proof.state
        && st.parcel.cadastral != proof.cadastral
    {
        return Err(StatusError::Malformed(format!("the state is of parcel {}", st.parcel.cadastral)));
    }
    let given = proof.state.as_ref().map(|s| smt::value_hash(&codec::encode_body(s)));
    let key = crate::registry::schema::ParcelOf::key(&proof.cadastral);
    check_value_at_block(genesis, &proof.header, &proof.commit, &key, given, &proof.state_proof)?;
    Ok((proof.header.height, proof.header.time_ms, proof.state.clone()))
}

/// Checks that a verified status is about `record` (its document, its anchoring entry and its leaf
/// in that entry's batch), and was taken after that entry was committed.
pub fn check_applies(v: &StatusVerified, record: &RecordId) -> Result<(), StatusError> {
    if v.record != *record {
        return Err(StatusError::OtherRecord { expected: *record, found: v.record });
    }
    if v.log_size <= record.entry {
        return Err(StatusError::Predates { log_size: v.log_size, index: record.entry });
    }
    Ok(())
}

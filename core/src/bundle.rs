//! Proof bundles: the `FILE.sabt-proof.json` a clerk receives for each document, and its offline
//! verification, trusting only the genesis.
//!
//! A bundle proves, in layers (docs/PROOFS.md gives the byte-exact rules):
//! 1. **Document → record**: the document's digest equals the record's SHA-256 or BLAKE3 digest.
//! 2. **Record → entry**: the record is the entry's body, or (for a batch) its canonical encoding is
//!    leaf `batch.index` of the batch tree whose root and size the entry's body names.
//! 3. **Entry → checkpoint**: the entry's canonical encoding is leaf `entry.index` of the log at the
//!    checkpoint's size and root (RFC 9162 inclusion proof).
//! 4. **Checkpoint → genesis**: the checkpoint's origin is the genesis chain id and validators holding
//!    more than 2/3 of the voting power of the genesis validator set signed it.
//!
//! [`verify`] checks all four and returns what was proven, or a [`VerifyError`] that says which step
//! failed and with what evidence.

use crate::checkpoint::{self, CheckpointError, VerifiedCheckpoint};
use crate::codec::{self, CodecError};
use crate::entry::{ArchiveRecord, EntryBody, LogEntry};
use crate::fingerprint::{DocDigest, Fingerprint};
use crate::genesis::Genesis;
use crate::hash::Hash32;
use crate::merkle::{self, Blake3, LogHasher, ProofError};
use crate::sign::PublicKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `format` field of every proof bundle.
pub const BUNDLE_FORMAT: &str = "sabt-proof";
/// The bundle version this software writes: hashes, paths and the entry in base64.
pub const BUNDLE_VERSION: u32 = 2;
/// Every bundle version this software reads. Version 1 (hex) is read forever: a proof file,
/// once issued, must keep verifying.
pub const BUNDLE_VERSIONS_READ: [u32; 2] = [1, 2];
/// The largest bundle file accepted.
pub const MAX_BUNDLE_LEN: usize = 1 << 20;
/// The most hashes in any path (a log of 2^64 entries needs 64).
pub const MAX_PATH_LEN: usize = 64;

/// Position of a record within a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchProof {
    /// The record's leaf index in the batch tree.
    pub index: u64,
    /// Number of records in the batch.
    pub size: u64,
    /// RFC 9162 inclusion path from the record's leaf to the batch root.
    pub path: Vec<Hash32>,
}

/// Position of the entry within the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryProof {
    /// The entry's index in the log.
    pub index: u64,
    /// The entry's canonical encoding, hex (what the leaf hash covers).
    #[serde(with = "crate::text::hex_bytes")]
    pub encoded: Vec<u8>,
    /// RFC 9162 inclusion path from the entry's leaf to the checkpoint root.
    pub path: Vec<Hash32>,
}

/// A proof bundle (`*.sabt-proof.json`). Its JSON is written and read by [`ProofBundle::to_json`]
/// and [`ProofBundle::from_json`], in the shape of its `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// One of [`BUNDLE_VERSIONS_READ`]; [`BUNDLE_VERSION`] for a new bundle.
    pub version: u32,
    /// The chain id.
    pub chain_id: String,
    /// Hash of the genesis the chain started from.
    pub genesis_hash: Hash32,
    /// The record proven, readable; must equal the record the bytes below encode.
    pub record: ArchiveRecord,
    /// Present when the record was anchored as part of a batch.
    pub batch: Option<BatchProof>,
    /// The log entry and its inclusion path.
    pub entry: EntryProof,
    /// The checkpoint as a C2SP signed note with the validators' cosignatures.
    pub checkpoint: String,
    /// Validator-set transitions from the genesis set to the checkpoint's signers. Always empty in
    /// versions 1 and 2: the genesis set signs every checkpoint until on-chain governance exists.
    pub validator_set_updates: Vec<serde_json::Value>,
}

/// The JSON of a bundle of one version: version 1 has its hashes and entry in hex, version 2 in
/// base64 (each path one string of its concatenated hashes).
mod wire {
    use super::{BatchProof, EntryProof, ProofBundle};
    use crate::entry::ArchiveRecord;
    use crate::hash::Hash32;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Bundle<B, E> {
        format: String,
        version: u32,
        chain_id: String,
        genesis_hash: Hash32,
        record: ArchiveRecord,
        batch: Option<B>,
        entry: E,
        checkpoint: String,
        validator_set_updates: Vec<serde_json::Value>,
    }

    /// Version 1: [`BatchProof`] and [`EntryProof`] as they serialise, hex.
    pub(super) type V1 = Bundle<BatchProof, EntryProof>;
    /// Version 2.
    pub(super) type V2 = Bundle<BatchV2, EntryV2>;

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct BatchV2 {
        index: u64,
        size: u64,
        #[serde(with = "crate::text::b64_path")]
        path: Vec<Hash32>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct EntryV2 {
        index: u64,
        #[serde(with = "crate::text::b64_bytes")]
        encoded: Vec<u8>,
        #[serde(with = "crate::text::b64_path")]
        path: Vec<Hash32>,
    }

    impl From<BatchProof> for BatchV2 {
        fn from(b: BatchProof) -> Self {
            BatchV2 { index: b.index, size: b.size, path: b.path }
        }
    }
    impl From<BatchV2> for BatchProof {
        fn from(b: BatchV2) -> Self {
            BatchProof { index: b.index, size: b.size, path: b.path }
        }
    }
    impl From<EntryProof> for EntryV2 {
        fn from(e: EntryProof) -> Self {
            EntryV2 { index: e.index, encoded: e.encoded, path: e.path }
        }
    }
    impl From<EntryV2> for EntryProof {
        fn from(e: EntryV2) -> Self {
            EntryProof { index: e.index, encoded: e.encoded, path: e.path }
        }
    }

    impl<B: From<BatchProof>, E: From<EntryProof>> From<ProofBundle> for Bundle<B, E> {
        fn from(b: ProofBundle) -> Self {
            Bundle {
                format: b.format,
                version: b.version,
                chain_id: b.chain_id,
                genesis_hash: b.genesis_hash,
                record: b.record,
                batch: b.batch.map(B::from),
                entry: E::from(b.entry),
                checkpoint: b.checkpoint,
                validator_set_updates: b.validator_set_updates,
            }
        }
    }

    impl<B: Into<BatchProof>, E: Into<EntryProof>> From<Bundle<B, E>> for ProofBundle {
        fn from(b: Bundle<B, E>) -> Self {
            ProofBundle {
                format: b.format,
                version: b.version,
                chain_id: b.chain_id,
                genesis_hash: b.genesis_hash,
                record: b.record,
                batch: b.batch.map(Into::into),
                entry: b.entry.into(),
                checkpoint: b.checkpoint,
                validator_set_updates: b.validator_set_updates,
            }
        }
    }
}

/// What a document is checked as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentClaim {
    /// The full fingerprint of a file in hand: both digests must match.
    File(Fingerprint),
    /// One digest given by the user.
    Digest(DocDigest),
}

/// What a valid bundle proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The record.
    pub record: ArchiveRecord,
    /// The log index of its entry.
    pub index: u64,
    /// Height of the block that committed it.
    pub height: u64,
    /// That block's consensus time, Unix milliseconds.
    pub time_ms: u64,
    /// The transaction's signer.
    pub signer: PublicKey,
    /// The transaction.
    pub tx: Hash32,
    /// The checkpoint, with who signed it.
    pub checkpoint: VerifiedCheckpoint,
    /// Position in the batch, if batched.
    pub batch_index: Option<(u64, u64)>,
}

impl Verified {
    /// The record proven: its document, anchoring entry and leaf in the entry's batch (0 for a
    /// record anchored singly). A status proof about it must name the same.
    pub fn record_id(&self) -> crate::registry::RecordId {
        crate::registry::RecordId {
            sha256: self.record.fingerprint.sha256,
            entry: self.index,
            leaf: self.batch_index.map_or(0, |(leaf, _)| leaf),
        }
    }
}

/// Why a bundle does not prove the document.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// The file is not a bundle.
    #[error("not a Sabt proof file: {0}")]
    Malformed(String),
    /// A bundle of another version.
    #[error(
        "unsupported proof format {format:?} version {version} (this software reads {BUNDLE_FORMAT:?} versions 1 and 2)"
    )]
    UnsupportedVersion {
        /// Format found.
        format: String,
        /// Version found.
        version: u32,
    },
    /// The bundle is for another chain.
    #[error("proof is for chain {found:?}, but the genesis is for chain {expected:?}")]
    UnknownChain {
        /// The genesis chain id.
        expected: String,
        /// The bundle's chain id.
        found: String,
    },
    /// The bundle names another genesis.
    #[error("proof names genesis {found}, but the genesis given hashes to {expected}: wrong genesis file")]
    WrongGenesis {
        /// Hash of the genesis given.
        expected: Hash32,
        /// Hash the bundle names.
        found: Hash32,
    },
    /// The document is not the one recorded.
    #[error(
        "document digest does not match the record: the document has {document}, the record has sha256:{sha256} blake3:{blake3}"
    )]
    DigestMismatch {
        /// The document's digest(s).
        document: String,
        /// The record's SHA-256.
        sha256: Hash32,
        /// The record's BLAKE3.
        blake3: Hash32,
    },
    /// The entry bytes do not decode.
    #[error("log entry does not decode: {0}")]
    BadEntry(CodecError),
    /// The readable record differs from the proven bytes.
    #[error("the readable record differs from the record the proof covers")]
    RecordMismatch,
    /// Batch and entry disagree about batching.
    #[error("{0}")]
    BatchShape(&'static str),
    /// The record is not in the batch.
    #[error("bad batch inclusion path: {0}")]
    BadBatchPath(ProofError),
    /// The entry is not in the log at the checkpoint.
    #[error("bad inclusion path: entry {index} is not in the log at checkpoint size {size}: {source}")]
    BadInclusionPath {
        /// Entry index.
        index: u64,
        /// Checkpoint size.
        size: u64,
        /// What the path check reported.
        source: ProofError,
    },
    /// The checkpoint failed (quorum not met, duplicate signer, bad signature, wrong origin, …).
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// Validator-set transitions are present but not supported in this version.
    #[error("validator-set updates are not part of proof version {BUNDLE_VERSION}; upgrade the verifier")]
    ValidatorSetUpdates,
}

impl VerifyError {
    /// A stable machine-readable code for the failure (used in `--json` output and by
    /// integrations; never changes meaning).
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "malformed_proof",
            VerifyError::UnsupportedVersion { .. } => "unsupported_version",
            VerifyError::UnknownChain { .. } => "unknown_chain",
            VerifyError::WrongGenesis { .. } => "wrong_genesis",
            VerifyError::DigestMismatch { .. } => "digest_mismatch",
            VerifyError::BadEntry(_) => "bad_entry",
            VerifyError::RecordMismatch => "record_mismatch",
            VerifyError::BatchShape(_) => "batch_shape",
            VerifyError::BadBatchPath(_) => "bad_batch_path",
            VerifyError::BadInclusionPath { .. } => "bad_inclusion_path",
            VerifyError::Checkpoint(CheckpointError::QuorumNotMet { .. }) => "quorum_not_met",
            VerifyError::Checkpoint(CheckpointError::DuplicateSigner { .. }) => "duplicate_signer",
            VerifyError::Checkpoint(CheckpointError::BadSignature { .. }) => "bad_signature",
            VerifyError::Checkpoint(CheckpointError::WrongOrigin { .. }) => "wrong_origin",
            VerifyError::Checkpoint(_) => "malformed_checkpoint",
            VerifyError::ValidatorSetUpdates => "validator_set_updates_unsupported",
        }
    }
}

impl ProofBundle {
    /// The record this bundle proves: its document, anchoring entry and leaf in the entry's batch
    /// (0 for a record anchored singly). Its status proofs name the same.
    pub fn record_id(&self) -> crate::registry::RecordId {
        crate::registry::RecordId {
            sha256: self.record.fingerprint.sha256,
            entry: self.entry.index,
            leaf: self.batch.as_ref().map_or(0, |b| b.index),
        }
    }

    /// The reference a withdrawal or supersession of this bundle's record gives.
    pub fn record_ref(&self) -> crate::entry::RecordRef {
        crate::entry::RecordRef { entry: self.entry.index, record: self.record.clone(), batch: self.batch.clone() }
    }

    /// Parses a bundle file, bounded in size.
    pub fn from_json(text: &str) -> Result<Self, VerifyError> {
        use crate::text::VersionedJsonError as E;
        let version = crate::text::versioned_json_head(text, MAX_BUNDLE_LEN, BUNDLE_FORMAT, &BUNDLE_VERSIONS_READ)
            .map_err(|e| match e {
                E::Malformed(m) => VerifyError::Malformed(m),
                E::Unsupported { format, version } => VerifyError::UnsupportedVersion { format, version },
            })?;
        let malformed = |e: serde_json::Error| VerifyError::Malformed(e.to_string());
        match version {
            1 => serde_json::from_str::<wire::V1>(text).map(ProofBundle::from).map_err(malformed),
            _ => serde_json::from_str::<wire::V2>(text).map(ProofBundle::from).map_err(malformed),
        }
    }

    /// Pretty JSON with a final newline, in the shape of the bundle's version (a version this
    /// software does not read is written as the current one's shape, and refused on reading).
    pub fn to_json(&self) -> String {
        let text = match self.version {
            1 => serde_json::to_string_pretty(&wire::V1::from(self.clone())),
            _ => serde_json::to_string_pretty(&wire::V2::from(self.clone())),
        };
        text.unwrap_or_default() + "\n"
    }
}

/// Verifies `bundle` for the document `claim`, trusting only `genesis`.
pub fn verify(bundle: &ProofBundle, genesis: &Genesis, claim: &DocumentClaim) -> Result<Verified, VerifyError> {
    if bundle.format != BUNDLE_FORMAT || !BUNDLE_VERSIONS_READ.contains(&bundle.version) {
        return Err(VerifyError::UnsupportedVersion { format: bundle.format.clone(), version: bundle.version });
    }
    if bundle.chain_id != genesis.chain_id {
        return Err(VerifyError::UnknownChain { expected: genesis.chain_id.clone(), found: bundle.chain_id.clone() });
    }
    let genesis_hash = genesis.hash();
    if bundle.genesis_hash != genesis_hash {
        return Err(VerifyError::WrongGenesis { expected: genesis_hash, found: bundle.genesis_hash });
    }
    if !bundle.validator_set_updates.is_empty() {
        return Err(VerifyError::ValidatorSetUpdates);
    }

    // 1. Document → record.
    let fp = &bundle.record.fingerprint;
    let matches = match claim {
        DocumentClaim::File(f) => f == fp,
        DocumentClaim::Digest(d) => fp.matches(d),
    };
    if !matches {
        let document = match claim {
            DocumentClaim::File(f) => format!("sha256:{} blake3:{}", f.sha256, f.blake3),
            DocumentClaim::Digest(d) => d.to_string(),
        };
        return Err(VerifyError::DigestMismatch { document, sha256: fp.sha256, blake3: fp.blake3 });
    }

    // 2. Record → entry.
    let entry = LogEntry::decode_any_version(&bundle.entry.encoded).map_err(VerifyError::BadEntry)?;
    let batch_index = match (&entry.body, &bundle.batch) {
        (EntryBody::Record(r) | EntryBody::Supersede { record: r, .. }, None) => {
            if *r != bundle.record {
                return Err(VerifyError::RecordMismatch);
            }
            None
        }
        (EntryBody::Batch(b), Some(p)) => {
            if p.size != b.size {
                return Err(VerifyError::BatchShape("batch size in the proof differs from the anchored batch"));
            }
            if bundle.record.kind != b.kind {
                return Err(VerifyError::BatchShape("the record's kind differs from the kind the batch anchors"));
            }
            check_path_len(&p.path)?;
            let leaf = Blake3::hash_leaf(&codec::encode(&bundle.record));
            merkle::verify_inclusion::<Blake3>(&leaf, p.index, p.size, &p.path, &b.root)
                .map_err(VerifyError::BadBatchPath)?;
            Some((p.index, p.size))
        }
        (EntryBody::Record(_) | EntryBody::Supersede { .. }, Some(_)) => {
            return Err(VerifyError::BatchShape("proof has a batch path but the entry is a single record"));
        }
        (EntryBody::Batch(_), None) => {
            return Err(VerifyError::BatchShape("entry anchors a batch but the proof has no batch path"));
        }
        (EntryBody::Grant(_) | EntryBody::Revoke { .. }, _) => {
            return Err(VerifyError::BatchShape("the entry is a key authorisation, not a record"));
        }
        (EntryBody::Withdraw(_), _) => {
            return Err(VerifyError::BatchShape("the entry withdraws a record; it anchors none"));
        }
        (EntryBody::Land(_), _) => {
            return Err(VerifyError::BatchShape("the entry is a land operation, not an archive record"));
        }
    };

    // 4. Checkpoint → genesis (before 3, so the root used below is one a quorum vouches for).
    let set = genesis.validator_set().map_err(|e| VerifyError::Malformed(format!("genesis: {e}")))?;
    let cp = checkpoint::verify_cosigned(&bundle.checkpoint, &set, &genesis.chain_id)?;

    // 3. Entry → checkpoint.
    check_path_len(&bundle.entry.path)?;
    let leaf = Blake3::hash_leaf(&bundle.entry.encoded);
    merkle::verify_inclusion::<Blake3>(
        &leaf,
        bundle.entry.index,
        cp.checkpoint.size,
        &bundle.entry.path,
        &cp.checkpoint.root,
    )
    .map_err(|source| VerifyError::BadInclusionPath {
        index: bundle.entry.index,
        size: cp.checkpoint.size,
        source,
    })?;

    Ok(Verified {
        record: bundle.record.clone(),
        index: bundle.entry.index,
        height: entry.height,
        time_ms: entry.time_ms,
        signer: entry.signer,
        tx: entry.tx,
        checkpoint: cp,
        batch_index,
    })
}

fn check_path_len(path: &[Hash32]) -> Result<(), VerifyError> {
    if path.len() > MAX_PATH_LEN {
        return Err(VerifyError::Malformed(format!("path of {} hashes exceeds {MAX_PATH_LEN}", path.len())));
    }
    Ok(())
}

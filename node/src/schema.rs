//! The API's request and answer types, with their OpenAPI schemas. Hashes, keys and encodings are
//! lowercase hex strings; sizes, heights and indices are integers.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// An error: a stable machine code and a human message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine code, e.g. `not_anchored`, `mempool_full`, `busy`, `unauthorised`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: String,
    /// Committed height (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
}

/// One validator.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidatorView {
    /// Validator (agency) name.
    pub name: String,
    /// Consensus key, hex.
    pub key: String,
    /// Voting power.
    pub power: u64,
}

/// The node's view of the chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// This node's agency name.
    pub node: String,
    /// Chain id.
    pub chain_id: String,
    /// Genesis hash, hex.
    pub genesis_hash: String,
    /// Committed height.
    pub height: u64,
    /// Hash of the block at that height, hex.
    pub block_hash: String,
    /// Its consensus time, Unix ms.
    pub time_ms: u64,
    /// Registry log size.
    pub log_size: u64,
    /// Registry log root, hex.
    pub log_root: String,
    /// State map root, hex.
    pub state_root: String,
    /// Validator set hash, hex.
    pub validator_set_hash: String,
    /// The validators.
    pub validators: Vec<ValidatorView>,
    /// Transactions waiting.
    pub mempool_size: usize,
    /// Whether consensus runs.
    pub ready: bool,
}

/// The latest checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// Height of the block whose checkpoint this is.
    pub height: u64,
    /// Log size.
    pub size: u64,
    /// Log root, hex.
    pub root: String,
    /// The C2SP signed note with the validators' cosignatures.
    pub note: String,
}

/// Equivocation evidence a node kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceList {
    /// Oldest height first.
    pub evidence: Vec<EvidenceView>,
}

/// One piece of equivocation evidence: two conflicting messages signed by one validator.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceView {
    /// Height of the messages.
    pub height: u64,
    /// Round of the messages.
    pub round: u32,
    /// What was signed twice: `prevote`, `precommit` or `proposal`.
    pub kind: String,
    /// The validator's name in the genesis.
    pub validator: String,
    /// Its consensus key, hex.
    pub validator_key: String,
    /// `encode(Equivocation)`, hex (docs/PROOFS.md): verifiable offline with the genesis.
    pub evidence: String,
}

/// A block's canonical encodings.
#[derive(Debug, Serialize, ToSchema)]
pub struct BlockRaw {
    /// Height.
    pub height: u64,
    /// Block hash, hex.
    pub hash: String,
    /// The block's canonical encoding, hex.
    pub block: String,
    /// Its commit certificate's canonical encoding, hex.
    pub commit: String,
}

/// A transaction to submit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    /// The signed transaction's canonical encoding, hex (docs/PROOFS.md).
    pub tx: String,
}

/// Transactions to submit together.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatchBody {
    /// Signed transactions' canonical encodings, hex (at most 1,000).
    pub txs: Vec<String>,
}

/// A transaction's state, or (in a batch answer) why it was refused.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct TxState {
    /// Transaction id, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `pending` or `committed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Height of the block that committed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Its position in that block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// Refusal code (batch answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Refusal message (batch answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One result per submitted transaction, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResults {
    /// The results.
    pub results: Vec<TxState>,
}

/// A clerk key's grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantView {
    /// The agency that authorised it.
    pub agency: String,
    /// Record kinds it may anchor.
    pub kinds: Vec<String>,
    /// Consensus time from which it no longer acts.
    pub expires_ms: Option<u64>,
    /// Height of the authorising block.
    pub granted_height: u64,
    /// Height of the revoking block.
    pub revoked_height: Option<u64>,
}

/// A signing key's account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    /// The key, hex.
    pub key: String,
    /// Next nonce, after its transactions waiting here.
    pub next_nonce: u64,
    /// Next nonce by the committed state.
    pub committed_nonce: u64,
    /// Its clerk grant, if any.
    pub grant: Option<GrantView>,
    /// The agency it administers, if it is an admin key.
    pub admin_of: Option<String>,
}

/// Where a document is anchored, and whether it is current.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordView {
    /// The digest asked for.
    pub digest: String,
    /// The record's SHA-256, hex.
    pub sha256: String,
    /// Log index of the entry that anchored it.
    pub index: u64,
    /// Height of that entry's block.
    pub height: u64,
    /// The key that signed that entry, hex.
    pub signer: String,
    /// The agency that key acts for: the record's owner, who alone may change its status.
    pub agency: String,
    /// `anchored` (current), `withdrawn` or `superseded`.
    pub status: String,
    /// The withdrawal or supersession, if any (docs/PROOFS.md §6a, RecordStatus).
    #[schema(value_type = Option<Object>)]
    pub change: Option<sabt_core::registry::RecordStatus>,
}

/// Where a batch root is anchored.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    /// The batch root, hex.
    pub root: String,
    /// Log index of its entry.
    pub index: u64,
    /// Height of that entry's block.
    pub height: u64,
    /// The key that signed that entry, hex.
    pub signer: String,
    /// The agency that key acts for: the owner of the batch's records.
    pub agency: String,
    /// Always `anchored`.
    pub status: String,
}

/// A log entry with its inclusion path to the latest cosigned checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryProofView {
    /// Log index.
    pub index: u64,
    /// The entry's canonical encoding, hex.
    pub encoded: String,
    /// Log size of the checkpoint.
    pub size: u64,
    /// RFC 9162 inclusion path, hex hashes from the leaf up.
    pub path: Vec<String>,
    /// Height of the checkpoint's block.
    pub height: u64,
    /// The checkpoint, a C2SP signed note.
    pub checkpoint: String,
}

/// Which anchoring of a document a status is asked for.
/// The query of `GET /v1/evidence`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EvidenceQuery {
    /// The lowest height to list evidence from (default 0).
    pub from: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordAt {
    /// Log index of the entry that anchored the record (its proof file's `entry.index`); default:
    /// the document's single anchoring.
    pub entry: Option<u64>,
    /// The record's leaf in that entry's batch (its proof file's `batch.index`); default 0.
    pub leaf: Option<u64>,
}

/// Two committed log sizes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Sizes {
    /// The older size.
    pub old: u64,
    /// The newer size.
    pub new: u64,
}

/// A block height to prove at (default: the latest).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AtHeight {
    /// Block height whose cosigned checkpoint the proof is for.
    pub height: Option<u64>,
}

/// A WGS84 box, `minlon,minlat,maxlon,maxlat`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BoxQuery {
    /// `minlon,minlat,maxlon,maxlat` in degrees.
    pub bbox: String,
    /// The cadastral number after which the page starts: the previous page's `next`.
    pub after: Option<String>,
    /// Most parcels in the page (1 to 5,000; default 5,000).
    pub limit: Option<usize>,
}

/// A page of a list ordered by log index.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// The log index after which the page starts: the previous page's `next`.
    pub after: Option<u64>,
    /// Most items in the page (1 to 1,000; default 1,000).
    pub limit: Option<usize>,
}

/// A WGS84 position.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LonLat {
    /// Longitude, degrees east.
    pub lon: f64,
    /// Latitude, degrees north.
    pub lat: f64,
}

/// An RFC 9162 consistency proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyView {
    /// Older size.
    pub old: u64,
    /// Newer size.
    pub new: u64,
    /// The proof's hashes, hex.
    pub proof: Vec<String>,
}

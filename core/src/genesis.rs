//! The genesis document: the chain id, the founding agencies and their keys, the first validator
//! set, and the chain's parameters. Its hash names the chain; an auditor trusts nothing else.
//!
//! The document is exchanged as JSON (`genesis.json`); its identity is
//! `BLAKE3-derive_key("sabt/genesis/v1", canonical encoding)` ([`Genesis::hash`]), so reformatting the
//! JSON never changes the chain, while any change of content does.

use crate::codec::{self, Canonical};
use crate::hash::{self, Hash32};
use crate::sign::PublicKey;
use crate::validator::{Validator, ValidatorSet, ValidatorSetError, check_name};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// The genesis format this software reads.
pub const GENESIS_FORMAT: u32 = 1;

/// Roles an agency can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgencyRole {
    /// Keeps archive records (fingerprints and metadata).
    Archive,
    /// Keeps the land and property registry.
    Land,
    /// Notary offices.
    Notary,
    /// Civil-status offices.
    CivilStatus,
    /// Audits without writing.
    Audit,
}

/// An agency's validator node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorInfo {
    /// Consensus and checkpoint-signing key.
    pub consensus_key: PublicKey,
    /// libp2p peer id of the node's network key (base58 text).
    pub peer_id: String,
    /// Addresses the node listens on (multiaddr text).
    pub addresses: Vec<String>,
    /// Voting power.
    pub power: u64,
}

/// A founding agency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    /// Short stable name (also its validator's note key name), e.g. `land-committee`.
    pub name: String,
    /// What the agency registers.
    pub roles: Vec<AgencyRole>,
    /// The key that authorises the agency's clerks on the ledger.
    pub admin_key: PublicKey,
    /// The agency's validator, if it runs one.
    pub validator: Option<ValidatorInfo>,
}

/// Chain parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Target interval between blocks, in milliseconds.
    pub block_interval_ms: u64,
    /// Largest block, in bytes.
    pub max_block_bytes: u64,
    /// Largest transaction, in bytes.
    pub max_tx_bytes: u64,
    /// EPSG code of the projected CRS that land geometry is stored in.
    pub land_crs_epsg: u32,
    /// Overlap tolerated between live parcels, in square millimetres.
    pub overlap_tolerance_mm2: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            block_interval_ms: 1000,
            max_block_bytes: 4 << 20,
            max_tx_bytes: 256 << 10,
            land_crs_epsg: 32642,
            overlap_tolerance_mm2: 10_000,
        }
    }
}

/// The genesis document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Format version ([`GENESIS_FORMAT`]).
    pub format: u32,
    /// The chain id: also the origin line of every checkpoint.
    pub chain_id: String,
    /// Creation time, Unix milliseconds (UTC). The first block's time is not earlier.
    pub genesis_time_ms: u64,
    /// The founding agencies.
    pub agencies: Vec<Agency>,
    /// Chain parameters.
    pub params: Params,
}

impl Canonical for Genesis {
    const NAME: &'static str = "genesis";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 1 << 20;
}

/// Why a genesis document is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GenesisError {
    /// Not JSON of the right shape.
    #[error("genesis is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// A format this software does not read.
    #[error("genesis format {0} is not supported (this software reads format {GENESIS_FORMAT})")]
    UnsupportedFormat(u32),
    /// A bad chain id.
    #[error("chain id {id:?} {reason}")]
    BadChainId {
        /// The chain id.
        id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A problem with one agency.
    #[error("agency {name:?}: {reason}")]
    BadAgency {
        /// The agency.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The validator set derived from the agencies is not acceptable.
    #[error("validator set: {0}")]
    ValidatorSet(#[from] ValidatorSetError),
    /// A parameter out of range.
    #[error("parameter {name}: {reason}")]
    BadParam {
        /// Parameter.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The canonical encoding is too large.
    #[error("genesis encoding: {0}")]
    Codec(#[from] codec::CodecError),
}

impl Genesis {
    /// Parses and validates `genesis.json`.
    pub fn from_json(text: &str) -> Result<Self, GenesisError> {
        if text.len() > Self::MAX_LEN * 4 {
            return Err(GenesisError::Json(format!("{} bytes is too large for a genesis document", text.len())));
        }
        let g: Genesis = serde_json::from_str(text).map_err(|e| GenesisError::Json(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // Serializing derived types with string keys into a String cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Checks every rule a genesis must satisfy.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.format != GENESIS_FORMAT {
            return Err(GenesisError::UnsupportedFormat(self.format));
        }
        check_name(&self.chain_id).map_err(|reason| GenesisError::BadChainId { id: self.chain_id.clone(), reason })?;
        let mut names = BTreeSet::new();
        let mut admin_keys = BTreeSet::new();
        for a in &self.agencies {
            let bad = |reason: &str| GenesisError::BadAgency { name: a.name.clone(), reason: reason.to_string() };
            check_name(&a.name).map_err(|r| bad(&format!("name {r}")))?;
            if !names.insert(a.name.as_str()) {
                return Err(bad("appears twice"));
            }
            if !admin_keys.insert(a.admin_key) {
                return Err(bad("admin key is shared with another agency"));
            }
            let mut roles = BTreeSet::new();
            if !a.roles.iter().all(|r| roles.insert(*r)) {
                return Err(bad("a role is listed twice"));
            }
            if let Some(v) = &a.validator {
                if v.peer_id.is_empty()
                    || v.peer_id.len() > 128
                    || !v.peer_id.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(bad("validator peer id must be 1 to 128 base58 characters"));
                }
                if v.addresses.is_empty() || v.addresses.len() > 16 {
                    return Err(bad("validator needs 1 to 16 addresses"));
                }
                if v.addresses.iter().any(|s| s.is_empty() || s.len() > 256 || s.chars().any(char::is_whitespace)) {
                    return Err(bad("validator addresses must be multiaddrs without spaces"));
                }
            }
        }
        self.validator_set()?;
        let p = &self.params;
        if !(10..=600_000).contains(&p.block_interval_ms) {
            return Err(GenesisError::BadParam { name: "block_interval_ms", reason: "must be 10 to 600000" });
        }
        if !(1024..=16 << 20).contains(&p.max_block_bytes) {
            return Err(GenesisError::BadParam { name: "max_block_bytes", reason: "must be 1 KiB to 16 MiB" });
        }
        if p.max_tx_bytes < 256 || p.max_tx_bytes > p.max_block_bytes {
            return Err(GenesisError::BadParam {
                name: "max_tx_bytes",
                reason: "must be 256 bytes to max_block_bytes",
            });
        }
        codec::encode_checked(self)?;
        Ok(())
    }

    /// The first validator set: every agency that runs a validator, in document order.
    pub fn validator_set(&self) -> Result<ValidatorSet, ValidatorSetError> {
        ValidatorSet::new(
            self.agencies
                .iter()
                .filter_map(|a| {
                    a.validator.as_ref().map(|v| Validator {
                        name: a.name.clone(),
                        key: v.consensus_key,
                        power: v.power,
                    })
                })
                .collect(),
        )
    }

    /// The chain's identity.
    pub fn hash(&self) -> Hash32 {
        hash::hash(hash::GENESIS, &codec::encode(self))
    }
}

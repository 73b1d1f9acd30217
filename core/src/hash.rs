//! 32-byte digests and the BLAKE3 domains Sabt hashes in.
//!
//! Every hash the ledger computes is BLAKE3 (DESIGN.md decision 2). Each purpose has its own
//! constant context, used as a BLAKE3 `derive_key` context, so a digest made for one purpose can
//! never be taken for another. The Merkle log is the one exception: it follows RFC 9162 exactly
//! (plain BLAKE3 with the `0x00` leaf and `0x01` node prefixes, see [`crate::merkle`]), so that
//! independent RFC 9162 verifiers work unchanged. Changing a context is a breaking change.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A domain: one purpose for which Sabt hashes bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Domain(&'static str);

impl Domain {
    /// Devnet admin keys, derived from validator seeds (see `devnet`).
    pub(crate) const fn devnet_admin() -> Domain {
        Domain("sabt/devnet-admin/v1")
    }

    /// The context string, as fed to BLAKE3's `derive_key` mode.
    pub const fn context(self) -> &'static str {
        self.0
    }
}

/// Genesis documents: the chain's identity.
pub const GENESIS: Domain = Domain("sabt/genesis/v1");
/// Transaction identifiers.
pub const TX: Domain = Domain("sabt/tx/v1");
/// Block headers.
pub const BLOCK: Domain = Domain("sabt/block/v1");
/// Validator sets, as named in block headers.
pub const VALIDATOR_SET: Domain = Domain("sabt/validator-set/v1");

/// Keys of the state map, made from a tag and the application key.
pub const STATE_KEY: Domain = Domain("sabt/state-key/v1");
/// Leaves of the state map.
pub const STATE_LEAF: Domain = Domain("sabt/state-leaf/v1");
/// Values stored in the state map.
pub const STATE_VALUE: Domain = Domain("sabt/state-value/v1");
/// Internal nodes of the state map.
pub const STATE_NODE: Domain = Domain("sabt/state-node/v1");
/// Salted hashes standing for parties (holders of land rights).
pub const PARTY: Domain = Domain("sabt/party/v1");
/// Lines of a node's access log, chained.
pub const ACCESS_LOG: Domain = Domain("sabt/access-log/v1");
#[cfg(test)]
pub(crate) const TEST: Domain = Domain("sabt/test/v1");

/// A 32-byte digest. Hex in JSON, raw bytes in the canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// The all-zero digest (used as "no previous block").
    pub const ZERO: Hash32 = Hash32([0; 32]);

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        crate::text::parse_hex_fixed::<32>(text).map(Hash32)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl AsRef<[u8]> for Hash32 {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::text::serialize_fixed(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::text::deserialize_fixed(d).map(Hash32)
    }
}

/// BLAKE3 of `bytes` in `domain`.
pub fn hash(domain: Domain, bytes: &[u8]) -> Hash32 {
    let mut h = blake3::Hasher::new_derive_key(domain.context());
    h.update(bytes);
    Hash32(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate() {
        assert_ne!(hash(TX, b"x"), hash(BLOCK, b"x"));
        assert_ne!(hash(TX, b"x"), Hash32(*blake3::hash(b"x").as_bytes()));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = hash(GENESIS, b"abc");
        assert_eq!(Hash32::from_hex(&h.to_hex()).unwrap(), h);
        assert!(Hash32::from_hex("00").unwrap_err().contains("expected 64 hex characters"));
        assert!(Hash32::from_hex(&"zz".repeat(32)).unwrap_err().contains("invalid hex"));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{}\"", h.to_hex()));
        assert_eq!(serde_json::from_str::<Hash32>(&json).unwrap(), h);
        assert_eq!(postcard::to_stdvec(&h).unwrap(), h.0.to_vec());
    }
}

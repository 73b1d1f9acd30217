//! 32-byte digests and the BLAKE3 domains Sabt hashes in.
//!
//! Every hash the ledger computes is BLAKE3 (DESIGN.md decision 2). Each purpose has its own
//! constant context, used as a BLAKE3 `derive_key` context, so a digest made for one purpose can
//! never be taken for another. The Merkle log is the one exception: it follows RFC 9162 exactly
//! (plain BLAKE3 with the `0x00` leaf and `0x01` node prefixes, see [`crate::merkle`]), so that
//! independent RFC 9162 verifiers work unchanged. Changing a context is a breaking change.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::OnceLock;

/// A domain: one purpose for which Sabt hashes bytes.
///
/// It carries its context string and a slot for the BLAKE3 hasher keyed by that context: BLAKE3
/// derives the context key afresh on every `new_derive_key`, so each domain derives it once and
/// every hash clones the keyed hasher. The output is byte-identical (the golden vectors check).
#[derive(Clone, Copy)]
pub struct Domain {
    context: &'static str,
    keyed: &'static OnceLock<blake3::Hasher>,
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({:?})", self.context)
    }
}

impl PartialEq for Domain {
    fn eq(&self, other: &Self) -> bool {
        self.context == other.context
    }
}

impl Eq for Domain {}

macro_rules! domains {
    ($($(#[$doc:meta])* $vis:vis $name:ident = $ctx:literal;)*) => {
        $(
            $(#[$doc])*
            $vis const $name: Domain = {
                static KEYED: OnceLock<blake3::Hasher> = OnceLock::new();
                Domain { context: $ctx, keyed: &KEYED }
            };
        )*
    };
}

impl Domain {
    /// Devnet admin keys, derived from validator seeds (see `devnet`).
    pub(crate) const fn devnet_admin() -> Domain {
        DEVNET_ADMIN
    }

    /// The context string, as fed to BLAKE3's `derive_key` mode.
    pub const fn context(self) -> &'static str {
        self.context
    }

    /// A BLAKE3 hasher in `derive_key` mode for this context, ready for the key material.
    fn hasher(self) -> blake3::Hasher {
        self.keyed.get_or_init(|| blake3::Hasher::new_derive_key(self.context)).clone()
    }
}

domains! {
    DEVNET_ADMIN = "sabt/devnet-admin/v1";
    /// Genesis documents: the chain's identity.
    pub GENESIS = "sabt/genesis/v1";
    /// Transaction identifiers.
    pub TX = "sabt/tx/v1";
    /// Block headers.
    pub BLOCK = "sabt/block/v1";
    /// Validator sets, as named in block headers.
    pub VALIDATOR_SET = "sabt/validator-set/v1";
    /// Keys of the state map, made from a tag and the application key.
    pub STATE_KEY = "sabt/state-key/v1";
    /// Leaves of the state map.
    pub STATE_LEAF = "sabt/state-leaf/v1";
    /// Values stored in the state map.
    pub STATE_VALUE = "sabt/state-value/v1";
    /// Internal nodes of the state map.
    pub STATE_NODE = "sabt/state-node/v1";
    /// Salted hashes standing for parties (holders of land rights).
    pub PARTY = "sabt/party/v1";
    /// Lines of a node's access log, chained.
    pub ACCESS_LOG = "sabt/access-log/v1";
}

#[cfg(test)]
domains! {
    pub(crate) TEST = "sabt/test/v1";
}

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
    let mut h = domain.hasher();
    h.update(bytes);
    Hash32(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate() {
        // The cached keyed hasher gives exactly BLAKE3's derive_key, first use and later ones.
        for _ in 0..2 {
            assert_eq!(hash(TX, b"x").0, blake3::derive_key("sabt/tx/v1", b"x"));
            assert_eq!(hash(TEST, b"").0, blake3::derive_key("sabt/test/v1", b""));
        }
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

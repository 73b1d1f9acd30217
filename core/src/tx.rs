//! Transactions: what a signer asks the registry to do.
//!
//! A transaction names the chain it is for and carries a per-signer nonce, so it can be replayed
//! neither on another chain nor twice on this one. It is signed with Ed25519 in the `sabt/tx/v1`
//! context over its canonical encoding ([`Transaction::signing_bytes`]); its id is
//! `BLAKE3-derive_key("sabt/tx/v1", encode(SignedTx))`.
//!
//! Whether a transaction is acceptable is decided by [`crate::registry`], from the state alone: the
//! same rule at mempool admission, when a proposer builds a block and when every node re-executes it.

use crate::codec::{self, Canonical};
use crate::entry::{ArchiveRecord, BatchAnchor, RecordKind, RecordRef};
use crate::hash::{self, Hash32};
use crate::sign::{self, PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // Bodies are handled one at a time; boxing buys nothing.
pub enum TxBody {
    /// Anchor one archive record.
    Anchor(ArchiveRecord),
    /// Anchor the root of a batch of archive records built by the clerk.
    AnchorBatch(BatchAnchor),
    /// An agency admin authorises a clerk key for some record kinds (signed by the admin key).
    AuthorizeKey {
        /// The clerk's key.
        key: PublicKey,
        /// Record kinds it may anchor.
        kinds: Vec<RecordKind>,
        /// Consensus time (Unix ms) from which it no longer acts, if any.
        expires_ms: Option<u64>,
    },
    /// An agency admin revokes one of its clerk keys, from the next block on.
    RevokeKey {
        /// The clerk's key.
        key: PublicKey,
    },
    /// Withdraw an anchored record: it stays in the log, and the state marks it withdrawn.
    Withdraw {
        /// The record.
        target: RecordRef,
        /// Why (no personal data).
        reason: String,
    },
    /// Supersede an anchored record with a new one, anchored by the same transaction.
    Supersede {
        /// The record superseded.
        target: RecordRef,
        /// The record that replaces it.
        record: ArchiveRecord,
        /// Why (no personal data).
        reason: String,
    },
    /// An operation on the land registry (signed by a key of an agency with the land role).
    Land(crate::land::LandOp),
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// The chain this transaction is for (the genesis `chain_id`).
    pub chain_id: String,
    /// The signing key.
    pub signer: PublicKey,
    /// The signer's nonce: 0 for its first transaction, then one more each time.
    pub nonce: u64,
    /// What to do.
    pub body: TxBody,
}

impl Canonical for Transaction {
    const NAME: &'static str = "transaction";
    const VERSION: u8 = 2;
    const MAX_LEN: usize = 256 * 1024;
}

impl Transaction {
    /// The bytes that are signed (in the `sabt/tx/v1` context).
    pub fn signing_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Signs the transaction with `key`, which must be the key named as `signer`.
    pub fn sign(self, key: &SecretKey) -> SignedTx {
        let signature = key.sign(sign::TX, &self.signing_bytes());
        SignedTx { tx: self, signature }
    }
}

/// A signed transaction, as submitted, gossiped and stored in blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTx {
    /// The transaction.
    pub tx: Transaction,
    /// Ed25519 signature by `tx.signer` over `tx.signing_bytes()` in the `sabt/tx/v1` context.
    pub signature: Signature,
}

impl Canonical for SignedTx {
    const NAME: &'static str = "signed transaction";
    const VERSION: u8 = 2;
    const MAX_LEN: usize = 256 * 1024 + 128;
}

impl SignedTx {
    /// The transaction id.
    pub fn id(&self) -> Hash32 {
        hash::hash(hash::TX, &codec::encode(self))
    }

    /// Checks the signature (strict Ed25519).
    pub fn verify_signature(&self) -> Result<(), sign::SignError> {
        self.tx.signer.verify(sign::TX, &self.tx.signing_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{BatchAnchor, RecordKind};

    fn tx(nonce: u64) -> Transaction {
        Transaction {
            chain_id: "sabt-test".into(),
            signer: SecretKey::from_seed(&[7; 32]).public(),
            nonce,
            body: TxBody::AnchorBatch(BatchAnchor { root: Hash32([1; 32]), size: 3, kind: RecordKind::Notary }),
        }
    }

    #[test]
    fn signature_binds_every_field() {
        let key = SecretKey::from_seed(&[7; 32]);
        let signed = tx(0).sign(&key);
        signed.verify_signature().unwrap();
        let mut other = signed.clone();
        other.tx.nonce = 1;
        assert!(other.verify_signature().is_err());
        let mut other = signed.clone();
        other.tx.chain_id = "sabt-other".into();
        assert!(other.verify_signature().is_err());
        let decoded: SignedTx = codec::decode(&codec::encode(&signed)).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(decoded.id(), signed.id());
        assert_ne!(tx(1).sign(&key).id(), signed.id());
    }
}

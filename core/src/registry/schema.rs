//! The state layout: one typed table of every value the registry keeps in the state map.
//!
//! Each slot is a tag, the bytes that name one value of it, the value's type and the largest
//! encoding a reader accepts. A value lives under `BLAKE3("sabt/state-key/v1", tag ‖ key bytes)`
//! ([`state_key`]); its bytes are the value's canonical body ([`crate::codec::encode_body`], no
//! version byte: the layout is versioned as a whole, [`LAYOUT_VERSION`]).
//!
//! | tag | slot | key bytes | value | limit |
//! |---|---|---|---|---|
//! | 1 | [`NonceOf`] | signer key (32) | next nonce, `u64` | 16 B |
//! | 2 | [`SingleBySha256`] | SHA-256 of a document (32) | [`RecordLocation`] of its single anchoring | 64 B |
//! | 3 | [`SingleByBlake3`] | BLAKE3 of a document (32) | [`RecordLocation`] | 64 B |
//! | 4 | [`BatchByRoot`] | batch root (32) | [`RecordLocation`] of the batch entry | 64 B |
//! | 5 | [`GrantOf`] | clerk key (32) | [`GrantState`] | 4 KiB |
//! | 6 | [`StatusOf`] | SHA-256 (32) ‖ anchoring entry (8, BE) ‖ leaf in its batch (8, BE; 0 for a single record) | [`RecordStatus`] | 4 KiB |
//! | 7 | [`ParcelOf`] | cadastral number (UTF-8) | [`ParcelState`] | 512 KiB |
//! | 8 | [`CellMembers`] | grid cell `x`, `y` (8 + 8, BE, signed) | sorted cadastral numbers | 4 MiB |
//! | 9 | [`StructureOf`] | structure number (UTF-8) | [`StructureState`] | 512 KiB |
//!
//! Readers outside the rules (the node's API, proofs) decode through [`Slot::decode`], so a limit
//! is written once. A stored value that does not decode under its slot is a damaged store, never a
//! refusal of the transaction that read it.

use super::Ledger;
use super::authority::GrantState;
use super::records::{RecordId, RecordLocation, RecordStatus};
use crate::codec;
use crate::hash::{self, Hash32};
use crate::land::{ParcelState, StructureState};
use crate::merkle::StoreError;
use crate::sign::PublicKey;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version of the state layout this table describes. Version 2 keys a record's status by the
/// anchoring that made the record (version 1 keyed it by the document's digest alone).
pub const LAYOUT_VERSION: u32 = 2;

/// The state-map key for `tag` and `bytes`.
pub fn state_key(tag: u8, bytes: &[u8]) -> Hash32 {
    let mut buf = Vec::with_capacity(1 + bytes.len());
    buf.push(tag);
    buf.extend_from_slice(bytes);
    hash::hash(hash::STATE_KEY, &buf)
}

/// One kind of value in the state.
pub trait Slot {
    /// The tag that separates this slot's keys from every other slot's.
    const TAG: u8;
    /// Human name, for messages.
    const NAME: &'static str;
    /// The largest encoding a reader accepts.
    const MAX_LEN: usize;
    /// What names one value.
    type Key: ?Sized;
    /// The value.
    type Value: Serialize + DeserializeOwned;

    /// The bytes that name `key` (hashed with the tag into the state key).
    fn key_bytes(key: &Self::Key) -> Vec<u8>;

    /// The state-map key of `key`.
    fn key(key: &Self::Key) -> Hash32 {
        state_key(Self::TAG, &Self::key_bytes(key))
    }

    /// Decodes a stored value; one that does not decode is a damaged store.
    fn decode(bytes: &[u8]) -> Result<Self::Value, StoreError> {
        codec::decode_body(Self::NAME, bytes, Self::MAX_LEN)
            .map_err(|e| StoreError::Damaged(format!("state value ({}): {e}", Self::NAME)))
    }

    /// The stored bytes of `value`.
    fn encode(value: &Self::Value) -> Vec<u8> {
        codec::encode_body(value)
    }
}

/// Reads the value of `key` in slot `S`.
pub fn get<S: Slot, L: Ledger + ?Sized>(ledger: &L, key: &S::Key) -> Result<Option<S::Value>, StoreError> {
    match ledger.state_get(&S::key(key))? {
        None => Ok(None),
        Some(bytes) => S::decode(&bytes).map(Some),
    }
}

/// One value to set: the state-map key and the value's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The state-map key.
    pub key: Hash32,
    /// The value's canonical body.
    pub value: Vec<u8>,
}

impl Write {
    /// Sets `key` of slot `S` to `value`.
    pub fn of<S: Slot>(key: &S::Key, value: &S::Value) -> Write {
        Write { key: S::key(key), value: S::encode(value) }
    }
}

macro_rules! slot {
    ($(#[$doc:meta])* $name:ident, $tag:expr, $label:expr, $max:expr, $key:ty, $value:ty, |$k:ident| $bytes:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl Slot for $name {
            const TAG: u8 = $tag;
            const NAME: &'static str = $label;
            const MAX_LEN: usize = $max;
            type Key = $key;
            type Value = $value;
            fn key_bytes($k: &$key) -> Vec<u8> {
                $bytes
            }
        }
    };
}

slot!(
    /// A signer's next nonce.
    NonceOf, 1, "next nonce", 16, PublicKey, u64, |k| k.as_bytes().to_vec()
);
slot!(
    /// Where the document with this SHA-256 digest is anchored as a single record.
    SingleBySha256, 2, "record location", 64, Hash32, RecordLocation, |k| k.as_bytes().to_vec()
);
slot!(
    /// Where the document with this BLAKE3 digest is anchored as a single record.
    SingleByBlake3, 3, "record location", 64, Hash32, RecordLocation, |k| k.as_bytes().to_vec()
);
slot!(
    /// Where the batch with this root is anchored.
    BatchByRoot, 4, "batch location", 64, Hash32, RecordLocation, |k| k.as_bytes().to_vec()
);
slot!(
    /// A clerk key's grant.
    GrantOf, 5, "key grant", 4096, PublicKey, GrantState, |k| k.as_bytes().to_vec()
);
slot!(
    /// The status of a withdrawn or superseded record (absent while the record is current).
    StatusOf, 6, "record status", 4096, RecordId, RecordStatus, |k| {
        let mut b = Vec::with_capacity(48);
        b.extend_from_slice(k.sha256.as_bytes());
        b.extend_from_slice(&k.entry.to_be_bytes());
        b.extend_from_slice(&k.leaf.to_be_bytes());
        b
    }
);
slot!(
    /// A parcel's state (retired parcels stay, marked).
    ParcelOf, 7, "parcel state", 512 * 1024, str, ParcelState, |k| k.as_bytes().to_vec()
);
slot!(
    /// The live parcels whose bounding box touches a grid cell of [`crate::land::CELL_MM`]: the
    /// spatial index the overlap rule reads, so every node finds the same neighbours.
    CellMembers, 8, "grid cell", 4 << 20, (i64, i64), Vec<String>, |k| {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&k.0.to_be_bytes());
        b.extend_from_slice(&k.1.to_be_bytes());
        b
    }
);
slot!(
    /// A building's or road's state.
    StructureOf, 9, "structure state", 512 * 1024, str, StructureState, |k| k.as_bytes().to_vec()
);

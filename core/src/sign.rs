//! Ed25519 keys and domain-separated signatures.
//!
//! A Sabt signature is Ed25519 (RFC 8032) over `context ‖ 0x00 ‖ canonical bytes`, where `context` is
//! the constant ASCII string of one purpose ([`TX`], [`VOTE`], …). The `0x00` ends the context, so
//! no two purposes' messages can coincide. C2SP signed notes (checkpoints) are the one other kind of
//! signed message: their text is UTF-8 without control characters, so it contains no `0x00` and can
//! never equal a Sabt message either (see [`crate::checkpoint`]).
//!
//! One verification rule for everything consensus-critical: [`ed25519_dalek::VerifyingKey::verify_strict`]
//! (canonical `S`, canonical `R`, no small-order public keys or `R`).

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use thiserror::Error;

/// The purpose a signature is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigContext(&'static str);

impl SigContext {
    /// The ASCII context string.
    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

/// Transactions submitted by clerks and agency admins.
pub const TX: SigContext = SigContext("sabt/tx/v1");
/// Consensus votes.
pub const VOTE: SigContext = SigContext("sabt/vote/v1");
/// Consensus proposals.
pub const PROPOSAL: SigContext = SigContext("sabt/proposal/v1");
/// Validator-set transitions carried in proof bundles.
pub const VALIDATOR_SET: SigContext = SigContext("sabt/validator-set/v1");
/// A validator binding its libp2p peer id to its consensus key (Malachite's proof of validator).
pub const VALIDATOR_PROOF: SigContext = SigContext("sabt/validator-proof/v1");
/// A mortgagee's consent to the transfer of a mortgaged parcel.
pub const LAND_CONSENT: SigContext = SigContext("sabt/land-consent/v1");
/// The release of a restriction on a parcel, signed by the restriction's consent key.
pub const LAND_RELEASE: SigContext = SigContext("sabt/land-release/v1");
/// A validator vouching that it forwards a batch of submissions to another validator's API: the
/// message is the genesis hash followed by the request body (`docs/ARCHITECTURE.md`, "API limits").
pub const FORWARD: SigContext = SigContext("sabt/forward/v1");

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// The bytes are not a valid Ed25519 public key.
    #[error("not a valid Ed25519 public key: {0}")]
    BadPublicKey(String),
    /// The signature does not verify under the key for this message.
    #[error("signature does not verify")]
    BadSignature,
}

/// An Ed25519 public key, checked to be a valid curve point when made or decoded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses 32 bytes, refusing those that are not a point on the curve.
    ///
    /// Decompressing the point costs a square root in the field, and the same few signer keys come
    /// back in every block, so keys that decompressed are remembered in [`decompressed`]: the
    /// answer is the same, only sooner.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SignError> {
        decompressed::get(bytes).map(PublicKey).map_err(|e| SignError::BadPublicKey(e.to_string()))
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The 32 bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Self, SignError> {
        let bytes = crate::text::parse_hex_fixed::<32>(text).map_err(SignError::BadPublicKey)?;
        Self::from_bytes(&bytes)
    }

    /// Verifies a domain-separated signature over `message`.
    pub fn verify(&self, context: SigContext, message: &[u8], signature: &Signature) -> Result<(), SignError> {
        self.verify_raw(&framed(context, message), signature)
    }

    /// Verifies a signature over exactly `message`, with no context. Only for formats that define
    /// their own signed text (C2SP signed notes).
    pub(crate) fn verify_raw(&self, message: &[u8], signature: &Signature) -> Result<(), SignError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify_strict(message, &sig).map_err(|_| SignError::BadSignature)
    }
}

impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::text::serialize_fixed(self.as_bytes(), s)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = crate::text::deserialize_fixed::<D, 32>(d)?;
        PublicKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// A memo of decompressed public keys.
///
/// A direct-mapped table of [`SLOTS`](decompressed::SLOTS) entries, each under its own lock,
/// indexed by the key's first two bytes (a point's `y` coordinate, uniformly spread). An entry is
/// used only when its 32 bytes equal the bytes asked for, and only keys that decompressed are
/// stored, so [`PublicKey::from_bytes`] accepts and refuses exactly what
/// [`VerifyingKey::from_bytes`] does: the memo changes when the work is done, never its result.
/// It holds no clock, randomness or I/O; two keys that share a slot evict each other, which costs
/// only a decompression.
pub mod decompressed {
    use ed25519_dalek::{SignatureError, VerifyingKey};
    use std::sync::Mutex;

    /// Entries in the table.
    pub const SLOTS: usize = 1024;

    static TABLE: [Mutex<Option<VerifyingKey>>; SLOTS] = [const { Mutex::new(None) }; SLOTS];

    /// The slot `bytes` is kept in.
    pub fn slot(bytes: &[u8; 32]) -> usize {
        usize::from(u16::from_le_bytes([bytes[0], bytes[1]])) % SLOTS
    }

    /// `VerifyingKey::from_bytes(bytes)`, from the table when it holds exactly these bytes.
    pub fn get(bytes: &[u8; 32]) -> Result<VerifyingKey, SignatureError> {
        let entry = &TABLE[slot(bytes)];
        if let Some(key) = *entry.lock().unwrap_or_else(|p| p.into_inner())
            && key.as_bytes() == bytes
        {
            return Ok(key);
        }
        let key = VerifyingKey::from_bytes(bytes)?;
        *entry.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
        Ok(key)
    }
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::text::serialize_fixed(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::text::deserialize_fixed(d).map(Signature)
    }
}

/// An Ed25519 signing key. The seed is generated at the edge (the core has no randomness) and the
/// key zeroizes itself when dropped.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// The key whose RFC 8032 seed is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// The seed, for writing to a protected key file.
    pub fn seed(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message` for `context`.
    pub fn sign(&self, context: SigContext, message: &[u8]) -> Signature {
        self.sign_raw(&framed(context, message))
    }

    /// Signs exactly `message`, with no context. Only for C2SP signed notes.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public().to_hex())
    }
}

/// `context ‖ 0x00 ‖ message`: the bytes a Sabt signature covers.
pub fn framed(context: SigContext, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(context.0.len() + 1 + message.len());
    out.extend_from_slice(context.0.as_bytes());
    out.push(0);
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_domain_separation() {
        let k = SecretKey::from_seed(&[7; 32]);
        let sig = k.sign(TX, b"hello");
        k.public().verify(TX, b"hello", &sig).unwrap();
        assert_eq!(k.public().verify(VOTE, b"hello", &sig), Err(SignError::BadSignature));
        assert_eq!(k.public().verify(TX, b"hellO", &sig), Err(SignError::BadSignature));
        let other = SecretKey::from_seed(&[8; 32]);
        assert_eq!(other.public().verify(TX, b"hello", &sig), Err(SignError::BadSignature));
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032 §7.1, TEST 1: empty message, raw Ed25519.
        let seed =
            crate::text::parse_hex_fixed::<32>("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap();
        let k = SecretKey::from_seed(&seed);
        assert_eq!(k.public().to_hex(), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        let sig = k.sign_raw(b"");
        assert_eq!(
            hex::encode(sig.0),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        k.public().verify_raw(b"", &sig).unwrap();
    }

    #[test]
    fn remembered_keys_decode_as_before() {
        // Two keys that share a slot, decoded in turn: each comes back as itself, whichever the
        // slot held, and agrees with a fresh decompression.
        let keys: Vec<[u8; 32]> = (0u16..4000)
            .map(|i| {
                let mut seed = [0u8; 32];
                seed[..2].copy_from_slice(&i.to_le_bytes());
                SecretKey::from_seed(&seed).public().to_bytes()
            })
            .collect();
        let (a, b) = keys
            .iter()
            .enumerate()
            .find_map(|(i, a)| {
                keys[i + 1..].iter().find(|b| decompressed::slot(a) == decompressed::slot(b)).map(|b| (*a, *b))
            })
            .unwrap();
        for _ in 0..3 {
            for k in [a, b] {
                let decoded = PublicKey::from_bytes(&k).unwrap();
                assert_eq!(decoded.to_bytes(), k);
                assert_eq!(decoded.0, VerifyingKey::from_bytes(&k).unwrap());
            }
        }
        // A signature still verifies under a key that came from the table.
        let s = SecretKey::from_seed(&[9; 32]);
        let sig = s.sign(TX, b"m");
        for _ in 0..2 {
            PublicKey::from_bytes(&s.public().to_bytes()).unwrap().verify(TX, b"m", &sig).unwrap();
        }
    }

    #[test]
    fn bytes_that_are_no_point_are_refused_every_time() {
        // y = 2 is not the y coordinate of any curve point (x^2 = (y^2 - 1) / (d y^2 + 1) is not a
        // square); the refusal is not remembered as a key, and a valid key in the same slot does
        // not make it decode.
        let mut bad = [0u8; 32];
        bad[0] = 2;
        assert!(VerifyingKey::from_bytes(&bad).is_err());
        let neighbour = (0u16..20000)
            .map(|i| {
                let mut seed = [1u8; 32];
                seed[..2].copy_from_slice(&i.to_le_bytes());
                SecretKey::from_seed(&seed).public().to_bytes()
            })
            .find(|k| decompressed::slot(k) == decompressed::slot(&bad))
            .unwrap();
        PublicKey::from_bytes(&neighbour).unwrap();
        for _ in 0..2 {
            assert!(matches!(PublicKey::from_bytes(&bad), Err(SignError::BadPublicKey(_))));
        }
    }

    #[test]
    fn refuses_small_order_key_signatures() {
        // The identity point encodes as 01 00..00: a valid point, but of small order; verify_strict
        // must refuse any signature under it.
        let mut id = [0u8; 32];
        id[0] = 1;
        let pk = PublicKey::from_bytes(&id).unwrap();
        let mut sig = [0u8; 64];
        sig[0] = 1;
        assert_eq!(pk.verify_raw(b"", &Signature(sig)), Err(SignError::BadSignature));
    }
}

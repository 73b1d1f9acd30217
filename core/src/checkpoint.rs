//! Checkpoints: the log's state as a C2SP tlog-checkpoint, cosigned by validators as a C2SP signed
//! note, and the rule that makes one count.
//!
//! **Checkpoint body** (C2SP `tlog-checkpoint`): three lines, each ending in `\n`: the origin (the
//! chain id), the tree size in decimal without leading zeros, and the root hash in standard base64.
//! Sabt writes no extension lines and refuses checkpoints that carry any.
//!
//! **Signed note** (C2SP `signed-note`): the body, a blank line, then one line per signature:
//! `— <name> <base64(key id ‖ signature)>\n` (U+2014 EM DASH, a space, the key name, a space). For
//! Ed25519 the key id is the first 4 bytes of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)` and the
//! signature is Ed25519 over the body text exactly (its final newline included). Validators sign under
//! their validator name.
//!
//! **Counting** ([`verify_cosigned`]): a line whose (name, key id) is not a validator of the set is
//! ignored, as the spec requires; a validator's line must verify (else [`CheckpointError::BadSignature`]);
//! a validator with two lines is refused ([`CheckpointError::DuplicateSigner`]), so no signature can
//! count twice; the distinct validators must hold more than 2/3 of the set's power
//! ([`crate::validator::ValidatorSet::is_quorum`]).

use crate::hash::Hash32;
use crate::sign::{PublicKey, SecretKey, Signature};
use crate::validator::{ValidatorSet, check_name};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::Digest as _;
use std::collections::BTreeSet;
use thiserror::Error;

/// The longest signed note accepted.
pub const MAX_NOTE_LEN: usize = 128 * 1024;
/// The most signature lines accepted on one note (C2SP requires at least 16).
pub const MAX_NOTE_SIGNATURES: usize = 512;
/// The C2SP signature type byte for Ed25519.
const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a checkpoint or note was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    /// The signed note's framing is wrong.
    #[error("malformed signed note: {0}")]
    MalformedNote(String),
    /// The checkpoint body is wrong.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A note key string is wrong.
    #[error("malformed note key: {0}")]
    MalformedKey(String),
    /// The checkpoint is for another log.
    #[error("checkpoint is for origin {found:?}, not this chain's {expected:?}")]
    WrongOrigin {
        /// Origin expected (the chain id).
        expected: String,
        /// Origin found.
        found: String,
    },
    /// A validator's signature line does not verify.
    #[error("signature by validator {name:?} does not verify over this checkpoint")]
    BadSignature {
        /// The validator.
        name: String,
    },
    /// A validator signed more than once.
    #[error("validator {name:?} signed more than once; a signature never counts twice")]
    DuplicateSigner {
        /// The validator.
        name: String,
    },
    /// Not enough voting power signed.
    #[error(
        "quorum not met: validators holding {signed} of {total} voting power signed ({signers:?}); more than 2/3 is needed"
    )]
    QuorumNotMet {
        /// Power of distinct valid signers.
        signed: u128,
        /// Total power of the set.
        total: u128,
        /// Who signed.
        signers: Vec<String>,
    },
}

/// The state of the log: origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin: the chain id.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 root of the first `size` entries.
    pub root: Hash32,
}

impl Checkpoint {
    /// The C2SP tlog-checkpoint body text.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root.0))
    }

    /// Parses a body written by [`Checkpoint::body`], strictly.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::MalformedCheckpoint(m.to_string());
        let lines = text.strip_suffix('\n').ok_or_else(|| bad("body must end with a newline"))?;
        let parts: Vec<&str> = lines.split('\n').collect();
        if parts.len() < 3 {
            return Err(bad("body needs origin, size and root lines"));
        }
        if parts.len() > 3 {
            return Err(bad("Sabt checkpoints carry no extension lines"));
        }
        let origin = parts[0];
        check_origin(origin).map_err(|m| bad(&m))?;
        let size_text = parts[1];
        if size_text.is_empty()
            || !size_text.bytes().all(|b| b.is_ascii_digit())
            || (size_text.len() > 1 && size_text.starts_with('0'))
        {
            return Err(bad("tree size must be decimal digits without leading zeros"));
        }
        let size: u64 = size_text.parse().map_err(|_| bad("tree size does not fit in 64 bits"))?;
        let root_bytes = B64.decode(parts[2]).map_err(|_| bad("root hash is not standard base64"))?;
        let root: [u8; 32] = root_bytes.try_into().map_err(|_| bad("root hash must be 32 bytes"))?;
        let cp = Checkpoint { origin: origin.to_string(), size, root: Hash32(root) };
        if cp.body() != text {
            return Err(bad("body is not in canonical form"));
        }
        Ok(cp)
    }
}

/// Checks an origin (chain id): 1 to 128 characters from `A–Z a–z 0–9 . _ - / :`.
pub fn check_origin(origin: &str) -> Result<(), String> {
    check_name(origin).map_err(|reason| format!("origin {origin:?} {reason}"))
}

/// An Ed25519 note key: a name and a public key, with its C2SP key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteKey {
    /// Key name.
    pub name: String,
    /// Public key.
    pub key: PublicKey,
}

impl NoteKey {
    /// The key `key` under `name`.
    pub fn new(name: &str, key: PublicKey) -> Result<Self, CheckpointError> {
        check_name(name).map_err(|r| CheckpointError::MalformedKey(format!("name {name:?} {r}")))?;
        Ok(NoteKey { name: name.to_string(), key })
    }

    /// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[0..4]`.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, &self.key)
    }

    /// The verifier key string `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_string(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.key_id()), B64.encode(k))
    }

    /// Whether `note` carries a valid signature by this key (a line with this name and key id whose
    /// signature verifies over the note's text).
    pub fn verifies(&self, note: &SignedNote) -> bool {
        let id = self.key_id();
        note.signatures.iter().filter(|s| s.name == self.name && s.key_id == id).any(|s| {
            <[u8; 64]>::try_from(s.signature.as_slice())
                .is_ok_and(|sig| self.key.verify_raw(note.text.as_bytes(), &Signature(sig)).is_ok())
        })
    }

    /// Parses a verifier key string, checking its key id.
    pub fn parse_verifier(text: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::MalformedKey(m.to_string());
        let mut parts = text.split('+');
        let (Some(name), Some(id_hex), Some(key_b64), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected <name>+<key id>+<key>"));
        };
        let raw = B64.decode(key_b64).map_err(|_| bad("key is not standard base64"))?;
        let (alg, pk) = raw.split_first().ok_or_else(|| bad("empty key"))?;
        if *alg != ALG_ED25519 {
            return Err(bad("not an Ed25519 key (type byte must be 0x01)"));
        }
        let pk: [u8; 32] = pk.try_into().map_err(|_| bad("Ed25519 key must be 32 bytes"))?;
        let key = PublicKey::from_bytes(&pk).map_err(|e| bad(&e.to_string()))?;
        let nk = NoteKey::new(name, key)?;
        if hex::encode(nk.key_id()) != id_hex {
            return Err(bad("key id does not match name and key"));
        }
        Ok(nk)
    }
}

/// The C2SP key id of an Ed25519 key.
pub fn key_id(name: &str, key: &PublicKey) -> [u8; 4] {
    let mut h = sha2::Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A, ALG_ED25519]);
    h.update(key.as_bytes());
    let d: [u8; 32] = h.finalize().into();
    [d[0], d[1], d[2], d[3]]
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id (first 4 decoded bytes).
    pub key_id: [u8; 4],
    /// The signature bytes after the key id (64 for Ed25519; other algorithms may differ).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its newline.
    pub fn line(&self) -> String {
        let mut raw = self.key_id.to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

/// A C2SP signed note: text and signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, ending in `\n`.
    pub text: String,
    /// Signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Signs `text` with `key` under `name`.
    pub fn sign_line(text: &str, name: &str, key: &SecretKey) -> NoteSignature {
        let sig = key.sign_raw(text.as_bytes());
        NoteSignature { name: name.to_string(), key_id: key_id(name, &key.public()), signature: sig.0.to_vec() }
    }

    /// The note's full text.
    pub fn render(&self) -> String {
        let mut out = self.text.clone();
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Parses a signed note, checking its framing (not its signatures).
    pub fn parse(note: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::MalformedNote(m.to_string());
        if note.len() > MAX_NOTE_LEN {
            return Err(bad(&format!("{} bytes exceeds the limit of {MAX_NOTE_LEN}", note.len())));
        }
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad("contains control characters other than newline"));
        }
        let split = note.rfind("\n\n").ok_or_else(|| bad("no blank line before the signatures"))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        if sigs.is_empty() {
            return Err(bad("no signature lines"));
        }
        let sigs = sigs.strip_suffix('\n').ok_or_else(|| bad("signature lines must end with a newline"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(bad(&format!("more than {MAX_NOTE_SIGNATURES} signatures")));
            }
            let rest = line
                .strip_prefix(SIG_PREFIX)
                .ok_or_else(|| bad("signature line must start with an em dash and a space"))?;
            let (name, b64) = rest.split_once(' ').ok_or_else(|| bad("signature line needs a name and a signature"))?;
            if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
                return Err(bad("signature key name must be non-empty, without spaces or '+'"));
            }
            let raw = B64.decode(b64).map_err(|_| bad("signature is not standard base64"))?;
            if raw.len() < 5 {
                return Err(bad("signature too short to hold a key id"));
            }
            let (id, sig) = raw.split_at(4);
            signatures.push(NoteSignature {
                name: name.to_string(),
                key_id: [id[0], id[1], id[2], id[3]],
                signature: sig.to_vec(),
            });
        }
        Ok(SignedNote { text: text.to_string(), signatures })
    }
}

/// A checkpoint that a quorum of the set signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// Names of the validators whose signatures counted, in note order.
    pub signers: Vec<String>,
    /// Their voting power.
    pub signed_power: u128,
    /// The set's total power.
    pub total_power: u128,
    /// Signature lines ignored because their key is not in the set.
    pub ignored: usize,
}

/// Signs a checkpoint as validator `name`: the signature line to add to the note.
pub fn cosign(checkpoint: &Checkpoint, name: &str, key: &SecretKey) -> NoteSignature {
    SignedNote::sign_line(&checkpoint.body(), name, key)
}

/// A validator's bare cosignature over `checkpoint`: Ed25519 over the body text exactly, as a C2SP
/// note signature line carries it. Validators attach it to their precommit, so the signatures that
/// decide a block also cosign the checkpoint it produces.
pub fn sign_checkpoint(checkpoint: &Checkpoint, key: &SecretKey) -> Signature {
    key.sign_raw(checkpoint.body().as_bytes())
}

/// Checks a bare cosignature made by [`sign_checkpoint`].
pub fn verify_checkpoint_signature(
    checkpoint: &Checkpoint,
    key: &PublicKey,
    signature: &Signature,
) -> Result<(), crate::sign::SignError> {
    key.verify_raw(checkpoint.body().as_bytes(), signature)
}

/// The cosigned note for `checkpoint` from bare cosignatures by members of `set` (named by their
/// validator names); keys outside the set are left out.
pub fn note_from_cosignatures<'a>(
    checkpoint: &Checkpoint,
    set: &ValidatorSet,
    cosignatures: impl IntoIterator<Item = (&'a PublicKey, &'a Signature)>,
) -> String {
    let signatures = cosignatures
        .into_iter()
        .filter_map(|(key, sig)| {
            let v = set.by_key(key)?;
            Some(NoteSignature { name: v.name.clone(), key_id: key_id(&v.name, key), signature: sig.0.to_vec() })
        })
        .collect();
    SignedNote { text: checkpoint.body(), signatures }.render()
}

/// Verifies a cosigned checkpoint note against a validator set and the expected origin.
pub fn verify_cosigned(note: &str, set: &ValidatorSet, origin: &str) -> Result<VerifiedCheckpoint, CheckpointError> {
    let note = SignedNote::parse(note)?;
    let checkpoint = Checkpoint::parse_body(&note.text)?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::WrongOrigin { expected: origin.to_string(), found: checkpoint.origin });
    }
    let mut seen = BTreeSet::new();
    let mut signers = Vec::new();
    let mut signed: u128 = 0;
    let mut ignored = 0;
    for line in &note.signatures {
        let Some(v) = set.by_name(&line.name).filter(|v| key_id(&v.name, &v.key) == line.key_id) else {
            ignored += 1;
            continue;
        };
        if !seen.insert(v.name.as_str()) {
            return Err(CheckpointError::DuplicateSigner { name: v.name.clone() });
        }
        let sig: [u8; 64] =
            line.signature.as_slice().try_into().map_err(|_| CheckpointError::BadSignature { name: v.name.clone() })?;
        v.key
            .verify_raw(note.text.as_bytes(), &Signature(sig))
            .map_err(|_| CheckpointError::BadSignature { name: v.name.clone() })?;
        signed += u128::from(v.power);
        signers.push(v.name.clone());
    }
    if !set.is_quorum(signed) {
        return Err(CheckpointError::QuorumNotMet { signed, total: set.total_power(), signers });
    }
    Ok(VerifiedCheckpoint { checkpoint, signers, signed_power: signed, total_power: set.total_power(), ignored })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> Vec<SecretKey> {
        (1..=n).map(|i| SecretKey::from_seed(&[i; 32])).collect()
    }

    fn set_of(keys: &[SecretKey]) -> ValidatorSet {
        crate::validator::test_set(keys)
    }

    fn note(cp: &Checkpoint, keys: &[SecretKey], who: &[usize]) -> String {
        let signatures = who.iter().map(|&i| cosign(cp, &format!("v{i}"), &keys[i])).collect();
        SignedNote { text: cp.body(), signatures }.render()
    }

    fn cp() -> Checkpoint {
        Checkpoint { origin: "tj.sabt.test".into(), size: 42, root: Hash32([9; 32]) }
    }

    #[test]
    fn body_round_trip_and_strictness() {
        let c = cp();
        assert_eq!(Checkpoint::parse_body(&c.body()).unwrap(), c);
        let root = B64.encode([9u8; 32]);
        for bad in [
            format!("tj.sabt.test\n042\n{root}\n"),
            format!("tj.sabt.test\n42\n{root}"),
            format!("tj.sabt.test\n42\n{root}\next\n"),
            format!("tj sabt\n42\n{root}\n"),
            "tj.sabt.test\n42\nAAAA\n".to_string(),
            format!("tj.sabt.test\n-1\n{root}\n"),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quorum_of_distinct_validators() {
        let ks = keys(4);
        let set = set_of(&ks);
        let v = verify_cosigned(&note(&cp(), &ks, &[0, 1, 2]), &set, "tj.sabt.test").unwrap();
        assert_eq!(v.signers, ["v0", "v1", "v2"]);
        assert!(matches!(
            verify_cosigned(&note(&cp(), &ks, &[0, 1]), &set, "tj.sabt.test"),
            Err(CheckpointError::QuorumNotMet { signed: 2, total: 4, .. })
        ));
        assert!(matches!(
            verify_cosigned(&note(&cp(), &ks, &[0, 1, 1]), &set, "tj.sabt.test"),
            Err(CheckpointError::DuplicateSigner { .. })
        ));
        assert!(matches!(
            verify_cosigned(&note(&cp(), &ks, &[0, 1, 2]), &set, "other"),
            Err(CheckpointError::WrongOrigin { .. })
        ));
    }

    #[test]
    fn unknown_keys_are_ignored_not_trusted() {
        let ks = keys(4);
        let set = set_of(&ks);
        let outsider = SecretKey::from_seed(&[99; 32]);
        let c = cp();
        let mut sigs = vec![cosign(&c, "v0", &ks[0]), cosign(&c, "v1", &ks[1])];
        // An outsider using a validator's name: key id differs, so it is ignored.
        sigs.push(cosign(&c, "v2", &outsider));
        sigs.push(cosign(&c, "stranger", &outsider));
        let text = SignedNote { text: c.body(), signatures: sigs }.render();
        assert!(matches!(
            verify_cosigned(&text, &set, "tj.sabt.test"),
            Err(CheckpointError::QuorumNotMet { signed: 2, .. })
        ));
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let ks = keys(4);
        let c = cp();
        let mut n = SignedNote { text: c.body(), signatures: vec![] };
        for (i, k) in ks.iter().enumerate() {
            n.signatures.push(cosign(&c, &format!("v{i}"), k));
        }
        n.signatures[3].signature[0] ^= 1;
        assert!(matches!(
            verify_cosigned(&n.render(), &set_of(&ks), "tj.sabt.test"),
            Err(CheckpointError::BadSignature { name }) if name == "v3"
        ));
    }

    #[test]
    fn note_framing_errors() {
        for bad in [
            "no blank line\n",
            "text\n\n",
            "text\n\n— v0\n",
            "text\n\n- v0 AAAAAAA=\n",
            "text\n\n— v0 AAAAAAA=",
            "t\u{7}\n\n— v0 AAAAAAA=\n",
        ] {
            assert!(SignedNote::parse(bad).is_err(), "{bad:?}");
        }
    }
}

//! The one encoding module: every byte string that Sabt signs, hashes, stores or sends is made by
//! [`encode`] and parsed by [`decode`].
//!
//! Rules (docs/PROOFS.md §"Canonical encoding" states them for independent verifiers):
//! - The body is [postcard] 1.x (serde): unsigned integers as LEB128 varints, `bool` as one byte,
//!   fixed arrays (`[u8; 32]`) as their raw bytes, byte strings, UTF-8 strings and sequences as a
//!   varint length followed by the elements, `Option` as a `0x00`/`0x01` tag, enums as a varint
//!   variant index followed by the variant's fields, structs as their fields in declaration order.
//! - Every envelope that is signed or stored starts with a **version byte** ([`Canonical::VERSION`]);
//!   a decoder refuses a version it does not know rather than guess.
//! - Every decode has a **size limit** ([`Canonical::MAX_LEN`]), checked before parsing; length
//!   prefixes inside can never make the decoder allocate more than the input could hold.
//! - **Trailing bytes are rejected**, and so is any non-canonical form (postcard's decoder accepts
//!   over-long varints such as `80 00` for zero): decoding re-encodes the value and requires the
//!   same bytes, so one value has exactly one encoding and no signed or hashed bytes are malleable.
//! - Maps are ordered (`BTreeMap`); `HashMap` is forbidden in this crate by `clippy.toml`. Floats
//!   never appear in canonical types.
//!
//! Changing any of this is a breaking change to the chain; the golden vectors in
//! `core/tests/fixtures/golden/` fail on any drift.

use serde::{Serialize, de::DeserializeOwned};
use thiserror::Error;

/// The largest value any decoder in Sabt accepts, whatever the type: 16 MiB.
pub const ABSOLUTE_MAX_LEN: usize = 16 << 20;

/// The largest network message a node decodes ([`decode_wire_body`]): a consensus message or sync
/// response that carries several values of up to [`ABSOLUTE_MAX_LEN`] each (a sync batch of the
/// largest blocks). No value stored, hashed or signed is ever this large.
pub const MAX_WIRE_LEN: usize = 96 << 20;

/// A type with a canonical binary encoding.
pub trait Canonical: Serialize + DeserializeOwned {
    /// Human name of the type, used in error messages.
    const NAME: &'static str;
    /// The format version byte written first. Bumped whenever the layout changes.
    const VERSION: u8;
    /// The largest encoding a decoder accepts (version byte included).
    const MAX_LEN: usize;
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    /// No bytes at all.
    #[error("{type_name}: empty input")]
    Empty {
        /// The type being decoded.
        type_name: &'static str,
    },
    /// The input is longer than the type's limit.
    #[error("{type_name}: {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// The type being decoded.
        type_name: &'static str,
        /// Length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The version byte is not the one this software reads.
    #[error("{type_name}: unsupported format version {found} (this software reads version {expected})")]
    UnsupportedVersion {
        /// The type being decoded.
        type_name: &'static str,
        /// Version byte found.
        found: u8,
        /// Version byte expected.
        expected: u8,
    },
    /// The body does not parse as the type.
    #[error("{type_name}: malformed encoding: {reason}")]
    Malformed {
        /// The type being decoded.
        type_name: &'static str,
        /// What the parser reported.
        reason: String,
    },
    /// Bytes remain after a complete value.
    #[error("{type_name}: {count} trailing bytes after a complete value")]
    TrailingBytes {
        /// The type being decoded.
        type_name: &'static str,
        /// Number of bytes left over.
        count: usize,
    },
    /// The bytes decode, but are not the value's canonical encoding (e.g. an over-long varint).
    #[error("{type_name}: not the canonical encoding of the value it decodes to")]
    NonCanonical {
        /// The type being decoded.
        type_name: &'static str,
    },
    /// A value whose encoding exceeds its type's limit was about to be produced.
    #[error("{type_name}: encoding of {len} bytes exceeds the limit of {max}")]
    EncodeTooLong {
        /// The type being encoded.
        type_name: &'static str,
        /// Length of the encoding.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Encodes `value` canonically: its version byte, then its postcard body.
///
/// Encoding cannot fail for Sabt's types (postcard fails only on sequences of unknown length, which
/// derived `Serialize` implementations never produce). Use [`encode_checked`] where the value comes
/// from outside and must respect [`Canonical::MAX_LEN`].
pub fn encode<T: Canonical>(value: &T) -> Vec<u8> {
    let mut out = vec![T::VERSION];
    encode_body_into(value, &mut out);
    out
}

/// Encodes `value` without a version byte: for values nested inside an envelope that has one.
pub fn encode_body<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_body_into(value, &mut out);
    out
}

#[allow(clippy::expect_used)]
fn encode_body_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Justified: see `encode`. A failure here is a programming error in a type definition, found by
    // the golden-vector tests, never a property of input data.
    let body = postcard::to_stdvec(value).expect("postcard encoding of a derived type cannot fail");
    out.extend_from_slice(&body);
}

/// Encodes `value` and checks the result against its type's size limit.
pub fn encode_checked<T: Canonical>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = encode(value);
    let max = T::MAX_LEN.min(ABSOLUTE_MAX_LEN);
    if bytes.len() > max {
        return Err(CodecError::EncodeTooLong { type_name: T::NAME, len: bytes.len(), max });
    }
    Ok(bytes)
}

/// Decodes a canonical encoding of `T`: size limit, version byte, body, no trailing bytes.
pub fn decode<T: Canonical>(bytes: &[u8]) -> Result<T, CodecError> {
    let body = envelope_body::<T>(bytes)?;
    let value: T = decode_body_limited(T::NAME, body)?;
    require_canonical(T::NAME, &value, body)?;
    Ok(value)
}

/// The body of an encoding of `T` after the checks every decode of it starts with: size limit and
/// version byte. [`decode`] parses the body whole; [`decode_body_prefix`] reads a leading field.
pub fn envelope_body<T: Canonical>(bytes: &[u8]) -> Result<&[u8], CodecError> {
    let max = T::MAX_LEN.min(ABSOLUTE_MAX_LEN);
    if bytes.len() > max {
        return Err(CodecError::TooLong { type_name: T::NAME, len: bytes.len(), max });
    }
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty { type_name: T::NAME })?;
    if version != T::VERSION {
        return Err(CodecError::UnsupportedVersion { type_name: T::NAME, found: version, expected: T::VERSION });
    }
    Ok(body)
}

fn require_canonical<T: Serialize>(type_name: &'static str, value: &T, body: &[u8]) -> Result<(), CodecError> {
    if encode_body(value) != body {
        return Err(CodecError::NonCanonical { type_name });
    }
    Ok(())
}

/// Decodes a value without a version byte, refusing inputs longer than `max`.
pub fn decode_body<T: Serialize + DeserializeOwned>(
    type_name: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, CodecError> {
    decode_within(type_name, bytes, max.min(ABSOLUTE_MAX_LEN))
}

/// Decodes a network message without a version byte, refusing inputs longer than `max` (at most
/// [`MAX_WIRE_LEN`]): for the containers the consensus network exchanges (a proposal part holding
/// a whole block, a sync response holding several), which frame values of up to
/// [`ABSOLUTE_MAX_LEN`] and so must be allowed to exceed it.
pub fn decode_wire_body<T: Serialize + DeserializeOwned>(
    type_name: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, CodecError> {
    decode_within(type_name, bytes, max.min(MAX_WIRE_LEN))
}

/// Decodes a canonical value without a version byte from `bytes` of at most `max` bytes.
fn decode_within<T: Serialize + DeserializeOwned>(
    type_name: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLong { type_name, len: bytes.len(), max });
    }
    let value: T = decode_body_limited(type_name, bytes)?;
    require_canonical(type_name, &value, bytes)?;
    Ok(value)
}

/// Decodes the value of type `T` at the start of `body` (a leading field of an envelope's body),
/// returning it and the bytes after it. The value must be canonically encoded; what follows is not
/// parsed. For reading one field of a stored value that was fully checked when it was written (a
/// block's header without its transactions): the caller bounds `body`'s length
/// ([`envelope_body`]).
pub fn decode_body_prefix<'a, T: Serialize + DeserializeOwned>(
    type_name: &'static str,
    body: &'a [u8],
) -> Result<(T, &'a [u8]), CodecError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| CodecError::Malformed { type_name, reason: e.to_string() })?;
    require_canonical(type_name, &value, &body[..body.len() - rest.len()])?;
    Ok((value, rest))
}

fn decode_body_limited<T: DeserializeOwned>(type_name: &'static str, body: &[u8]) -> Result<T, CodecError> {
    // postcard never allocates ahead of the bytes it has read (serde's `cautious` size hints cap
    // pre-allocation), so the input limit bounds memory.
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| CodecError::Malformed { type_name, reason: e.to_string() })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes { type_name, count: rest.len() });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u64,
        b: String,
        c: Vec<u8>,
    }
    impl Canonical for Sample {
        const NAME: &'static str = "sample";
        const VERSION: u8 = 7;
        const MAX_LEN: usize = 64;
    }

    #[test]
    fn round_trip_and_layout() {
        let s = Sample { a: 300, b: "hi".into(), c: vec![1, 2] };
        let bytes = encode(&s);
        // version 7, varint 300 = ac 02, "hi" = 02 68 69, [1,2] = 02 01 02
        assert_eq!(hex::encode(&bytes), "07ac020268690201 02".replace(' ', ""));
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
    }

    #[test]
    fn refuses_wrong_version_trailing_empty_and_long() {
        let s = Sample { a: 1, b: String::new(), c: vec![] };
        let mut bytes = encode(&s);
        bytes[0] = 8;
        assert!(matches!(decode::<Sample>(&bytes), Err(CodecError::UnsupportedVersion { found: 8, expected: 7, .. })));
        let mut bytes = encode(&s);
        bytes.push(0);
        assert!(matches!(decode::<Sample>(&bytes), Err(CodecError::TrailingBytes { count: 1, .. })));
        assert!(matches!(decode::<Sample>(&[]), Err(CodecError::Empty { .. })));
        let long = vec![7u8; 65];
        assert!(matches!(decode::<Sample>(&long), Err(CodecError::TooLong { len: 65, max: 64, .. })));
        let big = Sample { a: 1, b: "x".repeat(100), c: vec![] };
        assert!(matches!(encode_checked(&big), Err(CodecError::EncodeTooLong { .. })));
    }

    #[test]
    fn refuses_overlong_varints() {
        // 0 encoded as 80 00 instead of 00.
        let bytes = [7u8, 0x80, 0x00, 0, 0];
        assert!(matches!(decode::<Sample>(&bytes), Err(CodecError::NonCanonical { .. })));
        decode::<Sample>(&[7, 0, 0, 0]).unwrap();
    }

    #[test]
    fn huge_length_prefix_does_not_allocate() {
        // version, a = 0, string length claiming 2^63 bytes.
        let bytes = [7u8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(matches!(decode::<Sample>(&bytes), Err(CodecError::Malformed { .. })));
    }
}

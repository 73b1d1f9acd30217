//! Serde helpers shared by the fixed-size byte types: lowercase hex in human-readable formats (JSON,
//! TOML), raw fixed-length bytes in the canonical binary encoding.

use serde::de::{Error as _, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

/// Serializes `bytes` as hex text for human-readable formats and as a fixed-length tuple otherwise.
pub(crate) fn serialize_fixed<S: Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&hex::encode(bytes))
    } else {
        serde::Serialize::serialize(&FixedTuple(bytes), s)
    }
}

struct FixedTuple<'a, const N: usize>(&'a [u8; N]);

impl<const N: usize> serde::Serialize for FixedTuple<'_, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(N)?;
        for b in self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

/// Inverse of [`serialize_fixed`].
pub(crate) fn deserialize_fixed<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
    if d.is_human_readable() {
        let text: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
        parse_hex_fixed::<N>(&text).map_err(D::Error::custom)
    } else {
        d.deserialize_tuple(N, FixedVisitor::<N>)
    }
}

struct FixedVisitor<const N: usize>;

impl<'de, const N: usize> Visitor<'de> for FixedVisitor<N> {
    type Value = [u8; N];
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{N} bytes")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = [0u8; N];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?;
        }
        Ok(out)
    }
}

/// Parses exactly `N` bytes of hex (either case), with a message that says what was wrong.
pub fn parse_hex_fixed<const N: usize>(text: &str) -> Result<[u8; N], String> {
    if text.len() != 2 * N {
        return Err(format!("expected {} hex characters, found {}", 2 * N, text.len()));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).map_err(|e| format!("invalid hex: {e}"))?;
    Ok(out)
}

/// Serde for `Vec<u8>` as hex text (JSON) or a byte string (binary).
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&hex::encode(bytes)) } else { s.serialize_bytes(bytes) }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            let text: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
            hex::decode(text.as_ref()).map_err(|e| D::Error::custom(format!("invalid hex: {e}")))
        } else {
            let bytes: serde_bytes_compat::ByteBuf = Deserialize::deserialize(d)?;
            Ok(bytes.0)
        }
    }

    mod serde_bytes_compat {
        use serde::de::{Deserialize, Deserializer, Visitor};
        use std::fmt;

        pub(crate) struct ByteBuf(pub(crate) Vec<u8>);

        impl<'de> Deserialize<'de> for ByteBuf {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = ByteBuf;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a byte string")
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                        Ok(ByteBuf(v.to_vec()))
                    }
                    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                        Ok(ByteBuf(v))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }
}

/// Why a versioned JSON file was refused by [`parse_versioned_json`].
#[derive(Debug)]
pub(crate) enum VersionedJsonError {
    /// Too long, not JSON, or not the expected shape.
    Malformed(String),
    /// Another format or version.
    Unsupported {
        /// Format found.
        format: String,
        /// Version found.
        version: u32,
    },
}

/// Reads the `format` and `version` fields of a JSON file bounded to `max` bytes, and returns the
/// version if the format is `format` and the version one of `versions`. Checked before the full
/// shape, so that an old reader names the real problem.
pub(crate) fn versioned_json_head(
    text: &str,
    max: usize,
    format: &str,
    versions: &[u32],
) -> Result<u32, VersionedJsonError> {
    if text.len() > max {
        return Err(VersionedJsonError::Malformed(format!("{} bytes exceeds the limit of {max}", text.len())));
    }
    #[derive(serde::Deserialize)]
    struct Head {
        format: String,
        version: u32,
    }
    let head: Head = serde_json::from_str(text).map_err(|e| VersionedJsonError::Malformed(e.to_string()))?;
    if head.format != format || !versions.contains(&head.version) {
        return Err(VersionedJsonError::Unsupported { format: head.format, version: head.version });
    }
    Ok(head.version)
}

/// Parses a JSON file with `format` and `version` fields, bounded to `max` bytes, of exactly
/// `version` (see [`versioned_json_head`]).
pub(crate) fn parse_versioned_json<T: serde::de::DeserializeOwned>(
    text: &str,
    max: usize,
    format: &str,
    version: u32,
) -> Result<T, VersionedJsonError> {
    versioned_json_head(text, max, format, &[version])?;
    serde_json::from_str(text).map_err(|e| VersionedJsonError::Malformed(e.to_string()))
}

/// Bytes as one standard (RFC 4648, padded) base64 string in JSON.
pub(crate) mod b64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        B64.decode(text.as_bytes()).map_err(|e| D::Error::custom(format!("invalid standard base64: {e}")))
    }
}

/// A Merkle path (at most [`crate::bundle::MAX_PATH_LEN`] hashes) as one standard base64 string
/// of the hashes' bytes, concatenated in order.
pub(crate) mod b64_path {
    use crate::bundle::MAX_PATH_LEN;
    use crate::hash::Hash32;
    use serde::{Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(path: &[Hash32], s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = path.iter().flat_map(|h| h.0).collect();
        super::b64_bytes::serialize(&bytes, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash32>, D::Error> {
        let bytes = super::b64_bytes::deserialize(d)?;
        if bytes.len() % 32 != 0 || bytes.len() > 32 * MAX_PATH_LEN {
            return Err(D::Error::custom(format!(
                "a path is 0 to {MAX_PATH_LEN} hashes of 32 bytes; this one is {} bytes",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                Hash32(h)
            })
            .collect())
    }
}

//! Document fingerprints: SHA-256 (what archives, courts and `sha256sum` use) and BLAKE3 (what the
//! ledger computes with) of the same bytes, each tagged with its algorithm.
//!
//! A fingerprint is computed by streaming: [`Fingerprinter`] takes the document in chunks, so a
//! 4 GiB scan is hashed in constant memory. The document itself never leaves the clerk's machine.

use crate::hash::Hash32;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::fmt;
use std::io::Read;

/// Both digests of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    /// SHA-256 (FIPS 180-4) of the document's bytes.
    pub sha256: Hash32,
    /// BLAKE3 (unkeyed, 32-byte output) of the document's bytes.
    pub blake3: Hash32,
}

impl Fingerprint {
    /// Fingerprint of bytes already in memory.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        let mut f = Fingerprinter::new();
        f.update(bytes);
        f.finish().0
    }

    /// Fingerprint of everything `reader` yields, read in 1 MiB chunks. Returns the byte count too.
    pub fn of_reader<R: Read>(mut reader: R) -> std::io::Result<(Self, u64)> {
        let mut f = Fingerprinter::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => f.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(f.finish())
    }

    /// Whether `digest` is one of this fingerprint's two digests, of the algorithm it names.
    pub fn matches(&self, digest: &DocDigest) -> bool {
        match digest {
            DocDigest::Sha256(h) => *h == self.sha256,
            DocDigest::Blake3(h) => *h == self.blake3,
            DocDigest::Either(h) => *h == self.sha256 || *h == self.blake3,
        }
    }
}

/// Streaming computation of a [`Fingerprint`].
#[derive(Debug, Clone, Default)]
pub struct Fingerprinter {
    sha256: sha2::Sha256,
    blake3: blake3::Hasher,
    len: u64,
}

impl Fingerprinter {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the document.
    pub fn update(&mut self, chunk: &[u8]) {
        self.sha256.update(chunk);
        self.blake3.update(chunk);
        self.len += chunk.len() as u64;
    }

    /// The fingerprint and the number of bytes fed.
    pub fn finish(self) -> (Fingerprint, u64) {
        let sha256 = Hash32(self.sha256.finalize().into());
        let blake3 = Hash32(*self.blake3.finalize().as_bytes());
        (Fingerprint { sha256, blake3 }, self.len)
    }
}

/// One digest of a document, as a user gives it: tagged (`sha256:HEX`, `blake3:HEX`) or bare hex,
/// which may be either algorithm's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocDigest {
    /// A SHA-256 digest.
    Sha256(Hash32),
    /// A BLAKE3 digest.
    Blake3(Hash32),
    /// 32 bytes of unstated algorithm: matches either digest.
    Either(Hash32),
}

impl DocDigest {
    /// Parses `sha256:HEX`, `blake3:HEX` or bare `HEX` (64 hex characters).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (ctor, hex): (fn(Hash32) -> DocDigest, &str) = match text.split_once(':') {
            Some(("sha256", h)) => (DocDigest::Sha256, h),
            Some(("blake3", h)) => (DocDigest::Blake3, h),
            Some((alg, _)) => return Err(format!("unknown digest algorithm `{alg}` (use sha256: or blake3:)")),
            None => (DocDigest::Either, text),
        };
        Hash32::from_hex(hex).map(ctor).map_err(|e| format!("digest: {e}"))
    }
}

impl fmt::Display for DocDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocDigest::Sha256(h) => write!(f, "sha256:{h}"),
            DocDigest::Blake3(h) => write!(f, "blake3:{h}"),
            DocDigest::Either(h) => write!(f, "{h}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let f = Fingerprint::of_bytes(b"abc");
        assert_eq!(f.sha256.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(f.blake3.to_hex(), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
    }

    #[test]
    fn streaming_equals_one_shot_at_any_chunking() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let whole = Fingerprint::of_bytes(&data);
        let (streamed, n) = Fingerprint::of_reader(&data[..]).unwrap();
        assert_eq!((streamed, n), (whole, data.len() as u64));
        let mut f = Fingerprinter::new();
        for chunk in data.chunks(4097) {
            f.update(chunk);
        }
        assert_eq!(f.finish().0, whole);
    }

    #[test]
    fn digest_parsing_and_matching() {
        let f = Fingerprint::of_bytes(b"abc");
        let s = DocDigest::parse(&format!("sha256:{}", f.sha256)).unwrap();
        let b = DocDigest::parse(&format!("blake3:{}", f.blake3)).unwrap();
        let e = DocDigest::parse(&f.blake3.to_hex()).unwrap();
        assert!(f.matches(&s) && f.matches(&b) && f.matches(&e));
        assert!(!f.matches(&DocDigest::Sha256(f.blake3)));
        assert!(DocDigest::parse("md5:00").unwrap_err().contains("unknown digest algorithm"));
        assert!(DocDigest::parse("sha256:00").is_err());
    }
}

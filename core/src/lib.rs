//! Sabt's pure core: types, canonical codec, hashing and signatures, the Merkle registry log and its
//! proofs, quorum checkpoints, and proof bundles with their offline verification.
//!
//! Everything here is a synchronous function over owned data. This crate has no tokio, libp2p,
//! RocksDB, clock or randomness: time enters as consensus (BFT) time in the values passed in, keys
//! enter as seeds generated at the edge, and storage enters through the [`merkle::NodeStore`] trait.
//! `clippy.toml` in this crate forbids clocks, unordered maps and file I/O.
//!
//! Module map:
//! - [`codec`]: the one place where bytes that are signed, hashed, stored or sent are made and parsed.
//! - [`hash`]: 32-byte digests and the domain-separated BLAKE3 contexts.
//! - [`sign`]: Ed25519 keys and domain-separated signatures.
//! - [`fingerprint`]: SHA-256 + BLAKE3 document fingerprints, computed by streaming.
//! - [`merkle`]: the RFC 9162 log: append, roots, inclusion and consistency proofs.
//! - [`checkpoint`]: C2SP tlog-checkpoints as C2SP signed notes, and the quorum rule.
//! - [`validator`]: validator sets and the quorum rule.
//! - [`genesis`]: the genesis document that names a chain and its first validator set.
//! - [`geometry`]: parcel polygons in integer millimetres, their validation and overlap.
//! - [`geo_io`]: GeoJSON and WKT in and out, and the UTM projection, for the edges only.
//! - [`land`]: the land registry's model (parcels, rights, restrictions) and its operations.
//! - [`entry`]: what the registry log holds: archive records and batch roots.
//! - [`tx`]: signed transactions with chain id and per-signer nonce.
//! - [`block`]: block headers, votes, proposals and commit certificates.
//! - [`smt`]: the authenticated state map (sparse Merkle tree) with presence and absence proofs.
//! - [`registry`]: the registry rules: admission checks and block execution.
//! - [`status`]: status proofs: whether a record is current, withdrawn or superseded at a block.
//! - [`bundle`]: the proof file a clerk receives and an auditor verifies offline.
//! - [`devnet`]: a whole chain in one process, for the demo, examples and tests.
//! - [`sim`]: a seeded, deterministic generator of adversarial registry traffic, for simulation tests.

#![forbid(unsafe_code)]

pub mod block;
pub mod bundle;
pub mod checkpoint;
pub mod codec;
pub mod devnet;
pub mod entry;
pub mod evidence;
pub mod fingerprint;
pub mod genesis;
pub mod geo_io;
pub mod geometry;
pub mod hash;
pub mod land;
pub mod merkle;
pub mod registry;
pub mod sign;
pub mod sim;
pub mod smt;
pub mod status;
mod text;
pub mod tx;
pub mod validator;

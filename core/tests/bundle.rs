//! Proof bundles, end to end through the core: a valid bundle verifies, and each kind of tampering
//! is refused with its own error.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use sabt_core::bundle::{self, DocumentClaim, ProofBundle, VerifyError};
use sabt_core::checkpoint::{CheckpointError, SignedNote};
use sabt_core::devnet::Devnet;
use sabt_core::entry::{AccessClass, ArchiveRecord, RecordKind, ReferenceCode};
use sabt_core::fingerprint::{DocDigest, Fingerprint};

fn record(doc: &[u8]) -> ArchiveRecord {
    ArchiveRecord {
        fingerprint: Fingerprint::of_bytes(doc),
        kind: RecordKind::Notary,
        reference: ReferenceCode {
            repository: "R".into(),
            fund: "1".into(),
            inventory: "2".into(),
            file: "3".into(),
            sheets: None,
        },
        creating_agency: "Notary office 1".into(),
        title: "deed".into(),
        date_from: Some("2001-02-03".into()),
        date_to: None,
        access: AccessClass::Public,
    }
}

fn seeds() -> [[u8; 32]; 4] {
    [[1; 32], [2; 32], [3; 32], [4; 32]]
}

/// A chain with 20 single records, a batch of 50 and 5 more records.
fn chain() -> Devnet {
    let mut net = Devnet::new("tj.sabt.test", 1_000, &seeds(), [9; 32]);
    for i in 0..20u32 {
        net.append_record(1 + u64::from(i) / 4, 10_000 + u64::from(i), record(format!("doc {i}").as_bytes()));
    }
    net.append_batch(6, 20_000, (0..50u32).map(|i| record(format!("batch doc {i}").as_bytes())).collect());
    for i in 20..25u32 {
        net.append_record(7, 30_000, record(format!("doc {i}").as_bytes()));
    }
    net
}

fn file(doc: &str) -> DocumentClaim {
    DocumentClaim::File(Fingerprint::of_bytes(doc.as_bytes()))
}

#[test]
fn every_single_and_batched_record_verifies() {
    let net = chain();
    for i in 0..20u64 {
        let b = net.bundle(i, None, &[0, 1, 2]).unwrap();
        // Through JSON, as a proof file travels.
        let b = ProofBundle::from_json(&b.to_json()).unwrap();
        let v = bundle::verify(&b, &net.genesis, &file(&format!("doc {i}"))).unwrap();
        assert_eq!((v.index, v.height, v.time_ms), (i, 1 + i / 4, 10_000 + i));
        assert_eq!(v.checkpoint.checkpoint.size, 26);
    }
    for j in 0..50u64 {
        let b = net.bundle(20, Some(j), &[1, 2, 3]).unwrap();
        let v = bundle::verify(&b, &net.genesis, &file(&format!("batch doc {j}"))).unwrap();
        assert_eq!(v.batch_index, Some((j, 50)));
    }
    let b = net.bundle(25, None, &[0, 1, 2, 3]).unwrap();
    let d = Fingerprint::of_bytes(b"doc 24");
    for claim in [DocDigest::Sha256(d.sha256), DocDigest::Blake3(d.blake3), DocDigest::Either(d.sha256)] {
        bundle::verify(&b, &net.genesis, &DocumentClaim::Digest(claim)).unwrap();
    }
}

fn expect_err(b: &ProofBundle, net: &Devnet, doc: &str) -> VerifyError {
    bundle::verify(b, &net.genesis, &file(doc)).expect_err("tampered bundle must not verify")
}

#[test]
fn tampered_document_is_a_digest_mismatch() {
    let net = chain();
    let b = net.bundle(3, None, &[0, 1, 2]).unwrap();
    assert_eq!(expect_err(&b, &net, "doc 4").code(), "digest_mismatch");
    let wrong = DocumentClaim::Digest(DocDigest::Sha256(Fingerprint::of_bytes(b"doc 3").blake3));
    assert_eq!(bundle::verify(&b, &net.genesis, &wrong).unwrap_err().code(), "digest_mismatch");
}

#[test]
fn every_bit_of_the_entry_and_paths_matters() {
    let net = chain();
    let good = net.bundle(7, None, &[0, 1, 2]).unwrap();
    for byte in 0..good.entry.encoded.len() {
        let mut b = good.clone();
        b.entry.encoded[byte] ^= 0x04;
        let e = expect_err(&b, &net, "doc 7");
        assert!(
            matches!(e.code(), "bad_entry" | "record_mismatch" | "bad_inclusion_path" | "batch_shape"),
            "byte {byte}: {e}"
        );
    }
    for i in 0..good.entry.path.len() {
        for bit in [0, 77, 255] {
            let mut b = good.clone();
            b.entry.path[i].0[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(expect_err(&b, &net, "doc 7").code(), "bad_inclusion_path");
        }
    }
    let mut b = good.clone();
    b.entry.index = 6;
    assert_eq!(expect_err(&b, &net, "doc 7").code(), "bad_inclusion_path");
    let mut b = good.clone();
    b.entry.path.pop();
    assert_eq!(expect_err(&b, &net, "doc 7").code(), "bad_inclusion_path");

    let good = net.bundle(20, Some(13), &[0, 1, 2]).unwrap();
    let mut b = good.clone();
    b.batch.as_mut().unwrap().path[2].0[5] ^= 1;
    assert_eq!(expect_err(&b, &net, "batch doc 13").code(), "bad_batch_path");
    let mut b = good.clone();
    b.batch.as_mut().unwrap().index = 12;
    assert_eq!(expect_err(&b, &net, "batch doc 13").code(), "bad_batch_path");
    let mut b = good.clone();
    b.batch = None;
    assert_eq!(expect_err(&b, &net, "batch doc 13").code(), "batch_shape");
}

#[test]
fn readable_record_must_match_the_proven_bytes() {
    let net = chain();
    let mut b = net.bundle(2, None, &[0, 1, 2]).unwrap();
    b.record.title = "a different title".into();
    assert_eq!(expect_err(&b, &net, "doc 2"), VerifyError::RecordMismatch);
}

#[test]
fn checkpoint_quorum_duplicates_and_tampering() {
    let net = chain();
    let b = net.bundle(5, None, &[0, 1]).unwrap();
    assert!(matches!(
        expect_err(&b, &net, "doc 5"),
        VerifyError::Checkpoint(CheckpointError::QuorumNotMet { signed: 2, total: 4, .. })
    ));

    // Two real signatures, one of them repeated: refused, never counted as three.
    let mut b = net.bundle(5, None, &[0, 1]).unwrap();
    let mut note = SignedNote::parse(&b.checkpoint).unwrap();
    note.signatures.push(note.signatures[1].clone());
    b.checkpoint = note.render();
    assert!(matches!(expect_err(&b, &net, "doc 5"), VerifyError::Checkpoint(CheckpointError::DuplicateSigner { .. })));

    // A forged root in the note text breaks every signature.
    let mut b = net.bundle(5, None, &[0, 1, 2]).unwrap();
    let mut note = SignedNote::parse(&b.checkpoint).unwrap();
    let other_root = net.root_at(25).unwrap();
    let cp = sabt_core::checkpoint::Checkpoint::parse_body(&note.text).unwrap();
    note.text = sabt_core::checkpoint::Checkpoint { root: other_root, ..cp }.body();
    b.checkpoint = note.render();
    assert_eq!(expect_err(&b, &net, "doc 5").code(), "bad_signature");

    // A checkpoint signed by validators of another chain counts for nothing here.
    let mut other = Devnet::new("tj.sabt.test", 1_000, &[[5; 32], [6; 32], [7; 32], [8; 32]], [9; 32]);
    for i in 0..26u32 {
        other.append_record(1, 1, record(format!("x {i}").as_bytes()));
    }
    let mut b = net.bundle(5, None, &[0, 1, 2]).unwrap();
    b.checkpoint = other.cosigned_checkpoint(&[0, 1, 2, 3]);
    assert!(matches!(
        expect_err(&b, &net, "doc 5"),
        VerifyError::Checkpoint(CheckpointError::QuorumNotMet { signed: 0, .. })
    ));
}

#[test]
fn wrong_genesis_unknown_chain_and_version() {
    let net = chain();
    let b = net.bundle(1, None, &[0, 1, 2]).unwrap();
    let other = Devnet::new("tj.sabt.test", 1_000, &[[5; 32], [6; 32], [7; 32], [8; 32]], [9; 32]);
    assert_eq!(bundle::verify(&b, &other.genesis, &file("doc 1")).unwrap_err().code(), "wrong_genesis");
    let elsewhere = Devnet::new("tj.sabt.elsewhere", 1_000, &seeds(), [9; 32]);
    assert_eq!(bundle::verify(&b, &elsewhere.genesis, &file("doc 1")).unwrap_err().code(), "unknown_chain");
    let json = b.to_json().replace("\"version\": 2", "\"version\": 3");
    assert!(matches!(ProofBundle::from_json(&json), Err(VerifyError::UnsupportedVersion { version: 3, .. })));
    let json = b.to_json().replace("\"version\": 2", "\"version\": 0");
    assert!(matches!(ProofBundle::from_json(&json), Err(VerifyError::UnsupportedVersion { version: 0, .. })));
    assert_eq!(ProofBundle::from_json("{}").unwrap_err().code(), "malformed_proof");
    let json = b.to_json().replacen("\"batch\": null", "\"batch\": null, \"extra\": 1", 1);
    assert_eq!(ProofBundle::from_json(&json).unwrap_err().code(), "malformed_proof");
    // Unknown fields are refused at every level, so nothing unverified can ride along in `record`.
    let json = b.to_json().replacen("\"title\": ", "\"note\": \"unverified\", \"title\": ", 1);
    assert_eq!(ProofBundle::from_json(&json).unwrap_err().code(), "malformed_proof");
}

/// A version-1 proof file issued before version 2 existed (hex hashes), with its genesis and
/// document, as committed: it must verify for ever.
#[test]
fn a_version_1_proof_file_still_verifies() {
    let genesis = sabt_core::genesis::Genesis::from_json(include_str!("fixtures/proof-v1/genesis.json")).unwrap();
    let text = include_str!("fixtures/proof-v1/deed.txt.sabt-proof.json");
    let document = DocumentClaim::File(Fingerprint::of_bytes(include_bytes!("fixtures/proof-v1/deed.txt")));
    let b = ProofBundle::from_json(text).unwrap();
    assert_eq!(b.version, 1);
    let v = bundle::verify(&b, &genesis, &document).unwrap();
    assert_eq!((v.index, v.height, v.record.title.as_str()), (1, 2, "deed of gift"));
    // Written again as version 1 it is the same file; as version 2 it proves the same.
    assert_eq!(b.to_json(), text);
    let v2 = ProofBundle { version: bundle::BUNDLE_VERSION, ..b.clone() };
    let again = ProofBundle::from_json(&v2.to_json()).unwrap();
    assert_eq!(again, v2);
    assert_eq!(bundle::verify(&again, &genesis, &document), Ok(v));
    // Its other document is refused.
    assert_eq!(bundle::verify(&b, &genesis, &file("another deed")).unwrap_err().code(), "digest_mismatch");
}

#[test]
fn version_2_writes_base64_and_refuses_paths_that_are_not_whole_hashes() {
    let net = chain();
    let b = net.bundle(3, None, &[0, 1, 2]).unwrap();
    assert_eq!(b.version, 2);
    let json = b.to_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let path = value["entry"]["path"].as_str().unwrap();
    assert_eq!(path.len(), (b.entry.path.len() * 32).div_ceil(3) * 4);
    assert!(!json.contains(&b.entry.path[0].to_hex()), "v2 carries no hex path");
    let v1 = ProofBundle { version: 1, ..b.clone() }.to_json();
    assert!(v1.contains(&b.entry.path[0].to_hex()) && json.len() < v1.len(), "{} vs {}", json.len(), v1.len());
    // A path of 31 bytes, of 65 hashes, or not base64 at all, is a malformed file.
    let mut bad = value.clone();
    bad["entry"]["path"] = serde_json::Value::String("A".repeat(40) + "=");
    assert_eq!(ProofBundle::from_json(&bad.to_string()).unwrap_err().code(), "malformed_proof");
    use base64::Engine as _;
    let long = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 32 * 65]);
    bad["entry"]["path"] = serde_json::Value::String(long);
    let e = ProofBundle::from_json(&bad.to_string()).unwrap_err();
    assert!(e.to_string().contains("0 to 64 hashes"), "{e}");
    bad["entry"]["path"] = serde_json::Value::String("not base64!".into());
    assert_eq!(ProofBundle::from_json(&bad.to_string()).unwrap_err().code(), "malformed_proof");
    bad["entry"]["path"] = serde_json::Value::String(String::new());
    bad["entry"]["encoded"] = value["entry"]["encoded"].clone();
    // An empty path is well-formed, and then does not prove inclusion in a log of 25+ entries.
    let e = bundle::verify(&ProofBundle::from_json(&bad.to_string()).unwrap(), &net.genesis, &file("doc 3"));
    assert_eq!(e.unwrap_err().code(), "bad_inclusion_path");
}

//! The RFC 9162 log, instantiated with SHA-256, reproduces the Certificate Transparency reference
//! vectors (fixture: `fixtures/ct_merkle_vectors.json`, whose `source` field names the upstream
//! files), and the C2SP signed-note code reproduces the Go `sumdb/note` known-answer example
//! (`fixtures/signed_note_vectors.json`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use sabt_core::checkpoint::{NoteKey, SignedNote};
use sabt_core::hash::Hash32;
use sabt_core::merkle::{self, LogHasher, MemoryTree, Sha256};
use sabt_core::sign::SecretKey;
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", manifest_dir());
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn h(v: &Value) -> Hash32 {
    Hash32::from_hex(v.as_str().unwrap()).unwrap()
}

fn hashes(v: &Value) -> Vec<Hash32> {
    v.as_array().unwrap().iter().map(h).collect()
}

fn ct_tree(v: &Value) -> MemoryTree<Sha256> {
    let mut tree = MemoryTree::<Sha256>::new();
    for leaf in v["leaves"].as_array().unwrap() {
        tree.push(&hex::decode(leaf.as_str().unwrap()).unwrap());
    }
    tree
}

#[test]
fn ct_roots_and_leaf_hashes() {
    let v = fixture("ct_merkle_vectors.json");
    assert!(v["source"].as_str().unwrap().contains("transparency-dev/merkle"));
    let tree = ct_tree(&v);
    assert_eq!(tree.root_at(0).unwrap(), h(&v["empty_root"]));
    assert_eq!(Sha256::empty_root(), h(&v["empty_root"]));
    for (leaf, expected) in v["leaves"].as_array().unwrap().iter().zip(v["leaf_hashes"].as_array().unwrap()) {
        assert_eq!(Sha256::hash_leaf(&hex::decode(leaf.as_str().unwrap()).unwrap()), h(expected));
    }
    let roots = v["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 8);
    for r in roots {
        assert_eq!(tree.root_at(r["size"].as_u64().unwrap()).unwrap(), h(&r["root"]), "size {}", r["size"]);
    }
    assert_eq!(tree.root().to_hex(), "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328");
}

#[test]
fn ct_inclusion_proofs() {
    let v = fixture("ct_merkle_vectors.json");
    let tree = ct_tree(&v);
    let cases = v["inclusion"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let (index, size) = (c["leaf_index"].as_u64().unwrap(), c["tree_size"].as_u64().unwrap());
        let expected = hashes(&c["path"]);
        assert_eq!(tree.inclusion_proof(index, size).unwrap(), expected, "inclusion ({index}, {size})");
        let leaf = Sha256::hash_leaf(&hex::decode(v["leaves"][index as usize].as_str().unwrap()).unwrap());
        merkle::verify_inclusion::<Sha256>(&leaf, index, size, &expected, &tree.root_at(size).unwrap()).unwrap();
    }
}

#[test]
fn ct_consistency_proofs() {
    let v = fixture("ct_merkle_vectors.json");
    let tree = ct_tree(&v);
    let cases = v["consistency"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for c in cases {
        let (old, new) = (c["size1"].as_u64().unwrap(), c["size2"].as_u64().unwrap());
        let expected = hashes(&c["proof"]);
        assert_eq!(tree.consistency_proof(old, new).unwrap(), expected, "consistency ({old}, {new})");
        merkle::verify_consistency::<Sha256>(
            old,
            new,
            &tree.root_at(old).unwrap(),
            &tree.root_at(new).unwrap(),
            &expected,
        )
        .unwrap();
    }
}

#[test]
fn go_sumdb_note_known_answer() {
    let v = fixture("signed_note_vectors.json");
    let seed: [u8; 32] = hex::decode(v["private_seed_hex"].as_str().unwrap()).unwrap().try_into().unwrap();
    let sk = SecretKey::from_seed(&seed);
    let pk_hex = v["public_key_hex"].as_str().unwrap();
    assert_eq!(sk.public().to_hex(), pk_hex);
    let name = v["name"].as_str().unwrap();
    let key = NoteKey::new(name, sk.public()).unwrap();
    assert_eq!(hex::encode(key.key_id()), v["key_id_hex"].as_str().unwrap());
    assert_eq!(key.verifier_string(), v["verifier_key"].as_str().unwrap());
    assert_eq!(NoteKey::parse_verifier(v["verifier_key"].as_str().unwrap()).unwrap(), key);

    // Signing reproduces Go's note byte for byte (Ed25519 is deterministic).
    let text = v["text"].as_str().unwrap();
    let note = SignedNote { text: text.to_string(), signatures: vec![SignedNote::sign_line(text, name, &sk)] };
    assert_eq!(note.render(), v["signed_note"].as_str().unwrap());

    // Parsing Go's note gives back the same signature, which verifies.
    let parsed = SignedNote::parse(v["signed_note"].as_str().unwrap()).unwrap();
    assert_eq!(parsed, note);
    assert!(key.verifies(&parsed));

    // A note also signed by a key we do not know: ours still verifies, theirs is just another line.
    let doubly = SignedNote::parse(v["doubly_signed_note"].as_str().unwrap()).unwrap();
    assert_eq!(doubly.signatures.len(), 2);
    assert!(key.verifies(&doubly));
    let enoch = NoteKey::parse_verifier(v["enoch_verifier_key"].as_str().unwrap()).unwrap();
    assert!(enoch.verifies(&doubly));
    assert!(!enoch.verifies(&parsed));

    // A changed text no longer verifies.
    let mut changed = parsed.clone();
    changed.text = changed.text.replace("answer", "Answer");
    assert!(!key.verifies(&changed));

    for bad in v["bad_verifier_keys"].as_array().unwrap() {
        assert!(NoteKey::parse_verifier(bad.as_str().unwrap()).is_err(), "{bad}");
    }
}

/// The package's directory, as cargo gives it to the running test (a test binary reused from a
/// shared target directory may have been built in another checkout).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

//! `sabt-demo` through its real binary: the genesis and proof it writes verify with the core
//! verifier for the document it anchored, and not for any other document.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use assert_cmd::Command;
use sabt_core::bundle::{self, DocumentClaim, ProofBundle};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::genesis::Genesis;

#[test]
fn demo_writes_proofs_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    let docs = [dir.path().join("a.txt"), dir.path().join("b.txt")];
    std::fs::write(&docs[0], b"first deed").unwrap();
    std::fs::write(&docs[1], b"second deed").unwrap();
    let out = dir.path().join("out");
    Command::new(env!("CARGO_BIN_EXE_sabt-demo")).arg("--out").arg(&out).args(&docs).assert().success();

    let genesis = Genesis::from_json(&std::fs::read_to_string(out.join("genesis.json")).unwrap()).unwrap();
    for (name, content, other) in
        [("a.txt", &b"first deed"[..], &b"second deed"[..]), ("b.txt", b"second deed", b"first deed")]
    {
        let proof = std::fs::read_to_string(out.join(format!("{name}.sabt-proof.json"))).unwrap();
        let b = ProofBundle::from_json(&proof).unwrap();
        let v = bundle::verify(&b, &genesis, &DocumentClaim::File(Fingerprint::of_bytes(content))).unwrap();
        assert_eq!(v.checkpoint.signers.len(), 3);
        let e = bundle::verify(&b, &genesis, &DocumentClaim::File(Fingerprint::of_bytes(other))).unwrap_err();
        assert_eq!(e.code(), "digest_mismatch");
    }

    // Fresh keys every run: a second demo chain is a different chain.
    let out2 = dir.path().join("out2");
    Command::new(env!("CARGO_BIN_EXE_sabt-demo")).arg("--out").arg(&out2).arg(&docs[0]).assert().success();
    let genesis2 = Genesis::from_json(&std::fs::read_to_string(out2.join("genesis.json")).unwrap()).unwrap();
    assert_ne!(genesis.hash(), genesis2.hash());
}

#[test]
fn demo_refuses_a_missing_document() {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_sabt-demo"))
        .arg("--out")
        .arg(dir.path())
        .arg(dir.path().join("nope.pdf"))
        .assert()
        .failure();
}

//! `sabt verify` through the real binary: exit codes and messages for a valid proof, a tampered
//! file, a tampered proof, a wrong genesis, a quorum not met, duplicated signatures, and input
//! errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use assert_cmd::Command;
use sabt_core::checkpoint::SignedNote;
use sabt_core::devnet::Devnet;
use sabt_core::entry::{AccessClass, ArchiveRecord, RecordKind, ReferenceCode};
use sabt_core::fingerprint::Fingerprint;
use std::path::{Path, PathBuf};

struct Fixture {
    dir: tempfile::TempDir,
    net: Devnet,
    index: u64,
}

const DOC: &[u8] = b"Land-use certificate No. 7, Khujand, 2003\n";

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut net = Devnet::new("tj.sabt.cli", 5_000, &[[1; 32], [2; 32], [3; 32], [4; 32]], [9; 32]);
    for i in 0..9u8 {
        net.append_record(1, 6_000, rec(Fingerprint::of_bytes(&[i])));
    }
    let index = net.append_record(2, 1_795_424_400_000, rec(Fingerprint::of_bytes(DOC)));
    net.append_record(3, 1_795_424_401_000, rec(Fingerprint::of_bytes(b"later")));
    std::fs::write(dir.path().join("genesis.json"), net.genesis.to_json()).unwrap();
    std::fs::write(dir.path().join("cert.pdf"), DOC).unwrap();
    let f = Fixture { dir, net, index };
    f.write_proof("cert.pdf.sabt-proof.json", &[0, 1, 2], |_| {});
    f
}

fn rec(fingerprint: Fingerprint) -> ArchiveRecord {
    ArchiveRecord {
        fingerprint,
        kind: RecordKind::LandProperty,
        reference: ReferenceCode {
            repository: "Sughd archive".into(),
            fund: "5".into(),
            inventory: "1".into(),
            file: "77".into(),
            sheets: None,
        },
        creating_agency: "Land committee, Khujand".into(),
        title: "land-use certificate".into(),
        date_from: Some("2003".into()),
        date_to: None,
        access: AccessClass::Public,
    }
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_proof(
        &self,
        name: &str,
        signers: &[usize],
        edit: impl FnOnce(&mut sabt_core::bundle::ProofBundle),
    ) -> PathBuf {
        let mut b = self.net.bundle(self.index, None, signers).unwrap();
        edit(&mut b);
        let p = self.path(name);
        std::fs::write(&p, b.to_json()).unwrap();
        p
    }

    fn verify(&self, doc: &Path, proof: &Path) -> assert_cmd::assert::Assert {
        Command::new(env!("CARGO_BIN_EXE_sabt"))
            .args(["verify"])
            .arg(doc)
            .arg("--proof")
            .arg(proof)
            .arg("--genesis")
            .arg(self.path("genesis.json"))
            .assert()
    }
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).unwrap()
}

#[test]
fn valid_proof_exits_0_and_reports_when_and_who() {
    let f = fixture();
    let a = f.verify(&f.path("cert.pdf"), &f.path("cert.pdf.sabt-proof.json")).code(0);
    let out = stdout(&a);
    assert!(out.starts_with("VALID"), "{out}");
    assert!(out.contains("entry 9 at height 2, 2026-11-23T09:00:00.000Z"), "{out}");
    assert!(out.contains("signed by agency-1, agency-2, agency-3 (3 of 4 voting power)"), "{out}");

    // The default proof path is FILE.sabt-proof.json; --json gives machine output.
    let a = Command::new(env!("CARGO_BIN_EXE_sabt"))
        .args(["verify", "--json", "--genesis"])
        .arg(f.path("genesis.json"))
        .arg(f.path("cert.pdf"))
        .assert()
        .code(0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&a)).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["index"], 9);
    assert_eq!(v["height"], 2);
    assert_eq!(v["record"]["kind"], "land_property");
}

#[test]
fn digest_instead_of_file() {
    let f = fixture();
    let fp = Fingerprint::of_bytes(DOC);
    for d in [format!("sha256:{}", fp.sha256), format!("blake3:{}", fp.blake3), fp.sha256.to_hex()] {
        Command::new(env!("CARGO_BIN_EXE_sabt"))
            .args(["verify", "--digest", &d, "--proof"])
            .arg(f.path("cert.pdf.sabt-proof.json"))
            .arg("--genesis")
            .arg(f.path("genesis.json"))
            .assert()
            .code(0);
    }
    Command::new(env!("CARGO_BIN_EXE_sabt"))
        .args(["verify", "--digest", &format!("sha256:{}", fp.blake3), "--proof"])
        .arg(f.path("cert.pdf.sabt-proof.json"))
        .arg("--genesis")
        .arg(f.path("genesis.json"))
        .assert()
        .code(1);
}

#[test]
fn tampered_file_exits_1() {
    let f = fixture();
    let mut doc = DOC.to_vec();
    doc[10] ^= 1;
    std::fs::write(f.path("cert-changed.pdf"), doc).unwrap();
    let a = f.verify(&f.path("cert-changed.pdf"), &f.path("cert.pdf.sabt-proof.json")).code(1);
    assert!(stdout(&a).contains("INVALID (digest_mismatch)"), "{}", stdout(&a));
}

#[test]
fn tampered_proof_exits_1_with_its_reason() {
    let f = fixture();
    let p = f.write_proof("path.json", &[0, 1, 2], |b| b.entry.path[0].0[0] ^= 1);
    assert!(stdout(&f.verify(&f.path("cert.pdf"), &p).code(1)).contains("INVALID (bad_inclusion_path)"));

    let p = f.write_proof("quorum.json", &[0, 1], |_| {});
    assert!(stdout(&f.verify(&f.path("cert.pdf"), &p).code(1)).contains("INVALID (quorum_not_met)"));

    let p = f.write_proof("dup.json", &[0, 1], |b| {
        let mut n = SignedNote::parse(&b.checkpoint).unwrap();
        n.signatures.push(n.signatures[0].clone());
        b.checkpoint = n.render();
    });
    assert!(stdout(&f.verify(&f.path("cert.pdf"), &p).code(1)).contains("INVALID (duplicate_signer)"));

    let p = f.path("garbage.json");
    std::fs::write(&p, "{\"format\": \"sabt-proof\", \"version\": 1}").unwrap();
    assert!(stdout(&f.verify(&f.path("cert.pdf"), &p).code(1)).contains("INVALID (malformed_proof)"));
}

#[test]
fn wrong_genesis_exits_1() {
    let f = fixture();
    let other = Devnet::new("tj.sabt.cli", 5_000, &[[5; 32], [6; 32], [7; 32], [8; 32]], [9; 32]);
    std::fs::write(f.path("genesis.json"), other.genesis.to_json()).unwrap();
    let a = f.verify(&f.path("cert.pdf"), &f.path("cert.pdf.sabt-proof.json")).code(1);
    assert!(stdout(&a).contains("INVALID (wrong_genesis)"), "{}", stdout(&a));
}

#[test]
fn input_errors_exit_2_and_say_what_to_do() {
    let f = fixture();
    let a = f.verify(&f.path("missing.pdf"), &f.path("cert.pdf.sabt-proof.json")).code(2);
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert!(err.contains("cannot open document") && err.contains("check the path"), "{err}");

    std::fs::write(f.path("genesis.json"), "{ not json").unwrap();
    let a = f.verify(&f.path("cert.pdf"), &f.path("cert.pdf.sabt-proof.json")).code(2);
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert!(err.contains("not a valid genesis"), "{err}");

    Command::new(env!("CARGO_BIN_EXE_sabt")).args(["verify"]).assert().code(2);
    Command::new(env!("CARGO_BIN_EXE_sabt")).args(["frobnicate"]).assert().code(2);
}

#[test]
fn fingerprint_matches_sha256sum_semantics() {
    let f = fixture();
    let a = Command::new(env!("CARGO_BIN_EXE_sabt"))
        .args(["fingerprint", "--json"])
        .arg(f.path("cert.pdf"))
        .assert()
        .code(0);
    let v: serde_json::Value = serde_json::from_str(stdout(&a).trim()).unwrap();
    assert_eq!(v["sha256"], Fingerprint::of_bytes(DOC).sha256.to_hex());
    assert_eq!(v["bytes"], DOC.len());
}

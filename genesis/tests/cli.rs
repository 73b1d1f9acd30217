//! `sabt-genesis` through its real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use assert_cmd::Command;
use sabt_core::devnet::Devnet;

#[test]
fn inspect_and_hash_a_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::new("tj.sabt.cli", 1, &[[1; 32], [2; 32], [3; 32]], [9; 32]);
    let path = dir.path().join("genesis.json");
    std::fs::write(&path, net.genesis.to_json()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sabt-genesis")).arg("hash").arg(&path).assert().code(0);
    assert_eq!(String::from_utf8(out.get_output().stdout.clone()).unwrap(), format!("{}\n", net.genesis.hash()));
    let out = Command::new(env!("CARGO_BIN_EXE_sabt-genesis")).arg("inspect").arg(&path).assert().code(0);
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("chain_id      tj.sabt.cli"), "{text}");
    assert!(text.contains("validators    3 (total power 3, quorum 3)"), "{text}");
}

#[test]
fn invalid_genesis_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let net = Devnet::new("tj.sabt.cli", 1, &[[1; 32], [1; 32]], [9; 32]);
    let path = dir.path().join("genesis.json");
    std::fs::write(&path, net.genesis.to_json()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sabt-genesis")).arg("inspect").arg(&path).assert().code(2);
    let err = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        err.contains("is not a valid genesis document") && err.contains("admin key is shared with another agency"),
        "{err}"
    );
    Command::new(env!("CARGO_BIN_EXE_sabt-genesis")).arg("hash").arg(dir.path().join("missing.json")).assert().code(2);
}

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

#[test]
fn testnet_takes_its_block_interval_and_refuses_one_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    Command::new(env!("CARGO_BIN_EXE_sabt-genesis"))
        .args(["testnet", "--validators", "2", "--block-interval-ms", "250", "--out"])
        .arg(&out)
        .assert()
        .code(0);
    let g = sabt_genesis::load(&out.join("genesis.json")).unwrap();
    assert_eq!(g.params.block_interval_ms, 250);
    assert_eq!(sabt_genesis::load(&out.join("node-2/genesis.json")).unwrap().hash(), g.hash());

    let bad = dir.path().join("bad");
    let r = Command::new(env!("CARGO_BIN_EXE_sabt-genesis"))
        .args(["testnet", "--block-interval-ms", "5", "--out"])
        .arg(&bad)
        .assert()
        .code(2);
    let err = String::from_utf8(r.get_output().stderr.clone()).unwrap();
    assert!(err.contains("block_interval_ms") && err.contains("10 to 600000"), "{err}");
    assert!(!bad.join("genesis.json").exists(), "a refused testnet left a genesis behind");
}

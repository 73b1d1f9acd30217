#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! The agency network with real `sabt-node` processes on 127.0.0.1: agreement, crash and pause
//! faults, restart of the whole network, resync of a wiped node, a lagging node syncing blocks of
//! the largest size the genesis allows, and a stranger that is not in the genesis. After each fault the invariants are checked: every node holds byte-identical blocks,
//! hash-chained from the genesis, each with a valid commit certificate and a quorum-cosigned
//! checkpoint, and nothing acknowledged is lost.
//!
//! Each test uses its own port range; clusters run one at a time.

use sabt_core::codec;
use sabt_core::entry::{AccessClass, ArchiveRecord, RecordKind, ReferenceCode};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::sign::SecretKey;
use sabt_core::tx::{SignedTx, Transaction, TxBody};
use sabt_tests::cluster::{Cluster, Setup, agent, bin};
use std::process::Command;
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn max_height(c: &Cluster, nodes: &[usize]) -> u64 {
    nodes.iter().filter_map(|&i| c.height(i)).max().unwrap_or(0)
}

#[test]
fn four_nodes_commit_identical_blocks_and_transactions() {
    let c = Cluster::start(4, 31000).unwrap();
    c.wait_all(2, SECS(90)).unwrap();
    // Transactions submitted to any node are committed, whoever proposes.
    let mut ids = Vec::new();
    for i in 0..4 {
        let key = c.admin_key(i).unwrap();
        for nonce in 0..3 {
            let tx = c.anchor_tx(&key, nonce, u64::from(i as u32) * 10 + nonce);
            let (status, v) = c.submit(i, &tx).unwrap();
            assert_eq!(status, 202, "{v}");
            ids.push(tx.id());
        }
    }
    c.wait_committed(&[0], &ids, SECS(30)).unwrap();
    // Once committed, a replay is refused at admission by every node, with a stable code.
    let key = c.admin_key(0).unwrap();
    for i in 0..4 {
        let (status, v) = c.submit(i, &c.anchor_tx(&key, 0, 999)).unwrap();
        assert_eq!((status, v["code"].as_str().unwrap()), (422, "nonce_used"), "{v}");
        let (status, v) = c.submit(i, &c.anchor_tx(&key, 0, 0)).unwrap();
        assert_eq!((status, v["code"].as_str().unwrap()), (409, "committed"), "{v}");
    }
    let top = c.wait_height(0, c.height(0).unwrap() + 1, SECS(30)).unwrap();
    for i in 1..4 {
        c.wait_height(i, top, SECS(30)).unwrap();
    }
    c.check_chain(&[0, 1, 2, 3], top).unwrap();
    let (_, status) = c.get(2, "/v1/status").unwrap();
    assert_eq!(status["log_size"], 12);
    // The CLI shows the same thing.
    let out = Command::new(bin("sabt")).args(["status", "--node", &c.nodes[1].url, "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["height"].as_u64().unwrap() >= top);
    assert_eq!(v["block_hash"].as_str().unwrap().len(), 64);
    let out = Command::new(bin("sabt")).args(["block", "1", "--node", &c.nodes[3].url, "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["height"], 1);
    assert_eq!(v["hash"].as_str().unwrap(), c.block(0, 1).unwrap().0.hash().to_hex());
    // Health.
    assert_eq!(c.get(0, "/livez").unwrap().0, 200);
    assert_eq!(c.get(0, "/readyz").unwrap().0, 200);
    c.finish(&[0, 1, 2, 3]).unwrap();
}

#[test]
fn a_killed_node_is_not_missed_and_catches_up_after_restart() {
    let mut c = Cluster::start(4, 31300).unwrap();
    c.wait_all(2, SECS(90)).unwrap();
    // A transaction acknowledged by a node that dies at once still reaches the other proposers.
    let key = c.admin_key(3).unwrap();
    let tx = c.anchor_tx(&key, 0, 7777);
    assert_eq!(c.submit(3, &tx).unwrap().0, 202);
    std::thread::sleep(Duration::from_millis(500));
    c.kill(3).unwrap();
    let h = max_height(&c, &[0, 1, 2]);
    for i in 0..3 {
        c.wait_height(i, h + 3, SECS(40)).unwrap();
    }
    let deadline = Instant::now() + SECS(20);
    while c.committed_at(0, &tx.id()).is_none() {
        assert!(Instant::now() < deadline, "the forwarded transaction was not committed without its node");
        std::thread::sleep(Duration::from_millis(300));
    }
    c.start_node(3).unwrap();
    let tip = max_height(&c, &[0, 1, 2]);
    let started = Instant::now();
    c.wait_height(3, tip, SECS(20)).unwrap();
    eprintln!("restarted node caught up to {tip} in {:?}", started.elapsed());
    c.wait_all(tip, SECS(30)).unwrap();
    c.check_chain(&[0, 1, 2, 3], tip).unwrap();
    c.finish(&[0, 1, 2, 3]).unwrap();
}

#[test]
fn two_of_four_paused_halts_commits_and_acknowledgements_until_resumed() {
    let mut c = Cluster::start(4, 31600).unwrap();
    c.wait_all(2, SECS(90)).unwrap();
    c.pause(2).unwrap();
    c.pause(3).unwrap();
    // Let a block that was already being decided finish, then watch for progress.
    std::thread::sleep(SECS(2));
    let h0 = max_height(&c, &[0, 1]);
    let key = c.admin_key(0).unwrap();
    let tx = c.anchor_tx(&key, 0, 4242);
    let (status, _) = c.submit(0, &tx).unwrap();
    assert_eq!(status, 202, "admission still works; commitment does not");
    std::thread::sleep(SECS(6));
    assert_eq!(max_height(&c, &[0, 1]), h0, "a block committed with only half the voting power");
    assert_eq!(c.committed_at(0, &tx.id()), None, "a transaction was acknowledged without a quorum");
    c.resume(2).unwrap();
    c.resume(3).unwrap();
    c.wait_height(0, h0 + 1, SECS(20)).unwrap();
    let deadline = Instant::now() + SECS(20);
    while c.committed_at(0, &tx.id()).is_none() {
        assert!(Instant::now() < deadline, "the waiting transaction was not committed after resume");
        std::thread::sleep(Duration::from_millis(300));
    }
    let top = c.height(0).unwrap();
    for i in 1..4 {
        c.wait_height(i, top, SECS(30)).unwrap();
    }
    c.check_chain(&[0, 1, 2, 3], top).unwrap();
    c.finish(&[0, 1, 2, 3]).unwrap();
}

#[test]
fn whole_network_killed_and_restarted_loses_nothing_acknowledged() {
    let mut c = Cluster::start(4, 31900).unwrap();
    c.wait_all(2, SECS(90)).unwrap();
    let mut acked = Vec::new();
    for i in 0..4 {
        let key = c.admin_key(i).unwrap();
        for nonce in 0..5 {
            let tx = c.anchor_tx(&key, nonce, 100 + u64::from(i as u32) * 10 + nonce);
            assert_eq!(c.submit(i, &tx).unwrap().0, 202);
            acked.push(tx.id());
        }
    }
    let deadline = Instant::now() + SECS(30);
    let heights = loop {
        let heights = acked.iter().map(|id| c.committed_at(1, id)).collect::<Vec<_>>();
        if heights.iter().all(Option::is_some) {
            break heights;
        }
        assert!(Instant::now() < deadline, "transactions not committed");
        std::thread::sleep(Duration::from_millis(300));
    };
    for i in 0..4 {
        c.kill(i).unwrap();
    }
    for i in 0..4 {
        c.start_node(i).unwrap();
    }
    let before = heights.iter().flatten().max().copied().unwrap();
    for i in 0..4 {
        c.wait_height(i, before + 2, SECS(60)).unwrap();
    }
    for i in 0..4 {
        for (id, h) in acked.iter().zip(&heights) {
            assert_eq!(c.committed_at(i, id), *h, "node {} lost or moved transaction {id}", i + 1);
        }
    }
    let top = max_height(&c, &[0, 1, 2, 3]).min(before + 2);
    c.check_chain(&[0, 1, 2, 3], top).unwrap();
    c.finish(&[0, 1, 2, 3]).unwrap();
}

#[test]
fn a_wiped_node_resyncs_from_genesis_and_ends_identical() {
    let mut c = Cluster::start(4, 32200).unwrap();
    c.wait_all(4, SECS(90)).unwrap();
    let st = c.terminate(3).unwrap();
    assert!(st.success(), "SIGTERM must stop the node cleanly, got {st}");
    std::fs::remove_dir_all(c.nodes[3].home.join("data")).unwrap();
    c.start_node(3).unwrap();
    let tip = max_height(&c, &[0, 1, 2]);
    c.wait_height(3, tip, SECS(60)).unwrap();
    c.wait_all(tip, SECS(30)).unwrap();
    c.check_chain(&[3, 0, 1, 2], tip).unwrap();
    c.finish(&[0, 1, 2, 3]).unwrap();
}

#[test]
fn a_node_outside_the_genesis_cannot_connect_or_influence() {
    let c = Cluster::start(4, 32500).unwrap();
    c.wait_all(2, SECS(90)).unwrap();
    // A stranger with its own keys, and a genesis of its own that adds it beside the real validators,
    // so it dials them and speaks the same protocol.
    let rogue = c.dir.path().join("rogue");
    let out = Command::new(bin("sabt-node")).args(["init", "--name", "rogue", "--home"]).arg(&rogue).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |name: &str| text.lines().find_map(|l| l.trim().strip_prefix(name)).unwrap().trim().to_string();
    let mut g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.dir.path().join("genesis.json")).unwrap()).unwrap();
    g["agencies"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "rogue",
        "roles": ["archive"],
        "admin_key": field("admin_key"),
        "validator": {
            "consensus_key": field("consensus_key"),
            "peer_id": field("peer_id"),
            "addresses": ["/ip4/127.0.0.1/tcp/32599"],
            "power": 100
        }
    }));
    std::fs::write(rogue.join("genesis.json"), serde_json::to_string_pretty(&g).unwrap()).unwrap();
    let cfg = std::fs::read_to_string(rogue.join("config.toml"))
        .unwrap()
        .replace("/ip4/0.0.0.0/tcp/26656", "/ip4/127.0.0.1/tcp/32599")
        .replace("127.0.0.1:26657", "127.0.0.1:32598")
        .replace("127.0.0.1:26660", "127.0.0.1:32597");
    std::fs::write(rogue.join("config.toml"), cfg).unwrap();
    let log = std::fs::File::create(rogue.join("log")).unwrap();
    let mut child = Command::new(bin("sabt-node"))
        .args(["start", "--home"])
        .arg(&rogue)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let h0 = max_height(&c, &[0, 1, 2, 3]);
    std::thread::sleep(SECS(8));
    // The honest network goes on, unaffected and identical.
    let h1 = c.wait_height(0, h0 + 2, SECS(30)).unwrap();
    for i in 1..4 {
        c.wait_height(i, h1, SECS(30)).unwrap();
    }
    c.check_chain(&[0, 1, 2, 3], h1).unwrap();
    // The stranger was refused and got nothing: no blocks, not even by sync.
    let status: serde_json::Value =
        agent().get("http://127.0.0.1:32598/v1/status").call().unwrap().body_mut().read_json().unwrap();
    assert_eq!(status["height"], 0, "the stranger obtained blocks");
    let refused = (0..4).any(|i| c.log(i).contains("Rejecting connection from non-persistent peer"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(refused, "no node logged refusing the stranger");
    c.finish(&[0, 1, 2, 3]).unwrap();
}

#[test]
fn a_stopped_validator_loses_its_turns_until_it_is_back() {
    let mut c = Cluster::start(4, 29200).unwrap();
    c.wait_all(2, SECS(90)).unwrap();
    let fourth = c.genesis.agencies[3].validator.as_ref().unwrap().consensus_key;
    c.pause(3).unwrap();
    // Its first turn after the pause costs a propose timeout; from the next rotation on it is
    // moved to the end of the order, except in probe rotations (one in four).
    let from = max_height(&c, &[0, 1, 2]) + 5;
    let to = from + 31;
    c.wait_height(0, to, SECS(240)).unwrap();
    let mut later_rounds = Vec::new();
    for h in from..=to {
        let (block, commit, _) = c.block(0, h).unwrap();
        assert_ne!(block.header.proposer, fourth, "a stopped validator proposed block {h}");
        if commit.round > 0 {
            later_rounds.push(h);
        }
    }
    // Round robin alone would wait at each of its 8 turns in these 32 heights; the probe
    // rotations hold 2 of them.
    assert!(later_rounds.len() <= 3, "heights decided after round 0: {later_rounds:?}");
    c.resume(3).unwrap();
    let resumed = max_height(&c, &[0, 1, 2]);
    // Back, it proposes at its next probe turn (round robin names it at heights h with
    // (h - 1) % 4 == 3), and then at each of its turns again.
    let deadline = Instant::now() + SECS(120);
    let mut h = resumed + 1;
    let first = loop {
        assert!(Instant::now() < deadline, "the resumed validator proposed nothing from height {resumed} on");
        if (h - 1) % 4 != 3 {
            h += 1;
            continue;
        }
        if c.height(0).unwrap_or(0) < h {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        if c.block(0, h).unwrap().0.header.proposer == fourth {
            break h;
        }
        h += 4;
    };
    let next_turn = first + 4;
    c.wait_height(0, next_turn, SECS(60)).unwrap();
    assert_eq!(c.block(0, next_turn).unwrap().0.header.proposer, fourth, "its next turn went to another");
    for i in 1..4 {
        c.wait_height(i, next_turn, SECS(60)).unwrap();
    }
    c.check_chain(&[0, 1, 2, 3], next_turn).unwrap();
    c.finish(&[0, 1, 2, 3]).unwrap();
}

/// Anchor of record `n` by `key`, as large as an anchor gets: every text field at its longest,
/// in four-byte characters (about 4.2 KiB a transaction).
fn largest_anchor(c: &Cluster, key: &SecretKey, nonce: u64, n: u64) -> SignedTx {
    // U+1D538, four bytes in UTF-8.
    let wide = |chars: usize| "\u{1D538}".repeat(chars);
    let record = ArchiveRecord {
        fingerprint: Fingerprint::of_bytes(&n.to_be_bytes()),
        kind: RecordKind::CivilStatus,
        reference: ReferenceCode {
            repository: wide(128),
            fund: wide(64),
            inventory: wide(64),
            file: wide(64),
            sheets: Some(wide(64)),
        },
        creating_agency: wide(128),
        title: wide(512),
        date_from: Some("1950".into()),
        date_to: None,
        access: AccessClass::Restricted,
    };
    Transaction { chain_id: c.genesis.chain_id.clone(), signer: key.public(), nonce, body: TxBody::Anchor(record) }
        .sign(key)
}

/// Submits `txs` to node `i` in batches that fit its 1 MiB request limit; every one must be taken.
fn submit_all(c: &Cluster, i: usize, txs: &[SignedTx]) {
    let agent = agent();
    for chunk in txs.chunks(100) {
        let body =
            serde_json::json!({ "txs": chunk.iter().map(|t| hex::encode(codec::encode(t))).collect::<Vec<_>>() });
        let mut r = agent.post(format!("{}/v1/txs/batch", c.nodes[i].url)).send_json(&body).unwrap();
        let v: serde_json::Value = r.body_mut().read_json().unwrap();
        for result in v["results"].as_array().unwrap() {
            assert!(result["code"].is_null(), "a transaction was refused: {result}");
        }
    }
}

/// Waits until node `i` has committed every transaction of `txs` (each signer's last is enough:
/// a signer's transactions commit in nonce order).
fn wait_all_committed(c: &Cluster, i: usize, txs: &[SignedTx], within: Duration) {
    let mut last = std::collections::BTreeMap::new();
    for t in txs {
        last.insert(t.tx.signer, t.id());
    }
    let last: Vec<_> = last.into_values().collect();
    c.wait_committed(&[i], &last, within).unwrap();
}

#[test]
fn full_blocks_cross_the_network_and_a_lagging_node_syncs_them() {
    const MAX_BLOCK: u64 = 16 << 20;
    let setup = Setup { genesis_args: vec!["--max-block-bytes".into(), MAX_BLOCK.to_string()], ..Setup::new(4, 30300) };
    let mut c = Cluster::start_with(setup).unwrap();
    assert_eq!(c.genesis.params.max_block_bytes, MAX_BLOCK);
    c.wait_all(2, SECS(90)).unwrap();
    // 80 clerks, 20 authorised by each agency's admin: 64 transactions each may wait in a pool,
    // 5,120 of the largest anchors in all, 21 MB: five full blocks or more, over a sync batch.
    let clerks: Vec<SecretKey> = (0..80u8).map(|k| SecretKey::from_seed(&[k + 1; 32])).collect();
    let mut grants = Vec::new();
    for (k, clerk) in clerks.iter().enumerate() {
        let admin = c.admin_key(k % 4).unwrap();
        let body = TxBody::AuthorizeKey { key: clerk.public(), kinds: vec![RecordKind::CivilStatus], expires_ms: None };
        grants.push(
            Transaction { chain_id: c.genesis.chain_id.clone(), signer: admin.public(), nonce: (k / 4) as u64, body }
                .sign(&admin),
        );
    }
    submit_all(&c, 0, &grants);
    for i in 0..4 {
        wait_all_committed(&c, i, &grants, SECS(60));
    }
    // Node 4 stops; the others commit blocks up to the genesis's largest while it is away.
    c.terminate(3).unwrap();
    let away_from = c.height(0).unwrap();
    let txs: Vec<SignedTx> = (0..64u64)
        .flat_map(|nonce| clerks.iter().map(move |k| (k, nonce)))
        .enumerate()
        .map(|(n, (k, nonce))| largest_anchor(&c, k, nonce, n as u64))
        .collect();
    submit_all(&c, 0, &txs);
    wait_all_committed(&c, 0, &txs, SECS(180));
    let top = max_height(&c, &[0, 1, 2]);
    let sizes: Vec<usize> = (away_from + 1..=top).map(|h| c.block(0, h).unwrap().2.len()).collect();
    eprintln!("blocks {}..={top} while node 4 was away, bytes: {sizes:?}", away_from + 1);
    // The genesis allows 16 MiB; blocks are built up to what the consensus network carries, and
    // they are full: no further transaction of this size would have fitted.
    let cap = sabt_node::consensus::codec::MAX_PROPOSED_BLOCK;
    let full = sizes.iter().filter(|&&s| s + 5 * 1024 > cap && s <= cap).count();
    assert!(full >= 4, "fewer than a sync batch of full blocks ({cap} bytes): {sizes:?}");
    // Node 4 comes back and catches up by sync through those blocks.
    let started = Instant::now();
    c.start_node(3).unwrap();
    c.wait_height(3, top, SECS(180)).unwrap();
    eprintln!("node 4 caught up {} blocks in {:?}", top - away_from, started.elapsed());
    c.finish(&[0, 1, 2, 3]).unwrap();
}

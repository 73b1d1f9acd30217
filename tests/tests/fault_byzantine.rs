#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! One validator of four lies (`SABT_FAULTS`, compiled into test builds only), in each of the ways
//! docs/ARCHITECTURE.md's threat model names; the three honest nodes commit identical valid blocks
//! and keep going (a new block within 20 s, again and again), take every transaction submitted,
//! count what they refused, and keep equivocation evidence. Each test ends with the full check of
//! the honest nodes' chains ([`Cluster::finish`]): identical blocks whose bodies match their
//! headers, valid certificates, quorum-cosigned checkpoints, no conflicting signature, and
//! `sabt audit chain`.

use sabt_core::hash::Hash32;
use sabt_tests::cluster::{Cluster, Setup};
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;
const HONEST: [usize; 3] = [0, 1, 2];
const LIAR: usize = 3;

fn liar(base_port: u16, faults: &str) -> Cluster {
    liar_with(Setup::new(4, base_port), faults)
}

fn liar_with(mut setup: Setup, faults: &str) -> Cluster {
    setup.env.push((LIAR, "SABT_FAULTS".into(), faults.into()));
    let c = Cluster::start_with(setup).unwrap();
    for i in HONEST {
        c.wait_height(i, 2, SECS(90)).unwrap();
    }
    c
}

/// Submits a transaction from each agency to its own node (the liar's included, so its blocks
/// are not empty), with nonces from `nonce`; returns their ids.
fn load(c: &Cluster, nonce: u64) -> Vec<Hash32> {
    let mut ids = Vec::new();
    for i in 0..4 {
        let key = c.admin_key(i).unwrap();
        for k in 0..2 {
            let n = nonce * 2 + k;
            let tx = c.anchor_tx(&key, n, (i as u64) << 32 | n);
            let (status, v) = c.submit(i, &tx).unwrap();
            if i == LIAR {
                // The liar's own answers prove nothing; what it took reaches the honest nodes
                // only when it proposes.
                continue;
            }
            assert_eq!(status, 202, "node {}: {v}", i + 1);
            ids.push(tx.id());
        }
    }
    ids
}

fn all_committed(c: &Cluster, ids: &[Hash32], within: Duration) {
    c.wait_committed(&HONEST, ids, within).unwrap();
}

fn dropped(c: &Cluster, reason: &str) -> f64 {
    HONEST.iter().map(|&i| c.metric(i, "sabt_consensus_dropped", &format!("reason=\"{reason}\""))).sum()
}

#[test]
fn a_proposer_that_swaps_bodies_and_sends_bad_parts_is_outvoted() {
    // Blocks of at most 1 MiB, so that the liar's part over the limit is within what the network
    // carries (4 MiB) and reaches the honest nodes' check.
    let setup = Setup { genesis_args: vec!["--max-block-bytes".into(), (1 << 20).to_string()], ..Setup::new(4, 25000) };
    let c = liar_with(setup, "[app]\nswap_body = true\nbad_parts = true\n");
    let mut ids = Vec::new();
    c.keeps_going(&HONEST, 8, SECS(20), |w| ids.extend(load(&c, w as u64))).unwrap();
    all_committed(&c, &ids, SECS(30));
    // The liar proposed in its turns: each lie reached the honest nodes and was refused there.
    for reason in ["swapped_body", "relayed_part", "bad_signature", "bad_block", "oversized"] {
        assert!(dropped(&c, reason) > 0.0, "no honest node refused a part as {reason}");
    }
    c.finish(&HONEST).unwrap();
}

#[test]
fn a_validator_cosigning_wrong_checkpoints_is_left_out_of_every_certificate() {
    let c = liar(25150, "[app]\nwrong_extension = true\n");
    let mut ids = Vec::new();
    c.keeps_going(&HONEST, 6, SECS(20), |w| ids.extend(load(&c, w as u64))).unwrap();
    all_committed(&c, &ids, SECS(30));
    assert!(dropped(&c, "extension_mismatch") > 0.0, "no honest node refused a wrong cosignature");
    // Every stored certificate carries only cosignatures of the block's checkpoint, a quorum of
    // them (checked block by block in finish).
    c.finish(&HONEST).unwrap();
}

#[test]
fn an_equivocating_validator_leaves_evidence_and_no_fork() {
    let c = liar(
        25300,
        "[engine]\nequivocate_votes = { mode = \"always\" }\nequivocate_proposals = { mode = \"always\" }\n",
    );
    let mut ids = Vec::new();
    c.keeps_going(&HONEST, 6, SECS(20), |w| ids.extend(load(&c, w as u64))).unwrap();
    all_committed(&c, &ids, SECS(30));
    // Evidence: verified, stored, counted and served, naming the liar.
    let deadline = Instant::now() + SECS(30);
    let liar_key = c.genesis.agencies[LIAR].validator.as_ref().unwrap().consensus_key.to_string();
    loop {
        let (status, v) = c.get(0, "/v1/evidence?from=1").unwrap();
        assert_eq!(status, 200, "{v}");
        let items = v["evidence"].as_array().cloned().unwrap_or_default();
        if !items.is_empty() {
            assert!(items.iter().all(|e| e["validator_key"].as_str() == Some(liar_key.as_str())), "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "no equivocation evidence kept: {v}");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(c.metric(0, "sabt_equivocations", "") > 0.0, "evidence kept but not counted");
    c.finish(&HONEST).unwrap();
}

#[test]
fn a_sync_peer_that_forges_blocks_does_not_stop_a_lagging_node() {
    let mut c = liar(25600, "[app]\nforge_sync = true\n");
    // Node 3 falls behind while the others (the liar among them) go on.
    c.terminate(2).unwrap();
    let h = c.height(0).unwrap();
    c.wait_height(0, h + 6, SECS(60)).unwrap();
    // With the two other honest nodes paused, the liar is the only peer node 3 can sync from:
    // every forged or cut answer is refused, and node 3 stays where it was, alive.
    c.pause(0).unwrap();
    c.pause(1).unwrap();
    let behind = h;
    c.start_node(2).unwrap();
    let deadline = Instant::now() + SECS(40);
    while c.metric(2, "sabt_consensus_dropped", "reason=\"synced_bad_block\"") == 0.0 {
        assert!(Instant::now() < deadline, "node 3 never refused a forged sync answer:\n{}", c.log_tail(2, 30));
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(c.height(2).unwrap() <= behind + 1, "node 3 took blocks from a forging peer");
    assert_eq!(c.get(2, "/livez").unwrap().0, 200);
    // Behind, it takes no transactions (its state would refuse what later blocks allow).
    let (status, v) = c.get(2, "/readyz").unwrap();
    assert_eq!((status, v["code"].as_str()), (503, Some("not_ready")), "{v}");
    // Honest peers back: node 3 catches up from them, and the network goes on.
    c.resume(0).unwrap();
    c.resume(1).unwrap();
    let top = c.height(0).unwrap();
    c.wait_height(2, top, SECS(60)).unwrap();
    // Caught up, it decides blocks with the others again and is ready within a few blocks.
    let deadline = Instant::now() + SECS(20);
    while c.get(2, "/readyz").map(|(s, _)| s) != Some(200) {
        assert!(Instant::now() < deadline, "node 3 caught up but never became ready again");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut ids = Vec::new();
    c.keeps_going(&HONEST, 3, SECS(20), |w| ids.extend(load(&c, w as u64))).unwrap();
    all_committed(&c, &ids, SECS(30));
    c.finish(&HONEST).unwrap();
}

#[test]
fn a_flood_of_forwarded_junk_does_not_stall_the_network() {
    let c = liar(25900, "");
    // Forwarded batches of junk, as a validator (or anyone) can send them, from four threads at
    // the honest nodes, for the whole test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let urls: Vec<String> = HONEST.iter().map(|&i| c.nodes[i].url.clone()).collect();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (stop, urls, sent) = (stop.clone(), urls.clone(), sent.clone());
            std::thread::spawn(move || {
                let agent = sabt_tests::cluster::agent();
                let junk: Vec<String> =
                    (0..500u32).map(|k| hex::encode((t * 1000 + k).to_be_bytes().repeat(64))).collect();
                let body = serde_json::json!({ "txs": junk });
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let url = &urls[n % urls.len()];
                    n += 1;
                    let _ = agent.post(format!("{url}/v1/txs/batch")).header("x-sabt-forwarded", "1").send_json(&body);
                    sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut ids = Vec::new();
    let result = c.keeps_going(&HONEST, 6, SECS(20), |w| ids.extend(load(&c, w as u64)));
    let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| all_committed(&c, &ids, SECS(30))));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    result.unwrap();
    committed.unwrap();
    assert!(sent.load(std::sync::atomic::Ordering::Relaxed) > 20, "the flood did not flow");
    c.finish(&[0, 1, 2, 3]).unwrap();
}

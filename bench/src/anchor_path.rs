//! Sabt's anchor path on one node, without consensus or network: signed single-document anchor
//! transactions are built into blocks as a proposer builds them (signature, rules, log and state
//! updates), the block is executed again as every other validator executes a proposal (with and
//! without this node's signature cache), and committed with the node's synced write batch into a
//! RocksDB store. This is the path PostgreSQL is compared with, record for record, at the same
//! durability; it is also the part of the network's throughput that one node's CPU pays per block.

use crate::records;
use crate::stats;
use anyhow::ensure;
use sabt_core::block::{Commit, CommitSig, VoteKind, VoteMsg};
use sabt_core::devnet::Devnet;
use sabt_core::registry::{NoCache, Registry, Tip};
use sabt_core::sign::SecretKey;
use sabt_core::tx::{SignedTx, Transaction, TxBody};
use sabt_node::store::Store;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// The figures.
#[derive(Debug, Serialize)]
pub struct AnchorPath {
    /// Transactions.
    pub txs: usize,
    /// Transactions per block.
    pub block_txs: usize,
    /// Build (verify, check, apply) + synced commit, anchors a second.
    pub anchors_per_s: f64,
    /// Building blocks as a proposer, microseconds a transaction (signatures verified).
    pub build_us_per_tx: f64,
    /// Executing a received block without the signature cache, microseconds a transaction.
    pub execute_us_per_tx: f64,
    /// Executing it with every signature cached (as after admission), microseconds a transaction.
    pub execute_cached_us_per_tx: f64,
    /// The synced write batch of one block, milliseconds (mean).
    pub commit_ms_per_block: f64,
    /// Strict signature verification alone, microseconds a transaction (same transactions).
    pub verify_us_per_tx: f64,
}

const SEEDS: [[u8; 32]; 4] = [[31; 32], [32; 32], [33; 32], [34; 32]];

/// Runs `txs` anchors in blocks of `block_txs` through a new store in `dir` (absent or empty).
pub fn run(dir: &Path, txs: usize, block_txs: usize) -> anyhow::Result<AnchorPath> {
    ensure!(txs > 0 && block_txs > 0, "--txs and --block must be at least 1");
    let dev = Devnet::new("sabt-bench", 1_780_000_000_000, &SEEDS, [35; 32]);
    let registry = Registry::new(&dev.genesis)?;
    let admin = dev.admin_key(0);
    let chain = dev.genesis.chain_id.clone();
    let signed: Vec<SignedTx> = (0..txs)
        .map(|k| {
            Transaction {
                chain_id: chain.clone(),
                signer: admin.public(),
                nonce: k as u64,
                body: TxBody::Anchor(records::record(7, k as u64)),
            }
            .sign(&admin)
        })
        .collect();
    let t = Instant::now();
    for s in &signed {
        ensure!(s.verify_signature().is_ok(), "a signature did not verify");
    }
    let verify = t.elapsed();

    // Never empty a directory on the caller's behalf: it might be a node's data.
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        anyhow::bail!("{} is not empty; give a new directory for the benchmark store", dir.display());
    }
    let store = Store::open(dir)?;
    let mut tip = Tip::genesis(&dev.genesis);
    let keys: Vec<SecretKey> = SEEDS.iter().map(SecretKey::from_seed).collect();
    let (mut build, mut exec, mut exec_cached, mut commit) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut blocks = 0u32;
    let proposer = keys[0].public();
    for chunk in signed.chunks(block_txs) {
        let time_ms = tip.time_ms.max(dev.genesis.genesis_time_ms) + 1000;
        let t = Instant::now();
        let mut ws = store.write_set();
        let built = registry.build_block(&mut ws, &tip, time_ms, proposer, chunk.iter().cloned(), &NoCache)?;
        build += t.elapsed();
        ensure!(built.block.txs.len() == chunk.len(), "the proposer left {} transactions out", built.refused.len());
        // Another validator executes the proposal: once verifying every signature, once with them cached.
        let t = Instant::now();
        registry.execute_block(&mut store.write_set(), &tip, &built.block, &NoCache)?;
        exec += t.elapsed();
        let cache: BTreeSet<_> = chunk.iter().map(SignedTx::id).collect();
        let t = Instant::now();
        registry.execute_block(&mut store.write_set(), &tip, &built.block, &cache)?;
        exec_cached += t.elapsed();
        let block_hash = built.block.hash();
        let height = built.block.header.height;
        let signatures = keys
            .iter()
            .take(3)
            .map(|k| {
                let vote = VoteMsg {
                    chain_id: chain.clone(),
                    kind: VoteKind::Precommit,
                    height,
                    round: 0,
                    block: Some(block_hash),
                    validator: k.public(),
                };
                CommitSig { validator: k.public(), signature: vote.sign(k), checkpoint: None }
            })
            .collect();
        let c = Commit { height, round: 0, block: block_hash, signatures };
        let ids: Vec<_> = built.block.txs.iter().map(|t| t.id()).collect();
        let t = Instant::now();
        tip = store.commit(&ws, &built.block, &ids, &c)?;
        commit += t.elapsed();
        blocks += 1;
    }
    let n = txs as f64;
    Ok(AnchorPath {
        txs,
        block_txs,
        anchors_per_s: n / (build + commit).as_secs_f64(),
        build_us_per_tx: stats::us(build) / n,
        execute_us_per_tx: stats::us(exec) / n,
        execute_cached_us_per_tx: stats::us(exec_cached) / n,
        commit_ms_per_block: commit.as_secs_f64() * 1e3 / f64::from(blocks),
        verify_us_per_tx: stats::us(verify) / n,
    })
}

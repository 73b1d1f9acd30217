//! Proofs from a large log: the registry log is filled through the node's storage layer
//! ([`Store::import_log_leaves`]) with the leaf hashes of real log entries, then inclusion paths
//! are read back from RocksDB as the node's proof endpoint reads them, whole proof files are built
//! and cosigned by a four-validator genesis, and verified offline with the verifier `sabt verify`
//! runs. A log already filled to the asked size (marked in `DIR/filled`) is reused.

use crate::records;
use crate::stats::{self, Picker, Summary};
use anyhow::{Context as _, ensure};
use sabt_core::bundle::{self, BUNDLE_FORMAT, BUNDLE_VERSION, DocumentClaim, EntryProof, ProofBundle};
use sabt_core::checkpoint::{Checkpoint, SignedNote, cosign};
use sabt_core::codec;
use sabt_core::devnet::Devnet;
use sabt_core::hash::Hash32;
use sabt_core::sign::SecretKey;
use sabt_node::store::Store;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The figures at one log size.
#[derive(Debug, Serialize)]
pub struct Proofs {
    /// Log entries.
    pub entries: u64,
    /// Seconds spent filling the log in this run (0 when an earlier fill was reused).
    pub fill_s: f64,
    /// Bytes of the log's column family files on disk, after the fill.
    pub log_bytes_on_disk: u64,
    /// Generating one proof (inclusion path from RocksDB and the entry), microseconds.
    pub gen_us: Summary,
    /// The proof file's size (JSON, as `sabt anchor` writes it), bytes.
    pub proof_bytes: usize,
    /// Verifying one proof file offline (parse, checkpoint quorum, inclusion), microseconds.
    pub verify_us: Summary,
}

const RUN: u64 = 2;
const SEEDS: [[u8; 32]; 4] = [[11; 32], [12; 32], [13; 32], [14; 32]];

fn leaf(n: u64, signer: sabt_core::sign::PublicKey) -> Hash32 {
    records::entry(RUN, n, signer).leaf_hash()
}

/// Fills (or reuses) a log of `entries` in `dir`, then measures `samples` proofs.
pub fn run(dir: &Path, entries: u64, samples: usize) -> anyhow::Result<Proofs> {
    ensure!(entries > 0 && samples > 0, "--entries and --samples must be at least 1");
    let dev = Devnet::new("sabt-bench", 1_780_000_000_000, &SEEDS, [15; 32]);
    let signer = dev.clerk.public();
    std::fs::create_dir_all(dir)?;
    let marker = dir.join("filled");
    let filled: u64 = std::fs::read_to_string(&marker).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let db = dir.join("db");
    let mut fill_s = 0.0;
    if filled != entries {
        if db.exists() {
            std::fs::remove_dir_all(&db)?;
        }
        let _ = std::fs::remove_file(&marker);
        let store = Store::open(&db)?;
        let start = Instant::now();
        let chunk = 1 << 20;
        let mut size = 0u64;
        while size < entries {
            let end = (size + chunk).min(entries);
            let leaves = parallel_leaves(size, end, signer);
            size = store.import_log_leaves(size, &leaves)?;
            if size.is_multiple_of(8 * chunk) {
                eprintln!("  filled {size} of {entries} entries ({:.0} s)", start.elapsed().as_secs_f64());
            }
        }
        store.flush()?;
        store.compact()?;
        fill_s = start.elapsed().as_secs_f64();
        std::fs::write(&marker, format!("{entries}\n"))?;
    }
    let log_bytes_on_disk = crate::disk::dir_bytes(&db)?;
    let store = Store::open(&db)?;
    let root = store.log_root(entries)?;
    // The root from storage must be the root of the entries the fill meant to write.
    let last = entries - 1;
    let path = store.inclusion_path(last, entries)?;
    sabt_core::merkle::verify_inclusion::<sabt_core::merkle::Blake3>(&leaf(last, signer), last, entries, &path, &root)
        .context("the filled log does not prove its own last entry")?;

    let cp = Checkpoint { origin: dev.genesis.chain_id.clone(), size: entries, root };
    let note = SignedNote {
        text: cp.body(),
        signatures: SEEDS
            .iter()
            .enumerate()
            .map(|(i, s)| cosign(&cp, &dev.genesis.agencies[i].name, &SecretKey::from_seed(s)))
            .collect(),
    }
    .render();
    let mut picker = Picker::new(entries ^ 0x5ab7);
    let mut gen_us = Vec::with_capacity(samples);
    let mut verify_us = Vec::with_capacity(samples);
    let mut sizes = Vec::with_capacity(samples);
    for _ in 0..samples {
        let i = picker.below(entries);
        let t = Instant::now();
        let path = store.inclusion_path(i, entries)?;
        let entry = records::entry(RUN, i, signer);
        let encoded = codec::encode(&entry);
        gen_us.push(stats::us(t.elapsed()));
        let record = records::record(RUN, i);
        let b = ProofBundle {
            format: BUNDLE_FORMAT.to_string(),
            version: BUNDLE_VERSION,
            chain_id: dev.genesis.chain_id.clone(),
            genesis_hash: dev.genesis.hash(),
            record: record.clone(),
            batch: None,
            entry: EntryProof { index: i, encoded, path },
            checkpoint: note.clone(),
            validator_set_updates: Vec::new(),
        };
        let json = b.to_json();
        sizes.push(json.len());
        let t = Instant::now();
        let parsed = ProofBundle::from_json(&json)?;
        let v = bundle::verify(&parsed, &dev.genesis, &DocumentClaim::File(record.fingerprint))?;
        verify_us.push(stats::us(t.elapsed()));
        ensure!(v.index == i, "the proof of entry {i} verified as entry {}", v.index);
    }
    sizes.sort_unstable();
    Ok(Proofs {
        entries,
        fill_s,
        log_bytes_on_disk,
        gen_us: stats::summarize(gen_us),
        proof_bytes: sizes[sizes.len() * 99 / 100],
        verify_us: stats::summarize(verify_us),
    })
}

/// Leaf hashes of entries `from..to`, computed on two threads.
fn parallel_leaves(from: u64, to: u64, signer: sabt_core::sign::PublicKey) -> Vec<Hash32> {
    let mid = from + (to - from) / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| (from..mid).map(|n| leaf(n, signer)).collect::<Vec<_>>());
        let mut b: Vec<Hash32> = (mid..to).map(|n| leaf(n, signer)).collect();
        let mut out = a.join().unwrap_or_default();
        out.append(&mut b);
        out
    })
}

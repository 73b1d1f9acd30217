//! The machine's limits, measured in the same run as everything they bound: Ed25519 verification
//! (the node's own strict, domain-separated check, and dalek's batch verification) on one and two
//! threads; SHA-256 and BLAKE3 throughput; and the latency of a 4 KiB append made durable with
//! `fdatasync` on the disk of the data directory.

use crate::stats::{self, Summary};
use sabt_core::sign::{self, PublicKey, SecretKey, Signature};
use serde::Serialize;
use sha2::Digest as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the limits run found.
#[derive(Debug, Serialize)]
pub struct Limits {
    /// Strict single verifications a second, one thread (the node's check).
    pub verify_1t_per_s: f64,
    /// The same on two threads.
    pub verify_2t_per_s: f64,
    /// Batch verification (batches of [`BATCH`]) a second, one thread.
    pub verify_batch_1t_per_s: f64,
    /// The same on two threads.
    pub verify_batch_2t_per_s: f64,
    /// Signatures a second, one thread.
    pub sign_1t_per_s: f64,
    /// SHA-256 of 1 MiB buffers, MB/s, one thread.
    pub sha256_mb_s: f64,
    /// BLAKE3 of 1 MiB buffers, MB/s, one thread.
    pub blake3_mb_s: f64,
    /// SHA-256 and BLAKE3 together of 1 KiB documents (what a clerk's fingerprint costs), per second.
    pub fingerprint_1k_per_s: f64,
    /// Latency of a 4 KiB append plus `fdatasync`, milliseconds.
    pub fsync_ms: Summary,
}

/// Signatures per batch in the batch-verification measurement.
pub const BATCH: usize = 1024;

struct Signed {
    key: PublicKey,
    msg: Vec<u8>,
    sig: Signature,
}

fn signed(n: usize) -> Vec<Signed> {
    (0..n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 % 64).to_le_bytes());
            let k = SecretKey::from_seed(&seed);
            // A message the size of a signed single-document anchor transaction.
            let msg: Vec<u8> = (0..260).map(|j| (i * 7 + j) as u8).collect();
            let sig = k.sign(sign::TX, &msg);
            Signed { key: k.public(), msg, sig }
        })
        .collect()
}

/// Runs `f` (which measures a rate) on `threads` threads at once; the sum of their rates.
fn on_threads(threads: usize, f: impl Fn() -> f64 + Sync) -> f64 {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(&f)).collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    })
}

fn verify_rate(set: &[Signed], budget: Duration) -> f64 {
    let mut i = 0;
    stats::rate(budget, 64, || {
        for _ in 0..64 {
            let s = &set[i % set.len()];
            assert!(s.key.verify(sign::TX, &s.msg, &s.sig).is_ok(), "a valid signature failed to verify");
            i += 1;
        }
    })
}

fn batch_rate(set: &[Signed], budget: Duration) -> f64 {
    let framed: Vec<Vec<u8>> = set.iter().map(|s| sign::framed(sign::TX, &s.msg)).collect();
    let msgs: Vec<&[u8]> = framed.iter().map(Vec::as_slice).collect();
    let sigs: Vec<ed25519_dalek::Signature> =
        set.iter().map(|s| ed25519_dalek::Signature::from_bytes(&s.sig.0)).collect();
    let keys: Vec<ed25519_dalek::VerifyingKey> =
        set.iter().filter_map(|s| ed25519_dalek::VerifyingKey::from_bytes(s.key.as_bytes()).ok()).collect();
    stats::rate(budget, set.len() as u64, || {
        assert!(ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok(), "a valid batch failed to verify");
    })
}

/// Measures every limit, spending about `budget` on each figure; the fsync test writes `fsyncs`
/// appends to a file in `dir`.
pub fn run(dir: &Path, budget: Duration, fsyncs: usize) -> anyhow::Result<Limits> {
    let set = signed(BATCH);
    let verify_1t_per_s = verify_rate(&set, budget);
    let verify_2t_per_s = on_threads(2, || verify_rate(&set, budget));
    let verify_batch_1t_per_s = batch_rate(&set, budget);
    let verify_batch_2t_per_s = on_threads(2, || batch_rate(&set, budget));
    let key = SecretKey::from_seed(&[3; 32]);
    let sign_1t_per_s = stats::rate(budget, 1, || {
        std::hint::black_box(key.sign(sign::TX, &set[0].msg));
    });
    let buf: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31) as u8).collect();
    let mb = buf.len() as f64 / 1e6;
    let sha256_mb_s = stats::rate(budget, 1, || {
        std::hint::black_box(sha2::Sha256::digest(&buf));
    }) * mb;
    let blake3_mb_s = stats::rate(budget, 1, || {
        std::hint::black_box(blake3::hash(&buf));
    }) * mb;
    let fingerprint_1k_per_s = stats::rate(budget, 1, || {
        std::hint::black_box(sabt_core::fingerprint::Fingerprint::of_bytes(&buf[..1024]));
    });
    let fsync_ms = fsync_latency(dir, fsyncs)?;
    Ok(Limits {
        verify_1t_per_s,
        verify_2t_per_s,
        verify_batch_1t_per_s,
        verify_batch_2t_per_s,
        sign_1t_per_s,
        sha256_mb_s,
        blake3_mb_s,
        fingerprint_1k_per_s,
        fsync_ms,
    })
}

/// Appends 4 KiB `n` times to a new file in `dir`, each followed by `fdatasync`.
fn fsync_latency(dir: &Path, n: usize) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let page = [0x5au8; 4096];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&page)?;
        f.sync_data()?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(stats::summarize(samples))
}

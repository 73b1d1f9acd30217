//! Sabt's Merkle log against two peers on the same leaves: `ct-merkle` (RFC 6962, the same tree
//! as Sabt's) and `rs_merkle` (a binary tree that promotes odd nodes). All three hash with SHA-256
//! here, so the comparison is of the tree code; Sabt's ledger hash, BLAKE3, is measured beside them.
//! The Sabt and ct-merkle roots must agree, or the run fails.

use crate::records;
use crate::stats::{self, Picker, Summary};
use anyhow::{bail, ensure};
use sabt_core::codec;
use sabt_core::hash::Hash32;
use sabt_core::merkle::{self, Blake3, LogHasher, MemoryTree, Sha256};
use sabt_core::sign::SecretKey;
use serde::Serialize;
use std::time::{Duration, Instant};

/// One implementation's figures.
#[derive(Debug, Serialize)]
pub struct Figures {
    /// Building the tree from the leaves' data, milliseconds.
    pub build_ms: f64,
    /// Generating one inclusion proof, microseconds.
    pub prove_us: Summary,
    /// Verifying one inclusion proof, microseconds.
    pub verify_us: Summary,
    /// Bytes of one proof's hashes, for the median path.
    pub proof_bytes: usize,
}

/// The side-by-side result.
#[derive(Debug, Serialize)]
pub struct Peers {
    /// Leaves in each tree.
    pub leaves: u64,
    /// Proofs generated and verified by each implementation.
    pub proofs: usize,
    /// Sabt's log with SHA-256.
    pub sabt_sha256: Figures,
    /// Sabt's log with BLAKE3, the ledger's hash.
    pub sabt_blake3: Figures,
    /// ct-merkle 0.3 (SHA-256).
    pub ct_merkle: Figures,
    /// rs_merkle 1.5 (SHA-256).
    pub rs_merkle: Figures,
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

fn sabt<H: LogHasher>(leaves: &[Vec<u8>], picks: &[u64]) -> anyhow::Result<(Figures, Hash32)> {
    let (tree, build) = timed(|| {
        let mut t = MemoryTree::<H>::new();
        for l in leaves {
            t.push(l);
        }
        t
    });
    let (size, root) = (tree.size(), tree.root());
    let (mut prove, mut verify) = (Vec::new(), Vec::new());
    let mut bytes = Vec::new();
    for &i in picks {
        let (path, d) = timed(|| tree.inclusion_proof(i, size));
        let path = path?;
        prove.push(stats::us(d));
        let leaf = H::hash_leaf(&leaves[i as usize]);
        let (ok, d) = timed(|| merkle::verify_inclusion::<H>(&leaf, i, size, &path, &root));
        ok?;
        verify.push(stats::us(d));
        bytes.push(path.len() * 32);
    }
    bytes.sort_unstable();
    let proof_bytes = bytes.get(bytes.len() / 2).copied().unwrap_or(0);
    Ok((
        Figures {
            build_ms: build.as_secs_f64() * 1e3,
            prove_us: stats::summarize(prove),
            verify_us: stats::summarize(verify),
            proof_bytes,
        },
        root,
    ))
}

fn ct(leaves: &[Vec<u8>], picks: &[u64]) -> anyhow::Result<(Figures, [u8; 32])> {
    type H = sha2_011::Sha256;
    let (tree, build) = timed(|| {
        let mut t = ct_merkle::mem_backed_tree::MemoryBackedTree::<H, Vec<u8>>::new();
        for l in leaves {
            t.push(l.clone());
        }
        t
    });
    let root = tree.root();
    let (mut prove, mut verify, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    for &i in picks {
        let (proof, d) = timed(|| tree.prove_inclusion(i as usize));
        prove.push(stats::us(d));
        let (ok, d) = timed(|| root.verify_inclusion(&leaves[i as usize], i, &proof));
        if ok.is_err() {
            bail!("ct-merkle refused its own proof of leaf {i}");
        }
        verify.push(stats::us(d));
        bytes.push(proof.as_bytes().len());
    }
    bytes.sort_unstable();
    let mut r = [0u8; 32];
    r.copy_from_slice(root.as_bytes().as_slice());
    Ok((
        Figures {
            build_ms: build.as_secs_f64() * 1e3,
            prove_us: stats::summarize(prove),
            verify_us: stats::summarize(verify),
            proof_bytes: bytes.get(bytes.len() / 2).copied().unwrap_or(0),
        },
        r,
    ))
}

fn rs(leaves: &[Vec<u8>], picks: &[u64]) -> anyhow::Result<Figures> {
    use rs_merkle::algorithms::Sha256 as H;
    // rs_merkle takes leaf hashes; hashing the leaves is part of its build, as in the others.
    let (tree, build) = timed(|| {
        let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| Sha256::hash_leaf(l).0).collect();
        (rs_merkle::MerkleTree::<H>::from_leaves(&hashes), hashes)
    });
    let (tree, hashes) = tree;
    let Some(root) = tree.root() else { bail!("rs_merkle built no root") };
    let (mut prove, mut verify, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
    for &i in picks {
        let i = i as usize;
        let (proof, d) = timed(|| tree.proof(&[i]));
        prove.push(stats::us(d));
        let (ok, d) = timed(|| proof.verify(root, &[i], &[hashes[i]], hashes.len()));
        ensure!(ok, "rs_merkle refused its own proof of leaf {i}");
        verify.push(stats::us(d));
        bytes.push(proof.proof_hashes().len() * 32);
    }
    bytes.sort_unstable();
    Ok(Figures {
        build_ms: build.as_secs_f64() * 1e3,
        prove_us: stats::summarize(prove),
        verify_us: stats::summarize(verify),
        proof_bytes: bytes.get(bytes.len() / 2).copied().unwrap_or(0),
    })
}

/// Builds each tree over the same `n` log entries and proves and verifies `proofs` leaves chosen
/// by a seeded picker.
pub fn run(n: u64, proofs: usize) -> anyhow::Result<Peers> {
    ensure!(n > 0, "--leaves must be at least 1");
    let signer = SecretKey::from_seed(&[1; 32]).public();
    let leaves: Vec<Vec<u8>> = (0..n).map(|i| codec::encode(&records::entry(1, i, signer))).collect();
    let mut picker = Picker::new(n);
    let picks: Vec<u64> = (0..proofs).map(|_| picker.below(n)).collect();
    let (sabt_sha256, sabt_root) = sabt::<Sha256>(&leaves, &picks)?;
    let (sabt_blake3, _) = sabt::<Blake3>(&leaves, &picks)?;
    let (ct_merkle, ct_root) = ct(&leaves, &picks)?;
    ensure!(
        sabt_root.0 == ct_root,
        "Sabt's RFC 9162 root {} differs from ct-merkle's {} over the same leaves",
        sabt_root,
        hex::encode(ct_root)
    );
    let rs_merkle = rs(&leaves, &picks)?;
    Ok(Peers { leaves: n, proofs, sabt_sha256, sabt_blake3, ct_merkle, rs_merkle })
}

#[cfg(test)]
mod tests {
    #[test]
    fn peers_agree_on_small_trees() {
        // Sizes around powers of two, where RFC 9162's split matters; run() checks the roots.
        for n in [1, 2, 3, 7, 8, 9, 100] {
            let p = super::run(n, 5).unwrap_or_else(|e| panic!("{n} leaves: {e}"));
            assert_eq!(p.leaves, n);
            assert_eq!(p.ct_merkle.proof_bytes, p.sabt_sha256.proof_bytes, "{n} leaves");
        }
    }
}

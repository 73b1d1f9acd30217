//! Properties of the RFC 9162 log: every inclusion and consistency proof for every pair of sizes up
//! to 300 leaves verifies, and changing any bit of any part of a proof makes it fail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use proptest::prelude::*;
use sabt_core::hash::Hash32;
use sabt_core::merkle::{self, Blake3, LogHasher, MemoryTree, ProofError};

const N: u64 = 300;

fn tree(n: u64) -> (MemoryTree<Blake3>, Vec<Hash32>) {
    let mut t = MemoryTree::<Blake3>::new();
    let mut leaves = Vec::new();
    for i in 0..n {
        let data = format!("entry {i}");
        leaves.push(Blake3::hash_leaf(data.as_bytes()));
        t.push(data.as_bytes());
    }
    (t, leaves)
}

#[test]
fn every_inclusion_proof_up_to_300_verifies() {
    let (t, leaves) = tree(N);
    let roots: Vec<Hash32> = (0..=N).map(|s| t.root_at(s).unwrap()).collect();
    for size in 1..=N {
        for index in 0..size {
            let path = t.inclusion_proof(index, size).unwrap();
            assert_eq!(path.len(), merkle::inclusion_path_len(index, size));
            merkle::verify_inclusion::<Blake3>(&leaves[index as usize], index, size, &path, &roots[size as usize])
                .unwrap_or_else(|e| panic!("inclusion ({index}, {size}): {e}"));
        }
    }
}

#[test]
fn every_consistency_proof_up_to_300_verifies() {
    let (t, _) = tree(N);
    let roots: Vec<Hash32> = (0..=N).map(|s| t.root_at(s).unwrap()).collect();
    for new in 0..=N {
        for old in 0..=new {
            let proof = t.consistency_proof(old, new).unwrap();
            assert_eq!(proof.len(), merkle::consistency_proof_len(old, new));
            merkle::verify_consistency::<Blake3>(old, new, &roots[old as usize], &roots[new as usize], &proof)
                .unwrap_or_else(|e| panic!("consistency ({old}, {new}): {e}"));
        }
    }
}

#[test]
fn requests_out_of_range_are_refused() {
    let (t, leaves) = tree(10);
    assert_eq!(t.inclusion_proof(10, 10), Err(ProofError::IndexOutOfRange { index: 10, size: 10 }));
    assert_eq!(t.inclusion_proof(0, 11), Err(ProofError::BeyondLog { requested: 11, size: 10 }));
    assert_eq!(t.consistency_proof(5, 4), Err(ProofError::SizesOutOfOrder { old: 5, new: 4 }));
    let root = t.root();
    assert!(merkle::verify_inclusion::<Blake3>(&leaves[0], 10, 10, &[], &root).is_err());
    // Consistency with the empty tree needs the empty root and no hashes.
    merkle::verify_consistency::<Blake3>(0, 10, &Blake3::empty_root(), &root, &[]).unwrap();
    assert!(merkle::verify_consistency::<Blake3>(0, 10, &root, &root, &[]).is_err());
    assert!(merkle::verify_consistency::<Blake3>(10, 10, &root, &root, &[root]).is_err());
}

fn flip(h: &mut Hash32, bit: usize) {
    h.0[bit / 8 % 32] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any one-bit change to the leaf, a path hash, the index or the root makes inclusion fail;
    /// so does dropping or adding a hash.
    #[test]
    fn inclusion_tampering_fails(size in 1u64..=N, index_seed in any::<u64>(), part in 0usize..6, bit in 0usize..256, pick in any::<usize>()) {
        let (t, leaves) = tree(size);
        let index = index_seed % size;
        let mut leaf = leaves[index as usize];
        let mut path = t.inclusion_proof(index, size).unwrap();
        let mut root = t.root();
        let mut idx = index;
        match part {
            0 => flip(&mut leaf, bit),
            1 if !path.is_empty() => { let i = pick % path.len(); flip(&mut path[i], bit) }
            2 => idx ^= 1u64 << (bit % 64),
            3 => flip(&mut root, bit),
            4 if !path.is_empty() => { path.remove(pick % path.len()); }
            5 => path.push(leaf),
            _ => flip(&mut leaf, bit),
        }
        prop_assert!(merkle::verify_inclusion::<Blake3>(&leaf, idx, size, &path, &root).is_err());
    }

    /// Any one-bit change to either root or a proof hash makes consistency fail; so does dropping or
    /// adding a hash. (The sizes are not part of the proof: RFC 9162 takes them from the two signed
    /// checkpoints, which bind each size to its root. A different size with the same shape of
    /// proof can verify against the same roots, so sizes must never come from an unsigned source.)
    #[test]
    fn consistency_tampering_fails(new in 2u64..=N, old_seed in any::<u64>(), part in 0usize..5, bit in 0usize..256, pick in any::<usize>()) {
        let old = 1 + old_seed % (new - 1);
        let (t, _) = tree(new);
        let mut proof = t.consistency_proof(old, new).unwrap();
        let mut old_root = t.root_at(old).unwrap();
        let mut new_root = t.root();
        match part {
            0 => flip(&mut old_root, bit),
            1 => flip(&mut new_root, bit),
            2 if !proof.is_empty() => { let i = pick % proof.len(); flip(&mut proof[i], bit) }
            3 if !proof.is_empty() => { proof.remove(pick % proof.len()); }
            _ => proof.push(old_root),
        }
        prop_assert!(merkle::verify_consistency::<Blake3>(old, new, &old_root, &new_root, &proof).is_err());
    }
}

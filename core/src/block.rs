//! Blocks, consensus messages and commit certificates.
//!
//! A block's header names everything a verifier needs to chain it: the previous block's hash (the
//! genesis hash for height 1), the transactions root, the registry log's size and root and the
//! state root *after* the block, the validator set that decides it, and the proposer. Its hash is
//! `BLAKE3-derive_key("sabt/block/v1", encode(header))`; this hash is the value consensus decides.
//!
//! Votes and proposals are signed over the canonical encoding of [`VoteMsg`] / [`ProposalMsg`] in the
//! `sabt/vote/v1` / `sabt/proposal/v1` contexts, with strict Ed25519. A [`Commit`] holds the
//! precommits that decided a block; [`verify_commit`] checks it offline, so an auditor needs only the
//! genesis to re-verify finality.

use crate::codec::{self, ABSOLUTE_MAX_LEN, Canonical, CodecError};
use crate::hash::{self, Hash32};
use crate::merkle::{Blake3, LogHasher, MemoryTree};
use crate::sign::{self, PublicKey, SecretKey, Signature};
use crate::tx::SignedTx;
use crate::validator::ValidatorSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// A block header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    /// The chain (genesis `chain_id`).
    pub chain_id: String,
    /// Height, from 1.
    pub height: u64,
    /// Consensus (BFT) time, Unix milliseconds UTC; strictly increasing.
    pub time_ms: u64,
    /// Hash of the previous block's header; the genesis hash at height 1.
    pub prev_hash: Hash32,
    /// RFC 9162 root (BLAKE3) over the ids of the block's transactions, in order.
    pub tx_root: Hash32,
    /// Number of transactions.
    pub tx_count: u32,
    /// Registry log size after the block.
    pub log_size: u64,
    /// Registry log root after the block.
    pub log_root: Hash32,
    /// State map root after the block.
    pub state_root: Hash32,
    /// Hash of the validator set that decides this block.
    pub validator_set_hash: Hash32,
    /// The proposer's consensus key.
    pub proposer: PublicKey,
}

impl Canonical for BlockHeader {
    const NAME: &'static str = "block header";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 1024;
}

impl BlockHeader {
    /// The block hash.
    pub fn hash(&self) -> Hash32 {
        hash::hash(hash::BLOCK, &codec::encode(self))
    }
}

/// A block: header and transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The header.
    pub header: BlockHeader,
    /// The transactions, in execution order.
    pub txs: Vec<SignedTx>,
}

impl Canonical for Block {
    const NAME: &'static str = "block";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = ABSOLUTE_MAX_LEN;
}

impl Block {
    /// The block hash (its header's).
    pub fn hash(&self) -> Hash32 {
        self.header.hash()
    }

    /// Whether the transactions are the ones the header names: their count and their root. A
    /// block's hash is its header's, so two blocks with one hash may carry different transactions;
    /// this is the check that tells the one the proposer signed from a swapped one, before the
    /// block is kept, executed or stored.
    pub fn check_body(&self) -> Result<(), BodyMismatch> {
        let count = u32::try_from(self.txs.len()).unwrap_or(u32::MAX);
        if count != self.header.tx_count {
            return Err(BodyMismatch::Count { header: self.header.tx_count, body: self.txs.len() });
        }
        let root = tx_root(&self.txs);
        if root != self.header.tx_root {
            return Err(BodyMismatch::Root { header: self.header.tx_root, body: root });
        }
        Ok(())
    }

    /// The header of the encoded block `bytes`, without decoding its transactions: for readers of
    /// stored blocks that need only the header (proofs, checkpoints). Size limit and version byte
    /// are checked as [`codec::decode`] checks them, and the header must be canonical; the
    /// transactions after it are not parsed, so this is no check of a whole block.
    pub fn decode_header(bytes: &[u8]) -> Result<BlockHeader, CodecError> {
        let body = codec::envelope_body::<Block>(bytes)?;
        Ok(codec::decode_body_prefix(<BlockHeader as Canonical>::NAME, body)?.0)
    }
}

/// A block whose transactions are not those its header names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyMismatch {
    /// Another number of transactions.
    #[error("the header names {header} transactions, the block holds {body}")]
    Count {
        /// The header's count.
        header: u32,
        /// The body's.
        body: usize,
    },
    /// Other transactions.
    #[error("the header's transactions root is {header}, the block's transactions make {body}")]
    Root {
        /// The header's root.
        header: Hash32,
        /// The root of the transactions held.
        body: Hash32,
    },
}

/// The transactions root: an RFC 9162 tree (BLAKE3) whose leaves are the transaction ids.
pub fn tx_root(txs: &[SignedTx]) -> Hash32 {
    let mut tree = MemoryTree::<Blake3>::new();
    for t in txs {
        tree.push_hash(Blake3::hash_leaf(t.id().as_bytes()));
    }
    tree.root()
}

/// The two kinds of vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VoteKind {
    /// First round of voting.
    Prevote,
    /// Second round; a quorum of precommits for a block decides it.
    Precommit,
}

/// What a validator signs when it votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteMsg {
    /// The chain.
    pub chain_id: String,
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// The block voted for, or `None` for nil.
    pub block: Option<Hash32>,
    /// The voter's consensus key.
    pub validator: PublicKey,
}

impl Canonical for VoteMsg {
    const NAME: &'static str = "vote";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 512;
}

impl VoteMsg {
    /// Signs the vote.
    pub fn sign(&self, key: &SecretKey) -> Signature {
        key.sign(sign::VOTE, &codec::encode(self))
    }

    /// Checks `signature` by `self.validator`.
    pub fn verify(&self, signature: &Signature) -> Result<(), sign::SignError> {
        self.validator.verify(sign::VOTE, &codec::encode(self), signature)
    }
}

/// What a proposer signs when it proposes a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalMsg {
    /// The chain.
    pub chain_id: String,
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// The round in which the block was locked, if it is re-proposed.
    pub pol_round: Option<u32>,
    /// The proposed block's hash.
    pub block: Hash32,
    /// The proposer's consensus key.
    pub proposer: PublicKey,
}

impl Canonical for ProposalMsg {
    const NAME: &'static str = "proposal";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 512;
}

impl ProposalMsg {
    /// Signs the proposal.
    pub fn sign(&self, key: &SecretKey) -> Signature {
        key.sign(sign::PROPOSAL, &codec::encode(self))
    }

    /// Checks `signature` by `self.proposer`.
    pub fn verify(&self, signature: &Signature) -> Result<(), sign::SignError> {
        self.proposer.verify(sign::PROPOSAL, &codec::encode(self), signature)
    }
}

/// One precommit in a commit certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitSig {
    /// The validator's consensus key.
    pub validator: PublicKey,
    /// Its precommit signature.
    pub signature: Signature,
    /// Its cosignature of the checkpoint the block produces (see
    /// [`crate::checkpoint::sign_checkpoint`]), attached to the precommit as a vote extension.
    pub checkpoint: Option<Signature>,
}

/// The precommits that decided a block: more than two thirds of the voting power.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Height.
    pub height: u64,
    /// Round in which the block was decided.
    pub round: u32,
    /// The decided block's hash.
    pub block: Hash32,
    /// The precommits.
    pub signatures: Vec<CommitSig>,
}

impl Canonical for Commit {
    const NAME: &'static str = "commit";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 64 * 1024;
}

/// Why a commit certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommitError {
    /// The certificate is for another height or block.
    #[error("commit is for height {got_height} block {got_block}, expected height {height} block {block}")]
    WrongBlock {
        /// Expected height.
        height: u64,
        /// Expected block.
        block: Hash32,
        /// Certificate's height.
        got_height: u64,
        /// Certificate's block.
        got_block: Hash32,
    },
    /// A signer is not in the validator set (its key, hex).
    #[error("commit signed by {0}, which is not in the validator set")]
    UnknownValidator(String),
    /// A validator signed twice (its key, hex).
    #[error("commit counts validator {0} twice")]
    DuplicateValidator(String),
    /// A precommit signature does not verify (the validator's key, hex).
    #[error("precommit signature of validator {0} does not verify")]
    BadSignature(String),
    /// Not enough voting power.
    #[error("commit carries {signed} of {total} voting power; more than two thirds is needed")]
    QuorumNotMet {
        /// Power that signed.
        signed: u128,
        /// Total power.
        total: u128,
    },
}

/// Checks that `commit` decides block `block` at `height` on `chain_id` under `set`: every signature is
/// a valid precommit for that block by a distinct member, and they hold more than two thirds of the
/// voting power.
pub fn verify_commit(
    commit: &Commit,
    set: &ValidatorSet,
    chain_id: &str,
    height: u64,
    block: &Hash32,
) -> Result<(), CommitError> {
    if commit.height != height || commit.block != *block {
        return Err(CommitError::WrongBlock {
            height,
            block: *block,
            got_height: commit.height,
            got_block: commit.block,
        });
    }
    let mut seen = BTreeSet::new();
    let mut signed: u128 = 0;
    for s in &commit.signatures {
        let v = set.by_key(&s.validator).ok_or_else(|| CommitError::UnknownValidator(s.validator.to_hex()))?;
        if !seen.insert(s.validator) {
            return Err(CommitError::DuplicateValidator(s.validator.to_hex()));
        }
        let vote = VoteMsg {
            chain_id: chain_id.to_string(),
            kind: VoteKind::Precommit,
            height,
            round: commit.round,
            block: Some(*block),
            validator: s.validator,
        };
        vote.verify(&s.signature).map_err(|_| CommitError::BadSignature(s.validator.to_hex()))?;
        signed += u128::from(v.power);
    }
    if !set.is_quorum(signed) {
        return Err(CommitError::QuorumNotMet { signed, total: set.total_power() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<SecretKey> {
        (1..=4u8).map(|i| SecretKey::from_seed(&[i; 32])).collect()
    }

    fn set(keys: &[SecretKey]) -> ValidatorSet {
        crate::validator::test_set(keys)
    }

    fn commit(keys: &[SecretKey], block: Hash32) -> Commit {
        let signatures = keys
            .iter()
            .map(|k| {
                let vote = VoteMsg {
                    chain_id: "c".into(),
                    kind: VoteKind::Precommit,
                    height: 5,
                    round: 1,
                    block: Some(block),
                    validator: k.public(),
                };
                CommitSig { validator: k.public(), signature: vote.sign(k), checkpoint: None }
            })
            .collect();
        Commit { height: 5, round: 1, block, signatures }
    }

    fn batch_tx(nonce: u64, root: u8) -> SignedTx {
        use crate::entry::{BatchAnchor, RecordKind};
        let key = SecretKey::from_seed(&[7; 32]);
        crate::tx::Transaction {
            chain_id: "c".into(),
            signer: key.public(),
            nonce,
            body: crate::tx::TxBody::AnchorBatch(BatchAnchor {
                root: Hash32([root; 32]),
                size: 3,
                kind: RecordKind::Notary,
            }),
        }
        .sign(&key)
    }

    #[test]
    fn a_body_is_checked_against_its_header_and_a_swapped_one_is_told_apart() {
        let txs = vec![batch_tx(0, 1), batch_tx(1, 2)];
        let header = BlockHeader {
            chain_id: "c".into(),
            height: 1,
            time_ms: 1,
            prev_hash: Hash32([0; 32]),
            tx_root: tx_root(&txs),
            tx_count: 2,
            log_size: 2,
            log_root: Hash32([3; 32]),
            state_root: Hash32([4; 32]),
            validator_set_hash: Hash32([5; 32]),
            proposer: keys()[0].public(),
        };
        let honest = Block { header: header.clone(), txs: txs.clone() };
        honest.check_body().unwrap();
        // The same header (so the same block hash and the same signed proposal) with other
        // transactions: one replaced, reordered, one dropped, one added.
        let replaced = Block { header: header.clone(), txs: vec![batch_tx(0, 1), batch_tx(1, 9)] };
        let reordered = Block { header: header.clone(), txs: vec![txs[1].clone(), txs[0].clone()] };
        let dropped = Block { header: header.clone(), txs: vec![txs[0].clone()] };
        let added = Block { header: header.clone(), txs: vec![txs[0].clone(), txs[1].clone(), batch_tx(2, 3)] };
        for swapped in [&replaced, &reordered] {
            assert_eq!(swapped.hash(), honest.hash());
            assert!(matches!(swapped.check_body(), Err(BodyMismatch::Root { .. })));
        }
        assert!(matches!(dropped.check_body(), Err(BodyMismatch::Count { header: 2, body: 1 })));
        assert!(matches!(added.check_body(), Err(BodyMismatch::Count { header: 2, body: 3 })));
    }

    #[test]
    fn commit_rules() {
        let keys = keys();
        let set = set(&keys);
        let b = Hash32([9; 32]);
        verify_commit(&commit(&keys[..3], b), &set, "c", 5, &b).unwrap();
        assert!(matches!(
            verify_commit(&commit(&keys[..2], b), &set, "c", 5, &b),
            Err(CommitError::QuorumNotMet { .. })
        ));
        assert!(matches!(
            verify_commit(&commit(&keys[..3], b), &set, "other", 5, &b),
            Err(CommitError::BadSignature(_))
        ));
        assert!(matches!(verify_commit(&commit(&keys[..3], b), &set, "c", 6, &b), Err(CommitError::WrongBlock { .. })));
        let mut dup = commit(&keys[..2], b);
        dup.signatures.push(dup.signatures[0].clone());
        assert!(matches!(verify_commit(&dup, &set, "c", 5, &b), Err(CommitError::DuplicateValidator(_))));
        let stranger = SecretKey::from_seed(&[77; 32]);
        let mut extra = commit(&keys[..2], b);
        extra.signatures.extend(commit(std::slice::from_ref(&stranger), b).signatures);
        assert!(matches!(verify_commit(&extra, &set, "c", 5, &b), Err(CommitError::UnknownValidator(_))));
        // A prevote signature cannot stand for a precommit.
        let mut c = commit(&keys[..3], b);
        let prevote = VoteMsg {
            chain_id: "c".into(),
            kind: VoteKind::Prevote,
            height: 5,
            round: 1,
            block: Some(b),
            validator: keys[0].public(),
        };
        c.signatures[0].signature = prevote.sign(&keys[0]);
        assert!(matches!(verify_commit(&c, &set, "c", 5, &b), Err(CommitError::BadSignature(_))));
    }
}

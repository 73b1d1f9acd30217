//! Equivocation evidence: two messages a validator signed that consensus forbids it to sign both.
//!
//! A validator equivocates when it signs two votes of one kind for different blocks in the same
//! height and round, or two proposals for different blocks in the same height and round. Either
//! pair proves the misbehaviour to anyone with the genesis: both signatures verify under the
//! validator's consensus key over the canonical bytes of [`VoteMsg`] / [`ProposalMsg`], and the two
//! messages agree in everything but the block. Nodes keep the evidence consensus hands them at each
//! decision, so an operator (and, later, governance) can act on it.

use crate::block::{ProposalMsg, VoteMsg};
use crate::codec::Canonical;
use crate::sign::{PublicKey, Signature};
use crate::validator::ValidatorSet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A pair of conflicting messages signed by one validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Equivocation {
    /// Two votes of one kind, height and round for different blocks (or one for a block and one nil).
    Votes {
        /// The first vote and its signature.
        first: (VoteMsg, Signature),
        /// The conflicting vote and its signature.
        second: (VoteMsg, Signature),
    },
    /// Two proposals of one height and round for different blocks.
    Proposals {
        /// The first proposal and its signature.
        first: (ProposalMsg, Signature),
        /// The conflicting proposal and its signature.
        second: (ProposalMsg, Signature),
    },
}

impl Canonical for Equivocation {
    const NAME: &'static str = "equivocation";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 2048;
}

/// Why a pair of messages is no evidence of equivocation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvidenceError {
    /// The messages differ in more than the block, or not in the block.
    #[error("the two messages do not conflict: {0}")]
    NoConflict(&'static str),
    /// A signature does not verify.
    #[error("the {0} message's signature does not verify")]
    BadSignature(&'static str),
    /// The signer is not in the validator set.
    #[error("the signer {0} is not a validator")]
    NotAValidator(String),
    /// Another chain.
    #[error("the messages are for chain {got:?}, not {expected:?}")]
    WrongChain {
        /// The messages' chain.
        got: String,
        /// The expected chain.
        expected: String,
    },
}

impl Equivocation {
    /// The validator that signed both messages.
    pub fn validator(&self) -> PublicKey {
        match self {
            Equivocation::Votes { first, .. } => first.0.validator,
            Equivocation::Proposals { first, .. } => first.0.proposer,
        }
    }

    /// The height both messages are for.
    pub fn height(&self) -> u64 {
        match self {
            Equivocation::Votes { first, .. } => first.0.height,
            Equivocation::Proposals { first, .. } => first.0.height,
        }
    }

    /// The round both messages are for.
    pub fn round(&self) -> u32 {
        match self {
            Equivocation::Votes { first, .. } => first.0.round,
            Equivocation::Proposals { first, .. } => first.0.round,
        }
    }

    /// What was doubled: `prevote`, `precommit` or `proposal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Equivocation::Votes { first, .. } => match first.0.kind {
                crate::block::VoteKind::Prevote => "prevote",
                crate::block::VoteKind::Precommit => "precommit",
            },
            Equivocation::Proposals { .. } => "proposal",
        }
    }

    /// Checks that this is evidence against a validator of `set` on chain `chain_id`: the two
    /// messages agree in chain, kind, height, round and signer, name different blocks, and both
    /// signatures verify.
    pub fn verify(&self, chain_id: &str, set: &ValidatorSet) -> Result<(), EvidenceError> {
        let chain = match self {
            Equivocation::Votes { first: (a, sa), second: (b, sb) } => {
                if a.chain_id != b.chain_id || a.kind != b.kind || a.height != b.height || a.round != b.round {
                    return Err(EvidenceError::NoConflict("the votes are for different heights, rounds or kinds"));
                }
                if a.validator != b.validator {
                    return Err(EvidenceError::NoConflict("the votes are by different validators"));
                }
                if a.block == b.block {
                    return Err(EvidenceError::NoConflict("the votes are for the same block"));
                }
                a.verify(sa).map_err(|_| EvidenceError::BadSignature("first"))?;
                b.verify(sb).map_err(|_| EvidenceError::BadSignature("second"))?;
                &a.chain_id
            }
            Equivocation::Proposals { first: (a, sa), second: (b, sb) } => {
                if a.chain_id != b.chain_id || a.height != b.height || a.round != b.round {
                    return Err(EvidenceError::NoConflict("the proposals are for different heights or rounds"));
                }
                if a.proposer != b.proposer {
                    return Err(EvidenceError::NoConflict("the proposals are by different validators"));
                }
                if a.block == b.block {
                    return Err(EvidenceError::NoConflict("the proposals are of the same block"));
                }
                a.verify(sa).map_err(|_| EvidenceError::BadSignature("first"))?;
                b.verify(sb).map_err(|_| EvidenceError::BadSignature("second"))?;
                &a.chain_id
            }
        };
        if chain != chain_id {
            return Err(EvidenceError::WrongChain { got: chain.clone(), expected: chain_id.to_string() });
        }
        let validator = self.validator();
        if set.by_key(&validator).is_none() {
            return Err(EvidenceError::NotAValidator(validator.to_hex()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::VoteKind;
    use crate::hash::Hash32;
    use crate::sign::SecretKey;

    fn vote(key: &SecretKey, kind: VoteKind, round: u32, block: Option<Hash32>) -> (VoteMsg, Signature) {
        let m = VoteMsg { chain_id: "c".into(), kind, height: 7, round, block, validator: key.public() };
        let s = m.sign(key);
        (m, s)
    }

    fn proposal(key: &SecretKey, round: u32, block: Hash32) -> (ProposalMsg, Signature) {
        let m = ProposalMsg { chain_id: "c".into(), height: 7, round, pol_round: None, block, proposer: key.public() };
        let s = m.sign(key);
        (m, s)
    }

    #[test]
    fn conflicting_signed_messages_are_evidence_and_nothing_else_is() {
        let keys: Vec<SecretKey> = (1..=4u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let set = crate::validator::test_set(&keys);
        let (a, b) = (Some(Hash32([1; 32])), Some(Hash32([2; 32])));
        let k = &keys[0];
        let ok = |e: Equivocation| e.verify("c", &set);
        let votes = |first, second| Equivocation::Votes { first, second };

        // Two precommits, or a block and nil, in one round: evidence.
        ok(votes(vote(k, VoteKind::Precommit, 0, a), vote(k, VoteKind::Precommit, 0, b))).unwrap();
        ok(votes(vote(k, VoteKind::Prevote, 2, a), vote(k, VoteKind::Prevote, 2, None))).unwrap();
        let e =
            Equivocation::Proposals { first: proposal(k, 1, Hash32([1; 32])), second: proposal(k, 1, Hash32([2; 32])) };
        ok(e.clone()).unwrap();
        assert_eq!((e.height(), e.round(), e.kind(), e.validator()), (7, 1, "proposal", k.public()));

        // The same block twice, other rounds, other kinds, other signers: no evidence.
        let no = |e: Equivocation| matches!(e.verify("c", &set), Err(EvidenceError::NoConflict(_)));
        assert!(no(votes(vote(k, VoteKind::Precommit, 0, a), vote(k, VoteKind::Precommit, 0, a))));
        assert!(no(votes(vote(k, VoteKind::Precommit, 0, a), vote(k, VoteKind::Precommit, 1, b))));
        assert!(no(votes(vote(k, VoteKind::Prevote, 0, a), vote(k, VoteKind::Precommit, 0, b))));
        assert!(no(votes(vote(k, VoteKind::Prevote, 0, a), vote(&keys[1], VoteKind::Prevote, 0, b))));
        assert!(no(Equivocation::Proposals {
            first: proposal(k, 1, Hash32([1; 32])),
            second: proposal(k, 1, Hash32([1; 32]))
        }));

        // A forged signature (a stranger cannot frame a validator), another chain, a stranger.
        let mut forged = vote(k, VoteKind::Precommit, 0, b);
        forged.1 = vote(&keys[1], VoteKind::Precommit, 0, b).1;
        assert_eq!(
            votes(vote(k, VoteKind::Precommit, 0, a), forged).verify("c", &set),
            Err(EvidenceError::BadSignature("second"))
        );
        assert!(matches!(
            votes(vote(k, VoteKind::Precommit, 0, a), vote(k, VoteKind::Precommit, 0, b)).verify("other", &set),
            Err(EvidenceError::WrongChain { .. })
        ));
        let stranger = SecretKey::from_seed(&[99; 32]);
        assert!(matches!(
            votes(vote(&stranger, VoteKind::Precommit, 0, a), vote(&stranger, VoteKind::Precommit, 0, b))
                .verify("c", &set),
            Err(EvidenceError::NotAValidator(_))
        ));
    }
}

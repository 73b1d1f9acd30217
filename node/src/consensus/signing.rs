//! Malachite's `Signer` and `Verifier`, implemented with `sabt_core`'s one signature rule (strict
//! Ed25519 over domain-separated canonical bytes).
//!
//! | what | signed bytes |
//! |---|---|
//! | vote | `sabt/vote/v1 ‖ 0 ‖ encode(VoteMsg)` |
//! | proposal | `sabt/proposal/v1 ‖ 0 ‖ encode(ProposalMsg)` |
//! | vote extension | the checkpoint body text (a C2SP note signature: `checkpoint::sign_checkpoint`) |
//! | proof of validator | `sabt/validator-proof/v1 ‖ 0 ‖ Malachite's "PoV" preimage` |
//!
//! Before it signs a vote or a proposal, the signer records what it signs in the record of signed
//! messages (one synced line, [`super::record`], kept outside the data directory). Asked to sign
//! something else in a height, round and kind where it signed before (after a crash, a lost
//! write-ahead log, or a resync that re-runs old heights), it signs the earlier message again
//! instead: this validator never signs two conflicting messages. (Should the node then restart
//! within that height, the engine finds its write-ahead log disagreeing with what it derives again
//! and stops; the log can be moved away, as the message at start says.)

use super::context::{Address, CheckpointExt, Ed25519Strict, SabtContext, Vote};
use super::mal::{SignedMessage, ValidatorProof, VoteExtensionScope};
use async_trait::async_trait;
use malachitebft_signing::{Error, Signer, VerificationResult, Verifier};
use sabt_core::checkpoint::{Checkpoint, sign_checkpoint, verify_checkpoint_signature};
use sabt_core::hash::Hash32;
use sabt_core::sign::{self, PublicKey, SecretKey, Signature};
use std::sync::Arc;
use tracing::error;

/// What a signer checks before it signs a message of `kind` (0 prevote, 1 precommit, 2 proposal)
/// at a height and round for a block (or nil): `Ok(None)` once the message is durably recorded
/// (or was signed before), `Ok(Some(value))` when another value was signed in that slot before
/// (that message is signed again instead), `Err` with the reason when nothing may be signed.
pub type Guard = Arc<dyn Fn(u64, u32, u8, Option<Hash32>) -> Result<Option<Option<Hash32>>, String> + Send + Sync>;

/// The kind byte of a prevote in a signing record.
pub const PREVOTE: u8 = 0;
/// The kind byte of a precommit.
pub const PRECOMMIT: u8 = 1;
/// The kind byte of a proposal.
pub const PROPOSAL: u8 = 2;

fn err(text: &str) -> Error {
    Error::from_source(text.to_string())
}

fn checkpoint(chain_id: &str, ext: &CheckpointExt) -> Checkpoint {
    Checkpoint { origin: chain_id.to_string(), size: ext.size, root: ext.root }
}

/// Signs with this validator's consensus key.
#[derive(Clone)]
pub struct SabtSigner {
    chain_id: Arc<str>,
    key: Arc<SecretKey>,
    guard: Guard,
}

impl std::fmt::Debug for SabtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SabtSigner").field("chain_id", &self.chain_id).field("key", &self.key.public()).finish()
    }
}

impl SabtSigner {
    /// A signer for `chain_id` with `key`, which asks `guard` before every vote and proposal.
    pub fn new(chain_id: Arc<str>, key: Arc<SecretKey>, guard: Guard) -> Self {
        SabtSigner { chain_id, key, guard }
    }

    fn check(&self, height: u64, round: u32, kind: u8, value: Option<Hash32>) -> Result<Option<Option<Hash32>>, Error> {
        (self.guard)(height, round, kind, value).map_err(|reason| {
            error!(height, round, kind, "{reason}");
            err(&reason)
        })
    }

    /// This validator's address.
    pub fn address(&self) -> Address {
        Address(self.key.public())
    }
}

#[async_trait]
impl Signer<SabtContext> for SabtSigner {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<SabtContext, Vote>, Error> {
        let msg = vote.message(&self.chain_id).ok_or_else(|| err("vote without a round"))?;
        let kind = match msg.kind {
            sabt_core::block::VoteKind::Prevote => PREVOTE,
            sabt_core::block::VoteKind::Precommit => PRECOMMIT,
        };
        let (vote, msg) = match self.check(msg.height, msg.round, kind, msg.block)? {
            None => (vote, msg),
            Some(before) => {
                // The message signed in this slot before, without a cosignature (its block's
                // checkpoint may not be known here).
                let vote = Vote {
                    value: before.map_or(super::mal::NilOrVal::Nil, super::mal::NilOrVal::Val),
                    extension: None,
                    ..vote
                };
                let msg = vote.message(&self.chain_id).ok_or_else(|| err("vote without a round"))?;
                (vote, msg)
            }
        };
        let signature = msg.sign(&self.key);
        crate::faults::signed(kind, msg.height, msg.round, msg.block);
        Ok(SignedMessage::new(vote, signature))
    }

    async fn sign_proposal(
        &self,
        proposal: super::context::Proposal,
    ) -> Result<SignedMessage<SabtContext, super::context::Proposal>, Error> {
        let msg = proposal.message(&self.chain_id).ok_or_else(|| err("proposal without a round"))?;
        let (proposal, msg) = match self.check(msg.height, msg.round, PROPOSAL, Some(msg.block))? {
            Some(Some(before)) => {
                let proposal = super::context::Proposal { value: super::context::BlockId(before), ..proposal };
                let msg = proposal.message(&self.chain_id).ok_or_else(|| err("proposal without a round"))?;
                (proposal, msg)
            }
            _ => (proposal, msg),
        };
        let signature = msg.sign(&self.key);
        crate::faults::signed(PROPOSAL, msg.height, msg.round, Some(msg.block));
        Ok(SignedMessage::new(proposal, signature))
    }

    async fn sign_vote_extension(
        &self,
        _scope: VoteExtensionScope<SabtContext>,
        extension: CheckpointExt,
    ) -> Result<SignedMessage<SabtContext, CheckpointExt>, Error> {
        let signature = sign_checkpoint(&checkpoint(&self.chain_id, &extension), &self.key);
        Ok(SignedMessage::new(extension, signature))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<SabtContext>, Error> {
        let preimage = ValidatorProof::<SabtContext>::signing_bytes(&public_key, &peer_id);
        let signature = self.key.sign(sign::VALIDATOR_PROOF, &preimage);
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }
}

/// Verifies consensus signatures.
#[derive(Debug, Clone)]
pub struct SabtVerifier {
    chain_id: Arc<str>,
}

impl SabtVerifier {
    /// A verifier for `chain_id`.
    pub fn new(chain_id: Arc<str>) -> Self {
        SabtVerifier { chain_id }
    }
}

#[async_trait]
impl Verifier<SabtContext> for SabtVerifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        let Some(msg) = vote.message(&self.chain_id) else { return Ok(VerificationResult::Invalid) };
        Ok(VerificationResult::from_bool(msg.validator == *public_key && msg.verify(signature).is_ok()))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &super::context::Proposal,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        let Some(msg) = proposal.message(&self.chain_id) else { return Ok(VerificationResult::Invalid) };
        Ok(VerificationResult::from_bool(msg.proposer == *public_key && msg.verify(signature).is_ok()))
    }

    async fn verify_signed_vote_extension(
        &self,
        _scope: &VoteExtensionScope<SabtContext>,
        extension: &CheckpointExt,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, Error> {
        let ok = verify_checkpoint_signature(&checkpoint(&self.chain_id, extension), public_key, signature).is_ok();
        Ok(VerificationResult::from_bool(ok))
    }

    async fn verify_validator_proof(&self, proof: &ValidatorProof<SabtContext>) -> Result<VerificationResult, Error> {
        let Ok(key) = proof.decoded_public_key() else { return Ok(VerificationResult::Invalid) };
        let ok = key.verify(sign::VALIDATOR_PROOF, &proof.preimage(), &proof.signature).is_ok();
        Ok(VerificationResult::from_bool(ok))
    }
}

// Keep the scheme type referenced so the module's contract (one scheme) is visible here.
#[allow(dead_code)]
type Scheme = Ed25519Strict;

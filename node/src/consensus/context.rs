//! Sabt's implementation of Malachite's `Context`: heights, addresses, the decided value (a block
//! hash), proposals, proposal parts, votes, validators and the signing scheme.
//!
//! Every signature is made and checked with `sabt_core::sign` (strict Ed25519, domain-separated),
//! over the canonical encodings of `sabt_core::block::{VoteMsg, ProposalMsg}`, so an auditor can
//! verify commit certificates with the core alone.

use super::mal::{self, LinearTimeouts, NilOrVal, Round, SignedExtension, SigningScheme, VoteType};
use sabt_core::block::{ProposalMsg, VoteKind, VoteMsg};
use sabt_core::hash::Hash32;
use sabt_core::sign::{PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// A block height.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl mal::Height for Height {
    const ZERO: Self = Height(0);
    const INITIAL: Self = Height(1);

    fn increment_by(&self, n: u64) -> Self {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Self> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address: its consensus key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Address(pub PublicKey);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_hex())
    }
}

impl mal::Address for Address {}

/// The value consensus decides: a block, named by its hash. The block itself travels in proposal
/// parts and in sync responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockId(pub Hash32);

impl mal::Value for BlockId {
    type Id = Hash32;

    fn id(&self) -> Hash32 {
        self.0
    }
}

/// The checkpoint a precommit cosigns, attached as a vote extension: the log size and root after
/// the block. Its signature is the validator's C2SP note signature over the checkpoint body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointExt {
    /// Log size after the block.
    pub size: u64,
    /// Log root after the block.
    pub root: Hash32,
}

impl mal::Extension for CheckpointExt {
    fn size_bytes(&self) -> usize {
        40
    }
}

/// A signature, ordered as Malachite requires.
pub type Sig = Signature;

/// Ed25519 with strict verification, through `sabt_core::sign`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ed25519Strict;

impl SigningScheme for Ed25519Strict {
    type DecodingError = String;
    type Signature = Sig;
    type PublicKey = PublicKey;
    type PrivateKey = Arc<SecretKey>;

    fn decode_signature(bytes: &[u8]) -> Result<Sig, String> {
        let arr: [u8; 64] = bytes.try_into().map_err(|_| format!("signature is {} bytes, not 64", bytes.len()))?;
        Ok(Signature(arr))
    }

    fn encode_signature(signature: &Sig) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, String> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| format!("public key is {} bytes, not 32", bytes.len()))?;
        PublicKey::from_bytes(&arr).map_err(|e| e.to_string())
    }

    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.to_bytes().to_vec()
    }
}

/// A proposal: the engine's view of "this proposer proposes this block at this height and round".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The block.
    pub value: BlockId,
    /// Proof-of-lock round.
    pub pol_round: Round,
    /// Proposer.
    pub proposer: Address,
}

impl Proposal {
    /// The bytes the proposer signs.
    pub fn message(&self, chain_id: &str) -> Option<ProposalMsg> {
        Some(ProposalMsg {
            chain_id: chain_id.to_string(),
            height: self.height.0,
            round: self.round.as_u32()?,
            pol_round: self.pol_round.as_u32(),
            block: self.value.0,
            proposer: self.proposer.0,
        })
    }
}

impl mal::Proposal<SabtContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &BlockId {
        &self.value
    }
    fn take_value(self) -> BlockId {
        self.value
    }
    fn pol_round(&self) -> Round {
        self.pol_round
    }
    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// The one part a proposal is streamed in: the whole encoded block, with the proposer's signature
/// over the proposal, so a receiver can tell a genuine proposal from a forged stream before it
/// executes anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalPart {
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// Proof-of-lock round.
    pub pol_round: Option<u32>,
    /// Proposer.
    pub proposer: PublicKey,
    /// The canonical encoding of the block.
    #[serde(with = "serde_bytes_vec")]
    pub block: Arc<Vec<u8>>,
    /// The proposer's signature over the `ProposalMsg` for this block.
    pub signature: Signature,
}

mod serde_bytes_vec {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(v: &Arc<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Vec<u8>>, D::Error> {
        let v: &[u8] = <&[u8]>::deserialize(d)?;
        Ok(Arc::new(v.to_vec()))
    }
}

impl mal::ProposalPart<SabtContext> for ProposalPart {
    fn is_first(&self) -> bool {
        true
    }
    fn is_last(&self) -> bool {
        true
    }
}

/// A vote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// Prevote or precommit.
    pub vote_type: VoteType,
    /// Height.
    pub height: Height,
    /// Round.
    pub round: Round,
    /// The block, or nil.
    pub value: NilOrVal<Hash32>,
    /// The voter.
    pub validator: Address,
    /// The checkpoint cosignature a precommit carries.
    pub extension: Option<SignedExtension<SabtContext>>,
}

impl Vote {
    /// The bytes the voter signs (the extension is signed separately).
    pub fn message(&self, chain_id: &str) -> Option<VoteMsg> {
        Some(VoteMsg {
            chain_id: chain_id.to_string(),
            kind: match self.vote_type {
                VoteType::Prevote => VoteKind::Prevote,
                VoteType::Precommit => VoteKind::Precommit,
            },
            height: self.height.0,
            round: self.round.as_u32()?,
            block: match self.value {
                NilOrVal::Nil => None,
                NilOrVal::Val(h) => Some(h),
            },
            validator: self.validator.0,
        })
    }
}

impl mal::Vote<SabtContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }
    fn round(&self) -> Round {
        self.round
    }
    fn value(&self) -> &NilOrVal<Hash32> {
        &self.value
    }
    fn take_value(self) -> NilOrVal<Hash32> {
        self.value
    }
    fn vote_type(&self) -> VoteType {
        self.vote_type
    }
    fn validator_address(&self) -> &Address {
        &self.validator
    }
    fn extension(&self) -> Option<&SignedExtension<SabtContext>> {
        self.extension.as_ref()
    }
    fn take_extension(&mut self) -> Option<SignedExtension<SabtContext>> {
        self.extension.take()
    }
    fn extend(self, extension: SignedExtension<SabtContext>) -> Self {
        Vote { extension: Some(extension), ..self }
    }
}

/// A validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    /// Address (consensus key).
    pub address: Address,
    /// Voting power.
    pub power: u64,
}

impl mal::Validator<SabtContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }
    fn public_key(&self) -> &PublicKey {
        &self.address.0
    }
    fn voting_power(&self) -> u64 {
        self.power
    }
}

/// A validator set, in genesis order, as it stands for one height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    /// The validators.
    pub validators: Vec<Validator>,
    /// Validators that missed their last turn to propose (see [`absent_before`]): at this height
    /// they come after the others in the proposer order, unless it is a probe height.
    pub absent: Vec<Address>,
}

/// Every this many rotations of the proposer order, a rotation gives absent validators their
/// turn again ([`is_probe`]): a validator that is back proposes and is no longer absent; one
/// still down costs the network one propose timeout in that many rotations instead of one in each.
pub const PROBE_ROTATIONS: u64 = 4;

/// Whether consensus tolerates `absent` voting power of `total` being faulty: less than a third,
/// so that the rest is more than two thirds. More absent power than this is not a validator down
/// but the network in trouble: the order is then plain round robin, so that no few validators are
/// left to propose every round 0. Counted in voting power, not validators: with unequal powers,
/// one validator may hold more than a third.
pub fn tolerated_faulty(absent: u128, total: u128) -> bool {
    absent.saturating_mul(3) < total
}

/// Whether `height` belongs to a probe rotation, in which the proposer order is plain round robin.
pub fn is_probe(height: u64, validators: usize) -> bool {
    let n = validators.max(1) as u64;
    (height.saturating_sub(1) / n).is_multiple_of(PROBE_ROTATIONS)
}

/// The validators that missed their last round-0 turn before `height`: each validator is named by
/// plain round robin for round 0 at exactly one height `j` of the `n` heights before `height` (so
/// none is listed twice); it
/// missed that turn if the block committed at `j` was proposed by another. `proposers` gives the
/// proposer of each committed block among those heights (a height it lacks counts as kept). A
/// function of committed blocks alone, so every validator derives the same set.
pub fn absent_before(
    validators: &[Validator],
    height: u64,
    proposers: &std::collections::BTreeMap<u64, Address>,
) -> Vec<Address> {
    let n = validators.len() as u64;
    let mut out = Vec::new();
    for j in height.saturating_sub(n).max(1)..height {
        #[allow(clippy::indexing_slicing)] // (j - 1) % n < n = len
        let named = validators[((j - 1) % n) as usize].address;
        if proposers.get(&j).is_some_and(|p| *p != named) {
            out.push(named);
        }
    }
    out
}

impl ValidatorSet {
    /// Malachite's view of a core validator set.
    pub fn from_core(set: &sabt_core::validator::ValidatorSet) -> Self {
        ValidatorSet {
            validators: set
                .validators()
                .iter()
                .map(|v| Validator { address: Address(v.key), power: v.power })
                .collect(),
            absent: Vec::new(),
        }
    }

    /// This set for `height`, with the validators that missed their last turn before it
    /// ([`absent_before`]).
    pub fn for_height(&self, height: u64, proposers: &std::collections::BTreeMap<u64, Address>) -> Self {
        ValidatorSet { validators: self.validators.clone(), absent: absent_before(&self.validators, height, proposers) }
    }
}

impl mal::ValidatorSet<SabtContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }
    fn total_voting_power(&self) -> u64 {
        self.validators.iter().fold(0u64, |acc, v| acc.saturating_add(v.power))
    }
    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.validators.iter().find(|v| v.address == *address)
    }
    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// Sabt's consensus context. The chain id that every signed consensus message binds is held by
/// the signer and verifier ([`super::signing`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SabtContext;

impl mal::Context for SabtContext {
    type Address = Address;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockId;
    type Vote = Vote;
    type Extension = CheckpointExt;
    type SigningScheme = Ed25519Strict;

    /// Round robin over the set in genesis order, shifted by height and round, so every validator
    /// proposes in turn and a silent proposer is skipped in the next round. Validators that missed
    /// their last turn ([`ValidatorSet::absent`]) are moved to the end of the height's order, so a
    /// validator that is down does not cost a propose timeout at every turn; in a probe rotation
    /// ([`is_probe`]) the order is plain round robin, so a validator that is back gets its turn;
    /// so is it when more voting power is absent than consensus tolerates faulty ([`tolerated_faulty`]).
    fn select_proposer<'a>(&self, set: &'a ValidatorSet, height: Height, round: Round) -> &'a Validator {
        let n = set.validators.len().max(1);
        let r = round.as_u32().unwrap_or(0) as usize % n;
        let start = (height.0.wrapping_sub(1) % n as u64) as usize;
        let rotation = (0..n).map(|k| (start + k) % n);
        let is_absent = |i: &usize| set.validators.get(*i).is_some_and(|v| set.absent.contains(&v.address));
        let power = |a: &Address| set.validators.iter().find(|v| v.address == *a).map_or(0, |v| u128::from(v.power));
        let absent_power: u128 = set.absent.iter().map(power).sum();
        let total: u128 = set.validators.iter().map(|v| u128::from(v.power)).sum();
        let skipping = !set.absent.is_empty() && tolerated_faulty(absent_power, total) && !is_probe(height.0, n);
        let i = if skipping {
            rotation.clone().filter(|i| !is_absent(i)).chain(rotation.filter(|i| is_absent(i))).nth(r).unwrap_or(start)
        } else {
            (start + r) % n
        };
        // A set is never empty (the genesis refuses one), so index i exists.
        #[allow(clippy::indexing_slicing)]
        &set.validators[i]
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockId,
        pol_round: Round,
        address: Address,
    ) -> Proposal {
        Proposal { height, round, value, pol_round, proposer: address }
    }

    fn new_prevote(&self, height: Height, round: Round, value_id: NilOrVal<Hash32>, address: Address) -> Vote {
        Vote { vote_type: VoteType::Prevote, height, round, value: value_id, validator: address, extension: None }
    }

    fn new_precommit(&self, height: Height, round: Round, value_id: NilOrVal<Hash32>, address: Address) -> Vote {
        Vote { vote_type: VoteType::Precommit, height, round, value: value_id, validator: address, extension: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mal::{Context as _, Extension as _};

    #[test]
    fn proposer_rotates_with_height_and_round() {
        let keys: Vec<_> = (1..=4u8).map(|i| SecretKey::from_seed(&[i; 32]).public()).collect();
        let set = ValidatorSet {
            validators: keys.iter().map(|k| Validator { address: Address(*k), power: 1 }).collect(),
            absent: Vec::new(),
        };
        let ctx = SabtContext;
        let p = |h, r| ctx.select_proposer(&set, Height(h), Round::new(r)).address;
        assert_eq!(p(1, 0), Address(keys[0]));
        assert_eq!(p(2, 0), Address(keys[1]));
        assert_eq!(p(1, 1), Address(keys[1]));
        assert_eq!(p(4, 1), Address(keys[0]));
        let ext = CheckpointExt { size: 1, root: Hash32::ZERO };
        assert_eq!(ext.size_bytes(), 40);
    }

    #[test]
    fn a_validator_that_missed_its_turn_proposes_last_until_a_probe_rotation() {
        let keys: Vec<_> = (1..=4u8).map(|i| Address(SecretKey::from_seed(&[i; 32]).public())).collect();
        let base = ValidatorSet {
            validators: keys.iter().map(|k| Validator { address: *k, power: 1 }).collect(),
            absent: Vec::new(),
        };
        // Rotations 0, 4, 8, ... are probes: heights 1-4, 17-20, 33-36, ...
        assert!(is_probe(1, 4) && is_probe(4, 4) && !is_probe(5, 4) && !is_probe(16, 4) && is_probe(17, 4));
        assert!(!is_probe(24, 4) && is_probe(65, 4));
        // Height 24's round-0 turn is the fourth validator's; its block came from the first.
        let mut proposers = std::collections::BTreeMap::new();
        for (h, who) in [(21u64, 0usize), (22, 1), (23, 2), (24, 0)] {
            proposers.insert(h, keys[who]);
        }
        assert_eq!(absent_before(&base.validators, 25, &proposers), vec![keys[3]]);
        // A height lacking from `proposers` counts as kept; so does every height at the start.
        proposers.remove(&24);
        assert!(absent_before(&base.validators, 25, &proposers).is_empty());
        assert!(absent_before(&base.validators, 1, &proposers).is_empty());
        proposers.insert(24, keys[0]);

        let set = base.for_height(25, &proposers);
        assert_eq!(set.absent, vec![keys[3]]);
        let ctx = SabtContext;
        let p = |h, r| ctx.select_proposer(&set, Height(h), Round::new(r)).address;
        // Height 28 would be the fourth validator's: the next in turn takes it, and the absent
        // one comes last, after every round of the others.
        assert_eq!((p(25, 0), p(26, 0), p(27, 0)), (keys[0], keys[1], keys[2]));
        assert_eq!((p(28, 0), p(28, 1), p(28, 2), p(28, 3)), (keys[0], keys[1], keys[2], keys[3]));
        assert_eq!((p(27, 1), p(27, 2), p(27, 3)), (keys[0], keys[1], keys[3]));
        // Rounds beyond the set wrap around.
        assert_eq!(p(28, 4), keys[0]);
        // In a probe rotation the order is plain round robin: the fourth validator gets height 36.
        assert!(is_probe(36, 4));
        assert_eq!((p(36, 0), p(36, 1)), (keys[3], keys[0]));
        // More absent than one of four (the most consensus tolerates faulty): nobody is moved.
        // (absent power, total, tolerated): one of four, two of seven, none of three.
        for (absent, total, ok) in
            [(1, 4, true), (2, 4, false), (2, 7, true), (3, 7, false), (1, 3, false), (0, 1, true)]
        {
            assert_eq!(tolerated_faulty(absent, total), ok, "{absent} of {total}");
        }
        for absent in [keys.clone(), vec![keys[2], keys[3]]] {
            let many = ValidatorSet { absent, ..base.clone() };
            assert_eq!(ctx.select_proposer(&many, Height(28), Round::new(0)).address, keys[3]);
            assert_eq!(ctx.select_proposer(&many, Height(27), Round::new(0)).address, keys[2]);
        }
        // A validator that proposed at its turn is not absent, whoever proposed elsewhere.
        let kept: std::collections::BTreeMap<u64, Address> =
            (21..=24).map(|h| (h, keys[((h - 1) % 4) as usize])).collect();
        assert!(absent_before(&base.validators, 25, &kept).is_empty());
    }

    #[test]
    fn absent_validators_are_counted_by_voting_power() {
        // Four validators, the fourth holding half the power: its absence is more than a third of
        // the power, so the order is plain round robin, though it is one validator of four.
        let keys: Vec<Address> = (1..=4u8).map(|i| Address(SecretKey::from_seed(&[i; 32]).public())).collect();
        let validators: Vec<Validator> =
            keys.iter().zip([1u64, 1, 1, 3]).map(|(a, power)| Validator { address: *a, power }).collect();
        let ctx = SabtContext;
        let heavy_absent = ValidatorSet { validators: validators.clone(), absent: vec![keys[3]] };
        assert!(!is_probe(28, 4));
        assert_eq!(ctx.select_proposer(&heavy_absent, Height(28), Round::new(0)).address, keys[3], "plain order");
        // One of the light validators absent (1 of 6): it is moved to the end of the order.
        let light_absent = ValidatorSet { validators, absent: vec![keys[2]] };
        assert_eq!(ctx.select_proposer(&light_absent, Height(27), Round::new(0)).address, keys[3]);
        assert_eq!(ctx.select_proposer(&light_absent, Height(27), Round::new(3)).address, keys[2]);
    }
}

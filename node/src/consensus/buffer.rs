//! The blocks this node holds for heights it has not committed yet, and the proposals that named
//! them: bounded, de-duplicated before any work is done, and never overwritten.
//!
//! A block's hash is its header's, and a proposal's signature covers that hash only, so a body that
//! arrives under a known hash is either the same body again (nothing to do) or another body under
//! a copied header (to be refused). The buffer is asked first ([`Buffer::offer`]): a part already
//! seen costs nothing, a body already held is not decoded or executed again, and a body is held
//! only after its transactions were checked against its header ([`sabt_core::block::Block::check_body`],
//! the caller's step), so the first body held under a hash is the one its header names, and it
//! stays.
//!
//! Room is bounded three ways: heights ahead of the tip ([`MAX_PENDING_HEIGHTS`]), bodies a height
//! ([`MAX_PENDING_PER_HEIGHT`]) and bodies a proposer may place in a height
//! ([`MAX_PENDING_PER_PROPOSER`]), so no validator can fill a height's room with blocks of its own.

use super::context::Address;
use sabt_core::block::Block;
use sabt_core::hash::Hash32;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Heights ahead of the tip for which received proposals are kept.
pub const MAX_PENDING_HEIGHTS: u64 = 8;
/// Most bodies kept for one height.
pub const MAX_PENDING_PER_HEIGHT: usize = 64;
/// Most bodies kept for one height from one proposer.
pub const MAX_PENDING_PER_PROPOSER: usize = 4;

/// A proposal as it arrives: who proposes which block at which height and round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Height.
    pub height: u64,
    /// Round.
    pub round: u32,
    /// The round the block was locked in, for a re-proposal.
    pub pol_round: Option<u32>,
    /// The proposer of this round.
    pub proposer: Address,
    /// The block's hash.
    pub hash: Hash32,
}

/// A block held, with what this node found of it.
#[derive(Debug, Clone)]
pub struct Body {
    /// The block; its transactions match its header.
    pub block: Arc<Block>,
    /// Its canonical encoding.
    pub bytes: Arc<Vec<u8>>,
    /// Whether it executes as the next block on the committed tip: `None` until it is executed.
    pub valid: Option<bool>,
    /// When this node had it from its proposer and had executed it; `None` for a block not yet
    /// executed or received by sync.
    pub ready_at: Option<Instant>,
    /// The validator whose room it takes.
    pub placed_by: Address,
}

/// What to do with an [`Offer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// For a height committed already, or too far ahead: ignore it.
    OutOfWindow,
    /// This very proposal is held already: ignore it, before decoding or executing anything.
    Duplicate,
    /// The proposer already proposed another block in this round (equivocation): ignore it.
    Conflicting,
    /// Its block is held already (proposed in another round): record the proposal, reuse the
    /// block and its verdict.
    KnownBody,
    /// A new block, and there is room: check and insert it.
    NeedBody,
    /// A new block, and its height or proposer has no room left: ignore it.
    Full,
}

#[derive(Debug, Default)]
struct AtHeight {
    bodies: BTreeMap<Hash32, Body>,
    /// Proposals by round and proposer: the block and its proof-of-lock round.
    proposals: BTreeMap<u32, BTreeMap<Address, (Hash32, Option<u32>)>>,
}

/// The blocks and proposals held above the committed tip.
#[derive(Debug, Default)]
pub struct Buffer {
    at: BTreeMap<u64, AtHeight>,
}

impl Buffer {
    /// How to treat `offer` when the committed tip is `tip`.
    pub fn offer(&self, tip: u64, offer: &Offer) -> Admission {
        if offer.height <= tip || offer.height > tip.saturating_add(MAX_PENDING_HEIGHTS) {
            return Admission::OutOfWindow;
        }
        let Some(at) = self.at.get(&offer.height) else { return Admission::NeedBody };
        match at.proposals.get(&offer.round).and_then(|r| r.get(&offer.proposer)) {
            Some((hash, _)) if *hash == offer.hash => return Admission::Duplicate,
            Some(_) => return Admission::Conflicting,
            None => {}
        }
        if at.bodies.contains_key(&offer.hash) {
            return Admission::KnownBody;
        }
        let placed = at.bodies.values().filter(|b| b.placed_by == offer.proposer).count();
        if at.bodies.len() >= MAX_PENDING_PER_HEIGHT || placed >= MAX_PENDING_PER_PROPOSER {
            return Admission::Full;
        }
        Admission::NeedBody
    }

    /// Records `offer` and, if its block is not held yet, `body` (whose transactions the caller
    /// checked against its header). A held block is never replaced. Returns the admission the
    /// offer had: the caller acts only on [`Admission::KnownBody`] and [`Admission::NeedBody`].
    pub fn insert(&mut self, tip: u64, offer: Offer, body: impl FnOnce() -> Body) -> Admission {
        let admission = self.offer(tip, &offer);
        if !matches!(admission, Admission::KnownBody | Admission::NeedBody) {
            return admission;
        }
        let at = self.at.entry(offer.height).or_default();
        at.proposals.entry(offer.round).or_default().insert(offer.proposer, (offer.hash, offer.pol_round));
        at.bodies.entry(offer.hash).or_insert_with(body);
        admission
    }

    /// The block `hash` of `height`, if held.
    pub fn body(&self, height: u64, hash: &Hash32) -> Option<&Body> {
        self.at.get(&height).and_then(|at| at.bodies.get(hash))
    }

    /// Records the verdict on a held block, and when it was reached.
    pub fn set_verdict(&mut self, height: u64, hash: &Hash32, valid: bool, at: Option<Instant>) {
        if let Some(b) = self.at.get_mut(&height).and_then(|h| h.bodies.get_mut(hash)) {
            b.valid = Some(valid);
            if b.ready_at.is_none() {
                b.ready_at = at;
            }
        }
    }

    /// The proposals held for `height` and `round`.
    pub fn proposals(&self, height: u64, round: u32) -> Vec<Offer> {
        let Some(r) = self.at.get(&height).and_then(|at| at.proposals.get(&round)) else { return Vec::new() };
        r.iter().map(|(p, (hash, pol))| Offer { height, round, pol_round: *pol, proposer: *p, hash: *hash }).collect()
    }

    /// Forgets the proposal of `round` by `proposer` at `height` (one from a validator that turns
    /// out not to propose that round), and its block if no other proposal names it.
    pub fn remove_proposal(&mut self, height: u64, round: u32, proposer: &Address) {
        let Some(at) = self.at.get_mut(&height) else { return };
        if let Some((hash, _)) = at.proposals.get_mut(&round).and_then(|r| r.remove(proposer))
            && !at.proposals.values().flat_map(|r| r.values()).any(|(h, _)| *h == hash)
        {
            at.bodies.remove(&hash);
        }
    }

    /// When the first block proposed in round 0 of `height` was ready (received and executed).
    pub fn first_round_ready(&self, height: u64) -> Option<Instant> {
        let at = self.at.get(&height)?;
        at.proposals.get(&0)?.values().filter_map(|(hash, _)| at.bodies.get(hash).and_then(|b| b.ready_at)).min()
    }

    /// Forgets everything at `height` and below (committed).
    pub fn committed(&mut self, height: u64) {
        self.at.retain(|h, _| *h > height);
    }

    /// The number of blocks held, all heights together.
    pub fn len(&self) -> usize {
        self.at.values().map(|h| h.bodies.len()).sum()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sabt_core::block::BlockHeader;
    use sabt_core::sign::SecretKey;

    fn addr(i: u8) -> Address {
        Address(SecretKey::from_seed(&[i; 32]).public())
    }

    fn block(height: u64, salt: u8) -> Block {
        Block {
            header: BlockHeader {
                chain_id: "c".into(),
                height,
                time_ms: u64::from(salt),
                prev_hash: Hash32([0; 32]),
                tx_root: sabt_core::block::tx_root(&[]),
                tx_count: 0,
                log_size: 0,
                log_root: Hash32([0; 32]),
                state_root: Hash32([0; 32]),
                validator_set_hash: Hash32([0; 32]),
                proposer: addr(1).0,
            },
            txs: vec![],
        }
    }

    fn body(b: &Block, by: Address, tag: u8) -> Body {
        Body { block: Arc::new(b.clone()), bytes: Arc::new(vec![tag]), valid: None, ready_at: None, placed_by: by }
    }

    fn offer(height: u64, round: u32, proposer: Address, hash: Hash32) -> Offer {
        Offer { height, round, pol_round: None, proposer, hash }
    }

    #[test]
    fn admissions_by_case() {
        let tip = 10;
        let mut buf = Buffer::default();
        let b = block(11, 1);
        let h = b.hash();
        let o = offer(11, 0, addr(1), h);
        // (case, offer, expected admission) before and after the block is held.
        assert_eq!(buf.offer(tip, &o), Admission::NeedBody);
        assert_eq!(buf.insert(tip, o, || body(&b, addr(1), 1)), Admission::NeedBody);
        let other = block(11, 2).hash();
        let table = [
            ("the same part again", o, Admission::Duplicate),
            ("a committed height", offer(10, 0, addr(1), h), Admission::OutOfWindow),
            ("the tip", offer(tip, 0, addr(1), h), Admission::OutOfWindow),
            ("beyond the window", offer(tip + MAX_PENDING_HEIGHTS + 1, 0, addr(1), h), Admission::OutOfWindow),
            ("the last height of the window", offer(tip + MAX_PENDING_HEIGHTS, 0, addr(1), h), Admission::NeedBody),
            ("another block, same proposer and round", offer(11, 0, addr(1), other), Admission::Conflicting),
            ("the same block re-proposed in round 1", offer(11, 1, addr(2), h), Admission::KnownBody),
            ("another block in round 1", offer(11, 1, addr(2), other), Admission::NeedBody),
        ];
        for (case, o, want) in table {
            assert_eq!(buf.offer(tip, &o), want, "{case}");
        }
    }

    #[test]
    fn a_swapped_body_under_a_held_hash_never_replaces_the_held_one() {
        let mut buf = Buffer::default();
        let b = block(11, 1);
        let o = offer(11, 0, addr(1), b.hash());
        buf.insert(10, o, || body(&b, addr(1), 1));
        buf.set_verdict(11, &b.hash(), true, Some(Instant::now()));
        // The same header again (another body the caller would have checked and refused, or the
        // same part replayed): a duplicate, and the closure making a body is never called.
        assert_eq!(buf.insert(10, o, || unreachable!("a duplicate builds no body")), Admission::Duplicate);
        // Re-proposed by another validator in a later round with another body under the same hash.
        let o1 = Offer { round: 1, pol_round: Some(0), proposer: addr(2), ..o };
        assert_eq!(buf.insert(10, o1, || body(&b, addr(2), 9)), Admission::KnownBody);
        let held = buf.body(11, &b.hash()).unwrap();
        assert_eq!(*held.bytes, vec![1], "the first body stays");
        assert_eq!(held.valid, Some(true), "and its verdict with it");
        assert_eq!(buf.proposals(11, 1), vec![o1]);
        assert_eq!(buf.proposals(11, 0), vec![o]);
    }

    #[test]
    fn room_is_bounded_per_proposer_and_per_height() {
        let mut buf = Buffer::default();
        for i in 0..MAX_PENDING_PER_PROPOSER as u8 {
            let b = block(11, i);
            assert_eq!(
                buf.insert(10, offer(11, u32::from(i), addr(1), b.hash()), || body(&b, addr(1), i)),
                Admission::NeedBody
            );
        }
        let extra = block(11, 200);
        assert_eq!(
            buf.offer(10, &offer(11, 99, addr(1), extra.hash())),
            Admission::Full,
            "one proposer's room is full"
        );
        assert_eq!(buf.offer(10, &offer(11, 99, addr(2), extra.hash())), Admission::NeedBody, "another's is not");
        // Fill the height from many proposers.
        let mut n = buf.len();
        let mut seed = 10u8;
        while n < MAX_PENDING_PER_HEIGHT {
            seed += 1;
            for r in 0..MAX_PENDING_PER_PROPOSER as u8 {
                if n == MAX_PENDING_PER_HEIGHT {
                    break;
                }
                let b = block(11, r.wrapping_mul(37).wrapping_add(seed));
                if buf.insert(10, offer(11, u32::from(r), addr(seed), b.hash()), || body(&b, addr(seed), 0))
                    == Admission::NeedBody
                {
                    n += 1;
                }
            }
        }
        assert_eq!(buf.len(), MAX_PENDING_PER_HEIGHT);
        assert_eq!(buf.offer(10, &offer(11, 0, addr(250), extra.hash())), Admission::Full);
        // Another height has its own room; committing frees everything at and below.
        assert_eq!(buf.offer(10, &offer(12, 0, addr(250), block(12, 0).hash())), Admission::NeedBody);
        buf.committed(11);
        assert_eq!(buf.len(), 0);
    }

    #[test]
    fn a_removed_proposal_takes_its_block_only_if_no_other_names_it() {
        let mut buf = Buffer::default();
        let b = block(11, 1);
        let o = offer(11, 0, addr(1), b.hash());
        let o1 = Offer { round: 1, pol_round: Some(0), proposer: addr(2), ..o };
        buf.insert(10, o, || body(&b, addr(1), 1));
        buf.insert(10, o1, || body(&b, addr(2), 1));
        buf.remove_proposal(11, 1, &addr(2));
        assert!(buf.body(11, &b.hash()).is_some());
        buf.remove_proposal(11, 0, &addr(1));
        assert!(buf.body(11, &b.hash()).is_none());
        assert!(buf.proposals(11, 0).is_empty());
    }

    #[test]
    fn the_first_round_is_ready_when_its_first_block_was() {
        let mut buf = Buffer::default();
        let (b0, b1) = (block(11, 1), block(11, 2));
        buf.insert(10, offer(11, 0, addr(1), b0.hash()), || body(&b0, addr(1), 0));
        buf.insert(10, offer(11, 1, addr(2), b1.hash()), || body(&b1, addr(2), 0));
        assert_eq!(buf.first_round_ready(11), None, "nothing executed yet");
        let t1 = Instant::now();
        buf.set_verdict(11, &b1.hash(), true, Some(t1));
        assert_eq!(buf.first_round_ready(11), None, "a later round's block says nothing of round 0");
        let t0 = Instant::now();
        buf.set_verdict(11, &b0.hash(), false, Some(t0));
        assert_eq!(buf.first_round_ready(11), Some(t0));
    }
}

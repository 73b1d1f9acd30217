//! How large a block this node proposes: an estimate of what fits in the building budget, and a
//! limit learnt from how recent heights were decided. Pure: the caller measures and passes times.

use std::time::{Duration, Instant};

/// Most transactions a proposer puts in one block.
pub const MAX_BLOCK_TXS: usize = 20_000;
/// Fewest transactions a proposer offers to take, however slow its last build was.
pub const MIN_BLOCK_TXS: usize = 100;
/// The share of the propose timeout a proposer spends building its block (its estimate of how
/// many transactions fit, and a deadline while it builds). Every other validator executes the
/// proposal in about the same time before it can prevote, so a block that took the whole timeout
/// to build would be prevoted nil, and the next round's larger block too.
pub const BUILD_SHARE_OF_PROPOSE_TIMEOUT: u32 = 4;
/// How a height was decided, as this node saw its first round: what the block limit learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRound {
    /// Decided in its first round.
    Decided,
    /// Its first proposer's block reached this node, and was executed, only after the propose
    /// timeout: this node prevoted nil on it, as a block too large to receive and execute in time
    /// makes a validator do.
    Late,
    /// Its first proposer's block reached this node in time, yet the height took a later round:
    /// some other validator may have had it late, or a vote came late from a loaded one.
    InTime,
    /// Nothing came from its first proposer (a validator down, or this node catching up by sync).
    Missing,
}

/// The most transactions a proposal offers to take, set by how heights are decided. The cost
/// estimate ([`proposal_capacity`]) sees one node's CPU; this sees the outcome on all of them. A
/// height whose first-round block reached this node after the propose timeout had a block too
/// large to receive and execute in time on a loaded machine: the limit halves. A height that took
/// a later round though its block was in time here lowers it by an eighth: the block may have been
/// late at another validator, or a vote slow, which block size does not cause, and with a quorum of
/// three of three (a validator down) the second is frequent; halving on it collapsed the limit. A
/// height decided in its first round with a block that filled three quarters of the limit lets it
/// grow by a quarter. A height whose first proposer sent nothing leaves it as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLimit(pub usize);

impl BlockLimit {
    /// Where a node starts, before any height has told it more.
    pub const START: BlockLimit = BlockLimit(2_000);

    pub fn after(self, first_round: FirstRound, txs: usize) -> BlockLimit {
        let BlockLimit(n) = self;
        let n = match first_round {
            FirstRound::Late => n / 2,
            FirstRound::InTime => n - n / 8,
            FirstRound::Decided if txs.saturating_mul(4) >= n.saturating_mul(3) => n + n / 4,
            FirstRound::Decided | FirstRound::Missing => n,
        };
        BlockLimit(n.clamp(MIN_BLOCK_TXS, MAX_BLOCK_TXS))
    }
}

/// How many transactions fit in the building budget of a proposer whose propose timeout is
/// `propose`, at `us_per_tx` microseconds a transaction.
pub fn proposal_capacity(propose: Duration, us_per_tx: f64) -> usize {
    let budget_us = (propose / BUILD_SHARE_OF_PROPOSE_TIMEOUT).as_secs_f64() * 1e6;
    let n = (budget_us / us_per_tx.max(1.0)) as usize;
    n.clamp(MIN_BLOCK_TXS, MAX_BLOCK_TXS)
}

/// How a height decided in `round` went in its first round as this node saw it: `ready` is when
/// the first block proposed in round 0 was received and executed here (if it was), `started` when
/// this node started round 0 of the height (if it did), `propose` the propose timeout.
pub fn first_round(round: u32, ready: Option<Instant>, started: Option<Instant>, propose: Duration) -> FirstRound {
    if round == 0 {
        return FirstRound::Decided;
    }
    match (ready, started) {
        (None, _) => FirstRound::Missing,
        (Some(ready), Some(started)) if ready.saturating_duration_since(started) > propose => FirstRound::Late,
        // Ready before this node started the height (received ahead), or within the timeout.
        (Some(_), _) => FirstRound::InTime,
    }
}

/// Whether a node counts as caught up with the network after a commit, given whether it did
/// before and how many blocks in a row it has now committed by sync (0: this one was decided with
/// the others). One block by sync is what a node a few milliseconds behind the others gets (a
/// peer's status arrived first): a caught-up node stays so. Two in a row, it is behind. A node
/// not caught up (started, or behind) is so again only once it decides a block with the others.
pub fn caught_up(before: bool, synced_run: u32) -> bool {
    synced_run == 0 || (before && synced_run < 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_rounds_are_classified_by_when_their_block_was_ready() {
        let t = Instant::now();
        let p = Duration::from_millis(1000);
        let ms = Duration::from_millis;
        // (decided in round, ready after start, started, expected)
        let table = [
            (0, None, true, FirstRound::Decided),
            (0, Some(ms(5000)), true, FirstRound::Decided),
            (1, None, true, FirstRound::Missing),
            (1, Some(ms(1001)), true, FirstRound::Late),
            (1, Some(ms(1000)), true, FirstRound::InTime),
            (1, Some(ms(10)), true, FirstRound::InTime),
            (2, Some(ms(5000)), false, FirstRound::InTime),
        ];
        for (round, ready, started, want) in table {
            let got = first_round(round, ready.map(|d| t + d), started.then_some(t), p);
            assert_eq!(got, want, "round {round}, ready {ready:?}, started {started}");
        }
        // A block received ahead of the height's start is in time.
        assert_eq!(first_round(1, Some(t), Some(t + ms(3000)), p), FirstRound::InTime);
    }

    #[test]
    fn proposals_fit_a_quarter_of_the_propose_timeout() {
        let t = Duration::from_millis(2000);
        // 500 ms of building at 50 µs a transaction.
        assert_eq!(proposal_capacity(t, 50.0), 10_000);
        // A slow node offers fewer, never fewer than the floor; a fast one is capped.
        assert_eq!(proposal_capacity(t, 1_000.0), 500);
        assert_eq!(proposal_capacity(t, 1e9), MIN_BLOCK_TXS);
        assert_eq!(proposal_capacity(t, 1.0), MAX_BLOCK_TXS);
        assert_eq!(proposal_capacity(t, 0.0), MAX_BLOCK_TXS);
    }

    #[test]
    fn the_block_limit_halves_after_a_late_first_block_and_grows_while_blocks_fill_it() {
        let l = BlockLimit::START;
        // The first round's block came after the propose timeout: too large to arrive in time.
        assert_eq!(l.after(FirstRound::Late, 2_000), BlockLimit(1_000));
        assert_eq!(l.after(FirstRound::Late, 10), BlockLimit(1_000));
        // It came in time, yet the height took another round: an eighth less, not half.
        assert_eq!(l.after(FirstRound::InTime, 2_000), BlockLimit(1_750));
        // Its first proposer sent nothing (a validator down): block size was not the cause.
        assert_eq!(l.after(FirstRound::Missing, 2_000), l);
        // Decided at once with a block filling three quarters of the limit or more: a quarter more.
        assert_eq!(l.after(FirstRound::Decided, 1_500), BlockLimit(2_500));
        assert_eq!(l.after(FirstRound::Decided, 1_499), l, "a limit that did not bind says nothing of a larger one");
        // Bounded both ways, however many heights push it.
        let low = (0..40).fold(l, |l, _| l.after(FirstRound::Late, l.0));
        assert_eq!(low, BlockLimit(MIN_BLOCK_TXS));
        let high = (0..200).fold(l, |l, _| l.after(FirstRound::Decided, l.0));
        assert_eq!(high, BlockLimit(MAX_BLOCK_TXS));
        // Halving, then growing back: the limit settles where first rounds keep succeeding.
        assert_eq!(BlockLimit(800).after(FirstRound::Late, 800).after(FirstRound::Decided, 400), BlockLimit(500));
        // Later rounds with the block in time every other height no longer pull the limit down:
        // one in two heights decided at once grows it faster than the others shrink it.
        let mixed =
            (0..20).fold(l, |l, i| l.after(if i % 2 == 0 { FirstRound::InTime } else { FirstRound::Decided }, l.0));
        assert!(mixed.0 > l.0, "{mixed:?}");
    }

    #[test]
    fn a_node_is_caught_up_once_it_decides_with_the_others_and_behind_after_two_synced_blocks() {
        // (caught up before, blocks by sync in a row) → caught up after
        let table = [
            ((false, 0), true),
            ((false, 1), false),
            ((false, 5), false),
            ((true, 0), true),
            ((true, 1), true),
            ((true, 2), false),
        ];
        for ((before, run), after) in table {
            assert_eq!(caught_up(before, run), after, "before {before}, {run} by sync");
        }
    }
}

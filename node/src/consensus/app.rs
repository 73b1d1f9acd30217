//! The application side of Malachite's channel API: builds blocks, validates proposals, commits
//! decisions, serves sync from the store.
//!
//! Rules this loop keeps:
//! - A proposal is accepted only if its stream is signed by the round's proposer and the block
//!   executes on the committed tip to exactly its header (`Registry::execute_block`), with a time
//!   after the previous block's and not more than [`MAX_CLOCK_DRIFT_MS`] ahead of this node's clock.
//! - A block is executed once per node: the writes of its validation (or of building it) are kept,
//!   and its decision commits them if they were made on the tip it is decided on; otherwise (a
//!   restart, a block received by sync) it is executed again. Its commit certificate is checked
//!   with `sabt_core`'s rule, and it is committed in one synced write before consensus is told the
//!   commit is done; a failed write ends the loop with an error, which stops the node.
//! - Each precommit carries the validator's cosignature of the checkpoint the block produces (a
//!   vote extension), so the signatures that decide a block also make its checkpoint a quorum note.
//! - Our own proposal is stored (synced) before it is sent, and re-proposed unchanged after a restart.

use super::codec::{certificate_from_commit, commit_from_certificate};
use super::context::{Address, BlockId, CheckpointExt, Height, ProposalPart, SabtContext, ValidatorSet};
use super::mal::ValidatorSet as _;
use super::mal::{
    self, AppMsg, Channels, Context as _, HeightParams, LinearTimeouts, LocallyProposedValue, NetworkMsg, Next,
    ProposedValue, RawDecidedValue, Round, StreamContent, StreamId, StreamMessage, SyncedValueOutcome, Validity,
    VoteExtensionError, VoteExtensionPolicy,
};
use crate::node::Shared;
use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use sabt_core::block::{Block, ProposalMsg, verify_commit};
use sabt_core::codec;
use sabt_core::hash::Hash32;
use sabt_core::registry::{BlockError, MemoryLedger, Tip};
use sabt_core::sign::SecretKey;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, error, info, warn};

/// How far ahead of this node's clock a proposed block's time may be.
pub const MAX_CLOCK_DRIFT_MS: u64 = 15_000;
/// Most transactions a proposer puts in one block.
pub const MAX_BLOCK_TXS: usize = 20_000;
/// Fewest transactions a proposer offers to take, however slow its last build was.
const MIN_BLOCK_TXS: usize = 100;
/// The share of the propose timeout a proposer spends building its block (its estimate of how
/// many transactions fit, and a deadline while it builds). Every other validator executes the
/// proposal in about the same time before it can prevote, so a block that took the whole timeout
/// to build would be prevoted nil, and the next round's larger block too.
const BUILD_SHARE_OF_PROPOSE_TIMEOUT: u32 = 4;
/// Heights ahead of the tip for which received proposals are kept.
const MAX_PENDING_HEIGHTS: u64 = 8;
/// Most values kept for one height.
const MAX_PENDING_PER_HEIGHT: usize = 64;
/// Most values kept for one height from one proposer, so that no validator can fill a height's
/// room with blocks of its own and crowd out the one that is decided.
const MAX_PENDING_PER_PROPOSER: usize = 4;
/// Most executed proposals whose writes are kept for their decision. One per round is the usual
/// case; a height that goes to several rounds re-executes the rest at decision.
const MAX_PREPARED: usize = 3;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// How a height was decided, as this node saw its first round: what the block limit learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstRound {
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
struct BlockLimit(usize);

impl BlockLimit {
    /// Where a node starts, before any height has told it more.
    const START: BlockLimit = BlockLimit(2_000);

    fn after(self, first_round: FirstRound, txs: usize) -> BlockLimit {
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
fn proposal_capacity(propose: Duration, us_per_tx: f64) -> usize {
    let budget_us = (propose / BUILD_SHARE_OF_PROPOSE_TIMEOUT).as_secs_f64() * 1e6;
    let n = (budget_us / us_per_tx.max(1.0)) as usize;
    n.clamp(MIN_BLOCK_TXS, MAX_BLOCK_TXS)
}

/// A block this node has seen for a height, by proposal or by sync.
#[derive(Debug, Clone)]
struct Seen {
    block: Arc<Block>,
    bytes: Arc<Vec<u8>>,
    round: Round,
    pol_round: Round,
    proposer: Address,
    validity: Option<Validity>,
    /// When this node had the block from its proposer and had executed it; `None` for a block
    /// that came by sync.
    ready_at: Option<Instant>,
}

/// The writes of a block executed on the committed tip while validating or building it, kept so
/// that the block is executed once per node: its decision commits these writes as they are.
#[derive(Debug)]
struct Prepared {
    /// The tip it executed on: the writes are valid only while that is the committed tip.
    parent: Hash32,
    overlay: MemoryLedger,
}

/// The consensus-facing application.
#[derive(Debug)]
pub struct App {
    shared: Arc<Shared>,
    ctx: SabtContext,
    key: Arc<SecretKey>,
    address: Address,
    set: ValidatorSet,
    timeouts: LinearTimeouts,
    block_interval: Duration,
    /// Blocks seen, by height then hash.
    seen: BTreeMap<u64, BTreeMap<Hash32, Seen>>,
    round_started: Option<Instant>,
    /// The height whose first round this node started last, and when.
    first_round_started: Option<(u64, Instant)>,
    stream_counter: u64,
    /// Building cost per transaction, microseconds, smoothed over this node's recent proposals.
    build_us_per_tx: f64,
    /// Executing cost per transaction of other validators' proposals, microseconds, smoothed: the
    /// cost of a proposal on the nodes that receive it (their signature caches miss what reached
    /// only the proposer).
    execute_us_per_tx: f64,
    /// The limit set by how recent heights were decided.
    block_limit: BlockLimit,
    /// Executed blocks of the next height, by hash, at most [`MAX_PREPARED`].
    prepared: BTreeMap<Hash32, Prepared>,
    /// The proposers of the last committed blocks (as many as there are validators), from which
    /// each height's proposer order is derived ([`ValidatorSet::for_height`]).
    proposers: BTreeMap<u64, Address>,
}

impl App {
    /// The application for this node.
    pub fn new(shared: Arc<Shared>, key: Arc<SecretKey>, timeouts: LinearTimeouts) -> anyhow::Result<App> {
        let set = ValidatorSet::from_core(&shared.validator_set);
        let block_interval = Duration::from_millis(shared.genesis.params.block_interval_ms);
        // The proposer order reads the proposers of the last n committed blocks (n validators).
        let tip = shared.tip().height;
        let mut proposers = BTreeMap::new();
        for h in tip.saturating_sub(set.validators.len().saturating_sub(1) as u64).max(1)..=tip {
            let header = shared.store.header(h)?.ok_or_else(|| {
                anyhow!(
                    "committed block {h} is missing from the store; restore it from a backup or move it away to resync from the network"
                )
            })?;
            proposers.insert(h, Address(header.proposer));
        }
        Ok(App {
            address: Address(key.public()),
            shared,
            ctx: SabtContext,
            key,
            set,
            timeouts,
            block_interval,
            seen: BTreeMap::new(),
            round_started: None,
            first_round_started: None,
            stream_counter: 0,
            // A first guess; the first large proposal measures the real cost.
            build_us_per_tx: 100.0,
            execute_us_per_tx: 100.0,
            block_limit: BlockLimit::START,
            prepared: BTreeMap::new(),
            proposers,
        })
    }

    /// The validator set of the next height, with its proposer order.
    fn next_set(&self) -> ValidatorSet {
        self.set.for_height(self.tip().height + 1, &self.proposers)
    }

    /// How many transactions to offer the next proposal: what fits in the building budget at the
    /// larger of this node's measured costs per transaction (building its own blocks, executing
    /// others'), and no more than the limit recent heights set.
    fn proposal_capacity(&self) -> usize {
        proposal_capacity(self.timeouts.propose, self.build_us_per_tx.max(self.execute_us_per_tx))
            .min(self.block_limit.0)
    }

    /// Takes the cost of `txs` transactions in `elapsed` into the estimate `us_per_tx`.
    fn measured(us_per_tx: &mut f64, txs: usize, elapsed: Duration) {
        if txs >= MIN_BLOCK_TXS {
            let per_tx = elapsed.as_secs_f64() * 1e6 / txs as f64;
            *us_per_tx = 0.5 * *us_per_tx + 0.5 * per_tx;
        }
    }

    fn params(&self) -> HeightParams<SabtContext> {
        let mut p = HeightParams::new(self.next_set(), self.timeouts, Some(self.block_interval));
        p.vote_extension_policy = VoteExtensionPolicy::Required;
        p
    }

    fn tip(&self) -> Tip {
        self.shared.tip()
    }

    /// Keeps the writes of `block`, executed on `tip`, for its decision.
    fn prepare(&mut self, tip: &Tip, block: &Block, overlay: MemoryLedger) {
        if self.prepared.len() < MAX_PREPARED {
            let p = Prepared { parent: tip.block_hash, overlay };
            self.prepared.insert(block.hash(), p);
        }
    }

    /// Validates `block` as the next block on the committed tip. A failure of this node's own
    /// storage is an error, never a verdict: the node stops rather than vote against a valid block.
    fn validate(&mut self, block: &Block, check_clock: bool) -> anyhow::Result<Validity> {
        let tip = self.tip();
        if block.header.height != tip.height + 1 {
            return Ok(Validity::Invalid);
        }
        if self.set.get_by_address(&Address(block.header.proposer)).is_none() {
            warn!(height = block.header.height, "proposed block names a proposer outside the validator set");
            return Ok(Validity::Invalid);
        }
        if check_clock && block.header.time_ms > now_ms().saturating_add(MAX_CLOCK_DRIFT_MS) {
            warn!(
                height = block.header.height,
                time_ms = block.header.time_ms,
                "proposed block is too far in the future"
            );
            return Ok(Validity::Invalid);
        }
        let started = Instant::now();
        let mut ws = self.shared.store.write_set();
        let cache = self.shared.verified_among(&block.txs);
        match self.shared.registry.execute_block(&mut ws, &tip, block, &cache) {
            Ok(_) => {
                if block.header.proposer != self.address.0 {
                    Self::measured(&mut self.execute_us_per_tx, block.txs.len(), started.elapsed());
                }
                debug!(
                    height = block.header.height,
                    txs = block.txs.len(),
                    cached = cache.len(),
                    ms = started.elapsed().as_millis(),
                    "executed a proposed block"
                );
                // Every signature in it verified: should the block be executed again (a later
                // round's decision, a restart), that need not be redone.
                self.shared.mark_verified(&block.txs);
                let overlay = ws.into_overlay();
                self.prepare(&tip, block, overlay);
                Ok(Validity::Valid)
            }
            Err(BlockError::Store(e)) => {
                Err(anyhow!("storage failed while executing proposed block {}: {e}", block.header.height))
            }
            Err(e) => {
                warn!(height = block.header.height, error = %e, "refusing proposed block");
                Ok(Validity::Invalid)
            }
        }
    }

    fn remember(&mut self, hash: Hash32, seen: Seen) {
        let h = seen.block.header.height;
        let tip = self.tip().height;
        if h <= tip || h > tip + MAX_PENDING_HEIGHTS {
            return;
        }
        let at = self.seen.entry(h).or_default();
        let from_proposer = at.values().filter(|s| s.proposer == seen.proposer).count();
        if at.contains_key(&hash) || (at.len() < MAX_PENDING_PER_HEIGHT && from_proposer < MAX_PENDING_PER_PROPOSER) {
            at.insert(hash, seen);
        }
    }

    fn find(&self, height: u64, hash: &Hash32) -> Option<&Seen> {
        self.seen.get(&height).and_then(|m| m.get(hash))
    }

    fn proposed_value(&self, hash: Hash32, s: &Seen, validity: Validity) -> ProposedValue<SabtContext> {
        ProposedValue {
            height: Height(s.block.header.height),
            round: s.round,
            valid_round: s.pol_round,
            proposer: s.proposer,
            value: BlockId(hash),
            validity,
        }
    }

    async fn publish(
        &mut self,
        channels: &Channels<SabtContext>,
        height: u64,
        round: Round,
        pol_round: Round,
        bytes: Arc<Vec<u8>>,
        hash: Hash32,
    ) -> anyhow::Result<()> {
        let Some(r) = round.as_u32() else { return Ok(()) };
        let msg = ProposalMsg {
            chain_id: self.shared.genesis.chain_id.clone(),
            height,
            round: r,
            pol_round: pol_round.as_u32(),
            block: hash,
            proposer: self.address.0,
        };
        let part = ProposalPart {
            height,
            round: r,
            pol_round: pol_round.as_u32(),
            proposer: self.address.0,
            block: bytes,
            signature: msg.sign(&self.key),
        };
        self.stream_counter += 1;
        let mut id = Vec::with_capacity(20);
        id.extend_from_slice(&height.to_be_bytes());
        id.extend_from_slice(&r.to_be_bytes());
        id.extend_from_slice(&self.stream_counter.to_be_bytes());
        let stream_id = StreamId::new(Bytes::from(id));
        for msg in [
            StreamMessage::new(stream_id.clone(), 0, StreamContent::Data(part)),
            StreamMessage::new(stream_id, 1, StreamContent::Fin),
        ] {
            channels
                .network
                .send(NetworkMsg::PublishProposalPart(msg))
                .await
                .context("consensus network channel closed")?;
        }
        Ok(())
    }

    async fn get_value(
        &mut self,
        channels: &Channels<SabtContext>,
        height: Height,
        round: Round,
    ) -> anyhow::Result<Option<LocallyProposedValue<SabtContext>>> {
        let tip = self.tip();
        if height.0 != tip.height + 1 {
            warn!(%height, tip = tip.height, "asked to propose at a height this node has not reached");
            return Ok(None);
        }
        let r = round.as_u32().unwrap_or(0);
        // After a restart, propose exactly what was proposed before.
        let (block, bytes) = match self.shared.store.own_proposal(height.0, r)? {
            Some(bytes) => (codec::decode::<Block>(&bytes).context("stored own proposal")?, bytes),
            None => {
                let started = Instant::now();
                let capacity = self.proposal_capacity();
                let candidates = self.shared.mempool_candidates(capacity);
                let offered = candidates.len();
                let time_ms = now_ms().max(tip.time_ms + 1);
                let mut ws = self.shared.store.write_set();
                let cache = self.shared.verified_among(&candidates);
                // The estimate above comes from earlier builds; a loaded machine builds slower, and
                // a block that cannot reach the validators within their propose timeout loses the
                // round. So the build also stops at its share of the timeout, whatever the count.
                let deadline = started + self.timeouts.propose / BUILD_SHARE_OF_PROPOSE_TIMEOUT;
                let within_budget = candidates
                    .into_iter()
                    .enumerate()
                    .take_while(move |(i, _)| *i < MIN_BLOCK_TXS || Instant::now() < deadline)
                    .map(|(_, t)| t);
                let built =
                    self.shared.registry.build_block(&mut ws, &tip, time_ms, self.address.0, within_budget, &cache)?;
                let block = built.block;
                let overlay = ws.into_overlay();
                Self::measured(&mut self.build_us_per_tx, block.txs.len(), started.elapsed());
                self.prepare(&tip, &block, overlay);
                for (id, e) in &built.refused {
                    // Refused against this block's state: left out and dropped, never a reason to stop.
                    debug!(%id, code = e.code(), error = %e, "left a transaction out of the block; dropped from the mempool");
                    self.shared.metrics.proposal_refused(e.code());
                }
                let refused: Vec<Hash32> = built.refused.iter().map(|(id, _)| *id).collect();
                self.shared.refused(&refused);
                info!(
                    %height,
                    %round,
                    txs = block.txs.len(),
                    capacity,
                    offered,
                    refused = refused.len(),
                    build_ms = started.elapsed().as_millis(),
                    "built a proposal"
                );
                let bytes = codec::encode(&block);
                self.shared.store.put_own_proposal(height.0, r, &bytes)?;
                (block, bytes)
            }
        };
        let hash = block.hash();
        info!(%height, %round, block = %hash, txs = block.txs.len(), "proposing");
        let bytes = Arc::new(bytes);
        self.remember(
            hash,
            Seen {
                block: Arc::new(block),
                bytes: bytes.clone(),
                round,
                pol_round: Round::Nil,
                proposer: self.address,
                validity: Some(Validity::Valid),
                ready_at: Some(Instant::now()),
            },
        );
        self.publish(channels, height.0, round, Round::Nil, bytes, hash).await?;
        Ok(Some(LocallyProposedValue::new(height, round, BlockId(hash))))
    }

    fn received_part(&mut self, part: ProposalPart) -> anyhow::Result<Option<ProposedValue<SabtContext>>> {
        let tip = self.tip().height;
        if part.height <= tip || part.height > tip + MAX_PENDING_HEIGHTS {
            return Ok(None);
        }
        let round = Round::new(part.round);
        // The proposer order of a later height depends on blocks not committed yet: a part for
        // one needs only come from a validator, and is checked against the order when its height
        // is next ([`App::started_round`]).
        let proposes = if part.height == tip + 1 {
            self.ctx.select_proposer(&self.next_set(), Height(part.height), round).address.0 == part.proposer
        } else {
            self.set.get_by_address(&Address(part.proposer)).is_some()
        };
        if !proposes {
            warn!(
                height = part.height,
                round = part.round,
                "proposal part from a validator that does not propose this round"
            );
            return Ok(None);
        }
        let block: Block = match codec::decode(&part.block) {
            Ok(b) => b,
            Err(e) => {
                warn!(height = part.height, error = %e, "proposal part holds no valid block");
                return Ok(None);
            }
        };
        let hash = block.hash();
        let msg = ProposalMsg {
            chain_id: self.shared.genesis.chain_id.clone(),
            height: part.height,
            round: part.round,
            pol_round: part.pol_round,
            block: hash,
            proposer: part.proposer,
        };
        if msg.verify(&part.signature).is_err() || block.header.height != part.height {
            warn!(height = part.height, "proposal part signature does not verify; ignored");
            return Ok(None);
        }
        // A new proposal names its builder as the proposer (the proposer order reads it from
        // committed headers); a re-proposal (with a proof-of-lock round) carries the block of an
        // earlier round, built by that round's proposer.
        if part.pol_round.is_none() && block.header.proposer != part.proposer {
            warn!(height = part.height, round = part.round, "proposed block names another validator as its proposer");
            return Ok(None);
        }
        let pol_round = part.pol_round.map(Round::new).unwrap_or(Round::Nil);
        let validity = if part.height == tip + 1 { Some(self.validate(&block, true)?) } else { None };
        let seen = Seen {
            block: Arc::new(block),
            bytes: part.block.clone(),
            round,
            pol_round,
            proposer: Address(part.proposer),
            validity,
            // A block of a later height is executed, and ready, when its height starts.
            ready_at: validity.map(|_| Instant::now()),
        };
        let reply = validity.map(|v| self.proposed_value(hash, &seen, v));
        self.remember(hash, seen);
        Ok(reply)
    }

    fn started_round(&mut self, height: Height, round: Round) -> anyhow::Result<Vec<ProposedValue<SabtContext>>> {
        self.round_started = Some(Instant::now());
        if round == Round::new(0) {
            self.first_round_started = Some((height.0, Instant::now()));
        }
        self.shared.metrics.round.set(i64::from(round.as_u32().unwrap_or(0)));
        let Some(at) = self.seen.get(&height.0) else { return Ok(Vec::new()) };
        let todo: Vec<(Hash32, Seen)> =
            at.iter().filter(|(_, s)| s.round == round).map(|(h, s)| (*h, s.clone())).collect();
        let mut out = Vec::new();
        let set = self.next_set();
        for (hash, mut s) in todo {
            if height.0 == self.tip().height + 1 && self.ctx.select_proposer(&set, height, round).address != s.proposer
            {
                warn!(%height, %round, "dropping a proposal kept for this height from a validator that does not propose it");
                if let Some(m) = self.seen.get_mut(&height.0) {
                    m.remove(&hash);
                }
                continue;
            }
            let v = match s.validity {
                Some(v) => v,
                None => {
                    let v = self.validate(&s.block, true)?;
                    s.ready_at = Some(Instant::now());
                    v
                }
            };
            s.validity = Some(v);
            out.push(self.proposed_value(hash, &s, v));
            if let Some(m) = self.seen.get_mut(&height.0) {
                m.insert(hash, s);
            }
        }
        Ok(out)
    }

    /// How `height`, decided in `round`, went in its first round as this node saw it.
    fn first_round(&self, height: u64, round: u32) -> FirstRound {
        if round == 0 {
            return FirstRound::Decided;
        }
        let ready = self
            .seen
            .get(&height)
            .and_then(|at| at.values().filter(|s| s.round == Round::new(0)).filter_map(|s| s.ready_at).min());
        let started = self.first_round_started.filter(|(h, _)| *h == height).map(|(_, t)| t);
        match (ready, started) {
            (None, _) => FirstRound::Missing,
            (Some(ready), Some(started)) if ready.saturating_duration_since(started) > self.timeouts.propose => {
                FirstRound::Late
            }
            // Ready before this node started the height (received ahead), or within the timeout.
            (Some(_), _) => FirstRound::InTime,
        }
    }

    fn checkpoint_ext(&self, height: u64, hash: &Hash32) -> Option<CheckpointExt> {
        self.find(height, hash).map(|s| CheckpointExt { size: s.block.header.log_size, root: s.block.header.log_root })
    }

    fn decided(
        &mut self,
        cert: &mal::CommitCertificate<SabtContext>,
        extensions: &mal::VoteExtensions<SabtContext>,
    ) -> anyhow::Result<()> {
        let height = cert.height.0;
        let tip = self.tip();
        if height <= tip.height {
            // Already committed (a replay after restart).
            return Ok(());
        }
        if height != tip.height + 1 {
            return Err(anyhow!("decided height {height} does not follow the committed tip {}", tip.height));
        }
        let Some(seen) = self.find(height, &cert.value_id).cloned() else {
            // Possible after a restart: the engine replays its log, but the block's bytes were only in
            // memory. The height is restarted and sync fetches the decided block from the peers.
            warn!(height, block = %cert.value_id, "decided a block whose bytes this node does not hold; will fetch it by sync");
            return Ok(());
        };
        let block = seen.block;
        let round = cert.round.as_u32().unwrap_or(0);
        let first_round = self.first_round(height, round);
        let ext = CheckpointExt { size: block.header.log_size, root: block.header.log_root };
        // Keep only cosignatures of the checkpoint this block really produces.
        let matching: Vec<_> =
            extensions.extensions.iter().filter(|(_, e)| e.message == ext).map(|(a, e)| (*a, e.clone())).collect();
        let commit = commit_from_certificate(cert, &matching).ok_or_else(|| anyhow!("certificate without a round"))?;
        let hash = block.hash();
        verify_commit(&commit, &self.shared.validator_set, &self.shared.genesis.chain_id, height, &hash)
            .context("the decided commit certificate does not verify")?;
        let decided_at = Instant::now();
        let (ws, prepared) = match self.prepared.remove(&hash) {
            // Executed on this very tip when it was validated or built: its writes stand.
            Some(p) if p.parent == tip.block_hash => (self.shared.store.resume(p.overlay), true),
            _ => {
                let mut ws = self.shared.store.write_set();
                let cache = self.shared.verified_among(&block.txs);
                self.shared
                    .registry
                    .execute_block(&mut ws, &tip, &block, &cache)
                    .with_context(|| format!("decided block {height} does not execute"))?;
                (ws, false)
            }
        };
        let ids: Vec<Hash32> = block.txs.iter().map(|t| t.id()).collect();
        let started = Instant::now();
        let new_tip = self.shared.store.commit(&ws, &block, &ids, &commit).context("committing a decided block")?;
        let written = started.elapsed();
        self.shared.committed(new_tip, &ids, ws.entries());
        self.seen.retain(|h, _| *h > height);
        self.prepared.clear();
        self.proposers.insert(height, Address(block.header.proposer));
        let keep = self.set.validators.len() as u64;
        self.proposers.retain(|h, _| *h + keep > height);
        let latency = self.round_started.map(|s| s.elapsed()).unwrap_or_default();
        self.shared.metrics.commit_latency.observe(latency.as_secs_f64());
        self.shared.metrics.fsync.observe(written.as_secs_f64());
        self.block_limit = self.block_limit.after(first_round, block.txs.len());
        // Where the time between decision and the next height goes: executing the block (none if
        // it was executed when validated), the synced write, then the mempool's update.
        let ms = |d: Duration| d.as_millis();
        info!(
            height,
            block = %hash,
            txs = block.txs.len(),
            log_size = block.header.log_size,
            cosignatures = commit.signatures.iter().filter(|s| s.checkpoint.is_some()).count(),
            round,
            first_round = ?first_round,
            next_limit = self.block_limit.0,
            prepared,
            execute_ms = ms(started.duration_since(decided_at)),
            write_ms = ms(written),
            after_ms = ms(started.elapsed().saturating_sub(written)),
            "committed"
        );
        Ok(())
    }

    fn decided_values(&self, from: u64, to: u64) -> anyhow::Result<Vec<RawDecidedValue<SabtContext>>> {
        let tip = self.tip().height;
        let mut out = Vec::new();
        for h in from.max(1)..=to.min(tip).min(from.saturating_add(63)) {
            let (Some(bytes), Some(commit)) = (self.shared.store.block_bytes(h)?, self.shared.store.commit_at(h)?)
            else {
                break;
            };
            let header = Block::decode_header(&bytes)
                .map_err(|e| anyhow!("committed block {h} in the store does not decode: {e}"))?;
            let ext = CheckpointExt { size: header.log_size, root: header.log_root };
            out.push(RawDecidedValue::new(Bytes::from(bytes), certificate_from_commit(&commit, ext)));
        }
        Ok(out)
    }

    fn synced_value(
        &mut self,
        height: Height,
        round: Round,
        proposer: Address,
        bytes: Bytes,
    ) -> anyhow::Result<SyncedValueOutcome<SabtContext>> {
        let block: Block = match codec::decode(&bytes) {
            Ok(b) => b,
            Err(e) => {
                warn!(%height, error = %e, "synced value is not a valid block");
                return Ok(SyncedValueOutcome::PeerFault);
            }
        };
        if block.header.height != height.0 {
            return Ok(SyncedValueOutcome::PeerFault);
        }
        let hash = block.hash();
        let tip = self.tip().height;
        let validity = if height.0 == tip + 1 { self.validate(&block, false)? } else { Validity::Valid };
        let seen = Seen {
            block: Arc::new(block),
            bytes: Arc::new(bytes.to_vec()),
            round,
            pol_round: Round::Nil,
            proposer,
            validity: Some(validity),
            ready_at: None,
        };
        let value = self.proposed_value(hash, &seen, validity);
        self.remember(hash, seen);
        Ok(SyncedValueOutcome::Verdict(value))
    }

    /// Answers the engine until it stops or a commit fails.
    pub async fn run(mut self, mut channels: Channels<SabtContext>) -> anyhow::Result<()> {
        while let Some(msg) = channels.consensus.recv().await {
            match msg {
                AppMsg::ConsensusReady { reply } => {
                    let start = Height(self.tip().height + 1);
                    info!(height = %start, "consensus ready");
                    self.shared.set_ready(true);
                    let _ = reply.send((start, self.params()));
                }
                AppMsg::StartedRound { height, round, proposer, role, reply_value } => {
                    debug!(%height, %round, %proposer, ?role, "started round");
                    let values = self.started_round(height, round)?;
                    let _ = reply_value.send(values);
                }
                AppMsg::GetValue { height, round, timeout: _, reply } => {
                    if let Some(v) = self.get_value(&channels, height, round).await? {
                        let _ = reply.send(v);
                    }
                }
                AppMsg::ExtendVote { height, round: _, value_id, vote_extension_policy: _, reply } => {
                    let ext = self.checkpoint_ext(height.0, &value_id);
                    if ext.is_none() {
                        warn!(%height, block = %value_id, "asked to cosign the checkpoint of an unknown block");
                    }
                    let _ = reply.send(ext);
                }
                AppMsg::VerifyVoteExtensions { height, round: _, value_id, extensions, reply } => {
                    // For a block not seen yet (a certificate arriving by sync), the signatures are
                    // already verified; the content is checked against the header when it commits.
                    let expected = self.checkpoint_ext(height.0, &value_id);
                    let verdicts = extensions
                        .into_iter()
                        .map(|(addr, ext)| match expected {
                            Some(e) if e != ext => (addr, Err(VoteExtensionError::InvalidVoteExtension)),
                            _ => (addr, Ok(())),
                        })
                        .collect();
                    let _ = reply.send(verdicts);
                }
                AppMsg::RestreamProposal { height, round, valid_round, address, value_id } => {
                    if address != self.address {
                        continue;
                    }
                    if let Some(s) = self.find(height.0, &value_id).cloned() {
                        self.publish(&channels, height.0, round, valid_round, s.bytes, value_id).await?;
                    }
                }
                AppMsg::GetHistoryMinHeight { reply } => {
                    let _ = reply.send(Height(1));
                }
                AppMsg::ReceivedProposalPart { from: _, published_by: _, part, reply } => {
                    let value = match part.content {
                        StreamContent::Data(p) => self.received_part(p)?,
                        StreamContent::Fin => None,
                    };
                    let _ = reply.send(value);
                }
                AppMsg::Decided { certificate, extensions, reply } => {
                    if let Err(e) = self.decided(&certificate, &extensions) {
                        error!(error = format!("{e:#}"), "cannot commit a decided block; stopping");
                        return Err(e);
                    }
                    let _ = reply.send(());
                }
                AppMsg::Finalized { certificate, reply, .. } => {
                    let next = certificate.height.0 + 1;
                    let tip = self.tip().height;
                    let params = self.params();
                    let msg = if tip + 1 == next {
                        Next::Start(Height(next), params)
                    } else {
                        Next::Restart(Height(tip + 1), params)
                    };
                    let _ = reply.send(msg);
                }
                AppMsg::GetDecidedValues { range, reply } => {
                    let values = self.decided_values(range.start().0, range.end().0)?;
                    let _ = reply.send(values);
                }
                AppMsg::ProcessSyncedValue { height, round, proposer, value_bytes, reply } => {
                    let outcome = self.synced_value(height, round, proposer, value_bytes)?;
                    let _ = reply.send(outcome);
                }
            }
        }
        Err(anyhow!("the consensus engine stopped"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! The application side of Malachite's channel API: builds blocks, validates proposals, commits
//! decisions, serves sync from the store. The actor loop is [`App::run`]; what it decides without
//! I/O lives in [`super::buffer`] (which blocks are held, de-duplication, bounds) and
//! [`super::pacing`] (how large a block to propose).
//!
//! Rules this loop keeps:
//! - A proposal part is taken only from the peer of the validator that proposes it, is
//!   de-duplicated on its header before anything else is done, and its block is held only if its
//!   transactions are the ones its header names: a validator that copies an honest proposer's
//!   signed header with other transactions changes nothing.
//! - A proposal is accepted only if its stream is signed by the round's proposer and the block
//!   executes on the committed tip to exactly its header (`Registry::execute_block`), with a time
//!   after the previous block's. This node votes for it only if its time is also not more than
//!   [`MAX_CLOCK_DRIFT_MS`] ahead of this node's clock and, for a new proposal, not more than that
//!   (plus the round's propose timeout) behind the time it arrived; a block that fails only this
//!   check gets no verdict rather than an invalid one, since the clock that is off may be this
//!   node's, and a block a quorum decides is then still taken by sync.
//! - A block found valid is kept in the store (synced) before the reply that lets consensus vote
//!   for it, so a decision replayed after a crash finds it; and the signer records every vote and
//!   proposal before signing, and signs the earlier message again where it signed one before
//!   ([`super::signing`], [`super::record`]).
//! - A block is executed once per node: the writes of its validation (or of building it) are kept,
//!   and its decision commits them if they were made on the tip it is decided on; otherwise (a
//!   restart, a block received by sync) it is executed again. Its commit certificate is checked
//!   with `sabt_core`'s rule, and it is committed in one synced write before consensus is told the
//!   commit is done; a failed write ends the loop with an error, which stops the node.
//! - Each precommit carries the validator's cosignature of the checkpoint the block produces (a
//!   vote extension). A cosignature is accepted only for a block this node holds and when it
//!   matches; for a block not held yet it is accepted only as part of a quorum (a synced
//!   certificate) and checked when the block arrives. So every committed block keeps a
//!   quorum-cosigned checkpoint, and every stored certificate is one peers accept.
//! - Synced values are checked only for the next height; others are left for later.
//! - Equivocation evidence that comes with a decision is verified and kept.
//! - Our own proposal is stored (synced) before it is sent, and re-proposed unchanged after a restart.

use super::buffer::{Admission, Body, Buffer, Offer};
use super::codec::{certificate_from_commit, commit_from_certificate};
use super::context::{Address, BlockId, CheckpointExt, Height, ProposalPart, SabtContext, ValidatorSet};
use super::mal::ValidatorSet as _;
use super::mal::{
    self, AppMsg, Channels, Context as _, HeightParams, LinearTimeouts, LocallyProposedValue, NetworkMsg, Next, PeerId,
    ProposedValue, RawDecidedValue, Round, StreamContent, StreamId, StreamMessage, SyncedValueOutcome, Validity,
    VoteExtensionError, VoteExtensionPolicy,
};
use super::pacing::{self, BUILD_SHARE_OF_PROPOSE_TIMEOUT, BlockLimit, MIN_BLOCK_TXS};
use crate::clock::now_ms;
use crate::faults::{self, CrashPoint};
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
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

pub use super::pacing::MAX_BLOCK_TXS;

/// How far a proposed block's time may be from this node's clock: ahead of it when the block is
/// validated, or (for a new proposal, beyond the round's propose timeout) behind it when the block
/// arrived.
pub const MAX_CLOCK_DRIFT_MS: u64 = 15_000;
/// Most executed proposals whose writes are kept for their decision. One per round is the usual
/// case; a height that goes to several rounds re-executes the rest at decision.
const MAX_PREPARED: usize = 3;
/// Most heights with checkpoint cosignatures accepted for blocks not held yet.
const MAX_UNCHECKED_EXTENSIONS: usize = 16;

/// The writes of a block executed on the committed tip while validating or building it, kept so
/// that the block is executed once per node: its decision commits these writes as they are.
#[derive(Debug)]
struct Prepared {
    /// The tip it executed on: the writes are valid only while that is the committed tip.
    parent: Hash32,
    overlay: MemoryLedger,
}

/// How a block's time is checked against this node's clock.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// Not at all: a block decided by a quorum (sync, or a decision replayed).
    Decided,
    /// Not ahead of the clock now; if `fresh` (a new proposal, not a re-proposal), not behind the
    /// time `received_ms` it arrived, beyond the drift and the propose timeout of `round`.
    Proposed { received_ms: u64, fresh: bool, round: u32 },
}

/// Whether a block of time `time_ms` passes the clock check `clock` at `now_ms`; the reason if not.
fn clock_verdict(time_ms: u64, clock: Clock, now_ms: u64, propose_timeout: Duration) -> Result<(), &'static str> {
    let Clock::Proposed { received_ms, fresh, .. } = clock else { return Ok(()) };
    if time_ms > now_ms.saturating_add(MAX_CLOCK_DRIFT_MS) {
        return Err("too far in the future");
    }
    let allowed = MAX_CLOCK_DRIFT_MS.saturating_add(u64::try_from(propose_timeout.as_millis()).unwrap_or(u64::MAX));
    if fresh && received_ms > time_ms.saturating_add(allowed) {
        return Err("too far in the past");
    }
    Ok(())
}

/// What to do with a value received by sync for `height` while the committed tip is `tip`: check
/// it (the next height) or ask again later. A value above the next height is never marked valid
/// unchecked: it could not be executed, and sync asks for it again once its height is next.
fn synced_is_next(height: u64, tip: u64) -> bool {
    height == tip.saturating_add(1)
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
    /// The validators' peer ids, from the genesis.
    peers: BTreeMap<PeerId, Address>,
    /// Blocks and proposals held for heights above the tip.
    buffer: Buffer,
    round_started: Option<Instant>,
    /// The height whose first round this node started last, and when.
    first_round_started: Option<(u64, Instant)>,
    stream_counter: u64,
    /// Building cost per transaction, microseconds, smoothed over this node's recent proposals.
    build_us_per_tx: f64,
    /// Executing cost per transaction of other validators' proposals, microseconds, smoothed.
    execute_us_per_tx: f64,
    /// The limit set by how recent heights were decided.
    block_limit: BlockLimit,
    /// Executed blocks of the next height, by hash, at most [`MAX_PREPARED`].
    prepared: BTreeMap<Hash32, Prepared>,
    /// The proposers of the last committed blocks (as many as there are validators), from which
    /// each height's proposer order is derived ([`ValidatorSet::for_height`]).
    proposers: BTreeMap<u64, Address>,
    /// Checkpoint cosignatures accepted as part of a quorum for a block not held yet (a synced
    /// certificate's), checked against the block when it arrives.
    unchecked: BTreeMap<(u64, Hash32), Vec<(Address, CheckpointExt)>>,
    /// Heights above the tip whose block came by sync: a node committing those is catching up.
    synced: std::collections::BTreeSet<u64>,
    /// Blocks committed by sync in a row, and whether this node counts as caught up
    /// ([`pacing::caught_up`]).
    synced_run: u32,
    caught_up: bool,
    /// Proposals this node re-sent with swapped bodies (a Byzantine validator's lie).
    #[cfg(feature = "fault-injection")]
    relayed: std::collections::BTreeSet<(u64, u32, Address)>,
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
        let mut peers = BTreeMap::new();
        for a in &shared.genesis.agencies {
            let Some(v) = &a.validator else { continue };
            let peer: PeerId = v
                .peer_id
                .parse()
                .map_err(|e| anyhow!("genesis peer id {} of {} does not parse: {e}", v.peer_id, a.name))?;
            peers.insert(peer, Address(v.consensus_key));
        }
        Ok(App {
            address: Address(key.public()),
            shared,
            ctx: SabtContext,
            key,
            set,
            timeouts,
            block_interval,
            peers,
            buffer: Buffer::default(),
            round_started: None,
            first_round_started: None,
            stream_counter: 0,
            // A first guess; the first large proposal measures the real cost.
            build_us_per_tx: 100.0,
            execute_us_per_tx: 100.0,
            block_limit: BlockLimit::START,
            prepared: BTreeMap::new(),
            proposers,
            unchecked: BTreeMap::new(),
            synced: std::collections::BTreeSet::new(),
            synced_run: 0,
            caught_up: false,
            #[cfg(feature = "fault-injection")]
            relayed: std::collections::BTreeSet::new(),
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
        pacing::proposal_capacity(self.timeouts.propose, self.build_us_per_tx.max(self.execute_us_per_tx))
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

    /// The propose timeout of `round`.
    fn propose_timeout(&self, round: u32) -> Duration {
        self.timeouts.propose.saturating_add(self.timeouts.propose_delta.saturating_mul(round))
    }

    /// Keeps the writes of `block`, executed on `tip`, for its decision.
    fn prepare(&mut self, tip: &Tip, block: &Block, overlay: MemoryLedger) {
        if self.prepared.len() < MAX_PREPARED {
            let p = Prepared { parent: tip.block_hash, overlay };
            self.prepared.insert(block.hash(), p);
        }
    }

    /// Whether `block`'s time passes the clock check `clock` by this node's clock. An untimely
    /// block gets no verdict at all, rather than an invalid one: this node does not vote for it,
    /// but the check is this node's alone (its clock may be the one that is off), so should a
    /// quorum decide the block all the same, this node takes it from them. A block marked invalid
    /// could never be taken: the engine refuses a certificate for a value it holds as invalid, and
    /// the node would stay at that height for good.
    fn timely(&self, block: &Block, clock: Clock) -> bool {
        let Clock::Proposed { received_ms, round, .. } = clock else { return true };
        // Measured before the check, so that a clock off by more than the drift shows in the metric.
        if block.header.proposer != self.address.0 {
            let offset = i128::from(block.header.time_ms) - i128::from(received_ms);
            self.shared.metrics.clock_offset_ms.set(i64::try_from(offset).unwrap_or(i64::MAX));
        }
        let now = now_ms();
        let Err(reason) = clock_verdict(block.header.time_ms, clock, now, self.propose_timeout(round)) else {
            return true;
        };
        warn!(
            height = block.header.height,
            time_ms = block.header.time_ms,
            now_ms = now,
            "proposed block's time is {reason} by this node's clock; not voting for it. If every other \
             validator's blocks are refused so, check this node's clock (NTP)"
        );
        self.shared.metrics.dropped("clock");
        false
    }

    /// Validates `block` (whose transactions match its header) as the next block on the committed
    /// tip. A block found valid is kept in the store before this returns. A failure of this node's
    /// own storage is an error, never a verdict: the node stops rather than vote against a valid
    /// block, or for one it could not find again after a crash.
    fn validate(&mut self, block: &Block, bytes: &[u8]) -> anyhow::Result<Validity> {
        let tip = self.tip();
        if block.header.height != tip.height + 1 {
            return Ok(Validity::Invalid);
        }
        if self.set.get_by_address(&Address(block.header.proposer)).is_none() {
            warn!(height = block.header.height, "proposed block names a proposer outside the validator set");
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
                self.shared
                    .store
                    .put_received_block(block.header.height, &block.hash(), bytes)
                    .with_context(|| format!("keeping valid block {} for its decision", block.header.height))?;
                faults::crash(CrashPoint::AfterReceivedStored, block.header.height);
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

    /// The verdict on held block `hash` of the next height: the one reached before, or reached now.
    fn verdict(&mut self, height: u64, hash: &Hash32, clock: Clock) -> anyhow::Result<Option<Validity>> {
        let Some(body) = self.buffer.body(height, hash) else { return Ok(None) };
        if let Some(v) = body.valid {
            return Ok(Some(Validity::from_bool(v)));
        }
        let (block, bytes) = (body.block.clone(), body.bytes.clone());
        if !self.timely(&block, clock) {
            return Ok(None);
        }
        let v = self.validate(&block, &bytes)?;
        self.buffer.set_verdict(height, hash, v.is_valid(), Some(Instant::now()));
        Ok(Some(v))
    }

    fn proposed_value(&self, offer: &Offer, validity: Validity) -> ProposedValue<SabtContext> {
        ProposedValue {
            height: Height(offer.height),
            round: Round::new(offer.round),
            valid_round: offer.pol_round.map(Round::new).unwrap_or(Round::Nil),
            proposer: offer.proposer,
            value: BlockId(offer.hash),
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
    ) -> anyhow::Result<bool> {
        let Some(r) = round.as_u32() else { return Ok(false) };
        // A part's signature is over the very bytes of the proposal's: it is recorded, like every
        // signature, before it is made, and never made for another block in the same round.
        match self
            .shared
            .signed
            .record(height, r, super::signing::PROPOSAL, Some(hash))
            .context("cannot record a proposal durably; refusing to sign it")?
        {
            super::record::Recorded::New | super::record::Recorded::Same => {}
            super::record::Recorded::Other(before) => {
                warn!(
                    height,
                    round = r,
                    signed = ?before,
                    "this validator proposed another block in this round before; not proposing this one"
                );
                return Ok(false);
            }
        }
        faults::signed(super::signing::PROPOSAL, height, r, Some(hash));
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
        #[cfg(feature = "fault-injection")]
        {
            let lies = crate::faults::app();
            if lies.bad_parts {
                for bad in super::byzantine::bad_parts(&part, self.shared.genesis.params.max_block_bytes) {
                    self.send_part(channels, bad).await?;
                }
            }
            if lies.swap_body
                && let Some(forged) = super::byzantine::swapped_part(&part)
            {
                return self.send_part(channels, forged).await.map(|()| true);
            }
            if lies.bad_parts {
                for _ in 0..20 {
                    self.send_part(channels, part.clone()).await?;
                }
            }
        }
        self.send_part(channels, part).await.map(|()| true)
    }

    /// Sends `part` as a stream of its own.
    async fn send_part(&mut self, channels: &Channels<SabtContext>, part: ProposalPart) -> anyhow::Result<()> {
        let (height, r) = (part.height, part.round);
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

    /// Re-sends another proposer's part from this node with other transactions under its signed
    /// header, once a proposal (a Byzantine validator's lie, test builds only).
    #[cfg(feature = "fault-injection")]
    async fn relay_swapped(&mut self, channels: &Channels<SabtContext>, part: &ProposalPart) -> anyhow::Result<()> {
        if !crate::faults::app().swap_body
            || part.proposer == self.address.0
            || !self.relayed.insert((part.height, part.round, Address(part.proposer)))
        {
            return Ok(());
        }
        self.relayed.retain(|(h, _, _)| *h + 2 >= part.height);
        match super::byzantine::swapped_part(part) {
            Some(forged) => self.send_part(channels, forged).await,
            None => Ok(()),
        }
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
            // Proposed here before, and the block lost with the data directory (a resync): a new
            // block would be a second proposal for this round. This round goes without one.
            None if self.shared.signed.get(height.0, r, super::signing::PROPOSAL).is_some() => {
                warn!(%height, %round, "this validator proposed in this round before and no longer holds that block; not proposing again");
                return Ok(None);
            }
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
                faults::crash(CrashPoint::AfterProposalStored, height.0);
                (block, bytes)
            }
        };
        let hash = block.hash();
        info!(%height, %round, block = %hash, txs = block.txs.len(), "proposing");
        let bytes = Arc::new(bytes);
        let offer = Offer { height: height.0, round: r, pol_round: None, proposer: self.address, hash };
        let block = Arc::new(block);
        let placed_by = self.address;
        let body_bytes = bytes.clone();
        self.buffer.insert(tip.height, offer, || Body {
            block,
            bytes: body_bytes,
            valid: Some(true),
            ready_at: Some(Instant::now()),
            placed_by,
        });
        if !self.publish(channels, height.0, round, Round::Nil, bytes, hash).await? {
            return Ok(None);
        }
        Ok(Some(LocallyProposedValue::new(height, round, BlockId(hash))))
    }

    /// Drops a consensus message for `reason`, counted and logged.
    fn drop_part(
        &self,
        reason: &'static str,
        height: u64,
        round: u32,
        detail: &str,
    ) -> Option<ProposedValue<SabtContext>> {
        self.shared.metrics.dropped(reason);
        warn!(height, round, reason, "dropped a proposal part: {detail}");
        None
    }

    fn received_part(
        &mut self,
        from: PeerId,
        part: ProposalPart,
    ) -> anyhow::Result<Option<ProposedValue<SabtContext>>> {
        let tip = self.tip().height;
        let (h, r) = (part.height, part.round);
        // No block may exceed the genesis limit: a larger part is not decoded at all.
        if part.block.len() as u64 > self.shared.genesis.params.max_block_bytes {
            return Ok(self.drop_part("oversized", h, r, "its block is larger than the genesis allows"));
        }
        // Validators send their own proposals (the network does not relay): a part that comes from
        // another peer than its proposer's was copied, and is not looked at further.
        if self.peers.get(&from) != Some(&Address(part.proposer)) {
            return Ok(self.drop_part("relayed_part", h, r, "it came from another peer than its proposer's"));
        }
        // The header alone names the block: a part seen before, or one with no room, costs nothing more.
        let header = match Block::decode_header(&part.block) {
            Ok(hd) if hd.height == h => hd,
            Ok(_) => return Ok(self.drop_part("bad_block", h, r, "its block is of another height")),
            Err(e) => return Ok(self.drop_part("bad_block", h, r, &format!("its block does not decode: {e}"))),
        };
        let offer = Offer {
            height: h,
            round: r,
            pol_round: part.pol_round,
            proposer: Address(part.proposer),
            hash: header.hash(),
        };
        match self.buffer.offer(tip, &offer) {
            Admission::OutOfWindow | Admission::Duplicate => return Ok(None),
            Admission::Conflicting => {
                return Ok(self.drop_part("conflicting", h, r, "its proposer proposed another block in this round"));
            }
            Admission::Full => return Ok(self.drop_part("full", h, r, "no room left for its height or proposer")),
            Admission::KnownBody | Admission::NeedBody => {}
        }
        // The proposer order of a later height depends on blocks not committed yet: a part for
        // one needs only come from a validator, and is checked against the order when its height
        // is next ([`App::started_round`]).
        let proposes = if h == tip + 1 {
            self.ctx.select_proposer(&self.next_set(), Height(h), Round::new(r)).address.0 == part.proposer
        } else {
            self.set.get_by_address(&Address(part.proposer)).is_some()
        };
        if !proposes {
            return Ok(self.drop_part("not_proposer", h, r, "its validator does not propose this round"));
        }
        let msg = ProposalMsg {
            chain_id: self.shared.genesis.chain_id.clone(),
            height: h,
            round: r,
            pol_round: part.pol_round,
            block: offer.hash,
            proposer: part.proposer,
        };
        if msg.verify(&part.signature).is_err() {
            return Ok(self.drop_part("bad_signature", h, r, "its signature does not verify"));
        }
        if self.buffer.body(h, &offer.hash).is_none() {
            let block: Block = match codec::decode(&part.block) {
                Ok(b) => b,
                Err(e) => return Ok(self.drop_part("bad_block", h, r, &format!("its block does not decode: {e}"))),
            };
            if let Err(e) = block.check_body() {
                return Ok(self.drop_part(
                    "swapped_body",
                    h,
                    r,
                    &format!("its transactions are not its header's: {e}"),
                ));
            }
            // A new proposal names its builder as the proposer (the proposer order reads it from
            // committed headers); a re-proposal carries the block of an earlier round's proposer.
            if part.pol_round.is_none() && block.header.proposer != part.proposer {
                return Ok(self.drop_part("bad_block", h, r, "its block names another validator as its proposer"));
            }
            if !self.extensions_match(h, &block) {
                warn!(height = h, "a certificate's cosignatures accepted for this block do not match it");
            }
            let bytes = part.block.clone();
            self.buffer.insert(tip, offer, || Body {
                block: Arc::new(block),
                bytes,
                valid: None,
                ready_at: None,
                placed_by: offer.proposer,
            });
        } else {
            self.buffer.insert(tip, offer, || unreachable!("the block is held"));
        }
        if h != tip + 1 {
            // A block of a later height is executed, and ready, when its height starts.
            return Ok(None);
        }
        let clock = Clock::Proposed { received_ms: now_ms(), fresh: part.pol_round.is_none(), round: r };
        let validity = self.verdict(h, &offer.hash, clock)?;
        Ok(validity.map(|v| self.proposed_value(&offer, v)))
    }

    fn started_round(&mut self, height: Height, round: Round) -> anyhow::Result<Vec<ProposedValue<SabtContext>>> {
        self.round_started = Some(Instant::now());
        if round == Round::new(0) {
            self.first_round_started = Some((height.0, Instant::now()));
        }
        self.shared.metrics.round.set(i64::from(round.as_u32().unwrap_or(0)));
        let Some(r) = round.as_u32() else { return Ok(Vec::new()) };
        let set = self.next_set();
        let mut out = Vec::new();
        for offer in self.buffer.proposals(height.0, r) {
            if height.0 == self.tip().height + 1
                && self.ctx.select_proposer(&set, height, round).address != offer.proposer
            {
                warn!(%height, %round, "dropping a proposal kept for this height from a validator that does not propose it");
                self.buffer.remove_proposal(height.0, r, &offer.proposer);
                continue;
            }
            // Received ahead of its height: only the upper bound applies (the lower one is checked
            // only for a block judged as it arrives).
            let clock = Clock::Proposed { received_ms: now_ms(), fresh: false, round: r };
            if let Some(v) = self.verdict(height.0, &offer.hash, clock)? {
                out.push(self.proposed_value(&offer, v));
            }
        }
        Ok(out)
    }

    fn checkpoint_ext(&self, height: u64, hash: &Hash32) -> Option<CheckpointExt> {
        self.buffer
            .body(height, hash)
            .map(|b| CheckpointExt { size: b.block.header.log_size, root: b.block.header.log_root })
    }

    /// The checkpoint of block `hash` of `height` as kept in the store: a block found valid, or
    /// this node's own proposal of `round`. After a restart the engine replays its write-ahead log
    /// and asks to cosign the block it precommitted before anything is held again; without an
    /// answer it stops.
    fn kept_checkpoint_ext(&self, height: u64, round: u32, hash: &Hash32) -> Option<CheckpointExt> {
        let ext = |bytes: &[u8]| {
            let header = Block::decode_header(bytes).ok()?;
            (header.hash() == *hash).then_some(CheckpointExt { size: header.log_size, root: header.log_root })
        };
        if let Ok(Some(bytes)) = self.shared.store.received_block(height, hash) {
            return ext(&bytes);
        }
        // Its own proposal of this round, or of an earlier one it proposes again.
        (0..=round).rev().find_map(|r| self.shared.store.own_proposal(height, r).ok().flatten().and_then(|b| ext(&b)))
    }

    /// The verdicts on checkpoint cosignatures for block `value_id` of `height`. For a block held,
    /// each must match it. For a block not held yet (its precommits came first, or a synced
    /// certificate brings them) they are accepted and kept, and checked against the block when it
    /// arrives ([`App::extensions_match`]: a synced block that does not match is the serving peer's
    /// fault). A decision keeps only matching cosignatures; should they be no quorum, the commit
    /// waits for the precommits gathered until finalization ([`App::decided`]).
    fn verify_extensions(
        &mut self,
        height: u64,
        value_id: Hash32,
        extensions: Vec<(Address, CheckpointExt)>,
    ) -> Vec<(Address, Result<(), VoteExtensionError>)> {
        if let Some(expected) = self.checkpoint_ext(height, &value_id) {
            return extensions
                .into_iter()
                .map(|(addr, ext)| {
                    if ext == expected {
                        (addr, Ok(()))
                    } else {
                        self.shared.metrics.dropped("extension_mismatch");
                        warn!(height, validator = %addr, "a precommit cosigns another checkpoint than its block's");
                        (addr, Err(VoteExtensionError::InvalidVoteExtension))
                    }
                })
                .collect();
        }
        if self.unchecked.len() >= MAX_UNCHECKED_EXTENSIONS && !self.unchecked.contains_key(&(height, value_id)) {
            self.unchecked.pop_first();
        }
        let verdicts = extensions.iter().map(|(a, _)| (*a, Ok(()))).collect();
        // One cosignature a validator: a validator's later one replaces its earlier, so the list
        // stays within the validator set whatever a peer repeats.
        let kept = self.unchecked.entry((height, value_id)).or_default();
        for (addr, ext) in extensions {
            kept.retain(|(a, _)| *a != addr);
            kept.push((addr, ext));
        }
        verdicts
    }

    /// Whether the cosignatures accepted for `block` before it was held (a synced certificate's)
    /// match it; they are forgotten either way.
    fn extensions_match(&mut self, height: u64, block: &Block) -> bool {
        let Some(exts) = self.unchecked.remove(&(height, block.hash())) else { return true };
        let expected = CheckpointExt { size: block.header.log_size, root: block.header.log_root };
        exts.iter().all(|(_, e)| *e == expected)
    }

    /// Commits the decided block. Returns whether it was committed: `false` when this node does not
    /// hold the block (it never found it valid, so it never voted for it; sync then fetches it), or
    /// when the precommits that cosign its checkpoint are no quorum (then finalization tries again
    /// with the precommits gathered by then).
    fn decided(
        &mut self,
        cert: &mal::CommitCertificate<SabtContext>,
        extensions: &mal::VoteExtensions<SabtContext>,
    ) -> anyhow::Result<bool> {
        let height = cert.height.0;
        let tip = self.tip();
        if height <= tip.height {
            // Already committed (a replay after restart).
            return Ok(true);
        }
        if height != tip.height + 1 {
            return Err(anyhow!("decided height {height} does not follow the committed tip {}", tip.height));
        }
        faults::crash(CrashPoint::Decided, height);
        let block = match self.buffer.body(height, &cert.value_id) {
            Some(b) => b.block.clone(),
            // After a crash between decision and commit the engine replays the decision; the block
            // was kept in the store when it was found valid.
            None => match self.shared.store.received_block(height, &cert.value_id)? {
                Some(bytes) => {
                    let block: Block = codec::decode(&bytes).context("a kept valid block does not decode")?;
                    block.check_body().context("a kept valid block does not match its header")?;
                    info!(height, block = %cert.value_id, "committing a decided block kept before a restart");
                    Arc::new(block)
                }
                None => {
                    warn!(height, block = %cert.value_id, "decided a block this node does not hold; will fetch it by sync");
                    return Ok(false);
                }
            },
        };
        let hash = block.hash();
        if hash != cert.value_id {
            return Err(anyhow!("held block {hash} is not the decided {}", cert.value_id));
        }
        // Held blocks were checked against their headers when they arrived; a block read back is
        // checked above. Both are the block the header names.
        let round = cert.round.as_u32().unwrap_or(0);
        let first_round = pacing::first_round(
            round,
            self.buffer.first_round_ready(height),
            self.first_round_started.filter(|(h, _)| *h == height).map(|(_, t)| t),
            self.timeouts.propose,
        );
        let ext = CheckpointExt { size: block.header.log_size, root: block.header.log_root };
        // Keep only the precommits that cosign the checkpoint this block really produces: every
        // stored certificate is one whose every signature carries its cosignature, as peers that
        // sync from this node require.
        let matching: Vec<_> =
            extensions.extensions.iter().filter(|(_, e)| e.message == ext).map(|(a, e)| (*a, e.clone())).collect();
        let mut commit =
            commit_from_certificate(cert, &matching).ok_or_else(|| anyhow!("certificate without a round"))?;
        let before = commit.signatures.len();
        commit.signatures.retain(|s| s.checkpoint.is_some());
        if commit.signatures.len() < before {
            warn!(
                height,
                dropped = before - commit.signatures.len(),
                "left precommits without a matching cosignature out of the stored certificate"
            );
        }
        if let Err(e) = verify_commit(&commit, &self.shared.validator_set, &self.shared.genesis.chain_id, height, &hash)
        {
            // A validator cosigned a wrong checkpoint before this node had the block: wait for the
            // precommits consensus gathers until it finalizes the height.
            self.shared.metrics.dropped("extension_mismatch");
            warn!(height, error = %e, "the precommits that cosign the decided block's checkpoint are no quorum yet; waiting for more");
            return Ok(false);
        }
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
        faults::crash(CrashPoint::BeforeCommit, height);
        let started = Instant::now();
        let new_tip = self.shared.store.commit(&ws, &block, &ids, &commit).context("committing a decided block")?;
        let written = started.elapsed();
        faults::crash(CrashPoint::AfterCommit, height);
        self.shared.committed(new_tip, &ids, ws.entries());
        self.buffer.committed(height);
        self.unchecked.retain(|(h, _), _| *h > height);
        // Decided with the others, this node is at the network's height; fetching blocks by sync,
        // it is catching up, and takes no transactions until it is not (its state may lack what
        // allows them).
        let via_sync = self.synced.remove(&height);
        self.synced.retain(|h| *h > height);
        self.synced_run = if via_sync { self.synced_run.saturating_add(1) } else { 0 };
        self.caught_up = pacing::caught_up(self.caught_up, self.synced_run);
        self.shared.set_caught_up(self.caught_up);
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
            cosignatures = commit.signatures.len(),
            round,
            first_round = ?first_round,
            next_limit = self.block_limit.0,
            prepared,
            execute_ms = ms(started.duration_since(decided_at)),
            write_ms = ms(written),
            after_ms = ms(started.elapsed().saturating_sub(written)),
            "committed"
        );
        Ok(true)
    }

    /// Keeps the equivocation evidence consensus collected: each pair is verified against the
    /// validator set, stored once, counted and logged.
    fn evidence(&self, evidence: &mal::MisbehaviorEvidence<SabtContext>) -> anyhow::Result<()> {
        let chain = self.shared.genesis.chain_id.as_str();
        let mut found = Vec::new();
        for (_, pairs) in evidence.votes.iter() {
            for (a, b) in pairs {
                if let (Some(ma), Some(mb)) = (a.message.message(chain), b.message.message(chain)) {
                    found.push(sabt_core::evidence::Equivocation::Votes {
                        first: (ma, a.signature),
                        second: (mb, b.signature),
                    });
                }
            }
        }
        for (_, pairs) in evidence.proposals.iter() {
            for (a, b) in pairs {
                if let (Some(ma), Some(mb)) = (a.message.message(chain), b.message.message(chain)) {
                    found.push(sabt_core::evidence::Equivocation::Proposals {
                        first: (ma, a.signature),
                        second: (mb, b.signature),
                    });
                }
            }
        }
        for e in found {
            if let Err(err) = e.verify(chain, &self.shared.validator_set) {
                warn!(error = %err, "equivocation evidence from consensus does not verify; not kept");
                continue;
            }
            if self
                .shared
                .store
                .put_evidence(e.height(), &codec::encode(&e))
                .context("keeping equivocation evidence")?
            {
                self.shared.metrics.equivocation(e.kind());
                let name = self.shared.validator_set.by_key(&e.validator()).map(|v| v.name.clone()).unwrap_or_default();
                warn!(validator = %name, height = e.height(), round = e.round(), kind = e.kind(), "a validator equivocated; evidence kept");
            }
        }
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
            #[cfg(feature = "fault-injection")]
            let bytes =
                if crate::faults::app().forge_sync { super::byzantine::forged_sync_block(&bytes, h) } else { bytes };
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
        let tip = self.tip().height;
        if !synced_is_next(height.0, tip) {
            debug!(%height, tip, "synced value is not for the next height; asking again later");
            return Ok(SyncedValueOutcome::LocalTransientError);
        }
        let block: Block = match codec::decode(&bytes) {
            Ok(b) => b,
            Err(e) => {
                self.shared.metrics.dropped("synced_bad_block");
                warn!(%height, error = %e, "synced value is not a valid block");
                return Ok(SyncedValueOutcome::PeerFault);
            }
        };
        if block.header.height != height.0 || block.check_body().is_err() {
            self.shared.metrics.dropped("synced_bad_block");
            warn!(%height, "synced block is of another height, or its transactions are not its header's");
            return Ok(SyncedValueOutcome::PeerFault);
        }
        if !self.extensions_match(height.0, &block) {
            self.shared.metrics.dropped("synced_bad_certificate");
            warn!(%height, "a synced certificate cosigns another checkpoint than its block's; asking another peer");
            return Ok(SyncedValueOutcome::PeerFault);
        }
        let hash = block.hash();
        self.synced.insert(height.0);
        let offer = Offer { height: height.0, round: round.as_u32().unwrap_or(0), pol_round: None, proposer, hash };
        // The certificate decided it: hold it whatever room proposals took.
        let bytes = Arc::new(bytes.to_vec());
        let block = Arc::new(block);
        if self.buffer.body(height.0, &hash).is_none() {
            self.buffer.insert(tip, offer, || Body {
                block: block.clone(),
                bytes: bytes.clone(),
                valid: None,
                ready_at: None,
                placed_by: proposer,
            });
        }
        let validity = match self.buffer.body(height.0, &hash) {
            Some(_) => self.verdict(height.0, &hash, Clock::Decided)?.unwrap_or(Validity::Invalid),
            None => {
                // No room (proposals filled the height): validate it without holding it.
                self.validate(&block, &bytes)?
            }
        };
        Ok(SyncedValueOutcome::Verdict(self.proposed_value(&offer, validity)))
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
                AppMsg::ExtendVote { height, round, value_id, vote_extension_policy: _, reply } => {
                    let ext = self
                        .checkpoint_ext(height.0, &value_id)
                        .or_else(|| self.kept_checkpoint_ext(height.0, round.as_u32().unwrap_or(0), &value_id));
                    #[cfg(feature = "fault-injection")]
                    let ext = if crate::faults::app().wrong_extension {
                        ext.map(super::byzantine::wrong_extension)
                    } else {
                        ext
                    };
                    if ext.is_none() {
                        warn!(%height, block = %value_id, "asked to cosign the checkpoint of an unknown block");
                    }
                    let _ = reply.send(ext);
                }
                AppMsg::VerifyVoteExtensions { height, round: _, value_id, extensions, reply } => {
                    let _ = reply.send(self.verify_extensions(height.0, value_id, extensions));
                }
                AppMsg::RestreamProposal { height, round, valid_round, address, value_id } => {
                    if address != self.address {
                        continue;
                    }
                    if let Some(b) = self.buffer.body(height.0, &value_id) {
                        let bytes = b.bytes.clone();
                        self.publish(&channels, height.0, round, valid_round, bytes, value_id).await?;
                    }
                }
                AppMsg::GetHistoryMinHeight { reply } => {
                    let _ = reply.send(Height(1));
                }
                AppMsg::ReceivedProposalPart { from, published_by: _, part, reply } => {
                    #[cfg(feature = "fault-injection")]
                    if let StreamContent::Data(p) = &part.content {
                        self.relay_swapped(&channels, p).await?;
                    }
                    let value = match part.content {
                        StreamContent::Data(p) => self.received_part(from, p)?,
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
                AppMsg::Finalized { certificate, extensions, reply, evidence } => {
                    if let Err(e) = self.evidence(&evidence) {
                        error!(error = format!("{e:#}"), "cannot keep equivocation evidence; stopping");
                        return Err(e);
                    }
                    // Not committed at the decision: try again with what finalization gathered.
                    if let Err(e) = self.decided(&certificate, &extensions) {
                        error!(error = format!("{e:#}"), "cannot commit a decided block; stopping");
                        return Err(e);
                    }
                    let next = certificate.height.0 + 1;
                    let tip = self.tip().height;
                    let params = self.params();
                    // Restarting a height is safe from double signing: the signer refuses any
                    // vote that conflicts with one it signed there before.
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
    fn a_block_time_is_checked_against_the_clock_both_ways() {
        let now = 1_000_000_000u64;
        let p = Duration::from_millis(3_000);
        let proposed = |received_ms, fresh| Clock::Proposed { received_ms, fresh, round: 0 };
        // (case, block time, clock, expected)
        let table: [(&str, u64, Clock, Result<(), &str>); 8] = [
            ("on time", now, proposed(now, true), Ok(())),
            ("ahead within the drift", now + MAX_CLOCK_DRIFT_MS, proposed(now, true), Ok(())),
            ("ahead beyond the drift", now + MAX_CLOCK_DRIFT_MS + 1, proposed(now, true), Err("too far in the future")),
            ("behind within drift and timeout", now - MAX_CLOCK_DRIFT_MS - 3_000, proposed(now, true), Ok(())),
            ("behind beyond", now - MAX_CLOCK_DRIFT_MS - 3_001, proposed(now, true), Err("too far in the past")),
            // A re-proposal carries the time of the round it was built in, however long ago.
            ("an old re-proposal", now - 3_600_000, proposed(now, false), Ok(())),
            // A decided block (sync, a replayed decision) is not judged by this node's clock.
            ("decided, far ahead", now + 3_600_000, Clock::Decided, Ok(())),
            ("decided, far behind", 1, Clock::Decided, Ok(())),
        ];
        for (case, time, clock, want) in table {
            assert_eq!(clock_verdict(time, clock, now, p), want, "{case}");
        }
    }

    #[test]
    fn only_the_next_height_is_checked_from_sync() {
        // (height, tip, checked now)
        for (height, tip, next) in [(11, 10, true), (12, 10, false), (18, 10, false), (10, 10, false), (3, 10, false)] {
            assert_eq!(synced_is_next(height, tip), next, "height {height} at tip {tip}");
        }
    }
}

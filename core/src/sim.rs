//! A seeded, deterministic generator of adversarial registry traffic, for simulation tests of the
//! registry rules: from a `u64` seed, the same candidate transactions block after block.
//!
//! A [`Simulation`] plays every agency of a four-agency devnet (agency 0 keeps the land registry)
//! and their clerks. Block by block ([`Simulation::next_block`]) it proposes candidate
//! transactions, a realistic-but-adversarial mix of:
//! - single and batched anchors (batch roots are real RFC 9162 trees whose leaves and paths it
//!   remembers), duplicate anchors of the same document or root, records with invalid metadata;
//! - key grants and revocations, some of other agencies' keys, admin keys or revoked keys, some
//!   with an expiry a few blocks ahead;
//! - withdrawals and supersessions of its own and other agencies' records, by the correct
//!   reference, a wrong entry number, a wrong leaf, a tampered path, a tampered record;
//! - every land operation, with adversarial geometry (slivers, spikes, holes, shared edges and
//!   corners, overlaps just inside and just beyond the tolerance, boxes at and over the grid-cell
//!   limit of [`crate::land::cells`], polygons up to and over the vertex limit, invalid rings) and
//!   extreme shares (`u64::MAX` denominators, sums past 128 bits);
//! - consents and releases signed by the right key, the wrong key, over a stale version or in the
//!   wrong context;
//! - replays of committed transactions, wrong nonces, unknown signers, bad signatures, other chains.
//!
//! It does not predict outcomes: the registry decides. What it believes exists (records and their
//! anchoring entries, grants, parcels, restrictions, structures, nonces) it learns only from what
//! was committed, through [`Simulation::observe`] on each block's [`Executed`] entries, so later
//! references point at real entries and real parcel versions.
//!
//! Determinism: a SplitMix64 generator ([`SplitMix64`]) seeded from the seed is the only source of
//! choice; ordered maps only; integer millimetres for every coordinate; no clock (block times are
//! the genesis time plus whole seconds). Memory is bounded: the records and replayable
//! transactions it remembers are capped ([`MAX_RECORDS`], [`MAX_REPLAYS`]), and everything else
//! grows only with the number of transactions asked for ([`Config::txs`]).

use crate::bundle::BatchProof;
use crate::devnet::Devnet;
use crate::entry::{AccessClass, ArchiveRecord, BatchAnchor, EntryBody, RecordKind, RecordRef, ReferenceCode};
use crate::fingerprint::Fingerprint;
use crate::genesis::{AgencyRole, Genesis};
use crate::geometry::{MAX_COORD_MM, MAX_VERTICES, Point, Polygon};
use crate::hash::Hash32;
use crate::land::{
    self, CELL_MM, Holding, LandCategory, LandOp, Parcel, Restriction, RestrictionKind, Right, RightKind, Share,
    Structure, StructureKind,
};
use crate::merkle::{Blake3, MemoryTree};
use crate::registry::Executed;
use crate::sign::{self, PublicKey, SecretKey};
use crate::tx::{SignedTx, Transaction, TxBody};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An axis-aligned rectangle: `(x0, y0, x1, y1)`, mm.
type Rect = (i64, i64, i64, i64);

/// A signing key the simulation hands around (secret keys are not `Clone`).
type Key = Arc<SecretKey>;

/// The chain id of every simulated chain.
pub const CHAIN_ID: &str = "sabt-sim";
/// Genesis time of every simulated chain, Unix ms.
pub const GENESIS_TIME_MS: u64 = 1_800_000_000_000;
/// Agencies in the simulated genesis; agency 0 holds the land role.
pub const AGENCIES: usize = 4;
/// Clerk keys each agency may grant.
pub const CLERKS_PER_AGENCY: usize = 4;
/// Most clerk keys in all: an agency whose clerks were all revoked makes new ones, up to this.
pub const MAX_CLERKS: usize = 64;
/// Most records remembered for later withdrawals, supersessions and duplicates.
pub const MAX_RECORDS: usize = 256;
/// Most committed transactions remembered for replays.
pub const MAX_REPLAYS: usize = 64;

/// The record kinds the simulation uses: few, so that grants often miss a kind.
const KINDS: [RecordKind; 4] =
    [RecordKind::CivilStatus, RecordKind::Notary, RecordKind::LandProperty, RecordKind::Other];
/// The land agency.
const LAND: usize = 0;
/// Origin of the parcel sites, mm (UTM 42N near Dushanbe).
const BASE: (i64, i64) = (500_000_000, 4_260_000_000);
/// Side of one parcel site, mm (1 km).
const SITE_MM: i64 = 1_000_000;
/// Sites per row; sites beyond `SITES_PER_ROW²` wrap around onto earlier ones.
const SITES_PER_ROW: u64 = 48;
/// Origin of the region of very large parcels, mm, well away from the sites.
const FAR: (i64, i64) = (1_000_000_000, 6_000_000_000);
/// Cells per side of the largest square one registration may cover (`MAX_CELLS` = 100 × 100).
const LIMIT_SIDE_CELLS: i64 = 100;
/// Runs of at least this many transactions include one block of candidates larger than a block.
const FLOOD_AFTER: usize = 1000;
/// The overlap tolerance of the default genesis, mm².
const TOLERANCE_MM2: i64 = 10_000;

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast, seedable generator. The simulation's only
/// source of choice.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0), by multiply-high: deterministic, no rejection loop.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// An index into a slice of length `len` (0 when empty).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = hi.saturating_sub(lo).max(0) as u64;
        lo.saturating_add(self.below(span.saturating_add(1)) as i64)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// 32 random bytes (a key seed).
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// How much traffic to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Candidate transactions to generate over the whole run.
    pub txs: usize,
    /// Most candidates in one block.
    pub max_block_txs: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { txs: 150, max_block_txs: 12 }
    }
}

/// The candidates for one block, in the order a proposer receives them.
#[derive(Debug, Clone)]
pub struct Candidates {
    /// Height of the block.
    pub height: u64,
    /// Its consensus time, Unix ms.
    pub time_ms: u64,
    /// The candidate transactions.
    pub txs: Vec<SignedTx>,
    /// What each candidate was generated to exercise (same order as `txs`), for traces.
    pub intents: Vec<String>,
}

/// A clerk key and what the simulation knows of its grant.
#[derive(Debug, Clone)]
struct Clerk {
    key: Key,
    /// The agency meant to grant it (another may grant it first).
    home: usize,
    /// The committed grant: agency, kinds, expiry.
    grant: Option<(usize, Vec<RecordKind>, Option<u64>)>,
    revoked: bool,
}

/// A record the simulation saw committed.
#[derive(Debug, Clone)]
struct KnownRecord {
    rref: RecordRef,
    agency: usize,
    current: bool,
}

/// A parcel as committed.
#[derive(Debug, Clone)]
struct ParcelBelief {
    geometry: Polygon,
    right: Right,
    restrictions: Vec<Restriction>,
    version: u32,
    live: bool,
}

/// The simulation: a seed, what it has generated, and what it has seen committed.
///
/// One block at a time: take the candidates, let a proposer build (or a node execute) the block,
/// and show the simulation what was committed.
///
/// ```
/// use sabt_core::registry::{MemoryLedger, NoCache, Registry, Tip};
/// use sabt_core::sim::{Config, Simulation};
///
/// let mut sim = Simulation::new(7, Config { txs: 20, ..Config::default() });
/// let registry = Registry::new(sim.genesis()).unwrap();
/// let (mut ledger, mut tip) = (MemoryLedger::default(), Tip::genesis(sim.genesis()));
/// while let Some(block) = sim.next_block() {
///     let built =
///         registry.build_block(&mut ledger, &tip, block.time_ms, sim.proposer(), block.txs, &NoCache).unwrap();
///     sim.observe(&built.executed);
///     tip = Tip::after(&built.block.header);
/// }
/// assert!(tip.log_size > 0);
/// ```
#[derive(Debug)]
pub struct Simulation {
    rng: SplitMix64,
    seed: u64,
    config: Config,
    genesis: Genesis,
    admins: Vec<Key>,
    clerks: Vec<Clerk>,
    stranger: Key,
    proposer: PublicKey,
    height: u64,
    time_ms: u64,
    generated: usize,
    counter: u64,
    next_site: u64,
    huge_accepted: bool,
    flooded: bool,
    /// Origin and size of the last many-vertex parcel proposed, to stack the next one on it.
    last_saw: Option<(i64, i64, usize)>,
    /// Next nonce of each signer, from committed entries.
    nonces: BTreeMap<PublicKey, u64>,
    /// Nonces handed out in the block being generated.
    inflight: BTreeMap<PublicKey, u64>,
    records: Vec<KnownRecord>,
    batch_roots: Vec<BatchAnchor>,
    parcels: BTreeMap<String, ParcelBelief>,
    structures: BTreeMap<String, bool>,
    /// Release keys of restrictions, by their source document's SHA-256.
    consent_keys: BTreeMap<Hash32, Key>,
    /// Candidates of the block being generated, by id (for replays once committed).
    pending: BTreeMap<Hash32, SignedTx>,
    /// Batches of the block being generated: root → leaves with their paths.
    pending_batches: BTreeMap<Hash32, Vec<(ArchiveRecord, BatchProof)>>,
    replays: Vec<SignedTx>,
    round: Vec<(SignedTx, String)>,
}

/// A counter-clockwise axis-aligned rectangle.
pub fn rect(x0: i64, y0: i64, x1: i64, y1: i64) -> Polygon {
    let p = Point::new;
    Polygon { exterior: vec![p(x0, y0), p(x1, y0), p(x1, y1), p(x0, y1), p(x0, y0)], holes: vec![] }
}

/// The rectangle a polygon is, if it is exactly [`rect`] of some corners.
fn as_rect(g: &Polygon) -> Option<Rect> {
    let e = &g.exterior;
    if !g.holes.is_empty() || e.len() != 5 {
        return None;
    }
    let (x0, y0, x1, y1) = (e[0].x, e[0].y, e[2].x, e[2].y);
    (*g == rect(x0, y0, x1, y1)).then_some((x0, y0, x1, y1))
}

/// A polygon of exactly `points` points (closing point included, at least 5) along a sawtooth:
/// a flat bottom `width` mm long and a top of alternating heights.
fn sawtooth(x0: i64, y0: i64, points: usize, step: i64) -> Polygon {
    let m = points.saturating_sub(3).max(2);
    let width = (m as i64 - 1) * step;
    let mut exterior = vec![Point::new(x0, y0), Point::new(x0 + width, y0)];
    for i in 0..m {
        let bump = if i % 2 == 1 { step / 2 } else { 0 };
        exterior.push(Point::new(x0 + width - i as i64 * step, y0 + 20 * step + bump));
    }
    exterior.push(Point::new(x0, y0));
    Polygon { exterior, holes: vec![] }
}

impl Simulation {
    /// A simulation of `config.txs` candidate transactions from `seed`.
    pub fn new(seed: u64, config: Config) -> Simulation {
        let seeds: Vec<[u8; 32]> = (1..=AGENCIES as u8).map(|i| [i; 32]).collect();
        let mut dev = Devnet::new(CHAIN_ID, GENESIS_TIME_MS, &seeds, [9; 32]);
        if let Some(a) = dev.genesis.agencies.get_mut(LAND) {
            a.roles.push(AgencyRole::Land);
        }
        let admins: Vec<Key> = (0..AGENCIES).map(|i| Arc::new(dev.admin_key(i))).collect();
        let mut rng = SplitMix64::new(seed);
        let clerks = (0..AGENCIES * CLERKS_PER_AGENCY)
            .map(|i| Clerk {
                key: Arc::new(SecretKey::from_seed(&rng.bytes32())),
                home: i / CLERKS_PER_AGENCY,
                grant: None,
                revoked: false,
            })
            .collect();
        let stranger = Arc::new(SecretKey::from_seed(&rng.bytes32()));
        Simulation {
            seed,
            config,
            proposer: SecretKey::from_seed(&[1; 32]).public(),
            genesis: dev.genesis,
            admins,
            clerks,
            stranger,
            rng,
            height: 0,
            time_ms: GENESIS_TIME_MS,
            generated: 0,
            counter: 0,
            next_site: 0,
            huge_accepted: false,
            flooded: false,
            last_saw: None,
            nonces: BTreeMap::new(),
            inflight: BTreeMap::new(),
            records: Vec::new(),
            batch_roots: Vec::new(),
            parcels: BTreeMap::new(),
            structures: BTreeMap::new(),
            consent_keys: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_batches: BTreeMap::new(),
            replays: Vec::new(),
            round: Vec::new(),
        }
    }

    /// The genesis of the simulated chain.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The proposer named in every block header.
    pub fn proposer(&self) -> PublicKey {
        self.proposer
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Candidate transactions generated so far.
    pub fn generated(&self) -> usize {
        self.generated
    }

    /// The candidates for the next block, or `None` once [`Config::txs`] are generated. Each call
    /// is one block: call [`Simulation::observe`] with what it committed before the next call.
    pub fn next_block(&mut self) -> Option<Candidates> {
        if self.generated >= self.config.txs {
            return None;
        }
        self.height += 1;
        self.time_ms += 1000;
        self.inflight.clear();
        self.round.clear();
        if self.height == 1 {
            self.bootstrap();
        } else if self.config.txs >= FLOOD_AFTER && !self.flooded && self.generated >= self.config.txs / 2 {
            self.flooded = true;
            self.flood();
        } else if !self.rng.chance(3) {
            let n = 1 + self.rng.index(self.config.max_block_txs.max(1));
            for _ in 0..n {
                self.one();
            }
        }
        let round = std::mem::take(&mut self.round);
        self.generated += round.len();
        let (txs, intents) = round.into_iter().unzip();
        Some(Candidates { height: self.height, time_ms: self.time_ms, txs, intents })
    }

    /// Learns what a block committed: nonces, records and their anchoring entries, batches,
    /// grants, status changes, parcels, restrictions and structures.
    pub fn observe(&mut self, executed: &Executed) {
        for (index, entry) in &executed.entries {
            *self.nonces.entry(entry.signer).or_insert(0) += 1;
            if let Some(stx) = self.pending.remove(&entry.tx) {
                if self.replays.len() >= MAX_REPLAYS {
                    let i = self.rng.index(self.replays.len());
                    self.replays.swap_remove(i);
                }
                self.replays.push(stx);
            }
            let agency = self.agency_of(&entry.signer);
            match &entry.body {
                EntryBody::Record(r) => {
                    self.remember(RecordRef { entry: *index, record: r.clone(), batch: None }, agency);
                }
                EntryBody::Batch(b) => {
                    for (record, proof) in self.pending_batches.get(&b.root).cloned().unwrap_or_default() {
                        self.remember(RecordRef { entry: *index, record, batch: Some(proof) }, agency);
                    }
                    self.batch_roots.push(b.clone());
                }
                EntryBody::Grant(g) => {
                    let by = self.genesis.agencies.iter().position(|a| a.name == g.agency).unwrap_or(0);
                    if let Some(c) = self.clerks.iter_mut().find(|c| c.key.public() == g.key) {
                        c.grant = Some((by, g.kinds.clone(), g.expires_ms));
                    }
                }
                EntryBody::Revoke { key, .. } => {
                    if let Some(c) = self.clerks.iter_mut().find(|c| c.key.public() == *key) {
                        c.revoked = true;
                    }
                }
                EntryBody::Withdraw(change) => self.mark_changed(change),
                EntryBody::Supersede { change, record } => {
                    self.mark_changed(change);
                    self.remember(RecordRef { entry: *index, record: record.clone(), batch: None }, agency);
                }
                EntryBody::Land(l) => self.observe_land(&l.op, l.version),
            }
        }
        self.pending.clear();
        self.pending_batches.clear();
    }

    fn agency_of(&self, key: &PublicKey) -> usize {
        if let Some(i) = self.admins.iter().position(|a| a.public() == *key) {
            return i;
        }
        self.clerks.iter().find(|c| c.key.public() == *key).and_then(|c| c.grant.as_ref()).map_or(0, |g| g.0)
    }

    fn remember(&mut self, rref: RecordRef, agency: usize) {
        let known = KnownRecord { rref, agency, current: true };
        if self.records.len() >= MAX_RECORDS {
            let i = self.rng.index(self.records.len());
            self.records[i] = known;
        } else {
            self.records.push(known);
        }
    }

    fn mark_changed(&mut self, change: &crate::entry::StatusChange) {
        for r in &mut self.records {
            let leaf = r.rref.batch.as_ref().map_or(0, |p| p.index);
            if r.rref.entry == change.target_index
                && leaf == change.target_leaf
                && r.rref.record.fingerprint == change.target
            {
                r.current = false;
            }
        }
    }

    fn observe_land(&mut self, op: &LandOp, version: u32) {
        let fresh = |parcel: &Parcel, right: &Right| ParcelBelief {
            geometry: parcel.geometry.clone(),
            right: right.clone(),
            restrictions: Vec::new(),
            version: 1,
            live: true,
        };
        match op {
            LandOp::Register { parcel, right, .. } => {
                self.parcels.insert(parcel.cadastral.clone(), fresh(parcel, right));
            }
            LandOp::Split { cadastral, children, .. } => {
                let right = self.parcels.get(cadastral).map(|p| p.right.clone());
                if let (Some(p), Some(right)) = (self.parcels.get_mut(cadastral), right) {
                    p.live = false;
                    p.version = version;
                    for c in children {
                        self.parcels.insert(c.cadastral.clone(), fresh(c, &right));
                    }
                }
            }
            LandOp::Merge { parents, parcel, .. } => {
                let right = parents.first().and_then(|p| self.parcels.get(p)).map(|p| p.right.clone());
                for p in parents {
                    if let Some(b) = self.parcels.get_mut(p) {
                        b.live = false;
                        b.version += 1;
                    }
                }
                if let Some(right) = right {
                    self.parcels.insert(parcel.cadastral.clone(), fresh(parcel, &right));
                }
            }
            LandOp::RegisterStructure { structure, .. } => {
                self.structures.insert(structure.id.clone(), true);
            }
            LandOp::RetireStructure { id, .. } => {
                self.structures.insert(id.clone(), false);
            }
            LandOp::Transfer { cadastral, .. }
            | LandOp::CorrectBoundary { cadastral, .. }
            | LandOp::Encumber { cadastral, .. }
            | LandOp::Release { cadastral, .. }
            | LandOp::Retire { cadastral, .. } => {
                let Some(p) = self.parcels.get_mut(cadastral) else { return };
                p.version = version;
                match op {
                    LandOp::Transfer { right, .. } => p.right = right.clone(),
                    LandOp::CorrectBoundary { geometry, .. } => p.geometry = geometry.clone(),
                    LandOp::Encumber { restriction, .. } => p.restrictions.push(restriction.clone()),
                    LandOp::Release { restriction, .. } => {
                        p.restrictions.retain(|r| r.source.sha256 != restriction.sha256)
                    }
                    _ => p.live = false,
                }
            }
        }
    }

    // ---- signing ----

    /// The next nonce of `key`, counting what this block already handed out.
    fn next_nonce(&self, key: &PublicKey) -> u64 {
        self.nonces.get(key).copied().unwrap_or(0) + self.inflight.get(key).copied().unwrap_or(0)
    }

    /// Signs `body` with the signer's next nonce and queues it.
    fn push(&mut self, key: &SecretKey, body: TxBody, intent: impl Into<String>) {
        let nonce = self.next_nonce(&key.public());
        *self.inflight.entry(key.public()).or_insert(0) += 1;
        self.push_at(key, nonce, body, intent);
    }

    /// Signs `body` with a given nonce (which this block does not count as used) and queues it.
    fn push_at(&mut self, key: &SecretKey, nonce: u64, body: TxBody, intent: impl Into<String>) {
        let stx = Transaction { chain_id: CHAIN_ID.into(), signer: key.public(), nonce, body }.sign(key);
        self.queue(stx, intent);
    }

    fn queue(&mut self, stx: SignedTx, intent: impl Into<String>) {
        self.pending.insert(stx.id(), stx.clone());
        self.round.push((stx, intent.into()));
    }

    fn admin(&self, agency: usize) -> Key {
        self.admins[agency % AGENCIES].clone()
    }

    fn other_agency(&mut self, agency: usize) -> usize {
        (agency + 1 + self.rng.index(AGENCIES - 1)) % AGENCIES
    }

    /// Whether a clerk acts now for `kind`, as far as the simulation knows.
    fn clerk_acts(&self, c: &Clerk, kind: RecordKind) -> bool {
        match &c.grant {
            Some((_, kinds, exp)) => !c.revoked && kinds.contains(&kind) && exp.is_none_or(|e| self.time_ms < e),
            None => false,
        }
    }

    /// A key of `agency` to sign for `kind`: its admin, a clerk that acts for it, or sometimes
    /// any of its clerks (not granted, revoked, expired, or without the kind).
    fn signer_for(&mut self, agency: usize, kind: RecordKind) -> Key {
        // A signer with two candidates in this block already is passed over when another will do,
        // so that one refusal does not refuse a long tail of nonces after it.
        let mut key = self.any_signer_for(agency, kind);
        for _ in 0..3 {
            if self.inflight.get(&key.public()).copied().unwrap_or(0) < 2 {
                break;
            }
            key = self.any_signer_for(agency, kind);
        }
        key
    }

    fn any_signer_for(&mut self, agency: usize, kind: RecordKind) -> Key {
        if self.rng.chance(40) {
            return self.admin(agency);
        }
        let acting: Vec<Key> = self
            .clerks
            .iter()
            .filter(|c| c.grant.as_ref().is_some_and(|g| g.0 == agency) && self.clerk_acts(c, kind))
            .map(|c| c.key.clone())
            .collect();
        if !acting.is_empty() && self.rng.chance(88) {
            return acting[self.rng.index(acting.len())].clone();
        }
        if acting.is_empty() && self.rng.chance(60) {
            return self.admin(agency);
        }
        let c = self.some_clerk(agency);
        self.clerks[c].key.clone()
    }

    /// One of the clerks meant for `agency` (index into `clerks`).
    fn some_clerk(&mut self, agency: usize) -> usize {
        let own: Vec<usize> = (0..self.clerks.len()).filter(|&i| self.clerks[i].home == agency).collect();
        own[self.rng.index(own.len())]
    }

    fn some_clerk_key(&mut self, agency: usize) -> Key {
        let c = self.some_clerk(agency);
        self.clerks[c].key.clone()
    }

    /// A clerk of `agency` that was never revoked; a new key when it has none left.
    fn usable_clerk(&mut self, agency: usize) -> usize {
        let usable: Vec<usize> =
            (0..self.clerks.len()).filter(|&i| self.clerks[i].home == agency && !self.clerks[i].revoked).collect();
        if (usable.is_empty() || self.rng.chance(3)) && self.clerks.len() < MAX_CLERKS {
            let key = Arc::new(SecretKey::from_seed(&self.rng.bytes32()));
            self.clerks.push(Clerk { key, home: agency, grant: None, revoked: false });
            return self.clerks.len() - 1;
        }
        match usable.len() {
            0 => self.some_clerk(agency),
            n => usable[self.rng.index(n)],
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn doc(&mut self, what: &str) -> Fingerprint {
        let n = self.fresh_id();
        Fingerprint::of_bytes(format!("sabt-sim {} {what} {n}", self.seed).as_bytes())
    }

    // ---- the mix ----

    /// The first block: each admin grants two clerks, so clerks act from the second block on.
    fn bootstrap(&mut self) {
        for agency in 0..AGENCIES {
            for slot in 0..2 {
                let c = agency * CLERKS_PER_AGENCY + slot;
                let key = self.clerks[c].key.public();
                let mut kinds = vec![KINDS[self.rng.index(KINDS.len())]];
                if agency == LAND || self.rng.chance(50) {
                    kinds.push(RecordKind::LandProperty);
                }
                kinds.sort();
                kinds.dedup();
                let admin = self.admin(agency);
                self.push(&admin, TxBody::AuthorizeKey { key, kinds, expires_ms: None }, "grant/bootstrap");
            }
        }
    }

    /// One candidate (sometimes two, for in-block duplicates).
    fn one(&mut self) {
        match self.rng.below(100) {
            0..=10 => self.anchor(),
            11..=14 => self.anchor_duplicate(),
            15..=20 => self.anchor_batch(),
            21..=22 => self.batch_duplicate(),
            23..=27 => self.grant(),
            28..=30 => self.revoke(),
            31..=38 => self.status_change(false),
            39..=44 => self.status_change(true),
            45..=51 => self.register(),
            52..=56 => self.register_adversarial(),
            57..=60 => self.register_twin(),
            61..=64 => self.transfer(),
            65..=67 => self.correct_boundary(),
            68..=71 => self.encumber(),
            72..=75 => self.release(),
            76..=78 => self.split(),
            79..=82 => self.merge(),
            83..=84 => self.retire(),
            85..=87 => self.register_structure(),
            88..=89 => self.retire_structure(),
            90..=93 => self.replay(),
            94..=96 => self.wrong_nonce(),
            _ => self.misfit(),
        }
    }

    fn record(&mut self, kind: RecordKind, agency: usize) -> ArchiveRecord {
        let n = self.fresh_id();
        ArchiveRecord {
            fingerprint: Fingerprint::of_bytes(format!("sabt-sim {} document {n}", self.seed).as_bytes()),
            kind,
            reference: ReferenceCode {
                repository: "TJ-SIM".into(),
                fund: format!("{}", agency + 1),
                inventory: "1".into(),
                file: format!("{n}"),
                sheets: None,
            },
            creating_agency: format!("agency-{}", agency + 1),
            title: format!("Document {n}"),
            date_from: Some("1990-05-17".into()),
            date_to: None,
            access: AccessClass::Public,
        }
    }

    fn anchor(&mut self) {
        let agency = self.rng.index(AGENCIES);
        let kind = KINDS[self.rng.index(KINDS.len())];
        let signer = self.signer_for(agency, kind);
        let mut r = self.record(kind, agency);
        let intent = if self.rng.chance(6) {
            match self.rng.below(3) {
                0 => r.date_from = Some("1923-02-29".into()),
                1 => r.date_to = Some("1901".into()),
                _ => r.reference.repository = String::new(),
            }
            "anchor/bad_record"
        } else {
            "anchor"
        };
        self.push(&signer, TxBody::Anchor(r), intent);
    }

    fn anchor_duplicate(&mut self) {
        let agency = self.rng.index(AGENCIES);
        if self.records.is_empty() || self.rng.chance(20) {
            // The same new document anchored twice in one block, by two agencies.
            let kind = KINDS[self.rng.index(KINDS.len())];
            let r = self.record(kind, agency);
            let a = self.signer_for(agency, kind);
            self.push(&a, TxBody::Anchor(r.clone()), "anchor/twice_in_block");
            let other = self.other_agency(agency);
            let b = self.signer_for(other, kind);
            self.push(&b, TxBody::Anchor(r), "anchor/twice_in_block");
            return;
        }
        let known = self.records[self.rng.index(self.records.len())].rref.record.clone();
        let mut r = known.clone();
        let intent = match self.rng.below(4) {
            0 => "anchor/duplicate",
            1 => {
                r.fingerprint.blake3 = self.doc("blake3 twin").blake3;
                "anchor/same_sha256"
            }
            2 => {
                r.fingerprint.sha256 = self.doc("sha256 twin").sha256;
                "anchor/same_blake3"
            }
            _ => {
                r.title = format!("{} (copy)", r.title);
                "anchor/same_document_other_metadata"
            }
        };
        let signer = self.signer_for(agency, r.kind);
        self.push(&signer, TxBody::Anchor(r), intent);
    }

    fn anchor_batch(&mut self) {
        let agency = self.rng.index(AGENCIES);
        let kind = KINDS[self.rng.index(KINDS.len())];
        let signer = self.signer_for(agency, kind);
        if self.rng.chance(4) {
            let body = TxBody::AnchorBatch(BatchAnchor { root: self.doc("empty").sha256, size: 0, kind });
            return self.push(&signer, body, "batch/empty");
        }
        let size = if self.rng.chance(10) { 1 } else { 2 + self.rng.below(15) as usize };
        let mut records: Vec<ArchiveRecord> = (0..size).map(|_| self.record(kind, agency)).collect();
        // A document already anchored singly may also sit in a batch: an independent record.
        if self.rng.chance(20)
            && let Some(k) = self.records.iter().find(|k| k.rref.batch.is_none() && k.rref.record.kind == kind)
        {
            records[0] = k.rref.record.clone();
        }
        let mut tree = MemoryTree::<Blake3>::new();
        for r in &records {
            tree.push(&crate::codec::encode(r));
        }
        let real = tree.size();
        // Sometimes the anchor claims another size than the tree has: the chain cannot tell, and
        // every later reference to its records fails.
        let (claimed, intent) = if self.rng.chance(5) { (real + 1, "batch/wrong_size") } else { (real, "batch") };
        let mut leaves = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            let path = tree.inclusion_proof(i as u64, real).unwrap_or_default();
            leaves.push((r, BatchProof { index: i as u64, size: claimed, path }));
        }
        let root = tree.root();
        self.pending_batches.insert(root, leaves);
        self.push(&signer, TxBody::AnchorBatch(BatchAnchor { root, size: claimed, kind }), intent);
    }

    fn batch_duplicate(&mut self) {
        let Some(b) =
            (!self.batch_roots.is_empty()).then(|| self.batch_roots[self.rng.index(self.batch_roots.len())].clone())
        else {
            return self.anchor_batch();
        };
        let agency = self.rng.index(AGENCIES);
        let signer = self.signer_for(agency, b.kind);
        self.push(&signer, TxBody::AnchorBatch(b), "batch/duplicate_root");
    }

    fn kinds(&mut self, land: bool) -> Vec<RecordKind> {
        let mut kinds: Vec<RecordKind> = KINDS.iter().copied().filter(|_| self.rng.chance(40)).collect();
        if land {
            kinds.push(RecordKind::LandProperty);
        }
        if kinds.is_empty() {
            kinds.push(KINDS[self.rng.index(KINDS.len())]);
        }
        kinds.sort();
        kinds.dedup();
        kinds
    }

    fn grant(&mut self) {
        let agency = self.rng.index(AGENCIES);
        let admin = self.admin(agency);
        let land = agency == LAND && self.rng.chance(60);
        let mut kinds = self.kinds(land);
        let expires_ms = match self.rng.below(10) {
            0..=5 => None,
            6..=8 => Some(self.time_ms + 1000 * (1 + self.rng.below(20))),
            _ => Some(self.time_ms.saturating_sub(1)),
        };
        let (key, signer, intent) = match self.rng.below(20) {
            0..=11 => {
                let c = self.usable_clerk(agency);
                (self.clerks[c].key.public(), admin, "grant/own_clerk")
            }
            12..=14 => {
                let other = self.other_agency(agency);
                let c = self.some_clerk(other);
                (self.clerks[c].key.public(), admin, "grant/other_agency_clerk")
            }
            15..=16 => {
                let other = self.rng.index(AGENCIES);
                (self.admins[other].public(), admin, "grant/admin_key")
            }
            17 => {
                let c = self.some_clerk(agency);
                let clerk = self.clerks[(c + 1) % self.clerks.len()].key.clone();
                (self.clerks[c].key.public(), clerk, "grant/by_clerk")
            }
            18 => {
                let c = self.some_clerk(agency);
                if kinds.len() > 1 {
                    kinds.reverse();
                } else {
                    kinds.clear();
                }
                (self.clerks[c].key.public(), admin, "grant/bad_kinds")
            }
            _ => {
                let revoked: Vec<PublicKey> =
                    self.clerks.iter().filter(|c| c.revoked).map(|c| c.key.public()).collect();
                match revoked.len() {
                    0 => (self.some_clerk_key(agency).public(), admin, "grant/own_clerk"),
                    n => (revoked[self.rng.index(n)], admin, "grant/revoked_key"),
                }
            }
        };
        self.push(&signer, TxBody::AuthorizeKey { key, kinds, expires_ms }, intent);
    }

    fn revoke(&mut self) {
        let agency = self.rng.index(AGENCIES);
        let admin = self.admin(agency);
        let granted = |s: &Simulation, by: Option<usize>, revoked: bool| -> Vec<PublicKey> {
            s.clerks
                .iter()
                .filter(|c| c.grant.as_ref().is_some_and(|g| by.is_none_or(|a| g.0 == a)) && c.revoked == revoked)
                .map(|c| c.key.public())
                .collect()
        };
        let (keys, intent) = match self.rng.below(10) {
            0..=5 => (granted(self, Some(agency), false), "revoke/own_clerk"),
            6..=7 => {
                let other = self.other_agency(agency);
                (granted(self, Some(other), false), "revoke/other_agency_clerk")
            }
            8 => (granted(self, None, true), "revoke/already_revoked"),
            _ => {
                let never: Vec<PublicKey> =
                    self.clerks.iter().filter(|c| c.grant.is_none()).map(|c| c.key.public()).collect();
                (never, "revoke/never_granted")
            }
        };
        let key = match keys.len() {
            0 => self.stranger.public(),
            n => keys[self.rng.index(n)],
        };
        let signer = if self.rng.chance(5) { self.some_clerk_key(agency) } else { admin };
        self.push(&signer, TxBody::RevokeKey { key }, intent);
    }

    /// A withdrawal (`supersede` false) or supersession of a known record, by its own agency or
    /// another, by a correct or a damaged reference.
    fn status_change(&mut self, supersede: bool) {
        if self.records.is_empty() {
            return self.anchor();
        }
        // Prefer current records, so that the correct reference often succeeds.
        let mut i = self.rng.index(self.records.len());
        if !self.records[i].current && self.rng.chance(70) {
            i = self.rng.index(self.records.len());
        }
        let known = self.records[i].clone();
        let mut target = known.rref.clone();
        let intent = match self.rng.below(20) {
            0..=10 => "correct_ref",
            11 => {
                target.entry += 1;
                "wrong_entry"
            }
            12 => {
                target.entry = target.entry.saturating_sub(1 + self.rng.below(3));
                "wrong_entry"
            }
            13 => {
                target.entry += 1_000_000;
                "entry_beyond_log"
            }
            14 => match &mut target.batch {
                Some(p) => {
                    p.index = (p.index + 1) % p.size.max(2);
                    "wrong_leaf"
                }
                None => {
                    target.batch = Some(BatchProof { index: 0, size: 1, path: vec![] });
                    "path_for_single"
                }
            },
            15 => match &mut target.batch {
                Some(p) => {
                    match p.path.first_mut() {
                        Some(h) => h.0[self.rng.index(32)] ^= 1 << self.rng.below(8),
                        None => p.path.push(Hash32([7; 32])),
                    }
                    "tampered_path"
                }
                None => {
                    target.record.fingerprint.blake3.0[0] ^= 1;
                    "tampered_record"
                }
            },
            16 => match target.batch.take() {
                Some(_) => "no_path_for_batched",
                None => {
                    target.batch = Some(BatchProof { index: 0, size: 2, path: vec![Hash32([3; 32])] });
                    "path_for_single"
                }
            },
            17 => {
                target.record.title = format!("{} (edited)", target.record.title);
                "tampered_record"
            }
            18 => {
                target.batch = Some(BatchProof { index: 0, size: 1 << 40, path: vec![Hash32([1; 32]); 65] });
                "path_too_long"
            }
            _ => {
                // Another known record's entry with this record.
                let j = self.rng.index(self.records.len());
                target.entry = self.records[j].rref.entry;
                "wrong_entry"
            }
        };
        let agency = if self.rng.chance(65) { known.agency } else { self.other_agency(known.agency) };
        let mut kind = target.record.kind;
        let (op, body) = if supersede {
            if self.rng.chance(25) {
                kind = KINDS[self.rng.index(KINDS.len())];
            }
            let mut record = self.record(kind, agency);
            let new = match self.rng.below(10) {
                0..=7 => "new",
                8 => {
                    record.fingerprint = target.record.fingerprint;
                    "new_is_target"
                }
                _ => {
                    let j = self.rng.index(self.records.len());
                    record.fingerprint = self.records[j].rref.record.fingerprint;
                    "new_already_anchored"
                }
            };
            (format!("supersede/{new}"), TxBody::Supersede { target, record, reason: "corrected copy".into() })
        } else {
            let reason = if self.rng.chance(3) { String::new() } else { "entered in error".into() };
            ("withdraw".to_string(), TxBody::Withdraw { target, reason })
        };
        let signer = self.signer_for(agency, kind);
        let who = if agency == known.agency { "own" } else { "other_agency" };
        let batched = if known.rref.batch.is_some() { "batched" } else { "single" };
        self.push(&signer, body, format!("{op}/{who}/{batched}/{intent}"));
    }

    // ---- land ----

    /// A key to sign a land operation: mostly the land agency's admin or land clerks.
    fn land_signer(&mut self) -> Key {
        match self.rng.below(20) {
            0 => {
                let other = 1 + self.rng.index(AGENCIES - 1);
                self.admin(other)
            }
            1 => self.some_clerk_key(LAND),
            _ => self.signer_for(LAND, RecordKind::LandProperty),
        }
    }

    fn cadastral(&mut self) -> String {
        format!("01:{:07}", self.fresh_id())
    }

    fn parcel(&mut self, cadastral: String, geometry: Polygon) -> Parcel {
        let category = [LandCategory::Settlement, LandCategory::Agricultural][self.rng.index(2)];
        Parcel { cadastral, category, permitted_use: "individual housing".into(), geometry }
    }

    fn party(&self, n: u64) -> Hash32 {
        land::party_hash(b"sabt-sim salt", &format!("TJ-{n}"))
    }

    fn holders(&self, shares: &[(u64, u64, u64)]) -> Vec<Holding> {
        let mut holders: Vec<Holding> =
            shares.iter().map(|&(p, num, den)| Holding { party: self.party(p), share: Share { num, den } }).collect();
        holders.sort_by_key(|h| h.party);
        holders
    }

    /// A use right: mostly one of three sole holders (so neighbours often match), sometimes
    /// shared, sometimes with extreme or invalid shares or dates.
    fn right(&mut self) -> (Right, &'static str) {
        let sole = self.rng.below(3);
        let mut right = Right {
            kind: RightKind::LifelongInheritableUse,
            holders: self.holders(&[(sole, 1, 1)]),
            start: "2026-01-15".into(),
            end: None,
        };
        let max = u64::MAX;
        let intent = match self.rng.below(100) {
            0..=69 => "",
            70..=79 => {
                let n = 2 + self.rng.below(3);
                let shares: Vec<(u64, u64, u64)> = (0..n).map(|i| (10 + i, 1, n)).collect();
                right.holders = self.holders(&shares);
                "shares"
            }
            80..=84 => {
                right.holders = self.holders(&[(20, max - 1, max), (21, 1, max)]);
                "shares/u64_max"
            }
            85..=89 => {
                let (p1, p2, p3) = (max - 58, max - 82, max - 94);
                right.holders = self.holders(&[(30, 1, p1), (31, 1, p2), (32, 1, p3)]);
                "shares/overflow"
            }
            90..=92 => {
                right.holders = self.holders(&[(40, 1, 2), (41, 1, 3)]);
                "shares/not_one"
            }
            93..=95 => {
                right.kind = RightKind::Lease;
                right.end = Some("2036-01-15".into());
                "lease"
            }
            96..=97 => {
                right.kind = RightKind::FixedTermUse;
                "right/no_end"
            }
            _ => {
                right.holders = self.holders(&[(50, 1, 2), (50, 1, 2)]);
                "shares/same_party_twice"
            }
        };
        (right, intent)
    }

    fn register_body(&mut self, cadastral: String, geometry: Polygon, right: Right) -> TxBody {
        let parcel = self.parcel(cadastral, geometry);
        let source = self.doc("land act");
        TxBody::Land(LandOp::Register { parcel, right, source })
    }

    /// The origin of a fresh site (sites wrap around after `SITES_PER_ROW²`).
    fn site(&mut self) -> (i64, i64) {
        let s = self.next_site % (SITES_PER_ROW * SITES_PER_ROW);
        self.next_site += 1;
        (BASE.0 + (s % SITES_PER_ROW) as i64 * SITE_MM, BASE.1 + (s / SITES_PER_ROW) as i64 * SITE_MM)
    }

    fn live(&self) -> Vec<String> {
        self.parcels.iter().filter(|(_, p)| p.live).map(|(c, _)| c.clone()).collect()
    }

    fn pick_live(&mut self) -> Option<String> {
        let live = self.live();
        (!live.is_empty()).then(|| live[self.rng.index(live.len())].clone())
    }

    fn live_rects(&self) -> Vec<(String, Rect)> {
        self.parcels
            .iter()
            .filter(|(_, p)| p.live)
            .filter_map(|(c, p)| Some((c.clone(), as_rect(&p.geometry)?)))
            .collect()
    }

    /// A cadastral number to operate on: mostly a live parcel, sometimes a retired or unknown one.
    fn target_parcel(&mut self) -> (String, &'static str) {
        match self.rng.below(20) {
            0 => (self.cadastral(), "unknown_parcel"),
            1 => {
                let retired: Vec<String> =
                    self.parcels.iter().filter(|(_, p)| !p.live).map(|(c, _)| c.clone()).collect();
                match retired.len() {
                    0 => (self.cadastral(), "unknown_parcel"),
                    n => (retired[self.rng.index(n)].clone(), "retired_parcel"),
                }
            }
            _ => match self.pick_live() {
                Some(c) => (c, "live_parcel"),
                None => (self.cadastral(), "unknown_parcel"),
            },
        }
    }

    fn register(&mut self) {
        let (x, y) = self.site();
        let (ox, oy) = (self.rng.range(0, 100_000), self.rng.range(0, 100_000));
        let (w, h) = (self.rng.range(10_000, 400_000), self.rng.range(10_000, 400_000));
        let (right, shares) = self.right();
        let (cadastral, intent) = match self.rng.below(40) {
            0 => {
                let known: Vec<String> = self.parcels.keys().cloned().collect();
                match known.len() {
                    0 => (self.cadastral(), "register"),
                    n => (known[self.rng.index(n)].clone(), "register/existing_number"),
                }
            }
            1 => ("01 01".to_string(), "register/bad_number"),
            _ => (self.cadastral(), if shares.is_empty() { "register" } else { "register/right" }),
        };
        let body = self.register_body(cadastral, rect(x + ox, y + oy, x + ox + w, y + oy + h), right);
        let signer = self.land_signer();
        self.push(&signer, body, intent);
    }

    /// A parcel east of a live rectangle, sharing its whole east edge and its right: a merge
    /// candidate.
    fn register_twin(&mut self) {
        let rects = self.live_rects();
        if rects.is_empty() {
            return self.register();
        }
        let (c, (_, y0, x1, y1)) = rects[self.rng.index(rects.len())].clone();
        let right = match self.parcels.get(&c) {
            Some(p) => p.right.clone(),
            None => return self.register(),
        };
        let w = self.rng.range(1_000, 300_000);
        let cadastral = self.cadastral();
        let body = self.register_body(cadastral, rect(x1, y0, x1 + w, y1), right);
        let signer = self.land_signer();
        self.push(&signer, body, "register/twin");
    }

    /// A registration with adversarial geometry.
    fn register_adversarial(&mut self) {
        let cadastral = self.cadastral();
        let right = if self.rng.chance(80) {
            Right {
                kind: RightKind::PerpetualUse,
                holders: self.holders(&[(1, 1, 1)]),
                start: "2026-02-01".into(),
                end: None,
            }
        } else {
            self.right().0
        };
        let rects = self.live_rects();
        let near = (!rects.is_empty()).then(|| rects[self.rng.index(rects.len())].1);
        let (geometry, intent) = match (self.rng.below(22), near) {
            (0..=1, Some((x0, y0, x1, y1))) => {
                // Shifted into a live parcel.
                let (dx, dy) = (self.rng.range(1, (x1 - x0).max(1)), self.rng.range(-(y1 - y0) / 2, (y1 - y0) / 2));
                (rect(x0 + dx, y0 + dy, x1 + dx, y1 + dy), "geometry/overlap")
            }
            (2..=3, Some((_, y0, x1, y1))) => {
                // A strip 1 mm into the neighbour's east edge: within the tolerance when at most
                // 10 m long, beyond it when longer.
                let len = self.rng.range(TOLERANCE_MM2 - 2_000, TOLERANCE_MM2 + 2_000).min(y1 - y0);
                let ymid = y0 + (y1 - y0 - len) / 2;
                (rect(x1 - 1, ymid, x1 + 50_000, ymid + len), "geometry/overlap_at_tolerance")
            }
            (4, Some((_, y0, x1, _))) => {
                let h = self.rng.range(1, 200_000);
                (rect(x1, y0, x1 + self.rng.range(1, 200_000), y0 + h), "geometry/shared_edge")
            }
            (5, Some((_, _, x1, y1))) => {
                (rect(x1, y1, x1 + self.rng.range(1, 100_000), y1 + self.rng.range(1, 100_000)), "geometry/corner")
            }
            (6..=7, _) => {
                let (x, y) = self.site();
                let len = self.rng.range(1_000, 3_000_000);
                if self.rng.chance(50) {
                    (rect(x, y, x + 1, y + len), "geometry/sliver")
                } else {
                    (rect(x, y, x + len, y + 1), "geometry/sliver")
                }
            }
            (8..=9, _) => {
                let (x, y) = self.site();
                let (x1, y1) = (x + 100_000, y + 100_000);
                let ym = y + 50_000;
                let spike = self.rng.range(1_000, 1_500_000);
                let p = Point::new;
                let exterior = vec![
                    p(x, y),
                    p(x1, y),
                    p(x1, ym - 1),
                    p(x1 + spike, ym),
                    p(x1, ym + 1),
                    p(x1, y1),
                    p(x, y1),
                    p(x, y),
                ];
                (Polygon { exterior, holes: vec![] }, "geometry/spike")
            }
            (10, _) => {
                let (x, y) = self.site();
                let p = Point::new;
                let hole = vec![
                    p(x + 100_000, y + 100_000),
                    p(x + 100_000, y + 200_000),
                    p(x + 200_000, y + 200_000),
                    p(x + 200_000, y + 100_000),
                    p(x + 100_000, y + 100_000),
                ];
                (
                    Polygon { exterior: rect(x, y, x + 300_000, y + 300_000).exterior, holes: vec![hole] },
                    "geometry/donut",
                )
            }
            (11, _) => {
                // Inside a live parcel's hole, or across its ring.
                let holed = self
                    .parcels
                    .values()
                    .filter(|p| p.live && !p.geometry.holes.is_empty())
                    .map(|p| p.geometry.holes[0][0])
                    .next();
                match holed {
                    Some(h) if self.rng.chance(70) => {
                        (rect(h.x + 10_000, h.y + 10_000, h.x + 90_000, h.y + 90_000), "geometry/in_hole")
                    }
                    Some(h) => (rect(h.x - 5_000, h.y + 10_000, h.x + 90_000, h.y + 90_000), "geometry/across_ring"),
                    None => {
                        let (x, y) = self.site();
                        (rect(x, y, x + 50_000, y + 50_000), "register")
                    }
                }
            }
            (12..=13, _) => self.huge(),
            (14..=15, _) => {
                let step = 1_000;
                match self.last_saw {
                    // On top of the last one: its teeth bite into the new one's flat bottom, or
                    // only their tips touch it.
                    Some((x, y, points)) if self.rng.chance(40) => {
                        self.last_saw = None;
                        if self.rng.chance(50) {
                            (sawtooth(x, y + 20 * step, points, step), "geometry/many_vertices_overlapping")
                        } else {
                            (sawtooth(x, y + 20 * step + step / 2, points, step), "geometry/many_vertices_touching")
                        }
                    }
                    _ => {
                        let (x, y) = self.site();
                        let points = match self.rng.below(40) {
                            0 => MAX_VERTICES,
                            1..=2 => MAX_VERTICES + 1,
                            _ => 5 + self.rng.index(300),
                        };
                        if points > MAX_VERTICES {
                            (sawtooth(x, y, points, step), "geometry/too_many_vertices")
                        } else {
                            self.last_saw = Some((x, y, points));
                            (sawtooth(x, y, points, step), "geometry/many_vertices")
                        }
                    }
                }
            }
            _ => self.invalid_geometry(),
        };
        let body = self.register_body(cadastral, geometry, right);
        let signer = self.land_signer();
        self.push(&signer, body, intent);
    }

    /// A box at or just over the grid-cell limit, in the far region.
    fn huge(&mut self) -> (Polygon, &'static str) {
        let cell = CELL_MM;
        let (ax, ay) = (FAR.0 - FAR.0.rem_euclid(cell), FAR.1 - FAR.1.rem_euclid(cell));
        let side = LIMIT_SIDE_CELLS * cell;
        match self.rng.below(6) {
            // Exactly the limit (once per run: 10,000 index cells are written).
            0 if !self.huge_accepted => {
                self.huge_accepted = true;
                (rect(ax, ay, ax + side - 1, ay + side - 1), "geometry/at_cell_limit")
            }
            0 | 1 => (rect(ax, ay, ax + side, ay + side - 1), "geometry/over_cell_limit"),
            2 => {
                // Smaller than the limit's side but straddling one more cell on each axis.
                (rect(ax + cell / 2, ay + cell / 2, ax + side, ay + side), "geometry/over_cell_limit_unaligned")
            }
            3 => (rect(ax, ay, ax + 1, ay + 10_001 * cell), "geometry/over_cell_limit_sliver"),
            4 => (rect(-MAX_COORD_MM, -MAX_COORD_MM, MAX_COORD_MM, MAX_COORD_MM), "geometry/whole_plane"),
            _ => (rect(ax, ay, ax + side * 10, ay + 1), "geometry/over_cell_limit_sliver"),
        }
    }

    fn invalid_geometry(&mut self) -> (Polygon, &'static str) {
        let (x, y) = self.site();
        let p = Point::new;
        let r = rect(x, y, x + 50_000, y + 50_000);
        match self.rng.below(8) {
            0 => {
                let e = vec![p(x, y), p(x + 9_000, y + 9_000), p(x + 9_000, y), p(x, y + 9_000), p(x, y)];
                (Polygon { exterior: e, holes: vec![] }, "geometry/bow_tie")
            }
            1 => {
                let mut g = r;
                g.exterior.reverse();
                (g, "geometry/clockwise")
            }
            2 => {
                let mut g = r;
                g.exterior.insert(2, g.exterior[1]);
                (g, "geometry/repeated_vertex")
            }
            3 => {
                let mut g = r;
                g.exterior.pop();
                (g, "geometry/not_closed")
            }
            4 => (Polygon { exterior: vec![p(x, y), p(x + 10, y), p(x, y)], holes: vec![] }, "geometry/too_few_points"),
            5 => (rect(x, y, MAX_COORD_MM + 1, y + 10), "geometry/out_of_range"),
            6 => (
                Polygon { exterior: vec![p(x, y), p(x + 10, y), p(x + 20, y), p(x, y)], holes: vec![] },
                "geometry/zero_area",
            ),
            _ => {
                let hole = vec![
                    p(x + 60_000, y),
                    p(x + 60_000, y + 10_000),
                    p(x + 70_000, y + 10_000),
                    p(x + 70_000, y),
                    p(x + 60_000, y),
                ];
                (Polygon { exterior: r.exterior, holes: vec![hole] }, "geometry/hole_outside")
            }
        }
    }

    fn transfer(&mut self) {
        let (cadastral, _) = self.target_parcel();
        let (right, _) = self.right();
        let belief = self.parcels.get(&cadastral).cloned();
        let mut consents = Vec::new();
        let mut intent = "transfer";
        if let Some(b) = &belief {
            for r in &b.restrictions {
                let Some(key) = r.consent_key.and_then(|k| self.key_for(&r.source.sha256, &k)) else { continue };
                let message = land::transfer_consent_bytes(CHAIN_ID, &cadastral, b.version, &right);
                match self.rng.below(10) {
                    0..=5 => consents.push(key.sign(sign::LAND_CONSENT, &message)),
                    6..=7 => intent = "transfer/consent_missing",
                    8 => {
                        let stale = land::transfer_consent_bytes(CHAIN_ID, &cadastral, b.version + 1, &right);
                        consents.push(key.sign(sign::LAND_CONSENT, &stale));
                        intent = "transfer/consent_other_version";
                    }
                    _ => {
                        consents.push(key.sign(sign::LAND_RELEASE, &message));
                        intent = "transfer/consent_wrong_context";
                    }
                }
            }
        }
        match self.rng.below(100) {
            0..=1 => {
                consents = vec![sign::Signature([0; 64]); land::MAX_RESTRICTIONS + 1];
                intent = "transfer/too_many_consents";
            }
            // Past the transaction size limit (256 KiB): refused before its signature is checked.
            2 => {
                consents = vec![sign::Signature([0; 64]); 4_200];
                intent = "transfer/too_large";
            }
            _ => {}
        }
        let source = self.doc("contract");
        let signer = self.land_signer();
        self.push(&signer, TxBody::Land(LandOp::Transfer { cadastral, right, source, consents }), intent);
    }

    /// The secret key behind a restriction's consent key, if the simulation made it.
    fn key_for(&self, source: &Hash32, public: &PublicKey) -> Option<Key> {
        self.consent_keys.get(source).filter(|k| k.public() == *public).cloned()
    }

    fn correct_boundary(&mut self) {
        let (cadastral, _) = self.target_parcel();
        let current = self.parcels.get(&cadastral).and_then(|p| as_rect(&p.geometry));
        let (geometry, intent) = match (self.rng.below(10), current) {
            (0..=3, Some((x0, y0, x1, y1))) => {
                let (w, h) = ((x1 - x0) / 4, (y1 - y0) / 4);
                (rect(x0, y0, x1 - w, y1 - h), "correct/shrink")
            }
            (4..=5, Some((x0, y0, x1, y1))) => (rect(x0, y0, x1 + self.rng.range(1, 600_000), y1), "correct/grow_east"),
            (6, Some((x0, y0, x1, y1))) => (rect(x0, y0, x1, y1), "correct/same"),
            (7, _) => {
                let (g, _) = self.huge();
                (g, "correct/over_cell_limit")
            }
            (8, _) => {
                let (g, _) = self.invalid_geometry();
                (g, "correct/invalid")
            }
            _ => {
                let (x, y) = self.site();
                (rect(x, y, x + self.rng.range(1_000, 300_000), y + self.rng.range(1_000, 300_000)), "correct/move")
            }
        };
        let source = self.doc("survey");
        let signer = self.land_signer();
        self.push(&signer, TxBody::Land(LandOp::CorrectBoundary { cadastral, geometry, source }), intent);
    }

    fn encumber(&mut self) {
        let (cadastral, _) = self.target_parcel();
        let kind = if self.rng.chance(60) { RestrictionKind::Mortgage } else { RestrictionKind::Arrest };
        let key = Arc::new(SecretKey::from_seed(&self.rng.bytes32()));
        let mut source = self.doc("restriction");
        let mut intent = "encumber";
        if self.rng.chance(8)
            && let Some(r) = self.parcels.get(&cadastral).and_then(|p| p.restrictions.first())
        {
            source = r.source;
            intent = "encumber/same_source";
        }
        let consent_key = if self.rng.chance(6) {
            intent = "encumber/no_key";
            None
        } else {
            Some(key.public())
        };
        self.consent_keys.entry(source.sha256).or_insert(key);
        let start = if self.rng.chance(2) { "2026-02-30" } else { "2026-03-01" };
        let restriction = Restriction { kind, beneficiary: self.party(99), consent_key, start: start.into(), source };
        let signer = self.land_signer();
        self.push(&signer, TxBody::Land(LandOp::Encumber { cadastral, restriction }), intent);
    }

    fn release(&mut self) {
        let encumbered: Vec<String> =
            self.parcels.iter().filter(|(_, p)| !p.restrictions.is_empty()).map(|(c, _)| c.clone()).collect();
        let (cadastral, belief) = match encumbered.len() {
            0 => {
                let (c, _) = self.target_parcel();
                let b = self.parcels.get(&c).cloned();
                (c, b)
            }
            n => {
                let c = encumbered[self.rng.index(n)].clone();
                let b = self.parcels.get(&c).cloned();
                (c, b)
            }
        };
        let version = belief.as_ref().map_or(1, |b| b.version);
        let standing = belief.clone().and_then(|b| {
            let n = b.restrictions.len();
            (n > 0).then(|| b.restrictions[self.rng.index(n)].clone())
        });
        let source = self.doc("release");
        let (restriction, key, mut intent) = match &standing {
            Some(r) => {
                let key = r.consent_key.and_then(|k| self.key_for(&r.source.sha256, &k));
                (r.source, key, "release")
            }
            None => (self.doc("no such restriction"), None, "release/no_such_restriction"),
        };
        let key = key.unwrap_or_else(|| self.stranger.clone());
        let message = land::release_consent_bytes(CHAIN_ID, &cadastral, version, &restriction, &source);
        let consent = match self.rng.below(20) {
            0..=11 => key.sign(sign::LAND_RELEASE, &message),
            12..=13 => {
                intent = "release/wrong_key";
                let signer = self.some_clerk_key(LAND);
                signer.sign(sign::LAND_RELEASE, &message)
            }
            14..=15 => {
                intent = "release/stale_version";
                let stale =
                    land::release_consent_bytes(CHAIN_ID, &cadastral, version.saturating_sub(1), &restriction, &source);
                key.sign(sign::LAND_RELEASE, &stale)
            }
            16..=17 => {
                intent = "release/wrong_context";
                key.sign(sign::LAND_CONSENT, &message)
            }
            _ => {
                intent = "release/other_document";
                let other = self.doc("other release");
                key.sign(
                    sign::LAND_RELEASE,
                    &land::release_consent_bytes(CHAIN_ID, &cadastral, version, &restriction, &other),
                )
            }
        };
        let signer = self.land_signer();
        self.push(&signer, TxBody::Land(LandOp::Release { cadastral, restriction, source, consent }), intent);
    }

    fn split(&mut self) {
        let rects = self.live_rects();
        let (cadastral, geometry) = if !rects.is_empty() && self.rng.chance(85) {
            let (c, (x0, y0, x1, y1)) = rects[self.rng.index(rects.len())].clone();
            (c, (x0, y0, x1, y1))
        } else {
            let (c, _) = self.target_parcel();
            let g = self.parcels.get(&c).map(|p| p.geometry.bbox()).map(|b| (b.min.x, b.min.y, b.max.x, b.max.y));
            (c, g.unwrap_or((BASE.0, BASE.1, BASE.0 + 10_000, BASE.1 + 10_000)))
        };
        let (x0, y0, x1, y1) = geometry;
        let along_x = x1 - x0 >= y1 - y0;
        let len = if along_x { x1 - x0 } else { y1 - y0 };
        let k = 2 + self.rng.below(3) as i64;
        let mut parts: Vec<(i64, i64)> = (0..k).map(|i| (i * len / k, (i + 1) * len / k)).collect();
        let mut intent = "split";
        match self.rng.below(20) {
            0..=1 => {
                parts[1].0 += self.rng.range(1, 3);
                intent = "split/gap";
            }
            2..=3 => {
                parts[1].0 -= self.rng.range(1, 2_000);
                intent = "split/children_overlap";
            }
            4 => {
                if let Some(last) = parts.last_mut() {
                    last.1 += self.rng.range(1, 20_000);
                }
                intent = "split/child_outside";
            }
            _ => {}
        }
        let mut children = Vec::new();
        for (a, b) in parts {
            let b = b.max(a + 1);
            let g = if along_x { rect(x0 + a, y0, x0 + b, y1) } else { rect(x0, y0 + a, x1, y0 + b) };
            let c = self.cadastral();
            children.push(self.parcel(c, g));
        }
        match self.rng.below(20) {
            0 => {
                if let Some(c) = self.parcels.keys().next().cloned() {
                    children[0].cadastral = c;
                    children.sort_by(|a, b| a.cadastral.cmp(&b.cadastral));
                    intent = "split/existing_number";
                }
            }
            1 => {
                children.reverse();
                intent = "split/unsorted";
            }
            2 => {
                children.truncate(1);
                intent = "split/one_child";
            }
            _ => {}
        }
        let source = self.doc("split act");
        let signer = self.land_signer();
        self.push(&signer, TxBody::Land(LandOp::Split { cadastral, children, source }), intent);
    }

    fn merge(&mut self) {
        let rects = self.live_rects();
        // Pairs sharing a whole vertical or horizontal edge.
        let by_corner: BTreeMap<(i64, i64), (String, Rect)> =
            rects.iter().map(|(c, r)| ((r.0, r.1), (c.clone(), *r))).collect();
        let mut pairs = Vec::new();
        for (c, r) in &rects {
            if let Some((d, s)) = by_corner.get(&(r.2, r.1))
                && s.3 == r.3
            {
                pairs.push((c.clone(), d.clone(), (r.0, r.1, s.2, r.3)));
            }
            if let Some((d, s)) = by_corner.get(&(r.0, r.3))
                && s.2 == r.2
            {
                pairs.push((c.clone(), d.clone(), (r.0, r.1, r.2, s.3)));
            }
        }
        let (mut parents, union, mut intent) = if !pairs.is_empty() && self.rng.chance(85) {
            let (a, b, u) = pairs[self.rng.index(pairs.len())].clone();
            (vec![a, b], u, "merge")
        } else if rects.len() >= 2 {
            let (a, ra) = rects[self.rng.index(rects.len())].clone();
            let (b, rb) = rects[self.rng.index(rects.len())].clone();
            let u = (ra.0.min(rb.0), ra.1.min(rb.1), ra.2.max(rb.2), ra.3.max(rb.3));
            (vec![a, b], u, "merge/not_adjacent")
        } else {
            return self.register_twin();
        };
        parents.sort();
        let (x0, y0, mut x1, y1) = union;
        match self.rng.below(20) {
            0..=1 => {
                x1 -= self.rng.range(1, 3_000);
                intent = "merge/short";
            }
            2 => {
                x1 += self.rng.range(1, 3_000);
                intent = "merge/extra";
            }
            3 => {
                parents.reverse();
                intent = "merge/unsorted";
            }
            _ => {}
        }
        let cadastral = if self.rng.chance(5) {
            intent = "merge/existing_number";
            parents[0].clone()
        } else {
            self.cadastral()
        };
        let parcel = self.parcel(cadastral, rect(x0, y0, x1.max(x0 + 1), y1));
        let source = self.doc("merge act");
        let signer = self.land_signer();
        self.push(&signer, TxBody::Land(LandOp::Merge { parents, parcel, source }), intent);
    }

    fn retire(&mut self) {
        let (cadastral, intent) = self.target_parcel();
        let intent = if intent == "live_parcel" { "retire" } else { "retire/not_live" };
        let source = self.doc("retirement order");
        let signer = self.land_signer();
        self.push(&signer, TxBody::Land(LandOp::Retire { cadastral, source }), intent);
    }

    fn register_structure(&mut self) {
        let rects = self.live_rects();
        let n = self.fresh_id();
        let source = self.doc("permit");
        let (mut structure, mut intent) = if self.rng.chance(65) && !rects.is_empty() {
            let (c, (x0, y0, x1, y1)) = rects[self.rng.index(rects.len())].clone();
            let (w, h) = ((x1 - x0) / 4, (y1 - y0) / 4);
            let (footprint, intent) = if self.rng.chance(20) || w == 0 || h == 0 {
                (rect(x1 - w.max(1), y0 + h, x1 + w.max(1) + 20_000, y1 - h), "structure/off_parcel")
            } else {
                (rect(x0 + w, y0 + h, x1 - w, y1 - h), "structure/building")
            };
            let (footprint, intent) = if self.rng.chance(4) {
                (rect(-MAX_COORD_MM, -MAX_COORD_MM, MAX_COORD_MM, MAX_COORD_MM), "structure/whole_plane_footprint")
            } else {
                (footprint, intent)
            };
            let mut parcels = vec![c];
            let intent = match self.rng.below(20) {
                0 => {
                    parcels.push("01:9999999".into());
                    "structure/unknown_parcel"
                }
                1 => {
                    parcels.clear();
                    "structure/no_parcels"
                }
                _ => intent,
            };
            let s = Structure {
                id: format!("B:{n:07}"),
                kind: StructureKind::Building,
                parcels,
                footprint: Some(footprint),
                line: None,
                description: "two-storey house".into(),
            };
            (s, intent)
        } else {
            let (x, y) = self.site();
            let points = 2 + self.rng.index(40);
            let mut line: Vec<Point> =
                (0..points as i64).map(|i| Point::new(x + i * 10_000, y + (i % 3) * 5_000)).collect();
            let mut intent = "structure/road";
            if self.rng.chance(10) {
                line.push(line[line.len() - 1]);
                intent = "structure/road_repeated_vertex";
            }
            let parcels = self.pick_live().into_iter().collect();
            let s = Structure {
                id: format!("R:{n:07}"),
                kind: StructureKind::Road,
                parcels,
                footprint: None,
                line: Some(line),
                description: "district road".into(),
            };
            (s, intent)
        };
        if self.rng.chance(5)
            && let Some(id) = self.structures.keys().next().cloned()
        {
            structure.id = id;
            intent = "structure/existing_id";
        }
        let signer = self.land_signer();
        self.push(&signer, TxBody::Land(LandOp::RegisterStructure { structure, source }), intent);
    }

    fn retire_structure(&mut self) {
        let ids: Vec<(String, bool)> = self.structures.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let (id, intent) = match (ids.len(), self.rng.chance(15)) {
            (0, _) | (_, true) => (format!("B:{:07}", self.fresh_id()), "retire_structure/unknown"),
            (n, false) => {
                let (id, live) = ids[self.rng.index(n)].clone();
                (id, if live { "retire_structure" } else { "retire_structure/retired" })
            }
        };
        let source = self.doc("demolition act");
        let signer = self.land_signer();
        self.push(&signer, TxBody::Land(LandOp::RetireStructure { id, source }), intent);
    }

    /// More valid candidates than one block holds (roads of the most vertices, about 40 KB
    /// each): the proposer fills the block to its size limit and leaves the rest out.
    fn flood(&mut self) {
        let admin = self.admin(LAND);
        let (x, y) = self.site();
        for i in 0..110 {
            let n = self.fresh_id();
            let line = (0..MAX_VERTICES as i64).map(|j| Point::new(x + j * 100 + i, y + (j % 2) * 100)).collect();
            let structure = Structure {
                id: format!("R:{n:07}"),
                kind: StructureKind::Road,
                parcels: Vec::new(),
                footprint: None,
                line: Some(line),
                description: "irrigation canal".into(),
            };
            let source = self.doc("acceptance act");
            self.push(&admin, TxBody::Land(LandOp::RegisterStructure { structure, source }), "flood/road");
        }
    }

    // ---- replays and misfits ----

    fn replay(&mut self) {
        if !self.round.is_empty() && self.rng.chance(20) {
            let stx = self.round[self.rng.index(self.round.len())].0.clone();
            return self.queue(stx, "replay/same_block");
        }
        match self.replays.len() {
            0 => self.anchor(),
            n => {
                let stx = self.replays[self.rng.index(n)].clone();
                self.queue(stx, "replay/committed");
            }
        }
    }

    fn wrong_nonce(&mut self) {
        let agency = self.rng.index(AGENCIES);
        let kind = KINDS[self.rng.index(KINDS.len())];
        let signer = self.signer_for(agency, kind);
        let next = self.next_nonce(&signer.public());
        let r = self.record(kind, agency);
        let (nonce, intent) = if next > 0 && self.rng.chance(50) {
            (next - 1 - self.rng.below(next.min(3)), "nonce/used")
        } else {
            (next + 1 + self.rng.below(3), "nonce/gap")
        };
        self.push_at(&signer, nonce, TxBody::Anchor(r), intent);
    }

    /// Unknown signers, bad signatures, other chains.
    fn misfit(&mut self) {
        let agency = self.rng.index(AGENCIES);
        let r = self.record(RecordKind::Other, agency);
        match self.rng.below(3) {
            0 => {
                let stranger = self.stranger.clone();
                self.push(&stranger, TxBody::Anchor(r), "misfit/stranger");
            }
            1 => {
                let admin = self.admin(agency);
                let nonce = self.next_nonce(&admin.public());
                let mut stx =
                    Transaction { chain_id: CHAIN_ID.into(), signer: admin.public(), nonce, body: TxBody::Anchor(r) }
                        .sign(&admin);
                stx.signature.0[self.rng.index(64)] ^= 1 << self.rng.below(8);
                self.queue(stx, "misfit/bad_signature");
            }
            _ => {
                let admin = self.admin(agency);
                let nonce = self.next_nonce(&admin.public());
                let stx = Transaction {
                    chain_id: "sabt-other".into(),
                    signer: admin.public(),
                    nonce,
                    body: TxBody::Anchor(r),
                }
                .sign(&admin);
                self.queue(stx, "misfit/wrong_chain");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_spreads() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        let xs: Vec<u64> = (0..64).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..64).map(|_| b.next_u64()).collect::<Vec<_>>());
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[a.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(a.below(0), 0);
        // The first output of SplitMix64 seeded with 0 (reference value).
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn shapes_are_valid_polygons() {
        rect(0, 0, 10, 10).validate().unwrap();
        for points in [5, 6, 7, 100, MAX_VERTICES] {
            let g = sawtooth(0, 0, points, 1_000);
            assert_eq!(g.exterior.len(), points);
            g.validate().unwrap();
        }
        assert_eq!(as_rect(&rect(1, 2, 3, 4)), Some((1, 2, 3, 4)));
        assert_eq!(as_rect(&sawtooth(0, 0, 6, 10)), None);
    }
}

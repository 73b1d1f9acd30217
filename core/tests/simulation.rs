#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! Seeded simulation of the registry rules: for each seed, [`sabt_core::sim::Simulation`] proposes
//! adversarial candidates block after block; a proposer builds each block on ledger A
//! ([`Registry::build_block`], which leaves refused candidates out), and a second node executes
//! the built block on its own ledger B ([`Registry::execute_block`]). Every block must build
//! without a storage error, execute on B to exactly the build's effects and roots, and leave A
//! and B with the same state; the same seed must give the same chain twice; one seed's final roots
//! are frozen as a golden vector; and the refusals over all seeds must span the rules, so the
//! test cannot pass by testing nothing.
//!
//! Environment:
//! - `SABT_SIM_SEEDS`: how many seeds (0, 1, …) the main test runs (default 1000);
//! - `SABT_SIM_TXS`: candidate transactions per seed (default 150);
//! - `SABT_SIM_SEED`: run only this seed, with a block-by-block trace (the replay of a failure);
//! - `SABT_BLESS`: rewrite the golden vector (`tests/fixtures/golden/simulation_seed_1.hex`)
//!   after a deliberate change of the generator or the rules.
//!
//! The coverage of refusal codes and committed operations is asserted when at least the default
//! seeds and transactions run.

use sabt_core::codec;
use sabt_core::entry::{EntryBody, LogEntry};
use sabt_core::hash::Hash32;
use sabt_core::registry::{MemoryLedger, NoCache, Registry, Tip};
use sabt_core::sim::{Config, Simulation};
use sabt_core::smt;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

const DEFAULT_SEEDS: u64 = 1000;
const DEFAULT_TXS: usize = 150;
const LONG_TXS: usize = 3000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

fn txs_per_seed() -> usize {
    env_u64("SABT_SIM_TXS").map_or(DEFAULT_TXS, |n| n as usize)
}

/// What one seed's run produced.
#[derive(Debug, Default)]
struct Outcome {
    log_root: Hash32,
    state_root: Hash32,
    log_size: u64,
    /// Hash of every block header, in order.
    block_hashes: Vec<Hash32>,
    /// Refusals by code.
    refused: BTreeMap<&'static str, u64>,
    /// Committed transactions by what they did.
    accepted: BTreeMap<String, u64>,
    candidates: u64,
    /// Candidates left out of a full block.
    left_out: u64,
}

impl Outcome {
    fn add(&mut self, other: &Outcome) {
        for (k, v) in &other.refused {
            *self.refused.entry(k).or_default() += v;
        }
        for (k, v) in &other.accepted {
            *self.accepted.entry(k.clone()).or_default() += v;
        }
        self.candidates += other.candidates;
        self.left_out += other.left_out;
        self.log_size += other.log_size;
    }
}

/// What a committed entry did, for the coverage counts.
fn accepted_kind(entry: &LogEntry, ledger: &MemoryLedger) -> String {
    let batched = |index: u64| {
        let bytes = ledger.entries.get(&index).expect("a status change names a stored entry");
        matches!(codec::decode::<LogEntry>(bytes).unwrap().body, EntryBody::Batch(_))
    };
    match &entry.body {
        EntryBody::Record(_) => "anchor".into(),
        EntryBody::Batch(_) => "batch".into(),
        EntryBody::Grant(_) => "grant".into(),
        EntryBody::Revoke { .. } => "revoke".into(),
        EntryBody::Withdraw(c) if batched(c.target_index) => "withdraw_batched".into(),
        EntryBody::Withdraw(_) => "withdraw".into(),
        EntryBody::Supersede { change, .. } if batched(change.target_index) => "supersede_batched".into(),
        EntryBody::Supersede { .. } => "supersede".into(),
        EntryBody::Land(l) => format!("land:{}", l.op.name()),
    }
}

/// Runs one seed: builds every block on ledger A, executes it on ledger B, checks they agree.
/// Panics (with the height and the candidates' intents) on the first disagreement.
fn run_seed(seed: u64, config: Config, trace: bool) -> Outcome {
    let mut sim = Simulation::new(seed, config);
    let registry = Registry::new(sim.genesis()).unwrap();
    let mut tip = Tip::genesis(sim.genesis());
    let (mut a, mut b) = (MemoryLedger::default(), MemoryLedger::default());
    let mut out = Outcome::default();
    while let Some(round) = sim.next_block() {
        let height = round.height;
        let intents = round.intents.clone();
        let ids: Vec<Hash32> = if trace { round.txs.iter().map(|t| t.id()).collect() } else { Vec::new() };
        let candidates = round.txs.len();
        out.candidates += candidates as u64;
        let built = registry
            .build_block(&mut a, &tip, round.time_ms, sim.proposer(), round.txs, &NoCache)
            .unwrap_or_else(|e| panic!("height {height}: building failed on storage: {e}\ncandidates: {intents:#?}"));
        if trace {
            let refused: BTreeMap<Hash32, &'static str> = built.refused.iter().map(|(id, e)| (*id, e.code())).collect();
            println!("block {height}: {} of {} candidates committed", built.block.txs.len(), ids.len());
            for (id, intent) in ids.iter().zip(&intents) {
                let verdict = refused.get(id).copied().unwrap_or(if built.block.txs.iter().any(|t| t.id() == *id) {
                    "ok"
                } else {
                    "left out"
                });
                println!("  {intent:<48} {verdict}");
            }
        }
        for (_, e) in &built.refused {
            *out.refused.entry(e.code()).or_default() += 1;
        }
        // Candidates past the block's size limit are neither committed nor refused.
        out.left_out += (candidates - built.block.txs.len() - built.refused.len()) as u64;
        let executed = registry.execute_block(&mut b, &tip, &built.block, &NoCache).unwrap_or_else(|e| {
            panic!("height {height}: the built block does not re-execute: {e}\ncandidates: {intents:#?}")
        });
        assert_eq!(executed, built.executed, "height {height}: re-execution differs from the build");
        let header = &built.block.header;
        assert_eq!(smt::root(&a).unwrap(), header.state_root, "height {height}: ledger A's state map");
        assert_eq!(smt::root(&b).unwrap(), header.state_root, "height {height}: ledger B's state map");
        assert_eq!((header.log_size, header.log_root), (executed.log_size, executed.log_root));
        for (_, entry) in &executed.entries {
            *out.accepted.entry(accepted_kind(entry, &a)).or_default() += 1;
        }
        sim.observe(&built.executed);
        out.block_hashes.push(header.hash());
        tip = Tip::after(header);
    }
    assert_eq!(a.state, b.state, "seed {seed}: state values differ between the ledgers");
    assert_eq!(a.entries, b.entries, "seed {seed}: log entries differ between the ledgers");
    (out.log_root, out.state_root, out.log_size) = (tip.log_root, tip.state_root, tip.log_size);
    out
}

fn replay_hint(seed: u64, txs: usize) -> String {
    format!("replay: SABT_SIM_SEED={seed} SABT_SIM_TXS={txs} cargo test -p sabt-core --test simulation -- --nocapture")
}

/// Runs `seed`, turning a panic into an error that says how to replay it.
fn run_reported(seed: u64, config: Config, trace: bool) -> Result<Outcome, String> {
    catch_unwind(AssertUnwindSafe(|| run_seed(seed, config, trace))).map_err(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("seed {seed} failed: {why}\n{}", replay_hint(seed, config.txs))
    })
}

/// The refusal codes the mix must produce over the default seeds: every code the registry has
/// ([`sabt_core::registry::TxError::code`], geometry codes included), each a rule the simulation
/// reaches.
const EXPECTED_CODES: &[&str] = &[
    "already_anchored",
    "arrested",
    "bad_grant",
    "bad_land_field",
    "bad_partition",
    "bad_record",
    "bad_signature",
    "consent_missing",
    "empty_batch",
    "encumbered",
    "expired",
    "hole_outside",
    "kind_not_allowed",
    "no_land_role",
    "no_such_parcel",
    "no_such_restriction",
    "nonce_gap",
    "nonce_used",
    "not_anchored",
    "not_closed",
    "not_current",
    "out_of_range",
    "overlap",
    "parcel_exists",
    "parcel_retired",
    "parcel_too_large",
    "repeated_vertex",
    "revoked",
    "self_intersection",
    "share_overflow",
    "shares_not_one",
    "too_few_points",
    "too_large",
    "too_many_vertices",
    "unauthorised",
    "wrong_agency",
    "wrong_chain",
    "wrong_orientation",
    "zero_area",
];

/// What the mix must commit over the default seeds: every kind of entry and land operation.
const EXPECTED_ACCEPTED: &[&str] = &[
    "anchor",
    "batch",
    "grant",
    "revoke",
    "withdraw",
    "withdraw_batched",
    "supersede",
    "supersede_batched",
    "land:register",
    "land:transfer",
    "land:correct_boundary",
    "land:encumber",
    "land:release",
    "land:split",
    "land:merge",
    "land:retire",
    "land:register_structure",
    "land:retire_structure",
];

#[test]
fn seeded_simulations_build_and_re_execute_identically() {
    let txs = txs_per_seed();
    let config = Config { txs, ..Config::default() };
    if let Some(seed) = env_u64("SABT_SIM_SEED") {
        let out = run_reported(seed, config, true).unwrap_or_else(|e| panic!("{e}"));
        println!("seed {seed}: log size {}, refusals {:?}", out.log_size, out.refused);
        return;
    }
    let seeds = env_u64("SABT_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let mut total = Outcome::default();
    let mut failures = Vec::new();
    for seed in 0..seeds {
        match run_reported(seed, config, false) {
            Ok(out) => total.add(&out),
            Err(e) => failures.push(e),
        }
    }
    println!(
        "{seeds} seeds, {} candidates, {} committed, {} left out of full blocks",
        total.candidates, total.log_size, total.left_out
    );
    println!("refused: {:?}", total.refused);
    println!("accepted: {:?}", total.accepted);
    if !failures.is_empty() {
        let shown: Vec<&String> = failures.iter().take(5).collect();
        panic!(
            "{} of {seeds} seeds failed; the first:\n{}",
            failures.len(),
            shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n\n")
        );
    }
    if seeds >= DEFAULT_SEEDS && txs >= DEFAULT_TXS {
        let missing: Vec<&&str> = EXPECTED_CODES.iter().filter(|c| !total.refused.contains_key(**c)).collect();
        assert!(missing.is_empty(), "refusal codes never produced: {missing:?}; produced: {:?}", total.refused);
        let missing: Vec<&&str> = EXPECTED_ACCEPTED.iter().filter(|c| !total.accepted.contains_key(**c)).collect();
        assert!(missing.is_empty(), "operations never committed: {missing:?}; committed: {:?}", total.accepted);
        // Neither side dominates: the mix both commits and refuses in earnest.
        let refused: u64 = total.refused.values().sum();
        assert!(refused * 5 > total.candidates, "only {refused} of {} candidates refused", total.candidates);
        assert!(
            total.log_size * 4 > total.candidates,
            "only {} of {} candidates committed",
            total.log_size,
            total.candidates
        );
    }
}

#[test]
fn a_long_simulation_builds_and_re_executes_identically() {
    let config = Config { txs: LONG_TXS, ..Config::default() };
    let seed = 0x5AB7_0000_0000_0001;
    let out = run_reported(seed, config, false).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.log_size > (LONG_TXS / 4) as u64, "the long run committed only {} entries", out.log_size);
    assert!(out.left_out > 0, "no block of the long run reached the size limit");
}

#[test]
fn the_same_seed_gives_the_same_chain() {
    let config = Config::default();
    let first = run_reported(42, config, false).unwrap_or_else(|e| panic!("{e}"));
    let again = run_reported(42, config, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((first.log_root, first.state_root, first.log_size), (again.log_root, again.state_root, again.log_size));
    assert_eq!(first.block_hashes, again.block_hashes);
    assert_eq!(first.refused, again.refused);
    let other = run_reported(43, config, false).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(first.log_root, other.log_root, "two seeds gave the same chain");
}

/// Compares `bytes` with the fixture `name`, or writes it when blessing.
fn golden(name: &str, bytes: &[u8]) {
    let path = format!("{}/tests/fixtures/golden/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let text = hex::encode(bytes) + "\n";
    if std::env::var_os("SABT_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing fixture {path}; run with SABT_BLESS=1 to create it"));
    assert_eq!(text, expected, "the simulation of seed 1 drifted from {path}: did the generator or a rule change?");
}

/// Seed 1's final log root, state root and log size (big-endian), frozen: any change to the
/// rules, the state layout, the encodings or the generator shows here.
#[test]
fn golden_simulation_seed_1() {
    let out = run_reported(1, Config::default(), false).unwrap_or_else(|e| panic!("{e}"));
    let mut bytes = Vec::with_capacity(72);
    bytes.extend_from_slice(out.log_root.as_bytes());
    bytes.extend_from_slice(out.state_root.as_bytes());
    bytes.extend_from_slice(&out.log_size.to_be_bytes());
    golden("simulation_seed_1", &bytes);
}

//! An open-loop load generator for a running network: many concurrent clients, each a clerk key
//! of its own, send signed single-document anchor transactions on a fixed schedule (the k-th at
//! `t0 + k / rate`, whatever the answers), so a slow node shows up as latency instead of as a
//! slower offered load. A watcher follows committed blocks; a prover fetches the proof of every
//! sampled transaction as soon as its block is seen and checks it offline against the genesis.
//!
//! Latency is measured from a transaction's *scheduled* send time (so queueing inside the
//! generator counts against the system, not in its favour) to the moment its proof was in hand,
//! for the transactions scheduled after the warm-up, the same window the throughput counts; the
//! whole run's commit latency is reported too.

use crate::cpu;
use crate::http::Api;
use crate::records;
use crate::stats::{self, Summary};
use anyhow::{Context as _, anyhow, bail, ensure};
use sabt_core::block::Block;
use sabt_core::bundle::{self, BUNDLE_FORMAT, BUNDLE_VERSION, DocumentClaim, EntryProof, ProofBundle};
use sabt_core::codec;
use sabt_core::entry::RecordKind;
use sabt_core::genesis::Genesis;
use sabt_core::hash::Hash32;
use sabt_core::sign::{PublicKey, SecretKey};
use sabt_core::tx::{SignedTx, Transaction, TxBody};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadCfg {
    /// API URLs the clients send to (client `c` uses `urls[c % len]`).
    pub urls: Vec<String>,
    /// The API URL the watcher and prover read.
    pub watch: String,
    /// The network's genesis.
    pub genesis: PathBuf,
    /// An agency admin key file (hex seed), to authorise the clients' keys.
    pub admin_key: PathBuf,
    /// Concurrent clients.
    pub clients: usize,
    /// Offered transactions per second.
    pub rate: f64,
    /// Seconds of offered load.
    pub secs: f64,
    /// Seconds at the start left out of the throughput window.
    pub warmup: f64,
    /// Every `sample`-th transaction has its proof fetched and checked.
    pub sample: usize,
    /// Distinguishes this run's keys and records from other runs on the same network.
    pub run: u64,
    /// Seconds to wait after the offered load for accepted transactions to commit.
    pub drain: f64,
    /// The nodes' process ids, whose CPU time within the window is measured.
    pub pids: Vec<u32>,
    /// Where to write the run's trace, if anywhere: a line per block the watcher saw and a line
    /// per scheduled transaction ([`write_trace`]).
    pub trace: Option<PathBuf>,
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct LoadResult {
    /// Offered transactions per second.
    pub offered_per_s: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// Transactions scheduled.
    pub scheduled: usize,
    /// Transactions the nodes acknowledged.
    pub accepted: u64,
    /// Answers 429 / 503 (each retried until accepted or the run ended).
    pub retried: u64,
    /// Other refusals and failures, by code.
    pub errors: BTreeMap<String, u64>,
    /// Acknowledged transactions seen committed.
    pub committed: u64,
    /// Seconds of the throughput window (after warm-up, to the end of the offered load).
    pub window_s: f64,
    /// Transactions of this run committed per second within the window.
    pub committed_per_s: f64,
    /// Blocks committed within the window, and their mean size in transactions.
    pub blocks_in_window: usize,
    /// Mean transactions per block within the window.
    pub mean_block_txs: f64,
    /// Transactions of this run committed per second after the offered load ended, while the
    /// network worked off what it had admitted: blocks without admissions (no API requests,
    /// signature checks or forwarding), so what consensus, execution and the synced writes alone
    /// sustain. Absent when fewer than two blocks with this run's transactions came after the end.
    pub drain_committed_per_s: Option<f64>,
    /// Scheduled send → block seen committed, milliseconds, every committed transaction
    /// scheduled after the warm-up.
    pub commit_latency_ms: Summary,
    /// The same over the whole run, warm-up included.
    pub commit_latency_all_ms: Summary,
    /// Scheduled send → proof in hand, milliseconds, sampled transactions scheduled after the
    /// warm-up.
    pub proof_latency_ms: Summary,
    /// Where the commit latency goes, milliseconds, every committed transaction scheduled after
    /// the warm-up: scheduled time
    /// → request sent (the generator's own lag), sent → accepted (the node's answer, retries
    /// included), accepted → block seen committed.
    pub latency_parts_ms: LatencyParts,
    /// Sampled proofs that were checked offline and verified.
    pub proofs_verified: u64,
    /// CPU the nodes and this generator used within the window, per transaction committed in it,
    /// and how busy the machine was (absent where `/proc` cannot be read).
    pub cpu: Option<cpu::CpuUse>,
}

/// The commit latency in three consecutive parts.
#[derive(Debug, Serialize)]
pub struct LatencyParts {
    /// Scheduled send → first request sent.
    pub send_lag: Summary,
    /// First request sent → 202 from the node.
    pub admit: Summary,
    /// 202 → block seen committed.
    pub block_wait: Summary,
}

fn clerk_key(run: u64, c: usize) -> SecretKey {
    let mut h = blake3::Hasher::new_derive_key("sabt-bench/clerk/v1");
    h.update(&run.to_le_bytes());
    h.update(&(c as u64).to_le_bytes());
    SecretKey::from_seed(h.finalize().as_bytes())
}

fn read_seed(path: &PathBuf) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    let seed: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("{} is not a 32-byte hex key seed", path.display()))?;
    Ok(SecretKey::from_seed(&seed))
}

fn wait_committed(api: &Api, id: &Hash32, within: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let a = api.get_any(&format!("/v1/txs/{id}"))?;
        if a.body["status"] == "committed" {
            return Ok(());
        }
        if start.elapsed() > within {
            bail!("transaction {id} was not committed within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Authorises the clients' keys (those not authorised yet) with the admin key; returns each
/// client's next nonce.
fn provision(cfg: &LoadCfg, api: &Api, chain_id: &str, keys: &[SecretKey]) -> anyhow::Result<Vec<u64>> {
    let admin = read_seed(&cfg.admin_key)?;
    let mut nonce = api.get(&format!("/v1/accounts/{}", admin.public().to_hex()))?["next_nonce"]
        .as_u64()
        .context("admin account without next_nonce")?;
    let mut todo = Vec::new();
    for k in keys {
        let a = api.get(&format!("/v1/accounts/{}", k.public().to_hex()))?;
        if a["grant"].is_null() {
            let body = TxBody::AuthorizeKey { key: k.public(), kinds: vec![RecordKind::CivilStatus], expires_ms: None };
            todo.push(Transaction { chain_id: chain_id.into(), signer: admin.public(), nonce, body }.sign(&admin));
            nonce += 1;
        }
    }
    for chunk in todo.chunks(1000) {
        let txs: Vec<String> = chunk.iter().map(|t| hex::encode(codec::encode(t))).collect();
        let a = api.post("/v1/txs/batch", &json!({ "txs": txs }))?;
        ensure!(a.status == 200, "authorising clients: {} {}", a.status, a.body);
        for r in a.body["results"].as_array().into_iter().flatten() {
            ensure!(r["code"].is_null(), "authorising a client was refused: {r}");
        }
    }
    if let Some(last) = todo.last() {
        // Every node the clients send to must have committed the grants, or it refuses them.
        for url in &cfg.urls {
            wait_committed(&Api::new(url), &last.id(), Duration::from_secs(120))?;
        }
    }
    keys.iter()
        .map(|k| {
            api.get(&format!("/v1/accounts/{}", k.public().to_hex()))?["next_nonce"]
                .as_u64()
                .context("account without next_nonce")
        })
        .collect()
}

struct Prepared {
    body: Value,
    id: Hash32,
    sha256: Hash32,
}

fn prepare(cfg: &LoadCfg, chain_id: &str, keys: &[SecretKey], nonces: &[u64], total: usize) -> Vec<Prepared> {
    let c = cfg.clients;
    let sign = |k: usize| {
        let client = k % c;
        let record = records::record(cfg.run, k as u64);
        let sha256 = record.fingerprint.sha256;
        let stx: SignedTx = Transaction {
            chain_id: chain_id.to_string(),
            signer: keys[client].public(),
            nonce: nonces[client] + (k / c) as u64,
            body: TxBody::Anchor(record),
        }
        .sign(&keys[client]);
        Prepared { body: json!({ "tx": hex::encode(codec::encode(&stx)) }), id: stx.id(), sha256 }
    };
    let mid = total / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| (0..mid).map(sign).collect::<Vec<_>>());
        let mut b: Vec<Prepared> = (mid..total).map(sign).collect();
        let mut out = a.join().unwrap_or_default();
        out.append(&mut b);
        out
    })
}

/// This run's transactions committed per second in the blocks seen after `end` (nanoseconds since
/// the start, as `blocks` holds them: when each block was seen, and how many of this run's
/// transactions it held), from `end` to the last of them; `None` unless at least two such blocks
/// hold some.
fn drain_rate(blocks: &[(u64, usize)], end: u64) -> Option<f64> {
    let after: Vec<&(u64, usize)> = blocks.iter().filter(|(t, n)| *t > end && *n > 0).collect();
    match after.last() {
        Some((last, _)) if after.len() >= 2 => {
            Some(after.iter().map(|(_, n)| n).sum::<usize>() as f64 / ((last - end) as f64 / 1e9))
        }
        _ => None,
    }
}

/// Milliseconds since the Unix epoch, as block headers count consensus time.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Nanoseconds since `t0`, never 0 (0 marks "not yet").
fn since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Runs the load and measures it.
pub fn run(cfg: &LoadCfg) -> anyhow::Result<LoadResult> {
    ensure!(cfg.clients > 0 && cfg.rate > 0.0 && cfg.secs > 0.0, "--clients, --rate and --secs must be positive");
    ensure!(!cfg.urls.is_empty(), "name at least one node URL");
    ensure!(cfg.warmup < cfg.secs, "--warmup must be shorter than --secs");
    let genesis = Genesis::from_json(
        &std::fs::read_to_string(&cfg.genesis).with_context(|| format!("cannot read {}", cfg.genesis.display()))?,
    )?;
    let watch = Api::new(&cfg.watch);
    let keys: Vec<SecretKey> = (0..cfg.clients).map(|c| clerk_key(cfg.run, c)).collect();
    let nonces = provision(cfg, &watch, &genesis.chain_id, &keys)?;
    let total = (cfg.rate * cfg.secs).ceil() as usize;
    eprintln!("  signing {total} transactions for {} clients", cfg.clients);
    let txs = Arc::new(prepare(cfg, &genesis.chain_id, &keys, &nonces, total));
    let index: HashMap<Hash32, usize> = txs.iter().enumerate().map(|(k, p)| (p.id, k)).collect();
    let committed_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let proof_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    // When each transaction was first sent and when it was accepted (nanoseconds since t0; 0: not).
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let acked_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let verified = Arc::new(AtomicU64::new(0));
    let blocks: Arc<Mutex<Vec<(u64, usize)>>> = Arc::new(Mutex::new(Vec::new()));
    // For the trace: each seen block's height, proposer, consensus time and when it was seen, and
    // the height each transaction committed at.
    let seen_blocks: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let height_of: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let proposers: BTreeMap<PublicKey, usize> = genesis
        .agencies
        .iter()
        .filter_map(|a| a.validator.as_ref())
        .enumerate()
        .map(|(i, v)| (v.consensus_key, i + 1))
        .collect();

    // Start from an idle network: what an earlier run left waiting would count against this one.
    let idle_by = Instant::now() + Duration::from_secs_f64(cfg.drain.max(10.0) * 2.0);
    for url in &cfg.urls {
        let api = Api::new(url);
        while api.get("/v1/status")?["mempool_size"].as_u64().unwrap_or(0) > 0 {
            ensure!(Instant::now() < idle_by, "{url} still has transactions waiting from an earlier run");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let start_height = watch.get("/v1/status")?["height"].as_u64().context("status without height")?;
    let t0 = Instant::now() + Duration::from_millis(200);
    let t0_unix_ms = unix_ms() + 200;
    let (sample_tx, sample_rx) = mpsc::sync_channel::<usize>(4096);

    let watcher = {
        let (api, stop, committed_at, blocks, seen_blocks, height_of) = (
            Api::new(&cfg.watch),
            stop.clone(),
            committed_at.clone(),
            blocks.clone(),
            seen_blocks.clone(),
            height_of.clone(),
        );
        let sample = cfg.sample.max(1);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut next = start_height + 1;
            while !stop.load(Ordering::Relaxed) {
                let tip = api.get("/v1/status")?["height"].as_u64().unwrap_or(0);
                while next <= tip {
                    let raw = api.get(&format!("/v1/blocks/{next}/raw"))?;
                    let seen = since(t0);
                    let bytes = hex::decode(raw["block"].as_str().unwrap_or_default())?;
                    let block: Block = codec::decode(&bytes).map_err(|e| anyhow!("block {next}: {e}"))?;
                    let mut ours = 0;
                    for tx in &block.txs {
                        if let Some(&k) = index.get(&tx.id()) {
                            committed_at[k].store(seen, Ordering::Relaxed);
                            height_of[k].store(next, Ordering::Relaxed);
                            ours += 1;
                            if k % sample == 0 {
                                let _ = sample_tx.try_send(k);
                            }
                        }
                    }
                    if let Ok(mut b) = blocks.lock() {
                        b.push((seen, ours));
                    }
                    if let Ok(mut b) = seen_blocks.lock() {
                        b.push(json!({
                            "block": next,
                            "proposer": proposers.get(&block.header.proposer).copied().unwrap_or(0),
                            "time_ms": block.header.time_ms as i64 - t0_unix_ms as i64,
                            "seen_ms": seen as f64 / 1e6,
                            "txs": block.txs.len(),
                            "ours": ours,
                        }));
                    }
                    next += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        })
    };

    let prover = {
        let (api, proof_at, txs, verified) = (Api::new(&cfg.watch), proof_at.clone(), txs.clone(), verified.clone());
        let genesis = genesis.clone();
        let run = cfg.run;
        std::thread::spawn(move || -> anyhow::Result<()> {
            for k in sample_rx {
                let rec = api.get(&format!("/v1/records/{}", txs[k].sha256))?;
                let i = rec["index"].as_u64().context("record without index")?;
                let p = api.get(&format!("/v1/entries/{i}/proof"))?;
                proof_at[k].store(since(t0), Ordering::Relaxed);
                let path = p["path"]
                    .as_array()
                    .context("proof without path")?
                    .iter()
                    .map(|h| Hash32::from_hex(h.as_str().unwrap_or_default()).map_err(|e| anyhow!(e)))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let record = records::record(run, k as u64);
                let b = ProofBundle {
                    format: BUNDLE_FORMAT.into(),
                    version: BUNDLE_VERSION,
                    chain_id: genesis.chain_id.clone(),
                    genesis_hash: genesis.hash(),
                    record: record.clone(),
                    batch: None,
                    entry: EntryProof {
                        index: i,
                        encoded: hex::decode(p["encoded"].as_str().unwrap_or_default())?,
                        path,
                    },
                    checkpoint: p["checkpoint"].as_str().unwrap_or_default().to_string(),
                    validator_set_updates: Vec::new(),
                };
                bundle::verify(&b, &genesis, &DocumentClaim::File(record.fingerprint))
                    .map_err(|e| anyhow!("the proof of sampled transaction {k} does not verify: {e}"))?;
                verified.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };

    // CPU times at the throughput window's two ends.
    let cpu_sampler = {
        let pids = cfg.pids.clone();
        let (from, to) = (t0 + Duration::from_secs_f64(cfg.warmup), t0 + Duration::from_secs_f64(cfg.secs));
        std::thread::spawn(move || {
            let ticks = cpu::ticks_per_s();
            std::thread::sleep(from.saturating_duration_since(Instant::now()));
            let a = cpu::sample(&pids, ticks);
            std::thread::sleep(to.saturating_duration_since(Instant::now()));
            (a, cpu::sample(&pids, ticks))
        })
    };

    let retried = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let deadline = t0 + Duration::from_secs_f64(cfg.secs + cfg.drain);
    let clients: Vec<_> = (0..cfg.clients)
        .map(|c| {
            let api = Api::new(&cfg.urls[c % cfg.urls.len()]);
            let (txs, sent_at, acked_at, retried, errors) =
                (txs.clone(), sent_at.clone(), acked_at.clone(), retried.clone(), errors.clone());
            let (rate, clients) = (cfg.rate, cfg.clients);
            std::thread::spawn(move || {
                let mut k = c;
                'next: while k < txs.len() {
                    let at = t0 + Duration::from_secs_f64(k as f64 / rate);
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                    sent_at[k].store(since(t0), Ordering::Relaxed);
                    loop {
                        if Instant::now() > deadline {
                            break 'next;
                        }
                        match api.post("/v1/txs", &txs[k].body) {
                            Ok(a) if a.status == 202 => {
                                acked_at[k].store(since(t0), Ordering::Relaxed);
                                break;
                            }
                            Ok(a) if a.status == 429 || a.status == 503 => {
                                // As a clerk's client does: wait as long as the node asks.
                                retried.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(a.retry_after.unwrap_or(Duration::from_millis(20)));
                            }
                            Ok(a) => {
                                let code = a.code().to_string();
                                if let Ok(mut e) = errors.lock() {
                                    *e.entry(code).or_default() += 1;
                                }
                                // This client's later nonces cannot be admitted now.
                                break 'next;
                            }
                            Err(e) => {
                                if let Ok(mut m) = errors.lock() {
                                    *m.entry(format!("transport: {e:#}")).or_default() += 1;
                                }
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    }
                    k += clients;
                }
            })
        })
        .collect();
    for c in clients {
        let _ = c.join();
    }
    let offered_end = t0 + Duration::from_secs_f64(cfg.secs);
    // Let accepted transactions commit.
    let accepted: u64 = acked_at.iter().filter(|a| a.load(Ordering::Relaxed) != 0).count() as u64;
    while Instant::now() < deadline {
        let committed = committed_at.iter().filter(|c| c.load(Ordering::Relaxed) != 0).count() as u64;
        if committed >= accepted {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    watcher.join().map_err(|_| anyhow!("the watcher panicked"))??;
    prover.join().map_err(|_| anyhow!("the prover panicked"))??;

    let window_start = u64::try_from(Duration::from_secs_f64(cfg.warmup).as_nanos()).unwrap_or(0);
    let window_end = u64::try_from((offered_end - t0).as_nanos()).unwrap_or(u64::MAX);
    let window_s = (window_end - window_start) as f64 / 1e9;
    let blocks = blocks.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    let in_window: Vec<&(u64, usize)> = blocks.iter().filter(|(t, _)| *t > window_start && *t <= window_end).collect();
    let in_window_txs: usize = in_window.iter().map(|(_, n)| n).sum();
    let drain_committed_per_s = drain_rate(&blocks, window_end);
    let (cpu_from, cpu_to) = cpu_sampler.join().map_err(|_| anyhow!("the CPU sampler panicked"))?;
    let sched = |k: usize| k as f64 / cfg.rate * 1e3;
    // Latency counts the transactions scheduled within the window, as throughput counts the
    // blocks in it: the first seconds add the generator's start (128 threads' first allocations
    // and connections) and a first block of what queued meanwhile. The whole run's commit
    // latency is reported beside it.
    let warm_ms = cfg.warmup * 1e3;
    let latency_of = |at: &[AtomicU64], from_ms: f64| -> Vec<f64> {
        (0..total)
            .filter(|&k| sched(k) >= from_ms)
            .filter_map(|k| {
                let t = at[k].load(Ordering::Relaxed);
                (t != 0).then(|| t as f64 / 1e6 - sched(k))
            })
            .collect()
    };
    let commit_latency_all = latency_of(&committed_at, 0.0);
    let commit_latency = latency_of(&committed_at, warm_ms);
    let proof_latency = latency_of(&proof_at, warm_ms);
    let committed = commit_latency_all.len() as u64;
    let ms = |ns: u64| ns as f64 / 1e6;
    let (mut send_lag, mut admit, mut block_wait) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..total {
        let (sent, acked, done) = (
            sent_at[k].load(Ordering::Relaxed),
            acked_at[k].load(Ordering::Relaxed),
            committed_at[k].load(Ordering::Relaxed),
        );
        if sent != 0 && acked != 0 && done != 0 && sched(k) >= warm_ms {
            send_lag.push(ms(sent) - sched(k));
            admit.push(ms(acked.saturating_sub(sent)));
            block_wait.push(ms(done.saturating_sub(acked)));
        }
    }
    if let Some(path) = &cfg.trace {
        let blocks = seen_blocks.lock().map_err(|_| anyhow!("poisoned"))?;
        let ms_or_null = |ns: u64| if ns == 0 { Value::Null } else { json!(ms(ns)) };
        let txs = (0..total).map(|k| {
            json!({
                "tx": k,
                "node": (k % cfg.clients) % cfg.urls.len() + 1,
                "scheduled_ms": sched(k),
                "sent_ms": ms_or_null(sent_at[k].load(Ordering::Relaxed)),
                "accepted_ms": ms_or_null(acked_at[k].load(Ordering::Relaxed)),
                "seen_ms": ms_or_null(committed_at[k].load(Ordering::Relaxed)),
                "block": height_of[k].load(Ordering::Relaxed),
            })
        });
        let start =
            json!({ "t0_unix_ms": t0_unix_ms, "rate": cfg.rate, "clients": cfg.clients, "nodes": cfg.urls.len() });
        write_trace(path, std::iter::once(start).chain(blocks.iter().cloned()).chain(txs))?;
    }
    let errors = errors.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    Ok(LoadResult {
        offered_per_s: cfg.rate,
        clients: cfg.clients,
        scheduled: total,
        accepted,
        retried: retried.load(Ordering::Relaxed),
        errors,
        committed,
        window_s,
        committed_per_s: in_window_txs as f64 / window_s,
        blocks_in_window: in_window.len(),
        mean_block_txs: if in_window.is_empty() { 0.0 } else { in_window_txs as f64 / in_window.len() as f64 },
        drain_committed_per_s,
        commit_latency_ms: stats::summarize(commit_latency),
        commit_latency_all_ms: stats::summarize(commit_latency_all),
        proof_latency_ms: stats::summarize(proof_latency),
        latency_parts_ms: LatencyParts {
            send_lag: stats::summarize(send_lag),
            admit: stats::summarize(admit),
            block_wait: stats::summarize(block_wait),
        },
        proofs_verified: verified.load(Ordering::Relaxed),
        cpu: cpu::between(&cpu_from, &cpu_to, in_window_txs),
    })
}

/// Writes a run's trace as JSON lines: first the load's start (`t0_unix_ms`, from which the other
/// times count) and its settings, then one per block the watcher saw (`block`, `proposer`
/// as the validator's number in the genesis, `time_ms` its consensus time and `seen_ms` when the
/// watcher had it, both from the load's start, `txs`, and `ours` from this run), then one per
/// scheduled transaction (`tx`, the `node` it was sent to, `scheduled_ms`, `sent_ms`,
/// `accepted_ms`, `seen_ms`, and the `block` it committed in, 0 if none).
fn write_trace(path: &PathBuf, lines: impl Iterator<Item = Value>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush().with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::drain_rate;

    #[test]
    fn the_drain_counts_only_blocks_after_the_load_with_this_runs_transactions() {
        let s = 1_000_000_000u64;
        // Before the end (10 s), at it, an empty block after it, then 300 transactions in the
        // 1.5 s that followed.
        let blocks = [(9 * s, 500), (10 * s, 400), (10 * s + s / 2, 100), (11 * s, 0), (11 * s + s / 2, 200)];
        let rate = drain_rate(&blocks, 10 * s).unwrap();
        assert!((rate - 200.0).abs() < 1e-9, "{rate}");
        // One block after the end says nothing about a rate.
        assert_eq!(drain_rate(&blocks[..3], 10 * s), None);
        assert_eq!(drain_rate(&[], 10 * s), None);
    }
}

//! Starting and stopping a node: load configuration, genesis and keys, check the store, start the
//! consensus engine, the application loop, the API and metrics; stop cleanly on SIGTERM or SIGINT,
//! and stop with an error when a durable write fails.

use crate::config::Config;
use crate::mempool::{AdmitError, Mempool, VerifiedIds};
use crate::metrics::Metrics;
use crate::store::Store;
use anyhow::{Context as _, anyhow, bail};
use sabt_core::codec;
use sabt_core::genesis::Genesis;
use sabt_core::hash::Hash32;
use sabt_core::registry::{Registry, Tip};
use sabt_core::sign::SecretKey;
use sabt_core::tx::SignedTx;
use sabt_core::validator::ValidatorSet;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tracing::{error, info, warn};

/// State shared by the consensus loop and the API.
#[derive(Debug)]
pub struct Shared {
    /// This node's agency name.
    pub name: String,
    /// The genesis.
    pub genesis: Genesis,
    /// Its hash.
    pub genesis_hash: Hash32,
    /// The validator set.
    pub validator_set: ValidatorSet,
    /// The registry rules.
    pub registry: Registry,
    /// The store.
    pub store: Store,
    /// Metrics.
    pub metrics: Metrics,
    /// Forwards client submissions to the other validators.
    pub forwarder: Option<crate::forward::Forwarder>,
    mempool: Mutex<Mempool>,
    verified: Mutex<VerifiedIds>,
    /// The map of live parcels and parcel histories, derived from the log.
    pub parcels: RwLock<crate::parcels::ParcelIndex>,
    tip: RwLock<Tip>,
    ready: AtomicBool,
    caught_up: AtomicBool,
    /// What this validator signed, consulted before every signature.
    pub signed: crate::consensus::record::SignedRecord,
}

impl Shared {
    /// The committed tip.
    pub fn tip(&self) -> Tip {
        match self.tip.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn mempool(&self) -> std::sync::MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node takes transactions: consensus has started, and the node is not catching
    /// up (`consensus::pacing::caught_up`). A node still catching up would judge a
    /// transaction against a state that has not seen the blocks that allow it (a clerk key
    /// authorised since), and refuse it for good.
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_none()
    }

    /// Why this node does not take transactions yet, if it does not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if !self.ready.load(Ordering::Relaxed) {
            Some("consensus has not started yet")
        } else if !self.caught_up.load(Ordering::Relaxed) {
            Some("this node is catching up with the network")
        } else {
            None
        }
    }

    /// Marks consensus as started.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Records whether this node is caught up with the network.
    pub fn set_caught_up(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::Relaxed);
    }

    /// Transactions waiting.
    pub fn mempool_len(&self) -> usize {
        self.mempool().len()
    }

    /// The signer's next nonce after its waiting transactions, if it has any.
    pub fn pending_next_nonce(&self, signer: &sabt_core::sign::PublicKey) -> Option<u64> {
        self.mempool().pending_next_nonce(signer)
    }

    /// Whether `id` is waiting.
    pub fn mempool_contains(&self, id: &Hash32) -> bool {
        self.mempool().contains(id)
    }

    /// Oldest waiting transactions.
    pub fn mempool_candidates(&self, max: usize) -> Vec<SignedTx> {
        self.mempool().candidates(max)
    }

    /// The signature cache for executing `txs`: those whose signatures this node verified.
    pub fn verified_among(&self, txs: &[SignedTx]) -> std::collections::BTreeSet<Hash32> {
        let ids: Vec<Hash32> = txs.iter().map(SignedTx::id).collect();
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).among(&ids)
    }

    /// Records that the signatures of `txs` verified (after a block executed).
    pub fn mark_verified(&self, txs: &[SignedTx]) {
        let ids: Vec<Hash32> = txs.iter().map(SignedTx::id).collect();
        let mut v = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            v.insert(id);
        }
    }

    /// Drops from the mempool the transactions a build refused against the committed state.
    pub fn refused(&self, ids: &[Hash32]) {
        if ids.is_empty() {
            return;
        }
        let ws = self.store.write_set();
        let mut pool = self.mempool();
        pool.remove(&self.registry, &ws, ids);
        self.metrics.mempool_size.set(i64::try_from(pool.len()).unwrap_or(i64::MAX));
    }

    /// Admits a submitted transaction; one that another validator `forwarded` is held if its
    /// nonce is ahead of its signer's next ([`Mempool::admit_forwarded`]).
    pub fn submit(&self, stx: SignedTx, forwarded: bool) -> Result<Hash32, AdmitError> {
        let id = stx.id();
        if let Ok(Some(loc)) = self.store.tx_location(&id) {
            return Err(AdmitError::Committed(id, loc.height));
        }
        // A full pool refuses before the signature is verified: under overload the refusals (and
        // the forwarded copies other nodes keep sending) would otherwise cost a verification each.
        self.mempool().check_room(codec::encode(&stx).len())?;
        // Outside the pool's lock, so that API threads check in parallel, cheapest first: the
        // signature, the signer's authority, then the body's fields (a land operation's geometry).
        self.registry.check_envelope(&stx, &sabt_core::registry::NoCache)?;
        let tip = self.tip();
        let ws = self.store.write_set();
        let next = sabt_core::registry::At { height: tip.height + 1, time_ms: tip.time_ms, index: tip.log_size };
        self.registry.check_authority(&ws, &stx, next)?;
        self.registry.check_body(&stx)?;
        let mut pool = self.mempool();
        let r = if forwarded {
            pool.admit_forwarded(&self.registry, &ws, next, stx)
        } else {
            pool.admit_checked(&self.registry, &ws, next, stx)
        };
        self.metrics.mempool_size.set(i64::try_from(pool.len()).unwrap_or(i64::MAX));
        drop(pool);
        // Only an admitted transaction's id enters the signature cache: ids of refused ones would
        // let a stranger flush it with transactions that never reach a block.
        if r.is_ok() {
            self.verified.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        }
        r
    }

    /// Records a committed block: its transactions `ids` and the log entries it wrote, by index.
    pub fn committed(&self, tip: Tip, ids: &[Hash32], entries: &BTreeMap<u64, Vec<u8>>) {
        let (height, log_size) = (tip.height, tip.log_size);
        match self.tip.write() {
            Ok(mut t) => *t = tip,
            Err(p) => *p.into_inner() = tip,
        }
        {
            let mut ix = self.parcels.write().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = extend_index(&self.store, &mut ix, log_size, entries) {
                error!(error = %e, "cannot extend the parcel map; land queries may lag until restart");
            }
        }
        let ws = self.store.write_set();
        let mut pool = self.mempool();
        pool.remove(&self.registry, &ws, ids);
        self.metrics.mempool_size.set(i64::try_from(pool.len()).unwrap_or(i64::MAX));
        self.metrics.height.set(i64::try_from(height).unwrap_or(i64::MAX));
        self.metrics.txs_committed.inc_by(ids.len() as u64);
    }
}

/// Takes log entries from `ix.indexed` up to `log_size` into the parcel map: from `fresh` (a
/// committed block's entries, by index) where it holds them, else read back from the store.
fn extend_index(
    store: &Store,
    ix: &mut crate::parcels::ParcelIndex,
    log_size: u64,
    fresh: &BTreeMap<u64, Vec<u8>>,
) -> anyhow::Result<()> {
    for i in ix.indexed..log_size {
        let read;
        let bytes = match fresh.get(&i) {
            Some(b) => b,
            None => {
                read = store.entry(i)?.ok_or_else(|| anyhow!("log entry {i} is missing"))?;
                &read
            }
        };
        ix.apply_bytes(i, bytes).map_err(|e| anyhow!("log entry {i}: {e}"))?;
    }
    Ok(())
}

/// Files a node keeps open besides its API connections: the database's tables, the write-ahead
/// logs, peers and the forwarder's connections.
const FILES_BESIDES_CONNECTIONS: u64 = 1024;

/// Raises the soft limit on open files to the hard limit, and says so when that is fewer than the
/// API's connections and the node's own files need (a soft limit of 1,024, common by default, is
/// reached before `api.max_connections`, and then connections wait in the accept queue). Returns
/// the limit in force.
fn raise_open_files(max_connections: usize) -> Option<u64> {
    let wanted = max_connections as u64 + FILES_BESIDES_CONNECTIONS;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            if limit < wanted {
                warn!(
                    limit,
                    wanted,
                    "the open-file limit is lower than the API's connections (api.max_connections) and the \
                     node's own files need; raise it (LimitNOFILE= in the service unit, ulimit -n) or lower \
                     api.max_connections"
                );
            }
            Some(limit)
        }
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open-file limit");
            None
        }
    }
}

/// Reports a clock behind the last committed block by more than the allowed drift: every block
/// the other validators propose would look that far in the future, and this node would refuse them
/// all.
fn check_clock(metrics: &Metrics, tip: &Tip) {
    let now = crate::clock::now_ms();
    let behind = tip.time_ms.saturating_sub(now);
    if behind > crate::consensus::app::MAX_CLOCK_DRIFT_MS {
        metrics.clock_offset_ms.set(i64::try_from(behind).unwrap_or(i64::MAX));
        error!(
            behind_ms = behind,
            "this node's clock is {} s behind the last committed block's time; it will refuse the other \
             validators' blocks as too far in the future until it is set right (check NTP)",
            behind / 1000
        );
    }
}

/// The API's runtime, shut down without waiting when dropped (a runtime dropped the ordinary
/// way from async code panics, which any early return would do).
struct ApiRuntime(Option<tokio::runtime::Runtime>);

impl Drop for ApiRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Paths inside a node's home directory.
#[derive(Debug, Clone)]
pub struct Home(pub PathBuf);

impl Home {
    /// Consensus key file.
    pub fn consensus_key(&self) -> PathBuf {
        self.0.join("keys/consensus.key")
    }
    /// Network key file.
    pub fn network_key(&self) -> PathBuf {
        self.0.join("keys/network.key")
    }
    /// Database directory.
    pub fn db(&self) -> PathBuf {
        self.0.join("data/db")
    }
    /// Consensus write-ahead log.
    pub fn wal(&self) -> PathBuf {
        self.0.join("data/wal/consensus.wal")
    }
    /// The record of every vote and proposal signed: outside `data/`, which may be moved away
    /// to resync ([`crate::consensus::record`]).
    pub fn signed_record(&self) -> PathBuf {
        self.0.join("signing/record.log")
    }
    /// The hash-chained access log.
    pub fn access_log(&self) -> PathBuf {
        self.0.join("data/access.log")
    }
}

/// Loads everything a node needs from `home`, checks it, and runs the node until SIGTERM/SIGINT
/// (Ok) or a fatal error (Err).
pub async fn run(home: &Path, cfg: Config) -> anyhow::Result<()> {
    let home = Home(home.to_path_buf());
    crate::faults::init(&home.0)?;
    raise_open_files(cfg.api.max_connections);
    let genesis = sabt_genesis::load(&home.0.join(&cfg.genesis))?;
    let genesis_hash = genesis.hash();
    let validator_set = genesis.validator_set()?;
    let consensus_seed = sabt_genesis::keyfile::read(&home.consensus_key())?;
    let network_seed = sabt_genesis::keyfile::read(&home.network_key())?;
    let key = Arc::new(SecretKey::from_seed(&consensus_seed));
    let own_peer = sabt_genesis::keyfile::peer_id(&network_seed)?;
    let agency = genesis
        .agencies
        .iter()
        .find(|a| a.name == cfg.name)
        .ok_or_else(|| anyhow!("config name {:?} is not an agency in the genesis", cfg.name))?;
    match &agency.validator {
        Some(v) if v.consensus_key == key.public() && v.peer_id == own_peer => {}
        Some(_) => bail!(
            "the keys in {} are not the ones the genesis lists for {} (consensus key {}, peer id {})",
            home.0.join("keys").display(),
            cfg.name,
            key.public(),
            own_peer
        ),
        None => bail!("agency {} runs no validator in the genesis; this version runs validators only", cfg.name),
    }

    std::fs::create_dir_all(home.db()).with_context(|| format!("cannot create {}", home.db().display()))?;
    let store =
        Store::open(&home.db()).with_context(|| format!("cannot open the database in {}", home.db().display()))?;
    match store.genesis_hash()? {
        None => store.set_genesis_hash(&genesis_hash)?,
        Some(h) if h == genesis_hash => {}
        Some(h) => bail!(
            "the database in {} belongs to the chain with genesis {h}, not {genesis_hash}; use another home directory",
            home.db().display()
        ),
    }
    let tip = store.check(Tip::genesis(&genesis)).map_err(|e| {
        anyhow!(
            "refusing to start on an inconsistent store in {}: {e}. Restore it from a backup or move it away to resync from the network",
            home.db().display()
        )
    })?;
    info!(name = %cfg.name, chain = %genesis.chain_id, genesis = %genesis_hash, height = tip.height, "store checked");

    let metrics = Metrics::register(&cfg.name);
    metrics.height.set(i64::try_from(tip.height).unwrap_or(i64::MAX));
    check_clock(&metrics, &tip);
    let registry = Registry::new(&genesis)?.with_build_limit(crate::consensus::codec::MAX_PROPOSED_BLOCK);
    if registry.build_max_bytes() < registry.max_block_bytes() {
        info!(
            genesis_max_block_bytes = registry.max_block_bytes(),
            proposed_max_block_bytes = registry.build_max_bytes(),
            "the genesis allows larger blocks than the consensus network carries; this node accepts them, \
             and proposes blocks of at most {} bytes",
            registry.build_max_bytes()
        );
    }
    let parcel_index = {
        let started = std::time::Instant::now();
        let mut ix = crate::parcels::ParcelIndex::default();
        extend_index(&store, &mut ix, tip.log_size, &BTreeMap::new())?;
        info!(entries = tip.log_size, ms = started.elapsed().as_millis() as u64, "parcel map rebuilt from the log");
        ix
    };
    let shared = Arc::new(Shared {
        name: cfg.name.clone(),
        genesis_hash,
        validator_set,
        registry,
        store,
        metrics,
        forwarder: if cfg.mempool.peers.is_empty() {
            None
        } else {
            let signer = crate::forward::Signer { key: key.clone(), genesis_hash };
            Some(
                crate::forward::Forwarder::start(cfg.mempool.peers.clone(), signer)
                    .context("starting the forwarder")?,
            )
        },
        mempool: Mutex::new(Mempool::new(cfg.mempool.max_txs, cfg.mempool.max_bytes)),
        // Room for a full mempool and the blocks in flight, several times over.
        verified: Mutex::new(VerifiedIds::new(4 * cfg.mempool.max_txs + 4 * crate::consensus::app::MAX_BLOCK_TXS)),
        parcels: RwLock::new(parcel_index),
        tip: RwLock::new(tip),
        ready: AtomicBool::new(false),
        // Until a block is decided with the others, this node may be behind them.
        caught_up: AtomicBool::new(false),
        signed: crate::consensus::record::SignedRecord::open(&home.signed_record())?,
        genesis,
    });

    let mut consensus =
        crate::consensus::engine::start(shared.clone(), &cfg, &home, key, network_seed, &own_peer).await?;
    let (access, mut access_failed) = crate::access::open(&home.access_log())?;
    let access_seq = access.clone();
    let access_flush = access.clone();
    // The API runs on a runtime of its own, its handlers on that runtime's blocking pool: no
    // request, however slow or heavy, takes a thread consensus needs.
    let api = crate::api::serve(shared.clone(), access, cfg.api.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(cfg.api.workers + 4)
        .thread_name("sabt-api")
        .enable_all()
        .build()
        .context("starting the API runtime")?;
    let mut api_task = runtime.spawn(api);
    let api_runtime = ApiRuntime(Some(runtime));
    let mut metrics_task = tokio::spawn(crate::metrics::serve(cfg.metrics.listen));
    let seq_shared = shared.clone();
    let seq_task = tokio::spawn(async move {
        loop {
            seq_shared.metrics.access_log_seq.set(i64::try_from(access_seq.head_seq()).unwrap_or(i64::MAX));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    info!(api = %cfg.api.listen, metrics = %cfg.metrics.listen, "node running");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        _ = sigterm.recv() => { info!("SIGTERM: shutting down"); Ok(()) }
        _ = tokio::signal::ctrl_c() => { info!("SIGINT: shutting down"); Ok(()) }
        r = &mut consensus.app => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow!("the application task failed: {e}")),
        },
        r = &mut api_task => Err(anyhow!("the API server stopped: {:?}", r)),
        r = &mut access_failed => Err(match r {
            Ok(e) => e,
            Err(_) => anyhow!("the access log writer stopped"),
        }),
        r = &mut metrics_task => Err(anyhow!("the metrics server stopped: {:?}", r)),
    };
    shared.set_ready(false);
    seq_task.abort();
    api_task.abort();
    // Every request answered so far has its line on disk before the node exits.
    match tokio::time::timeout(Duration::from_secs(5), access_flush.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "cannot flush the access log"),
        Err(_) => warn!("the access log did not flush within 5 s"),
    }
    metrics_task.abort();
    drop(api_runtime);
    consensus.stop().await;
    if let Err(e) = &result {
        error!(error = format!("{e:#}"), "node stopped on an error");
        if e.chain().any(|c| c.downcast_ref::<crate::store::DbError>().is_some()) {
            error!(
                store = %home.db().display(),
                "the node could not write to its store and stopped rather than acknowledge what it \
                 could not keep; nothing it acknowledged is lost. Check the disk (free space, errors \
                 in the kernel log), then start the node again: it catches up from the other validators"
            );
        }
    } else {
        info!("node stopped");
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        // Lowered first (never below 4,096: other tests in this process open files meanwhile), so
        // that raising it is seen.
        let lowered = (hard / 2).max(4096).min(hard);
        rlimit::setrlimit(rlimit::Resource::NOFILE, lowered, hard).unwrap();
        assert_eq!(rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().0, lowered);
        let limit = raise_open_files(16).unwrap();
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert_eq!(soft, limit);
        // The kernel may cap the soft limit below an unlimited hard one (fs.nr_open).
        assert!(soft == hard || hard == rlimit::INFINITY, "soft {soft}, hard {hard}");
    }
}

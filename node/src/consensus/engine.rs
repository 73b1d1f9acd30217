//! Starting and stopping the consensus engine: its configuration from the node's and the genesis's,
//! its network identity, the signer with its record of signed messages, and the application loop
//! ([`super::app::App`]). The rest of the node sees only [`start`] and [`Running`].

use super::app::App;
use super::codec::{MAX_BROADCAST, MAX_SYNC_RESPONSE, SYNC_BATCH, SabtCodec};
use super::context::SabtContext;
use super::mal::{
    self, Codec as _, ConsensusConfig, ConsensusContext, DiscoveryConfig, EngineBuilder, Keypair, LinearTimeouts,
    NetworkContext, NetworkIdentity, NodeConfig, P2pConfig, PubSubProtocol, RequestContext, SyncContext, ValuePayload,
    ValueSyncConfig, WalContext,
};
use super::record::Recorded;
use super::signing::{Guard, PRECOMMIT, PREVOTE, SabtSigner, SabtVerifier};
use crate::config::Config;
use crate::node::{Home, Shared};
use anyhow::{Context as _, anyhow};
use malachitebft_signing::Signer as _;
use sabt_core::genesis::Genesis;
use sabt_core::sign::SecretKey;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// A running engine and application loop.
pub struct Running {
    /// The application loop: ends with an error when the node must stop (a failed commit, the
    /// engine gone).
    pub app: JoinHandle<anyhow::Result<()>>,
    engine: mal::EngineHandle,
    peers: JoinHandle<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl Running {
    /// Stops the loop and the engine. Every vote is in the write-ahead log before it is sent and
    /// every block is synced before it is acknowledged, so stopping here loses nothing.
    pub async fn stop(self) {
        self.peers.abort();
        self.app.abort();
        if let Err(e) = self.engine.actor.kill_and_wait(Some(Duration::from_secs(5))).await {
            warn!(error = %e, "consensus engine did not stop cleanly");
        }
        self.engine.handle.abort();
    }
}

/// What the signer asks before every vote and proposal: the record of signed messages takes it,
/// or names the other message signed in its slot before, which is signed again instead.
fn guard(shared: Arc<Shared>) -> Guard {
    Arc::new(move |height, round, kind, value| match shared.signed.record(height, round, kind, value) {
        Ok(Recorded::New) => {
            crate::faults::crash(crate::faults::CrashPoint::AfterVoteRecord, height);
            Ok(None)
        }
        Ok(Recorded::Same) => Ok(None),
        Ok(Recorded::Other(before)) => {
            let what = match kind {
                PREVOTE => "prevote",
                PRECOMMIT => "precommit",
                _ => "proposal",
            };
            let name = |v: Option<sabt_core::hash::Hash32>| v.map(|h| h.to_string()).unwrap_or_else(|| "nil".into());
            // A height re-run after its write-ahead log or data was lost (a resync): signing what
            // consensus asks now would be equivocation; the message signed there before is sent
            // again instead.
            warn!(
                height,
                round,
                asked = %name(value),
                signed = %name(before),
                "asked to sign a {what} other than the one this validator signed in this round before; \
                 signing that one again"
            );
            Ok(Some(before))
        }
        Err(e) => Err(format!("cannot record a signed message durably ({e}); refusing to sign it")),
    })
}

/// Reads every entry of the consensus write-ahead log at `path`, if there is one. The engine
/// itself stops on a damaged entry and hangs, waiting for an operator; this says what to do.
fn check_wal(path: &std::path::Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let damaged = |what: String| {
        anyhow!(
            "the consensus write-ahead log {p} is damaged ({what}). Every vote and proposal this validator \
             signed is also in its record of signed messages (signing/record.log), so without the log it \
             still never signs two messages in one round; it may lose the lock it held in this height, which \
             is safe while the other validators are honest. To go on, move it away and start again: \
             mv {p} {p}.damaged",
            p = path.display()
        )
    };
    let mut log = mal::Wal::open(path).map_err(|e| damaged(e.to_string()))?;
    for (i, entry) in log.iter().map_err(|e| damaged(e.to_string()))?.enumerate() {
        entry.map_err(|e| damaged(format!("entry {i}: {e}")))?;
    }
    Ok(())
}

/// Starts the engine for this node and the application loop that answers it.
pub async fn start(
    shared: Arc<Shared>,
    cfg: &Config,
    home: &Home,
    key: Arc<SecretKey>,
    network_seed: [u8; 32],
    own_peer: &str,
) -> anyhow::Result<Running> {
    let chain: Arc<str> = shared.genesis.chain_id.as_str().into();
    let signer = SabtSigner::new(chain.clone(), key.clone(), guard(shared.clone()));
    let mut net_seed = network_seed;
    let keypair = Keypair::ed25519_from_bytes(&mut net_seed).context("network key")?;
    let proof = signer
        .sign_validator_proof(key.public().to_bytes().to_vec(), keypair.public().to_peer_id().to_bytes())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let proof_bytes = SabtCodec.encode(&proof).map_err(|e| anyhow!("{e}"))?;
    let address = signer.address();
    let identity = NetworkIdentity::new_validator(cfg.name.clone(), keypair, address.to_string(), proof_bytes);
    let engine_cfg = engine_config(cfg, &shared.genesis, own_peer)?;
    check_wal(&home.wal())?;
    let c = &cfg.consensus;
    let delta = Duration::from_millis(c.timeout_delta_ms);
    let timeouts = LinearTimeouts {
        propose: Duration::from_millis(c.timeout_propose_ms),
        propose_delta: delta,
        prevote: Duration::from_millis(c.timeout_prevote_ms),
        prevote_delta: delta,
        precommit: Duration::from_millis(c.timeout_precommit_ms),
        precommit_delta: delta,
        rebroadcast: Duration::from_millis(c.timeout_propose_ms + c.timeout_prevote_ms + c.timeout_precommit_ms),
        max_timeout: Duration::from_secs(60),
    };
    let consensus =
        ConsensusContext::new_validator(address, Box::new(SabtVerifier::new(chain.clone())), Box::new(signer));
    let builder = EngineBuilder::new(SabtContext, engine_cfg).with_default_wal(WalContext::new(home.wal(), SabtCodec));
    #[cfg(feature = "fault-injection")]
    let built = match crate::faults::get().engine {
        Some(config) => {
            // Malachite's Byzantine proxy signs its conflicting votes and proposals with this
            // validator's key, past the record that keeps an honest signer from equivocating.
            let liar = SabtSigner::new(chain.clone(), key.clone(), Arc::new(|_, _, _, _| Ok(None)));
            let flip = |h: &sabt_core::hash::Hash32| {
                let mut b = h.0;
                b[0] ^= 0xff;
                sabt_core::hash::Hash32(b)
            };
            let byz = mal::ByzantineContext {
                identity,
                codec: SabtCodec,
                config,
                signer: Box::new(liar),
                address,
                conflicting_value_fn: Some(Box::new(move |v: &super::context::BlockId| {
                    super::context::BlockId(flip(&v.0))
                })),
                conflicting_vote_value_fn: Some(Box::new(move |v: Option<&sabt_core::hash::Hash32>| {
                    v.map(flip).unwrap_or(sabt_core::hash::Hash32([0xee; 32]))
                })),
            };
            builder
                .with_byzantine_network(byz)
                .await
                .map_err(|e| anyhow!("cannot start the Byzantine network proxy: {e:#}"))?
                .with_default_sync(SyncContext::new(SabtCodec))
                .with_default_consensus(consensus)
                .with_default_request(RequestContext::new(64))
                .build()
                .await
        }
        None => {
            builder
                .with_default_network(NetworkContext::new(identity, SabtCodec))
                .with_default_sync(SyncContext::new(SabtCodec))
                .with_default_consensus(consensus)
                .with_default_request(RequestContext::new(64))
                .build()
                .await
        }
    };
    #[cfg(not(feature = "fault-injection"))]
    let built = builder
        .with_default_network(NetworkContext::new(identity, SabtCodec))
        .with_default_sync(SyncContext::new(SabtCodec))
        .with_default_consensus(consensus)
        .with_default_request(RequestContext::new(64))
        .build()
        .await;
    let (channels, engine) = built.map_err(|e| anyhow!("cannot start the consensus engine: {e:#}"))?;
    info!(peer_id = %own_peer, p2p = %cfg.p2p.listen, "consensus engine started");

    let net_requests = channels.net_requests.clone();
    let app = App::new(shared.clone(), key, timeouts)?;
    let app = tokio::spawn(app.run(channels));
    let peers = tokio::spawn(async move {
        loop {
            if let Ok(Some(dump)) = mal::NetworkRequest::dump_state(&net_requests).await {
                shared.metrics.peers.set(i64::try_from(dump.peers.len()).unwrap_or(0));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    Ok(Running { app, engine, peers })
}

/// Malachite's view of the configuration.
#[derive(Debug, Clone)]
struct EngineConfig {
    moniker: String,
    consensus: ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }
    fn consensus(&self) -> &ConsensusConfig {
        &self.consensus
    }
    fn consensus_mut(&mut self) -> &mut ConsensusConfig {
        &mut self.consensus
    }
    fn value_sync(&self) -> &mal::ValueSyncConfig {
        &self.value_sync
    }
    fn value_sync_mut(&mut self) -> &mut mal::ValueSyncConfig {
        &mut self.value_sync
    }
}

fn engine_config(cfg: &Config, genesis: &Genesis, own_peer: &str) -> anyhow::Result<EngineConfig> {
    let listen =
        cfg.p2p.listen.parse().with_context(|| format!("p2p.listen {:?} is not a multiaddr", cfg.p2p.listen))?;
    let mut peers = Vec::new();
    for a in &genesis.agencies {
        let Some(v) = &a.validator else { continue };
        if v.peer_id == own_peer {
            continue;
        }
        for addr in &v.addresses {
            let full = format!("{addr}/p2p/{}", v.peer_id);
            peers.push(
                full.parse().with_context(|| format!("genesis address {full} of {} is not a multiaddr", a.name))?,
            );
        }
    }
    let p2p = P2pConfig {
        listen_addr: listen,
        persistent_peers: peers,
        // The genesis is the allow-list: a peer not listed there is disconnected after Identify.
        persistent_peers_only: true,
        discovery: DiscoveryConfig { enabled: false, max_connections_per_ip: 64, ..Default::default() },
        protocol: PubSubProtocol::Broadcast,
        // What the broadcast carries at most, whatever this says (codec::MAX_BROADCAST): said
        // here too, so that a message over it is refused where it is published, not sent.
        pubsub_max_size: bytesize::ByteSize::b(MAX_BROADCAST as u64),
        // Sync responses travel as RPC answers: room for the largest one.
        rpc_max_size: bytesize::ByteSize::b((MAX_SYNC_RESPONSE + (1 << 20)) as u64),
        ..Default::default()
    };
    Ok(EngineConfig {
        moniker: cfg.name.clone(),
        consensus: ConsensusConfig {
            enabled: true,
            p2p,
            value_payload: ValuePayload::ProposalAndParts,
            ..Default::default()
        },
        value_sync: ValueSyncConfig {
            enabled: true,
            status_update_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_response_size: bytesize::ByteSize::b(MAX_SYNC_RESPONSE as u64),
            batch_size: SYNC_BATCH,
            ..Default::default()
        },
    })
}

//! Consensus: Malachite (Tendermint) through its channel-based application API.
//!
//! Every Malachite type is named in this module and its children only, so an upgrade of the engine
//! touches one place. [`context`] maps Sabt's blocks, votes and keys onto Malachite's `Context`;
//! [`signing`] signs and verifies with `sabt_core::sign`; [`codec`] encodes every engine message
//! through `sabt_core::codec`; [`app`] answers the engine's requests from the node's store.

pub mod app;
pub mod buffer;
#[cfg(feature = "fault-injection")]
pub mod byzantine;
pub mod codec;
pub mod context;
pub mod engine;
pub mod pacing;
pub mod record;
pub mod signing;

/// The metrics registry the engine registers its own metrics in, and the metric types the node's
/// metrics use beside them.
pub mod telemetry {
    pub use malachitebft_app_channel::app::metrics::prometheus::metrics::counter::Counter;
    pub use malachitebft_app_channel::app::metrics::prometheus::metrics::family::Family;
    pub use malachitebft_app_channel::app::metrics::prometheus::metrics::gauge::Gauge;
    pub use malachitebft_app_channel::app::metrics::prometheus::metrics::histogram::{Histogram, exponential_buckets};
    pub use malachitebft_app_channel::app::metrics::{SharedRegistry, export};
}

/// The Malachite names this node uses, gathered in one place.
#[allow(unused_imports)]
pub(crate) mod mal {
    #[cfg(feature = "fault-injection")]
    pub use malachitebft_app_channel::ByzantineContext;
    pub use malachitebft_app_channel::app::config::{
        ConsensusConfig, DiscoveryConfig, NodeConfig, P2pConfig, PubSubProtocol, ValuePayload, ValueSyncConfig,
    };
    pub use malachitebft_app_channel::app::consensus::MisbehaviorEvidence;
    pub use malachitebft_app_channel::app::consensus::{LivenessMsg, VoteExtensionError, VoteExtensionVerdicts};
    pub use malachitebft_app_channel::app::engine::host::{HeightParams, Next, SyncedValueOutcome};
    pub use malachitebft_app_channel::app::net::Multiaddr;
    pub use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
    pub use malachitebft_app_channel::app::types::codec::{Codec, HasEncodedLen};
    pub use malachitebft_app_channel::app::types::core::{
        Address, CommitCertificate, CommitSignature, Context, ExtendedCommitCertificate, ExtendedCommitSignature,
        Extension, Height, LinearTimeouts, NilOrVal, PolkaCertificate, PolkaSignature, Proposal, ProposalPart, Round,
        RoundCertificate, RoundCertificateType, RoundSignature, SignedExtension, SignedMessage, SigningScheme,
        Validator, ValidatorProof, ValidatorSet, Validity, Value, Vote, VoteExtensionPolicy, VoteExtensionScope,
        VoteExtensions, VoteType,
    };
    pub use malachitebft_app_channel::app::types::sync::{
        RawDecidedValue, Request as SyncRequest, Response as SyncResponse, Status as SyncStatus,
    };
    pub use malachitebft_app_channel::app::types::{
        Keypair, LocallyProposedValue, PeerId, ProposedValue, SignedConsensusMsg,
    };
    pub use malachitebft_app_channel::{
        AppMsg, Channels, ConsensusContext, EngineBuilder, EngineHandle, NetworkContext, NetworkIdentity, NetworkMsg,
        NetworkRequest, RequestContext, SyncContext, WalContext,
    };
    pub use malachitebft_sync::{ValueRequest, ValueResponse};
    pub use malachitebft_wal::Log as Wal;
}

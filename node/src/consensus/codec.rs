//! The wire and write-ahead-log encoding of Malachite's messages: each engine type is mapped to a
//! plain serde mirror and encoded with `sabt_core::codec` (postcard, size-bounded, trailing bytes and
//! non-canonical forms refused). One codec value serves the network, sync and the WAL.

use super::context::{Address, BlockId, CheckpointExt, Height, Proposal, ProposalPart, SabtContext, Vote};
use super::mal::{Codec, HasEncodedLen, PeerId};
use super::mal::{
    CommitSignature, ExtendedCommitCertificate, ExtendedCommitSignature, LivenessMsg, NilOrVal, PolkaCertificate,
    PolkaSignature, ProposedValue, RawDecidedValue, Round, RoundCertificate, RoundCertificateType, RoundSignature,
    SignedConsensusMsg, SignedMessage, StreamContent, StreamId, StreamMessage, SyncRequest, SyncResponse, SyncStatus,
    ValidatorProof, Validity, ValueRequest, ValueResponse, VoteType,
};
use bytes::Bytes;
use sabt_core::codec;
use sabt_core::hash::Hash32;
use sabt_core::sign::{PublicKey, Signature};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Largest message decoded: a block plus framing (blocks are at most 16 MiB).
pub const MAX_MESSAGE: usize = 17 << 20;
/// Largest message the consensus broadcast carries. Malachite's Broadcast protocol is
/// libp2p-scatter, which reads every message under its default limit of 4 MiB whatever the
/// configured `pubsub_max_size` says (it builds each connection's handler from its default
/// configuration); a receiver refusing a longer message resets the stream, and the sender then
/// closes the connection. A proposal part larger than this never reaches another validator.
pub const MAX_BROADCAST: usize = 4 << 20;
/// Largest block this node proposes: a proposal part holding it, with the part's framing and the
/// broadcast's topic, fits in [`MAX_BROADCAST`]. The genesis may allow larger blocks (up to
/// 16 MiB); this node accepts them, but builds none larger than it can send.
pub const MAX_PROPOSED_BLOCK: usize = MAX_BROADCAST - (64 << 10);
/// Heights a sync request asks for at once.
pub const SYNC_BATCH: usize = 4;
/// Largest sync response served or decoded: a batch of the largest blocks with their certificates.
/// The serving engine leaves out the values beyond it, so a response never exceeds what its
/// receiver decodes, whatever the genesis's block size.
pub const MAX_SYNC_RESPONSE: usize = SYNC_BATCH * (MAX_MESSAGE + (1 << 20));
const _: () = assert!(MAX_SYNC_RESPONSE <= codec::MAX_WIRE_LEN);

/// A message that does not decode or encode.
#[derive(Debug, thiserror::Error)]
#[error("consensus message {what}: {reason}")]
pub struct WireError {
    what: &'static str,
    reason: String,
}

/// The codec for every Malachite message.
#[derive(Debug, Clone, Copy, Default)]
pub struct SabtCodec;

fn enc<T: Serialize>(value: &T) -> Result<Bytes, WireError> {
    Ok(Bytes::from(codec::encode_body(value)))
}

fn dec<T: Serialize + DeserializeOwned>(what: &'static str, bytes: &[u8], max: usize) -> Result<T, WireError> {
    codec::decode_wire_body(what, bytes, max).map_err(|e| WireError { what, reason: e.to_string() })
}

fn bad(what: &'static str, reason: impl Into<String>) -> WireError {
    WireError { what, reason: reason.into() }
}

fn round_to(r: Round) -> Option<u32> {
    r.as_u32()
}

fn round_from(r: Option<u32>) -> Round {
    r.map(Round::new).unwrap_or(Round::Nil)
}

fn vote_type_to(t: VoteType) -> u8 {
    match t {
        VoteType::Prevote => 0,
        VoteType::Precommit => 1,
    }
}

fn vote_type_from(t: u8) -> Result<VoteType, WireError> {
    match t {
        0 => Ok(VoteType::Prevote),
        1 => Ok(VoteType::Precommit),
        _ => Err(bad("vote", format!("unknown vote type {t}"))),
    }
}

fn nil_to(v: &NilOrVal<Hash32>) -> Option<Hash32> {
    match v {
        NilOrVal::Nil => None,
        NilOrVal::Val(h) => Some(*h),
    }
}

fn nil_from(v: Option<Hash32>) -> NilOrVal<Hash32> {
    v.map(NilOrVal::Val).unwrap_or(NilOrVal::Nil)
}

#[derive(Serialize, Deserialize)]
struct WExt {
    ext: CheckpointExt,
    signature: Signature,
}

#[derive(Serialize, Deserialize)]
struct WVote {
    vote_type: u8,
    height: u64,
    round: Option<u32>,
    value: Option<Hash32>,
    validator: PublicKey,
    extension: Option<WExt>,
}

impl WVote {
    fn from(v: &Vote) -> WVote {
        WVote {
            vote_type: vote_type_to(v.vote_type),
            height: v.height.0,
            round: round_to(v.round),
            value: nil_to(&v.value),
            validator: v.validator.0,
            extension: v.extension.as_ref().map(|e| WExt { ext: e.message, signature: e.signature }),
        }
    }

    fn into_vote(self) -> Result<Vote, WireError> {
        Ok(Vote {
            vote_type: vote_type_from(self.vote_type)?,
            height: Height(self.height),
            round: round_from(self.round),
            value: nil_from(self.value),
            validator: Address(self.validator),
            extension: self.extension.map(|e| SignedMessage::new(e.ext, e.signature)),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct WProposal {
    height: u64,
    round: Option<u32>,
    value: Hash32,
    pol_round: Option<u32>,
    proposer: PublicKey,
}

#[derive(Serialize, Deserialize)]
enum WSigned {
    Vote(WVote, Signature),
    Proposal(WProposal, Signature),
}

fn signed_to(msg: &SignedConsensusMsg<SabtContext>) -> WSigned {
    match msg {
        SignedConsensusMsg::Vote(v) => WSigned::Vote(WVote::from(&v.message), v.signature),
        SignedConsensusMsg::Proposal(p) => WSigned::Proposal(
            WProposal {
                height: p.message.height.0,
                round: round_to(p.message.round),
                value: p.message.value.0,
                pol_round: round_to(p.message.pol_round),
                proposer: p.message.proposer.0,
            },
            p.signature,
        ),
    }
}

fn signed_from(w: WSigned) -> Result<SignedConsensusMsg<SabtContext>, WireError> {
    Ok(match w {
        WSigned::Vote(v, s) => SignedConsensusMsg::Vote(SignedMessage::new(v.into_vote()?, s)),
        WSigned::Proposal(p, s) => SignedConsensusMsg::Proposal(SignedMessage::new(
            Proposal {
                height: Height(p.height),
                round: round_from(p.round),
                value: BlockId(p.value),
                pol_round: round_from(p.pol_round),
                proposer: Address(p.proposer),
            },
            s,
        )),
    })
}

#[derive(Serialize, Deserialize)]
struct WPolka {
    height: u64,
    round: Option<u32>,
    value: Hash32,
    signatures: Vec<(PublicKey, Signature)>,
}

fn polka_to(c: &PolkaCertificate<SabtContext>) -> WPolka {
    WPolka {
        height: c.height.0,
        round: round_to(c.round),
        value: c.value_id,
        signatures: c.polka_signatures.iter().map(|s| (s.address.0, s.signature)).collect(),
    }
}

fn polka_from(w: WPolka) -> PolkaCertificate<SabtContext> {
    PolkaCertificate {
        height: Height(w.height),
        round: round_from(w.round),
        value_id: w.value,
        polka_signatures: w.signatures.into_iter().map(|(a, s)| PolkaSignature::new(Address(a), s)).collect(),
    }
}

#[derive(Serialize, Deserialize)]
struct WRoundSig {
    vote_type: u8,
    value: Option<Hash32>,
    address: PublicKey,
    signature: Signature,
}

#[derive(Serialize, Deserialize)]
struct WRoundCert {
    height: u64,
    round: Option<u32>,
    skip: bool,
    signatures: Vec<WRoundSig>,
}

#[derive(Serialize, Deserialize)]
enum WLiveness {
    Vote(Box<WVote>, Signature),
    Polka(WPolka),
    Skip(WRoundCert),
}

#[derive(Serialize, Deserialize)]
struct WStream {
    stream_id: Vec<u8>,
    sequence: u64,
    content: Option<ProposalPart>,
}

#[derive(Serialize, Deserialize)]
struct WProof {
    public_key: Vec<u8>,
    peer_id: Vec<u8>,
    signature: Signature,
}

#[derive(Serialize, Deserialize)]
struct WStatus {
    peer_id: Vec<u8>,
    tip_height: u64,
    history_min_height: u64,
}

#[derive(Serialize, Deserialize)]
struct WCommitSig {
    address: PublicKey,
    signature: Signature,
    extension: Option<WExt>,
}

#[derive(Serialize, Deserialize)]
struct WCert {
    height: u64,
    round: Option<u32>,
    value: Hash32,
    signatures: Vec<WCommitSig>,
}

fn cert_to(c: &ExtendedCommitCertificate<SabtContext>) -> WCert {
    WCert {
        height: c.height.0,
        round: round_to(c.round),
        value: c.value_id,
        signatures: c
            .commit_signatures
            .iter()
            .map(|s| WCommitSig {
                address: s.address.0,
                signature: s.signature,
                extension: s.extension.as_ref().map(|e| WExt { ext: e.message, signature: e.signature }),
            })
            .collect(),
    }
}

fn cert_from(w: WCert) -> ExtendedCommitCertificate<SabtContext> {
    ExtendedCommitCertificate {
        height: Height(w.height),
        round: round_from(w.round),
        value_id: w.value,
        commit_signatures: w
            .signatures
            .into_iter()
            .map(|s| {
                ExtendedCommitSignature::new(
                    Address(s.address),
                    s.signature,
                    s.extension.map(|e| SignedMessage::new(e.ext, e.signature)),
                )
            })
            .collect(),
    }
}

#[derive(Serialize, Deserialize)]
struct WDecided {
    value: Vec<u8>,
    certificate: WCert,
}

#[derive(Serialize, Deserialize)]
struct WResponse {
    start_height: u64,
    values: Vec<WDecided>,
}

#[derive(Serialize, Deserialize)]
struct WProposed {
    height: u64,
    round: Option<u32>,
    valid_round: Option<u32>,
    proposer: PublicKey,
    value: Hash32,
    valid: bool,
}

macro_rules! codec_via {
    ($t:ty, $what:literal, $to:expr, $from:expr) => {
        codec_via!($t, $what, MAX_MESSAGE, $to, $from);
    };
    ($t:ty, $what:literal, $max:expr, $to:expr, $from:expr) => {
        impl Codec<$t> for SabtCodec {
            type Error = WireError;

            fn decode(&self, bytes: Bytes) -> Result<$t, WireError> {
                let wire = dec($what, &bytes, $max)?;
                #[allow(clippy::redundant_closure_call)]
                ($from)(wire)
            }

            fn encode(&self, msg: &$t) -> Result<Bytes, WireError> {
                #[allow(clippy::redundant_closure_call)]
                enc(&($to)(msg))
            }
        }
    };
}

codec_via!(ProposalPart, "proposal part", |p: &ProposalPart| p.clone(), |w: ProposalPart| Ok(w));

codec_via!(SignedConsensusMsg<SabtContext>, "signed consensus message", signed_to, signed_from);

codec_via!(
    LivenessMsg<SabtContext>,
    "liveness message",
    |m: &LivenessMsg<SabtContext>| match m {
        LivenessMsg::Vote(v) => WLiveness::Vote(Box::new(WVote::from(&v.message)), v.signature),
        LivenessMsg::PolkaCertificate(c) => WLiveness::Polka(polka_to(c)),
        LivenessMsg::SkipRoundCertificate(c) => WLiveness::Skip(WRoundCert {
            height: c.height.0,
            round: round_to(c.round),
            skip: matches!(c.cert_type, RoundCertificateType::Skip),
            signatures: c
                .round_signatures
                .iter()
                .map(|s| WRoundSig {
                    vote_type: vote_type_to(s.vote_type),
                    value: nil_to(&s.value_id),
                    address: s.address.0,
                    signature: s.signature,
                })
                .collect(),
        }),
    },
    |w: WLiveness| -> Result<LivenessMsg<SabtContext>, WireError> {
        Ok(match w {
            WLiveness::Vote(v, s) => LivenessMsg::Vote(SignedMessage::new(v.into_vote()?, s)),
            WLiveness::Polka(p) => LivenessMsg::PolkaCertificate(polka_from(p)),
            WLiveness::Skip(c) => {
                let mut signatures = Vec::with_capacity(c.signatures.len());
                for s in c.signatures {
                    signatures.push(RoundSignature::new(
                        vote_type_from(s.vote_type)?,
                        nil_from(s.value),
                        Address(s.address),
                        s.signature,
                    ));
                }
                LivenessMsg::SkipRoundCertificate(RoundCertificate {
                    height: Height(c.height),
                    round: round_from(c.round),
                    cert_type: if c.skip { RoundCertificateType::Skip } else { RoundCertificateType::Precommit },
                    round_signatures: signatures,
                })
            }
        })
    }
);

codec_via!(
    StreamMessage<ProposalPart>,
    "proposal stream message",
    |m: &StreamMessage<ProposalPart>| WStream {
        stream_id: m.stream_id.to_bytes().to_vec(),
        sequence: m.sequence,
        content: match &m.content {
            StreamContent::Data(p) => Some(p.clone()),
            StreamContent::Fin => None,
        },
    },
    |w: WStream| -> Result<StreamMessage<ProposalPart>, WireError> {
        if w.stream_id.len() > 64 {
            return Err(bad("proposal stream message", "stream id longer than 64 bytes"));
        }
        Ok(StreamMessage::new(
            StreamId::new(Bytes::from(w.stream_id)),
            w.sequence,
            match w.content {
                Some(p) => StreamContent::Data(p),
                None => StreamContent::Fin,
            },
        ))
    }
);

codec_via!(
    ValidatorProof<SabtContext>,
    "validator proof",
    |p: &ValidatorProof<SabtContext>| WProof {
        public_key: p.public_key.clone(),
        peer_id: p.peer_id.clone(),
        signature: p.signature
    },
    |w: WProof| -> Result<ValidatorProof<SabtContext>, WireError> {
        Ok(ValidatorProof::new(w.public_key, w.peer_id, w.signature))
    }
);

codec_via!(
    SyncStatus<SabtContext>,
    "sync status",
    |s: &SyncStatus<SabtContext>| WStatus {
        peer_id: s.peer_id.to_bytes(),
        tip_height: s.tip_height.0,
        history_min_height: s.history_min_height.0
    },
    |w: WStatus| -> Result<SyncStatus<SabtContext>, WireError> {
        Ok(SyncStatus {
            peer_id: PeerId::from_bytes(&w.peer_id).map_err(|e| bad("sync status", e.to_string()))?,
            tip_height: Height(w.tip_height),
            history_min_height: Height(w.history_min_height),
        })
    }
);

codec_via!(
    SyncRequest<SabtContext>,
    "sync request",
    |r: &SyncRequest<SabtContext>| match r {
        SyncRequest::ValueRequest(v) => (v.range.start().0, v.range.end().0),
    },
    |(start, end): (u64, u64)| -> Result<SyncRequest<SabtContext>, WireError> {
        Ok(SyncRequest::ValueRequest(ValueRequest::new(Height(start)..=Height(end))))
    }
);

codec_via!(
    SyncResponse<SabtContext>,
    "sync response",
    MAX_SYNC_RESPONSE,
    |r: &SyncResponse<SabtContext>| match r {
        SyncResponse::ValueResponse(v) => WResponse {
            start_height: v.start_height.0,
            values: v
                .values
                .iter()
                .map(|d| WDecided { value: d.value_bytes.to_vec(), certificate: cert_to(&d.certificate) })
                .collect(),
        },
    },
    |w: WResponse| -> Result<SyncResponse<SabtContext>, WireError> {
        Ok(SyncResponse::ValueResponse(ValueResponse::new(
            Height(w.start_height),
            w.values
                .into_iter()
                .map(|d| RawDecidedValue::new(Bytes::from(d.value), cert_from(d.certificate)))
                .collect(),
        )))
    }
);

impl HasEncodedLen<SyncResponse<SabtContext>> for SabtCodec {
    fn encoded_len(&self, msg: &SyncResponse<SabtContext>) -> Result<usize, WireError> {
        Ok(<Self as Codec<SyncResponse<SabtContext>>>::encode(self, msg)?.len())
    }
}

codec_via!(
    ProposedValue<SabtContext>,
    "proposed value",
    |p: &ProposedValue<SabtContext>| WProposed {
        height: p.height.0,
        round: round_to(p.round),
        valid_round: round_to(p.valid_round),
        proposer: p.proposer.0,
        value: p.value.0,
        valid: p.validity.is_valid(),
    },
    |w: WProposed| -> Result<ProposedValue<SabtContext>, WireError> {
        Ok(ProposedValue {
            height: Height(w.height),
            round: round_from(w.round),
            valid_round: round_from(w.valid_round),
            proposer: Address(w.proposer),
            value: BlockId(w.value),
            validity: Validity::from_bool(w.valid),
        })
    }
);

codec_via!(PolkaCertificate<SabtContext>, "polka certificate", polka_to, |w: WPolka| Ok(polka_from(w)));

/// The certificate Malachite builds, as Sabt stores it (see `sabt_core::block::Commit`).
pub fn commit_from_certificate(
    cert: &super::mal::CommitCertificate<SabtContext>,
    extensions: &[(Address, super::mal::SignedExtension<SabtContext>)],
) -> Option<sabt_core::block::Commit> {
    Some(sabt_core::block::Commit {
        height: cert.height.0,
        round: cert.round.as_u32()?,
        block: cert.value_id,
        signatures: cert
            .commit_signatures
            .iter()
            .map(|s: &CommitSignature<SabtContext>| sabt_core::block::CommitSig {
                validator: s.address.0,
                signature: s.signature,
                checkpoint: extensions.iter().find(|(a, _)| *a == s.address).map(|(_, e)| e.signature),
            })
            .collect(),
    })
}

/// A stored commit as the certificate sync serves, with each committer's checkpoint cosignature as
/// its vote extension over `ext`.
pub fn certificate_from_commit(
    commit: &sabt_core::block::Commit,
    ext: CheckpointExt,
) -> ExtendedCommitCertificate<SabtContext> {
    ExtendedCommitCertificate {
        height: Height(commit.height),
        round: Round::new(commit.round),
        value_id: commit.block,
        commit_signatures: commit
            .signatures
            .iter()
            .map(|s| {
                ExtendedCommitSignature::new(
                    Address(s.validator),
                    s.signature,
                    s.checkpoint.map(|c| SignedMessage::new(ext, c)),
                )
            })
            .collect(),
    }
}

/// Keeps `Arc` in scope for the part type's field.
#[allow(dead_code)]
type PartBytes = Arc<Vec<u8>>;

#[cfg(test)]
mod tests {
    use super::*;
    use sabt_core::sign::SecretKey;

    #[test]
    fn messages_round_trip() {
        let key = SecretKey::from_seed(&[3; 32]);
        let vote = Vote {
            vote_type: VoteType::Precommit,
            height: Height(7),
            round: Round::new(2),
            value: NilOrVal::Val(Hash32([5; 32])),
            validator: Address(key.public()),
            extension: Some(SignedMessage::new(CheckpointExt { size: 9, root: Hash32([1; 32]) }, Signature([4; 64]))),
        };
        let msg = SignedConsensusMsg::<SabtContext>::Vote(SignedMessage::new(vote, Signature([8; 64])));
        let bytes = Codec::<SignedConsensusMsg<SabtContext>>::encode(&SabtCodec, &msg).unwrap();
        let back: SignedConsensusMsg<SabtContext> = SabtCodec.decode(bytes.clone()).unwrap();
        assert_eq!(back, msg);
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(Codec::<SignedConsensusMsg<SabtContext>>::decode(&SabtCodec, Bytes::from(long)).is_err());
    }

    #[test]
    fn a_part_with_the_largest_block_this_node_proposes_fits_the_broadcast() {
        let key = SecretKey::from_seed(&[3; 32]);
        let part = ProposalPart {
            height: u64::MAX,
            round: u32::MAX,
            pol_round: Some(u32::MAX),
            proposer: key.public(),
            block: Arc::new(vec![1u8; MAX_PROPOSED_BLOCK]),
            signature: Signature([2; 64]),
        };
        let msg = StreamMessage::new(StreamId::new(Bytes::from(vec![9u8; 64])), u64::MAX, StreamContent::Data(part));
        let bytes = Codec::<StreamMessage<ProposalPart>>::encode(&SabtCodec, &msg).unwrap();
        // libp2p-scatter frames a message as one byte and its topic (at most 64 bytes).
        assert!(bytes.len() + 1 + 64 <= MAX_BROADCAST, "{} bytes", bytes.len());
    }

    #[test]
    fn a_proposal_part_with_the_largest_block_decodes() {
        let key = SecretKey::from_seed(&[3; 32]);
        // A block of 16 MiB, the most a genesis allows: with its framing the part is larger.
        let part = ProposalPart {
            height: 1,
            round: 0,
            pol_round: None,
            proposer: key.public(),
            block: Arc::new(vec![1u8; 16 << 20]),
            signature: Signature([2; 64]),
        };
        let msg = StreamMessage::new(StreamId::new(Bytes::from_static(b"s")), 0, StreamContent::Data(part));
        let bytes = Codec::<StreamMessage<ProposalPart>>::encode(&SabtCodec, &msg).unwrap();
        assert!(bytes.len() > 16 << 20);
        let back: StreamMessage<ProposalPart> = SabtCodec.decode(bytes).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn a_sync_response_of_a_full_batch_of_the_largest_blocks_decodes() {
        // Four blocks of 16 MiB each (the largest a genesis allows), each with a certificate.
        let cert = ExtendedCommitCertificate::<SabtContext> {
            height: Height(1),
            round: Round::new(0),
            value_id: Hash32([1; 32]),
            commit_signatures: vec![],
        };
        let big = vec![7u8; 16 << 20];
        let values = (0..SYNC_BATCH).map(|_| RawDecidedValue::new(Bytes::from(big.clone()), cert.clone())).collect();
        let msg = SyncResponse::ValueResponse(ValueResponse::new(Height(1), values));
        let bytes = Codec::<SyncResponse<SabtContext>>::encode(&SabtCodec, &msg).unwrap();
        assert!(bytes.len() > SYNC_BATCH * (16 << 20) && bytes.len() <= MAX_SYNC_RESPONSE);
        let back: SyncResponse<SabtContext> = SabtCodec.decode(bytes).unwrap();
        let SyncResponse::ValueResponse(v) = back;
        assert_eq!(v.values.len(), SYNC_BATCH);
        assert!(v.values.iter().all(|d| d.value_bytes.len() == 16 << 20));
    }
}

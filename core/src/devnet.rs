//! A whole chain in one process, without a network: a genesis with validators whose keys come from
//! given seeds, a log that entries are appended to, checkpoints cosigned by chosen validators, and
//! proof bundles issued from it.
//!
//! It runs exactly the core code the node runs (canonical encoding, RFC 9162 log, C2SP checkpoints,
//! bundle format), so the demo, the worked example in docs/PROOFS.md and the tests of the verifier
//! exercise real proofs. It has no consensus: it is not a node.

use crate::bundle::{BUNDLE_FORMAT, BUNDLE_VERSION, BatchProof, EntryProof, ProofBundle};
use crate::checkpoint::{Checkpoint, SignedNote, cosign};
use crate::codec;
use crate::entry::{ArchiveRecord, BatchAnchor, EntryBody, LogEntry};
use crate::genesis::{Agency, AgencyRole, GENESIS_FORMAT, Genesis, Params, ValidatorInfo};
use crate::hash::{self, Hash32};
use crate::merkle::{Blake3, MemoryTree, ProofError};
use crate::sign::SecretKey;

/// A single-process chain.
#[derive(Debug)]
pub struct Devnet {
    /// The genesis.
    pub genesis: Genesis,
    validator_keys: Vec<SecretKey>,
    /// The clerk key that signs entries.
    pub clerk: SecretKey,
    log: MemoryTree<Blake3>,
    entries: Vec<Vec<u8>>,
    batches: Vec<Option<(MemoryTree<Blake3>, Vec<ArchiveRecord>)>>,
}

impl Devnet {
    /// A chain `chain_id` whose `seeds.len()` validators (agencies `agency-1`, …) have keys from
    /// `seeds`; the clerk's key comes from `clerk_seed`; admin keys are derived from the validator
    /// seeds in the `sabt/devnet-admin/v1` domain.
    pub fn new(chain_id: &str, genesis_time_ms: u64, seeds: &[[u8; 32]], clerk_seed: [u8; 32]) -> Self {
        let validator_keys: Vec<SecretKey> = seeds.iter().map(SecretKey::from_seed).collect();
        let agencies = validator_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let admin_seed = hash::hash(hash::Domain::devnet_admin(), &k.seed()[..]).0;
                Agency {
                    name: format!("agency-{}", i + 1),
                    roles: vec![AgencyRole::Archive],
                    admin_key: SecretKey::from_seed(&admin_seed).public(),
                    validator: Some(ValidatorInfo {
                        consensus_key: k.public(),
                        peer_id: format!("devnet{}", i + 1),
                        addresses: vec![format!("/ip4/127.0.0.1/tcp/{}", 27000 + i)],
                        power: 1,
                    }),
                }
            })
            .collect();
        let genesis = Genesis {
            format: GENESIS_FORMAT,
            chain_id: chain_id.to_string(),
            genesis_time_ms,
            agencies,
            params: Params::default(),
        };
        Devnet {
            genesis,
            validator_keys,
            clerk: SecretKey::from_seed(&clerk_seed),
            log: MemoryTree::new(),
            entries: Vec::new(),
            batches: Vec::new(),
        }
    }

    fn push(&mut self, height: u64, time_ms: u64, body: EntryBody) -> u64 {
        let tx = hash::hash(hash::TX, &codec::encode_body(&(&body, self.log.size())));
        let entry = LogEntry { height, time_ms, tx, signer: self.clerk.public(), body };
        let bytes = codec::encode(&entry);
        self.entries.push(bytes.clone());
        self.log.push(&bytes)
    }

    /// Appends one record; returns its log index.
    pub fn append_record(&mut self, height: u64, time_ms: u64, record: ArchiveRecord) -> u64 {
        self.batches.push(None);
        self.push(height, time_ms, EntryBody::Record(record))
    }

    /// Appends a batch of records as one entry; returns its log index.
    pub fn append_batch(&mut self, height: u64, time_ms: u64, records: Vec<ArchiveRecord>) -> u64 {
        let mut tree = MemoryTree::<Blake3>::new();
        for r in &records {
            tree.push(&codec::encode(r));
        }
        let kind = records.first().map(|r| r.kind).unwrap_or(crate::entry::RecordKind::Other);
        let body = EntryBody::Batch(BatchAnchor { root: tree.root(), size: tree.size(), kind });
        self.batches.push(Some((tree, records)));
        self.push(height, time_ms, body)
    }

    /// The admin key of agency `i` (derived from its validator seed).
    pub fn admin_key(&self, i: usize) -> SecretKey {
        let seed = self.validator_keys.get(i).map(|k| *k.seed()).unwrap_or([0; 32]);
        SecretKey::from_seed(&hash::hash(hash::Domain::devnet_admin(), &seed[..]).0)
    }

    /// Number of log entries.
    pub fn size(&self) -> u64 {
        self.log.size()
    }

    /// The checkpoint at the current size.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { origin: self.genesis.chain_id.clone(), size: self.log.size(), root: self.log.root() }
    }

    /// The current checkpoint as a note cosigned by the validators at positions `signers`.
    pub fn cosigned_checkpoint(&self, signers: &[usize]) -> String {
        let cp = self.checkpoint();
        let signatures = signers
            .iter()
            .filter_map(|&i| {
                let name = &self.genesis.agencies.get(i)?.name;
                Some(cosign(&cp, name, self.validator_keys.get(i)?))
            })
            .collect();
        SignedNote { text: cp.body(), signatures }.render()
    }

    /// A proof bundle for entry `index` (and, for a batch, record `batch_index` within it), at the
    /// current checkpoint cosigned by `signers`.
    pub fn bundle(&self, index: u64, batch_index: Option<u64>, signers: &[usize]) -> Result<ProofBundle, ProofError> {
        let size = self.log.size();
        let pos = usize::try_from(index).ok().filter(|&p| p < self.entries.len());
        let pos = pos.ok_or(ProofError::IndexOutOfRange { index, size })?;
        let entry_bytes = self.entries[pos].clone();
        let (record, batch) = match (&self.batches[pos], batch_index) {
            (None, _) => {
                let entry: LogEntry =
                    codec::decode(&entry_bytes).map_err(|_| ProofError::IndexOutOfRange { index, size })?;
                match entry.body {
                    EntryBody::Record(r) => (r, None),
                    _ => return Err(ProofError::IndexOutOfRange { index, size }),
                }
            }
            (Some((tree, records)), Some(bi)) => {
                let r = usize::try_from(bi).ok().and_then(|b| records.get(b)).cloned();
                let r = r.ok_or(ProofError::IndexOutOfRange { index: bi, size: tree.size() })?;
                let path = tree.inclusion_proof(bi, tree.size())?;
                (r, Some(BatchProof { index: bi, size: tree.size(), path }))
            }
            (Some((tree, _)), None) => return Err(ProofError::IndexOutOfRange { index: 0, size: tree.size() }),
        };
        Ok(ProofBundle {
            format: BUNDLE_FORMAT.to_string(),
            version: BUNDLE_VERSION,
            chain_id: self.genesis.chain_id.clone(),
            genesis_hash: self.genesis.hash(),
            record,
            batch,
            entry: EntryProof { index, encoded: entry_bytes, path: self.log.inclusion_proof(index, size)? },
            checkpoint: self.cosigned_checkpoint(signers),
            validator_set_updates: Vec::new(),
        })
    }

    /// The root of the log at `size`.
    pub fn root_at(&self, size: u64) -> Result<Hash32, ProofError> {
        self.log.root_at(size)
    }
}

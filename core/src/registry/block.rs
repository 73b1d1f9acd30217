//! Blocks: the tip a block extends, executing a proposed or decided block to exactly its header,
//! and building one as a proposer does.
//!
//! A proposer leaves out every transaction the rules refuse (and reports it); only a failure of
//! its own storage stops it. Executing a block refuses the whole block if any transaction in it is
//! refused or any header field differs from what execution gives.

use super::{At, BlockError, CheckError, Ledger, Registry, SignatureCache, Staged, TxError};
use crate::block::{Block, BlockHeader, tx_root};
use crate::codec;
use crate::entry::LogEntry;
use crate::genesis::Genesis;
use crate::hash::Hash32;
use crate::merkle::{self, Blake3, StoreError};
use crate::sign::PublicKey;
use crate::tx::SignedTx;
use serde::{Deserialize, Serialize};

/// The chain's state before a block: what the next header must extend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tip {
    /// Height of the last block (0 before the first).
    pub height: u64,
    /// Hash of the last block (the genesis hash before the first).
    pub block_hash: Hash32,
    /// Time of the last block (the genesis time before the first).
    pub time_ms: u64,
    /// Log size.
    pub log_size: u64,
    /// Log root.
    pub log_root: Hash32,
    /// State root.
    pub state_root: Hash32,
}

impl Tip {
    /// The tip of an empty chain.
    pub fn genesis(genesis: &Genesis) -> Tip {
        Tip {
            height: 0,
            block_hash: genesis.hash(),
            time_ms: genesis.genesis_time_ms,
            log_size: 0,
            log_root: merkle::root::<Blake3, _>(&merkle::MemoryStore::new(), 0).unwrap_or_default(),
            state_root: Hash32::ZERO,
        }
    }

    /// The tip after `header`.
    pub fn after(header: &BlockHeader) -> Tip {
        Tip {
            height: header.height,
            block_hash: header.hash(),
            time_ms: header.time_ms,
            log_size: header.log_size,
            log_root: header.log_root,
            state_root: header.state_root,
        }
    }
}

/// What executing transactions produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// Log size after.
    pub log_size: u64,
    /// Log root after.
    pub log_root: Hash32,
    /// State root after.
    pub state_root: Hash32,
    /// Entries appended, with their indices.
    pub entries: Vec<(u64, LogEntry)>,
}

/// A block a proposer built.
#[derive(Debug, Clone)]
pub struct Built {
    /// The block.
    pub block: crate::block::Block,
    /// Its effects.
    pub executed: Executed,
    /// Candidates left out, with the reason.
    pub refused: Vec<(Hash32, TxError)>,
}

impl Registry {
    /// Executes `txs` at `height` and `time_ms` on top of `tip`: every transaction must pass
    /// ([`BlockError::Tx`] names the first that does not).
    pub fn execute<L: Ledger + ?Sized>(
        &self,
        ledger: &mut L,
        tip: &Tip,
        (height, time_ms): (u64, u64),
        txs: &[SignedTx],
        cache: &dyn SignatureCache,
    ) -> Result<Executed, BlockError> {
        let mut log_size = tip.log_size;
        let mut entries = Vec::with_capacity(txs.len());
        let mut staged = Staged::new(ledger);
        for (position, stx) in txs.iter().enumerate() {
            let refuse = |error| BlockError::Tx { height, position, id: stx.id(), error: Box::new(error) };
            self.check_stateless(stx, cache).map_err(refuse)?;
            let plan = match self.check(staged.view(), stx, At { height, time_ms, index: log_size }) {
                Ok(plan) => plan,
                Err(CheckError::Refused(e)) => return Err(refuse(e)),
                Err(CheckError::Store(e)) => return Err(BlockError::Store(e)),
            };
            let (index, entry) = staged.apply(plan)?;
            entries.push((index, entry));
            log_size = index + 1;
        }
        let state_root = staged.finish(tip.state_root)?;
        let log_root = merkle::root::<Blake3, L>(ledger, log_size)?;
        Ok(Executed { log_size, log_root, state_root, entries })
    }

    /// Executes a proposed or decided block on top of `tip` and checks that its header is exactly
    /// what execution gives. `ledger` must be a write set over the state at `tip`.
    pub fn execute_block<L: Ledger + ?Sized>(
        &self,
        ledger: &mut L,
        tip: &Tip,
        block: &Block,
        cache: &dyn SignatureCache,
    ) -> Result<Executed, BlockError> {
        let h = &block.header;
        let size = codec::encode(block).len();
        if size > self.max_block_bytes {
            return Err(BlockError::TooLarge { height: h.height, size, limit: self.max_block_bytes });
        }
        let field = |field: &'static str, expected: String, got: String| BlockError::Header {
            height: h.height,
            field,
            expected,
            got,
        };
        if h.chain_id != self.chain_id {
            return Err(field("chain_id", self.chain_id.clone(), h.chain_id.clone()));
        }
        if h.height != tip.height + 1 {
            return Err(field("height", (tip.height + 1).to_string(), h.height.to_string()));
        }
        if h.prev_hash != tip.block_hash {
            return Err(field("prev_hash", tip.block_hash.to_hex(), h.prev_hash.to_hex()));
        }
        if h.time_ms <= tip.time_ms {
            return Err(field("time_ms", format!("more than {}", tip.time_ms), h.time_ms.to_string()));
        }
        if h.validator_set_hash != self.validator_set_hash {
            return Err(field("validator_set_hash", self.validator_set_hash.to_hex(), h.validator_set_hash.to_hex()));
        }
        let root = tx_root(&block.txs);
        if h.tx_root != root {
            return Err(field("tx_root", root.to_hex(), h.tx_root.to_hex()));
        }
        if usize::try_from(h.tx_count).ok() != Some(block.txs.len()) {
            return Err(field("tx_count", block.txs.len().to_string(), h.tx_count.to_string()));
        }
        let ex = self.execute(ledger, tip, (h.height, h.time_ms), &block.txs, cache)?;
        if h.log_size != ex.log_size {
            return Err(field("log_size", ex.log_size.to_string(), h.log_size.to_string()));
        }
        if h.log_root != ex.log_root {
            return Err(field("log_root", ex.log_root.to_hex(), h.log_root.to_hex()));
        }
        if h.state_root != ex.state_root {
            return Err(field("state_root", ex.state_root.to_hex(), h.state_root.to_hex()));
        }
        Ok(ex)
    }

    /// Builds the next block on top of `tip` from `candidates`, in order, as a proposer does:
    /// transactions the rules refuse are left out (and returned with the reason), and filling
    /// stops before the block would exceed the size limit. Only a storage failure stops the
    /// build. `ledger` must be a write set over the state at `tip`; it ends holding the block's
    /// effects.
    pub fn build_block<L: Ledger + ?Sized>(
        &self,
        ledger: &mut L,
        tip: &Tip,
        time_ms: u64,
        proposer: PublicKey,
        candidates: impl IntoIterator<Item = SignedTx>,
        cache: &dyn SignatureCache,
    ) -> Result<Built, StoreError> {
        let height = tip.height + 1;
        let mut log_size = tip.log_size;
        let mut entries = Vec::new();
        let mut txs = Vec::new();
        let mut refused = Vec::new();
        let mut staged = Staged::new(ledger);
        // Room for the header and the length prefixes.
        let mut bytes = 2048usize;
        for stx in candidates {
            let size = codec::encode(&stx).len();
            if bytes + size > self.build_max_bytes {
                break;
            }
            let checked = match self.check_stateless(&stx, cache) {
                Err(e) => Err(e),
                Ok(()) => match self.check(staged.view(), &stx, At { height, time_ms, index: log_size }) {
                    Ok(plan) => Ok(plan),
                    Err(CheckError::Refused(e)) => Err(e),
                    Err(CheckError::Store(e)) => return Err(e),
                },
            };
            let plan = match checked {
                Ok(plan) => plan,
                Err(e) => {
                    refused.push((stx.id(), e));
                    continue;
                }
            };
            let (index, entry) = staged.apply(plan)?;
            bytes += size;
            entries.push((index, entry));
            log_size = index + 1;
            txs.push(stx);
        }
        let state_root = staged.finish(tip.state_root)?;
        let log_root = merkle::root::<Blake3, L>(ledger, log_size)?;
        let header = BlockHeader {
            chain_id: self.chain_id.clone(),
            height,
            time_ms,
            prev_hash: tip.block_hash,
            tx_root: tx_root(&txs),
            tx_count: u32::try_from(txs.len()).unwrap_or(u32::MAX),
            log_size,
            log_root,
            state_root,
            validator_set_hash: self.validator_set_hash,
            proposer,
        };
        Ok(Built {
            block: Block { header, txs },
            executed: Executed { log_size, log_root, state_root, entries },
            refused,
        })
    }
}

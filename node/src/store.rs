//! The node's durable store (RocksDB): blocks, commit certificates, the registry log, the state
//! map, and the chain tip.
//!
//! A block is executed into a [`WriteSet`], an in-memory overlay that reads its own writes and falls
//! back to the database, and committed with [`Store::commit`] as **one synced write batch**: the
//! block, its commit certificate, every log and state node it adds, its transaction index and the
//! new tip land together or not at all. Nothing is acknowledged before that write returns; an error
//! from it is fatal to the node.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `blocks` | height (u64 BE) | `encode(Block)` |
//! | `commits` | height | `encode(Commit)` |
//! | `log` | tile level (u8) ‖ tile (u64 BE) ‖ level in tile (u8) ‖ offset (u8) | node hash (32 bytes) |
//! | `entries` | log index (u64 BE) | `encode(LogEntry)` |
//! | `smt` | depth (u16 BE) ‖ prefix (32 bytes) | `encode_body(SmtNode)` |
//! | `state` | state key (32 bytes) | value bytes |
//! | `txs` | transaction id (32 bytes) | height (u64 BE) ‖ position (u32 BE) |
//! | `proposals` | height ‖ round (u32 BE) | this node's own proposed block, for re-proposal after a crash |
//! | `consensus` | `r` ‖ height ‖ block hash | a block of the next height this node found valid, kept until that height commits, so a decision replayed after a crash finds its block |
//! | | `e` ‖ height ‖ sequence (u32 BE) | `encode(Equivocation)`: evidence of a validator's double signing, kept for good |
//! | `meta` | `genesis`, `tip`, `layout` | genesis hash; `encode_body(Tip)`; [`LAYOUT`] (u32 BE) |
//!
//! The log's nodes are keyed by tile ([`TILE_HEIGHT`] levels of a subtree, 62 nodes, about one
//! 4 KiB table block): the nodes of an inclusion path's lowest five levels are neighbours on disk,
//! and so are those of the next five, so a path costs two block reads where one key per level
//! cost ten.
//!
//! The log's nodes at level [`UPPER_LEVEL`] and above are also held in memory ([`UpperLog`]):
//! complete subtrees never change, so these nodes are only ever appended, and an inclusion path
//! reads at most `UPPER_LEVEL` nodes from the database, whatever the log's size, instead of one per
//! level (27 at 10^8 entries). They are a 512th of the log's nodes: 32 bytes for every 16 entries
//! of memory, 6 MiB at 10^8 entries.
//!
//! The state map's nodes at depth [`UPPER_DEPTH`] and above are held in memory too ([`UpperSmt`]):
//! every block rewrites the top of the tree, and a block's keys share only its first few levels,
//! so without them each key's update read the nodes of its path below those from the database
//! (about 12 at 3·10^5 keys in blocks of 200, by the tree's expected depth; a fifth
//! of a node's CPU under load, mostly searching the memtable: docs/BENCHMARKS.md). With them it
//! reads the few below. They are at most 2^17 nodes, about 15 MiB, whatever the state's size.

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions,
};
use sabt_core::block::{Block, BlockHeader, Commit};
use sabt_core::codec;
use sabt_core::hash::Hash32;
use sabt_core::merkle::{self, Blake3, NodeId, NodeSink, NodeStore, StoreError};
use sabt_core::registry::{Ledger, MemoryLedger, Tip};
use sabt_core::smt::{self, NodePos, SmtNode, SmtSink, SmtStore};
use std::path::Path;
use std::sync::RwLock;
use thiserror::Error;

/// The block cache shared by every column family, bytes.
const BLOCK_CACHE_BYTES: usize = 128 << 20;

/// The lowest level of the log whose nodes are held in memory as well as on disk.
pub const UPPER_LEVEL: u8 = 10;

/// Levels of the log in one key tile.
pub const TILE_HEIGHT: u8 = 5;

// The levels held in memory are whole tile levels, read back with one scan from their first key.
const _: () = assert!(UPPER_LEVEL.is_multiple_of(TILE_HEIGHT));

/// The deepest level of the state map whose nodes are held in memory as well as on disk.
pub const UPPER_DEPTH: u16 = 16;

/// The version of the store's key layout, recorded in `meta` when a store is created. A store
/// written with another layout is refused rather than misread.
pub const LAYOUT: u32 = 2;

const CFS: [&str; 10] =
    ["blocks", "commits", "log", "entries", "smt", "state", "txs", "proposals", "consensus", "meta"];

/// The column families whose memtables carry a bloom filter over their keys (2 % of the
/// memtable's size, about 16 bits a key).
const MEMTABLE_FILTERED: [&str; 3] = ["smt", "state", "txs"];

/// A store error. Any error while writing is fatal to the node.
#[derive(Debug, Error)]
pub enum DbError {
    /// RocksDB failed.
    #[error("database: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Stored data does not decode or does not agree with itself.
    #[error("database is inconsistent: {0}")]
    Inconsistent(String),
    /// The registry's storage traits failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The disk failed a write (test builds inject it, [`crate::faults`]).
    #[error("disk: {0}")]
    Io(std::io::Error),
}

/// The node's database.
#[derive(Debug)]
pub struct Store {
    db: DB,
    upper: UpperLog,
    upper_smt: UpperSmt,
    /// The keys (height, round) of the own proposals stored and not yet deleted: each commit
    /// deletes those at or below its height one by one. A range deletion per commit, as before,
    /// left a range tombstone per height in the column family's memtable, and every read of an
    /// own proposal fragmented all of them again: the proposer's read grew with the heights
    /// since the last flush (about 6 % of the machine's CPU in a perf profile after 3,000
    /// heights, docs/BENCHMARKS.md).
    proposals: std::sync::Mutex<std::collections::BTreeSet<(u64, u32)>>,
}

/// The log's nodes at level [`UPPER_LEVEL`] and above, all of them, as stored: `levels[l][i]` is
/// node (`UPPER_LEVEL + l`, `i`). Each level is a prefix of its nodes, since the log only appends.
#[derive(Debug, Default)]
struct UpperLog {
    levels: RwLock<Vec<Vec<Hash32>>>,
}

impl UpperLog {
    fn poisoned() -> StoreError {
        StoreError::Backend("the in-memory log levels were left half-updated by a panic".into())
    }

    /// The node, if `id` is at a level held here: `Some(None)` if it was never stored.
    fn get(&self, id: NodeId) -> Result<Option<Option<Hash32>>, StoreError> {
        let Some(l) = id.level.checked_sub(UPPER_LEVEL) else { return Ok(None) };
        let levels = self.levels.read().map_err(|_| Self::poisoned())?;
        let found = levels.get(usize::from(l)).and_then(|v| usize::try_from(id.index).ok().and_then(|i| v.get(i)));
        Ok(Some(found.copied()))
    }

    /// Checks that `nodes` (in node-id order) extend the held levels, each level by the nodes
    /// following its last, or repeat held nodes unchanged.
    fn check_extends<'n>(&self, nodes: impl Iterator<Item = (&'n NodeId, &'n Hash32)>) -> Result<(), DbError> {
        let levels = self.levels.read().map_err(|_| Self::poisoned())?;
        let mut next: Vec<u64> = levels.iter().map(|v| v.len() as u64).collect();
        for (id, h) in nodes.filter(|(id, _)| id.level >= UPPER_LEVEL) {
            let l = usize::from(id.level - UPPER_LEVEL);
            if next.len() <= l {
                next.resize(l + 1, 0);
            }
            let held = levels.get(l).and_then(|v| usize::try_from(id.index).ok().and_then(|i| v.get(i)));
            match held {
                Some(old) if old == h => {}
                Some(_) => {
                    return Err(DbError::Inconsistent(format!(
                        "log node ({}, {}) would be rewritten with another hash",
                        id.level, id.index
                    )));
                }
                None if id.index == next[l] => next[l] += 1,
                None => {
                    return Err(DbError::Inconsistent(format!(
                        "log node ({}, {}) would leave a gap: level {} holds {} nodes",
                        id.level, id.index, id.level, next[l]
                    )));
                }
            }
        }
        Ok(())
    }

    /// Appends `nodes` (in node-id order, checked with [`UpperLog::check_extends`]).
    fn extend<'n>(&self, nodes: impl Iterator<Item = (&'n NodeId, &'n Hash32)>) -> Result<(), StoreError> {
        let mut levels = self.levels.write().map_err(|_| Self::poisoned())?;
        for (id, h) in nodes.filter(|(id, _)| id.level >= UPPER_LEVEL) {
            let l = usize::from(id.level - UPPER_LEVEL);
            if levels.len() <= l {
                levels.resize_with(l + 1, Vec::new);
            }
            if id.index == levels[l].len() as u64 {
                levels[l].push(*h);
            }
        }
        Ok(())
    }
}

/// The state map's nodes at depth [`UPPER_DEPTH`] and above, all of them, as stored. Nodes are
/// only ever added or replaced (keys are never removed), so the map is updated by each commit
/// with the block's nodes at these depths, under the same lock as the commit's write: a reader
/// sees memory and disk before the block or after it, never one of each.
#[derive(Debug, Default)]
struct UpperSmt {
    nodes: RwLock<std::collections::HashMap<NodePos, SmtNode>>,
}

impl UpperSmt {
    fn poisoned() -> StoreError {
        StoreError::Backend("the in-memory state-map levels were left half-updated by a panic".into())
    }

    /// The node, if `pos` is at a depth held here: `Some(None)` if nothing is stored there.
    fn get(&self, pos: NodePos) -> Result<Option<Option<SmtNode>>, StoreError> {
        if pos.depth > UPPER_DEPTH {
            return Ok(None);
        }
        let nodes = self.nodes.read().map_err(|_| Self::poisoned())?;
        Ok(Some(nodes.get(&pos).copied()))
    }
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The key of log node `id`: the tile holding it (tile level `level / TILE_HEIGHT`, and the
/// tile's index along that level), its level within the tile, and its offset along that level of
/// the tile. Each level's nodes keep their index order.
fn node_key(id: NodeId) -> [u8; 11] {
    let within = id.level % TILE_HEIGHT;
    let shift = TILE_HEIGHT - within;
    let mut k = [0u8; 11];
    k[0] = id.level / TILE_HEIGHT;
    k[1..9].copy_from_slice(&(id.index >> shift).to_be_bytes());
    k[9] = within;
    k[10] = (id.index & ((1 << shift) - 1)) as u8;
    k
}

/// The node a `log` key names ([`node_key`]'s inverse), if it is one.
fn node_of_key(k: &[u8]) -> Option<NodeId> {
    let k: &[u8; 11] = k.try_into().ok()?;
    let (within, offset) = (k[9], u64::from(k[10]));
    let shift = TILE_HEIGHT.checked_sub(within).filter(|s| *s > 0)?;
    let tile = u64::from_be_bytes(k[1..9].try_into().ok()?);
    let level = k[0].checked_mul(TILE_HEIGHT)?.checked_add(within)?;
    if offset >> shift != 0 || tile.leading_zeros() < u32::from(shift) {
        return None;
    }
    Some(NodeId::new(level, (tile << shift) | offset))
}

fn backend(e: rocksdb::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Where a committed transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// Block height.
    pub height: u64,
    /// Position in the block.
    pub position: u32,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, DbError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        // Every read on the hot paths (a proof's inclusion path, state-map nodes during execution,
        // a transaction's location) is a point lookup: a bloom filter per table lets a lookup skip
        // tables without the key, and one block cache shared by all column families keeps index
        // and filter blocks and the upper log and state nodes, read by every proof and every
        // block, in memory. A log of 10^8 entries has 2·10^8 nodes, whose filters and indexes
        // alone outgrow any fixed cache: both are partitioned, so only the small top level of
        // each is pinned and the partitions a lookup needs are cached like data blocks. Lookups
        // in `log` always find their key (a proof reads nodes that exist), so its last level,
        // where almost all of it lies, carries no filter at all.
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = CFS.iter().map(|n| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_bloom_filter(10.0, false);
            table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_partition_filters(true);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_top_level_index_and_filter(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_block_based_table_factory(&table);
            o.set_optimize_filters_for_hits(*n == "log");
            if MEMTABLE_FILTERED.contains(n) {
                // Most lookups here miss the memtable (a new document's digest, a new
                // transaction's id, a state node last written blocks ago): a bloom filter over
                // the memtable's keys spares them the skip-list search, which was the largest
                // single cost of a node under load.
                o.set_memtable_whole_key_filtering(true);
                o.set_memtable_prefix_bloom_ratio(0.02);
            }
            ColumnFamilyDescriptor::new(*n, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let store =
            Store { db, upper: UpperLog::default(), upper_smt: UpperSmt::default(), proposals: Default::default() };
        store.check_layout(path)?;
        store.load_upper_levels()?;
        store.load_upper_smt()?;
        store.load_own_proposal_keys()?;
        Ok(store)
    }

    /// Records [`LAYOUT`] in a new store; refuses a store written with another layout.
    fn check_layout(&self, path: &Path) -> Result<(), DbError> {
        let stored = match self.get("meta", b"layout")? {
            Some(v) => Some(u32::from_be_bytes(v.as_slice().try_into().map_err(|_| {
                DbError::Inconsistent(format!("the stored layout version is {} bytes, not 4", v.len()))
            })?)),
            None => None,
        };
        let is_empty = |cf: &str| -> Result<bool, StoreError> {
            Ok(self.db.iterator_cf(self.cf(cf)?, rocksdb::IteratorMode::Start).next().is_none())
        };
        match stored {
            Some(LAYOUT) => Ok(()),
            None if is_empty("meta")? && is_empty("log")? => {
                let mut wo = WriteOptions::default();
                wo.set_sync(true);
                self.db.put_cf_opt(self.cf("meta")?, b"layout", LAYOUT.to_be_bytes(), &wo)?;
                Ok(())
            }
            other => Err(DbError::Inconsistent(format!(
                "the store in {} was written with key layout {} and this node reads layout {LAYOUT}; \
                 move that directory away (keep it as a backup) and start the node again: it resyncs \
                 the chain from the network",
                path.display(),
                other.unwrap_or(1)
            ))),
        }
    }

    /// Reads the log's nodes at [`UPPER_LEVEL`] and above into memory: one scan from the first key
    /// of that level to the end of the column family.
    fn load_upper_levels(&self) -> Result<(), DbError> {
        let cf = self.cf("log")?;
        let from = [UPPER_LEVEL / TILE_HEIGHT];
        let mut read = Vec::new();
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            let id = node_of_key(&k)
                .ok_or_else(|| DbError::Inconsistent(format!("{} is not the key of a log node", hex::encode(&k))))?;
            read.push((id, log_node(id, &v)?));
        }
        self.upper.check_extends(read.iter().map(|(id, h)| (id, h)))?;
        self.upper.extend(read.iter().map(|(id, h)| (id, h)))?;
        Ok(())
    }

    /// Reads the state map's nodes at depth [`UPPER_DEPTH`] and above into memory: one scan from
    /// the first key, since keys sort by depth.
    fn load_upper_smt(&self) -> Result<(), DbError> {
        let mut held = std::collections::HashMap::new();
        for item in self.db.iterator_cf(self.cf("smt")?, rocksdb::IteratorMode::Start) {
            let (k, v) = item?;
            let pos = smt_pos_of_key(&k)
                .ok_or_else(|| DbError::Inconsistent(format!("{} is not the key of a state node", hex::encode(&k))))?;
            if pos.depth > UPPER_DEPTH {
                break;
            }
            held.insert(pos, smt_node(pos, &v)?);
        }
        *self.upper_smt.nodes.write().map_err(|_| UpperSmt::poisoned())? = held;
        Ok(())
    }

    /// Reads the keys of the own proposals still stored (those of heights not committed when the
    /// node stopped: a few at most).
    fn load_own_proposal_keys(&self) -> Result<(), DbError> {
        let mut keys = self.own_proposal_keys();
        for item in self.db.iterator_cf(self.cf("proposals")?, rocksdb::IteratorMode::Start) {
            let (k, _) = item?;
            let key = <[u8; 12]>::try_from(&*k)
                .map_err(|_| DbError::Inconsistent(format!("{} is not the key of a proposal", hex::encode(&k))))?;
            keys.insert(proposal_of_key(key));
        }
        Ok(())
    }

    fn own_proposal_keys(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<(u64, u32)>> {
        self.proposals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db.cf_handle(name).ok_or_else(|| StoreError::Backend(format!("column family {name} is missing")))
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.get_cf(self.cf(cf)?, key).map_err(backend)
    }

    /// The genesis hash this store was created for, if any.
    pub fn genesis_hash(&self) -> Result<Option<Hash32>, DbError> {
        match self.get("meta", b"genesis")? {
            None => Ok(None),
            Some(v) => {
                let arr: [u8; 32] =
                    v.as_slice().try_into().map_err(|_| DbError::Inconsistent("stored genesis hash".into()))?;
                Ok(Some(Hash32(arr)))
            }
        }
    }

    /// Records the genesis hash of a new store (synced).
    pub fn set_genesis_hash(&self, hash: &Hash32) -> Result<(), DbError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(self.cf("meta")?, b"genesis", hash.as_bytes(), &wo)?;
        Ok(())
    }

    /// The committed tip, if any block is committed.
    pub fn tip(&self) -> Result<Option<Tip>, DbError> {
        match self.get("meta", b"tip")? {
            None => Ok(None),
            Some(v) => Ok(Some(
                codec::decode_body("tip", &v, 1024).map_err(|e| DbError::Inconsistent(format!("stored tip: {e}")))?,
            )),
        }
    }

    /// The block at `height`.
    pub fn block(&self, height: u64) -> Result<Option<Block>, DbError> {
        match self.get("blocks", &be(height))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v).map_err(|e| DbError::Inconsistent(format!("block {height}: {e}")))?)),
        }
    }

    /// The header of the block at `height`, read without decoding (or copying) its transactions.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, DbError> {
        let bytes = self.db.get_pinned_cf(self.cf("blocks")?, be(height)).map_err(backend)?;
        match bytes {
            None => Ok(None),
            Some(v) => {
                Ok(Some(Block::decode_header(&v).map_err(|e| DbError::Inconsistent(format!("block {height}: {e}")))?))
            }
        }
    }

    /// The raw encoded block at `height`.
    pub fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.get("blocks", &be(height))?)
    }

    /// The commit certificate of the block at `height`.
    pub fn commit_at(&self, height: u64) -> Result<Option<Commit>, DbError> {
        match self.get("commits", &be(height))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v).map_err(|e| DbError::Inconsistent(format!("commit {height}: {e}")))?)),
        }
    }

    /// Where transaction `id` was committed.
    pub fn tx_location(&self, id: &Hash32) -> Result<Option<TxLocation>, DbError> {
        match self.get("txs", id.as_bytes())? {
            None => Ok(None),
            Some(v) if v.len() == 12 => {
                let mut h = [0u8; 8];
                h.copy_from_slice(&v[..8]);
                let mut p = [0u8; 4];
                p.copy_from_slice(&v[8..]);
                Ok(Some(TxLocation { height: u64::from_be_bytes(h), position: u32::from_be_bytes(p) }))
            }
            Some(_) => Err(DbError::Inconsistent(format!("transaction index entry for {id}"))),
        }
    }

    /// Log entry `index`'s canonical bytes.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.get("entries", &be(index))?)
    }

    /// This node's own proposal at `height` and `round`, if it made one.
    pub fn own_proposal(&self, height: u64, round: u32) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.get("proposals", &proposal_key(height, round))?)
    }

    /// Records this node's proposal before it is sent, so a restarted node re-proposes the same block.
    pub fn put_own_proposal(&self, height: u64, round: u32, block: &[u8]) -> Result<(), DbError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(self.cf("proposals")?, proposal_key(height, round), block, &wo)?;
        self.own_proposal_keys().insert((height, round));
        Ok(())
    }

    /// Keeps `block`, of `height` with hash `hash`, found valid by this node, in one synced write
    /// before the node votes for it: should the node crash after the block is decided and before
    /// it is committed, the decision replayed from the consensus log finds it here.
    pub fn put_received_block(&self, height: u64, hash: &Hash32, block: &[u8]) -> Result<(), DbError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(self.cf("consensus")?, consensus_key(b'r', height, hash.as_bytes()), block, &wo)?;
        Ok(())
    }

    /// A block kept with [`Store::put_received_block`].
    pub fn received_block(&self, height: u64, hash: &Hash32) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.get("consensus", &consensus_key(b'r', height, hash.as_bytes()))?)
    }

    /// Keeps equivocation evidence `encoded` (an `encode(Equivocation)`) found at `height`, in one
    /// synced write, unless the same evidence is kept already. Returns whether it was new.
    pub fn put_evidence(&self, height: u64, encoded: &[u8]) -> Result<bool, DbError> {
        let cf = self.cf("consensus")?;
        let from = consensus_key(b'e', height, &[]);
        let mut seq = 0u32;
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(&from) {
                break;
            }
            if *v == *encoded {
                return Ok(false);
            }
            seq = seq.saturating_add(1);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(cf, consensus_key(b'e', height, &seq.to_be_bytes()), encoded, &wo)?;
        Ok(true)
    }

    /// Kept equivocation evidence, `(height, encode(Equivocation))`, from `from_height` on, at
    /// most `limit`.
    pub fn evidence(&self, from_height: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, DbError> {
        let cf = self.cf("consensus")?;
        let from = consensus_key(b'e', from_height, &[]);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::From(&from, rocksdb::Direction::Forward)) {
            let (k, v) = item?;
            if out.len() >= limit || k.first() != Some(&b'e') || k.len() < 9 {
                break;
            }
            let mut h = [0u8; 8];
            h.copy_from_slice(&k[1..9]);
            out.push((u64::from_be_bytes(h), v.to_vec()));
        }
        Ok(out)
    }

    /// A read-only view of the committed state at this instant: every read through it sees the
    /// same committed block, whatever commits meanwhile (one RocksDB snapshot; a commit is one
    /// write batch). For answers read over time, such as a streamed export.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot { store: self, snap: self.db.snapshot() }
    }

    /// A write set over the current state.
    pub fn write_set(&self) -> WriteSet<'_> {
        WriteSet { store: self, overlay: MemoryLedger::default() }
    }

    /// A write set holding `overlay`, the writes of an earlier [`WriteSet`] taken apart with
    /// [`WriteSet::into_overlay`]. Valid only over the state that write set was made on: the caller
    /// keeps an overlay with the tip it executed on and resumes it only while that is the tip.
    pub fn resume(&self, overlay: MemoryLedger) -> WriteSet<'_> {
        WriteSet { store: self, overlay }
    }

    /// Commits a decided block atomically and durably: its effects in `ws`, the block, its commit
    /// and the new tip in one synced write batch. Returns only once the data is on disk. `ids` are
    /// the ids of the block's transactions, in order (the caller has them already).
    pub fn commit(&self, ws: &WriteSet<'_>, block: &Block, ids: &[Hash32], commit: &Commit) -> Result<Tip, DbError> {
        if ids.len() != block.txs.len() {
            return Err(DbError::Inconsistent(format!(
                "{} transaction ids given for a block of {} transactions",
                ids.len(),
                block.txs.len()
            )));
        }
        debug_assert!(block.txs.iter().zip(ids).all(|(tx, id)| tx.id() == *id), "ids of another block's transactions");
        let height = block.header.height;
        let tip = Tip::after(&block.header);
        let mut batch = WriteBatch::default();
        let o = &ws.overlay;
        for (id, h) in o.log.nodes() {
            batch.put_cf(self.cf("log")?, node_key(*id), h.as_bytes());
        }
        for (pos, node) in o.smt.nodes() {
            batch.put_cf(self.cf("smt")?, pos.to_bytes(), codec::encode_body(node));
        }
        for (k, v) in &o.state {
            batch.put_cf(self.cf("state")?, k.as_bytes(), v);
        }
        for (i, v) in &o.entries {
            batch.put_cf(self.cf("entries")?, be(*i), v);
        }
        for (pos, id) in ids.iter().enumerate() {
            let mut loc = [0u8; 12];
            loc[..8].copy_from_slice(&be(height));
            loc[8..].copy_from_slice(&u32::try_from(pos).unwrap_or(u32::MAX).to_be_bytes());
            batch.put_cf(self.cf("txs")?, id.as_bytes(), loc);
        }
        batch.put_cf(self.cf("blocks")?, be(height), codec::encode(block));
        batch.put_cf(self.cf("commits")?, be(height), codec::encode(commit));
        batch.put_cf(self.cf("meta")?, b"tip", codec::encode_body(&tip));
        // Blocks received for this height are no longer needed.
        let cons = self.cf("consensus")?;
        batch.delete_range_cf(cons, consensus_key(b'r', 0, &[]), consensus_key(b'r', height.saturating_add(1), &[]));
        // Own proposals up to the new tip are no longer needed.
        let mut proposals = self.own_proposal_keys();
        let done: Vec<(u64, u32)> = proposals.range(..=(height, u32::MAX)).copied().collect();
        for (h, r) in &done {
            batch.delete_cf(self.cf("proposals")?, proposal_key(*h, *r));
        }
        self.upper.check_extends(o.log.nodes())?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let mut upper_smt = self.upper_smt.nodes.write().map_err(|_| UpperSmt::poisoned())?;
        if let Some(e) = crate::faults::failed_sync(height) {
            return Err(DbError::Io(e));
        }
        self.db.write_opt(batch, &wo)?;
        upper_smt.extend(o.smt.nodes().filter(|(pos, _)| pos.depth <= UPPER_DEPTH).map(|(p, n)| (*p, *n)));
        drop(upper_smt);
        self.upper.extend(o.log.nodes())?;
        for k in &done {
            proposals.remove(k);
        }
        Ok(tip)
    }

    /// Appends the leaf hashes `leaves` to a registry log of `size` leaves, outside block
    /// execution, in one write batch without the write-ahead log, and returns the new size. For
    /// tools and benchmarks that fill a large log directly (`sabt-bench proofs`); a node never calls
    /// it, since its log grows only through [`Store::commit`]. Call [`Store::flush`] when done.
    pub fn import_log_leaves(&self, size: u64, leaves: &[Hash32]) -> Result<u64, DbError> {
        let mut ws = self.write_set();
        let mut s = size;
        for leaf in leaves {
            s = merkle::append::<Blake3, _>(&mut ws, s, *leaf)?;
        }
        let mut batch = WriteBatch::default();
        for (id, h) in ws.overlay.log.nodes() {
            batch.put_cf(self.cf("log")?, node_key(*id), h.as_bytes());
        }
        self.upper.check_extends(ws.overlay.log.nodes())?;
        let mut wo = WriteOptions::default();
        wo.disable_wal(true);
        self.db.write_opt(batch, &wo)?;
        self.upper.extend(ws.overlay.log.nodes())?;
        Ok(s)
    }

    /// Writes every column family's memtable to disk.
    pub fn flush(&self) -> Result<(), DbError> {
        for name in CFS {
            self.db.flush_cf(self.cf(name)?)?;
        }
        Ok(())
    }

    /// Compacts every column family fully, so the files on disk hold each live key once.
    pub fn compact(&self) -> Result<(), DbError> {
        for name in CFS {
            self.db.compact_range_cf(self.cf(name)?, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }

    /// Each column family's table files on disk, bytes (RocksDB's `total-sst-files-size`):
    /// after [`Store::compact`], what each kind of data costs.
    pub fn column_family_bytes(&self) -> Result<Vec<(&'static str, u64)>, DbError> {
        let mut out = Vec::with_capacity(CFS.len());
        for name in CFS {
            let bytes = self.db.property_int_value_cf(self.cf(name)?, "rocksdb.total-sst-files-size")?;
            out.push((name, bytes.unwrap_or(0)));
        }
        Ok(out)
    }

    /// The RFC 9162 inclusion path of log entry `index` in the log at `size` leaves, read from
    /// the stored nodes (O(log size) reads).
    pub fn inclusion_path(&self, index: u64, size: u64) -> Result<Vec<Hash32>, DbError> {
        merkle::inclusion_proof::<Blake3, _>(&self.write_set(), index, size)
            .map_err(|e| DbError::Inconsistent(format!("inclusion path of entry {index} at size {size}: {e}")))
    }

    /// The root of the log at `size` leaves, from the stored nodes.
    pub fn log_root(&self, size: u64) -> Result<Hash32, DbError> {
        Ok(merkle::root::<Blake3, _>(&self.write_set(), size)?)
    }

    /// Checks that the stored chain agrees with itself: the tip names the last block, the log and
    /// state roots recomputed from the stored nodes equal the tip's, and the last block's commit is
    /// for that block. Returns the tip (the genesis tip for an empty store).
    pub fn check(&self, genesis_tip: Tip) -> Result<Tip, DbError> {
        let Some(tip) = self.tip()? else {
            if self.block(1)?.is_some() {
                return Err(DbError::Inconsistent("blocks are stored but the tip is missing".into()));
            }
            return Ok(genesis_tip);
        };
        let block = self.block(tip.height)?.ok_or_else(|| {
            DbError::Inconsistent(format!("the tip names height {} but that block is missing", tip.height))
        })?;
        if block.hash() != tip.block_hash {
            return Err(DbError::Inconsistent(format!(
                "block {} has hash {} but the tip says {}",
                tip.height,
                block.hash(),
                tip.block_hash
            )));
        }
        if self.block(tip.height + 1)?.is_some() {
            return Err(DbError::Inconsistent(format!("a block is stored above the tip height {}", tip.height)));
        }
        let log_root = merkle::root::<Blake3, _>(&self.write_set(), tip.log_size)?;
        if log_root != tip.log_root || block.header.log_root != tip.log_root {
            return Err(DbError::Inconsistent(format!(
                "the log root recomputed from storage at size {} is {}, the tip and block {} say {} and {}",
                tip.log_size, log_root, tip.height, tip.log_root, block.header.log_root
            )));
        }
        let state_root = smt::root(&self.write_set())?;
        if state_root != tip.state_root || block.header.state_root != tip.state_root {
            return Err(DbError::Inconsistent(format!(
                "the state root recomputed from storage is {}, the tip and block {} say {} and {}",
                state_root, tip.height, tip.state_root, block.header.state_root
            )));
        }
        let commit = self.commit_at(tip.height)?.ok_or_else(|| {
            DbError::Inconsistent(format!("the commit certificate of block {} is missing", tip.height))
        })?;
        if commit.block != tip.block_hash || commit.height != tip.height {
            return Err(DbError::Inconsistent(format!(
                "the commit certificate of block {} is for another block",
                tip.height
            )));
        }
        Ok(tip)
    }
}

fn consensus_key(tag: u8, height: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + rest.len());
    k.push(tag);
    k.extend_from_slice(&be(height));
    k.extend_from_slice(rest);
    k
}

fn proposal_key(height: u64, round: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&be(height));
    k[8..].copy_from_slice(&round.to_be_bytes());
    k
}

fn proposal_of_key(k: [u8; 12]) -> (u64, u32) {
    let (mut h, mut r) = ([0u8; 8], [0u8; 4]);
    h.copy_from_slice(&k[..8]);
    r.copy_from_slice(&k[8..]);
    (u64::from_be_bytes(h), u32::from_be_bytes(r))
}

/// A read-only view of the committed state and log at one instant ([`Store::snapshot`]). Every
/// read goes to the database's snapshot, never to the nodes the store also holds in memory (which
/// move on with each commit): a state value, its proof and the block header it is proven against
/// all come from the same committed block.
pub struct Snapshot<'a> {
    store: &'a Store,
    snap: rocksdb::SnapshotWithThreadMode<'a, DB>,
}

impl std::fmt::Debug for Snapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

impl Snapshot<'_> {
    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.snap.get_cf(self.store.cf(cf)?, key).map_err(backend)
    }

    /// The committed tip this view sees, if any block is committed.
    pub fn tip(&self) -> Result<Option<Tip>, DbError> {
        match self.get("meta", b"tip")? {
            None => Ok(None),
            Some(v) => Ok(Some(
                codec::decode_body("tip", &v, 1024).map_err(|e| DbError::Inconsistent(format!("stored tip: {e}")))?,
            )),
        }
    }
}

impl Snapshot<'_> {
    /// The header of the block at `height`, as this view sees it.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, DbError> {
        match self.get("blocks", &be(height))? {
            None => Ok(None),
            Some(v) => {
                Ok(Some(Block::decode_header(&v).map_err(|e| DbError::Inconsistent(format!("block {height}: {e}")))?))
            }
        }
    }

    /// The commit certificate of the block at `height`, as this view sees it.
    pub fn commit_at(&self, height: u64) -> Result<Option<Commit>, DbError> {
        match self.get("commits", &be(height))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode(&v).map_err(|e| DbError::Inconsistent(format!("commit {height}: {e}")))?)),
        }
    }
}

fn read_only() -> StoreError {
    StoreError::Backend("a snapshot of the store is read-only".into())
}

impl NodeStore for Snapshot<'_> {
    fn get(&self, id: NodeId) -> Result<Option<Hash32>, StoreError> {
        Snapshot::get(self, "log", &node_key(id))?.map(|v| log_node(id, &v)).transpose()
    }
}

impl NodeSink for Snapshot<'_> {
    fn put(&mut self, _: NodeId, _: Hash32) -> Result<(), StoreError> {
        Err(read_only())
    }
}

impl SmtStore for Snapshot<'_> {
    fn get(&self, pos: NodePos) -> Result<Option<SmtNode>, StoreError> {
        Snapshot::get(self, "smt", &pos.to_bytes())?.map(|v| smt_node(pos, &v)).transpose()
    }
}

impl SmtSink for Snapshot<'_> {
    fn put(&mut self, _: NodePos, _: SmtNode) -> Result<(), StoreError> {
        Err(read_only())
    }
}

impl Ledger for Snapshot<'_> {
    fn state_get(&self, key: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("state", key.as_bytes())
    }

    fn state_put(&mut self, _: Hash32, _: Vec<u8>) -> Result<(), StoreError> {
        Err(read_only())
    }

    fn entry_put(&mut self, _: u64, _: Vec<u8>) -> Result<(), StoreError> {
        Err(read_only())
    }

    fn entry_get(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.get("entries", &be(index))
    }
}

/// An overlay of one block's writes (held in a [`MemoryLedger`]) over the store: reads see the
/// overlay first, then the database.
#[derive(Debug)]
pub struct WriteSet<'a> {
    store: &'a Store,
    overlay: MemoryLedger,
}

impl WriteSet<'_> {
    /// The writes held, without the borrow of the store, to be kept and [`Store::resume`]d.
    pub fn into_overlay(self) -> MemoryLedger {
        self.overlay
    }

    /// The log entries written, by index, in their canonical bytes.
    pub fn entries(&self) -> &std::collections::BTreeMap<u64, Vec<u8>> {
        &self.overlay.entries
    }
}

fn log_node(id: NodeId, v: &[u8]) -> Result<Hash32, StoreError> {
    let arr: [u8; 32] = v
        .try_into()
        .map_err(|_| StoreError::Damaged(format!("log node ({}, {}) is {} bytes", id.level, id.index, v.len())))?;
    Ok(Hash32(arr))
}

impl WriteSet<'_> {
    /// The node if memory can answer: from the overlay, or from the levels held in memory (which
    /// know every stored node of theirs, so `Some(None)` means it was never stored).
    fn in_memory(&self, id: NodeId) -> Result<Option<Option<Hash32>>, StoreError> {
        if let Some(h) = NodeStore::get(&self.overlay, id)? {
            return Ok(Some(Some(h)));
        }
        self.store.upper.get(id)
    }
}

impl NodeStore for WriteSet<'_> {
    fn get(&self, id: NodeId) -> Result<Option<Hash32>, StoreError> {
        if let Some(h) = self.in_memory(id)? {
            return Ok(h);
        }
        self.store.get("log", &node_key(id))?.map(|v| log_node(id, &v)).transpose()
    }

    /// The overlay first, then the levels held in memory, then one batched RocksDB `MultiGet` for
    /// the rest.
    fn get_many(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash32>>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            out.push(self.in_memory(*id)?.unwrap_or_else(|| {
                missing.push(i);
                None
            }));
        }
        let keys: Vec<[u8; 11]> = missing.iter().map(|i| node_key(ids[*i])).collect();
        let found = self.store.db.batched_multi_get_cf(self.store.cf("log")?, &keys, false);
        for (i, r) in missing.into_iter().zip(found) {
            out[i] = r.map_err(backend)?.map(|v| log_node(ids[i], &v)).transpose()?;
        }
        Ok(out)
    }
}

impl NodeSink for WriteSet<'_> {
    fn put(&mut self, id: NodeId, hash: Hash32) -> Result<(), StoreError> {
        NodeSink::put(&mut self.overlay, id, hash)
    }
}

/// A state node's position from its storage key.
fn smt_pos_of_key(k: &[u8]) -> Option<NodePos> {
    let k: &[u8; 34] = k.try_into().ok()?;
    let depth = u16::from_be_bytes([k[0], k[1]]);
    let mut prefix = [0u8; 32];
    prefix.copy_from_slice(&k[2..]);
    (depth <= 256).then_some(NodePos { depth, prefix: Hash32(prefix) })
}

fn smt_node(pos: NodePos, v: &[u8]) -> Result<SmtNode, StoreError> {
    codec::decode_body("state node", v, 128)
        .map_err(|e| StoreError::Damaged(format!("state node at depth {}: {e}", pos.depth)))
}

impl SmtStore for WriteSet<'_> {
    /// The overlay first, then the levels held in memory (which know every stored node of
    /// theirs), then the database.
    fn get(&self, pos: NodePos) -> Result<Option<SmtNode>, StoreError> {
        if let Some(n) = SmtStore::get(&self.overlay, pos)? {
            return Ok(Some(n));
        }
        if let Some(held) = self.store.upper_smt.get(pos)? {
            return Ok(held);
        }
        self.store.get("smt", &pos.to_bytes())?.map(|v| smt_node(pos, &v)).transpose()
    }
}

impl SmtSink for WriteSet<'_> {
    fn put(&mut self, pos: NodePos, node: SmtNode) -> Result<(), StoreError> {
        SmtSink::put(&mut self.overlay, pos, node)
    }
}

impl Ledger for WriteSet<'_> {
    fn state_get(&self, key: &Hash32) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.overlay.state_get(key)? {
            return Ok(Some(v));
        }
        self.store.get("state", key.as_bytes())
    }

    fn state_put(&mut self, key: Hash32, value: Vec<u8>) -> Result<(), StoreError> {
        self.overlay.state_put(key, value)
    }

    fn entry_put(&mut self, index: u64, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.overlay.entry_put(index, bytes)
    }

    fn entry_get(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.overlay.entry_get(index)? {
            return Ok(Some(v));
        }
        self.store.get("entries", &be(index))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests fail loudly by design.
    use super::*;
    use sabt_core::merkle::{LogHasher, MemoryTree};
    use std::collections::BTreeMap;

    fn leaf(i: u64) -> Hash32 {
        Blake3::hash_leaf(&i.to_be_bytes())
    }

    #[test]
    fn inclusion_paths_read_in_one_batch_agree_with_the_tree_across_overlay_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut tree = MemoryTree::<Blake3>::new();
        let on_disk: Vec<Hash32> = (0..5_000).map(leaf).collect();
        for l in &on_disk {
            tree.push_hash(*l);
        }
        assert_eq!(store.import_log_leaves(0, &on_disk).unwrap(), 5_000);
        store.flush().unwrap();
        // Further leaves only in a write set: a path then mixes overlay and database nodes.
        let mut ws = store.write_set();
        let mut size = 5_000;
        for i in 5_000..5_300 {
            size = merkle::append::<Blake3, _>(&mut ws, size, leaf(i)).unwrap();
            tree.push_hash(leaf(i));
        }
        for (index, at) in [(0, 5_000), (4_999, 5_000), (0, 5_300), (4_999, 5_300), (5_000, 5_300), (5_299, 5_300)] {
            let path = merkle::inclusion_proof::<Blake3, _>(&ws, index, at).unwrap();
            assert_eq!(path, tree.inclusion_proof(index, at).unwrap(), "entry {index} at {at}");
            merkle::verify_inclusion::<Blake3>(&leaf(index), index, at, &path, &tree.root_at(at).unwrap()).unwrap();
        }
        assert_eq!(store.inclusion_path(17, 5_000).unwrap(), tree.inclusion_proof(17, 5_000).unwrap());
        assert_eq!(store.log_root(5_000).unwrap(), tree.root_at(5_000).unwrap());
        let by_cf = store.column_family_bytes().unwrap();
        assert_eq!(by_cf.len(), CFS.len());
        assert!(by_cf.iter().any(|(n, b)| *n == "log" && *b > 5_000 * 32), "{by_cf:?}");
        // A write set taken apart and resumed reads the same writes.
        let resumed = store.resume(ws.into_overlay());
        assert_eq!(merkle::root::<Blake3, _>(&resumed, 5_300).unwrap(), tree.root_at(5_300).unwrap());
        // Beyond what is stored, a path is refused, not made up.
        assert!(store.inclusion_path(5, 5_300).is_err());
    }

    #[test]
    fn the_upper_levels_held_in_memory_are_read_back_on_reopening_and_only_ever_extended() {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = MemoryTree::<Blake3>::new();
        // 2^13 + 2^10 + 3 leaves: complete subtrees up to level 13, and a right edge made of parts.
        let leaves: Vec<Hash32> = (0..9_219).map(leaf).collect();
        for l in &leaves {
            tree.push_hash(*l);
        }
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.import_log_leaves(0, &leaves[..6_000]).unwrap(), 6_000);
            assert_eq!(store.import_log_leaves(6_000, &leaves[6_000..]).unwrap(), 9_219);
            store.flush().unwrap();
            let held = store.upper.levels.read().unwrap().iter().map(Vec::len).collect::<Vec<_>>();
            assert_eq!(held, vec![9, 4, 2, 1], "nodes at levels 10 to 13");
        }
        let store = Store::open(dir.path()).unwrap();
        let held = store.upper.levels.read().unwrap().clone();
        assert_eq!(held.iter().map(Vec::len).collect::<Vec<_>>(), vec![9, 4, 2, 1]);
        assert_eq!(held[3][0], tree.store().get(NodeId::new(13, 0)).unwrap().unwrap());
        for (index, at) in [(0, 9_219), (8_191, 9_219), (9_218, 9_219), (4_000, 8_192), (1_023, 1_024)] {
            assert_eq!(store.inclusion_path(index, at).unwrap(), tree.inclusion_proof(index, at).unwrap());
        }
        assert_eq!(store.log_root(9_219).unwrap(), tree.root_at(9_219).unwrap());
        // A node that would leave a gap, or change a held one, is refused before anything is written.
        let gap = [(NodeId::new(10, 10), leaf(0))];
        assert!(store.upper.check_extends(gap.iter().map(|(i, h)| (i, h))).is_err());
        let changed = [(NodeId::new(11, 1), leaf(0))];
        assert!(store.upper.check_extends(changed.iter().map(|(i, h)| (i, h))).is_err());
        let same = [(NodeId::new(11, 1), held[1][1]), (NodeId::new(11, 4), leaf(1)), (NodeId::new(14, 0), leaf(2))];
        store.upper.check_extends(same.iter().map(|(i, h)| (i, h))).unwrap();
        let stale = [(NodeId::new(14, 1), leaf(2))];
        assert!(store.upper.check_extends(stale.iter().map(|(i, h)| (i, h))).is_err(), "level 14 is empty");
    }

    #[test]
    fn log_keys_name_their_node_keep_each_level_in_order_and_put_a_paths_tile_together() {
        let ids = (0..64u8).flat_map(|level| {
            let top = u64::MAX >> level.min(63);
            [0, 1, 31, 32, 33, 1_000_003, top / 2, top].into_iter().map(move |i| NodeId::new(level, i.min(top)))
        });
        for id in ids {
            assert_eq!(node_of_key(&node_key(id)), Some(id), "{id:?}");
        }
        for level in 0..20u8 {
            let keys: Vec<[u8; 11]> = (0..300).map(|i| node_key(NodeId::new(level, i))).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "level {level} out of index order");
        }
        // The lowest five levels of leaf 1,000,003's path lie in one tile; so do the next five.
        let leaf = 1_000_003u64;
        for t in 0..2u8 {
            let tiles: Vec<[u8; 9]> = (t * TILE_HEIGHT..(t + 1) * TILE_HEIGHT)
                .map(|l| node_key(NodeId::new(l, (leaf >> l) ^ 1))[..9].try_into().unwrap())
                .collect();
            assert!(tiles.windows(2).all(|w| w[0] == w[1]), "tile level {t}: {tiles:?}");
        }
        assert!(node_of_key(&[0; 9]).is_none(), "too short");
        assert!(node_of_key(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0]).is_none(), "level 5 within a tile of 5");
        assert!(node_of_key(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32]).is_none(), "offset beyond the tile");
    }

    #[test]
    fn a_store_written_with_another_key_layout_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.import_log_leaves(0, &[leaf(0), leaf(1)]).unwrap();
            store.set_genesis_hash(&leaf(9)).unwrap();
            // As a store of the first layout looks: data, and no layout recorded.
            store.db.delete_cf(store.cf("meta").unwrap(), b"layout").unwrap();
        }
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("key layout 1") && e.contains("resyncs"), "{e}");
        {
            let store = Store::open(&dir.path().join("new")).unwrap();
            store.import_log_leaves(0, &[leaf(0)]).unwrap();
        }
        Store::open(&dir.path().join("new")).unwrap();
    }

    #[test]
    fn received_blocks_survive_reopening_and_go_at_commit_and_evidence_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let (dev, registry, proposer) = test_chain();
        let tip = Tip::genesis(&dev.genesis);
        {
            let store = Store::open(dir.path()).unwrap();
            store.put_received_block(1, &leaf(7), b"block one").unwrap();
            store.put_received_block(2, &leaf(8), b"block two").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.received_block(1, &leaf(7)).unwrap().as_deref(), Some(&b"block one"[..]));
        assert_eq!(store.received_block(1, &leaf(8)).unwrap(), None);
        // Committing height 1 drops the blocks received for it, not those for height 2.
        let mut ws = store.write_set();
        let (block, commit) = empty_block(&registry, &mut ws, &tip, proposer);
        store.commit(&ws, &block, &[], &commit).unwrap();
        assert_eq!(store.received_block(1, &leaf(7)).unwrap(), None);
        assert!(store.received_block(2, &leaf(8)).unwrap().is_some());
        // Evidence is kept once, in height order.
        assert!(store.put_evidence(5, b"e1").unwrap());
        assert!(!store.put_evidence(5, b"e1").unwrap());
        assert!(store.put_evidence(5, b"e2").unwrap());
        assert!(store.put_evidence(3, b"e0").unwrap());
        let all = store.evidence(0, 10).unwrap();
        assert_eq!(all, vec![(3, b"e0".to_vec()), (5, b"e1".to_vec()), (5, b"e2".to_vec())]);
        assert_eq!(store.evidence(4, 1).unwrap(), vec![(5, b"e1".to_vec())]);
    }

    /// A four-validator devnet, its registry, and the key that proposes the tests' blocks.
    fn test_chain() -> (sabt_core::devnet::Devnet, sabt_core::registry::Registry, sabt_core::sign::PublicKey) {
        let dev = sabt_core::devnet::Devnet::new("sabt-test", 1, &[[1; 32], [2; 32], [3; 32], [4; 32]], [9; 32]);
        let registry = sabt_core::registry::Registry::new(&dev.genesis).unwrap();
        let proposer = dev.admin_key(0).public();
        (dev, registry, proposer)
    }

    /// An empty next block on `tip`, built into `ws`, with a certificate naming it (unsigned: the
    /// store keeps what it is given).
    fn empty_block(
        registry: &sabt_core::registry::Registry,
        ws: &mut WriteSet<'_>,
        tip: &Tip,
        proposer: sabt_core::sign::PublicKey,
    ) -> (Block, Commit) {
        let built = registry
            .build_block(ws, tip, tip.time_ms + 1_000, proposer, std::iter::empty(), &sabt_core::registry::NoCache)
            .unwrap();
        let c = Commit { height: built.block.header.height, round: 0, block: built.block.hash(), signatures: vec![] };
        (built.block, c)
    }

    /// Keys for the state map: hashes of `i`, and for every third one a second key that shares
    /// its first 20 bits, so that the tree has nodes below [`UPPER_DEPTH`] as well as above.
    fn state_keys(from: u32, to: u32) -> Vec<Hash32> {
        let mut keys = Vec::new();
        for i in from..to {
            let k = Blake3::hash_leaf(&i.to_be_bytes());
            keys.push(k);
            if i % 3 == 0 {
                let mut twin = Blake3::hash_leaf(&(u32::MAX - i).to_be_bytes());
                twin.0[..2].copy_from_slice(&k.0[..2]);
                twin.0[2] = (k.0[2] & 0xf0) | (!k.0[2] & 0x0f);
                keys.push(twin);
            }
        }
        keys
    }

    /// Every state node stored at `UPPER_DEPTH` or above, read from the database itself.
    fn stored_upper_smt(store: &Store) -> std::collections::HashMap<NodePos, SmtNode> {
        let cf = store.cf("smt").unwrap();
        store
            .db
            .iterator_cf(cf, rocksdb::IteratorMode::Start)
            .map(|item| {
                let (k, v) = item.unwrap();
                let pos = smt_pos_of_key(&k).unwrap();
                (pos, smt_node(pos, &v).unwrap())
            })
            .take_while(|(pos, _)| pos.depth <= UPPER_DEPTH)
            .collect()
    }

    #[test]
    fn the_upper_state_levels_held_in_memory_follow_every_commit_and_are_read_back_on_reopening() {
        let (dev, registry, proposer) = test_chain();
        let dir = tempfile::tempdir().unwrap();
        // The same keys and values in a tree held only in memory.
        let mut reference = smt::MemorySmt::default();
        let mut tip = Tip::genesis(&dev.genesis);
        let mut all_keys = Vec::new();
        let commit_with = |store: &Store, tip: &Tip, reference: &mut smt::MemorySmt, keys: &[Hash32]| -> Tip {
            let mut ws = store.write_set();
            let (block, c) = empty_block(&registry, &mut ws, tip, proposer);
            let updates: BTreeMap<Hash32, Hash32> =
                keys.iter().map(|k| (*k, smt::value_hash(&tip.height.to_be_bytes()))).collect();
            let root = smt::insert_batch(&mut ws, &updates).unwrap();
            assert_eq!(smt::insert_batch(reference, &updates).unwrap(), root);
            store.commit(&ws, &block, &[], &c).unwrap()
        };
        {
            let store = Store::open(dir.path()).unwrap();
            for b in 0..6u32 {
                // New keys, and some earlier ones given new values.
                let mut keys = state_keys(b * 400, (b + 1) * 400);
                keys.extend(all_keys.iter().step_by(7).copied());
                all_keys.extend(state_keys(b * 400, (b + 1) * 400));
                tip = commit_with(&store, &tip, &mut reference, &keys);
                assert_eq!(*store.upper_smt.nodes.read().unwrap(), stored_upper_smt(&store), "after block {b}");
            }
            assert!(reference.nodes().any(|(pos, _)| pos.depth > UPPER_DEPTH + 2), "nodes below the held levels");
        }
        let store = Store::open(dir.path()).unwrap();
        let held = store.upper_smt.nodes.read().unwrap().clone();
        assert_eq!(held, stored_upper_smt(&store));
        let expected: std::collections::HashMap<NodePos, SmtNode> =
            reference.nodes().filter(|(pos, _)| pos.depth <= UPPER_DEPTH).map(|(p, n)| (*p, *n)).collect();
        assert_eq!(held, expected);
        // Reads through a write set agree with the reference, above and below the held levels.
        let ws = store.write_set();
        assert_eq!(smt::root(&ws).unwrap(), smt::root(&reference).unwrap());
        for k in all_keys.iter().step_by(97).chain(state_keys(9_000, 9_010).iter()) {
            assert_eq!(smt::prove(&ws, k).unwrap(), smt::prove(&reference, k).unwrap());
        }
        // A position held in memory is answered from memory: nothing stored there reads as absent
        // without a database lookup, and a node held there is what the database has.
        let deep = reference.nodes().find(|(pos, _)| pos.depth > UPPER_DEPTH).map(|(p, _)| *p).unwrap();
        assert_eq!(store.upper_smt.get(deep).unwrap(), None, "not held: read from the database");
        assert_eq!(store.upper_smt.get(NodePos::ROOT).unwrap(), Some(reference.nodes().next().map(|(_, n)| *n)));
        drop(ws);
        // And blocks after reopening keep it in step.
        let tip = commit_with(&store, &tip, &mut reference, &state_keys(20_000, 20_300));
        assert_eq!(tip.height, 7);
        assert_eq!(*store.upper_smt.nodes.read().unwrap(), stored_upper_smt(&store));
        assert_eq!(smt::root(&store.write_set()).unwrap(), smt::root(&reference).unwrap());
    }

    #[test]
    fn own_proposals_are_deleted_by_the_commit_of_their_height_one_by_one_across_reopening() {
        let (dev, registry, proposer) = test_chain();
        let dir = tempfile::tempdir().unwrap();
        let commit_next = |store: &Store, tip: &Tip| -> Tip {
            let mut ws = store.write_set();
            let (block, c) = empty_block(&registry, &mut ws, tip, proposer);
            store.commit(&ws, &block, &[], &c).unwrap()
        };
        let mut tip = Tip::genesis(&dev.genesis);
        {
            let store = Store::open(dir.path()).unwrap();
            for h in 1..=30u64 {
                store.put_own_proposal(h, 0, b"round 0").unwrap();
                store.put_own_proposal(h, 2, b"round 2").unwrap();
                store.put_own_proposal(h + 1, 0, b"the next height's").unwrap();
                tip = commit_next(&store, &tip);
                assert_eq!(tip.height, h);
                assert_eq!(store.own_proposal(h, 0).unwrap(), None, "height {h}");
                assert_eq!(store.own_proposal(h, 2).unwrap(), None, "height {h}");
                assert_eq!(store.own_proposal(h + 1, 0).unwrap().as_deref(), Some(&b"the next height's"[..]));
            }
            // Point deletions, two a height (a range tombstone per commit, which this count
            // leaves out, made every read of a proposal slower than the one before).
            let deletes = store
                .db
                .property_int_value_cf(store.cf("proposals").unwrap(), "rocksdb.num-deletes-active-mem-table")
                .unwrap();
            assert_eq!(deletes, Some(60));
            store.put_own_proposal(31, 1, b"before a restart").unwrap();
        }
        // Reopened, the store still knows which proposals it holds and deletes them at their commit.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.own_proposal(31, 1).unwrap().as_deref(), Some(&b"before a restart"[..]));
        let tip = commit_next(&store, &tip);
        assert_eq!(tip.height, 31);
        assert_eq!(store.own_proposal(31, 0).unwrap(), None);
        assert_eq!(store.own_proposal(31, 1).unwrap(), None);
        assert!(store.db.iterator_cf(store.cf("proposals").unwrap(), rocksdb::IteratorMode::Start).next().is_none());
    }
}

/// The registry simulation ([`sabt_core::sim`]) against this store: blocks built by a proposer on
/// RocksDB and committed as a node commits them reach exactly the roots an in-memory ledger
/// reaches executing the same blocks, and reopening the store gives back the same chain.
#[cfg(test)]
mod simulation {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sabt_core::registry::{MemoryLedger, NoCache, Registry};
    use sabt_core::sim::{Config, Simulation};

    fn run(seed: u64, txs: usize) {
        let mut sim = Simulation::new(seed, Config { txs, ..Config::default() });
        let registry = Registry::new(sim.genesis()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut tip = Tip::genesis(sim.genesis());
        let mut memory = MemoryLedger::default();
        {
            let store = Store::open(dir.path()).unwrap();
            while let Some(round) = sim.next_block() {
                let mut ws = store.write_set();
                let built = registry
                    .build_block(&mut ws, &tip, round.time_ms, sim.proposer(), round.txs, &NoCache)
                    .unwrap_or_else(|e| panic!("seed {seed}, height {}: storage failed: {e}", round.height));
                let ids: Vec<Hash32> = built.block.txs.iter().map(|t| t.id()).collect();
                let c = Commit {
                    height: built.block.header.height,
                    round: 0,
                    block: built.block.hash(),
                    signatures: vec![],
                };
                let before = store.snapshot();
                let committed = store.commit(&ws, &built.block, &ids, &c).unwrap();
                assert_eq!(committed, Tip::after(&built.block.header), "seed {seed}");
                // A snapshot taken before the commit goes on seeing the state it was taken on,
                // its tip, state root and values, though the store has moved on.
                assert_eq!(before.tip().unwrap().map_or(0, |t| t.height), tip.height, "seed {seed}: a snapshot's tip");
                assert_eq!(smt::root(&before).unwrap(), tip.state_root, "seed {seed}: a snapshot's state root");
                if let Some((key, _)) = ws.into_overlay().state.iter().next() {
                    let old = memory.state.get(key).cloned();
                    assert_eq!(before.state_get(key).unwrap(), old, "seed {seed}: a snapshot's value");
                    let proof = smt::prove(&before, key).unwrap();
                    assert_eq!(proof.verify(&tip.state_root, key).unwrap(), old.as_deref().map(smt::value_hash));
                }
                let executed = registry.execute_block(&mut memory, &tip, &built.block, &NoCache).unwrap_or_else(|e| {
                    panic!("seed {seed}: block {} built on RocksDB does not execute in memory: {e}", round.height)
                });
                assert_eq!(executed, built.executed, "seed {seed}, height {}", round.height);
                sim.observe(&built.executed);
                tip = committed;
            }
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.tip().unwrap(), Some(tip.clone()), "seed {seed}: the reopened store's tip");
        let ws = store.write_set();
        assert_eq!(smt::root(&ws).unwrap(), smt::root(&memory).unwrap(), "seed {seed}: state root");
        for (key, value) in &memory.state {
            assert_eq!(ws.state_get(key).unwrap().as_ref(), Some(value), "seed {seed}: a state value differs");
        }
        for (index, bytes) in &memory.entries {
            assert_eq!(store.entry(*index).unwrap().as_ref(), Some(bytes), "seed {seed}: entry {index}");
        }
    }

    #[test]
    fn simulated_traffic_commits_on_rocksdb_to_what_memory_executes() {
        for seed in 0..8 {
            run(seed, 150);
        }
        run(1_000, 1_500);
    }
}

//! Bytes on disk per anchored fingerprint: a stopped node's store is compacted fully, then its
//! size is divided by what its log anchors. The node's other files (consensus WAL, access log)
//! are reported beside it.

use crate::disk;
use anyhow::{Context as _, anyhow};
use sabt_core::codec;
use sabt_core::entry::{EntryBody, LogEntry};
use sabt_node::node::Home;
use sabt_node::store::Store;
use serde::Serialize;
use std::path::Path;

/// A node's storage after compaction.
#[derive(Debug, Serialize)]
pub struct Storage {
    /// Log entries.
    pub log_entries: u64,
    /// Entries anchoring one record each (single anchors and supersessions).
    pub single_anchors: u64,
    /// Documents anchored inside batch entries.
    pub batched_documents: u64,
    /// Other entries (key grants, land operations, …).
    pub other_entries: u64,
    /// Committed blocks.
    pub blocks: u64,
    /// The RocksDB store's files after full compaction, bytes.
    pub db_bytes: u64,
    /// The node's whole data directory (store, consensus WAL, access log), bytes.
    pub data_dir_bytes: u64,
    /// Each column family's table files after compaction, bytes.
    pub column_families: std::collections::BTreeMap<String, u64>,
}

/// Compacts the store of the (stopped) node at `home` and measures it.
pub fn run(home: &Path) -> anyhow::Result<Storage> {
    let home = Home(home.to_path_buf());
    let store = Store::open(&home.db())
        .with_context(|| format!("cannot open the store at {} (is the node stopped?)", home.db().display()))?;
    let tip = store.tip()?.ok_or_else(|| anyhow!("the store at {} holds no block", home.db().display()))?;
    let (mut single, mut batched, mut other) = (0u64, 0u64, 0u64);
    for i in 0..tip.log_size {
        let bytes = store.entry(i)?.ok_or_else(|| anyhow!("log entry {i} is missing"))?;
        let e: LogEntry = codec::decode(&bytes).map_err(|e| anyhow!("log entry {i}: {e}"))?;
        match e.body {
            EntryBody::Record(_) | EntryBody::Supersede { .. } => single += 1,
            EntryBody::Batch(b) => batched += b.size,
            _ => other += 1,
        }
    }
    store.flush()?;
    store.compact()?;
    let column_families = store.column_family_bytes()?.into_iter().map(|(n, b)| (n.to_string(), b)).collect();
    drop(store);
    let data = home.db().parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Storage {
        log_entries: tip.log_size,
        single_anchors: single,
        batched_documents: batched,
        other_entries: other,
        blocks: tip.height,
        db_bytes: disk::dir_bytes(&home.db())?,
        data_dir_bytes: disk::dir_bytes(&data)?,
        column_families,
    })
}

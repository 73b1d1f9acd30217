//! Opens a stopped node's store directly, the way an attacker with disk access would, to damage it.

use std::path::Path;

/// The node's RocksDB under `home`, with every column family it has (opening fewer is refused).
pub fn open(home: &Path) -> rocksdb::DB {
    let path = home.join("data/db");
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), &path).expect("list column families");
    rocksdb::DB::open_cf(&rocksdb::Options::default(), &path, names).expect("open the store")
}

//! The PostgreSQL peer: the same records, signed by the same kind of clerk keys, in the rows a
//! conventional registry would keep (a hash chain over every row and a unique digest index), for
//! `scripts/bench` to load with `COPY` and drive with `pgbench` at synchronous commit.

use crate::records;
use sabt_core::codec;
use sabt_core::sign::{self, SecretKey};
use std::io::Write as _;
use std::path::Path;

/// Writes `count` records of run `run` as CSV rows for the `staging` table:
/// `id, sha256, blake3, record (JSON), signer, signature`, byte columns in PostgreSQL's `\x` hex.
pub fn write_records(path: &Path, run: u64, count: u64) -> anyhow::Result<()> {
    let key = SecretKey::from_seed(&[21; 32]);
    let signer = format!("\\x{}", key.public().to_hex());
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for n in 0..count {
        let r = records::record(run, n);
        let sig = key.sign(sign::TX, &codec::encode(&r));
        let json = serde_json::to_string(&r)?.replace('"', "\"\"");
        writeln!(
            out,
            "{n},\\x{},\\x{},\"{json}\",{signer},\\x{}",
            r.fingerprint.sha256,
            r.fingerprint.blake3,
            hex::encode(sig.0)
        )?;
    }
    out.flush()?;
    Ok(())
}

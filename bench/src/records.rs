//! The records every benchmark anchors: deterministic archive records, numbered, so the same
//! records go to Sabt and to PostgreSQL, and a record can be rebuilt from its number.

use sabt_core::entry::{AccessClass, ArchiveRecord, EntryBody, LogEntry, RecordKind, ReferenceCode};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::sign::PublicKey;

/// Record number `n` of run `run`: the fingerprint of a 1 KiB page unique to (run, n), with
/// realistic archive metadata (a civil-status register page).
pub fn record(run: u64, n: u64) -> ArchiveRecord {
    let mut page = [0u8; 1024];
    for (i, chunk) in page.chunks_mut(16).enumerate() {
        chunk[..8].copy_from_slice(&run.to_le_bytes());
        chunk[8..].copy_from_slice(&(n ^ ((i as u64) << 48)).to_le_bytes());
    }
    ArchiveRecord {
        fingerprint: Fingerprint::of_bytes(&page),
        kind: RecordKind::CivilStatus,
        reference: ReferenceCode {
            repository: "Main Archive Administration".into(),
            fund: "12".into(),
            inventory: format!("{}", 1950 + n % 60),
            file: format!("{}", n / 500),
            sheets: Some(format!("{}", n % 500 + 1)),
        },
        creating_agency: "ZAGS Dushanbe".into(),
        title: "Birth register".into(),
        date_from: Some(format!("{}", 1950 + n % 60)),
        date_to: None,
        access: AccessClass::Restricted,
    }
}

/// The log entry a node would make for record `n` at `(height, time_ms)`, signed by `signer` in
/// transaction `tx`: the bytes a filled log holds at index `n`.
pub fn entry(run: u64, n: u64, signer: PublicKey) -> LogEntry {
    LogEntry {
        height: 1 + n / 10_000,
        time_ms: 1_780_000_000_000 + n,
        tx: sabt_core::hash::hash(sabt_core::hash::TX, &n.to_be_bytes()),
        signer,
        body: EntryBody::Record(record(run, n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_distinct_and_valid() {
        let a = record(1, 7);
        assert_eq!(a, record(1, 7));
        assert_ne!(a.fingerprint, record(1, 8).fingerprint);
        assert_ne!(a.fingerprint, record(2, 7).fingerprint);
        a.validate().unwrap();
    }
}

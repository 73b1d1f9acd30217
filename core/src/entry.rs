//! What the registry log holds.
//!
//! Every accepted transaction adds one [`LogEntry`] at the next index of the global log. The entry
//! records the block height and the consensus (BFT) time of the block that committed it, the
//! transaction that produced it and its signer, and a body: one archive record, or the root of a
//! batch of archive records (an RFC 9162 tree, BLAKE3, over the canonical encodings of the
//! records), so that a directory of scans anchors in one transaction while each document keeps a
//! proof of its own.
//!
//! No personal data goes on the ledger: records carry fingerprints and archive metadata only;
//! identifiers of people appear, where needed, only as salted hashes.

use crate::codec::Canonical;
use crate::fingerprint::Fingerprint;
use crate::hash::Hash32;
use crate::sign::PublicKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Kinds of archive record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Civil-status acts (birth, marriage, death).
    CivilStatus,
    /// Notarial acts.
    Notary,
    /// Labour records.
    Labour,
    /// Land and property documents.
    LandProperty,
    /// Education records.
    Education,
    /// Health records.
    Health,
    /// Permits and licences.
    Permit,
    /// Intellectual property.
    IntellectualProperty,
    /// Anything else.
    Other,
}

impl RecordKind {
    /// Every kind, in order.
    pub const ALL: [RecordKind; 9] = [
        RecordKind::CivilStatus,
        RecordKind::Notary,
        RecordKind::Labour,
        RecordKind::LandProperty,
        RecordKind::Education,
        RecordKind::Health,
        RecordKind::Permit,
        RecordKind::IntellectualProperty,
        RecordKind::Other,
    ];

    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::CivilStatus => "civil_status",
            RecordKind::Notary => "notary",
            RecordKind::Labour => "labour",
            RecordKind::LandProperty => "land_property",
            RecordKind::Education => "education",
            RecordKind::Health => "health",
            RecordKind::Permit => "permit",
            RecordKind::IntellectualProperty => "intellectual_property",
            RecordKind::Other => "other",
        }
    }

    /// Parses a kind name (`-` and `_` interchangeable).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().replace('-', "_").to_ascii_lowercase();
        RecordKind::ALL.into_iter().find(|k| k.as_str() == t).ok_or_else(|| {
            let names: Vec<&str> = RecordKind::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown record kind {text:?}; use one of: {}", names.join(", "))
        })
    }
}

/// Who may read the document itself (the fingerprint is always public).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessClass {
    /// Open to the public.
    Public,
    /// Open to authorised users.
    Restricted,
    /// Confidential by law.
    Confidential,
}

impl AccessClass {
    /// Parses `public`, `restricted` or `confidential`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(AccessClass::Public),
            "restricted" => Ok(AccessClass::Restricted),
            "confidential" => Ok(AccessClass::Confidential),
            _ => Err(format!("unknown access class {text:?}; use public, restricted or confidential")),
        }
    }
}

/// Where the original is kept: repository / fund / inventory / file / sheets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceCode {
    /// The archive (repository) holding the original.
    pub repository: String,
    /// Fund (fonds) number.
    pub fund: String,
    /// Inventory (opis) number.
    pub inventory: String,
    /// File (delo) number.
    pub file: String,
    /// Sheets within the file, e.g. `12-14`.
    pub sheets: Option<String>,
}

/// One archive record: a document's fingerprint and its archive metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRecord {
    /// The document's digests.
    pub fingerprint: Fingerprint,
    /// Record kind.
    pub kind: RecordKind,
    /// Where the original is kept.
    pub reference: ReferenceCode,
    /// The agency that created the document.
    pub creating_agency: String,
    /// A short title, without personal data.
    pub title: String,
    /// The document's date, or the start of its date range: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub date_from: Option<String>,
    /// The end of its date range, same forms.
    pub date_to: Option<String>,
    /// Access class of the original.
    pub access: AccessClass,
}

impl Canonical for ArchiveRecord {
    const NAME: &'static str = "archive record";
    const VERSION: u8 = 1;
    const MAX_LEN: usize = 8 * 1024;
}

/// Why a record's metadata is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct RecordError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn check_text(field: &'static str, value: &str, max: usize, required: bool) -> Result<(), RecordError> {
    let err = |reason: String| Err(RecordError { field, reason });
    if required && value.trim().is_empty() {
        return err("must not be empty".into());
    }
    if value.chars().count() > max {
        return err(format!("must be at most {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return err("must not contain control characters".into());
    }
    Ok(())
}

/// Checks a date in one of the forms `YYYY`, `YYYY-MM`, `YYYY-MM-DD` (proleptic Gregorian).
pub fn check_date(text: &str) -> Result<(), String> {
    let parts: Vec<&str> = text.split('-').collect();
    let num = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let bad = || format!("date {text:?} must be YYYY, YYYY-MM or YYYY-MM-DD");
    let year = parts.first().and_then(|y| num(y, 4)).ok_or_else(bad)?;
    if parts.len() > 3 {
        return Err(bad());
    }
    if let Some(m) = parts.get(1) {
        let month = num(m, 2).filter(|m| (1..=12).contains(m)).ok_or_else(bad)?;
        if let Some(d) = parts.get(2) {
            let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
            let days = match month {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            num(d, 2).filter(|d| (1..=days).contains(d)).ok_or_else(|| format!("date {text:?} has no such day"))?;
        }
    }
    Ok(())
}

impl ArchiveRecord {
    /// Checks the metadata's form and limits.
    pub fn validate(&self) -> Result<(), RecordError> {
        let r = &self.reference;
        check_text("reference.repository", &r.repository, 128, true)?;
        check_text("reference.fund", &r.fund, 64, true)?;
        check_text("reference.inventory", &r.inventory, 64, true)?;
        check_text("reference.file", &r.file, 64, true)?;
        if let Some(s) = &r.sheets {
            check_text("reference.sheets", s, 64, true)?;
        }
        check_text("creating_agency", &self.creating_agency, 128, true)?;
        check_text("title", &self.title, 512, false)?;
        for (field, date) in [("date_from", &self.date_from), ("date_to", &self.date_to)] {
            if let Some(d) = date {
                check_date(d).map_err(|reason| RecordError { field, reason })?;
            }
        }
        if let (Some(a), Some(b)) = (&self.date_from, &self.date_to)
            && b < a
        {
            return Err(RecordError { field: "date_to", reason: format!("{b} is before date_from {a}") });
        }
        Ok(())
    }
}

/// A batch of archive records anchored as one RFC 9162 root. Every record in a batch is of the
/// batch's kind, so the chain can check the signer may anchor that kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchAnchor {
    /// Root of the BLAKE3 RFC 9162 tree whose leaves are the records' canonical encodings.
    pub root: Hash32,
    /// Number of records in the batch.
    pub size: u64,
    /// The kind of every record in the batch.
    pub kind: RecordKind,
}

/// An agency's grant of a clerk key, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyGrant {
    /// The clerk's key.
    pub key: PublicKey,
    /// The agency that grants it (the signer's agency).
    pub agency: String,
    /// The record kinds it may anchor (sorted, no repeats, at least one).
    pub kinds: Vec<RecordKind>,
    /// Consensus time (Unix ms) from which it no longer acts, if any.
    pub expires_ms: Option<u64>,
}

/// The body of a log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // Entries are handled one at a time; boxing buys nothing.
pub enum EntryBody {
    /// One archive record.
    Record(ArchiveRecord),
    /// The root of a batch of archive records.
    Batch(BatchAnchor),
    /// An agency authorised a clerk key.
    Grant(KeyGrant),
    /// An agency revoked a clerk key; it no longer acts from the next block on.
    Revoke {
        /// The revoked key.
        key: PublicKey,
        /// The agency that revoked it.
        agency: String,
    },
    /// A record was withdrawn: it stays in the log, and the state marks it withdrawn.
    Withdraw(StatusChange),
    /// A record was superseded by a new record, anchored by this entry.
    Supersede {
        /// What was superseded, and why.
        change: StatusChange,
        /// The new record.
        record: ArchiveRecord,
    },
    /// An operation on the land registry, and the parcel version it made.
    Land(crate::land::LandEntry),
}

/// A change of an anchored record's status, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// The fingerprint of the record whose status changes.
    pub target: Fingerprint,
    /// The log index of the entry that anchored it (the record itself, or its batch).
    pub target_index: u64,
    /// Its leaf index in that entry's batch; 0 for a record anchored singly.
    pub target_leaf: u64,
    /// Why (no personal data).
    pub reason: String,
}

/// A reference to an anchored record, as a transaction gives it: the entry that anchored it, the
/// record itself and, when it was anchored in a batch, its inclusion path in the batch tree (the
/// proof file has all three). A record is the anchoring that made it: the same document anchored by
/// two agencies is two records, told apart by `entry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordRef {
    /// Log index of the entry that anchored the record (the record, a supersession, or its batch).
    pub entry: u64,
    /// The anchored record, exactly as anchored.
    pub record: ArchiveRecord,
    /// Its position in its batch, if it was batched.
    pub batch: Option<crate::bundle::BatchProof>,
}

/// Checks a withdrawal or supersession reason: 1 to 512 characters, no control characters.
pub fn check_reason(reason: &str) -> Result<(), RecordError> {
    check_text("reason", reason, 512, true)
}

/// One entry of the registry log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Height of the block that committed the entry.
    pub height: u64,
    /// That block's consensus (BFT) time, Unix milliseconds UTC.
    pub time_ms: u64,
    /// The transaction that produced the entry.
    pub tx: Hash32,
    /// The key that signed that transaction.
    pub signer: PublicKey,
    /// What was registered.
    pub body: EntryBody,
}

impl Canonical for LogEntry {
    const NAME: &'static str = "log entry";
    const VERSION: u8 = 2;
    const MAX_LEN: usize = 256 * 1024;
}

impl LogEntry {
    /// Decodes an entry of any layout this software reads: the current one, or version 1, so that
    /// proof files issued under version 1 verify for ever. A version-1 status change names no leaf
    /// (version 1 kept status by document): it reads as leaf 0.
    pub fn decode_any_version(bytes: &[u8]) -> Result<LogEntry, crate::codec::CodecError> {
        match bytes.first() {
            Some(&v1::LogEntry::VERSION) => crate::codec::decode::<v1::LogEntry>(bytes).map(LogEntry::from),
            _ => crate::codec::decode(bytes),
        }
    }

    /// The entry's leaf hash in the log: `BLAKE3(0x00 ‖ encode(entry))`.
    pub fn leaf_hash(&self) -> Hash32 {
        use crate::merkle::LogHasher as _;
        crate::merkle::Blake3::hash_leaf(&crate::codec::encode(self))
    }
}

/// Version 1 of the log entry's layout: read, never written.
mod v1 {
    use super::{ArchiveRecord, BatchAnchor, Fingerprint, Hash32, KeyGrant, PublicKey};
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub(super) struct LogEntry {
        pub height: u64,
        pub time_ms: u64,
        pub tx: Hash32,
        pub signer: PublicKey,
        pub body: EntryBody,
    }

    impl crate::codec::Canonical for LogEntry {
        const NAME: &'static str = "log entry (version 1)";
        const VERSION: u8 = 1;
        const MAX_LEN: usize = 256 * 1024;
    }

    /// The bodies a version-1 proof file can carry; a land entry (variant 6) does not decode.
    #[derive(Serialize, Deserialize)]
    #[allow(clippy::large_enum_variant)]
    pub(super) enum EntryBody {
        Record(ArchiveRecord),
        Batch(BatchAnchor),
        Grant(KeyGrant),
        Revoke { key: PublicKey, agency: String },
        Withdraw(StatusChange),
        Supersede { change: StatusChange, record: ArchiveRecord },
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct StatusChange {
        pub target: Fingerprint,
        pub target_index: u64,
        pub reason: String,
    }
}

impl From<v1::LogEntry> for LogEntry {
    fn from(e: v1::LogEntry) -> Self {
        let change = |c: v1::StatusChange| StatusChange {
            target: c.target,
            target_index: c.target_index,
            target_leaf: 0,
            reason: c.reason,
        };
        let body = match e.body {
            v1::EntryBody::Record(r) => EntryBody::Record(r),
            v1::EntryBody::Batch(b) => EntryBody::Batch(b),
            v1::EntryBody::Grant(g) => EntryBody::Grant(g),
            v1::EntryBody::Revoke { key, agency } => EntryBody::Revoke { key, agency },
            v1::EntryBody::Withdraw(c) => EntryBody::Withdraw(change(c)),
            v1::EntryBody::Supersede { change: c, record } => EntryBody::Supersede { change: change(c), record },
        };
        LogEntry { height: e.height, time_ms: e.time_ms, tx: e.tx, signer: e.signer, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        for ok in ["1924", "1924-02", "1924-02-29", "2000-02-29", "2026-12-31"] {
            check_date(ok).unwrap();
        }
        for bad in ["24", "1924-2", "1923-02-29", "1900-02-29", "2026-13", "2026-04-31", "2026-01-01-01", "abcd"] {
            assert!(check_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_parse_by_name() {
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::parse(k.as_str()).unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
        }
        assert_eq!(RecordKind::parse("Land-Property").unwrap(), RecordKind::LandProperty);
        assert!(RecordKind::parse("deed").unwrap_err().contains("civil_status"));
    }
}

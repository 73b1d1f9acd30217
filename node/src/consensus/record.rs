//! The record of every vote and proposal this validator signed, consulted before each signature
//! so that it never signs two different messages for one height, round and kind.
//!
//! It lives outside the node's data directory (`<home>/signing/record.log`): `data/` is what an
//! operator moves away to resync a node from the network, and the consensus write-ahead log in it
//! is reset on restarts, but a validator that forgets what it signed and re-runs those heights
//! would sign other messages there. Each record is one text line, `HEIGHT ROUND KIND VALUE`
//! (`KIND` 0 prevote, 1 precommit, 2 proposal; `VALUE` a block hash in hex or `nil`), appended
//! and synced to disk before the signature is made. A torn last line (a crash in the write) is
//! dropped at opening, since nothing was signed for it; any other damage is refused with its
//! remedy. The last [`KEPT_HEIGHTS`] heights are kept; older lines are dropped when the file is
//! rewritten (a new file synced, then renamed over the old one).

use anyhow::{Context as _, anyhow, bail};
use sabt_core::hash::Hash32;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Heights of signed messages kept: far more than a validator re-runs after any restart.
pub const KEPT_HEIGHTS: u64 = 1_000;
/// Lines in the file beyond which it is rewritten with the kept heights only.
const REWRITE_AT: usize = 200_000;

/// What [`SignedRecord::record`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing was signed in this slot before; the message is recorded now.
    New,
    /// The same message was signed here before.
    Same,
    /// Another message was signed here before: this value (a block, or nil).
    Other(Option<Hash32>),
}

/// The record, open.
#[derive(Debug)]
pub struct SignedRecord {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    slots: BTreeMap<(u64, u32, u8), Option<Hash32>>,
    lines: usize,
}

fn line(height: u64, round: u32, kind: u8, value: Option<Hash32>) -> String {
    format!("{height} {round} {kind} {}\n", value.map(|h| h.to_hex()).unwrap_or_else(|| "nil".into()))
}

fn parse(text: &str) -> Option<((u64, u32, u8), Option<Hash32>)> {
    let mut f = text.split(' ');
    let (h, r, k, v) = (f.next()?, f.next()?, f.next()?, f.next()?);
    if f.next().is_some() {
        return None;
    }
    let kind: u8 = k.parse().ok().filter(|k| *k <= 2)?;
    let value = if v == "nil" { None } else { Some(Hash32::from_hex(v).ok()?) };
    Some(((h.parse().ok()?, r.parse().ok()?, kind), value))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SignedRecord {
    /// Opens (or creates) the record at `path`.
    pub fn open(path: &Path) -> anyhow::Result<SignedRecord> {
        let dir = path.parent().ok_or_else(|| anyhow!("{} has no directory", path.display()))?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let damaged = |what: String| {
            anyhow!(
                "the record of signed votes {} is damaged ({what}); without it this validator could sign \
                 two conflicting votes. Restore it from a backup of this node, or, if there is none, move it \
                 away and start the node only once the network has gone past the heights it names",
                path.display()
            )
        };
        let mut text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| damaged("it is not text".into()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        // A last line without its end was being written when the node stopped: nothing was
        // signed for it.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        let torn = whole < text.len();
        text.truncate(whole);
        let mut slots = BTreeMap::new();
        for (n, l) in text.lines().enumerate() {
            let (slot, value) = parse(l).ok_or_else(|| damaged(format!("line {} reads {l:?}", n + 1)))?;
            if let Some(before) = slots.insert(slot, value)
                && before != value
            {
                bail!(damaged(format!("line {} contradicts an earlier one", n + 1)));
            }
        }
        let lines = text.lines().count();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if torn {
            file.set_len(whole as u64).with_context(|| format!("cannot cut the torn line of {}", path.display()))?;
            file.sync_all()?;
        }
        sync_dir(dir)?;
        Ok(SignedRecord { path: path.to_path_buf(), inner: Mutex::new(Inner { file, slots, lines }) })
    }

    /// Checks the slot (`height`, `round`, `kind`) against `value` and, if it is free, records
    /// `value` there durably before returning [`Recorded::New`].
    pub fn record(&self, height: u64, round: u32, kind: u8, value: Option<Hash32>) -> std::io::Result<Recorded> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.slots.get(&(height, round, kind)) {
            Some(v) if *v == value => return Ok(Recorded::Same),
            Some(v) => return Ok(Recorded::Other(*v)),
            None => {}
        }
        inner.file.write_all(line(height, round, kind, value).as_bytes())?;
        inner.file.sync_data()?;
        inner.slots.insert((height, round, kind), value);
        inner.lines += 1;
        if inner.lines > REWRITE_AT {
            self.rewrite(&mut inner)?;
        }
        Ok(Recorded::New)
    }

    /// What was signed in a slot, if anything.
    pub fn get(&self, height: u64, round: u32, kind: u8) -> Option<Option<Hash32>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).slots.get(&(height, round, kind)).copied()
    }

    /// Keeps the last [`KEPT_HEIGHTS`] heights: a new file, synced, renamed over the old one.
    fn rewrite(&self, inner: &mut Inner) -> std::io::Result<()> {
        let top = inner.slots.keys().next_back().map_or(0, |k| k.0);
        let floor = top.saturating_sub(KEPT_HEIGHTS);
        inner.slots.retain(|k, _| k.0 >= floor);
        let tmp = self.path.with_extension("log.new");
        let mut f = File::create(&tmp)?;
        for ((h, r, k), v) in &inner.slots {
            f.write_all(line(*h, *r, *k, *v).as_bytes())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        inner.file = OpenOptions::new().append(true).open(&self.path)?;
        inner.lines = inner.slots.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn h(b: u8) -> Option<Hash32> {
        Some(Hash32([b; 32]))
    }

    #[test]
    fn a_conflict_is_named_across_reopening_and_a_torn_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing/record.log");
        {
            let r = SignedRecord::open(&path).unwrap();
            assert_eq!(r.record(1, 0, 0, h(1)).unwrap(), Recorded::New);
            assert_eq!(r.record(1, 0, 0, h(1)).unwrap(), Recorded::Same);
            assert_eq!(r.record(1, 1, 0, None).unwrap(), Recorded::New);
            assert_eq!(r.record(1, 0, 1, h(1)).unwrap(), Recorded::New);
            assert_eq!(r.record(1, 0, 0, h(2)).unwrap(), Recorded::Other(h(1)));
        }
        // A crash while a line was being written: the rest stays, the torn line goes.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"2 0 0 ab").unwrap();
        let r = SignedRecord::open(&path).unwrap();
        assert_eq!(r.record(1, 0, 0, None).unwrap(), Recorded::Other(h(1)));
        assert_eq!(r.record(1, 1, 0, h(3)).unwrap(), Recorded::Other(None));
        assert_eq!(r.get(1, 0, 1), Some(h(1)));
        assert_eq!(r.record(2, 0, 0, h(4)).unwrap(), Recorded::New);
        drop(r);
        assert!(std::fs::read_to_string(&path).unwrap().ends_with(&line(2, 0, 0, h(4))));
        // A damaged line elsewhere is refused, with what to do.
        let text = std::fs::read_to_string(&path).unwrap().replacen("1 1 0 nil", "1 1 0 zz", 1);
        std::fs::write(&path, text).unwrap();
        let e = SignedRecord::open(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("Restore it"), "{e}");
    }

    #[test]
    fn rewriting_keeps_the_recent_heights_and_their_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.log");
        let r = SignedRecord::open(&path).unwrap();
        for height in 1..=(KEPT_HEIGHTS + 10) {
            r.record(height, 0, 0, h(1)).unwrap();
        }
        r.rewrite(&mut r.inner.lock().unwrap()).unwrap();
        drop(r);
        let r = SignedRecord::open(&path).unwrap();
        assert_eq!(r.get(5, 0, 0), None);
        assert_eq!(r.record(KEPT_HEIGHTS + 10, 0, 0, None).unwrap(), Recorded::Other(h(1)));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count() as u64, KEPT_HEIGHTS + 1);
    }
}

//! The access log: every API request that reads or writes registry data, recorded in a
//! hash-chained file so that an edited, inserted, reordered or deleted line is detectable.
//!
//! ## Format
//! `data/access.log` holds one JSON object per line ([`AccessLine`]), written by this module only:
//! `seq` (from 1, contiguous), `time_ms` (the node's clock), `client` (the TCP peer address),
//! `forwarded_for` (an `X-Forwarded-For` header as sent, not trusted), `signers` (keys of submitted
//! transactions, hex), `method`, `target` (path and query), `status` (HTTP), `outcome` (`ok` or the
//! error's stable code), and `hash`:
//!
//! `hash = BLAKE3-derive_key("sabt/access-log/v1", prev ‖ L)`, where `prev` is the previous line's
//! hash (32 zero bytes before the first line) and `L` is the line's JSON with `hash` set to the
//! empty string. A line must be byte-identical to its canonical rendering, so even a whitespace
//! edit is caught.
//!
//! Deleting lines at the end cannot be seen from the file alone: the node reports the head
//! (`seq`, `hash`) in its structured log and in `sabt_access_log_seq`; `sabt-node access-log verify
//! --expect-head SEQ:HASH` checks the file against a head recorded elsewhere.
//!
//! ## Durability
//! A request takes a slot in a bounded queue before it is served (none free: 503 with
//! `Retry-After`), and its line is queued when the answer is ready. One writer thread appends lines
//! in batches and syncs each batch to disk, at most once every [`SYNC_INTERVAL`]: answers never
//! wait for their lines, so a sync per line bought nothing but a disk flush per request (the
//! writer's kernel time was 4 % of the machine's CPU in a perf profile of the benchmark network
//! at saturation, docs/BENCHMARKS.md). A write that fails stops the node. On a graceful
//! stop the node asks for a [`AccessLog::flush`] once its API is down, so every answered request's
//! line is on disk before it exits. A line torn by a crash is cut off at the next start, and a
//! line recording the cut is appended.

use crate::clock::now_ms;
use anyhow::{Context as _, anyhow, bail};
use sabt_core::hash::{self, Hash32};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Lines waiting for the writer; a request finding the queue full is answered 503.
pub const QUEUE: usize = 4096;
/// Most lines written and synced together.
const BATCH: usize = 1024;
/// Shortest time between two syncs of the log: lines that come meanwhile go with the next.
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);
/// Longest line accepted when reading the log back.
pub const MAX_LINE: usize = 256 * 1024;
/// Longest `target` recorded (longer ones are cut, with `…` appended).
const MAX_TARGET: usize = 1024;

/// One line of the access log. The API fills in everything but `seq` and `hash`, which the
/// writer sets as it chains the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLine {
    /// Sequence number, from 1.
    pub seq: u64,
    /// The node's clock, Unix milliseconds.
    pub time_ms: u64,
    /// The client's address as the node saw it.
    pub client: String,
    /// The `X-Forwarded-For` header, as sent.
    pub forwarded_for: Option<String>,
    /// Keys of the transactions submitted, hex (distinct).
    pub signers: Vec<String>,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// `ok`, or the error's stable code.
    pub outcome: String,
    /// This line's chained hash (hex).
    pub hash: String,
}

impl AccessLine {
    /// The hash this line must carry after `prev`.
    pub fn chained_hash(&self, prev: &Hash32) -> Hash32 {
        let body = AccessLine { hash: String::new(), ..self.clone() };
        let mut buf = prev.0.to_vec();
        buf.extend_from_slice(&serde_json::to_vec(&body).unwrap_or_default());
        hash::hash(hash::ACCESS_LOG, &buf)
    }

    fn render(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Cuts `text` to at most `max` characters.
pub fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_string() } else { text.chars().take(max).collect::<String>() + "…" }
}

/// The target as recorded.
pub fn target(text: &str) -> String {
    bounded(text, MAX_TARGET)
}

/// What the writer is sent.
#[derive(Debug)]
enum Msg {
    Line(AccessLine),
    /// Write and sync every line queued before this, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending side, held by the API.
#[derive(Debug, Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Msg>,
    head_seq: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
}

/// A place in the writer's queue, taken before a request is served.
#[derive(Debug)]
pub struct Slot(mpsc::OwnedPermit<Msg>);

impl Slot {
    /// Queues the request's line.
    pub fn send(self, line: AccessLine) {
        self.0.send(Msg::Line(line));
    }
}

impl AccessLog {
    /// Takes a slot for one request's line, or `None` when the queue is full or the writer stopped.
    pub fn reserve(&self) -> Option<Slot> {
        self.tx.clone().try_reserve_owned().ok().map(Slot)
    }

    /// Waits until every line queued before this call is written and synced (without waiting
    /// out [`SYNC_INTERVAL`]). An error if the writer stopped.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx.send(Msg::Flush(done)).await.map_err(|_| anyhow!("the access log writer stopped"))?;
        wait.await.map_err(|_| anyhow!("the access log writer stopped"))
    }

    /// Sequence number of the last line written.
    pub fn head_seq(&self) -> u64 {
        self.head_seq.load(Ordering::Relaxed)
    }

    /// Syncs of the file since it was opened.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

/// The chain's state at the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Last sequence number (0 for an empty log).
    pub seq: u64,
    /// Last hash (zero for an empty log).
    pub hash: Hash32,
}

/// Opens (or creates) the log at `path` and starts its writer thread. Returns the sending side and
/// a receiver that yields an error if the writer ever fails (the node must then stop).
pub fn open(path: &Path) -> anyhow::Result<(AccessLog, tokio::sync::oneshot::Receiver<anyhow::Error>)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("cannot open the access log {}", path.display()))?;
    let (mut head, torn) = recover(&mut file, path)?;
    let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel();
    let head_seq = Arc::new(AtomicU64::new(head.seq));
    let seq_out = head_seq.clone();
    let syncs = Arc::new(AtomicU64::new(0));
    let syncs_out = syncs.clone();
    let mut pending = Vec::new();
    if let Some(bytes) = torn {
        tracing::warn!(path = %path.display(), bytes, "access log: cut a line torn by a crash");
        pending.push(AccessLine {
            seq: 0,
            hash: String::new(),
            time_ms: now_ms(),
            client: "node".into(),
            forwarded_for: None,
            signers: Vec::new(),
            method: "-".into(),
            target: "access-log-recovered".into(),
            status: 0,
            outcome: format!("cut {bytes} bytes of a torn last line"),
        });
    }
    tracing::info!(path = %path.display(), seq = head.seq, hash = %head.hash, "access log opened");
    std::thread::Builder::new().name("access-log".into()).spawn(move || {
        let mut flushes = Vec::new();
        let mut last_sync: Option<std::time::Instant> = None;
        loop {
            if pending.is_empty() {
                match rx.blocking_recv() {
                    Some(Msg::Line(a)) => pending.push(a),
                    Some(Msg::Flush(done)) => flushes.push(done),
                    None => return,
                }
            }
            // Group commit: wait out the interval since the last sync, unless a flush is asked.
            if flushes.is_empty() {
                let wait = last_sync.map_or(std::time::Duration::ZERO, |t| SYNC_INTERVAL.saturating_sub(t.elapsed()));
                std::thread::sleep(wait);
            }
            while pending.len() < BATCH {
                match rx.try_recv() {
                    Ok(Msg::Line(a)) => pending.push(a),
                    Ok(Msg::Flush(done)) => flushes.push(done),
                    Err(_) => break,
                }
            }
            if pending.is_empty() {
                for done in flushes.drain(..) {
                    let _ = done.send(());
                }
                continue;
            }
            let mut text = String::new();
            let mut next = head;
            for mut line in pending.drain(..) {
                line.seq = next.seq + 1;
                let h = line.chained_hash(&next.hash);
                line.hash = h.to_hex();
                text.push_str(&line.render());
                text.push('\n');
                next = Head { seq: line.seq, hash: h };
            }
            if let Err(e) = file.write_all(text.as_bytes()).and_then(|()| file.sync_data()) {
                let _ = fail_tx.send(anyhow!("cannot append to the access log: {e}"));
                // Refuse every further request: the channel closes when this thread ends.
                return;
            }
            head = next;
            seq_out.store(head.seq, Ordering::Relaxed);
            syncs_out.fetch_add(1, Ordering::Relaxed);
            last_sync = Some(std::time::Instant::now());
            // The queue is in order: a flush taken from it came after every line now written.
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    })?;
    Ok((AccessLog { tx, head_seq, syncs }, fail_rx))
}

/// Finds the head from the file's last line, cutting a torn last line (returned: bytes cut).
fn recover(file: &mut File, path: &Path) -> anyhow::Result<(Head, Option<u64>)> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((Head { seq: 0, hash: Hash32::ZERO }, None));
    }
    let window = len.min(2 * MAX_LINE as u64);
    file.seek(SeekFrom::Start(len - window))?;
    let mut tail = Vec::new();
    file.take(window).read_to_end(&mut tail)?;
    let mut torn = None;
    let end = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) if i + 1 == tail.len() => tail.len(),
        Some(i) => {
            let cut = (tail.len() - i - 1) as u64;
            file.set_len(len - cut)?;
            file.sync_all()?;
            torn = Some(cut);
            i + 1
        }
        None if window == len => {
            file.set_len(0)?;
            file.sync_all()?;
            return Ok((Head { seq: 0, hash: Hash32::ZERO }, Some(len)));
        }
        None => bail!("access log {}: no line end in its last {window} bytes", path.display()),
    };
    let body = &tail[..end - 1];
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if start == 0 && window < len {
        bail!("access log {}: its last line is longer than {MAX_LINE} bytes", path.display());
    }
    let line: AccessLine = serde_json::from_slice(&body[start..])
        .with_context(|| format!("access log {}: the last line is not an access line", path.display()))?;
    let hash = Hash32::from_hex(&line.hash)
        .map_err(|e| anyhow!("access log {}: the last line's hash: {e}", path.display()))?;
    Ok((Head { seq: line.seq, hash }, torn))
}

/// Why the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Broken {
    /// Line number (from 1).
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// Checks every line of the log read from `input`; returns the head.
pub fn verify(input: impl std::io::Read) -> Result<Head, Broken> {
    let mut reader = BufReader::new(input);
    let mut head = Head { seq: 0, hash: Hash32::ZERO };
    let mut buf = Vec::new();
    let mut n = 0u64;
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| Broken { line: n + 1, reason: format!("cannot read: {e}") })?;
        if read == 0 {
            return Ok(head);
        }
        n += 1;
        let broken = |reason: String| Broken { line: n, reason };
        if buf.last() != Some(&b'\n') {
            return Err(broken(if buf.len() > MAX_LINE {
                format!("longer than {MAX_LINE} bytes")
            } else {
                "the last line is incomplete".into()
            }));
        }
        let text = std::str::from_utf8(&buf[..buf.len() - 1]).map_err(|_| broken("not UTF-8".into()))?;
        let line: AccessLine = serde_json::from_str(text).map_err(|e| broken(format!("not an access line: {e}")))?;
        if line.render() != text {
            return Err(broken("edited: the line is not in its canonical form".into()));
        }
        if line.seq != head.seq + 1 {
            return Err(broken(format!(
                "sequence {} follows {}: {}",
                line.seq,
                head.seq,
                if line.seq > head.seq + 1 { "lines were deleted" } else { "lines were duplicated or reordered" }
            )));
        }
        let expected = line.chained_hash(&head.hash);
        if line.hash != expected.to_hex() {
            return Err(broken(format!("seq {}: hash does not chain (edited or inserted line)", line.seq)));
        }
        head = Head { seq: line.seq, hash: expected };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(i: u64) -> AccessLine {
        AccessLine {
            seq: 0,
            hash: String::new(),
            time_ms: 1_700_000_000_000 + i,
            client: "127.0.0.1:5000".into(),
            forwarded_for: None,
            signers: vec![],
            method: "GET".into(),
            target: format!("/v1/records/sha256:{i:064x}"),
            status: 200,
            outcome: "ok".into(),
        }
    }

    async fn write(path: &Path, n: u64) -> AccessLog {
        let (log, _fail) = open(path).unwrap();
        let start = log.head_seq();
        for i in 0..n {
            log.reserve().unwrap().send(access(i));
        }
        for _ in 0..200 {
            if log.head_seq() >= start + n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        log
    }

    #[tokio::test]
    async fn chain_survives_restart_and_detects_every_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = write(&path, 5).await;
        assert_eq!(log.head_seq(), 5);
        drop(log);
        // Reopened: the chain continues.
        let log = write(&path, 3).await;
        assert_eq!(log.head_seq(), 8);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let head = verify(text.as_bytes()).unwrap();
        assert_eq!(head.seq, 8);
        let lines: Vec<&str> = text.lines().collect();
        let join = |ls: &[String]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
        let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();

        // An edited field, even with the hash left as it was.
        let mut edited = owned.clone();
        edited[2] = edited[2].replace("\"status\":200", "\"status\":404");
        assert_eq!(verify(join(&edited).as_bytes()).unwrap_err().line, 3);
        // A whitespace edit.
        let mut edited = owned.clone();
        edited[4] = edited[4].replacen(':', ": ", 1);
        assert!(verify(join(&edited).as_bytes()).unwrap_err().reason.contains("canonical"));
        // A deleted line in the middle.
        let mut deleted = owned.clone();
        deleted.remove(3);
        assert!(verify(join(&deleted).as_bytes()).unwrap_err().reason.contains("deleted"));
        // Swapped lines.
        let mut swapped = owned.clone();
        swapped.swap(1, 2);
        assert!(verify(join(&swapped).as_bytes()).is_err());
        // A line rewritten with a recomputed hash still breaks the next line's chain.
        let mut forged: Vec<AccessLine> = owned.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        forged[5].outcome = "forged".into();
        let prev = Hash32::from_hex(&forged[4].hash).unwrap();
        forged[5].hash = forged[5].chained_hash(&prev).to_hex();
        let forged: Vec<String> = forged.iter().map(AccessLine::render).collect();
        assert_eq!(verify(join(&forged).as_bytes()).unwrap_err().line, 7);
    }

    #[tokio::test]
    async fn lines_are_synced_together_and_a_flush_writes_all_queued_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let (log, _fail) = open(&path).unwrap();
        // A first line, synced at once (no sync came before it).
        log.reserve().unwrap().send(access(0));
        log.flush().await.unwrap();
        assert_eq!(verify(File::open(&path).unwrap()).unwrap().seq, 1);
        // Lines sent now wait out the interval since that sync, and go to disk together; the
        // flush does not wait it out, and answers once every line before it is written.
        for i in 1..=50 {
            log.reserve().unwrap().send(access(i));
        }
        log.flush().await.unwrap();
        assert_eq!(log.head_seq(), 51);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify(text.as_bytes()).unwrap().seq, 51);
        assert_eq!(text.lines().count(), 51);
        // Lines that trickle in go to disk together, a sync per interval at most, not one each.
        let (syncs, started) = (log.syncs(), std::time::Instant::now());
        for i in 52..92 {
            log.reserve().unwrap().send(access(i));
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        log.flush().await.unwrap();
        let bound = started.elapsed().as_millis() as u64 / SYNC_INTERVAL.as_millis() as u64 + 2;
        assert!(log.syncs() - syncs <= bound, "{} syncs for 40 lines, at most {bound} expected", log.syncs() - syncs);
        assert_eq!(log.head_seq(), 91);
        // Without a flush, lines still reach the disk, within the interval.
        log.reserve().unwrap().send(access(92));
        for _ in 0..200 {
            if log.head_seq() >= 92 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(verify(File::open(&path).unwrap()).unwrap().seq, 92);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_cut_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        drop(write(&path, 2).await);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":3,\"time_").unwrap();
        drop(f);
        assert!(verify(File::open(&path).unwrap()).unwrap_err().reason.contains("incomplete"));
        let log = write(&path, 1).await;
        for _ in 0..200 {
            if log.head_seq() >= 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify(text.as_bytes()).unwrap().seq, 4);
        assert!(text.contains("access-log-recovered"));
    }
}

//! Forwarding of submitted transactions to the other validators, so that a transaction sent to any
//! node is in the next proposer's mempool, whoever that is.
//!
//! A transaction a client submits is admitted locally, then queued here for each peer. Every peer
//! has its own bounded queue and its own worker thread, so a peer that is down, or up but not
//! answering (a paused process accepts connections and never replies), delays only its own queue:
//! the others keep receiving. When a peer's queue is full the transaction is not forwarded to that
//! peer and waits for another node's turn to propose. A worker sends queued transactions in batches
//! to its peer's `POST /v1/txs/batch`, marked as forwarded (signed by this validator's consensus
//! key, [`header_value`]) so that peers do not forward them again and hold those whose nonces run
//! ahead. Peers check every transaction themselves: forwarding vouches for nothing in them. A worker reads its
//! peer's answer to each batch and logs, every 30 s, how many of the forwarded transactions the
//! peer refused, by code: one refused for any reason but `committed` reaches a block only when
//! this node (or another that has it) proposes.

use sabt_core::codec;
use sabt_core::hash::Hash32;
use sabt_core::sign::{self, PublicKey, SecretKey, Signature};
use sabt_core::tx::SignedTx;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Header that marks a forwarded submission.
pub const FORWARDED_HEADER: &str = "x-sabt-forwarded";
/// Most transactions queued for one peer.
pub const QUEUE: usize = 8192;
/// Most transactions in one forwarded batch.
pub const BATCH: usize = 512;
/// Most bytes of hex-encoded transactions in one forwarded batch: with its JSON framing a batch
/// stays under the peers' default body limit (`api.max_body_bytes`, 1 MiB), which would refuse a
/// larger one whole. The largest transaction a genesis allows (256 KiB, 512 KiB as hex) fits alone.
pub const BATCH_BYTES: usize = 768 << 10;

/// The value of [`FORWARDED_HEADER`] on a batch of `body`: `KEY:SIGNATURE`, both hex, the
/// signature by the forwarding validator's consensus key in the [`sign::FORWARD`] context over
/// the genesis hash followed by the body. A peer treats a submission as forwarded (holding
/// transactions whose nonces run ahead) only when this verifies for one of its validators.
pub fn header_value(key: &SecretKey, genesis_hash: &Hash32, body: &[u8]) -> String {
    let sig = key.sign(sign::FORWARD, &message(genesis_hash, body));
    format!("{}:{}", key.public().to_hex(), hex::encode(sig.0))
}

/// The key and signature a [`FORWARDED_HEADER`] value names, if it is well formed.
pub fn parse_header(value: &str) -> Option<(PublicKey, Signature)> {
    let (key, sig) = value.split_once(':')?;
    let key = PublicKey::from_hex(key).ok()?;
    let sig: [u8; 64] = hex::decode(sig).ok()?.try_into().ok()?;
    Some((key, Signature(sig)))
}

/// Whether `sig` is `key`'s forwarding signature over `body` on the chain of `genesis_hash`.
pub fn verify(key: &PublicKey, sig: &Signature, genesis_hash: &Hash32, body: &[u8]) -> bool {
    key.verify(sign::FORWARD, &message(genesis_hash, body), sig).is_ok()
}

fn message(genesis_hash: &Hash32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + body.len());
    m.extend_from_slice(&genesis_hash.0);
    m.extend_from_slice(body);
    m
}

/// Who signs forwarded batches: this validator's consensus key, on the chain of `genesis_hash`.
#[derive(Clone)]
pub struct Signer {
    /// The key.
    pub key: Arc<SecretKey>,
    /// The genesis hash.
    pub genesis_hash: Hash32,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.key.public())
    }
}

/// The sending side, held by the API.
#[derive(Debug, Clone)]
pub struct Forwarder {
    peers: Vec<(String, SyncSender<Arc<str>>)>,
}

impl Forwarder {
    /// Starts one worker thread for each of `peers` (API base URLs).
    pub fn start(peers: Vec<String>, signer: Signer) -> std::io::Result<Forwarder> {
        let mut out = Vec::with_capacity(peers.len());
        for peer in peers {
            let (tx, rx) = sync_channel(QUEUE);
            let (p, signer) = (peer.clone(), signer.clone());
            std::thread::Builder::new().name("sabt-forward".into()).spawn(move || run(rx, p, signer))?;
            out.push((peer, tx));
        }
        Ok(Forwarder { peers: out })
    }

    /// Queues `stx` for every peer; returns false if some peer's queue was full (that peer does not
    /// get it from this node).
    pub fn push(&self, stx: &SignedTx) -> bool {
        let hex: Arc<str> = hex::encode(codec::encode(stx)).into();
        let mut all = true;
        for (peer, q) in &self.peers {
            match q.try_send(hex.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    debug!(peer = %peer, "forwarding queue is full; the transaction waits for another node's turn to propose");
                    all = false;
                }
                Err(TrySendError::Disconnected(_)) => all = false,
            }
        }
        all
    }
}

/// An HTTP agent for requests between machines that must not hang: statuses are answers, not
/// errors, and each step of a request (connecting, sending the request and its body, receiving
/// the answer's head and its body) has at most `step`.
///
/// Steps, not one timeout for the whole request: with a whole-request (or a name-resolution)
/// timeout, ureq resolves the host on a thread of its own for every request, pooled connection
/// or not, so a busy agent started and ended a thread per request (2,673 in 4 s in the load
/// generator, docs/BENCHMARKS.md). Without one it resolves in place, which for an IP address costs
/// nothing; a host name is then bounded by the system resolver's own timeouts.
pub fn agent(step: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(step))
        .timeout_send_request(Some(step))
        .timeout_send_body(Some(step))
        .timeout_recv_response(Some(step))
        .timeout_recv_body(Some(step))
        .build()
        .into()
}

/// How long a worker keeps sending a batch again that its peer answered 503 to (not ready:
/// starting, or catching up with the network, whose state would refuse what it has not seen yet;
/// or busy). After that the batch is dropped for this peer and waits for another node's turn.
pub const RETRY_FOR: Duration = Duration::from_secs(120);
/// The wait before sending a batch again when the peer's 503 names none (`Retry-After`), and the
/// longest wait a peer may ask for.
const RETRY_WAIT: Duration = Duration::from_secs(1);
const RETRY_WAIT_MAX: Duration = Duration::from_secs(10);

/// How long to wait before sending a batch again, after an answer with `status` and `retry_after`
/// (seconds) `elapsed` after the first attempt: `None` to go on to the next batch.
fn retry_wait(status: u16, retry_after: Option<&str>, elapsed: Duration) -> Option<Duration> {
    if status != 503 || elapsed >= RETRY_FOR {
        return None;
    }
    let asked = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    Some(asked.unwrap_or(RETRY_WAIT).clamp(Duration::from_millis(100), RETRY_WAIT_MAX))
}

/// How often a worker reports what its peer refused of the transactions it forwarded.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Adds the refusals in a peer's answer to a forwarded batch (`{"results": [...]}`, one entry per
/// transaction, with a `code` where it was refused) to `refused`, by code; returns how many
/// answers it read.
fn tally(answer: &[u8], refused: &mut BTreeMap<String, u64>) -> usize {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(answer) else { return 0 };
    let results = v["results"].as_array().map(Vec::as_slice).unwrap_or_default();
    for code in results.iter().filter_map(|r| r["code"].as_str()) {
        *refused.entry(code.to_string()).or_default() += 1;
    }
    results.len()
}

/// How long a batch gathers transactions before it is sent, unless it fills first. Each batch is
/// a request to the peer, with a fixed cost on both sides: at 200 transactions a second admitted
/// per node, a 10 ms window (woken by every transaction) sent a peer a batch of three or four,
/// 58 times a second; this window halves that (docs/BENCHMARKS.md). A forwarded transaction
/// waits at most this long, against a block interval of hundreds of milliseconds.
const WINDOW: Duration = Duration::from_millis(25);

/// A batch being gathered: at most [`BATCH`] transactions and [`BATCH_BYTES`] bytes; a transaction
/// that would overflow it is held over to start the next one.
#[derive(Debug, Default)]
struct Gather {
    batch: Vec<Arc<str>>,
    bytes: usize,
    held: Option<Arc<str>>,
}

impl Gather {
    /// Starts a batch with the transaction held over, if any.
    fn start(&mut self) {
        self.batch.clear();
        self.bytes = 0;
        if let Some(t) = self.held.take() {
            self.push(t);
        }
    }

    /// Adds `t`, or holds it over if the batch has no room for it; false when the batch is full.
    fn push(&mut self, t: Arc<str>) -> bool {
        if !self.batch.is_empty() && (self.batch.len() >= BATCH || self.bytes + t.len() > BATCH_BYTES) {
            self.held = Some(t);
            return false;
        }
        self.bytes += t.len();
        self.batch.push(t);
        self.batch.len() < BATCH && self.bytes < BATCH_BYTES
    }

    fn full(&self) -> bool {
        self.held.is_some() || self.batch.len() >= BATCH || self.bytes >= BATCH_BYTES
    }
}

/// Moves queued transactions into `g` until it is full or the queue is empty; false once the
/// sending side is gone.
fn drain(rx: &Receiver<Arc<str>>, g: &mut Gather) -> bool {
    while !g.full() {
        match rx.try_recv() {
            Ok(t) => {
                g.push(t);
            }
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
    true
}

fn run(rx: Receiver<Arc<str>>, peer: String, signer: Signer) {
    let agent = agent(Duration::from_secs(5));
    let mut last_warning: Option<Instant> = None;
    // What the peer answered since the last report: a transaction it refuses (other than one it
    // has committed already) waits for this node's own turn to propose.
    let (mut answered, mut refused, mut last_report) = (0u64, BTreeMap::new(), Instant::now());
    let mut g = Gather::default();
    loop {
        g.start();
        if g.batch.is_empty() {
            match rx.recv() {
                Ok(t) => {
                    g.push(t);
                }
                Err(_) => return,
            }
        }
        // What is queued already goes at once; otherwise the batch gathers for one window, with
        // this thread asleep rather than woken by every transaction pushed.
        let open = drain(&rx, &mut g);
        if open && !g.full() {
            std::thread::sleep(WINDOW);
            drain(&rx, &mut g);
        }
        let body = serde_json::json!({ "txs": g.batch.iter().map(|t| &**t).collect::<Vec<&str>>() }).to_string();
        let forwarded = header_value(&signer.key, &signer.genesis_hash, body.as_bytes());
        // The answer is read to its end: ureq returns a connection to its pool only then, and a
        // connection closed after every batch cost a TCP handshake, an accepted connection on the
        // peer and a socket in TIME_WAIT, a hundred times a second per peer under load.
        let first = Instant::now();
        let r = loop {
            let r = agent
                .post(format!("{peer}/v1/txs/batch"))
                .header(FORWARDED_HEADER, &forwarded)
                .header("content-type", "application/json")
                .send(body.as_bytes())
                .and_then(|mut resp| {
                    let retry_after =
                        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                    resp.body_mut().read_to_vec().map(|body| (resp.status(), retry_after, body))
                });
            // A peer not ready yet (catching up) would refuse what its state has not seen: the
            // same batch goes again once it is.
            if let Ok((status, retry_after, _)) = &r
                && let Some(wait) = retry_wait(status.as_u16(), retry_after.as_deref(), first.elapsed())
            {
                debug!(peer = %peer, "the peer is not ready; sending the batch again in {wait:?}");
                std::thread::sleep(wait);
                continue;
            }
            break r.map(|(status, _, body)| (status, body));
        };
        let problem = match r {
            Ok((status, body)) if status.is_success() => {
                answered += tally(&body, &mut refused) as u64;
                None
            }
            Ok((status, _)) => Some(format!("the peer answered {status}")),
            Err(e) => Some(e.to_string()),
        };
        if let Some(problem) = problem {
            // Peers that are down or overloaded are expected in a BFT network; say so at most
            // every 30 s.
            if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) {
                warn!(peer = %peer, error = %problem, "cannot forward transactions to a peer");
                last_warning = Some(Instant::now());
            }
        }
        if last_report.elapsed() >= REPORT_EVERY {
            if !refused.is_empty() {
                info!(peer = %peer, answered, ?refused, "forwarded transactions the peer refused, by code");
            }
            (answered, last_report) = (0, Instant::now());
            refused.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sabt_core::entry::{BatchAnchor, RecordKind};
    use sabt_core::hash::Hash32;
    use sabt_core::sign::SecretKey;
    use sabt_core::tx::{Transaction, TxBody};
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn signer() -> Signer {
        Signer { key: Arc::new(SecretKey::from_seed(&[3; 32])), genesis_hash: Hash32([4; 32]) }
    }

    /// A peer that answers every request with a small JSON body, counting connections and
    /// requests.
    fn peer() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        peer_refusing(0)
    }

    /// A peer as [`peer`] that answers its first `refuse` requests 503 (not ready).
    fn peer_refusing(refuse: usize) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, r) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    loop {
                        let mut length = 0;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap();
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        let seen = r.fetch_add(1, Ordering::SeqCst);
                        let (status, answer) = if seen < refuse {
                            ("503 Service Unavailable\r\nretry-after: 0", r#"{"code":"not_ready"}"#)
                        } else {
                            ("200 OK", r#"{"results":[{"ok":true}]}"#)
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            answer.len()
                        );
                        out.write_all(head.as_bytes()).unwrap();
                        out.write_all(answer.as_bytes()).unwrap();
                    }
                });
            }
        });
        (url, connections, requests)
    }

    fn tx(nonce: u64) -> SignedTx {
        let key = SecretKey::from_seed(&[7; 32]);
        Transaction {
            chain_id: "sabt-test".into(),
            signer: key.public(),
            nonce,
            body: TxBody::AnchorBatch(BatchAnchor { root: Hash32([1; 32]), size: 1, kind: RecordKind::Other }),
        }
        .sign(&key)
    }

    #[test]
    fn batches_stay_within_the_peers_body_limit_and_hold_over_what_does_not_fit() {
        let (tx, rx) = sync_channel(QUEUE);
        // Transactions of 200 KiB as hex, as large ones are: four fit, the fifth starts the next batch.
        let big: Arc<str> = "a".repeat(200 << 10).into();
        for _ in 0..9 {
            tx.send(big.clone()).unwrap();
        }
        let mut g = Gather::default();
        let mut sizes = Vec::new();
        loop {
            g.start();
            drain(&rx, &mut g);
            if g.batch.is_empty() {
                break;
            }
            let body = serde_json::json!({ "txs": g.batch.iter().map(|t| &**t).collect::<Vec<&str>>() });
            assert!(serde_json::to_vec(&body).unwrap().len() < 1 << 20, "a batch over the body limit");
            sizes.push(g.batch.len());
        }
        assert_eq!(sizes, vec![3, 3, 3]);
        // Small transactions fill a batch by count.
        let small: Arc<str> = "b".repeat(300).into();
        for _ in 0..(BATCH + 5) {
            tx.send(small.clone()).unwrap();
        }
        g.start();
        drain(&rx, &mut g);
        assert_eq!(g.batch.len(), BATCH);
        g.start();
        drain(&rx, &mut g);
        assert_eq!(g.batch.len(), 5);
        // One transaction larger than the byte bound still goes, alone.
        tx.send("c".repeat(BATCH_BYTES + 1).into()).unwrap();
        tx.send(small).unwrap();
        g.start();
        drain(&rx, &mut g);
        assert_eq!(g.batch.len(), 1);
    }

    #[test]
    fn the_agent_bounds_every_step_and_resolves_in_place() {
        let t = agent(Duration::from_secs(3)).config().timeouts();
        // A whole-request or resolve timeout would put every request's name resolution on a
        // thread of its own.
        assert_eq!((t.global, t.per_call, t.resolve), (None, None, None));
        for step in [t.connect, t.send_request, t.send_body, t.recv_response, t.recv_body] {
            assert_eq!(step, Some(Duration::from_secs(3)));
        }
    }

    #[test]
    fn a_peer_that_never_answers_is_given_up_on() {
        // Accepts the connection and reads, never answers (as a paused process does).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/txs/batch", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(30));
            drop(held);
        });
        let started = Instant::now();
        let r = agent(Duration::from_millis(300)).post(&url).send_json(serde_json::json!({ "txs": [] }));
        assert!(r.is_err(), "a silent peer answered: {r:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "gave up only after {:?}", started.elapsed());
    }

    #[test]
    fn the_forwarding_mark_is_a_validators_signature_over_the_genesis_and_the_body() {
        let (key, genesis) = (SecretKey::from_seed(&[3; 32]), Hash32([4; 32]));
        let body = br#"{"txs":[]}"#;
        let mark = header_value(&key, &genesis, body);
        // A frozen vector (the same bytes come out of another Ed25519 implementation, signing
        // "sabt/forward/v1", a zero byte, the genesis hash and the body): the mark never drifts.
        assert_eq!(
            mark,
            "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1:\
             58f01685f6edcdfbb8ee83446ad879e18166cf774d77626f385d268ee0e66912e9404bc1edf944dbd51b9da36263021f2c0790c94fb779f382d6faabed464e00"
        );
        let (k, sig) = parse_header(&mark).unwrap();
        assert_eq!(k, key.public());
        assert!(verify(&k, &sig, &genesis, body));
        assert!(!verify(&k, &sig, &Hash32([5; 32]), body), "another chain");
        assert!(!verify(&k, &sig, &genesis, br#"{"txs":["00"]}"#), "another body");
        let other = SecretKey::from_seed(&[6; 32]).public();
        assert!(!verify(&other, &sig, &genesis, body), "another key");
        for bad in ["", "1", "zz:zz", &mark[..64], &mark[..mark.len() - 2]] {
            assert!(parse_header(bad).is_none(), "{bad:?} is not a mark");
        }
    }

    #[test]
    fn a_batch_a_peer_is_not_ready_for_goes_again_until_it_is() {
        let (url, _, requests) = peer_refusing(3);
        let f = Forwarder::start(vec![url], signer()).unwrap();
        assert!(f.push(&tx(1)));
        // Refused three times, then taken: four requests for one batch, and no more.
        let by = Instant::now() + Duration::from_secs(10);
        while requests.load(Ordering::SeqCst) < 4 && Instant::now() < by {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(requests.load(Ordering::SeqCst), 4);
        // The rule itself: only 503 is retried, within its time, at the wait asked (bounded).
        let s = Duration::from_secs;
        assert_eq!(retry_wait(503, Some("2"), s(0)), Some(s(2)));
        assert_eq!(retry_wait(503, None, s(5)), Some(RETRY_WAIT));
        assert_eq!(retry_wait(503, Some("3600"), s(5)), Some(RETRY_WAIT_MAX));
        assert_eq!(retry_wait(503, Some("1"), RETRY_FOR), None);
        assert_eq!(retry_wait(429, Some("1"), s(0)), None);
        assert_eq!(retry_wait(200, None, s(0)), None);
    }

    #[test]
    fn a_peers_refusals_are_counted_by_code() {
        let mut refused = BTreeMap::new();
        let answer = br#"{"results":[{"id":"ab","status":"pending"},{"code":"nonce_gap","message":"m"},
            {"code":"committed","message":"m"},{"code":"nonce_gap","message":"m"}]}"#;
        assert_eq!(tally(answer, &mut refused), 4);
        assert_eq!(tally(br#"{"results":[{"code":"mempool_full"}]}"#, &mut refused), 1);
        let got: Vec<(&str, u64)> = refused.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("committed", 1), ("mempool_full", 1), ("nonce_gap", 2)]);
        // An answer that is not a batch's counts nothing.
        assert_eq!(tally(b"not json", &mut refused), 0);
        assert_eq!(tally(br#"{"error":"x"}"#, &mut refused), 0);
        assert_eq!(refused.values().sum::<u64>(), 4);
    }

    #[test]
    fn batches_to_a_peer_reuse_one_connection() {
        let (url, connections, requests) = peer();
        let f = Forwarder::start(vec![url], signer()).unwrap();
        for n in 0..4 {
            assert!(f.push(&tx(n)));
            // Longer than the batching window: each transaction goes in a request of its own.
            let sent = n as usize + 1;
            let by = Instant::now() + Duration::from_secs(10);
            while requests.load(Ordering::SeqCst) < sent && Instant::now() < by {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(requests.load(Ordering::SeqCst), sent);
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1, "every batch opened a connection of its own");
    }
}

//! Attackers of the nodes' APIs, run beside the load generator: slow clients that hold
//! connections and send a request's head or body one byte a second, and a flood of junk and
//! forged-forwarded submissions. Each comes from loopback addresses of its own (127.0.0.2 and
//! up), as clients on other machines would; a prober asks every node's `/livez` from 127.0.0.1
//! ten times a second and reports how long the answers took.

use crate::stats::{self, Summary};
use sabt_core::codec;
use sabt_core::sign::SecretKey;
use sabt_core::tx::{Transaction, TxBody};
use serde::Serialize;
use socket2::{Domain, SockAddr, Socket, Type};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct AttackCfg {
    /// The nodes' API addresses.
    pub nodes: Vec<SocketAddr>,
    /// The chain id, so that junk transactions get past the first check.
    pub chain_id: String,
    /// Seconds to attack.
    pub secs: f64,
    /// Slow connections held to each node.
    pub slow_per_node: usize,
    /// Junk and forged-forwarded submissions per second, over all nodes.
    pub flood_per_s: f64,
}

/// What the attack saw.
#[derive(Debug, Serialize)]
pub struct AttackResult {
    /// Seconds attacked.
    pub secs: f64,
    /// Slow connections held to each node.
    pub slow_per_node: usize,
    /// Slow connections the nodes answered or closed (each then opened again).
    pub slow_cut: u64,
    /// Flood requests sent.
    pub flood_sent: u64,
    /// Flood answers by HTTP status (0: no answer).
    pub flood_answers: BTreeMap<u16, u64>,
    /// `/livez` latency from 127.0.0.1, milliseconds, every node.
    pub livez_ms: Summary,
    /// `/livez` probes that failed or answered anything but 200.
    pub livez_failed: u64,
}

/// The local address of attacker `k`: 127.0.0.2 upwards, 64 connections each (a node's default
/// cap per address), so that every slow connection is within its address's limits.
fn source(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, u8::try_from(2 + k / 64).unwrap_or(u8::MAX))
}

fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SockAddr::from(SocketAddr::from((from, 0))))?;
    s.connect_timeout(&SockAddr::from(to), Duration::from_secs(2))?;
    Ok(s.into())
}

struct Slow {
    from: Ipv4Addr,
    to: SocketAddr,
    head: bool,
    stream: Option<TcpStream>,
    sent: usize,
}

const SLOW_HEAD: &[u8] = b"GET /v1/status HTTP/1.1\r\nHost: node\r\nX-Padding: ";
const SLOW_BODY: &[u8] =
    b"POST /v1/txs HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";

impl Slow {
    /// (Re)opens the connection; a body's head goes at once.
    fn open(&mut self) {
        self.sent = 0;
        self.stream = connect_from(self.from, self.to).ok().and_then(|mut s| {
            if !self.head {
                s.write_all(SLOW_BODY).ok()?;
            }
            s.set_nonblocking(true).ok()?;
            Some(s)
        });
    }

    /// Sends one more byte; true if the node answered or closed the connection (it is reopened).
    fn tick(&mut self) -> bool {
        let Some(s) = &mut self.stream else {
            self.open();
            return false;
        };
        let mut buf = [0u8; 512];
        let cut = match s.read(&mut buf) {
            Ok(_) => true,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        let next = if self.head { SLOW_HEAD.get(self.sent).copied().unwrap_or(b'a') } else { b' ' };
        let cut = cut || matches!(s.write(&[next]), Err(e) if e.kind() != ErrorKind::WouldBlock);
        self.sent += 1;
        if cut {
            self.open();
        }
        cut
    }
}

/// One request over a fresh connection; the answer's status (0 if none).
fn send(from: Ipv4Addr, to: SocketAddr, head: &str, body: &str) -> u16 {
    let Ok(mut s) = connect_from(from, to) else { return 0 };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "{head}\r\nHost: node\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut answer = [0u8; 16];
    match s.read(&mut answer) {
        Ok(n) => std::str::from_utf8(&answer[..n]).ok().and_then(|a| a.split(' ').nth(1)?.parse().ok()).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Runs the attack for `cfg.secs`.
pub fn run(cfg: &AttackCfg) -> anyhow::Result<AttackResult> {
    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let answers = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
    let mut threads = Vec::new();

    // Slow clients: one thread ticks every node's connections once a second.
    let mut slow: Vec<Slow> = cfg
        .nodes
        .iter()
        .flat_map(|&to| {
            (0..cfg.slow_per_node).map(move |k| Slow { from: source(k), to, head: k % 2 == 0, stream: None, sent: 0 })
        })
        .collect();
    {
        let (stop, cut) = (stop.clone(), cut.clone());
        threads.push(std::thread::spawn(move || {
            for s in &mut slow {
                s.open();
            }
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let n = slow.iter_mut().map(Slow::tick).filter(|c| *c).count();
                cut.fetch_add(n as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
            }
        }));
    }

    // The flood: two threads, each sending half the rate, from addresses of their own (beyond the
    // slow clients'), in turn junk hex, transactions whose signature does not verify, and batches
    // marked as forwarded by a key that is no validator's.
    for t in 0..2usize {
        let (stop, sent, answers, nodes) = (stop.clone(), sent.clone(), answers.clone(), cfg.nodes.clone());
        let interval = Duration::from_secs_f64(2.0 / cfg.flood_per_s.max(0.1));
        let chain_id = cfg.chain_id.clone();
        let key = SecretKey::from_seed(&[0x5a; 32]);
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            let next_source = |n: u64| Ipv4Addr::new(127, 0, 200 + t as u8, 2 + (n % 250) as u8);
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let to = nodes[(n as usize) % nodes.len()];
                let mut stx = Transaction {
                    chain_id: chain_id.clone(),
                    signer: key.public(),
                    nonce: n,
                    body: TxBody::AnchorBatch(sabt_core::entry::BatchAnchor {
                        root: sabt_core::hash::hash(sabt_core::hash::TX, &n.to_be_bytes()),
                        size: 1,
                        kind: sabt_core::entry::RecordKind::Other,
                    }),
                }
                .sign(&key);
                stx.signature.0[0] ^= 1;
                let tx = hex::encode(codec::encode(&stx));
                let status = match n % 3 {
                    0 => send(next_source(n), to, "POST /v1/txs HTTP/1.1", r#"{"tx":"not hex at all"}"#),
                    1 => send(next_source(n), to, "POST /v1/txs HTTP/1.1", &format!(r#"{{"tx":"{tx}"}}"#)),
                    _ => {
                        let forged = format!("{}:{}", key.public().to_hex(), hex::encode([7u8; 64]));
                        send(
                            next_source(n),
                            to,
                            &format!("POST /v1/txs/batch HTTP/1.1\r\nX-Sabt-Forwarded: {forged}"),
                            &format!(r#"{{"txs":["{tx}"]}}"#),
                        )
                    }
                };
                sent.fetch_add(1, Ordering::Relaxed);
                *answers.lock().unwrap_or_else(|p| p.into_inner()).entry(status).or_default() += 1;
                n += 1;
                let due = start + interval.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
        }));
    }

    // The prober, from 127.0.0.1.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let (mut livez, mut failed) = (Vec::new(), 0u64);
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < cfg.secs {
        for node in &cfg.nodes {
            let t = Instant::now();
            match agent.get(format!("http://{node}/livez")).call() {
                Ok(r) if r.status() == 200 => livez.push(t.elapsed().as_secs_f64() * 1e3),
                _ => failed += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let flood_answers = answers.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(AttackResult {
        secs: cfg.secs,
        slow_per_node: cfg.slow_per_node,
        slow_cut: cut.load(Ordering::Relaxed),
        flood_sent: sent.load(Ordering::Relaxed),
        flood_answers,
        livez_ms: stats::summarize(livez),
        livez_failed: failed,
    })
}

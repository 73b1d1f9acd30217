#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! The API under attack, through the real `sabt-node` binary: slow clients that send a request's
//! head or body one byte at a time, clients that open more connections or make more requests than
//! their address may, and a forged mark of a forwarded submission. Health probes answer
//! throughout, and other clients' submissions are admitted and committed.
//!
//! Attackers connect from loopback addresses of their own (127.0.0.2, 127.0.0.3), as clients on
//! other machines would; the test's own requests come from 127.0.0.1.

use sabt_tests::cli::{sabt, text};
use sabt_tests::cluster::{Cluster, agent};
use socket2::{Domain, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A TCP connection to `to` from the local address `from`.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SockAddr::from(SocketAddr::from((from, 0))))?;
    s.connect_timeout(&SockAddr::from(to), SECS(5))?;
    Ok(s.into())
}

/// One request over a connection of its own from `from`; the status and the whole answer.
fn request_from(from: Ipv4Addr, to: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut s = connect_from(from, to).unwrap();
    s.set_read_timeout(Some(SECS(10))).unwrap();
    let req = format!("{head}\r\nHost: node\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, answer)
}

/// A slow client: a request's head, or a head and then its body, one byte per tick.
struct Slow {
    stream: TcpStream,
    rest: Vec<u8>,
    /// What the node answered before closing, or that it closed.
    ended: Option<String>,
}

/// Opens `n` slow connections from `from` to `to`: half send their head slowly, half send a
/// complete head for a 100,000-byte submission and then its body slowly.
fn slow_clients(from: Ipv4Addr, to: SocketAddr, n: usize) -> Vec<Slow> {
    (0..n)
        .map(|i| {
            let mut stream = connect_from(from, to).unwrap();
            let rest = if i % 2 == 0 {
                b"GET /v1/status HTTP/1.1\r\nHost: node\r\nX-Padding: ".iter().chain([b'a'; 4096].iter()).copied().collect()
            } else {
                stream
                    .write_all(
                        b"POST /v1/txs HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
                    )
                    .unwrap();
                vec![b' '; 100_000]
            };
            stream.set_nonblocking(true).unwrap();
            Slow { stream, rest, ended: None }
        })
        .collect()
}

/// Sends each slow client's next byte, and notes which the node has answered or closed.
fn tick(clients: &mut [Slow]) {
    for c in clients.iter_mut().filter(|c| c.ended.is_none()) {
        let mut buf = [0u8; 4096];
        match c.stream.read(&mut buf) {
            Ok(0) => c.ended = Some(String::new()),
            Ok(n) => c.ended = Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => c.ended = Some(String::new()),
        }
        if c.ended.is_none() && !c.rest.is_empty() {
            match c.stream.write(&c.rest[..1]) {
                Ok(_) => {
                    c.rest.remove(0);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => c.ended = Some(String::new()),
            }
        }
    }
}

/// Keeps `clients` trickling for `during`, asking node `i` for `/livez` every 250 ms from
/// 127.0.0.1; returns the slowest answer, and panics on any answer but 200 or any later than 1 s.
fn trickle_and_probe(c: &Cluster, i: usize, clients: &mut [Slow], during: Duration) -> Duration {
    let probe =
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(SECS(1))).build().new_agent();
    let (started, mut slowest, mut last_tick) = (Instant::now(), Duration::ZERO, Instant::now() - SECS(1));
    while started.elapsed() < during {
        if last_tick.elapsed() >= SECS(1) {
            tick(clients);
            last_tick = Instant::now();
        }
        let t = Instant::now();
        let r = probe.get(format!("{}/livez", c.nodes[i].url)).call();
        let took = t.elapsed();
        match r {
            Ok(resp) => assert_eq!(resp.status(), 200, "/livez under attack answered {}", resp.status()),
            Err(e) => panic!("/livez under attack did not answer within 1 s ({took:?}): {e}"),
        }
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(250));
    }
    slowest
}

fn edit_config(c: &Cluster, i: usize, edits: &[(&str, &str)]) {
    let path = c.nodes[i].home.join("config.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "config.toml has no {from:?}");
        text = text.replace(from, to);
    }
    std::fs::write(path, text).unwrap();
}

fn api_addr(c: &Cluster, i: usize) -> SocketAddr {
    c.nodes[i].url.trim_start_matches("http://").parse().unwrap()
}

#[test]
fn slow_clients_flooding_connections_stall_neither_health_probes_nor_other_clients() {
    let mut c = Cluster::start(4, 26000).unwrap();
    c.wait_all(2, SECS(60)).unwrap();
    // Node 1 with short timeouts (so that the test sees them work) and a low rate per address.
    c.terminate(0).unwrap();
    edit_config(
        &c,
        0,
        &[
            ("header_timeout_ms = 10000", "header_timeout_ms = 3000"),
            ("body_timeout_ms = 30000", "body_timeout_ms = 5000"),
            ("requests_per_second_per_address = 200", "requests_per_second_per_address = 20"),
            ("burst_per_address = 400", "burst_per_address = 40"),
            // The local network exempts its own machine; here 127.0.0.1 is a client like any other.
            (r#"exempt_addresses = ["127.0.0.1"]"#, "exempt_addresses = []"),
        ],
    );
    c.start_node(0).unwrap();
    c.wait_height(0, c.height(1).unwrap() + 1, SECS(60)).unwrap();
    let node1 = api_addr(&c, 0);
    let localhost = Ipv4Addr::LOCALHOST;

    // 600 slow connections from the probe's own address: every probe is answered, at once.
    let mut attack = slow_clients(localhost, node1, 600);
    let slowest = trickle_and_probe(&c, 0, &mut attack, SECS(9));
    eprintln!("slowest /livez with 600 slow connections from its own address: {slowest:?}");
    // By now every slow head has run out of its 3 s, and every slow body of its 5 s (or its
    // request was refused at once, its address having more connections than it may).
    tick(&mut attack);
    let heads_open = attack.iter().step_by(2).filter(|s| s.ended.is_none()).count();
    assert_eq!(heads_open, 0, "connections sending a request's head one byte a second are closed after 3 s");
    let bodies: Vec<&str> = attack.iter().skip(1).step_by(2).map(|s| s.ended.as_deref().unwrap_or("open")).collect();
    let answered = |code: &str| bodies.iter().filter(|a| a.starts_with(&format!("HTTP/1.1 {code}"))).count();
    assert_eq!(bodies.iter().filter(|a| **a == "open").count(), 0, "slow bodies are cut off: {:?}", &bodies[..3]);
    assert!(answered("408") >= 1, "a slow body within its address's limits is answered 408: {:?}", &bodies[..3]);
    assert!(answered("429") >= 200, "requests beyond the address's connections are answered 429");
    drop(attack);

    // 600 slow connections from another address: probes answer, and a clerk's submissions from
    // here are admitted and committed.
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut attack = slow_clients(attacker, node1, 600);
    // The attacker's address is over its connections: its requests are refused, with a wait.
    let (status, answer) = request_from(attacker, node1, "GET /v1/status HTTP/1.1", "");
    assert_eq!(status, 429, "{answer}");
    assert!(answer.contains("too_many_connections") && answer.to_ascii_lowercase().contains("retry-after:"));
    let key = c.admin_key(0).unwrap();
    let mut ids = Vec::new();
    for n in 0..10 {
        tick(&mut attack);
        let tx = c.anchor_tx(&key, n, 7000 + n);
        let (status, answer) = c.submit(0, &tx).unwrap();
        assert_eq!(status, 202, "a clerk's submission while another address attacks: {answer}");
        ids.push(tx.id());
    }
    trickle_and_probe(&c, 0, &mut attack, SECS(2));
    c.wait_committed(&[1, 2, 3], &ids, SECS(60)).unwrap();
    drop(attack);

    // A third address asking faster than its rate gets 429 with a wait, the others are served.
    let fast = Ipv4Addr::new(127, 0, 0, 3);
    let statuses: Vec<(u16, String)> =
        (0..80).map(|_| request_from(fast, node1, "GET /v1/status HTTP/1.1", "")).collect();
    let limited: Vec<&String> = statuses.iter().filter(|(s, _)| *s == 429).map(|(_, a)| a).collect();
    assert!(limited.len() >= 20, "80 requests at once against 20/s with a burst of 40: {} refused", limited.len());
    assert!(limited.iter().all(|a| a.contains("rate_limited") && a.to_ascii_lowercase().contains("retry-after: ")));
    assert_eq!(c.get(0, "/v1/status").map(|(s, _)| s), Some(200), "another address keeps its own rate");
    // Every refusal is counted for the operator, by code.
    for code in ["rate_limited", "too_many_connections", "body_timeout"] {
        assert!(c.metric(0, "sabt_api_refused", &format!("code=\"{code}\"")) >= 1.0, "sabt_api_refused{{code={code}}}");
    }

    // The mark of a forwarded submission, without a validator's signature over the body, is refused.
    let body = r#"{"txs":[]}"#;
    let (status, answer) = request_from(
        Ipv4Addr::new(127, 0, 0, 4),
        node1,
        "POST /v1/txs/batch HTTP/1.1\r\nContent-Type: application/json\r\nX-Sabt-Forwarded: 1",
        body,
    );
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("forged_forward"), "{answer}");
    let agent = agent();
    let unsigned = agent
        .post(format!("{}/v1/txs/batch", c.nodes[0].url))
        .header("x-sabt-forwarded", "00")
        .send_json(serde_json::json!({"txs": []}))
        .unwrap();
    assert_eq!(unsigned.status(), 403);

    for id in &ids {
        assert!(c.committed_at(0, id).is_some(), "node 1 has every transaction its clerk submitted");
    }

    // The clerk's CLI: several nodes for failover, and errors as JSON objects with their code.
    let down = "http://127.0.0.1:9";
    let both = format!("{down},{}", c.nodes[1].url);
    let out = sabt(&["status", "--node", &both, "--json"]);
    assert!(out.status.success(), "the second node answers when the first is down: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be reached"), "{}", text(&out));
    let out = sabt(&["status", "--node", down, "--json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((e["error"]["code"].as_str(), e["error"]["exit"].as_u64()), (Some("unreachable"), Some(4)), "{e}");
    let out = sabt(&["block", "999999", "--node", c.nodes[1].url.as_str(), "--json"]);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((e["error"]["code"].as_str(), e["error"]["status"].as_u64()), (Some("no_such_block"), Some(404)), "{e}");
    // Back to the local network's settings, under which the harness reads every block of every
    // node at its own pace.
    c.terminate(0).unwrap();
    edit_config(&c, 0, &[("exempt_addresses = []", r#"exempt_addresses = ["127.0.0.1"]"#)]);
    c.start_node(0).unwrap();
    let h = c.height(1).unwrap();
    c.wait_all(h + 1, SECS(60)).unwrap();
    c.finish(&[0, 1, 2, 3]).unwrap();
}

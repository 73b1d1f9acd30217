#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! One node through its real binary: key files readable by others are refused at start, JSON logs,
//! metrics, a clean stop on SIGTERM that keeps every block, the hash-chained access log across a
//! restart (and its verification catching an edited line and deleted lines), and refusal of an
//! inconsistent store.

#[path = "support/raw_store.rs"]
mod raw_store;

use sabt_tests::cluster::{agent, bin};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const API: &str = "http://127.0.0.1:30401";
const METRICS: &str = "http://127.0.0.1:30501";

fn height() -> Option<u64> {
    let v: serde_json::Value = agent().get(format!("{API}/v1/status")).call().ok()?.body_mut().read_json().ok()?;
    v["height"].as_u64()
}

fn wait_height(h: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(x) = height().filter(|x| *x >= h) {
            return x;
        }
        assert!(Instant::now() < deadline, "the node did not reach height {h}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start(home: &Path, extra: &[&str]) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(home.join("log")).unwrap();
    Command::new(bin("sabt-node"))
        .args(["start", "--home"])
        .arg(home)
        .args(extra)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap()
}

fn sigterm(mut child: Child) -> std::process::ExitStatus {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "no exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_node_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("sabt-genesis"))
        .args(["testnet", "--validators", "1", "--base-port", "30300", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let home = dir.path().join("node-1");
    let key = home.join("keys/consensus.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    // A key file others can read is refused, with the fix in the message.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(bin("sabt-node")).args(["start", "--home"]).arg(&home).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Structured logs, metrics, a clean stop.
    let child = start(&home, &["--log-format", "json"]);
    let h1 = wait_height(3);
    let mut metrics = String::new();
    agent().get(format!("{METRICS}/metrics")).call().unwrap().body_mut().read_to_string().map(|t| metrics = t).unwrap();
    for name in [
        "sabt_height",
        "sabt_round",
        "sabt_peers",
        "sabt_mempool_size",
        "sabt_commit_latency_seconds",
        "sabt_access_log_seq",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}");
    }
    let doc: serde_json::Value =
        agent().get(format!("{API}/v1/openapi.json")).call().unwrap().body_mut().read_json().unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/records/{digest}/status"]["get"].is_object(), "{doc}");
    let st = sigterm(child);
    assert!(st.success(), "SIGTERM exit status {st}");
    let log = std::fs::read_to_string(home.join("log")).unwrap();
    let json_lines = log.lines().filter(|l| l.starts_with('{')).count();
    assert!(json_lines > 5, "expected JSON log lines");
    for l in log.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"));
    }

    // Every /v1 request was recorded; the chain verifies.
    let verify = |extra: &[&str]| {
        let out = Command::new(bin("sabt-node"))
            .args(["access-log", "verify", "--home"])
            .arg(&home)
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let seq =
        |text: &str| -> u64 { text.split("head seq ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap() };
    let (code, text) = verify(&[]);
    assert_eq!(code, Some(0), "{text}");
    let first = seq(&text);
    assert!(first >= 1, "{text}");

    // Restarted, it keeps every block and goes on, and the access log's chain continues.
    let child = start(&home, &[]);
    let h2 = wait_height(h1 + 1);
    assert!(h2 > h1);
    assert!(sigterm(child).success());
    let (code, text) = verify(&[]);
    assert_eq!(code, Some(0), "{text}");
    let second = seq(&text);
    assert!(second > first, "{text}");
    let access = std::fs::read_to_string(home.join("data/access.log")).unwrap();
    let line: serde_json::Value = serde_json::from_str(access.lines().next().unwrap()).unwrap();
    assert_eq!(line["method"], "GET");
    assert_eq!(line["target"], "/v1/status");
    assert_eq!(line["outcome"], "ok");
    assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    // A head recorded elsewhere catches lines deleted at the end; an edited line is named.
    let (code, text) = verify(&["--expect-head", &(second + 5).to_string()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("deleted"), "{text}");
    let edited = access.replacen("\"outcome\":\"ok\"", "\"outcome\":\"no\"", 1);
    std::fs::write(home.join("data/access.log"), edited).unwrap();
    let (code, text) = verify(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("BROKEN at line 1"), "{text}");

    // Damage the store: drop the last block. The node refuses to start and says why.
    {
        let db = raw_store::open(&home);
        let meta = db.cf_handle("meta").unwrap();
        let tip = db.get_cf(meta, b"tip").unwrap().unwrap();
        assert!(!tip.is_empty());
        let blocks = db.cf_handle("blocks").unwrap();
        let last = db.iterator_cf(blocks, rocksdb::IteratorMode::End).next().unwrap().unwrap().0;
        db.delete_cf(blocks, last).unwrap();
    }
    let out = Command::new(bin("sabt-node")).args(["start", "--home"]).arg(&home).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to start on an inconsistent store"), "{err}");
}

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! The clerk's workflow through the real `sabt` binary against four real nodes: a keystore, its
//! authorisation by an agency admin, anchoring one file and a directory of 1,000 files (one batch),
//! offline verification of every proof file, a rerun that skips what is done, withdrawal and
//! supersession with status proofs checked offline, and refusals after revocation, outside the
//! key's record kinds and by another agency; the auditor's chain re-execution (passing on the
//! honest chain, failing on a block altered on one node's disk), consistency check, and watch
//! alarms on a rollback and a fork.

#[path = "support/raw_store.rs"]
mod raw_store;

use sabt_core::checkpoint::{Checkpoint, SignedNote, cosign};
use sabt_core::hash::Hash32;
use sabt_core::sign::SecretKey;
use sabt_tests::cli::{p, sabt, text};
use sabt_tests::cluster::Cluster;
use std::path::Path;
use std::time::Duration;

#[test]
fn clerk_anchors_verifies_and_is_stopped_by_revocation() {
    let mut c = Cluster::start(4, 30000).unwrap();
    c.wait_all(2, Duration::from_secs(90)).unwrap();
    let dir = c.dir.path();
    let pass = dir.join("clerk.pass");
    std::fs::write(&pass, "a long clerk passphrase\n").unwrap();
    let keystore = dir.join("clerk.key");
    let out = sabt(&["key", "new", "--out", p(&keystore), "--passphrase-file", p(&pass)]);
    assert!(out.status.success(), "{}", text(&out));
    let clerk = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(clerk.len(), 64);
    let admin = c.nodes[0].home.join("keys/admin.key");
    let node1 = c.nodes[0].url.as_str();
    let node3 = c.nodes[2].url.as_str();

    // Not yet authorised: refused with its code, exit 4.
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let single = docs.join("deed.txt");
    std::fs::write(&single, b"deed 1").unwrap();
    let anchor = |files: &[&str], kind: &str| {
        let mut args = vec![
            "anchor",
            "--node",
            node3,
            "--key",
            p(&keystore),
            "--passphrase-file",
            p(&pass),
            "--kind",
            kind,
            "--repository",
            "Main Archive",
            "--fund",
            "7",
            "--inventory",
            "2",
            "--file-no",
            "31",
            "--agency",
            "ZAGS Dushanbe",
            "--json",
        ];
        args.extend_from_slice(files);
        sabt(&args)
    };
    let out = anchor(&[p(&single)], "civil_status");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("unauthorised"), "{}", text(&out));

    let out = sabt(&[
        "key",
        "authorize",
        "--key",
        p(&admin),
        "--node",
        node1,
        "--clerk",
        &clerk,
        "--kind",
        "civil_status,notary",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // One file: a single record, its proof verifies offline.
    let out = anchor(&[p(&single)], "civil_status");
    assert!(out.status.success(), "{}", text(&out));
    let genesis = dir.join("genesis.json");
    let proof = docs.join("deed.txt.sabt-proof.json");
    let out = sabt(&["verify", p(&single), "--proof", p(&proof), "--genesis", p(&genesis)]);
    assert!(out.status.success(), "{}", text(&out));

    // A proof at a given block: the block that committed the record, not before it.
    let rec = c
        .get(0, &format!("/v1/records/sha256:{}", sabt_core::fingerprint::Fingerprint::of_bytes(b"deed 1").sha256))
        .unwrap()
        .1;
    let (index, at) = (rec["index"].as_u64().unwrap(), rec["height"].as_u64().unwrap());
    let (code, v) = c.get(0, &format!("/v1/entries/{index}/proof?height={at}")).unwrap();
    assert_eq!((code, v["height"].as_u64(), v["size"].as_u64()), (200, Some(at), Some(index + 1)), "{v}");
    let (code, v) = c.get(0, &format!("/v1/entries/{index}/proof?height={}", at - 1)).unwrap();
    assert_eq!((code, v["code"].as_str()), (404, Some("no_such_entry")), "{v}");

    // A directory: one batch, one proof per document, each verifying only its own document.
    let batch = dir.join("batch");
    std::fs::create_dir_all(batch.join("sub")).unwrap();
    for i in 0..999 {
        std::fs::write(batch.join(format!("page-{i}.tif")), format!("scan {i}")).unwrap();
    }
    std::fs::write(batch.join("sub/page-999.tif"), "scan 999").unwrap();
    let anchor_dir = || {
        sabt(&[
            "anchor",
            "--dir",
            p(&batch),
            "--node",
            node3,
            "--key",
            p(&keystore),
            "--passphrase-file",
            p(&pass),
            "--kind",
            "notary",
            "--repository",
            "Main Archive",
            "--fund",
            "7",
            "--inventory",
            "2",
            "--file-no",
            "32",
            "--agency",
            "Notary Office 1",
            "--json",
        ])
    };
    let out = anchor_dir();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1000);
    assert!(lines.iter().all(|l| l["status"] == "anchored"));
    let index = lines[0]["index"].clone();
    assert!(lines.iter().all(|l| l["index"] == index), "one batch, one entry");
    for l in &lines {
        let f = l["file"].as_str().unwrap();
        let out = sabt(&["verify", f, "--genesis", p(&genesis)]);
        assert!(out.status.success(), "{f}: {}", text(&out));
    }
    let out = sabt(&[
        "verify",
        p(&batch.join("page-1.tif")),
        "--proof",
        p(&batch.join("page-2.tif.sabt-proof.json")),
        "--genesis",
        p(&genesis),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // A CSV manifest: per-row metadata over the flags; two kinds make two batches.
    let listed = dir.join("listed");
    std::fs::create_dir_all(&listed).unwrap();
    for n in ["a", "b", "c"] {
        std::fs::write(listed.join(format!("{n}.pdf")), format!("listed {n}")).unwrap();
    }
    let manifest = listed.join("manifest.csv");
    std::fs::write(
        &manifest,
        "file,kind,file_no,title\na.pdf,notary,40,Deed 40\nb.pdf,notary,41,Deed 41\nc.pdf,civil_status,42,Register 42\n",
    )
    .unwrap();
    let out = sabt(&[
        "anchor",
        "--manifest",
        p(&manifest),
        "--node",
        node3,
        "--key",
        p(&keystore),
        "--passphrase-file",
        p(&pass),
        "--repository",
        "Main Archive",
        "--fund",
        "7",
        "--inventory",
        "2",
        "--agency",
        "Notary Office 1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    let index_of = |name: &str| {
        lines.iter().find(|l| l["file"].as_str().unwrap().ends_with(name)).map(|l| l["index"].clone()).unwrap()
    };
    assert_eq!(index_of("a.pdf"), index_of("b.pdf"));
    assert_ne!(index_of("a.pdf"), index_of("c.pdf"));
    let out = sabt(&["verify", p(&listed.join("c.pdf")), "--genesis", p(&genesis), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["record"]["kind"].as_str(), v["record"]["title"].as_str()),
        (Some("civil_status"), Some("Register 42"))
    );

    // Rerun: everything is skipped, nothing is anchored twice.
    let before = c.get(0, "/v1/status").unwrap().1["log_size"].as_u64().unwrap();
    let out = anchor_dir();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).lines().all(|l| l.contains("\"skipped\"")));
    assert_eq!(c.get(0, "/v1/status").unwrap().1["log_size"].as_u64().unwrap(), before);

    // Status: current, then withdrawn; a batched record superseded by a corrected scan. Each status
    // proof verifies offline with the document's proof file.
    let conn = ["--genesis", p(&genesis), "--key", p(&keystore), "--passphrase-file", p(&pass)];
    let record = |args: &[&str], node: &str| {
        let mut all = vec!["record"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--node", node, "--json"]);
        sabt(&all)
    };
    let status_file = docs.join("deed.txt.sabt-status.json");
    let out = record(&["status", "--proof", p(&proof), "--genesis", p(&genesis)], node1);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(r#""state":"current""#), "{}", text(&out));
    let current_then = dir.join("deed-current.sabt-status.json");
    std::fs::copy(&status_file, &current_then).unwrap();
    let verify_status = |file: &Path, status: &Path, require: bool| {
        let mut args = vec!["verify", p(file), "--genesis", p(&genesis), "--status", p(status)];
        if require {
            args.push("--require-current");
        }
        sabt(&args)
    };
    let out = verify_status(&single, &status_file, true);
    assert!(out.status.success(), "{}", text(&out));
    let mut args = vec!["withdraw", "--proof", p(&proof), "--reason", "entered in error"];
    args.extend_from_slice(&conn);
    let out = record(&args, node3);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(r#""state":"withdrawn""#), "{}", text(&out));
    let out = verify_status(&single, &status_file, false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("WITHDRAWN at height"), "{}", text(&out));
    let out = verify_status(&single, &status_file, true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // The earlier proof still shows it current at its own, earlier height.
    let out = verify_status(&single, &current_then, true);
    assert!(out.status.success(), "{}", text(&out));
    // Withdrawn once only; a tampered status proof is refused.
    let out = record(&args, node1);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("not_current"), "{}", text(&out));
    let tampered = dir.join("tampered.sabt-status.json");
    let t = std::fs::read_to_string(&status_file).unwrap().replace("entered in error", "entered in eror");
    std::fs::write(&tampered, t).unwrap();
    let out = verify_status(&single, &tampered, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("status_mismatch"), "{}", text(&out));
    // A status proof of another document does not speak for this one.
    let out = verify_status(&batch.join("page-1.tif"), &status_file, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("other_record"), "{}", text(&out));

    let page3 = batch.join("page-3.tif");
    let page3_proof = batch.join("page-3.tif.sabt-proof.json");
    let corrected = docs.join("page-3-rescanned.tif");
    std::fs::write(&corrected, b"scan 3, rescanned").unwrap();
    // Another agency cannot touch this agency's record.
    let other_admin = c.nodes[1].home.join("keys/admin.key");
    let out = record(
        &["withdraw", "--proof", p(&page3_proof), "--reason", "x", "--genesis", p(&genesis), "--key", p(&other_admin)],
        node1,
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("wrong_agency"), "{}", text(&out));
    let mut args = vec!["supersede", "--proof", p(&page3_proof), p(&corrected), "--reason", "rescanned"];
    args.extend_from_slice(&conn);
    let out = record(&args, node3);
    assert!(out.status.success(), "{}", text(&out));
    let out = sabt(&["verify", p(&corrected), "--genesis", p(&genesis)]);
    assert!(out.status.success(), "{}", text(&out));
    let out = verify_status(&page3, &batch.join("page-3.tif.sabt-status.json"), false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("SUPERSEDED by sha256:"), "{}", text(&out));

    // The auditor re-executes the chain from the genesis, and checks the log was never rewritten.
    let out = sabt(&["audit", "chain", "--node", c.nodes[1].url.as_str(), "--genesis", p(&genesis)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("CONSISTENT"), "{}", text(&out));
    let bundle: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&proof).unwrap()).unwrap();
    let old = dir.join("old-checkpoint.txt");
    std::fs::write(&old, bundle["checkpoint"].as_str().unwrap()).unwrap();
    let out = sabt(&["audit", "consistency", "--node", node3, "--old", p(&old), "--genesis", p(&genesis)]);
    assert!(out.status.success(), "{}", text(&out));
    let state = dir.join("watch.state");
    for _ in 0..2 {
        let out = sabt(&["audit", "watch", "--once", "--node", node1, "--state", p(&state), "--genesis", p(&genesis)]);
        assert!(out.status.success(), "{}", text(&out));
    }
    // A checkpoint the validators signed for a longer log (a rollback since), or for the same size
    // with another root (a fork), raises the alarm.
    let keys: Vec<SecretKey> = (0..3)
        .map(|i| {
            let t = std::fs::read_to_string(c.nodes[i].home.join("keys/consensus.key")).unwrap();
            SecretKey::from_seed(&hex::decode(t.trim()).unwrap().try_into().unwrap())
        })
        .collect();
    let forge = |size: u64, root: Hash32| {
        let cp = Checkpoint { origin: c.genesis.chain_id.clone(), size, root };
        let signatures = (0..3).map(|i| cosign(&cp, &format!("agency-{}", i + 1), &keys[i])).collect();
        SignedNote { text: cp.body(), signatures }.render()
    };
    let size = c.get(0, "/v1/status").unwrap().1["log_size"].as_u64().unwrap();
    for (note, alarm) in [(forge(size + 1000, Hash32([7; 32])), "rollback"), (forge(2, Hash32([7; 32])), "fork")] {
        std::fs::write(&state, note).unwrap();
        let out = sabt(&["audit", "watch", "--once", "--node", node1, "--state", p(&state), "--genesis", p(&genesis)]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(alarm), "{alarm}: {}", text(&out));
    }

    // Outside the key's kinds: refused.
    let other = docs.join("diploma.txt");
    std::fs::write(&other, b"diploma").unwrap();
    let out = anchor(&[p(&other)], "education");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("kind_not_allowed"), "{}", text(&out));

    // Revoked: refused by every node from the next block on.
    let out = sabt(&["key", "revoke", "--key", p(&admin), "--node", node1, "--clerk", &clerk]);
    assert!(out.status.success(), "{}", text(&out));
    let out = anchor(&[p(&other)], "civil_status");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("revoked"), "{}", text(&out));
    // A wrong passphrase is an input error that names the fix.
    std::fs::write(&pass, "not the passphrase\n").unwrap();
    let out = anchor(&[p(&other)], "civil_status");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("wrong passphrase"), "{}", text(&out));

    // A block altered on one node's disk (a transaction rewritten): the auditor finds it at its height.
    let genesis_path = genesis.clone();
    c.terminate(3).unwrap();
    let altered_height = {
        let db = raw_store::open(&c.nodes[3].home);
        let blocks = db.cf_handle("blocks").unwrap();
        let (key, mut block) = db
            .iterator_cf(blocks, rocksdb::IteratorMode::Start)
            .map(|kv| kv.unwrap())
            .map(|(k, v)| (k, sabt_core::codec::decode::<sabt_core::block::Block>(&v).unwrap()))
            .find(|(_, b)| !b.txs.is_empty())
            .unwrap();
        block.txs[0].tx.nonce += 1000;
        db.put_cf(blocks, key, sabt_core::codec::encode(&block)).unwrap();
        block.header.height
    };
    c.start_node(3).unwrap();
    let node4 = c.nodes[3].url.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.get(3, "/v1/status").is_none() {
        assert!(std::time::Instant::now() < deadline, "node 4 did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = sabt(&["audit", "chain", "--node", &node4, "--genesis", p(&genesis_path)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("height {altered_height}")), "{}", text(&out));
    c.finish(&[0, 1, 2]).unwrap();
}

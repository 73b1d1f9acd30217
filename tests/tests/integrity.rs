#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! Registry integrity through the real binaries on four real nodes: the regressions of two reported
//! defects. A land merge whose result is larger than one registration may be once halted every
//! proposer; now the check refuses it and the chain goes on. An agency that anchored a copy of
//! another agency's document could once withdraw that agency's record; now a record is the entry
//! that anchored it, and each agency reaches only its own.

use sabt_tests::cli::{p, sabt, text};
use sabt_tests::cluster::Cluster;
use std::path::Path;
use std::time::{Duration, Instant};

fn write_box(path: &Path, cadastral: &str, (x0, y0, x1, y1): (f64, f64, f64, f64)) {
    let ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)];
    write_ring(path, cadastral, &ring);
}

fn write_ring(path: &Path, cadastral: &str, ring: &[(f64, f64)]) {
    let coords: Vec<String> = ring.iter().map(|(x, y)| format!("[{x}, {y}]")).collect();
    let feature = format!(
        r#"{{"type": "Feature", "properties": {{"cadastral_number": "{cadastral}"}}, "geometry": {{"type": "Polygon", "coordinates": [[{}]]}}}}"#,
        coords.join(", ")
    );
    std::fs::write(path, feature).unwrap();
}

/// Every node answers and reaches a height above `from` within `within`.
fn all_alive_and_advancing(c: &Cluster, from: u64, within: Duration) {
    let start = Instant::now();
    for i in 0..c.nodes.len() {
        let left = within.saturating_sub(start.elapsed());
        c.wait_height(i, from + 1, left)
            .unwrap_or_else(|e| panic!("node {} stopped advancing: {e}\n{}", i + 1, c.log_tail(i, 30)));
        assert_eq!(c.get(i, "/livez").map(|(code, _)| code), Some(200), "node {} is not alive", i + 1);
    }
}

#[test]
fn no_clerk_or_agency_can_halt_the_chain_or_change_another_agencys_record() {
    let c = Cluster::start(4, 28800).unwrap();
    c.wait_all(2, Duration::from_secs(90)).unwrap();
    let dir = c.dir.path().to_path_buf();
    let genesis = dir.join("genesis.json");
    let land_admin = c.nodes[0].home.join("keys/admin.key");
    let node1 = c.nodes[0].url.clone();
    let node2 = c.nodes[1].url.clone();

    // 1. Three adjacent parcels of about 25 km × 50 km, each within the limit of one registration.
    let salt = dir.join("salt");
    std::fs::write(&salt, b"the land committee's salt").unwrap();
    // The agency's secret: its owner's alone (sabt parcel refuses it otherwise).
    std::fs::set_permissions(&salt, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let act = dir.join("act.pdf");
    std::fs::write(&act, b"allocation act").unwrap();
    let land = |args: &[&str]| {
        let mut all = vec!["parcel"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--node", &node1, "--key", p(&land_admin), "--genesis", p(&genesis), "--json"]);
        sabt(&all)
    };
    let lons = [68.00, 68.28, 68.56, 68.84];
    for i in 0..3 {
        let f = dir.join(format!("p{i}.geojson"));
        write_box(&f, &format!("99:00:000{}", i + 1), (lons[i], 38.00, lons[i + 1], 38.45));
        let out = land(&[
            "register",
            "--geojson",
            p(&f),
            "--category",
            "agricultural",
            "--use",
            "pasture",
            "--holder",
            "TJ-0001",
            "--salt-file",
            p(&salt),
            "--start",
            "2026-01-15",
            "--source",
            p(&act),
        ]);
        assert!(out.status.success(), "parcel {i}: {}", text(&out));
    }
    // Merged through their shared vertices: one polygon larger than one registration may be.
    let merged = dir.join("merged.geojson");
    let mut ring: Vec<(f64, f64)> = lons.iter().map(|&x| (x, 38.00)).collect();
    ring.extend(lons.iter().rev().map(|&x| (x, 38.45)));
    ring.push((68.00, 38.00));
    write_ring(&merged, "99:00:0009", &ring);
    let before = c.height(0).unwrap();
    let mut merge = vec!["merge", "--geojson", p(&merged), "--source", p(&act)];
    for parent in ["99:00:0001", "99:00:0002", "99:00:0003"] {
        merge.extend_from_slice(&["--parent", parent]);
    }
    let out = land(&merge);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("parcel_too_large"), "{}", text(&out));
    all_alive_and_advancing(&c, before + 1, Duration::from_secs(20));

    // 2. Agency 1 anchors p1.txt; agency 2 anchors a directory holding a copy of it.
    let agency1 = c.nodes[0].home.join("keys/admin.key");
    let agency2 = c.nodes[1].home.join("keys/admin.key");
    let meta = [
        "--kind",
        "notary",
        "--repository",
        "Archive",
        "--fund",
        "1",
        "--inventory",
        "1",
        "--file-no",
        "1",
        "--agency",
        "Notary 1",
    ];
    let anchor = |key: &Path, node: &str, files: &[&str]| {
        let mut all = vec!["anchor", "--node", node, "--key", p(key), "--genesis", p(&genesis), "--json"];
        all.extend_from_slice(&meta);
        all.extend_from_slice(files);
        sabt(&all)
    };
    let p1 = dir.join("p1.txt");
    std::fs::write(&p1, b"the notarised deed of agency 1").unwrap();
    let out = anchor(&agency1, &node1, &[p(&p1)]);
    assert!(out.status.success(), "{}", text(&out));
    let copies = dir.join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    std::fs::copy(&p1, copies.join("copy.txt")).unwrap();
    std::fs::write(copies.join("other.txt"), b"another document of agency 2").unwrap();
    let out = anchor(&agency2, &node2, &["--dir", p(&copies)]);
    assert!(out.status.success(), "{}", text(&out));

    // Agency 2 withdraws "the record" by the proof of its own copy: only its own record changes.
    let record = |key: &Path, args: &[&str]| {
        let mut all = vec!["record"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--node", &node2, "--key", p(key), "--genesis", p(&genesis), "--json"]);
        sabt(&all)
    };
    let copy_proof = copies.join("copy.txt.sabt-proof.json");
    let out = record(&agency2, &["withdraw", "--proof", p(&copy_proof), "--reason", "a copy"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(r#""state":"withdrawn""#), "{}", text(&out));
    // Naming agency 1's anchoring is refused with a stable code.
    let p1_proof = dir.join("p1.txt.sabt-proof.json");
    let out = record(&agency2, &["withdraw", "--proof", p(&p1_proof), "--reason", "not ours"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("wrong_agency"), "{}", text(&out));

    // Agency 1's record is current on every node, and its status proof says so offline.
    let sha = sabt_core::fingerprint::Fingerprint::of_bytes(b"the notarised deed of agency 1").sha256;
    let height = c.height(0).unwrap();
    for i in 0..4 {
        c.wait_height(i, height, Duration::from_secs(30)).unwrap();
        let (code, v) = c.get(i, &format!("/v1/records/sha256:{sha}")).unwrap();
        assert_eq!(code, 200, "{v}");
        assert_eq!(
            (v["status"].as_str(), v["agency"].as_str()),
            (Some("anchored"), Some("agency-1")),
            "node {}: {v}",
            i + 1
        );
    }
    let out =
        sabt(&["record", "status", "--proof", p(&p1_proof), "--node", &node2, "--genesis", p(&genesis), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(r#""state":"current""#), "{}", text(&out));
    let status = dir.join("p1.txt.sabt-status.json");
    let out = sabt(&["verify", p(&p1), "--genesis", p(&genesis), "--status", p(&status), "--require-current"]);
    assert!(out.status.success(), "{}", text(&out));
    // The withdrawn copy's status proof speaks for agency 2's record, not for agency 1's.
    let out =
        sabt(&["verify", p(&p1), "--genesis", p(&genesis), "--status", p(&copies.join("copy.txt.sabt-status.json"))]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("other_record"), "{}", text(&out));

    // Anchoring the same document singly: agency 2's clerk is told whose anchoring it is, and
    // gets that proof only when it asks for it.
    let single = dir.join("single");
    std::fs::create_dir_all(&single).unwrap();
    std::fs::copy(&p1, single.join("p1.txt")).unwrap();
    let out = anchor(&agency2, &node2, &[p(&single.join("p1.txt"))]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("already anchored by agency agency-1"), "{}", text(&out));
    assert!(!single.join("p1.txt.sabt-proof.json").exists());
    let out = anchor(&agency2, &node2, &["--accept-existing", p(&single.join("p1.txt"))]);
    assert!(out.status.success(), "{}", text(&out));

    // Every node holds the same valid chain.
    let top = c.height(0).unwrap();
    c.wait_all(top, Duration::from_secs(30)).unwrap();
    c.check_chain(&[0, 1, 2, 3], top).unwrap();
    c.finish(&[0, 1, 2, 3]).unwrap();
}

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! The land workflow through the real `sabt` binary against four real nodes: register a parcel
//! from GeoJSON, refuse an overlapping one and an invalid polygon, show it, verify its current-state
//! proof offline (and refuse it once tampered with), find it by a point; transfer it, block a
//! transfer with an arrest, release it, mortgage it and transfer with the bank's consent; split a
//! parcel, merge the halves back and retire the result.

use sabt_tests::cli::{p, sabt, text};
use sabt_tests::cluster::{Cluster, agent};
use std::path::Path;
use std::time::Duration;

fn feature(cadastral: &str, ring: &[(f64, f64)]) -> String {
    let coords: Vec<String> = ring.iter().map(|(x, y)| format!("[{x}, {y}]")).collect();
    format!(
        r#"{{"type": "Feature", "properties": {{"cadastral_number": "{cadastral}"}}, "geometry": {{"type": "Polygon", "coordinates": [[{}]]}}}}"#,
        coords.join(", ")
    )
}

fn write_feature(path: &Path, cadastral: &str, ring: &[(f64, f64)]) {
    std::fs::write(path, feature(cadastral, ring)).unwrap();
}

#[test]
fn land_clerk_registers_shows_and_proves_a_parcel() {
    let mut c = Cluster::start(4, 29600).unwrap();
    c.wait_all(2, Duration::from_secs(90)).unwrap();
    let dir_buf = c.dir.path().to_path_buf();
    let dir = dir_buf.as_path();
    let node_url = c.nodes[1].url.clone();
    let node = node_url.as_str();
    let admin = c.nodes[0].home.join("keys/admin.key");
    let genesis = dir.join("genesis.json");
    let salt = dir.join("salt");
    std::fs::write(&salt, b"a secret salt of the land committee").unwrap();
    // Readable by others, it is refused before anything is signed: whoever reads it can test a
    // guessed identifier against the party hashes on the public ledger.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&salt, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let act = dir.join("act.pdf");
    std::fs::write(&act, b"allocation act 17").unwrap();
    let register = |file: &Path| {
        sabt(&[
            "parcel",
            "register",
            "--geojson",
            p(file),
            "--category",
            "settlement",
            "--use",
            "individual housing",
            "--holder",
            "TJ-0001=1/2",
            "--holder",
            "TJ-0002=1/2",
            "--salt-file",
            p(&salt),
            "--start",
            "2026-01-15",
            "--source",
            p(&act),
            "--node",
            node,
            "--key",
            p(&admin),
            "--genesis",
            p(&genesis),
        ])
    };
    // About 87 m × 111 m near Dushanbe.
    let a = dir.join("a.geojson");
    write_feature(
        &a,
        "01:01:0001",
        &[(68.780, 38.560), (68.781, 38.560), (68.781, 38.561), (68.780, 38.561), (68.780, 38.560)],
    );
    let out = register(&a);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("other users can access it") && text(&out).contains("chmod 600"), "{}", text(&out));
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&salt, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = register(&a);
    assert!(out.status.success(), "{}", text(&out));

    // Overlapping it: refused by the chain, with the neighbour named.
    let b = dir.join("b.geojson");
    write_feature(
        &b,
        "01:01:0002",
        &[(68.7805, 38.5605), (68.782, 38.5605), (68.782, 38.562), (68.7805, 38.562), (68.7805, 38.5605)],
    );
    let out = register(&b);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("overlap") && text(&out).contains("01:01:0001"), "{}", text(&out));
    // Sharing its eastern edge: fine.
    write_feature(
        &b,
        "01:01:0002",
        &[(68.781, 38.560), (68.782, 38.560), (68.782, 38.561), (68.781, 38.561), (68.781, 38.560)],
    );
    let out = register(&b);
    assert!(out.status.success(), "{}", text(&out));
    // A bow-tie: refused before anything is signed, naming the ring and vertex.
    let bow = dir.join("bow.geojson");
    write_feature(
        &bow,
        "01:01:0003",
        &[(68.79, 38.56), (68.791, 38.561), (68.791, 38.56), (68.79, 38.561), (68.79, 38.56)],
    );
    let out = register(&bow);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("ring 0 edge"), "{}", text(&out));

    // Show it, with a proof of its current state, verified offline.
    let proof = dir.join("01-01-0001.sabt-parcel.json");
    let out = sabt(&[
        "parcel",
        "show",
        "01:01:0001",
        "--node",
        node,
        "--proof-out",
        p(&proof),
        "--genesis",
        p(&genesis),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["geometry"]["type"], "Polygon");
    assert!(v["wkt"].as_str().unwrap().starts_with("POLYGON (("), "{v}");
    let area = v["area_m2"].as_f64().unwrap();
    assert!((9_000.0..10_500.0).contains(&area), "area {area}");
    assert_eq!(v["right"]["holders"].as_array().unwrap().len(), 2);
    let out = sabt(&["parcel", "verify", p(&proof), "--genesis", p(&genesis)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("version 1"), "{}", text(&out));
    let out = sabt(&["verify", "--parcel", p(&proof), "--genesis", p(&genesis)]);
    assert!(out.status.success(), "{}", text(&out));
    // Tampered: another share split is not what the state holds.
    let t = std::fs::read_to_string(&proof).unwrap().replacen("\"num\": 1,", "\"num\": 2,", 1);
    let tampered = dir.join("tampered.sabt-parcel.json");
    std::fs::write(&tampered, t).unwrap();
    let out = sabt(&["parcel", "verify", p(&tampered), "--genesis", p(&genesis)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = sabt(&["verify", "--parcel", p(&tampered), "--genesis", p(&genesis)]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Which parcel is here: a point inside the first; a point where none is registered.
    let out = sabt(&["parcel", "at", "68.7805", "38.5605", "--node", node, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["parcels"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["parcels"][0]["cadastral_number"], "01:01:0001");
    let out = sabt(&["parcel", "at", "68.79", "38.57", "--node", node]);
    assert!(text(&out).contains("no registered parcel"), "{}", text(&out));
    // Transfer; an arrest blocks the next until released; a mortgage needs the bank's consent.
    let ops = |args: &[&str]| {
        let mut all = vec!["parcel"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--node", node, "--key", p(&admin), "--genesis", p(&genesis), "--json"]);
        sabt(&all)
    };
    let doc = |name: &str| {
        let f = dir.join(name);
        std::fs::write(&f, name).unwrap();
        f
    };
    let (contract, order, release, deed) = (doc("contract.pdf"), doc("order.pdf"), doc("release.pdf"), doc("deed.pdf"));
    let holder = ["--holder", "TJ-0003", "--salt-file", p(&salt), "--start", "2026-06-01"];
    let mut transfer = vec!["transfer", "01:01:0001", "--source", p(&contract)];
    transfer.extend_from_slice(&holder);
    let out = ops(&transfer);
    assert!(out.status.success(), "{}", text(&out));
    // The arrest names the key of the court that ordered it: only its signature releases it.
    let court = c.nodes[3].home.join("keys/admin.key");
    let court_key = String::from_utf8(sabt(&["key", "show", "--key", p(&court)]).stdout).unwrap().trim().to_string();
    let out = ops(&[
        "encumber",
        "01:01:0001",
        "--kind",
        "arrest",
        "--beneficiary",
        "court 2",
        "--salt-file",
        p(&salt),
        "--start",
        "2026-06-02",
        "--source",
        p(&order),
        "--consent-key",
        &court_key,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ops(&transfer);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("arrested"), "{}", text(&out));
    let release_consent = |key: &Path| {
        let out = sabt(&[
            "parcel",
            "release-consent",
            "01:01:0001",
            "--restriction",
            p(&order),
            "--source",
            p(&release),
            "--node",
            node,
            "--key",
            p(key),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let by_registrar = release_consent(&admin);
    let out = ops(&[
        "release",
        "01:01:0001",
        "--restriction",
        p(&order),
        "--source",
        p(&release),
        "--consent",
        &by_registrar,
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("consent_missing"), "the registrar alone cannot lift an arrest: {}", text(&out));
    let by_court = release_consent(&court);
    let out =
        ops(&["release", "01:01:0001", "--restriction", p(&order), "--source", p(&release), "--consent", &by_court]);
    assert!(out.status.success(), "{}", text(&out));
    let bank = c.nodes[2].home.join("keys/admin.key");
    let bank_key = String::from_utf8(sabt(&["key", "show", "--key", p(&bank)]).stdout).unwrap().trim().to_string();
    let out = ops(&[
        "encumber",
        "01:01:0001",
        "--kind",
        "mortgage",
        "--beneficiary",
        "bank 1",
        "--salt-file",
        p(&salt),
        "--start",
        "2026-06-03",
        "--source",
        p(&deed),
        "--consent-key",
        &bank_key,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let mut back = vec![
        "transfer",
        "01:01:0001",
        "--source",
        p(&contract),
        "--holder",
        "TJ-0001",
        "--salt-file",
        p(&salt),
        "--start",
        "2026-07-01",
    ];
    let out = ops(&back);
    assert!(text(&out).contains("consent_missing"), "{}", text(&out));
    let out = sabt(&[
        "parcel",
        "consent",
        "01:01:0001",
        "--holder",
        "TJ-0001",
        "--salt-file",
        p(&salt),
        "--start",
        "2026-07-01",
        "--node",
        node,
        "--key",
        p(&bank),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let consent = String::from_utf8(out.stdout).unwrap().trim().to_string();
    back.extend_from_slice(&["--consent", &consent]);
    let out = ops(&back);
    assert!(out.status.success(), "{}", text(&out));

    // Split 0002 in two, merge the halves back, retire the result.
    let halves = dir.join("halves.geojson");
    std::fs::write(
        &halves,
        format!(
            r#"{{"type": "FeatureCollection", "features": [{}, {}]}}"#,
            // Along the diagonal, so the children use the parent's own vertices: a new vertex on a
            // parallel of latitude would not lie on the parent's straight edge in UTM.
            feature("01:01:0004", &[(68.781, 38.560), (68.782, 38.560), (68.782, 38.561), (68.781, 38.560)]),
            feature("01:01:0005", &[(68.781, 38.560), (68.782, 38.561), (68.781, 38.561), (68.781, 38.560)])
        ),
    )
    .unwrap();
    let out = ops(&["split", "01:01:0002", "--geojson", p(&halves), "--source", p(&doc("split.pdf"))]);
    assert!(out.status.success(), "{}", text(&out));
    let whole = dir.join("whole.geojson");
    write_feature(
        &whole,
        "01:01:0006",
        &[(68.781, 38.560), (68.782, 38.560), (68.782, 38.561), (68.781, 38.561), (68.781, 38.560)],
    );
    let out = ops(&[
        "merge",
        "--parent",
        "01:01:0004",
        "--parent",
        "01:01:0005",
        "--geojson",
        p(&whole),
        "--source",
        p(&doc("merge.pdf")),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ops(&["retire", "01:01:0006", "--source", p(&doc("retire.pdf"))]);
    assert!(out.status.success(), "{}", text(&out));
    let out = sabt(&["parcel", "show", "01:01:0006", "--node", node]);
    assert!(text(&out).contains("RETIRED"), "{}", text(&out));
    let out = sabt(&["parcel", "show", "01:01:0001", "--node", node, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["version"].as_u64(), v["restrictions"].as_array().unwrap().len()), (Some(6), 1), "{v}");

    // The map: export (live parcels only), a box, history; the same after a restart, since the
    // node rebuilds its parcel map from the log.
    let export = |c: &Cluster, i: usize| {
        let out = sabt(&["parcel", "export", "--node", c.nodes[i].url.as_str()]);
        assert!(out.status.success(), "{}", text(&out));
        let fc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        fc["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["properties"]["cadastral_number"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(export(&c, 1), vec!["01:01:0001"]);
    let out = sabt(&["parcel", "export", "--bbox", "68.779,38.559,68.7805,38.5605", "--node", node]);
    assert!(text(&out).contains("01:01:0001"), "{}", text(&out));
    let out = sabt(&["parcel", "export", "--bbox", "68.80,38.59,68.81,38.60", "--node", node]);
    assert!(!text(&out).contains("01:01:"), "{}", text(&out));
    let out = sabt(&["parcel", "history", "01:01:0002", "--node", node, "--json"]);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = h["entries"].as_array().unwrap().iter().map(|e| e["operation"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["register", "split"]);
    // Lists come a page at a time, each naming the cursor of the next; pages join up.
    let (_, first) = c.get(1, "/v1/parcels/01:01:0002/history?limit=1").unwrap();
    assert_eq!(first["entries"].as_array().unwrap().len(), 1, "{first}");
    let next = first["next"].as_u64().expect("a first page of one names the next");
    let (_, second) = c.get(1, &format!("/v1/parcels/01:01:0002/history?after={next}&limit=1")).unwrap();
    assert_eq!(second["entries"][0]["operation"], "split", "{second}");
    assert!(second["next"].is_null(), "the last page names no next: {second}");
    let (status, bad) = c.get(1, "/v1/parcels/01:01:0002/history?after=x").unwrap();
    assert_eq!((status, bad["code"].as_str()), (400, Some("bad_request")), "{bad}");
    let wide = "bbox=68.0,38.0,69.5,39.5";
    let (_, page) = c.get(1, &format!("/v1/parcels?{wide}&limit=1")).unwrap();
    assert_eq!(page["features"].as_array().unwrap().len(), 1, "{page}");
    assert!(page["height"].as_u64().is_some_and(|h| h > 0), "a page names the block it was read at: {page}");
    let mut cursor = page["next"].as_str().map(String::from);
    let mut paged = vec![page["features"][0]["properties"]["cadastral_number"].as_str().unwrap().to_string()];
    while let Some(after) = cursor {
        let (_, page) = c.get(1, &format!("/v1/parcels?{wide}&limit=1&after={after}")).unwrap();
        paged.extend(
            page["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["properties"]["cadastral_number"].as_str().unwrap().to_string()),
        );
        cursor = page["next"].as_str().map(String::from);
    }
    assert_eq!(paged, export(&c, 1), "the box's pages, joined, are the live parcels");
    let mut resp = agent().get(format!("{node}/v1/parcels/export")).call().unwrap();
    assert_eq!(resp.headers().get("content-type").unwrap(), "application/geo+json");
    let streamed: serde_json::Value = resp.body_mut().read_json().unwrap();
    assert!(streamed["height"].as_u64().is_some_and(|h| h > 0), "the export names its block: {streamed}");
    c.terminate(2).unwrap();
    c.start_node(2).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while c.get(2, "/v1/status").is_none() {
        assert!(std::time::Instant::now() < deadline, "node 3 did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(export(&c, 2), vec!["01:01:0001"]);
    // As of the block that registered 0001: two holders, version 1; and 0004 as of its split.
    let h1 = sabt(&["parcel", "history", "01:01:0001", "--node", node, "--json"]);
    let h1: serde_json::Value = serde_json::from_slice(&h1.stdout).unwrap();
    let registered_at = h1["entries"][0]["height"].as_u64().unwrap().to_string();
    let out = sabt(&["parcel", "show", "01:01:0001", "--height", &registered_at, "--node", node, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["version"].as_u64(), v["right"]["holders"].as_array().unwrap().len()), (Some(1), 2), "{v}");
    let out = sabt(&["parcel", "show", "01:01:0001", "--height", "1", "--node", node]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let h4 = sabt(&["parcel", "history", "01:01:0004", "--node", node, "--json"]);
    let h4: serde_json::Value = serde_json::from_slice(&h4.stdout).unwrap();
    let split_at = h4["entries"][0]["height"].as_u64().unwrap().to_string();
    let out = sabt(&["parcel", "show", "01:01:0004", "--height", &split_at, "--node", node, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["version"].as_u64(), v["retired_height"].is_null()), (Some(1), true), "{v}");
    assert_eq!(v["right"]["holders"].as_array().unwrap().len(), 2, "the split child takes its parent's right: {v}");

    // A house on 0001, a road across it; the house is demolished.
    let house = dir.join("house.geojson");
    std::fs::write(
        &house,
        r#"{"type": "Polygon", "coordinates": [[[68.7802, 38.5602], [68.7804, 38.5602], [68.7804, 38.5604], [68.7802, 38.5604], [68.7802, 38.5602]]]}"#,
    )
    .unwrap();
    let out = ops(&[
        "structure",
        "B:0001",
        "--kind",
        "building",
        "--parcel",
        "01:01:0001",
        "--geojson",
        p(&house),
        "--description",
        "two-storey house",
        "--source",
        p(&doc("permit.pdf")),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let road = dir.join("road.geojson");
    std::fs::write(&road, r#"{"type": "LineString", "coordinates": [[68.779, 38.5605], [68.7835, 38.5605]]}"#).unwrap();
    let out = ops(&[
        "structure",
        "R:M41",
        "--kind",
        "road",
        "--parcel",
        "01:01:0001",
        "--geojson",
        p(&road),
        "--description",
        "M41 highway",
        "--source",
        p(&doc("acceptance.pdf")),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let (code, v) = c.get(1, "/v1/structures/R:M41").unwrap();
    assert_eq!(
        (code, v["kind"].as_str(), v["geometry"]["type"].as_str()),
        (200, Some("road"), Some("LineString")),
        "{v}"
    );
    let out = ops(&["demolish", "B:0001", "--source", p(&doc("demolition.pdf"))]);
    assert!(out.status.success(), "{}", text(&out));
    let (_, v) = c.get(1, "/v1/structures/B:0001").unwrap();
    assert!(v["retired_height"].as_u64().is_some(), "{v}");

    // A number never registered is proven absent.
    let absent = dir.join("absent.json");
    let out =
        sabt(&["parcel", "show", "01:01:0099", "--node", node, "--proof-out", p(&absent), "--genesis", p(&genesis)]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("no_such_parcel"), "{}", text(&out));
    c.finish(&[0, 1, 2, 3]).unwrap();
}

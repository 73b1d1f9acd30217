#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! The land registry's rules through block execution: registration against live neighbours, shares,
//! the land role, transfers blocked by an arrest or lacking a mortgagee's consent, boundary
//! corrections, retirement, the history in the log, and the parcel's state proven from the root.

use sabt_core::codec;
use sabt_core::devnet::Devnet;
use sabt_core::entry::{EntryBody, LogEntry, RecordKind};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::genesis::AgencyRole;
use sabt_core::geometry::{Point, Polygon};
use sabt_core::hash::Hash32;
use sabt_core::land::{
    self, Holding, LandCategory, LandOp, Parcel, Restriction, RestrictionKind, Right, RightKind, Share,
};
use sabt_core::registry::schema::{ParcelOf, Slot as _, StructureOf};
use sabt_core::registry::{BlockError, MemoryLedger, NoCache, Registry, Tip};
use sabt_core::sign::{self, SecretKey};
use sabt_core::smt;
use sabt_core::tx::{SignedTx, Transaction, TxBody};

fn rect(x0: i64, y0: i64, x1: i64, y1: i64) -> Polygon {
    // Metres from a point in UTM 42N near Dushanbe, in millimetres.
    let p = |x: i64, y: i64| Point::new(500_000_000 + x * 1000, 4_260_000_000 + y * 1000);
    Polygon { exterior: vec![p(x0, y0), p(x1, y0), p(x1, y1), p(x0, y1), p(x0, y0)], holes: vec![] }
}

fn party(id: &str) -> Hash32 {
    land::party_hash(b"agency salt", id)
}

fn right(holders: &[(&str, u64, u64)]) -> Right {
    let mut holders: Vec<Holding> = holders
        .iter()
        .map(|(id, num, den)| Holding { party: party(id), share: Share { num: *num, den: *den } })
        .collect();
    holders.sort_by_key(|h| h.party);
    Right { kind: RightKind::LifelongInheritableUse, holders, start: "2026-01-15".into(), end: None }
}

fn doc(n: &str) -> Fingerprint {
    Fingerprint::of_bytes(n.as_bytes())
}

fn register(cadastral: &str, geometry: Polygon) -> TxBody {
    TxBody::Land(LandOp::Register {
        parcel: Parcel {
            cadastral: cadastral.into(),
            category: LandCategory::Settlement,
            permitted_use: "individual housing".into(),
            geometry,
        },
        right: right(&[("TJ-1001", 1, 1)]),
        source: doc(cadastral),
    })
}

struct Chain {
    registry: Registry,
    ledger: MemoryLedger,
    tip: Tip,
    nonces: std::collections::BTreeMap<[u8; 32], u64>,
}

impl Chain {
    fn tx(&mut self, key: &SecretKey, body: TxBody) -> SignedTx {
        let n = self.nonces.entry(key.public().to_bytes()).or_default();
        let t = Transaction { chain_id: "sabt-test".into(), signer: key.public(), nonce: *n, body }.sign(key);
        *n += 1;
        t
    }

    /// Runs one transaction as the next block: its refusal code, or "ok".
    fn run(&mut self, key: &SecretKey, body: TxBody) -> &'static str {
        let stx = self.tx(key, body);
        let mut scratch = self.ledger.clone();
        let time = self.tip.time_ms + 1000;
        match self.registry.execute(&mut scratch, &self.tip, (self.tip.height + 1, time), &[stx], &NoCache) {
            Ok(ex) => {
                self.ledger = scratch;
                self.tip = Tip {
                    height: self.tip.height + 1,
                    block_hash: Hash32([self.tip.height as u8 + 1; 32]),
                    time_ms: time,
                    log_size: ex.log_size,
                    log_root: ex.log_root,
                    state_root: ex.state_root,
                };
                "ok"
            }
            Err(BlockError::Tx { error, .. }) => {
                *self.nonces.get_mut(&key.public().to_bytes()).unwrap() -= 1;
                error.code()
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A devnet whose first agency holds the land role, and an empty chain on it.
fn land_chain() -> (Devnet, Chain) {
    let mut dev = Devnet::new("sabt-test", 1_000, &[[1; 32], [2; 32], [3; 32], [4; 32]], [9; 32]);
    dev.genesis.agencies[0].roles.push(AgencyRole::Land);
    let registry = Registry::new(&dev.genesis).unwrap();
    let c = Chain {
        tip: Tip::genesis(&dev.genesis),
        registry,
        ledger: MemoryLedger::default(),
        nonces: Default::default(),
    };
    (dev, c)
}

#[test]
fn land_operations_follow_the_rules_and_keep_history() {
    let (dev, mut c) = land_chain();
    let land_admin = dev.admin_key(0);
    let archive_admin = dev.admin_key(1);

    // Authority: the land agency's admin, or its clerk allowed land_property.
    assert_eq!(c.run(&archive_admin, register("01:01:0001", rect(0, 0, 100, 100))), "no_land_role");
    let clerk = SecretKey::from_seed(&[41; 32]);
    let notary_only = SecretKey::from_seed(&[42; 32]);
    for (k, kinds) in [(&clerk, vec![RecordKind::LandProperty]), (&notary_only, vec![RecordKind::Notary])] {
        let grant = TxBody::AuthorizeKey { key: k.public(), kinds, expires_ms: None };
        assert_eq!(c.run(&land_admin, grant), "ok");
    }
    assert_eq!(c.run(&notary_only, register("01:01:0001", rect(0, 0, 100, 100))), "kind_not_allowed");

    // First registration against live neighbours.
    assert_eq!(c.run(&clerk, register("01:01:0001", rect(0, 0, 100, 100))), "ok");
    assert_eq!(c.run(&clerk, register("01:01:0002", rect(100, 0, 200, 100))), "ok", "sharing an edge");
    assert_eq!(c.run(&clerk, register("01:01:0003", rect(99, 100, 150, 101))), "ok", "touching only");
    assert_eq!(c.run(&clerk, register("01:01:0004", rect(50, 99, 51, 100))), "overlap", "1 m² into 0001");
    assert_eq!(c.run(&clerk, register("01:01:0004", rect(20, 20, 30, 30))), "overlap", "inside 0001");
    assert_eq!(c.run(&clerk, register("01:01:0001", rect(500, 0, 600, 100))), "parcel_exists");
    let bow_tie = Polygon {
        exterior: vec![Point::new(0, 0), Point::new(9, 9), Point::new(9, 0), Point::new(0, 9), Point::new(0, 0)],
        holes: vec![],
    };
    assert_eq!(c.run(&clerk, register("01:01:0005", bow_tie)), "self_intersection");
    let mut bad_shares = register("01:01:0005", rect(500, 0, 600, 100));
    if let TxBody::Land(LandOp::Register { right: r, .. }) = &mut bad_shares {
        *r = right(&[("TJ-1", 1, 2), ("TJ-2", 1, 3)]);
    }
    assert_eq!(c.run(&clerk, bad_shares), "shares_not_one");

    // Transfers: to two holders in exact shares; blocked by an arrest until it is released.
    let to_two = right(&[("TJ-2001", 2, 3), ("TJ-2002", 1, 3)]);
    let transfer = |r: &Right, consents| {
        TxBody::Land(LandOp::Transfer {
            cadastral: "01:01:0001".into(),
            right: r.clone(),
            source: doc("contract"),
            consents,
        })
    };
    assert_eq!(c.run(&clerk, transfer(&to_two, vec![])), "ok");
    // An arrest names the key of the authority that imposed it; only that key's signature over
    // the release lifts it.
    let court = SecretKey::from_seed(&[78; 32]);
    let mut arrest = Restriction {
        kind: RestrictionKind::Arrest,
        beneficiary: party("court 3"),
        consent_key: None,
        start: "2026-03-01".into(),
        source: doc("court order"),
    };
    let encumber =
        |r: &Restriction| TxBody::Land(LandOp::Encumber { cadastral: "01:01:0001".into(), restriction: r.clone() });
    assert_eq!(c.run(&clerk, encumber(&arrest)), "bad_land_field", "an arrest without the imposing key");
    arrest.consent_key = Some(court.public());
    assert_eq!(c.run(&clerk, encumber(&arrest)), "ok");
    let back = right(&[("TJ-1001", 1, 1)]);
    assert_eq!(c.run(&clerk, transfer(&back, vec![])), "arrested");
    let release = |c: &Chain, signer: &SecretKey, restriction: &str, source: &str| {
        let version = c.registry.parcel(&c.ledger, "01:01:0001").unwrap().unwrap().version;
        let (restriction, source) = (doc(restriction), doc(source));
        let message = land::release_consent_bytes("sabt-test", "01:01:0001", version, &restriction, &source);
        let consent = signer.sign(sign::LAND_RELEASE, &message);
        TxBody::Land(LandOp::Release { cadastral: "01:01:0001".into(), restriction, source, consent })
    };
    let by_clerk = release(&c, &clerk, "court order", "court release");
    assert_eq!(c.run(&clerk, by_clerk), "consent_missing", "the registering clerk alone cannot lift an arrest");
    let mut replayed = release(&c, &court, "court order", "court release");
    if let TxBody::Land(LandOp::Release { source, .. }) = &mut replayed {
        *source = doc("another document");
    }
    assert_eq!(c.run(&clerk, replayed), "consent_missing", "a signature over another release");
    let by_court = release(&c, &court, "court order", "court release");
    assert_eq!(c.run(&clerk, by_court.clone()), "ok");
    assert_eq!(c.run(&clerk, by_court), "no_such_restriction");

    // A mortgage: a transfer needs the mortgagee's consent over this version and this right.
    let bank = SecretKey::from_seed(&[77; 32]);
    let mortgage = Restriction {
        kind: RestrictionKind::Mortgage,
        beneficiary: party("bank"),
        consent_key: Some(bank.public()),
        start: "2026-04-01".into(),
        source: doc("mortgage deed"),
    };
    assert_eq!(
        c.run(&clerk, TxBody::Land(LandOp::Encumber { cadastral: "01:01:0001".into(), restriction: mortgage })),
        "ok"
    );
    assert_eq!(c.run(&clerk, transfer(&back, vec![])), "consent_missing");
    let version = c.registry.parcel(&c.ledger, "01:01:0001").unwrap().unwrap().version;
    let wrong =
        bank.sign(sign::LAND_CONSENT, &land::transfer_consent_bytes("sabt-test", "01:01:0001", version, &to_two));
    assert_eq!(c.run(&clerk, transfer(&back, vec![wrong])), "consent_missing", "consent to another right");
    let consent =
        bank.sign(sign::LAND_CONSENT, &land::transfer_consent_bytes("sabt-test", "01:01:0001", version, &back));
    assert_eq!(c.run(&clerk, transfer(&back, vec![consent])), "ok");

    // An encumbered parcel is neither re-drawn nor retired: its restrictions would escape.
    let correct = |g| {
        TxBody::Land(LandOp::CorrectBoundary { cadastral: "01:01:0001".into(), geometry: g, source: doc("survey") })
    };
    assert_eq!(c.run(&clerk, correct(rect(0, 0, 100, 50))), "encumbered");
    let retire_1 = TxBody::Land(LandOp::Retire { cadastral: "01:01:0001".into(), source: doc("retirement order") });
    assert_eq!(c.run(&clerk, retire_1), "encumbered");
    // The mortgagee releases the mortgage.
    let by_bank = release(&c, &bank, "mortgage deed", "mortgage repaid");
    assert_eq!(c.run(&clerk, by_bank), "ok");

    // Boundary correction: re-checked against neighbours; shrinking frees the area for others.
    assert_eq!(c.run(&clerk, correct(rect(0, 0, 120, 100))), "overlap", "into 0002");
    assert_eq!(c.run(&clerk, correct(rect(0, 0, 100, 50))), "ok");
    assert_eq!(c.run(&clerk, register("01:01:0006", rect(0, 50, 100, 100))), "ok");

    // Retirement: the parcel stays, frozen, and its area is free.
    let retire = TxBody::Land(LandOp::Retire { cadastral: "01:01:0002".into(), source: doc("retirement order") });
    assert_eq!(c.run(&clerk, retire), "ok");
    assert_eq!(
        c.run(
            &clerk,
            TxBody::Land(LandOp::Transfer {
                cadastral: "01:01:0002".into(),
                right: back.clone(),
                source: doc("c2"),
                consents: vec![]
            })
        ),
        "parcel_retired"
    );
    assert_eq!(c.run(&clerk, register("01:01:0007", rect(100, 0, 200, 100))), "ok");

    // History: every version of 0001 is a log entry, in order.
    let versions: Vec<(u32, &'static str)> = c
        .ledger
        .entries
        .values()
        .map(|b| codec::decode::<LogEntry>(b).unwrap())
        .filter_map(|e| match e.body {
            EntryBody::Land(l) if l.op.cadastral() == "01:01:0001" => Some((l.version, l.op.name())),
            _ => None,
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            (1, "register"),
            (2, "transfer"),
            (3, "encumber"),
            (4, "release"),
            (5, "encumber"),
            (6, "transfer"),
            (7, "release"),
            (8, "correct_boundary")
        ]
    );

    // Current state, proven from the state root: presence for 0001, and retirement for 0002.
    for cad in ["01:01:0001", "01:01:0002"] {
        let st = c.registry.parcel(&c.ledger, cad).unwrap().unwrap();
        let proof = smt::prove(&c.ledger, &ParcelOf::key(cad)).unwrap();
        let proven = proof.verify(&c.tip.state_root, &ParcelOf::key(cad)).unwrap();
        assert_eq!(proven, Some(smt::value_hash(&codec::encode_body(&st))));
    }
    let st = c.registry.parcel(&c.ledger, "01:01:0001").unwrap().unwrap();
    assert_eq!((st.version, st.right.clone(), st.restrictions.len()), (8, back, 0));
    assert!(c.registry.parcel(&c.ledger, "01:01:0002").unwrap().unwrap().retired_height.is_some());
    // An absent parcel is proven absent.
    let proof = smt::prove(&c.ledger, &ParcelOf::key("01:01:9999")).unwrap();
    assert_eq!(proof.verify(&c.tip.state_root, &ParcelOf::key("01:01:9999")).unwrap(), None);
}

#[test]
fn rights_are_checked_exactly() {
    let ok = right(&[("a", 1, 3), ("b", 1, 3), ("c", 1, 3)]);
    ok.validate().unwrap();
    let huge = right(&[("a", u64::MAX - 1, u64::MAX), ("b", 1, u64::MAX)]);
    huge.validate().unwrap();
    let over = right(&[("a", 2, 3), ("b", 2, 3)]);
    assert!(matches!(over.validate(), Err(land::LandError::Shares { .. })));
    // Three shares whose exact sum needs more than 128 bits are refused, never wrapped.
    let (p1, p2, p3) = (u64::MAX - 58, u64::MAX - 82, u64::MAX - 94);
    let wide = right(&[("a", 1, p1), ("b", 1, p2), ("c", 1, p3)]);
    assert_eq!(wide.validate(), Err(land::LandError::ShareOverflow));
    let mut lease = right(&[("a", 1, 1)]);
    lease.kind = RightKind::Lease;
    assert!(lease.validate().unwrap_err().to_string().contains("end date"));
    lease.end = Some("2025-01-01".into());
    assert!(lease.validate().unwrap_err().to_string().contains("not after"));
    lease.end = Some("2036-01-15".into());
    lease.validate().unwrap();
    let mut unsorted = right(&[("a", 1, 2), ("b", 1, 2)]);
    unsorted.holders.reverse();
    assert!(unsorted.validate().unwrap_err().to_string().contains("increasing order"));
    assert!(land::check_cadastral("01:01:0001").is_ok());
    assert!(land::check_cadastral("01 01").is_err());
    assert!(land::check_cadastral("").is_err());
}

fn parcel(cadastral: &str, geometry: Polygon) -> Parcel {
    Parcel {
        cadastral: cadastral.into(),
        category: LandCategory::Agricultural,
        permitted_use: "orchard".into(),
        geometry,
    }
}

#[test]
fn split_and_merge_round_trip() {
    let (dev, mut c) = land_chain();
    let admin = dev.admin_key(0);
    assert_eq!(c.run(&admin, register("02:0001", rect(0, 0, 100, 100))), "ok");
    let split = |children: Vec<Parcel>| {
        TxBody::Land(LandOp::Split { cadastral: "02:0001".into(), children, source: doc("split act") })
    };

    // Children must cover the parent, without overlapping each other or leaving it.
    let cases = [
        (vec![parcel("02:0002", rect(0, 0, 40, 100)), parcel("02:0003", rect(50, 0, 100, 100))], "bad_partition"),
        (vec![parcel("02:0002", rect(0, 0, 60, 100)), parcel("02:0003", rect(50, 0, 100, 100))], "bad_partition"),
        (vec![parcel("02:0002", rect(0, 0, 50, 100)), parcel("02:0003", rect(50, 0, 110, 100))], "bad_partition"),
        (vec![parcel("02:0001", rect(0, 0, 50, 100)), parcel("02:0003", rect(50, 0, 100, 100))], "parcel_exists"),
    ];
    for (children, code) in cases {
        assert_eq!(c.run(&admin, split(children)), code);
    }
    let halves = vec![parcel("02:0002", rect(0, 0, 50, 100)), parcel("02:0003", rect(50, 0, 100, 100))];
    assert_eq!(c.run(&admin, split(halves)), "ok");
    let parent = c.registry.parcel(&c.ledger, "02:0001").unwrap().unwrap();
    assert!(parent.retired_height.is_some());
    assert_eq!(parent.version, 2);
    let child = c.registry.parcel(&c.ledger, "02:0002").unwrap().unwrap();
    assert_eq!((child.version, &child.right), (1, &parent.right));
    // The parent's area now belongs to the children: a new parcel there overlaps one of them.
    assert_eq!(c.run(&admin, register("02:0009", rect(10, 10, 20, 20))), "overlap");

    // Merge them back: the same area, the same right, and the halves retired.
    let merge = |parents: &[&str], p: Parcel| {
        TxBody::Land(LandOp::Merge {
            parents: parents.iter().map(|s| s.to_string()).collect(),
            parcel: p,
            source: doc("merge act"),
        })
    };
    assert_eq!(c.run(&admin, merge(&["02:0002", "02:0003"], parcel("02:0004", rect(0, 0, 100, 90)))), "bad_partition");
    assert_eq!(c.run(&admin, merge(&["02:0002", "02:0003"], parcel("02:0004", rect(0, 0, 100, 100)))), "ok");
    let merged = c.registry.parcel(&c.ledger, "02:0004").unwrap().unwrap();
    assert_eq!((merged.parcel.geometry.area2(), &merged.right), (parent.parcel.geometry.area2(), &parent.right));
    for half in ["02:0002", "02:0003"] {
        assert!(c.registry.parcel(&c.ledger, half).unwrap().unwrap().retired_height.is_some());
    }

    // Not adjacent, other holders, or encumbered: refused.
    assert_eq!(c.run(&admin, register("02:0005", rect(200, 0, 300, 100))), "ok");
    assert_eq!(c.run(&admin, register("02:0006", rect(400, 0, 500, 100))), "ok");
    assert_eq!(
        c.run(&admin, merge(&["02:0005", "02:0006"], parcel("02:0007", rect(200, 0, 500, 100)))),
        "bad_partition"
    );
    let mut other_holder = register("02:0008", rect(300, 0, 400, 100));
    if let TxBody::Land(LandOp::Register { right: r, .. }) = &mut other_holder {
        *r = right(&[("TJ-7777", 1, 1)]);
    }
    assert_eq!(c.run(&admin, other_holder), "ok");
    assert_eq!(
        c.run(&admin, merge(&["02:0005", "02:0008"], parcel("02:0007", rect(200, 0, 400, 100)))),
        "bad_partition"
    );
    let arrest = Restriction {
        kind: RestrictionKind::Arrest,
        beneficiary: party("court"),
        consent_key: Some(SecretKey::from_seed(&[79; 32]).public()),
        start: "2026-05-01".into(),
        source: doc("order 5"),
    };
    assert_eq!(
        c.run(&admin, TxBody::Land(LandOp::Encumber { cadastral: "02:0005".into(), restriction: arrest })),
        "ok"
    );
    let halves = vec![parcel("02:0010", rect(200, 0, 250, 100)), parcel("02:0011", rect(250, 0, 300, 100))];
    assert_eq!(
        c.run(&admin, TxBody::Land(LandOp::Split { cadastral: "02:0005".into(), children: halves, source: doc("s2") })),
        "encumbered"
    );
}

#[test]
fn buildings_stand_on_their_parcels_and_roads_link_to_them() {
    use sabt_core::land::{Structure, StructureKind};
    let (dev, mut c) = land_chain();
    let admin = dev.admin_key(0);
    assert_eq!(c.run(&admin, register("03:0001", rect(0, 0, 100, 100))), "ok");
    let building = |id: &str, parcels: &[&str], footprint: Polygon| {
        TxBody::Land(LandOp::RegisterStructure {
            structure: Structure {
                id: id.into(),
                kind: StructureKind::Building,
                parcels: parcels.iter().map(|s| s.to_string()).collect(),
                footprint: Some(footprint),
                line: None,
                description: "two-storey house".into(),
            },
            source: doc("building permit"),
        })
    };
    assert_eq!(c.run(&admin, building("B:1", &["03:0001"], rect(10, 10, 30, 25))), "ok");
    assert_eq!(c.run(&admin, building("B:1", &["03:0001"], rect(40, 10, 60, 25))), "parcel_exists");
    assert_eq!(
        c.run(&admin, building("B:2", &["03:0001"], rect(90, 10, 110, 25))),
        "bad_partition",
        "half off the parcel"
    );
    assert_eq!(c.run(&admin, building("B:3", &["03:0009"], rect(10, 10, 30, 25))), "no_such_parcel");
    assert_eq!(c.run(&admin, building("B:4", &[], rect(10, 10, 30, 25))), "bad_land_field");
    let p = |x: i64, y: i64| Point::new(500_000_000 + x * 1000, 4_260_000_000 + y * 1000);
    let road = |line: Vec<Point>| {
        TxBody::Land(LandOp::RegisterStructure {
            structure: Structure {
                id: "R:41".into(),
                kind: StructureKind::Road,
                parcels: vec!["03:0001".into()],
                footprint: None,
                line: Some(line),
                description: "M41 highway".into(),
            },
            source: doc("acceptance act"),
        })
    };
    assert_eq!(c.run(&admin, road(vec![p(0, 50)])), "bad_land_field");
    assert_eq!(c.run(&admin, road(vec![p(0, 50), p(100, 50), p(500, 60)])), "ok");
    let st = c.registry.structure(&c.ledger, "B:1").unwrap().unwrap();
    assert_eq!((st.structure.parcels.as_slice(), st.retired_height), (&["03:0001".to_string()][..], None));
    let retire = TxBody::Land(LandOp::RetireStructure { id: "B:1".into(), source: doc("demolition act") });
    assert_eq!(c.run(&admin, retire.clone()), "ok");
    assert_eq!(c.run(&admin, retire), "parcel_retired");
    // Structures are proven from the state root like parcels.
    let st = c.registry.structure(&c.ledger, "R:41").unwrap().unwrap();
    let proof = smt::prove(&c.ledger, &StructureOf::key("R:41")).unwrap();
    assert_eq!(
        proof.verify(&c.tip.state_root, &StructureOf::key("R:41")).unwrap(),
        Some(smt::value_hash(&codec::encode_body(&st)))
    );
}

/// The regression of a reported halt: three adjacent parcels, each within the grid-cell limit of
/// one registration, merged into one polygon through their shared vertices whose bounding box
/// exceeds it. The check let the merge through, applying it failed in every proposer, and each
/// stopped as if its store were damaged. Now the check refuses it, and a proposer leaves it out.
#[test]
fn a_merge_beyond_the_limit_of_one_registration_is_refused_by_the_check() {
    let (dev, mut c) = land_chain();
    let admin = dev.admin_key(0);
    let clerk = SecretKey::from_seed(&[43; 32]);
    let grant = TxBody::AuthorizeKey { key: clerk.public(), kinds: vec![RecordKind::LandProperty], expires_ms: None };
    assert_eq!(c.run(&admin, grant), "ok");
    let km = 1_000;
    for (i, x) in [0, 25 * km, 50 * km].into_iter().enumerate() {
        assert_eq!(c.run(&admin, register(&format!("03:000{i}"), rect(x, 0, x + 25 * km, 50 * km))), "ok");
    }
    let p = |x: i64, y: i64| Point::new(500_000_000 + x * 1000, 4_260_000_000 + y * 1000);
    let outline = [(0, 0), (25, 0), (50, 0), (75, 0), (75, 50), (50, 50), (25, 50), (0, 50), (0, 0)];
    let merged = Polygon { exterior: outline.iter().map(|&(x, y)| p(x * km, y * km)).collect(), holes: vec![] };
    let merge = TxBody::Land(LandOp::Merge {
        parents: vec!["03:0000".into(), "03:0001".into(), "03:0002".into()],
        parcel: parcel("03:0009", merged),
        source: doc("merge act"),
    });
    assert_eq!(c.run(&admin, merge.clone()), "parcel_too_large");

    // A proposer meeting it leaves it out and fills the block with what follows.
    let merge_tx = c.tx(&admin, merge);
    let next = c.tx(&clerk, register("03:0010", rect(100 * km, 0, 100 * km + 100, 100)));
    let mut ws = c.ledger.clone();
    let proposer = SecretKey::from_seed(&[1; 32]).public();
    let built = c
        .registry
        .build_block(&mut ws, &c.tip, c.tip.time_ms + 1000, proposer, vec![merge_tx.clone(), next.clone()], &NoCache)
        .unwrap();
    assert_eq!(built.block.txs, vec![next]);
    assert_eq!(built.refused.len(), 1);
    assert_eq!((built.refused[0].0, built.refused[0].1.code()), (merge_tx.id(), "parcel_too_large"));
    // Every other node executes that block to the same header.
    let ex = c.registry.execute_block(&mut c.ledger.clone(), &c.tip, &built.block, &NoCache).unwrap();
    assert_eq!(ex, built.executed);
}

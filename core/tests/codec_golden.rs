//! Golden vectors for every encoded type (`fixtures/golden/*.hex`), so any drift of the canonical
//! encoding fails a test; property tests: `decode(encode(x)) == x`, and arbitrary or damaged bytes
//! never panic.
//!
//! To re-create the fixtures after a deliberate format change (which is a breaking change of the
//! chain, and bumps the type's version byte): `SABT_BLESS=1 cargo test -p sabt-core --test codec_golden`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use proptest::prelude::*;
use sabt_core::block::{Block, BlockHeader, Commit, CommitSig, ProposalMsg, VoteKind, VoteMsg, tx_root, verify_commit};
use sabt_core::bundle::BatchProof;
use sabt_core::checkpoint::{Checkpoint, SignedNote, cosign};
use sabt_core::checkpoint::{note_from_cosignatures, sign_checkpoint};
use sabt_core::codec::{self, Canonical, CodecError};
use sabt_core::entry::{
    AccessClass, ArchiveRecord, BatchAnchor, EntryBody, LogEntry, RecordKind, RecordRef, ReferenceCode, StatusChange,
};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::genesis::{Agency, AgencyRole, GENESIS_FORMAT, Genesis, Params, ValidatorInfo};
use sabt_core::hash::{self, Hash32};
use sabt_core::registry::schema::Slot as _;
use sabt_core::registry::{self, RecordState, RecordStatus};
use sabt_core::sign::{self, SecretKey};
use sabt_core::smt::{self, MemorySmt};
use sabt_core::tx::{SignedTx, Transaction, TxBody};

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn record() -> ArchiveRecord {
    ArchiveRecord {
        fingerprint: Fingerprint::of_bytes(b"golden document"),
        kind: RecordKind::CivilStatus,
        reference: ReferenceCode {
            repository: "Main Archive".into(),
            fund: "12".into(),
            inventory: "3".into(),
            file: "45".into(),
            sheets: Some("6-7".into()),
        },
        creating_agency: "ZAGS Dushanbe".into(),
        title: "Birth register, 1961 (сабт)".into(),
        date_from: Some("1961-01".into()),
        date_to: Some("1961-12-31".into()),
        access: AccessClass::Confidential,
    }
}

fn entry_record() -> LogEntry {
    LogEntry {
        height: 7,
        time_ms: 1_795_424_400_000,
        tx: Hash32([0xab; 32]),
        signer: key(3).public(),
        body: EntryBody::Record(record()),
    }
}

fn entry_batch() -> LogEntry {
    LogEntry {
        height: 300,
        time_ms: 1_795_424_401_000,
        tx: Hash32([0xcd; 32]),
        signer: key(4).public(),
        body: EntryBody::Batch(BatchAnchor { root: Hash32([0x11; 32]), size: 100_000, kind: RecordKind::Notary }),
    }
}

fn genesis() -> Genesis {
    Genesis {
        format: GENESIS_FORMAT,
        chain_id: "tj.sabt.golden".into(),
        genesis_time_ms: 1_795_392_000_000,
        agencies: vec![
            Agency {
                name: "land-committee".into(),
                roles: vec![AgencyRole::Land],
                admin_key: key(10).public(),
                validator: Some(ValidatorInfo {
                    consensus_key: key(1).public(),
                    peer_id: "12D3KooWGolden1".into(),
                    addresses: vec!["/ip4/127.0.0.1/tcp/26001".into()],
                    power: 1,
                }),
            },
            Agency {
                name: "main-archive".into(),
                roles: vec![AgencyRole::Archive, AgencyRole::Audit],
                admin_key: key(11).public(),
                validator: None,
            },
        ],
        params: Params::default(),
    }
}

/// Compares `bytes` with the fixture `name`, or writes it when blessing.
fn golden(name: &str, bytes: &[u8]) {
    let path = format!("{}/tests/fixtures/golden/{name}.hex", manifest_dir());
    let text = hex::encode(bytes) + "\n";
    if std::env::var_os("SABT_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing fixture {path}; see this file's docs"));
    assert_eq!(text, expected, "encoding of {name} drifted from {path}");
}

fn round_trip<T: Canonical + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    let bytes = codec::encode(value);
    golden(name, &bytes);
    assert_eq!(&codec::decode::<T>(&bytes).unwrap(), value);
}

#[test]
fn golden_archive_record() {
    round_trip("archive_record", &record());
}

#[test]
fn golden_log_entries() {
    round_trip("log_entry_record", &entry_record());
    round_trip("log_entry_batch", &entry_batch());
    golden("log_entry_record_leaf_hash", entry_record().leaf_hash().as_bytes());
}

#[test]
fn golden_genesis_and_its_hash() {
    let g = genesis();
    g.validate().unwrap();
    round_trip("genesis", &g);
    golden("genesis_hash", g.hash().as_bytes());
    golden("validator_set_hash", g.validator_set().unwrap().hash().as_bytes());
    // JSON formatting does not change the chain.
    let reparsed = Genesis::from_json(&serde_json::to_string(&g).unwrap()).unwrap();
    assert_eq!(reparsed.hash(), g.hash());
}

#[test]
fn golden_signatures_and_checkpoint_note() {
    let k = key(1);
    let msg = codec::encode(&entry_record());
    golden("tx_signature", &k.sign(sign::TX, &msg).0);
    golden("tx_signed_message", &sign::framed(sign::TX, &msg));
    let cp = Checkpoint { origin: "tj.sabt.golden".into(), size: 1_000_000, root: Hash32([0x22; 32]) };
    let note = SignedNote { text: cp.body(), signatures: vec![cosign(&cp, "land-committee", &k)] };
    golden("checkpoint_note", note.render().as_bytes());
    golden("domain_hash_tx", hash::hash(hash::TX, b"golden").as_bytes());
}

fn signed_tx() -> SignedTx {
    Transaction {
        chain_id: "tj.sabt.golden".into(),
        signer: key(10).public(),
        nonce: 41,
        body: TxBody::Anchor(record()),
    }
    .sign(&key(10))
}

fn block() -> Block {
    let txs = vec![signed_tx()];
    Block {
        header: BlockHeader {
            chain_id: "tj.sabt.golden".into(),
            height: 12,
            time_ms: 1_795_424_402_000,
            prev_hash: Hash32([0x33; 32]),
            tx_root: tx_root(&txs),
            tx_count: 1,
            log_size: 1_000_000,
            log_root: Hash32([0x22; 32]),
            state_root: Hash32([0x44; 32]),
            validator_set_hash: genesis().validator_set().unwrap().hash(),
            proposer: key(1).public(),
        },
        txs,
    }
}

#[test]
fn golden_transactions_blocks_votes_and_commits() {
    let stx = signed_tx();
    stx.verify_signature().unwrap();
    round_trip("signed_tx", &stx);
    golden("signed_tx_id", stx.id().as_bytes());
    let b = block();
    round_trip("block", &b);
    golden("block_hash", b.hash().as_bytes());
    let vote = VoteMsg {
        chain_id: "tj.sabt.golden".into(),
        kind: VoteKind::Precommit,
        height: 12,
        round: 0,
        block: Some(b.hash()),
        validator: key(1).public(),
    };
    round_trip("vote", &vote);
    golden("vote_signature", &vote.sign(&key(1)).0);
    let proposal = ProposalMsg {
        chain_id: "tj.sabt.golden".into(),
        height: 12,
        round: 1,
        pol_round: Some(0),
        block: b.hash(),
        proposer: key(1).public(),
    };
    round_trip("proposal", &proposal);
    golden("proposal_signature", &proposal.sign(&key(1)).0);
    let cp = Checkpoint { origin: "tj.sabt.golden".into(), size: b.header.log_size, root: b.header.log_root };
    let commit = Commit {
        height: 12,
        round: 0,
        block: b.hash(),
        signatures: vec![CommitSig {
            validator: key(1).public(),
            signature: vote.sign(&key(1)),
            checkpoint: Some(sign_checkpoint(&cp, &key(1))),
        }],
    };
    round_trip("commit", &commit);
    verify_commit(&commit, &genesis().validator_set().unwrap(), "tj.sabt.golden", 12, &b.hash()).unwrap();
    // The checkpoint cosignature in a commit is the note signature of the same checkpoint.
    let note = note_from_cosignatures(
        &cp,
        &genesis().validator_set().unwrap(),
        [(&commit.signatures[0].validator, &commit.signatures[0].checkpoint.unwrap())],
    );
    golden("checkpoint_note", note.as_bytes());
}

#[test]
fn a_stored_blocks_header_is_read_without_its_transactions() {
    let b = block();
    let bytes = codec::encode(&b);
    assert_eq!(Block::decode_header(&bytes).unwrap(), b.header);
    // What the whole-block decoder refuses up front, this refuses too.
    assert!(matches!(Block::decode_header(&[]), Err(CodecError::Empty { .. })));
    let mut other = bytes.clone();
    other[0] ^= 0x40;
    assert!(matches!(Block::decode_header(&other), Err(CodecError::UnsupportedVersion { .. })));
    assert!(matches!(Block::decode_header(&bytes[..20]), Err(CodecError::Malformed { .. })));
    // An over-long varint in the header (height 12 as two bytes) is not canonical.
    let h = 1 + codec::encode_body(&b.header.chain_id).len();
    assert_eq!(bytes[h], 12);
    let mut long = bytes[..h].to_vec();
    long.extend_from_slice(&[0x8c, 0x00]);
    long.extend_from_slice(&bytes[h + 1..]);
    assert!(matches!(Block::decode_header(&long), Err(CodecError::NonCanonical { .. })));
}

#[test]
fn golden_state_map() {
    let mut t = MemorySmt::default();
    for i in 0u32..5 {
        smt::insert(&mut t, &registry::schema::state_key(1, &i.to_be_bytes()), smt::value_hash(&i.to_le_bytes()))
            .unwrap();
    }
    golden("state_root_5", smt::root(&t).unwrap().as_bytes());
    golden("state_key_nonce", registry::schema::NonceOf::key(&key(10).public()).as_bytes());
}

fn record_ref() -> RecordRef {
    RecordRef {
        entry: 3,
        record: record(),
        batch: Some(BatchProof { index: 2, size: 5, path: vec![Hash32([0x11; 32]), Hash32([0x22; 32])] }),
    }
}

#[test]
fn golden_status_changes() {
    let withdraw = Transaction {
        chain_id: "sabt-golden".into(),
        signer: key(3).public(),
        nonce: 9,
        body: TxBody::Withdraw { target: record_ref(), reason: "entered in error".into() },
    }
    .sign(&key(3));
    round_trip("signed_tx_withdraw", &withdraw);
    let mut new = record();
    new.fingerprint = Fingerprint::of_bytes(b"golden document, corrected");
    let supersede = Transaction {
        chain_id: "sabt-golden".into(),
        signer: key(3).public(),
        nonce: 10,
        body: TxBody::Supersede {
            target: RecordRef { entry: 4, record: record(), batch: None },
            record: new.clone(),
            reason: "corrected copy".into(),
        },
    }
    .sign(&key(3));
    round_trip("signed_tx_supersede", &supersede);
    let change =
        StatusChange { target: record().fingerprint, target_index: 4, target_leaf: 0, reason: "corrected copy".into() };
    let entry = LogEntry {
        height: 8,
        time_ms: 1_795_424_402_000,
        tx: supersede.id(),
        signer: key(3).public(),
        body: EntryBody::Supersede { change: change.clone(), record: new.clone() },
    };
    round_trip("log_entry_supersede", &entry);
    let entry = LogEntry { body: EntryBody::Withdraw(change), ..entry };
    round_trip("log_entry_withdraw", &entry);
    let status = RecordStatus {
        state: RecordState::Superseded,
        index: 5,
        height: 8,
        time_ms: 1_795_424_402_000,
        reason: "corrected copy".into(),
        superseded_by: Some(new.fingerprint),
    };
    golden("state_value_record_status", &codec::encode_body(&status));
    let id = registry::RecordId { sha256: record().fingerprint.sha256, entry: 3, leaf: 2 };
    golden("state_key_status", registry::schema::StatusOf::key(&id).as_bytes());
}

#[test]
fn golden_land() {
    use sabt_core::geometry::{Point, Polygon};
    use sabt_core::land::{self, Holding, LandCategory, LandOp, Parcel, ParcelState, Right, RightKind, Share};
    let p = |x: i64, y: i64| Point::new(500_000_000 + x, 4_260_000_000 + y);
    let parcel = Parcel {
        cadastral: "01:02:0003".into(),
        category: LandCategory::Agricultural,
        permitted_use: "orchard".into(),
        geometry: Polygon {
            exterior: vec![p(0, 0), p(50_000, 0), p(50_000, 40_000), p(0, 40_000), p(0, 0)],
            holes: vec![],
        },
    };
    let party = land::party_hash(b"golden salt", "TJ-0001");
    golden("land_party_hash", party.as_bytes());
    let right = Right {
        kind: RightKind::FixedTermUse,
        holders: vec![Holding { party, share: Share { num: 1, den: 1 } }],
        start: "2026-01-15".into(),
        end: Some("2075-01-15".into()),
    };
    let register = Transaction {
        chain_id: "sabt-golden".into(),
        signer: key(3).public(),
        nonce: 11,
        body: TxBody::Land(LandOp::Register {
            parcel: parcel.clone(),
            right: right.clone(),
            source: Fingerprint::of_bytes(b"golden land act"),
        }),
    }
    .sign(&key(3));
    round_trip("signed_tx_land_register", &register);
    let state =
        ParcelState { parcel, right, restrictions: vec![], version: 1, index: 12, height: 9, retired_height: None };
    golden("state_value_parcel", &codec::encode_body(&state));
    golden("state_key_parcel", registry::schema::ParcelOf::key("01:02:0003").as_bytes());
    golden("state_key_cell", registry::schema::CellMembers::key(&(1000, 8520)).as_bytes());
    // A release, signed by the restriction's consent key over the release bytes.
    let (restriction, source) =
        (Fingerprint::of_bytes(b"golden mortgage deed"), Fingerprint::of_bytes(b"golden repaid"));
    let message = land::release_consent_bytes("sabt-golden", "01:02:0003", 4, &restriction, &source);
    golden("land_release_message", &message);
    let consent = key(12).sign(sabt_core::sign::LAND_RELEASE, &message);
    golden("land_release_signature", &consent.0);
    let release = Transaction {
        chain_id: "sabt-golden".into(),
        signer: key(3).public(),
        nonce: 12,
        body: TxBody::Land(LandOp::Release { cadastral: "01:02:0003".into(), restriction, source, consent }),
    }
    .sign(&key(3));
    round_trip("signed_tx_land_release", &release);
}

#[test]
fn version_byte_and_trailing_bytes() {
    let mut bytes = codec::encode(&entry_record());
    assert_eq!(bytes[0], LogEntry::VERSION);
    bytes.push(0);
    assert!(matches!(codec::decode::<LogEntry>(&bytes), Err(CodecError::TrailingBytes { count: 1, .. })));
    bytes.pop();
    bytes[0] = 3;
    assert!(matches!(codec::decode::<LogEntry>(&bytes), Err(CodecError::UnsupportedVersion { found: 3, .. })));
    assert!(matches!(LogEntry::decode_any_version(&bytes), Err(CodecError::UnsupportedVersion { found: 3, .. })));
    // A version-1 entry of a record reads as the same entry.
    bytes[0] = 1;
    assert_eq!(LogEntry::decode_any_version(&bytes).unwrap(), entry_record());
}

fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex(".{0,40}").unwrap()
}

fn hash32() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn arb_record() -> impl Strategy<Value = ArchiveRecord> {
    (
        (hash32(), hash32(), 0usize..9),
        (text(), text(), text(), text(), proptest::option::of(text())),
        (text(), text(), proptest::option::of(text()), proptest::option::of(text()), 0u8..3),
    )
        .prop_map(
            |(
                (s, b, k),
                (repository, fund, inventory, file, sheets),
                (creating_agency, title, date_from, date_to, a),
            )| {
                ArchiveRecord {
                    fingerprint: Fingerprint { sha256: s, blake3: b },
                    kind: RecordKind::ALL[k],
                    reference: ReferenceCode { repository, fund, inventory, file, sheets },
                    creating_agency,
                    title,
                    date_from,
                    date_to,
                    access: [AccessClass::Public, AccessClass::Restricted, AccessClass::Confidential][a as usize],
                }
            },
        )
}

fn arb_entry() -> impl Strategy<Value = LogEntry> {
    let body = prop_oneof![
        arb_record().prop_map(EntryBody::Record),
        (hash32(), any::<u64>(), 0usize..9).prop_map(|(root, size, k)| EntryBody::Batch(BatchAnchor {
            root,
            size,
            kind: RecordKind::ALL[k]
        })),
        (hash32(), hash32(), any::<u64>(), any::<u64>(), text()).prop_map(
            |(sha256, blake3, target_index, target_leaf, reason)| {
                EntryBody::Withdraw(StatusChange {
                    target: Fingerprint { sha256, blake3 },
                    target_index,
                    target_leaf,
                    reason,
                })
            }
        ),
        (arb_record(), arb_record(), any::<u64>(), any::<u64>(), text()).prop_map(
            |(old, record, target_index, target_leaf, reason)| EntryBody::Supersede {
                change: StatusChange { target: old.fingerprint, target_index, target_leaf, reason },
                record,
            }
        ),
    ];
    (any::<u64>(), any::<u64>(), hash32(), any::<u8>(), body).prop_map(|(height, time_ms, tx, seed, body)| LogEntry {
        height,
        time_ms,
        tx,
        signer: key(seed).public(),
        body,
    })
}

proptest! {
    #[test]
    fn entries_round_trip(e in arb_entry()) {
        let bytes = codec::encode(&e);
        prop_assert_eq!(codec::decode::<LogEntry>(&bytes).unwrap(), e);
    }

    #[test]
    fn records_round_trip(r in arb_record()) {
        prop_assert_eq!(codec::decode::<ArchiveRecord>(&codec::encode(&r)).unwrap(), r);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode::<LogEntry>(&bytes);
        let _ = codec::decode::<ArchiveRecord>(&bytes);
        let _ = codec::decode::<Genesis>(&bytes);
    }

    #[test]
    fn damaged_encodings_never_panic_or_misdecode(e in arb_entry(), pos in any::<usize>(), bit in 0u8..8, cut in any::<bool>()) {
        let mut bytes = codec::encode(&e);
        let p = pos % bytes.len();
        if cut { bytes.truncate(p) } else { bytes[p] ^= 1 << bit }
        if let Ok(d) = codec::decode::<LogEntry>(&bytes) {
            // One value, one encoding: whatever decodes re-encodes to exactly these bytes.
            prop_assert_eq!(codec::encode(&d), bytes);
        }
    }
}

/// The package's directory, as cargo gives it to the running test (a test binary reused from a
/// shared target directory may have been built in another checkout).
fn manifest_dir() -> String {
    std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into())
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Registry rules: what a proposer builds, every node re-executes to the same header; any change
//! to a header field or a transaction is refused; replays, foreign chains and unknown signers are
//! refused identically at admission and in blocks.

use sabt_core::block::Block;
use sabt_core::devnet::Devnet;
use sabt_core::entry::{AccessClass, ArchiveRecord, BatchAnchor, RecordKind, ReferenceCode};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::hash::Hash32;
use sabt_core::registry::{BlockError, MemoryLedger, Registry, Tip, TxError};
use sabt_core::sign::SecretKey;
use sabt_core::smt;
use sabt_core::tx::{SignedTx, Transaction, TxBody};

fn setup() -> (Devnet, Registry, SecretKey) {
    let dev = Devnet::new("sabt-test", 1_000, &[[1; 32], [2; 32], [3; 32], [4; 32]], [9; 32]);
    let registry = Registry::new(&dev.genesis).unwrap();
    let admin = dev.admin_key(1);
    (dev, registry, admin)
}

fn record(n: u8) -> ArchiveRecord {
    ArchiveRecord {
        fingerprint: Fingerprint::of_bytes(&[n; 100]),
        kind: RecordKind::CivilStatus,
        reference: ReferenceCode {
            repository: "TJ-ARCHIVE".into(),
            fund: "12".into(),
            inventory: "3".into(),
            file: format!("{n}"),
            sheets: None,
        },
        creating_agency: "agency-2".into(),
        title: format!("Record {n}"),
        date_from: Some("1950".into()),
        date_to: None,
        access: AccessClass::Public,
    }
}

fn tx(key: &SecretKey, nonce: u64, body: TxBody) -> SignedTx {
    Transaction { chain_id: "sabt-test".into(), signer: key.public(), nonce, body }.sign(key)
}

#[test]
fn built_blocks_re_execute_identically_and_tampering_is_refused() {
    let (dev, registry, admin) = setup();
    let proposer = SecretKey::from_seed(&[1; 32]).public();
    let tip = Tip::genesis(&dev.genesis);
    let txs = vec![
        tx(&admin, 0, TxBody::Anchor(record(1))),
        tx(&admin, 1, TxBody::AnchorBatch(BatchAnchor { root: Hash32([7; 32]), size: 10 })),
        tx(&admin, 1, TxBody::Anchor(record(2))), // replayed nonce: left out
        tx(&admin, 2, TxBody::Anchor(record(1))), // same document again: left out
    ];
    let mut built = MemoryLedger::default();
    let b = registry.build_block(&mut built, &tip, 2_000, proposer, txs).unwrap();
    let (block, ex, refused) = (b.block, b.executed, b.refused);
    assert_eq!(block.txs.len(), 2);
    assert_eq!(refused.len(), 2);
    assert!(matches!(refused[0].1, TxError::NonceUsed { .. }));
    assert!(matches!(refused[1].1, TxError::AlreadyAnchored { .. }));
    assert_eq!(ex.log_size, 2);
    assert_eq!(smt::root(&built).unwrap(), block.header.state_root);

    // Another node executes the block from the same state and agrees.
    let mut other = MemoryLedger::default();
    let ex2 = registry.execute_block(&mut other, &tip, &block).unwrap();
    assert_eq!(ex2, ex);

    // Every header field that execution determines is checked.
    type Tamper = Box<dyn Fn(&mut Block)>;
    let tampered: Vec<(&str, Tamper)> = vec![
        ("height", Box::new(|b| b.header.height += 1)),
        ("prev_hash", Box::new(|b| b.header.prev_hash.0[0] ^= 1)),
        ("time_ms", Box::new(|b| b.header.time_ms = 1_000)),
        ("tx_root", Box::new(|b| b.header.tx_root.0[0] ^= 1)),
        ("tx_count", Box::new(|b| b.header.tx_count += 1)),
        ("log_size", Box::new(|b| b.header.log_size += 1)),
        ("log_root", Box::new(|b| b.header.log_root.0[0] ^= 1)),
        ("state_root", Box::new(|b| b.header.state_root.0[0] ^= 1)),
        ("validator_set_hash", Box::new(|b| b.header.validator_set_hash.0[0] ^= 1)),
        ("chain_id", Box::new(|b| b.header.chain_id = "sabt-other".into())),
    ];
    for (name, f) in tampered {
        let mut bad = block.clone();
        f(&mut bad);
        let err = registry.execute_block(&mut MemoryLedger::default(), &tip, &bad).unwrap_err();
        assert!(matches!(err, BlockError::Header { field, .. } if field == name), "{name}: {err}");
    }
    // A transaction swapped for another (header unchanged) is refused by the transactions root.
    let mut bad = block.clone();
    bad.txs[1] = tx(&admin, 1, TxBody::AnchorBatch(BatchAnchor { root: Hash32([8; 32]), size: 10 }));
    assert!(registry.execute_block(&mut MemoryLedger::default(), &tip, &bad).is_err());
}

#[test]
fn invalid_transactions_make_a_block_invalid() {
    let (dev, registry, admin) = setup();
    let tip = Tip::genesis(&dev.genesis);
    let stranger = SecretKey::from_seed(&[66; 32]);
    let mut wrong_chain = Transaction {
        chain_id: "sabt-other".into(),
        signer: admin.public(),
        nonce: 0,
        body: TxBody::Anchor(record(3)),
    }
    .sign(&admin);
    let cases: Vec<(SignedTx, &str)> = vec![
        (tx(&stranger, 0, TxBody::Anchor(record(3))), "unauthorised"),
        (wrong_chain.clone(), "wrong_chain"),
        (tx(&admin, 5, TxBody::Anchor(record(3))), "nonce_gap"),
        (tx(&admin, 0, TxBody::AnchorBatch(BatchAnchor { root: Hash32([1; 32]), size: 0 })), "empty_batch"),
        (
            {
                wrong_chain.tx.chain_id = "sabt-test".into(); // signature no longer matches
                wrong_chain
            },
            "bad_signature",
        ),
    ];
    for (stx, code) in cases {
        let err = registry.execute(&mut MemoryLedger::default(), &tip, 1, 2_000, &[stx]).unwrap_err();
        match err {
            BlockError::Tx { error, .. } => assert_eq!(error.code(), code),
            other => panic!("{code}: {other}"),
        }
    }
}

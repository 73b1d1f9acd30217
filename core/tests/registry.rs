#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Registry rules: what a proposer builds, every node re-executes to the same header; any change
//! to a header field or a transaction is refused; replays, foreign chains and unknown signers are
//! refused identically at admission and in blocks.

use sabt_core::block::Block;
use sabt_core::bundle::BatchProof;
use sabt_core::codec;
use sabt_core::devnet::Devnet;
use sabt_core::entry::{
    AccessClass, ArchiveRecord, BatchAnchor, EntryBody, LogEntry, RecordKind, RecordRef, ReferenceCode,
};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::hash::Hash32;
use sabt_core::merkle::{Blake3, MemoryTree};
use sabt_core::registry::schema::{Slot as _, StatusOf};
use sabt_core::registry::{BlockError, MemoryLedger, NoCache, RecordId, RecordState, Registry, Tip, TxError};
use sabt_core::sign::SecretKey;
use sabt_core::smt;
use sabt_core::status::{self, StatusProof, StatusVerified};
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
        tx(&admin, 1, TxBody::AnchorBatch(BatchAnchor { root: Hash32([7; 32]), size: 10, kind: RecordKind::Notary })),
        tx(&admin, 1, TxBody::Anchor(record(2))), // replayed nonce: left out
        tx(&admin, 2, TxBody::Anchor(record(1))), // same document again: left out
    ];
    let mut built = MemoryLedger::default();
    let b = registry.build_block(&mut built, &tip, 2_000, proposer, txs, &NoCache).unwrap();
    let (block, ex, refused) = (b.block, b.executed, b.refused);
    assert_eq!(block.txs.len(), 2);
    assert_eq!(refused.len(), 2);
    assert!(matches!(refused[0].1, TxError::NonceUsed { .. }));
    assert!(matches!(refused[1].1, TxError::AlreadyAnchored { .. }));
    assert_eq!(ex.log_size, 2);
    assert_eq!(smt::root(&built).unwrap(), block.header.state_root);

    // Another node executes the block from the same state and agrees.
    let mut other = MemoryLedger::default();
    let ex2 = registry.execute_block(&mut other, &tip, &block, &NoCache).unwrap();
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
        let err = registry.execute_block(&mut MemoryLedger::default(), &tip, &bad, &NoCache).unwrap_err();
        assert!(matches!(err, BlockError::Header { field, .. } if field == name), "{name}: {err}");
    }
    // A transaction swapped for another (header unchanged) is refused by the transactions root.
    let mut bad = block.clone();
    bad.txs[1] =
        tx(&admin, 1, TxBody::AnchorBatch(BatchAnchor { root: Hash32([8; 32]), size: 10, kind: RecordKind::Notary }));
    assert!(registry.execute_block(&mut MemoryLedger::default(), &tip, &bad, &NoCache).is_err());
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
        (
            tx(
                &admin,
                0,
                TxBody::AnchorBatch(BatchAnchor { root: Hash32([1; 32]), size: 0, kind: RecordKind::Notary }),
            ),
            "empty_batch",
        ),
        (
            {
                wrong_chain.tx.chain_id = "sabt-test".into(); // signature no longer matches
                wrong_chain
            },
            "bad_signature",
        ),
    ];
    for (stx, code) in cases {
        let err = registry.execute(&mut MemoryLedger::default(), &tip, (1, 2_000), &[stx], &NoCache).unwrap_err();
        match err {
            BlockError::Tx { error, .. } => assert_eq!(error.code(), code),
            other => panic!("{code}: {other}"),
        }
    }
}

/// Executes `txs` as the next block on `ledger`, returning the new tip or the refusal.
fn block(
    registry: &Registry,
    ledger: &mut MemoryLedger,
    tip: &Tip,
    time_ms: u64,
    txs: Vec<SignedTx>,
) -> Result<Tip, BlockError> {
    let mut scratch = ledger.clone();
    let ex = registry.execute(&mut scratch, tip, (tip.height + 1, time_ms), &txs, &NoCache)?;
    *ledger = scratch;
    Ok(Tip {
        height: tip.height + 1,
        block_hash: Hash32([tip.height as u8 + 1; 32]),
        time_ms,
        log_size: ex.log_size,
        log_root: ex.log_root,
        state_root: ex.state_root,
    })
}

fn code(r: Result<Tip, BlockError>) -> &'static str {
    match r {
        Err(BlockError::Tx { error, .. }) => error.code(),
        Err(e) => panic!("unexpected: {e}"),
        Ok(_) => "ok",
    }
}

#[test]
fn clerk_keys_act_only_within_their_grant() {
    let (dev, registry, admin) = setup();
    let other_admin = dev.admin_key(2);
    let clerk = SecretKey::from_seed(&[31; 32]);
    let mut l = MemoryLedger::default();
    let tip = Tip::genesis(&dev.genesis);
    let anchor = |n: u8, nonce: u64, kind: RecordKind| {
        let mut r = record(n);
        r.kind = kind;
        tx(&clerk, nonce, TxBody::Anchor(r))
    };
    // Before any grant the clerk is nobody.
    assert_eq!(
        code(block(&registry, &mut l.clone(), &tip, 2_000, vec![anchor(1, 0, RecordKind::CivilStatus)])),
        "unauthorised"
    );
    // Kinds must be canonical.
    let bad = TxBody::AuthorizeKey {
        key: clerk.public(),
        kinds: vec![RecordKind::Notary, RecordKind::CivilStatus],
        expires_ms: None,
    };
    assert_eq!(code(block(&registry, &mut l.clone(), &tip, 2_000, vec![tx(&admin, 0, bad)])), "bad_grant");
    // An admin key cannot be made a clerk key.
    let bad =
        TxBody::AuthorizeKey { key: other_admin.public(), kinds: vec![RecordKind::CivilStatus], expires_ms: None };
    assert_eq!(code(block(&registry, &mut l.clone(), &tip, 2_000, vec![tx(&admin, 0, bad)])), "bad_grant");

    let grant =
        TxBody::AuthorizeKey { key: clerk.public(), kinds: vec![RecordKind::CivilStatus], expires_ms: Some(10_000) };
    let tip = block(&registry, &mut l, &tip, 2_000, vec![tx(&admin, 0, grant)]).unwrap();
    // Within the grant: fine; another kind: refused; a clerk cannot authorise keys.
    let t2 = block(&registry, &mut l.clone(), &tip, 3_000, vec![anchor(1, 0, RecordKind::CivilStatus)]).unwrap();
    assert_eq!(t2.log_size, 2);
    assert_eq!(
        code(block(&registry, &mut l.clone(), &tip, 3_000, vec![anchor(1, 0, RecordKind::Notary)])),
        "kind_not_allowed"
    );
    let sub = TxBody::AuthorizeKey {
        key: SecretKey::from_seed(&[32; 32]).public(),
        kinds: vec![RecordKind::Other],
        expires_ms: None,
    };
    assert_eq!(code(block(&registry, &mut l.clone(), &tip, 3_000, vec![tx(&clerk, 0, sub)])), "unauthorised");
    // Expiry is judged by consensus time.
    assert_eq!(
        code(block(&registry, &mut l.clone(), &tip, 10_000, vec![anchor(1, 0, RecordKind::CivilStatus)])),
        "expired"
    );
    // Another agency cannot revoke it.
    let revoke = TxBody::RevokeKey { key: clerk.public() };
    assert_eq!(
        code(block(&registry, &mut l.clone(), &tip, 3_000, vec![tx(&other_admin, 0, revoke.clone())])),
        "bad_grant"
    );
    // Revoked in a block: that block still accepts the key, the next does not, on every node alike.
    let tip = block(
        &registry,
        &mut l,
        &tip,
        3_000,
        vec![tx(&admin, 1, revoke.clone()), anchor(2, 0, RecordKind::CivilStatus)],
    )
    .unwrap();
    assert_eq!(
        code(block(&registry, &mut l.clone(), &tip, 4_000, vec![anchor(3, 1, RecordKind::CivilStatus)])),
        "revoked"
    );
    // A revoked key is never authorised again.
    let again = TxBody::AuthorizeKey { key: clerk.public(), kinds: vec![RecordKind::CivilStatus], expires_ms: None };
    assert_eq!(code(block(&registry, &mut l.clone(), &tip, 4_000, vec![tx(&admin, 2, again)])), "bad_grant");
    assert_eq!(code(block(&registry, &mut l.clone(), &tip, 4_000, vec![tx(&admin, 2, revoke)])), "bad_grant");
}

/// A commit certificate for `header` signed by the validators with `seeds`.
fn commit_for(header: &sabt_core::block::BlockHeader, seeds: &[u8]) -> sabt_core::block::Commit {
    use sabt_core::block::{Commit, CommitSig, VoteKind, VoteMsg};
    let signatures = seeds
        .iter()
        .map(|s| {
            let key = SecretKey::from_seed(&[*s; 32]);
            let vote = VoteMsg {
                chain_id: header.chain_id.clone(),
                kind: VoteKind::Precommit,
                height: header.height,
                round: 0,
                block: Some(header.hash()),
                validator: key.public(),
            };
            CommitSig { validator: key.public(), signature: vote.sign(&key), checkpoint: None }
        })
        .collect();
    Commit { height: header.height, round: 0, block: header.hash(), signatures }
}

/// A status proof for record `id` at the state in `ledger`, under a header with `tip`'s roots.
fn status_proof(dev: &Devnet, registry: &Registry, ledger: &MemoryLedger, tip: &Tip, id: RecordId) -> StatusProof {
    let header = sabt_core::block::BlockHeader {
        chain_id: dev.genesis.chain_id.clone(),
        height: tip.height,
        time_ms: tip.time_ms,
        prev_hash: Hash32([0; 32]),
        tx_root: Hash32([0; 32]),
        tx_count: 0,
        log_size: tip.log_size,
        log_root: tip.log_root,
        state_root: tip.state_root,
        validator_set_hash: registry.validator_set_hash(),
        proposer: SecretKey::from_seed(&[1; 32]).public(),
    };
    StatusProof {
        format: status::STATUS_FORMAT.into(),
        version: status::STATUS_VERSION,
        chain_id: dev.genesis.chain_id.clone(),
        genesis_hash: dev.genesis.hash(),
        record: id,
        status: registry.record_status(ledger, &id).unwrap(),
        state_proof: smt::prove(ledger, &StatusOf::key(&id)).unwrap(),
        commit: commit_for(&header, &[1, 2, 3]),
        header,
    }
}

#[test]
fn records_are_withdrawn_and_superseded_by_their_agency_with_status_proofs() {
    let (dev, registry, admin) = setup();
    let other_admin = dev.admin_key(2);
    let clerk = SecretKey::from_seed(&[31; 32]);
    let mut l = MemoryLedger::default();
    let tip = Tip::genesis(&dev.genesis);
    let grant = TxBody::AuthorizeKey { key: clerk.public(), kinds: vec![RecordKind::CivilStatus], expires_ms: None };
    // A single record and a batch of three, anchored by agency 1.
    let batch: Vec<ArchiveRecord> = (10..13).map(record).collect();
    let mut tree = MemoryTree::<Blake3>::new();
    for r in &batch {
        tree.push(&codec::encode(r));
    }
    let anchor_batch = TxBody::AnchorBatch(BatchAnchor { root: tree.root(), size: 3, kind: RecordKind::CivilStatus });
    let tip = block(
        &registry,
        &mut l,
        &tip,
        2_000,
        vec![tx(&admin, 0, grant), tx(&clerk, 0, TxBody::Anchor(record(1))), tx(&clerk, 1, anchor_batch)],
    )
    .unwrap();
    let single = RecordRef { entry: 1, record: record(1), batch: None };
    let single_id = RecordId { sha256: record(1).fingerprint.sha256, entry: 1, leaf: 0 };
    let path = tree.inclusion_proof(1, 3).unwrap();
    let batched = RecordRef { entry: 2, record: batch[1].clone(), batch: Some(BatchProof { index: 1, size: 3, path }) };
    let batched_id = RecordId { sha256: batch[1].fingerprint.sha256, entry: 2, leaf: 1 };
    let withdraw = |target: &RecordRef| TxBody::Withdraw { target: target.clone(), reason: "entered in error".into() };

    // Current before any change: the status proof shows absence, and verifies.
    let p = status_proof(&dev, &registry, &l, &tip, single_id);
    let v = status::verify(&p, &dev.genesis).unwrap();
    assert_eq!(v.status, None);
    status::check_applies(&v, &single_id).unwrap();
    let later = RecordId { entry: 3, ..single_id };
    assert_eq!(status::check_applies(&v, &later).unwrap_err().code(), "other_record");

    // Refusals: another agency; a record not as anchored; an entry that anchors something else or
    // does not exist; a bad batch path; a kind outside the grant; an empty reason; superseding
    // with itself.
    let try_ = |signer: &SecretKey, nonce, body| {
        code(block(&registry, &mut l.clone(), &tip, 3_000, vec![tx(signer, nonce, body)]))
    };
    assert_eq!(try_(&other_admin, 0, withdraw(&single)), "wrong_agency");
    let mut altered = single.clone();
    altered.record.title = "Changed".into();
    assert_eq!(try_(&clerk, 2, withdraw(&altered)), "not_anchored");
    assert_eq!(try_(&clerk, 2, withdraw(&RecordRef { entry: 1, record: record(2), batch: None })), "not_anchored");
    assert_eq!(try_(&clerk, 2, withdraw(&RecordRef { entry: 99, ..single.clone() })), "not_anchored");
    assert_eq!(try_(&clerk, 2, withdraw(&RecordRef { entry: 0, ..single.clone() })), "not_anchored");
    assert_eq!(try_(&clerk, 2, withdraw(&RecordRef { entry: 2, ..single.clone() })), "not_anchored");
    assert_eq!(try_(&clerk, 2, withdraw(&RecordRef { entry: 1, ..batched.clone() })), "not_anchored");
    let mut bad_path = batched.clone();
    bad_path.batch.as_mut().unwrap().path[0].0[0] ^= 1;
    assert_eq!(try_(&clerk, 2, withdraw(&bad_path)), "not_anchored");
    let mut other_kind = single.clone();
    other_kind.record.kind = RecordKind::Notary;
    assert_eq!(try_(&clerk, 2, withdraw(&other_kind)), "kind_not_allowed");
    assert_eq!(try_(&clerk, 2, TxBody::Withdraw { target: single.clone(), reason: " ".into() }), "bad_record");
    let itself = TxBody::Supersede { target: single.clone(), record: record(1), reason: "again".into() };
    assert_eq!(try_(&clerk, 2, itself), "bad_record");

    // The clerk withdraws the single record and supersedes the batched one; the admin of the same
    // agency could too.
    let supersede = TxBody::Supersede { target: batched.clone(), record: record(20), reason: "corrected copy".into() };
    let tip = block(&registry, &mut l, &tip, 3_000, vec![tx(&clerk, 2, withdraw(&single)), tx(&clerk, 3, supersede)])
        .unwrap();
    assert_eq!(tip.log_size, 5);
    let try_ = |signer: &SecretKey, nonce, body| {
        code(block(&registry, &mut l.clone(), &tip, 4_000, vec![tx(signer, nonce, body)]))
    };
    let st = registry.record_status(&l, &single_id).unwrap().unwrap();
    assert_eq!((st.state, st.index, st.height, st.reason.as_str()), (RecordState::Withdrawn, 3, 2, "entered in error"));
    let st = registry.record_status(&l, &batched_id).unwrap().unwrap();
    assert_eq!((st.state, st.index, st.superseded_by), (RecordState::Superseded, 4, Some(record(20).fingerprint)));
    // The other records of the batch are untouched; the new record is anchored.
    let first_leaf = RecordId { sha256: batch[0].fingerprint.sha256, entry: 2, leaf: 0 };
    assert_eq!(registry.record_status(&l, &first_leaf).unwrap(), None);
    assert_eq!(try_(&clerk, 4, TxBody::Anchor(record(20))), "already_anchored");
    let entry: LogEntry = codec::decode(&l.entries[&3]).unwrap();
    assert!(matches!(entry.body, EntryBody::Withdraw(ref c)
        if c.target_index == 1 && c.target_leaf == 0 && c.target == record(1).fingerprint));
    let entry: LogEntry = codec::decode(&l.entries[&4]).unwrap();
    assert!(matches!(entry.body, EntryBody::Supersede { ref change, .. }
        if change.target_index == 2 && change.target_leaf == 1));

    // Only once; and the superseding record (anchored by entry 4) can itself be withdrawn.
    assert_eq!(try_(&clerk, 4, withdraw(&single)), "not_current");
    assert_eq!(try_(&clerk, 4, withdraw(&RecordRef { entry: 4, record: record(20), batch: None })), "ok");

    // Status proofs: presence verifies; a changed status, a tampered proof, a weak or forged commit
    // and another genesis are each refused.
    let p = status_proof(&dev, &registry, &l, &tip, single_id);
    let v = status::verify(&p, &dev.genesis).unwrap();
    assert_eq!(v.status.as_ref().map(|s| s.state), Some(RecordState::Withdrawn));
    let json = p.to_json();
    assert_eq!(StatusProof::from_json(&json).unwrap(), p);
    let mut t = p.clone();
    t.status = None;
    assert_eq!(status::verify(&t, &dev.genesis).unwrap_err().code(), "status_mismatch");
    let mut t = p.clone();
    t.status.as_mut().unwrap().reason = "other".into();
    assert_eq!(status::verify(&t, &dev.genesis).unwrap_err().code(), "status_mismatch");
    // The proven key binds the record: the same proof relabelled for another anchoring fails.
    let mut t = p.clone();
    t.record.entry = 2;
    assert_eq!(status::verify(&t, &dev.genesis).unwrap_err().code(), "bad_state_proof");
    let mut t = p.clone();
    t.state_proof.siblings[0].0[0] ^= 1;
    assert_eq!(status::verify(&t, &dev.genesis).unwrap_err().code(), "bad_state_proof");
    let mut t = p.clone();
    t.commit.signatures.truncate(2);
    assert_eq!(status::verify(&t, &dev.genesis).unwrap_err().code(), "quorum_not_met");
    let mut t = p.clone();
    t.header.state_root.0[0] ^= 1;
    assert_eq!(status::verify(&t, &dev.genesis).unwrap_err().code(), "bad_commit");
    let mut t = p.clone();
    let dup = t.commit.signatures[0].clone();
    t.commit.signatures[2] = dup;
    assert_eq!(status::verify(&t, &dev.genesis).unwrap_err().code(), "duplicate_signer");
    let other = Devnet::new("sabt-other", 1_000, &[[1; 32], [2; 32], [3; 32], [4; 32]], [9; 32]);
    assert_eq!(status::verify(&p, &other.genesis).unwrap_err().code(), "wrong_genesis");
    // A status proof for one record does not speak for another.
    let v = status::verify(&p, &dev.genesis).unwrap();
    let other_doc = RecordId { sha256: record(2).fingerprint.sha256, ..single_id };
    assert_eq!(status::check_applies(&v, &other_doc).unwrap_err().code(), "other_record");
    // Nor for one taken before the record's entry was committed.
    let v = StatusVerified { log_size: 1, ..status::verify(&p, &dev.genesis).unwrap() };
    assert_eq!(status::check_applies(&v, &single_id).unwrap_err().code(), "status_predates_record");
}

/// The regression of a reported defect: agency 2 anchored a copy of agency 1's document in a batch
/// of its own, then withdrew "the record" by its batch proof, and agency 1's record read as
/// withdrawn. A record is the entry that anchored it: agency 2 reaches only its own record.
#[test]
fn another_agency_reaches_only_the_record_it_anchored_itself() {
    let (dev, registry, admin) = setup();
    let other_admin = dev.admin_key(2);
    let mut l = MemoryLedger::default();
    let tip = Tip::genesis(&dev.genesis);
    // Agency 1 anchors p1 singly (entry 0); agency 2 anchors a batch holding a copy of it (entry 1).
    let copy_batch = [record(1), record(2)];
    let mut tree = MemoryTree::<Blake3>::new();
    for r in &copy_batch {
        tree.push(&codec::encode(r));
    }
    let anchor_batch = TxBody::AnchorBatch(BatchAnchor { root: tree.root(), size: 2, kind: RecordKind::CivilStatus });
    let tip = block(
        &registry,
        &mut l,
        &tip,
        2_000,
        vec![tx(&admin, 0, TxBody::Anchor(record(1))), tx(&other_admin, 0, anchor_batch)],
    )
    .unwrap();
    let agency1 = RecordId { sha256: record(1).fingerprint.sha256, entry: 0, leaf: 0 };
    let agency2 = RecordId { sha256: record(1).fingerprint.sha256, entry: 1, leaf: 0 };
    let theirs = RecordRef {
        entry: 1,
        record: record(1),
        batch: Some(BatchProof { index: 0, size: 2, path: tree.inclusion_proof(0, 2).unwrap() }),
    };
    let ours = RecordRef { entry: 0, record: record(1), batch: None };
    let withdraw = |target: &RecordRef| TxBody::Withdraw { target: target.clone(), reason: "copy".into() };
    // Naming agency 1's anchoring is refused with a stable code.
    assert_eq!(
        code(block(&registry, &mut l.clone(), &tip, 3_000, vec![tx(&other_admin, 1, withdraw(&ours))])),
        "wrong_agency"
    );
    // Withdrawing its own copy reaches only its own record.
    let tip = block(&registry, &mut l, &tip, 3_000, vec![tx(&other_admin, 1, withdraw(&theirs))]).unwrap();
    assert_eq!(registry.record_status(&l, &agency2).unwrap().map(|s| s.state), Some(RecordState::Withdrawn));
    assert_eq!(registry.record_status(&l, &agency1).unwrap(), None);
    let p = status_proof(&dev, &registry, &l, &tip, agency1);
    let v = status::verify(&p, &dev.genesis).unwrap();
    assert_eq!(v.status, None, "agency 1's record is current");
    status::check_applies(&v, &agency1).unwrap();
    // Agency 1 still controls its own record.
    assert_eq!(code(block(&registry, &mut l.clone(), &tip, 4_000, vec![tx(&admin, 1, withdraw(&ours))])), "ok");
    // A second single anchoring of the same document is refused, naming the first and its agency.
    let err = block(&registry, &mut l.clone(), &tip, 4_000, vec![tx(&other_admin, 2, TxBody::Anchor(record(1)))])
        .unwrap_err();
    match err {
        BlockError::Tx { error, .. } => match *error {
            TxError::AlreadyAnchored { index, ref agency, .. } => {
                assert_eq!((index, agency.as_str()), (0, dev.genesis.agencies[1].name.as_str()))
            }
            other => panic!("{other}"),
        },
        other => panic!("{other}"),
    }
}

#[test]
fn a_signature_cache_skips_only_the_signatures_it_vouches_for() {
    let (dev, registry, admin) = setup();
    let tip = Tip::genesis(&dev.genesis);
    let good = tx(&admin, 0, TxBody::Anchor(record(1)));
    let mut forged = good.clone();
    forged.signature.0[10] ^= 1;
    let mut cache = std::collections::BTreeSet::new();
    cache.insert(good.id());
    // The cache vouches for the good transaction's bytes, signature included: the forgery has
    // another id, so its signature is still checked and refused.
    assert_ne!(forged.id(), good.id());
    let err = registry.execute(&mut MemoryLedger::default(), &tip, (1, 2_000), std::slice::from_ref(&forged), &cache);
    match err {
        Err(BlockError::Tx { error, .. }) => assert_eq!(error.code(), "bad_signature"),
        other => panic!("a forged signature was not refused: {other:?}"),
    }
    // With the cache, the good transaction executes to exactly what full verification gives.
    let with =
        registry.execute(&mut MemoryLedger::default(), &tip, (1, 2_000), std::slice::from_ref(&good), &cache).unwrap();
    let without = registry
        .execute(&mut MemoryLedger::default(), &tip, (1, 2_000), std::slice::from_ref(&good), &NoCache)
        .unwrap();
    assert_eq!(with, without);
    // Everything but the signature is still checked for a cached id: a replayed nonce is refused.
    let again = tx(&admin, 0, TxBody::Anchor(record(2)));
    cache.insert(again.id());
    let mut ledger = MemoryLedger::default();
    registry.execute(&mut ledger, &tip, (1, 2_000), &[good], &cache).unwrap();
    let err = registry.execute(&mut ledger, &tip, (2, 3_000), &[again], &cache).unwrap_err();
    match err {
        BlockError::Tx { error, .. } => assert_eq!(error.code(), "nonce_used"),
        other => panic!("{other}"),
    }
    // A proposer's build with the cache agrees with one without it.
    let candidates = vec![tx(&admin, 0, TxBody::Anchor(record(3))), tx(&admin, 1, TxBody::Anchor(record(4)))];
    let cache: std::collections::BTreeSet<Hash32> = candidates.iter().map(SignedTx::id).collect();
    let proposer = SecretKey::from_seed(&[1; 32]).public();
    let a =
        registry.build_block(&mut MemoryLedger::default(), &tip, 2_000, proposer, candidates.clone(), &cache).unwrap();
    let b = registry.build_block(&mut MemoryLedger::default(), &tip, 2_000, proposer, candidates, &NoCache).unwrap();
    assert_eq!(a.block, b.block);
}

#[test]
fn a_build_limit_below_the_genesis_caps_built_blocks_and_accepts_larger_ones() {
    let (dev, registry, admin) = setup();
    let proposer = SecretKey::from_seed(&[1; 32]).public();
    let tip = Tip::genesis(&dev.genesis);
    let txs: Vec<SignedTx> = (0..40u8).map(|n| tx(&admin, u64::from(n), TxBody::Anchor(record(n)))).collect();
    let build =
        |r: &Registry| r.build_block(&mut MemoryLedger::default(), &tip, 2_000, proposer, txs.clone(), &NoCache);
    let full = build(&registry).unwrap().block;
    assert_eq!(full.txs.len(), 40);
    let full_len = codec::encode(&full).len();
    // Half of it: the limited registry builds a smaller block, within its limit.
    let limited = registry.clone().with_build_limit(full_len / 2);
    assert_eq!(limited.build_max_bytes(), full_len / 2);
    let small = build(&limited).unwrap().block;
    assert!(small.txs.len() < 40 && !small.txs.is_empty(), "{} transactions", small.txs.len());
    assert!(codec::encode(&small).len() <= full_len / 2);
    // It still accepts the larger block the genesis allows: the limit is the builder's alone.
    limited.execute_block(&mut MemoryLedger::default(), &tip, &full, &NoCache).unwrap();
    // A limit above the genesis's is the genesis's.
    assert_eq!(registry.clone().with_build_limit(usize::MAX).build_max_bytes(), registry.max_block_bytes());
}

//! The mempool: bounded, deduplicating, checked at admission.
//!
//! A transaction is admitted only if the registry rules accept it against the committed state and
//! the transactions already waiting: its signature verifies, its signer may write, and its nonce is
//! exactly the signer's next after those already pending. When the pool holds `capacity`
//! transactions or `max_bytes` bytes, new ones are refused with [`AdmitError::Full`] (HTTP 429), never
//! queued without bound. Proposers take transactions in arrival order, which keeps each signer's
//! nonces in order.

use sabt_core::codec;
use sabt_core::hash::Hash32;
use sabt_core::merkle::StoreError;
use sabt_core::registry::{At, CheckError, Ledger, NoCache, Registry, TxError};
use sabt_core::sign::PublicKey;
use sabt_core::tx::SignedTx;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use thiserror::Error;

/// Why a transaction was not admitted.
#[derive(Debug, Error)]
pub enum AdmitError {
    /// Refused by the registry rules.
    #[error(transparent)]
    Rejected(#[from] TxError),
    /// This node's storage failed while checking: nothing is known about the transaction.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// Already waiting.
    #[error("transaction {0} is already in the mempool")]
    Duplicate(Hash32),
    /// Already committed.
    #[error("transaction {0} is already committed at height {1}")]
    Committed(Hash32, u64),
    /// No room.
    #[error("the mempool is full ({count} transactions, {bytes} bytes); retry later")]
    Full {
        /// Transactions waiting.
        count: usize,
        /// Bytes waiting.
        bytes: usize,
    },
}

impl From<CheckError> for AdmitError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Refused(e) => AdmitError::Rejected(e),
            CheckError::Store(e) => AdmitError::Store(e),
        }
    }
}

/// Most transactions held for a nonce gap, per signer.
pub const HELD_PER_SIGNER: usize = 64;

/// The pool.
#[derive(Debug)]
pub struct Mempool {
    capacity: usize,
    max_bytes: usize,
    bytes: usize,
    queue: VecDeque<(Hash32, SignedTx, usize)>,
    ids: BTreeSet<Hash32>,
    /// Per signer: the nonce after its last pending transaction.
    next_nonce: BTreeMap<PublicKey, u64>,
    /// Forwarded transactions whose nonce is ahead of their signer's next, by signer and nonce,
    /// held until the gap closes ([`Mempool::admit_forwarded`]); they count in the pool's
    /// capacity and bytes.
    held: BTreeMap<PublicKey, BTreeMap<u64, (Hash32, SignedTx, usize)>>,
    held_count: usize,
}

impl Mempool {
    /// An empty pool holding at most `capacity` transactions and `max_bytes` bytes.
    pub fn new(capacity: usize, max_bytes: usize) -> Mempool {
        Mempool {
            capacity,
            max_bytes,
            bytes: 0,
            queue: VecDeque::new(),
            ids: BTreeSet::new(),
            next_nonce: BTreeMap::new(),
            held: BTreeMap::new(),
            held_count: 0,
        }
    }

    /// Number of waiting transactions (proposable, and held for a nonce gap).
    pub fn len(&self) -> usize {
        self.queue.len() + self.held_count
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The signer's next nonce after its waiting transactions, if it has any.
    pub fn pending_next_nonce(&self, signer: &PublicKey) -> Option<u64> {
        self.next_nonce.get(signer).copied()
    }

    /// Whether `id` waits here.
    pub fn contains(&self, id: &Hash32) -> bool {
        self.ids.contains(id)
    }

    /// Admits `stx` after checking it against `registry` and the committed state in `ledger`, as of
    /// the next block `next_block` (its height, an estimate of its consensus time, the log size).
    pub fn admit<L: Ledger + ?Sized>(
        &mut self,
        registry: &Registry,
        ledger: &L,
        next_block: At,
        stx: SignedTx,
    ) -> Result<Hash32, AdmitError> {
        registry.check_stateless(&stx, &NoCache)?;
        self.admit_checked(registry, ledger, next_block, stx)
    }

    /// [`Mempool::admit`] for a transaction that already passed `registry.check_stateless` (its
    /// signature and shape), which the caller checks before locking the pool so that admissions
    /// verify signatures in parallel.
    pub fn admit_checked<L: Ledger + ?Sized>(
        &mut self,
        registry: &Registry,
        ledger: &L,
        next_block: At,
        stx: SignedTx,
    ) -> Result<Hash32, AdmitError> {
        self.admit_as(registry, ledger, next_block, stx, false)
    }

    /// [`Mempool::admit_checked`] for a transaction another validator forwarded: one whose nonce
    /// is ahead of its signer's next is held, not refused, until the transactions before it
    /// arrive or commit. A peer that missed one of a signer's transactions (refused while its
    /// pool was full, say) otherwise refused every later one as a nonce gap for as long as the
    /// signer kept sending, and the signer's transactions waited for the turn of the node that
    /// admitted them: four heights with four validators, measured as the half-load latency tail
    /// (docs/BENCHMARKS.md). A client still hears of its own gaps. At most
    /// [`HELD_PER_SIGNER`] are held per signer.
    pub fn admit_forwarded<L: Ledger + ?Sized>(
        &mut self,
        registry: &Registry,
        ledger: &L,
        next_block: At,
        stx: SignedTx,
    ) -> Result<Hash32, AdmitError> {
        self.admit_as(registry, ledger, next_block, stx, true)
    }

    /// Admission; with `hold_gaps`, a transaction whose nonce is ahead is held rather than refused.
    fn admit_as<L: Ledger + ?Sized>(
        &mut self,
        registry: &Registry,
        ledger: &L,
        next_block: At,
        stx: SignedTx,
        hold_gaps: bool,
    ) -> Result<Hash32, AdmitError> {
        let id = stx.id();
        if self.ids.contains(&id) {
            return Err(AdmitError::Duplicate(id));
        }
        let size = codec::encode(&stx).len();
        self.check_room(size)?;
        let (signer, nonce) = (stx.tx.signer, stx.tx.nonce);
        // After the signer's pending transactions if it has any, else after its committed nonce.
        let follows = match self.next_nonce.get(&signer) {
            Some(&next) if nonce < next => {
                Err(TxError::NonceUsed { signer: signer.to_hex(), expected: next, got: nonce })
            }
            Some(&next) if nonce > next => {
                Err(TxError::NonceGap { signer: signer.to_hex(), expected: next, got: nonce })
            }
            Some(_) => Ok(()),
            None => match registry.check_nonce(ledger, &stx) {
                Ok(()) => Ok(()),
                Err(CheckError::Refused(e)) => Err(e),
                Err(CheckError::Store(e)) => return Err(AdmitError::Store(e)),
            },
        };
        let held_now = self.held.get(&signer).map_or(0, BTreeMap::len);
        match follows {
            Ok(()) => {}
            Err(TxError::NonceGap { .. }) if hold_gaps && held_now < HELD_PER_SIGNER => {
                registry.plan(ledger, &stx, next_block)?;
                if let Some((old, _, old_size)) = self.held.entry(signer).or_default().insert(nonce, (id, stx, size)) {
                    // Another transaction with the same nonce: the later one replaces it.
                    self.ids.remove(&old);
                    self.bytes -= old_size;
                    self.held_count -= 1;
                }
                self.ids.insert(id);
                self.bytes += size;
                self.held_count += 1;
                return Ok(id);
            }
            Err(e) => return Err(e.into()),
        }
        registry.plan(ledger, &stx, next_block)?;
        self.next_nonce.insert(signer, nonce + 1);
        self.ids.insert(id);
        self.bytes += size;
        self.queue.push_back((id, stx, size));
        self.promote(&signer, nonce + 1);
        Ok(id)
    }

    /// Moves `signer`'s held transactions from nonce `next` on, while consecutive, to the queue,
    /// and drops those below `next`, which can never be proposed.
    fn promote(&mut self, signer: &PublicKey, mut next: u64) {
        let Some(held) = self.held.get_mut(signer) else { return };
        let stale: Vec<u64> = held.range(..next).map(|(n, _)| *n).collect();
        for n in stale {
            if let Some((id, _, size)) = held.remove(&n) {
                self.ids.remove(&id);
                self.bytes -= size;
                self.held_count = self.held_count.saturating_sub(1);
            }
        }
        let mut moved = false;
        while let Some((id, stx, size)) = held.remove(&next) {
            self.held_count = self.held_count.saturating_sub(1);
            self.queue.push_back((id, stx, size));
            next += 1;
            moved = true;
        }
        if held.is_empty() {
            self.held.remove(signer);
        }
        if moved {
            self.next_nonce.insert(*signer, next);
        }
    }

    /// Whether a transaction of `size` encoded bytes would find room. The node asks before it
    /// verifies a submission's signature: a full pool then refuses at the cost of a lookup, not
    /// of a verification, which is what an overloaded node most needs to spare.
    pub fn check_room(&self, size: usize) -> Result<(), AdmitError> {
        if self.len() >= self.capacity || self.bytes + size > self.max_bytes {
            return Err(AdmitError::Full { count: self.len(), bytes: self.bytes });
        }
        Ok(())
    }

    /// Up to `max` waiting transactions, oldest first, for a proposal.
    pub fn candidates(&self, max: usize) -> Vec<SignedTx> {
        self.queue.iter().take(max).map(|(_, t, _)| t.clone()).collect()
    }

    /// Drops `ids` (a committed block's transactions, or those a build refused against the
    /// committed state), then every transaction whose nonce does not follow its signer's committed
    /// next nonce and the signer's transactions kept before it (one used by a transaction that
    /// reached another node first, the later ones of a refused transaction's signer). The rest of
    /// a transaction's checks against the new state (a fingerprint anchored meanwhile, a key
    /// revoked) are left to the next proposal's build, which checks every transaction it takes
    /// anyway and whose refusals come back here. Re-checking every waiting transaction's state at
    /// each commit read the store several times per transaction, on the consensus path, under the
    /// pool's lock: hundreds of milliseconds per block with a full pool.
    pub fn remove<L: Ledger + ?Sized>(&mut self, registry: &Registry, ledger: &L, ids: &[Hash32]) {
        let ids: BTreeSet<&Hash32> = ids.iter().collect();
        let old = std::mem::take(&mut self.queue);
        self.ids.clear();
        self.next_nonce.clear();
        self.bytes = 0;
        for (id, stx, size) in old {
            if ids.contains(&id) {
                continue;
            }
            let ok = match self.next_nonce.get(&stx.tx.signer) {
                Some(&next) => stx.tx.nonce == next,
                None => registry.check_nonce(ledger, &stx).is_ok(),
            };
            if ok {
                self.next_nonce.insert(stx.tx.signer, stx.tx.nonce + 1);
                self.ids.insert(id);
                self.bytes += size;
                self.queue.push_back((id, stx, size));
            }
        }
        // Held transactions: dropped if a block took them (another node had the ones before),
        // moved to the queue if they now follow their signer's pending or committed nonce.
        let signers: Vec<PublicKey> = self.held.keys().copied().collect();
        for signer in signers {
            let Some(mut held) = self.held.remove(&signer) else { continue };
            held.retain(|_, (id, _, _)| !ids.contains(id));
            for (id, _, size) in held.values() {
                self.ids.insert(*id);
                self.bytes += size;
            }
            self.held.insert(signer, held);
            let next = match self.next_nonce.get(&signer) {
                Some(&n) => Some(n),
                None => registry.next_nonce(ledger, &signer).ok(),
            };
            if let Some(next) = next {
                self.promote(&signer, next);
            }
        }
        self.held_count = self.held.values().map(BTreeMap::len).sum();
    }
}

/// Ids of transactions whose signatures this node has verified (at admission, or while
/// executing a proposed block), so that a signature is checked once per node rather than again at
/// proposal and at execution (the [`sabt_core::registry::SignatureCache`] every entry point takes). Bounded: past `capacity` the oldest ids are
/// forgotten, which only means their signatures are verified again.
#[derive(Debug)]
pub struct VerifiedIds {
    capacity: usize,
    ids: std::collections::HashSet<Hash32>,
    order: VecDeque<Hash32>,
}

impl VerifiedIds {
    /// An empty set holding at most `capacity` ids.
    pub fn new(capacity: usize) -> VerifiedIds {
        VerifiedIds { capacity, ids: std::collections::HashSet::new(), order: VecDeque::new() }
    }

    /// Records that the signature of transaction `id` verified.
    pub fn insert(&mut self, id: Hash32) {
        if self.capacity == 0 || !self.ids.insert(id) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// Those of `ids` whose signatures verified: the cache one block's execution uses.
    pub fn among<'a>(&self, ids: impl IntoIterator<Item = &'a Hash32>) -> std::collections::BTreeSet<Hash32> {
        ids.into_iter().filter(|id| self.ids.contains(id)).copied().collect()
    }

    /// Number of ids held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sabt_core::devnet::Devnet;
    use sabt_core::entry::{BatchAnchor, RecordKind};
    use sabt_core::registry::At;
    use sabt_core::registry::{MemoryLedger, Tip};
    use sabt_core::sign::SecretKey;
    use sabt_core::tx::{Transaction, TxBody};

    #[test]
    fn admission_dedup_nonces_capacity() {
        let dev = Devnet::new("sabt-test", 1, &[[1; 32], [2; 32], [3; 32], [4; 32]], [9; 32]);
        let registry = Registry::new(&dev.genesis).unwrap();
        let admin = dev.admin_key(0);
        let mut ledger = MemoryLedger::default();
        let tx = |nonce: u64, root: u8| {
            Transaction {
                chain_id: "sabt-test".into(),
                signer: admin.public(),
                nonce,
                body: TxBody::AnchorBatch(BatchAnchor { root: Hash32([root; 32]), size: 1, kind: RecordKind::Other }),
            }
            .sign(&admin)
        };
        let mut pool = Mempool::new(3, 1 << 20);
        pool.admit(&registry, &ledger, At { height: 1, time_ms: 2, index: 0 }, tx(0, 1)).unwrap();
        assert!(matches!(
            pool.admit(&registry, &ledger, At { height: 1, time_ms: 2, index: 0 }, tx(0, 1)),
            Err(AdmitError::Duplicate(_))
        ));
        assert!(matches!(
            pool.admit(&registry, &ledger, At { height: 1, time_ms: 2, index: 0 }, tx(2, 2)),
            Err(AdmitError::Rejected(TxError::NonceGap { .. }))
        ));
        // A transaction by a key the genesis does not know, or with a broken signature, is refused.
        let stranger = SecretKey::from_seed(&[42; 32]);
        let forged = Transaction {
            chain_id: "sabt-test".into(),
            signer: stranger.public(),
            nonce: 0,
            body: TxBody::AnchorBatch(BatchAnchor { root: Hash32([5; 32]), size: 1, kind: RecordKind::Other }),
        }
        .sign(&stranger);
        assert!(matches!(
            pool.admit(&registry, &ledger, At { height: 1, time_ms: 2, index: 0 }, forged),
            Err(AdmitError::Rejected(TxError::Unauthorised(_)))
        ));
        let mut forged = tx(1, 5);
        forged.tx.nonce = 7;
        assert!(matches!(
            pool.admit(&registry, &ledger, At { height: 1, time_ms: 2, index: 0 }, forged),
            Err(AdmitError::Rejected(TxError::BadSignature(_)))
        ));
        pool.admit(&registry, &ledger, At { height: 1, time_ms: 2, index: 0 }, tx(1, 2)).unwrap();
        pool.admit(&registry, &ledger, At { height: 1, time_ms: 2, index: 0 }, tx(2, 3)).unwrap();
        assert!(matches!(
            pool.admit(&registry, &ledger, At { height: 1, time_ms: 2, index: 0 }, tx(3, 4)),
            Err(AdmitError::Full { .. })
        ));
        // Full by count: no room for anything, whatever its size; with room, by bytes.
        assert!(matches!(pool.check_room(1), Err(AdmitError::Full { count: 3, .. })));
        let roomy = Mempool::new(10, 1_000);
        roomy.check_room(1_000).unwrap();
        assert!(matches!(roomy.check_room(1_001), Err(AdmitError::Full { count: 0, bytes: 0 })));
        // Commit the first one: it leaves, the others stay in order.
        let tip = Tip::genesis(&dev.genesis);
        let first = pool.candidates(1);
        let done = registry.execute(&mut ledger, &tip, (1, 2), &first, &NoCache).unwrap();
        pool.remove(&registry, &ledger, &[first[0].id()]);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.candidates(10)[0].tx.nonce, 1);
        // A build refused the next one: it leaves, and the later one, whose nonce now has a gap.
        let next = pool.candidates(1);
        pool.remove(&registry, &ledger, &[next[0].id()]);
        assert!(pool.is_empty(), "{:?}", pool.candidates(10));
        // A committed nonce that another node's transaction used drops the waiting one.
        pool.admit(&registry, &ledger, At { height: 2, time_ms: 3, index: 0 }, tx(1, 6)).unwrap();
        let tip = Tip {
            height: 1,
            time_ms: 2,
            log_size: done.log_size,
            log_root: done.log_root,
            state_root: done.state_root,
            ..tip
        };
        registry.execute(&mut ledger, &tip, (2, 3), &[tx(1, 7)], &NoCache).unwrap();
        pool.remove(&registry, &ledger, &[]);
        assert!(pool.is_empty());
    }

    #[test]
    fn forwarded_transactions_ahead_of_their_signers_nonce_are_held_until_the_gap_closes() {
        let dev = Devnet::new("sabt-test", 1, &[[1; 32], [2; 32], [3; 32], [4; 32]], [9; 32]);
        let registry = Registry::new(&dev.genesis).unwrap();
        let admin = dev.admin_key(0);
        let mut ledger = MemoryLedger::default();
        let tx = |nonce: u64| {
            Transaction {
                chain_id: "sabt-test".into(),
                signer: admin.public(),
                nonce,
                body: TxBody::AnchorBatch(BatchAnchor {
                    root: Hash32([nonce as u8 + 1; 32]),
                    size: 1,
                    kind: RecordKind::Other,
                }),
            }
            .sign(&admin)
        };
        let at = At { height: 1, time_ms: 2, index: 0 };
        let mut pool = Mempool::new(100, 1 << 20);
        // A client still hears of its gap; a forwarded transaction with one is held, not proposed.
        assert!(matches!(
            pool.admit(&registry, &ledger, at, tx(2)),
            Err(AdmitError::Rejected(TxError::NonceGap { .. }))
        ));
        pool.admit_forwarded(&registry, &ledger, at, tx(2)).unwrap();
        pool.admit_forwarded(&registry, &ledger, at, tx(3)).unwrap();
        assert_eq!(pool.len(), 2);
        assert!(pool.candidates(10).is_empty());
        assert!(matches!(pool.admit_forwarded(&registry, &ledger, at, tx(3)), Err(AdmitError::Duplicate(_))));
        // The missing transaction arrives: it and the held ones after it become proposable, in order.
        pool.admit_forwarded(&registry, &ledger, at, tx(0)).unwrap();
        let nonces = |p: &Mempool| p.candidates(10).iter().map(|t| t.tx.nonce).collect::<Vec<_>>();
        assert_eq!(nonces(&pool), [0]);
        pool.admit_forwarded(&registry, &ledger, at, tx(1)).unwrap();
        assert_eq!(nonces(&pool), [0, 1, 2, 3]);
        assert_eq!(pool.pending_next_nonce(&admin.public()), Some(4));
        // The missing one is committed elsewhere and never arrives: the commit closes the gap.
        let mut pool = Mempool::new(100, 1 << 20);
        pool.admit_forwarded(&registry, &ledger, at, tx(1)).unwrap();
        pool.admit_forwarded(&registry, &ledger, at, tx(2)).unwrap();
        pool.admit_forwarded(&registry, &ledger, at, tx(5)).unwrap();
        let tip = Tip::genesis(&dev.genesis);
        registry.execute(&mut ledger, &tip, (1, 2), &[tx(0)], &NoCache).unwrap();
        pool.remove(&registry, &ledger, &[]);
        assert_eq!(nonces(&pool), [1, 2]);
        assert_eq!(pool.len(), 3, "nonce 5 is still held");
        // Held ones a block took, or whose nonce a commit used, leave.
        pool.remove(&registry, &ledger, &[tx(5).id()]);
        assert_eq!(pool.len(), 2);
        // At most HELD_PER_SIGNER are held per signer, and they count against the capacity.
        let mut pool = Mempool::new(HELD_PER_SIGNER + 1, 1 << 20);
        for n in 0..HELD_PER_SIGNER as u64 {
            pool.admit_forwarded(&registry, &ledger, at, tx(10 + n)).unwrap();
        }
        assert!(matches!(
            pool.admit_forwarded(&registry, &ledger, at, tx(9)),
            Err(AdmitError::Rejected(TxError::NonceGap { .. }))
        ));
        assert!(pool.check_room(1).is_ok());
        pool.admit_forwarded(&registry, &ledger, at, tx(1)).unwrap();
        assert!(matches!(pool.check_room(1), Err(AdmitError::Full { .. })));
    }

    #[test]
    fn verified_ids_are_bounded_oldest_first() {
        let mut v = VerifiedIds::new(2);
        let (a, b, c) = (Hash32([1; 32]), Hash32([2; 32]), Hash32([3; 32]));
        v.insert(a);
        v.insert(b);
        v.insert(a);
        assert_eq!(v.len(), 2);
        v.insert(c);
        assert_eq!(v.len(), 2);
        let got = v.among([&a, &b, &c]);
        assert!(!got.contains(&a) && got.contains(&b) && got.contains(&c));
        let mut none = VerifiedIds::new(0);
        none.insert(a);
        assert!(none.is_empty());
    }
}

//! Authority and nonces: who may sign what, and in which order.
//!
//! - An agency's admin key (named in the genesis) acts for its agency: it may anchor, change the
//!   status of its agency's records, and authorise or revoke its agency's clerk keys. It cannot
//!   authorise an admin key, a key of another agency, or a revoked key.
//! - A clerk key acts only while authorised: not revoked in an earlier block, before its expiry,
//!   and only for the record kinds its grant names (a land operation counts as kind
//!   `land_property`).
//! - Every signer's transactions carry consecutive nonces from 0: a used nonce and a gap are both
//!   refused, so nothing replays and nothing is reordered.

use super::schema::{self, GrantOf, NonceOf};
use super::{CheckError, Draft, Ledger, Registry, TxError};
use crate::entry::RecordKind;
use crate::merkle::StoreError;
use crate::sign::PublicKey;
use crate::tx::{SignedTx, TxBody};
use serde::{Deserialize, Serialize};

/// A clerk key's authorisation, as the state holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantState {
    /// The agency whose admin authorised it.
    pub agency: String,
    /// Record kinds it may anchor.
    pub kinds: Vec<RecordKind>,
    /// Consensus time from which it no longer acts.
    pub expires_ms: Option<u64>,
    /// Height of the block that authorised it (or last changed the grant).
    pub granted_height: u64,
    /// Height of the block that revoked it; it acts in no later block.
    pub revoked_height: Option<u64>,
}

/// An agency's name, or a placeholder for a key that acts for none.
pub(super) fn agency_or_unknown(agency: Option<String>) -> String {
    agency.unwrap_or_else(|| "(none)".to_string())
}

/// The record kinds a transaction acts on: what a clerk's grant must allow.
fn kinds_of(body: &TxBody) -> Vec<RecordKind> {
    match body {
        TxBody::Anchor(r) => vec![r.kind],
        TxBody::AnchorBatch(b) => vec![b.kind],
        TxBody::Withdraw { target, .. } => vec![target.record.kind],
        TxBody::Supersede { target, record, .. } => vec![target.record.kind, record.kind],
        TxBody::Land(_) => vec![RecordKind::LandProperty],
        TxBody::AuthorizeKey { .. } | TxBody::RevokeKey { .. } => Vec::new(),
    }
}

impl Registry {
    /// The agency a key acts for: the agency it administers, or the agency that authorised it.
    pub fn agency_of<L: Ledger + ?Sized>(&self, ledger: &L, key: &PublicKey) -> Result<Option<String>, StoreError> {
        if let Some(a) = self.admins.get(key) {
            return Ok(Some(a.clone()));
        }
        Ok(self.grant(ledger, key)?.map(|g| g.agency))
    }

    /// The signer's next nonce in `ledger`.
    pub fn next_nonce<L: Ledger + ?Sized>(&self, ledger: &L, signer: &PublicKey) -> Result<u64, StoreError> {
        Ok(schema::get::<NonceOf, L>(ledger, signer)?.unwrap_or(0))
    }

    /// The grant of a clerk key, if any.
    pub fn grant<L: Ledger + ?Sized>(&self, ledger: &L, key: &PublicKey) -> Result<Option<GrantState>, StoreError> {
        schema::get::<GrantOf, L>(ledger, key)
    }

    /// Checks that the nonce is the signer's next.
    pub fn check_nonce<L: Ledger + ?Sized>(&self, ledger: &L, stx: &SignedTx) -> Result<(), CheckError> {
        let expected = self.next_nonce(ledger, &stx.tx.signer)?;
        let got = stx.tx.nonce;
        let signer = || stx.tx.signer.to_hex();
        if got < expected {
            return Err(TxError::NonceUsed { signer: signer(), expected, got }.into());
        }
        if got > expected {
            return Err(TxError::NonceGap { signer: signer(), expected, got }.into());
        }
        Ok(())
    }

    /// Checks that the signer may sign this transaction in a block at `height` and consensus time
    /// `time_ms`; returns the agency it acts for.
    pub(super) fn check_signer<L: Ledger + ?Sized>(
        &self,
        ledger: &L,
        stx: &SignedTx,
        height: u64,
        time_ms: u64,
    ) -> Result<String, CheckError> {
        let signer = &stx.tx.signer;
        if let Some(agency) = self.admins.get(signer) {
            return Ok(agency.clone());
        }
        let kinds = kinds_of(&stx.tx.body);
        if kinds.is_empty() {
            // Key management is for admin keys only.
            return Err(TxError::Unauthorised(signer.to_hex()).into());
        }
        let g = self.grant(ledger, signer)?.ok_or_else(|| TxError::Unauthorised(signer.to_hex()))?;
        if let Some(at) = g.revoked_height.filter(|at| *at < height) {
            return Err(TxError::Revoked { signer: signer.to_hex(), height: at }.into());
        }
        if let Some(exp) = g.expires_ms.filter(|exp| time_ms >= *exp) {
            return Err(TxError::Expired { signer: signer.to_hex(), expires_ms: exp }.into());
        }
        if let Some(kind) = kinds.iter().find(|k| !g.kinds.contains(k)) {
            return Err(TxError::KindNotAllowed { signer: signer.to_hex(), kind: kind.as_str() }.into());
        }
        Ok(g.agency)
    }

    /// Checks and plans an admin's authorisation of a clerk key.
    pub(super) fn plan_grant<L: Ledger + ?Sized>(
        &self,
        d: &mut Draft<'_, L>,
        agency: &str,
        key: &PublicKey,
        grant: GrantState,
    ) -> Result<(), CheckError> {
        if self.admins.contains_key(key) {
            return Err(TxError::BadGrant("an agency admin key cannot be authorised as a clerk key".into()).into());
        }
        if let Some(g) = d.get::<GrantOf>(key)? {
            if g.agency != agency {
                return Err(TxError::BadGrant(format!("key {key} belongs to agency {}", g.agency)).into());
            }
            if g.revoked_height.is_some() {
                return Err(TxError::BadGrant(format!(
                    "key {key} was revoked and cannot act again; the clerk needs a new key"
                ))
                .into());
            }
        }
        d.set::<GrantOf>(key, &grant)?;
        Ok(())
    }

    /// Checks and plans an admin's revocation of a clerk key at `height`.
    pub(super) fn plan_revoke<L: Ledger + ?Sized>(
        &self,
        d: &mut Draft<'_, L>,
        agency: &str,
        key: &PublicKey,
        height: u64,
    ) -> Result<(), CheckError> {
        let mut g = match d.get::<GrantOf>(key)? {
            Some(g) if g.agency != agency => {
                return Err(TxError::BadGrant(format!("key {key} belongs to agency {}", g.agency)).into());
            }
            Some(g) if g.revoked_height.is_some() => {
                return Err(TxError::BadGrant(format!("key {key} is already revoked")).into());
            }
            Some(g) => g,
            None => return Err(TxError::BadGrant(format!("key {key} was never authorised")).into()),
        };
        g.revoked_height = Some(height);
        d.set::<GrantOf>(key, &g)?;
        Ok(())
    }

    /// Whether `key` is an agency's admin key.
    pub fn is_admin(&self, key: &PublicKey) -> bool {
        self.admins.contains_key(key)
    }
}

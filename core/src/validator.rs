//! Validator sets: who may sign checkpoints and commits, with what voting power, and the quorum rule.
//!
//! **Quorum rule**: signatures from distinct validators of the set count when their voting power
//! sums to *more than two thirds* of the set's total: `3 · signed > 2 · total` (computed in `u128`,
//! so it cannot overflow). A set's powers sum to at most [`MAX_TOTAL_POWER`]. A validator counts once however many times it signs; signatures by keys
//! outside the set count for nothing.

use crate::codec;
use crate::hash::{self, Hash32};
use crate::sign::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// The most validators a set may hold.
pub const MAX_VALIDATORS: usize = 256;
/// The longest validator (and note key) name.
pub const MAX_NAME_LEN: usize = 128;
/// The most voting power a set may hold in total: 2^53, so that every sum and every
/// `3 · power` a consensus engine computes in `u64` fits, and JSON readers that hold numbers as
/// doubles read every power exactly.
pub const MAX_TOTAL_POWER: u64 = 1 << 53;

/// One validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    /// The validator's name: its agency's name, also its C2SP note key name.
    pub name: String,
    /// Its consensus (and checkpoint-signing) key.
    pub key: PublicKey,
    /// Its voting power, at least 1.
    pub power: u64,
}

/// Why a validator set is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidatorSetError {
    /// No validators at all.
    #[error("a validator set needs at least one validator")]
    Empty,
    /// Too many validators.
    #[error("{0} validators exceed the limit of {MAX_VALIDATORS}")]
    TooMany(usize),
    /// A name that cannot be a note key name.
    #[error("validator name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two validators share a name.
    #[error("validator name {0:?} appears twice")]
    DuplicateName(String),
    /// Two validators share a key.
    #[error("validator key {0} appears twice")]
    DuplicateKey(String),
    /// A validator without voting power.
    #[error("validator {0:?} has zero voting power")]
    ZeroPower(String),
    /// The powers sum to more than [`MAX_TOTAL_POWER`].
    #[error("the validators' voting powers sum to more than {MAX_TOTAL_POWER}; use smaller powers in the same ratio")]
    TotalPowerTooLarge,
}

/// Checks a name for use as a validator name and C2SP note key name: 1 to 128 characters from
/// `A–Z a–z 0–9 . _ - / :` (so never a space or `+`).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("must be at most 128 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':')) {
        return Err("may contain only letters, digits and . _ - / :");
    }
    Ok(())
}

/// A validated validator set, in the order given (the order is part of its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    #[serde(skip)]
    total_power: u128,
}

impl<'de> Deserialize<'de> for ValidatorSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            validators: Vec<Validator>,
        }
        let raw = Raw::deserialize(d)?;
        ValidatorSet::new(raw.validators).map_err(serde::de::Error::custom)
    }
}

impl ValidatorSet {
    /// Validates and wraps `validators`.
    pub fn new(validators: Vec<Validator>) -> Result<Self, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if validators.len() > MAX_VALIDATORS {
            return Err(ValidatorSetError::TooMany(validators.len()));
        }
        let mut names = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut total: u128 = 0;
        for v in &validators {
            check_name(&v.name).map_err(|reason| ValidatorSetError::BadName { name: v.name.clone(), reason })?;
            if !names.insert(v.name.as_str()) {
                return Err(ValidatorSetError::DuplicateName(v.name.clone()));
            }
            if !keys.insert(v.key) {
                return Err(ValidatorSetError::DuplicateKey(v.key.to_hex()));
            }
            if v.power == 0 {
                return Err(ValidatorSetError::ZeroPower(v.name.clone()));
            }
            total += u128::from(v.power);
        }
        if total > u128::from(MAX_TOTAL_POWER) {
            return Err(ValidatorSetError::TotalPowerTooLarge);
        }
        Ok(ValidatorSet { validators, total_power: total })
    }

    /// The validators, in order.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// Sum of all voting power.
    pub fn total_power(&self) -> u128 {
        self.total_power
    }

    /// The validator named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Validator> {
        self.validators.iter().find(|v| v.name == name)
    }

    /// The validator holding `key`.
    pub fn by_key(&self, key: &PublicKey) -> Option<&Validator> {
        self.validators.iter().find(|v| v.key == *key)
    }

    /// Whether `signed` voting power is more than two thirds of the total.
    pub fn is_quorum(&self, signed: u128) -> bool {
        signed.saturating_mul(3) > self.total_power.saturating_mul(2)
    }

    /// The least voting power that is a quorum.
    pub fn quorum_power(&self) -> u128 {
        self.total_power * 2 / 3 + 1
    }

    /// The set's hash, as named in block headers: BLAKE3 in the `sabt/validator-set/v1` domain over
    /// the canonical encoding of the validator list.
    pub fn hash(&self) -> Hash32 {
        hash::hash(hash::VALIDATOR_SET, &codec::encode_body(&self.validators))
    }
}

/// A set of the given keys, named `v0`, `v1`, … with power 1 each (for tests).
#[cfg(test)]
pub(crate) fn test_set(keys: &[crate::sign::SecretKey]) -> ValidatorSet {
    ValidatorSet::new(
        keys.iter().enumerate().map(|(i, k)| Validator { name: format!("v{i}"), key: k.public(), power: 1 }).collect(),
    )
    .unwrap_or_else(|e| panic!("test validator set: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SecretKey;

    fn v(name: &str, seed: u8, power: u64) -> Validator {
        Validator { name: name.into(), key: SecretKey::from_seed(&[seed; 32]).public(), power }
    }

    #[test]
    fn quorum_is_strictly_more_than_two_thirds() {
        let set = ValidatorSet::new(vec![v("a", 1, 1), v("b", 2, 1), v("c", 3, 1), v("d", 4, 1)]).unwrap();
        assert!(!set.is_quorum(2));
        assert!(set.is_quorum(3));
        assert_eq!(set.quorum_power(), 3);
        let set = ValidatorSet::new(vec![v("a", 1, 1), v("b", 2, 1), v("c", 3, 1)]).unwrap();
        assert!(!set.is_quorum(2), "2 of 3 is exactly two thirds, not more");
        assert!(set.is_quorum(3));
        let half = MAX_TOTAL_POWER / 2;
        let set = ValidatorSet::new(vec![v("a", 1, half), v("b", 2, half)]).unwrap();
        assert!(!set.is_quorum(u128::from(half)));
        assert!(set.is_quorum(2 * u128::from(half)));
    }

    #[test]
    fn refuses_bad_sets() {
        assert_eq!(ValidatorSet::new(vec![]), Err(ValidatorSetError::Empty));
        assert!(matches!(
            ValidatorSet::new(vec![v("a", 1, 1), v("a", 2, 1)]),
            Err(ValidatorSetError::DuplicateName(_))
        ));
        assert!(matches!(ValidatorSet::new(vec![v("a", 1, 1), v("b", 1, 1)]), Err(ValidatorSetError::DuplicateKey(_))));
        assert!(matches!(ValidatorSet::new(vec![v("a", 1, 0)]), Err(ValidatorSetError::ZeroPower(_))));
        // Powers whose sum (or three times it) overflows a consensus engine's u64 arithmetic.
        assert_eq!(
            ValidatorSet::new(vec![v("a", 1, u64::MAX), v("b", 2, u64::MAX)]),
            Err(ValidatorSetError::TotalPowerTooLarge)
        );
        assert_eq!(
            ValidatorSet::new(vec![v("a", 1, MAX_TOTAL_POWER), v("b", 2, 1)]),
            Err(ValidatorSetError::TotalPowerTooLarge)
        );
        assert!(ValidatorSet::new(vec![v("a", 1, MAX_TOTAL_POWER - 1), v("b", 2, 1)]).is_ok());
        assert!(matches!(ValidatorSet::new(vec![v("a b", 1, 1)]), Err(ValidatorSetError::BadName { .. })));
        assert!(matches!(ValidatorSet::new(vec![v("a+b", 1, 1)]), Err(ValidatorSetError::BadName { .. })));
    }
}

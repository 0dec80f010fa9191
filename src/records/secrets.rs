//! Signing secret records: a sealed secret about to be stored, a stored one, and its state.

use std::fmt;
use std::str::FromStr;

use crate::clock::Timestamp;
use crate::ids::{MerchantId, SecretId};
use crate::keys::Mode;

/// Where a signing secret stands in its rotation (the `state` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretState {
    /// Signs every delivery.
    Active,
    /// Created by a rotation that is not completed yet: signs as well, in the pending header.
    Pending,
    /// The secret a completed rotation replaced, restorable until its `revert_until`.
    Previous,
}

impl SecretState {
    /// The name stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretState::Active => "active",
            SecretState::Pending => "pending",
            SecretState::Previous => "previous",
        }
    }
}

impl fmt::Display for SecretState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a column name, as a test reading rows does (`assert_eq!(row.state, "active")`).
impl PartialEq<&str> for SecretState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromStr for SecretState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "active" => Ok(SecretState::Active),
            "pending" => Ok(SecretState::Pending),
            "previous" => Ok(SecretState::Previous),
            other => Err(format!("unknown secret state {other}")),
        }
    }
}

/// A signing secret about to be stored, already sealed.
#[derive(Debug, Clone)]
pub struct NewSecret {
    pub id: SecretId,
    pub mode: Mode,
    pub fingerprint: String,
    pub key_id: String,
    pub ciphertext: Vec<u8>,
    pub created_at: Timestamp,
}

/// A stored signing secret (still sealed).
#[derive(Debug, Clone)]
pub struct SecretRecord {
    pub id: SecretId,
    pub merchant_id: MerchantId,
    pub mode: Mode,
    pub state: SecretState,
    pub fingerprint: String,
    pub key_id: String,
    pub ciphertext: Vec<u8>,
    pub created_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub revert_until: Option<Timestamp>,
    pub complete_at: Option<Timestamp>,
}

/// The row of `rows` in `state`, if any (a merchant's mode has at most one of each).
pub fn in_state(rows: &[SecretRecord], state: SecretState) -> Option<&SecretRecord> {
    rows.iter().find(|row| row.state == state)
}

#[cfg(test)]
mod tests {
    use super::SecretState;

    #[test]
    fn states_round_trip_through_their_column_names() {
        for state in [
            SecretState::Active,
            SecretState::Pending,
            SecretState::Previous,
        ] {
            assert_eq!(state.as_str().parse::<SecretState>(), Ok(state));
        }
        assert!("revoked".parse::<SecretState>().is_err());
    }
}

/// A scheduled-rotation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub merchant_id: MerchantId,
    pub mode: Mode,
    pub cron: String,
    pub grace_secs: i64,
    pub next_fire_at: Timestamp,
}

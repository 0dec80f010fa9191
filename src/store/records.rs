//! The plain records the store reads and writes live in [`crate::records`]; this module
//! re-exports them under their old `store` paths and holds the helpers that turn raw columns
//! back into values, so a corrupt row surfaces as [`StoreError::Corrupt`] rather than a panic.

use crate::clock::{from_millis, Timestamp};

use super::StoreError;

pub use crate::records::*;

pub(crate) fn parse_id<T: std::str::FromStr>(text: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|err: T::Err| StoreError::Corrupt(format!("{text}: {err}")))
}

pub(crate) fn opt_time(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(from_millis)
}

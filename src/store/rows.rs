//! Helpers that turn raw columns back into values, so a corrupt row surfaces as
//! [`StoreError::Corrupt`] rather than a panic. (The records themselves are plain types in
//! [`crate::records`].)

use crate::clock::{from_millis, Timestamp};

use super::StoreError;

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

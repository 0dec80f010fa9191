//! Finding the object a path names: parsing its id, and the answer when the store does not
//! have it. An id of the wrong kind or shape is "not found", exactly like an unknown one, so
//! the answer never says whether an id exists elsewhere (another merchant, another mode).
//!
//! May use `ApiError` and the store's error type; every resource module uses these two
//! helpers rather than its own.

use std::str::FromStr;

use super::ApiError;
use crate::store::StoreError;

/// The typed id in a path, or 404 naming `what` (`"endpoint"`, `"api key"`, …).
pub fn parse_id<T: FromStr>(what: &'static str, id: &str) -> Result<T, ApiError> {
    id.parse().map_err(|_| ApiError::not_found(what, id))
}

/// A store error about the object `what` with path id `id`: `NotFound` is 404, a database
/// that cannot be used right now 503 (see [`ApiError::store`]), anything else a 500.
/// Resources with refusals of their own match those first and hand the rest here.
pub fn store_error(err: StoreError, what: &'static str, id: &str) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::not_found(what, id),
        other => ApiError::store(other),
    }
}

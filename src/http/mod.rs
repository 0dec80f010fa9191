//! HTTP plumbing shared by everything that answers HTTP: the admin API ([`crate::api`]), the
//! authentication middleware in front of it ([`crate::auth`]) and, later, the web admin.
//!
//! - [`error`]: the one error envelope, [`ApiError`], that every refusal renders as;
//! - [`request_id`]: the `X-Request-Id` every response carries and every error body repeats;
//! - [`extract`]: the JSON body and query extractors whose rejections use that envelope.
//!
//! It sits below `auth` and `api` so both can use the envelope without knowing each other.
//! It may use the store's error type (to map it onto the envelope) and the plain types, and
//! nothing above them.

pub mod error;
pub mod extract;
pub mod request_id;

pub use error::{ApiError, ApiResult, ErrorBody, ErrorEnvelope, ErrorType};
pub use extract::{body_too_large, ApiJson, ApiQuery, OptionalJson, MAX_JSON_DEPTH};

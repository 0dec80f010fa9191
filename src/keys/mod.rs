//! API keys: the token format, modes and scopes.
//!
//! The rules that need no database live here as plain types; storage is in [`crate::store`]
//! and the HTTP side in [`crate::auth`] and [`crate::api`].

mod mode;
pub mod rules;
mod scopes;
mod token;

pub use mode::Mode;
pub use scopes::{Scope, ScopeSet};
pub use token::{ApiToken, TokenError, TokenKind};

/// How many keys may be active at once per merchant and mode.
pub const MAX_ACTIVE_KEYS: i64 = 5;

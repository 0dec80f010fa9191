//! API keys: the token format, modes and scopes.
//!
//! Plain types and pure rules: the rules that need no database live here as plain types and pure functions
//! over plain records ([`crate::records`]); they import nothing above. Storage is in
//! [`crate::store`] (which applies [`rules`] inside its transactions) and the HTTP side in
//! `auth` and `api`, which use this module.

mod mode;
pub mod rules;
mod scopes;
mod token;

pub use mode::Mode;
pub use scopes::{Scope, ScopeSet};
pub use token::{ApiToken, TokenError, TokenKind};

/// How many keys may be active at once per merchant and mode.
pub const MAX_ACTIVE_KEYS: i64 = 5;

//! Scopes: independent `resource:action` permissions carried by each API key.
//!
//! `read` does not imply `write` nor the reverse: a key that needs both holds both.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    ApiKeysRead,
    ApiKeysWrite,
    SigningSecretRead,
    SigningSecretWrite,
    WebhooksRead,
    WebhooksWrite,
    EventsRead,
    EventsWrite,
    AuditRead,
}

impl Scope {
    /// Every scope; new keys get all of them unless told otherwise.
    pub const ALL: [Scope; 9] = [
        Scope::ApiKeysRead,
        Scope::ApiKeysWrite,
        Scope::SigningSecretRead,
        Scope::SigningSecretWrite,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::EventsRead,
        Scope::EventsWrite,
        Scope::AuditRead,
    ];

    /// The wire name, e.g. `api_keys:write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ApiKeysRead => "api_keys:read",
            Scope::ApiKeysWrite => "api_keys:write",
            Scope::SigningSecretRead => "signing_secret:read",
            Scope::SigningSecretWrite => "signing_secret:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::EventsRead => "events:read",
            Scope::EventsWrite => "events:write",
            Scope::AuditRead => "audit:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope `{s}`"))
    }
}

/// A set of scopes, stored as a space-separated string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet(BTreeSet<Scope>);

impl ScopeSet {
    /// Every scope.
    pub fn all() -> Self {
        Self(Scope::ALL.into_iter().collect())
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// Whether every scope of `other` is in this set.
    pub fn is_superset(&self, other: &ScopeSet) -> bool {
        self.0.is_superset(&other.0)
    }

    /// The scopes in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    /// Wire names, for JSON bodies.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// Parses wire names; unknown names are an error naming the first one.
    pub fn parse_names<I, S>(names: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        names
            .into_iter()
            .map(|name| name.as_ref().parse())
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Self)
    }

    /// The storage form: names separated by single spaces.
    pub fn to_storage(&self) -> String {
        self.names().join(" ")
    }

    /// Reads the storage form.
    pub fn from_storage(text: &str) -> Result<Self, String> {
        Self::parse_names(text.split_whitespace())
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_form_round_trips() {
        let set = ScopeSet::all();
        assert_eq!(ScopeSet::from_storage(&set.to_storage()).unwrap(), set);
    }

    #[test]
    fn read_does_not_imply_write() {
        let set: ScopeSet = [Scope::ApiKeysRead].into_iter().collect();
        assert!(set.contains(Scope::ApiKeysRead));
        assert!(!set.contains(Scope::ApiKeysWrite));
    }

    #[test]
    fn unknown_scope_is_named() {
        let err = ScopeSet::parse_names(["api_keys:read", "api_keys:admin"]).unwrap_err();
        assert!(err.contains("api_keys:admin"), "{err}");
    }
}

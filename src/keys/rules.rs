//! The rules of the key lifecycle as pure functions over plain data: which keys count as
//! active, whether one more may become active, whether a change would lock the merchant out,
//! which keys a caller may manage at all, and how lists are filtered, sorted and paged. The store applies them inside a transaction
//! (so concurrent requests see each other), and the API uses the same definitions to show a
//! key's status.

use std::cmp::Ordering;

use super::{Scope, ScopeSet, MAX_ACTIVE_KEYS};
use crate::clock::Timestamp;
use crate::records::ApiKeyRecord;

/// Why a key change is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRuleError {
    #[error("the limit of active keys is reached")]
    KeyLimitReached,
    #[error("another key already has this name")]
    DuplicateName,
    #[error("this is the last active key holding api_keys:write")]
    LastAdminKey,
    #[error("only a revoked key can be deleted")]
    NotRevoked,
    #[error("the key is revoked")]
    Revoked,
    #[error("the key has expired")]
    Expired,
    #[error("the key is not active")]
    NotActive,
    /// The caller lacks this scope, which the key it wants to grant or change holds.
    #[error("the calling key lacks the `{0}` scope")]
    ScopeNotHeld(Scope),
}

impl KeyRuleError {
    /// The API error code.
    pub fn code(self) -> &'static str {
        match self {
            KeyRuleError::KeyLimitReached => "key_limit_reached",
            KeyRuleError::DuplicateName => "duplicate_name",
            KeyRuleError::LastAdminKey => "last_admin_key",
            KeyRuleError::NotRevoked => "api_key_not_revoked",
            KeyRuleError::Revoked => "api_key_revoked",
            KeyRuleError::Expired => "api_key_expired",
            KeyRuleError::NotActive => "api_key_not_active",
            KeyRuleError::ScopeNotHeld(_) => "scope_not_held",
        }
    }
}

/// A key counts against the limit, and authenticates, when it is switched on, not revoked
/// and not expired at `now`.
pub fn is_active(key: &ApiKeyRecord, now: Timestamp) -> bool {
    key.active && key.revoked_at.is_none() && key.expires_at.is_none_or(|at| at > now)
}

/// A name is taken by keys that are neither revoked nor scheduled to expire (a rolled-away key
/// gives its name to its successor).
pub fn holds_its_name(key: &ApiKeyRecord) -> bool {
    key.revoked_at.is_none() && key.expires_at.is_none()
}

/// One more key may become active when fewer than the limit are.
pub fn may_activate_another(active_now: i64) -> Result<(), KeyRuleError> {
    if active_now < MAX_ACTIVE_KEYS {
        Ok(())
    } else {
        Err(KeyRuleError::KeyLimitReached)
    }
}

/// A key that can manage keys now and will still be able to later: active, holding
/// `api_keys:write`, and not set to expire. A key with `expires_at` (rolled with an overlap) is
/// on its way out, so it cannot be counted on to keep the merchant in.
pub fn is_lasting_admin(key: &ApiKeyRecord, now: Timestamp) -> bool {
    is_active(key, now) && key.expires_at.is_none() && key.scopes.contains(Scope::ApiKeysWrite)
}

/// Switching `key` off (deactivate, revoke) must leave another lasting admin key (see
/// [`is_lasting_admin`]; `other_lasting_admins` counts them, `key` excluded), or nobody could
/// ever create a key again once the expiring ones have expired.
pub fn may_switch_off(
    key: &ApiKeyRecord,
    other_lasting_admins: i64,
    now: Timestamp,
) -> Result<(), KeyRuleError> {
    let is_admin = is_active(key, now) && key.scopes.contains(Scope::ApiKeysWrite);
    if is_admin && other_lasting_admins == 0 {
        Err(KeyRuleError::LastAdminKey)
    } else {
        Ok(())
    }
}

/// A key may grant, or manage (roll, activate, deactivate, rename, revoke, delete), only a
/// key whose every scope it holds itself: otherwise rolling or re-activating a stronger key
/// would hand the caller a token with scopes it never had. The error names the first scope
/// of `target` that `caller` lacks.
pub fn may_act_on(caller: &ScopeSet, target: &ScopeSet) -> Result<(), KeyRuleError> {
    match target.iter().find(|scope| !caller.contains(*scope)) {
        Some(missing) => Err(KeyRuleError::ScopeNotHeld(missing)),
        None => Ok(()),
    }
}

/// The status filter of a key list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Active,
    Inactive,
    Revoked,
    Expired,
}

/// What a key list is sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    #[default]
    CreatedAt,
    LastUsedAt,
    Name,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

/// A key's status as shown in the API.
pub fn status_of(key: &ApiKeyRecord, now: Timestamp) -> StatusFilter {
    if key.revoked_at.is_some() {
        StatusFilter::Revoked
    } else if key.expires_at.is_some_and(|at| at <= now) {
        StatusFilter::Expired
    } else if !key.active {
        StatusFilter::Inactive
    } else {
        StatusFilter::Active
    }
}

/// A list query over one merchant's keys in one mode.
#[derive(Debug, Clone, Default)]
pub struct KeyQuery {
    pub status: Option<StatusFilter>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    pub sort: SortKey,
    pub order: SortOrder,
}

/// Filters and sorts keys; ties (and keys never used, which sort last) are broken by id so
/// that the order is total and a cursor is stable.
pub fn filter_and_sort(
    mut keys: Vec<ApiKeyRecord>,
    query: &KeyQuery,
    now: Timestamp,
) -> Vec<ApiKeyRecord> {
    let needle = query.name_contains.as_deref().map(str::to_lowercase);
    keys.retain(|key| {
        query
            .status
            .is_none_or(|wanted| status_of(key, now) == wanted)
            && needle
                .as_deref()
                .is_none_or(|n| key.name.to_lowercase().contains(n))
    });
    keys.sort_by(|a, b| {
        let primary = match query.sort {
            SortKey::CreatedAt => a.created_at.cmp(&b.created_at),
            SortKey::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            SortKey::LastUsedAt => match (a.last_used_at, b.last_used_at) {
                (Some(x), Some(y)) => x.cmp(&y),
                // Never-used keys go last in either direction.
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => Ordering::Equal,
            },
        };
        let ordered = primary.then_with(|| a.id.cmp(&b.id));
        match query.order {
            SortOrder::Asc => ordered,
            SortOrder::Desc => ordered.reverse(),
        }
    });
    keys
}

/// The page after `starting_after` (exclusive) of at most `limit` keys, and whether more follow.
/// `None` when the cursor is not in the list.
pub fn page_after(
    keys: Vec<ApiKeyRecord>,
    starting_after: Option<crate::ids::ApiKeyId>,
    limit: usize,
) -> Option<(Vec<ApiKeyRecord>, bool)> {
    let start = match starting_after {
        Some(cursor) => keys.iter().position(|key| key.id == cursor)? + 1,
        None => 0,
    };
    let rest = keys.into_iter().skip(start);
    let mut page: Vec<_> = rest.take(limit + 1).collect();
    let has_more = page.len() > limit;
    page.truncate(limit);
    Some((page, has_more))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ApiKeyId;
    use crate::keys::{Mode, ScopeSet};
    use crate::records::KeyKind;
    use chrono::{Duration, Utc};

    fn key(name: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            id: ApiKeyId::new(),
            merchant_id: None,
            kind: KeyKind::Merchant(Mode::Live),
            name: name.into(),
            display_prefix: "hk_live_abcdef".into(),
            scopes: ScopeSet::all(),
            active: true,
            revoked_at: None,
            expires_at: None,
            last_used_at: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn the_sixth_active_key_is_refused() {
        for n in 0..5 {
            assert_eq!(may_activate_another(n), Ok(()));
        }
        assert_eq!(may_activate_another(5), Err(KeyRuleError::KeyLimitReached));
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let now = Utc::now();
        let mut k = key("a");
        k.expires_at = Some(now + Duration::seconds(1));
        assert!(is_active(&k, now));
        assert!(!is_active(&k, now + Duration::seconds(1)));
        assert_eq!(
            status_of(&k, now + Duration::seconds(1)),
            StatusFilter::Expired
        );
    }

    #[test]
    fn the_last_admin_key_cannot_be_switched_off() {
        let now = Utc::now();
        let admin = key("admin");
        assert_eq!(
            may_switch_off(&admin, 0, now),
            Err(KeyRuleError::LastAdminKey)
        );
        assert_eq!(may_switch_off(&admin, 1, now), Ok(()));
        let reader = ApiKeyRecord {
            scopes: [Scope::ApiKeysRead].into_iter().collect(),
            ..key("reader")
        };
        assert_eq!(may_switch_off(&reader, 0, now), Ok(()));
    }

    #[test]
    fn an_expiring_admin_key_is_not_a_lasting_one() {
        let now = Utc::now();
        let admin = key("admin");
        assert!(is_lasting_admin(&admin, now));
        let rolled = ApiKeyRecord {
            expires_at: Some(now + Duration::hours(1)),
            ..key("rolled")
        };
        assert!(is_active(&rolled, now), "still works during the overlap");
        assert!(!is_lasting_admin(&rolled, now), "but cannot be counted on");
        let off = ApiKeyRecord {
            active: false,
            ..key("off")
        };
        assert!(!is_lasting_admin(&off, now));
        let reader = ApiKeyRecord {
            scopes: [Scope::ApiKeysRead].into_iter().collect(),
            ..key("reader")
        };
        assert!(!is_lasting_admin(&reader, now));
    }

    #[test]
    fn a_key_acts_only_on_keys_whose_scopes_it_holds() {
        let admin: ScopeSet = [Scope::ApiKeysRead, Scope::ApiKeysWrite]
            .into_iter()
            .collect();
        assert_eq!(
            may_act_on(&admin, &ScopeSet::all()),
            Err(KeyRuleError::ScopeNotHeld(Scope::SigningSecretRead)),
            "the first missing scope, in the set's order"
        );
        assert_eq!(may_act_on(&admin, &admin), Ok(()));
        let reader: ScopeSet = [Scope::ApiKeysRead].into_iter().collect();
        assert_eq!(may_act_on(&admin, &reader), Ok(()), "a subset is fine");
        assert_eq!(
            may_act_on(&reader, &admin),
            Err(KeyRuleError::ScopeNotHeld(Scope::ApiKeysWrite))
        );
        assert_eq!(may_act_on(&ScopeSet::all(), &ScopeSet::all()), Ok(()));
        assert_eq!(
            KeyRuleError::ScopeNotHeld(Scope::AuditRead).code(),
            "scope_not_held"
        );
    }

    #[test]
    fn lists_filter_sort_and_page_stably() {
        let now = Utc::now();
        let mut keys: Vec<_> = ["beta", "Alpha", "gamma", "delta"]
            .into_iter()
            .map(key)
            .collect();
        keys[1].last_used_at = Some(now);
        keys[2].active = false;
        let by_name = KeyQuery {
            sort: SortKey::Name,
            order: SortOrder::Asc,
            ..KeyQuery::default()
        };
        let sorted = filter_and_sort(keys.clone(), &by_name, now);
        let names: Vec<_> = sorted.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["Alpha", "beta", "delta", "gamma"]);
        let (first, more) = page_after(sorted.clone(), None, 2).unwrap();
        assert!(more);
        let (second, more) = page_after(sorted, Some(first[1].id), 2).unwrap();
        assert!(!more);
        assert_eq!(
            second.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            ["delta", "gamma"]
        );

        let inactive = KeyQuery {
            status: Some(StatusFilter::Inactive),
            ..KeyQuery::default()
        };
        assert_eq!(filter_and_sort(keys.clone(), &inactive, now).len(), 1);
        let search = KeyQuery {
            name_contains: Some("ALP".into()),
            ..KeyQuery::default()
        };
        assert_eq!(filter_and_sort(keys.clone(), &search, now)[0].name, "Alpha");
        let used = KeyQuery {
            sort: SortKey::LastUsedAt,
            order: SortOrder::Desc,
            ..KeyQuery::default()
        };
        assert_eq!(
            filter_and_sort(keys, &used, now)[0].name,
            "Alpha",
            "used keys before never-used ones"
        );
    }
}

//! The OpenAPI schemas of the plain enums the API sends and takes as they are: `Mode` and
//! `DeliveryStatus` (components, through `value_type = …`), and the key list's `status`,
//! `sort` and `order` (inline). The real types live in the
//! foundation (`keys`, `records`) and carry no OpenAPI derive; these give their schema only,
//! and a test checks that every variant is spelled the same on the wire.

use serde::Serialize;
use utoipa::openapi::{Object, ObjectBuilder, RefOr, Schema, Type};

/// Which half of a merchant a key, secret or event belongs to.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Live,
    Test,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    Delivered,
    /// Every attempt failed (dead letter); can be retried by hand.
    Failed,
    /// Its endpoint or merchant is disabled: out of the queue until re-enabled, when it is
    /// `pending` again.
    Paused,
    /// Still pending or paused after `delivery.max_age_secs` (the reason is in `last_error`);
    /// can be retried by hand like a dead letter.
    Expired,
}

/// The names of a key list's `status` filter.
pub const STATUS_FILTERS: [&str; 4] = ["active", "inactive", "revoked", "expired"];
/// The names of a key list's `sort` keys.
pub const SORT_KEYS: [&str; 3] = ["created_at", "last_used_at", "name"];
/// The names of a key list's `order`.
pub const SORT_ORDERS: [&str; 2] = ["asc", "desc"];

/// An inline string enum, as the derive writes one: the enum's description and its names.
fn string_enum(description: &str, names: &[&str]) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(names.iter().copied()))
        .build()
}

/// A stand-in type whose schema is an inline string enum (used as `value_type = …, inline`,
/// so the parameter keeps its own description and example).
macro_rules! inline_string_enum {
    ($(#[$doc:meta])* $name:ident, $description:literal, $names:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                Schema::Object(string_enum($description, &$names)).into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

inline_string_enum!(
    /// The schema of [`crate::keys::rules::StatusFilter`] (the `status` of `GET /v1/api-keys`).
    StatusFilter,
    "The status filter of a key list.",
    STATUS_FILTERS
);
inline_string_enum!(
    /// The schema of [`crate::keys::rules::SortKey`].
    SortKey,
    "What a key list is sorted by.",
    SORT_KEYS
);
inline_string_enum!(
    /// The schema of [`crate::keys::rules::SortOrder`].
    SortOrder,
    "Sort direction.",
    SORT_ORDERS
);

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use super::*;
    use crate::keys::rules;

    /// The stand-in of each real variant; a new variant of a real type fails to compile here.
    fn mode(real: crate::keys::Mode) -> Mode {
        match real {
            crate::keys::Mode::Live => Mode::Live,
            crate::keys::Mode::Test => Mode::Test,
        }
    }

    fn delivery_status(real: crate::records::DeliveryStatus) -> DeliveryStatus {
        use crate::records::DeliveryStatus as Real;
        match real {
            Real::Pending => DeliveryStatus::Pending,
            Real::Delivered => DeliveryStatus::Delivered,
            Real::Failed => DeliveryStatus::Failed,
            Real::Paused => DeliveryStatus::Paused,
            Real::Expired => DeliveryStatus::Expired,
        }
    }

    fn status_filter(real: rules::StatusFilter) -> &'static str {
        match real {
            rules::StatusFilter::Active => "active",
            rules::StatusFilter::Inactive => "inactive",
            rules::StatusFilter::Revoked => "revoked",
            rules::StatusFilter::Expired => "expired",
        }
    }

    fn sort_key(real: rules::SortKey) -> &'static str {
        match real {
            rules::SortKey::CreatedAt => "created_at",
            rules::SortKey::LastUsedAt => "last_used_at",
            rules::SortKey::Name => "name",
        }
    }

    fn sort_order(real: rules::SortOrder) -> &'static str {
        match real {
            rules::SortOrder::Asc => "asc",
            rules::SortOrder::Desc => "desc",
        }
    }

    /// Every name a stand-in states is read by the real type as the variant it stands for.
    fn reads_back<Real: DeserializeOwned, S: Serialize + Copy>(stand_ins: &[S], of: fn(Real) -> S) {
        for stand_in in stand_ins {
            let name = serde_json::to_value(stand_in).unwrap();
            let real: Real =
                serde_json::from_value(name.clone()).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert_eq!(serde_json::to_value(of(real)).unwrap(), name);
        }
    }

    #[test]
    fn the_stand_ins_spell_every_variant_as_the_real_types_do() {
        for real in crate::keys::Mode::ALL {
            assert_eq!(
                serde_json::to_value(real).unwrap(),
                serde_json::to_value(mode(real)).unwrap()
            );
        }
        reads_back(&[Mode::Live, Mode::Test], mode);
        let statuses = [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Paused,
            DeliveryStatus::Expired,
        ];
        assert_eq!(statuses.len(), crate::records::DeliveryStatus::ALL.len());
        reads_back(&statuses, delivery_status);
        for stand_in in statuses {
            let real: crate::records::DeliveryStatus =
                serde_json::from_value(serde_json::to_value(stand_in).unwrap()).unwrap();
            assert_eq!(
                serde_json::to_value(real).unwrap(),
                serde_json::to_value(stand_in).unwrap()
            );
        }
        reads_back(&STATUS_FILTERS, status_filter);
        reads_back(&SORT_KEYS, sort_key);
        reads_back(&SORT_ORDERS, sort_order);
    }
}

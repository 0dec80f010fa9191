//! The OpenAPI schemas of the plain enums the API sends and takes as they are: `Mode`,
//! `DeliveryStatus` and the key list's `StatusFilter`, `SortKey` and `SortOrder`. The real
//! types live in the foundation (`keys`, `records`) and carry no OpenAPI derive; these
//! stand-ins give their schema only (through `value_type = …`), and a test checks that every
//! variant is spelled the same on the wire.

use serde::Serialize;

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
}

/// The status filter of a key list.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    Active,
    Inactive,
    Revoked,
    Expired,
}

/// What a key list is sorted by.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    CreatedAt,
    LastUsedAt,
    Name,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

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
        }
    }

    fn status_filter(real: rules::StatusFilter) -> StatusFilter {
        match real {
            rules::StatusFilter::Active => StatusFilter::Active,
            rules::StatusFilter::Inactive => StatusFilter::Inactive,
            rules::StatusFilter::Revoked => StatusFilter::Revoked,
            rules::StatusFilter::Expired => StatusFilter::Expired,
        }
    }

    fn sort_key(real: rules::SortKey) -> SortKey {
        match real {
            rules::SortKey::CreatedAt => SortKey::CreatedAt,
            rules::SortKey::LastUsedAt => SortKey::LastUsedAt,
            rules::SortKey::Name => SortKey::Name,
        }
    }

    fn sort_order(real: rules::SortOrder) -> SortOrder {
        match real {
            rules::SortOrder::Asc => SortOrder::Asc,
            rules::SortOrder::Desc => SortOrder::Desc,
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
        ];
        reads_back(&statuses, delivery_status);
        for stand_in in statuses {
            let real: crate::records::DeliveryStatus =
                serde_json::from_value(serde_json::to_value(stand_in).unwrap()).unwrap();
            assert_eq!(
                serde_json::to_value(real).unwrap(),
                serde_json::to_value(stand_in).unwrap()
            );
        }
        reads_back(
            &[
                StatusFilter::Active,
                StatusFilter::Inactive,
                StatusFilter::Revoked,
                StatusFilter::Expired,
            ],
            status_filter,
        );
        reads_back(
            &[SortKey::CreatedAt, SortKey::LastUsedAt, SortKey::Name],
            sort_key,
        );
        reads_back(&[SortOrder::Asc, SortOrder::Desc], sort_order);
    }
}

//! Retention rules: given `[retention]` and the time, what is old enough to go. Pure (plain
//! data in, plain data out), so the windows are tested without a database or a clock; the
//! store applies them to its rows (`src/store/retention.rs`) and `pruner` runs them.
//!
//! - A delivered delivery goes `delivered_days` after its last change (its delivery), with its
//!   attempts.
//! - A failed or expired delivery goes `failed_days` after its last attempt, with its attempts.
//! - A pending (or paused) delivery never goes: it is still work.
//! - An event goes once no delivery refers to it *and* it is `delivered_days` old: events stay
//!   for the window even without deliveries, so a new endpoint can be backfilled from them.
//! - An audit entry goes `audit_days` after it was written, oldest first and only as a prefix
//!   of its chain (a checkpoint then anchors what is left); without `audit_days`, never.

use chrono::Duration;

use crate::clock::Timestamp;
use crate::config::RetentionConfig;
use crate::records::RetentionCutoffs;

/// Delivery statuses that are final: these rows may age out.
pub const FINISHED_STATUSES: [&str; 3] = ["delivered", "failed", "expired"];

/// How far ids may run ahead of the rows' own times. Ids are UUIDv7 from the system clock and
/// the rows' times come from the daemon's clock (the same one in production); the primary key
/// scan goes this far past the newest cutoff so a small difference never hides a row.
pub const ID_CLOCK_SLACK: Duration = Duration::minutes(1);

/// `days` (fractions allowed) as a duration, to the millisecond.
pub fn days(days: f64) -> Duration {
    Duration::milliseconds((days * 86_400_000.0).round() as i64)
}

/// The cutoffs at `now`.
pub fn cutoffs(config: &RetentionConfig, now: Timestamp) -> RetentionCutoffs {
    let delivered_before = now - days(config.delivered_days);
    let failed_before = now - days(config.failed_days);
    RetentionCutoffs {
        delivered_before,
        failed_before,
        events_before: delivered_before,
        audit_before: config.audit_days.map(|audit| now - days(audit)),
        scan_ids_before: delivered_before.max(failed_before) + ID_CLOCK_SLACK,
    }
}

/// Whether a delivery with `status`, last changed at `last_change` (its delivery or its last
/// attempt), may go.
pub fn delivery_may_go(status: &str, last_change: Timestamp, cutoffs: &RetentionCutoffs) -> bool {
    match status {
        "delivered" => last_change < cutoffs.delivered_before,
        "failed" | "expired" => last_change < cutoffs.failed_before,
        _ => false,
    }
}

/// Whether an event created at `created_at` with `deliveries` left may go.
pub fn event_may_go(created_at: Timestamp, deliveries: u64, cutoffs: &RetentionCutoffs) -> bool {
    deliveries == 0 && created_at < cutoffs.events_before
}

/// How many of a chain's oldest entries (their `created_at`, in chain order) may go: the
/// longest prefix written before the cutoff, so what is left is still one unbroken chain.
pub fn audit_prefix_to_prune(created_at: &[Timestamp], cutoffs: &RetentionCutoffs) -> usize {
    match cutoffs.audit_before {
        Some(before) => created_at.iter().take_while(|at| **at < before).count(),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::days(day)
    }

    fn config() -> RetentionConfig {
        RetentionConfig {
            delivered_days: 30.0,
            failed_days: 10.0,
            ..RetentionConfig::default()
        }
    }

    #[test]
    fn the_defaults_keep_deliveries_30_days_and_audit_forever() {
        let cutoffs = cutoffs(&RetentionConfig::default(), at(100));
        assert_eq!(cutoffs.delivered_before, at(70));
        assert_eq!(cutoffs.failed_before, at(70));
        assert_eq!(cutoffs.events_before, at(70));
        assert_eq!(cutoffs.audit_before, None);
        assert_eq!(audit_prefix_to_prune(&[at(0), at(1)], &cutoffs), 0);
    }

    #[test]
    fn delivered_and_failed_deliveries_age_by_their_own_windows() {
        let cutoffs = cutoffs(&config(), at(100));
        assert!(delivery_may_go("delivered", at(69), &cutoffs));
        assert!(!delivery_may_go("delivered", at(70), &cutoffs));
        assert!(!delivery_may_go("delivered", at(89), &cutoffs));
        assert!(delivery_may_go("failed", at(89), &cutoffs));
        assert!(delivery_may_go("expired", at(89), &cutoffs));
        assert!(!delivery_may_go("failed", at(90), &cutoffs));
    }

    #[test]
    fn pending_work_never_ages_out() {
        let cutoffs = cutoffs(&config(), at(1_000));
        assert!(!delivery_may_go("pending", at(0), &cutoffs));
        assert!(!delivery_may_go("paused", at(0), &cutoffs));
    }

    #[test]
    fn an_event_goes_only_without_deliveries_and_after_the_delivered_window() {
        let cutoffs = cutoffs(&config(), at(100));
        assert!(event_may_go(at(69), 0, &cutoffs));
        assert!(!event_may_go(at(69), 1, &cutoffs));
        // The failed window is shorter; the event still stays for the delivered one.
        assert!(!event_may_go(at(80), 0, &cutoffs));
    }

    #[test]
    fn fractions_of_a_day_give_minutes() {
        let config = RetentionConfig {
            delivered_days: 0.0035,
            failed_days: 1.0 / 1_440.0,
            ..RetentionConfig::default()
        };
        let now = at(0);
        let cutoffs = cutoffs(&config, now);
        assert_eq!(
            now - cutoffs.delivered_before,
            Duration::milliseconds(302_400)
        );
        assert_eq!(now - cutoffs.failed_before, Duration::minutes(1));
    }

    #[test]
    fn the_id_scan_reaches_past_the_newest_cutoff() {
        let cutoffs = cutoffs(&config(), at(100));
        assert_eq!(cutoffs.scan_ids_before, at(90) + ID_CLOCK_SLACK);
    }

    #[test]
    fn only_an_unbroken_prefix_of_a_chain_is_pruned() {
        let config = RetentionConfig {
            audit_days: Some(30.0),
            ..RetentionConfig::default()
        };
        let cutoffs = cutoffs(&config, at(100));
        assert_eq!(
            audit_prefix_to_prune(&[at(1), at(2), at(80), at(3)], &cutoffs),
            2
        );
        assert_eq!(audit_prefix_to_prune(&[at(1), at(2)], &cutoffs), 2);
        assert_eq!(audit_prefix_to_prune(&[at(75)], &cutoffs), 0);
    }
}

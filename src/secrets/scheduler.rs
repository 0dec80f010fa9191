//! The rotation scheduler: one background task per daemon that, on every tick, completes
//! pending secrets whose `complete_at` has come, fires due cron policies (initiate now,
//! complete `grace` later), and destroys previous secrets whose revert window has passed.
//!
//! Several daemons may share one database: every action is a conditional transition inside a
//! transaction holding the merchant's lock, so a second daemon finds the work already done
//! (no pending secret, a moved fire time) and does nothing.

use std::str::FromStr;
use std::sync::Arc;

use chrono::Duration;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, Timestamp};
use crate::ids::{AuditId, SecretId};
use crate::keys::Mode;
use crate::provision::seal_new_secret;
use crate::secrets::{Encryptor, SigningSecret};
use crate::store::{NewAuditEvent, Store, StoreError, StoredCommand};

/// The scheduler of one daemon: the store it acts on, the key new secrets are sealed with,
/// the clock it reads, and the revert window it gives completed rotations.
pub struct RotationScheduler {
    pub store: Arc<dyn Store>,
    pub encryptor: Arc<Encryptor>,
    pub clock: Arc<dyn Clock>,
    /// `secrets.revert_window_secs`.
    pub revert_window: Duration,
}

impl RotationScheduler {
    /// Runs [`RotationScheduler::tick`] every `every` until `stop` is cancelled.
    pub async fn run(self: Arc<Self>, every: std::time::Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {
                    let report = self.tick().await;
                    if report != Default::default() {
                        tracing::info!(?report, "rotation scheduler acted");
                    }
                }
            }
        }
    }

    /// Runs one tick at the clock's time. One merchant's failure (a corrupt row, a lost
    /// connection) is logged, counted and skipped: it never holds up the others.
    pub async fn tick(&self) -> TickReport {
        tick(self).await
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub completed: usize,
    pub initiated: usize,
    pub destroyed: usize,
    /// Merchants (and lookups) that failed this tick; each is logged and counted in
    /// `hooksign_scheduler_errors_total`, and the others are still served.
    pub failed: usize,
}

impl TickReport {
    fn failed(
        &mut self,
        what: &'static str,
        merchant: Option<crate::ids::MerchantId>,
        err: &StoreError,
    ) {
        self.failed += 1;
        metrics::counter!("hooksign_scheduler_errors_total", "step" => what).increment(1);
        match merchant {
            Some(merchant) => {
                tracing::error!(%merchant, step = what, error = %err, "rotation scheduler: this merchant failed; the tick goes on")
            }
            None => {
                tracing::error!(step = what, error = %err, "rotation scheduler: cannot list due work; the tick goes on")
            }
        }
    }
}

/// Parses a six-field cron expression (seconds first) and gives its next fire time after
/// `after`; the error is the parser's reason.
pub fn next_fire(expression: &str, after: Timestamp) -> Result<Timestamp, String> {
    let schedule = cron::Schedule::from_str(expression).map_err(|err| err.to_string())?;
    schedule
        .after(&after)
        .next()
        .ok_or_else(|| "the expression never fires again".to_owned())
}

fn system_event(
    merchant: crate::ids::MerchantId,
    mode: Mode,
    action: &'static str,
    target: String,
    details: serde_json::Value,
    now: Timestamp,
) -> NewAuditEvent {
    NewAuditEvent {
        id: AuditId::new(),
        merchant_id: Some(merchant),
        mode: Some(mode),
        actor_key_id: None,
        action,
        target,
        request_id: None,
        details,
        created_at: now,
    }
}

async fn tick(scheduler: &RotationScheduler) -> TickReport {
    let now = scheduler.clock.now();
    let window = scheduler.revert_window;
    let store = scheduler.store.as_ref();
    let mut report = TickReport::default();

    let due = store.due_completions(now).await.unwrap_or_else(|err| {
        report.failed("complete", None, &err);
        Vec::new()
    });
    for (merchant, mode) in due {
        let audit = system_event(
            merchant,
            mode,
            "signing_secret.complete",
            merchant.to_string(),
            serde_json::json!({ "scheduled": true }),
            now,
        );
        match store
            .rotate(
                merchant,
                mode,
                StoredCommand::CompleteDue,
                now,
                window,
                &audit,
            )
            .await
        {
            Ok(_) => report.completed += 1,
            Err(StoreError::Rotation(_)) => {} // another daemon got there first
            Err(err) => report.failed("complete", Some(merchant), &err),
        }
    }

    let policies = store.due_policies(now).await.unwrap_or_else(|err| {
        report.failed("initiate", None, &err);
        Vec::new()
    });
    for policy in policies {
        let next = match next_fire(&policy.cron, now) {
            Ok(next) => next,
            Err(reason) => {
                tracing::error!(merchant = %policy.merchant_id, mode = %policy.mode, %reason, "rotation policy cannot fire");
                continue;
            }
        };
        let secret = seal_new_secret(
            &scheduler.encryptor,
            &SigningSecret::generate(),
            SecretId::new(),
            policy.merchant_id,
            policy.mode,
            now,
        );
        let details = serde_json::json!({ "scheduled": true, "cron": policy.cron, "secret": secret.id.to_string() });
        let audit = system_event(
            policy.merchant_id,
            policy.mode,
            "signing_secret.initiate",
            secret.id.to_string(),
            details,
            now,
        );
        let complete_at = now + Duration::seconds(policy.grace_secs);
        match store
            .fire_policy(&policy, next, secret, complete_at, now, window, &audit)
            .await
        {
            Ok(true) => report.initiated += 1,
            Ok(false) => {}
            Err(err) => report.failed("initiate", Some(policy.merchant_id), &err),
        }
    }

    let expired = store.expired_previous(now).await.unwrap_or_else(|err| {
        report.failed("destroy", None, &err);
        Vec::new()
    });
    for (merchant, mode) in expired {
        let audit = system_event(
            merchant,
            mode,
            "signing_secret.destroy",
            merchant.to_string(),
            serde_json::json!({ "reason": "revert window expired" }),
            now,
        );
        match store
            .rotate(merchant, mode, StoredCommand::Sweep, now, window, &audit)
            .await
        {
            Ok(_) => report.destroyed += 1,
            Err(StoreError::Rotation(_)) => {}
            Err(err) => report.failed("destroy", Some(merchant), &err),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn cron_expressions_have_seconds_first() {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 30).unwrap();
        let next = next_fire("0 0 3 * * *", at).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 1, 1, 3, 0, 0).unwrap());
        assert!(next_fire("not cron", at).is_err());
        assert!(next_fire("0 0 3 * * * 2020", at)
            .unwrap_err()
            .contains("never"));
    }
}

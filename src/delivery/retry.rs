//! What happens after an attempt: delivered, retried later, failed for good, or the endpoint
//! disabled. A pure function of the attempt's result, the attempt count and the clock, so the
//! schedule is tested without waiting.

use chrono::Duration;

use crate::clock::Timestamp;

/// The retry schedule and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the 1st, 2nd, … failed attempt; after the last one the delivery fails.
    pub schedule: Vec<Duration>,
    /// ± fraction applied to each delay (0.2 = ±20 %), so retries of many deliveries spread out.
    pub jitter: f64,
    /// The longest `Retry-After` honoured.
    pub retry_after_cap: Duration,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver answered.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No answer within the endpoint's timeout.
    Timeout,
    /// Could not connect (refused, DNS, an invalid URL).
    Connection(String),
    /// The receiver closed or reset the connection before its answer was complete.
    Reset(String),
    /// The receiver answered with something that is not HTTP.
    Protocol(String),
    /// The TLS handshake failed: most often a certificate that is expired, self-signed or for
    /// another name.
    Tls(String),
    /// The SSRF guard refused every address of the endpoint's host. Retried like a connection
    /// failure (DNS may change); the addresses are in the operator's log only.
    Forbidden,
}

impl AttemptResult {
    /// A short class for the attempt record and metrics.
    pub fn class(&self) -> &'static str {
        match self {
            AttemptResult::Status { code, .. } if (200..300).contains(code) => "success",
            AttemptResult::Status { code, .. } if (300..400).contains(code) => "redirect",
            AttemptResult::Status { code, .. } if (400..500).contains(code) => "client_error",
            AttemptResult::Status { .. } => "server_error",
            AttemptResult::Timeout => "timeout",
            AttemptResult::Connection(_) => "connection",
            AttemptResult::Reset(_) => "connection_reset",
            AttemptResult::Protocol(_) => "protocol_error",
            AttemptResult::Tls(_) => "tls_error",
            AttemptResult::Forbidden => "forbidden_address",
        }
    }
}

// What to do with a delivery is plain data the store records; the rule that decides it is here.
use crate::records::Decision;

impl RetryPolicy {
    /// `attempts` is how many attempts have now been made (1 after the first). `unit` is a
    /// random number in [0, 1) for the jitter.
    pub fn decide(
        &self,
        result: &AttemptResult,
        attempts: u32,
        now: Timestamp,
        unit: f64,
    ) -> Decision {
        let retry_after = match result {
            AttemptResult::Status { code, .. } if (200..300).contains(code) => {
                return Decision::Delivered
            }
            AttemptResult::Status { code: 410, .. } => return Decision::FailedAndDisableEndpoint,
            AttemptResult::Status {
                code: 429 | 503,
                retry_after,
            } => *retry_after,
            _ => None,
        };
        let Some(base) = self.schedule.get(attempts.saturating_sub(1) as usize) else {
            return Decision::Failed;
        };
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered =
            Duration::milliseconds((base.num_milliseconds() as f64 * factor).round() as i64);
        let delay = match retry_after {
            Some(asked) => jittered.max(asked.min(self.retry_after_cap)),
            None => jittered,
        };
        Decision::RetryAt(now + delay)
    }
}

/// Parses `Retry-After` in either form (RFC 9110 §10.2.3): delta-seconds, or an HTTP date,
/// taken relative to `now` (a date already past asks for no delay). The cap is applied by
/// [`RetryPolicy::decide`].
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u32>() {
        return Some(Duration::seconds(i64::from(secs)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let delay = match at.duration_since(std::time::SystemTime::from(now)) {
        Ok(ahead) => Duration::from_std(ahead).unwrap_or(Duration::MAX),
        Err(_) => Duration::zero(),
    };
    Some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            schedule: [5, 300, 1800].map(Duration::seconds).to_vec(),
            jitter: 0.2,
            retry_after_cap: Duration::seconds(3600),
        }
    }

    fn status(code: u16) -> AttemptResult {
        AttemptResult::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn success_is_delivered_and_gone_disables() {
        let now = Utc::now();
        assert_eq!(
            policy().decide(&status(204), 1, now, 0.5),
            Decision::Delivered
        );
        assert_eq!(
            policy().decide(&status(410), 1, now, 0.5),
            Decision::FailedAndDisableEndpoint
        );
    }

    #[test]
    fn failures_follow_the_schedule_with_bounded_jitter() {
        let now = Utc::now();
        assert_eq!(
            policy().decide(&status(500), 1, now, 0.5),
            Decision::RetryAt(now + Duration::seconds(5))
        );
        assert_eq!(
            policy().decide(&AttemptResult::Timeout, 2, now, 0.0),
            Decision::RetryAt(now + Duration::seconds(240))
        );
        assert_eq!(
            policy().decide(&status(302), 2, now, 1.0),
            Decision::RetryAt(now + Duration::seconds(360))
        );
        assert_eq!(
            policy().decide(&status(500), 4, now, 0.5),
            Decision::Failed,
            "after the last attempt"
        );
    }

    /// A receiver that resets, speaks garbage or fails the TLS handshake is retried like any
    /// other failure, under a class of its own.
    #[test]
    fn broken_answers_are_retried_under_their_own_class() {
        let now = Utc::now();
        for (result, class) in [
            (AttemptResult::Reset("reset".into()), "connection_reset"),
            (AttemptResult::Protocol("garbage".into()), "protocol_error"),
            (AttemptResult::Tls("expired".into()), "tls_error"),
            (AttemptResult::Connection("refused".into()), "connection"),
        ] {
            assert_eq!(result.class(), class);
            assert_eq!(
                policy().decide(&result, 1, now, 0.5),
                Decision::RetryAt(now + Duration::seconds(5)),
                "{class}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let now = Utc::now();
        let asked = |secs| AttemptResult::Status {
            code: 429,
            retry_after: Some(Duration::seconds(secs)),
        };
        assert_eq!(
            policy().decide(&asked(120), 1, now, 0.5),
            Decision::RetryAt(now + Duration::seconds(120))
        );
        assert_eq!(
            policy().decide(&asked(1), 1, now, 0.5),
            Decision::RetryAt(now + Duration::seconds(5)),
            "never sooner than the schedule"
        );
        assert_eq!(
            policy().decide(&asked(86400), 1, now, 0.5),
            Decision::RetryAt(now + Duration::seconds(3600)),
            "capped"
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after(" 30 ", now), Some(Duration::seconds(30)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::seconds(120))
        );
        // The obsolete forms RFC 9110 still asks recipients to accept.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            Some(Duration::seconds(60))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 08:28:00 2015", now),
            Some(Duration::seconds(3600))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::zero()),
            "a date in the past asks for no delay"
        );
        for bad in ["soon", "-5", "1.5", "", "Wed, 32 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn a_far_retry_after_date_is_capped() {
        let now = Utc::now();
        let far = httpdate::fmt_http_date(std::time::SystemTime::from(now + Duration::days(30)));
        let asked = AttemptResult::Status {
            code: 503,
            retry_after: parse_retry_after(&far, now),
        };
        assert_eq!(
            policy().decide(&asked, 1, now, 0.5),
            Decision::RetryAt(now + Duration::seconds(3600))
        );
    }
}

//! Rate limits: a token bucket per API key, and a budget of failed authentications per client
//! address that sheds abusive clients cheaply. Both are per daemon instance (in memory).
//!
//! The budget is charged and checked only for requests whose credential is refused: a valid
//! key is never turned away because of failures, its own address's or anyone else's (keys carry
//! 190 random bits, so the budget is not what stops guessing). An IPv6 client is keyed by its
//! /64, the block one host usually holds, so rotating addresses within it does not reset the
//! budget. Which address a request comes from is [`super::client_addr`]'s business.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::Clock;
use crate::config::AuthConfig;
use crate::ids::ApiKeyId;

type Keyed<K, C = DefaultClock> =
    RateLimiter<K, HashMapStateStore<K>, C, NoOpMiddleware<<C as governor::clock::Clock>::Instant>>;

/// The daemon's [`Clock`] as the key buckets' time source, so a test that moves the daemon's
/// clock refills them; in production it is the system's monotonic clock, as before.
#[derive(Debug, Clone)]
struct BucketClock(Arc<dyn Clock>);

impl governor::clock::Clock for BucketClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.monotonic()
    }
}

/// The limiters of one daemon.
#[derive(Debug)]
pub struct Limits {
    per_key: Keyed<ApiKeyId, BucketClock>,
    failed_auth: Keyed<IpAddr>,
    /// IPs that spent their failure budget, and until when they are refused outright.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

fn non_zero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

impl Limits {
    /// Limiters sized from `[auth]`; the key buckets refill by `clock`.
    pub fn new(config: &AuthConfig, clock: Arc<dyn Clock>) -> Self {
        let per_key =
            Quota::per_second(non_zero(config.rate_per_sec)).allow_burst(non_zero(config.burst));
        let failed = Quota::per_minute(non_zero(config.failed_auth_per_minute));
        Self {
            per_key: RateLimiter::hashmap_with_clock(per_key, BucketClock(clock)),
            failed_auth: RateLimiter::hashmap(failed),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token from `key`'s bucket, or says how many seconds until one is free.
    pub fn check_key(&self, key: ApiKeyId) -> Result<(), u64> {
        self.per_key
            .check_key(&key)
            .map_err(|not_until| seconds_until(not_until.wait_time_from(self.per_key_now())))
    }

    fn per_key_now(&self) -> Duration {
        governor::clock::Clock::now(self.per_key.clock())
    }

    /// Seconds until `ip` may try again, if it is blocked.
    pub fn blocked_for(&self, ip: IpAddr) -> Option<u64> {
        let ip = budget_key(ip);
        let now = Instant::now();
        let mut blocked = self
            .blocked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match blocked.get(&ip) {
            Some(until) if *until > now => Some(seconds_until(*until - now)),
            Some(_) => {
                blocked.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// Counts a failed authentication; returns the block in seconds once the budget is spent.
    pub fn record_failure(&self, ip: IpAddr) -> Option<u64> {
        let ip = budget_key(ip);
        let wait = self
            .failed_auth
            .check_key(&ip)
            .err()?
            .wait_time_from(DefaultClock::default().now());
        let mut blocked = self
            .blocked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        blocked.insert(ip, Instant::now() + wait);
        Some(seconds_until(wait))
    }

    /// Forgets idle entries (called by the housekeeping task).
    pub fn shrink(&self) {
        self.per_key.retain_recent();
        self.failed_auth.retain_recent();
        let now = Instant::now();
        self.blocked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|_, until| *until > now);
    }
}

/// The address a failure is charged to: IPv4 as it is, IPv6 by its /64 network.
pub fn budget_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !(u128::MAX >> 64);
            IpAddr::V6(Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

fn seconds_until(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    fn config(rate: u32, burst: u32, failures: u32) -> AuthConfig {
        AuthConfig {
            rate_per_sec: rate,
            burst,
            failed_auth_per_minute: failures,
            ..AuthConfig::default()
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_waits() {
        let limits = Limits::new(&config(1, 3, 10), Arc::new(SystemClock));
        let key = ApiKeyId::new();
        for _ in 0..3 {
            assert_eq!(limits.check_key(key), Ok(()));
        }
        assert!(matches!(limits.check_key(key), Err(secs) if secs >= 1));
        assert_eq!(
            limits.check_key(ApiKeyId::new()),
            Ok(()),
            "other keys are unaffected"
        );
    }

    #[test]
    fn an_ip_that_spends_its_failure_budget_is_blocked() {
        let limits = Limits::new(&config(10, 10, 2), Arc::new(SystemClock));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(limits.blocked_for(ip), None);
        assert_eq!(limits.record_failure(ip), None);
        assert_eq!(limits.record_failure(ip), None);
        assert!(limits.record_failure(ip).is_some());
        assert!(limits.blocked_for(ip).is_some());
        assert_eq!(limits.blocked_for("192.0.2.8".parse().unwrap()), None);
    }

    #[test]
    fn ipv6_clients_share_the_budget_of_their_64() {
        let limits = Limits::new(&config(10, 10, 2), Arc::new(SystemClock));
        let same_64: Vec<IpAddr> = [
            "2001:db8:1:2::1",
            "2001:db8:1:2:ffff::9",
            "2001:db8:1:2::abcd",
        ]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
        assert_eq!(limits.record_failure(same_64[0]), None);
        assert_eq!(limits.record_failure(same_64[1]), None);
        assert!(
            limits.record_failure(same_64[2]).is_some(),
            "a third address of the same /64 spends the same budget"
        );
        for ip in &same_64 {
            assert!(limits.blocked_for(*ip).is_some(), "{ip}");
        }
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limits.blocked_for(next_64), None);
        assert_eq!(limits.record_failure(next_64), None);
        assert_eq!(
            budget_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            budget_key("::ffff:192.0.2.7".parse().unwrap()),
            "192.0.2.7".parse::<IpAddr>().unwrap(),
            "a mapped IPv4 address is the IPv4 client, not a /64"
        );
    }
}

//! Tests of the connection clocks, the descriptor-limited cap and the choice of the connection
//! closed for room.

use std::sync::Arc;
use std::time::Duration;

use super::activity::{Activity, Closed, InFlight, Registry};
use super::ConnectionLimits;
use crate::config::Config;

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        request_timeout: Duration::from_secs(30),
        max_connections: 100,
    }
}

#[test]
fn the_clock_that_applies_follows_what_the_connection_does() {
    let activity = Arc::new(Activity::new(0, limits()));
    let opened = activity.opened;
    let (at, reason) = activity.deadline();
    assert!(matches!(reason, Closed::HeaderTimeout));
    assert_eq!(at, opened + Duration::from_secs(10));
    let in_flight = InFlight::begin(activity.clone());
    assert!(matches!(activity.deadline().1, Closed::Stalled));
    // Bytes read while a request is in flight do not start a header clock.
    activity.read();
    drop(in_flight);
    let (at, reason) = activity.deadline();
    assert!(matches!(reason, Closed::IdleTimeout));
    assert!(at >= opened + Duration::from_secs(60));
    // The first byte of the next request starts the header clock.
    activity.read();
    let (at, reason) = activity.deadline();
    assert!(matches!(reason, Closed::HeaderTimeout));
    assert!(at < opened + Duration::from_secs(60));
}

#[test]
fn the_cap_follows_the_descriptor_limit() {
    let mut config = Config::default();
    config.http.max_connections = 4096;
    assert_eq!(ConnectionLimits::new(&config, None).max_connections, 4096);
    let reserved = 64 + 10 + 256;
    assert_eq!(
        ConnectionLimits::new(&config, Some(1024)).max_connections,
        1024 - reserved
    );
    assert_eq!(ConnectionLimits::new(&config, Some(10)).max_connections, 1);
}

#[test]
fn room_is_made_by_closing_the_longest_idle_connection_never_a_busy_one() {
    let open = Registry::default();
    let busy = open.insert(limits());
    let _in_flight = InFlight::begin(busy.clone());
    std::thread::sleep(Duration::from_millis(5));
    let older = open.insert(limits());
    std::thread::sleep(Duration::from_millis(5));
    let newer = open.insert(limits());
    open.close_longest_idle();
    assert!(older.close_for_room.is_cancelled());
    assert!(!newer.close_for_room.is_cancelled());
    open.close_longest_idle();
    assert!(newer.close_for_room.is_cancelled());
    open.close_longest_idle();
    assert!(!busy.close_for_room.is_cancelled());
}

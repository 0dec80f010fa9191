//! The limits connections are held to: [`ConnectionLimits`] from the configuration, and the
//! file-descriptor limit that lowers the connection cap. Uses `crate::config` and `libc`.

use std::io;
use std::time::Duration;

use crate::config::Config;

/// File descriptors kept for everything but client connections (database pool, outbound
/// deliveries, files), on top of `database.max_connections` and `delivery.max_in_flight`.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The limits [`serve`](super::serve) holds connections to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `http.header_read_timeout_secs`.
    pub header_read_timeout: Duration,
    /// `http.idle_timeout_secs`.
    pub idle_timeout: Duration,
    /// `http.request_timeout_secs` (what a request in flight may take).
    pub request_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The configured limits, with the connection cap lowered to fit `fd_limit` (the soft
    /// `RLIMIT_NOFILE` in force, when known) after what the daemon needs for itself.
    pub fn new(config: &Config, fd_limit: Option<u64>) -> Self {
        let http = &config.http;
        let mut max_connections = http.max_connections;
        if let Some(limit) = fd_limit {
            let reserved = RESERVED_DESCRIPTORS
                + u64::from(config.database.max_connections)
                + config.delivery.max_in_flight as u64;
            let room = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
            max_connections = max_connections.min(room.max(1));
        }
        Self {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            idle_timeout: Duration::from_secs(http.idle_timeout_secs),
            request_timeout: Duration::from_secs(http.request_timeout_secs),
            max_connections,
        }
    }
}

/// Raises the soft limit on open files (`RLIMIT_NOFILE`) to the hard limit and returns the
/// soft limit then in force (`None` where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            // macOS refuses an unlimited hard limit as the soft one; 65536 is enough anyway.
            for target in [limit.rlim_max, limit.rlim_max.min(65_536)] {
                let raised = libc::rlimit {
                    rlim_cur: target,
                    rlim_max: limit.rlim_max,
                };
                // SAFETY: setrlimit reads one `rlimit` we own.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                    limit.rlim_cur = target;
                    break;
                }
            }
        }
        #[allow(clippy::useless_conversion)] // `rlim_t` is not `u64` on every Unix
        Some(u64::try_from(limit.rlim_cur).unwrap_or(u64::MAX))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

pub(super) fn is_out_of_descriptors(err: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
    }
    #[cfg(not(unix))]
    {
        let _ = err;
        false
    }
}

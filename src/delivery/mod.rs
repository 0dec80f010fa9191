//! The delivery engine: endpoints, the durable queue, workers that sign at send time, retries,
//! and the SSRF guard on outbound connections.

pub mod engine;
pub mod envelope;
pub mod filter;
pub mod pings;
pub mod retry;
pub mod sender;
pub mod slots;
pub mod ssrf;

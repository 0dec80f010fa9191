//! The delivery engine: endpoints, the durable queue, workers that sign at send time, retries,
//! and the SSRF guard on outbound connections.
//!
//! Two layers live here. The pure rules import only plain types:
//! [`retry`] (the schedule, `Retry-After`, when to give up), [`retention`] (what is old enough
//! to be pruned), [`filter`] (event type filters),
//! [`envelope`] (the JSON a receiver gets) and [`ssrf`] (which addresses may be reached). The
//! service — [`engine`], [`sender`] (with [`failures`], what a failed request was), [`slots`],
//! [`pings`], [`pruner`] — uses them, the store, the signing code and the encryptor, and knows
//! nothing of HTTP routing or the server.

pub mod engine;
pub mod envelope;
pub mod failures;
pub mod filter;
pub mod pings;
pub mod pruner;
pub mod retention;
pub mod retry;
pub mod sender;
pub mod slots;
pub mod ssrf;

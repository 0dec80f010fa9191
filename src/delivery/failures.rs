//! What a failed delivery request was: the class a merchant sees on the attempt (`timeout`,
//! `connection_reset`, `protocol_error`, `tls_error`, `forbidden_address`, `connection`) and
//! the reason kept with it, read off the error chain reqwest, hyper and rustls give.

use super::retry::AttemptResult;
use super::ssrf::SsrfError;

/// What a failed request was, from the most telling error in its chain.
pub fn failure(err: &reqwest::Error) -> AttemptResult {
    if err.is_timeout() {
        return AttemptResult::Timeout;
    }
    if refused_by_guard(err) {
        // The resolver has logged the addresses for the operator.
        return AttemptResult::Forbidden;
    }
    let reason = error_chain(err);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(result) = io_failure(io, &reason) {
                return result;
            }
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return AttemptResult::Tls(reason);
        }
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>() {
            if hyper.is_parse() || hyper.is_parse_status() || hyper.is_parse_too_large() {
                return AttemptResult::Protocol(reason);
            }
            if hyper.is_incomplete_message() {
                return AttemptResult::Reset(reason);
            }
        }
        source = cause.source();
    }
    AttemptResult::Connection(reason)
}

/// What an I/O error in the chain says, looking through the I/O errors it wraps: the
/// connector wraps tokio-rustls' handshake error (an I/O error around the rustls one), and
/// `source()` skips the error an `io::Error` wraps, so they are opened here.
fn io_failure(io: &std::io::Error, reason: &str) -> Option<AttemptResult> {
    let mut io = io;
    loop {
        if matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
        ) {
            return Some(AttemptResult::Reset(reason.to_owned()));
        }
        let inner = io.get_ref()?;
        if inner.downcast_ref::<rustls::Error>().is_some() {
            return Some(AttemptResult::Tls(reason.to_owned()));
        }
        io = inner.downcast_ref::<std::io::Error>()?;
    }
}

/// Whether the SSRF guard's resolver refused the request's host.
fn refused_by_guard(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(cause) = source {
        if matches!(
            cause.downcast_ref::<SsrfError>(),
            Some(SsrfError::Forbidden { .. })
        ) {
            return true;
        }
        source = cause.source();
    }
    false
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

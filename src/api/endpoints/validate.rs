//! What an endpoint may be: the bounds of each field (stated in the OpenAPI document from
//! these very constants), the URL shape, the custom headers, and the checks that refuse the
//! rest with 422.
//!
//! May use `ApiError`, the delivery rules (`delivery::{filter, sender, ssrf}`) and the
//! configuration; the handlers in [`super`] call [`validate_url`] and [`validate_body`].

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use super::EndpointBody;
use crate::api::objects::MASKED_HEADER_VALUE;
use crate::api::ApiError;
use crate::config::{MAX_ENDPOINT_IN_FLIGHT, MAX_ENDPOINT_TIMEOUT_MS};
use crate::delivery::filter::valid_pattern;
use crate::delivery::sender::is_reserved_header;
use crate::delivery::ssrf::check_literal;
use crate::keys::Mode;
use crate::state::AppState;

/// How many deliveries to one endpoint may be in flight at once (`max_in_flight`).
pub const MAX_IN_FLIGHT_RANGE: RangeInclusive<u32> = 1..=MAX_ENDPOINT_IN_FLIGHT;
/// An endpoint's request timeout (`timeout_ms`), in milliseconds: capped well below the
/// delivery lease, so a slow attempt is never claimed again while it is still under way.
pub const TIMEOUT_MS_RANGE: RangeInclusive<u32> = 100..=MAX_ENDPOINT_TIMEOUT_MS;
/// The longest endpoint URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// The most event type patterns one endpoint may filter on.
pub const MAX_EVENT_TYPES: usize = 50;
/// The most custom headers one endpoint may send.
pub const MAX_HEADERS: usize = 20;
/// The longest custom header value, in bytes (values are ASCII, so also in characters).
pub const MAX_HEADER_VALUE_LEN: usize = 1024;

/// The shape of an endpoint URL with a DNS name, checked on the URL as sent and stated as is
/// in the OpenAPI document: `http` or `https` (any case), `://`, a host name of letters,
/// digits and hyphens whose last label starts with a letter (a name ending in a number would
/// be read as an IPv4 address), an optional port up to 65535, then a path, query or fragment
/// of visible ASCII. URLs with an IP address as host are taken too (the SSRF guard decides
/// which), and nothing else: no spaces, no credentials, no host that could never resolve.
pub const URL_PATTERN: &str = concat!(
    r"^[hH][tT][tT][pP][sS]?://",
    r"([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?",
    r"(:(0*([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?)?",
    r"([/?#][!-~]*)?$",
);

pub(super) fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(code, message)
}

/// Checks a URL for the given mode.
pub fn validate_url(url: &str, mode: Mode, state: &AppState) -> Result<String, ApiError> {
    if url.len() > MAX_URL_LEN {
        return Err(invalid(
            "invalid_url",
            format!("url must be at most {MAX_URL_LEN} characters"),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| invalid("invalid_url", format!("url is not an absolute URL: {err}")))?;
    let ip_host = parsed.host_str().is_some_and(|host| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok()
    });
    if !(url_shape().is_match(url) || ip_host && url.trim() == url) {
        return Err(invalid(
            "invalid_url",
            "url must be an absolute http(s) URL with a host name (letters, digits, hyphens) or an IP address, and no spaces or credentials",
        ));
    }
    match parsed.scheme() {
        "https" => {}
        "http" if mode == Mode::Test || state.config.delivery.allow_http => {}
        "http" => {
            return Err(invalid(
                "https_required",
                "live-mode endpoints must use https://",
            ))
        }
        other => {
            return Err(invalid(
                "invalid_url",
                format!("url scheme must be https or http, not {other}"),
            ))
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "invalid_url",
            "url must not contain credentials; use endpoint headers instead",
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| invalid("invalid_url", "url has no host"))?;
    check_literal(host, state.config.delivery.allow_private_networks)
        .map_err(|err| invalid("forbidden_address", err.to_string()))?;
    Ok(parsed.to_string())
}

fn url_shape() -> &'static regex::Regex {
    static SHAPE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    SHAPE.get_or_init(|| regex::Regex::new(URL_PATTERN).expect("URL_PATTERN is a valid regex"))
}

fn validate_headers(headers: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(invalid(
            "invalid_headers",
            format!("at most {MAX_HEADERS} custom headers"),
        ));
    }
    for (name, value) in headers {
        if reqwest::header::HeaderName::try_from(name.as_str()).is_err() {
            return Err(invalid(
                "invalid_headers",
                format!("`{name}` is not a valid header name"),
            ));
        }
        if is_reserved_header(name) {
            return Err(invalid(
                "invalid_headers",
                format!("`{name}` is set by hooksign and cannot be overridden"),
            ));
        }
        if value == MASKED_HEADER_VALUE {
            // A GET answer sent back as is would overwrite the credential with the mask.
            return Err(invalid(
                "invalid_headers",
                format!("the value of `{name}` is the mask answers show; send the real value"),
            ));
        }
        // Visible ASCII, spaces and tabs: other bytes are obsolete in header values (RFC 9110
        // §5.5) and receivers read them differently.
        if value.len() > MAX_HEADER_VALUE_LEN
            || !value.is_ascii()
            || reqwest::header::HeaderValue::from_str(value).is_err()
        {
            return Err(invalid(
                "invalid_headers",
                format!("the value of `{name}` is not a valid header value (at most {MAX_HEADER_VALUE_LEN} visible ASCII characters, spaces or tabs)"),
            ));
        }
    }
    Ok(())
}

/// `max_timeout_ms` is [`DeliveryConfig::max_endpoint_timeout_ms`](crate::config::DeliveryConfig::max_endpoint_timeout_ms).
pub(super) fn validate_body(body: &EndpointBody, max_timeout_ms: u32) -> Result<(), ApiError> {
    if let Some(types) = &body.event_types {
        if types.len() > MAX_EVENT_TYPES {
            return Err(invalid(
                "invalid_event_types",
                format!("at most {MAX_EVENT_TYPES} event type patterns"),
            ));
        }
        if let Some(bad) = types.iter().find(|t| !valid_pattern(t)) {
            return Err(invalid(
                "invalid_event_types",
                format!("`{bad}` is not an event type pattern (lowercase a-z 0-9 . _ -, `*` for a whole segment)"),
            ));
        }
    }
    if body
        .max_in_flight
        .is_some_and(|n| !MAX_IN_FLIGHT_RANGE.contains(&n))
    {
        return Err(invalid(
            "invalid_max_in_flight",
            format!(
                "max_in_flight must be between {} and {}",
                MAX_IN_FLIGHT_RANGE.start(),
                MAX_IN_FLIGHT_RANGE.end()
            ),
        ));
    }
    // Capped well below the delivery lease, so a slow attempt is never claimed again while
    // it is still under way.
    if body
        .timeout_ms
        .is_some_and(|ms| !(*TIMEOUT_MS_RANGE.start()..=max_timeout_ms).contains(&ms))
    {
        return Err(invalid(
            "invalid_timeout",
            format!(
                "timeout_ms must be between {} and {max_timeout_ms}",
                TIMEOUT_MS_RANGE.start(),
            ),
        ));
    }
    if body
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
    {
        return Err(invalid(
            "invalid_description",
            format!("description must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if let Some(headers) = &body.headers {
        validate_headers(headers)?;
    }
    Ok(())
}

/// `tls_verify: false` is for test mode only: a live-mode key must not be able to send live
/// events to a receiver whose certificate nobody checks (the sender verifies live endpoints
/// whatever their row says; this is the refusal the caller sees).
pub(super) fn validate_tls_verify(body: &EndpointBody, mode: Mode) -> Result<(), ApiError> {
    if body.tls_verify == Some(false) && mode == Mode::Live {
        return Err(invalid(
            "tls_verify_test_mode_only",
            "tls_verify can be turned off only for test-mode endpoints; live-mode endpoints always verify the receiver's certificate",
        ));
    }
    Ok(())
}

//! Reading request headers: the [`HeaderSource`] trait receivers plug their header map into,
//! and the parsing of header values the verifier shares between schemes.
//!
//! Uses only `std` (always compiled, see [`crate::verify`]).

/// Where a verifier reads request headers from. Names are matched ASCII case-insensitively, as
/// HTTP requires; when a header repeats, the first occurrence is used.
///
/// Implemented for slices, arrays and `Vec`s of `(name, value)` pairs of anything `AsRef<str>`.
/// A receiver using another header map implements it in a few lines, e.g. for `http::HeaderMap`:
/// `self.get(name).and_then(|v| v.to_str().ok())`.
pub trait HeaderSource {
    /// The value of header `name`, if present and valid text.
    fn header(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for [(K, V)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(key, _)| key.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> HeaderSource for [(K, V); N] {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

/// A header's value with surrounding whitespace removed; `None` if absent or blank.
pub(super) fn non_blank<'h, H: HeaderSource + ?Sized>(
    headers: &'h H,
    name: &str,
) -> Option<&'h str> {
    headers
        .header(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Plain decimal digits only: the signed content uses the canonical form, so `+5` or `05` would
/// verify differently than they read.
pub(super) fn parse_unix_seconds(raw: &str) -> Option<i64> {
    let canonical =
        raw.bytes().all(|b| b.is_ascii_digit()) && (raw == "0" || !raw.starts_with('0'));
    if canonical {
        raw.parse().ok()
    } else {
        None
    }
}

//! The patterns the document states: names, header names (none of the daemon's own) and
//! typed ids, each written for JSON Schema validators (no `\p{…}`, no `\A`/`\z`).

use crate::delivery::sender::{RESERVED_HEADERS, RESERVED_HEADER_PREFIXES};

pub(super) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
pub(super) const NONCE: &str = "X-Nonce";

/// Characters a name may hold: anything but control characters (`char::is_control`: the Cc
/// category). Spelled out, as `\p{Cc}` means nothing to most JSON Schema validators.
pub(super) const NAME_CHAR: &str = r"[^\u0000-\u001f\u007f-\u009f]";

/// Characters a name may not consist of only: the whitespace `str::trim` removes that is not
/// already a control character.
pub(super) const NAME_BLANK: &str = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// What [`super::valid_name`] accepts: no control character, and at least one character that
/// is not blank (the length is `maxLength`).
pub(super) fn name_pattern() -> String {
    format!(r"^{NAME_CHAR}*[^\u0000-\u001f\u007f-\u009f{NAME_BLANK}]{NAME_CHAR}*$")
}

/// The characters of an HTTP header name (a token, RFC 9110 §5.6.2).
pub(super) const HEADER_TOKEN: &str = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";

/// A header name endpoints may set: an HTTP token that is none of the daemon's own headers
/// (in any case), as [`is_reserved_header`] decides.
pub(super) fn header_name_pattern() -> String {
    let (exact, prefixes) = reserved_header_patterns();
    format!("^(?!({exact})$)(?!{prefixes}){HEADER_TOKEN}$")
}

/// The reserved names and the reserved prefixes, each as an alternation matching any case.
pub(super) fn reserved_header_patterns() -> (String, String) {
    let any_case = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                } else {
                    regex_escape(c)
                }
            })
            .collect()
    };
    let join = |names: &[&str]| {
        names
            .iter()
            .map(|n| any_case(n))
            .collect::<Vec<_>>()
            .join("|")
    };
    (join(&RESERVED_HEADERS), join(&RESERVED_HEADER_PREFIXES))
}

pub(super) fn regex_escape(c: char) -> String {
    if "\\^$.|?*+()[]{}-".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// The shape of an id of one kind: its prefix and 26 base32 characters (either case).
pub(super) fn id_pattern(prefix: &str) -> String {
    format!("^{prefix}[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{{25}}$")
}

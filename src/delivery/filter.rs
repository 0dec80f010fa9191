//! Event types and endpoint filters: `order.created` matches `order.created`, `order.*`
//! (one segment per `*`) and `*`; an empty filter matches everything.

/// The longest event type or filter pattern, in characters.
pub const MAX_EVENT_TYPE_LEN: usize = 100;

/// Whether an event type is well formed: 1–100 characters of `[a-z0-9._-]`, no empty segment.
pub fn valid_event_type(event_type: &str) -> bool {
    (1..=MAX_EVENT_TYPE_LEN).contains(&event_type.len())
        && event_type.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && event_type.split('.').all(|segment| !segment.is_empty())
}

/// Whether a filter pattern is well formed: an event type whose segments may be `*`.
pub fn valid_pattern(pattern: &str) -> bool {
    (1..=MAX_EVENT_TYPE_LEN).contains(&pattern.len())
        && pattern
            .split('.')
            .all(|segment| segment == "*" || (!segment.is_empty() && valid_event_type(segment)))
}

/// Whether `event_type` matches `pattern`, segment by segment.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    let mut wanted = pattern.split('.');
    let mut actual = event_type.split('.');
    loop {
        match (wanted.next(), actual.next()) {
            (None, None) => return true,
            (Some("*"), Some(_)) => {}
            (Some(w), Some(a)) if w == a => {}
            _ => return false,
        }
    }
}

/// Whether an endpoint with `filter` receives `event_type` (empty = everything).
pub fn accepts(filter: &[String], event_type: &str) -> bool {
    filter.is_empty()
        || filter
            .iter()
            .any(|pattern| pattern == "*" || matches(pattern, event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_segment() {
        assert!(matches("order.*", "order.created"));
        assert!(!matches("order.*", "order.created.late"));
        assert!(!matches("order.*", "refund.created"));
        assert!(matches("*.created", "order.created"));
        assert!(accepts(&[], "anything"));
        assert!(accepts(&["*".into()], "a.b.c"));
        assert!(accepts(
            &["refund.*".into(), "order.created".into()],
            "order.created"
        ));
        assert!(!accepts(&["refund.*".into()], "order.created"));
    }

    #[test]
    fn types_and_patterns_are_validated() {
        for good in ["order.created", "a", "x-1_2.y"] {
            assert!(valid_event_type(good), "{good}");
        }
        for bad in [
            "",
            "Order.Created",
            "order..created",
            "order.",
            "with space",
            &"a".repeat(101),
        ] {
            assert!(!valid_event_type(bad), "{bad}");
        }
        assert!(valid_pattern("order.*"));
        assert!(valid_pattern("*"));
        assert!(!valid_pattern("order.**"));
        assert!(!valid_pattern("order.cre*"));
    }
}

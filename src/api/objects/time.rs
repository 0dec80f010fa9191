//! An instant as every API object shows it: RFC 3339 in UTC with milliseconds
//! ([`crate::clock::rfc3339`]), `null` when an optional one is absent. The objects' fields
//! carry this type, so none repeats how a time is written.

use serde::{Serialize, Serializer};

use crate::clock::{serde_rfc3339, Timestamp};

/// A time in an API answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub Timestamp);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_rfc3339::serialize(&self.0, s)
    }
}

impl From<Timestamp> for Time {
    fn from(at: Timestamp) -> Self {
        Time(at)
    }
}

#[cfg(test)]
mod tests {
    use super::Time;
    use crate::clock::from_millis;

    #[test]
    fn times_are_written_as_the_clock_writes_them() {
        let at = from_millis(1_700_000_000_123);
        assert_eq!(
            serde_json::to_string(&Time(at)).unwrap(),
            format!("\"{}\"", crate::clock::rfc3339(at))
        );
        assert_eq!(serde_json::to_string(&None::<Time>).unwrap(), "null");
    }
}

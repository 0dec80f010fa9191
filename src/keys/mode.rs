//! Live and test mode: fully isolated halves of every merchant.

use std::fmt;
use std::str::FromStr;

/// Which half of a merchant a key, secret or event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Live,
    Test,
}

impl Mode {
    /// Both modes, live first.
    pub const ALL: [Mode; 2] = [Mode::Live, Mode::Test];

    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Live => "live",
            Mode::Test => "test",
        }
    }

    /// `livemode` as every API object reports it.
    pub fn is_live(self) -> bool {
        self == Mode::Live
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "live" => Ok(Mode::Live),
            "test" => Ok(Mode::Test),
            other => Err(format!("unknown mode `{other}` (expected live or test)")),
        }
    }
}

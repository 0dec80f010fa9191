//! The [`Scheme`] a receiver verifies, and the name parsing it shares with the daemon's own
//! `crate::signing::Scheme` (through `scheme_names!`), so both read and print names alike.
//!
//! Uses only `std` (always compiled, see [`crate::verify`]).

/// Implements `Display` (the name `as_str` gives) and `FromStr` (exactly one of the names in
/// `ALL`, else the error) for a scheme enum, and defines that error: a public `$unknown(String)`
/// tuple struct, with the given doc comment, displayed as `$message` (which formats the name).
macro_rules! scheme_names {
    ($scheme:ident, $(#[$doc:meta])* $unknown:ident, $message:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $unknown(pub String);

        impl ::std::fmt::Display for $unknown {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, $message, self.0)
            }
        }

        impl ::std::error::Error for $unknown {}

        impl ::std::fmt::Display for $scheme {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $scheme {
            type Err = $unknown;

            /// The exact lowercase names only, as serde and `as_str` spell them.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|scheme| scheme.as_str() == s)
                    .ok_or_else(|| $unknown(s.to_owned()))
            }
        }
    };
}
pub(crate) use scheme_names;

/// The signature scheme a receiver verifies: the one its hooksign endpoint is configured with.
///
/// Parsed from `bolt` or `standard` only. There is no `auto`: a scheme chosen from the headers
/// present is chosen by whoever sent the request (see [`crate::verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `X-Bolt-Hmac-Sha256` (and `-Pending`): HMAC of the body alone, no timestamp.
    Bolt,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature`, with the
    /// timestamp checked against the receiver's clock.
    Standard,
}

impl Scheme {
    /// Both schemes, in the order their names are listed in messages.
    pub const ALL: [Scheme; 2] = [Scheme::Bolt, Scheme::Standard];

    /// The lowercase name, as hooksign's endpoints and command lines spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Bolt => "bolt",
            Scheme::Standard => "standard",
        }
    }
}

// Through the re-export in `verify`, the path `crate::signing` uses too.
super::scheme_names!(
    Scheme,
    /// A scheme name other than `bolt` or `standard`.
    UnknownScheme,
    "unknown scheme {:?}: expected bolt or standard, the scheme of your endpoint"
);

//! The API token format: `hk_live_` / `hk_test_` / `hk_op_` + 32 random base62 characters +
//! a 6-character base62 CRC-32 checksum of everything before it.
//!
//! The checksum lets us refuse a typo or a truncated token before any database lookup, and
//! the fixed prefix lets secret scanners recognise leaked tokens. Only the SHA-256 of a token is
//! ever stored.

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::Mode;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
const DISPLAY_LEN: usize = 6;

/// Whose token it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A merchant's key in one mode.
    Merchant(Mode),
    /// An operator key: manages merchants only.
    Operator,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Merchant(Mode::Live) => "hk_live_",
            TokenKind::Merchant(Mode::Test) => "hk_test_",
            TokenKind::Operator => "hk_op_",
        }
    }

    fn from_token(text: &str) -> Option<(Self, &str)> {
        [
            TokenKind::Merchant(Mode::Live),
            TokenKind::Merchant(Mode::Test),
            TokenKind::Operator,
        ]
        .into_iter()
        .find_map(|kind| text.strip_prefix(kind.prefix()).map(|rest| (kind, rest)))
    }
}

/// Why a presented token was refused without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("unknown token prefix")]
    Prefix,
    #[error("wrong token length")]
    Length,
    #[error("token contains characters outside base62")]
    Alphabet,
    #[error("token checksum does not match (typo or truncated token?)")]
    Checksum,
}

/// A well-formed API token. Its `Debug` is redacted and its memory is wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ApiToken {
    text: String,
    #[zeroize(skip)]
    kind: TokenKind,
}

impl ApiToken {
    /// A fresh random token of `kind`.
    pub fn generate(kind: TokenKind) -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut text = String::with_capacity(kind.prefix().len() + RANDOM_LEN + CHECKSUM_LEN);
        text.push_str(kind.prefix());
        for _ in 0..RANDOM_LEN {
            text.push(BASE62[rng.gen_range(0..BASE62.len())] as char);
        }
        let checksum = checksum(&text);
        text.push_str(&checksum);
        Self { text, kind }
    }

    /// Checks prefix, length, alphabet and checksum. No I/O.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let (kind, rest) = TokenKind::from_token(text).ok_or(TokenError::Prefix)?;
        if rest.len() != RANDOM_LEN + CHECKSUM_LEN {
            return Err(TokenError::Length);
        }
        if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TokenError::Alphabet);
        }
        let (signed, sum) = text.split_at(text.len() - CHECKSUM_LEN);
        if checksum(signed) != sum {
            return Err(TokenError::Checksum);
        }
        Ok(Self {
            text: text.to_owned(),
            kind,
        })
    }

    /// Live, test or operator.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The raw token. Only the create response may show it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// Lowercase hex SHA-256 of the whole token: what the database stores and looks up.
    pub fn hash(&self) -> String {
        hash_token(&self.text)
    }

    /// The mode prefix and the first six random characters, e.g. `hk_live_Q7fK2m`.
    pub fn display_prefix(&self) -> String {
        self.text[..self.kind.prefix().len() + DISPLAY_LEN].to_owned()
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiToken({}…)", self.display_prefix())
    }
}

/// Lowercase hex SHA-256 of a token's text.
pub fn hash_token(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn checksum(text: &str) -> String {
    let mut value = crc32fast::hash(text.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/api-keys.json"
        ));
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn every_vector_case_matches() {
        let cases = vectors()["cases"].as_array().unwrap().clone();
        assert!(!cases.is_empty());
        for case in cases {
            let text = case["token"].as_str().unwrap();
            assert_eq!(
                hash_token(text),
                case["sha256_hex"].as_str().unwrap(),
                "{text}"
            );
            let parsed = ApiToken::parse(text);
            if case["checksum_valid"].as_bool().unwrap() {
                let token = parsed.unwrap();
                let mode: Mode = case["mode"].as_str().unwrap().parse().unwrap();
                assert_eq!(token.kind(), TokenKind::Merchant(mode));
                assert_eq!(
                    token.display_prefix(),
                    case["display_prefix"].as_str().unwrap()
                );
                assert_eq!(token.hash(), case["sha256_hex"].as_str().unwrap());
            } else {
                assert_eq!(parsed.unwrap_err(), TokenError::Checksum, "{text}");
            }
        }
    }

    #[test]
    fn generated_tokens_parse_back() {
        for kind in [
            TokenKind::Merchant(Mode::Live),
            TokenKind::Merchant(Mode::Test),
            TokenKind::Operator,
        ] {
            let token = ApiToken::generate(kind);
            let parsed = ApiToken::parse(token.expose()).unwrap();
            assert_eq!(parsed.kind(), kind);
            assert_eq!(parsed.hash(), token.hash());
        }
    }

    #[test]
    fn truncated_and_garbled_tokens_are_refused() {
        let token = ApiToken::generate(TokenKind::Merchant(Mode::Live));
        let text = token.expose();
        assert_eq!(
            ApiToken::parse(&text[..text.len() - 1]).unwrap_err(),
            TokenError::Length
        );
        assert_eq!(
            ApiToken::parse("sk_live_abc").unwrap_err(),
            TokenError::Prefix
        );
        let mut garbled = text.to_owned();
        garbled.replace_range(10..11, "-");
        assert_eq!(ApiToken::parse(&garbled).unwrap_err(), TokenError::Alphabet);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let token = ApiToken::generate(TokenKind::Operator);
        let debug = format!("{token:?}");
        assert!(!debug.contains(token.expose()));
    }
}

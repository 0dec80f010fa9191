//! Where the offline commands `sign` and `verify` read their secrets from: flags, files or
//! environment variables, and the `Debug`-redacted [`SecretArg`]. Uses only `std`, `clap` and
//! `anyhow`.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

/// Holds `sign`'s active secret: `HOOKSIGN_SIGNING_SECRET`.
pub const SIGNING_SECRET_ENV: &str = "HOOKSIGN_SIGNING_SECRET";
/// Holds `sign`'s pending secret: `HOOKSIGN_PENDING_SECRET`.
pub const PENDING_SECRET_ENV: &str = "HOOKSIGN_PENDING_SECRET";
/// Holds the secrets `verify` (and the example receivers) accept, comma-separated:
/// `HOOKSIGN_VERIFY_SECRETS`. Not `HOOKSIGN_SECRETS`, which is the daemon's `[secrets]`
/// configuration section and would stop `hooksign serve` in the same shell.
pub const VERIFY_SECRETS_ENV: &str = "HOOKSIGN_VERIFY_SECRETS";

/// A secret typed on the command line. Kept for scripts and throwaway test secrets; `--help`
/// says it is visible to other users. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretArg(String);

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretArg([redacted])")
    }
}

/// Where `hooksign sign` reads its secrets from.
#[derive(Debug, Args)]
pub struct SignSecrets {
    /// File holding the active signing secret (64 hex characters, or whsec_…). Without it (and
    /// without --secret), $HOOKSIGN_SIGNING_SECRET is read.
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// The active signing secret itself. VISIBLE TO OTHER USERS (ps, /proc) and kept in shell
    /// history: prefer --secret-file or $HOOKSIGN_SIGNING_SECRET.
    #[arg(long, value_name = "SECRET", conflicts_with = "secret_file")]
    secret: Option<SecretArg>,
    /// File holding a pending secret: adds X-Bolt-Hmac-Sha256-Pending (or a second v1
    /// signature). Without it (and without --pending-secret), $HOOKSIGN_PENDING_SECRET is read
    /// if set.
    #[arg(long, value_name = "PATH")]
    pending_secret_file: Option<PathBuf>,
    /// The pending secret itself. VISIBLE TO OTHER USERS (ps, /proc) and kept in shell
    /// history: prefer --pending-secret-file or $HOOKSIGN_PENDING_SECRET.
    #[arg(long, value_name = "SECRET", conflicts_with = "pending_secret_file")]
    pending_secret: Option<SecretArg>,
}

impl SignSecrets {
    /// The active secret and, if one is given, the pending one.
    pub(super) fn resolve(self) -> anyhow::Result<(String, Option<String>)> {
        let active =
            one_secret(self.secret, self.secret_file, SIGNING_SECRET_ENV)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "no signing secret: give --secret-file PATH or set {SIGNING_SECRET_ENV} \
                     (--secret also works, but other users can read it in ps)"
                )
            })?;
        let pending = one_secret(
            self.pending_secret,
            self.pending_secret_file,
            PENDING_SECRET_ENV,
        )?;
        Ok((active, pending))
    }
}

/// Where `hooksign verify` reads the secrets it accepts from.
#[derive(Debug, Args)]
pub struct VerifySecrets {
    /// File holding secrets the receiver accepts, one per line (or separated by commas);
    /// repeatable. Without any (and without --secret), $HOOKSIGN_VERIFY_SECRETS is read:
    /// secrets separated by commas, e.g. "$OLD,$NEW" during a rotation.
    #[arg(long = "secret-file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// A secret the receiver accepts; repeat for old and new during a rotation. VISIBLE TO
    /// OTHER USERS (ps, /proc) and kept in shell history: prefer --secret-file or
    /// $HOOKSIGN_VERIFY_SECRETS.
    #[arg(long = "secret", value_name = "SECRET")]
    secrets: Vec<SecretArg>,
}

impl VerifySecrets {
    /// Every secret given by flag and file, else those in the environment variable.
    pub(super) fn resolve(self) -> anyhow::Result<Vec<String>> {
        let mut secrets: Vec<String> = self.secrets.into_iter().map(|s| s.0).collect();
        for path in &self.files {
            secrets.extend(read_secret_file(path)?);
        }
        if secrets.is_empty() {
            secrets = env_secrets(VERIFY_SECRETS_ENV)?;
        }
        anyhow::ensure!(
            !secrets.is_empty(),
            "no secrets to verify with: give --secret-file PATH or set {VERIFY_SECRETS_ENV} \
             (--secret also works, but other users can read it in ps)"
        );
        Ok(secrets)
    }
}

/// Splits a list of secrets at commas and whitespace, neither of which occurs in a secret.
fn split_secrets(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The secrets in `path`; errors name the file, never its content.
fn read_secret_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret file {}", path.display()))?;
    let secrets = split_secrets(&text);
    anyhow::ensure!(
        !secrets.is_empty(),
        "the secret file {} is empty",
        path.display()
    );
    Ok(secrets)
}

/// The secrets in environment variable `name`; none when it is unset or blank.
fn env_secrets(name: &str) -> anyhow::Result<Vec<String>> {
    match std::env::var(name) {
        Ok(text) => Ok(split_secrets(&text)),
        Err(std::env::VarError::NotPresent) => Ok(Vec::new()),
        Err(std::env::VarError::NotUnicode(_)) => anyhow::bail!("{name} is not valid UTF-8"),
    }
}

/// One secret: the flag's, else the file's, else the environment variable's; `None` when
/// none of them gives one.
fn one_secret(
    flag: Option<SecretArg>,
    file: Option<PathBuf>,
    env: &str,
) -> anyhow::Result<Option<String>> {
    let (mut secrets, source) = match (flag, file) {
        (Some(flag), _) => return Ok(Some(flag.0)),
        (None, Some(path)) => (read_secret_file(&path)?, path.display().to_string()),
        (None, None) => (env_secrets(env)?, env.to_owned()),
    };
    anyhow::ensure!(
        secrets.len() <= 1,
        "{source} holds {} secrets; give one (a pending secret has its own option)",
        secrets.len()
    );
    Ok(secrets.pop())
}

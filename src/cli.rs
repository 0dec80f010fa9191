//! The `hooksign` command line. `main.rs` calls [`main`]; each subcommand loads the layered
//! configuration, applies its flags on top, and calls into the library.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use figment::providers::Serialized;

use crate::config::{Config, LogFormat};
use crate::provision::{create_merchant, create_operator_key, Actor};
use crate::secrets::{load_master_key, Encryptor};
use crate::server::{shutdown_signal, App};

/// hooksign: webhook signing and secret-rotation daemon.
///
/// Configuration is read from defaults, then hooksign.toml (or --config FILE), then HOOKSIGN_*
/// environment variables (nested keys joined with `__`, e.g. HOOKSIGN_DATABASE__URL), then the
/// flags given here. `hooksign config show` prints the result.
#[derive(Debug, Parser)]
#[command(
    name = "hooksign",
    version,
    about,
    long_about,
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (TOML). Without it, ./hooksign.toml is read when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Database URL: sqlite://PATH (default sqlite://hooksign-data/hooksign.db) or postgres://…
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the admin API on --listen (default 127.0.0.1:8080).
    ///
    /// Migrations are applied at start. On an empty database an operator key is created and
    /// written to <data_dir>/operator.key (mode 0600); use it to create merchants. Stops
    /// gracefully on SIGTERM or ctrl-c.
    Serve {
        /// Address to listen on, e.g. 0.0.0.0:8080.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// Apply database migrations and exit (serve also does this at start). Needs the master
    /// key, like serve: upgrading to keyed audit chains re-chains the old log once.
    Migrate,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage operator keys (they create and manage merchants).
    #[command(subcommand, name = "operator-key")]
    OperatorKey(OperatorKeyCommand),
    /// Manage merchants from the command line.
    #[command(subcommand)]
    Merchant(MerchantCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Sign a body read from standard input and print the headers to send.
    ///
    /// The active secret comes from --secret-file, else from $HOOKSIGN_SIGNING_SECRET (the
    /// pending one from --pending-secret-file or $HOOKSIGN_PENDING_SECRET). A secret given
    /// with --secret is visible to other users of the machine (ps, /proc) and stays in shell
    /// history.
    ///
    /// Example: `hooksign sign --secret-file secret.txt --scheme bolt < body.json`
    Sign {
        #[command(flatten)]
        secrets: SignSecrets,
        /// bolt, standard or both.
        #[arg(long, default_value = "bolt")]
        scheme: crate::signing::Scheme,
        /// webhook-id for the standard scheme.
        #[arg(long, default_value = "msg_cli")]
        id: String,
        /// webhook-timestamp for the standard scheme (default: now).
        #[arg(long)]
        timestamp: Option<i64>,
    },
    /// Verify a body read from standard input against signature headers; exits 0 when valid.
    ///
    /// The secrets come from every --secret-file (and --secret) given, else from
    /// $HOOKSIGN_VERIFY_SECRETS (comma-separated). A secret given with --secret is visible to
    /// other users of the machine (ps, /proc) and stays in shell history.
    ///
    /// Example: `HOOKSIGN_VERIFY_SECRETS="$OLD,$NEW" hooksign verify --scheme bolt --header "X-Bolt-Hmac-Sha256: …" < body.json`
    Verify {
        /// The scheme the endpoint uses: bolt or standard. Required, and only that scheme's
        /// headers are checked: guessing it from the headers given would let a request stripped
        /// of its webhook-* headers pass as bolt, without the timestamp check.
        #[arg(long, value_name = "bolt|standard")]
        scheme: crate::verify::Scheme,
        #[command(flatten)]
        secrets: VerifySecrets,
        /// A received header as `Name: value`; repeat for each.
        #[arg(long = "header", value_name = "NAME: VALUE", required = true)]
        headers: Vec<String>,
        /// Check the standard-webhooks timestamp against this Unix time (default: now).
        #[arg(long)]
        now: Option<i64>,
    },
    /// Re-encrypt every signing secret and every other sealed row (the audit key, endpoint
    /// headers, stored idempotent responses) under a new master key. Safe to run while daemons run
    /// (give them the new key as master_key and the old one as master_key_previous first) and
    /// safe to run again if interrupted.
    Rekey {
        /// File holding the new master key (base64 of 32 bytes).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

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
    fn resolve(self) -> anyhow::Result<(String, Option<String>)> {
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
    fn resolve(self) -> anyhow::Result<Vec<String>> {
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

/// `hooksign config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (TOML) with secrets redacted.
    Show,
}

/// `hooksign operator-key …`
#[derive(Debug, Subcommand)]
pub enum OperatorKeyCommand {
    /// Create an operator key and print it once (store it now: only its hash is kept).
    Create {
        /// A label to recognise the key by.
        #[arg(long, default_value = "operator key")]
        name: String,
    },
}

/// `hooksign merchant …`
#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Create a merchant; prints its id and its first live and test API keys (shown once).
    Create {
        /// The merchant's name.
        #[arg(long)]
        name: String,
    },
}

/// `hooksign audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute every audit chain (HMAC-SHA256 under the audit key, which the master key
    /// unlocks) and check each ends at its recorded head; exits non-zero at the first broken,
    /// altered, unkeyed or missing entry.
    ///
    /// Deleting the last entries together with the recorded head is only found against a head
    /// kept outside the database: pass the lines `hooksign audit head` printed earlier.
    Verify {
        /// A head recorded earlier, as `CHAIN=HASH` (a line of `hooksign audit head`); fails
        /// unless that chain still holds the entry with this hash. Repeat for several chains.
        #[arg(long = "expect-head", value_name = "CHAIN=HASH")]
        expect_heads: Vec<String>,
    },
    /// Verify every chain, then print each chain's latest hash as `CHAIN=HASH`, one line per
    /// chain, for anchoring outside the database (a ticket, a log, another system).
    Head,
}

/// Parses arguments, runs the command, and turns errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("hooksign: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hooksign: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli, listen: Option<&str>) -> anyhow::Result<Config> {
    if let Some(path) = &cli.config {
        anyhow::ensure!(
            path.exists(),
            "configuration file {} does not exist",
            path.display()
        );
    }
    let mut figment = Config::figment(cli.config.as_deref());
    if let Some(format) = cli.log_format {
        figment = figment.merge(Serialized::default("log.format", format));
    }
    if let Some(url) = &cli.database_url {
        figment = figment.merge(Serialized::default("database.url", url));
    }
    if let Some(listen) = listen {
        figment = figment.merge(Serialized::default("listen", listen));
    }
    Ok(Config::from_figment(figment)?)
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let listen = match &cli.command {
        Command::Serve { listen } => listen.as_deref(),
        _ => None,
    };
    if matches!(cli.command, Command::Sign { .. } | Command::Verify { .. }) {
        // Offline commands: no configuration, no database.
        return match cli.command {
            Command::Sign {
                secrets,
                scheme,
                id,
                timestamp,
            } => {
                let (active, pending) = secrets.resolve()?;
                sign(&active, pending.as_deref(), scheme, &id, timestamp)
            }
            Command::Verify {
                scheme,
                secrets,
                headers,
                now,
            } => verify(scheme, &secrets.resolve()?, &headers, now),
            _ => unreachable!("matched above"),
        };
    }
    let config = load_config(&cli, listen)?;
    crate::telemetry::init_logging(config.log.format, &config.log.filter);
    match cli.command {
        Command::Serve { .. } => {
            let app = App::build(config).await?;
            app.run(shutdown_signal()).await?;
        }
        Command::Migrate => {
            let (store, _) = open_store(&config).await?;
            println!("migrations applied ({})", store.backend());
        }
        Command::Config(ConfigCommand::Show) => print!("{}", config.to_redacted_toml()),
        Command::OperatorKey(OperatorKeyCommand::Create { name }) => {
            let (store, _) = open_store(&config).await?;
            let (key, token) =
                create_operator_key(store.as_ref(), &name, Actor::default(), chrono::Utc::now())
                    .await?;
            eprintln!(
                "created operator key {} ({}); it is shown once:",
                key.id, key.display_prefix
            );
            println!("{}", token.expose());
        }
        Command::Merchant(MerchantCommand::Create { name }) => {
            let (store, encryptor) = open_store(&config).await?;
            let created = create_merchant(
                store.as_ref(),
                &encryptor,
                name.trim(),
                Actor::default(),
                chrono::Utc::now(),
            )
            .await?;
            println!("merchant {}", created.merchant.id);
            for (key, token) in &created.keys {
                println!("{} key {}: {}", key.kind.as_str(), key.id, token.expose());
            }
            eprintln!("the API keys above are shown once; store them now");
        }
        Command::Sign { .. } | Command::Verify { .. } => {
            unreachable!("handled before loading configuration")
        }
        Command::Rekey { new_key_file } => return rekey(&config, &new_key_file).await,
        Command::Audit(AuditCommand::Verify { expect_heads }) => {
            return audit_verify(&config, &expect_heads, false).await;
        }
        Command::Audit(AuditCommand::Head) => return audit_verify(&config, &[], true).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens the database with the master key (and `master_key_previous`) loaded.
async fn open_store(
    config: &Config,
) -> anyhow::Result<(
    std::sync::Arc<dyn crate::store::Store>,
    std::sync::Arc<Encryptor>,
)> {
    let (master_key, _) = load_master_key(config)?;
    let previous: Vec<_> = crate::secrets::load_previous_master_key(config)?
        .into_iter()
        .collect();
    let encryptor = std::sync::Arc::new(Encryptor::new(&master_key).with_older(&previous));
    let store = crate::store::connect(config, encryptor.clone()).await?;
    Ok((store, encryptor))
}

/// `audit verify` (checking `expect_heads` too) or, with `print_heads`, `audit head`.
async fn audit_verify(
    config: &Config,
    expect_heads: &[String],
    print_heads: bool,
) -> anyhow::Result<ExitCode> {
    let mut expected = Vec::new();
    for text in expect_heads {
        let (chain, hash) = text
            .split_once('=')
            .filter(|(chain, hash)| !chain.is_empty() && !hash.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--expect-head takes CHAIN=HASH, got {text:?}"))?;
        expected.push((chain.trim().to_owned(), hash.trim().to_ascii_lowercase()));
    }
    let (store, _) = open_store(config).await?;
    let chains = store.audit_chains().await?;
    let mut total = 0;
    let mut heads = Vec::new();
    for chain in &chains {
        let entries = match crate::audit::verify_stored_chain(store.as_ref(), chain).await {
            Ok(entries) => entries,
            Err(crate::audit::VerifyError::Chain(err)) => {
                eprintln!("audit log BROKEN: {err}");
                return Ok(ExitCode::FAILURE);
            }
            Err(crate::audit::VerifyError::Store(err)) => return Err(err.into()),
        };
        for (_, hash) in expected.iter().filter(|(name, _)| name == chain) {
            if let Err(err) = crate::audit::check_expected_head(chain, &entries, hash) {
                eprintln!("audit log BROKEN: {err}");
                return Ok(ExitCode::FAILURE);
            }
        }
        total += entries.len();
        if let Some(last) = entries.last() {
            heads.push(format!("{chain}={}", last.hash));
        }
    }
    if let Some((chain, _)) = expected.iter().find(|(name, _)| !chains.contains(name)) {
        eprintln!("audit log BROKEN: chain {chain} (from --expect-head) has no entries");
        return Ok(ExitCode::FAILURE);
    }
    if print_heads {
        for line in &heads {
            println!("{line}");
        }
        eprintln!(
            "{} chains verified ({total} entries); keep these lines outside the database and check later with `hooksign audit verify --expect-head CHAIN=HASH`",
            heads.len()
        );
    } else {
        println!(
            "audit log intact: {total} entries verified{}",
            if expected.is_empty() {
                String::new()
            } else {
                format!(", {} expected heads found", expected.len())
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads all of standard input.
fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
    Ok(body)
}

/// The key bytes of a secret given as 64 hex characters or `whsec_…`.
fn secret_key(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    if let Some(encoded) = text.strip_prefix("whsec_") {
        // Not the decoder's message: it would quote a character of the secret.
        return base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| anyhow::anyhow!("whsec_ must be followed by base64"));
    }
    let secret = crate::secrets::SigningSecret::parse(text)
        .ok_or_else(|| anyhow::anyhow!("a secret is 64 lowercase hex characters or whsec_…"))?;
    Ok(secret.key().to_vec())
}

fn sign(
    secret: &str,
    pending: Option<&str>,
    scheme: crate::signing::Scheme,
    id: &str,
    timestamp: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let active = secret_key(secret).context("the active secret")?;
    let pending = pending
        .map(secret_key)
        .transpose()
        .context("the pending secret")?;
    let body = read_stdin()?;
    let keys = crate::signing::SigningKeys {
        active: &active,
        pending: pending.as_deref(),
    };
    let timestamp = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp());
    for (name, value) in crate::signing::signature_headers(scheme, &keys, &body, id, timestamp) {
        println!("{name}: {value}");
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(
    scheme: crate::verify::Scheme,
    secrets: &[String],
    headers: &[String],
    now: Option<i64>,
) -> anyhow::Result<ExitCode> {
    let verifier = crate::verify::Verifier::new(secrets)?;
    let mut pairs = Vec::new();
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--header takes `Name: value`, got {header:?}"))?;
        pairs.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let body = read_stdin()?;
    let now = now.unwrap_or_else(|| chrono::Utc::now().timestamp());
    match verifier.verify(scheme, pairs.as_slice(), &body, now) {
        Ok(matched) => {
            println!(
                "valid: secret #{} matched ({:?} header)",
                matched.secret_index + 1,
                matched.header
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(reason) => {
            eprintln!("invalid: {reason}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn rekey(config: &Config, new_key_file: &std::path::Path) -> anyhow::Result<ExitCode> {
    use crate::secrets::{load_previous_master_key, read_key_file};
    let (current, _) = load_master_key(config)?;
    let target = read_key_file(new_key_file)?;
    let known: Vec<_> = std::iter::once(current)
        .chain(load_previous_master_key(config)?)
        .collect();
    let opener = std::sync::Arc::new(Encryptor::new(&target).with_older(&known));
    let sealer = Encryptor::new(&target);
    let store = crate::store::connect(config, opener.clone()).await?;
    let mut resealed = 0;
    let mut skipped = 0;
    for key in &known {
        if key.id() == target.id() {
            continue;
        }
        for row in store.secrets_sealed_with(key.id()).await? {
            let open = crate::secrets::keyring::open_row(&opener, &row)?;
            let aad = crate::secrets::SecretAad {
                secret_id: row.id,
                merchant_id: row.merchant_id,
                mode: row.mode,
            };
            let sealed = sealer.seal(&open.secret, &aad);
            if store
                .reseal_secret(row.id, &row.key_id, sealer.key_id(), &sealed)
                .await?
            {
                resealed += 1;
            } else {
                skipped += 1; // changed or destroyed meanwhile; a re-run picks up the rest
            }
        }
    }
    let rows = store.reseal_rows(&sealer).await?;
    println!(
        "re-encrypted {resealed} signing secrets under {} ({skipped} changed meanwhile)",
        target.id()
    );
    println!(
        "re-encrypted {} audit keys, {} endpoint header sets and {} stored idempotent responses ({} unreadable, left to expire)",
        rows.audit_keys, rows.endpoint_headers, rows.idempotent_responses, rows.unreadable
    );
    println!("next: set master_key to the new key on every instance, keeping the old one as master_key_previous until all have restarted");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}

//! The `hooksign` command line. `main.rs` calls [`main`]; each subcommand loads the layered
//! configuration, applies its flags on top, and calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    /// Example: `hooksign sign --secret $SECRET --scheme bolt < body.json`
    Sign {
        /// The active signing secret (64 hex characters, or whsec_…).
        #[arg(long, value_name = "SECRET")]
        secret: String,
        /// A pending secret: adds X-Bolt-Hmac-Sha256-Pending (or a second v1 signature).
        #[arg(long, value_name = "SECRET")]
        pending_secret: Option<String>,
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
    /// Example: `hooksign verify --secret $OLD --secret $NEW --header "X-Bolt-Hmac-Sha256: …" < body.json`
    Verify {
        /// A secret the receiver accepts; repeat for old and new during a rotation.
        #[arg(long = "secret", value_name = "SECRET", required = true)]
        secrets: Vec<String>,
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
                secret,
                pending_secret,
                scheme,
                id,
                timestamp,
            } => sign(&secret, pending_secret.as_deref(), scheme, &id, timestamp),
            Command::Verify {
                secrets,
                headers,
                now,
            } => verify(&secrets, &headers, now),
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
        return Ok(base64::engine::general_purpose::STANDARD.decode(encoded)?);
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
    let active = secret_key(secret)?;
    let pending = pending.map(secret_key).transpose()?;
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

fn verify(secrets: &[String], headers: &[String], now: Option<i64>) -> anyhow::Result<ExitCode> {
    let verifier = crate::verify::Verifier::new(secrets)?;
    let mut pairs = Vec::new();
    for header in headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--header takes `Name: value`, got {header:?}"))?;
        pairs.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let body = read_stdin()?;
    let standard = pairs
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(crate::verify::WEBHOOK_SIGNATURE));
    let outcome = if standard {
        let now = now.unwrap_or_else(|| chrono::Utc::now().timestamp());
        verifier.verify_standard(pairs.as_slice(), &body, now)
    } else {
        verifier.verify_bolt(pairs.as_slice(), &body)
    };
    match outcome {
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

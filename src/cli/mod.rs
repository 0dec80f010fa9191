//! The `hooksign` command line. `main.rs` calls [`main`]; each subcommand loads the layered
//! configuration, applies its flags on top, and calls into the library.
//!
//! Layout: this file holds the arguments (clap) and the dispatch; `secrets` reads the offline
//! commands' secrets, `offline` runs `sign` and `verify`, `database` the commands that open the
//! store, `prune` the retention pass. Entry layer: may use every module of the crate.

mod database;
mod offline;
mod prune;
mod secret_args;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use figment::providers::Serialized;

use crate::config::{Config, LogFormat};
use crate::provision::{create_merchant, create_operator_key, Actor};
use crate::server::{shutdown_signal, App};
use database::{audit_verify, backup, open_store, rekey};
use offline::{sign, verify};
pub use secret_args::{
    SecretArg, SignSecrets, VerifySecrets, PENDING_SECRET_ENV, SIGNING_SECRET_ENV,
    VERIFY_SECRETS_ENV,
};

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
    /// Copy the SQLite database to a new file while the daemon keeps running: a consistent
    /// snapshot (`VACUUM INTO`), created 0600. The copy's secrets are sealed under the master
    /// key: back that key up too, separately. (PostgreSQL: use `pg_dump`.)
    Backup {
        /// The file to write; it must not exist.
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
    },
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
    /// Run one retention pass now (the daemon runs one every `retention.interval_secs`):
    /// removes delivered and failed deliveries and their attempts past their window, events no
    /// delivery refers to, the history of deleted endpoints and, with `retention.audit_days`,
    /// the oldest audit entries (the chain stays verifiable). Prints the rows removed per table.
    Prune {
        /// Print what would be removed, per table, and change nothing.
        #[arg(long)]
        dry_run: bool,
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
        Command::Backup { to } => return backup(&config, &to).await,
        Command::Prune { dry_run } => return prune::prune(&config, dry_run).await,
    }
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

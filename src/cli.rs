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
    /// Apply database migrations and exit (serve also does this at start).
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
    /// Recompute every audit hash chain; exits non-zero at the first broken or altered entry.
    Verify,
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
    let config = load_config(&cli, listen)?;
    crate::telemetry::init_logging(config.log.format, &config.log.filter);
    match cli.command {
        Command::Serve { .. } => {
            let app = App::build(config).await?;
            app.run(shutdown_signal()).await?;
        }
        Command::Migrate => {
            let store = crate::store::connect(&config).await?;
            println!("migrations applied ({})", store.backend());
        }
        Command::Config(ConfigCommand::Show) => print!("{}", config.to_redacted_toml()),
        Command::OperatorKey(OperatorKeyCommand::Create { name }) => {
            let store = crate::store::connect(&config).await?;
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
            let (master_key, _) = load_master_key(&config)?;
            let store = crate::store::connect(&config).await?;
            let encryptor = Encryptor::new(&master_key);
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
        Command::Audit(AuditCommand::Verify) => {
            let store = crate::store::connect(&config).await?;
            let mut total = 0;
            for chain in store.audit_chains().await? {
                let entries = store.audit_chain(&chain).await?;
                match crate::audit::verify_chain(&entries) {
                    Ok(count) => total += count,
                    Err(err) => {
                        eprintln!("audit log BROKEN: {err}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            println!("audit log intact: {total} entries verified");
        }
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

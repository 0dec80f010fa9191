//! `hooksign prune`: one retention pass now, or with `--dry-run` what it would remove, by
//! table. Opens the store with the master key like the other database commands (pruning
//! audit entries records a checkpoint under the audit key). Uses `crate::delivery::pruner`.

use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use crate::delivery::pruner::Pruner;

/// Runs (or, with `dry_run`, previews) one pass and prints the rows per table.
pub(super) async fn prune(config: &Config, dry_run: bool) -> anyhow::Result<ExitCode> {
    let (store, _) = super::database::open_store(config).await?;
    let pruner = Pruner::new(
        &config.retention,
        store.clone(),
        Arc::new(crate::clock::SystemClock),
    );
    let counts = if dry_run {
        println!("would remove (dry run: nothing was changed):");
        pruner.preview().await?
    } else {
        let counts = pruner.tick().await?;
        println!("removed:");
        counts
    };
    for (table, rows) in counts.by_table() {
        println!("{table}: {rows}");
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

//! The commands that open the database: `audit verify` / `audit head` and `rekey` with the
//! master key (and the store opening `migrate`, `operator-key` and `merchant` share), and
//! `backup`, which needs no key. Uses
//! `crate::store`, `crate::secrets` and `crate::audit`.

use std::process::ExitCode;

use crate::config::Config;
use crate::secrets::{load_master_key, Encryptor};

/// Opens the database with the master key (and `master_key_previous`) loaded.
pub(super) async fn open_store(
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
pub(super) async fn audit_verify(
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
        let entries = match crate::audit::stored::verify_stored_chain(store.as_ref(), chain).await {
            Ok(entries) => entries,
            Err(crate::audit::stored::VerifyError::Chain(err)) => {
                eprintln!("audit log BROKEN: {err}");
                return Ok(ExitCode::FAILURE);
            }
            Err(crate::audit::stored::VerifyError::Store(err)) => return Err(err.into()),
        };
        let checkpoint = store.audit_checkpoint(chain).await?;
        for (_, hash) in expected.iter().filter(|(name, _)| name == chain) {
            // A head anchored before a prune may be the checkpoint itself; one pruned further
            // back can no longer be checked and is reported like a missing one.
            if checkpoint.as_ref().is_some_and(|at| at.hash == *hash) {
                continue;
            }
            if let Err(err) = crate::audit::check_expected_head(chain, &entries, hash) {
                eprintln!("audit log BROKEN: {err}");
                return Ok(ExitCode::FAILURE);
            }
        }
        total += entries.len();
        let last = entries.last().map(|last| &last.hash);
        if let Some(hash) = last.or(checkpoint.as_ref().map(|at| &at.hash)) {
            heads.push(format!("{chain}={hash}"));
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

/// `backup --to FILE`: a consistent copy of the SQLite database, taken while it is in use.
pub(super) async fn backup(config: &Config, to: &std::path::Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    if config.database_kind()? != crate::config::DatabaseKind::Sqlite {
        anyhow::bail!(
            "backup copies a SQLite database; for PostgreSQL use pg_dump (see README, Operating hooksign)"
        );
    }
    // Migrations are not applied: the copy is of the database as it is.
    let store = crate::store::SqliteStore::connect(
        &config.database.url,
        1,
        config.database.sqlite_synchronous,
    )
    .await?;
    let bytes = store
        .backup_to(to)
        .await
        .with_context(|| format!("cannot write the backup to {}", to.display()))?;
    println!(
        "backed up the database to {} ({bytes} bytes); keep the master key apart from it",
        to.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn rekey(
    config: &Config,
    new_key_file: &std::path::Path,
) -> anyhow::Result<ExitCode> {
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

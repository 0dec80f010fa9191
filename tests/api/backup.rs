//! `hooksign backup`: a consistent copy of a SQLite database taken while the daemon serves,
//! readable by its owner only, and usable (the audit log verifies, the rows are there).

use std::os::unix::fs::PermissionsExt as _;

use serde_json::json;

use crate::cli::hooksign;
use crate::helpers::{DaemonProcess, OutputWithin as _, CHILD_DEADLINE};

#[tokio::test]
async fn backup_copies_a_live_sqlite_database_into_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = hooksign(dir.path());
    serve.arg("serve");
    let daemon = DaemonProcess::start(serve);
    let operator = std::fs::read_to_string(dir.path().join("hooksign-data/operator.key"))
        .unwrap()
        .trim()
        .to_owned();
    let client = reqwest::Client::new();
    for name in ["Copied One", "Copied Two"] {
        let created = client
            .post(format!("{}/v1/merchants", daemon.base()))
            .bearer_auth(&operator)
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }

    // Taken while the daemon runs.
    let copy = dir.path().join("copy.db");
    let output = hooksign(dir.path())
        .args(["backup", "--to", copy.to_str().unwrap()])
        .output_within(CHILD_DEADLINE);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("backed up the database to"), "{stdout}");
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy holds what the database holds");

    // The copy is a working database: its rows are there and its audit log verifies (the
    // first operator key and the two merchants).
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", copy.display()))
        .await
        .unwrap();
    let merchants: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM merchants")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(merchants, 2);
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    pool.close().await;
    let verified = hooksign(dir.path())
        .args(["--database-url", &format!("sqlite://{}", copy.display())])
        .args(["audit", "verify"])
        .output_within(CHILD_DEADLINE);
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(
        text.contains("audit log intact: 3 entries verified"),
        "{text}"
    );

    // An existing file is never overwritten.
    let before = std::fs::read(&copy).unwrap();
    let again = hooksign(dir.path())
        .args(["backup", "--to", copy.to_str().unwrap()])
        .output_within(CHILD_DEADLINE);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("cannot write the backup to"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);
    drop(daemon);
}

#[test]
fn backup_of_postgres_points_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let output = hooksign(dir.path())
        .env(
            "HOOKSIGN_MASTER_KEY",
            hooksign::secrets::MasterKey::generate().to_base64(),
        )
        .args([
            "--database-url",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ])
        .args(["backup", "--to", dir.path().join("x.db").to_str().unwrap()])
        .output_within(CHILD_DEADLINE);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!dir.path().join("x.db").exists());
}

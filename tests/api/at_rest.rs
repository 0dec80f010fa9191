//! What reaches the disk: database files readable by their owner only, and no secret or
//! token in plaintext in any table (sealed idempotent replays, sealed endpoint headers).

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, TestApp};
use crate::on_both_stores;

on_both_stores!(database_files_are_private_to_their_owner);

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

async fn database_files_are_private_to_their_owner(app: TestApp) {
    let merchant = app.create_merchant("Private files").await;
    let created = app
        .authed(Method::POST, "/v1/api-keys", &merchant.test_token)
        .json(&json!({ "name": "writes something" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    #[cfg(unix)]
    {
        assert_eq!(mode(&app.data_dir), 0o700, "the data folder");
        assert_eq!(mode(&app.data_dir.join("operator.key")), 0o600);
        if app.backend == Backend::Sqlite {
            for name in ["hooksign.db", "hooksign.db-wal", "hooksign.db-shm"] {
                assert_eq!(mode(&app.data_dir.join(name)), 0o600, "{name}");
            }
        }
    }
}

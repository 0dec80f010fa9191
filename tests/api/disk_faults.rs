//! SQLite on a disk that fills up, and on files that cannot be written: 503 with a code and
//! a message that say so, nothing half-written, no panic, no damage (`PRAGMA integrity_check`),
//! and the daemon works again once the disk does, without a restart.
//!
//! The disks are small file systems mounted for the test (a tmpfs; an ext4 image on a loop
//! device for the unwritable files, since a tmpfs ignores the immutable flag and a file system
//! with files open for writing cannot be remounted read-only: the kernel answers EBUSY). That
//! needs root: elsewhere the tests are skipped with the reason, and under CI they fail.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::endpoint;
use crate::helpers::{
    assert_error, skip, spawn_app_with, wait_until, Backend, OutputWithin, TestApp, CHILD_DEADLINE,
};
use crate::receiver::Receiver;

/// A small file system mounted on a temporary folder, unmounted when dropped.
struct ScratchDisk {
    dir: tempfile::TempDir,
    /// The folder of the ext4 image, removed after the unmount.
    _image: Option<tempfile::TempDir>,
}

impl ScratchDisk {
    /// A tmpfs of `size` (`mount -o size=…`); `None` (skipped, or failed under CI) without
    /// root or mount.
    fn tmpfs(size: &str) -> Option<ScratchDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = format!("size={size},mode=0700");
        let mount = ["-t", "tmpfs", "-o", &options, "hooksign-test"];
        Self::mount(dir, &mount, None)
    }

    /// An ext4 file system of `megabytes` in an image file on a loop device.
    fn ext4(megabytes: u64) -> Option<ScratchDisk> {
        let image_dir = tempfile::tempdir().expect("temp dir");
        let image = image_dir.path().join("disk.img");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(megabytes * 1024 * 1024))
            .expect("image file");
        if !has_root("an ext4 loop device") {
            return None;
        }
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&image)
            .output_within(CHILD_DEADLINE);
        assert!(
            made.status.success(),
            "mkfs.ext4: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let image = image.to_str().expect("utf-8 path").to_owned();
        Self::mount(dir, &["-o", "loop", &image], Some(image_dir))
    }

    fn mount(
        dir: tempfile::TempDir,
        args: &[&str],
        image: Option<tempfile::TempDir>,
    ) -> Option<ScratchDisk> {
        if !has_root("a scratch file system") {
            return None;
        }
        let mounted = Command::new("mount")
            .args(args)
            .arg(dir.path())
            .output_within(CHILD_DEADLINE);
        if !mounted.status.success() {
            skip(
                "SQLite disk-fault tests",
                &format!(
                    "cannot mount a scratch file system: {}",
                    String::from_utf8_lossy(&mounted.stderr).trim()
                ),
            );
            return None;
        }
        Some(ScratchDisk { dir, _image: image })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for ScratchDisk {
    fn drop(&mut self) {
        // Lazy: gone from the tree at once, even if a file on it is still open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output_within(CHILD_DEADLINE);
    }
}

fn has_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        skip(
            "SQLite disk-fault tests",
            &format!("mounting {what} needs root"),
        );
    }
    root
}

/// The daemon on SQLite with its data folder (and so its database) on `disk`.
async fn app_on(disk: &ScratchDisk) -> (TestApp, PathBuf) {
    let data = disk.path().join("data");
    let database = data.join("hooksign.db");
    let url = format!("sqlite://{}", database.display());
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.data_dir = data;
        config.database.url = url;
        config.auth.rate_per_sec = 10_000;
        config.auth.burst = 10_000;
    })
    .await
    .expect("sqlite app");
    (app, database)
}

/// Posts an event with a payload of about `kilobytes`.
async fn post(app: &TestApp, token: &str, kilobytes: usize) -> reqwest::Response {
    let filler = "x".repeat(kilobytes * 1024);
    app.authed(Method::POST, "/v1/events", token)
        .json(&json!({ "type": "order.created", "payload": { "filler": filler } }))
        .send()
        .await
        .expect("an answer")
}

async fn accepted_id(response: reqwest::Response) -> String {
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

/// Fills the file system holding `dir` with one file, until it is refused for want of space.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0_u8; 256 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(err) => panic!("filling the disk: {err}"),
        }
    }
    // Whatever less than a chunk is left, too.
    while let Ok(1..) = file.write(&chunk[..512]) {}
    filler
}

/// `PRAGMA integrity_check` on the daemon's database.
async fn integrity(app: &TestApp) -> String {
    let pool = sqlx::SqlitePool::connect(&app.config.database.url)
        .await
        .expect("open the database");
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .expect("integrity_check");
    pool.close().await;
    verdict
}

/// Waits until the receiver has seen every event in `ids`.
async fn received_all(receiver: &Receiver, ids: &[String]) {
    wait_until(
        "every accepted event at the receiver",
        Duration::from_secs(60),
        || async {
            let seen = receiver.distinct("x-hooksign-event-id");
            ids.iter().all(|id| seen.contains(id)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_answers_503_and_works_again_once_space_is_back() {
    let Some(disk) = ScratchDisk::tmpfs("24m") else {
        return;
    };
    let (app, _database) = app_on(&disk).await;
    let merchant = app.create_merchant("Full disk").await;
    let receiver = Receiver::start().await;
    endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    let mut accepted = vec![accepted_id(post(&app, &merchant.test_token, 1).await).await];

    let filler = fill(disk.path());
    // What the database files already hold may take a few more events; then the write-ahead
    // log must grow, and cannot.
    let mut refused = None;
    for _ in 0..200 {
        let response = post(&app, &merchant.test_token, 64).await;
        if response.status() == 202 {
            accepted.push(accepted_id(response).await);
            continue;
        }
        assert!(
            response.headers().contains_key("retry-after"),
            "Retry-After"
        );
        refused = Some(assert_error(response, 503, "api_error", "disk_full").await);
        break;
    }
    let refused = refused.expect("an event refused once the disk was full");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("disk is full"), "{message}");
    // Refused again while it stays full; nothing half-written: only accepted events are there.
    let again = post(&app, &merchant.test_token, 64).await;
    assert_error(again, 503, "api_error", "disk_full").await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events").await,
        accepted.len() as i64,
        "the refused events are not stored, not even in part"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM deliveries").await,
        accepted.len() as i64
    );

    std::fs::remove_file(&filler).expect("free the space");
    accepted.push(accepted_id(post(&app, &merchant.test_token, 64).await).await);
    // Accepted while the disk was full or after: all delivered, their outcomes recorded.
    received_all(&receiver, &accepted).await;
    wait_until(
        "every delivery recorded as delivered",
        Duration::from_secs(60),
        || async {
            app.state.delivery.wake();
            let open = app
                .count("SELECT COUNT(*) FROM deliveries WHERE status <> 'delivered'")
                .await;
            (open == 0).then_some(())
        },
    )
    .await;
    assert_eq!(integrity(&app).await, "ok");
    drop(app);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_that_cannot_be_written_answer_503_and_work_again_once_writable() {
    let Some(disk) = ScratchDisk::ext4(32) else {
        return;
    };
    let (app, database) = app_on(&disk).await;
    let merchant = app.create_merchant("Unwritable").await;
    let receiver = Receiver::start().await;
    endpoint(&app, &merchant.test_token, json!({ "url": receiver.url })).await;
    let mut accepted = vec![accepted_id(post(&app, &merchant.test_token, 1).await).await];

    // Immutable: not even root may write them, through descriptors already open or new ones.
    let files: Vec<PathBuf> = ["", "-wal"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", database.display())))
        .collect();
    let chattr = |flag: &str| {
        let changed = Command::new("chattr")
            .arg(flag)
            .args(&files)
            .output_within(CHILD_DEADLINE);
        assert!(
            changed.status.success(),
            "chattr {flag}: {}",
            String::from_utf8_lossy(&changed.stderr)
        );
    };
    chattr("+i");
    let refused = post(&app, &merchant.test_token, 4).await;
    assert!(refused.headers().contains_key("retry-after"), "Retry-After");
    let body = assert_error(refused, 503, "api_error", "database_unavailable").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot be read or written"),
        "{body}"
    );
    chattr("-i");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM events").await,
        accepted.len() as i64,
        "the refused event is not stored"
    );
    accepted.push(accepted_id(post(&app, &merchant.test_token, 4).await).await);
    received_all(&receiver, &accepted).await;
    assert_eq!(integrity(&app).await, "ok");
    drop(app);
}

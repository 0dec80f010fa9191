//! The `hooksign` binary as a user runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

fn hooksign(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hooksign"));
    command
        .current_dir(dir)
        .env_remove("HOOKSIGN_MASTER_KEY")
        .env_remove("HOOKSIGN_DATABASE__URL");
    command
}

#[test]
fn help_teaches_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["operator-key", "create", "--help"],
        &["merchant", "create", "--help"],
        &["config", "show", "--help"],
        &["audit", "verify", "--help"],
        &["migrate", "--help"],
    ] {
        let output = hooksign(dir.path()).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
    let top =
        String::from_utf8(hooksign(dir.path()).arg("--help").output().unwrap().stdout).unwrap();
    for word in ["serve", "migrate", "operator-key", "merchant", "HOOKSIGN_"] {
        assert!(top.contains(word), "{word} missing from --help");
    }
}

#[test]
fn config_show_layers_file_and_environment_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hooksign.toml"),
        "listen = \"127.0.0.1:9001\"\n[http]\nrequest_timeout_secs = 7\n",
    )
    .unwrap();
    let output = hooksign(dir.path())
        .args(["config", "show"])
        .env("HOOKSIGN_HTTP__REQUEST_TIMEOUT_SECS", "9")
        .env(
            "HOOKSIGN_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .env(
            "HOOKSIGN_DATABASE__URL",
            "postgres://app:hunter2@db/hooksign",
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("listen = \"127.0.0.1:9001\""),
        "file value: {text}"
    );
    assert!(
        text.contains("request_timeout_secs = 9"),
        "env beats file: {text}"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("AAAAAAAA"),
        "secrets redacted: {text}"
    );
}

#[test]
fn a_bad_configuration_stops_with_a_message_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("HOOKSIGN_LISTEN", "not-an-address", "listen"),
        (
            "HOOKSIGN_DATABASE__URL",
            "mysql://localhost/db",
            "database.url",
        ),
        ("HOOKSIGN_MASTER_KEY", "too-short", "master_key"),
        (
            "HOOKSIGN_HTTP__SHUTDOWN_TIMEOUT_SECS",
            "0",
            "http.shutdown_timeout_secs",
        ),
    ];
    for (var, value, key) in cases {
        let output = hooksign(dir.path())
            .arg("serve")
            .env(var, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{var}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(&format!("`{key}`")), "{var}: {stderr}");
    }
    assert!(
        !dir.path().join("hooksign-data").exists(),
        "nothing was created"
    );
}

#[test]
fn postgres_without_a_master_key_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = hooksign(dir.path())
        .arg("serve")
        .env(
            "HOOKSIGN_DATABASE__URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("HOOKSIGN_MASTER_KEY"), "{stderr}");
}

#[test]
fn operator_key_and_merchant_create_print_working_keys_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = hooksign(dir.path())
        .args(["operator-key", "create", "--name", "ci"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    hooksign::keys::ApiToken::parse(&token).expect("a valid operator token");
    let merchant = hooksign(dir.path())
        .args(["merchant", "create", "--name", "CLI Co"])
        .output()
        .unwrap();
    assert!(
        merchant.status.success(),
        "{}",
        String::from_utf8_lossy(&merchant.stderr)
    );
    let text = String::from_utf8(merchant.stdout).unwrap();
    assert!(text.starts_with("merchant mch_"), "{text}");
    assert!(
        text.contains("hk_live_") && text.contains("hk_test_"),
        "{text}"
    );
    let audit = hooksign(dir.path())
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(audit.status.success());
    assert!(String::from_utf8(audit.stdout)
        .unwrap()
        .contains("2 entries verified"));
}

#[test]
fn serve_shuts_down_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let child = hooksign(dir.path())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "daemon did not start listening");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "exit status {:?}", output.status);
    let logs = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON log line"))
        .collect();
    assert!(
        lines.iter().any(|l| l["message"] == "hooksign stopped"),
        "{logs}"
    );
    // The operator key is written to a file, never to the log.
    let token = std::fs::read_to_string(dir.path().join("hooksign-data/operator.key")).unwrap();
    assert!(!logs.contains(token.trim()));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no longer accepting"
    );
}

//! The `hooksign` binary as a user runs it. Every child process runs with a deadline
//! (`helpers::OutputWithin`), and `serve` binds port 0 and says which port it got.

use std::process::{Command, Stdio};
use std::time::Duration;

use clap::CommandFactory as _;

use crate::helpers::{wait_with_output_within, DaemonProcess, OutputWithin as _, CHILD_DEADLINE};

pub fn hooksign(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hooksign"));
    command
        .current_dir(dir)
        .env_remove("HOOKSIGN_MASTER_KEY")
        .env_remove("HOOKSIGN_MASTER_KEY_PREVIOUS")
        .env_remove("HOOKSIGN_DATABASE__URL")
        .env_remove("HOOKSIGN_SIGNING_SECRET")
        .env_remove("HOOKSIGN_PENDING_SECRET")
        .env_remove("HOOKSIGN_VERIFY_SECRETS");
    command
}

/// Every command path clap knows (`["audit", "verify"]`…), parents before their children.
fn command_paths(command: &clap::Command, prefix: &[String], paths: &mut Vec<Vec<String>>) {
    for sub in command.get_subcommands() {
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_owned());
        paths.push(path.clone());
        command_paths(sub, &path, paths);
    }
}

#[test]
fn help_teaches_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let cli = hooksign::cli::Cli::command();
    let mut paths = vec![Vec::new()];
    command_paths(&cli, &[], &mut paths);
    let names: Vec<String> = paths.iter().map(|path| path.join(" ")).collect();
    // The list comes from the CLI definition; these must be in it.
    for expected in [
        "serve",
        "migrate",
        "sign",
        "verify",
        "rekey",
        "operator-key create",
        "merchant create",
        "config show",
        "audit verify",
        "audit head",
        "prune",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected}: {names:?}"
        );
    }
    for path in &paths {
        let output = hooksign(dir.path())
            .args(path)
            .arg("--help")
            .output_within(CHILD_DEADLINE);
        assert!(output.status.success(), "{path:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains("Usage:"), "{path:?}: {text}");
        // Each parent's help names its subcommands, with what they are for.
        let parent = path.iter().fold(&cli, |command, name| {
            command.find_subcommand(name).expect("a known subcommand")
        });
        for sub in parent.get_subcommands() {
            let listed = text.lines().any(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some(sub.get_name()) && words.next().is_some()
            });
            assert!(
                listed,
                "`{}` missing from {path:?} --help: {text}",
                sub.get_name()
            );
        }
    }
    let top = hooksign(dir.path())
        .arg("--help")
        .output_within(CHILD_DEADLINE);
    assert!(String::from_utf8(top.stdout).unwrap().contains("HOOKSIGN_"));
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
        .output_within(CHILD_DEADLINE);
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
            .output_within(CHILD_DEADLINE);
        assert_eq!(output.status.code(), Some(1), "{var}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains(&format!("`{key}`")), "{var}: {stderr}");
    }
    // Values of the wrong kind are named too, once, with the accepted values.
    let output = hooksign(dir.path())
        .arg("serve")
        .env("HOOKSIGN_DATABASE__SQLITE_SYNCHRONOUS", "sometimes")
        .output_within(CHILD_DEADLINE);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("DATABASE.SQLITE_SYNCHRONOUS") && stderr.contains("`full` or `normal`"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("sometimes").count(),
        1,
        "said once: {stderr}"
    );
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
        .output_within(CHILD_DEADLINE);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("HOOKSIGN_MASTER_KEY"), "{stderr}");
}

#[test]
fn operator_key_and_merchant_create_print_working_keys_once() {
    let dir = tempfile::tempdir().unwrap();
    let output = hooksign(dir.path())
        .args(["operator-key", "create", "--name", "ci"])
        .output_within(CHILD_DEADLINE);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    hooksign::keys::ApiToken::parse(&token).expect("a valid operator token");
    let merchant = hooksign(dir.path())
        .args(["merchant", "create", "--name", "CLI Co"])
        .output_within(CHILD_DEADLINE);
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
        .output_within(CHILD_DEADLINE);
    assert!(audit.status.success());
    assert!(String::from_utf8(audit.stdout)
        .unwrap()
        .contains("2 entries verified"));
}

#[test]
fn serve_shuts_down_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = hooksign(dir.path());
    command.arg("serve");
    let mut daemon = DaemonProcess::start(command);
    let addr = daemon.addr;
    assert!(
        std::net::TcpStream::connect(addr).is_ok(),
        "listening where it said"
    );
    let status = Command::new("kill")
        .args(["-TERM", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (status, logs) = daemon.wait_for_exit(Duration::from_secs(60));
    assert!(status.success(), "exit status {status:?}");
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
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );
}

fn run_with_stdin(mut command: Command, input: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command refused at argument parsing exits without reading its input.
    if let Err(err) = child.stdin.take().unwrap().write_all(input) {
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    }
    wait_with_output_within(child, CHILD_DEADLINE, "hooksign")
}

#[test]
fn sign_and_verify_round_trip_and_match_the_shared_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../vectors/bolt-signatures.json")).unwrap();
    for case in vectors["cases"].as_array().unwrap() {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD
            .decode(case["body_base64"].as_str().unwrap())
            .unwrap();
        let active = case["active_secret"].as_str().unwrap();
        let pending = case["pending_secret"].as_str().unwrap();
        let mut sign = hooksign(dir.path());
        sign.args(["sign", "--secret", active, "--pending-secret", pending]);
        let output = run_with_stdin(sign, &body);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = String::from_utf8(output.stdout).unwrap();
        for (name, value) in case["headers_during_rotation"].as_object().unwrap() {
            assert!(
                printed.contains(&format!("{name}: {}", value.as_str().unwrap())),
                "{}: {printed}",
                case["name"]
            );
        }
        // A receiver holding only the new secret accepts via the pending header.
        let mut verify = hooksign(dir.path());
        verify.args(["verify", "--scheme", "bolt", "--secret", pending]);
        for line in printed.lines() {
            verify.args(["--header", line]);
        }
        let output = run_with_stdin(verify, &body);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8(output.stdout)
            .unwrap()
            .contains("BoltPending"));
        // A tampered body is refused with a reason and a non-zero exit.
        let mut verify = hooksign(dir.path());
        verify.args(["verify", "--scheme", "bolt", "--secret", active]);
        for line in printed.lines() {
            verify.args(["--header", line]);
        }
        let output = run_with_stdin(verify, b"tampered");
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8(output.stderr)
            .unwrap()
            .contains("invalid"));
    }
}

fn vector_cases(json: &str) -> Vec<serde_json::Value> {
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    doc["cases"].as_array().unwrap().clone()
}

fn vector_body(case: &serde_json::Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(case["body_base64"].as_str().unwrap())
        .unwrap()
}

/// Runs `hooksign ARGS` with `envs` set and `body` on standard input; panics unless it exits 0.
fn succeeds(dir: &std::path::Path, args: &[&str], envs: &[(&str, &str)], body: &[u8]) -> String {
    let mut command = hooksign(dir);
    command.args(args).envs(envs.iter().copied());
    let output = run_with_stdin(command, body);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{args:?}: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn sign_and_verify_read_secrets_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let other = "0".repeat(64);
    for case in vector_cases(include_str!("../vectors/bolt-signatures.json")) {
        let body = vector_body(&case);
        let active = case["active_secret"].as_str().unwrap();
        let pending = case["pending_secret"].as_str().unwrap();
        let on_the_command_line = ["sign", "--secret", active, "--pending-secret", pending];
        let signed = succeeds(dir.path(), &on_the_command_line, &[], &body);
        for (name, value) in case["headers_during_rotation"].as_object().unwrap() {
            let line = format!("{name}: {}", value.as_str().unwrap());
            assert!(signed.lines().any(|l| l == line), "{signed}");
        }
        let active_file = file("active.txt", &format!("{active}\n"));
        let pending_file = file("pending.txt", &format!("{pending}\n"));
        let from_files = [
            "sign",
            "--secret-file",
            &active_file,
            "--pending-secret-file",
            &pending_file,
        ];
        assert_eq!(succeeds(dir.path(), &from_files, &[], &body), signed);
        let env = [
            ("HOOKSIGN_SIGNING_SECRET", active),
            ("HOOKSIGN_PENDING_SECRET", pending),
        ];
        assert_eq!(succeeds(dir.path(), &["sign"], &env, &body), signed);

        let mut verify = vec!["verify", "--scheme", "bolt"];
        for line in signed.lines() {
            verify.extend(["--header", line]);
        }
        let on_the_command_line =
            [&verify[..], &["--secret", &other, "--secret", pending]].concat();
        let verified = succeeds(dir.path(), &on_the_command_line, &[], &body);
        assert_eq!(verified, "valid: secret #2 matched (BoltPending header)\n");
        let both = file("both.txt", &format!("{other}\n{pending}\n"));
        let from_file = [&verify[..], &["--secret-file", &both]].concat();
        let from_file = succeeds(dir.path(), &from_file, &[], &body);
        assert_eq!(from_file, verified);
        let listed = format!("{other},{pending}");
        let env = [("HOOKSIGN_VERIFY_SECRETS", listed.as_str())];
        assert_eq!(succeeds(dir.path(), &verify, &env, &body), verified);
    }
    for case in vector_cases(include_str!("../vectors/standard-webhooks.json")) {
        let body = vector_body(&case);
        let (id, ts) = (
            case["webhook_id"].as_str().unwrap(),
            case["webhook_timestamp"].to_string(),
        );
        let sign = [
            "sign",
            "--scheme",
            "standard",
            "--id",
            id,
            "--timestamp",
            &ts,
        ];
        let env = [
            (
                "HOOKSIGN_SIGNING_SECRET",
                case["active_secret"].as_str().unwrap(),
            ),
            (
                "HOOKSIGN_PENDING_SECRET",
                case["pending_secret"].as_str().unwrap(),
            ),
        ];
        let signed = succeeds(dir.path(), &sign, &env, &body);
        let expected = case["webhook_signature_during_rotation"].as_str().unwrap();
        assert!(
            signed.contains(&format!("webhook-signature: {expected}\n")),
            "{signed}"
        );
    }
}

#[test]
fn missing_doubled_or_unreadable_secrets_are_refused_without_being_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let secret = "3f1c2a9e8b7d6c5f4e3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";
    let garbled = file("garbled.txt", "not-a-secret-but-private\n");
    let two = file("two.txt", &format!("{secret}\n{secret}\n"));
    let missing = dir.path().join("missing.txt").to_str().unwrap().to_owned();
    let fails = |args: &[&str], code: i32, says: &[&str]| {
        let mut command = hooksign(dir.path());
        command.args(args);
        let output = run_with_stdin(command, b"{}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
        for word in says {
            assert!(stderr.contains(word), "{args:?}: {word} not in {stderr}");
        }
        assert!(
            !stderr.contains(secret) && !stderr.contains("private"),
            "{stderr}"
        );
    };
    fails(&["sign"], 1, &["--secret-file", "HOOKSIGN_SIGNING_SECRET"]);
    fails(
        &["sign", "--secret", secret, "--secret-file", &two],
        2,
        &["--secret-file"],
    );
    fails(&["sign", "--secret-file", &missing], 1, &[&missing]);
    fails(&["sign", "--secret-file", &garbled], 1, &["active secret"]);
    fails(&["sign", "--secret-file", &two], 1, &["holds 2 secrets"]);
    let header = ["--header", "X-Bolt-Hmac-Sha256: x"];
    let verify = [&["verify", "--scheme", "bolt"][..], &header].concat();
    fails(&verify, 1, &["--secret-file", "HOOKSIGN_VERIFY_SECRETS"]);
    let garbled_verify = [&verify[..], &["--secret-file", &garbled]].concat();
    fails(&garbled_verify, 1, &["invalid signing secret"]);
}

#[test]
fn help_says_a_secret_on_the_command_line_is_visible_to_other_users() {
    let dir = tempfile::tempdir().unwrap();
    for (command, variables) in [
        (
            "sign",
            &["HOOKSIGN_SIGNING_SECRET", "HOOKSIGN_PENDING_SECRET"][..],
        ),
        ("verify", &["HOOKSIGN_VERIFY_SECRETS"]),
    ] {
        let output = hooksign(dir.path())
            .args([command, "--help"])
            .output_within(CHILD_DEADLINE);
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).unwrap();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for expected in ["--secret-file", "VISIBLE TO OTHER USERS (ps, /proc)"]
            .iter()
            .chain(variables)
        {
            assert!(text.contains(expected), "{command}: {expected} in {text}");
        }
    }
}

#[test]
fn verify_checks_only_the_scheme_it_is_told() {
    let dir = tempfile::tempdir().unwrap();
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../vectors/bolt-signatures.json")).unwrap();
    let case = &vectors["cases"][1];
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .decode(case["body_base64"].as_str().unwrap())
        .unwrap();
    let secret = case["active_secret"].as_str().unwrap();
    let bolt = format!(
        "X-Bolt-Hmac-Sha256: {}",
        case["headers_active_only"]["X-Bolt-Hmac-Sha256"]
            .as_str()
            .unwrap()
    );
    let verify = |scheme: &[&str]| {
        let mut command = hooksign(dir.path());
        command
            .args(["verify", "--secret", secret, "--header", &bolt])
            .args(scheme);
        run_with_stdin(command, &body)
    };
    // No scheme guessed from the headers: it must be named, bolt or standard.
    for scheme in [&[][..], &["--scheme", "auto"], &["--scheme", "both"]] {
        let output = verify(scheme);
        assert_eq!(output.status.code(), Some(2), "{scheme:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(stderr.contains("--scheme"), "{scheme:?}: {stderr}");
    }
    assert!(verify(&["--scheme", "bolt"]).status.success());
    // Valid X-Bolt headers without the webhook-* ones do not pass as Standard Webhooks.
    let output = verify(&["--scheme", "standard"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("missing signature header webhook-id"),
        "{stderr}"
    );
}

/// The CLI alone on SQLite; `rekey.rs` runs it on both stores against the API.
#[test]
fn rekey_reseals_every_secret_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let old = hooksign::secrets::MasterKey::generate();
    let new = hooksign::secrets::MasterKey::generate();
    let new_file = dir.path().join("new.key");
    std::fs::write(&new_file, new.to_base64()).unwrap();
    let with_old = |args: &[&str]| {
        hooksign(dir.path())
            .env("HOOKSIGN_MASTER_KEY", old.to_base64())
            .args(args)
            .output_within(CHILD_DEADLINE)
    };
    assert!(with_old(&["merchant", "create", "--name", "A"])
        .status
        .success());
    assert!(with_old(&["merchant", "create", "--name", "B"])
        .status
        .success());
    let first = with_old(&["rekey", "--new-key-file", new_file.to_str().unwrap()]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = String::from_utf8(first.stdout).unwrap();
    assert!(first.contains("re-encrypted 4 signing secrets"), "{first}");
    assert!(first.contains("re-encrypted 1 audit keys"), "{first}");
    let second = with_old(&["rekey", "--new-key-file", new_file.to_str().unwrap()]);
    assert!(
        second.status.success(),
        "the second run exited {}: {}",
        second.status,
        String::from_utf8_lossy(&second.stderr)
    );
    let second = String::from_utf8(second.stdout).unwrap();
    assert!(
        second.contains("re-encrypted 0 signing secrets")
            && second.contains("re-encrypted 0 audit keys"),
        "idempotent: {second}"
    );
    // The old key can go: the audit log verifies under the new one alone.
    let verified = hooksign(dir.path())
        .env("HOOKSIGN_MASTER_KEY", new.to_base64())
        .args(["audit", "verify"])
        .output_within(CHILD_DEADLINE);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!(
            "sqlite://{}",
            dir.path().join("hooksign-data/hooksign.db").display()
        );
        let store = hooksign::store::SqliteStore::connect(&url, 1, Default::default())
            .await
            .unwrap();
        use hooksign::store::SecretStore as _;
        assert!(store
            .secrets_sealed_with(old.id())
            .await
            .unwrap()
            .is_empty());
        let rows = store.secrets_sealed_with(new.id()).await.unwrap();
        assert_eq!(rows.len(), 4);
        let encryptor = hooksign::secrets::Encryptor::new(&new);
        for row in &rows {
            hooksign::secrets::keyring::open_row(&encryptor, row).expect("opens under the new key");
        }
    });
}

//! `examples/walkthrough.sh`, the README walkthrough as a script, runs start to finish against
//! the real binary and the Rust example receiver, and stops at the first failing step.

use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::{program_available, skip, OutputWithin, CHILD_DEADLINE};
use crate::interop::receiver_example;

fn run_walkthrough(dir: &Path, hooksign_bin: &Path) -> Output {
    let mut command = Command::new("bash");
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/walkthrough.sh"))
        .arg(dir)
        .env("HOOKSIGN_BIN", hooksign_bin)
        .env("RECEIVER_BIN", receiver_example());
    // Start from no HOOKSIGN_* configuration, as a new user would (CI sets some).
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HOOKSIGN_") {
            command.env_remove(name);
        }
    }
    command.output_within(CHILD_DEADLINE)
}

/// The script reads JSON with python3: skip without it, except under CI.
fn python_available() -> bool {
    let found = program_available("python3");
    if !found {
        skip("walkthrough tests", "python3 is not installed");
    }
    found
}

#[test]
fn the_readme_walkthrough_runs_end_to_end() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let output = run_walkthrough(dir.path(), Path::new(env!("CARGO_BIN_EXE_hooksign")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Each step in order: the command as typed, then what it answered.
    let steps = [
        "$ HOOKSIGN_DELIVERY__ALLOW_PRIVATE_NETWORKS=true hooksign serve --listen 127.0.0.1:",
        r#"{"database":"sqlite","status":"ready"}"#,
        "$ curl -sS --fail-with-body -X POST $API/v1/merchants",
        "# MCH=mch_",
        "# K=hk_test_",
        "$ curl -sS --fail-with-body -X POST $API/v1/api-keys",
        r#""name":"CI deploys""#,
        "# SECRET=",
        r#"{"listening":"#,
        "$ curl -sS --fail-with-body -X POST $API/v1/endpoints",
        r#""object":"event""#,
        "# STATUS=delivered",
        r#""status_code":200"#,
        r#""ok":true,"reason":null,"scheme":"bolt","status":200"#,
        "/v1/signing-secret/initiate",
        "# NEW_SECRET=",
        r#""pending_signature":true"#,
        "# PING=True",
        "/v1/signing-secret/complete",
        r#""revert_seconds_left":"#,
        "/v1/signing-secret/revert",
        "# KEYS=CI deploys Default test key",
        "$ kill -TERM $DAEMON_PID",
        "hooksign stopped",
        "walkthrough complete",
    ];
    let mut rest = stdout.as_ref();
    for step in steps {
        let at = rest
            .find(step)
            .unwrap_or_else(|| panic!("missing, or out of order: {step}\n{stdout}"));
        rest = &rest[at + step.len()..];
    }
    // The daemon ran in the given directory, on SQLite.
    assert!(dir.path().join("hooksign-data/hooksign.db").is_file());
    assert!(dir.path().join("hooksign.log").is_file());
}

#[test]
fn the_walkthrough_stops_at_the_first_failing_step() {
    if !python_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A "daemon" that exits at once: the script must not carry on.
    let output = run_walkthrough(dir.path(), Path::new("/bin/false"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("the daemon exited"), "{stderr}");
    assert!(!stdout.contains("walkthrough complete"), "{stdout}");
}

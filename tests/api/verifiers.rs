//! The Python and Node example verifiers pass their own test suites (every case of the shared
//! vectors), run from `cargo test` so CI runs them too. Under `CI=true` a missing interpreter
//! fails instead of skipping.

use std::process::Command;

fn available(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but `{program}` is not installed"
        );
        eprintln!("skipping: {program} is not installed");
    }
    found
}

#[test]
fn the_python_verifier_passes_its_tests() {
    if !available("python3") {
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python");
    let output = Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .current_dir(dir)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("OK"), "{report}");
}

#[test]
fn the_node_verifier_passes_its_tests() {
    if !available("node") {
        return;
    }
    let output = Command::new("node")
        .args(["--test", "examples/node/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("# fail 0"), "{report}");
}

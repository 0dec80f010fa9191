//! The Python and Node example verifiers pass their own test suites (every case of the shared
//! vectors), run from `cargo test` so CI runs them too. Each run must report at least as many
//! tests as the suites hold today and none failed: both runners also print "OK" or "# fail 0"
//! when no test ran at all. Under CI (see `helpers::in_ci`) a missing interpreter fails instead
//! of skipping.

use std::process::Command;

use crate::helpers::{program_available, skip, OutputWithin, CHILD_DEADLINE};

/// Tests in `examples/python` (`test_*.py`) today; a run reporting fewer lost some.
const PYTHON_TESTS: usize = 31;
/// Tests in `examples/node` (`*.test.mjs`) today.
const NODE_TESTS: usize = 30;

fn available(program: &str) -> bool {
    let found = program_available(program);
    if !found {
        skip(
            &format!("{program} verifier tests"),
            &format!("{program} is not installed"),
        );
    }
    found
}

/// Checks unittest's summary (`Ran N tests in 0.01s`, then `OK`): at least `PYTHON_TESTS`
/// ran and passed. Answers how many ran.
fn python_passed(report: &str) -> Result<usize, String> {
    let ran: usize = report
        .lines()
        .find_map(|line| {
            line.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or("no `Ran N tests` line")?;
    if !report.lines().any(|line| line.trim() == "OK") {
        return Err(format!("{ran} tests ran, not all passed"));
    }
    if ran < PYTHON_TESTS {
        return Err(format!("ran {ran} tests, expected at least {PYTHON_TESTS}"));
    }
    Ok(ran)
}

/// Checks Node's TAP summary (`# tests N`, `# pass N`, `# fail 0`…): at least `NODE_TESTS`
/// ran, all passed, none failed or was cancelled. Answers how many ran.
fn node_passed(report: &str) -> Result<usize, String> {
    let count = |name: &str| {
        report
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix("# ")?.strip_prefix(name)?;
                rest.strip_prefix(' ')?.trim().parse::<usize>().ok()
            })
            .ok_or(format!("no `# {name} N` line"))
    };
    let tests = count("tests")?;
    for name in ["fail", "cancelled"] {
        if count(name)? != 0 {
            return Err(format!("{name}: {}", count(name)?));
        }
    }
    if count("pass")? != tests {
        return Err(format!("{} of {tests} passed", count("pass")?));
    }
    if tests < NODE_TESTS {
        return Err(format!("ran {tests} tests, expected at least {NODE_TESTS}"));
    }
    Ok(tests)
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
        .output_within(CHILD_DEADLINE);
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    if let Err(problem) = python_passed(&report) {
        panic!("{problem}: {report}");
    }
}

#[test]
fn the_node_verifier_passes_its_tests() {
    if !available("node") {
        return;
    }
    let output = Command::new("node")
        .args(["--test", "examples/node/"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output_within(CHILD_DEADLINE);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    if let Err(problem) = node_passed(&report) {
        panic!("{problem}: {report}");
    }
}

#[test]
fn a_run_of_no_tests_or_too_few_is_not_a_pass() {
    // What each runner prints when it finds nothing to run: exit status 0 and "OK" / "# fail 0".
    let none = "----------------------------------------------------------------------\nRan 0 tests in 0.000s\n\nOK\n";
    assert!(python_passed(none).is_err());
    assert!(python_passed("Ran 30 tests in 4.1s\n\nOK\n").is_err());
    assert!(python_passed("Ran 31 tests in 4.1s\n\nFAILED (failures=1)\n").is_err());
    assert_eq!(python_passed("Ran 31 tests in 4.1s\n\nOK\n"), Ok(31));
    let tap = |tests: usize, pass: usize, fail: usize| {
        format!("# tests {tests}\n# suites 4\n# pass {pass}\n# fail {fail}\n# cancelled 0\n")
    };
    assert!(node_passed(&tap(0, 0, 0)).is_err());
    assert!(node_passed(&tap(29, 29, 0)).is_err());
    assert!(node_passed(&tap(30, 29, 1)).is_err());
    assert!(
        node_passed("# tests 30\n# pass 30\n").is_err(),
        "no fail line"
    );
    assert_eq!(node_passed(&tap(30, 30, 0)), Ok(30));
}

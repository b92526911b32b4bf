//! The examples under `examples/` run as their READMEs say, against the
//! real engine.

use crate::support::{output_within, Run, TestEnv};
use std::process::Command;

/// A Python that has pytest: the one on PATH, else Debian's, where
/// `scripts/test-env.sh` installs `python3-pytest`.
fn python_with_pytest() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-m", "pytest", "--version"])
                .output()
                .is_ok_and(|out| out.status.success())
        })
        .expect("no python3 with pytest: run `bash scripts/test-env.sh` (Debian's python3-pytest)")
}

#[test]
fn the_pytest_cluster_example_passes_on_a_real_two_node_instance() {
    let env = TestEnv::new();
    let mut pytest = Command::new(python_with_pytest());
    pytest
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp"])
        .arg(env.tmp.path().join("pytest"))
        .arg("examples/pytest-cluster")
        .env("DEVINST", env!("CARGO_BIN_EXE_devinst"))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    env.isolate(&mut pytest);
    let run = Run::from(output_within(&mut pytest, None));
    let run = run.ok();
    assert!(run.stdout.contains("2 passed"), "{run}");
}

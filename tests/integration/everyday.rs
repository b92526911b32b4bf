//! Everyday use as the README promises it.
//!
//! Host ports stay within 48450-48499.

use crate::support::*;
use std::path::{Path, PathBuf};

/// `ev-<what>-<pid>`: unique on this engine.
fn unique(what: &str) -> String {
    format!("ev-{what}-{}", std::process::id())
}

/// A busybox repository with these setup steps and `outputs`.
fn steps_repo(env: &TestEnv, what: &str, steps: &[&str], outputs: &[&str]) -> PathBuf {
    let dir = env.repo(&unique(what));
    let quoted = |items: &[&str]| {
        items
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    write(
        &dir.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{BUSYBOX}\"\n[setup]\ncommands = [{}]\noutputs = [{}]\n\
             [ports]\nhost_range = [48450, 48499]\n",
            quoted(steps),
            quoted(outputs)
        ),
    );
    dir
}

/// The `credentials` line of `devinst doctor` in `dir`.
fn doctor_credentials(env: &TestEnv, dir: &Path) -> String {
    let run = env.run(dir, &["doctor"]);
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("credentials"))
        .unwrap_or_else(|| panic!("no credentials check\n{run}"))
        .to_owned()
}

#[test]
fn doctor_calls_missing_credentials_a_problem_only_when_the_recipe_asks_for_them() {
    let env = TestEnv::new();
    // No credential directory in this HOME.
    let repo = steps_repo(&env, "doctor-creds", &[], &[]);
    env.run(&repo, &["setup"]).ok();
    let line = doctor_credentials(&env, &repo);
    assert!(line.starts_with("ok"), "{line}");

    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &format!("{toml}[credentials]\npaths = [\"~/.mycloud\"]\n"),
    );
    let line = doctor_credentials(&env, &repo);
    assert!(line.starts_with("problem"), "{line}");
    assert!(line.contains("~/.mycloud"), "{line}");
}

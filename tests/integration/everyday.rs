//! Everyday use as the README promises it: `list` and `status` alike, a
//! paused container, a credential directory that went away, doctor's
//! credentials.
//!
//! Host ports stay within 48450-48499.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

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

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"))
}

#[test]
fn list_and_status_agree_and_list_is_ordered_and_aligned() {
    let env = TestEnv::new();
    // Named so that names and worktrees sort in opposite orders.
    let first = env.busybox_repo(
        &format!("{}-a", unique("order")),
        "[ports]\nhost_range = [48450, 48499]\n",
    );
    let second = env.busybox_repo(
        &format!("{}-b", unique("order")),
        "[ports]\nhost_range = [48450, 48499]\n",
    );
    // 48 characters, the longest name there is.
    let suffix = unique("");
    let long = format!("z{}{suffix}", "n".repeat(47 - suffix.len()));
    env.run(&first, &["setup", &long]).ok();
    env.run(&second, &["setup", &unique("aa")]).ok();
    env.run(&first, &["start"]).ok();
    let status = json(&env.run(&first, &["status", "--json"]).ok());
    let views = json(&env.run(&first, &["list", "--json"]).ok());
    let listed = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == status["name"])
        .expect("listed");
    for key in ["state", "port", "ports", "image", "runtime", "created"] {
        assert_eq!(listed[key], status[key], "`{key}` differs");
    }

    // A devinst container no registry knows, with no port.
    let stray = unique("order-stray");
    let label = format!("devinst.worktree={}", env.tmp.path().join("zz").display());
    let _stray = Foreign::new(&[
        "create",
        "--name",
        &stray,
        "--label",
        "devinst.managed-by=devinst",
        "--label",
        &label,
        BUSYBOX,
        "true",
    ]);
    let text = env.run(&first, &["list"]).ok().stdout;
    let lines: Vec<&str> = text.lines().collect();
    let column = lines[0].find("PORT").unwrap();
    let row = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row for {needle}\n{text}"))
    };
    let (a, b) = (row(first.to_str().unwrap()), row(second.to_str().unwrap()));
    assert!(a < b, "ordered by worktree\n{text}");
    // Every row's port sits under PORT, the longest name's too.
    for i in [a, b, row(&stray), row(&long)] {
        let cell = lines[i].get(column..).unwrap_or_default();
        let port = cell.split_whitespace().next().unwrap_or_default();
        assert!(port == "-" || port.parse::<u16>().is_ok(), "{text}");
    }
    assert!(lines[row(&stray)][column..].starts_with("- "), "{text}");
    assert!(lines[b][column..].starts_with("48"), "{text}");
}

#[test]
fn start_unpauses_a_paused_container() {
    let env = TestEnv::new();
    let repo = steps_repo(&env, "paused", &[], &[]);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let docker = |args: &[&str]| {
        let ok = Command::new("docker")
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "docker {args:?}");
    };
    docker(&["pause", &container]);
    let run = env.run(&repo, &["start"]).ok();
    assert!(run.stderr.contains("unpausing"), "{run}");
    assert_eq!(inspect(&container, "{{.State.Status}}"), "running");

    // A shim finds it paused and does the same.
    docker(&["pause", &container]);
    assert_eq!(env.sh(&repo, "echo hi").ok().stdout, "hi\n");
    assert_eq!(inspect(&container, "{{.State.Status}}"), "running");
}

#[test]
fn a_credential_directory_that_went_away_is_left_out_on_the_next_start() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home.join(".ssh")).unwrap();
    std::fs::create_dir_all(env.home.join(".kube")).unwrap();
    let repo = steps_repo(&env, "creds-gone", &[], &[]);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    assert_eq!(
        env.sh(&repo, "ls -d /root/.ssh").ok().stdout,
        "/root/.ssh\n"
    );
    env.run(&repo, &["stop"]).ok();

    std::fs::remove_dir_all(env.home.join(".ssh")).unwrap();
    let run = env.run(&repo, &["start"]).ok();
    assert!(run.stderr.contains("no longer exists"), "{run}");
    assert!(run.stderr.contains(".ssh"), "{run}");
    let run = env
        .sh(&repo, "test -e /root/.ssh || echo gone; ls -d /root/.kube")
        .ok();
    assert_eq!(run.stdout, "gone\n/root/.kube\n");
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

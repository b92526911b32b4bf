//! Everyday use as the README promises it: an interrupted start completed by
//! the next, `-q`, `list` and `status` alike, a paused container, a
//! credential directory that went away, doctor's credentials.
//!
//! Host ports stay within 48450-48499.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Waits until `done` holds, at most 60 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"))
}

#[test]
fn an_interrupted_start_is_completed_by_the_next() {
    let env = TestEnv::new();
    // Step A makes the output the recipe names; B is slow while /app/slow
    // exists; C comes last.
    let repo = steps_repo(
        &env,
        "interrupted",
        &[
            "mkdir -p /app/out && echo A > /app/out/a",
            "if [ -e /app/slow ]; then touch /app/b-running; sleep 300; fi; echo B > /app/out/b",
            "echo C > /app/out/c",
        ],
        &["out/a"],
    );
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    for signal in ["INT", "TERM"] {
        // Everything made again, as after `rm -rf .sky-dev/venv`.
        std::fs::remove_dir_all(repo.join("out")).unwrap();
        std::fs::write(repo.join("slow"), "").unwrap();
        let _ = std::fs::remove_file(repo.join("b-running"));
        let child = env
            .cmd(&repo)
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_until("step B", || repo.join("b-running").exists());
        Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{signal}: {stderr}");
        assert!(!repo.join("out/c").exists(), "{signal}: {stderr}");
        // Step B ended inside too.
        let ps = env.run(&repo, &["exec", "--", "ps", "-o", "args"]);
        assert!(!ps.stdout.contains("sleep 300"), "{signal}: {ps}");

        let status = json(&env.run(&repo, &["status", "--json"]).ok());
        assert_eq!(status["setup"], "incomplete", "{signal}: {status}");
        let run = env.sh(&repo, "echo hi").ok();
        assert_eq!(run.stdout, "hi\n");
        assert_eq!(
            run.stderr.matches("did not finish").count(),
            1,
            "{signal}: {run}"
        );
        assert!(run.stderr.contains("`devinst start`"), "{run}");

        std::fs::remove_file(repo.join("slow")).unwrap();
        let run = env.run(&repo, &["start"]).ok();
        assert!(run.stderr.contains("setup step 3/3"), "{signal}: {run}");
        assert!(repo.join("out/c").exists(), "{signal}: {run}");
        let run = env.sh(&repo, "true").ok();
        assert!(!run.stderr.contains("did not finish"), "{run}");
        let status = json(&env.run(&repo, &["status", "--json"]).ok());
        assert_eq!(status["setup"], "done");
    }
}

#[test]
fn quiet_shows_setup_output_only_when_a_step_fails() {
    let env = TestEnv::new();
    let repo = steps_repo(
        &env,
        "quiet",
        &[
            "echo first-step-says-hello",
            "if [ -e /app/fail ]; then echo second-step-fails; exit 3; fi",
        ],
        &[],
    );
    env.run(&repo, &["setup"]).ok();
    std::fs::write(repo.join("fail"), "").unwrap();
    let run = env
        .run(&repo, &["-q", "start"])
        .fails_with(1, "exit code 3");
    assert!(run.stderr.contains("second-step-fails"), "{run}");

    std::fs::remove_file(repo.join("fail")).unwrap();
    let run = env.run(&repo, &["-q", "start"]).ok();
    assert!(run.stderr.is_empty(), "{run}");
    assert!(!run.stdout.is_empty(), "the port mapping is data\n{run}");
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

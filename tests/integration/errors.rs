//! What every command owes its user when things go wrong: the exact exit
//! code, a message that says what is wrong, a `hint:` where there is a next
//! step, nothing half-made, and never a panic.

use crate::support::*;
use std::path::Path;

/// Checks a failure: exit `code`, every needle on stderr, a `hint:` line
/// containing `hint` when one is expected, and no panic.
#[track_caller]
fn failure(run: Run, code: i32, needles: &[&str], hint: Option<&str>) -> Run {
    assert_eq!(run.code, code, "expected exit {code}\n{run}");
    assert!(
        run.stderr.lines().any(|l| l.starts_with("error: ")),
        "an `error:` line\n{run}"
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}\n{run}"
        );
    }
    if let Some(hint) = hint {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with("hint: ") && l.contains(hint)),
            "no `hint:` line with {hint:?}\n{run}"
        );
    }
    assert!(!run.stderr.contains("panicked"), "panic\n{run}");
    assert!(!run.stderr.contains("RUST_BACKTRACE"), "panic\n{run}");
    run
}

fn run_with_env(env: &TestEnv, dir: &Path, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = env.cmd(dir);
    for (key, value) in vars {
        cmd.env(key, value);
    }
    let out = cmd.args(args).output().unwrap();
    env.track(dir);
    Run::from(out)
}

#[test]
fn invalid_explicit_names_are_refused_before_anything_is_made() {
    let env = TestEnv::new();
    let name = format!("names-{}", std::process::id());
    let repo = env.busybox_repo(&name, "");
    for (args, problem) in [
        (
            &["setup", "Bad Name"][..],
            "`Bad Name` must start with a lowercase letter or a digit",
        ),
        (
            &["setup", "--", "-x"][..],
            "`-x` must start with a lowercase letter or a digit",
        ),
        (&["setup", "a$(b)"][..], "`a$(b)` contains '$'"),
        (&["setup", "bad name"][..], "`bad name` contains ' '"),
    ] {
        failure(
            env.run(&repo, args),
            1,
            &["the instance name", problem],
            Some("pick a name like `feature-x`"),
        );
        assert!(!repo.join(".sky-dev").exists(), "{args:?} made .sky-dev");
    }
    // The registry kept nothing either: the default name is still free.
    env.run(&repo, &["setup"]).ok();
    assert_eq!(instance_value(&repo, "DEVINST_NAME").unwrap(), name);
}

#[test]
fn an_invalid_recipe_names_file_line_and_key() {
    let env = TestEnv::new();
    let repo = env.repo("badtoml");
    let toml = repo.join("devinst.toml");

    write(
        &toml,
        &format!("[container]\nimage = \"{BUSYBOX}\"\nimgae = \"typo\"\n"),
    );
    let run = failure(
        env.run(&repo, &["setup"]),
        1,
        &["devinst.toml", "line 3", "unknown field `imgae`"],
        None,
    );
    assert!(run.stderr.contains("expected one of `image`"), "{run}");
    assert!(!repo.join(".sky-dev").exists());

    write(&toml, "[ports]\ncontainer = \"x\"\n");
    let run = failure(
        env.run(&repo, &["setup"]),
        1,
        &["devinst.toml", "line 2", "container", "expected u16"],
        None,
    );
    assert!(run.stderr.contains("invalid type"), "{run}");

    // A named port: a bad name, the main port again, both with the fix.
    write(&toml, "[ports.extra]\nWeb = 3000\n");
    failure(
        env.run(&repo, &["setup"]),
        1,
        &["devinst.toml", "`[ports.extra] Web`", "lowercase letters"],
        Some("`name = port inside`"),
    );
    write(&toml, "[ports.extra]\napi = 46580\n");
    failure(
        env.run(&repo, &["setup"]),
        1,
        &["`[ports.extra] api` is 46580, the instance's own port"],
        Some("fix `[ports.extra]`"),
    );
    assert!(!repo.join(".sky-dev").exists());

    write(&toml, "[ports]\nhost_range = [5, 1]\n");
    failure(
        env.run(&repo, &["setup"]),
        1,
        &["devinst.toml", "host_range", "[5, 1]"],
        None,
    );
    assert!(!repo.join(".sky-dev").exists());

    // A recipe that breaks after setup stops every command, with the file named.
    write(&toml, &format!("[container]\nimage = \"{BUSYBOX}\"\n"));
    env.run(&repo, &["setup"]).ok();
    write(&toml, "[container]\nimage = 5\n");
    failure(
        env.run(&repo, &["start"]),
        1,
        &["devinst.toml", "line 2", "image"],
        None,
    );
    failure(
        env.run(&repo, &["exec", "--", "true"]),
        125,
        &["devinst.toml", "line 2", "image"],
        None,
    );
}

#[test]
fn commands_before_setup_say_to_run_setup() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("notyet", "");
    for command in ["start", "stop", "status"] {
        failure(
            env.run(&repo, &[command]),
            1,
            &["no devinst instance here", ".sky-dev/.instance"],
            Some("devinst setup"),
        );
    }
    failure(
        env.run(&repo, &["exec", "--", "true"]),
        125,
        &["no devinst instance here"],
        Some("devinst setup"),
    );
    assert!(!repo.join(".sky-dev").exists(), "nothing was made");
}

#[test]
fn an_unreachable_engine_is_named_with_a_hint_to_start_one() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("noengine", "");
    env.run(&repo, &["setup"]).ok();

    let sock = [("DOCKER_HOST", "unix:///nonexistent.sock")];
    for command in [&["start"][..], &["stop"], &["status"]] {
        failure(
            run_with_env(&env, &repo, &sock, command),
            1,
            &[
                "cannot reach a container engine",
                "unix:///nonexistent.sock",
                "DOCKER_HOST",
            ],
            Some("start an engine"),
        );
    }
    failure(
        run_with_env(&env, &repo, &sock, &["exec", "--", "true"]),
        125,
        &[
            "cannot reach a container engine",
            "unix:///nonexistent.sock",
        ],
        Some("start an engine"),
    );

    let tcp = [("DOCKER_HOST", "tcp://127.0.0.1:1")];
    failure(
        run_with_env(&env, &repo, &tcp, &["start"]),
        1,
        &["cannot reach a container engine", "tcp://127.0.0.1:1"],
        Some("start an engine"),
    );
    failure(
        run_with_env(&env, &repo, &tcp, &["exec", "--", "true"]),
        125,
        &["cannot reach a container engine", "tcp://127.0.0.1:1"],
        Some("start an engine"),
    );

    // setup works without an engine: it keeps the instance as it was.
    let port = instance_value(&repo, "DEVINST_PORT").unwrap();
    run_with_env(&env, &repo, &sock, &["setup"]).ok();
    run_with_env(&env, &repo, &tcp, &["setup"]).ok();
    assert_eq!(instance_value(&repo, "DEVINST_PORT").unwrap(), port);
}

#[test]
fn a_missing_image_is_named_with_a_hint() {
    let env = TestEnv::new();
    let image = "devinst-test/does-not-exist:1";
    let repo = env.repo("noimage");
    write(
        &repo.join("devinst.toml"),
        &format!("[container]\nimage = \"{image}\"\n[setup]\ncommands = []\n"),
    );
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    failure(
        env.run(&repo, &["start"]),
        1,
        &[&format!("image `{image}`")],
        Some(&format!("docker pull {image}")),
    );
    assert!(!container_exists(&container), "no container was made");
    // A shim asks for the same start: exit 125, same words.
    failure(
        env.run(&repo, &["exec", "--", "true"]),
        125,
        &[&format!("image `{image}`")],
        Some("[container] image"),
    );
}

#[test]
fn a_failing_setup_step_shows_its_output_and_code_and_a_retry_works() {
    let env = TestEnv::new();
    let repo = env.repo("failstep");
    let recipe = |step: &str| {
        format!("[container]\nimage = \"{BUSYBOX}\"\n[setup]\ncommands = [\"{step}\"]\n")
    };
    write(&repo.join("devinst.toml"), &recipe("echo step-out; exit 7"));
    env.run(&repo, &["setup"]).ok();
    let run = failure(
        env.run(&repo, &["start"]),
        1,
        &["step-out", "exit code 7", "echo step-out; exit 7"],
        Some("devinst start"),
    );
    assert!(run.stdout.is_empty(), "no port line on failure\n{run}");
    // Not marked done: starting again runs the step again (and fails again).
    failure(env.run(&repo, &["start"]), 1, &["exit code 7"], None);

    write(&repo.join("devinst.toml"), &recipe("echo fixed"));
    let run = env.run(&repo, &["start"]).ok();
    assert!(run.stderr.contains("fixed"), "the fixed step ran\n{run}");
    let port = instance_value(&repo, "DEVINST_PORT").unwrap();
    assert_eq!(run.stdout, format!("127.0.0.1:{port} -> 46580\n"));
    let run = env.run(&repo, &["start"]).ok();
    assert!(!run.stderr.contains("setup step"), "done once\n{run}");
}

/// A port that was free a moment ago (the OS handed it out and took it back).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn an_exhausted_port_range_says_who_holds_it() {
    let env = TestEnv::new();
    // Held by another program.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = listener.local_addr().unwrap().port();
    let repo = env.busybox_repo(
        "portbusy",
        &format!("[ports]\nhost_range = [{busy}, {busy}]\n"),
    );
    failure(
        env.run(&repo, &["setup"]),
        1,
        &[
            &format!("no free host port in {busy}-{busy}"),
            "1 in use by other programs",
        ],
        Some("host_range"),
    );
    assert!(!repo.join(".sky-dev").exists(), "nothing half-made");
    drop(listener);

    // Held by another instance.
    let port = free_port();
    let range = format!("[ports]\nhost_range = [{port}, {port}]\n");
    let first = env.busybox_repo("portfirst", &range);
    let second = env.busybox_repo("portsecond", &range);
    env.run(&first, &["setup"]).ok();
    assert_eq!(
        instance_value(&first, "DEVINST_PORT").unwrap(),
        port.to_string()
    );
    let name = instance_value(&first, "DEVINST_NAME").unwrap();
    failure(
        env.run(&second, &["setup"]),
        1,
        &[
            &format!("no free host port in {port}-{port}"),
            &format!("{port} (instance `{name}`)"),
        ],
        Some("devinst list"),
    );
    assert!(!second.join(".sky-dev").exists(), "nothing half-made");
}

#[test]
fn a_container_name_used_by_a_foreign_container_is_refused() {
    let env = TestEnv::new();
    let name = format!("foreign-{}", std::process::id());
    let container = format!("skypilot-dev-{name}");
    let _foreign = Foreign::new(&["create", "--name", &container, BUSYBOX]);
    let repo = env.busybox_repo("foreign", "");
    env.run(&repo, &["setup", &name]).ok();
    assert_eq!(
        instance_value(&repo, "DEVINST_CONTAINER").unwrap(),
        container
    );
    failure(
        env.run(&repo, &["start"]),
        1,
        &[
            &format!("`{container}`"),
            "does not belong to this worktree",
        ],
        Some(&format!("docker rm -f {container}")),
    );
    failure(
        env.run(&repo, &["exec", "--", "true"]),
        125,
        &["does not belong to this worktree"],
        None,
    );
    // Left exactly as it was: not started, not removed, not relabelled.
    assert_eq!(inspect(&container, "{{.State.Status}}"), "created");
    let labels = inspect(&container, "{{json .Config.Labels}}");
    assert!(!labels.contains("devinst"), "labels: {labels}");
}

#[test]
fn exec_never_runs_in_a_running_foreign_container() {
    let env = TestEnv::new();
    let name = format!("foreign-run-{}", std::process::id());
    let container = format!("skypilot-dev-{name}");
    // Someone else's running container that happens to have `/app`.
    let _foreign = Foreign::new(&[
        "run",
        "-d",
        "-w",
        "/app",
        "--name",
        &container,
        BUSYBOX,
        "sh",
        "-c",
        "echo theirs > /marker; exec sleep 600",
    ]);
    let repo = env.busybox_repo("foreignrun", "");
    env.run(&repo, &["setup", &name]).ok();
    let run = env.run(&repo, &["exec", "--", "cat", "/marker"]);
    assert!(
        !run.stdout.contains("theirs"),
        "the command ran inside a container of no worktree of ours\n{run}"
    );
    failure(run, 125, &["does not belong to this worktree"], None);
}

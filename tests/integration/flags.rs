//! Flags every command shares (`-C DIR`, `-v`/`-q`, `--version`, `--help`)
//! and `shell --worktree`.

use crate::support::*;

/// `flag-<what>-<pid>`: unique on this engine.
fn unique(what: &str) -> String {
    format!("flag-{what}-{}", std::process::id())
}

const RANGE: &str = "[ports]\nhost_range = [47770, 47899]\n";

#[test]
fn dash_c_runs_every_command_as_if_started_in_dir() {
    let env = TestEnv::new();
    let name = unique("dashc");
    let repo = env.busybox_repo(&name, RANGE);
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    // Started outside any worktree: only -C says where.
    let outside = env.tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let dir = repo.to_str().unwrap();
    let c = |args: &[&str]| {
        let mut all = vec!["-C", dir];
        all.extend_from_slice(args);
        env.run(&outside, &all)
    };

    c(&["setup"]).ok();
    assert_eq!(instance_value(&repo, "DEVINST_NAME").unwrap(), name);
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let run = c(&["build"]).ok();
    assert!(run.stderr.contains("nothing to build"), "{run}");
    let run = c(&["start"]).ok();
    assert!(run.stdout.contains("-> 46580"), "{run}");
    let run = c(&["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(status["name"], name.as_str(), "{run}");
    assert_eq!(c(&["exec", "--", "pwd"]).ok().stdout, "/app\n");
    // Relative to where devinst was started, and a subdirectory maps too.
    let relative = format!("../{name}/sub");
    let run = env
        .run(&outside, &["-C", &relative, "exec", "--", "pwd"])
        .ok();
    assert_eq!(run.stdout, "/app/sub\n");
    env.run(&outside, &["-C", "no-such-dir", "status"])
        .fails_with(1, "cannot run in `no-such-dir`");
    c(&["logs"]).ok();
    let run = c(&["stats", "--json"]).ok();
    assert!(run.stdout.contains(&container), "{run}");
    let run = c(&["snapshot", "list"]).ok();
    assert_eq!(
        run.stdout.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "CREATED", "SIZE"]
    );
    let run = c(&["doctor"]).ok();
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains(" instance ") && l.contains(&name)),
        "{run}"
    );
    let run = c(&["list"]).ok();
    assert!(run.stdout.contains(&container), "{run}");
    c(&["gc", "--dry-run"]).ok();
    c(&["completions", "bash"]).ok();

    let steps = r##"[["expect","# "],["send","echo at-$PWD; exit 4\n"]]"##;
    let run = on_pty(&env, &outside, (24, 80), steps, &["-C", dir, "shell"]);
    assert!(run.output.contains("at-/app"), "{run:?}");
    assert_eq!(run.code, 4, "{run:?}");

    let run = c(&["stop"]).ok();
    assert!(run.stderr.contains("stopped container"), "{run}");
    assert_eq!(inspect(&container, "{{.State.Running}}"), "false");
    c(&["destroy", "--yes"]).ok();
    assert!(!container_exists(&container));
    assert!(
        repo.join(".sky-dev/.instance").is_file(),
        "kept without --purge"
    );
    assert!(
        !outside.join(".sky-dev").exists(),
        "nothing made where devinst ran"
    );
}

#[test]
fn shell_worktree_opens_the_shell_of_that_worktree_from_anywhere() {
    let env = TestEnv::new();
    let repo = env.busybox_repo(&unique("shellwt"), RANGE);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let outside = env.tmp.path().join("elsewhere");
    std::fs::create_dir_all(&outside).unwrap();
    let steps = r##"[["expect","# "],["send","echo at-$PWD $(hostname); exit\n"]]"##;
    let run = on_pty(
        &env,
        &outside,
        (24, 80),
        steps,
        &["shell", "--worktree", repo.to_str().unwrap()],
    );
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert!(
        run.output.contains(&format!("at-/app {container}")),
        "{run:?}"
    );
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn version_help_and_usage_errors() {
    let env = TestEnv::new();
    let dir = env.tmp.path();
    let run = env.run(dir, &["--version"]).ok();
    assert_eq!(
        run.stdout,
        format!("devinst {}\n", env!("CARGO_PKG_VERSION"))
    );

    let help = env.run(dir, &["--help"]).ok();
    assert!(help.stdout.starts_with("Give every git worktree"), "{help}");
    assert!(
        help.stdout.contains("Usage: devinst [OPTIONS] <COMMAND>"),
        "{help}"
    );
    for sub in [
        "setup",
        "start",
        "build",
        "stop",
        "exec",
        "shell",
        "status",
        "list",
        "destroy",
        "snapshot",
        "logs",
        "stats",
        "gc",
        "doctor",
        "completions",
    ] {
        assert!(
            help.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "--help lists `{sub}`\n{help}"
        );
    }
    for flag in ["-C <DIR>", "--verbose", "--quiet", "--host <URI>"] {
        assert!(help.stdout.contains(flag), "--help shows {flag}\n{help}");
    }
    let run = env.run(dir, &["setup", "--help"]).ok();
    assert!(run.stdout.contains("--tier <NAME>"), "{run}");

    // Usage errors exit 2 with clap's message, and change nothing.
    env.run(dir, &["-v", "-q", "status"])
        .fails_with(2, "cannot be used with");
    env.run(dir, &[]).fails_with(2, "Usage: devinst");
    env.run(dir, &["no-such-command"])
        .fails_with(2, "unrecognized subcommand");
    env.run(dir, &["exec"]).fails_with(2, "required");
}

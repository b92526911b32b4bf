//! Exec that feels local: TTY, signals, exit codes, environment, git inside.

use crate::poll::{wait_until, Streaming};
use crate::support::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

on_both_exec_paths!(
    a_terminal_gets_a_tty_of_its_size_and_is_restored_after,
    shell_is_an_interactive_login_shell,
    without_a_terminal_there_is_no_tty,
    exit_codes_follow_the_shell,
    signals_reach_the_command_and_nothing_is_left_running,
    chosen_environment_variables_pass_through_and_are_never_logged,
    the_default_list_passes_the_seeds_variables,
    git_works_inside_for_main_and_linked_worktrees,
);

fn started_busybox(env: &TestEnv, rel: &str, extra: &str) -> PathBuf {
    let repo = env.busybox_repo(rel, extra);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    repo
}

/// The engine's API version, as (major, minor).
fn engine_api() -> (u32, u32) {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (major, minor) = text.trim().split_once('.').expect("an API version");
    (major.parse().unwrap(), minor.parse().unwrap())
}

fn a_terminal_gets_a_tty_of_its_size_and_is_restored_after(env: TestEnv) {
    let repo = started_busybox(&env, "tty", "");
    // The size as the command sees it when it asks at once, then that the
    // size comes (the loop ends only when it does). busybox `stty size`
    // prints nothing on stdout for a terminal of 0 x 0.
    let script = "at_once=$(stty size 2>/dev/null); echo \"at-once=[${at_once:-0 0}]\"; \
                  until [ \"$(stty size 2>/dev/null)\" = \"30 100\" ]; do sleep 0.05; done; \
                  echo size-arrived; tty; echo TERM=$TERM";
    let run = on_pty(
        &env,
        &repo,
        (30, 100),
        "[]",
        &["exec", "--", "sh", "-c", script],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.output.contains("size-arrived"), "{run:?}");
    assert!(run.output.contains("/dev/pts/"), "{run:?}");
    assert!(run.output.contains("TERM=xterm-256color"), "{run:?}");
    assert!(run.restored, "terminal settings restored");
    // Engines with API 1.42 or later take the size with the exec, so it is
    // there at once. Older ones (Docker 20.10 and Podman 4 speak 1.41) take
    // it only by a resize after the command started, as `docker exec -t`
    // does: a command that asks at once may see 0 0, never another size.
    if engine_api() >= (1, 42) {
        assert!(run.output.contains("at-once=[30 100]"), "{run:?}");
    } else {
        assert!(
            run.output.contains("at-once=[30 100]") || run.output.contains("at-once=[0 0]"),
            "{run:?}"
        );
    }

    // A window resize reaches the command: it waits until it sees it.
    let steps = r#"[["expect","ready"],["resize",41,123],["expect","resized"]]"#;
    let script = "echo ready; \
                  until [ \"$(stty size 2>/dev/null)\" = \"41 123\" ]; do sleep 0.05; done; \
                  echo resized";
    let run = on_pty(
        &env,
        &repo,
        (30, 100),
        steps,
        &["exec", "--", "sh", "-c", script],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.restored);

    // Ctrl-C travels through the terminal to the command.
    let steps = r#"[["expect","ready"],["send","\u0003"]]"#;
    let script = "trap 'echo got-int; exit 5' INT; echo ready; while :; do sleep 0.1; done";
    let run = on_pty(
        &env,
        &repo,
        (30, 100),
        steps,
        &["exec", "--", "sh", "-c", script],
    );
    assert!(run.output.contains("got-int"), "{run:?}");
    assert_eq!(run.code, 5);
    assert!(run.restored);

    // The exit code comes back, and the terminal is restored, on failure too.
    let run = on_pty(
        &env,
        &repo,
        (30, 100),
        "[]",
        &["exec", "--", "sh", "-c", "exit 9"],
    );
    assert_eq!(run.code, 9);
    assert!(run.restored);
}

fn shell_is_an_interactive_login_shell(env: TestEnv) {
    // sh (busybox has no bash): a login shell reads /etc/profile.
    let repo = started_busybox(&env, "shell", "");
    env.sh(&repo, "echo 'LOGIN_MARK=profile-read' > /etc/profile")
        .ok();
    let steps = r##"[["expect","# "],["send","echo hi-$((40+2)) $PWD $LOGIN_MARK; exit 3\n"]]"##;
    let run = on_pty(&env, &repo, (24, 80), steps, &["shell"]);
    assert!(run.output.contains("hi-42 /app profile-read"), "{run:?}");
    assert_eq!(run.code, 3);
    assert!(run.restored);

    // bash where the image has it, and bash itself says it is a login shell.
    let repo = env.repo("shell-bash");
    write(
        &repo.join("devinst.toml"),
        &format!("[container]\nimage = \"{PYTHON_IMAGE}\"\n[setup]\ncommands = []\n"),
    );
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let steps = r##"[["expect","# "],["send","shopt -q login_shell && echo login-$BASH_VERSINFO; exit\n"]]"##;
    let run = on_pty(&env, &repo, (24, 80), steps, &["shell"]);
    assert!(run.output.contains("login-5"), "{run:?}");
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn a_tty_only_when_both_stdin_and_stdout_are_terminals() {
    let env = TestEnv::new();
    let repo = started_busybox(&env, "ttyends", "");
    let devinst = env!("CARGO_BIN_EXE_devinst");
    let on_terminal = |script: &str| {
        let run = on_pty_argv(&env, &repo, (24, 80), "[]", &["sh", "-c", script]);
        assert_eq!(run.code, 0, "{script}: {run:?}");
        run.output
    };
    let both = on_terminal(&format!("'{devinst}' exec -- sh -c 'tty || true'"));
    assert!(both.contains("/dev/pts/"), "{both}");
    // stdin a terminal, stdout a pipe.
    let piped = on_terminal(&format!("'{devinst}' exec -- sh -c 'tty || true' | cat"));
    assert!(piped.contains("not a tty"), "{piped}");
    // stdout a terminal, stdin not.
    let no_input = on_terminal(&format!(
        "'{devinst}' exec -- sh -c 'tty || true' </dev/null"
    ));
    assert!(no_input.contains("not a tty"), "{no_input}");
    let from_pipe = on_terminal(&format!("echo | '{devinst}' exec -- sh -c 'tty || true'"));
    assert!(from_pipe.contains("not a tty"), "{from_pipe}");
}

#[test]
fn three_interrupts_give_up_on_a_command_that_ignores_them() {
    let env = TestEnv::new();
    let repo = started_busybox(&env, "threeint", "");
    // The command survives SIGINT (it only notes it) and would run on.
    let script = "trap 'echo noted' INT; echo ready; while :; do sleep 0.1; done";
    let mut child = Streaming::spawn(env.cmd(&repo).args(["exec", "--", "sh", "-c", script]));
    child.wait_for_stdout("ready\n");
    for n in 1..=2 {
        child.signal("INT");
        // Passed on, and devinst still runs.
        wait_until(&format!("interrupt {n} to reach the command"), || {
            (child.stdout().matches("noted").count() >= n).then_some(())
        });
        assert!(child.child.try_wait().unwrap().is_none(), "gave up early");
    }
    child.signal("INT");
    let (status, out, err) = child.finish();
    assert_eq!(status.code(), Some(130), "{out}{err}");
}

fn without_a_terminal_there_is_no_tty(env: TestEnv) {
    let repo = started_busybox(&env, "notty", "");
    let run = env.sh(&repo, "tty; true").ok();
    assert_eq!(run.stdout, "not a tty\n");
    let run = env
        .run_with_stdin(&repo, &["exec", "--", "wc", "-c"], b"12345")
        .ok();
    assert_eq!(run.stdout.trim(), "5", "end of stdin reaches the command");
}

fn exit_codes_follow_the_shell(env: TestEnv) {
    let repo = started_busybox(&env, "codes", "");
    assert_eq!(env.sh(&repo, "exit 3").code, 3);
    let run = env.run(&repo, &["exec", "--", "no-such-program"]);
    assert_eq!(run.code, 127, "{run}");
    assert!(
        run.stdout.is_empty(),
        "the runtime's message is an error: {run}"
    );
    assert_eq!(
        env.run(&repo, &["exec", "--", "/app/devinst.toml"]).code,
        126
    );
    assert_eq!(env.sh(&repo, "kill -9 $$").code, 137);
    assert_eq!(env.sh(&repo, "exit 300").code, 300 & 0xff);
}

/// Starts `script` through devinst with no terminal; returns once it printed
/// `ready`, with its pid.
fn spawn_ready(
    env: &TestEnv,
    repo: &Path,
    script: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = env
        .cmd(repo)
        .args(["exec", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, reader)
}

fn signals_reach_the_command_and_nothing_is_left_running(env: TestEnv) {
    let repo = started_busybox(&env, "signals", "");
    for (signal, number) in [("INT", 2), ("TERM", 15), ("HUP", 1)] {
        let script = format!(
            "trap 'echo got-{signal}; exit 40' {signal}; echo ready; while :; do sleep 0.1; done"
        );
        let (mut child, mut reader) = spawn_ready(&env, &repo, &script);
        let status = Command::new("kill")
            .args([format!("-{number}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        assert!(
            rest.contains(&format!("got-{signal}")),
            "{signal}: {rest:?}"
        );
        assert_eq!(child.wait().unwrap().code(), Some(40), "{signal}");
    }

    // Untrapped: the command and its children end, and the code says why.
    let (mut child, _reader) = spawn_ready(&env, &repo, "sleep 301 & echo ready; sleep 302");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    // The kill is sent as the command ends; the engine reaps a moment later.
    wait_until("the command's children to end", || {
        let ps = env.run(&repo, &["exec", "--", "ps", "-o", "args"]).ok();
        (!ps.stdout.contains("sleep 30")).then_some(())
    });
}

/// Whether anything the test started with `marker` still runs inside.
fn left_running(env: &TestEnv, repo: &Path, marker: &str) -> String {
    let ps = env.run(repo, &["exec", "--", "ps", "-o", "args"]).ok();
    ps.stdout
        .lines()
        .filter(|l| l.contains(marker) && !l.contains("ps -o"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn three_sigints_end_a_command_that_ignores_them_with_all_it_started() {
    let env = TestEnv::new();
    let repo = started_busybox(&env, "sigint3", "");
    // The command handles SIGINT and carries on; what it started in the
    // background never sees it.
    let script = "sleep 311 & trap 'echo got-int' INT; echo ready; while :; do sleep 0.1; done";
    let (mut child, mut reader) = spawn_ready(&env, &repo, script);
    for _ in 0..2 {
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "got-int\n");
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(left_running(&env, &repo, "sleep 311"), "");
}

#[test]
fn ctrl_c_three_times_within_a_second_on_a_terminal_gives_the_prompt_back() {
    let env = TestEnv::new();
    let repo = started_busybox(&env, "ctrlc3", "");
    // Everything ignores SIGINT, so Ctrl-C through the terminal does nothing.
    let steps = r#"[["expect","ready"],["send","\u0003"],["send","\u0003"],["send","\u0003"]]"#;
    let script = "trap '' INT; sleep 312 & echo ready; while :; do sleep 0.1; done";
    let run = on_pty(
        &env,
        &repo,
        (24, 80),
        steps,
        &["exec", "--", "sh", "-c", script],
    );
    assert_eq!(run.code, 130, "{run:?}");
    assert!(run.restored, "{run:?}");
    assert_eq!(left_running(&env, &repo, "sleep 312"), "");
}

#[test]
fn exec_where_the_directory_is_missing_inside_says_so() {
    let env = TestEnv::new();
    let repo = started_busybox(&env, "nodir", "");
    // A directory the host has and the container does not: a file system
    // mounted over `sub` on the host after the container was made does not
    // reach the container's view of the worktree.
    let sub = repo.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&sub)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs (the tests run as root)");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(sub.clone());
    let only_here = sub.join("only-here");
    std::fs::create_dir(&only_here).unwrap();
    let mut cmd = env.cmd(&repo);
    cmd.args(["-C", only_here.to_str().unwrap(), "exec", "--", "true"]);
    let run = env.run_cmd(&repo, &mut cmd);
    let run = run.fails_with(
        125,
        "the directory `/app/sub/only-here` does not exist in container",
    );
    assert!(!run.stderr.contains("OCI runtime"), "{run}");
    assert!(run.stderr.contains("hint:"), "{run}");
}

#[test]
fn exec_racing_stop_says_what_happened() {
    let env = TestEnv::new();
    let repo = started_busybox(&env, "racestop", "");
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    // `TestEnv` stays on this thread; the loops get its command's settings.
    let envs: Vec<_> = env
        .cmd(&repo)
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let exec_true = || {
        Command::new(env!("CARGO_BIN_EXE_devinst"))
            .current_dir(&repo)
            .envs(envs.iter().cloned())
            .env_remove("DEVINST_INSTANCE")
            .stdin(Stdio::null())
            .args(["exec", "--", "true"])
            .output()
            .unwrap()
    };
    let stop = AtomicBool::new(false);
    let runs = AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                while !stop.load(SeqCst) {
                    let out = exec_true();
                    runs.fetch_add(1, SeqCst);
                    results.lock().unwrap().push(Run::from(out));
                }
            });
        }
        // Three stops, each once the loops are under way again.
        for _ in 0..3 {
            let before = runs.load(SeqCst);
            while runs.load(SeqCst) < before + 8 {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            quiet_docker(&["stop", "-t", "1", &container]);
        }
        stop.store(true, SeqCst);
    });
    for run in results.into_inner().unwrap() {
        assert!(!run.stderr.contains("OCI runtime"), "{run}");
        assert!(!run.stderr.contains("cannot exec"), "{run}");
        assert!(run.stdout.is_empty(), "{run}");
        match run.code {
            0 | 137 => {}
            125 => assert!(run.stderr.contains("stopped"), "{run}"),
            _ => panic!("unexpected exit code\n{run}"),
        }
    }
}

fn chosen_environment_variables_pass_through_and_are_never_logged(env: TestEnv) {
    let repo = env.busybox_repo(
        "envpass",
        "[env]\npass = [\"AWS_*\", \"EXACT\"]\nset = { FIXED = \"f\" }\n",
    );
    // `EXACT` is beyond the default list: the user agrees to pass it.
    env.trust(&repo);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let out = env
        .cmd(&repo)
        .args([
            "-vv",
            "exec",
            "--",
            "sh",
            "-c",
            "echo $AWS_PROFILE/$EXACT/$EXACTLY/$OTHER/$FIXED",
        ])
        .env("AWS_PROFILE", "secret-profile-value")
        .env("EXACT", "e")
        .env("EXACTLY", "no")
        .env("OTHER", "no")
        .output()
        .unwrap();
    let run = Run::from(out).ok();
    assert_eq!(run.stdout, "secret-profile-value/e///f\n");
    assert!(
        !run.stderr.contains("secret-profile-value"),
        "a value was logged:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("DEBUG"),
        "-vv shows debug logs:\n{}",
        run.stderr
    );
}

fn the_default_list_passes_the_seeds_variables(env: TestEnv) {
    let repo = started_busybox(&env, "envdefault", "");
    let out = env
        .cmd(&repo)
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            "echo $SKYPILOT_DEBUG/$AWS_REGION/$KUBECONFIG/$HTTPS_PROXY/$HOSTNAME_X",
        ])
        .env("SKYPILOT_DEBUG", "1")
        .env("AWS_REGION", "r")
        .env("KUBECONFIG", "k")
        .env("HTTPS_PROXY", "p")
        .env("HOSTNAME_X", "no")
        .output()
        .unwrap();
    assert_eq!(Run::from(out).ok().stdout, "1/r/k/p/\n");
}

fn git_works_inside_for_main_and_linked_worktrees(env: TestEnv) {
    let main = env.repo("gitmain");
    write(
        &main.join("devinst.toml"),
        &format!("[container]\nimage = \"{PYTHON_IMAGE}\"\n[setup]\ncommands = []\n"),
    );
    git(&main, &["add", "devinst.toml"]);
    git(&main, &["commit", "-q", "-m", "recipe"]);
    let linked = env.tmp.path().join("gitlinked");
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            linked.to_str().unwrap(),
        ],
    );
    let linked = linked.canonicalize().unwrap();

    for (dir, branch) in [(&main, "main"), (&linked, "feature")] {
        env.run(dir, &["setup"]).ok();
        env.run(dir, &["start"]).ok();
        write(&dir.join("README"), &format!("changed in {branch}\n"));
        let ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"];
        let exec = |args: &[&str]| {
            let mut all = vec!["exec", "--", "git"];
            all.extend_from_slice(&ident);
            all.extend_from_slice(args);
            env.run(dir, &all).ok().stdout
        };
        assert!(
            exec(&["status", "--short"]).contains(" M README"),
            "{branch}"
        );
        assert!(
            exec(&["diff"]).contains(&format!("+changed in {branch}")),
            "{branch}"
        );
        assert_eq!(exec(&["rev-parse", "--abbrev-ref", "HEAD"]).trim(), branch);
        exec(&["commit", "-q", "-am", &format!("from inside {branch}")]);
        assert!(exec(&["log", "--oneline", "-1"]).contains(&format!("from inside {branch}")));
        // The same repository, seen from the host.
        assert!(git(dir, &["log", "--oneline", "-1"]).contains(&format!("from inside {branch}")));
        assert_eq!(git(dir, &["status", "--porcelain"]), "");
    }
}

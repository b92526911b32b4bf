//! The agent inside each instance: what only its path does (a terminal
//! sized before the command starts), and when it is passed over: a socket
//! that is not the user's, stale or foreign, an instance made before it.
//! The exec behaviours both paths share are in exec.rs and core.rs.

use crate::support::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// Host ports for this module, apart from other modules' runs.
const RANGE: &str = "[ports]\nhost_range = [47500, 47549]\n";

fn started(env: &TestEnv, rel: &str) -> std::path::PathBuf {
    let repo = env.busybox_repo(rel, RANGE);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    repo
}

#[test]
fn a_terminal_is_sized_before_the_command_starts_and_controls_it() {
    let env = TestEnv::through("agent");
    let repo = started(&env, "ag-tty");
    // No pause: the size is there when the command asks at once.
    let script = "stty size; tty";
    let run = on_pty(
        &env,
        &repo,
        (37, 123),
        "[]",
        &["exec", "--", "sh", "-c", script],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.output.starts_with("37 123"), "{run:?}");
    assert!(run.output.contains("/dev/pts/"), "{run:?}");
    assert!(run.restored);
    // A controlling terminal: an interactive shell has job control.
    let steps = r#"[["expect","$ "],["send","sleep 30 &\n"],["send","jobs; exit 4\n"]]"#;
    let run = on_pty(
        &env,
        &repo,
        (24, 80),
        steps,
        &["exec", "--", "env", "PS1=$ ", "sh", "-i"],
    );
    assert!(run.output.contains("Running"), "{run:?}");
    assert!(!run.output.contains("job control turned off"), "{run:?}");
    assert_eq!(run.code, 4, "{run:?}");
}

/// `stat -c FORMAT PATH` on the host.
fn stat(path: &Path, format: &str) -> String {
    let out = Command::new("stat")
        .args(["-c", format])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs `argv` as uid:gid `id` (no groups), with HOME set.
fn as_user(id: u32, dir: &Path, home: &Path, argv: &[&str]) -> Run {
    // A home (and so a data directory) of the user's own, as every user has.
    let home = home.with_file_name(format!("home-{id}"));
    std::fs::create_dir_all(&home).unwrap();
    let status = Command::new("chown")
        .arg(format!("{id}:{id}"))
        .arg(&home)
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("setpriv")
        .args([
            format!("--reuid={id}"),
            format!("--regid={id}"),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ])
        .args(argv)
        .current_dir(dir)
        .env("HOME", &home)
        .env_remove("DEVINST_DATA_DIR")
        .env_remove("XDG_DATA_HOME")
        .env("DEVINST_EXEC", "agent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run::from(out)
}

#[test]
fn only_the_worktrees_owner_can_use_the_socket() {
    let env = TestEnv::through("agent");
    let repo = env.busybox_repo("ag-owner", RANGE);
    let (owner, other) = (42_420, 42_421);
    // Every directory above the agent's open to all, so only its own
    // permissions stand between another user and the socket.
    for dir in [env.tmp.path(), &env.home] {
        Command::new("chmod").arg("755").arg(dir).status().unwrap();
    }
    let status = Command::new("chown")
        .args(["-R", &format!("{owner}:{owner}")])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(status.success());
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let dir = repo.join(".sky-dev/agent");
    assert_eq!(stat(&dir, "%a %u"), format!("700 {owner}"));
    assert_eq!(
        stat(&dir.join("sock"), "%a %u %F"),
        format!("600 {owner} socket")
    );

    let devinst = env!("CARGO_BIN_EXE_devinst");
    // The owner's commands go through the agent (no engine access needed).
    let run = as_user(
        owner,
        &repo,
        &env.home,
        &[devinst, "exec", "--", "sh", "-c", "echo ok"],
    );
    assert_eq!(run.ok().stdout, "ok\n");
    // Another user cannot even connect, whatever devinst would check.
    let connect = format!(
        "import socket; s = socket.socket(socket.AF_UNIX); s.connect({:?})",
        dir.join("sock").to_str().unwrap()
    );
    let run = as_user(
        other,
        &repo,
        &env.home,
        &["/usr/bin/python3", "-c", &connect],
    );
    assert!(run.stderr.contains("PermissionError"), "{run}");
    // Nor root's devinst trusts a socket that is not its own.
    let run = env.run(&repo, &["exec", "--", "true"]);
    run.fails_with(125, "is not this user's alone");
}

/// Serves a fake agent on `socket` that says hello with `container` and
/// `version`, then records what it is sent in `log`.
fn fake_agent(socket: &Path, container: &str, version: u32, log: &Path) -> std::process::Child {
    let script = r#"
import os, socket, struct, sys
path, name, version, log = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o600)
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    body = b"\x01DVAGENT\0" + struct.pack("<II", version, len(name)) + name
    got, fds = 0, 0
    try:
        c.sendall(struct.pack("<I", len(body)) + body)
        c.settimeout(5)
        while True:
            data, anc, _, _ = c.recvmsg(65536, socket.CMSG_SPACE(64))
            fds += sum(len(d) // 4 for _, _, d in anc)
            if not data:
                break
            got += len(data)
    except OSError:
        pass
    with open(log, "a") as f:
        f.write(f"bytes={got} fds={fds}\n")
    c.close()
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(socket)
        .arg(container)
        .arg(version.to_string())
        .arg(log)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
    child
}

#[test]
fn a_stale_or_foreign_socket_is_never_trusted() {
    let env = TestEnv::new();
    let repo = started(&env, "ag-foreign");
    let socket = repo.join(".sky-dev/agent/sock");
    env.run(&repo, &["stop"]).ok();
    // Stale: the container stopped; the engine runs it (and starts it).
    let run = env
        .run(&repo, &["-v", "exec", "--", "echo", "via-engine"])
        .ok();
    assert_eq!(run.stdout, "via-engine\n");
    assert!(run.stderr.contains("no agent answers"), "{run}");

    for (container, version, reason) in [
        ("someone-else", 1, "serves container `someone-else`"),
        ("skypilot-dev-ag-foreign", 99, "speaks protocol 99"),
    ] {
        env.run(&repo, &["stop"]).ok();
        std::fs::remove_file(&socket).unwrap();
        let log = env.tmp.path().join(format!("fake-{version}.log"));
        let mut fake = fake_agent(&socket, container, version, &log);
        // Asked for the agent alone, devinst refuses; otherwise the engine
        // runs the command (and starts the container, whose agent then
        // takes the socket back).
        let strict = env.run_cmd(
            &repo,
            env.cmd(&repo)
                .env("DEVINST_EXEC", "agent")
                .args(["exec", "--", "true"]),
        );
        let run = env.run(&repo, &["-v", "exec", "--", "echo", "still-works"]);
        let _ = fake.kill();
        let _ = fake.wait();
        let run = run.ok();
        assert_eq!(run.stdout, "still-works\n");
        assert!(run.stderr.contains(reason), "{run}");
        strict.fails_with(125, reason);
        // The fake was told nothing and handed no descriptor.
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(!log.is_empty());
        assert!(log.lines().all(|l| l == "bytes=0 fds=0"), "{log}");
    }
}

#[test]
fn an_instance_made_before_the_agent_works_through_the_engine_and_says_once_to_recreate() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("ag-old", RANGE);
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let root = repo.to_str().unwrap();
    // As an earlier devinst made it: its labels, `sleep infinity`, no agent.
    let _old = Foreign::new(&[
        "run",
        "-d",
        "--name",
        &container,
        "--label",
        "devinst.managed-by=devinst",
        "--label",
        "devinst.instance=ag-old",
        "--label",
        &format!("devinst.worktree={root}"),
        "-v",
        &format!("{root}:/app"),
        "-w",
        "/app",
        BUSYBOX,
        "sleep",
        "infinity",
    ]);
    env.track(&repo);
    let run = env.run(&repo, &["exec", "--", "echo", "old"]).ok();
    assert_eq!(run.stdout, "old\n");
    assert!(run.stderr.contains("made before devinst's agent"), "{run}");
    assert!(run.stderr.contains("devinst start --recreate"), "{run}");
    let run = env.run(&repo, &["exec", "--", "echo", "again"]).ok();
    assert_eq!(run.stderr, "", "said once");

    env.run(&repo, &["start", "--recreate"]).ok();
    let strict = |args: &[&str]| {
        env.run_cmd(
            &repo,
            env.cmd(&repo).env("DEVINST_EXEC", "agent").args(args),
        )
    };
    assert_eq!(
        strict(&["exec", "--", "echo", "fast"]).ok().stdout,
        "fast\n"
    );
}

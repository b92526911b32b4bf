//! The fleet: logs, stats, listings, destroy, gc, moved worktrees, doctor,
//! completions, output conventions, and surviving a kill at any point.
//!
//! Instance names carry the test process id: container names are shared by
//! everyone using the engine. Host ports stay within 47100-47299.

use crate::support::*;
use serde::Deserialize;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `fleet-<what>-<pid>`: unique on this engine.
fn unique(what: &str) -> String {
    format!("fl-{what}-{}", std::process::id())
}

/// A busybox repository named `unique(what)` with the given `[container]`
/// keys and host port range.
fn fleet_repo(env: &TestEnv, what: &str, container: &str, ports: [u16; 2]) -> std::path::PathBuf {
    let dir = env.repo(&unique(what));
    write(
        &dir.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{BUSYBOX}\"\n{container}\n[setup]\ncommands = []\n\
             [ports]\nhost_range = [{}, {}]\n",
            ports[0], ports[1]
        ),
    );
    dir
}

/// The `--json` view of an instance, as far as these tests rely on it.
#[derive(Debug, Deserialize)]
struct View {
    name: String,
    worktree: String,
    worktree_exists: bool,
    container: String,
    state: String,
    port: u16,
}

fn list(env: &TestEnv, dir: &Path) -> Vec<View> {
    let run = env.run(dir, &["list", "--json"]).ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"))
}

fn listed<'a>(views: &'a [View], name: &str) -> Option<&'a View> {
    views.iter().find(|v| v.name == name)
}

/// A devinst-labelled container made behind devinst's back, whose worktree
/// label is `worktree`, as this run's data directory would have made it.
fn labelled_foreign(name: &str, worktree: &Path) -> Foreign {
    let label = format!("devinst.worktree={}", worktree.display());
    let identity = std::fs::read_to_string(data_dir().join("identity")).unwrap_or_default();
    let made_by = format!("devinst.data-dir={}", identity.trim());
    Foreign::new(&[
        "create",
        "--name",
        name,
        "--label",
        "devinst.managed-by=devinst",
        "--label",
        &label,
        "--label",
        &made_by,
        BUSYBOX,
        "true",
    ])
}

/// Waits for `child` to end, at most `limit`; kills it and fails after that.
fn wait_for(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn logs_keep_streams_apart_tail_and_follow_until_the_container_stops() {
    let env = TestEnv::new();
    let repo = fleet_repo(
        &env,
        "logs",
        r#"command = ["sh", "-c", "echo out-line; echo err-line >&2; sleep 0.3; echo last-line; exec sleep 3600"]"#,
        [47100, 47109],
    );
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["logs"]).fails_with(1, "does not exist");
    env.run(&repo, &["start"]).ok();

    // The container writes as it starts; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let run = env.run(&repo, &["logs"]).ok();
        if run.stdout.contains("last-line") || Instant::now() > deadline {
            break run;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(all.stdout, "out-line\nlast-line\n", "{all}");
    assert_eq!(all.stderr, "err-line\n", "{all}");

    let tail = env.run(&repo, &["logs", "--tail", "1"]).ok();
    assert_eq!(
        (tail.stdout.as_str(), tail.stderr.as_str()),
        ("last-line\n", "")
    );

    // -f prints what comes later, and ends by itself when the container stops.
    let mut follow = env
        .cmd(&repo)
        .args(["logs", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    env.sh(&repo, "echo followed-line > /proc/1/fd/1").ok();
    std::thread::sleep(Duration::from_millis(500));
    // Ctrl-C ends a follower as a shell reports it: 130, no error.
    let mut interrupted = env
        .cmd(&repo)
        .args(["logs", "-f"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let sent = Command::new("kill")
        .args(["-INT", &interrupted.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = wait_for(&mut interrupted, Duration::from_secs(30));
    let mut err = String::new();
    interrupted
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!((status.code(), err.as_str()), (Some(130), "err-line\n"));
    env.run(&repo, &["stop"]).ok();
    let status = wait_for(&mut follow, Duration::from_secs(30));
    let mut out = String::new();
    follow
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.success(), "logs -f: {status}\n{out}");
    assert_eq!(out, "out-line\nlast-line\nfollowed-line\n");
}

#[test]
fn stats_report_cpu_and_memory_against_the_limits() {
    let env = TestEnv::new();
    let repo = fleet_repo(
        &env,
        "stats",
        "cpus = 0.5\nmemory = \"64m\"",
        [47110, 47119],
    );
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["stats"]).fails_with(1, "is not running");
    env.run(&repo, &["start"]).ok();

    #[derive(Debug, Deserialize)]
    struct Stats {
        container: String,
        cpu_percent: f64,
        memory_usage: u64,
        memory_limit: u64,
        memory_percent: f64,
    }
    let stats = |env: &TestEnv| -> Stats {
        let run = env.run(&repo, &["stats", "--json"]).ok();
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"))
    };
    let idle = stats(&env);
    assert_eq!(
        idle.container,
        instance_value(&repo, "DEVINST_CONTAINER").unwrap()
    );
    assert_eq!(idle.memory_limit, 64 << 20);
    assert!(
        idle.memory_usage > 0 && idle.memory_usage < 64 << 20,
        "{idle:?}"
    );
    assert!(
        idle.memory_percent > 0.0 && idle.memory_percent < 100.0,
        "{idle:?}"
    );
    assert!(idle.cpu_percent < 20.0, "an idle container: {idle:?}");

    // A busy loop, held to half a cpu by the limit.
    let mut busy = env
        .cmd(&repo)
        .args([
            "exec",
            "--",
            "timeout",
            "6",
            "sh",
            "-c",
            "while :; do :; done",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let loaded = stats(&env);
    wait_for(&mut busy, Duration::from_secs(30));
    assert!(
        loaded.cpu_percent > 10.0 && loaded.cpu_percent < 80.0,
        "half a cpu busy: {loaded:?}"
    );

    let text = env.run(&repo, &["stats"]).ok();
    assert!(
        text.stdout.contains("cpu:") && text.stdout.contains("/ 64.0 MiB"),
        "{text}"
    );
}

#[test]
fn status_and_list_print_json_and_list_shows_gone_worktrees() {
    let _gone = gone_worktrees_lock();
    let env = TestEnv::new();
    let repo = fleet_repo(&env, "json", "", [47120, 47129]);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let name = instance_value(&repo, "DEVINST_NAME").unwrap();
    let port: u16 = instance_value(&repo, "DEVINST_PORT")
        .unwrap()
        .parse()
        .unwrap();

    let run = env.run(&repo, &["status", "--json"]).ok();
    let status: View = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"));
    assert_eq!(status.name, name);
    assert_eq!(status.worktree, repo.to_str().unwrap());
    assert!(status.worktree_exists);
    assert_eq!(status.container, format!("skypilot-dev-{name}"));
    assert_eq!(status.state, "running");
    assert_eq!(status.port, port);

    let views = list(&env, &repo);
    let mine = listed(&views, &name).expect("list shows the instance");
    assert_eq!((mine.state.as_str(), mine.port), ("running", port));
    assert!(mine.worktree_exists);

    // Its worktree deleted, the instance still shows, marked as gone.
    let doomed = fleet_repo(&env, "json-gone", "", [47120, 47129]);
    env.run(&doomed, &["setup"]).ok();
    env.run(&doomed, &["start"]).ok();
    let doomed_name = instance_value(&doomed, "DEVINST_NAME").unwrap();
    std::fs::remove_dir_all(&doomed).unwrap();
    // A labelled container no registry knows shows too.
    let stray = labelled_foreign(&unique("json-stray"), &env.tmp.path().join("nowhere"));

    let views = list(&env, env.tmp.path());
    let gone = listed(&views, &doomed_name).expect("list shows the gone worktree's instance");
    assert!(!gone.worktree_exists, "{gone:?}");
    assert_eq!(gone.state, "running");
    let stray_view = views
        .iter()
        .find(|v| v.container == stray.0)
        .expect("list shows unregistered containers");
    assert!(!stray_view.worktree_exists);
    assert_eq!(stray_view.state, "created");
    let text = env.run(env.tmp.path(), &["list"]).ok();
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with(&doomed_name) && l.ends_with("(gone)")),
        "{text}"
    );
}

#[test]
fn destroy_removes_the_container_and_releases_the_port() {
    let env = TestEnv::new();
    let one_port = [47130, 47130];
    let a = fleet_repo(&env, "destroy-a", "", one_port);
    let b = fleet_repo(&env, "destroy-b", "", one_port);
    env.run(&a, &["setup"]).ok();
    env.run(&a, &["start"]).ok();
    let a_name = instance_value(&a, "DEVINST_NAME").unwrap();
    let a_container = instance_value(&a, "DEVINST_CONTAINER").unwrap();
    env.run(&b, &["setup"])
        .fails_with(1, &format!("47130 (instance `{a_name}`)"));

    // No terminal to ask on: destroy goes ahead without --yes.
    let run = env.run(&a, &["destroy"]).ok();
    assert!(run.stderr.contains("released port 47130"), "{run}");
    assert!(!container_exists(&a_container));
    assert!(
        a.join(".sky-dev/.instance").is_file(),
        "kept without --purge"
    );

    env.run(&b, &["setup"]).ok();
    assert_eq!(instance_value(&b, "DEVINST_PORT").unwrap(), "47130");
    env.run(&b, &["start"]).ok();
    let b_container = instance_value(&b, "DEVINST_CONTAINER").unwrap();
    env.run(&b, &["destroy", "--purge", "--yes"]).ok();
    assert!(!container_exists(&b_container));
    assert!(!b.join(".sky-dev").exists());
    assert!(listed(&list(&env, &b), &a_name).is_none());
}

#[test]
fn destroy_leaves_a_container_of_another_live_worktree_alone() {
    let env = TestEnv::new();
    let repo = fleet_repo(&env, "destroy-foreign", "", [47131, 47139]);
    env.run(&repo, &["setup"]).ok();
    // Someone else's instance (another registry) that happens to share the
    // container name: its worktree is alive.
    let elsewhere = env.tmp.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join(".sky-dev")).unwrap();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let _theirs = labelled_foreign(&container, &elsewhere);
    let run = env.run(&repo, &["destroy"]).ok();
    assert!(run.stderr.contains("left alone"), "{run}");
    assert!(container_exists(&container));
}

#[test]
fn setup_does_not_take_a_container_name_another_live_worktree_uses() {
    let env = TestEnv::new();
    // Another user's live instance (not in this registry) named like ours.
    let theirs = env.tmp.path().join("theirs");
    std::fs::create_dir_all(theirs.join(".sky-dev")).unwrap();
    let wanted = unique("clash");
    let _their_container = labelled_foreign(&format!("skypilot-dev-{wanted}"), &theirs);
    let repo = fleet_repo(&env, "clash", "", [47135, 47139]);
    let run = env.run(&repo, &["setup"]).ok();
    let name = instance_value(&repo, "DEVINST_NAME").unwrap();
    assert!(name.starts_with(&format!("{wanted}-")), "{name}\n{run}");
    assert!(run.stderr.contains("taken"), "{run}");
    env.run(&repo, &["start"]).ok();
    env.run(&repo, &["setup", &wanted])
        .fails_with(1, "is taken by the worktree");

    // A container whose worktree is gone holds no name.
    let stale = unique("clash-stale");
    let _stale_container = labelled_foreign(
        &format!("skypilot-dev-{stale}"),
        &env.tmp.path().join("nowhere"),
    );
    let repo = fleet_repo(&env, "clash-stale", "", [47135, 47139]);
    env.run(&repo, &["setup"]).ok();
    assert_eq!(instance_value(&repo, "DEVINST_NAME").unwrap(), stale);
}

#[test]
fn gc_removes_what_gone_worktrees_left_and_nothing_alive() {
    let _gone = gone_worktrees_lock();
    let env = TestEnv::new();
    let range = [47140, 47149];
    let live = fleet_repo(&env, "gc-live", "", range);
    env.run(&live, &["setup"]).ok();
    env.run(&live, &["start"]).ok();
    let live_name = instance_value(&live, "DEVINST_NAME").unwrap();
    let live_container = instance_value(&live, "DEVINST_CONTAINER").unwrap();

    let doomed = fleet_repo(&env, "gc-doomed", "", range);
    env.run(&doomed, &["setup"]).ok();
    env.run(&doomed, &["start"]).ok();
    let doomed_name = instance_value(&doomed, "DEVINST_NAME").unwrap();
    let doomed_container = instance_value(&doomed, "DEVINST_CONTAINER").unwrap();
    std::fs::remove_dir_all(&doomed).unwrap();

    // Renamed: the old container stays behind for gc.
    let renamed = fleet_repo(&env, "gc-renamed", "", range);
    env.run(&renamed, &["setup"]).ok();
    env.run(&renamed, &["start"]).ok();
    let old_container = instance_value(&renamed, "DEVINST_CONTAINER").unwrap();
    let new_name = unique("gc-new");
    let run = env.run(&renamed, &["setup", &new_name]).ok();
    assert!(run.stderr.contains("devinst gc"), "{run}");

    let orphan = labelled_foreign(&unique("gc-orphan"), &env.tmp.path().join("nowhere"));

    let mine = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                [
                    &doomed_name,
                    &doomed_container,
                    &old_container,
                    &orphan.0,
                    &live_name,
                ]
                .iter()
                .any(|n| l.contains(&format!("`{n}`")))
            })
            .map(str::to_owned)
            .collect()
    };
    let dry = env.run(&live, &["gc", "--dry-run"]).ok();
    let expected = [
        format!("would remove container `{doomed_container}`: its worktree"),
        format!("would remove container `{old_container}`: its worktree"),
        format!("would remove container `{}`: its worktree", orphan.0),
        format!("would remove instance `{doomed_name}` (port "),
    ];
    let lines = mine(&dry.stdout);
    for want in &expected {
        assert!(lines.iter().any(|l| l.starts_with(want)), "{want}\n{dry}");
    }
    assert_eq!(lines.len(), expected.len(), "{dry}");
    for c in [&doomed_container, &old_container, &orphan.0] {
        assert!(container_exists(c), "--dry-run changes nothing: {c}");
    }
    assert!(listed(&list(&env, &live), &doomed_name).is_some());

    let run = env.run(&live, &["gc"]).ok();
    let lines = mine(&run.stdout);
    for want in &expected {
        let want = want.replace("would remove", "removed");
        assert!(lines.iter().any(|l| l.starts_with(&want)), "{want}\n{run}");
    }
    assert_eq!(lines.len(), expected.len(), "{run}");
    for c in [&doomed_container, &old_container, &orphan.0] {
        assert!(!container_exists(c), "{c} removed\n{run}");
    }
    let views = list(&env, &live);
    assert!(listed(&views, &doomed_name).is_none());
    assert_eq!(listed(&views, &live_name).unwrap().state, "running");
    assert_eq!(listed(&views, &new_name).unwrap().state, "missing");
    assert_eq!(inspect(&live_container, "{{.State.Running}}"), "true");
    let again = env.run(&live, &["gc", "--dry-run"]).ok();
    assert!(mine(&again.stdout).is_empty(), "{again}");

    let run = env
        .cmd(&live)
        .arg("gc")
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output();
    Run::from(run.unwrap()).fails_with(1, "hint: start an engine");
}

#[test]
fn a_moved_worktree_keeps_its_instance_and_start_recreates_the_container() {
    let _gone = gone_worktrees_lock();
    let env = TestEnv::new();
    let main = fleet_repo(&env, "move-main", "", [47150, 47159]);
    git(&main, &["add", "devinst.toml"]);
    git(&main, &["commit", "-q", "-m", "recipe"]);
    let before = env.tmp.path().join(unique("move-before"));
    git(&main, &["worktree", "add", "-q", before.to_str().unwrap()]);
    let before = before.canonicalize().unwrap();
    env.run(&before, &["setup"]).ok();
    env.run(&before, &["start"]).ok();
    env.sh(&before, "echo kept > /root/.sky/state-file").ok();
    let name = instance_value(&before, "DEVINST_NAME").unwrap();
    let port = instance_value(&before, "DEVINST_PORT").unwrap();
    let container = instance_value(&before, "DEVINST_CONTAINER").unwrap();

    let after = env.tmp.path().join(unique("move-after"));
    git(
        &main,
        &[
            "worktree",
            "move",
            before.to_str().unwrap(),
            after.to_str().unwrap(),
        ],
    );
    let after = after.canonicalize().unwrap();
    let run = env.run(&after, &["setup"]).ok();
    assert!(run.stderr.contains("worktree moved"), "{run}");
    assert_eq!(instance_value(&after, "DEVINST_NAME").unwrap(), name);
    assert_eq!(instance_value(&after, "DEVINST_PORT").unwrap(), port);

    let run = env.run(&after, &["start"]).ok();
    assert!(run.stderr.contains("recreating it here"), "{run}");
    assert_eq!(run.stdout.trim(), format!("127.0.0.1:{port} -> 46580"));
    let mounts = inspect(
        &container,
        "{{range .Mounts}}{{.Source}}>{{.Destination}} {{end}}",
    );
    assert!(
        mounts.contains(&format!("{}>/app", after.display())),
        "{mounts}"
    );
    assert_eq!(
        inspect(&container, "{{index .Config.Labels \"devinst.worktree\"}}"),
        after.to_str().unwrap()
    );
    let run = env
        .run(
            &after,
            &["exec", "--", "cat", "/root/.sky/state-file", "/app/README"],
        )
        .ok();
    assert_eq!(run.stdout, "kept\ntest\n");
    // Settled: the next start neither recreates nor warns.
    let run = env.run(&after, &["start"]).ok();
    assert!(run.stderr.is_empty(), "{run}");
}

#[test]
fn doctor_reports_checks_and_fails_only_when_use_is_blocked() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home.join(".aws")).unwrap();
    let repo = fleet_repo(&env, "doctor", "", [47160, 47169]);
    env.run(&repo, &["setup"]).ok();
    let api = Command::new("docker")
        .args(["version", "--format", "{{.Server.APIVersion}}"])
        .output()
        .unwrap();
    let api = String::from_utf8_lossy(&api.stdout).trim().to_owned();

    let run = env.run(&repo, &["doctor"]).ok();
    let line = |name: &str| -> String {
        run.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no `{name}` check\n{run}"))
            .to_owned()
    };
    assert!(line("engine").starts_with("ok"), "{run}");
    assert!(
        line("engine").contains("API version") && line("engine").contains(&api),
        "{run}"
    );
    assert!(line("runtimes").contains("runc"), "{run}");
    assert!(line("ports").contains("47160-47169: 1 used"), "{run}");
    assert!(line("credentials").contains("~/.aws"), "{run}");
    assert!(line("credentials").contains("not found: ~/.azure"), "{run}");
    let name = instance_value(&repo, "DEVINST_NAME").unwrap();
    assert!(
        line("instance").starts_with("ok") && line("instance").contains(&name),
        "{run}"
    );

    // Outside any worktree it still runs.
    let outside = env.tmp.path().join("plain");
    std::fs::create_dir_all(&outside).unwrap();
    let run = env.run(&outside, &["doctor"]).ok();
    assert!(
        run.stdout.contains("this directory has no instance"),
        "{run}"
    );

    let run = env
        .cmd(&repo)
        .arg("doctor")
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap();
    let run = Run::from(run);
    assert_eq!(run.code, 1, "{run}");
    let engine = run.stdout.lines().next().unwrap_or_default();
    assert!(
        engine.starts_with("problem  engine") && engine.contains("nonexistent.sock"),
        "{run}"
    );
    assert!(run.stdout.contains("fix: start an engine"), "{run}");

    // A runtime the engine lacks blocks this worktree.
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replace("[container]\n", "[container]\nruntime = \"no-such-rt\"\n"),
    );
    let run = env.run(&repo, &["doctor"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("runtime `no-such-rt`"), "{run}");
}

#[test]
fn completions_cover_the_subcommands_and_bash_accepts_its_script() {
    let env = TestEnv::new();
    let dir = env.tmp.path();
    for shell in ["bash", "zsh", "fish"] {
        let run = env.run(dir, &["completions", shell]).ok();
        for sub in ["setup", "start", "logs", "stats", "gc", "doctor", "destroy"] {
            assert!(run.stdout.contains(sub), "{shell} lacks {sub}");
        }
    }
    let script = dir.join("devinst.bash");
    write(&script, &env.run(dir, &["completions", "bash"]).ok().stdout);
    let check = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    env.run(dir, &["completions", "tcsh"])
        .fails_with(2, "invalid value");
}

#[test]
fn a_closed_stdout_ends_quietly_and_quiet_and_verbose_set_stderr() {
    let env = TestEnv::new();
    let repo = fleet_repo(&env, "pipes", "", [47170, 47179]);
    // -q: nothing on stderr, the data still on stdout.
    let run = env.run(&repo, &["-q", "setup"]).ok();
    assert_eq!(run.stderr, "", "{run}");
    let run = env.run(&repo, &["-q", "start"]).ok();
    assert_eq!(run.stderr, "", "{run}");
    assert!(run.stdout.contains("-> 46580"), "{run}");

    for args in [&["list"][..], &["status"], &["list", "--json"]] {
        let mut child = env
            .cmd(&repo)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let status = wait_for(&mut child, Duration::from_secs(30));
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }

    let run = env.run(&repo, &["-v", "status"]).ok();
    assert!(
        run.stderr.contains("DEBUG") && run.stderr.contains("trying the engine"),
        "{run}"
    );
    assert!(
        !run.stderr.contains('\x1b'),
        "no colour codes off a terminal: {run}"
    );
}

/// `n` kill delays, spread over the time a normal run of `args` takes (up to
/// 300 ms) so that they land inside it, and differing run to run.
fn kill_delays(env: &TestEnv, dir: &Path, args: &[&str], n: u32) -> Vec<Duration> {
    let started = Instant::now();
    env.run(dir, args).ok();
    let span =
        (started.elapsed() * 3 / 2).clamp(Duration::from_millis(10), Duration::from_millis(300));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (0..n)
        .map(|i| {
            let jitter = f64::from((seed >> (i * 4)) % 100) / 100.0;
            span.mul_f64((f64::from(i) + jitter) / f64::from(n))
        })
        .collect()
}

/// Spawns devinst with `args`, SIGKILLs it after `delay`; whether it was
/// still running then.
fn kill_after(env: &TestEnv, dir: &Path, args: &[&str], delay: Duration) -> bool {
    let mut child = env
        .cmd(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    env.track(dir);
    running
}

/// The instance hangs together: `.instance` parses, `.port` and the
/// registry agree with it, and it starts and runs commands.
#[track_caller]
fn assert_consistent(env: &TestEnv, repo: &Path, context: &str) {
    let name = instance_value(repo, "DEVINST_NAME").unwrap_or_else(|| panic!("{context}"));
    let port = instance_value(repo, "DEVINST_PORT").unwrap();
    let port_file = std::fs::read_to_string(repo.join(".sky-dev/.port")).unwrap();
    assert_eq!(port_file.trim(), port, "{context}");
    let registered = list(env, repo);
    let entry =
        listed(&registered, &name).unwrap_or_else(|| panic!("{name} registered: {context}"));
    assert_eq!(entry.port.to_string(), port, "{context}");
    assert_eq!(entry.worktree, repo.to_str().unwrap(), "{context}");
    env.run(repo, &["start"]).ok();
    let run = env.run(repo, &["exec", "--", "echo", "alive"]).ok();
    assert_eq!(run.stdout, "alive\n", "{context}");
    for dir in [repo.join(".sky-dev"), repo.join(".sky-dev/bin")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !file.contains(".tmp."),
                "a half-written `{file}` is left: {context}"
            );
        }
    }
}

#[test]
fn a_setup_killed_at_any_point_is_completed_by_the_next() {
    let env = TestEnv::new();
    let probe = fleet_repo(&env, "kill-probe", "", [47180, 47199]);
    let mut landed = 0;
    for (i, delay) in kill_delays(&env, &probe, &["setup"], 6)
        .into_iter()
        .enumerate()
    {
        let repo = fleet_repo(&env, &format!("kill-setup{i}"), "", [47180, 47199]);
        // Half of them a re-run over an existing instance.
        if i % 2 == 1 {
            env.run(&repo, &["setup"]).ok();
        }
        landed += kill_after(&env, &repo, &["setup"], delay) as u32;
        let context = format!("setup killed after {delay:?}");
        env.run(&repo, &["setup"]).ok();
        assert_consistent(&env, &repo, &context);
    }
    eprintln!("{landed} of 6 kills landed while setup ran");
}

#[test]
fn a_start_killed_at_any_point_is_completed_by_the_next() {
    let env = TestEnv::new();
    let repo = fleet_repo(&env, "kill-start", "", [47200, 47209]);
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let mut landed = 0;
    for delay in kill_delays(&env, &repo, &["start"], 6) {
        // From nothing each time: create and start are what is interrupted.
        let _ = Command::new("docker")
            .args(["rm", "-f", &container])
            .output();
        landed += kill_after(&env, &repo, &["start"], delay) as u32;
        assert_consistent(&env, &repo, &format!("start killed after {delay:?}"));
    }
    eprintln!("{landed} of 6 kills landed while start ran");
}

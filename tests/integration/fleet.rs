//! The fleet: logs, stats, listings, destroy, gc, moved worktrees, doctor,
//! completions, output conventions, and surviving a kill at any point.
//!
//! Instance names carry the test process id: container names are shared by
//! everyone using the engine. Host ports stay within 47100-47299.

use crate::poll::{wait_until, Streaming};
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
    let mut follow = Streaming::spawn(env.cmd(&repo).args(["logs", "-f"]));
    // Following: what was there is out; the next line must come later.
    follow.wait_for_stdout("last-line\n");
    env.sh(&repo, "echo followed-line > /proc/1/fd/1").ok();
    follow.wait_for_stdout("followed-line\n");
    // Ctrl-C ends a follower as a shell reports it: 130, no error.
    let mut interrupted = Streaming::spawn(env.cmd(&repo).args(["logs", "-f"]));
    interrupted.wait_for_stderr("err-line\n");
    interrupted.signal("INT");
    let (status, _, err) = interrupted.finish();
    assert_eq!((status.code(), err.as_str()), (Some(130), "err-line\n"));
    env.run(&repo, &["stop"]).ok();
    let (status, out, err) = follow.finish();
    assert!(status.success(), "logs -f: {status}\n{out}{err}");
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

    // A busy loop, held to half a cpu by the limit: sampled once it shows.
    let busy = Streaming::spawn(env.cmd(&repo).args([
        "exec",
        "--",
        "timeout",
        "120",
        "sh",
        "-c",
        "while :; do :; done",
    ]));
    let loaded = wait_until("the busy loop to show in stats", || {
        Some(stats(&env)).filter(|s| s.cpu_percent > 10.0)
    });
    // SIGTERM reaches the loop through devinst, which then ends.
    busy.signal("TERM");
    busy.finish();
    assert!(loaded.cpu_percent < 80.0, "half a cpu busy: {loaded:?}");

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
    // Its scene has a container whose worktree is gone, which `gc` removes.
    let _gone = gone_worktrees_lock();
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
    // The API version in use is the engine's own (it is older than
    // devinst's); the same figure elsewhere on the line proves nothing.
    let in_use = line("engine")
        .split_once("API version ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(|v| v.trim_end_matches(',').to_owned());
    assert_eq!(in_use.as_deref(), Some(api.as_str()), "{run}");
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

/// Every subcommand whose name starts with `s`, which each shell must
/// offer for `devinst s`, and none other.
const S_COMMANDS: [&str; 8] = [
    "serve", "setup", "shell", "snapshot", "start", "stats", "status", "stop",
];

/// The completion script for `shell`, written to `dir/file`.
fn completion_script(env: &TestEnv, shell: &str, file: &str) -> std::path::PathBuf {
    let dir = env.tmp.path().join("completions");
    write(
        &dir.join(file),
        &env.run(env.tmp.path(), &["completions", shell]).ok().stdout,
    );
    dir.join(file)
}

/// `shell -c script`, which must succeed; its stdout.
fn shell_output(shell: &[&str], script: &str) -> String {
    let out = Command::new(shell[0])
        .args(&shell[1..])
        .arg(script)
        .output()
        .unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "{shell:?} -c {script}\n{run}");
    run.stdout
}

#[test]
fn completions_cover_the_subcommands_and_bash_accepts_its_script() {
    let env = TestEnv::new();
    // bash runs its script's function as it would on Tab.
    let bash = completion_script(&env, "bash", "devinst.bash");
    let offered = shell_output(
        &["bash", "--norc", "--noprofile", "-c"],
        &format!(
            "source '{}' && COMP_WORDS=(devinst s) COMP_CWORD=1 && _devinst devinst s devinst \
             && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.display()
        ),
    );
    let mut words: Vec<&str> = offered.lines().collect();
    words.sort();
    assert_eq!(words, S_COMMANDS, "bash offers for `devinst s`");
    let offered = shell_output(
        &["bash", "--norc", "--noprofile", "-c"],
        &format!(
            "source '{}' && COMP_WORDS=(devinst logs --) COMP_CWORD=2 && _devinst devinst -- logs \
             && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.display()
        ),
    );
    assert!(offered.lines().any(|l| l == "--follow"), "{offered}");

    // fish asked what it completes, with the descriptions it shows.
    let fish = completion_script(&env, "fish", "devinst.fish");
    let offered = shell_output(
        &["fish", "--no-config", "-c"],
        &format!("source '{}'; complete -C 'devinst s'", fish.display()),
    );
    let words: Vec<&str> = offered
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(words, S_COMMANDS, "fish offers for `devinst s`\n{offered}");
    assert!(
        offered.contains("setup\tCreate or refresh this worktree's instance"),
        "{offered}"
    );

    // zsh completes only in an interactive shell: one on tmux, Tab pressed.
    let zsh = completion_script(&env, "zsh", "_devinst");
    let screen = zsh_tab(zsh.parent().unwrap(), "devinst logs --", "--follow");
    assert!(
        screen.contains("--tail") && screen.contains("Keep printing new output"),
        "{screen}"
    );
    let screen = zsh_tab(zsh.parent().unwrap(), "devinst s", "snapshot");
    for sub in S_COMMANDS {
        assert!(
            screen
                .lines()
                .any(|l| l.starts_with(sub) && l.contains(" -- ")),
            "zsh offers `{sub}` for `devinst s`\n{screen}"
        );
    }
    assert!(!screen.contains("doctor"), "{screen}");

    for shell in ["elvish", "powershell"] {
        let run = env.run(env.tmp.path(), &["completions", shell]).ok();
        for sub in S_COMMANDS.iter().chain(&["doctor", "gc", "completions"]) {
            assert!(run.stdout.contains(sub), "{shell} lacks {sub}");
        }
    }
    env.run(env.tmp.path(), &["completions", "tcsh"])
        .fails_with(2, "invalid value");
}

/// Types `line` and Tab into an interactive zsh (on a tmux server of its
/// own) whose fpath holds `fpath`; the screen once `until` shows on it.
fn zsh_tab(fpath: &Path, line: &str, until: &str) -> String {
    struct Server(String);
    impl Drop for Server {
        fn drop(&mut self) {
            quiet_command("tmux", &["-L", &self.0, "kill-server"]);
        }
    }
    static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let server = Server(format!("devinst-it-{}-{n}", std::process::id()));
    let tmux = |args: &[&str]| -> String {
        let out = Command::new("tmux")
            .args(["-L", &server.0, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let home = format!("HOME={}", fpath.display());
    tmux(&[
        "new-session",
        "-d",
        "-x",
        "200",
        "-y",
        "50",
        "env",
        "-i",
        &home,
        "TERM=xterm",
        "PATH=/usr/bin:/bin",
        "zsh",
        "-f",
    ]);
    let screen = || tmux(&["capture-pane", "-p"]);
    let init = format!(
        "fpath=('{}' $fpath); autoload -U compinit && compinit -u -D && echo compinit-done",
        fpath.display()
    );
    tmux(&["send-keys", &init, "Enter"]);
    wait_until("zsh to load its completion system", || {
        screen().lines().any(|l| l == "compinit-done").then_some(())
    });
    tmux(&["send-keys", line, "Tab"]);
    wait_until(&format!("zsh to complete `{line}` with `{until}`"), || {
        let now = screen();
        now.lines()
            .any(|l| l.starts_with(until) && l.contains(" -- "))
            .then_some(now)
    })
}

fn quiet_command(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
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

/// How long a normal run takes: the shortest of three, each run on what
/// `prepare` makes (not timed).
fn run_length<T>(mut prepare: impl FnMut() -> T, mut run: impl FnMut(T)) -> Duration {
    (0..3)
        .map(|_| {
            let made = prepare();
            let started = Instant::now();
            run(made);
            started.elapsed()
        })
        .min()
        .unwrap()
}

/// `n` kill delays spread from 5% to 90% of `span` (a normal run's length),
/// so that they land inside the run at every stage, differing run to run.
fn kill_delays(span: Duration, n: u32) -> Vec<Duration> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (0..n)
        .map(|i| {
            let jitter = f64::from((seed >> (i * 4)) % 100) / 100.0;
            span.mul_f64(0.05 + 0.85 * (f64::from(i) + jitter) / f64::from(n))
        })
        .collect()
}

/// Most kills must have landed while the command ran, or the test proved
/// nothing about a kill halfway.
#[track_caller]
fn assert_most_landed(landed: u32, n: u32, what: &str, span: Duration) {
    eprintln!("{landed} of {n} kills landed while {what} ran (a normal run takes {span:?})");
    assert!(
        landed * 2 > n,
        "only {landed} of {n} kills landed while {what} ran (a normal run takes {span:?})"
    );
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
    let range = [47180, 47199];
    let mut probes = 0..;
    let new_repo = || {
        fleet_repo(
            &env,
            &format!("kill-probe{}", probes.next().unwrap()),
            "",
            range,
        )
    };
    let span = run_length(new_repo, |probe| {
        env.run(&probe, &["setup"]).ok();
    });
    let n = 6;
    let mut landed = 0;
    for (i, delay) in kill_delays(span, n).into_iter().enumerate() {
        let repo = fleet_repo(&env, &format!("kill-setup{i}"), "", range);
        // Half of them a re-run over an existing instance.
        if i % 2 == 1 {
            env.run(&repo, &["setup"]).ok();
        }
        landed += kill_after(&env, &repo, &["setup"], delay) as u32;
        let context = format!("setup killed after {delay:?}");
        env.run(&repo, &["setup"]).ok();
        assert_consistent(&env, &repo, &context);
    }
    assert_most_landed(landed, n, "setup", span);
}

#[test]
fn a_start_killed_at_any_point_is_completed_by_the_next() {
    let env = TestEnv::new();
    let repo = fleet_repo(&env, "kill-start", "", [47200, 47209]);
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    // From nothing each time: create and start are what is interrupted.
    let remove = || {
        let rm = Command::new("docker")
            .args(["rm", "-f", &container])
            .output()
            .unwrap();
        assert!(
            !container_exists(&container),
            "`docker rm -f {container}`: {}",
            String::from_utf8_lossy(&rm.stderr)
        );
    };
    let span = run_length(remove, |()| {
        env.run(&repo, &["start"]).ok();
    });
    let n = 6;
    let mut landed = 0;
    for delay in kill_delays(span, n) {
        remove();
        landed += kill_after(&env, &repo, &["start"], delay) as u32;
        assert_consistent(&env, &repo, &format!("start killed after {delay:?}"));
    }
    assert_most_landed(landed, n, "start", span);
}

//! The core flow: setup, start, exec and shims, stop, against the real engine.

use crate::support::*;
use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn zero_config_flow_installs_the_project_and_runs_its_sky_shim() {
    let env = TestEnv::new();
    // Unique on this engine, so two test runs never share the name.
    let name = format!("skyproj-{}", std::process::id());
    let repo = env.repo(&name);
    copy_fixture(Path::new("tests/fixtures/skypkg"), &repo);

    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(container, format!("skypilot-dev-{name}"));
    let start = env.run(&repo, &["start"]).ok();
    let port = std::fs::read_to_string(repo.join(".sky-dev/.port")).unwrap();
    assert_eq!(
        start.stdout.trim(),
        format!("127.0.0.1:{} -> 46580", port.trim())
    );
    assert!(
        start.stderr.contains("/bin/pip' install -e '/app'"),
        "{start}"
    );
    assert!(
        repo.join(".sky-dev/venv/bin/python").exists(),
        "venv made in the container"
    );

    let sky = env
        .script(
            &repo,
            &repo.join(".sky-dev/bin/sky"),
            &["status", "a b", "$HOME"],
        )
        .ok();
    assert_eq!(
        sky.stdout.trim(),
        r#"skypkg sky ["status", "a b", "$HOME"]"#
    );
    assert!(sky.stderr.contains("SKYPILOT_DEV=1"), "{sky}");

    // Started and set up already: a second start does no setup work.
    let again = env.run(&repo, &["start"]).ok();
    assert!(!again.stderr.contains("setup step"), "{again}");

    // The default shape of the seed: mounts, port on loopback, labels.
    assert_eq!(inspect(&container, "{{.Config.WorkingDir}}"), "/app");
    let mounts = inspect(
        &container,
        "{{range .Mounts}}{{.Source}}>{{.Destination}} {{end}}",
    );
    let root = repo.display();
    assert!(mounts.contains(&format!("{root}>/app")), "{mounts}");
    assert!(
        mounts.contains(&format!("{root}/.sky-dev/state>/root/.sky")),
        "{mounts}"
    );
    assert!(
        mounts.contains(&format!("{root}/.sky-dev/sky_logs>/root/sky_logs")),
        "{mounts}"
    );
    let binding = inspect(&container, "{{json .HostConfig.PortBindings}}");
    assert!(
        binding.contains(&format!(
            r#""HostIp":"127.0.0.1","HostPort":"{}""#,
            port.trim()
        )),
        "{binding}"
    );
    assert_eq!(
        inspect(&container, "{{index .Config.Labels \"devinst.instance\"}}"),
        name
    );

    env.script(&repo, &repo.join(".sky-dev/bin/stop-container"), &[])
        .ok();
    assert_eq!(inspect(&container, "{{.State.Running}}"), "false");
    // Stopped: the shim starts it again by itself, quietly on stdout.
    let sky = env
        .script(&repo, &repo.join(".sky-dev/bin/sky"), &["again"])
        .ok();
    assert_eq!(sky.stdout.trim(), r#"skypkg sky ["again"]"#);
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");
}

on_both_exec_paths!(exec_passes_exit_codes_streams_and_directories_through);

fn exec_passes_exit_codes_streams_and_directories_through(env: TestEnv) {
    let repo = env.busybox_repo("execs", "");
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();

    let run = env.sh(&repo, "echo out; echo err >&2; exit 42");
    assert_eq!(run.code, 42, "{run}");
    assert_eq!(run.stdout, "out\n");
    assert_eq!(run.stderr, "err\n");

    let deep = repo.join("a/b c/d");
    std::fs::create_dir_all(&deep).unwrap();
    assert_eq!(
        env.run(&deep, &["exec", "--", "pwd"]).ok().stdout,
        "/app/a/b c/d\n"
    );
    let outside = env.tmp.path();
    let run = env
        .run(
            outside,
            &["exec", "--worktree", repo.to_str().unwrap(), "--", "pwd"],
        )
        .ok();
    assert_eq!(run.stdout, "/app\n");

    let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let run = env
        .run_with_stdin(&repo, &["exec", "--", "cat"], &bytes)
        .ok();
    assert_eq!(run.raw_stdout, bytes, "binary-safe stdin to stdout");

    // Flags after the command belong to the command.
    let run = env.run(&repo, &["exec", "--", "echo", "-C", "--json"]).ok();
    assert_eq!(run.stdout, "-C --json\n");
}

#[test]
fn state_and_logs_persist_on_the_host_and_credentials_are_read_only() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home.join(".aws")).unwrap();
    write(&env.home.join(".aws/credentials"), "[default]\n");
    let repo = env.busybox_repo("mounts", "");
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    env.sh(&repo, "echo s > /root/.sky/s && echo l > /root/sky_logs/l")
        .ok();
    assert_eq!(
        std::fs::read_to_string(repo.join(".sky-dev/state/s")).unwrap(),
        "s\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join(".sky-dev/sky_logs/l")).unwrap(),
        "l\n"
    );

    let run = env
        .run(&repo, &["exec", "--", "cat", "/root/.aws/credentials"])
        .ok();
    assert_eq!(run.stdout, "[default]\n");
    let run = env.sh(&repo, "echo x > /root/.aws/new");
    assert_ne!(run.code, 0, "credential mounts must be read-only: {run}");
    assert!(!env.home.join(".aws/new").exists());
    let run = env
        .sh(&repo, "test -e /root/.kube && echo yes || echo no")
        .ok();
    assert_eq!(
        run.stdout, "no\n",
        "absent credential directories are not mounted"
    );
}

#[test]
fn setup_keeps_its_port_and_parallel_setups_never_share_one() {
    let env = TestEnv::new();
    let range = "[ports]\nhost_range = [47001, 47040]\n";
    let repos: Vec<_> = (0..20)
        .map(|i| env.busybox_repo(&format!("par{i}"), range))
        .collect();
    env.run_all_at_once(&repos, "setup");
    let ports: BTreeSet<String> = repos
        .iter()
        .map(|r| instance_value(r, "DEVINST_PORT").unwrap())
        .collect();
    assert_eq!(ports.len(), repos.len(), "ports: {ports:?}");

    let before = instance_value(&repos[0], "DEVINST_PORT").unwrap();
    env.run(&repos[0], &["setup"]).ok();
    assert_eq!(instance_value(&repos[0], "DEVINST_PORT").unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(repos[0].join(".sky-dev/.port"))
            .unwrap()
            .trim(),
        before
    );
}

#[test]
fn a_port_something_listens_on_is_skipped() {
    let env = TestEnv::new();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = listener.local_addr().unwrap().port();
    let repo = env.busybox_repo(
        "busyport",
        &format!("[ports]\nhost_range = [{busy}, {}]\n", busy + 1),
    );
    env.run(&repo, &["setup"]).ok();
    assert_eq!(
        instance_value(&repo, "DEVINST_PORT").unwrap(),
        (busy + 1).to_string()
    );
}

#[test]
fn worktrees_with_the_same_directory_name_get_different_instances() {
    let env = TestEnv::new();
    let same = format!("same-{}", std::process::id());
    let a = env.busybox_repo(&format!("one/{same}"), "");
    let b = env.busybox_repo(&format!("two/{same}"), "");
    env.run(&a, &["setup"]).ok();
    let run = env.run(&b, &["setup"]).ok();
    let name_a = instance_value(&a, "DEVINST_NAME").unwrap();
    let name_b = instance_value(&b, "DEVINST_NAME").unwrap();
    assert_eq!(name_a, same);
    assert!(
        name_b.starts_with(&format!("{same}-")) && name_b != name_a,
        "{name_b}"
    );
    assert!(run.stderr.contains("taken"), "{run}");
    // Stable: re-running keeps the suffixed name.
    env.run(&b, &["setup"]).ok();
    assert_eq!(instance_value(&b, "DEVINST_NAME").unwrap(), name_b);
    // Asking for a taken name explicitly is refused.
    env.run(&b, &["setup", &same]).fails_with(1, "taken");
    // Both run side by side.
    env.run(&a, &["start"]).ok();
    env.run(&b, &["start"]).ok();
    assert_eq!(
        env.run(&b, &["exec", "--", "hostname"]).ok().stdout.trim(),
        format!("skypilot-dev-{name_b}")
    );
}

#[test]
fn linked_worktrees_are_instances_of_their_own() {
    let env = TestEnv::new();
    let main = env.busybox_repo("lmain", "");
    git(&main, &["add", "devinst.toml"]);
    git(&main, &["commit", "-q", "-m", "recipe"]);
    let feature = format!("linked-feature-{}", std::process::id());
    let linked = env.tmp.path().join(&feature);
    git(&main, &["worktree", "add", "-q", linked.to_str().unwrap()]);
    let linked = linked.canonicalize().unwrap();
    let sub = linked.join("deep/er");
    std::fs::create_dir_all(&sub).unwrap();
    env.run(&sub, &["setup"]).ok();
    assert!(linked.join(".sky-dev/.instance").is_file());
    assert_eq!(instance_value(&linked, "DEVINST_NAME").unwrap(), feature);
    env.run(&main, &["setup"]).ok();
    assert_ne!(
        instance_value(&main, "DEVINST_PORT"),
        instance_value(&linked, "DEVINST_PORT")
    );
    assert_eq!(
        git(&linked, &["status", "--porcelain"]),
        "",
        "nothing from .sky-dev shows"
    );
}

#[test]
fn a_changed_recipe_is_reported_and_recreate_applies_it_keeping_state() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("recipe", "");
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    env.run(&repo, &["exec", "--", "touch", "/root/.sky/kept"])
        .ok();
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &format!("{toml}[env.set]\nNEWVAR = \"v2\"\n"),
    );
    let run = env.run(&repo, &["start"]).ok();
    assert!(run.stderr.contains("--recreate"), "{run}");
    env.run(&repo, &["start", "--recreate"]).ok();
    let run = env.sh(&repo, "echo $NEWVAR; ls /root/.sky").ok();
    assert_eq!(run.stdout, "v2\nkept\n");
    let run = env.run(&repo, &["start"]).ok();
    assert!(!run.stderr.contains("--recreate"), "{run}");
}

#[test]
fn the_default_steps_work_with_a_workdir_that_has_a_space() {
    let env = TestEnv::new();
    let repo = env.repo("space-workdir");
    copy_fixture(Path::new("tests/fixtures/skypkg"), &repo);
    write(
        &repo.join("devinst.toml"),
        "[container]\nworkdir = \"/my app\"\n[ports]\nhost_range = [47900, 47909]\n",
    );
    env.run(&repo, &["setup"]).ok();
    let start = env.run(&repo, &["start"]).ok();
    assert!(
        start
            .stderr
            .contains("'/my app/.sky-dev/venv/bin/pip' install -e '/my app'"),
        "{start}"
    );
    assert!(repo.join(".sky-dev/venv/bin/python").exists(), "{start}");
    let sky = env
        .script(&repo, &repo.join(".sky-dev/bin/sky"), &["status"])
        .ok();
    assert_eq!(sky.stdout.trim(), r#"skypkg sky ["status"]"#);
}

pub fn copy_fixture(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_fixture(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_missing_image_is_pulled_with_progress() {
    let env = TestEnv::new();
    // scripts/test-env.sh pushed the busybox image to a registry on loopback.
    let image = format!("127.0.0.1:5000/{BUSYBOX}");
    // Absent, or this test would not pull.
    let rmi = std::process::Command::new("docker")
        .args(["rmi", &image])
        .output()
        .unwrap();
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .unwrap();
    assert!(
        !present.status.success(),
        "`docker rmi {image}` left it: {}",
        String::from_utf8_lossy(&rmi.stderr)
    );
    let repo = env.repo("pulled");
    write(
        &repo.join("devinst.toml"),
        &format!("[container]\nimage = \"{image}\"\n[setup]\ncommands = []\n"),
    );
    env.run(&repo, &["setup"]).ok();
    let run = env.run(&repo, &["start"]).ok();
    assert!(
        run.stderr.contains(&format!("pulling image `{image}`")),
        "{run}"
    );
    // Per-layer progress; each engine words it its own way.
    let layer_lines = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("  ") && l.contains(": "))
        .count();
    assert!(layer_lines > 0, "no pull progress: {run}");
    assert_eq!(
        env.run(&repo, &["exec", "--", "echo", "pulled"])
            .ok()
            .stdout,
        "pulled\n"
    );
}

#[test]
fn concurrent_starts_run_the_setup_steps_once() {
    let env = TestEnv::new();
    let repo = env.repo("concurrent");
    write(
        &repo.join("devinst.toml"),
        &format!("[container]\nimage = \"{BUSYBOX}\"\n[setup]\ncommands = [\"echo ran >> /app/steps.log; sleep 1\"]\n"),
    );
    env.run(&repo, &["setup"]).ok();
    env.run_all_at_once(&[repo.clone(), repo.clone(), repo.clone()], "start");
    assert_eq!(
        std::fs::read_to_string(repo.join("steps.log")).unwrap(),
        "ran\n"
    );
}

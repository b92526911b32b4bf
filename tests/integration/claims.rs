//! README claims that no other file proves: the default port range, ports
//! the engine publishes, setup steps that run again, `destroy` asking,
//! `list` and `doctor` when things are wrong, and the recipe keys that shape
//! the container.
//!
//! Instance names carry the test process id (container names are shared by
//! everyone using the engine). Host ports stay within 47770-47899.

use crate::support::*;
use std::path::{Path, PathBuf};

/// `cl-<what>-<pid>`: unique on this engine.
fn unique(what: &str) -> String {
    format!("cl-{what}-{}", std::process::id())
}

/// A busybox repository named `unique(what)`, with `extra` appended to its
/// recipe (after `[setup]`).
fn claims_repo(env: &TestEnv, what: &str, extra: &str) -> PathBuf {
    env.busybox_repo(&unique(what), extra)
}

const RANGE: &str = "[ports]\nhost_range = [47770, 47899]\n";

#[test]
fn the_default_host_port_is_from_46501_to_46599_mapped_to_46580() {
    let env = TestEnv::new();
    let repo = claims_repo(&env, "default-range", "");
    env.run(&repo, &["setup"]).ok();
    let port: u16 = instance_value(&repo, "DEVINST_PORT")
        .unwrap()
        .parse()
        .unwrap();
    assert!((46501..=46599).contains(&port), "{port}");
    let run = env.run(&repo, &["start"]).ok();
    assert_eq!(run.stdout, format!("127.0.0.1:{port} -> 46580\n"));
    let doctor = env.run(&repo, &["doctor"]).ok();
    assert!(
        doctor
            .stdout
            .lines()
            .any(|l| l.contains(" ports ") && l.contains("46501-46599: ")),
        "{doctor}"
    );
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn a_port_a_container_publishes_is_skipped() {
    let env = TestEnv::new();
    let port = free_port();
    let published = format!("127.0.0.1:{port}:80");
    let publisher = unique("publisher");
    let _theirs = Foreign::new(&[
        "run", "-d", "-p", &published, "--name", &publisher, BUSYBOX, "sleep", "600",
    ]);
    let repo = claims_repo(
        &env,
        "published",
        &format!("[ports]\nhost_range = [{port}, {port}]\n"),
    );
    // Named as the engine's, not as some program's: the engine was asked.
    env.run(&repo, &["setup"]).fails_with(
        1,
        &format!("no free host port in {port}-{port}: {port} (container `{publisher}`)"),
    );
    assert!(!repo.join(".sky-dev").exists(), "nothing half-made");
}

#[test]
fn setup_steps_run_again_when_an_input_changes_or_an_output_is_missing() {
    let env = TestEnv::new();
    let repo = env.repo(&unique("steps"));
    // The recipe's own `[setup]`: a step that counts its runs and makes a
    // stand-in venv, as the default steps make the real one.
    write(
        &repo.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{BUSYBOX}\"\n{RANGE}[setup]\n\
             commands = [\"echo ran >> /app/steps.log; mkdir -p /app/.sky-dev/venv/bin; touch /app/.sky-dev/venv/bin/python\"]\n\
             inputs = [\"requirements.txt\"]\n\
             outputs = [\".sky-dev/venv/bin/python\"]\n"
        ),
    );
    write(&repo.join("requirements.txt"), "six\n");
    let runs = || {
        std::fs::read_to_string(repo.join("steps.log"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    assert_eq!(runs(), 1);
    env.run(&repo, &["start"]).ok();
    assert_eq!(runs(), 1, "nothing changed: not again");

    write(&repo.join("requirements.txt"), "six==1.16.0\n");
    env.run(&repo, &["start"]).ok();
    assert_eq!(runs(), 2, "an input changed");
    env.run(&repo, &["start"]).ok();
    assert_eq!(runs(), 2);

    // `rm -rf .sky-dev/venv && start-container` rebuilds the venv.
    std::fs::remove_dir_all(repo.join(".sky-dev/venv")).unwrap();
    env.script(&repo, &repo.join(".sky-dev/bin/start-container"), &[])
        .ok();
    assert_eq!(runs(), 3, "an output was missing");
    assert!(repo.join(".sky-dev/venv/bin/python").is_file());
    env.run(&repo, &["start"]).ok();
    assert_eq!(runs(), 3);
}

#[test]
fn destroy_asks_on_a_terminal_and_keeps_everything_on_no() {
    let env = TestEnv::new();
    let repo = claims_repo(&env, "ask", RANGE);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();

    let answer = |reply: &str| {
        let steps = format!(r#"[["expect","[y/N] "],["send","{reply}\n"]]"#);
        on_pty(&env, &repo, (24, 80), &steps, &["destroy"])
    };
    // Declining is the user's answer, not a failure (issue 9).
    let run = answer("n");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.output
            .contains(&format!("remove container `{container}`")),
        "{run:?}"
    );
    assert!(run.output.contains("nothing removed"), "{run:?}");
    assert!(container_exists(&container));
    assert!(run.restored);

    let run = answer("y");
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.output.contains("released port"), "{run:?}");
    assert!(!container_exists(&container));
}

#[test]
fn list_shows_unknown_states_when_the_engine_cannot_be_reached() {
    let env = TestEnv::new();
    let repo = claims_repo(&env, "unknown", RANGE);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let name = instance_value(&repo, "DEVINST_NAME").unwrap();
    let mut cmd = env.cmd(&repo);
    cmd.args(["list", "--json"])
        .env("DOCKER_HOST", "unix:///nonexistent.sock");
    let run = env.run_cmd(&repo, &mut cmd).ok();
    assert!(
        run.stderr.contains("warning: container states unknown"),
        "{run}"
    );
    let views: Vec<serde_json::Value> =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"));
    let mine = views
        .iter()
        .find(|v| v["name"] == name.as_str())
        .unwrap_or_else(|| panic!("the registry's instance is listed\n{run}"));
    assert_eq!(mine["state"], "unknown", "{run}");
    assert_eq!(mine["worktree_exists"], true, "{run}");
}

#[test]
fn doctor_fails_on_an_invalid_recipe_and_says_where() {
    let env = TestEnv::new();
    let repo = claims_repo(&env, "doctor-bad", RANGE);
    write(
        &repo.join("devinst.toml"),
        &format!("[container]\nimage = \"{BUSYBOX}\"\nimgae = \"typo\"\n"),
    );
    let run = env.run(&repo, &["doctor"]);
    assert_eq!(run.code, 1, "{run}");
    let recipe = run
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("recipe"))
        .unwrap_or_else(|| panic!("a `recipe` check\n{run}"));
    assert!(recipe.starts_with("problem"), "{run}");
    assert!(
        recipe.contains("devinst.toml") && recipe.contains("imgae"),
        "{run}"
    );
    assert!(run.stdout.contains("fix: fix `devinst.toml`"), "{run}");
    // The other checks still ran.
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("ok") && l.contains(" engine ")),
        "{run}"
    );
}

/// The recipe keys that shape the container, each seen from inside.
#[test]
fn recipe_keys_shape_the_container() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.home.join(".aws")).unwrap();
    write(&env.home.join(".aws/config"), "[default]\n");
    std::fs::create_dir_all(env.home.join(".kube")).unwrap();
    let hostname = unique("host");
    let repo = env.repo(&unique("keys"));
    write(
        &repo.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{BUSYBOX}\"\nname_prefix = \"devinst-it\"\n\
             hostname = \"{hostname}\"\nworkdir = \"/work/src\"\ninit = false\nhost_ca = true\n\
             [setup]\ncommands = []\n\
             [ports]\nhost_range = [47770, 47899]\ncontainer = 8080\nbind = \"127.0.0.2\"\n\
             [mounts]\nstate = \"/var/state\"\nlogs = \"/var/logs\"\n\
             [credentials]\npaths = [\"~/.aws\"]\nhome = \"/home/dev\"\n"
        ),
    );
    env.run(&repo, &["setup"]).ok();
    let name = instance_value(&repo, "DEVINST_NAME").unwrap();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(container, format!("devinst-it-{name}"), "name_prefix");
    let port = instance_value(&repo, "DEVINST_PORT").unwrap();
    let run = env.run(&repo, &["start"]).ok();
    assert_eq!(
        run.stdout,
        format!("127.0.0.2:{port} -> 8080\n"),
        "bind, container"
    );
    // Published on `bind`, to the agent's relay, which passes it on to the
    // container port on the container's loopback.
    assert_eq!(
        inspect(&container, "{{json .HostConfig.PortBindings}}"),
        format!(r#"{{"65000/tcp":[{{"HostIp":"127.0.0.2","HostPort":"{port}"}}]}}"#)
    );
    assert!(
        inspect(&container, "{{json .Config.Cmd}}").contains(r#""--relay","65000:8080""#),
        "the relay goes to the recipe's container port"
    );

    let inside = |script: &str| env.sh(&repo, script).ok().stdout;
    assert_eq!(inside("hostname"), format!("{hostname}\n"));
    assert_eq!(inside("pwd; cat README"), "/work/src\ntest\n", "workdir");
    // No init: the keep-alive itself (the agent, running the recipe's
    // command) is PID 1.
    assert_eq!(inspect(&container, "{{.HostConfig.Init}}"), "false");
    let pid1 = inside("tr '\\0' ' ' < /proc/1/cmdline");
    assert!(
        pid1.starts_with("/.devinst/agent ") && pid1.ends_with(" -- sleep infinity "),
        "{pid1}"
    );
    // host_ca: the host's bundle, read-only, and the variables pointing at it.
    let ca = inside("echo $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $PIP_CERT");
    let target = "/etc/ssl/certs/devinst-host-ca.crt";
    assert_eq!(ca, format!("{target} {target} {target}\n"));
    let host_bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap();
    assert_eq!(inside(&format!("cat {target}")), host_bundle);
    // [mounts]: state and logs where the recipe says, kept on the host.
    inside("echo s > /var/state/s && echo l > /var/logs/l");
    assert_eq!(read(&repo, ".sky-dev/state/s"), "s\n");
    assert_eq!(read(&repo, ".sky-dev/sky_logs/l"), "l\n");
    // [credentials]: only the listed directories, under the given home.
    assert_eq!(inside("cat /home/dev/.aws/config"), "[default]\n");
    assert_eq!(
        inside("test -e /home/dev/.kube && echo kube || echo no-kube"),
        "no-kube\n"
    );
    let run = env.sh(&repo, "echo x > /home/dev/.aws/new");
    assert!(
        run.code != 0 && run.stderr.contains("Read-only file system"),
        "{run}"
    );

    // With init (the default), PID 1 is the engine's init, not the keep-alive.
    let plain = claims_repo(&env, "init", RANGE);
    env.run(&plain, &["setup"]).ok();
    env.run(&plain, &["start"]).ok();
    let plain_container = instance_value(&plain, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&plain_container, "{{.HostConfig.Init}}"), "true");
    let pid1 = env.sh(&plain, "tr '\\0' ' ' < /proc/1/cmdline").ok().stdout;
    assert_ne!(pid1, "sleep infinity ", "init is PID 1");
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

//! Services beside an instance (`[services.NAME]`): a busybox `httpd` plays
//! the database, serving files from its data directory, so what the instance
//! and the host fetch from it shows which service answered and what it kept.

use crate::support::{
    gone_worktrees_lock, inspect, instance_value, quiet_docker, write, TestEnv, BUSYBOX,
};
use serde::Deserialize;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `svc-<what>-<pid>`: unique on this engine, shared with other test runs.
fn unique(what: &str) -> String {
    format!("svc-{what}-{}", std::process::id())
}

/// A busybox instance with one service `db`: httpd on 8080 serving `/www`,
/// kept in `.sky-dev/services/db/`.
fn repo_with_db(env: &TestEnv, what: &str) -> std::path::PathBuf {
    let dir = env.repo(&unique(what));
    write(
        &dir.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{BUSYBOX}\"\n[setup]\ncommands = []\n\
             [ports]\nhost_range = [47600, 47699]\n\
             [services.db]\nimage = \"{BUSYBOX}\"\n\
             command = [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n\
             env = {{ PASSWORD = \"dev\" }}\n\
             port = 8080\ndata = \"/www\"\n"
        ),
    );
    dir
}

/// Removes an instance's service containers and private network when the test
/// ends, passed or failed. The instance's container goes first, since a
/// network cannot be removed while a container is on it.
struct Cleanup {
    instance: String,
    services: Vec<String>,
}

impl Cleanup {
    /// After `setup`: the names come from `.instance`.
    fn new(root: &Path, services: &[&str]) -> Cleanup {
        let instance = instance_value(root, "DEVINST_CONTAINER").expect("set up");
        Cleanup {
            services: services.iter().map(|s| format!("{instance}-{s}")).collect(),
            instance,
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut args = vec!["rm", "-f", "-v", self.instance.as_str()];
        args.extend(self.services.iter().map(String::as_str));
        quiet_docker(&args);
        quiet_docker(&["network", "rm", &self.instance]);
    }
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// `url` fetched from inside the instance, retried while the service starts.
fn fetch_inside(env: &TestEnv, repo: &Path, url: &str) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..25 {
        let run = env.run(repo, &["exec", "--", "wget", "-q", "-O", "-", url]);
        if run.code == 0 {
            return Ok(run.stdout);
        }
        last = run.to_string();
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(last)
}

/// `GET path` on 127.0.0.1:`port` from the host, retried briefly.
fn fetch_on_host(port: u16, path: &str) -> String {
    let mut last = String::new();
    for _ in 0..25 {
        match http_get(port, path) {
            Ok(body) => return body,
            Err(err) => last = err.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("GET 127.0.0.1:{port}{path}: {last}");
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_owned())
        }
        _ => Err(std::io::Error::other(format!("answer: {response:?}"))),
    }
}

fn state(container: &str) -> String {
    inspect(container, "{{.State.Status}}")
}

fn service_port(root: &Path) -> u16 {
    instance_value(root, "DEVINST_SERVICE_DB_PORT")
        .expect("`.instance` records the service's port")
        .parse()
        .expect("a port number")
}

#[test]
fn any_engine_a_service_lives_and_dies_with_its_instance() {
    let env = TestEnv::new();
    let repo = repo_with_db(&env, "life");
    env.run(&repo, &["setup"]).ok();
    let cleanup = Cleanup::new(&repo, &["db"]);
    let (instance, db) = (cleanup.instance.clone(), cleanup.services[0].clone());
    let port = service_port(&repo);
    assert!((47600..=47699).contains(&port), "{port}");
    assert_ne!(
        instance_value(&repo, "DEVINST_PORT").unwrap(),
        port.to_string(),
        "the service has a port of its own"
    );
    // `activate` exports the service's port and `deactivate` takes it back.
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "source .sky-dev/bin/activate && printf '%s|' \"$DEVINST_SERVICE_DB_PORT\" \
             && deactivate && printf '%s' \"${DEVINST_SERVICE_DB_PORT-unset}\"",
        )
        .current_dir(&repo)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{port}|unset")
    );

    write(&repo.join(".sky-dev/services/db/file"), "from the host\n");
    let run = env.run(&repo, &["start"]).ok();
    assert!(run.stderr.contains("creating network"), "{run}");
    assert_eq!(state(&db), "running");
    assert_eq!(
        inspect(&db, "{{index .Config.Labels \"devinst.service\"}}"),
        "db"
    );

    // The instance finds it by name, and is told its host and port.
    let got = fetch_inside(&env, &repo, "http://db:8080/file").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, "from the host\n");
    let run = env
        .sh(
            &repo,
            "echo $DEVINST_SERVICE_DB_HOST:$DEVINST_SERVICE_DB_PORT",
        )
        .ok();
    assert_eq!(run.stdout, "db:8080\n");
    // The host reaches it on its published port.
    assert_eq!(fetch_on_host(port, "/file"), "from the host\n");

    // What the service writes in its data directory outlives the container.
    assert!(docker_ok(&[
        "exec",
        &db,
        "sh",
        "-c",
        "echo made inside > /www/inside"
    ]));
    let old_id = inspect(&db, "{{.Id}}");
    env.run(&repo, &["start", "--recreate"]).ok();
    assert_eq!(
        inspect(&db, "{{.Id}}"),
        old_id,
        "an unchanged service is kept"
    );
    quiet_docker(&["rm", "-f", &db]);
    env.run(&repo, &["start"]).ok();
    assert_ne!(inspect(&db, "{{.Id}}"), old_id, "recreated");
    let got = fetch_inside(&env, &repo, "http://db:8080/inside").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, "made inside\n");

    env.run(&repo, &["stop"]).ok();
    assert_eq!(state(&instance), "exited");
    assert_eq!(state(&db), "exited");
    env.run(&repo, &["start"]).ok();
    assert_eq!(state(&db), "running");
    assert_eq!(fetch_on_host(port, "/inside"), "made inside\n");

    env.run(&repo, &["destroy", "-y"]).ok();
    assert!(
        !docker_ok(&["container", "inspect", &db]),
        "service removed"
    );
    assert!(
        !docker_ok(&["network", "inspect", &instance]),
        "private network removed"
    );
    assert!(
        repo.join(".sky-dev/services/db/inside").is_file(),
        "data kept without --purge"
    );
}

#[test]
fn two_instances_with_the_same_service_have_their_own() {
    let env = TestEnv::new();
    let a = repo_with_db(&env, "two-a");
    let b = repo_with_db(&env, "two-b");
    let mut guards = Vec::new();
    for (repo, text) in [(&a, "a\n"), (&b, "b\n")] {
        env.run(repo, &["setup"]).ok();
        guards.push(Cleanup::new(repo, &["db"]));
        write(&repo.join(".sky-dev/services/db/file"), text);
        env.run(repo, &["start"]).ok();
    }
    let (port_a, port_b) = (service_port(&a), service_port(&b));
    assert_ne!(port_a, port_b);
    assert_eq!(
        fetch_inside(&env, &a, "http://db:8080/file").unwrap(),
        "a\n"
    );
    assert_eq!(
        fetch_inside(&env, &b, "http://db:8080/file").unwrap(),
        "b\n"
    );
    assert_eq!(fetch_on_host(port_b, "/file"), "b\n");
    // A's network does not reach B's service, by any name: `db` is A's own
    // there, and the name of B's service container does not resolve. (busybox
    // nslookup asks the network's DNS itself; its wget crashes on a name it
    // cannot resolve, which would prove nothing.)
    let db_a = resolve(&env, &a, "db").unwrap_or_else(|run| panic!("{run}"));
    let db_b = resolve(&env, &b, "db").unwrap_or_else(|run| panic!("{run}"));
    assert!(!db_a.is_empty() && db_a != db_b, "{db_a:?} {db_b:?}");
    let other = &guards[1].services[0];
    let run = resolve(&env, &a, other).expect_err("B's service has no name on A's network");
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stdout.contains("NXDOMAIN"), "{run}");

    // Re-running setup keeps the ports.
    env.run(&a, &["setup"]).ok();
    assert_eq!(service_port(&a), port_a);
}

/// The addresses `name` resolves to inside the instance of `repo`, asked of
/// the network's DNS by busybox nslookup; the failed run when it does not.
fn resolve(env: &TestEnv, repo: &Path, name: &str) -> Result<Vec<String>, crate::support::Run> {
    let run = env.run(repo, &["exec", "--", "nslookup", name]);
    if run.code != 0 {
        return Err(run);
    }
    // The answers follow a `Name:` line; the server's own address precedes.
    let (_, answers) = run.stdout.split_once("Name:").unwrap_or_default();
    let mut found: Vec<String> = answers
        .lines()
        .filter_map(|l| l.strip_prefix("Address:"))
        .map(|a| a.trim().to_owned())
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

/// `status --json`'s services, as far as these tests rely on them.
#[derive(Debug, Deserialize)]
struct Status {
    state: String,
    services: Vec<ServiceView>,
}

#[derive(Debug, Deserialize)]
struct ServiceView {
    name: String,
    container: String,
    state: String,
    host_port: Option<u16>,
    port: Option<u16>,
    ports: Vec<String>,
}

#[test]
fn status_shows_services_and_gc_keeps_them() {
    let env = TestEnv::new();
    let repo = repo_with_db(&env, "status");
    env.run(&repo, &["setup"]).ok();
    let cleanup = Cleanup::new(&repo, &["db"]);
    let port = service_port(&repo);
    let status = |env: &TestEnv| -> Status {
        let run = env.run(&repo, &["status", "--json"]).ok();
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"))
    };
    let before = status(&env);
    assert_eq!(before.services.len(), 1);
    assert_eq!(before.services[0].state, "missing");

    env.run(&repo, &["start"]).ok();
    let after = status(&env);
    assert_eq!(after.state, "running");
    let db = &after.services[0];
    assert_eq!(db.name, "db");
    assert_eq!(db.container, cleanup.services[0]);
    assert_eq!(db.state, "running");
    assert_eq!((db.host_port, db.port), (Some(port), Some(8080)));
    assert_eq!(db.ports, [format!("127.0.0.1:{port} -> 8080")]);
    let text = env.run(&repo, &["status"]).ok();
    assert!(text.stdout.contains("service:   db"), "{text}");

    // A live instance's service is no orphan.
    let run = env.run(&repo, &["gc", "--dry-run"]).ok();
    assert!(!run.stdout.contains(&cleanup.services[0]), "{run}");
    // `list` shows the service's port with its instance, not as an instance.
    let run = env.run(&repo, &["list", "--json"]).ok();
    let views: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    let containers: Vec<&str> = views
        .iter()
        .filter_map(|v| v["container"].as_str())
        .collect();
    assert!(!containers.contains(&cleanup.services[0].as_str()), "{run}");
    let ours = views
        .iter()
        .find(|v| v["container"] == cleanup.instance.as_str())
        .unwrap_or_else(|| panic!("{run}"));
    assert!(
        ours["ports"]
            .to_string()
            .contains(&format!(":{port} -> 8080")),
        "{run}"
    );
}

#[test]
fn gc_removes_the_services_and_network_of_a_gone_worktree() {
    let _gone = gone_worktrees_lock();
    let env = TestEnv::new();
    let repo = repo_with_db(&env, "gc");
    env.run(&repo, &["setup"]).ok();
    let cleanup = Cleanup::new(&repo, &["db"]);
    env.run(&repo, &["start"]).ok();
    std::fs::remove_dir_all(&repo).unwrap();
    let run = env.run(env.tmp.path(), &["gc"]).ok();
    assert!(
        run.stdout
            .contains(&format!("removed container `{}`", cleanup.services[0])),
        "{run}"
    );
    assert!(
        !docker_ok(&["container", "inspect", &cleanup.services[0]]),
        "{run}"
    );
    assert!(
        !docker_ok(&["network", "inspect", &cleanup.instance]),
        "{run}"
    );
}

#[test]
fn bad_service_config_is_refused_with_its_key() {
    let env = TestEnv::new();
    for (what, service, key) in [
        ("noimg", "port = 5432\n", "`[services.db] image`"),
        (
            "port",
            "image = \"x\"\nport = 70000\n",
            "`[services.db] port`",
        ),
        (
            "data",
            "image = \"x\"\ndata = \"www\"\n",
            "`[services.db] data`",
        ),
        ("extra", "image = \"x\"\nports = 1\n", "ports"),
    ] {
        let dir = env.repo(&unique(&format!("bad-{what}")));
        write(
            &dir.join("devinst.toml"),
            &format!("[services.db]\n{service}"),
        );
        env.run(&dir, &["setup"]).fails_with(1, key);
    }
    let dir = env.repo(&unique("bad-name"));
    write(
        &dir.join("devinst.toml"),
        "[services.My_DB]\nimage = \"x\"\n",
    );
    env.run(&dir, &["setup"])
        .fails_with(1, "`[services.My_DB]`")
        .fails_with(1, "hint:");
}

#[test]
fn a_service_dropped_from_the_recipe_is_removed_on_the_next_start() {
    let env = TestEnv::new();
    let repo = repo_with_db(&env, "dropped");
    env.run(&repo, &["setup"]).ok();
    let cleanup = Cleanup::new(&repo, &["db"]);
    env.run(&repo, &["start"]).ok();
    assert_eq!(state(&cleanup.services[0]), "running");

    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    let (kept, _) = toml.split_once("[services.db]").unwrap();
    write(&repo.join("devinst.toml"), kept);
    let run = env.run(&repo, &["start"]).ok();
    assert!(
        run.stderr.contains(&format!(
            "removing service `db` (container `{}`)",
            cleanup.services[0]
        )),
        "{run}"
    );
    assert!(
        !docker_ok(&["container", "inspect", &cleanup.services[0]]),
        "{run}"
    );
    assert!(
        repo.join(".sky-dev/services/db").is_dir(),
        "its data directory is kept"
    );
}

#[test]
fn a_service_added_without_setup_runs_and_warns_until_setup_gives_it_a_port() {
    let env = TestEnv::new();
    let repo = repo_with_db(&env, "added");
    let full = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    let (without, _) = full.split_once("[services.db]").unwrap();
    write(&repo.join("devinst.toml"), without);
    env.run(&repo, &["setup"]).ok();
    let cleanup = Cleanup::new(&repo, &["db"]);
    env.run(&repo, &["start"]).ok();

    // Added to the recipe, but `setup` not run again: no host port yet.
    write(&repo.join("devinst.toml"), &full);
    write(&repo.join(".sky-dev/services/db/file"), "early\n");
    let run = env.run(&repo, &["start"]).ok();
    assert!(
        run.stderr.contains(
            "warning: service `db` has no host port yet, so it is reachable from the instance only"
        ),
        "{run}"
    );
    assert!(run.stderr.contains("run `devinst setup`"), "{run}");
    assert_eq!(state(&cleanup.services[0]), "running");
    let bindings = inspect(&cleanup.services[0], "{{json .HostConfig.PortBindings}}");
    assert!(!bindings.contains("HostPort"), "published: {bindings}");

    // As the warning says: setup, then start --recreate publishes it.
    env.run(&repo, &["setup"]).ok();
    let port = service_port(&repo);
    let run = env.run(&repo, &["start", "--recreate"]).ok();
    assert!(!run.stderr.contains("no host port yet"), "{run}");
    assert_eq!(fetch_on_host(port, "/file"), "early\n");
}

#[test]
fn services_on_an_engine_network_mode_are_refused() {
    let env = TestEnv::new();
    for mode in ["bridge", "none"] {
        let repo = repo_with_db(&env, &format!("mode-{mode}"));
        let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
        write(
            &repo.join("devinst.toml"),
            &toml.replacen(
                "[container]\n",
                &format!("[container]\nnetwork = \"{mode}\"\n"),
                1,
            ),
        );
        let run = env.run(&repo, &["setup"]).fails_with(
            1,
            &format!("`[container] network = \"{mode}\"` cannot carry services"),
        );
        assert!(run.stderr.contains("found by name only"), "{run}");
        assert!(!repo.join(".sky-dev").exists(), "nothing set up");
    }
}

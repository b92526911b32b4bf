//! Engines and sandboxes: finding the engine, Podman, gVisor, limits and
//! tiers, networks, and running as the worktree's owner.
//!
//! Tests named `any_engine_*` hold on Docker and on Podman alike; CI runs them
//! a second time with `DOCKER_HOST` at Podman's socket. The others need what
//! only the Docker engine here has (the `runsc` runtime).

use crate::support::*;
use std::path::Path;

/// Host ports for this module, apart from other modules' and worktrees' runs.
const RANGE: &str = "[ports]\nhost_range = [47300, 47499]\n";

/// The engine this run uses, as the `docker` CLI of the checks sees it.
fn engine_uri() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// A Docker CLI context named `name` for `host`, laid out as `docker context
/// create` does (metadata under the SHA-256 of the name).
fn write_context(config_dir: &Path, name: &str, host: &str) {
    let digest = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{name}' | sha256sum"))
        .output()
        .unwrap();
    let hex = String::from_utf8_lossy(&digest.stdout)[..64].to_owned();
    write(
        &config_dir.join("contexts/meta").join(hex).join("meta.json"),
        &format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        ),
    );
}

#[test]
fn any_engine_the_docker_context_finds_the_engine_and_an_unknown_one_is_an_error() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("eng-context", RANGE);
    let docker_dir = env.home.join(".docker");
    write_context(&docker_dir, "devinst-it", &engine_uri());
    write_context(
        &docker_dir,
        "devinst-gone",
        "unix:///nonexistent/devinst.sock",
    );
    write(
        &docker_dir.join("config.json"),
        r#"{"auths":{},"currentContext":"devinst-it"}"#,
    );
    let devinst = |args: &[&str], context: Option<&str>| {
        let mut cmd = env.cmd(&repo);
        cmd.env_remove("DOCKER_HOST").env_remove("DOCKER_CONFIG");
        match context {
            Some(name) => cmd.env("DOCKER_CONTEXT", name),
            None => cmd.env_remove("DOCKER_CONTEXT"),
        };
        env.run_cmd(&repo, cmd.args(args))
    };

    // `currentContext` in ~/.docker/config.json names the engine.
    devinst(&["setup"], None).ok();
    devinst(&["start"], None).ok();
    let run = devinst(&["exec", "--", "echo", "via-context"], None).ok();
    assert_eq!(run.stdout, "via-context\n");
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");

    // DOCKER_CONTEXT wins over config.json: this one's engine is not there,
    // and the error says which context sent devinst where.
    let run = devinst(&["exec", "--", "true"], Some("devinst-gone"));
    let run = run.fails_with(125, "cannot reach a container engine");
    assert!(
        run.stderr.contains(
            "unix:///nonexistent/devinst.sock (docker context `devinst-gone` from DOCKER_CONTEXT)"
        ),
        "{run}"
    );
    assert!(run.stderr.contains("hint: start an engine"), "{run}");

    // An unknown context is named, with where it came from and what to do.
    for args in [&["exec", "--", "true"][..], &["status"][..]] {
        let code = if args[0] == "exec" { 125 } else { 1 };
        let run = devinst(args, Some("nosuch")).fails_with(
            code,
            "unknown docker context `nosuch` (from DOCKER_CONTEXT)",
        );
        assert!(run.stderr.contains("docker context ls"), "{run}");
    }
    // `default` is the default socket, as for the Docker CLI.
    if engine_uri() == "unix:///var/run/docker.sock" {
        devinst(&["exec", "--", "true"], Some("default")).ok();
    }
}

#[test]
fn any_engine_the_host_flag_wins_over_the_recipe_and_unreachable_engines_are_listed() {
    let env = TestEnv::new();
    let repo = env.busybox_repo(
        "eng-hostflag",
        &format!("{RANGE}[engine]\nhost = \"unix:///nonexistent/devinst.sock\"\n"),
    );
    // The recipe's endpoint is used only with the user's consent, and only
    // where nothing of the user's (DOCKER_HOST here) names another.
    env.trust(&repo);
    let without_docker_host = |args: &[&str]| {
        let mut cmd = env.cmd(&repo);
        cmd.env_remove("DOCKER_HOST");
        env.run_cmd(&repo, cmd.args(args))
    };
    without_docker_host(&["setup"]).ok();
    let run =
        without_docker_host(&["start"]).fails_with(1, "cannot reach a container engine; tried:");
    assert!(
        run.stderr
            .contains("unix:///nonexistent/devinst.sock ([engine] host in devinst.toml)"),
        "{run}"
    );
    for engine in ["Docker", "Podman", "--host", "DOCKER_HOST"] {
        assert!(run.stderr.contains(engine), "hint names {engine}: {run}");
    }
    let host = engine_uri();
    env.run(&repo, &["--host", &host, "start"]).ok();
    let run = env
        .run(&repo, &["exec", "--host", &host, "--", "echo", "flag"])
        .ok();
    assert_eq!(run.stdout, "flag\n");
    let run = env.run(&repo, &["--host", &host, "stop"]).ok();
    assert!(run.stderr.contains("stopped container"), "{run}");
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&container, "{{.State.Running}}"), "false");
    // Both engines answer a second stop as a success; devinst tells the truth.
    let run = env.run(&repo, &["--host", &host, "stop"]).ok();
    assert!(run.stderr.contains("is not running"), "{run}");
    // A scheme devinst does not speak is said so.
    env.run(&repo, &["--host", "ssh://user@remote", "status"])
        .fails_with(1, "unsupported scheme");
}

/// Serves `text` over HTTP from inside the instance (busybox `httpd`, which
/// backgrounds itself and outlives the exec) on the container port.
fn serve_from_instance(env: &TestEnv, repo: &Path, text: &str) {
    write(&repo.join("www/hello.txt"), text);
    env.run(
        repo,
        &["exec", "--", "httpd", "-p", "46580", "-h", "/app/www"],
    )
    .ok();
}

/// GETs `path` from `127.0.0.1:port`, retrying while the server comes up.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut last = String::new();
    for _ in 0..50 {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut stream) => {
                stream
                    .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
                if stream.write_all(request.as_bytes()).is_ok() {
                    let mut response = String::new();
                    let _ = stream.read_to_string(&mut response);
                    if response.starts_with("HTTP/1.") {
                        return response;
                    }
                    last = response;
                }
            }
            Err(err) => last = err.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no HTTP answer on 127.0.0.1:{port}: {last}");
}

fn port_of(repo: &Path) -> u16 {
    instance_value(repo, "DEVINST_PORT")
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn gpus_on_an_engine_without_a_gpu_runtime_fail_clearly_and_doctor_says_so() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("eng-gpus", RANGE);
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replacen("[container]\n", "[container]\ngpus = \"all\"\n", 1),
    );
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let started = env.run(&repo, &["start"]);
    // The request reached the engine as `docker run --gpus all` sends it.
    let asked = inspect(&container, "{{json .HostConfig.DeviceRequests}}");
    started.fails_with(1, "the engine has no GPU runtime");
    assert!(
        asked.contains("\"Count\":-1") && asked.contains("[[\"gpu\"]]"),
        "{asked}"
    );
    let doctor = env.run(&repo, &["doctor"]);
    assert!(
        doctor.stdout.contains("asks for GPUs") || doctor.stderr.contains("asks for GPUs"),
        "{doctor}"
    );
}

#[test]
fn gvisor_sandboxes_every_node_of_a_cluster() {
    let env = TestEnv::new();
    let repo = env.busybox_repo(
        "eng-gvisor-cluster",
        &format!("{RANGE}[cluster]\nnodes = 2\n"),
    );
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replacen("[container]\n", "[container]\nruntime = \"runsc\"\n", 1),
    );
    env.run(&repo, &["setup"]).ok();
    let head = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let node = format!("{head}-node-1");
    let started = env.run(&repo, &["start"]);
    let kernels = env.run(&repo, &["exec", "--all", "--", "uname", "-r"]);
    let on_node = inspect(&node, "{{.HostConfig.Runtime}}");
    env.run(&repo, &["destroy"]).ok();
    crate::support::quiet_docker(&["network", "rm", &head]);
    started.ok();
    assert_eq!(on_node, "runsc");
    let mut lines: Vec<&str> = kernels.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["[node 0] 4.4.0", "[node 1] 4.4.0"], "{kernels}");
}

#[test]
fn gvisor_runs_the_instance_in_its_sandbox_with_ports_shims_and_restarts() {
    let env = TestEnv::new();
    let repo = env.busybox_repo(
        "eng-gvisor",
        &format!("{RANGE}[shims]\nkernel = [\"uname\", \"-r\"]\n"),
    );
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replacen("[container]\n", "[container]\nruntime = \"runsc\"\n", 1),
    );
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&container, "{{.HostConfig.Runtime}}"), "runsc");
    // gVisor's own kernel answers, not the host's.
    let kernel = env.run(&repo, &["exec", "--", "uname", "-r"]).ok();
    assert_eq!(kernel.stdout, "4.4.0\n", "{kernel}");
    let shim = env
        .script(&repo, &repo.join(".sky-dev/bin/kernel"), &[])
        .ok();
    assert_eq!(shim.stdout, "4.4.0\n");

    // The published port reaches a server inside the sandbox, on loopback.
    serve_from_instance(&env, &repo, "from gvisor\n");
    let port = port_of(&repo);
    let response = http_get(port, "/hello.txt");
    assert!(response.ends_with("from gvisor\n"), "{response}");
    // Published to the agent's relay port, on loopback only.
    assert_eq!(
        inspect(
            &container,
            "{{(index (index .HostConfig.PortBindings \"65000/tcp\") 0).HostIp}}"
        ),
        "127.0.0.1"
    );
    // A server bound to the sandbox's loopback is reached as well.
    env.run(&repo, &["exec", "--", "killall", "httpd"]).ok();
    write(&repo.join("www/hello.txt"), "loopback in gvisor\n");
    env.run(
        &repo,
        &[
            "exec",
            "--",
            "httpd",
            "-p",
            "127.0.0.1:46580",
            "-h",
            "/app/www",
        ],
    )
    .ok();
    let response = http_get(port, "/hello.txt");
    assert!(response.ends_with("loopback in gvisor\n"), "{response}");
    // gVisor cannot take the host's descriptors: execs go through the engine.
    let run = env.run(&repo, &["-v", "exec", "--", "true"]).ok();
    assert!(run.stderr.contains("runtime `runsc` cannot take"), "{run}");

    // Stopped, the shim brings it back, still sandboxed.
    env.script(&repo, &repo.join(".sky-dev/bin/stop-container"), &[])
        .ok();
    assert_eq!(inspect(&container, "{{.State.Running}}"), "false");
    let shim = env
        .script(&repo, &repo.join(".sky-dev/bin/kernel"), &[])
        .ok();
    assert_eq!(shim.stdout, "4.4.0\n");
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");
}

#[test]
fn any_engine_a_server_bound_to_loopback_or_every_address_is_reached_at_the_instance_port() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("eng-binds", RANGE);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let port = port_of(&repo);
    for (bind, text) in [
        ("127.0.0.1:46580", "on loopback\n"),
        ("46580", "on every address\n"),
    ] {
        write(&repo.join("www/hello.txt"), text);
        env.run(
            &repo,
            &["exec", "--", "httpd", "-p", bind, "-h", "/app/www"],
        )
        .ok();
        let response = http_get(port, "/hello.txt");
        assert!(response.ends_with(text), "{bind}: {response}");
        env.run(&repo, &["exec", "--", "killall", "httpd"]).ok();
    }
}

#[test]
fn any_engine_a_runtime_the_engine_lacks_is_refused_before_creating_anything() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("eng-noruntime", RANGE);
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replacen("[container]\n", "[container]\nruntime = \"nosuch\"\n", 1),
    );
    env.run(&repo, &["setup"]).ok();
    let run = env
        .run(&repo, &["start"])
        .fails_with(1, "has no runtime `nosuch`; it has: ");
    // Both engines here list at least runc.
    assert!(run.stderr.contains("runc"), "{run}");
    assert!(
        run.stderr.contains("hint: set `[container] runtime`"),
        "{run}"
    );
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let exists = std::process::Command::new("docker")
        .args(["inspect", &container])
        .output()
        .unwrap();
    assert!(!exists.status.success(), "no container was created");
}

/// A cgroup value from inside the instance, on cgroup v2 or v1.
fn cgroup(env: &TestEnv, repo: &Path, v2: &str, v1: &str) -> String {
    let script = format!("cat /sys/fs/cgroup/{v2} 2>/dev/null || cat /sys/fs/cgroup/{v1}");
    env.run(repo, &["exec", "--", "sh", "-c", &script])
        .ok()
        .stdout
        .trim()
        .to_owned()
}

#[test]
fn any_engine_limits_reach_the_engine_and_the_cgroup() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("eng-limits", RANGE);
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replacen(
            "[container]\n",
            "[container]\ncpus = 1.5\nmemory = \"512m\"\npids = 100\n",
            1,
        ),
    );
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(
        inspect(&container, "{{.HostConfig.NanoCpus}}"),
        "1500000000"
    );
    assert_eq!(inspect(&container, "{{.HostConfig.Memory}}"), "536870912");
    assert_eq!(inspect(&container, "{{.HostConfig.PidsLimit}}"), "100");
    // What the kernel enforces inside.
    assert_eq!(
        cgroup(&env, &repo, "memory.max", "memory/memory.limit_in_bytes"),
        "536870912"
    );
    assert_eq!(cgroup(&env, &repo, "pids.max", "pids/pids.max"), "100");
    let cpu = cgroup(&env, &repo, "cpu.max", "cpu/cpu.cfs_quota_us");
    let quota: u64 = cpu.split_whitespace().next().unwrap().parse().unwrap();
    let period: u64 = match cpu.split_whitespace().nth(1) {
        Some(period) => period.parse().unwrap(),
        None => cgroup(&env, &repo, "cpu.max", "cpu/cpu.cfs_period_us")
            .parse()
            .unwrap(),
    };
    assert_eq!(quota * 10 / period, 15, "1.5 cpus: {quota}/{period}");
}

#[test]
fn any_engine_a_tier_chosen_at_setup_sets_the_limits_and_an_unknown_one_is_refused() {
    let env = TestEnv::new();
    let repo = env.busybox_repo(
        "eng-tiers",
        &format!(
            "{RANGE}[tiers.dev-small]\ncpus = 0.5\nmemory = \"1g\"\n[tiers.dev-large]\ncpus = 2.0\nmemory = \"2g\"\n"
        ),
    );
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replacen(
            "[container]\n",
            "[container]\nmemory = \"256m\"\npids = 64\n",
            1,
        ),
    );
    let run = env
        .run(&repo, &["setup", "--tier", "huge"])
        .fails_with(1, "unknown tier `huge`");
    assert!(run.stderr.contains("dev-large, dev-small"), "{run}");
    assert!(run.stderr.contains("hint: "), "{run}");
    assert!(!repo.join(".sky-dev/.instance").exists(), "nothing set up");

    env.run(&repo, &["setup", "--tier", "dev-small"]).ok();
    assert_eq!(instance_value(&repo, "DEVINST_TIER").unwrap(), "dev-small");
    env.run(&repo, &["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&container, "{{.HostConfig.NanoCpus}}"), "500000000");
    assert_eq!(inspect(&container, "{{.HostConfig.Memory}}"), "1073741824");
    // What the tier leaves out comes from `[container]`.
    assert_eq!(inspect(&container, "{{.HostConfig.PidsLimit}}"), "64");
    assert_eq!(
        cgroup(&env, &repo, "memory.max", "memory/memory.limit_in_bytes"),
        "1073741824"
    );

    // A re-run keeps the tier; a new tier applies on --recreate.
    env.run(&repo, &["setup"]).ok();
    assert_eq!(instance_value(&repo, "DEVINST_TIER").unwrap(), "dev-small");
    env.run(&repo, &["setup", "--tier", "dev-large"]).ok();
    let run = env.run(&repo, &["start"]).ok();
    assert!(run.stderr.contains("--recreate"), "{run}");
    env.run(&repo, &["start", "--recreate"]).ok();
    assert_eq!(inspect(&container, "{{.HostConfig.Memory}}"), "2147483648");
    assert_eq!(
        inspect(&container, "{{.HostConfig.NanoCpus}}"),
        "2000000000"
    );
}

/// `docker network inspect -f FORMAT NAME`, or `None` when there is none.
fn network_inspect(name: &str, format: &str) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(["network", "inspect", "-f", format, name])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn any_engine_instances_on_a_named_network_reach_each_other_by_container_name() {
    let env = TestEnv::new();
    let network = env.network("devinst-it-net");
    let server = env.busybox_repo("eng-net-server", RANGE);
    let client = env.busybox_repo("eng-net-client", RANGE);
    for repo in [&server, &client] {
        let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
        write(
            &repo.join("devinst.toml"),
            &toml.replacen(
                "[container]\n",
                &format!("[container]\nnetwork = \"{network}\"\n"),
                1,
            ),
        );
        env.run(repo, &["setup"]).ok();
    }
    assert_eq!(
        network_inspect(&network, "{{.Name}}"),
        None,
        "not there yet"
    );
    let run = env.run(&server, &["start"]).ok();
    assert!(
        run.stderr
            .contains(&format!("creating network `{network}`")),
        "{run}"
    );
    assert_eq!(
        network_inspect(
            &network,
            "{{.Driver}} {{index .Labels \"devinst.managed-by\"}}"
        )
        .unwrap(),
        "bridge devinst"
    );
    let run = env.run(&client, &["start"]).ok();
    assert!(
        !run.stderr.contains("creating network"),
        "joined, not made again: {run}"
    );

    serve_from_instance(&env, &server, "by name\n");
    let server_name = instance_value(&server, "DEVINST_CONTAINER").unwrap();
    let url = format!("http://{server_name}:46580/hello.txt");
    let mut fetched = String::new();
    for _ in 0..30 {
        let run = env.run(&client, &["exec", "--", "wget", "-q", "-O", "-", &url]);
        if run.code == 0 {
            fetched = run.stdout;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(fetched, "by name\n", "the client reaches {url}");

    // Destroying the instances leaves the network to whoever else uses it.
    env.run(&server, &["destroy", "-y"]).ok();
    env.run(&client, &["destroy", "-y"]).ok();
    assert!(
        network_inspect(&network, "{{.Name}}").is_some(),
        "network kept"
    );
}

#[test]
fn any_engine_without_a_network_the_instance_is_on_the_default_bridge() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("eng-net-default", RANGE);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let networks = inspect(
        &container,
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
    );
    let default = if engine_uri().contains("podman") {
        "podman"
    } else {
        "bridge"
    };
    assert_eq!(networks, default);
}

#[test]
fn any_engine_user_host_runs_everything_as_the_worktree_owner_with_a_writable_home() {
    let env = TestEnv::new();
    let repo = env.busybox_repo(
        "eng-owner",
        &format!(
            "{RANGE}[shims]\nmake = [\"sh\", \"-c\", \"touch made-by-shim && echo $HOME && id -u && id -g\"]\n"
        ),
    );
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml
            .replacen("[container]\n", "[container]\nuser = \"host\"\n", 1)
            .replacen(
                "commands = []\n",
                "commands = [\"id -u > made-by-setup\"]\ninputs = []\n",
                1,
            ),
    );
    // The tests run as root: hand the worktree to someone else, as a user's
    // own checkout would be.
    let chown = std::process::Command::new("chown")
        .args(["-R", "1234:1234"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(chown.success());
    // Git refuses a repository another user owns; that user's git would not.
    let devinst = |args: &[&str]| env.run_on_others_worktree(&repo, args);
    // A shim named `make` shadows the host's: the user agrees first.
    devinst(&["trust"]).ok();
    devinst(&["setup"]).ok();
    devinst(&["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&container, "{{.Config.User}}"), "1234:1234");
    let owner = |path: &Path| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        (meta.uid(), meta.gid())
    };

    // Setup steps, shims, exec and the keep-alive all run as 1234.
    assert_eq!(
        std::fs::read_to_string(repo.join("made-by-setup")).unwrap(),
        "1234\n"
    );
    assert_eq!(owner(&repo.join("made-by-setup")), (1234, 1234));
    let shim = env.script(&repo, &repo.join(".sky-dev/bin/make"), &[]).ok();
    assert_eq!(shim.stdout, "/home/devinst\n1234\n1234\n");
    assert_eq!(owner(&repo.join("made-by-shim")), (1234, 1234));
    let run = devinst(&["exec", "--", "stat", "-c", "%u", "/proc/1"]).ok();
    assert_eq!(
        run.stdout, "1234\n",
        "the keep-alive (pid 1) runs as the owner"
    );

    // HOME, state and logs are writable, and what lands there is theirs.
    devinst(&[
        "exec",
        "--",
        "sh",
        "-c",
        "echo h > $HOME/.profile-test && echo s > $HOME/.sky/s && echo l > $HOME/sky_logs/l",
    ])
    .ok();
    assert_eq!(
        owner(&repo.join(".sky-dev/home/.profile-test")),
        (1234, 1234)
    );
    assert_eq!(owner(&repo.join(".sky-dev/state/s")), (1234, 1234));
    assert_eq!(owner(&repo.join(".sky-dev/sky_logs/l")), (1234, 1234));

    // Stopped and started again, it still runs as the owner.
    devinst(&["stop"]).ok();
    let run = devinst(&["exec", "--", "id", "-u"]).ok();
    assert_eq!(run.stdout, "1234\n");
}

#[test]
fn any_engine_the_default_user_stays_root() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("eng-root", RANGE);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let run = env.sh(&repo, "id -u; touch made").ok();
    assert_eq!(run.stdout, "0\n");
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    assert_eq!(inspect(&container, "{{.Config.User}}"), "");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(repo.join("made")).unwrap().uid(), 0);
}

fn on_podman() -> bool {
    engine_uri().contains("podman")
}

#[test]
fn any_engine_a_sandbox_runtime_is_applied_or_refused_never_ignored() {
    let env = TestEnv::new();
    let repo = env.busybox_repo("eng-sandbox", RANGE);
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replacen("[container]\n", "[container]\nruntime = \"runsc\"\n", 1),
    );
    env.run(&repo, &["setup"]).ok();
    let run = env.run(&repo, &["start"]);
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    if on_podman() {
        // Podman 4.3 lists runsc but its compatible API drops HostConfig.Runtime
        // and runs runc: devinst refuses rather than run unsandboxed.
        let run = run.fails_with(1, "ignores `[container] runtime = \"runsc\"`");
        assert!(run.stderr.contains("hint: use Docker"), "{run}");
        let exists = std::process::Command::new("docker")
            .args(["inspect", &container])
            .output()
            .unwrap();
        assert!(!exists.status.success(), "no container was created");
    } else {
        run.ok();
        let kernel = env.run(&repo, &["exec", "--", "uname", "-r"]).ok();
        assert_eq!(kernel.stdout, "4.4.0\n");
    }
}

#[test]
fn any_engine_concurrent_starts_of_one_instance_all_succeed() {
    let env = TestEnv::new();
    let repo = env.busybox_repo(
        "eng-race",
        &format!("{RANGE}[shims]\nhello = [\"echo\", \"hello\"]\n"),
    );
    env.run(&repo, &["setup"]).ok();
    // Each start, and each shim (which starts a missing container too),
    // finds no container and creates one: all but one lose the race for the
    // name, and must use the winner's container.
    let shim = repo.join(".sky-dev/bin/hello");
    let racers: Vec<_> = (0..6)
        .map(|i| {
            let mut cmd = if i % 2 == 0 {
                let mut cmd = env.cmd(&repo);
                cmd.arg("start");
                cmd
            } else {
                let mut cmd = std::process::Command::new(&shim);
                for (key, value) in env.cmd(&repo).get_envs() {
                    match value {
                        Some(value) => cmd.env(key, value),
                        None => cmd.env_remove(key),
                    };
                }
                cmd.current_dir(&repo).stdin(std::process::Stdio::null());
                cmd
            };
            std::thread::spawn(move || Run::from(output_within(&mut cmd, None)))
        })
        .collect();
    env.track(&repo);
    for (i, racer) in racers.into_iter().enumerate() {
        let run = racer.join().unwrap().ok();
        if i % 2 == 1 {
            assert_eq!(run.stdout, "hello\n", "the shim ran its command\n{run}");
        }
    }
    // One container for this worktree: the instance's, running.
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let label = format!("label=devinst.worktree={}", repo.display());
    let listed = std::process::Command::new("docker")
        .args(["ps", "-a", "--filter", &label, "--format", "{{.Names}}"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), container);
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");
    // And it stays the one: neither a start nor a shim replaces it.
    let id = inspect(&container, "{{.Id}}");
    env.run(&repo, &["start"]).ok();
    let run = env.script(&repo, &shim, &[]).ok();
    assert_eq!(run.stdout, "hello\n");
    assert_eq!(inspect(&container, "{{.Id}}"), id);
}

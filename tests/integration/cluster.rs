//! Several nodes per instance (`[cluster] nodes`), the Skyward document's
//! local cluster: every node a busybox container on the instance's network,
//! each knowing its rank, the count and every node's address.

use crate::support::{
    container_exists, gone_worktrees_lock, inspect, instance_value, quiet_docker, write, TestEnv,
    BUSYBOX,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `cl-<what>-<pid>`: unique on this engine, shared with other test runs.
fn unique(what: &str) -> String {
    format!("cl-{what}-{}", std::process::id())
}

/// The container's command prints what the keep-alive knows of its cluster,
/// so `logs --node K` shows it.
const KEEP_ALIVE: &str = "command = [\"sh\", \"-c\", \
    \"echo rank=$DEVINST_NODE_RANK of $DEVINST_NUM_NODES head=$DEVINST_HEAD_HOST; exec sleep 1000000\"]\n";

/// A busybox repository of `nodes` nodes: `container` is added under
/// `[container]`, `rest` at the end (after `[cluster]`).
fn cluster_repo(env: &TestEnv, what: &str, nodes: u16, container: &str, rest: &str) -> PathBuf {
    let repo = env.repo(&unique(what));
    write(
        &repo.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{BUSYBOX}\"\n{container}{KEEP_ALIVE}\
             [cluster]\nnodes = {nodes}\n{rest}"
        ),
    );
    repo
}

/// Removes every node, the head and the private network when the test ends,
/// passed or failed (the harness knows the head alone).
pub struct Cleanup(String);

impl Cleanup {
    pub fn new(root: &Path) -> Cleanup {
        Cleanup(instance_value(root, "DEVINST_CONTAINER").expect("set up"))
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in node_containers(&self.0) {
            quiet_docker(&["rm", "-f", &name]);
        }
        quiet_docker(&["rm", "-f", &self.0]);
        quiet_docker(&["network", "rm", &self.0]);
    }
}

/// The node containers (not the head) the engine has for head `container`.
fn node_containers(container: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .unwrap();
    let prefix = format!("{container}-node-");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// `[node K] line` lines, sorted (the nodes run at once).
fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// `script` run by `sh` on node `node` (a rank, or `--all`).
fn on(env: &TestEnv, repo: &Path, node: &str, script: &str) -> crate::support::Run {
    let mut args = vec!["exec"];
    match node {
        "--all" => args.push("--all"),
        rank => args.extend(["--node", rank]),
    }
    args.extend(["--", "sh", "-c", script]);
    env.run(repo, &args)
}

/// `setup` and `start`; the cleanup to hold and the head's container.
fn up(env: &TestEnv, repo: &Path) -> (Cleanup, String) {
    env.run(repo, &["setup"]).ok();
    let cleanup = Cleanup::new(repo);
    env.run(repo, &["start"]).ok();
    let head = cleanup.0.clone();
    (cleanup, head)
}

fn status(env: &TestEnv, repo: &Path) -> Value {
    let run = env.run(repo, &["status", "--json"]).ok();
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn three_nodes_know_their_rank_count_and_addresses_and_reach_each_other() {
    let env = TestEnv::new();
    let limits = "memory = \"256m\"\ncpus = 0.5\n";
    let repo = cluster_repo(&env, "three", 3, limits, "[setup]\ncommands = []\n");
    let (_cleanup, head) = up(&env, &repo);
    let nodes = [
        head.clone(),
        format!("{head}-node-1"),
        format!("{head}-node-2"),
    ];
    assert_eq!(node_containers(&head), nodes[1..]);

    // Identity under both names, on every node at once.
    let ids = "echo $DEVINST_NODE_RANK/$DEVINST_NUM_NODES $SKYPILOT_NODE_RANK/$SKYPILOT_NUM_NODES";
    let ranks = on(&env, &repo, "--all", ids).ok();
    assert_eq!(
        sorted_lines(&ranks.stdout),
        ["[node 0] 0/3 0/3", "[node 1] 1/3 1/3", "[node 2] 2/3 2/3"]
    );

    // Addresses: what status reports is what every node is told.
    let status = status(&env, &repo);
    let listed = status["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{status}");
    let mut ips = Vec::new();
    for (rank, node) in listed.iter().enumerate() {
        assert_eq!(node["rank"], rank);
        assert_eq!(node["container"], nodes[rank].as_str());
        assert_eq!(node["state"], "running");
        ips.push(node["address"].as_str().unwrap().to_owned());
    }
    let addresses =
        "echo \"$DEVINST_NODE_IPS\"; echo \"$SKYPILOT_NODE_IPS\"; echo $DEVINST_HEAD_IP";
    let told = on(&env, &repo, "2", addresses).ok();
    let mut expected: Vec<String> = ips.iter().chain(&ips).cloned().collect();
    expected.push(ips[0].clone());
    assert_eq!(told.stdout.lines().collect::<Vec<_>>(), expected);
    // The head's shims and plain execs (through its agent) are told the same.
    let on_head = env.sh(&repo, "echo \"$DEVINST_NODE_IPS\"").ok();
    assert_eq!(on_head.stdout.lines().collect::<Vec<_>>(), ips);

    // The worktree is live on every node; a node serves it, the head fetches
    // it by address and by host name.
    write(&repo.join("shared.txt"), "from the host\n");
    let read = on(&env, &repo, "--all", "cat /app/shared.txt").ok();
    assert_eq!(
        sorted_lines(&read.stdout),
        [
            "[node 0] from the host",
            "[node 1] from the host",
            "[node 2] from the host"
        ]
    );
    on(&env, &repo, "1", "httpd -p 8000 -h /app").ok();
    for host in [ips[1].clone(), nodes[1].clone()] {
        let url = format!("http://{host}:8000/shared.txt");
        let got = env
            .run(&repo, &["exec", "--", "wget", "-q", "-O", "-", &url])
            .ok();
        assert_eq!(got.stdout, "from the host\n", "{host}");
    }
    on(&env, &repo, "2", "echo made on 2 > /app/made.txt").ok();
    assert_eq!(
        std::fs::read_to_string(repo.join("made.txt")).unwrap(),
        "made on 2\n"
    );

    // Each node keeps its own state: busybox runs as root, state at /root/.sky.
    on(&env, &repo, "1", "touch /root/.sky/mine").ok();
    assert!(repo.join(".sky-dev/nodes/1/state/mine").exists());
    assert!(!repo.join(".sky-dev/state/mine").exists());
    assert!(!repo.join(".sky-dev/nodes/2/state/mine").exists());

    // Exit codes: one node's own; every node's, the first failing one named.
    on(&env, &repo, "2", "exit 3").fails_with(3, "");
    let all = on(&env, &repo, "--all", "exit $DEVINST_NODE_RANK").fails_with(1, "node 1");
    assert!(!all.stderr.contains("node 2 "), "{all}");
    env.run(&repo, &["exec", "--node", "3", "--", "true"])
        .fails_with(125, "has no node 3: it has 3 node(s)");

    // The keep-alive knows its rank; logs and stats cover every node.
    let logs = env.run(&repo, &["logs", "--node", "1"]).ok();
    let head_host = &nodes[0];
    assert_eq!(logs.stdout.trim(), format!("rank=1 of 3 head={head_host}"));
    let stats = env.run(&repo, &["stats", "--json"]).ok();
    let stats: Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(stats["nodes"].as_array().unwrap().len(), 3, "{stats}");

    // Limits apply per node.
    for node in &nodes {
        assert_eq!(
            inspect(node, "{{.HostConfig.Memory}}"),
            "268435456",
            "{node}"
        );
        assert_eq!(
            inspect(node, "{{.HostConfig.NanoCpus}}"),
            "500000000",
            "{node}"
        );
    }
}

#[test]
fn a_cluster_stops_starts_scales_and_goes_as_one() {
    let env = TestEnv::new();
    let repo = cluster_repo(&env, "life", 3, "", "[setup]\ncommands = []\n");
    let (_cleanup, head) = up(&env, &repo);
    let running = |name: &str| inspect(name, "{{.State.Running}}") == "true";

    env.run(&repo, &["stop"]).ok();
    let all = [
        head.clone(),
        format!("{head}-node-1"),
        format!("{head}-node-2"),
    ];
    for name in &all {
        assert!(!running(name), "{name} still runs after stop");
    }
    // A command on a node of a stopped cluster brings every node up.
    let run = env
        .run(&repo, &["exec", "--node", "2", "--", "echo", "up"])
        .ok();
    assert_eq!(run.stdout, "up\n");
    for name in &all {
        assert!(running(name), "{name} is not running again");
    }

    // Fewer nodes: the count changes every node's view, so it applies with
    // --recreate, and the node beyond it goes.
    let toml = repo.join("devinst.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    write(&toml, &text.replace("nodes = 3", "nodes = 2"));
    let kept = env.run(&repo, &["start"]).ok();
    assert!(kept.stderr.contains("--recreate"), "{kept}");
    assert_eq!(
        node_containers(&head).len(),
        2,
        "nothing scales without --recreate"
    );
    env.run(&repo, &["start", "--recreate"]).ok();
    assert_eq!(node_containers(&head), [format!("{head}-node-1")]);
    let count = env
        .run(
            &repo,
            &["exec", "--all", "--", "sh", "-c", "echo $DEVINST_NUM_NODES"],
        )
        .ok();
    assert_eq!(sorted_lines(&count.stdout), ["[node 0] 2", "[node 1] 2"]);

    // `list` shows the instance once, its nodes as part of it.
    let list = env.run(&repo, &["list", "--json"]).ok();
    let list: Value = serde_json::from_str(&list.stdout).unwrap();
    let shown: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["container"].as_str())
        .filter(|c| c.starts_with(head.as_str()))
        .collect();
    assert_eq!(shown, [head.as_str()]);

    env.run(&repo, &["destroy"]).ok();
    assert!(!container_exists(&head));
    assert_eq!(node_containers(&head), Vec::<String>::new());
}

#[test]
fn setup_runs_on_every_node_with_the_addresses_when_asked() {
    let env = TestEnv::new();
    let steps = "setup = \"all\"\n[setup]\ncommands = \
        [\"echo $DEVINST_NODE_RANK $(echo \\\"$DEVINST_NODE_IPS\\\" | wc -l) >> /app/ran\"]\n";
    let repo = cluster_repo(&env, "setup", 3, "", steps);
    let (_cleanup, _) = up(&env, &repo);
    // The head first, then each node in turn, each told of three addresses.
    let ran = std::fs::read_to_string(repo.join("ran")).unwrap();
    assert_eq!(ran, "0 3\n1 3\n2 3\n");
    // Done once: a second start runs nothing.
    env.run(&repo, &["start"]).ok();
    assert_eq!(std::fs::read_to_string(repo.join("ran")).unwrap(), ran);
}

#[test]
fn gc_removes_every_node_of_a_gone_worktree() {
    let _gone = gone_worktrees_lock();
    let env = TestEnv::new();
    let repo = cluster_repo(&env, "gc", 2, "", "[setup]\ncommands = []\n");
    let (_cleanup, head) = up(&env, &repo);
    assert_eq!(node_containers(&head).len(), 1);
    std::fs::remove_dir_all(&repo).unwrap();
    env.run(&env.home, &["gc"]).ok();
    assert!(!container_exists(&head));
    assert_eq!(node_containers(&head), Vec::<String>::new());
}

#[test]
fn a_snapshot_keeps_and_brings_back_every_nodes_filesystem_and_state() {
    let env = TestEnv::new();
    let repo = cluster_repo(&env, "snap", 2, "", "[setup]\ncommands = []\n");
    let (_cleanup, head) = up(&env, &repo);
    let on_node = |script: &str| on(&env, &repo, "1", script).ok().stdout;
    on_node("echo before > /etc/marker && echo before > /root/.sky/kept");

    env.run(&repo, &["snapshot", "save", "s1"]).ok();
    on_node("echo after > /etc/marker && echo after > /root/.sky/kept");
    let listed = env.run(&repo, &["snapshot", "list"]).ok();
    assert_eq!(listed.stdout.matches("s1").count(), 1, "{listed}");

    env.run(&repo, &["snapshot", "restore", "s1"]).ok();
    assert_eq!(
        on_node("cat /etc/marker /root/.sky/kept"),
        "before\nbefore\n"
    );
    let image = inspect(&format!("{head}-node-1"), "{{.Config.Image}}");
    assert!(image.ends_with("/node-1:s1"), "{image}");

    env.run(&repo, &["snapshot", "reset"]).ok();
    assert_eq!(
        on_node("cat /etc/marker 2>/dev/null || echo none"),
        "none\n"
    );
    env.run(&repo, &["snapshot", "rm", "s1"]).ok();
    let images = Command::new("docker")
        .args(["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .unwrap();
    let images = String::from_utf8_lossy(&images.stdout);
    let name = instance_value(&repo, "DEVINST_NAME").unwrap();
    assert!(
        !images.contains(&format!("devinst-snapshot/{name}")),
        "{images}"
    );
}

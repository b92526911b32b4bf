//! Host ports are never handed out twice: not after `destroy`, not when the
//! user asks for a new one, not when another program or container took the
//! port, not across two data directories on one engine; and what `start` and
//! `status` report is what the container publishes.
//!
//! Host ports stay within 48400-48499.

use crate::support::*;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `po-<what>-<pid>`: unique on this engine.
fn unique(what: &str) -> String {
    format!("po-{what}-{}", std::process::id())
}

fn ports_repo(env: &TestEnv, what: &str, first: u16, last: u16) -> PathBuf {
    env.busybox_repo(
        &unique(what),
        &format!("[ports]\nhost_range = [{first}, {last}]\n"),
    )
}

fn port_of(repo: &Path) -> u16 {
    instance_value(repo, "DEVINST_PORT")
        .unwrap()
        .parse()
        .unwrap()
}

/// The host ports the engine says the container is made to publish.
fn bound_ports(container: &str) -> String {
    inspect(
        container,
        "{{range $p, $b := .HostConfig.PortBindings}}{{range $b}}{{.HostPort}} {{end}}{{end}}",
    )
}

/// The port the registry of `cmd`'s data directory holds for `name`.
fn registry_port(cmd: &Command, name: &str) -> Option<u16> {
    let dir = cmd
        .get_envs()
        .find(|(k, _)| *k == "DEVINST_DATA_DIR")
        .and_then(|(_, v)| v)
        .map(PathBuf::from)
        .unwrap();
    let text = std::fs::read_to_string(dir.join("registry.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["instances"][name]["port"].as_u64().map(|p| p as u16)
}

#[test]
fn a_container_made_again_after_destroy_holds_its_port_first() {
    let env = TestEnv::new();
    let (first, last) = (48400, 48402);
    let a = ports_repo(&env, "after-destroy-a", first, last);
    let b = ports_repo(&env, "after-destroy-b", first, last);
    env.run(&a, &["setup"]).ok();
    env.run(&a, &["start"]).ok();
    let a_name = instance_value(&a, "DEVINST_NAME").unwrap();
    assert_eq!(port_of(&a), first);
    env.run(&a, &["destroy", "--yes"]).ok();

    // The released port goes to another worktree; `a` must not take it back.
    env.run(&b, &["setup"]).ok();
    assert_eq!(port_of(&b), first);
    let b_name = instance_value(&b, "DEVINST_NAME").unwrap();
    let run = env.run(&a, &["start"]).fails_with(
        1,
        &format!("host port {first} of instance `{a_name}` is now held by instance `{b_name}`"),
    );
    assert!(run.stderr.contains("hint: run `devinst setup`"), "{run}");
    let a_container = instance_value(&a, "DEVINST_CONTAINER").unwrap();
    assert!(!container_exists(&a_container), "{run}");

    // `setup` moves it, and the shim's own start holds the new port.
    let run = env.run(&a, &["setup"]).ok();
    assert!(run.stderr.contains("moves to port"), "{run}");
    let moved = port_of(&a);
    assert_ne!(moved, first);
    env.run(&a, &["destroy", "--yes"]).ok();
    assert_eq!(registry_port(&env.cmd(&a), &a_name), None);
    env.sh(&a, "true").ok();
    assert_eq!(registry_port(&env.cmd(&a), &a_name), Some(moved));
    env.run(&b, &["start"]).ok();
}

#[test]
fn deleting_the_port_file_gives_a_new_port_and_start_follows_it() {
    let env = TestEnv::new();
    let repo = ports_repo(&env, "new-port", 48410, 48412);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let old = port_of(&repo);
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    std::fs::write(repo.join(".sky-dev/state/kept"), "yes").unwrap();

    std::fs::remove_file(repo.join(".sky-dev/.port")).unwrap();
    let run = env.run(&repo, &["setup"]).ok();
    let new = port_of(&repo);
    assert_ne!(new, old, "{run}");
    assert!(
        run.stderr.contains(&format!("moves to port {new}")),
        "{run}"
    );

    // Until `start`, the container still publishes the old port: `status`
    // says what it publishes, and that `start` fixes it.
    let run = env.run(&repo, &["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let ports = status["ports"].to_string();
    assert!(ports.contains(&format!(":{old} ->")), "{run}");
    assert!(!ports.contains(&format!(":{new} ")), "{run}");
    assert!(run.stderr.contains("does not publish"), "{run}");

    let run = env.run(&repo, &["start"]).ok();
    assert_eq!(run.stdout, format!("127.0.0.1:{new} -> 46580\n"), "{run}");
    assert_eq!(bound_ports(&container), format!("{new}"));
    assert_eq!(env.sh(&repo, "cat /root/.sky/kept").ok().stdout, "yes");
    let run = env.run(&repo, &["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        status["ports"].to_string().contains(&format!(":{new} ->")),
        "{run}"
    );
}

#[test]
fn a_port_another_program_or_container_holds_is_not_kept() {
    let env = TestEnv::new();
    let first = 48420;
    let repo = ports_repo(&env, "taken", first, first + 2);
    env.run(&repo, &["setup"]).ok();
    assert_eq!(port_of(&repo), first);

    let _listener = std::net::TcpListener::bind(("0.0.0.0", first)).unwrap();
    let run = env.run(&repo, &["setup"]).ok();
    assert_eq!(port_of(&repo), first + 1, "{run}");
    assert!(run.stderr.contains("another program"), "{run}");

    let publish = format!("127.0.0.1:{}:80", first + 1);
    let foreign = Foreign::new(&[
        "run",
        "-d",
        "--name",
        &unique("taken-foreign"),
        "-p",
        &publish,
        BUSYBOX,
        "sleep",
        "300",
    ]);
    let run = env.run(&repo, &["setup"]).ok();
    assert_eq!(port_of(&repo), first + 2, "{run}");
    assert!(run.stderr.contains(&foreign.0), "{run}");
}

#[test]
fn two_data_directories_on_one_engine_never_share_a_port() {
    let env = TestEnv::new();
    let other_data = env.tmp.path().join("other-data");
    let other_home = env.tmp.path().join("other-home");
    std::fs::create_dir_all(&other_home).unwrap();
    let other = |dir: &Path, args: &[&str]| {
        let mut cmd = env.cmd(dir);
        cmd.env("DEVINST_DATA_DIR", &other_data)
            .env("HOME", &other_home)
            .args(args);
        env.run_cmd(dir, &mut cmd)
    };
    let first = 48430;
    let a = ports_repo(&env, "data-a", first, first + 2);
    let b = ports_repo(&env, "data-b", first, first + 2);
    env.run(&a, &["setup"]).ok();
    env.run(&a, &["start"]).ok();
    env.run(&a, &["stop"]).ok();

    // The first's container is stopped, and only the engine knows its port.
    other(&b, &["setup"]).ok();
    assert_eq!(port_of(&b), first + 1);
    other(&b, &["start"]).ok();
    env.run(&a, &["start"]).ok();

    // Both set up before either container exists: the second `start`
    // refuses and says why, and its `setup` moves it.
    let c = ports_repo(&env, "data-c", first + 2, first + 2);
    let d = ports_repo(&env, "data-d", first + 2, first + 2);
    env.run(&c, &["setup"]).ok();
    other(&d, &["setup"]).ok();
    env.run(&c, &["start"]).ok();
    let c_container = instance_value(&c, "DEVINST_CONTAINER").unwrap();
    other(&d, &["start"]).fails_with(1, &format!("is now held by container `{c_container}`"));
    other(&d, &["setup"]).fails_with(1, "no free host port");
}

#[test]
fn setup_fails_clearly_when_the_engine_never_answers() {
    let env = TestEnv::new();
    let repo = ports_repo(&env, "hung", 48440, 48449);
    // An engine that takes connections and never answers them.
    let socket = env.tmp.path().join("hung.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let mut cmd = env.cmd(&repo);
    cmd.arg("setup")
        .env("DOCKER_HOST", format!("unix://{}", socket.display()));
    let run = env.run_cmd(&repo, &mut cmd);
    let run = run.fails_with(1, "did not answer within");
    assert!(run.stderr.contains("waiting up to"), "{run}");
    assert!(run.stderr.contains("hint: check the engine"), "{run}");
    assert!(!repo.join(".sky-dev/.instance").exists(), "{run}");

    // An engine that is not there at all holds nothing: setup goes ahead.
    let mut cmd = env.cmd(&repo);
    cmd.arg("setup")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    env.run_cmd(&repo, &mut cmd).ok();
}

/// A named port of `[ports.extra]`, as `.instance` records it.
fn named_port(repo: &Path, name: &str) -> u16 {
    let key = format!("DEVINST_PORT_{}", name.to_uppercase().replace('-', "_"));
    instance_value(repo, &key)
        .unwrap_or_else(|| panic!("no {key} in .instance"))
        .parse()
        .unwrap()
}

/// Serves `text` over HTTP inside the instance on `addr` (`IP:PORT`).
fn serve_inside(env: &TestEnv, repo: &Path, addr: &str, text: &str) {
    let dir = format!("/tmp/www-{}", addr.replace([':', '.'], "-"));
    let script =
        format!("mkdir -p {dir} && echo {text} > {dir}/index.html && httpd -p {addr} -h {dir}");
    env.sh(repo, &script).ok();
}

/// GETs `/` from `127.0.0.1:port`, waiting while the server comes up; the
/// body.
fn http_body(port: u16) -> String {
    use std::io::{Read, Write};
    crate::poll::wait_until(&format!("an HTTP answer on 127.0.0.1:{port}"), || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .ok()?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.").then(|| body.to_owned())
    })
}

/// Runs `script` with bash on the host, in `dir`.
fn bash_on_host(dir: &Path, script: &str) -> Run {
    let mut cmd = Command::new("bash");
    cmd.current_dir(dir).args(["-c", script]);
    Run::from(output_within(&mut cmd, None))
}

#[test]
fn named_ports_are_published_kept_across_setup_and_released_on_destroy() {
    let env = TestEnv::new();
    let toml = "[ports]\nhost_range = [48300, 48309]\n[ports.extra]\nweb = 3000\ndebug-ui = 5678\n";
    let repo = env.busybox_repo(&unique("named"), toml);
    let run = env.run(&repo, &["setup"]).ok();
    let (main, web, debug) = (
        port_of(&repo),
        named_port(&repo, "web"),
        named_port(&repo, "debug-ui"),
    );
    let mut mine = vec![main, web, debug];
    mine.sort();
    mine.dedup();
    assert_eq!(mine.len(), 3, "{run}");
    assert!(mine.iter().all(|p| (48300..=48309).contains(p)), "{mine:?}");
    assert!(
        run.stderr
            .contains(&format!("port `web`: 127.0.0.1:{web} -> 3000")),
        "{run}"
    );

    let run = env.run(&repo, &["start"]).ok();
    assert_eq!(
        run.stdout,
        format!(
            "127.0.0.1:{main} -> 46580\n127.0.0.1:{debug} -> 5678 (debug-ui)\n\
             127.0.0.1:{web} -> 3000 (web)\n"
        ),
        "{run}"
    );
    // A server bound to every address and one bound to loopback inside:
    // each is reached at its own host port.
    serve_inside(&env, &repo, "0.0.0.0:5678", "debug-ok");
    serve_inside(&env, &repo, "127.0.0.1:3000", "web-ok");
    assert_eq!(http_body(debug), "debug-ok\n");
    assert_eq!(http_body(web), "web-ok\n");

    let run = env.run(&repo, &["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        status["extra_ports"],
        serde_json::json!({"debug-ui": debug, "web": web}),
        "{run}"
    );
    let ports = status["ports"].to_string();
    assert!(
        ports.contains(&format!("127.0.0.1:{web} -> 3000 (web)"))
            && ports.contains(&format!("127.0.0.1:{main} -> 46580\"")),
        "{run}"
    );
    let list = env.run(&repo, &["list"]).ok();
    assert!(
        list.stdout
            .contains(&format!("{main} debug-ui={debug} web={web}")),
        "{list}"
    );
    let activate = bash_on_host(
        &repo,
        ". .sky-dev/bin/activate && echo \"$DEVINST_PORT_WEB $DEVINST_PORT_DEBUG_UI\"",
    )
    .ok();
    assert_eq!(activate.stdout, format!("{web} {debug}\n"));

    // `doctor` counts the named ports as used, and by whom.
    let doctor = env.run(&repo, &["doctor"]);
    let row = doctor
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("ports"))
        .unwrap_or_else(|| panic!("no ports check\n{doctor}"));
    for port in [main, web, debug] {
        assert!(row.contains(&format!("{port} instance `")), "{row}");
    }

    // `setup` again keeps every port; a second instance gets none of them.
    env.run(&repo, &["setup"]).ok();
    assert_eq!((port_of(&repo), named_port(&repo, "web")), (main, web));
    assert_eq!(named_port(&repo, "debug-ui"), debug);
    let other = env.busybox_repo(&unique("named-other"), toml);
    env.run(&other, &["setup"]).ok();
    let theirs = [
        port_of(&other),
        named_port(&other, "web"),
        named_port(&other, "debug-ui"),
    ];
    assert!(
        theirs.iter().all(|p| !mine.contains(p)),
        "{theirs:?} {mine:?}"
    );

    // A name added after `setup` waits for it, then `start` publishes it.
    write(
        &repo.join("devinst.toml"),
        &std::fs::read_to_string(repo.join("devinst.toml"))
            .unwrap()
            .replace("web = 3000\n", "web = 3000\nadmin = 8000\n"),
    );
    let run = env.run(&repo, &["start"]).ok();
    assert!(
        run.stderr.contains("port `admin`") && run.stderr.contains("no host port yet"),
        "{run}"
    );
    env.run(&repo, &["setup"]).ok();
    let admin = named_port(&repo, "admin");
    let run = env.run(&repo, &["start"]).ok();
    assert!(run.stderr.contains("recreating it"), "{run}");
    assert!(
        run.stdout
            .contains(&format!("127.0.0.1:{admin} -> 8000 (admin)")),
        "{run}"
    );
    serve_inside(&env, &repo, "127.0.0.1:8000", "admin-ok");
    assert_eq!(http_body(admin), "admin-ok\n");

    // `destroy` gives every one of them up, and says so.
    let run = env.run(&repo, &["destroy", "--yes"]).ok();
    assert!(
        run.stderr.contains(&format!("released port {web} (`web`)"))
            && run
                .stderr
                .contains(&format!("released port {admin} (`admin`)")),
        "{run}"
    );
    let text = std::fs::read_to_string(data_dir().join("registry.json")).unwrap();
    let registry: serde_json::Value = serde_json::from_str(&text).unwrap();
    let held: Vec<u64> = registry["instances"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|entry| {
            let named = ["extra", "services"]
                .into_iter()
                .filter_map(|key| entry[key].as_object())
                .flat_map(|ports| ports.values().filter_map(|p| p.as_u64()));
            entry["port"]
                .as_u64()
                .into_iter()
                .chain(named)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(held.contains(&(theirs[1] as u64)), "{text}");
    for port in [main, web, debug, admin] {
        assert!(!held.contains(&(port as u64)), "{port} still held: {text}");
    }
}

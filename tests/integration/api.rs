//! `devinst serve`: the HTTP API against the real engine, driven with curl
//! as a client would, beside the CLI on the same instances.

use crate::support::{data_dir, instance_value, TestEnv};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Ports of this module's own instances.
const RANGE: &str = "[ports]\nhost_range = [47900, 47939]\n";

/// A running `devinst serve` on a free loopback port, stopped when dropped.
struct Server {
    child: Child,
    url: String,
    token: String,
}

impl Server {
    fn start(env: &TestEnv) -> Server {
        Server::start_with(env, data_dir())
    }

    /// With a data directory (its registry and token) of its own.
    fn start_with(env: &TestEnv, data: &Path) -> Server {
        let mut cmd = env.cmd(&env.home);
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("DEVINST_DATA_DIR", data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let mut first = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut first).unwrap();
        let url = first.trim().trim_end_matches('/').to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "serve printed {first:?}"
        );
        let token = std::fs::read_to_string(data.join("api-token"))
            .unwrap()
            .trim()
            .to_owned();
        Server { child, url, token }
    }

    /// `method path` with the token; the status and the body.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let auth = format!("Authorization: Bearer {}", self.token);
        self.raw(method, path, body, &["-H", &auth])
    }

    fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text) = self.call(method, path, body.as_deref());
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path} answered {status} with no JSON: {text}"));
        (status, value)
    }

    fn raw(&self, method: &str, path: &str, body: Option<&str>, extra: &[&str]) -> (u16, String) {
        let mut curl = Command::new("curl");
        curl.args([
            "-s",
            "-S",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--max-time",
            "300",
        ])
        .args(extra)
        .arg(format!("{}{path}", self.url));
        if let Some(body) = body {
            curl.args([
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ]);
        }
        let out = curl.output().unwrap();
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.parse().unwrap(), body.to_owned())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
    }
}

fn busybox_repo(env: &TestEnv, name: &str) -> PathBuf {
    env.busybox_repo(&format!("{name}-{}", std::process::id()), RANGE)
}

fn error_of(value: &Value) -> &str {
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {value}"))
}

#[test]
fn health_is_open_and_everything_else_needs_the_token() {
    let env = TestEnv::new();
    let server = Server::start(&env);
    let (status, body) = server.raw("GET", "/health", None, &[]);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        "ok"
    );
    for extra in [
        vec![],
        vec!["-H", "Authorization: Bearer wrong"],
        vec!["-H", "Authorization: Basic eDp5"],
    ] {
        let (status, body) = server.raw("GET", "/v1/instances", None, &extra);
        assert_eq!(status, 401, "{extra:?}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["hint"].as_str().unwrap().contains("api-token"),
            "{body}"
        );
    }
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(data_dir().join("api-token")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    // The document describes what is served.
    let (status, doc) = server.raw("GET", "/openapi.json", None, &[]);
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/instances/{name}/snapshots/{snapshot}/restore"].is_object());
    // The dashboard is one page from the binary.
    let (status, page) = server.raw("GET", "/", None, &[]);
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
}

#[test]
fn an_instance_lives_its_whole_life_over_http_beside_the_cli() {
    let env = TestEnv::new();
    let server = Server::start(&env);
    let repo = busybox_repo(&env, "api-life");
    let worktree = repo.to_str().unwrap();

    let (status, made) = server.json(
        "POST",
        "/v1/instances",
        Some(json!({ "worktree": worktree })),
    );
    assert_eq!(status, 201, "{made}");
    let name = made["name"].as_str().unwrap().to_owned();
    assert_eq!(made["state"], "missing");
    env.track(&repo);
    assert_eq!(instance_value(&repo, "DEVINST_NAME").unwrap(), name);
    let at = |tail: &str| format!("/v1/instances/{name}{tail}");

    let (status, started) = server.json("POST", &at("/start"), None);
    assert_eq!(
        (status, started["state"].as_str()),
        (200, Some("running")),
        "{started}"
    );
    // The CLI sees the same instance at the same time.
    let cli = env.run(&repo, &["status", "--json"]).ok();
    let cli: Value = serde_json::from_str(&cli.stdout).unwrap();
    assert_eq!(cli["state"], "running");
    assert_eq!(cli["port"], started["port"]);
    env.sh(&repo, "echo from-the-cli").ok();

    let (status, got) = server.json("GET", &at(""), None);
    assert_eq!((status, &got["port"]), (200, &started["port"]));
    let (status, listed) = server.json("GET", "/v1/instances", None);
    assert_eq!(status, 200);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == name.as_str()));
    let (status, stats) = server.json("GET", &at("/stats"), None);
    assert_eq!(status, 200, "{stats}");
    assert!(stats["memory_usage"].as_u64().unwrap() > 0);
    let (status, _) = server.call("GET", &at("/logs?tail=10"), None);
    assert_eq!(status, 200);

    let (status, saved) = server.json("POST", &at("/snapshots"), Some(json!({ "name": "s1" })));
    assert_eq!((status, &saved["name"]), (201, &json!("s1")), "{saved}");
    let (status, again) = server.json("POST", &at("/snapshots"), Some(json!({ "name": "s1" })));
    assert_eq!(status, 409, "{again}");
    let (status, snapshots) = server.json("GET", &at("/snapshots"), None);
    assert_eq!(status, 200);
    assert_eq!(snapshots[0]["name"], "s1");
    let (status, restored) = server.json("POST", &at("/snapshots/s1/restore"), None);
    assert_eq!(
        (status, restored["state"].as_str()),
        (200, Some("running")),
        "{restored}"
    );
    let (status, missing) = server.json("POST", &at("/snapshots/nope/restore"), None);
    assert_eq!(status, 404, "{missing}");

    let (status, stopped) = server.json("POST", &at("/stop"), None);
    assert_eq!(
        (status, stopped["state"].as_str()),
        (200, Some("exited")),
        "{stopped}"
    );
    let (status, not_running) = server.json("GET", &at("/stats"), None);
    assert_eq!(status, 409, "{not_running}");
    assert!(error_of(&not_running).contains("is not running"));

    let (status, deleted) = server.json("DELETE", &at("?purge=true"), None);
    assert_eq!(
        (status, &deleted["purged"]),
        (200, &json!(true)),
        "{deleted}"
    );
    assert!(!repo.join(".sky-dev").exists());
    let (status, gone) = server.json("GET", &at(""), None);
    assert_eq!(status, 404, "{gone}");
}

#[test]
fn concurrent_creates_get_distinct_ports() {
    let env = TestEnv::new();
    let server = Server::start(&env);
    let repos: Vec<PathBuf> = (0..4)
        .map(|i| busybox_repo(&env, &format!("api-many{i}")))
        .collect();
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let calls: Vec<_> = repos
            .iter()
            .map(|repo| {
                let server = &server;
                let body = json!({ "worktree": repo.to_str().unwrap() });
                scope.spawn(move || server.json("POST", "/v1/instances", Some(body)))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut ports: Vec<u64> = answers
        .iter()
        .map(|(status, made)| {
            assert_eq!(*status, 201, "{made}");
            made["port"].as_u64().unwrap()
        })
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 4, "{answers:?}");
    for answer in &answers {
        let name = answer.1["name"].as_str().unwrap();
        let (status, _) = server.json("DELETE", &format!("/v1/instances/{name}?purge=true"), None);
        assert_eq!(status, 200);
    }
}

#[test]
fn bad_input_of_every_kind_gets_a_json_error_and_the_server_stays_up() {
    let env = TestEnv::new();
    let server = Server::start(&env);
    let repo = busybox_repo(&env, "api-bad");
    let worktree = repo.to_str().unwrap();
    let cases: Vec<(&str, String, Option<String>, u16)> = vec![
        (
            "POST",
            "/v1/instances".into(),
            Some("{not json".into()),
            400,
        ),
        ("POST", "/v1/instances".into(), Some("[1, 2]".into()), 422),
        (
            "POST",
            "/v1/instances".into(),
            Some(r#"{"worktree": 3}"#.into()),
            422,
        ),
        (
            "POST",
            "/v1/instances".into(),
            Some(r#"{"worktree": "/x", "extra": 1}"#.into()),
            422,
        ),
        (
            "POST",
            "/v1/instances".into(),
            Some(r#"{"worktree": "relative/dir"}"#.into()),
            422,
        ),
        (
            "POST",
            "/v1/instances".into(),
            Some(r#"{"worktree": "/no/such/dir"}"#.into()),
            422,
        ),
        (
            "POST",
            "/v1/instances".into(),
            Some(json!({"worktree": worktree, "name": "../escape"}).to_string()),
            422,
        ),
        (
            "POST",
            "/v1/instances".into(),
            Some(json!({"worktree": worktree, "name": "a b; rm -rf /"}).to_string()),
            422,
        ),
        (
            "POST",
            "/v1/instances".into(),
            Some(json!({"worktree": worktree, "name": "x".repeat(300)}).to_string()),
            422,
        ),
        (
            "POST",
            "/v1/instances".into(),
            Some(json!({"worktree": worktree, "tier": "no-such-tier"}).to_string()),
            422,
        ),
        ("GET", "/v1/instances/no-such-instance".into(), None, 404),
        ("GET", "/v1/instances/..%2F..%2Fetc".into(), None, 404),
        (
            "POST",
            "/v1/instances/no-such-instance/start".into(),
            None,
            404,
        ),
        (
            "DELETE",
            "/v1/instances/no-such-instance?purge=maybe".into(),
            None,
            400,
        ),
        (
            "GET",
            "/v1/instances/no-such-instance/logs?tail=-1".into(),
            None,
            400,
        ),
        (
            "POST",
            "/v1/instances/x/snapshots/..%2Fstate/restore".into(),
            None,
            422,
        ),
        ("GET", "/v2/anything".into(), None, 404),
    ];
    for (method, path, body, expected) in cases {
        let (status, text) = server.call(method, &path, body.as_deref());
        assert_eq!(status, expected, "{method} {path} {body:?}: {text}");
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
        assert!(!error_of(&value).is_empty());
    }
    assert!(!repo.join(".sky-dev").exists(), "nothing was set up");
    assert_eq!(server.raw("GET", "/health", None, &[]).0, 200);
}

/// The path of a tool `scripts/test-env.sh` puts in `target/test-tools/`.
fn test_tool(rel: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-tools")
        .join(rel);
    assert!(
        path.exists(),
        "`{}` is missing: run `bash scripts/test-env.sh`",
        path.display()
    );
    path
}

#[test]
fn a_schema_fuzzer_finds_no_server_error_and_no_answer_off_the_document() {
    let env = TestEnv::new();
    // A registry of its own: the fuzzer's names never meet a real instance.
    let data = env.tmp.path().join("fuzz-data");
    let server = Server::start_with(&env, &data);
    // Setting up worktrees the fuzzer names would write into whatever
    // directories exist (`/`); `bad_input_of_every_kind...` covers it.
    let out = Command::new(test_tool("venv/bin/schemathesis"))
        .args(["run", &format!("{}/openapi.json", server.url)])
        .args(["-H", &format!("Authorization: Bearer {}", server.token)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--exclude-name",
            "POST /v1/instances",
            "--max-examples",
            "30",
            "--seed",
            "20261206",
            "--no-color",
        ])
        .current_dir(env.tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" passed"), "{text}");
    assert_eq!(server.raw("GET", "/health", None, &[]).0, 200);
}

#[test]
fn the_dashboard_lists_an_instance_and_stops_and_starts_it_in_a_real_browser() {
    let env = TestEnv::new();
    let server = Server::start(&env);
    let repo = busybox_repo(&env, "api-page");
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    let name = instance_value(&repo, "DEVINST_NAME").unwrap();
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `bash scripts/test-env.sh`"
    );
    let out = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.mjs"))
        .args([&server.url, &server.token, &name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let state = env.run(&repo, &["status", "--json"]).ok();
    assert!(state.stdout.contains("\"running\""), "{state}");
}

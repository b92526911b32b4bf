//! Snapshots that travel: `snapshot push` and `pull` through a real
//! S3-protocol server (moto, which checks credentials here) and a directory.

use crate::support::{write, Run, TestEnv};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports of this module's own instances.
const RANGE: &str = "[ports]\nhost_range = [47940, 47969]\n";

fn venv(tool: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-tools/venv/bin")
        .join(tool);
    assert!(
        path.exists(),
        "`{}` is missing: run `bash scripts/test-env.sh`",
        path.display()
    );
    path
}

/// A moto S3 server on a free loopback port that enforces credentials, with
/// a bucket and a user whose keys may use it. Stopped when dropped.
struct S3 {
    child: Child,
    endpoint: String,
    key: String,
    secret: String,
}

/// Creates the user, its keys and policy, and the bucket: the first four
/// requests, after which moto checks every request's credentials.
const SETUP: &str = r#"
import boto3, json, sys
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="dev")
key = iam.create_access_key(UserName="dev")["AccessKey"]
iam.put_user_policy(UserName="dev", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
boto3.client("s3", **kw).create_bucket(Bucket="snaps")
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

impl S3 {
    fn start(env: &TestEnv) -> S3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(venv("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .current_dir(env.tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        crate::poll::wait_until("moto to answer", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        let out = Command::new(venv("python"))
            .args(["-c", SETUP, &endpoint])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let keys = String::from_utf8(out.stdout).unwrap();
        let (key, secret) = keys.trim().split_once(' ').unwrap();
        S3 {
            child,
            endpoint,
            key: key.to_owned(),
            secret: secret.to_owned(),
        }
    }

    /// devinst in `dir` with this server's endpoint and `keys`.
    fn run_with(&self, env: &TestEnv, dir: &Path, args: &[&str], keys: (&str, &str)) -> Run {
        let mut cmd = env.cmd(dir);
        cmd.args(args)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", keys.0)
            .env("AWS_SECRET_ACCESS_KEY", keys.1)
            .env("AWS_REGION", "us-east-1");
        env.run_cmd(dir, &mut cmd)
    }

    fn run(&self, env: &TestEnv, dir: &Path, args: &[&str]) -> Run {
        self.run_with(env, dir, args, (&self.key, &self.secret))
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A started busybox instance named `what-<pid>`.
fn instance(env: &TestEnv, what: &str) -> PathBuf {
    let repo = env.busybox_repo(&format!("{what}-{}", std::process::id()), RANGE);
    env.run(&repo, &["setup"]).ok();
    env.run(&repo, &["start"]).ok();
    repo
}

/// Removes a snapshot's images here, so a pull must bring them.
fn forget(env: &TestEnv, repo: &Path, snapshot: &str) {
    env.run(repo, &["snapshot", "rm", snapshot]).ok();
}

#[test]
fn a_snapshot_pushed_to_s3_is_pulled_into_another_worktree_and_restored_there() {
    let env = TestEnv::new();
    let s3 = S3::start(&env);
    let a = instance(&env, "push-a");
    let b = instance(&env, "push-b");
    env.sh(
        &a,
        "echo changed > /etc/marker && echo kept > /root/.sky/state-file",
    )
    .ok();
    let snap = format!("s{}", std::process::id());
    env.run(&a, &["snapshot", "save", &snap]).ok();

    let pushed = s3
        .run(
            &env,
            &a,
            &["snapshot", "push", &snap, "--to", "s3://snaps/team"],
        )
        .ok();
    assert!(
        pushed.stderr.contains("uploading node 0's filesystem"),
        "{pushed}"
    );
    // Content-addressed: the second push uploads nothing.
    let again = s3
        .run(
            &env,
            &a,
            &["snapshot", "push", &snap, "--to", "s3://snaps/team"],
        )
        .ok();
    assert!(!again.stderr.contains("uploading"), "{again}");
    assert!(again.stderr.contains("already"), "{again}");

    forget(&env, &a, &snap);
    let pulled = s3
        .run(
            &env,
            &b,
            &["snapshot", "pull", &snap, "--from", "s3://snaps/team"],
        )
        .ok();
    assert!(pulled.stderr.contains("downloading"), "{pulled}");
    let listed = env.run(&b, &["snapshot", "list", "--json"]).ok();
    assert!(listed.stdout.contains(&format!("\"{snap}\"")), "{listed}");
    env.run(&b, &["snapshot", "restore", &snap]).ok();
    let inside = env.sh(&b, "cat /etc/marker /root/.sky/state-file").ok();
    assert_eq!(inside.stdout, "changed\nkept\n");
    // A second pull of the same name is refused; the local one is untouched.
    s3.run(
        &env,
        &b,
        &["snapshot", "pull", &snap, "--from", "s3://snaps/team"],
    )
    .fails_with(1, "has a snapshot");
    env.run(&b, &["snapshot", "reset"]).ok();
    forget(&env, &b, &snap);
}

#[test]
fn a_wrong_bucket_wrong_keys_or_no_server_fail_clearly_and_list_nothing() {
    let env = TestEnv::new();
    let s3 = S3::start(&env);
    let a = instance(&env, "push-bad");
    let snap = format!("b{}", std::process::id());
    env.run(&a, &["snapshot", "save", &snap]).ok();
    s3.run(
        &env,
        &a,
        &["snapshot", "push", &snap, "--to", "s3://no-such-bucket/x"],
    )
    .fails_with(1, "bucket does not exist");
    s3.run_with(
        &env,
        &a,
        &["snapshot", "push", &snap, "--to", "s3://snaps/x"],
        (&s3.key, "wrong"),
    )
    .fails_with(1, "refused the credentials");
    let mut cmd = env.cmd(&a);
    cmd.args(["snapshot", "push", &snap, "--to", "s3://snaps/x"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", &s3.key)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret);
    env.run_cmd(&a, &mut cmd).fails_with(1, "does not answer");
    // Nothing of the failed pushes is listed in the store.
    forget(&env, &a, &snap);
    s3.run(
        &env,
        &a,
        &["snapshot", "pull", &snap, "--from", "s3://snaps/x"],
    )
    .fails_with(1, "no snapshot");
}

#[test]
fn a_push_cut_short_leaves_nothing_listed_and_a_directory_store_round_trips() {
    let env = TestEnv::new();
    let a = instance(&env, "push-dir");
    let b = instance(&env, "pull-dir");
    // Big enough that the push is still running when it is killed.
    env.sh(
        &a,
        "head -c 300000000 /dev/urandom > /big && echo dir > /etc/marker",
    )
    .ok();
    let snap = format!("d{}", std::process::id());
    env.run(&a, &["snapshot", "save", &snap]).ok();
    let store = env.tmp.path().join("store");

    let mut push = env
        .cmd(&a)
        .args(["snapshot", "push", &snap, "--to"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !store.join("blobs").exists() && push.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the push never began");
        std::thread::sleep(Duration::from_millis(20));
    }
    push.kill().unwrap();
    push.wait().unwrap();
    assert!(
        !store.join(format!("snapshots/{snap}.json")).exists(),
        "a manifest of a push cut short"
    );
    let store_text = store.to_str().unwrap();
    env.run(&b, &["snapshot", "pull", &snap, "--from", store_text])
        .fails_with(1, "no snapshot");

    // Run again, the push completes; `file://` names the same store.
    let url = format!("file://{}", store.display());
    env.run(&a, &["snapshot", "push", &snap, "--to", &url]).ok();
    forget(&env, &a, &snap);
    env.run(&b, &["snapshot", "pull", &snap, "--from", store_text])
        .ok();
    env.run(&b, &["snapshot", "restore", &snap]).ok();
    assert_eq!(env.sh(&b, "cat /etc/marker").ok().stdout, "dir\n");
    env.run(&b, &["snapshot", "reset"]).ok();
    forget(&env, &b, &snap);
}

#[test]
fn the_recipes_store_is_used_only_with_consent_and_the_users_beats_it() {
    let env = TestEnv::new();
    let a = instance(&env, "push-consent");
    let snap = format!("c{}", std::process::id());
    env.run(&a, &["snapshot", "save", &snap]).ok();
    let theirs = env.tmp.path().join("theirs");
    let toml = a.join("devinst.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    write(
        &toml,
        &format!("{text}[snapshots]\nstore = \"{}\"\n", theirs.display()),
    );
    env.run(&a, &["snapshot", "push", &snap])
        .fails_with(1, "[snapshots] store");
    assert!(!theirs.exists(), "nothing went to the recipe's store");
    let mine = env.tmp.path().join("mine");
    env.user_config(&format!("[snapshots]\nstore = \"{}\"\n", mine.display()));
    env.run(&a, &["snapshot", "push", &snap]).ok();
    assert!(mine.join(format!("snapshots/{snap}.json")).exists());
    assert!(!theirs.exists());
    forget(&env, &a, &snap);
}

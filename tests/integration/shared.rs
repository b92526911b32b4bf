//! Shared hosts and data: several users (data directories) on one engine,
//! worktrees devinst cannot see, service data, interrupted work and closed
//! pipes never cost anyone their data.
//!
//! Instance names carry the test process id: container names are shared by
//! everyone using the engine. Host ports stay within 47800-47899.

use crate::support::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `sh-<what>-<pid>`: unique on this engine.
fn unique(what: &str) -> String {
    format!("sh-{what}-{}", std::process::id())
}

/// A busybox repository at `tmp/<rel>` (its last part made unique) with
/// ports in `range` and `extra` appended to its recipe.
fn shared_repo(env: &TestEnv, rel: &str, range: [u16; 2], extra: &str) -> PathBuf {
    let (parent, what) = rel.rsplit_once('/').unwrap_or(("", rel));
    let rel = Path::new(parent).join(unique(what));
    let dir = env.repo(rel.to_str().unwrap());
    write(
        &dir.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{BUSYBOX}\"\n[setup]\ncommands = []\n\
             [ports]\nhost_range = [{}, {}]\n{extra}",
            range[0], range[1]
        ),
    );
    dir
}

/// A data directory of its own at `tmp/<name>`: another user of the engine.
fn data_dir(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.tmp.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// devinst run in `dir` with the data directory `data`.
fn run_in(env: &TestEnv, dir: &Path, data: &Path, args: &[&str]) -> Run {
    env.run_cmd(dir, env.cmd(dir).args(args).env("DEVINST_DATA_DIR", data))
}

/// An ordinary user (no passwd entry needed) in the engine's socket group,
/// with a HOME and a data directory of its own, as ENGINE.md describes.
struct User {
    uid: u32,
    home: PathBuf,
    data: PathBuf,
    group: u32,
}

impl User {
    fn new(env: &TestEnv, uid: u32) -> User {
        use std::os::unix::fs::MetadataExt;
        // The temp dir is 0700: the user must be able to walk into it.
        std::fs::set_permissions(env.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = std::env::var("DOCKER_HOST")
            .ok()
            .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
        let meta = std::fs::metadata(&socket).unwrap();
        assert!(
            meta.mode() & 0o060 == 0o060,
            "the engine's socket `{}` must be usable by its group for this test",
            socket.display()
        );
        let user = User {
            uid,
            home: env.tmp.path().join(format!("home-{uid}")),
            data: env.tmp.path().join(format!("data-{uid}")),
            group: meta.gid(),
        };
        for dir in [&user.home, &user.data] {
            std::fs::create_dir_all(dir).unwrap();
            user.give(dir);
        }
        user
    }

    /// Makes `path` and everything below it the user's.
    fn give(&self, path: &Path) {
        let id = self.uid.to_string();
        let out = Command::new("chown")
            .args(["-R", &format!("{id}:{id}")])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }

    /// devinst in `dir`, as this user.
    fn run(&self, env: &TestEnv, dir: &Path, args: &[&str]) -> Run {
        let id = self.uid.to_string();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", &id, "--regid", &id])
            .arg(format!("--groups={}", self.group))
            .arg(env!("CARGO_BIN_EXE_devinst"))
            .args(args)
            .current_dir(dir)
            .env("HOME", &self.home)
            .env("DEVINST_DATA_DIR", &self.data)
            .env_remove("DEVINST_INSTANCE")
            .stdin(Stdio::null());
        let run = Run::from(cmd.output().unwrap());
        env.track(dir);
        run
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn gc_never_removes_what_it_cannot_see_nor_another_data_dirs_containers() {
    let _gone = gone_worktrees_lock();
    let env = TestEnv::new();
    let user = User::new(&env, 47811);
    let range = [47800, 47819];

    // The user's own instance, in a directory that later becomes unreadable
    // to them (as a mode 700 home of someone else is).
    let locked = shared_repo(&env, "locked/repo", range, "");
    user.give(&env.tmp.path().join("locked"));
    user.run(&env, &locked, &["setup"]).ok();
    user.run(&env, &locked, &["start"]).ok();
    let locked_container = instance_value(&locked, "DEVINST_CONTAINER").unwrap();

    // Another data directory's instance whose worktree is gone.
    let theirs_data = data_dir(&env, "their-data");
    let theirs = shared_repo(&env, "theirs", range, "");
    run_in(&env, &theirs, &theirs_data, &["setup"]).ok();
    run_in(&env, &theirs, &theirs_data, &["start"]).ok();
    let theirs_container = instance_value(&theirs, "DEVINST_CONTAINER").unwrap();
    std::fs::remove_dir_all(&theirs).unwrap();

    chmod(&env.tmp.path().join("locked"), 0o000);
    let mentions = |run: &Run, container: &str| run.stdout.contains(&format!("`{container}`"));
    let dry = user.run(&env, &user.home, &["gc", "--dry-run"]).ok();
    assert!(!mentions(&dry, &locked_container), "{dry}");
    assert!(!mentions(&dry, &theirs_container), "{dry}");
    let run = user.run(&env, &user.home, &["gc"]).ok();
    assert!(
        run.stderr
            .contains(&format!("cannot see its worktree `{}`", locked.display())),
        "{run}"
    );
    assert!(container_exists(&locked_container), "{run}");
    assert!(container_exists(&theirs_container), "{run}");

    // `--all` judges every devinst container on the engine: what is proven
    // gone goes, what cannot be seen stays. A dry run, so that other users
    // of this engine keep theirs.
    let all = user
        .run(&env, &user.home, &["gc", "--all", "--dry-run"])
        .ok();
    assert!(!mentions(&all, &locked_container), "{all}");
    assert!(
        all.stdout.contains(&format!(
            "would remove container `{theirs_container}`: its worktree"
        )),
        "{all}"
    );
    // Their own devinst removes it.
    let run = run_in(&env, env.tmp.path(), &theirs_data, &["gc"]).ok();
    assert!(mentions(&run, &theirs_container), "{run}");
    assert!(!container_exists(&theirs_container));

    chmod(&env.tmp.path().join("locked"), 0o755);
    user.run(&env, &locked, &["destroy", "--yes"]).ok();
}

#[test]
fn gc_into_a_closed_pipe_still_removes_everything_stale() {
    let _gone = gone_worktrees_lock();
    let env = TestEnv::new();
    let data = data_dir(&env, "pipe-data");
    let mut containers = Vec::new();
    for i in 0..3 {
        let repo = shared_repo(&env, &format!("pipe{i}"), [47820, 47829], "");
        run_in(&env, &repo, &data, &["setup"]).ok();
        run_in(&env, &repo, &data, &["start"]).ok();
        containers.push(instance_value(&repo, "DEVINST_CONTAINER").unwrap());
        std::fs::remove_dir_all(&repo).unwrap();
    }
    // `devinst gc | head -1`, with the reader gone before the first line.
    let mut child = env
        .cmd(env.tmp.path())
        .arg("gc")
        .env("DEVINST_DATA_DIR", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let run = Run::from(out);
    assert_eq!(run.code, 0, "{run}");
    for c in &containers {
        assert!(!container_exists(c), "{c} is left\n{run}");
    }
    let registry = std::fs::read_to_string(data.join("registry.json")).unwrap();
    assert!(!registry.contains("sh-pipe"), "{registry}");
}

/// devinst in `dir` on a terminal (`script` makes one), answering `input`.
fn on_terminal(env: &TestEnv, dir: &Path, data: &Path, args: &[&str], input: &str) -> Run {
    let mut line = format!("'{}'", env!("CARGO_BIN_EXE_devinst"));
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(dir)
        .env("HOME", &env.home)
        .env("DEVINST_DATA_DIR", data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let run = Run::from(child.wait_with_output().unwrap());
    env.track(dir);
    run
}

#[test]
fn destroy_asks_needs_yes_to_purge_without_a_terminal_and_finds_names_anywhere() {
    let _gone = gone_worktrees_lock();
    let env = TestEnv::new();
    let data = data_dir(&env, "destroy-data");
    let range = [47830, 47839];
    let repo = shared_repo(&env, "destroy", range, "");
    run_in(&env, &repo, &data, &["setup"]).ok();
    run_in(&env, &repo, &data, &["start"]).ok();
    let name = instance_value(&repo, "DEVINST_NAME").unwrap();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();

    // No terminal: a purge is refused without --yes, and nothing goes.
    run_in(&env, &repo, &data, &["destroy", "--purge"])
        .fails_with(1, "no terminal to ask on")
        .fails_with(1, "hint: to delete without asking, add `--yes`");
    assert!(container_exists(&container));
    assert!(repo.join(".sky-dev/state").is_dir());

    // On a terminal, `n` is an answer, not a failure.
    let run = on_terminal(&env, &repo, &data, &["destroy", "--purge"], "n\n");
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("nothing removed"), "{run}");
    assert!(container_exists(&container));

    // By name, from a directory that is no worktree.
    let elsewhere = env.tmp.path();
    run_in(&env, elsewhere, &data, &["destroy", &name]).ok();
    assert!(!container_exists(&container));
    assert!(
        repo.join(".sky-dev/.instance").is_file(),
        "kept without --purge"
    );
    run_in(&env, elsewhere, &data, &["destroy", "--name", &name])
        .fails_with(1, "no instance")
        .fails_with(1, "devinst list");

    // An instance whose worktree is gone, with its --purge.
    run_in(&env, &repo, &data, &["setup"]).ok();
    run_in(&env, &repo, &data, &["start"]).ok();
    std::fs::remove_dir_all(&repo).unwrap();
    let run = run_in(
        &env,
        elsewhere,
        &data,
        &["destroy", &name, "--purge", "--yes"],
    )
    .ok();
    assert!(run.stderr.contains("released port"), "{run}");
    assert!(!container_exists(&container), "{run}");
    let registry = std::fs::read_to_string(data.join("registry.json")).unwrap();
    assert!(!registry.contains(&name), "{registry}");
}

#[test]
fn a_purge_by_a_user_who_is_not_root_removes_what_a_root_container_made() {
    let env = TestEnv::new();
    let user = User::new(&env, 47812);
    let repo = shared_repo(&env, "purge-user", [47840, 47849], "");
    // Commands run as root, as a recipe that asks for it makes them: what
    // they make in the worktree is root's.
    let recipe = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &recipe.replace("[container]\n", "[container]\nuser = \"0\"\n"),
    );
    user.give(&repo);
    user.run(&env, &repo, &["setup"]).ok();
    user.run(&env, &repo, &["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    // As a venv and `__pycache__` would be: root's, in root's directories.
    let made = "mkdir -p /app/.sky-dev/venv/lib/__pycache__ /root/.sky/logs && \
                touch /app/.sky-dev/venv/lib/__pycache__/m.pyc /root/.sky/logs/x && \
                chmod -R go-w /app/.sky-dev/venv /root/.sky";
    user.run(&env, &repo, &["exec", "--", "sh", "-c", made])
        .ok();
    user.run(&env, &repo, &["stop"]).ok();
    let run = user.run(&env, &repo, &["destroy", "--purge", "--yes"]).ok();
    assert!(!repo.join(".sky-dev").exists(), "{run}");
    assert!(!container_exists(&container), "{run}");
}

/// The busybox image with `VOLUME /data`, as a database image declares its
/// data directory; built once per run.
fn volume_image() -> &'static str {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    const IMAGE: &str = "devinst-test/busybox-volume:1";
    BUILT.get_or_init(|| {
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", IMAGE, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        let dockerfile = format!("FROM {BUSYBOX}\nVOLUME /data\n");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(dockerfile.as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    IMAGE
}

/// `[services.db]` on the volume image, sleeping; `env` changes its recipe.
fn db_service(env: &str) -> String {
    format!(
        "[services.db]\nimage = \"{}\"\ncommand = [\"sleep\", \"100000\"]\nenv = {{ V = \"{env}\" }}\n",
        volume_image()
    )
}

/// Removes an instance with service `db` however the test ends: its
/// containers, then its private network, then the service's volume.
struct WithDb {
    container: String,
    db: String,
    volume: String,
}

impl WithDb {
    fn new(repo: &Path) -> WithDb {
        let container = instance_value(repo, "DEVINST_CONTAINER").expect("set up");
        WithDb {
            db: format!("{container}-db"),
            volume: format!("{container}-db-data"),
            container,
        }
    }
}

impl Drop for WithDb {
    fn drop(&mut self) {
        quiet_docker(&["rm", "-f", "-v", &self.container, &self.db]);
        quiet_docker(&["network", "rm", &self.container]);
        quiet_docker(&["volume", "rm", "-f", &self.volume]);
    }
}

fn volume_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["volume", "inspect", name])
        .output()
        .unwrap()
        .status
        .success()
}

fn docker_out(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_services_volume_outlives_recreation_and_being_dropped_until_a_purge() {
    let env = TestEnv::new();
    let data = data_dir(&env, "volume-data");
    let range = [47850, 47859];
    let repo = shared_repo(&env, "volume", range, &db_service("1"));
    let recipe = |extra: &str| {
        let text = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
        let base = text.split("[services.db]").next().unwrap().to_owned();
        write(&repo.join("devinst.toml"), &format!("{base}{extra}"));
    };
    run_in(&env, &repo, &data, &["setup"]).ok();
    let guard = WithDb::new(&repo);
    let (db, volume) = (guard.db.clone(), guard.volume.clone());
    run_in(&env, &repo, &data, &["start"]).ok();
    docker_out(&["exec", &db, "sh", "-c", "echo kept > /data/f"]);
    let read = || docker_out(&["exec", &db, "cat", "/data/f"]);

    // An unchanged service is not recreated by --recreate.
    let id = inspect(&db, "{{.Id}}");
    run_in(&env, &repo, &data, &["start", "--recreate"]).ok();
    assert_eq!(read(), "kept\n");
    assert_eq!(inspect(&db, "{{.Id}}"), id);
    assert!(volume_exists(&volume));

    // A changed one is, and keeps its volume.
    recipe(&db_service("2"));
    run_in(&env, &repo, &data, &["start", "--recreate"]).ok();
    assert_ne!(inspect(&db, "{{.Id}}"), id);
    assert_eq!(read(), "kept\n");

    // Dropped from the recipe (a branch without it): the container goes,
    // the data stays, and comes back with the service.
    recipe("");
    let run = run_in(&env, &repo, &data, &["start"]).ok();
    assert!(
        run.stderr.contains("kept until `devinst destroy --purge`"),
        "{run}"
    );
    assert!(!container_exists(&db));
    assert!(volume_exists(&volume));
    recipe(&db_service("2"));
    run_in(&env, &repo, &data, &["start"]).ok();
    assert_eq!(read(), "kept\n");

    // Destroy keeps it; the purge names it, and removes it.
    run_in(&env, &repo, &data, &["destroy"]).ok();
    assert!(volume_exists(&volume));
    run_in(&env, &repo, &data, &["start"]).ok();
    let run = on_terminal(&env, &repo, &data, &["destroy", "--purge"], "n\n");
    assert!(run.stdout.contains(&format!("volume `{volume}`")), "{run}");
    assert!(volume_exists(&volume));
    run_in(&env, &repo, &data, &["destroy", "--purge", "--yes"]).ok();
    assert!(!volume_exists(&volume));
    assert!(!repo.join(".sky-dev").exists());
}

#[test]
fn gc_removes_the_volumes_of_a_gone_worktree() {
    let _gone = gone_worktrees_lock();
    let env = TestEnv::new();
    let data = data_dir(&env, "gc-volume-data");
    let repo = shared_repo(&env, "gc-volume", [47860, 47869], &db_service("1"));
    run_in(&env, &repo, &data, &["setup"]).ok();
    let guard = WithDb::new(&repo);
    let volume = guard.volume.clone();
    run_in(&env, &repo, &data, &["start"]).ok();
    assert!(volume_exists(&volume));
    std::fs::remove_dir_all(&repo).unwrap();
    let run = run_in(&env, env.tmp.path(), &data, &["gc"]).ok();
    assert!(
        run.stdout.contains(&format!("removed volume `{volume}`")),
        "{run}"
    );
    assert!(!volume_exists(&volume));
}

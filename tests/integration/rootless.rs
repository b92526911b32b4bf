//! Rootless Podman, Podman's default: an ordinary user (`devinst-rootless`,
//! made by scripts/test-env.sh), their own API service and image store, and a
//! user namespace in which the container's root is that user on the host.
//! devinst runs as that user here (`setpriv`), against their socket, on
//! worktrees they own; the checks look at the host's files and ask their
//! Podman (as them) about its containers. Host ports stay within 48200-48219.

use crate::core::copy_fixture;
use crate::developer::{write_offline_package, PIP_INSTALL_EXTRA};
use crate::support::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The ordinary user scripts/test-env.sh makes and starts rootless Podman for.
const USER: &str = "devinst-rootless";

/// An ordinary user with rootless Podman, a HOME (a test directory of theirs,
/// with a git identity), a data directory, and the containers their devinst
/// made, removed as them when the test ends, passed or failed.
struct Rootless {
    uid: u32,
    gid: u32,
    home: PathBuf,
    socket: PathBuf,
    containers: std::cell::RefCell<Vec<String>>,
}

impl Rootless {
    /// The user, with a HOME in `env`'s directory (declared after `env`, so
    /// their containers go before the directory does).
    fn new(env: &TestEnv) -> Rootless {
        let (uid, gid) = (id(&["-u", USER]), id(&["-g", USER]));
        let socket = PathBuf::from(format!("/run/user/{uid}/podman/podman.sock"));
        if !podman_answers(&socket) {
            panic!(
                "rootless Podman of `{USER}` does not answer on `{}`: run `bash scripts/test-env.sh` \
                 (it makes the user, starts their Podman API service and loads the test images)",
                socket.display()
            );
        }
        // The test's temp dir is root's and private: let the user through.
        chmod(env.tmp.path(), 0o755);
        let home = env.tmp.path().join("rootless-home");
        write(
            &home.join(".gitconfig"),
            "[user]\n\tname = Rootless Dev\n\temail = rootless@example.com\n",
        );
        let user = Rootless {
            uid,
            gid,
            home,
            socket,
            containers: Default::default(),
        };
        user.own(&user.home);
        user
    }

    /// Hands `path` (and all under it) to the user.
    fn own(&self, path: &Path) {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", self.uid, self.gid))
            .arg(path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown {}", path.display());
    }

    /// `program` run by the user in `dir`, with only the environment they
    /// would have: their HOME, runtime directory and engine.
    fn cmd(&self, dir: &Path, program: &Path, extra_env: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .args(["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin"])
            .arg(format!("HOME={}", self.home.display()))
            .arg(format!(
                "XDG_CONFIG_HOME={}",
                self.home.join(".config").display()
            ))
            .arg(format!("XDG_RUNTIME_DIR=/run/user/{}", self.uid))
            .arg(format!("DOCKER_HOST=unix://{}", self.socket.display()))
            .arg(format!(
                "DEVINST_DATA_DIR={}",
                self.home.join("data").display()
            ))
            .args(extra_env)
            .arg(program)
            .current_dir(dir)
            .stdin(Stdio::null());
        cmd
    }

    fn run_with(&self, dir: &Path, extra_env: &[&str], program: &str, args: &[&str]) -> Run {
        let mut cmd = self.cmd(dir, Path::new(program), extra_env);
        let out = output_within(cmd.args(args), None);
        self.track(dir);
        Run::from(out)
    }

    fn run(&self, dir: &Path, program: &str, args: &[&str]) -> Run {
        self.run_with(dir, &[], program, args)
    }

    fn devinst(&self, dir: &Path, args: &[&str]) -> Run {
        self.run(dir, env!("CARGO_BIN_EXE_devinst"), args)
    }

    /// `sh -c script` inside, through the agent when `agent`, else through
    /// the engine.
    fn sh_through(&self, dir: &Path, agent: bool, script: &str) -> Run {
        let path = if agent {
            "DEVINST_EXEC=agent"
        } else {
            "DEVINST_EXEC=engine"
        };
        self.run_with(
            dir,
            &[path],
            env!("CARGO_BIN_EXE_devinst"),
            &["exec", "--", "sh", "-c", script],
        )
    }

    fn git_inside(&self, dir: &Path, args: &[&str]) -> String {
        let mut all = vec!["exec", "--", "git"];
        all.extend_from_slice(args);
        self.devinst(dir, &all).ok().stdout
    }

    /// Their Podman, asked as them through their socket.
    fn podman(&self, args: &[&str]) -> Run {
        let url = format!("unix://{}", self.socket.display());
        let mut all = vec!["--remote", "--url", &url];
        all.extend_from_slice(args);
        self.run(&self.home, "podman", &all)
    }

    fn container_exists(&self, name: &str) -> bool {
        self.podman(&["container", "exists", name]).code == 0
    }

    fn track(&self, dir: &Path) {
        remember_container(&self.containers, dir);
    }

    /// Every path under `root` (itself included, links not followed) that
    /// is not the user's.
    fn not_theirs(&self, root: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let meta = std::fs::symlink_metadata(root).unwrap();
        if meta.uid() != self.uid || meta.gid() != self.gid {
            found.push(root.to_owned());
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(root).unwrap() {
                found.extend(self.not_theirs(&entry.unwrap().path()));
            }
        }
        found
    }

    fn socket_owner(&self, root: &Path) -> (u32, u32) {
        let meta = std::fs::symlink_metadata(root.join(".sky-dev/agent/sock"))
            .expect("the agent's socket");
        (meta.uid(), meta.gid())
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        let names = self.containers.borrow().clone();
        for name in names {
            let _ = self.podman(&["rm", "-f", "-v", &name]);
        }
    }
}

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "there is no user `{USER}`: run `bash scripts/test-env.sh` (it makes them and starts their rootless Podman)"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Whether an engine answers `_ping` on the socket.
fn podman_answers(socket: &Path) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") && answer.ends_with("OK")
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A name unique to this run, for worktrees (and so containers).
fn unique(name: &str) -> String {
    format!("{name}{}", std::process::id())
}

/// GETs `/` from `127.0.0.1:port` until a server answers.
fn http_get(port: u16) -> String {
    use std::io::{Read, Write};
    crate::poll::wait_until(&format!("an HTTP answer on 127.0.0.1:{port}"), || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .ok()?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.").then_some(answer)
    })
}

#[test]
fn on_rootless_podman_the_default_user_is_root_inside_which_is_the_user_on_the_host() {
    let env = TestEnv::new();
    let user = Rootless::new(&env);
    let main = env.repo(&unique("rlmain"));
    copy_fixture(Path::new("tests/fixtures/skypkg"), &main);
    write_offline_package(&main);
    write(
        &main.join("devinst.toml"),
        "[ports]\nhost_range = [48200, 48203]\n",
    );
    git(&main, &["add", "."]);
    git(&main, &["commit", "-q", "-m", "project"]);
    let linked = env.tmp.path().join(unique("rllinked"));
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            linked.to_str().unwrap(),
        ],
    );
    let linked = linked.canonicalize().unwrap();
    user.own(&main);
    user.own(&linked);

    // The core flow in the linked worktree: setup, start (the default setup
    // steps, as root inside), a shim.
    user.devinst(&linked, &["setup"]).ok();
    user.devinst(&linked, &["start"]).ok();
    let container = instance_value(&linked, "DEVINST_CONTAINER").unwrap();
    let sky = user
        .run(
            &linked,
            linked.join(".sky-dev/bin/sky").to_str().unwrap(),
            &["hi"],
        )
        .ok();
    assert_eq!(sky.stdout.trim(), r#"skypkg sky ["hi"]"#);

    // Root inside, in Podman's own user namespace (no keep-id), whose root
    // is the user on the host: what it makes is theirs.
    assert_eq!(
        user.podman(&[
            "inspect",
            "-f",
            "{{json .HostConfig.IDMappings}}",
            &container
        ])
        .ok()
        .stdout
        .trim(),
        "null",
        "no user namespace mode of devinst's own"
    );
    for agent in [true, false] {
        let run = user
            .sh_through(
                &linked,
                agent,
                "id -u && command -v python && echo $VIRTUAL_ENV",
            )
            .ok();
        assert_eq!(
            run.stdout, "0\n/app/.sky-dev/venv/bin/python\n/app/.sky-dev/venv\n",
            "through the agent: {agent}"
        );
    }
    assert_eq!(user.socket_owner(&linked), (user.uid, user.gid));
    user.devinst(&linked, &["exec", "--", "touch", "made-by-exec"])
        .ok();
    let run = user
        .devinst(&linked, &["exec", "--", "sh", "-c", PIP_INSTALL_EXTRA])
        .ok();
    assert_eq!(
        run.stdout, "extra-ok\n",
        "the venv is theirs to install into"
    );
    for made in [
        ".sky-dev/venv/bin/pip",
        "extra/extra.egg-info",
        "made-by-exec",
    ] {
        assert!(linked.join(made).exists(), "{made}");
    }
    assert_eq!(user.not_theirs(&linked), Vec::<PathBuf>::new());

    // git in the linked worktree, inside, with the host's identity; the
    // commit is the user's on the host, and so is the common git directory.
    assert_eq!(
        user.git_inside(&linked, &["rev-parse", "--abbrev-ref", "HEAD"])
            .trim(),
        "feature"
    );
    user.git_inside(&linked, &["add", "made-by-exec"]);
    user.git_inside(&linked, &["commit", "-q", "-m", "from inside"]);
    assert_eq!(
        user.run(&linked, "git", &["log", "-1", "--format=%an <%ae> %s"])
            .ok()
            .stdout,
        "Rootless Dev <rootless@example.com> from inside\n"
    );
    assert_eq!(user.not_theirs(&main.join(".git")), Vec::<PathBuf>::new());

    // doctor tells the engine is rootless and what these instances get.
    let doctor = user.devinst(&linked, &["doctor"]).ok();
    assert!(
        doctor.stdout.contains(&format!(
            "rootless Podman, run by uid {} with 65536 subordinate ids",
            user.uid
        )) && doctor
            .stdout
            .contains("instances get the engine's default user namespace, user `0:0`"),
        "{doctor}"
    );

    // Stop, start again: the same container, the venv still there.
    user.devinst(&linked, &["stop"]).ok();
    assert_eq!(
        user.podman(&["inspect", "-f", "{{.State.Running}}", &container])
            .ok()
            .stdout
            .trim(),
        "false"
    );
    user.devinst(&linked, &["start"]).ok();
    assert_eq!(
        user.sh_through(&linked, true, "id -u && echo $VIRTUAL_ENV")
            .ok()
            .stdout,
        "0\n/app/.sky-dev/venv\n"
    );

    // A purge by the user completes: the container and `.sky-dev` go.
    user.devinst(&linked, &["destroy", "--purge", "--yes"]).ok();
    assert!(!user.container_exists(&container));
    assert!(!linked.join(".sky-dev").exists());
}

#[test]
fn on_rootless_podman_user_host_maps_the_users_uid_inside_with_keep_id() {
    let env = TestEnv::new();
    let user = Rootless::new(&env);
    let repo = env.repo(&unique("rlhost"));
    write(
        &repo.join("devinst.toml"),
        &format!(
            "[container]\nimage = \"{PYTHON_IMAGE}\"\nuser = \"host\"\n[ports]\nhost_range = [48204, 48207]\n\
             [setup]\ncommands = [\"id -u > made-by-setup\"]\n"
        ),
    );
    git(&repo, &["add", "devinst.toml"]);
    git(&repo, &["commit", "-q", "-m", "recipe"]);
    user.own(&repo);

    user.devinst(&repo, &["setup"]).ok();
    user.devinst(&repo, &["start"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    // keep-id's mappings: the user's uid inside is intermediate 0, the user.
    let mappings = user
        .podman(&[
            "inspect",
            "-f",
            "{{json .HostConfig.IDMappings}}",
            &container,
        ])
        .ok()
        .stdout;
    assert!(
        mappings.contains(&format!("\"{}:0:1\"", user.uid)),
        "{mappings}"
    );
    let me = format!("{}\n", user.uid);
    assert_eq!(
        std::fs::read_to_string(repo.join("made-by-setup")).unwrap(),
        me
    );
    for agent in [true, false] {
        let made = format!("made-through-agent-{agent}");
        let run = user
            .sh_through(&repo, agent, &format!("touch {made} && id -u"))
            .ok();
        assert_eq!(run.stdout, me, "through the agent: {agent}");
        assert!(repo.join(&made).exists());
    }
    assert_eq!(user.socket_owner(&repo), (user.uid, user.gid));
    assert_eq!(user.not_theirs(&repo), Vec::<PathBuf>::new());

    // git inside, as the user, with the host's identity.
    user.git_inside(&repo, &["add", "-A"]);
    user.git_inside(&repo, &["commit", "-q", "-m", "as the user"]);
    assert_eq!(
        user.run(&repo, "git", &["log", "-1", "--format=%an <%ae> %s"])
            .ok()
            .stdout,
        "Rootless Dev <rootless@example.com> as the user\n"
    );
    assert_eq!(user.not_theirs(&repo), Vec::<PathBuf>::new());

    let doctor = user.devinst(&repo, &["doctor"]).ok();
    assert!(
        doctor.stdout.contains(&format!(
            "instances get user namespace mode `keep-id`, user `{}:{}`",
            user.uid, user.gid
        )),
        "{doctor}"
    );

    // A port from the host: a server inside, on the container port, through
    // slirp4netns and the agent's relay.
    user.devinst(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "nohup python3 -m http.server 46580 >/dev/null 2>&1 </dev/null &",
        ],
    )
    .ok();
    let port: u16 = instance_value(&repo, "DEVINST_PORT")
        .unwrap()
        .parse()
        .unwrap();
    assert!(http_get(port).contains("made-by-setup"));

    user.devinst(&repo, &["stop"]).ok();
    user.devinst(&repo, &["start"]).ok();
    assert_eq!(user.sh_through(&repo, true, "id -u").ok().stdout, me);

    user.devinst(&repo, &["destroy", "--purge", "--yes"]).ok();
    assert!(!user.container_exists(&container));
    assert!(!repo.join(".sky-dev").exists());
    assert_eq!(user.not_theirs(&repo), Vec::<PathBuf>::new());
}

#[test]
fn keep_id_that_cannot_work_is_refused_before_anything_is_made() {
    let env = TestEnv::new();
    let user = Rootless::new(&env);
    // Root's worktree on the user's rootless Podman: keep-id would keep the
    // user, not root.
    let repo = env.busybox_repo(
        &unique("rlrefused"),
        "[ports]\nhost_range = [48208, 48209]\n",
    );
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replace("[container]\n", "[container]\nuser = \"host\"\n"),
    );
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let rootless = format!("unix://{}", user.socket.display());
    let start = env
        .run(&repo, &["--host", &rootless, "start"])
        .fails_with(1, "cannot work on this engine");
    assert!(
        start
            .stderr
            .contains(&format!("rootless Podman run by uid {}", user.uid))
            && start.stderr.contains("belongs to uid 0")
            && start.stderr.contains("hint:"),
        "{start}"
    );
    assert!(!start.stderr.contains("creating container"), "{start}");
    assert!(!user.container_exists(&container));

    let doctor = env.run(&repo, &["--host", &rootless, "doctor"]).ok();
    assert!(
        doctor.stdout.contains("problem  userns")
            && doctor.stdout.contains("rootless Podman, run by uid"),
        "{doctor}"
    );
    // The tests' own engine, rootful: ids inside are the host's.
    let doctor = env.run(&repo, &["doctor"]).ok();
    assert!(
        doctor
            .stdout
            .contains("rootful engine: ids inside are the host's")
            && doctor
                .stdout
                .contains("instances get no user namespace of their own, user `0:0`"),
        "{doctor}"
    );
}

#[test]
fn limits_rootless_podman_would_drop_are_refused_before_anything_is_made() {
    let env = TestEnv::new();
    let user = Rootless::new(&env);
    let repo = env.busybox_repo(
        &unique("rllimits"),
        "[ports]\nhost_range = [48210, 48211]\n",
    );
    let toml = std::fs::read_to_string(repo.join("devinst.toml")).unwrap();
    write(
        &repo.join("devinst.toml"),
        &toml.replace("[container]\n", "[container]\nmemory = \"256m\"\n"),
    );
    user.own(&repo);
    user.devinst(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let cgroups = user
        .podman(&["info", "-f", "{{.Host.CgroupsVersion}}"])
        .ok()
        .stdout;
    let start = user.devinst(&repo, &["start"]);
    if cgroups.trim() == "v1" {
        // Podman would log "Resource limits are not supported and ignored on
        // cgroups V1 rootless systems" and run the container unlimited.
        start.fails_with(1, "ignores resource limits");
        assert!(!user.container_exists(&container));
        let doctor = user.devinst(&repo, &["doctor"]).ok();
        assert!(
            doctor.stdout.contains("problem  limits") && doctor.stdout.contains("would drop them"),
            "{doctor}"
        );
    } else {
        // Elsewhere the limit must really be the container's.
        start.ok();
        let memory = user
            .podman(&["inspect", "-f", "{{.HostConfig.Memory}}", &container])
            .ok()
            .stdout;
        assert_eq!(memory.trim(), "268435456");
    }
}

#[test]
fn a_cluster_on_rootless_podman_has_its_network_and_every_node_is_the_user() {
    let env = TestEnv::new();
    let user = Rootless::new(&env);
    let repo = env.busybox_repo(
        &unique("rlcluster"),
        "[ports]\nhost_range = [48212, 48219]\n[cluster]\nnodes = 2\n",
    );
    user.own(&repo);
    user.devinst(&repo, &["setup"]).ok();
    let head = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    let node = format!("{head}-node-1");
    // The node is not the instance's own container: removed by name too.
    user.containers.borrow_mut().push(node.clone());
    user.devinst(&repo, &["start"]).ok();

    let made = user
        .devinst(
            &repo,
            &[
                "exec",
                "--all",
                "--",
                "sh",
                "-c",
                "touch /app/made-on-$DEVINST_NODE_RANK && id -u",
            ],
        )
        .ok();
    let mut lines: Vec<&str> = made.stdout.lines().collect();
    lines.sort();
    assert_eq!(lines, ["[node 0] 0", "[node 1] 0"]);
    assert_eq!(user.not_theirs(&repo), Vec::<PathBuf>::new());

    // The nodes reach each other by name on the instance's network.
    write(&repo.join("www/hello.txt"), "from node 1\n");
    user.own(&repo.join("www"));
    user.devinst(
        &repo,
        &[
            "exec", "--node", "1", "--", "httpd", "-p", "8000", "-h", "/app/www",
        ],
    )
    .ok();
    let url = format!("http://{}:8000/hello.txt", node);
    let got = crate::poll::wait_until("node 1's server, from the head", || {
        let run = user.devinst(&repo, &["exec", "--", "wget", "-q", "-O", "-", &url]);
        (run.code == 0).then_some(run.stdout)
    });
    assert_eq!(got, "from node 1\n");

    user.devinst(&repo, &["destroy", "--purge", "--yes"]).ok();
    assert!(!user.container_exists(&head) && !user.container_exists(&node));
    assert_ne!(user.podman(&["network", "exists", &head]).code, 0);
}

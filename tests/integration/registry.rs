//! Private registries: devinst pulls with the logins the Docker CLI keeps
//! (`auths`, `credsStore`, `credHelpers`), for `[container] image` and for
//! the base of `[container.build]`, and names the registry with a
//! `docker login` hint when it refuses. scripts/test-env.sh runs a registry
//! that demands a login at 127.0.0.1:5001 with the busybox image in it.
//! Host ports stay within 48100-48139.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const RANGE: &str = "[ports]\nhost_range = [48100, 48139]\n";
const REGISTRY: &str = "127.0.0.1:5001";
const IMAGE: &str = "127.0.0.1:5001/devinst-test/private-busybox:1";
/// The registry's test-only login (scripts/test-env.sh made it).
const USER: &str = "devinst-test";
const PASSWORD: &str = "devinst-test-password";

/// Every test here needs the private image absent at its start and pulls
/// it: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the lock and removes the pulled image (and the test's built
/// images) when the test ends, passed or failed; only these tags.
struct Pulls {
    built: std::cell::RefCell<Vec<String>>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Pulls {
    fn begin() -> Pulls {
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        quiet_docker(&["rmi", IMAGE]);
        assert!(!image_present(IMAGE), "`docker rmi {IMAGE}` left it");
        Pulls {
            built: Default::default(),
            _lock: lock,
        }
    }

    /// The image the instance of `repo` runs, removed at the end.
    fn built_by(&self, repo: &Path) -> String {
        let container = instance_value(repo, "DEVINST_CONTAINER").unwrap();
        let image = inspect(&container, "{{.Config.Image}}");
        self.built.borrow_mut().push(image.clone());
        image
    }
}

impl Drop for Pulls {
    fn drop(&mut self) {
        quiet_docker(&["rmi", IMAGE]);
        for image in self.built.borrow().iter() {
            quiet_docker(&["rmi", "-f", image]);
        }
    }
}

/// `docker login` into the test's own Docker config directory (`HOME/.docker`
/// unless the test names another), never the machine's. Always through the
/// Docker engine: the CLI keeps the login itself and only asks an engine to
/// check it, and Podman 4.3's check tries HTTPS on a plain-HTTP registry.
fn docker_login(config_dir: &Path, password: &str) {
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_CONFIG", config_dir)
        .env_remove("DOCKER_HOST")
        .args(["login", "-u", USER, "--password-stdin", REGISTRY]);
    let out = output_within(&mut cmd, Some(password.as_bytes().to_vec()));
    assert!(
        out.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = std::fs::read_to_string(config_dir.join("config.json")).unwrap();
    assert!(config.contains(REGISTRY), "{config}");
}

/// Runs devinst with the Docker CLI config of the test's HOME (whatever
/// `DOCKER_CONFIG` the test run itself has), or the one given.
fn run(env: &TestEnv, dir: &Path, docker_config: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = env.cmd(dir);
    match docker_config {
        Some(config) => cmd.env("DOCKER_CONFIG", config),
        None => cmd.env_remove("DOCKER_CONFIG"),
    };
    env.run_cmd(dir, cmd.args(args))
}

/// A refusal: exit 1, the registry named, a `docker login` hint, no panic.
#[track_caller]
fn refused(run: Run, words: &str) -> Run {
    let run = run.fails_with(1, words);
    assert!(
        run.stderr.contains(&format!("the registry `{REGISTRY}`")),
        "{run}"
    );
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("hint: ") && l.contains(&format!("`docker login {REGISTRY}`"))),
        "no `docker login` hint\n{run}"
    );
    assert!(
        !run.stderr.contains(PASSWORD),
        "a secret in the output\n{run}"
    );
    run
}

fn image_repo(env: &TestEnv, name: &str) -> PathBuf {
    let repo = env.repo(name);
    write(
        &repo.join("devinst.toml"),
        &format!("[container]\nimage = \"{IMAGE}\"\n[setup]\ncommands = []\n{RANGE}"),
    );
    repo
}

#[test]
fn a_private_image_needs_a_login_and_the_error_says_which() {
    let env = TestEnv::new();
    let _pulls = Pulls::begin();
    let repo = image_repo(&env, "private-anon");
    run(&env, &repo, None, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();

    let run1 = refused(
        run(&env, &repo, None, &["start"]),
        &format!("refused to serve `{IMAGE}` without a login"),
    );
    assert!(!run1.stderr.contains("docker pull"), "one hint\n{run1}");
    assert!(!container_exists(&container), "no container was made");
    assert!(!image_present(IMAGE), "nothing was pulled");

    // A wrong password is a refused login, named with where it came from.
    docker_login(&env.home.join(".docker"), PASSWORD);
    let config = env.home.join(".docker/config.json");
    let wrong = std::fs::read_to_string(&config).unwrap().replace(
        &base64(&format!("{USER}:{PASSWORD}")),
        &base64(&format!("{USER}:wrong")),
    );
    write(&config, &wrong);
    let run2 = refused(run(&env, &repo, None, &["start"]), "refused the login");
    assert!(run2.stderr.contains("`auths` in"), "{run2}");
    assert!(!container_exists(&container), "no container was made");
}

#[test]
fn after_docker_login_the_image_is_pulled_and_runs() {
    let env = TestEnv::new();
    let _pulls = Pulls::begin();
    let repo = image_repo(&env, "private-login");
    run(&env, &repo, None, &["setup"]).ok();
    // As a user does: `docker login`, its config in ~/.docker.
    docker_login(&env.home.join(".docker"), PASSWORD);
    let started = run(&env, &repo, None, &["start"]).ok();
    assert!(
        started.stderr.contains(&format!("pulling image `{IMAGE}`")),
        "{started}"
    );
    assert!(!started.stderr.contains(PASSWORD), "{started}");
    assert_eq!(
        run(&env, &repo, None, &["exec", "--", "echo", "pulled"])
            .ok()
            .stdout,
        "pulled\n"
    );
}

#[test]
fn a_recipe_build_pulls_its_private_base_with_the_login() {
    let env = TestEnv::new();
    let pulls = Pulls::begin();
    let repo = env.repo("private-build");
    // A recipe of its own (its tag hashes it), so nothing built before is reused.
    let unique = unique();
    write(
        &repo.join("devinst.toml"),
        &format!(
            "[container.build]\nbase = \"{IMAGE}\"\nenv = {{ RUN = \"{unique}\" }}\n\
             [setup]\ncommands = []\n{RANGE}"
        ),
    );
    // Through DOCKER_CONFIG this time.
    let config_dir = env.tmp.path().join("docker-config");
    std::fs::create_dir_all(&config_dir).unwrap();
    run(&env, &repo, Some(&config_dir), &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();

    let failed = refused(
        run(&env, &repo, Some(&config_dir), &["start"]),
        &format!("refused to serve `{IMAGE}` without a login"),
    );
    assert!(
        failed.stderr.contains("building image `devinst-build/"),
        "{failed}"
    );
    assert!(
        !failed.stderr.contains("fix `[container.build]`"),
        "one hint\n{failed}"
    );
    assert!(!container_exists(&container), "no container was made");

    docker_login(&config_dir, PASSWORD);
    run(&env, &repo, Some(&config_dir), &["start"]).ok();
    let built = pulls.built_by(&repo);
    // Podman adds `docker.io/`.
    assert!(built.contains("devinst-build/"), "{built}");
    assert_eq!(
        run(
            &env,
            &repo,
            Some(&config_dir),
            &["exec", "--", "sh", "-c", "echo $RUN"]
        )
        .ok()
        .stdout,
        format!("{unique}\n")
    );
}

/// A credential helper the test writes: a real program speaking the
/// protocol, serving the login for the private registry only and noting
/// each question it was asked.
fn credential_helper(env: &TestEnv, name: &str) -> (PathBuf, PathBuf) {
    let bin = env.tmp.path().join("helper-bin");
    let asked = env.tmp.path().join("helper-asked");
    let script = format!(
        "#!/bin/sh\n\
         read -r server || true\n\
         printf '%s %s\\n' \"$1\" \"$server\" >> '{asked}'\n\
         if [ \"$1\" = get ] && [ \"$server\" = '{REGISTRY}' ]; then\n\
           printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}\\n' \"$server\"\n\
         else\n\
           echo 'credentials not found in native keychain'; exit 1\n\
         fi\n",
        asked = asked.display()
    );
    let path = bin.join(format!("docker-credential-{name}"));
    write(&path, &script);
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).unwrap();
    (bin, asked)
}

#[test]
fn a_credential_helper_serves_the_login() {
    let env = TestEnv::new();
    let pulls = Pulls::begin();
    let repo = image_repo(&env, "private-helper");
    let (bin, asked) = credential_helper(&env, "devinsttest");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let with_path = |args: &[&str]| {
        let mut cmd = env.cmd(&repo);
        cmd.env_remove("DOCKER_CONFIG").env("PATH", &path);
        env.run_cmd(&repo, cmd.args(args))
    };
    with_path(&["setup"]).ok();

    // A helper that is not there: a clear error, no pull.
    let config = env.home.join(".docker/config.json");
    write(&config, r#"{"credsStore": "nosuchhelper"}"#);
    let missing = with_path(&["start"]).fails_with(1, "docker-credential-nosuchhelper");
    assert!(
        missing
            .stderr
            .lines()
            .any(|l| l.starts_with("hint: ")
                && l.contains("install `docker-credential-nosuchhelper`")),
        "{missing}"
    );
    assert!(!image_present(IMAGE));

    // `credHelpers` names it for this registry; `credsStore` (missing)
    // would serve the others.
    write(
        &config,
        &format!(
            r#"{{"credsStore": "nosuchhelper", "credHelpers": {{"{REGISTRY}": "devinsttest"}}}}"#
        ),
    );
    let started = with_path(&["start"]).ok();
    assert!(!started.stderr.contains(PASSWORD), "{started}");
    let questions = std::fs::read_to_string(&asked).unwrap();
    assert_eq!(questions, format!("get {REGISTRY}\n"));
    assert_eq!(
        with_path(&["exec", "--", "echo", "helped"]).ok().stdout,
        "helped\n"
    );

    // A build from the base now present pulls nothing, so it needs no
    // login: the broken `credsStore` alone does not fail it.
    write(&config, r#"{"credsStore": "nosuchhelper"}"#);
    let built = env.repo("private-helper-build");
    write(
        &built.join("devinst.toml"),
        &format!(
            "[container.build]\nbase = \"{IMAGE}\"\nenv = {{ RUN = \"{}\" }}\n\
             [setup]\ncommands = []\n{RANGE}",
            unique()
        ),
    );
    let in_built = |args: &[&str]| {
        let mut cmd = env.cmd(&built);
        cmd.env_remove("DOCKER_CONFIG").env("PATH", &path);
        env.run_cmd(&built, cmd.args(args))
    };
    in_built(&["setup"]).ok();
    in_built(&["start"]).ok();
    pulls.built_by(&built);
}

/// A value no other run shares, for a recipe's image tag of its own.
fn unique() -> String {
    format!("{}-{:?}", std::process::id(), std::time::Instant::now())
}

/// Standard base64, as `docker login` writes `auth`.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

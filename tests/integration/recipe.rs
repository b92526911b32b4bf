//! `[container.build]`: image recipes built by the real engine, once per
//! content hash, and the errors that must come before or instead of a build.

use crate::support::*;
use std::cell::RefCell;
use std::path::Path;
use std::process::{Command, Stdio};

/// Removes the images a test built, after its `TestEnv` removed the
/// containers using them (declare it first: locals drop in reverse).
#[derive(Default)]
struct Images(RefCell<Vec<String>>);

impl Images {
    /// Remembers every `devinst-build/...` tag a run's stderr names.
    fn track(&self, run: &Run) {
        for tag in built_tags(&run.stderr) {
            let mut list = self.0.borrow_mut();
            if !list.contains(&tag) {
                list.push(tag);
            }
        }
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        for tag in self.0.borrow().iter() {
            let _ = Command::new("docker")
                .args(["rmi", tag])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The tags of images devinst said it builds, in order.
fn built_tags(stderr: &str) -> Vec<String> {
    stderr
        .split('`')
        .filter(|word| word.starts_with("devinst-build/"))
        .map(str::to_owned)
        .collect()
}

const RECIPE: &str = r#"
[container.build]
base = "ubuntu:22.04"
apt = ["jq"]
pip = ["six==1.16.0"]
env = { FOO = "bar", TRICKY = "a \"b\" $HOME 'c' \\d" }
include = [
  { source = "tools/hello.sh", target = "/opt/hello.sh" },
  { source = "tools", target = "/opt/all tools/" },
]
[setup]
commands = []
"#;

fn recipe_repo(env: &TestEnv, rel: &str, build: &str, range: [u16; 2]) -> std::path::PathBuf {
    let dir = env.repo(rel);
    write(
        &dir.join("devinst.toml"),
        &format!(
            "{build}\n[ports]\nhost_range = [{}, {}]\n",
            range[0], range[1]
        ),
    );
    dir
}

fn exec(env: &TestEnv, repo: &Path, script: &str) -> String {
    env.run(repo, &["exec", "--", "sh", "-c", script])
        .ok()
        .stdout
}

#[test]
fn recipe_is_built_once_and_rebuilt_when_an_included_file_changes() {
    let images = Images::default();
    let env = TestEnv::new();
    let repo = recipe_repo(&env, "recipe", RECIPE, [47500, 47509]);
    write(&repo.join("tools/hello.sh"), "echo hello from the recipe\n");
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();
    // Before there is a container, status names the image start will build.
    let status = env.run(&repo, &["status", "--json"]).ok();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let planned = status["image"].as_str().unwrap().to_owned();
    assert!(planned.starts_with("devinst-build/"), "{planned}");

    let started = std::time::Instant::now();
    let first = env.run(&repo, &["start"]);
    images.track(&first);
    let first = first.ok();
    eprintln!("first start, with the build: {:?}", started.elapsed());
    let tags = built_tags(&first.stderr);
    let tag = tags
        .first()
        .expect("start names the image it builds")
        .clone();
    assert_eq!(planned, tag, "status named the image start built");
    assert!(first.stderr.contains("building image"), "{first}");
    // Docker says `Step 1/8 :`, Podman `STEP 1/8:`.
    assert!(
        first.stderr.to_lowercase().contains("step 1/"),
        "build progress\n{first}"
    );
    assert_image(&container, &tag);

    // Everything the recipe asked for is in the container.
    assert!(exec(&env, &repo, "jq --version").starts_with("jq-"));
    assert_eq!(
        exec(
            &env,
            &repo,
            "python3 -c 'import six; print(six.__version__)'"
        ),
        "1.16.0\n"
    );
    assert_eq!(
        exec(&env, &repo, r#"printf '%s|%s' "$FOO" "$TRICKY""#),
        r#"bar|a "b" $HOME 'c' \d"#
    );
    assert_eq!(
        exec(&env, &repo, "cat /opt/hello.sh"),
        "echo hello from the recipe\n"
    );
    assert_eq!(
        exec(&env, &repo, "cat '/opt/all tools/hello.sh'"),
        "echo hello from the recipe\n"
    );

    // Built once: neither `start` nor `build` builds it again.
    let again = env.run(&repo, &["start"]).ok();
    assert!(!again.stderr.contains("building image"), "{again}");
    assert!(!again.stderr.contains("Step "), "{again}");
    assert!(!again.stderr.contains("different recipe"), "{again}");
    let build = env.run(&repo, &["build"]).ok();
    assert_eq!(build.stdout.trim(), tag);
    assert!(build.stderr.contains("cached"), "{build}");
    assert!(!build.stderr.contains("Step "), "{build}");

    // A changed byte in an included file is a new recipe: `start` says so
    // and keeps the container; `--recreate` builds and uses the new image.
    write(&repo.join("tools/hello.sh"), "echo hello again\n");
    let changed = env.run(&repo, &["start"]).ok();
    assert!(changed.stderr.contains("different recipe"), "{changed}");
    assert!(!changed.stderr.contains("building image"), "{changed}");
    assert_image(&container, &tag);

    let started = std::time::Instant::now();
    let recreated = env.run(&repo, &["start", "--recreate"]);
    images.track(&recreated);
    let recreated = recreated.ok();
    eprintln!("rebuild after an include changed: {:?}", started.elapsed());
    let new_tag = built_tags(&recreated.stderr)
        .into_iter()
        .next()
        .expect("the new recipe is built");
    assert_ne!(new_tag, tag);
    assert_image(&container, &new_tag);
    assert_eq!(exec(&env, &repo, "cat /opt/hello.sh"), "echo hello again\n");
    let build = env.run(&repo, &["build"]).ok();
    assert_eq!(build.stdout.trim(), new_tag);
}

#[test]
fn missing_apt_package_fails_start_with_the_builds_error_and_no_tag() {
    let images = Images::default();
    let env = TestEnv::new();
    let recipe = "[container.build]\nbase = \"ubuntu:22.04\"\n\
                  apt = [\"devinst-no-such-package\"]\n[setup]\ncommands = []\n";
    let repo = recipe_repo(&env, "badapt", recipe, [47510, 47519]);
    env.run(&repo, &["setup"]).ok();
    let container = instance_value(&repo, "DEVINST_CONTAINER").unwrap();

    let run = env.run(&repo, &["start"]);
    images.track(&run);
    let run = run.fails_with(1, "the `[container.build] apt` step exited with code 100");
    assert!(
        run.stderr
            .contains("E: Unable to locate package devinst-no-such-package"),
        "{run}"
    );
    assert!(
        run.stderr.contains("hint: fix `[container.build]`"),
        "{run}"
    );
    let tag = built_tags(&run.stderr).into_iter().next().unwrap();
    assert!(!image_present(&tag), "a failed build leaves no `{tag}`");
    let created = Command::new("docker")
        .args(["inspect", &container])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!created.success(), "no container without its image");

    // With -q the build's output is not shown, so the error carries its end.
    let quiet = env.run(&repo, &["-q", "build"]);
    images.track(&quiet);
    let quiet = quiet.fails_with(1, "last lines of its output");
    assert!(quiet.stderr.contains("Unable to locate package"), "{quiet}");
    assert!(!quiet.stderr.contains("Step 1/"), "{quiet}");
    assert!(!image_present(&tag));
}

#[test]
fn bad_recipes_are_refused_before_any_engine_call() {
    let env = TestEnv::new();
    let repo = env.repo("badrecipe");
    write(&repo.join("tools/x"), "x\n");
    let toml = repo.join("devinst.toml");
    // No engine answers here: an error about the recipe proves it came first.
    let no_engine = |args: &[&str]| {
        let out = env
            .cmd(&repo)
            .args(args)
            .env("DOCKER_HOST", "unix:///nonexistent/devinst.sock")
            .output()
            .unwrap();
        Run::from(out)
    };
    for (build, needles) in [
        (
            "apt = [\"jq; rm -rf /\"]",
            &[
                "`[container.build] apt` entry `jq; rm -rf /`",
                "devinst.toml",
            ][..],
        ),
        (
            "pip = [\"--index-url=http://x\"]",
            &["`[container.build] pip` entry `--index-url=http://x`"][..],
        ),
        (
            "env = { \"A-B\" = \"1\" }",
            &["`[container.build] env` key `A-B`"][..],
        ),
        (
            "include = [{ source = \"../outside\", target = \"/x\" }]",
            &["`[container.build] include` source `../outside`"][..],
        ),
        (
            "include = [{ source = \"tools/x\", target = \"relative\" }]",
            &["`[container.build] include` target `relative`"][..],
        ),
        (
            "include = [{ source = \"tools/missing\", target = \"/x\" }]",
            &["`tools/missing` does not exist in the worktree", "hint:"][..],
        ),
    ] {
        write(
            &toml,
            &format!("[container.build]\nbase = \"ubuntu:22.04\"\n{build}\n"),
        );
        let run = no_engine(&["build"]);
        for needle in needles {
            assert!(run.stderr.contains(needle), "{build}: {needle:?}\n{run}");
        }
        let run = run.fails_with(1, "invalid `");
        assert!(!run.stderr.contains("container engine"), "{run}");
    }

    write(
        &toml,
        "[container]\nimage = \"ubuntu:22.04\"\n[container.build]\nbase = \"ubuntu:22.04\"\n",
    );
    env.run(&repo, &["setup"]).fails_with(
        1,
        "`[container] image` and `[container.build]` are both set",
    );

    // No recipe: nothing to build, and that is not an error.
    write(&toml, "[container]\nimage = \"ubuntu:22.04\"\n");
    let run = no_engine(&["build"]).ok();
    assert!(run.stderr.contains("nothing to build"), "{run}");
}

/// The container runs `tag`; Podman reports it with its registry in front
/// (`docker.io/devinst-build/...`).
fn assert_image(container: &str, tag: &str) {
    let image = inspect(container, "{{.Config.Image}}");
    assert!(
        image == tag || image.ends_with(&format!("/{tag}")),
        "{image} is not {tag}"
    );
}

/// The host's CA bundle, as the tests compare it with images'.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The base64 bodies of the certificates in a PEM bundle, as PEM writes
/// them (lines of 64 characters).
fn pem_bodies(pem: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut body: Option<Vec<String>> = None;
    for line in pem.lines().map(str::trim) {
        match line {
            "-----BEGIN CERTIFICATE-----" => body = Some(Vec::new()),
            "-----END CERTIFICATE-----" => found.extend(body.take()),
            line => {
                if let Some(body) = body.as_mut() {
                    body.push(line.to_owned());
                }
            }
        }
    }
    found
}

/// An image like the Python test image but holding only the stock CA bundle
/// (test-env hands that image the host's, so pip works in it), as a base
/// image straight from a distribution has. Removed when dropped; declare it
/// before the [`Images`] built on it, which must go first.
struct StockCaBase {
    tag: String,
    /// The second line of a certificate the host trusts and this image does
    /// not: a line of text no file holds unless it holds that certificate.
    host_only_line: String,
}

impl StockCaBase {
    fn build(name: &str) -> StockCaBase {
        require_engine();
        let tag = format!("devinst-test/stock-ca-{name}:{}", std::process::id());
        // Without test-env's extras, and the bundle made again from the
        // stock certificates alone. The label makes each test's image its
        // own (not the builder's cached one), so containers another test
        // makes from its image never count as this one's.
        let dockerfile = format!(
            "FROM {PYTHON_IMAGE}\n\
             RUN rm -f /etc/pip.conf /usr/local/share/ca-certificates/*.crt \
             && update-ca-certificates --fresh >/dev/null\n\
             LABEL devinst-test.stock-ca=\"{name}\"\n"
        );
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", &tag, "-"])
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), dockerfile.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let mut base = StockCaBase {
            tag,
            host_only_line: String::new(),
        };
        assert!(
            out.status.success(),
            "building {}: {}",
            base.tag,
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = docker_out(&["run", "--rm", &base.tag, "cat", HOST_CA_BUNDLE]);
        let theirs = pem_bodies(&theirs);
        let host = pem_bodies(&std::fs::read_to_string(HOST_CA_BUNDLE).unwrap());
        let host_only = host
            .into_iter()
            .find(|cert| !theirs.contains(cert) && cert.len() > 2)
            .expect(
                "these tests need a host that trusts a CA stock bundles lack: one whose HTTPS \
                 passes through a proxy that re-signs it (as on the project's machines)",
            );
        base.host_only_line = host_only[1].clone();
        base
    }
}

impl Drop for StockCaBase {
    fn drop(&mut self) {
        quiet_docker(&["rmi", &self.tag]);
    }
}

/// `docker ARGS`' stdout; it must succeed.
fn docker_out(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The layers of `image` above those of `base` that hold `needle` in any
/// file, by their place in the image (from `docker save`).
fn added_layers_holding(image: &str, base: &str, needle: &str, dir: &Path) -> Vec<usize> {
    let layers = |image: &str| -> Vec<String> {
        let json = docker_out(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", image]);
        serde_json::from_str(&json).unwrap()
    };
    let (ours, theirs) = (layers(image), layers(base));
    assert_eq!(
        ours[..theirs.len()],
        theirs[..],
        "{image} is built on {base}"
    );
    let saved = dir.join("saved.tar");
    docker_out(&["save", "-o", saved.to_str().unwrap(), image]);
    // Each entry whose path `wanted` accepts, read whole.
    let read = |wanted: &dyn Fn(&str) -> bool| -> Vec<(String, Vec<u8>)> {
        let file = std::fs::File::open(&saved).unwrap();
        let mut archive = tar::Archive::new(file);
        let mut found = Vec::new();
        for entry in archive.entries_with_seek().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if wanted(&path) {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
                found.push((path, bytes));
            }
        }
        found
    };
    // The manifest lists the layers' files in order (Docker and Podman name
    // them differently); only those above the base's are read: small, what
    // the build added.
    let manifest = read(&|path| path == "manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest[0].1).unwrap();
    let paths: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .expect("a docker save manifest")
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths.len(), ours.len());
    let added = &paths[theirs.len()..];
    assert!(!added.is_empty(), "the build added layers");
    let layers = read(&|path| added.iter().any(|p| p == path));
    assert_eq!(layers.len(), added.len(), "every added layer read");
    let mut holding = Vec::new();
    for (path, bytes) in layers {
        // A layer is a tar of its files, stored as they are.
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            let i = added.iter().position(|p| *p == path).unwrap();
            holding.push(theirs.len() + i);
        }
    }
    holding
}

#[test]
fn host_ca_lets_builds_through_a_re_signing_proxy_and_no_layer_keeps_the_bundle() {
    let base = StockCaBase::build("build");
    let images = Images::default();
    let env = TestEnv::new();
    let build = |host_ca: &str, apt: &str| {
        format!(
            "[container]\n{host_ca}\n[container.build]\nbase = \"{}\"\n{apt}\n\
             pip = [\"six==1.16.0\"]\n[setup]\ncommands = []\n",
            base.tag
        )
    };
    let repo = recipe_repo(&env, "hostca", &build("", ""), [47520, 47529]);

    // Without `host_ca`, pip cannot verify the index through the proxy, and
    // the hint says why rather than suspecting the package.
    let run = env.run(&repo, &["build"]);
    images.track(&run);
    let run = run.fails_with(1, "the `[container.build] pip` step exited with code 1");
    assert!(run.stderr.contains("CERTIFICATE_VERIFY_FAILED"), "{run}");
    assert!(
        run.stderr
            .contains("hint: the build could not verify a server's TLS certificate"),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("Set `host_ca = true` under `[container]`"),
        "{run}"
    );
    assert!(!run.stderr.contains("a package name or version?"), "{run}");

    // With it, both steps that fetch trust the host's bundle (apt too, which
    // is told through its own option).
    let toml = recipe_repo_toml(&build("host_ca = true", "apt = [\"jq\"]"));
    write(&repo.join("devinst.toml"), &toml);
    let started = std::time::Instant::now();
    let run = env.run(&repo, &["build"]);
    images.track(&run);
    let run = run.ok();
    eprintln!("build with host_ca: {:?}", started.elapsed());
    let tag = run.stdout.trim().to_owned();
    assert!(tag.starts_with("devinst-build/"), "{run}");
    assert!(run.stderr.contains("trust the host's CA bundle"), "{run}");
    // The step's command line is shown cut, not with the whole bundle.
    assert!(run.stderr.contains("more characters)"), "{run}");
    assert!(!run.stderr.contains(&base.host_only_line), "{run}");
    let inside = |script: &str| docker_out(&["run", "--rm", &tag, "sh", "-c", script]);
    assert_eq!(
        inside("python3 -c 'import six; print(six.__version__)'"),
        "1.16.0\n"
    );
    assert!(inside("jq --version").starts_with("jq-"));

    // What the image holds: no copy of the host's bundle in any file, not in
    // the filesystem a container sees and not in any layer the build added,
    // and no variable pointing at one.
    let found = inside(&format!(
        "ls -A /tmp; grep -rlF -e '{}' /etc /tmp /root /usr/local /var /opt; env | grep -E 'CERT|CA_BUNDLE'; true",
        base.host_only_line
    ));
    assert_eq!(found, "", "left in the image");
    let holding = added_layers_holding(&tag, &base.tag, &base.host_only_line, env.tmp.path());
    assert!(
        holding.is_empty(),
        "layers {holding:?} of {tag} hold the host's certificate"
    );
    // What the docs say stays: the steps' command lines, in the history.
    let history = docker_out(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &tag]);
    let carrying = history
        .split("/bin/sh -c ")
        .filter(|step| step.contains(&base.host_only_line))
        .count();
    assert_eq!(
        carrying, 2,
        "the apt and pip steps' command lines\n{history}"
    );

    // The same recipe and the same bundle: the same tag, built once.
    let again = env.run(&repo, &["build"]).ok();
    assert_eq!(again.stdout.trim(), tag);
    assert!(again.stderr.contains("cached"), "{again}");
}

/// The recipe file `recipe_repo` writes, for a later rewrite.
fn recipe_repo_toml(build: &str) -> String {
    format!("{build}\n[ports]\nhost_range = [47520, 47529]\n")
}

#[test]
fn doctor_says_when_the_image_lacks_a_ca_the_host_trusts() {
    let base = StockCaBase::build("doctor");
    let env = TestEnv::new();
    let repo = env.repo("doctorca");
    let doctor = |container: &str| -> (String, Run) {
        write(
            &repo.join("devinst.toml"),
            &format!("[container]\n{container}\n"),
        );
        let run = env.run(&repo, &["doctor"]);
        let mut rows = run
            .stdout
            .lines()
            .skip_while(|l| l.split_whitespace().nth(1) != Some("ca"));
        let row = rows
            .next()
            .unwrap_or_else(|| panic!("no `ca` check\n{run}"));
        let fix = rows.next().filter(|l| l.trim_start().starts_with("fix:"));
        let row = format!("{row}\n{}", fix.unwrap_or_default());
        (row, run)
    };
    let before: Vec<String> = docker_out(&["ps", "-aq"])
        .lines()
        .map(str::to_owned)
        .collect();

    let (row, run) = doctor(&format!("image = \"{}\"", base.tag));
    assert_eq!(run.code, 0, "a problem, not a blocking one\n{run}");
    assert!(row.starts_with("problem  ca"), "{row}");
    assert!(
        row.contains(&format!("certificates that image `{}` lacks", base.tag))
            || row.contains(&format!("certificate that image `{}` lacks", base.tag)),
        "{row}"
    );
    assert!(
        row.contains("fix: set `host_ca = true` under `[container]`"),
        "{row}"
    );

    // The test image trusts what the host does (test-env gave it the bundle).
    let (row, _) = doctor(&format!("image = \"{PYTHON_IMAGE}\""));
    assert!(
        row.starts_with("ok       ca") && row.contains("trusts all"),
        "{row}"
    );

    // Nothing is pulled to compare.
    let (row, _) = doctor("image = \"devinst-test/not-here:1\"");
    assert!(
        row.starts_with("ok") && row.contains("not compared"),
        "{row}"
    );
    assert!(row.contains("not present"), "{row}");

    // With host_ca on, there is nothing to compare.
    let (row, _) = doctor(&format!("image = \"{}\"\nhost_ca = true", base.tag));
    assert!(
        row.starts_with("ok") && row.contains("`host_ca` is on"),
        "{row}"
    );

    // The image's bundle was read from a container that is gone again.
    let after: Vec<String> =
        docker_out(&["ps", "-aq", "--filter", &format!("ancestor={}", base.tag)])
            .lines()
            .map(str::to_owned)
            .filter(|id| !before.contains(id))
            .collect();
    assert!(after.is_empty(), "left behind: {after:?}");
}

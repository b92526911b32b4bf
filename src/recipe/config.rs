//! `devinst.toml`: the project's instance recipe. Every key is optional; what
//! is left out takes the SkyPilot multi-instance defaults (see `settings::defaults`).
//! Unknown keys and wrong types are errors that name the file, line and key.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path};

pub const FILE_NAME: &str = "devinst.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub container: ContainerConfig,
    #[serde(default)]
    pub ports: PortsConfig,
    #[serde(default)]
    pub mounts: MountsConfig,
    #[serde(default)]
    pub credentials: CredentialsConfig,
    #[serde(default)]
    pub env: EnvConfig,
    /// Replaces the default shims when present.
    pub shims: Option<BTreeMap<String, CommandLine>>,
    #[serde(default)]
    pub setup: SetupConfig,
    #[serde(default)]
    pub engine: EngineConfig,
    #[serde(default)]
    pub tiers: BTreeMap<String, Limits>,
    /// Containers beside the instance (a database, object storage), by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub snapshots: SnapshotsConfig,
}

/// `[snapshots]`: where `snapshot push` and `pull` go without `--to`/`--from`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// `s3://bucket/prefix`, `file:///dir` or a directory.
    pub store: Option<String>,
    /// The S3 endpoint (`http://127.0.0.1:9000` for a MinIO), where
    /// `AWS_ENDPOINT_URL` does not say.
    pub endpoint: Option<String>,
}

/// `[cluster]`: several nodes forming one cluster (the head is the instance's
/// own container).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// How many containers the instance is, the head included.
    pub nodes: Option<i64>,
    /// Where the setup steps run: `"head"` (the default) or `"all"`.
    pub setup: Option<ClusterSetup>,
}

/// Where the setup steps run in a cluster.
#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterSetup {
    #[default]
    Head,
    All,
}

/// `[services.NAME]`: one container beside the instance.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    /// The port the service listens on inside; published on a host port.
    pub port: Option<i64>,
    /// A directory inside kept in `.sky-dev/services/NAME/` on the host.
    pub data: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    pub image: Option<String>,
    /// An image recipe built locally instead of `image` (`[container.build]`).
    pub build: Option<BuildConfig>,
    pub name_prefix: Option<String>,
    pub hostname: Option<String>,
    /// Where the worktree is mounted, and the working directory.
    pub workdir: Option<String>,
    /// The keep-alive process the container runs.
    pub command: Option<Vec<String>>,
    pub user: Option<String>,
    pub runtime: Option<String>,
    pub network: Option<String>,
    /// Run an init process as PID 1 (reaps zombies, forwards signals).
    pub init: Option<bool>,
    /// Mount the host's CA bundle and point common tools at it.
    pub host_ca: Option<bool>,
    pub cpus: Option<f64>,
    pub memory: Option<String>,
    pub pids: Option<i64>,
    /// GPUs for the container, as `docker run --gpus`: `"all"` or a count.
    pub gpus: Option<GpusConfig>,
}

/// `[container] gpus`: `"all"` or a number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum GpusConfig {
    Count(i64),
    Word(String),
}

impl ContainerConfig {
    pub fn limits(&self) -> Limits {
        Limits {
            cpus: self.cpus,
            memory: self.memory.clone(),
            pids: self.pids,
        }
    }
}

/// `[container.build]`: the image is built from `base` with these additions,
/// once per distinct recipe (see `image::ImageRecipe`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    pub base: String,
    /// Debian/Ubuntu packages, installed with apt-get.
    pub apt: Option<Vec<String>>,
    /// Python requirements, installed with `python3 -m pip`.
    pub pip: Option<Vec<String>>,
    /// Variables set in the image.
    pub env: Option<BTreeMap<String, String>>,
    /// Worktree files or directories copied into the image.
    pub include: Option<Vec<IncludeConfig>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncludeConfig {
    /// A path relative to the worktree root.
    pub source: String,
    /// An absolute path inside the image.
    pub target: String,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub cpus: Option<f64>,
    pub memory: Option<String>,
    pub pids: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortsConfig {
    /// The port the service listens on inside the container.
    pub container: Option<u16>,
    /// The host ports instances are given, inclusive: `[first, last]`.
    pub host_range: Option<[u16; 2]>,
    /// The host address the port is published on.
    pub bind: Option<String>,
    /// `[ports.extra]`: more ports inside, by name, each published on a
    /// host port of its own.
    pub extra: Option<BTreeMap<String, u16>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountsConfig {
    /// Where `.sky-dev/state` appears inside the container.
    pub state: Option<String>,
    /// Where `.sky-dev/sky_logs` appears inside the container.
    pub logs: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Host directories, `~/`-relative or absolute, mounted read-only.
    pub paths: Option<Vec<String>>,
    /// Where the host's `~` maps to inside the container.
    pub home: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// Host variables passed to every command, by name or `PREFIX*` pattern.
    pub pass: Option<Vec<String>>,
    /// Fixed values set in the container.
    pub set: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupConfig {
    /// Shell commands `start` runs inside; `[]` means none.
    pub commands: Option<Vec<String>>,
    /// Worktree files whose content, when changed, makes the steps run again.
    pub inputs: Option<Vec<WorktreePath>>,
    /// Worktree paths the steps create; when one is missing they run again.
    pub outputs: Option<Vec<WorktreePath>>,
    /// Start a new worktree's instance from a sibling's finished steps
    /// (default true).
    pub warm: Option<bool>,
}

/// A path inside the worktree, relative to its root, with no `..`: refused
/// as the file is read, so the error names its line.
#[derive(Debug, Clone, PartialEq)]
pub struct WorktreePath(pub String);

impl<'de> Deserialize<'de> for WorktreePath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut parts = Path::new(&text).components().peekable();
        let inside = parts.peek().is_some()
            && parts.all(|part| matches!(part, Component::Normal(_) | Component::CurDir))
            && Path::new(&text)
                .components()
                .any(|part| matches!(part, Component::Normal(_)));
        if !inside {
            return Err(serde::de::Error::custom(format!(
                "`{text}` is not a path inside the worktree: give it relative to the worktree's root, with no `..`"
            )));
        }
        Ok(WorktreePath(text))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// The engine endpoint, as in `DOCKER_HOST` (`unix:///...`, `tcp://...`).
    pub host: Option<String>,
}

/// A command inside the container: a program path, or a program and fixed
/// leading arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    Program(String),
    Argv(Vec<String>),
}

impl CommandLine {
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Program(program) => vec![program.clone()],
            CommandLine::Argv(argv) => argv.clone(),
        }
    }
}

impl Config {
    /// Reads `devinst.toml` from `root`; a missing file is the empty recipe.
    pub fn load(root: &Path) -> Result<Config> {
        let path = root.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read `{}`", path.display()))
            }
        };
        Config::parse(&text).with_context(|| format!("invalid `{}`", path.display()))
    }

    /// Parses a recipe. Errors carry toml's line, column and excerpt, and the
    /// dotted path of the key (`ports.container`), which toml alone names only
    /// in the excerpt.
    pub fn parse(text: &str) -> Result<Config> {
        Config::parse_as(text)
    }

    /// Parses any TOML file of devinst's (the recipe, the user's config) with
    /// the same errors.
    pub fn parse_as<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
        let deserializer = toml::de::Deserializer::parse(text)?;
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            match path.as_str() {
                "." | "" => anyhow::Error::new(inner),
                _ => anyhow::Error::new(inner).context(format!("in the key `{path}`")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_recipe() {
        let config = Config::parse("").unwrap();
        assert!(config.container.image.is_none());
        assert!(config.shims.is_none());
    }

    #[test]
    fn public_keys_parse() {
        let config = Config::parse(
            r#"
            [container]
            image = "debian:12"
            cpus = 0.5
            memory = "512m"
            [shims]
            sky = "/app/.sky-dev/venv/bin/sky"
            py = ["python3", "-u"]
            [setup]
            commands = []
            [tiers.small]
            cpus = 1.0
            [services.db]
            image = "busybox"
            command = ["httpd", "-f"]
            env = { PASSWORD = "dev" }
            port = 5432
            data = "/var/lib/data"
            "#,
        )
        .unwrap();
        assert_eq!(config.container.image.as_deref(), Some("debian:12"));
        assert_eq!(config.container.cpus, Some(0.5));
        let shims = config.shims.unwrap();
        assert_eq!(shims["sky"].argv(), ["/app/.sky-dev/venv/bin/sky"]);
        assert_eq!(shims["py"].argv(), ["python3", "-u"]);
        assert_eq!(config.setup.commands, Some(vec![]));
        assert_eq!(config.tiers["small"].cpus, Some(1.0));
        let db = &config.services["db"];
        assert_eq!(db.image.as_deref(), Some("busybox"));
        assert_eq!(db.port, Some(5432));
        assert_eq!(db.env.as_ref().unwrap()["PASSWORD"], "dev");
        assert_eq!(db.data.as_deref(), Some("/var/lib/data"));
    }

    #[test]
    fn build_table_parses_and_needs_a_base() {
        let config = Config::parse(
            r#"
            [container.build]
            base = "ubuntu:22.04"
            apt = ["jq"]
            env = { FOO = "bar" }
            include = [{ source = "tools/x.sh", target = "/opt/x.sh" }]
            "#,
        )
        .unwrap();
        let build = config.container.build.unwrap();
        assert_eq!(build.base, "ubuntu:22.04");
        assert_eq!(build.apt.unwrap(), ["jq"]);
        assert_eq!(build.include.unwrap()[0].target, "/opt/x.sh");
        let err = Config::parse("[container.build]\napt = [\"jq\"]\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("base") && text.contains("container.build"),
            "{text}"
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = Config::parse("[container]\nimage = \"x\"\nimgae = \"y\"\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("line 3"), "{text}");
        assert!(text.contains("imgae"), "{text}");
    }

    #[test]
    fn setup_paths_stay_inside_the_worktree() {
        for bad in ["/dev/zero", "../../etc/shadow", "a/../../b", "", ".", "/"] {
            let text = format!("[setup]\ncommands = []\ninputs = [\"ok\", {bad:?}]\n");
            let err = format!("{:#}", Config::parse(&text).unwrap_err());
            assert!(err.contains("line 3"), "{bad}: {err}");
            assert!(err.contains("setup.inputs"), "{bad}: {err}");
            assert!(
                err.contains("not a path inside the worktree"),
                "{bad}: {err}"
            );
            let text = format!("[setup]\noutputs = [{bad:?}]\n");
            assert!(Config::parse(&text).is_err(), "{bad}");
        }
        let config = Config::parse("[setup]\ninputs = [\"a/b.txt\", \"./c\"]\n").unwrap();
        let inputs = config.setup.inputs.unwrap();
        assert_eq!(
            inputs,
            [WorktreePath("a/b.txt".into()), WorktreePath("./c".into())]
        );
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let err = Config::parse("[ports]\ncontainer = \"eighty\"\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("container"), "{text}");
    }
}

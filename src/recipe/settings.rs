//! `devinst.toml` and the defaults resolved into one validated struct: the only
//! view of the recipe the commands see. The defaults are SkyPilot's
//! multi-instance setup.

use crate::recipe::config::{CommandLine, Config, Limits, ServiceConfig};
use crate::recipe::image::ImageRecipe;
use crate::recipe::validate::validate_env_name;
use crate::support::error::WithHint;
/// Kept at this path for the callers that name it here.
pub use crate::support::text::list_or_none;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

pub const DEFAULT_IMAGE: &str = "ubuntu:22.04";
pub const DEFAULT_PREFIX: &str = "skypilot-dev";
pub const DEFAULT_WORKDIR: &str = "/app";
pub const DEFAULT_CONTAINER_PORT: u16 = 46580;
pub const DEFAULT_HOST_RANGE: [u16; 2] = [46501, 46599];
pub const DEFAULT_CREDENTIALS: &[&str] = &[
    "~/.aws",
    "~/.azure",
    "~/.config/gcloud",
    "~/.kube",
    "~/.ssh",
];
pub const DEFAULT_ENV_PASS: &[&str] = &[
    "SKYPILOT_*",
    "SKY_*",
    "AWS_*",
    "AZURE_*",
    "GOOGLE_*",
    "GCP_*",
    "CLOUDSDK_*",
    "KUBE*",
    "KUBERNETES_*",
    "DOCKER_*",
    "GIT_*",
    "RAY_*",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "LANG",
    "LC_*",
    "TZ",
];
pub const DEFAULT_SETUP_INPUTS: &[&str] = &[
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements.txt",
];

/// HOME inside the container when commands run as the worktree's owner
/// (`user = "host"`): `/root` is neither theirs nor writable to them.
pub const HOST_USER_HOME: &str = "/home/devinst";

/// Who commands in the container run as.
#[derive(Debug, Clone, PartialEq)]
pub enum User {
    /// The image's own user: root in the seed's image, the default.
    Image,
    /// `user = "host"`: the worktree owner's uid:gid, so files made inside
    /// belong to them on the host.
    Host,
    /// A user as the engine takes it: `name`, `uid` or `uid:gid`.
    Named(String),
}

impl User {
    fn parse(text: Option<String>) -> User {
        match text {
            None => User::Image,
            Some(text) if text == "host" => User::Host,
            Some(text) => User::Named(text),
        }
    }

    /// The user an exec asks for. `Host` asks for none: the exec then runs as
    /// the container's own user, which `start` resolved from the worktree's
    /// owner (and the engine's user mapping) when it created the container.
    pub fn for_exec(&self) -> Option<String> {
        match self {
            User::Named(name) => Some(name.clone()),
            User::Image | User::Host => None,
        }
    }
}

/// A service name becomes a container name suffix, a network alias (a host
/// name) and part of an environment variable name, so it stays short.
pub const MAX_SERVICE_NAME: usize = 20;

/// `[services.NAME]`, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub image: String,
    /// `None` runs the image's own command.
    pub command: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// The port it listens on inside, published on a host port of its own.
    pub port: Option<u16>,
    /// A directory inside kept on the host.
    pub data: Option<String>,
}

impl Service {
    /// The stem of its variables: `db-main` -> `DEVINST_SERVICE_DB_MAIN`.
    pub fn env_stem(&self) -> String {
        service_env_stem(&self.name)
    }
}

pub fn service_env_stem(name: &str) -> String {
    format!(
        "DEVINST_SERVICE_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Names under `.sky-dev/bin/` that devinst writes itself.
const RESERVED_SHIMS: &[&str] = &["activate", "start-container", "stop-container"];

#[derive(Debug, Clone)]
pub struct Settings {
    /// The image to pull; with `[container.build]`, the recipe's base (the
    /// container then runs the image built from `build`, whose tag depends on
    /// the included files and so is known only once they are read).
    pub image: String,
    pub build: Option<ImageRecipe>,
    pub name_prefix: String,
    pub hostname: Option<String>,
    pub workdir: String,
    pub command: Vec<String>,
    pub user: User,
    pub runtime: Option<String>,
    pub network: Option<String>,
    pub init: bool,
    pub host_ca: bool,
    pub limits: Limits,
    pub container_port: u16,
    pub host_range: RangeInclusive<u16>,
    pub bind: String,
    pub state_mount: String,
    pub logs_mount: String,
    pub credential_paths: Vec<String>,
    pub credential_home: String,
    pub env_pass: Vec<String>,
    pub env_set: BTreeMap<String, String>,
    pub shims: BTreeMap<String, Vec<String>>,
    pub setup_commands: Vec<String>,
    pub setup_inputs: Vec<String>,
    pub setup_outputs: Vec<String>,
    pub engine_host: Option<String>,
    pub tiers: BTreeMap<String, Limits>,
    pub services: BTreeMap<String, Service>,
}

impl Settings {
    /// Loads `devinst.toml` from the worktree `root` and resolves it.
    pub fn load(root: &Path) -> Result<Settings> {
        let config = Config::load(root)?;
        Settings::resolve(config).with_context(|| {
            format!(
                "invalid `{}`",
                root.join(crate::recipe::config::FILE_NAME).display()
            )
        })
    }

    pub fn resolve(config: Config) -> Result<Settings> {
        let mut c = config.container;
        if c.image.is_some() && c.build.is_some() {
            bail!(
                "`[container] image` and `[container.build]` are both set; \
                 the container runs one image: remove `image` to build from the recipe, or the table to pull `image`"
            );
        }
        let build = c.build.take().map(ImageRecipe::from_config).transpose()?;
        let workdir = c
            .workdir
            .clone()
            .unwrap_or_else(|| DEFAULT_WORKDIR.to_owned());
        let venv = format!("{workdir}/.sky-dev/venv");
        let limits = c.limits();
        let user = User::parse(c.user.clone());
        // Running as the host's user, the state, logs and credentials go
        // under a HOME that user can write, unless the recipe placed them.
        let home = match user {
            User::Host => HOST_USER_HOME,
            _ => "/root",
        };
        let range = config.ports.host_range.unwrap_or(DEFAULT_HOST_RANGE);
        let settings =
            Settings {
                image: match &build {
                    Some(recipe) => recipe.base.clone(),
                    None => c.image.unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
                },
                build,
                name_prefix: c.name_prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
                hostname: c.hostname,
                command: c
                    .command
                    .unwrap_or_else(|| vec!["sleep".to_owned(), "infinity".to_owned()]),
                user,
                runtime: c.runtime,
                network: c.network,
                init: c.init.unwrap_or(true),
                host_ca: c.host_ca.unwrap_or(false),
                limits,
                container_port: config.ports.container.unwrap_or(DEFAULT_CONTAINER_PORT),
                host_range: range[0]..=range[1],
                bind: config.ports.bind.unwrap_or_else(|| "127.0.0.1".to_owned()),
                state_mount: config
                    .mounts
                    .state
                    .unwrap_or_else(|| format!("{home}/.sky")),
                logs_mount: config
                    .mounts
                    .logs
                    .unwrap_or_else(|| format!("{home}/sky_logs")),
                credential_paths: config
                    .credentials
                    .paths
                    .unwrap_or_else(|| strings(DEFAULT_CREDENTIALS)),
                credential_home: config.credentials.home.unwrap_or_else(|| home.to_owned()),
                env_pass: config.env.pass.unwrap_or_else(|| strings(DEFAULT_ENV_PASS)),
                env_set: config.env.set.unwrap_or_else(|| {
                    BTreeMap::from([("SKYPILOT_DEV".to_owned(), "1".to_owned())])
                }),
                shims: match config.shims {
                    Some(shims) => shims
                        .into_iter()
                        .map(|(name, cmd)| (name, cmd.argv()))
                        .collect(),
                    None => BTreeMap::from([(
                        "sky".to_owned(),
                        CommandLine::Program(format!("{venv}/bin/sky")).argv(),
                    )]),
                },
                // The default outputs belong to the default steps: custom steps
                // name their own, or are judged by their inputs alone.
                setup_outputs: config.setup.outputs.unwrap_or_else(|| {
                    match config.setup.commands {
                        Some(_) => Vec::new(),
                        None => vec![".sky-dev/venv/bin/python".to_owned()],
                    }
                }),
                setup_commands: config
                    .setup
                    .commands
                    .unwrap_or_else(|| default_setup_commands(&workdir, &venv)),
                setup_inputs: config
                    .setup
                    .inputs
                    .unwrap_or_else(|| strings(DEFAULT_SETUP_INPUTS)),
                engine_host: config.engine.host,
                tiers: config.tiers,
                services: config
                    .services
                    .into_iter()
                    .map(|(name, c)| {
                        let hint = service_hint(&name);
                        Ok((name.clone(), resolve_service(name, c).hint(hint)?))
                    })
                    .collect::<Result<_>>()?,
                workdir,
            };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<()> {
        let (first, last) = (*self.host_range.start(), *self.host_range.end());
        if first == 0 || first > last {
            bail!("`[ports] host_range` must be [first, last] with 0 < first <= last, not [{first}, {last}]");
        }
        for (key, path) in [
            ("[container] workdir", &self.workdir),
            ("[mounts] state", &self.state_mount),
            ("[mounts] logs", &self.logs_mount),
            ("[credentials] home", &self.credential_home),
        ] {
            if !path.starts_with('/') {
                bail!("`{key}` must be an absolute path inside the container, not `{path}`");
            }
        }
        if self.image.trim().is_empty() {
            bail!("`[container] image` is empty");
        }
        if self.user == User::Named(String::new()) {
            bail!("`[container] user` is empty; leave it out for the image's user, or use `host`");
        }
        if self.command.is_empty() {
            bail!("`[container] command` is empty; it is the process that keeps the container running");
        }
        crate::support::names::validate_prefix(&self.name_prefix)
            .context("`[container] name_prefix`")?;
        for (name, argv) in &self.shims {
            validate_shim_name(name)?;
            if argv.is_empty() || argv[0].is_empty() {
                bail!("`[shims] {name}` names no command");
            }
        }
        for key in self.env_set.keys() {
            validate_env_name(key).with_context(|| format!("`[env] set` key `{key}`"))?;
        }
        validate_limits(&self.limits).context("`[container]`")?;
        for (tier, limits) in &self.tiers {
            validate_limits(limits).with_context(|| format!("`[tiers.{tier}]`"))?;
        }
        for service in self.services.values() {
            validate_service(service).hint(service_hint(&service.name))?;
        }
        if let Some(network) = self.network.as_ref().filter(|_| !self.services.is_empty()) {
            if is_engine_network_mode(network) {
                bail!(
                    "`[container] network = \"{network}\"` cannot carry services: they are found by name only on a network of their own; \
                     name one (`network = \"team-net\"`) or leave `network` out for the instance's private network"
                );
            }
        }
        Ok(())
    }

    /// Whether host variable `name` passes into commands run in the instance.
    pub fn passes_env(&self, name: &str) -> bool {
        self.env_pass
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == pattern,
            })
    }

    /// The resource limits in force: the tier's where one is chosen, each
    /// over the `[container]` value.
    pub fn limits_for(&self, tier: Option<&str>) -> Result<Limits> {
        let Some(tier) = tier else {
            return Ok(self.limits.clone());
        };
        let Some(t) = self.tiers.get(tier) else {
            let known: Vec<&str> = self.tiers.keys().map(String::as_str).collect();
            bail!(
                "unknown tier `{tier}`; `devinst.toml` defines: {}",
                list_or_none(&known)
            );
        };
        Ok(Limits {
            cpus: t.cpus.or(self.limits.cpus),
            memory: t.memory.clone().or_else(|| self.limits.memory.clone()),
            pids: t.pids.or(self.limits.pids),
        })
    }
}

/// Network modes the engine provides itself (Docker's and Podman's): an
/// instance joins them as they are, and devinst never creates them.
pub fn is_engine_network_mode(mode: &str) -> bool {
    matches!(
        mode,
        "default" | "bridge" | "host" | "none" | "private" | "slirp4netns" | "pasta"
    ) || mode.starts_with("container:")
        || mode.starts_with("ns:")
}

fn default_setup_commands(workdir: &str, venv: &str) -> Vec<String> {
    vec![
        "if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then \
         apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-pip python3-venv; fi"
            .to_owned(),
        format!("[ -x {venv}/bin/python ] || python3 -m venv {venv}"),
        format!("{venv}/bin/pip install -e {workdir}"),
    ]
}

fn service_hint(name: &str) -> String {
    format!("fix `[services.{name}]` in devinst.toml; the README's devinst.toml reference lists its keys")
}

fn resolve_service(name: String, c: ServiceConfig) -> Result<Service> {
    let port = match c.port {
        None => None,
        Some(port) => match u16::try_from(port) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                bail!("`[services.{name}] port` must be a port number from 1 to 65535, not {port}")
            }
        },
    };
    Ok(Service {
        image: c.image.unwrap_or_default(),
        command: c.command,
        env: c.env.unwrap_or_default(),
        port,
        data: c.data,
        name,
    })
}

fn validate_service(service: &Service) -> Result<()> {
    let name = &service.name;
    validate_service_name(name)?;
    if service.image.trim().is_empty() {
        bail!("`[services.{name}] image` is missing or empty; a service needs an image to run");
    }
    if service.command.as_ref().is_some_and(|c| c.is_empty()) {
        bail!("`[services.{name}] command` is empty; leave it out to run the image's own command");
    }
    if let Some(data) = &service.data {
        if !data.starts_with('/') {
            bail!("`[services.{name}] data` must be an absolute path inside the service, not `{data}`");
        }
    }
    for key in service.env.keys() {
        validate_env_name(key).with_context(|| format!("`[services.{name}] env` key `{key}`"))?;
    }
    Ok(())
}

/// Lowercase letters, digits and `-`, as instance names but without `_` and
/// `.`: it is a host name on the network, and maps back from its variable name.
fn validate_service_name(name: &str) -> Result<()> {
    let ok = name.len() <= MAX_SERVICE_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "`[services.{name}]`: a service name is lowercase letters, digits and `-`, \
             at most {MAX_SERVICE_NAME} characters, starting with a letter or digit"
        );
    }
    Ok(())
}

fn validate_shim_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("`[shims] {name}`: a shim name is a file name of letters, digits, `-`, `_` and `.`");
    }
    if RESERVED_SHIMS.contains(&name) {
        bail!("`[shims] {name}`: that name is devinst's own script");
    }
    Ok(())
}

fn validate_limits(limits: &Limits) -> Result<()> {
    if let Some(cpus) = limits.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            bail!("`cpus` must be a positive number, not {cpus}");
        }
    }
    if let Some(memory) = &limits.memory {
        parse_memory(memory).context("`memory`")?;
    }
    if let Some(pids) = limits.pids {
        if pids <= 0 {
            bail!("`pids` must be positive, not {pids}");
        }
    }
    Ok(())
}

/// Parses Docker's memory notation: a number of bytes, or with `k`, `m`, `g`
/// (optionally followed by `b`), case-insensitive.
pub fn parse_memory(text: &str) -> Result<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (number, scale) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1i64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        Some((i, 't')) => (&lower[..i], 1 << 40),
        _ => (lower, 1),
    };
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| *v > 0.0 && v.is_finite())
        .with_context(|| format!("`{text}` is not a size like `512m` or `2g`"))?;
    Ok((value * scale as f64) as i64)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Settings> {
        Settings::resolve(Config::parse(text)?)
    }

    #[test]
    fn defaults_are_skypilots() {
        let s = resolve("").unwrap();
        assert_eq!(s.image, "ubuntu:22.04");
        assert_eq!(s.name_prefix, "skypilot-dev");
        assert_eq!(s.container_port, 46580);
        assert_eq!(s.host_range, 46501..=46599);
        assert_eq!(s.bind, "127.0.0.1");
        assert_eq!(s.state_mount, "/root/.sky");
        assert_eq!(s.logs_mount, "/root/sky_logs");
        assert_eq!(s.shims["sky"], ["/app/.sky-dev/venv/bin/sky"]);
        assert_eq!(s.env_set["SKYPILOT_DEV"], "1");
        assert!(s
            .setup_commands
            .last()
            .unwrap()
            .contains("pip install -e /app"));
    }

    #[test]
    fn shims_and_setup_replace_the_defaults() {
        let s = resolve("[shims]\nhello = [\"echo\", \"hi\"]\n[setup]\ncommands = []\n").unwrap();
        assert_eq!(s.shims.len(), 1);
        assert_eq!(s.shims["hello"], ["echo", "hi"]);
        assert!(s.setup_commands.is_empty());
    }

    #[test]
    fn bad_values_are_refused_with_their_key() {
        for (text, key) in [
            ("[ports]\nhost_range = [5, 1]\n", "host_range"),
            ("[container]\nworkdir = \"app\"\n", "workdir"),
            ("[shims]\n\"../x\" = \"y\"\n", "../x"),
            ("[shims]\nactivate = \"y\"\n", "activate"),
            ("[container]\nmemory = \"lots\"\n", "memory"),
            ("[container]\ncpus = 0.0\n", "cpus"),
            ("[env.set]\n\"A-B\" = \"1\"\n", "A-B"),
            ("[container]\nname_prefix = \"Bad Prefix\"\n", "name_prefix"),
            (
                "[container]\nimage = \"x\"\n[container.build]\nbase = \"y\"\n",
                "`[container] image` and `[container.build]`",
            ),
            (
                "[container.build]\nbase = \"y\"\napt = [\"-y\"]\n",
                "[container.build] apt",
            ),
            ("[services.db]\nport = 5432\n", "[services.db] image"),
            (
                "[services.db]\nimage = \"x\"\nport = 0\n",
                "[services.db] port",
            ),
            (
                "[services.db]\nimage = \"x\"\nport = 70000\n",
                "[services.db] port",
            ),
            (
                "[services.db]\nimage = \"x\"\ndata = \"rel\"\n",
                "[services.db] data",
            ),
            ("[services.Db]\nimage = \"x\"\n", "[services.Db]"),
            ("[services.db_1]\nimage = \"x\"\n", "[services.db_1]"),
            (
                "[services.a-very-long-service-name]\nimage = \"x\"\n",
                "a-very-long",
            ),
            (
                "[services.db]\nimage = \"x\"\ncommand = []\n",
                "[services.db] command",
            ),
        ] {
            let err = format!("{:#}", resolve(text).unwrap_err());
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn services_resolve_with_their_env_stem() {
        let s = resolve("[services.db-main]\nimage = \"x\"\nport = 5432\n").unwrap();
        let db = &s.services["db-main"];
        assert_eq!(db.port, Some(5432));
        assert_eq!(db.command, None);
        assert_eq!(db.env_stem(), "DEVINST_SERVICE_DB_MAIN");
        assert!(resolve("").unwrap().services.is_empty());
    }

    #[test]
    fn env_patterns_match_by_prefix_or_name() {
        let s = resolve("[env]\npass = [\"AWS_*\", \"TERM_PROGRAM\"]\n").unwrap();
        assert!(s.passes_env("AWS_PROFILE"));
        assert!(s.passes_env("TERM_PROGRAM"));
        assert!(!s.passes_env("TERM"));
        assert!(!s.passes_env("HOME"));
    }

    #[test]
    fn memory_sizes_parse_like_docker() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("2g").unwrap(), 2 << 30);
        assert_eq!(parse_memory("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_memory("1024").unwrap(), 1024);
        assert!(parse_memory("-1g").is_err());
    }

    #[test]
    fn host_user_moves_the_default_mounts_under_a_home_it_can_write() {
        let s = resolve("[container]\nuser = \"host\"\n").unwrap();
        assert_eq!(s.user, User::Host);
        assert_eq!(s.state_mount, "/home/devinst/.sky");
        assert_eq!(s.logs_mount, "/home/devinst/sky_logs");
        assert_eq!(s.credential_home, "/home/devinst");
        assert_eq!(s.user.for_exec(), None, "the container's own user");
        // What the recipe placed stays put.
        let s = resolve("[container]\nuser = \"host\"\n[mounts]\nstate = \"/data\"\n").unwrap();
        assert_eq!(s.state_mount, "/data");
        let s = resolve("[container]\nuser = \"1000:1000\"\n").unwrap();
        assert_eq!(s.user.for_exec().as_deref(), Some("1000:1000"));
        assert_eq!(s.state_mount, "/root/.sky");
        assert_eq!(resolve("").unwrap().user, User::Image);
        assert!(resolve("[container]\nuser = \"\"\n").is_err());
    }

    #[test]
    fn engine_network_modes_are_known() {
        for mode in [
            "bridge",
            "host",
            "none",
            "default",
            "pasta",
            "container:db",
            "ns:/x",
        ] {
            assert!(is_engine_network_mode(mode), "{mode}");
        }
        assert!(!is_engine_network_mode("team-net"));
    }

    #[test]
    fn tiers_override_container_limits() {
        let s = resolve("[container]\ncpus = 2.0\nmemory = \"4g\"\n[tiers.small]\ncpus = 0.5\n")
            .unwrap();
        let limits = s.limits_for(Some("small")).unwrap();
        assert_eq!(limits.cpus, Some(0.5));
        assert_eq!(limits.memory.as_deref(), Some("4g"));
        assert!(s
            .limits_for(Some("huge"))
            .unwrap_err()
            .to_string()
            .contains("small"));
    }
}

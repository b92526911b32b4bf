//! `devinst.toml` and the defaults resolved into one validated struct: the only
//! view of the recipe the commands see. The defaults are SkyPilot's
//! multi-instance setup.

mod defaults;
mod limits;
mod ports;
mod service;
mod user;
mod validate;

/// Kept at this path for the callers that name it here.
pub use limits::parse_memory;
pub use ports::{port_env_name, port_name_of_env};
pub use service::{service_env_stem, Service};
pub use user::{User, HOST_USER_HOME};
pub use validate::is_engine_network_mode;

use crate::recipe::config::{
    BuildConfig, ClusterSetup, CommandLine, Config, Limits, SetupConfig, WorktreePath,
};
use crate::recipe::image::ImageRecipe;
use crate::recipe::user_config::UserConfig;
use anyhow::{bail, Context, Result};
pub use defaults::{DEFAULT_BIND, DEFAULT_CREDENTIALS, DEFAULT_ENV_PASS};
use defaults::{
    DEFAULT_CONTAINER_PORT, DEFAULT_HOST_RANGE, DEFAULT_IMAGE, DEFAULT_PREFIX,
    DEFAULT_SETUP_INPUTS, DEFAULT_WORKDIR,
};
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

/// The variables `host_ca` points at the host's CA bundle, in the instance
/// and in the build steps that fetch (apt also gets `Acquire::https::CAInfo`).
pub const HOST_CA_VARIABLES: [&str; 5] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
];

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
    /// `[ports.extra]`: ports inside by name, each published on a host port
    /// of its own.
    pub extra_ports: BTreeMap<String, u16>,
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
    /// `[setup] warm`: a new container may start from a sibling instance's
    /// finished setup steps.
    pub setup_warm: bool,
    /// `[engine] host` in the recipe (the user's own endpoint is in `user_config`).
    pub engine_host: Option<String>,
    /// The user's own config: what it adds to every instance, and what a
    /// recipe may ask for without the user's consent.
    pub user_config: UserConfig,
    /// What the user's config overrode in the recipe, for `setup` and `start` to say.
    pub overridden: Vec<String>,
    pub tiers: BTreeMap<String, Limits>,
    pub services: BTreeMap<String, Service>,
    /// `[cluster] nodes`: how many containers the instance is (1: just the
    /// head, as without `[cluster]`).
    pub nodes: u16,
    /// `[container] gpus`: how many GPUs each container asks the engine for,
    /// -1 for all of them.
    pub gpus: Option<i64>,
    /// `[snapshots]` of the user's config, else of the recipe.
    pub snapshot_store: Option<String>,
    pub snapshot_endpoint: Option<String>,
    /// The recipe's own `[snapshots]`, which a user's store beats and which
    /// needs consent when it is used.
    pub recipe_snapshots: crate::recipe::config::SnapshotsConfig,
    /// `[cluster] setup = "all"`: the setup steps run on every node, not
    /// only on the head.
    pub setup_on_every_node: bool,
}

/// The most nodes a `[cluster]` may have: each is a whole container on one
/// machine.
pub const MAX_NODES: u16 = 16;

impl Settings {
    /// Loads `devinst.toml` from the worktree `root` and resolves it under
    /// the user's own config, for the worktree's owner (one `stat`: this is
    /// on every shim's path).
    pub fn load(root: &Path) -> Result<Settings> {
        use std::os::unix::fs::MetadataExt;
        let config = Config::load(root)?;
        let user = UserConfig::load()?;
        let owned_by_root = std::fs::metadata(root).map_or(true, |m| m.uid() == 0);
        Settings::resolve_with(config, user, owned_by_root).with_context(|| {
            format!(
                "invalid `{}`",
                root.join(crate::recipe::config::FILE_NAME).display()
            )
        })
    }

    /// [`Settings::resolve_with`] for a worktree root owns, without a user
    /// config.
    pub fn resolve(config: Config) -> Result<Settings> {
        Settings::resolve_with(config, UserConfig::default(), true)
    }

    /// [`Settings::resolve_with`] without a user config.
    #[cfg(test)]
    pub fn resolve_owned(config: Config, owned_by_root: bool) -> Result<Settings> {
        Settings::resolve_with(config, UserConfig::default(), owned_by_root)
    }

    /// Each key's value or its default, then the checks on the whole, under
    /// the user's config, whose word wins: its runtime replaces the recipe's,
    /// its credential paths and variables are added to the recipe's (or the
    /// defaults). Who owns the worktree decides who commands run as when the
    /// recipe does not say ([`User::Owner`]).
    pub fn resolve_with(config: Config, mine: UserConfig, owned_by_root: bool) -> Result<Settings> {
        let c = config.container;
        let limits = c.limits();
        let gpus = resolve_gpus(c.gpus.clone())?;
        let (runtime, overridden) = user_runtime(c.runtime, &mine);
        let (image, build) = image_or_build(c.image, c.build)?;
        let workdir = c.workdir.unwrap_or_else(|| DEFAULT_WORKDIR.to_owned());
        let venv = defaults::venv(&workdir);
        let user = User::parse(c.user, owned_by_root);
        // Running as the host's user, the state, logs and credentials go
        // under a HOME that user can write, unless the recipe placed them.
        let home = user.default_home();
        let range = config.ports.host_range.unwrap_or(DEFAULT_HOST_RANGE);
        let (mounts, credentials, env) = (config.mounts, config.credentials, config.env);
        let setup_warm = config.setup.warm.unwrap_or(true);
        let (setup_commands, setup_inputs, setup_outputs) =
            resolve_setup(config.setup, &workdir, &venv);
        // The user's store beats the recipe's, as their engine does.
        let snapshot_store = mine
            .snapshots
            .store
            .clone()
            .or(config.snapshots.store.clone());
        let snapshot_endpoint =
            (mine.snapshots.endpoint.clone()).or(config.snapshots.endpoint.clone());
        let settings = Settings {
            image,
            build,
            name_prefix: c.name_prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned()),
            hostname: c.hostname,
            command: c.command.unwrap_or_else(defaults::command),
            user,
            runtime,
            network: c.network,
            init: c.init.unwrap_or(true),
            host_ca: c.host_ca.unwrap_or(false),
            limits,
            container_port: config.ports.container.unwrap_or(DEFAULT_CONTAINER_PORT),
            host_range: range[0]..=range[1],
            bind: config.ports.bind.unwrap_or_else(|| DEFAULT_BIND.to_owned()),
            extra_ports: config.ports.extra.unwrap_or_default(),
            state_mount: mounts.state.unwrap_or_else(|| defaults::state_mount(home)),
            logs_mount: mounts.logs.unwrap_or_else(|| defaults::logs_mount(home)),
            credential_paths: with_users(
                or_strings(credentials.paths, DEFAULT_CREDENTIALS),
                &mine.credentials.paths,
            ),
            credential_home: credentials.home.unwrap_or_else(|| home.to_owned()),
            env_pass: with_users(or_strings(env.pass, DEFAULT_ENV_PASS), &mine.env.pass),
            env_set: env.set.unwrap_or_else(defaults::env_set),
            shims: resolve_shims(config.shims, &venv),
            setup_commands,
            setup_inputs,
            setup_outputs,
            setup_warm,
            engine_host: config.engine.host,
            user_config: mine,
            overridden,
            tiers: config.tiers,
            services: service::resolve_services(config.services)?,
            nodes: resolve_nodes(config.cluster.nodes)?,
            gpus,
            snapshot_store,
            snapshot_endpoint,
            recipe_snapshots: config.snapshots,
            setup_on_every_node: config.cluster.setup == Some(ClusterSetup::All),
            workdir,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Whether shim `name` running `argv` is one of the default shims, unchanged.
    pub fn is_default_shim(&self, name: &str, argv: &[String]) -> bool {
        defaults::shims(&defaults::venv(&self.workdir))
            .get(name)
            .is_some_and(|default| default == argv)
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

    /// Whether the credential directories are SkyPilot's defaults, mounted
    /// when they exist, rather than ones the recipe asks for.
    pub fn default_credentials(&self) -> bool {
        self.credential_paths == DEFAULT_CREDENTIALS
    }
}

/// `[container] gpus`: `"all"` is -1, as the engine counts; a count from 1.
fn resolve_gpus(gpus: Option<crate::recipe::config::GpusConfig>) -> Result<Option<i64>> {
    use crate::recipe::config::GpusConfig;
    match gpus {
        None => Ok(None),
        Some(GpusConfig::Word(word)) if word == "all" => Ok(Some(-1)),
        Some(GpusConfig::Count(n)) if (1..=64).contains(&n) => Ok(Some(n)),
        Some(GpusConfig::Word(word)) => {
            bail!("`[container] gpus` is `\"all\"` or a number of GPUs, not `\"{word}\"`")
        }
        Some(GpusConfig::Count(n)) => bail!("`[container] gpus` must be from 1 to 64, not {n}"),
    }
}

/// `[cluster] nodes`, 1 when left out.
fn resolve_nodes(nodes: Option<i64>) -> Result<u16> {
    match nodes {
        None => Ok(1),
        Some(n) if (1..=i64::from(MAX_NODES)).contains(&n) => Ok(n as u16),
        Some(n) => bail!("`[cluster] nodes` must be from 1 to {MAX_NODES}, not {n}"),
    }
}

/// The image the container starts from and, with `[container.build]`, the
/// recipe built on it: the two keys exclude each other.
fn image_or_build(
    image: Option<String>,
    build: Option<BuildConfig>,
) -> Result<(String, Option<ImageRecipe>)> {
    match (image, build) {
        (Some(_), Some(_)) => bail!(
            "`[container] image` and `[container.build]` are both set; \
             the container runs one image: remove `image` to build from the recipe, or the table to pull `image`"
        ),
        (_, Some(build)) => {
            let recipe = ImageRecipe::from_config(build)?;
            Ok((recipe.base.clone(), Some(recipe)))
        }
        (image, None) => Ok((image.unwrap_or_else(|| DEFAULT_IMAGE.to_owned()), None)),
    }
}

/// `[shims]` replaces the default shims when present.
fn resolve_shims(
    shims: Option<BTreeMap<String, CommandLine>>,
    venv: &str,
) -> BTreeMap<String, Vec<String>> {
    match shims {
        Some(shims) => shims
            .into_iter()
            .map(|(name, cmd)| (name, cmd.argv()))
            .collect(),
        None => defaults::shims(venv),
    }
}

/// `[setup]`: its commands, inputs and outputs, in that order.
fn resolve_setup(
    setup: SetupConfig,
    workdir: &str,
    venv: &str,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let paths = |paths: Vec<WorktreePath>| paths.into_iter().map(|p| p.0).collect();
    let outputs = setup
        .outputs
        .map(paths)
        .unwrap_or_else(|| defaults::setup_outputs(setup.commands.is_some()));
    let commands = setup
        .commands
        .unwrap_or_else(|| defaults::setup_commands(workdir, venv));
    let inputs = or_strings(setup.inputs.map(paths), DEFAULT_SETUP_INPUTS);
    (commands, inputs, outputs)
}

/// The user's required runtime replaces the recipe's, and says so when
/// they differ.
fn user_runtime(recipe: Option<String>, user: &UserConfig) -> (Option<String>, Vec<String>) {
    match (&user.container.runtime, recipe) {
        (Some(theirs), Some(asked)) if *theirs != asked => (
            Some(theirs.clone()),
            vec![format!(
                "`[container] runtime = \"{asked}\"` in devinst.toml is ignored: your config requires `runtime = \"{theirs}\"`"
            )],
        ),
        (Some(theirs), _) => (Some(theirs.clone()), Vec::new()),
        (None, recipe) => (recipe, Vec::new()),
    }
}

/// `list` with the user's own entries added after it, each once.
fn with_users(mut list: Vec<String>, users: &[String]) -> Vec<String> {
    for entry in users {
        if !list.contains(entry) {
            list.push(entry.clone());
        }
    }
    list
}

fn or_strings(value: Option<Vec<String>>, default: &[&str]) -> Vec<String> {
    value.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn resolve(text: &str) -> Result<Settings> {
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
            .contains("/bin/pip' install -e '/app'"));
    }

    #[test]
    fn gpus_are_all_or_a_count() {
        assert_eq!(resolve("").unwrap().gpus, None);
        assert_eq!(
            resolve("[container]\ngpus = \"all\"\n").unwrap().gpus,
            Some(-1)
        );
        assert_eq!(resolve("[container]\ngpus = 2\n").unwrap().gpus, Some(2));
        for (text, says) in [
            ("[container]\ngpus = \"some\"\n", "`\"all\"` or a number"),
            ("[container]\ngpus = 0\n", "from 1 to 64, not 0"),
        ] {
            let err = format!("{:#}", resolve(text).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_cluster_has_from_one_to_sixteen_nodes_on_a_network_of_its_own() {
        let one = resolve("").unwrap();
        assert_eq!((one.nodes, one.setup_on_every_node), (1, false));
        let three = resolve("[cluster]\nnodes = 3\nsetup = \"all\"\n").unwrap();
        assert_eq!((three.nodes, three.setup_on_every_node), (3, true));
        for (text, says) in [
            ("[cluster]\nnodes = 0\n", "must be from 1 to 16, not 0"),
            ("[cluster]\nnodes = 17\n", "must be from 1 to 16, not 17"),
            ("[cluster]\nsetup = \"some\"\n", "unknown variant `some`"),
            (
                "[container]\nnetwork = \"host\"\n[cluster]\nnodes = 2\n",
                "cannot carry the nodes of a `[cluster]`",
            ),
            (
                "[services.node-1]\nimage = \"x\"\n",
                "are the nodes of a `[cluster]`",
            ),
        ] {
            let err = format!("{:#}", resolve(text).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(resolve("[services.node-a]\nimage = \"x\"\n").is_ok());
    }

    #[test]
    fn the_default_steps_quote_every_path() {
        let s = resolve("[container]\nworkdir = \"/my app\"\n").unwrap();
        assert_eq!(
            s.setup_commands[1..],
            [
                "[ -x '/my app/.sky-dev/venv/bin/python' ] || python3 -m venv '/my app/.sky-dev/venv'",
                "'/my app/.sky-dev/venv/bin/pip' install -e '/my app'",
            ]
        );
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
    fn the_users_config_adds_to_the_recipe_and_its_runtime_wins() {
        let user = UserConfig::parse(
            "[container]\nruntime = \"runsc\"\n[credentials]\npaths = [\"~/.netrc\", \"~/.aws\"]\n\
             [env]\npass = [\"NPM_TOKEN\"]\n",
        )
        .unwrap();
        let recipe = "[container]\nruntime = \"runc\"\n[env]\npass = [\"A\"]\n";
        let s = Settings::resolve_with(Config::parse(recipe).unwrap(), user.clone(), true).unwrap();
        assert_eq!(s.runtime.as_deref(), Some("runsc"));
        assert!(
            s.overridden[0].contains("`[container] runtime = \"runc\"`"),
            "{:?}",
            s.overridden
        );
        assert_eq!(s.env_pass, ["A", "NPM_TOKEN"]);
        assert_eq!(s.credential_paths.last().unwrap(), "~/.netrc");
        assert_eq!(
            s.credential_paths.iter().filter(|p| *p == "~/.aws").count(),
            1
        );
        // The same runtime, or none, overrides nothing.
        let s = Settings::resolve_with(Config::default(), user, true).unwrap();
        assert_eq!(s.runtime.as_deref(), Some("runsc"));
        assert!(s.overridden.is_empty());
        assert_eq!(resolve("").unwrap().runtime, None);
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
    fn a_worktree_root_does_not_own_gets_a_home_its_owner_can_write() {
        let s = Settings::resolve_owned(Config::default(), false).unwrap();
        assert_eq!(s.user, User::Owner);
        assert_eq!(s.state_mount, "/home/devinst/.sky");
        assert_eq!(s.logs_mount, "/home/devinst/sky_logs");
        assert_eq!(s.credential_home, "/home/devinst");
        let s = Settings::resolve_owned(
            Config::parse("[container]\nuser = \"root\"\n").unwrap(),
            false,
        )
        .unwrap();
        assert_eq!(
            s.state_mount, "/root/.sky",
            "a named user keeps the seed's layout"
        );
    }
}

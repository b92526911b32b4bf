//! The container an instance runs in, built as a pure function of the recipe
//! and the instance, so it can be tested without an engine and hashed to tell
//! when a container no longer matches its recipe.

use crate::engine::{BindMount, ContainerSpec, Published, UserMapping, VolumeMount, KEEP_ID};
use crate::recipe::config::Limits;
use crate::recipe::settings::{
    parse_memory, Service, Settings, User, HOST_CA_VARIABLES, HOST_USER_HOME,
};
use crate::state::layout::{path_text, Layout, Record};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const LABEL_MANAGED_BY: &str = "devinst.managed-by";
pub const LABEL_INSTANCE: &str = "devinst.instance";
pub const LABEL_WORKTREE: &str = "devinst.worktree";
pub const LABEL_VERSION: &str = "devinst.version";
pub const LABEL_SPEC: &str = "devinst.spec";
/// On a service's container: the service's name.
pub const LABEL_SERVICE: &str = "devinst.service";
/// On a cluster node's container (not the head's): its rank.
pub const LABEL_NODE: &str = "devinst.node";
/// The identity of the data directory whose devinst made the container
/// (`state::registry::identity`): a container from another data directory is
/// never this instance's, and `gc` acts only on its own by default. Like the
/// version, not part of the digest.
pub const LABEL_DATA_DIR: &str = "devinst.data-dir";

/// Where the host's CA bundle is mounted when `host_ca` is on.
pub const HOST_CA_TARGET: &str = "/etc/ssl/certs/devinst-host-ca.crt";

/// Everything the container depends on that comes from the host rather than
/// the recipe, gathered beforehand so building the spec does no I/O.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Credential directories that exist: host path, container path.
    pub credentials: Vec<(PathBuf, String)>,
    /// The repository's common git directory when it lies outside the worktree.
    pub git_common_dir: Option<PathBuf>,
    pub host_ca: Option<PathBuf>,
    pub limits: Limits,
    /// The worktree's owner, for `user = "host"`.
    pub owner: Option<Owner>,
    /// The image [`super::image::ImageChoice`] chose, when it is not the
    /// recipe's `image`: a built recipe's tag (which hashes the included
    /// files, so it is known only once they are read) or a snapshot's.
    pub image: Option<String>,
    /// The data directory's identity, for [`LABEL_DATA_DIR`].
    pub identity: Option<String>,
    /// The agent, when it runs in this container.
    pub agent: Option<AgentFacts>,
}

/// The agent as the container gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFacts {
    /// Its executable on the host.
    pub binary: PathBuf,
    /// Whether it serves execs on its socket: not where the runtime cannot
    /// take the host's descriptors (gVisor).
    pub exec_socket: bool,
}

/// Where the agent's executable appears inside.
pub const AGENT_TARGET: &str = "/.devinst/agent";
/// The instance's n-th published port is published to this port plus n,
/// where the agent relays it to the port on the container's loopback.
pub const AGENT_RELAY_BASE: u16 = 65000;
/// On a container with the agent: its protocol version.
pub const LABEL_AGENT: &str = "devinst.agent";
/// On an instance's container: each host port it publishes, the port inside
/// that it reaches, and a named port's name (`46501:46580,46502:3000:web`):
/// with the agent the engine sees its relay ports instead. Added after the
/// digest, like the version: containers made before it still match.
pub const LABEL_PORTS: &str = "devinst.ports";

/// Who owns the worktree on the host, and how the engine maps user ids.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mapping: UserMapping,
}

/// The container's user for `settings.user`, and its user namespace mode.
/// On rootless Podman the container's root already is the engine's user on
/// the host, so the default for a worktree its owner runs devinst on (and
/// its setup steps) stays root; `user = "host"` asks for the owner's own uid
/// inside, which takes `keep-id` there.
pub fn user_and_userns(
    settings: &Settings,
    owner: Option<Owner>,
) -> (Option<String>, Option<String>) {
    let root = || (Some("0:0".to_owned()), None);
    match (&settings.user, owner) {
        (User::Named(name), _) => (Some(name.clone()), None),
        (User::Host | User::Owner, Some(o)) => match o.mapping {
            UserMapping::Direct => (Some(format!("{}:{}", o.uid, o.gid)), None),
            UserMapping::RootlessPodman { .. } if settings.user == User::Host => (
                Some(format!("{}:{}", o.uid, o.gid)),
                Some(KEEP_ID.to_owned()),
            ),
            UserMapping::RootlessPodman { .. } | UserMapping::RootIsHostUser => root(),
        },
        (User::Image | User::Host | User::Owner, _) => (None, None),
    }
}

/// The instance's own container: the head of its cluster.
pub fn container_spec(
    settings: &Settings,
    record: &Record,
    layout: &Layout,
    host: &HostFacts,
) -> ContainerSpec {
    node_spec(settings, record, layout, host, 0)
}

/// The container of the cluster's node `rank`; 0 is the head, the instance's
/// own container. The other nodes are the head's image, limits, runtime and
/// worktree, with state, logs and home of their own, publishing nothing and
/// without the agent (the head alone serves shims).
pub fn node_spec(
    settings: &Settings,
    record: &Record,
    layout: &Layout,
    host: &HostFacts,
    rank: u16,
) -> ContainerSpec {
    let (user, userns_mode) = user_and_userns(settings, host.owner);
    let container = record.node_container(rank);
    let hostname = match (rank, &settings.hostname) {
        (0, Some(hostname)) => hostname.clone(),
        _ => crate::support::names::hostname(&container),
    };
    let mut env = container_env(settings, host);
    let mut labels = labels(record);
    let mut aliases = Vec::new();
    if settings.nodes > 1 {
        env.extend(cluster_env(settings, record, rank));
        aliases.push(crate::support::names::hostname(&container));
    }
    if rank > 0 {
        labels.insert(LABEL_NODE.to_owned(), rank.to_string());
    }
    let head = rank == 0;
    let mut spec = ContainerSpec {
        image: host.image.clone().unwrap_or_else(|| settings.image.clone()),
        hostname: Some(hostname),
        working_dir: Some(settings.workdir.clone()),
        cmd: Some(settings.command.clone()),
        env,
        user,
        labels,
        mounts: mounts(settings, &layout.root, &NodeDirs::of(layout, rank), host),
        published: if head {
            published_ports(settings, record)
        } else {
            vec![]
        },
        init: Some(settings.init),
        runtime: settings.runtime.clone(),
        network: instance_network(settings, record),
        aliases,
        userns_mode,
        nano_cpus: host.limits.cpus.map(|cpus| (cpus * 1e9) as i64),
        memory_bytes: host
            .limits
            .memory
            .as_deref()
            .and_then(|m| parse_memory(m).ok()),
        pids_limit: host.limits.pids,
        gpus: settings.gpus,
        ..Default::default()
    };
    spec.exposed = spec.published.iter().map(|p| p.container_port).collect();
    if let (Some(agent), true) = (&host.agent, head) {
        with_agent(&mut spec, settings, record, agent);
    }
    stamp(&mut spec, host.identity.as_deref());
    if head {
        let ports = ports_label(settings, record);
        spec.labels.insert(LABEL_PORTS.to_owned(), ports);
    }
    spec
}

/// [`LABEL_PORTS`]'s value for the instance's container.
fn ports_label(settings: &Settings, record: &Record) -> String {
    let main = format!("{}:{}", record.port, settings.container_port);
    let named = settings.extra_ports.iter().filter_map(|(name, inside)| {
        let host = record.extra_ports.get(name)?;
        Some(format!("{host}:{inside}:{name}"))
    });
    std::iter::once(main)
        .chain(named)
        .collect::<Vec<_>>()
        .join(",")
}

/// What [`LABEL_PORTS`] says: by host port, the port inside and its name.
pub fn parse_ports_label(value: &str) -> BTreeMap<u16, (u16, Option<String>)> {
    let mut ports = BTreeMap::new();
    for item in value.split(',') {
        let mut parts = item.splitn(3, ':');
        let (Some(Ok(host)), Some(Ok(inside))) = (
            parts.next().map(str::parse::<u16>),
            parts.next().map(str::parse::<u16>),
        ) else {
            continue;
        };
        ports.insert(host, (inside, parts.next().map(str::to_owned)));
    }
    ports
}

/// The instance's port, then each `[ports.extra]` port that `setup` gave a
/// host port, in name order, all on the recipe's bind address.
fn published_ports(settings: &Settings, record: &Record) -> Vec<Published> {
    let main = (settings.container_port, record.port);
    let extra = settings
        .extra_ports
        .iter()
        .filter_map(|(name, &inside)| Some((inside, *record.extra_ports.get(name)?)));
    std::iter::once(main)
        .chain(extra)
        .map(|(container_port, host_port)| Published {
            container_port,
            host_ip: settings.bind.clone(),
            host_port,
        })
        .collect()
}

/// What a node knows of its cluster before any address is given: its rank,
/// the count, and every node's host name (rank order, one per line), under
/// devinst's names and SkyPilot's. The addresses come with every exec
/// ([`cluster_address_env`]).
fn cluster_env(settings: &Settings, record: &Record, rank: u16) -> Vec<String> {
    let hosts: Vec<String> = (0..settings.nodes)
        .map(|r| crate::support::names::hostname(&record.node_container(r)))
        .collect();
    vec![
        format!("DEVINST_NODE_RANK={rank}"),
        format!("DEVINST_NUM_NODES={}", settings.nodes),
        format!("DEVINST_NODE_HOSTS={}", hosts.join("\n")),
        format!("DEVINST_HEAD_HOST={}", hosts[0]),
        format!("SKYPILOT_NODE_RANK={rank}"),
        format!("SKYPILOT_NUM_NODES={}", settings.nodes),
    ]
}

/// The variables that carry the nodes' addresses on the cluster network,
/// known once every node has one: `ips` in rank order.
pub fn cluster_address_env(ips: &[String]) -> Vec<(String, String)> {
    let all = ips.join("\n");
    vec![
        ("DEVINST_NODE_IPS".to_owned(), all.clone()),
        (
            "DEVINST_HEAD_IP".to_owned(),
            ips.first().cloned().unwrap_or_default(),
        ),
        ("SKYPILOT_NODE_IPS".to_owned(), all),
    ]
}

/// The host directories a node keeps its own: the head's are `.sky-dev/`'s
/// own, another node's are under `.sky-dev/nodes/RANK/`.
pub struct NodeDirs {
    pub state: PathBuf,
    pub logs: PathBuf,
    pub home: PathBuf,
}

impl NodeDirs {
    pub fn of(layout: &Layout, rank: u16) -> NodeDirs {
        match rank {
            0 => NodeDirs {
                state: layout.state_dir(),
                logs: layout.logs_dir(),
                home: layout.home_dir(),
            },
            rank => NodeDirs {
                state: layout.node_state_dir(rank),
                logs: layout.node_logs_dir(rank),
                home: layout.node_home_dir(rank),
            },
        }
    }

    /// All of them, for making them before the container mounts them, and
    /// under the home those of the state and logs mounts that lie in it:
    /// made by the engine, those mount points would be root's.
    pub fn all(&self, settings: &Settings) -> Vec<PathBuf> {
        let mut dirs = vec![self.home.clone(), self.state.clone(), self.logs.clone()];
        if settings.user.is_owner() {
            for mount in [&settings.state_mount, &settings.logs_mount] {
                let inside_home = mount
                    .strip_prefix(HOST_USER_HOME)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .filter(|rest| !rest.is_empty() && !rest.split('/').any(|p| p == ".."));
                if let Some(rest) = inside_home {
                    dirs.push(self.home.join(rest));
                }
            }
        }
        dirs
    }
}

/// The agent in front: it runs the recipe's command as its child, serves
/// execs on its socket in `.sky-dev/agent/` (reached through the worktree's
/// mount), and takes every published port to relay it to loopback.
fn with_agent(spec: &mut ContainerSpec, settings: &Settings, record: &Record, agent: &AgentFacts) {
    let mut cmd = vec![
        AGENT_TARGET.to_owned(),
        "--container".to_owned(),
        record.container.clone(),
    ];
    if agent.exec_socket {
        let dir = format!(
            "{}/{}/{}",
            settings.workdir.trim_end_matches('/'),
            crate::state::layout::DIR_NAME,
            crate::state::layout::AGENT_DIR_NAME
        );
        cmd.extend(["--socket".to_owned(), dir]);
    }
    for (published, relay) in spec.published.iter_mut().zip(AGENT_RELAY_BASE..) {
        cmd.extend([
            "--relay".to_owned(),
            format!("{relay}:{}", published.container_port),
        ]);
        published.container_port = relay;
        spec.exposed.push(relay);
    }
    cmd.push("--".to_owned());
    cmd.extend(spec.cmd.take().unwrap_or_default());
    spec.cmd = Some(cmd);
    spec.mounts
        .push(bind(agent.binary.clone(), AGENT_TARGET, true));
    spec.labels.insert(
        LABEL_AGENT.to_owned(),
        devinst_agent::proto::VERSION.to_string(),
    );
}

fn container_env(settings: &Settings, host: &HostFacts) -> Vec<String> {
    let mut env: Vec<String> = settings
        .env_set
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    if host.host_ca.is_some() {
        for key in HOST_CA_VARIABLES {
            env.push(format!("{key}={HOST_CA_TARGET}"));
        }
    }
    if settings.user.is_owner() {
        env.push(format!("HOME={HOST_USER_HOME}"));
    }
    env.extend(service_env(settings));
    env
}

/// The labels every container of the instance carries.
fn labels(record: &Record) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_owned(), "devinst".to_owned()),
        (LABEL_INSTANCE.to_owned(), record.name.clone()),
        (LABEL_WORKTREE.to_owned(), path_text(&record.worktree)),
    ])
}

/// Adds the spec's digest, devinst's version and the data directory's
/// identity to the labels: the last two after the digest, so neither moves it.
fn stamp(spec: &mut ContainerSpec, identity: Option<&str>) {
    let digest = spec.digest();
    spec.labels.insert(LABEL_SPEC.to_owned(), digest);
    spec.labels.insert(
        LABEL_VERSION.to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    if let Some(identity) = identity {
        spec.labels
            .insert(LABEL_DATA_DIR.to_owned(), identity.to_owned());
    }
}

/// `spec` as made by the devinst of data directory `identity`. Added after
/// the digest, like the version: where a container was made from is not
/// what it is made of, so containers made before the label existed still
/// match their recipe.
pub fn from_data_dir(spec: &ContainerSpec, identity: &str) -> ContainerSpec {
    let mut spec = spec.clone();
    spec.labels
        .insert(LABEL_DATA_DIR.to_owned(), identity.to_owned());
    spec
}

/// The network the instance, its nodes and its services share: the
/// recipe's, or with services or nodes and none named, the instance's own
/// (named after its container). `None` leaves the instance on the engine's
/// default network.
pub fn instance_network(settings: &Settings, record: &Record) -> Option<String> {
    match &settings.network {
        Some(network) => Some(network.clone()),
        None if !settings.services.is_empty() || settings.nodes > 1 => {
            Some(record.private_network().to_owned())
        }
        None => None,
    }
}

/// How the instance finds its services: `DEVINST_SERVICE_DB_HOST=db` (its
/// alias on the shared network) and `..._PORT`, the port inside.
fn service_env(settings: &Settings) -> Vec<String> {
    let mut env = Vec::new();
    for service in settings.services.values() {
        let stem = service.env_stem();
        env.push(format!("{stem}_HOST={}", service.name));
        if let Some(port) = service.port {
            env.push(format!("{stem}_PORT={port}"));
        }
    }
    env
}

/// The container of one service: on the instance's network under its own
/// name as an alias, its port published on the host port `setup` chose, its
/// data directory kept in `.sky-dev/services/NAME/`, and a named volume of
/// its own at each path its image declares a volume (`declared`), so what a
/// database keeps there outlives its container.
pub fn service_spec(
    settings: &Settings,
    record: &Record,
    layout: &Layout,
    service: &Service,
    declared: &[String],
) -> ContainerSpec {
    let network =
        instance_network(settings, record).expect("an instance with services always has a network");
    let mut env: Vec<String> = service
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    env.sort();
    let published = service.port.zip(record.service_port(&service.name));
    let mut labels = labels(record);
    labels.insert(LABEL_SERVICE.to_owned(), service.name.clone());
    let mut spec = ContainerSpec {
        image: service.image.clone(),
        hostname: Some(service.name.clone()),
        cmd: service.command.clone(),
        env,
        labels,
        mounts: service
            .data
            .iter()
            .map(|data| bind(layout.service_data_dir(&service.name), data, false))
            .collect(),
        exposed: service.port.into_iter().collect(),
        published: published
            .map(|(inside, host)| Published {
                container_port: inside,
                host_ip: settings.bind.clone(),
                host_port: host,
            })
            .into_iter()
            .collect(),
        volumes: service_volumes(record, service, declared),
        network: Some(network),
        aliases: vec![service.name.clone()],
        ..Default::default()
    };
    stamp(&mut spec, None);
    spec
}

/// A named volume for each path the service's image declares one, except
/// where its `data` directory is mounted: `<service container>-<path>`.
pub fn service_volumes(
    record: &Record,
    service: &Service,
    declared: &[String],
) -> Vec<VolumeMount> {
    let container = record.service_container(&service.name);
    declared
        .iter()
        .filter(|path| service.data.as_deref() != Some(path.as_str()))
        .map(|path| VolumeMount {
            name: format!("{container}-{}", volume_stem(path)),
            target: path.clone(),
        })
        .collect()
}

/// `/var/lib/postgresql/data` as `var-lib-postgresql-data`: what a volume
/// name may hold.
fn volume_stem(path: &str) -> String {
    let stem: String = path
        .trim_matches('/')
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' | '-' => c,
            _ => '-',
        })
        .collect();
    if stem.is_empty() {
        "root".to_owned()
    } else {
        stem
    }
}

/// The labels of a service's named volume: whose it is, like its container.
pub fn volume_labels(record: &Record, service: &str) -> BTreeMap<String, String> {
    let mut labels = labels(record);
    labels.insert(LABEL_SERVICE.to_owned(), service.to_owned());
    labels
}

fn mounts(
    settings: &Settings,
    worktree: &std::path::Path,
    dirs: &NodeDirs,
    host: &HostFacts,
) -> Vec<BindMount> {
    let mut mounts = vec![bind(worktree.to_path_buf(), &settings.workdir, false)];
    if settings.user.is_owner() {
        // Before the state and logs: by default they are mounted inside it.
        mounts.push(bind(dirs.home.clone(), HOST_USER_HOME, false));
    }
    mounts.extend([
        bind(dirs.state.clone(), &settings.state_mount, false),
        bind(dirs.logs.clone(), &settings.logs_mount, false),
    ]);
    if let Some(common) = &host.git_common_dir {
        // A linked worktree's `.git` file names this directory by its host
        // path, so it must appear at that same path for git to work inside.
        mounts.push(bind(common.clone(), &path_text(common), false));
    }
    for (source, target) in &host.credentials {
        mounts.push(bind(source.clone(), target, true));
    }
    if let Some(ca) = &host.host_ca {
        mounts.push(bind(ca.clone(), HOST_CA_TARGET, true));
    }
    mounts
}

fn bind(source: PathBuf, target: &str, read_only: bool) -> BindMount {
    BindMount {
        source: path_text(&source),
        target: target.to_owned(),
        read_only,
    }
}

/// Where a credential path from the recipe lives on the host and in the
/// container: `~/x` maps from the host's home to the container's.
pub fn credential_paths(
    entry: &str,
    host_home: &std::path::Path,
    container_home: &str,
) -> (PathBuf, String) {
    match entry.strip_prefix("~/") {
        Some(rest) => (
            host_home.join(rest),
            format!("{}/{rest}", container_home.trim_end_matches('/')),
        ),
        None => (PathBuf::from(entry), entry.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::config::Config;

    fn fixture() -> (Settings, Record, Layout) {
        let settings = Settings::resolve(Config::default()).unwrap();
        let record = Record {
            name: "feat".into(),
            worktree: PathBuf::from("/w/feat"),
            port: 46507,
            container: "skypilot-dev-feat".into(),
            created: "t".into(),
            version: "0".into(),
            tier: None,
            service_ports: Default::default(),
            extra_ports: Default::default(),
        };
        (
            settings,
            record,
            Layout::new(std::path::Path::new("/w/feat")),
        )
    }

    fn targets(body: &ContainerSpec) -> Vec<(String, String, bool)> {
        body.mounts
            .iter()
            .map(|m| (m.source.clone(), m.target.clone(), m.read_only))
            .collect()
    }

    #[test]
    fn default_spec_has_the_seeds_shape() {
        let (settings, record, layout) = fixture();
        let host = HostFacts {
            credentials: vec![(PathBuf::from("/home/u/.aws"), "/root/.aws".into())],
            ..Default::default()
        };
        let body = container_spec(&settings, &record, &layout, &host);
        assert_eq!(body.image, "ubuntu:22.04");
        assert_eq!(body.working_dir.as_deref(), Some("/app"));
        assert_eq!(body.hostname.as_deref(), Some("skypilot-dev-feat"));
        assert!(body.env.contains(&"SKYPILOT_DEV=1".to_owned()));
        let mounts = targets(&body);
        assert!(mounts.contains(&("/w/feat".into(), "/app".into(), false)));
        assert!(mounts.contains(&("/w/feat/.sky-dev/state".into(), "/root/.sky".into(), false)));
        assert!(mounts.contains(&(
            "/w/feat/.sky-dev/sky_logs".into(),
            "/root/sky_logs".into(),
            false
        )));
        assert!(mounts.contains(&("/home/u/.aws".into(), "/root/.aws".into(), true)));
        let binding = &body.published[0];
        assert_eq!(binding.container_port, 46580);
        assert_eq!(binding.host_ip, "127.0.0.1");
        assert_eq!(binding.host_port, 46507);
        let labels = &body.labels;
        assert_eq!(labels[LABEL_INSTANCE], "feat");
        assert_eq!(labels[LABEL_WORKTREE], "/w/feat");
        assert_eq!(labels[LABEL_MANAGED_BY], "devinst");
    }

    #[test]
    fn a_clusters_nodes_share_the_head_but_for_ports_agent_and_their_own_dirs() {
        let (mut settings, record, layout) = fixture();
        let host = HostFacts {
            agent: Some(AgentFacts {
                binary: PathBuf::from("/w/feat/.sky-dev/agent/devinst-agent"),
                exec_socket: true,
            }),
            ..Default::default()
        };
        let single = container_spec(&settings, &record, &layout, &host);
        assert!(!single.env.iter().any(|e| e.starts_with("DEVINST_NODE")));
        assert_eq!(single.network, None);

        settings.nodes = 3;
        let head = container_spec(&settings, &record, &layout, &host);
        let node = node_spec(&settings, &record, &layout, &host, 2);
        assert_eq!(head.network.as_deref(), Some("skypilot-dev-feat"));
        assert_eq!(node.network, head.network);
        assert_eq!(node.image, head.image);
        assert!(head.env.contains(&"DEVINST_NODE_RANK=0".to_owned()));
        for var in [
            "DEVINST_NODE_RANK=2",
            "SKYPILOT_NODE_RANK=2",
            "DEVINST_NUM_NODES=3",
            "SKYPILOT_NUM_NODES=3",
            "DEVINST_HEAD_HOST=skypilot-dev-feat",
            "DEVINST_NODE_HOSTS=skypilot-dev-feat\nskypilot-dev-feat-node-1\nskypilot-dev-feat-node-2",
        ] {
            assert!(node.env.contains(&var.to_owned()), "{var}: {:?}", node.env);
        }
        assert_eq!(node.hostname.as_deref(), Some("skypilot-dev-feat-node-2"));
        assert_eq!(node.aliases, ["skypilot-dev-feat-node-2"]);
        assert_eq!(node.labels[LABEL_NODE], "2");
        assert!(node.published.is_empty() && node.exposed.is_empty());
        assert!(!node.labels.contains_key(LABEL_AGENT));
        assert_eq!(node.cmd.as_deref(), Some(&settings.command[..]));
        let mounts = targets(&node);
        assert!(mounts.contains(&("/w/feat".into(), "/app".into(), false)));
        assert!(mounts.contains(&(
            "/w/feat/.sky-dev/nodes/2/state".into(),
            "/root/.sky".into(),
            false
        )));
        assert!(!mounts
            .iter()
            .any(|(source, ..)| source.ends_with("/.sky-dev/state")));
        assert_ne!(node.labels[LABEL_SPEC], head.labels[LABEL_SPEC]);
    }

    #[test]
    fn the_addresses_come_in_rank_order_under_both_names() {
        let ips = ["10.0.0.2".to_owned(), "10.0.0.3".to_owned()];
        let env = cluster_address_env(&ips);
        let get = |k: &str| env.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("DEVINST_NODE_IPS"), "10.0.0.2\n10.0.0.3");
        assert_eq!(get("SKYPILOT_NODE_IPS"), "10.0.0.2\n10.0.0.3");
        assert_eq!(get("DEVINST_HEAD_IP"), "10.0.0.2");
    }

    #[test]
    fn spec_hash_is_stable_and_tracks_the_recipe() {
        let (settings, record, layout) = fixture();
        let host = HostFacts::default();
        let a = container_spec(&settings, &record, &layout, &host);
        let b = container_spec(&settings, &record, &layout, &host);
        assert_eq!(a.labels[LABEL_SPEC], b.labels[LABEL_SPEC]);
        let mut other = settings.clone();
        other.image = "debian:12".into();
        let c = container_spec(&other, &record, &layout, &host);
        assert_ne!(a.labels[LABEL_SPEC], c.labels[LABEL_SPEC]);
    }

    #[test]
    fn a_built_image_replaces_the_image_and_moves_the_hash() {
        let (settings, record, layout) = fixture();
        let plain = container_spec(&settings, &record, &layout, &HostFacts::default());
        let built = |tag: &str| {
            let host = HostFacts {
                image: Some(tag.into()),
                ..Default::default()
            };
            container_spec(&settings, &record, &layout, &host)
        };
        let a = built("devinst-build/0123456789abcdef:1");
        assert_eq!(a.image, "devinst-build/0123456789abcdef:1");
        let b = built("devinst-build/fedcba9876543210:1");
        let spec = |body: &ContainerSpec| body.labels[LABEL_SPEC].clone();
        assert_ne!(spec(&plain), spec(&a));
        assert_ne!(spec(&a), spec(&b), "a new recipe is a new spec");
    }

    #[test]
    fn limits_become_engine_units() {
        let (settings, record, layout) = fixture();
        let host = HostFacts {
            limits: Limits {
                cpus: Some(0.5),
                memory: Some("512m".into()),
                pids: Some(100),
            },
            ..Default::default()
        };
        let hc = container_spec(&settings, &record, &layout, &host);
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.memory_bytes, Some(512 << 20));
        assert_eq!(hc.pids_limit, Some(100));
    }

    #[test]
    fn the_owners_dirs_include_the_mount_points_inside_their_home() {
        let (mut settings, _, layout) = fixture();
        let node = NodeDirs::of(&layout, 1);
        assert_eq!(node.all(&settings).len(), 3, "as root, nothing in a home");
        settings.user = User::Owner;
        settings.state_mount = "/home/devinst/.sky".into();
        settings.logs_mount = "/var/log/sky".into();
        assert_eq!(
            node.all(&settings),
            [
                "/w/feat/.sky-dev/nodes/1/home",
                "/w/feat/.sky-dev/nodes/1/state",
                "/w/feat/.sky-dev/nodes/1/sky_logs",
                "/w/feat/.sky-dev/nodes/1/home/.sky",
            ]
            .map(PathBuf::from)
        );
        settings.state_mount = "/home/devinst/../etc".into();
        assert_eq!(node.all(&settings).len(), 3, "never outside the home");
    }

    #[test]
    fn host_user_runs_as_the_owner_with_a_home_of_its_own() {
        let (mut settings, record, layout) = fixture();
        settings.user = User::Host;
        settings.state_mount = "/home/devinst/.sky".into();
        let owner = |mapping| HostFacts {
            owner: Some(Owner {
                uid: 1234,
                gid: 5678,
                mapping,
            }),
            ..Default::default()
        };
        let body = container_spec(&settings, &record, &layout, &owner(UserMapping::Direct));
        assert_eq!(body.user.as_deref(), Some("1234:5678"));
        assert!(body.env.contains(&"HOME=/home/devinst".to_owned()));
        let mounts = targets(&body);
        assert!(mounts.contains(&(
            "/w/feat/.sky-dev/home".into(),
            "/home/devinst".into(),
            false
        )));
        assert!(mounts.contains(&(
            "/w/feat/.sky-dev/state".into(),
            "/home/devinst/.sky".into(),
            false
        )));
        assert_eq!(body.userns_mode, None);

        let rootless_podman = UserMapping::RootlessPodman {
            engine_uid: Some(1234),
            subordinate_ids: 65536,
        };
        let body = container_spec(&settings, &record, &layout, &owner(rootless_podman));
        assert_eq!(body.user.as_deref(), Some("1234:5678"));
        assert_eq!(body.userns_mode.as_deref(), Some("keep-id"));
        // Without `user = "host"`, rootless Podman's root is the owner already.
        let mut owned = settings.clone();
        owned.user = User::Owner;
        let body = container_spec(&owned, &record, &layout, &owner(rootless_podman));
        assert_eq!(body.user.as_deref(), Some("0:0"));
        assert_eq!(body.userns_mode, None);
        assert!(body.env.contains(&"HOME=/home/devinst".to_owned()));
        let body = container_spec(
            &settings,
            &record,
            &layout,
            &owner(UserMapping::RootIsHostUser),
        );
        assert_eq!(body.user.as_deref(), Some("0:0"));
    }

    #[test]
    fn a_worktree_root_does_not_own_runs_as_its_owner_in_the_same_shape() {
        let (_, record, layout) = fixture();
        let settings = Settings::resolve_owned(Config::default(), false).unwrap();
        let host = HostFacts {
            owner: Some(Owner {
                uid: 1234,
                gid: 5678,
                mapping: UserMapping::Direct,
            }),
            ..Default::default()
        };
        let body = container_spec(&settings, &record, &layout, &host);
        assert_eq!(body.user.as_deref(), Some("1234:5678"));
        assert!(body.env.contains(&"HOME=/home/devinst".to_owned()));
        let mounts = targets(&body);
        for (source, target) in [
            ("/w/feat/.sky-dev/home", "/home/devinst"),
            ("/w/feat/.sky-dev/state", "/home/devinst/.sky"),
            ("/w/feat/.sky-dev/sky_logs", "/home/devinst/sky_logs"),
        ] {
            assert!(mounts.contains(&(source.into(), target.into(), false)));
        }
    }

    #[test]
    fn the_default_user_is_the_images() {
        let (settings, record, layout) = fixture();
        let body = container_spec(&settings, &record, &layout, &HostFacts::default());
        assert_eq!(body.user, None);
        assert!(!body.env.iter().any(|e| e.starts_with("HOME=")));
        let mut named = settings.clone();
        named.user = User::Named("app".into());
        let body = container_spec(&named, &record, &layout, &HostFacts::default());
        assert_eq!(body.user.as_deref(), Some("app"));
    }

    fn with_db(network: Option<&str>) -> (Settings, Record, Layout) {
        let (_, mut record, layout) = fixture();
        let text = format!(
            "{}[services.db]\nimage = \"busybox\"\ncommand = [\"httpd\", \"-f\"]\n\
             port = 8080\ndata = \"/www\"\nenv = {{ B = \"2\", A = \"1\" }}\n",
            network.map_or(String::new(), |n| format!(
                "[container]\nnetwork = \"{n}\"\n"
            ))
        );
        let settings = Settings::resolve(Config::parse(&text).unwrap()).unwrap();
        record.service_ports.insert("db".into(), 46508);
        (settings, record, layout)
    }

    #[test]
    fn a_service_is_on_the_instances_private_network_under_its_name() {
        let (settings, record, layout) = with_db(None);
        let db = &settings.services["db"];
        let body = service_spec(&settings, &record, &layout, db, &[]);
        assert_eq!(body.image, "busybox");
        assert_eq!(body.cmd, Some(vec!["httpd".into(), "-f".into()]));
        assert_eq!(body.env, vec!["A=1".to_owned(), "B=2".to_owned()]);
        let labels = &body.labels;
        assert_eq!(labels[LABEL_SERVICE], "db");
        assert_eq!(labels[LABEL_INSTANCE], "feat");
        assert_eq!(labels[LABEL_MANAGED_BY], "devinst");
        assert_eq!(body.network.as_deref(), Some("skypilot-dev-feat"));
        let binding = &body.published[0];
        assert_eq!(binding.container_port, 8080);
        assert_eq!(binding.host_ip, "127.0.0.1");
        assert_eq!(binding.host_port, 46508);
        assert_eq!(
            targets(&body),
            [("/w/feat/.sky-dev/services/db".into(), "/www".into(), false)]
        );
        assert_eq!(body.aliases, vec!["db".to_owned()]);

        // The instance joins the same network and is told where the service is.
        let main = container_spec(&settings, &record, &layout, &HostFacts::default());
        assert_eq!(main.network.as_deref(), Some("skypilot-dev-feat"));
        let env = main.env;
        assert!(env.contains(&"DEVINST_SERVICE_DB_HOST=db".to_owned()));
        assert!(env.contains(&"DEVINST_SERVICE_DB_PORT=8080".to_owned()));
    }

    #[test]
    fn a_named_network_is_shared_and_no_services_means_no_network() {
        let (settings, record, layout) = with_db(Some("team-net"));
        let body = service_spec(&settings, &record, &layout, &settings.services["db"], &[]);
        assert_eq!(body.network.as_deref(), Some("team-net"));
        let (plain, record, _) = fixture();
        assert_eq!(instance_network(&plain, &record), None);
    }

    #[test]
    fn a_services_spec_hash_tracks_its_recipe() {
        let (settings, record, layout) = with_db(None);
        let hash = |s: &Settings| {
            service_spec(s, &record, &layout, &s.services["db"], &[]).labels[LABEL_SPEC].clone()
        };
        let mut changed = settings.clone();
        changed.services.get_mut("db").unwrap().image = "other".into();
        assert_eq!(hash(&settings), hash(&settings));
        assert_ne!(hash(&settings), hash(&changed));
    }

    #[test]
    fn a_services_declared_volumes_become_named_volumes_of_its_own() {
        let (settings, record, layout) = with_db(None);
        let db = &settings.services["db"];
        let declared = ["/var/lib/postgresql/data".to_owned(), "/www".to_owned()];
        let body = service_spec(&settings, &record, &layout, db, &declared);
        // `/www` is the data directory's mount already.
        assert_eq!(
            body.volumes,
            [VolumeMount {
                name: "skypilot-dev-feat-db-var-lib-postgresql-data".into(),
                target: "/var/lib/postgresql/data".into(),
            }]
        );
        let plain = service_spec(&settings, &record, &layout, db, &[]);
        assert_ne!(body.labels[LABEL_SPEC], plain.labels[LABEL_SPEC]);
        assert_eq!(volume_stem("/a b/c:d/"), "a-b-c-d");
        let labels = volume_labels(&record, "db");
        assert_eq!(labels[LABEL_WORKTREE], "/w/feat");
        assert_eq!(labels[LABEL_SERVICE], "db");
    }

    #[test]
    fn spec_digests_did_not_move_with_the_engine_types() {
        // Containers made by earlier versions carry these digests: a change
        // here would tell every user their recipe changed when it did not.
        let (settings, record, layout) = fixture();
        let main = container_spec(&settings, &record, &layout, &HostFacts::default());
        assert_eq!(main.labels[LABEL_SPEC], "b8c3c71378f72456");
        let (settings, record, layout) = with_db(None);
        let db = service_spec(&settings, &record, &layout, &settings.services["db"], &[]);
        assert_eq!(db.labels[LABEL_SPEC], "dfcb67cbb7847960");
        let main = container_spec(&settings, &record, &layout, &HostFacts::default());
        assert_eq!(main.labels[LABEL_SPEC], "14a9461ee333ac56");
    }

    fn with_agent_facts(exec_socket: bool) -> HostFacts {
        HostFacts {
            agent: Some(AgentFacts {
                binary: PathBuf::from("/w/feat/.sky-dev/agent/devinst-agent"),
                exec_socket,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_agent_runs_the_command_serves_execs_and_relays_the_port() {
        let (settings, record, layout) = fixture();
        let body = container_spec(&settings, &record, &layout, &with_agent_facts(true));
        assert_eq!(
            body.cmd.as_deref().unwrap(),
            [
                AGENT_TARGET,
                "--container",
                "skypilot-dev-feat",
                "--socket",
                "/app/.sky-dev/agent",
                "--relay",
                "65000:46580",
                "--",
                "sleep",
                "infinity"
            ]
        );
        assert!(targets(&body).contains(&(
            "/w/feat/.sky-dev/agent/devinst-agent".into(),
            AGENT_TARGET.into(),
            true
        )));
        // The host port goes to the agent, which relays to 46580 on loopback.
        let binding = &body.published[0];
        assert_eq!(binding.container_port, AGENT_RELAY_BASE);
        assert_eq!(
            (binding.host_ip.as_str(), binding.host_port),
            ("127.0.0.1", 46507)
        );
        assert_eq!(body.exposed, [46580, AGENT_RELAY_BASE]);
        assert_eq!(
            body.labels[LABEL_AGENT],
            devinst_agent::proto::VERSION.to_string()
        );

        // Where execs cannot take the host's descriptors, no socket.
        let sandboxed = container_spec(&settings, &record, &layout, &with_agent_facts(false));
        assert!(!sandboxed.cmd.unwrap().contains(&"--socket".to_owned()));
        // A container made before the agent is told its spec changed.
        let plain = container_spec(&settings, &record, &layout, &HostFacts::default());
        assert_eq!(plain.cmd, Some(vec!["sleep".into(), "infinity".into()]));
        assert_ne!(plain.labels[LABEL_SPEC], body.labels[LABEL_SPEC]);
    }

    #[test]
    fn named_ports_are_published_beside_the_instances_and_relayed_by_the_agent() {
        let (mut settings, mut record, layout) = fixture();
        settings.extra_ports = [("web".into(), 3000), ("debug".into(), 5678)].into();
        record.extra_ports = [("web".into(), 46508), ("debug".into(), 46509)].into();
        let plain = container_spec(&settings, &record, &layout, &HostFacts::default());
        let pairs = |spec: &ContainerSpec| -> Vec<(u16, u16)> {
            let p = spec.published.iter();
            p.map(|p| (p.host_port, p.container_port)).collect()
        };
        // The instance's port first, then the named ones in name order.
        assert_eq!(
            pairs(&plain),
            [(46507, 46580), (46509, 5678), (46508, 3000)]
        );
        assert_eq!(plain.exposed, [46580, 5678, 3000]);
        assert!(plain.published.iter().all(|p| p.host_ip == "127.0.0.1"));

        let agent = container_spec(&settings, &record, &layout, &with_agent_facts(true));
        let relays: Vec<&str> = agent.cmd.as_deref().unwrap()[5..11]
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            relays,
            [
                "--relay",
                "65000:46580",
                "--relay",
                "65001:5678",
                "--relay",
                "65002:3000"
            ]
        );
        assert_eq!(
            pairs(&agent),
            [(46507, 65000), (46509, 65001), (46508, 65002)]
        );

        // The label says what each host port reaches inside, whatever the
        // engine publishes, and leaves the digest alone.
        assert_eq!(
            agent.labels[LABEL_PORTS],
            "46507:46580,46509:5678:debug,46508:3000:web"
        );
        let shown = parse_ports_label(&agent.labels[LABEL_PORTS]);
        assert_eq!(shown[&46508], (3000, Some("web".to_owned())));
        assert_eq!(shown[&46507], (46580, None));
        assert!(parse_ports_label("x:1,2").is_empty());

        // A name `setup` has not given a host port yet is not published.
        record.extra_ports.remove("web");
        let partial = container_spec(&settings, &record, &layout, &HostFacts::default());
        assert_eq!(pairs(&partial), [(46507, 46580), (46509, 5678)]);
    }

    #[test]
    fn the_data_dir_label_leaves_the_digest_alone() {
        let (settings, record, layout) = fixture();
        let main = container_spec(&settings, &record, &layout, &HostFacts::default());
        let marked = from_data_dir(&main, "abc");
        assert_eq!(marked.labels[LABEL_DATA_DIR], "abc");
        assert_eq!(marked.labels[LABEL_SPEC], main.labels[LABEL_SPEC]);
    }

    #[test]
    fn credential_paths_map_home_to_home() {
        let (host, inside) =
            credential_paths("~/.config/gcloud", std::path::Path::new("/home/u"), "/root");
        assert_eq!(host, PathBuf::from("/home/u/.config/gcloud"));
        assert_eq!(inside, "/root/.config/gcloud");
        let (host, inside) =
            credential_paths("/etc/krb5.conf", std::path::Path::new("/home/u"), "/root");
        assert_eq!(host, PathBuf::from("/etc/krb5.conf"));
        assert_eq!(inside, "/etc/krb5.conf");
    }
}

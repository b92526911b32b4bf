//! The container an instance runs in, built as a pure function of the recipe
//! and the instance, so it can be tested without an engine and hashed to tell
//! when a container no longer matches its recipe.

use crate::recipe::config::Limits;
use crate::recipe::settings::{parse_memory, Service, Settings, User, HOST_USER_HOME};
use crate::state::layout::{path_text, Layout, Record};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkingConfig,
    PortBinding,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;

pub const LABEL_MANAGED_BY: &str = "devinst.managed-by";
pub const LABEL_INSTANCE: &str = "devinst.instance";
pub const LABEL_WORKTREE: &str = "devinst.worktree";
pub const LABEL_VERSION: &str = "devinst.version";
pub const LABEL_SPEC: &str = "devinst.spec";
/// On a service's container: the service's name.
pub const LABEL_SERVICE: &str = "devinst.service";

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
    /// The tag of the image built from `[container.build]`, which replaces
    /// `image`: it hashes the included files, so it is found by reading them.
    pub built_image: Option<String>,
}

/// Who owns the worktree on the host, and how the engine maps user ids.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub mapping: UserMapping,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum UserMapping {
    /// A rootful engine: ids inside the container are the host's.
    #[default]
    Direct,
    /// Rootless Podman: `keep-id` maps the host user to the same id inside.
    KeepId,
    /// Rootless Docker: the container's root is the host user already.
    RootIsHostUser,
}

/// The container's user for `settings.user`, and its user namespace mode.
fn user_and_userns(settings: &Settings, owner: Option<Owner>) -> (Option<String>, Option<String>) {
    match (&settings.user, owner) {
        (User::Named(name), _) => (Some(name.clone()), None),
        (User::Host, Some(o)) => match o.mapping {
            UserMapping::Direct => (Some(format!("{}:{}", o.uid, o.gid)), None),
            UserMapping::KeepId => (
                Some(format!("{}:{}", o.uid, o.gid)),
                Some("keep-id".to_owned()),
            ),
            UserMapping::RootIsHostUser => (Some("0:0".to_owned()), None),
        },
        (User::Image | User::Host, _) => (None, None),
    }
}

pub fn container_body(
    settings: &Settings,
    record: &Record,
    layout: &Layout,
    host: &HostFacts,
) -> ContainerCreateBody {
    let port_key = format!("{}/tcp", settings.container_port);
    let mut env: Vec<String> = settings
        .env_set
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    if host.host_ca.is_some() {
        for key in [
            "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE",
            "PIP_CERT",
            "NODE_EXTRA_CA_CERTS",
            "CURL_CA_BUNDLE",
        ] {
            env.push(format!("{key}={HOST_CA_TARGET}"));
        }
    }
    if settings.user == User::Host {
        env.push(format!("HOME={HOST_USER_HOME}"));
    }
    env.extend(service_env(settings));
    let (user, userns_mode) = user_and_userns(settings, host.owner);
    let mut body = ContainerCreateBody {
        image: Some(
            host.built_image
                .clone()
                .unwrap_or_else(|| settings.image.clone()),
        ),
        hostname: Some(
            settings
                .hostname
                .clone()
                .unwrap_or_else(|| crate::support::names::hostname(&record.container)),
        ),
        working_dir: Some(settings.workdir.clone()),
        cmd: Some(settings.command.clone()),
        env: Some(env),
        user,
        exposed_ports: Some(vec![port_key.clone()]),
        labels: Some(HashMap::from([
            (LABEL_MANAGED_BY.to_owned(), "devinst".to_owned()),
            (LABEL_INSTANCE.to_owned(), record.name.clone()),
            (LABEL_WORKTREE.to_owned(), path_text(&record.worktree)),
        ])),
        host_config: Some(HostConfig {
            mounts: Some(mounts(settings, layout, host)),
            port_bindings: Some(HashMap::from([(
                port_key,
                Some(vec![PortBinding {
                    host_ip: Some(settings.bind.clone()),
                    host_port: Some(record.port.to_string()),
                }]),
            )])),
            init: Some(settings.init),
            runtime: settings.runtime.clone(),
            network_mode: instance_network(settings, record),
            userns_mode,
            nano_cpus: host.limits.cpus.map(|cpus| (cpus * 1e9) as i64),
            memory: host
                .limits
                .memory
                .as_deref()
                .and_then(|m| parse_memory(m).ok()),
            pids_limit: host.limits.pids,
            ..Default::default()
        }),
        ..Default::default()
    };
    stamp(&mut body);
    body
}

/// Adds the spec hash and devinst's version to the labels.
fn stamp(body: &mut ContainerCreateBody) {
    let hash = spec_hash(body);
    let labels = body.labels.get_or_insert_with(HashMap::new);
    labels.insert(LABEL_SPEC.to_owned(), hash);
    labels.insert(
        LABEL_VERSION.to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
}

/// The network the instance and its services share: the recipe's, or with
/// services and none named, the instance's own (named after its container).
/// `None` leaves the instance on the engine's default network.
pub fn instance_network(settings: &Settings, record: &Record) -> Option<String> {
    match &settings.network {
        Some(network) => Some(network.clone()),
        None if !settings.services.is_empty() => Some(record.private_network().to_owned()),
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
/// data directory kept in `.sky-dev/services/NAME/`.
pub fn service_body(
    settings: &Settings,
    record: &Record,
    layout: &Layout,
    service: &Service,
) -> ContainerCreateBody {
    let network =
        instance_network(settings, record).expect("an instance with services always has a network");
    let mut env: Vec<String> = service
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    env.sort();
    let published = service.port.zip(record.service_port(&service.name));
    let port_bindings = published.map(|(inside, host)| {
        HashMap::from([(
            format!("{inside}/tcp"),
            Some(vec![PortBinding {
                host_ip: Some(settings.bind.clone()),
                host_port: Some(host.to_string()),
            }]),
        )])
    });
    let mounts = service
        .data
        .as_ref()
        .map(|data| vec![bind(layout.service_data_dir(&service.name), data, false)]);
    let mut body = ContainerCreateBody {
        image: Some(service.image.clone()),
        hostname: Some(service.name.clone()),
        cmd: service.command.clone(),
        env: Some(env),
        exposed_ports: service.port.map(|p| vec![format!("{p}/tcp")]),
        labels: Some(HashMap::from([
            (LABEL_MANAGED_BY.to_owned(), "devinst".to_owned()),
            (LABEL_INSTANCE.to_owned(), record.name.clone()),
            (LABEL_WORKTREE.to_owned(), path_text(&record.worktree)),
            (LABEL_SERVICE.to_owned(), service.name.clone()),
        ])),
        host_config: Some(HostConfig {
            mounts,
            port_bindings,
            network_mode: Some(network.clone()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network,
                EndpointSettings {
                    aliases: Some(vec![service.name.clone()]),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    };
    stamp(&mut body);
    body
}

/// A digest of everything the container was created from. Stored as a label,
/// compared on `start` to tell the user when the recipe moved on.
pub fn spec_hash(body: &ContainerCreateBody) -> String {
    // serde_json writes HashMaps in iteration order; sort through a Value.
    let value = serde_json::to_value(body).unwrap_or_default();
    let canonical = canonical_json(&value);
    let digest = Sha256::digest(canonical.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn canonical_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            format!(
                "[{}]",
                items
                    .iter()
                    .map(canonical_json)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        }
        other => other.to_string(),
    }
}

fn mounts(settings: &Settings, layout: &Layout, host: &HostFacts) -> Vec<Mount> {
    let mut mounts = vec![bind(layout.root.clone(), &settings.workdir, false)];
    if settings.user == User::Host {
        // Before the state and logs: by default they are mounted inside it.
        mounts.push(bind(layout.home_dir(), HOST_USER_HOME, false));
    }
    mounts.extend([
        bind(layout.state_dir(), &settings.state_mount, false),
        bind(layout.logs_dir(), &settings.logs_mount, false),
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

fn bind(source: PathBuf, target: &str, read_only: bool) -> Mount {
    Mount {
        typ: Some(MountType::BIND),
        source: Some(path_text(&source)),
        target: Some(target.to_owned()),
        read_only: Some(read_only),
        ..Default::default()
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
        };
        (
            settings,
            record,
            Layout::new(std::path::Path::new("/w/feat")),
        )
    }

    fn targets(body: &ContainerCreateBody) -> Vec<(String, String, bool)> {
        body.host_config
            .as_ref()
            .unwrap()
            .mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m.source.clone().unwrap(),
                    m.target.clone().unwrap(),
                    m.read_only.unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn default_spec_has_the_seeds_shape() {
        let (settings, record, layout) = fixture();
        let host = HostFacts {
            credentials: vec![(PathBuf::from("/home/u/.aws"), "/root/.aws".into())],
            ..Default::default()
        };
        let body = container_body(&settings, &record, &layout, &host);
        assert_eq!(body.image.as_deref(), Some("ubuntu:22.04"));
        assert_eq!(body.working_dir.as_deref(), Some("/app"));
        assert_eq!(body.hostname.as_deref(), Some("skypilot-dev-feat"));
        assert!(body
            .env
            .as_ref()
            .unwrap()
            .contains(&"SKYPILOT_DEV=1".to_owned()));
        let mounts = targets(&body);
        assert!(mounts.contains(&("/w/feat".into(), "/app".into(), false)));
        assert!(mounts.contains(&("/w/feat/.sky-dev/state".into(), "/root/.sky".into(), false)));
        assert!(mounts.contains(&(
            "/w/feat/.sky-dev/sky_logs".into(),
            "/root/sky_logs".into(),
            false
        )));
        assert!(mounts.contains(&("/home/u/.aws".into(), "/root/.aws".into(), true)));
        let ports = body
            .host_config
            .as_ref()
            .unwrap()
            .port_bindings
            .as_ref()
            .unwrap();
        let binding = &ports["46580/tcp"].as_ref().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some("46507"));
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_INSTANCE], "feat");
        assert_eq!(labels[LABEL_WORKTREE], "/w/feat");
        assert_eq!(labels[LABEL_MANAGED_BY], "devinst");
    }

    #[test]
    fn spec_hash_is_stable_and_tracks_the_recipe() {
        let (settings, record, layout) = fixture();
        let host = HostFacts::default();
        let a = container_body(&settings, &record, &layout, &host);
        let b = container_body(&settings, &record, &layout, &host);
        assert_eq!(
            a.labels.as_ref().unwrap()[LABEL_SPEC],
            b.labels.as_ref().unwrap()[LABEL_SPEC]
        );
        let mut other = settings.clone();
        other.image = "debian:12".into();
        let c = container_body(&other, &record, &layout, &host);
        assert_ne!(
            a.labels.as_ref().unwrap()[LABEL_SPEC],
            c.labels.as_ref().unwrap()[LABEL_SPEC]
        );
    }

    #[test]
    fn a_built_image_replaces_the_image_and_moves_the_hash() {
        let (settings, record, layout) = fixture();
        let plain = container_body(&settings, &record, &layout, &HostFacts::default());
        let built = |tag: &str| {
            let host = HostFacts {
                built_image: Some(tag.into()),
                ..Default::default()
            };
            container_body(&settings, &record, &layout, &host)
        };
        let a = built("devinst-build/0123456789abcdef:1");
        assert_eq!(a.image.as_deref(), Some("devinst-build/0123456789abcdef:1"));
        let b = built("devinst-build/fedcba9876543210:1");
        let spec = |body: &ContainerCreateBody| body.labels.as_ref().unwrap()[LABEL_SPEC].clone();
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
        let hc = container_body(&settings, &record, &layout, &host)
            .host_config
            .unwrap();
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.memory, Some(512 << 20));
        assert_eq!(hc.pids_limit, Some(100));
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
        let body = container_body(&settings, &record, &layout, &owner(UserMapping::Direct));
        assert_eq!(body.user.as_deref(), Some("1234:5678"));
        assert!(body
            .env
            .as_ref()
            .unwrap()
            .contains(&"HOME=/home/devinst".to_owned()));
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
        assert_eq!(body.host_config.as_ref().unwrap().userns_mode, None);

        let body = container_body(&settings, &record, &layout, &owner(UserMapping::KeepId));
        assert_eq!(body.user.as_deref(), Some("1234:5678"));
        assert_eq!(
            body.host_config.unwrap().userns_mode.as_deref(),
            Some("keep-id")
        );
        let body = container_body(
            &settings,
            &record,
            &layout,
            &owner(UserMapping::RootIsHostUser),
        );
        assert_eq!(body.user.as_deref(), Some("0:0"));
    }

    #[test]
    fn the_default_user_is_the_images() {
        let (settings, record, layout) = fixture();
        let body = container_body(&settings, &record, &layout, &HostFacts::default());
        assert_eq!(body.user, None);
        assert!(!body.env.unwrap().iter().any(|e| e.starts_with("HOME=")));
        let mut named = settings.clone();
        named.user = User::Named("app".into());
        let body = container_body(&named, &record, &layout, &HostFacts::default());
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
        let body = service_body(&settings, &record, &layout, db);
        assert_eq!(body.image.as_deref(), Some("busybox"));
        assert_eq!(body.cmd, Some(vec!["httpd".into(), "-f".into()]));
        assert_eq!(body.env, Some(vec!["A=1".into(), "B=2".into()]));
        let labels = body.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_SERVICE], "db");
        assert_eq!(labels[LABEL_INSTANCE], "feat");
        assert_eq!(labels[LABEL_MANAGED_BY], "devinst");
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("skypilot-dev-feat"));
        let binding = &hc.port_bindings.as_ref().unwrap()["8080/tcp"]
            .as_ref()
            .unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some("46508"));
        assert_eq!(
            targets(&body),
            [("/w/feat/.sky-dev/services/db".into(), "/www".into(), false)]
        );
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(
            endpoints["skypilot-dev-feat"].aliases,
            Some(vec!["db".into()])
        );

        // The instance joins the same network and is told where the service is.
        let main = container_body(&settings, &record, &layout, &HostFacts::default());
        assert_eq!(
            main.host_config.unwrap().network_mode.as_deref(),
            Some("skypilot-dev-feat")
        );
        let env = main.env.unwrap();
        assert!(env.contains(&"DEVINST_SERVICE_DB_HOST=db".to_owned()));
        assert!(env.contains(&"DEVINST_SERVICE_DB_PORT=8080".to_owned()));
    }

    #[test]
    fn a_named_network_is_shared_and_no_services_means_no_network() {
        let (settings, record, layout) = with_db(Some("team-net"));
        let body = service_body(&settings, &record, &layout, &settings.services["db"]);
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("team-net")
        );
        let (plain, record, _) = fixture();
        assert_eq!(instance_network(&plain, &record), None);
    }

    #[test]
    fn a_services_spec_hash_tracks_its_recipe() {
        let (settings, record, layout) = with_db(None);
        let hash = |s: &Settings| {
            service_body(s, &record, &layout, &s.services["db"])
                .labels
                .unwrap()[LABEL_SPEC]
                .clone()
        };
        let mut changed = settings.clone();
        changed.services.get_mut("db").unwrap().image = "other".into();
        assert_eq!(hash(&settings), hash(&settings));
        assert_ne!(hash(&settings), hash(&changed));
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

//! Containers as plain values: what devinst asks the engine to create
//! ([`ContainerSpec`]), what it reads back ([`Container`], [`Listed`]), and
//! the calls between. Nothing here knows what an instance is.

use super::{http_status, message, Engine};
use anyhow::{anyhow, Result};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerSummary, DeviceRequest,
    EndpointSettings, HostConfig, Mount, MountType, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// A container to create. Empty lists mean "not asked for".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub image: String,
    pub hostname: Option<String>,
    pub working_dir: Option<String>,
    /// `None` runs the image's own command.
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub mounts: Vec<BindMount>,
    /// Named volumes mounted into the container.
    pub volumes: Vec<VolumeMount>,
    /// Container ports (tcp) the image exposes.
    pub exposed: Vec<u16>,
    pub published: Vec<Published>,
    pub init: Option<bool>,
    pub runtime: Option<String>,
    pub network: Option<String>,
    /// Names the container answers to on `network`.
    pub aliases: Vec<String>,
    pub userns_mode: Option<String>,
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub pids_limit: Option<i64>,
    /// GPUs asked of the engine, as `docker run --gpus` asks: a count, -1
    /// for all.
    pub gpus: Option<i64>,
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq)]
pub struct BindMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// A named volume mounted into the container.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeMount {
    pub name: String,
    pub target: String,
}

/// A container port (tcp) published on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub container_port: u16,
    pub host_ip: String,
    pub host_port: u16,
}

impl ContainerSpec {
    /// A short digest of everything the container is made from, stable
    /// across runs (and across devinst versions: it hashes the API body).
    pub fn digest(&self) -> String {
        // serde_json writes HashMaps in iteration order; sort through a Value.
        let value = serde_json::to_value(self.body()).unwrap_or_default();
        let digest = Sha256::digest(canonical_json(&value).as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    fn body(&self) -> ContainerCreateBody {
        let tcp = |port: u16| format!("{port}/tcp");
        let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = self
            .published
            .iter()
            .map(|p| {
                let binding = PortBinding {
                    host_ip: Some(p.host_ip.clone()),
                    host_port: Some(p.host_port.to_string()),
                };
                (tcp(p.container_port), Some(vec![binding]))
            })
            .collect();
        let networking_config = match (&self.network, self.aliases.is_empty()) {
            (Some(network), false) => Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings {
                        aliases: Some(self.aliases.clone()),
                        ..Default::default()
                    },
                )])),
            }),
            _ => None,
        };
        ContainerCreateBody {
            image: Some(self.image.clone()),
            hostname: self.hostname.clone(),
            working_dir: self.working_dir.clone(),
            cmd: self.cmd.clone(),
            env: Some(self.env.clone()),
            user: self.user.clone(),
            exposed_ports: non_empty(self.exposed.iter().map(|p| tcp(*p)).collect()),
            labels: Some(self.labels.clone().into_iter().collect()),
            host_config: Some(HostConfig {
                mounts: non_empty(
                    self.mounts
                        .iter()
                        .map(BindMount::api)
                        .chain(self.volumes.iter().map(VolumeMount::api))
                        .collect(),
                ),
                port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
                init: self.init,
                runtime: self.runtime.clone(),
                network_mode: self.network.clone(),
                userns_mode: self.userns_mode.clone(),
                nano_cpus: self.nano_cpus,
                memory: self.memory_bytes,
                pids_limit: self.pids_limit,
                device_requests: self.gpus.map(|count| {
                    vec![DeviceRequest {
                        count: Some(count),
                        capabilities: Some(vec![vec!["gpu".to_owned()]]),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        }
    }
}

impl BindMount {
    fn api(&self) -> Mount {
        Mount {
            typ: Some(MountType::BIND),
            source: Some(self.source.clone()),
            target: Some(self.target.clone()),
            read_only: Some(self.read_only),
            ..Default::default()
        }
    }
}

impl VolumeMount {
    fn api(&self) -> Mount {
        Mount {
            typ: Some(MountType::VOLUME),
            source: Some(self.name.clone()),
            target: Some(self.target.clone()),
            ..Default::default()
        }
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
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
            let parts: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// A container as the engine describes it on inspect.
#[derive(Debug, Clone, Default)]
pub struct Container {
    pub id: String,
    /// `running`, `exited`, `paused`, `created`, ... or `unknown`.
    pub status: String,
    /// Running, or paused (a paused container is running too, frozen).
    pub running: bool,
    pub paused: bool,
    pub labels: BTreeMap<String, String>,
    pub image: Option<String>,
    pub runtime: Option<String>,
    /// The volumes mounted into it, named or anonymous (an id for a name).
    pub volumes: Vec<VolumeMount>,
    /// The environment its processes start with (`KEY=VALUE`): the image's
    /// merged with the container's own.
    pub env: Vec<String>,
    /// The host ports it was made to publish, running or not, sorted.
    pub bindings: Vec<Published>,
    /// The host paths it bind-mounts.
    pub bind_sources: Vec<String>,
    /// When the engine made it (RFC 3339), if it says.
    pub created: Option<String>,
    /// Its IPv4 address on each network it is on (while it runs), by network.
    pub addresses: BTreeMap<String, String>,
}

impl Container {
    fn from_api(info: ContainerInspectResponse) -> Container {
        let state = info.state.unwrap_or_default();
        let config = info.config.unwrap_or_default();
        let host = info.host_config.unwrap_or_default();
        let points = info.mounts.unwrap_or_default();
        let addresses = info
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(network, point)| Some((network, point.ip_address?)))
            .filter(|(_, ip)| !ip.is_empty())
            .collect();
        // Docker lists binds in both places; Podman only at the top.
        let mut bind_sources: Vec<String> = host
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.typ == Some(MountType::BIND))
            .filter_map(|m| m.source)
            .collect();
        for point in &points {
            let bind = point.typ.as_deref() == Some("bind");
            match &point.source {
                Some(source) if bind && !bind_sources.contains(source) => {
                    bind_sources.push(source.clone())
                }
                _ => {}
            }
        }
        Container {
            id: info.id.unwrap_or_default(),
            status: state
                .status
                .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
            image: config.image,
            volumes: points
                .into_iter()
                .filter(|m| m.typ.as_deref() == Some("volume"))
                .filter_map(|m| {
                    Some(VolumeMount {
                        name: m.name?,
                        target: m.destination?,
                    })
                })
                .collect(),
            env: config.env.unwrap_or_default(),
            runtime: host.runtime.filter(|r| !r.is_empty()),
            bindings: bindings(host.port_bindings.unwrap_or_default()),
            bind_sources,
            created: info.created.filter(|c| !c.is_empty()),
            addresses,
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Port bindings as the API gives them (`"46580/tcp"` to host addresses),
/// as plain values, sorted; udp and unparsable entries are left out.
fn bindings(api: HashMap<String, Option<Vec<PortBinding>>>) -> Vec<Published> {
    let mut out: Vec<Published> = api
        .into_iter()
        .filter_map(|(key, hosts)| {
            let container_port = key.strip_suffix("/tcp")?.parse().ok()?;
            Some((container_port, hosts.unwrap_or_default()))
        })
        .flat_map(|(container_port, hosts)| {
            hosts.into_iter().filter_map(move |h| {
                Some(Published {
                    container_port,
                    host_ip: h.host_ip.unwrap_or_default(),
                    host_port: h.host_port?.parse().ok()?,
                })
            })
        })
        .collect();
    out.sort_by_key(|p| (p.host_port, p.container_port));
    out
}

/// A container as a listing shows it.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    pub name: String,
    /// `running`, `exited`, ... or `unknown`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    /// Published host ports; engines list them for running containers only.
    pub ports: Vec<Published>,
}

impl Listed {
    fn from_api(c: ContainerSummary) -> Option<Listed> {
        let name = c
            .names
            .as_ref()?
            .first()?
            .trim_start_matches('/')
            .to_owned();
        let ports = c
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                Some(Published {
                    container_port: p.private_port,
                    host_ip: p.ip.unwrap_or_default(),
                    host_port: p.public_port?,
                })
            })
            .collect();
        Some(Listed {
            name,
            state: c
                .state
                .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
            labels: c.labels.unwrap_or_default().into_iter().collect(),
            ports,
        })
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Why a create did not make the container.
#[derive(Debug)]
pub enum CreateError {
    /// A container by that name exists (Docker's 409, Podman's 500).
    NameTaken,
    /// The engine has no init binary for `init` (Podman without catatonit).
    NoInitBinary,
    /// The engine refused; the message says why.
    Refused(anyhow::Error),
}

/// Why a start failed.
#[derive(Debug)]
pub enum StartError {
    /// A host port to publish is in use.
    PortInUse(anyhow::Error),
    /// The container is gone: removed since it was last looked at.
    Gone(anyhow::Error),
    Refused(anyhow::Error),
}

impl From<StartError> for anyhow::Error {
    fn from(err: StartError) -> anyhow::Error {
        match err {
            StartError::PortInUse(err) | StartError::Gone(err) | StartError::Refused(err) => err,
        }
    }
}

/// No such container: Docker's 404, or Podman's 500 for one removed while
/// it was being looked at, started or removed ("does not exist in database:
/// no such container"). Every call on a container by name reads it so.
fn is_no_such_container(err: &bollard::errors::Error) -> bool {
    http_status(err) == Some(404)
        || (http_status(err) == Some(500) && message(err).contains("no such container"))
}

impl Engine {
    /// Inspects a container; `None` when there is none by that name.
    pub async fn inspect(&self, container: &str) -> Result<Option<Container>> {
        // Podman's transient `stopped` state fails to parse here too (see
        // `list`): ask again shortly.
        let mut attempt = 0;
        loop {
            match self.docker.inspect_container(container, None).await {
                Ok(info) => return Ok(Some(Container::from_api(info))),
                Err(err) if is_no_such_container(&err) => return Ok(None),
                Err(bollard::errors::Error::JsonDataError { .. }) if attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(err) => return Err(self.explain(err)),
            }
        }
    }

    /// Every container, running or not; with `label` (`key=value`), only
    /// those that carry it.
    pub async fn list(&self, label: Option<&str>) -> Result<Vec<Listed>> {
        let filters = label.map(|l| HashMap::from([("label".to_owned(), vec![l.to_owned()])]));
        let options = ListContainersOptions {
            all: true,
            filters,
            ..Default::default()
        };
        // Podman names a container that is being stopped `stopped` for a
        // moment, a state the API's schema (and so bollard) does not know:
        // the whole listing then fails to parse. Ask again shortly.
        let mut attempt = 0;
        let list = loop {
            match self.docker.list_containers(Some(options.clone())).await {
                Ok(list) => break list,
                Err(bollard::errors::Error::JsonDataError { .. }) if attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(err) => return Err(self.explain(err)),
            }
        };
        Ok(list.into_iter().filter_map(Listed::from_api).collect())
    }

    pub async fn create(&self, name: &str, spec: &ContainerSpec) -> Result<(), CreateError> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        match self
            .docker
            .create_container(Some(options), spec.body())
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if is_name_conflict(&err) => Err(CreateError::NameTaken),
            Err(err) if lacks_init_binary(&err) => Err(CreateError::NoInitBinary),
            Err(err) => Err(CreateError::Refused(self.explain(err))),
        }
    }

    /// Starts a container; one already running is fine. One still being
    /// stopped (Podman refuses it as "state improper") is waited for.
    pub async fn start(&self, name: &str) -> Result<(), StartError> {
        let mut attempt = 0;
        loop {
            match self.docker.start_container(name, None).await {
                Err(err) if message(&err).contains("state improper") && attempt < 100 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                result => return self.started(result),
            }
        }
    }

    fn started(&self, result: Result<(), bollard::errors::Error>) -> Result<(), StartError> {
        match result {
            Ok(()) => Ok(()),
            Err(err) if http_status(&err) == Some(304) => Ok(()),
            Err(err) if is_no_such_container(&err) => Err(StartError::Gone(self.explain(err))),
            Err(err) => {
                let text = message(&err).to_owned();
                let err = self.explain(err);
                if text.contains("port is already allocated")
                    || text.contains("address already in use")
                {
                    return Err(StartError::PortInUse(err));
                }
                Err(StartError::Refused(err))
            }
        }
    }

    /// Unpauses a paused container; one that is not paused is fine.
    pub async fn unpause(&self, name: &str) -> Result<()> {
        match self.docker.unpause_container(name).await {
            Ok(()) => Ok(()),
            Err(err) if message(&err).contains("not paused") => Ok(()),
            Err(err) => Err(self
                .explain(err)
                .context(format!("cannot unpause container `{name}`"))),
        }
    }

    /// Stops a container, giving it `timeout_secs` before SIGKILL. Returns
    /// false when it was not running or is not there.
    pub async fn stop(&self, name: &str, timeout_secs: i32) -> Result<bool> {
        let options = StopContainerOptions {
            t: Some(timeout_secs),
            ..Default::default()
        };
        match self.docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(err) if matches!(http_status(&err), Some(304 | 404)) => Ok(false),
            Err(err) => Err(self
                .explain(err)
                .context(format!("cannot stop container `{name}`"))),
        }
    }

    /// Freezes every process of a running container (its files hold still).
    pub async fn pause(&self, name: &str) -> Result<()> {
        self.docker.pause_container(name).await.map_err(|err| {
            self.explain(err)
                .context(format!("cannot pause container `{name}`"))
        })
    }

    /// Removes a container with its anonymous volumes, running or not; one
    /// that is not there is fine.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.remove_container(name, true).await
    }

    /// Removes a container, running or not, leaving its anonymous volumes
    /// on the engine (unattached, under their ids); one that is not there is
    /// fine.
    pub async fn remove_keeping_volumes(&self, name: &str) -> Result<()> {
        self.remove_container(name, false).await
    }

    async fn remove_container(&self, name: &str, volumes: bool) -> Result<()> {
        let options = RemoveContainerOptions {
            force: true,
            v: volumes,
            ..Default::default()
        };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if is_no_such_container(&err) => Ok(()),
            Err(err) => Err(self
                .explain(err)
                .context(format!("cannot remove container `{name}`"))),
        }
    }

    /// Waits, up to 10 s, for a container the engine is removing (a remove
    /// whose client was killed goes on without it) to be gone.
    pub async fn wait_removed(&self, name: &str) -> Result<()> {
        for _ in 0..200 {
            match self.inspect(name).await? {
                Some(info) if info.status == "removing" => {}
                _ => return Ok(()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(anyhow!(
            "container `{name}` is being removed, and still there after 10 s"
        ))
    }

    /// Waits for a container another client is creating: the engine reserves
    /// the name before the container can be inspected.
    pub async fn wait_for(&self, name: &str) -> Result<Container> {
        for _ in 0..200 {
            if let Some(info) = self.inspect(name).await? {
                return Ok(info);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Err(anyhow!(
            "the name `{name}` is taken, but no container by that name appeared within 10 s"
        ))
    }
}

/// A create refused because the name is taken: Docker answers 409, Podman
/// 500 "... is already in use".
pub(super) fn is_name_conflict(err: &bollard::errors::Error) -> bool {
    match http_status(err) {
        Some(409) => true,
        Some(500) => message(err).contains("is already in use"),
        _ => false,
    }
}

/// Podman answers a create with `init` this way when its init binary
/// (catatonit) is not installed; Docker ships its own.
fn lacks_init_binary(err: &bollard::errors::Error) -> bool {
    message(err).contains("container-init binary not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_is_gone_by_docker_404_or_podman_500_no_such_container() {
        let answer =
            |status_code: u16, message: &str| bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: message.to_owned(),
            };
        assert!(is_no_such_container(&answer(404, "No such container: x")));
        assert!(is_no_such_container(&answer(
            500,
            "container 6b87 does not exist in database: no such container"
        )));
        assert!(!is_no_such_container(&answer(500, "something else broke")));
        assert!(!is_no_such_container(&answer(409, "no such container")));
    }

    #[test]
    fn gpus_are_asked_for_as_docker_run_gpus_asks() {
        let body = |gpus| {
            let spec = ContainerSpec {
                gpus,
                ..Default::default()
            };
            serde_json::to_value(spec.body()).unwrap()["HostConfig"].clone()
        };
        assert_eq!(
            body(Some(-1))["DeviceRequests"],
            serde_json::json!([{ "Count": -1, "Capabilities": [["gpu"]] }])
        );
        assert_eq!(body(Some(2))["DeviceRequests"][0]["Count"], 2);
        assert!(body(None).get("DeviceRequests").is_none());
    }

    #[test]
    fn port_bindings_become_sorted_plain_values() {
        let binding = |ip: &str, port: &str| PortBinding {
            host_ip: Some(ip.to_owned()),
            host_port: Some(port.to_owned()),
        };
        let api = HashMap::from([
            (
                "8080/tcp".to_owned(),
                Some(vec![binding("127.0.0.1", "46502")]),
            ),
            (
                "46580/tcp".to_owned(),
                Some(vec![binding("127.0.0.1", "46501")]),
            ),
            ("53/udp".to_owned(), Some(vec![binding("", "46503")])),
            ("9/tcp".to_owned(), None),
        ]);
        let ports: Vec<(u16, u16)> = bindings(api)
            .iter()
            .map(|p| (p.host_port, p.container_port))
            .collect();
        assert_eq!(ports, [(46501, 46580), (46502, 8080)]);
    }

    #[test]
    fn podmans_missing_init_is_recognised() {
        let err = bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            // Podman 4.3.1 without catatonit, verbatim.
            message: "container create: container-init binary not found on the host: \
                      stat /usr/libexec/podman/catatonit: no such file or directory"
                .to_owned(),
        };
        assert!(lacks_init_binary(&err));
    }
}

//! The container engine, reached through its API (bollard), never its CLI.

pub mod archive;
pub mod auth;
pub mod build;
pub mod container;
pub mod discover;
pub mod exec;
pub mod image;
pub mod libpod;
pub mod network;
pub mod observe;
pub mod volume;

pub use container::{
    BindMount, Container, ContainerSpec, CreateError, Listed, Published, StartError, VolumeMount,
};

pub use discover::{Choice, Endpoint, START_ENGINE_HINT};

use crate::support::error::WithHint;
use anyhow::{anyhow, Context, Result};
use bollard::errors::Error as ApiError;
use bollard::models::{SystemInfo, SystemInfoCgroupVersionEnum};
use bollard::{ClientVersion, Docker};
use std::path::PathBuf;

/// The API version devinst speaks first: Docker 20.10 and Podman 4 serve it.
/// Engines that no longer accept it say so, and the client then negotiates.
const PINNED_VERSION: &ClientVersion = &ClientVersion {
    major_version: 1,
    minor_version: 41,
};
const TIMEOUT_SECS: u64 = 120;

pub struct Engine {
    docker: Docker,
    pub endpoint: Endpoint,
}

impl Engine {
    /// Picks the first endpoint whose socket exists, without a round trip to
    /// it: this is the shim's path, and the first real request tells soon
    /// enough whether the engine answers.
    pub fn connect_lazy(choice: &Choice) -> Result<Engine> {
        let endpoint = Engine::pick_lazy(choice)?;
        let docker =
            open(&endpoint.uri).map_err(|err| unreachable_error([(&endpoint, err.to_string())]))?;
        tracing::debug!("engine at {} ({})", endpoint.uri, endpoint.source);
        Ok(Engine { docker, endpoint })
    }

    /// The endpoint [`Engine::connect_lazy`] would use: the first whose
    /// socket exists. Plain file checks, no connection.
    pub fn pick_lazy(choice: &Choice) -> Result<Endpoint> {
        let tried = discover::candidates(choice, &discover::Env::from_process())?;
        let found = tried
            .iter()
            .find(|e| socket_path(&e.uri).is_none_or(|path| path.exists()))
            .cloned();
        found.ok_or_else(|| {
            unreachable_error(tried.iter().map(|e| (e, "no such socket".to_owned())))
        })
    }

    /// Finds an engine that answers and agrees an API version with it.
    pub async fn connect(choice: &Choice) -> Result<Engine> {
        let tried = discover::candidates(choice, &discover::Env::from_process())?;
        let mut reasons = Vec::new();
        for endpoint in &tried {
            tracing::debug!(
                "trying the engine at {} ({})",
                endpoint.uri,
                endpoint.source
            );
            match Engine::try_endpoint(endpoint).await {
                Ok(engine) => {
                    tracing::debug!("API version {}", engine.docker.client_version());
                    return Ok(engine);
                }
                Err(err) => reasons.push((endpoint, why(&err))),
            }
        }
        Err(unreachable_error(reasons))
    }

    async fn try_endpoint(endpoint: &Endpoint) -> Result<Engine, ApiError> {
        let docker = open(&endpoint.uri)?;
        docker.ping().await?;
        let docker = docker.negotiate_version().await?;
        Ok(Engine {
            docker,
            endpoint: endpoint.clone(),
        })
    }

    /// Whether an engine answers on the endpoint: `false` when nothing
    /// listens there (no engine runs), an error for any other failure.
    pub async fn answers(&self) -> Result<bool> {
        match self.docker.ping().await {
            Ok(_) => Ok(true),
            Err(err) if is_connection_failure(&err) => Ok(false),
            Err(err) => Err(self.explain(err)),
        }
    }

    /// Raises the client's API version to the engine's, after the engine
    /// refused the pinned one as too old.
    pub async fn renegotiate(&mut self) -> Result<()> {
        let uri = &self.endpoint.uri;
        let docker = Docker::connect_with_host_version(uri)?;
        self.docker = docker
            .negotiate_version()
            .await
            .map_err(|err| self.explain(err))?;
        Ok(())
    }

    /// Checks that the engine has the OCI runtime the recipe asks for, before
    /// a container is made with it: the engine's own refusal comes late
    /// (Docker at create, Podman at start) and does not say what it has.
    pub async fn require_runtime(&self, runtime: &str) -> Result<()> {
        let info = self.docker.info().await.map_err(|e| self.explain(e))?;
        let mut known: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        if known.iter().any(|name| name == runtime) {
            let default = info.default_runtime.as_deref() == Some(runtime);
            if !default && self.is_podman().await? {
                return Err(anyhow!(
                    "Podman's Docker-compatible API ignores `[container] runtime = \"{runtime}\"`: \
                     the container would run under its default runtime, unsandboxed"
                ))
                .hint(format!(
                    "use Docker for `{runtime}` (`--host`, `DOCKER_HOST`), or make it Podman's default \
                     (`runtime` under `[engine]` in containers.conf) and leave `runtime` out of devinst.toml"
                ));
            }
            return Ok(());
        }
        known.sort();
        Err(anyhow!(
            "the engine at {} has no runtime `{runtime}`; it has: {}",
            self.endpoint.uri,
            crate::support::text::list_or_none(&known.iter().map(String::as_str).collect::<Vec<_>>())
        ))
        .hint(format!(
            "set `[container] runtime` in devinst.toml to one of those, or add `{runtime}` to the engine \
             (Docker: a `runtimes` entry in /etc/docker/daemon.json, then `kill -HUP` dockerd; see docs/engines.md)"
        ))
    }

    async fn is_podman(&self) -> Result<bool> {
        let version = self.docker.version().await.map_err(|e| self.explain(e))?;
        let names: Vec<String> = version
            .components
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        Ok(is_podman(&names))
    }

    /// How the engine maps user ids into containers: rootless engines run
    /// them in a user namespace, each in its own way.
    pub async fn user_mapping(&self) -> Result<UserMapping> {
        let info = self.docker.info().await.map_err(|e| self.explain(e))?;
        self.user_mapping_from(&info).await
    }

    /// [`Engine::user_mapping`] with the engine's `/info` asked already.
    async fn user_mapping_from(&self, info: &SystemInfo) -> Result<UserMapping> {
        let options = info.security_options.as_deref().unwrap_or_default();
        let listed = is_rootless(options);
        if !self.is_podman().await? {
            return Ok(match listed {
                true => UserMapping::RootIsHostUser,
                false => UserMapping::Direct,
            });
        }
        // Podman 4.3 does not list `name=rootless`: its own API says.
        let host = libpod::host(&self.endpoint.uri)
            .await
            .with_context(|| {
                format!(
                    "cannot ask the Podman engine at {} whether it runs rootless",
                    self.endpoint.uri
                )
            })
            .hint("check that it is Podman 4 or later, and its service's log")?;
        Ok(match host.rootless || listed {
            true => UserMapping::RootlessPodman {
                engine_uid: host.engine_uid,
                subordinate_ids: host.subordinate_ids,
            },
            false => UserMapping::Direct,
        })
    }

    /// Whether the engine takes resource limits and drops them: rootless
    /// Podman on cgroup v1 does ("Resource limits are not supported and
    /// ignored on cgroups V1 rootless systems", in its own log only: the
    /// create answers no warning, inspect then shows no limit).
    pub async fn ignores_limits(&self) -> Result<bool> {
        let info = self.docker.info().await.map_err(|e| self.explain(e))?;
        if info.cgroup_version != Some(SystemInfoCgroupVersionEnum::_1) {
            return Ok(false);
        }
        Ok(matches!(
            self.user_mapping_from(&info).await?,
            UserMapping::RootlessPodman { .. }
        ))
    }

    /// Turns an engine answer into a sentence; connection failures get the
    /// endpoint and a hint on starting an engine.
    pub fn explain(&self, err: ApiError) -> anyhow::Error {
        if is_connection_failure(&err) {
            return unreachable_error([(&self.endpoint, why(&err))]);
        }
        match err {
            ApiError::DockerResponseServerError {
                status_code,
                message,
            } => {
                anyhow!("the engine answered {status_code}: {}", message.trim())
            }
            other => anyhow!(other),
        }
    }
}

/// "cannot reach a container engine", with each endpoint tried, why it
/// failed, and how to start an engine.
fn unreachable_error<'a>(
    reasons: impl IntoIterator<Item = (&'a Endpoint, String)>,
) -> anyhow::Error {
    let lines: Vec<String> = reasons
        .into_iter()
        .map(|(e, why)| format!("{} ({}): {why}", e.uri, e.source))
        .collect();
    anyhow!(
        "cannot reach a container engine; tried:\n    {}",
        lines.join("\n    ")
    )
    .context(crate::support::error::Hint(START_ENGINE_HINT.to_owned()))
}

/// A short reason for a failed connection: the OS error where there is one.
fn why(err: &ApiError) -> String {
    match err {
        ApiError::SocketNotFoundError(_) => "no such socket".to_owned(),
        ApiError::UnsupportedURISchemeError { .. } => {
            "unsupported scheme (devinst speaks `unix://`, `tcp://` and `http://`)".to_owned()
        }
        other => {
            let mut source: &dyn std::error::Error = other;
            while let Some(next) = source.source() {
                source = next;
            }
            source.to_string()
        }
    }
}

fn open(uri: &str) -> Result<Docker, ApiError> {
    if let Some(path) = socket_path(uri) {
        return Docker::connect_with_unix(&path.to_string_lossy(), TIMEOUT_SECS, PINNED_VERSION);
    }
    if uri.starts_with("tcp://") || uri.starts_with("http://") {
        return Docker::connect_with_http(uri, TIMEOUT_SECS, PINNED_VERSION);
    }
    Err(ApiError::UnsupportedURISchemeError {
        uri: uri.to_owned(),
    })
}

trait ConnectWithHostVersion {
    fn connect_with_host_version(uri: &str) -> Result<Docker, ApiError>;
}

impl ConnectWithHostVersion for Docker {
    /// A client at bollard's newest version, to be negotiated down.
    fn connect_with_host_version(uri: &str) -> Result<Docker, ApiError> {
        let version = bollard::API_DEFAULT_VERSION;
        match socket_path(uri) {
            Some(path) => Docker::connect_with_unix(&path.to_string_lossy(), TIMEOUT_SECS, version),
            None => Docker::connect_with_http(uri, TIMEOUT_SECS, version),
        }
    }
}

fn socket_path(uri: &str) -> Option<PathBuf> {
    uri.strip_prefix("unix://").map(PathBuf::from)
}

/// The HTTP status of an engine answer, if it was one.
fn http_status(err: &ApiError) -> Option<u16> {
    match err {
        ApiError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// What the engine said, in an answer or in a stream.
fn words(err: &ApiError) -> &str {
    match err {
        ApiError::DockerStreamError { error } => error,
        other => message(other),
    }
}

fn message(err: &ApiError) -> &str {
    match err {
        ApiError::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

/// Docker and Podman both list `name=rootless` in their security options
/// when they run without root.
fn is_rootless(security_options: &[String]) -> bool {
    security_options
        .iter()
        .any(|o| o.split(',').any(|part| part == "name=rootless"))
}

/// How the engine maps user ids into containers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum UserMapping {
    /// A rootful engine: ids inside the container are the host's.
    #[default]
    Direct,
    /// Rootless Podman: the container's root is the engine's user on the
    /// host (its default user namespace); user namespace mode `keep-id`
    /// maps that user to its own uid inside instead, and needs subordinate
    /// ids for the container's other users (root among them).
    RootlessPodman {
        /// The engine's user on the host, when Podman said.
        engine_uid: Option<u32>,
        subordinate_ids: u64,
    },
    /// Rootless Docker: the container's root is the host user already.
    RootIsHostUser,
}

/// The user namespace mode that maps the engine's user to its own uid inside
/// on rootless Podman (`podman run --userns=keep-id`); Podman 4.3's
/// compatible API honours it as `HostConfig.UsernsMode` on create (its
/// inspect then reads `private`, but the container's id mappings are
/// keep-id's).
pub const KEEP_ID: &str = "keep-id";

/// Podman's compatible API names its first version component "Podman Engine".
fn is_podman(component_names: &[String]) -> bool {
    component_names.iter().any(|n| n.starts_with("Podman"))
}

/// The container cannot take an exec because it is missing (404) or not
/// running: Docker answers 409 (500 "is not running" while it stops), Podman
/// 500 with "container state improper".
fn is_missing_or_stopped(err: &ApiError) -> bool {
    match http_status(err) {
        Some(404 | 409) => true,
        Some(500) => ["container state improper", "is not running"]
            .iter()
            .any(|m| message(err).contains(m)),
        _ => false,
    }
}

/// The engine refused our pinned API version as older than it supports.
fn is_version_too_old(err: &ApiError) -> bool {
    http_status(err) == Some(400) && message(err).contains("too old")
}

fn is_connection_failure(err: &ApiError) -> bool {
    matches!(
        err,
        ApiError::SocketNotFoundError(_)
            | ApiError::HyperLegacyError { .. }
            | ApiError::IOError { .. }
            | ApiError::RequestTimeoutError
    )
}

#[cfg(test)]
mod tests {
    use super::container::is_name_conflict;
    use super::*;

    fn answer(status_code: u16, message: &str) -> ApiError {
        ApiError::DockerResponseServerError {
            status_code,
            message: message.to_owned(),
        }
    }

    #[test]
    fn rootless_engines_and_podman_are_told_apart() {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_rootless(&strings(&[
            "name=seccomp,profile=default",
            "name=rootless"
        ])));
        assert!(!is_rootless(&strings(&["name=seccomp,profile=default"])));
        assert!(is_podman(&strings(&["Podman Engine", "Conmon"])));
        assert!(!is_podman(&strings(&["Engine", "containerd", "runc"])));
    }

    #[test]
    fn name_conflicts_are_recognised_on_docker_and_podman() {
        assert!(is_name_conflict(&answer(
            409,
            "Conflict. The container name \"/x\" is already in use"
        )));
        // Podman 4.3's answer, verbatim but for the id.
        assert!(is_name_conflict(&answer(
            500,
            "container create: creating container storage: the container name \"x\" is already in use by abc. \
             You have to remove that container to be able to reuse that name: that name is already in use"
        )));
        assert!(!is_name_conflict(&answer(500, "no space left on device")));
    }

    #[test]
    fn stopped_containers_are_recognised_on_docker_and_podman() {
        assert!(is_missing_or_stopped(&answer(404, "No such container")));
        assert!(is_missing_or_stopped(&answer(
            409,
            "Container abc is not running"
        )));
        // Podman 4.3's answer to an exec on a stopped container.
        assert!(is_missing_or_stopped(&answer(
            500,
            "can only create exec sessions on running containers: container state improper"
        )));
        // Docker 20.10, racing a stop.
        assert!(is_missing_or_stopped(&answer(
            500,
            "Container abc is not running: Exited (143) Less than a second ago"
        )));
        assert!(!is_missing_or_stopped(&answer(
            500,
            "no space left on device"
        )));
    }
}

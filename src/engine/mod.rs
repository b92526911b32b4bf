//! The container engine, reached through its API (bollard), never its CLI.

pub mod build;
pub mod exec;
pub mod image;
pub mod spec;

use crate::error::WithHint;
use anyhow::{anyhow, Result};
use bollard::errors::Error as ApiError;
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::ListContainersOptions;
use bollard::{ClientVersion, Docker};
use std::collections::HashMap;
use std::path::PathBuf;

/// The API version devinst speaks first: Docker 20.10 and Podman 4 serve it.
/// Engines that no longer accept it say so, and the client then negotiates.
const PINNED_VERSION: &ClientVersion = &ClientVersion {
    major_version: 1,
    minor_version: 41,
};
const TIMEOUT_SECS: u64 = 120;

/// Where an engine may be found, and why devinst looked there.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub uri: String,
    pub source: &'static str,
}

pub struct Engine {
    pub docker: Docker,
    pub endpoint: Endpoint,
}

/// The endpoints to try, in order: the recipe's, `DOCKER_HOST`, then the
/// usual Docker and Podman sockets.
pub fn candidates(configured: Option<&str>) -> Vec<Endpoint> {
    if let Some(uri) = configured {
        return vec![Endpoint {
            uri: uri.to_owned(),
            source: "[engine] host in devinst.toml",
        }];
    }
    if let Some(uri) = std::env::var("DOCKER_HOST").ok().filter(|v| !v.is_empty()) {
        return vec![Endpoint {
            uri,
            source: "DOCKER_HOST",
        }];
    }
    let mut found = vec![Endpoint {
        uri: "unix:///var/run/docker.sock".to_owned(),
        source: "the default Docker socket",
    }];
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        let path = PathBuf::from(runtime).join("podman/podman.sock");
        found.push(Endpoint {
            uri: format!("unix://{}", path.display()),
            source: "the rootless Podman socket",
        });
    }
    found.push(Endpoint {
        uri: "unix:///run/podman/podman.sock".to_owned(),
        source: "the Podman socket",
    });
    found
}

impl Engine {
    /// Picks the first endpoint whose socket exists, without a round trip to
    /// it: this is the shim's path, and the first real request tells soon
    /// enough whether the engine answers.
    pub fn connect_lazy(configured: Option<&str>) -> Result<Engine> {
        let tried = candidates(configured);
        let endpoint = tried
            .iter()
            .find(|e| socket_path(&e.uri).is_none_or(|path| path.exists()))
            .cloned()
            .ok_or_else(|| unreachable_error(&tried, &"no engine socket exists"))?;
        tracing::debug!("engine at {} ({})", endpoint.uri, endpoint.source);
        let docker = open(&endpoint.uri)
            .map_err(|err| unreachable_error(std::slice::from_ref(&endpoint), &causes(&err)))?;
        Ok(Engine { docker, endpoint })
    }

    /// Finds an engine that answers and agrees an API version with it.
    pub async fn connect(configured: Option<&str>) -> Result<Engine> {
        let tried = candidates(configured);
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
                Err(err) => reasons.push(format!(
                    "{} ({}): {}",
                    endpoint.uri,
                    endpoint.source,
                    causes(&err)
                )),
            }
        }
        Err(anyhow!(
            "cannot reach a container engine; tried:\n    {}",
            reasons.join("\n    ")
        ))
        .hint(START_ENGINE_HINT)
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

    /// Inspects a container; `None` when there is none by that name.
    pub async fn inspect(&self, container: &str) -> Result<Option<ContainerInspectResponse>> {
        match self.docker.inspect_container(container, None).await {
            Ok(info) => Ok(Some(info)),
            Err(err) if status(&err) == Some(404) => Ok(None),
            Err(err) => Err(self.explain(err)),
        }
    }

    /// Every container devinst made, running or not, found by its label.
    pub async fn managed_containers(&self) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{}=devinst", spec::LABEL_MANAGED_BY)],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.explain(e))
    }

    /// Turns an engine answer into a sentence; connection failures get the
    /// endpoint and a hint on starting an engine.
    pub fn explain(&self, err: ApiError) -> anyhow::Error {
        if is_connection_failure(&err) {
            return unreachable_error(std::slice::from_ref(&self.endpoint), &causes(&err));
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

pub const START_ENGINE_HINT: &str =
    "start an engine: Docker (`dockerd &`, or `systemctl start docker`) \
or Podman's API (`podman system service --time=0 &`), or point `DOCKER_HOST` at a running one";

/// An error with its causes, `a: b: c`: the useful part of a connection
/// failure ("Connection refused") is usually the innermost.
fn causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

fn unreachable_error(tried: &[Endpoint], why: &dyn std::fmt::Display) -> anyhow::Error {
    let list: Vec<String> = tried
        .iter()
        .map(|e| format!("{} ({})", e.uri, e.source))
        .collect();
    anyhow!(
        "cannot reach a container engine at {}: {why}",
        list.join(", ")
    )
    .context(crate::error::Hint(START_ENGINE_HINT.to_owned()))
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

/// A listed container's name, without the API's leading `/`.
pub fn summary_name(c: &ContainerSummary) -> Option<String> {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_owned())
}

/// The HTTP status of an engine answer, if it was one.
pub fn status(err: &ApiError) -> Option<u16> {
    match err {
        ApiError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub fn message(err: &ApiError) -> &str {
    match err {
        ApiError::DockerResponseServerError { message, .. } => message,
        _ => "",
    }
}

/// The engine refused our pinned API version as older than it supports.
pub fn is_version_too_old(err: &ApiError) -> bool {
    status(err) == Some(400) && message(err).contains("too old")
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

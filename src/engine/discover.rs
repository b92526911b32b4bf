//! Where the engine is: the endpoints to try, in order, from the flag, the
//! environment, the user's config, the Docker CLI's current context, the
//! recipe, then the usual Docker and Podman sockets. No network here, and files are read only when the
//! environment points at them: this runs on every shim's path.

use crate::support::error::WithHint;
use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const DOCKER_SOCKET: &str = "unix:///var/run/docker.sock";
pub const PODMAN_SOCKET: &str = "unix:///run/podman/podman.sock";

/// Where an engine may be found, and why devinst looked there.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub uri: String,
    pub source: String,
}

impl Endpoint {
    fn new(uri: impl Into<String>, source: impl Into<String>) -> Endpoint {
        Endpoint {
            uri: uri.into(),
            source: source.into(),
        }
    }
}

/// Where the engine was named, strongest first (`DOCKER_HOST` and the
/// context, from [`Env`], come between `user` and `config`).
#[derive(Debug, Clone, Default)]
pub struct Choice {
    /// `--host URI` on the command line.
    pub flag: Option<String>,
    /// `[engine] host` in the user's own config file.
    pub user: Option<String>,
    /// `[engine] host` in devinst.toml: the repository's word, so the last
    /// of the named ones.
    pub config: Option<String>,
}

/// Why devinst looked at the recipe's endpoint.
pub const RECIPE_SOURCE: &str = "[engine] host in devinst.toml";

/// The parts of the process environment discovery reads, gathered in one place
/// so tests can give their own.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    /// The Docker CLI's configuration directory: `DOCKER_CONFIG`, else `~/.docker`.
    pub docker_config: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty());
        Env {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            docker_config: var("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| home.map(|h| PathBuf::from(h).join(".docker"))),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
        }
    }
}

/// The endpoints to try, in order. A named endpoint (flag, `DOCKER_HOST`,
/// the user's config, a context, the recipe) is the only one: falling back
/// to another engine behind the user's back would hide their mistake.
/// Otherwise the usual sockets.
pub fn candidates(choice: &Choice, env: &Env) -> Result<Vec<Endpoint>> {
    if let Some(endpoint) = named(choice, env)? {
        return Ok(vec![endpoint]);
    }
    let mut found = vec![Endpoint::new(DOCKER_SOCKET, "the default Docker socket")];
    if let Some(dir) = &env.xdg_runtime_dir {
        found.push(Endpoint::new(
            format!("unix://{}", dir.join("podman/podman.sock").display()),
            "the rootless Podman socket",
        ));
    }
    found.push(Endpoint::new(PODMAN_SOCKET, "the Podman socket"));
    Ok(found)
}

/// The first named endpoint: the user's words before the repository's.
fn named(choice: &Choice, env: &Env) -> Result<Option<Endpoint>> {
    if let Some(uri) = &choice.flag {
        return Ok(Some(Endpoint::new(uri, "--host")));
    }
    if let Some(uri) = &env.docker_host {
        return Ok(Some(Endpoint::new(uri, "DOCKER_HOST")));
    }
    if let Some(uri) = &choice.user {
        return Ok(Some(Endpoint::new(uri, "[engine] host in your config")));
    }
    if let Some(endpoint) = context_endpoint(env)? {
        return Ok(Some(endpoint));
    }
    Ok(choice
        .config
        .as_ref()
        .map(|uri| Endpoint::new(uri, RECIPE_SOURCE)))
}

/// Whether the recipe's `[engine] host` is the endpoint devinst would use:
/// nothing the user named beats it. A context that cannot be read is not
/// the recipe's: the command fails on it before any engine is reached.
pub fn recipe_endpoint_used(choice: &Choice, env: &Env) -> bool {
    choice.config.is_some()
        && matches!(named(choice, env), Ok(Some(e)) if e.source == RECIPE_SOURCE)
}

/// The Docker CLI's current context (`DOCKER_CONTEXT`, else `currentContext`
/// in its config.json) as an endpoint; `None` for no context or `default`,
/// which is the default socket.
fn context_endpoint(env: &Env) -> Result<Option<Endpoint>> {
    let Some((name, from)) = current_context(env)? else {
        return Ok(None);
    };
    if name == "default" {
        return Ok(None);
    }
    let dir = env.docker_config.clone().unwrap_or_default();
    let meta = context_meta_path(&dir, &name);
    let text = match std::fs::read_to_string(&meta) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(anyhow!(
                "unknown docker context `{name}` (from {from}): there is no `{}`",
                meta.display()
            ))
            .hint(
                "`docker context ls` lists the contexts; pick one with `docker context use NAME`, \
                 or unset `DOCKER_CONTEXT`",
            )
        }
        Err(err) => return Err(err).with_context(|| format!("cannot read `{}`", meta.display())),
    };
    let host = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["Endpoints"]["docker"]["Host"].as_str().map(str::to_owned))
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "docker context `{name}` names no engine: `{}` has no `Endpoints.docker.Host`",
                meta.display()
            )
        })
        .hint("check it with `docker context inspect`, or pick another context")?;
    Ok(Some(Endpoint::new(
        host,
        format!("docker context `{name}` from {from}"),
    )))
}

/// The current context's name and where it was set.
fn current_context(env: &Env) -> Result<Option<(String, String)>> {
    if let Some(name) = &env.docker_context {
        return Ok(Some((name.clone(), "DOCKER_CONTEXT".to_owned())));
    }
    let Some(dir) = &env.docker_config else {
        return Ok(None);
    };
    let Some((path, value)) = read_docker_config::<serde_json::Value>(dir)? else {
        return Ok(None);
    };
    Ok(value["currentContext"]
        .as_str()
        .filter(|name| !name.is_empty())
        .map(|name| (name.to_owned(), format!("`{}`", path.display()))))
}

/// The Docker CLI keeps a context's metadata under the SHA-256 of its name.
pub fn context_meta_path(config_dir: &Path, name: &str) -> PathBuf {
    let digest: String = Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    config_dir
        .join("contexts/meta")
        .join(digest)
        .join("meta.json")
}

/// How to bring up each kind of engine devinst looks for.
pub const START_ENGINE_HINT: &str = "start an engine: Docker with `dockerd &` (or `systemctl start docker`); \
Podman's Docker-compatible API with `podman system service --time=0 unix:///run/podman/podman.sock &` \
(rootless: `systemctl --user start podman.socket`); gVisor runs under Docker as its `runsc` runtime. \
Or name a running engine with `--host`, `DOCKER_HOST`, `[engine] host` in your config or devinst.toml, or `docker context use`";

/// Where engine sockets are on a host like this one: the usual places, and
/// wherever the environment points. A bind mount holding one hands the
/// engine (and so the host) to the container.
pub fn known_sockets(env: &Env) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = [DOCKER_SOCKET, PODMAN_SOCKET, "unix:///run/docker.sock"]
        .iter()
        .filter_map(|uri| uri.strip_prefix("unix://"))
        .map(PathBuf::from)
        .collect();
    if let Some(dir) = &env.xdg_runtime_dir {
        found.push(dir.join("podman/podman.sock"));
        found.push(dir.join("docker.sock"));
    }
    if let Some(dir) = &env.docker_config {
        found.push(dir.join("run/docker.sock"));
    }
    if let Some(path) = env
        .docker_host
        .as_deref()
        .and_then(|h| h.strip_prefix("unix://"))
    {
        found.push(PathBuf::from(path));
    }
    found
}

/// The Docker CLI's `config.json` in `dir`, read as `T`, and its path;
/// `None` when there is none.
pub(super) fn read_docker_config<T: serde::de::DeserializeOwned>(
    dir: &Path,
) -> Result<Option<(PathBuf, T)>> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read `{}`", path.display())),
    };
    let value = serde_json::from_str(&text)
        .with_context(|| format!("invalid `{}`", path.display()))
        .hint("the Docker CLI's config file must be JSON; fix or remove it")?;
    Ok(Some((path, value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_dir(contexts: &[(&str, &str)], current: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, host) in contexts {
            let meta = context_meta_path(dir.path(), name);
            std::fs::create_dir_all(meta.parent().unwrap()).unwrap();
            let json = format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
            );
            std::fs::write(meta, json).unwrap();
        }
        if let Some(current) = current {
            let json = format!(r#"{{"auths":{{}},"currentContext":"{current}"}}"#);
            std::fs::write(dir.path().join("config.json"), json).unwrap();
        }
        dir
    }

    fn uris(choice: &Choice, env: &Env) -> Vec<String> {
        candidates(choice, env)
            .unwrap()
            .into_iter()
            .map(|e| e.uri)
            .collect()
    }

    #[test]
    fn the_docker_cli_names_a_context_by_the_sha256_of_its_name() {
        // As `docker context create remote` lays it out (`printf remote | sha256sum`).
        assert_eq!(
            context_meta_path(Path::new("/c"), "remote"),
            Path::new("/c/contexts/meta/b71199ebd070b36beab7317920c2c2f1d777df8d05e5527d8458fda57cb17a7a/meta.json")
        );
    }

    #[test]
    fn each_source_wins_over_the_ones_after_it() {
        let dir = context_dir(
            &[("ctx", "unix:///ctx.sock"), ("cfg", "unix:///cfg.sock")],
            Some("cfg"),
        );
        let mut env = Env {
            docker_host: Some("unix:///env.sock".into()),
            docker_context: Some("ctx".into()),
            docker_config: Some(dir.path().to_path_buf()),
            xdg_runtime_dir: Some("/run/user/7".into()),
        };
        let mut choice = Choice {
            flag: Some("unix:///flag.sock".into()),
            user: Some("unix:///user.sock".into()),
            config: Some("unix:///toml.sock".into()),
        };
        assert_eq!(uris(&choice, &env), ["unix:///flag.sock"]);
        choice.flag = None;
        assert_eq!(uris(&choice, &env), ["unix:///env.sock"]);
        env.docker_host = None;
        assert_eq!(uris(&choice, &env), ["unix:///user.sock"]);
        choice.user = None;
        assert_eq!(uris(&choice, &env), ["unix:///ctx.sock"]);
        env.docker_context = None;
        assert_eq!(uris(&choice, &env), ["unix:///cfg.sock"]);
        let sources: Vec<String> = candidates(&choice, &env)
            .unwrap()
            .into_iter()
            .map(|e| e.source)
            .collect();
        assert!(sources[0].contains("`cfg`"), "{sources:?}");
        assert!(!recipe_endpoint_used(&choice, &env), "the context beats it");
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        assert_eq!(uris(&choice, &env), ["unix:///toml.sock"]);
        assert!(recipe_endpoint_used(&choice, &env));
        choice.config = None;
        assert!(!recipe_endpoint_used(&choice, &env));
        assert_eq!(
            uris(&choice, &env),
            [
                DOCKER_SOCKET,
                "unix:///run/user/7/podman/podman.sock",
                PODMAN_SOCKET
            ]
        );
        env.xdg_runtime_dir = None;
        assert_eq!(uris(&choice, &env), [DOCKER_SOCKET, PODMAN_SOCKET]);
    }

    #[test]
    fn the_default_context_means_the_default_sockets() {
        let dir = context_dir(&[], Some("default"));
        let env = Env {
            docker_config: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(
            uris(&Choice::default(), &env),
            [DOCKER_SOCKET, PODMAN_SOCKET]
        );
        let env = Env {
            docker_context: Some("default".into()),
            ..Default::default()
        };
        assert_eq!(
            uris(&Choice::default(), &env),
            [DOCKER_SOCKET, PODMAN_SOCKET]
        );
    }

    #[test]
    fn an_unknown_or_empty_context_is_an_error_naming_it() {
        let dir = context_dir(&[("empty", "")], None);
        let env = Env {
            docker_context: Some("nosuch".into()),
            docker_config: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let err = format!("{:#}", candidates(&Choice::default(), &env).unwrap_err());
        assert!(err.contains("unknown docker context `nosuch`"), "{err}");
        assert!(err.contains("DOCKER_CONTEXT"), "{err}");
        assert!(err.contains("docker context ls"), "{err}");
        let env = Env {
            docker_context: Some("empty".into()),
            ..env
        };
        let err = format!("{:#}", candidates(&Choice::default(), &env).unwrap_err());
        assert!(err.contains("Endpoints.docker.Host"), "{err}");
    }

    #[test]
    fn a_broken_docker_config_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let env = Env {
            docker_config: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let err = format!("{:#}", candidates(&Choice::default(), &env).unwrap_err());
        assert!(err.contains("config.json"), "{err}");
    }
}

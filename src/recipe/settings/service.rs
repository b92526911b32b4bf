//! `[services.NAME]`: containers beside the instance, resolved and validated.

use crate::recipe::config::ServiceConfig;
use crate::recipe::validate::validate_env_name;
use crate::support::error::WithHint;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

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

pub(super) fn service_hint(name: &str) -> String {
    format!("fix `[services.{name}]` in devinst.toml; the README's devinst.toml reference lists its keys")
}

/// Every `[services.NAME]` table, each error with the hint to fix its table.
pub(super) fn resolve_services(
    services: BTreeMap<String, ServiceConfig>,
) -> Result<BTreeMap<String, Service>> {
    services
        .into_iter()
        .map(|(name, c)| {
            let hint = service_hint(&name);
            Ok((name.clone(), resolve_service(name, c).hint(hint)?))
        })
        .collect()
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

pub(super) fn validate_service(service: &Service) -> Result<()> {
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
    // `<container>-node-K` is the name of a cluster's node K.
    let node_like = name
        .strip_prefix("node-")
        .is_some_and(|rank| !rank.is_empty() && rank.chars().all(|c| c.is_ascii_digit()));
    if node_like {
        bail!("`[services.{name}]`: names `node-` followed by a number are the nodes of a `[cluster]`; pick another name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::recipe::settings::tests::resolve;

    #[test]
    fn services_resolve_with_their_env_stem() {
        let s = resolve("[services.db-main]\nimage = \"x\"\nport = 5432\n").unwrap();
        let db = &s.services["db-main"];
        assert_eq!(db.port, Some(5432));
        assert_eq!(db.command, None);
        assert_eq!(db.env_stem(), "DEVINST_SERVICE_DB_MAIN");
        assert!(resolve("").unwrap().services.is_empty());
    }
}

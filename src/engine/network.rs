//! The network an instance joins when the recipe names one: created on first
//! use as a plain bridge, labelled as devinst's, and never removed by devinst,
//! since other instances (or the user) may be on it.

use super::{status, Engine};
use crate::instance::spec::LABEL_MANAGED_BY;
use crate::state::registry::Registry;
use crate::support::output;
use anyhow::Result;
use bollard::models::NetworkCreateRequest;
use std::collections::HashMap;

/// Network modes the engine provides itself: joined as they are, never created.
pub fn is_builtin(mode: &str) -> bool {
    matches!(
        mode,
        "default" | "bridge" | "host" | "none" | "private" | "slirp4netns" | "pasta"
    ) || mode.starts_with("container:")
        || mode.starts_with("ns:")
}

/// What devinst asks for when it creates a network: the bridge driver (so
/// instances on it find each other by container name) and its label.
pub fn create_request(name: &str) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("bridge".to_owned()),
        labels: Some(HashMap::from([(
            LABEL_MANAGED_BY.to_owned(),
            "devinst".to_owned(),
        )])),
        ..Default::default()
    }
}

impl Engine {
    /// Makes sure the network `name` exists, creating it when missing. Docker
    /// (API 1.41) does not refuse a second network of the same name, so two
    /// instances starting at once would each make one: the check and the
    /// create happen under devinst's host-wide lock.
    pub async fn ensure_network(&self, name: &str) -> Result<()> {
        if is_builtin(name) || self.network_exists(name).await? {
            return Ok(());
        }
        let _lock = Registry::lock()?;
        if self.network_exists(name).await? {
            return Ok(());
        }
        output::note(format!("creating network `{name}`"));
        let err = match self.docker.create_network(create_request(name)).await {
            Ok(_) => return Ok(()),
            Err(err) if status(&err) == Some(409) => return Ok(()),
            Err(err) => err,
        };
        // An answer bollard could not read may still have made it.
        if self.network_exists(name).await? {
            return Ok(());
        }
        Err(self
            .explain(err)
            .context(format!("cannot create network `{name}`")))
    }

    async fn network_exists(&self, name: &str) -> Result<bool> {
        match self.docker.inspect_network(name, None).await {
            Ok(_) => Ok(true),
            Err(err) if status(&err) == Some(404) => Ok(false),
            Err(err) => Err(self
                .explain(err)
                .context(format!("cannot look up network `{name}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_modes_are_never_created() {
        for mode in [
            "bridge",
            "host",
            "none",
            "default",
            "container:db",
            "ns:/proc/1/ns/net",
        ] {
            assert!(is_builtin(mode), "{mode}");
        }
        assert!(!is_builtin("team-net"));
    }

    #[test]
    fn created_networks_are_labelled_bridges() {
        let request = create_request("team-net");
        assert_eq!(request.name, "team-net");
        assert_eq!(request.driver.as_deref(), Some("bridge"));
        assert_eq!(request.labels.unwrap()[LABEL_MANAGED_BY], "devinst");
    }
}

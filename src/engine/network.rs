//! Networks: made on first use as plain bridges, checked by label, removed.

use super::{http_status, Engine};
use crate::support::output;
use anyhow::Result;
use bollard::models::NetworkCreateRequest;
use std::collections::HashMap;

/// A network as devinst creates it: the bridge driver (so containers on it
/// find each other by name) and `labels`.
fn create_request(name: &str, labels: &[(String, String)]) -> NetworkCreateRequest {
    NetworkCreateRequest {
        name: name.to_owned(),
        driver: Some("bridge".to_owned()),
        labels: Some(labels.iter().cloned().collect::<HashMap<_, _>>()),
        ..Default::default()
    }
}

impl Engine {
    /// Makes sure the network `name` exists, creating it (labelled
    /// `labels`) when missing. `name` is a network to create, never one of
    /// the engine's own modes (`host`, `container:ID`, ...). Docker (API 1.41) does not refuse a second
    /// network of the same name, so callers that may race hold a lock of
    /// their own around this.
    pub async fn ensure_network(&self, name: &str, labels: &[(String, String)]) -> Result<()> {
        if self.network_exists(name).await? {
            return Ok(());
        }
        output::note(format!("creating network `{name}`"));
        let err = match self
            .docker
            .create_network(create_request(name, labels))
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) if http_status(&err) == Some(409) => return Ok(()),
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

    /// Whether the network `name` exists and carries `label` = `value`.
    pub async fn network_has_label(&self, name: &str, label: &str, value: &str) -> Result<bool> {
        match self.docker.inspect_network(name, None).await {
            Ok(info) => Ok(info
                .labels
                .is_some_and(|l| l.get(label).map(String::as_str) == Some(value))),
            Err(err) if http_status(&err) == Some(404) => Ok(false),
            Err(err) => Err(self.explain(err)),
        }
    }

    /// Removes the network `name`; false when it was not there.
    pub async fn remove_network(&self, name: &str) -> Result<bool> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(true),
            Err(err) if http_status(&err) == Some(404) => Ok(false),
            Err(err) => Err(self.explain(err)),
        }
    }

    pub async fn network_exists(&self, name: &str) -> Result<bool> {
        match self.docker.inspect_network(name, None).await {
            Ok(_) => Ok(true),
            Err(err) if http_status(&err) == Some(404) => Ok(false),
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
    fn created_networks_are_labelled_bridges() {
        let label = ("devinst.managed-by".to_owned(), "devinst".to_owned());
        let request = create_request("team-net", &[label]);
        assert_eq!(request.name, "team-net");
        assert_eq!(request.driver.as_deref(), Some("bridge"));
        assert_eq!(request.labels.unwrap()["devinst.managed-by"], "devinst");
    }
}

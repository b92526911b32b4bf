//! Named volumes: made with labels, listed by label, removed. A container
//! removed with its anonymous volumes never takes a named one along.

use super::{http_status, Engine};
use anyhow::Result;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};
use std::collections::{BTreeMap, HashMap};

/// A named volume as the engine describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Volume {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

impl Volume {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

impl Engine {
    /// The volume `name`; `None` when there is none.
    pub async fn inspect_volume(&self, name: &str) -> Result<Option<Volume>> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(Volume {
                name: v.name,
                labels: v.labels.into_iter().collect(),
            })),
            Err(err) if http_status(&err) == Some(404) => Ok(None),
            Err(err) => Err(self
                .explain(err)
                .context(format!("cannot look up volume `{name}`"))),
        }
    }

    /// Creates the volume `name` with `labels`; one already there is kept
    /// as it is (Docker answers with it, Podman with 409 or 500).
    pub async fn create_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(labels.clone().into_iter().collect::<HashMap<_, _>>()),
            ..Default::default()
        };
        match self.docker.create_volume(request).await {
            Ok(_) => Ok(()),
            Err(_) if self.inspect_volume(name).await?.is_some() => Ok(()),
            Err(err) => Err(self
                .explain(err)
                .context(format!("cannot create volume `{name}`"))),
        }
    }

    /// The volumes that carry `label` (`key=value`).
    pub async fn list_volumes(&self, label: &str) -> Result<Vec<Volume>> {
        let options = ListVolumesOptions {
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![label.to_owned()],
            )])),
        };
        let list = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|err| self.explain(err))?;
        let mut volumes: Vec<Volume> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| Volume {
                name: v.name,
                labels: v.labels.into_iter().collect(),
            })
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Removes the volume `name`; false when it was not there. A volume a
    /// container still uses is refused by the engine, and that is an error.
    pub async fn remove_volume(&self, name: &str) -> Result<bool> {
        match self
            .docker
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
        {
            Ok(()) => Ok(true),
            Err(err) if http_status(&err) == Some(404) => Ok(false),
            Err(err) => Err(self
                .explain(err)
                .context(format!("cannot remove volume `{name}`"))),
        }
    }
}

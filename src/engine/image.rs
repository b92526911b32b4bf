//! Images: present or pulled (with progress on stderr), listed by label,
//! made from a container, removed.

use super::{http_status, Engine};
use crate::support::output;
use anyhow::{anyhow, Result};
use bollard::models::ContainerConfig;
use bollard::query_parameters::{
    CommitContainerOptions, CreateImageOptions, ListImagesOptions, RemoveImageOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;

/// An image as a listing shows it.
#[derive(Debug, Clone, Default)]
pub struct ImageSummary {
    /// `repo:tag` names, as the engine writes them (Podman adds a registry).
    pub tags: Vec<String>,
    /// Seconds since the epoch.
    pub created: u64,
    pub size_bytes: i64,
}

/// A container's filesystem to keep as an image.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub container: String,
    pub repo: String,
    pub tag: String,
    pub comment: String,
    /// Dockerfile instructions applied to the image (`LABEL k=v`).
    pub changes: String,
}

impl Engine {
    pub async fn image_exists(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(err) if http_status(&err) == Some(404) => Ok(false),
            Err(err) => Err(self.explain(err)),
        }
    }

    /// The paths the image declares as volumes (`VOLUME` in its Dockerfile):
    /// a container gets an anonymous volume at each unless it mounts
    /// something there.
    pub async fn image_volumes(&self, image: &str) -> Result<Vec<String>> {
        let info = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|err| self.explain(err))?;
        let mut paths = info.config.and_then(|c| c.volumes).unwrap_or_default();
        paths.sort();
        Ok(paths)
    }

    /// Pulls `image` unless it is present.
    pub async fn ensure_image(&self, image: &str) -> Result<()> {
        if self.image_exists(image).await? {
            return Ok(());
        }
        output::note(format!("pulling image `{image}`"));
        self.pull(image).await
    }

    /// Images that carry `label` (`key=value`).
    pub async fn list_images(&self, label: &str) -> Result<Vec<ImageSummary>> {
        let filters = HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
        let options = ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| self.explain(e))?;
        Ok(images
            .into_iter()
            .map(|i| ImageSummary {
                tags: i.repo_tags,
                created: i.created.max(0) as u64,
                size_bytes: i.size,
            })
            .collect())
    }

    /// Removes an image; false when there was none.
    pub async fn remove_image(&self, image: &str) -> Result<bool> {
        let options = RemoveImageOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_image(image, Some(options), None).await {
            Ok(_) => Ok(true),
            Err(err) if http_status(&err) == Some(404) => Ok(false),
            Err(err) => Err(self
                .explain(err)
                .context(format!("cannot remove image `{image}`"))),
        }
    }

    /// Keeps a container's filesystem as an image. The caller pauses a
    /// running container first, so no write is caught halfway (Podman
    /// refuses to commit a paused container when asked to pause it).
    pub async fn commit(&self, commit: &Commit) -> Result<()> {
        let options = CommitContainerOptions {
            container: Some(commit.container.clone()),
            repo: Some(commit.repo.clone()),
            tag: Some(commit.tag.clone()),
            comment: Some(commit.comment.clone()),
            pause: false,
            // As a Dockerfile change rather than a config body, which Podman's
            // compatible API ignores.
            changes: Some(commit.changes.clone()),
            ..Default::default()
        };
        self.docker
            .commit_container(options, ContainerConfig::default())
            .await
            .map_err(|e| self.explain(e))?;
        Ok(())
    }

    async fn pull(&self, image: &str) -> Result<()> {
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        // One line per layer and status change: readable in CI logs too.
        let mut last: HashMap<String, String> = HashMap::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|err| {
                self.explain(err).context(format!(
                    "image `{image}` is not present and could not be pulled"
                ))
            })?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(anyhow!("pulling `{image}` failed: {message}"));
            }
            let (Some(status), id) = (info.status, info.id.unwrap_or_default()) else {
                continue;
            };
            if last.get(&id) != Some(&status) {
                output::note(if id.is_empty() {
                    status.clone()
                } else {
                    format!("  {id}: {status}")
                });
                last.insert(id, status);
            }
        }
        Ok(())
    }
}

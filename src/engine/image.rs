//! Images: present or pulled (with progress on stderr), listed by label,
//! made from a container, removed, a file read out of one.

use super::{http_status, words, Engine};
use crate::support::{output, progress};
use anyhow::{anyhow, Result};
use bollard::models::{ContainerConfig, ContainerCreateBody};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, CreateImageOptions,
    DownloadFromContainerOptions, ListImagesOptions, RemoveImageOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;

/// [`Engine::read_image_file`] reads files of a few hundred KiB (CA
/// bundles); a directory by that name, or a file far larger, is not one.
const MAX_FILE_BYTES: usize = 16 << 20;

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

    /// The first of `paths` that is a file in `image` (a symlink in the
    /// image followed), and its bytes; `None` when none is. Reads from a
    /// container made for it, labelled `labels`, never started, and removed.
    pub async fn read_image_file(
        &self,
        image: &str,
        paths: &[&str],
        labels: &[(String, String)],
    ) -> Result<Option<(String, Vec<u8>)>> {
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            // Never run; an image without a command still needs one to be
            // created.
            cmd: Some(vec!["true".to_owned()]),
            network_disabled: Some(true),
            labels: Some(labels.iter().cloned().collect()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(|e| self.explain(e))?;
        let mut found = Ok(None);
        for path in paths {
            found = self.read_container_file(&created.id, path).await;
            if !matches!(found, Ok(None)) {
                break;
            }
        }
        self.remove(&created.id).await?;
        found
    }

    /// A file's bytes from a container, following symlinks (a few hops);
    /// `None` when there is no file there.
    async fn read_container_file(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let mut path = path.to_owned();
        for _ in 0..8 {
            let options = DownloadFromContainerOptions { path: path.clone() };
            let mut stream = self
                .docker
                .download_from_container(container, Some(options));
            let mut archive = Vec::new();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(bytes) if archive.len() + bytes.len() > MAX_FILE_BYTES => {
                        return Err(anyhow!(
                            "`{path}` in the container is larger than {} MiB",
                            MAX_FILE_BYTES >> 20
                        ))
                    }
                    Ok(bytes) => archive.extend_from_slice(&bytes),
                    Err(err) if http_status(&err) == Some(404) => return Ok(None),
                    Err(err) => return Err(self.explain(err)),
                }
            }
            match first_entry(&archive)? {
                Entry::File(bytes) => return Ok(Some((path, bytes))),
                Entry::Link(target) => path = resolve_link(&path, &target),
                Entry::Other => return Ok(None),
            }
        }
        Ok(None)
    }

    async fn pull(&self, image: &str) -> Result<()> {
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..Default::default()
        };
        let login = super::auth::ImageLogin::find(image)?;
        let mut stream = self
            .docker
            .create_image(Some(options), None, login.credentials());
        let mut shown = PullShown::new(image);
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(err) => {
                    shown.finish();
                    return Err(login.refused(image, words(&err)).unwrap_or_else(|| {
                        self.explain(err).context(format!(
                            "image `{image}` is not present and could not be pulled"
                        ))
                    }));
                }
            };
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                shown.finish();
                return Err(login
                    .refused(image, &message)
                    .unwrap_or_else(|| anyhow!("pulling `{image}` failed: {message}")));
            }
            let (Some(status), id) = (info.status, info.id.unwrap_or_default()) else {
                continue;
            };
            let bytes = info.progress_detail.and_then(|d| {
                let (done, total) = (d.current?, d.total?);
                Some((done.max(0) as u64, total.max(0) as u64))
            });
            shown.status(&id, &status, bytes);
        }
        if let Some(summary) = shown.finish() {
            output::note(format!("pulled `{image}`: {summary}"));
        }
        Ok(())
    }
}

/// A pull as the user sees it: bars on a terminal, else one line per layer
/// and status change (readable in CI logs).
enum PullShown {
    Drawn(progress::PullBars),
    Lines(HashMap<String, String>),
}

impl PullShown {
    fn new(image: &str) -> PullShown {
        match progress::drawn() {
            true => PullShown::Drawn(progress::PullBars::new(image)),
            false => PullShown::Lines(HashMap::new()),
        }
    }

    fn status(&mut self, id: &str, status: &str, bytes: Option<(u64, u64)>) {
        match self {
            PullShown::Drawn(bars) if !id.is_empty() => bars.layer(id, status, bytes),
            PullShown::Drawn(_) => {}
            PullShown::Lines(last) => {
                if last.get(id).map(String::as_str) != Some(status) {
                    output::note(if id.is_empty() {
                        status.to_owned()
                    } else {
                        format!("  {id}: {status}")
                    });
                    last.insert(id.to_owned(), status.to_owned());
                }
            }
        }
    }

    /// Takes the bars away; what they came to, when drawn.
    fn finish(&mut self) -> Option<String> {
        match std::mem::replace(self, PullShown::Lines(HashMap::new())) {
            PullShown::Drawn(bars) => Some(bars.finish()),
            PullShown::Lines(_) => None,
        }
    }
}

/// The first entry of a tar archive, as the engine's archive call sends it.
#[derive(Debug, PartialEq)]
enum Entry {
    File(Vec<u8>),
    /// A symlink, by its target.
    Link(String),
    Other,
}

fn first_entry(archive: &[u8]) -> Result<Entry> {
    let mut tar = tar::Archive::new(archive);
    let Some(entry) = tar.entries()?.next() else {
        return Ok(Entry::Other);
    };
    let mut entry = entry?;
    let kind = entry.header().entry_type();
    if kind.is_file() {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)?;
        return Ok(Entry::File(bytes));
    }
    if kind.is_symlink() {
        if let Some(target) = entry.link_name()? {
            return Ok(Entry::Link(target.to_string_lossy().into_owned()));
        }
    }
    Ok(Entry::Other)
}

/// Where a symlink at `path` pointing to `target` leads, as an absolute path
/// without `.` or `..`.
fn resolve_link(path: &str, target: &str) -> String {
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let joined = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("{dir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(kind: tar::EntryType, name: &str, data: &[u8], link: Option<&str>) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        builder.append_data(&mut header, name, data).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn files_and_links_are_read_from_the_engines_archive() {
        let file = archive(tar::EntryType::Regular, "ca.crt", b"PEM", None);
        assert_eq!(first_entry(&file).unwrap(), Entry::File(b"PEM".to_vec()));
        let link = archive(tar::EntryType::Symlink, "ca.crt", b"", Some("../x/y.pem"));
        assert_eq!(
            first_entry(&link).unwrap(),
            Entry::Link("../x/y.pem".into())
        );
        let dir = archive(tar::EntryType::Directory, "certs", b"", None);
        assert_eq!(first_entry(&dir).unwrap(), Entry::Other);

        assert_eq!(
            resolve_link("/etc/ssl/cert.pem", "/etc/x.pem"),
            "/etc/x.pem"
        );
        assert_eq!(
            resolve_link("/etc/pki/tls/certs/ca-bundle.crt", "../../ca-trust/./x.pem"),
            "/etc/pki/ca-trust/x.pem"
        );
        assert_eq!(resolve_link("/a", "../../../b"), "/b");
    }
}

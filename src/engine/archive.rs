//! Images as archives: saved to a file and loaded from one, streamed both
//! ways so an image of gigabytes never sits whole in memory.

use super::{http_status, Engine};
use anyhow::{anyhow, Context, Result};
use bollard::query_parameters::ImportImageOptions;
use futures_util::StreamExt;
use std::path::Path;
use tokio::io::AsyncWriteExt;

impl Engine {
    /// The id (`sha256:...`) of `image`, or `None` when the engine lacks it.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(image).await {
            Ok(info) => Ok(info.id),
            Err(err) if http_status(&err) == Some(404) => Ok(None),
            Err(err) => Err(self.explain(err)),
        }
    }

    /// Writes the image `id` as an archive to `file` (made anew), as
    /// `docker save` does; the archive names no tag, so loading it elsewhere
    /// takes no name another image there has.
    pub async fn save_image(&self, id: &str, file: &Path) -> Result<u64> {
        let mut out = tokio::fs::File::create(file)
            .await
            .with_context(|| format!("cannot create `{}`", file.display()))?;
        let mut stream = self.docker.export_image(id);
        let mut size = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|err| self.explain(err))?;
            size += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .with_context(|| format!("cannot write `{}`", file.display()))?;
        }
        out.flush().await?;
        Ok(size)
    }

    /// Names the image `id` as `reference` (`repo:tag`).
    pub async fn tag_image(&self, id: &str, reference: &str) -> Result<()> {
        let (repo, tag) = reference
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("`{reference}` has no tag"))?;
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        self.docker
            .tag_image(id, Some(options))
            .await
            .map_err(|err| self.explain(err))
    }

    /// Loads the image archive in `file`, as `docker load` does.
    pub async fn load_image(&self, file: &Path) -> Result<()> {
        let input = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot open `{}`", file.display()))?;
        let chunks = tokio_util::io::ReaderStream::new(input);
        let mut stream =
            self.docker
                .import_image_stream(ImportImageOptions::default(), chunks, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|err| self.explain(err))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(anyhow!("the engine could not load the image: {error}"));
            }
        }
        Ok(())
    }
}

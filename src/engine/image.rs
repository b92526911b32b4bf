//! Making sure an instance's image is present: pulled when missing, with
//! progress on stderr.

use super::{status, Engine};
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{anyhow, Result};
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;
use std::collections::HashMap;

impl Engine {
    pub async fn ensure_image(&self, image: &str) -> Result<()> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(err) if status(&err) == Some(404) => {}
            Err(err) => return Err(self.explain(err)),
        }
        output::note(format!("pulling image `{image}`"));
        self.pull(image).await.hint(format!(
            "make the image available locally (`docker pull {image}`, `docker build -t {image} .`), \
             or set `[container] image` in devinst.toml"
        ))
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

//! Which image an instance's container runs: the one answer, for `start`,
//! `status` and snapshots alike.

use super::Instance;
use crate::engine::Engine;
use crate::recipe::image::{BuildContext, HostCa};
use crate::recipe::settings::Settings;
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{Context, Result};
use std::path::Path;

/// The image an instance's container should run.
pub enum ImageChoice {
    /// The snapshot last restored (`devinst snapshot restore`).
    Snapshot(String),
    /// Built from `[container.build]`; its tag hashes the recipe and files.
    Built(BuildContext),
    /// `[container] image`, pulled when missing.
    Pulled(String),
}

impl ImageChoice {
    /// A restored snapshot's image, else the one built from
    /// `[container.build]`, else `[container] image`.
    pub fn of(instance: &Instance) -> Result<ImageChoice> {
        if let Some(snapshot) = instance.layout.active_snapshot() {
            let image = super::snapshot::image_ref(&instance.record.name, &snapshot);
            return Ok(ImageChoice::Snapshot(image));
        }
        Ok(
            match build_context(&instance.settings, &instance.layout.root)? {
                Some(context) => ImageChoice::Built(context),
                None => ImageChoice::Pulled(instance.settings.image.clone()),
            },
        )
    }

    pub fn reference(&self) -> &str {
        match self {
            ImageChoice::Snapshot(image) | ImageChoice::Pulled(image) => image,
            ImageChoice::Built(build) => &build.tag,
        }
    }

    /// Makes the image present: built or pulled when missing. A snapshot's
    /// image is never pulled: it exists only here.
    pub async fn ensure_present(&self, engine: &Engine) -> Result<()> {
        match self {
            ImageChoice::Built(build) => ensure_built(engine, build).await.map(drop),
            ImageChoice::Pulled(image) | ImageChoice::Snapshot(image) => {
                engine.ensure_image(image).await.hint(format!(
                    "make the image available locally (`docker pull {image}`, `docker build -t {image} .`), \
                     or set `[container] image` in devinst.toml"
                ))
            }
        }
    }
}

/// The build context of the worktree's `[container.build]`, if it has one:
/// its files read and, under `host_ca`, the host's CA bundle for the steps
/// that fetch.
pub fn build_context(settings: &Settings, root: &Path) -> Result<Option<BuildContext>> {
    let Some(recipe) = &settings.build else {
        return Ok(None);
    };
    let wants_ca = settings.host_ca && recipe.fetches();
    let bundle = match wants_ca {
        true => super::host::read_host_ca()?,
        false => None,
    };
    let certificates = bundle.as_ref().map(|b| b.certificates.as_slice());
    let mut context = BuildContext::collect(recipe, root, certificates).with_context(|| {
        format!(
            "invalid `{}`",
            root.join(crate::recipe::config::FILE_NAME).display()
        )
    })?;
    if wants_ca && bundle.is_none() {
        context.host_ca = HostCa::NotFound;
    }
    Ok(Some(context))
}

/// Builds the recipe's image unless its tag exists; whether it built.
pub async fn ensure_built(engine: &Engine, build: &BuildContext) -> Result<bool> {
    let tag = &build.tag;
    if engine.image_exists(tag).await? {
        return Ok(false);
    }
    output::note(format!("building image `{tag}` from `[container.build]`"));
    match build.host_ca {
        HostCa::Used => output::note(
            "the steps that fetch (apt, pip) trust the host's CA bundle (`host_ca`); no layer keeps a copy",
        ),
        HostCa::NotFound => output::warn(
            "`host_ca` is on but no CA bundle was found on the host: the build's steps trust only the image's own",
        ),
        HostCa::Off => {}
    }
    let started = std::time::Instant::now();
    let labels = [(
        super::spec::LABEL_MANAGED_BY.to_owned(),
        "devinst".to_owned(),
    )];
    engine.build(tag, &labels, build.archive()?).await.hint(
        "fix `[container.build]` in devinst.toml (a package name or version?) \
         and run the command again; the build's output says what failed",
    )?;
    output::note(format!(
        "built image `{tag}` in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(true)
}

//! Which image an instance's container runs: a restored snapshot's, else the
//! one built from `[container.build]`, else `[container] image`.

use super::Instance;
use crate::recipe::image::BuildContext;
use anyhow::{Context as _, Result};

/// The build context of the instance's `[container.build]`, if it has one:
/// its tag says which image the container should run.
pub fn prepare_build(instance: &Instance) -> Result<Option<BuildContext>> {
    let Some(recipe) = &instance.settings.build else {
        return Ok(None);
    };
    BuildContext::collect(recipe, &instance.layout.root)
        .map(Some)
        .with_context(|| {
            format!(
                "invalid `{}`",
                instance
                    .layout
                    .root
                    .join(crate::recipe::config::FILE_NAME)
                    .display()
            )
        })
}

/// The recipe, but with the image of the snapshot last restored, if any.
/// The image the instance's container should run: a restored snapshot's,
/// else the one built from `[container.build]`, else `[container] image`.
/// `start` makes the same choice while it builds the container's spec.
pub fn intended_image(instance: &Instance) -> Result<String> {
    if let Some(snapshot) = instance.layout.active_snapshot() {
        return Ok(crate::instance::snapshot::image_ref(
            &instance.record.name,
            &snapshot,
        ));
    }
    Ok(match prepare_build(instance)? {
        Some(build) => build.tag,
        None => instance.settings.image.clone(),
    })
}

pub fn with_snapshot_image(instance: &Instance) -> crate::recipe::settings::Settings {
    let mut settings = instance.settings.clone();
    if let Some(snapshot) = instance.layout.active_snapshot() {
        settings.image = crate::instance::snapshot::image_ref(&instance.record.name, &snapshot);
    }
    settings
}

//! The named volumes of an instance's services: made before their
//! container, kept when it is recreated or dropped from the recipe, removed
//! only by `destroy --purge` (or `gc`, once their worktree is gone).

use super::spec::{self, LABEL_DATA_DIR, LABEL_MANAGED_BY, LABEL_WORKTREE};
use super::Instance;
use crate::engine::volume::Volume;
use crate::engine::{Engine, VolumeMount};
use crate::state::layout::path_text;
use crate::state::registry::identity;
use crate::support::error::WithHint;
use anyhow::{anyhow, Result};
use std::path::Path;

/// Makes the service's volumes that are missing, labelled as this
/// worktree's. A volume of that name made for another worktree (an instance
/// of the same name whose worktree is gone) is not taken over.
pub async fn ensure(
    engine: &Engine,
    instance: &Instance,
    service: &str,
    mounts: &[VolumeMount],
) -> Result<()> {
    let worktree = path_text(&instance.record.worktree);
    for mount in mounts {
        match engine.inspect_volume(&mount.name).await? {
            Some(v) if v.label(LABEL_WORKTREE) == Some(worktree.as_str()) => {}
            Some(v) => {
                let owner = v.label(LABEL_WORKTREE).unwrap_or("unknown");
                return Err(anyhow!(
                    "the volume `{}` for service `{service}` exists but holds data of the worktree `{owner}`",
                    mount.name
                ))
                .hint(format!(
                    "if that data is no longer needed, remove it (`devinst gc` when that worktree is gone, \
                     or `docker volume rm {}`)",
                    mount.name
                ));
            }
            None => {
                let mut labels = spec::volume_labels(&instance.record, service);
                labels.insert(LABEL_DATA_DIR.to_owned(), identity()?);
                engine.create_volume(&mount.name, &labels).await?;
            }
        }
    }
    Ok(())
}

/// Every devinst volume made for the worktree at `worktree`.
pub async fn of_worktree(engine: &Engine, worktree: &Path) -> Result<Vec<Volume>> {
    let label = format!("{LABEL_MANAGED_BY}=devinst");
    let worktree = path_text(worktree);
    Ok(engine
        .list_volumes(&label)
        .await?
        .into_iter()
        .filter(|v| v.label(LABEL_WORKTREE) == Some(worktree.as_str()))
        .collect())
}

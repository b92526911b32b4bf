//! Is this container ours? Decided from the container's labels and the
//! registry, never from what a worktree's files claim alone.

use super::Instance;
use crate::instance::spec::LABEL_WORKTREE;
use crate::state::layout::{path_text, DIR_NAME};
use crate::state::registry::Registry;
use std::path::Path;

/// Whether the container was this instance's before its worktree moved: the
/// path it was made for holds no instance any more, and the registry (updated
/// by `setup` in the new place) says the name now lives here.
pub fn moved_here(owner: Option<&str>, instance: &Instance) -> bool {
    let Some(old) = owner else { return false };
    if Path::new(old).join(DIR_NAME).is_dir() {
        return false;
    }
    Registry::snapshot().is_ok_and(|entries| {
        entries
            .iter()
            .any(|e| e.name == instance.record.name && e.worktree == instance.layout.root)
    })
}

/// Whether the container was made for this instance's worktree (by its label).
pub fn belongs_to(info: &bollard::models::ContainerInspectResponse, instance: &Instance) -> bool {
    let owner = info
        .config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .and_then(|l| l.get(LABEL_WORKTREE));
    owner.map(String::as_str) == Some(&path_text(&instance.record.worktree))
}

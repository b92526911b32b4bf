//! Is this container ours? Decided from the container's labels and the
//! registry, never from what a worktree's files claim alone.

use super::Instance;
use crate::instance::spec::{LABEL_DATA_DIR, LABEL_WORKTREE};
use crate::state::layout::{is_gone, path_text};
use crate::state::registry::Registry;
use std::path::Path;

/// What a container by the instance's name is to this instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Ownership {
    /// Made for this worktree.
    Ours,
    /// Made for this instance at the path its worktree moved away from.
    MovedHere { from: String },
    /// Someone else's: another worktree's, or no devinst container at all.
    Foreign,
}

/// Judges a container by the worktree its label names, against the real
/// path of this instance's worktree (never the path `.instance` claims: a
/// copied `.instance` names another worktree).
pub fn ownership(labels_worktree: Option<&str>, instance: &Instance) -> Ownership {
    if labels_worktree == Some(path_text(&instance.layout.root).as_str()) {
        return Ownership::Ours;
    }
    match labels_worktree {
        Some(old) if moved_here(old, instance) => Ownership::MovedHere {
            from: old.to_owned(),
        },
        _ => Ownership::Foreign,
    }
}

/// Whether a container carrying `labels` was made for this instance's
/// worktree.
pub fn is_ours(labels: &std::collections::BTreeMap<String, String>, instance: &Instance) -> bool {
    ownership_of(labels, instance) == Ownership::Ours
}

/// [`ownership`] from a container's labels. A container made from another
/// data directory (another user's devinst, another `DEVINST_DATA_DIR`) is
/// never ours; one made before devinst labelled its data directory carries
/// no such label and is judged by its worktree alone.
pub fn ownership_of(
    labels: &std::collections::BTreeMap<String, String>,
    instance: &Instance,
) -> Ownership {
    if labels
        .get(LABEL_DATA_DIR)
        .is_some_and(|id| *id != instance.identity)
    {
        return Ownership::Foreign;
    }
    ownership(labels.get(LABEL_WORKTREE).map(String::as_str), instance)
}

/// Whether the container was this instance's before its worktree moved: the
/// path it was made for holds no instance any more, and the registry (updated
/// by `setup` in the new place) says the name now lives here.
fn moved_here(old: &str, instance: &Instance) -> bool {
    if !is_gone(Path::new(old)) {
        return false;
    }
    Registry::read_unlocked().is_ok_and(|entries| {
        entries
            .iter()
            .any(|e| e.name == instance.record.name && e.worktree == instance.layout.root)
    })
}

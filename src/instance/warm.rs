//! Starting warm: a new container of an instance starts from a sibling's
//! finished setup steps instead of running them again. A sibling is another
//! instance of this registry whose worktree shares the repository (the same
//! git common directory) and whose steps finished with the same fingerprint
//! (image, steps, inputs' contents: `setup_steps::fingerprint`). Its
//! container, committed once as an image, is the new container's image;
//! its venv and declared outputs are copied into this worktree; the steps
//! are then recorded as done here. Anything amiss means the ordinary setup.

use super::image::ImageChoice;
use super::setup_steps;
use super::spec::LABEL_WORKTREE;
use super::Instance;
use crate::engine::image::Commit;
use crate::engine::Engine;
use crate::state::layout::{path_text, Layout};
use crate::state::registry::Registry;
use crate::support::{fs, output};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `.sky-dev/.warm`: what the steps last finished with.
#[derive(Debug, Serialize, Deserialize)]
struct Finished {
    fingerprint: String,
    /// The container they finished in.
    container_id: String,
    /// The repository's git common directory.
    common_dir: PathBuf,
}

/// The most a `.warm` file may hold: it is a few lines.
const MAX_RECORD: u64 = 64 << 10;

/// A warm start made ready: the new container's image, and whose it was.
pub struct Warm {
    pub sibling: String,
    pub image: String,
}

/// Records that the steps finished in container `container_id` on the
/// recipe's image `image_id`, for siblings to start from. Nothing outside
/// git (no siblings) or without steps.
pub fn record(instance: &Instance, container_id: &str, image_id: &str) -> Result<()> {
    if instance.settings.setup_commands.is_empty() || setup_steps::incomplete(instance) {
        return Ok(());
    }
    let Some(common_dir) = crate::state::worktree::common_dir(&instance.layout.root)? else {
        return Ok(());
    };
    let finished = Finished {
        fingerprint: setup_steps::fingerprint(instance, image_id)?,
        container_id: container_id.to_owned(),
        common_dir,
    };
    let text = serde_json::to_string(&finished)?;
    let path = instance.layout.warm_file();
    if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    fs::write_atomic(&path, text.as_bytes(), 0o644)
}

/// Makes a warm start ready for the instance's new container, or `None`
/// when it cannot be one: no sibling finished the same steps on this
/// engine, or this worktree has some of their results already.
pub async fn prepare(
    engine: &Engine,
    instance: &Instance,
    image: &ImageChoice,
) -> Result<Option<Warm>> {
    let s = &instance.settings;
    if !s.setup_warm || s.setup_commands.is_empty() || matches!(image, ImageChoice::Snapshot(_)) {
        return Ok(None);
    }
    let Some(image_id) = engine.image_id(image.reference()).await? else {
        return Ok(None);
    };
    let Some(common_dir) = crate::state::worktree::common_dir(&instance.layout.root)? else {
        return Ok(None);
    };
    let results = results(instance);
    if results.is_empty() {
        return Ok(None);
    }
    remove_leftovers(&instance.layout.root, &results)?;
    if results
        .iter()
        .any(|rel| exists(&instance.layout.root.join(rel)))
    {
        return Ok(None);
    }
    let fingerprint = setup_steps::fingerprint(instance, &image_id)?;
    let Some((sibling, container)) =
        find_sibling(engine, instance, &fingerprint, &common_dir, &results).await?
    else {
        return Ok(None);
    };
    let image = warm_image(engine, &fingerprint, &container).await?;
    clone_results(instance, &sibling, &results)?;
    Ok(Some(Warm {
        sibling: sibling.name,
        image,
    }))
}

/// The worktree paths the steps leave, as the recipe declares them: each
/// output, and the whole venv for one inside it (the default steps'). Steps
/// that declare none may leave files no one knows of: they never start warm.
fn results(instance: &Instance) -> Vec<PathBuf> {
    let venv = PathBuf::from(crate::state::layout::DIR_NAME).join("venv");
    let mut results: Vec<PathBuf> = Vec::new();
    for output in &instance.settings.setup_outputs {
        let rel = PathBuf::from(output);
        let rel = if rel.starts_with(&venv) {
            venv.clone()
        } else {
            rel
        };
        if !results.contains(&rel) {
            results.push(rel);
        }
    }
    results
}

/// A sibling instance, as the registry knows it.
struct Sibling {
    name: String,
    worktree: PathBuf,
}

/// The first instance of this registry, in another worktree of the same
/// repository, whose steps finished with `fingerprint` in the container it
/// still has on this engine, and which has every result.
async fn find_sibling(
    engine: &Engine,
    instance: &Instance,
    fingerprint: &str,
    common_dir: &Path,
    results: &[PathBuf],
) -> Result<Option<(Sibling, String)>> {
    for entry in Registry::read_unlocked()? {
        if entry.worktree == instance.layout.root {
            continue;
        }
        let layout = Layout::new(&entry.worktree);
        let Some(finished) = read_finished(&layout) else {
            continue;
        };
        if finished.fingerprint != fingerprint || finished.common_dir != common_dir {
            continue;
        }
        let stamp = std::fs::read_to_string(layout.setup_stamp()).unwrap_or_default();
        if stamp.trim().is_empty() || stamp.trim() == "incomplete" {
            continue;
        }
        // Read only where the path really is in the sibling's worktree: a
        // repository's link on the way (`build -> ~/.ssh`) would copy a host
        // directory into this worktree, and so into the container.
        let inside = |rel: &PathBuf| {
            crate::state::contained::real_dirs_up_to(&entry.worktree, rel).is_ok()
                && exists(&entry.worktree.join(rel))
        };
        if !results.iter().all(inside) {
            continue;
        }
        let worktree = path_text(&entry.worktree);
        let Some(info) = engine.inspect(&entry.container).await? else {
            continue;
        };
        if info.id != finished.container_id || info.label(LABEL_WORKTREE) != Some(worktree.as_str())
        {
            continue;
        }
        let sibling = Sibling {
            name: entry.name,
            worktree: entry.worktree,
        };
        return Ok(Some((sibling, entry.container)));
    }
    Ok(None)
}

/// A sibling's `.warm`, when it is a small regular file of this user's (or
/// root's): another user's file is never trusted.
fn read_finished(layout: &Layout) -> Option<Finished> {
    let path = layout.warm_file();
    let meta = std::fs::symlink_metadata(&path).ok()?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_file() || !(meta.uid() == me || meta.uid() == 0) || meta.len() > MAX_RECORD {
        return None;
    }
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The image of the sibling's container as its steps left it, made once
/// per fingerprint and reused by every later sibling.
async fn warm_image(engine: &Engine, fingerprint: &str, container: &str) -> Result<String> {
    let repo = format!("devinst-warm/{fingerprint}");
    let image = format!("{repo}:1");
    if !engine.image_exists(&image).await? {
        output::note(format!(
            "saving container `{container}` as `{image}` for warm starts"
        ));
        let commit = Commit {
            container: container.to_owned(),
            repo,
            tag: "1".to_owned(),
            comment: "devinst: a container whose setup steps finished".to_owned(),
            changes: format!("LABEL devinst.warm-of={fingerprint}"),
        };
        engine
            .commit(&commit)
            .await
            .with_context(|| format!("cannot save container `{container}` for a warm start"))?;
    }
    Ok(image)
}

/// Copies each result from the sibling's worktree into this one: into a
/// temporary name beside it, then renamed, so a copy cut short is never
/// taken for a result (the next `start` removes it).
fn clone_results(instance: &Instance, sibling: &Sibling, results: &[PathBuf]) -> Result<()> {
    let root = &instance.layout.root;
    let owner = std::fs::metadata(root)?;
    for rel in results {
        let (from, to) = (sibling.worktree.join(rel), root.join(rel));
        let temp = temp_name(&to);
        if let Some(parent) = to.parent() {
            crate::state::contained::make_dir(&instance.layout, parent)?;
        }
        let copied = copy_any(&from, &temp).and_then(|()| {
            give_to(&temp, owner.uid(), owner.gid())?;
            std::fs::rename(&temp, &to).with_context(|| format!("cannot create `{}`", to.display()))
        });
        if let Err(err) = copied {
            let _ = remove_any(&temp);
            return Err(err.context(format!(
                "cannot copy `{}` from instance `{}`",
                rel.display(),
                sibling.name
            )));
        }
    }
    Ok(())
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".warm-{}", std::process::id()));
    path.with_file_name(name)
}

/// Removes what a warm start cut short left: `NAME.warm-PID` beside a result.
fn remove_leftovers(root: &Path, results: &[PathBuf]) -> Result<()> {
    for rel in results {
        let path = root.join(rel);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            continue;
        };
        let prefix = format!("{}.warm-", name.to_string_lossy());
        let Ok(entries) = std::fs::read_dir(parent) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                remove_any(&entry.path())?;
            }
        }
    }
    Ok(())
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn copy_any(from: &Path, to: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::copy_tree(from, to)
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to).map_err(Into::into)
    } else {
        std::fs::copy(from, to).map(drop).map_err(Into::into)
    }
}

fn remove_any(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path)?,
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    Ok(())
}

/// Makes `path` and all under it (links themselves, never followed) the
/// worktree owner's, when devinst runs as someone else (root).
fn give_to(path: &Path, uid: u32, gid: u32) -> Result<()> {
    if rustix::process::geteuid().as_raw() == uid {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("cannot give `{}` to the worktree's owner", path.display()))?;
    if std::fs::symlink_metadata(path)?.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give_to(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

//! Snapshots (`devinst snapshot`): keep an instance as it is
//! (the container's filesystem as an image, `state/` and `sky_logs/` as
//! copies) and put it back later. The worktree's code is git's to keep.

use super::Instance;
use crate::engine::image::Commit;
use crate::engine::Engine;
use crate::state::layout::{Layout, NODES_DIR_NAME};
use crate::state::restore;
use crate::support::error::WithHint;
use crate::support::{fs, names, output};
use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use std::path::Path;

const LABEL_SNAPSHOT_OF: &str = "devinst.snapshot-of";

/// The image repository an instance's snapshots are kept in, one tag each.
pub fn image_repo(instance_name: &str) -> String {
    format!("devinst-snapshot/{instance_name}")
}

/// The image a snapshot's filesystem is kept in.
pub fn image_ref(instance_name: &str, snapshot: &str) -> String {
    format!("{}:{snapshot}", image_repo(instance_name))
}

/// The image the filesystem of a cluster's node `rank` is kept in: a
/// repository of its own, so listings show the snapshot once.
pub fn node_image_ref(instance_name: &str, snapshot: &str, rank: u16) -> String {
    format!("{}/node-{rank}:{snapshot}", image_repo(instance_name))
}

/// Saves a snapshot; returns its name.
pub async fn save(engine: &Engine, instance: &Instance, name: Option<String>) -> Result<String> {
    let name = name.unwrap_or_else(default_name);
    names::validate(&name).context("invalid snapshot name")?;
    let layout = &instance.layout;
    let saved = layout.snapshots_dir().join(&name);
    let image = image_ref(&instance.record.name, &name);
    if saved.exists() || engine.image_exists(&image).await? {
        return Err(anyhow!("snapshot `{name}` exists already")).hint(format!(
            "pick another name, or delete it: `devinst snapshot rm {name}`"
        ));
    }
    let container = &instance.record.container;
    match engine.inspect(container).await? {
        Some(info) if super::ownership::is_ours(&info.labels, instance) => {}
        Some(_) => bail!("the container `{container}` does not belong to this worktree"),
        None => {
            return Err(anyhow!(
                "instance `{}` has no container to save",
                instance.record.name
            ))
            .hint("run `devinst start` first")
        }
    }
    let _lock = layout.lock()?;
    // Every node paused throughout, so the filesystems and `state/` are of
    // one moment and no file is copied halfway through a write.
    let mut held = Vec::new();
    let mut still = Ok(());
    for rank in super::nodes::ranks(instance) {
        let node = instance.record.node_container(rank);
        match hold_still(engine, &node).await {
            Ok(true) => held.push(node),
            Ok(false) => {}
            Err(err) => {
                still = Err(err);
                break;
            }
        }
    }
    let saved_all = match still {
        Ok(()) => save_held(engine, instance, &name, &saved).await,
        Err(err) => Err(err),
    };
    for node in &held {
        engine.unpause(node).await?;
    }
    saved_all?;
    output::note(format!(
        "saved snapshot `{name}`: image `{image}`, `{}`",
        saved.display()
    ));
    Ok(name)
}

/// Pauses the container if it runs; whether it did. A stopped one holds
/// still already.
async fn hold_still(engine: &Engine, container: &str) -> Result<bool> {
    let info = engine.inspect(container).await?;
    if info.is_none_or(|i| i.status != "running") {
        return Ok(false);
    }
    engine
        .pause(container)
        .await
        .hint("stop the instance first (`devinst stop`), then save the snapshot")?;
    Ok(true)
}

/// Commits the held containers (every node's) and copies their data; if
/// anything fails, the images are taken back so no half snapshot is left.
async fn save_held(engine: &Engine, instance: &Instance, name: &str, saved: &Path) -> Result<()> {
    let committed = commit_all(engine, instance, name).await;
    let copied = committed.and_then(|()| copy_data(&instance.layout, saved));
    if copied.is_err() {
        let _ = engine
            .remove_image(&image_ref(&instance.record.name, name))
            .await;
        let _ = remove_node_images(engine, instance, Some(name)).await;
    }
    copied
}

async fn commit_all(engine: &Engine, instance: &Instance, name: &str) -> Result<()> {
    let instance_name = &instance.record.name;
    commit(engine, instance, 0, image_repo(instance_name), name).await?;
    for rank in super::nodes::ranks(instance).skip(1) {
        let image = node_image_ref(instance_name, name, rank);
        let repo = image.rsplit_once(':').expect("a tag").0.to_owned();
        commit(engine, instance, rank, repo, name).await?;
    }
    Ok(())
}

async fn commit(
    engine: &Engine,
    instance: &Instance,
    rank: u16,
    repo: String,
    name: &str,
) -> Result<()> {
    let commit = Commit {
        container: instance.record.node_container(rank),
        repo,
        tag: name.to_owned(),
        comment: format!("devinst snapshot `{name}`"),
        // One label per LABEL, as Podman reads only the first pair.
        // `devinst.managed-by` comes from the container.
        changes: format!("LABEL {LABEL_SNAPSHOT_OF}={}", instance.record.name),
    };
    engine.commit(&commit).await.with_context(|| {
        format!(
            "cannot save the filesystem of container `{}`",
            commit.container
        )
    })
}

/// Removes snapshot `name`'s images, every node's.
pub async fn remove_all_images(engine: &Engine, instance: &Instance, name: &str) -> Result<()> {
    engine
        .remove_image(&image_ref(&instance.record.name, name))
        .await?;
    remove_node_images(engine, instance, Some(name)).await?;
    Ok(())
}

/// Removes the node images of snapshot `name` (of every snapshot with
/// `None`); how many there were.
async fn remove_node_images(
    engine: &Engine,
    instance: &Instance,
    name: Option<&str>,
) -> Result<usize> {
    let nodes_repo = format!("{}/node-", image_repo(&instance.record.name));
    let mut removed = 0;
    for image in engine.list_images(LABEL_SNAPSHOT_OF).await? {
        for tag in &image.tags {
            let Some((registry, rest)) = tag.split_once(&nodes_repo) else {
                continue;
            };
            let ours = registry.is_empty() || registry.ends_with('/');
            let snapshot = rest.split_once(':').map(|(_, snapshot)| snapshot);
            if ours && (name.is_none() || snapshot == name) && engine.remove_image(tag).await? {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Copies `state/` and `sky_logs/` into `saved`, through a temporary
/// directory renamed into place, so a snapshot's data is whole or absent.
fn copy_data(layout: &Layout, saved: &Path) -> Result<()> {
    let parent = saved.parent().expect("snapshots live in a directory");
    fs::create_dir_all(parent)?;
    let tmp = parent.join(format!(".tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let copy = || -> Result<()> {
        fs::create_dir_all(&tmp)?;
        for dir in restore::SAVED_DIRS {
            let live = layout.dir().join(dir);
            // `nodes/` exists only for a cluster.
            if dir != NODES_DIR_NAME || live.exists() {
                fs::copy_tree(&live, &tmp.join(dir))?;
            }
        }
        std::fs::rename(&tmp, saved).with_context(|| format!("cannot create `{}`", saved.display()))
    };
    copy().inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SnapshotView {
    pub name: String,
    pub image: String,
    pub created: String,
    pub size_bytes: i64,
    pub active: bool,
}

/// The instance's snapshots, oldest first.
pub async fn list(engine: &Engine, instance: &Instance) -> Result<Vec<SnapshotView>> {
    // By any snapshot label: a pulled snapshot carries the label of the
    // instance it was saved from, and its tag names this one.
    let images = engine.list_images(LABEL_SNAPSHOT_OF).await?;
    let repo = format!("{}:", image_repo(&instance.record.name));
    let active = instance.layout.active_snapshot();
    let mut views: Vec<SnapshotView> = images
        .iter()
        .flat_map(|image| {
            image
                .tags
                .iter()
                .filter_map(|tag| snapshot_of_tag(tag, &repo))
                .map(|name| SnapshotView {
                    name: name.to_owned(),
                    image: format!("{repo}{name}"),
                    created: crate::support::time::utc_from_secs(image.created),
                    size_bytes: image.size_bytes,
                    active: active.as_deref() == Some(name),
                })
        })
        .collect();
    views.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    Ok(views)
}

/// The snapshot name in an image tag of `repo` (`devinst-snapshot/NAME:`),
/// whatever registry the engine put in front (Podman says `docker.io/` or
/// `localhost/`).
fn snapshot_of_tag<'a>(tag: &'a str, repo: &str) -> Option<&'a str> {
    let (registry, name) = tag.split_once(repo)?;
    (registry.is_empty() || registry.ends_with('/')).then_some(name)
}

pub async fn restore(engine: &Engine, instance: &Instance, name: &str) -> Result<()> {
    // The name becomes a path under `.sky-dev/snapshots/`: nothing else.
    names::validate(name).context("invalid snapshot name")?;
    let layout = &instance.layout;
    let saved = layout.snapshots_dir().join(name);
    let image = image_ref(&instance.record.name, name);
    if !saved.is_dir() || !engine.image_exists(&image).await? {
        return Err(anyhow!(
            "no snapshot `{name}` of instance `{}`",
            instance.record.name
        ))
        .hint("`devinst snapshot list` shows them");
    }
    {
        let _lock = layout.lock()?;
        for old in restore::clean_legacy(layout)? {
            output::warn(format!(
                "`{}` was left by an interrupted restore of an earlier devinst and may hold \
                 older state; remove it when you no longer need it",
                old.display()
            ));
        }
        // Copied first, the container removed next, then committed: a kill
        // before the commit leaves the instance as it was (the next command
        // deletes the copies), one after it is finished by the next command.
        restore::stage(layout, &saved)?;
        remove_containers(engine, instance).await?;
        restore::commit(layout, name)?;
    }
    output::note(format!("restored snapshot `{name}`"));
    let instance = Instance::find(&layout.root)?;
    crate::instance::lifecycle::ensure_running(engine, &instance, false).await?;
    Ok(())
}

pub async fn reset(engine: &Engine, instance: &Instance) -> Result<()> {
    let layout = &instance.layout;
    let Some(active) = layout.active_snapshot() else {
        output::note("the instance already runs the recipe's image");
        return Ok(());
    };
    {
        let _lock = layout.lock()?;
        remove_containers(engine, instance).await?;
        std::fs::remove_file(layout.snapshot_file())
            .with_context(|| format!("cannot remove `{}`", layout.snapshot_file().display()))?;
        let _ = std::fs::remove_file(layout.setup_stamp());
    }
    output::note(format!(
        "left snapshot `{active}`; back to the recipe's image"
    ));
    let instance = Instance::find(&layout.root)?;
    crate::instance::lifecycle::ensure_running(engine, &instance, false).await?;
    Ok(())
}

/// Removes the instance's containers, every node's, to make them anew from
/// another image.
async fn remove_containers(engine: &Engine, instance: &Instance) -> Result<()> {
    engine.remove(&instance.record.container).await?;
    let r = &instance.record;
    super::nodes::remove_all(engine, &r.worktree, &r.container).await
}

pub async fn remove(engine: &Engine, instance: &Instance, name: &str) -> Result<()> {
    names::validate(name).context("invalid snapshot name")?;
    let layout = &instance.layout;
    if layout.active_snapshot().as_deref() == Some(name) {
        return Err(anyhow!(
            "the instance's container is made from snapshot `{name}`"
        ))
        .hint("go back to the recipe's image first: `devinst snapshot reset`");
    }
    let saved = layout.snapshots_dir().join(name);
    let image = image_ref(&instance.record.name, name);
    let had_image = engine.remove_image(&image).await?;
    remove_node_images(engine, instance, Some(name)).await?;
    let had_data = saved.is_dir();
    if had_data {
        std::fs::remove_dir_all(&saved)
            .with_context(|| format!("cannot remove `{}`", saved.display()))?;
    }
    if !had_image && !had_data {
        return Err(anyhow!("no snapshot `{name}`")).hint("`devinst snapshot list` shows them");
    }
    output::note(format!("deleted snapshot `{name}`"));
    Ok(())
}

/// Removes the images of this instance's snapshots (those whose data is in
/// its `.sky-dev/snapshots/`); returns how many there were.
pub async fn remove_images(engine: &Engine, instance: &Instance) -> Result<usize> {
    let Ok(entries) = std::fs::read_dir(instance.layout.snapshots_dir()) else {
        return Ok(0);
    };
    remove_node_images(engine, instance, None).await?;
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if names::validate(&name).is_ok()
            && engine
                .remove_image(&image_ref(&instance.record.name, &name))
                .await?
        {
            removed += 1;
        }
    }
    Ok(removed)
}

/// `20261123-143005`: sortable, and valid as an image tag.
fn default_name() -> String {
    crate::support::time::now_utc()
        .replace(['-', ':'], "")
        .replace('T', "-")
        .trim_end_matches('Z')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_their_snapshot_whatever_the_registry_prefix() {
        let repo = "devinst-snapshot/feat:";
        assert_eq!(
            snapshot_of_tag("devinst-snapshot/feat:s1", repo),
            Some("s1")
        );
        assert_eq!(
            snapshot_of_tag("docker.io/devinst-snapshot/feat:s1", repo),
            Some("s1")
        );
        assert_eq!(
            snapshot_of_tag("localhost/devinst-snapshot/feat:s1", repo),
            Some("s1")
        );
        assert_eq!(snapshot_of_tag("x-devinst-snapshot/feat:s1", repo), None);
        assert_eq!(snapshot_of_tag("devinst-snapshot/feat2:s1", repo), None);
    }
}

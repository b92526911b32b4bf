//! Taking an instance down for good (`destroy`), in an order a run that is
//! interrupted can simply be run again: `.instance` goes last.

use super::ownership::is_ours;
use super::Instance;
use crate::engine::exec::{ExecSpec, Output};
use crate::engine::Engine;
use crate::state::layout::{Layout, DIR_NAME};
use crate::state::registry::Entry;
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Takes the instance down: its containers (every node's), its services and
/// private network, the `extras` (asked about first), its registry entry,
/// and with `purge` its snapshots and `.sky-dev/`, `.instance` last.
pub async fn destroy(
    engine: &Engine,
    instance: &Instance,
    extras: &PurgeExtras,
    purge: bool,
) -> Result<()> {
    let r = &instance.record;
    if purge {
        // Found by their data in `.sky-dev/snapshots/`, so before it goes.
        let images = super::snapshot::remove_images(engine, instance).await?;
        if images > 0 {
            output::note(format!("removed {images} snapshot image(s)"));
        }
        clear_dir(engine, instance).await?;
    }
    super::lifecycle::remove_if_ours(engine, instance).await?;
    super::nodes::remove_all(engine, &r.worktree, &r.container).await?;
    // After the instance: its network can only go once nothing is on it.
    super::services::remove_all(engine, instance, purge).await?;
    remove_volumes(engine, &extras.volumes).await?;
    release(&Entry::of(r))?;
    if purge {
        remove_dir(&instance.layout)?;
        output::note(format!("removed `{}`", instance.layout.dir().display()));
    }
    Ok(())
}

/// Drops the instance's registry entry, if it is still this worktree's.
pub fn release(instance: &Entry) -> Result<()> {
    let mut registry = crate::state::registry::Registry::lock()?;
    let ours = |e: &Entry| e.worktree == instance.worktree;
    if registry.get(&instance.name).is_none_or(|e| !ours(e)) {
        return Ok(());
    }
    registry.remove(&instance.name);
    registry.save()?;
    output::note(format!("released port {}", instance.port));
    for (name, port) in &instance.extra {
        output::note(format!("released port {port} (`{name}`)"));
    }
    for (service, port) in &instance.services {
        output::note(format!("released port {port} (service `{service}`)"));
    }
    Ok(())
}

/// What `destroy --purge` deletes besides the container and `.sky-dev/`,
/// for the question asked first.
#[derive(Debug, Default)]
pub struct PurgeExtras {
    /// Services' data directories under `.sky-dev/services/`.
    pub service_dirs: Vec<PathBuf>,
    /// Services' named volumes.
    pub volumes: Vec<String>,
}

impl PurgeExtras {
    /// One line per thing, for the question.
    pub fn lines(&self) -> Vec<String> {
        let dirs = self
            .service_dirs
            .iter()
            .map(|d| format!("  service data `{}`", d.display()));
        let volumes = self.volumes.iter().map(|v| format!("  volume `{v}`"));
        dirs.chain(volumes).collect()
    }
}

pub async fn purge_extras(engine: &Engine, instance: &Instance) -> Result<PurgeExtras> {
    let services = instance.layout.dir().join("services");
    let mut service_dirs: Vec<PathBuf> = match std::fs::read_dir(&services) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    service_dirs.sort();
    let volumes = super::volumes::of_worktree(engine, &instance.layout.root)
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    Ok(PurgeExtras {
        service_dirs,
        volumes,
    })
}

/// Empties `.sky-dev/` but for `.instance`. What the host user may not
/// delete (files a root container made, for a user who is not root) is
/// deleted from inside the instance's container, while it still exists.
pub async fn clear_dir(engine: &Engine, instance: &Instance) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    if me == 0 || !holds_others_files(&instance.layout.dir(), me) {
        return clear_on_host_or_say(instance);
    }
    let name = &instance.record.container;
    match engine.inspect(name).await? {
        Some(info) if is_ours(&info.labels, instance) => {
            if info.status == "paused" {
                engine.unpause(name).await?;
            } else if !info.running {
                engine
                    .start(name)
                    .await
                    .map_err(anyhow::Error::from)
                    .with_context(|| {
                        format!("cannot start container `{name}` to remove what it made")
                    })?;
            }
        }
        // Nothing to go through; removing `.sky-dev/` will say what is left.
        _ => return Ok(()),
    }
    let inside = format!(
        "{}/{DIR_NAME}",
        instance.settings.workdir.trim_end_matches('/')
    );
    let script = "cd \"$1\" || exit 0; for f in * .[!.]* ..?*; do \
                  case \"$f\" in .instance) continue ;; esac; \
                  if [ -e \"$f\" ] || [ -L \"$f\" ]; then rm -rf -- \"$f\"; fi; done";
    let spec = ExecSpec {
        argv: vec!["sh".into(), "-c".into(), script.into(), "sh".into(), inside],
        user: Some("0".into()),
        ..Default::default()
    };
    output::note(format!(
        "removing what container `{name}` made in `{}` from inside it",
        instance.layout.dir().display()
    ));
    engine.exec_simple(name, &spec, Output::Stderr).await?;
    clear_on_host_or_say(instance)
}

/// Removes `.sky-dev/` but `.instance` on the host, or says what is left.
fn clear_on_host_or_say(instance: &Instance) -> Result<()> {
    match remove_all_but_instance(&instance.layout).into_iter().next() {
        None => Ok(()),
        Some(err) => Err(err).hint(
            "files a container made as root may be left: `devinst start`, then \
             `devinst destroy --purge` again removes them from inside; or remove them as root",
        ),
    }
}

/// Whether anything under `dir` (not following symlinks) belongs to
/// another user than `uid`, or cannot be read: then the host user may not
/// be able to delete it.
fn holds_others_files(dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    entries.into_iter().any(|entry| {
        let Ok(entry) = entry else { return true };
        match entry.metadata() {
            Ok(meta) if meta.uid() != uid => true,
            Ok(meta) if meta.is_dir() => holds_others_files(&entry.path(), uid),
            Ok(_) => false,
            Err(_) => true,
        }
    })
}

/// Tries to remove everything in `.sky-dev/` but `.instance`; what failed.
fn remove_all_but_instance(layout: &Layout) -> Vec<anyhow::Error> {
    let Ok(entries) = std::fs::read_dir(layout.dir()) else {
        return Vec::new();
    };
    let mut failed = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name() == ".instance" {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(kind) if kind.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if let Err(err) = removed {
            failed.push(
                anyhow::Error::from(err).context(format!("cannot remove `{}`", path.display())),
            );
        }
    }
    failed
}

/// Removes `.sky-dev/` itself, `.instance` last: until then the instance
/// is still found, and a purge cut short is finished by running it again.
pub fn remove_dir(layout: &Layout) -> Result<()> {
    if let Some(err) = remove_all_but_instance(layout).into_iter().next() {
        return Err(err);
    }
    let instance = layout.instance_file();
    match std::fs::remove_file(&instance) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(err).with_context(|| format!("cannot remove `{}`", instance.display()))
        }
        _ => {}
    }
    let dir = layout.dir();
    std::fs::remove_dir(&dir).with_context(|| format!("cannot remove `{}`", dir.display()))
}

/// Removes the named volumes (after the containers that used them).
pub async fn remove_volumes(engine: &Engine, volumes: &[String]) -> Result<()> {
    for volume in volumes {
        if engine.remove_volume(volume).await? {
            output::note(format!("removed volume `{volume}`"));
        }
    }
    Ok(())
}

/// The named volumes of an instance whose worktree is gone.
pub async fn gone_volumes(engine: &Engine, entry: &Entry) -> Result<Vec<String>> {
    let prefix = format!("{}-", entry.container);
    Ok(super::volumes::of_worktree(engine, &entry.worktree)
        .await?
        .into_iter()
        .map(|v| v.name)
        .filter(|name| name.starts_with(&prefix))
        .collect())
}

/// Removes what the engine holds of an instance whose worktree is gone:
/// its container (when made for that worktree), its services' containers,
/// and its private network.
pub async fn remove_gone(engine: &Engine, entry: &Entry, with_volumes: bool) -> Result<()> {
    let name = &entry.container;
    let worktree = crate::state::layout::path_text(&entry.worktree);
    match engine.inspect(name).await? {
        None => output::note(format!("container `{name}` does not exist")),
        Some(info) if info.label(super::spec::LABEL_WORKTREE) == Some(worktree.as_str()) => {
            engine.remove(name).await?;
            output::note(format!("removed container `{name}`"));
        }
        Some(info) => output::warn(format!(
            "container `{name}` belongs to the worktree `{}`, not `{worktree}`; left alone",
            info.label(super::spec::LABEL_WORKTREE).unwrap_or("unknown")
        )),
    }
    super::nodes::remove_all(engine, &entry.worktree, name).await?;
    super::services::remove_containers(engine, &entry.worktree, name, with_volumes).await?;
    super::services::remove_private_network(engine, name).await
}

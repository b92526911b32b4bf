//! Snapshots that travel (`snapshot push`, `snapshot pull`): a snapshot's
//! images (every node's) and its data, kept in a store under keys named by
//! their content, with a manifest written last. Pushing what a store has
//! already uploads nothing; a push cut short leaves no manifest, so nothing
//! half-written is ever listed or restored.
//!
//! In the store, under its prefix:
//! - `blobs/images/<image id>.tar`: an image archive, as `docker save` makes
//!   it, named by the image's id;
//! - `blobs/data/<sha256>.tar`: the snapshot's `state/`, `sky_logs/` and
//!   `nodes/`, a tar named by its sha256;
//! - `snapshots/<name>.json`: the manifest, which names them.

mod data;
pub mod store;

use super::snapshot::{image_ref, node_image_ref};
use super::Instance;
use crate::engine::Engine;
use crate::support::error::WithHint;
use crate::support::{names, output};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use store::Store;

/// The manifest's format; a store written by a later devinst says so.
const FORMAT: u32 = 1;

/// `snapshots/<name>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    name: String,
    /// The instance it was saved from, and when it was pushed.
    instance: String,
    pushed: String,
    devinst: String,
    /// The recipe's image and node count it was made with.
    recipe_image: String,
    /// Every node's filesystem, the head's first.
    images: Vec<ImageBlob>,
    data: DataBlob,
}

#[derive(Debug, Serialize, Deserialize)]
struct ImageBlob {
    rank: u16,
    /// `sha256:...`: the image's id, which names its archive.
    id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct DataBlob {
    sha256: String,
    size: u64,
}

fn image_key(id: &str) -> String {
    format!("blobs/images/{}.tar", id.trim_start_matches("sha256:"))
}

fn data_key(sha256: &str) -> String {
    format!("blobs/data/{sha256}.tar")
}

fn manifest_key(name: &str) -> String {
    format!("snapshots/{name}.json")
}

/// Pushes the local snapshot `name` to `store`.
pub async fn push(engine: &Engine, instance: &Instance, name: &str, store: &Store) -> Result<()> {
    names::validate(name).context("invalid snapshot name")?;
    let saved = instance.layout.snapshots_dir().join(name);
    let instance_name = &instance.record.name;
    let head = engine
        .image_id(&image_ref(instance_name, name))
        .await?
        .filter(|_| saved.is_dir())
        .ok_or_else(|| anyhow!("no snapshot `{name}` of instance `{instance_name}` here"))
        .hint("`devinst snapshot list` shows them; `devinst snapshot save NAME` makes one")?;
    let mut images = vec![ImageBlob { rank: 0, id: head }];
    for rank in super::nodes::ranks(instance).skip(1) {
        if let Some(id) = engine
            .image_id(&node_image_ref(instance_name, name, rank))
            .await?
        {
            images.push(ImageBlob { rank, id });
        }
    }
    let scratch = scratch_dir("push")?;
    for image in &images {
        let key = image_key(&image.id);
        if store.has(&key).await? {
            output::note(format!(
                "node {}'s filesystem is in `{}` already",
                image.rank, store.shown
            ));
            continue;
        }
        let file = scratch.path().join("image.tar");
        engine.save_image(&image.id, &file).await?;
        let what = format!("uploading node {}'s filesystem", image.rank);
        store.upload(&file, &key, &what).await?;
        std::fs::remove_file(&file)?;
    }
    let archive = scratch.path().join("data.tar");
    let (sha256, size) = data::pack(&saved, &archive)?;
    if store.has(&data_key(&sha256)).await? {
        output::note(format!(
            "the state and logs are in `{}` already",
            store.shown
        ));
    } else {
        store
            .upload(&archive, &data_key(&sha256), "uploading the state and logs")
            .await?;
    }
    let manifest = Manifest {
        format: FORMAT,
        name: name.to_owned(),
        instance: instance_name.clone(),
        pushed: crate::support::time::now_utc(),
        devinst: env!("CARGO_PKG_VERSION").to_owned(),
        recipe_image: instance.settings.image.clone(),
        images,
        data: DataBlob { sha256, size },
    };
    // Last: until it is there, the snapshot is not in the store.
    store
        .put_small(&manifest_key(name), serde_json::to_vec_pretty(&manifest)?)
        .await?;
    output::note(format!("pushed snapshot `{name}` to `{}`", store.shown));
    Ok(())
}

/// Pulls snapshot `name` from `store` into this instance's snapshots, where
/// `snapshot list` shows it and `snapshot restore` restores it. The local
/// snapshots are untouched: one by that name here already is refused.
pub async fn pull(engine: &Engine, instance: &Instance, name: &str, store: &Store) -> Result<()> {
    names::validate(name).context("invalid snapshot name")?;
    let instance_name = &instance.record.name;
    let saved = instance.layout.snapshots_dir().join(name);
    if saved.exists() || engine.image_exists(&image_ref(instance_name, name)).await? {
        return Err(anyhow!(
            "instance `{instance_name}` has a snapshot `{name}` already"
        ))
        .hint(format!(
            "delete it first (`devinst snapshot rm {name}`), or pull into another instance"
        ));
    }
    let manifest = read_manifest(store, name).await?;
    let scratch = scratch_dir("pull")?;
    for image in &manifest.images {
        if engine.image_id(&image.id).await?.is_some() {
            continue;
        }
        let file = scratch.path().join("image.tar");
        let what = format!("downloading node {}'s filesystem", image.rank);
        store.download(&image_key(&image.id), &file, &what).await?;
        engine.load_image(&file).await?;
        std::fs::remove_file(&file)?;
        if engine.image_id(&image.id).await?.is_none() {
            bail!(
                "the archive of node {} in `{}` did not hold image `{}`",
                image.rank,
                store.shown,
                image.id
            );
        }
    }
    let archive = scratch.path().join("data.tar");
    let sha256 = store
        .download(
            &data_key(&manifest.data.sha256),
            &archive,
            "downloading the state and logs",
        )
        .await?;
    if sha256 != manifest.data.sha256 {
        bail!(
            "the state and logs in `{}` are not what the manifest says (sha256 {sha256})",
            store.shown
        );
    }
    // Unpacked beside the snapshots, then tagged, then moved into place:
    // the snapshot is listed only once it is whole.
    let snapshots = instance.layout.snapshots_dir();
    crate::state::contained::make_dir(&instance.layout, &snapshots)?;
    let staged = snapshots.join(format!(".pull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staged);
    let result = async {
        data::unpack(&archive, &staged)?;
        tag_images(engine, instance, name, &manifest).await?;
        std::fs::rename(&staged, &saved)
            .with_context(|| format!("cannot create `{}`", saved.display()))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
        let _ = super::snapshot::remove_all_images(engine, instance, name).await;
    }
    result?;
    output::note(format!(
        "pulled snapshot `{name}` (of instance `{}`, pushed {}) from `{}`; `devinst snapshot restore {name}` restores it",
        manifest.instance, manifest.pushed, store.shown
    ));
    Ok(())
}

async fn read_manifest(store: &Store, name: &str) -> Result<Manifest> {
    let bytes = store
        .get_small(&manifest_key(name))
        .await?
        .ok_or_else(|| anyhow!("no snapshot `{name}` in `{}`", store.shown))
        .hint("push it first: `devinst snapshot push NAME --to STORE` where it was made")?;
    let manifest: Manifest = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the manifest of `{name}` in `{}` is not one devinst wrote",
            store.shown
        )
    })?;
    if manifest.format != FORMAT {
        return Err(anyhow!(
            "snapshot `{name}` in `{}` has format {}",
            store.shown,
            manifest.format
        ))
        .hint("pull it with the devinst that pushed it, or a later one");
    }
    for image in &manifest.images {
        let hex = image.id.trim_start_matches("sha256:");
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "the manifest of `{name}` names an image `{}` that is no image id",
                image.id
            );
        }
    }
    Ok(manifest)
}

/// Gives the loaded images this instance's snapshot names.
async fn tag_images(
    engine: &Engine,
    instance: &Instance,
    name: &str,
    manifest: &Manifest,
) -> Result<()> {
    let instance_name = &instance.record.name;
    for image in &manifest.images {
        let reference = match image.rank {
            0 => image_ref(instance_name, name),
            rank => node_image_ref(instance_name, name, rank),
        };
        engine.tag_image(&image.id, &reference).await?;
    }
    Ok(())
}

/// A directory for the archives on their way, removed when done.
fn scratch_dir(what: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("devinst-{what}-"))
        .tempdir()
        .context("cannot make a temporary directory")
}

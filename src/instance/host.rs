//! What the container takes from the host rather than the recipe: existing
//! credential directories, git's common directory, the CA bundle (and how it
//! compares with an image's), the owner.

use super::Instance;
use crate::engine::Engine;
use crate::engine::UserMapping;
use crate::instance::spec::{self, HostFacts, Owner};
use crate::recipe::settings::User;
use crate::state::contained;
use crate::support::certs::{self, Certificate};
use crate::support::error::WithHint;
use crate::support::output;
use anyhow::{anyhow, Context, Result};
use std::path::PathBuf;

/// For `user = "host"`: finds the worktree's owner, and makes the host
/// directories mounted for them (HOME, state, logs) theirs, for when devinst
/// itself runs as root on someone else's worktree.
pub async fn prepare_owner_dirs(engine: &Engine, instance: &Instance) -> Result<Owner> {
    use std::os::unix::fs::MetadataExt;
    let layout = &instance.layout;
    let meta = std::fs::metadata(&layout.root)
        .with_context(|| format!("cannot stat `{}`", layout.root.display()))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    let mapping = engine.user_mapping().await?;
    check_keep_id(&instance.settings.user, mapping, uid)?;
    let mut dirs = vec![layout.dir()];
    dirs.extend(spec::NodeDirs::of(layout, 0).all(&instance.settings));
    for dir in &dirs {
        contained::make_dir(layout, dir)?;
    }
    give_to_owner(&dirs, uid, gid)?;
    Ok(Owner { uid, gid, mapping })
}

/// `user = "host"` on rootless Podman takes `keep-id`, which keeps only the
/// engine's own user and needs subordinate ids for the container's others:
/// when it cannot work, said before anything is made.
pub fn check_keep_id(user: &User, mapping: UserMapping, owner_uid: u32) -> Result<()> {
    let UserMapping::RootlessPodman {
        engine_uid,
        subordinate_ids,
    } = mapping
    else {
        return Ok(());
    };
    if *user != User::Host {
        return Ok(());
    }
    if let Some(engine_uid) = engine_uid.filter(|&e| e != owner_uid) {
        return Err(anyhow!(
            "`user = \"host\"` cannot work on this engine: it is rootless Podman run by uid {engine_uid}, \
             whose `keep-id` maps only that user, and the worktree belongs to uid {owner_uid}"
        ))
        .hint(format!(
            "use the worktree owner's own Podman (their `$XDG_RUNTIME_DIR/podman/podman.sock`), \
             or run devinst as uid {engine_uid} on a worktree of theirs"
        ));
    }
    if subordinate_ids == 0 {
        return Err(anyhow!(
            "`user = \"host\"` cannot work on this engine: rootless Podman's `keep-id` needs subordinate \
             ids for the container's other users, and the engine's user has none in /etc/subuid"
        ))
        .hint(
            "give that user ranges in /etc/subuid and /etc/subgid (as root: `usermod --add-subuids \
             100000-165535 --add-subgids 100000-165535 USER`), then `podman system migrate` and restart \
             its service; or leave `user` out of devinst.toml: the container's root is that user already",
        );
    }
    Ok(())
}

/// Makes the directories `dirs` (made already, inside the worktree) the
/// worktree owner's, never through a link: a planted one would hand its
/// target over.
pub fn give_to_owner(dirs: &[PathBuf], uid: u32, gid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for dir in dirs {
        let owned = std::fs::symlink_metadata(dir).is_ok_and(|m| m.uid() == uid && m.gid() == gid);
        if !owned {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
                .with_context(|| {
                    format!(
                        "cannot give `{}` to the worktree's owner ({uid}:{gid})",
                        dir.display()
                    )
                })
                .hint("run devinst as the worktree's owner, or as root")?;
        }
    }
    Ok(())
}

pub fn host_facts(instance: &Instance, owner: Option<Owner>, image: &str) -> Result<HostFacts> {
    let s = &instance.settings;
    let home = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
    let credentials = match &home {
        Some(home) => s
            .credential_paths
            .iter()
            .map(|entry| spec::credential_paths(entry, home, &s.credential_home))
            .filter(|(host, _)| host.exists())
            .collect(),
        None => Vec::new(),
    };
    let git_common_dir = crate::state::worktree::outside_common_dir(&instance.layout.root)?;
    let host_ca = s.host_ca.then(host_ca_bundle).flatten();
    if s.host_ca && host_ca.is_none() {
        output::warn("`host_ca` is on but no CA bundle was found on the host");
    }
    Ok(HostFacts {
        credentials,
        git_common_dir,
        host_ca,
        limits: s.limits_for(instance.record.tier.as_deref())?,
        owner,
        image: Some(image.to_owned()),
        identity: Some(instance.identity.clone()),
        // Put in place by `lifecycle`, which knows the engine.
        agent: None,
    })
}

/// Where the host's CA bundle may be, first found wins (Debian and Ubuntu,
/// Fedora and RHEL, Alpine and macOS). Images keep theirs in the same places.
pub const CA_BUNDLE_PATHS: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn host_ca_bundle() -> Option<PathBuf> {
    CA_BUNDLE_PATHS
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The host's CA bundle, read.
pub struct HostBundle {
    pub path: PathBuf,
    pub certificates: Vec<Certificate>,
}

/// The host's CA bundle and its certificates; `None` when there is no
/// bundle, or one without a certificate in it.
pub fn read_host_ca() -> Result<Option<HostBundle>> {
    let Some(path) = host_ca_bundle() else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path)
        .with_context(|| format!("cannot read the host's CA bundle `{}`", path.display()))?;
    let certificates = certs::certificates(&bytes);
    Ok((!certificates.is_empty()).then_some(HostBundle { path, certificates }))
}

/// How the host's CA bundle compares with an image's.
#[derive(Debug, PartialEq)]
pub enum CaComparison {
    /// The host has no CA bundle.
    NoHostBundle,
    /// The image is not on the engine (nothing is pulled to compare).
    ImageAbsent,
    /// The image has no CA bundle where the host keeps its own.
    NoImageBundle,
    Compared {
        host: PathBuf,
        image_path: String,
        host_total: usize,
        /// How many of the host's certificates the image's bundle lacks.
        lacking: usize,
    },
}

/// Which of the host's trusted certificates `image`'s own bundle lacks: what
/// TLS through a proxy that re-signs it needs and the image does not have.
/// Reads the image's bundle from a container made for it and never started.
pub async fn compare_ca(engine: &Engine, image: &str) -> Result<CaComparison> {
    let Some(host) = read_host_ca()? else {
        return Ok(CaComparison::NoHostBundle);
    };
    if !engine.image_exists(image).await? {
        return Ok(CaComparison::ImageAbsent);
    }
    let labels = [(spec::LABEL_MANAGED_BY.to_owned(), "devinst".to_owned())];
    let Some((image_path, bytes)) = engine
        .read_image_file(image, &CA_BUNDLE_PATHS, &labels)
        .await?
    else {
        return Ok(CaComparison::NoImageBundle);
    };
    let theirs = certs::certificates(&bytes);
    Ok(CaComparison::Compared {
        host_total: host.certificates.len(),
        lacking: certs::missing_from(&host.certificates, &theirs).len(),
        host: host.path,
        image_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_id_is_refused_before_anything_is_made_where_it_cannot_work() {
        let podman = |engine_uid, subordinate_ids| UserMapping::RootlessPodman {
            engine_uid,
            subordinate_ids,
        };
        assert!(check_keep_id(&User::Host, podman(Some(1001), 65536), 1001).is_ok());
        let other = check_keep_id(&User::Host, podman(Some(1001), 65536), 1002).unwrap_err();
        assert!(
            format!("{other:#}").contains("run by uid 1001")
                && format!("{other:#}").contains("belongs to uid 1002"),
            "{other:#}"
        );
        let none = check_keep_id(&User::Host, podman(Some(1001), 0), 1001).unwrap_err();
        assert!(format!("{none:#}").contains("subordinate"), "{none:#}");
        // Only `user = "host"` asks for keep-id; rootful engines never do.
        assert!(check_keep_id(&User::Owner, podman(Some(1001), 0), 1002).is_ok());
        assert!(check_keep_id(&User::Host, UserMapping::Direct, 1002).is_ok());
    }
}

//! What the container takes from the host rather than the recipe: existing
//! credential directories, git's common directory, the CA bundle, the owner.

use super::Instance;
use crate::engine::Engine;
use crate::instance::spec::{self, HostFacts, Owner};
use crate::support::error::WithHint;
use crate::support::{fs, output};
use anyhow::{Context, Result};

/// For `user = "host"`: finds the worktree's owner, and makes the host
/// directories mounted for them (HOME, state, logs) theirs, for when devinst
/// itself runs as root on someone else's worktree.
pub async fn prepare_owner_dirs(engine: &Engine, instance: &Instance) -> Result<Owner> {
    use std::os::unix::fs::MetadataExt;
    let layout = &instance.layout;
    let meta = std::fs::metadata(&layout.root)
        .with_context(|| format!("cannot stat `{}`", layout.root.display()))?;
    let (uid, gid) = (meta.uid(), meta.gid());
    fs::create_dir_all(&layout.home_dir())?;
    for dir in [
        layout.dir(),
        layout.home_dir(),
        layout.state_dir(),
        layout.logs_dir(),
    ] {
        let owned = std::fs::metadata(&dir).is_ok_and(|m| m.uid() == uid && m.gid() == gid);
        if !owned {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .with_context(|| {
                    format!(
                        "cannot give `{}` to the worktree's owner ({uid}:{gid})",
                        dir.display()
                    )
                })
                .hint("run devinst as the worktree's owner, or as root")?;
        }
    }
    Ok(Owner {
        uid,
        gid,
        mapping: engine.user_mapping().await?,
    })
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
        // Put in place by `lifecycle`, which knows the engine.
        agent: None,
    })
}

fn host_ca_bundle() -> Option<std::path::PathBuf> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
}

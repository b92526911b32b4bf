//! Every instance on this host, in the user's data directory. Changes happen
//! under an exclusive file lock, so setups in many worktrees at once never hand
//! out one port or one name twice.

use crate::support::fs::{create_dir_all, write_atomic};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Overrides the data directory (tests, or several users of one account).
pub const DATA_DIR_ENV: &str = "DEVINST_DATA_DIR";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub worktree: PathBuf,
    pub container: String,
    pub port: u16,
    pub created: String,
    /// Host ports of the instance's services, by service name. Absent in
    /// registries written before services existed, which still load.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, u16>,
    /// Host ports of `[ports.extra]`, by port name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, u16>,
}

impl Entry {
    /// The entry for the instance `record` describes.
    pub fn of(record: &crate::state::layout::Record) -> Entry {
        Entry {
            name: record.name.clone(),
            worktree: record.worktree.clone(),
            container: record.container.clone(),
            port: record.port,
            created: record.created.clone(),
            services: record.service_ports.clone(),
            extra: record.extra_ports.clone(),
        }
    }

    pub fn worktree_exists(&self) -> bool {
        !crate::state::layout::is_gone(&self.worktree)
    }

    /// Every host port the instance holds: its own, its named ones, then
    /// its services'.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        std::iter::once(self.port)
            .chain(self.extra.values().copied())
            .chain(self.services.values().copied())
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RegistryFile {
    #[serde(default)]
    instances: BTreeMap<String, Entry>,
}

/// The registry, held under its lock until dropped.
pub struct Registry {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
    _lock: File,
}

pub fn data_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "devinst")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .context("cannot find a data directory: no home directory is set")
}

/// This data directory's identity: a random id made once and kept beside the
/// registry. Every container made from here carries it (`devinst.data-dir`), so
/// a container is this devinst's only if it was made from this data directory,
/// whatever a worktree's files say.
pub fn identity() -> Result<String> {
    let dir = data_dir()?;
    let path = dir.join("identity");
    if let Some(id) = read_identity(&path)? {
        return Ok(id);
    }
    create_dir_all(&dir)?;
    let id = random_id()?;
    // Made complete under a name of its own, then linked into place, which
    // fails if another devinst got there first: then theirs is the one.
    let fresh = dir.join(format!(".identity.{}", std::process::id()));
    write_atomic(&fresh, format!("{id}\n").as_bytes(), 0o600)?;
    let linked = std::fs::hard_link(&fresh, &path);
    let _ = std::fs::remove_file(&fresh);
    match linked {
        Ok(()) => Ok(id),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            read_identity(&path)?.with_context(|| format!("`{}` is empty", path.display()))
        }
        Err(err) => Err(err).with_context(|| format!("cannot write `{}`", path.display())),
    }
}

fn read_identity(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

/// 128 random bits, in hex.
fn random_id() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read `/dev/urandom`")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Registry {
    /// Takes the host-wide lock (waiting for other devinst processes) and reads
    /// the registry.
    pub fn lock() -> Result<Registry> {
        let dir = data_dir()?;
        create_dir_all(&dir)?;
        let lock = crate::support::fs::lock_file(&dir.join("registry.lock"))?;
        let path = dir.join("registry.json");
        let entries = read(&path)?.instances;
        Ok(Registry {
            path,
            entries,
            _lock: lock,
        })
    }

    /// The entries as they are now, without the lock: enough for listings.
    pub fn read_unlocked() -> Result<Vec<Entry>> {
        let path = data_dir()?.join("registry.json");
        Ok(read(&path)?.instances.into_values().collect())
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn insert(&mut self, entry: Entry) {
        self.entries.insert(entry.name.clone(), entry);
    }

    pub fn remove(&mut self, name: &str) -> Option<Entry> {
        self.entries.remove(name)
    }

    pub fn save(&self) -> Result<()> {
        let file = RegistryFile {
            instances: self.entries.clone(),
        };
        let text = serde_json::to_string_pretty(&file)?;
        write_atomic(&self.path, text.as_bytes(), 0o644)
    }
}

fn read(path: &Path) -> Result<RegistryFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("the registry `{}` is corrupt", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(RegistryFile::default()),
        Err(err) => Err(err).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_hex_and_differ() {
        let (a, b) = (random_id().unwrap(), random_id().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn registries_from_before_services_still_load() {
        let old = r#"{"instances":{"a":{"name":"a","worktree":"/w/a","container":"c-a","port":46501,"created":"x"}}}"#;
        let file: RegistryFile = serde_json::from_str(old).unwrap();
        let entry = &file.instances["a"];
        assert!(entry.services.is_empty());
        assert_eq!(entry.ports().collect::<Vec<_>>(), [46501]);
        let mut entry = entry.clone();
        entry.services.insert("db".into(), 46502);
        let text = serde_json::to_string(&entry).unwrap();
        let back: Entry = serde_json::from_str(&text).unwrap();
        assert_eq!(back.ports().collect::<Vec<_>>(), [46501, 46502]);
    }
}

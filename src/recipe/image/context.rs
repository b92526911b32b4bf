//! The build context: the included files found under the worktree, hashed
//! with the Dockerfile into the image's tag, and archived for the engine.

use super::dockerfile::{dockerfile, HOST_CA_PIECE_BYTES};
use super::{HostCa, ImageRecipe, CONTEXT_DIR, TAG_REPOSITORY};
use crate::support::certs::Certificate;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The Dockerfile and the included files, ready to hash and archive.
#[derive(Debug)]
pub struct BuildContext {
    /// Under `host_ca`, it carries the host's certificates, so they are in
    /// the hash too.
    pub dockerfile: String,
    entries: Vec<Entry>,
    /// `devinst-build/<hash>:1`.
    pub tag: String,
    pub host_ca: HostCa,
    /// The image the Dockerfile starts `FROM`: its registry gets the
    /// user's login for the build.
    pub base: String,
}

#[derive(Debug)]
struct Entry {
    /// The path inside the build context.
    path: PathBuf,
    host: PathBuf,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    File {
        mode: u32,
    },
    Dir {
        mode: u32,
    },
    /// Kept as a link, as `COPY` keeps it; its target is never read.
    Symlink {
        target: PathBuf,
    },
}

impl BuildContext {
    /// Finds the included files under `root` and hashes them with the
    /// Dockerfile. Sources must exist and stay inside the worktree, symlinks
    /// on the way included. `host_ca`, the host's certificates, reach the
    /// steps that fetch, when there are any.
    pub fn collect(
        recipe: &ImageRecipe,
        root: &Path,
        host_ca: Option<&[Certificate]>,
    ) -> Result<BuildContext> {
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot read `{}`", root.display()))?;
        let mut entries = Vec::new();
        let mut is_dir = Vec::new();
        for (i, include) in recipe.include.iter().enumerate() {
            let host = resolve_source(&root, &include.source)?;
            let path = PathBuf::from(CONTEXT_DIR).join(i.to_string());
            is_dir.push(host.is_dir());
            walk(&host, &path, &mut entries).with_context(|| {
                format!(
                    "cannot read `[container.build] include` source `{}`",
                    include.source
                )
            })?;
        }
        let pieces = match host_ca {
            Some(certificates) if recipe.fetches() => pem_pieces(certificates),
            _ => Vec::new(),
        };
        let mut context = BuildContext {
            dockerfile: dockerfile(recipe, &is_dir, &pieces),
            entries,
            tag: String::new(),
            host_ca: if pieces.is_empty() {
                HostCa::Off
            } else {
                HostCa::Used
            },
            base: recipe.base.clone(),
        };
        context.tag = context.visit(|_, _| Ok(()))?;
        Ok(context)
    }

    /// The build context as an uncompressed tar: the Dockerfile and every
    /// entry, owned by root with a fixed time, so equal recipes give equal
    /// archives. Fails if a file changed since `collect` hashed it.
    pub fn archive(&self) -> Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar_header(tar::EntryType::Regular, 0o644, self.dockerfile.len());
        builder.append_data(&mut header, "Dockerfile", self.dockerfile.as_bytes())?;
        let tag = self.visit(|entry, bytes| {
            match &entry.kind {
                Kind::File { mode } => {
                    let mut header = tar_header(tar::EntryType::Regular, *mode, bytes.len());
                    builder.append_data(&mut header, &entry.path, bytes)?;
                }
                Kind::Dir { mode } => {
                    let mut header = tar_header(tar::EntryType::Directory, *mode, 0);
                    builder.append_data(&mut header, &entry.path, std::io::empty())?;
                }
                Kind::Symlink { target } => {
                    let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0);
                    builder.append_link(&mut header, &entry.path, target)?;
                }
            }
            Ok(())
        })?;
        if tag != self.tag {
            bail!("included files changed while devinst read them; run the command again");
        }
        Ok(builder.into_inner()?)
    }

    /// Reads every entry once, in order, handing each to `f` with its bytes
    /// (files only), and returns the tag of the Dockerfile and all of them.
    fn visit(&self, mut f: impl FnMut(&Entry, &[u8]) -> Result<()>) -> Result<String> {
        let mut hasher = Sha256::new();
        hash_field(&mut hasher, b"dockerfile", self.dockerfile.as_bytes());
        for entry in &self.entries {
            let path = entry.path.as_os_str().as_bytes();
            let bytes = match &entry.kind {
                Kind::File { mode } => {
                    let bytes = std::fs::read(&entry.host)
                        .with_context(|| format!("cannot read `{}`", entry.host.display()))?;
                    hash_field(&mut hasher, b"file", path);
                    hash_field(&mut hasher, b"mode", &mode.to_be_bytes());
                    hash_field(&mut hasher, b"bytes", &bytes);
                    bytes
                }
                Kind::Dir { mode } => {
                    hash_field(&mut hasher, b"dir", path);
                    hash_field(&mut hasher, b"mode", &mode.to_be_bytes());
                    Vec::new()
                }
                Kind::Symlink { target } => {
                    hash_field(&mut hasher, b"symlink", path);
                    hash_field(&mut hasher, b"target", target.as_os_str().as_bytes());
                    Vec::new()
                }
            };
            f(entry, &bytes)?;
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(format!("{TAG_REPOSITORY}/{hex}:1"))
    }
}

/// The certificates in PEM, cut between certificates into pieces of at most
/// [`HOST_CA_PIECE_BYTES`] (a certificate is a few KiB).
fn pem_pieces(certificates: &[Certificate]) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for certificate in certificates {
        let pem = certificate.pem();
        if !piece.is_empty() && piece.len() + pem.len() > HOST_CA_PIECE_BYTES {
            pieces.push(std::mem::take(&mut piece));
        }
        piece.push_str(&pem);
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// Each field length-prefixed, so no two different contexts hash alike by
/// moving bytes from one field to the next.
fn hash_field(hasher: &mut Sha256, name: &[u8], value: &[u8]) {
    hasher.update(name);
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value);
}

fn tar_header(kind: tar::EntryType, mode: u32, size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size as u64);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

/// The include source's host path, once it is known to exist and to lie
/// inside the worktree even after following symlinks.
fn resolve_source(root: &Path, source: &str) -> Result<PathBuf> {
    let path = root.join(source);
    let resolved = match path.canonicalize() {
        Ok(resolved) => resolved,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(anyhow::anyhow!(
                "`[container.build] include` source `{source}` does not exist in the worktree"
            ))
            .context(crate::support::error::Hint(format!(
                "create `{source}` or remove its entry from `[container.build] include` in devinst.toml"
            )));
        }
        Err(err) => return Err(err).with_context(|| format!("cannot read `{}`", path.display())),
    };
    if !resolved.starts_with(root) {
        bail!(
            "`[container.build] include` source `{source}` leads outside the worktree (to `{}`)",
            resolved.display()
        );
    }
    Ok(resolved)
}

/// Adds `host` at `path`, and a directory's contents below it, sorted by
/// name so the hash does not depend on the order the file system lists them.
fn walk(host: &Path, path: &Path, entries: &mut Vec<Entry>) -> Result<()> {
    let meta = std::fs::symlink_metadata(host)
        .with_context(|| format!("cannot read `{}`", host.display()))?;
    let mode = meta.permissions().mode() & 0o7777;
    let kind = if meta.file_type().is_symlink() {
        Kind::Symlink {
            target: std::fs::read_link(host)?,
        }
    } else if meta.is_dir() {
        Kind::Dir { mode }
    } else if meta.is_file() {
        Kind::File { mode }
    } else {
        bail!(
            "`{}` is neither a file, a directory nor a symlink",
            host.display()
        );
    };
    let descend = matches!(kind, Kind::Dir { .. });
    entries.push(Entry {
        path: path.to_owned(),
        host: host.to_owned(),
        kind,
    });
    if descend {
        let mut names: Vec<_> = std::fs::read_dir(host)
            .with_context(|| format!("cannot read `{}`", host.display()))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names {
            walk(&host.join(&name), &path.join(&name), entries)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::image::tests::recipe;
    use crate::recipe::image::{HostCa, Include};
    use std::collections::BTreeMap;

    fn tree() -> (tempfile::TempDir, ImageRecipe) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tools/sub")).unwrap();
        std::fs::write(dir.path().join("tools/x.sh"), "echo hi\n").unwrap();
        std::fs::write(dir.path().join("tools/sub/data"), "data").unwrap();
        let mut r = recipe();
        r.include = vec![
            Include {
                source: "tools/x.sh".into(),
                target: "/opt/x.sh".into(),
            },
            Include {
                source: "tools".into(),
                target: "/opt/tools".into(),
            },
        ];
        (dir, r)
    }

    #[test]
    fn tag_is_stable_and_tracks_every_byte_and_mode() {
        let (dir, r) = tree();
        let first = BuildContext::collect(&r, dir.path(), None).unwrap();
        assert!(first.tag.starts_with("devinst-build/"), "{}", first.tag);
        assert!(first.tag.ends_with(":1"), "{}", first.tag);
        assert_eq!(first.tag.len(), "devinst-build/".len() + 16 + 2);
        let again = BuildContext::collect(&r, dir.path(), None).unwrap();
        assert_eq!(first.tag, again.tag);

        std::fs::write(dir.path().join("tools/sub/data"), "datA").unwrap();
        let changed = BuildContext::collect(&r, dir.path(), None).unwrap();
        assert_ne!(first.tag, changed.tag, "a changed byte");

        let script = dir.path().join("tools/x.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let moded = BuildContext::collect(&r, dir.path(), None).unwrap();
        assert_ne!(changed.tag, moded.tag, "a changed mode");

        let mut other = r.clone();
        other.env.insert("BAR".into(), "1".into());
        let env = BuildContext::collect(&other, dir.path(), None).unwrap();
        assert_ne!(moded.tag, env.tag, "a changed Dockerfile");
    }

    #[test]
    fn archive_holds_the_dockerfile_and_the_files() {
        let (dir, r) = tree();
        let context = BuildContext::collect(&r, dir.path(), None).unwrap();
        let bytes = context.archive().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut found = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            found.insert(path, text);
        }
        assert_eq!(found["Dockerfile"], context.dockerfile);
        assert_eq!(found["files/0"], "echo hi\n");
        assert_eq!(found["files/1/x.sh"], "echo hi\n");
        assert_eq!(found["files/1/sub/data"], "data");
        assert!(found.contains_key("files/1/sub"));
    }

    #[test]
    fn sources_must_exist_inside_the_worktree() {
        let (dir, mut r) = tree();
        r.include[0].source = "missing.txt".into();
        let err = format!(
            "{:#}",
            BuildContext::collect(&r, dir.path(), None).unwrap_err()
        );
        assert!(err.contains("`missing.txt` does not exist"), "{err}");

        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        r.include[0].source = "escape".into();
        let err = format!(
            "{:#}",
            BuildContext::collect(&r, dir.path(), None).unwrap_err()
        );
        assert!(err.contains("leads outside the worktree"), "{err}");
    }

    #[test]
    fn the_hosts_certificates_are_in_the_tag_when_a_step_fetches() {
        let (dir, r) = tree();
        let pem = |bodies: &[&str]| -> Vec<Certificate> {
            let text: String = bodies
                .iter()
                .map(|b| format!("-----BEGIN CERTIFICATE-----\n{b}\n-----END CERTIFICATE-----\n"))
                .collect();
            crate::support::certs::certificates(text.as_bytes())
        };
        let (one, two) = (pem(&["QQ=="]), pem(&["QQ==", "Qg=="]));
        let tag = |r: &ImageRecipe, ca: Option<&[Certificate]>| {
            BuildContext::collect(r, dir.path(), ca).unwrap()
        };
        let plain = tag(&r, None);
        assert_eq!(plain.host_ca, HostCa::Off);
        let with = tag(&r, Some(&one));
        assert_eq!(with.host_ca, HostCa::Used);
        assert!(with.dockerfile.contains("QQ=="), "{}", with.dockerfile);
        assert_ne!(plain.tag, with.tag, "with the bundle");
        assert_eq!(with.tag, tag(&r, Some(&one)).tag, "deterministic");
        assert_ne!(with.tag, tag(&r, Some(&two)).tag, "another bundle");
        // The archive holds nothing more than the Dockerfile and the files.
        let archive = with.archive().unwrap();
        let mut names = Vec::new();
        for entry in tar::Archive::new(archive.as_slice()).entries().unwrap() {
            names.push(entry.unwrap().path().unwrap().display().to_string());
        }
        assert_eq!(names.len(), 1 + plain.entries.len(), "{names:?}");

        // No step fetches: the bundle is not used, and not in the tag.
        let mut quiet = r.clone();
        quiet.apt.clear();
        quiet.pip.clear();
        let unused = tag(&quiet, Some(&one));
        assert_eq!(unused.host_ca, HostCa::Off);
        assert_eq!(unused.tag, tag(&quiet, None).tag);

        // A bundle of many pieces: each at most the piece size, cut between
        // certificates, in order.
        let body = "A".repeat(3000);
        let many: Vec<Certificate> = (0..100)
            .flat_map(|i| pem(&[&format!("{body}{i:04}")]))
            .collect();
        let pieces = pem_pieces(&many);
        assert!(pieces.len() > 2, "{}", pieces.len());
        assert!(pieces.iter().all(|p| p.len() <= HOST_CA_PIECE_BYTES));
        let joined: String = pieces.concat();
        let expected: String = many.iter().map(Certificate::pem).collect();
        assert_eq!(joined, expected);
    }
}

//! `[container.build]`: an image recipe (base, apt, pip, env, included files)
//! turned into a Dockerfile and a build context, and named by a hash of both,
//! so each distinct recipe is built once and found again by its tag.
//!
//! Validation is lexical and runs with the rest of the recipe's (no engine,
//! no file reads); the included files are read only when the context is
//! collected, by `start` and `build`.

use crate::recipe::config::BuildConfig;
use crate::recipe::validate::validate_env_name;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Built images are named `devinst-build/<hash>:1`; the repository part tells
/// `docker images` readers who made them.
pub const TAG_REPOSITORY: &str = "devinst-build";
const CONTEXT_DIR: &str = "files";

/// The validated `[container.build]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecipe {
    pub base: String,
    pub apt: Vec<String>,
    pub pip: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub include: Vec<Include>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source: String,
    pub target: String,
}

impl ImageRecipe {
    pub fn from_config(config: BuildConfig) -> Result<ImageRecipe> {
        let recipe = ImageRecipe {
            base: config.base,
            apt: config.apt.unwrap_or_default(),
            pip: config.pip.unwrap_or_default(),
            env: config.env.unwrap_or_default(),
            include: config
                .include
                .unwrap_or_default()
                .into_iter()
                .map(|i| Include {
                    source: i.source,
                    target: i.target,
                })
                .collect(),
        };
        recipe.validate()?;
        Ok(recipe)
    }

    /// Refuses anything that could not be passed to apt-get, pip or the
    /// Dockerfile as plain data, so a mistake fails here, with its key, and
    /// not minutes into a build.
    fn validate(&self) -> Result<()> {
        if !is_image_reference(&self.base) {
            bail!(
                "`[container.build] base` must be an image reference like `ubuntu:22.04`, not `{}`",
                self.base
            );
        }
        for name in &self.apt {
            if !is_apt_package(name) {
                bail!(
                    "`[container.build] apt` entry `{name}` is not a Debian package name \
                     (lowercase letters, digits, `+`, `-` and `.`, optionally `=VERSION` or `/RELEASE`)"
                );
            }
        }
        for requirement in &self.pip {
            if !is_pip_requirement(requirement) {
                bail!(
                    "`[container.build] pip` entry `{requirement}` is not a requirement like `name`, \
                     `name==1.2` or `name[extra]>=1,<2` (no spaces, options, URLs or markers)"
                );
            }
        }
        for (key, value) in &self.env {
            validate_env_name(key)
                .with_context(|| format!("`[container.build] env` key `{key}`"))?;
            if has_control(value) {
                bail!("`[container.build] env` value of `{key}` must be one line without control characters");
            }
        }
        for include in &self.include {
            validate_include(include)?;
        }
        Ok(())
    }
}

fn validate_include(include: &Include) -> Result<()> {
    let Include { source, target } = include;
    let source_ok = !source.is_empty()
        && !has_control(source)
        && Path::new(source)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !source_ok {
        bail!(
            "`[container.build] include` source `{source}` must be a path inside the worktree, \
             relative to its root, without `..`"
        );
    }
    if !target.starts_with('/') || has_control(target) {
        bail!("`[container.build] include` target `{target}` must be an absolute path inside the image");
    }
    Ok(())
}

fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\t')
}

/// `[registry/]name[:tag][@digest]`, in the characters references use: no
/// shell or Dockerfile syntax can hide in it.
fn is_image_reference(text: &str) -> bool {
    !text.is_empty()
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@'))
}

/// Debian policy's package name (lowercase alphanumerics, `+`, `-`, `.`, two
/// characters at least, starting alphanumeric), with an optional `:arch`, then
/// `=version` or `/release` as apt-get accepts them.
fn is_apt_package(text: &str) -> bool {
    let (name, rest) = split_at_any(text, &[':', '=', '/']);
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    let (arch, rest) = match rest.strip_prefix(':') {
        Some(after) => split_at_any(after, &['=', '/']),
        None => ("-", rest),
    };
    let arch_ok = !arch.is_empty()
        && arch
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let suffix_ok = match (rest.strip_prefix('='), rest.strip_prefix('/')) {
        (Some(version), _) => {
            !version.is_empty()
                && version.starts_with(|c: char| c.is_ascii_alphanumeric())
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | ':' | '-'))
        }
        (None, Some(release)) => {
            !release.is_empty()
                && release.starts_with(|c: char| c.is_ascii_alphanumeric())
                && release
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
        }
        (None, None) => rest.is_empty(),
    };
    name_ok && arch_ok && suffix_ok
}

/// PEP 508's name, optional `[extras]` and version specifiers, without the
/// spaces, URLs and markers it also allows: enough for a recipe, and nothing
/// pip could read as an option.
fn is_pip_requirement(text: &str) -> bool {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let (name, rest) = split_at_any(text, &['[', '<', '>', '=', '!', '~']);
    if !is_name(name) {
        return false;
    }
    let rest = match rest.strip_prefix('[') {
        Some(after) => {
            let Some((extras, rest)) = after.split_once(']') else {
                return false;
            };
            if !extras.split(',').all(is_name) {
                return false;
            }
            rest
        }
        None => rest,
    };
    rest.is_empty()
        || (rest.starts_with(['<', '>', '=', '!', '~'])
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "<>=!~,.*+_-".contains(c)))
}

fn split_at_any<'a>(text: &'a str, stops: &[char]) -> (&'a str, &'a str) {
    match text.find(stops) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    }
}

/// The shell scripts the `RUN` steps run. Package names reach them as
/// arguments (`"$@"`), never as script text.
const APT_SCRIPT: &str = "set -e; \
if ! command -v apt-get >/dev/null 2>&1; then \
echo 'devinst: [container.build] apt needs a Debian or Ubuntu base image (no apt-get in it)' >&2; exit 1; fi; \
export DEBIAN_FRONTEND=noninteractive; \
apt-get update; \
apt-get install -y --no-install-recommends \"$@\"; \
rm -rf /var/lib/apt/lists/*";

/// Debian 12 and later refuse system-wide installs (PEP 668); the variable
/// lifts that for this one step, and older pips, which lack the
/// `--break-system-packages` flag, ignore it.
const PIP_SCRIPT: &str = "set -e; \
if ! python3 -m pip --version >/dev/null 2>&1; then \
echo 'devinst: [container.build] pip needs python3 with pip in the image; add python3-pip to apt' >&2; exit 1; fi; \
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1; \
python3 -m pip install --no-cache-dir \"$@\"";

/// The Dockerfile for `recipe`; `is_dir[i]` says whether include `i` is a
/// directory. Include `i` sits at `files/<i>` in the context, so no name from
/// the recipe is ever matched as a `COPY` wildcard.
pub fn dockerfile(recipe: &ImageRecipe, is_dir: &[bool]) -> String {
    let mut lines = vec![
        "# Generated by devinst from [container.build] in devinst.toml.".to_owned(),
        format!("FROM {}", recipe.base),
    ];
    if !recipe.apt.is_empty() {
        lines.push(run_line(APT_SCRIPT, "apt", &recipe.apt));
    }
    if !recipe.pip.is_empty() {
        lines.push(run_line(PIP_SCRIPT, "pip", &recipe.pip));
    }
    for (key, value) in &recipe.env {
        lines.push(format!("ENV {key}=\"{}\"", escape_quoted(value)));
    }
    for (i, include) in recipe.include.iter().enumerate() {
        let mut target = include.target.clone();
        // `COPY file /dir/` would name the copy after the context's `files/<i>`.
        if target.ends_with('/') && !is_dir.get(i).copied().unwrap_or(false) {
            if let Some(name) = Path::new(&include.source).file_name() {
                target.push_str(&name.to_string_lossy());
            }
        }
        let words = [format!("{CONTEXT_DIR}/{i}"), escape_word(&target)];
        lines.push(format!("COPY {}", json_array(&words)));
    }
    lines.join("\n") + "\n"
}

/// `RUN` in exec form: no shell parses the line, and `$0` names the step in
/// the script's own error messages.
fn run_line(script: &str, name: &str, args: &[String]) -> String {
    let mut argv = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        name.to_owned(),
    ];
    argv.extend(args.iter().cloned());
    format!("RUN {}", json_array(&argv))
}

fn json_array(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

/// A value inside `ENV K="..."`: the builder's double quotes treat `\`, `"`
/// and `$` specially.
fn escape_quoted(value: &str) -> String {
    escape(value, &['\\', '"', '$'])
}

/// A word of `COPY [...]`: the builder expands variables and removes quotes
/// there even in JSON form, so `\`, `$` and both quotes are escaped.
fn escape_word(value: &str) -> String {
    escape(value, &['\\', '"', '\'', '$'])
}

fn escape(value: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The Dockerfile and the included files, ready to hash and archive.
#[derive(Debug)]
pub struct BuildContext {
    pub dockerfile: String,
    entries: Vec<Entry>,
    /// `devinst-build/<hash>:1`.
    pub tag: String,
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
    /// on the way included.
    pub fn collect(recipe: &ImageRecipe, root: &Path) -> Result<BuildContext> {
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
        let mut context = BuildContext {
            dockerfile: dockerfile(recipe, &is_dir),
            entries,
            tag: String::new(),
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

    fn recipe() -> ImageRecipe {
        ImageRecipe {
            base: "ubuntu:22.04".into(),
            apt: vec!["jq".into(), "libssl3:amd64=3.0.11-1~deb12u2".into()],
            pip: vec!["six==1.16.0".into(), "requests[socks]>=2,<3".into()],
            env: BTreeMap::from([("FOO".into(), "a \"b\" $HOME 'c' \\d".into())]),
            include: vec![
                Include {
                    source: "tools/x.sh".into(),
                    target: "/opt/x.sh".into(),
                },
                Include {
                    source: "conf".into(),
                    target: "/etc/my app/".into(),
                },
                Include {
                    source: "bin/tool".into(),
                    target: "/usr/local/bin/".into(),
                },
            ],
        }
    }

    #[test]
    fn dockerfile_passes_every_value_as_data() {
        let text = dockerfile(&recipe(), &[false, true, false]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "FROM ubuntu:22.04");
        assert!(
            lines[2].starts_with(r#"RUN ["/bin/sh","-c","set -e; "#),
            "{text}"
        );
        assert!(
            lines[2].ends_with(r#""apt","jq","libssl3:amd64=3.0.11-1~deb12u2"]"#),
            "{text}"
        );
        assert!(lines[3].contains("PIP_BREAK_SYSTEM_PACKAGES=1"), "{text}");
        assert!(
            lines[3].ends_with(r#""pip","six==1.16.0","requests[socks]>=2,<3"]"#),
            "{text}"
        );
        assert_eq!(lines[4], r#"ENV FOO="a \"b\" \$HOME 'c' \\d""#);
        assert_eq!(lines[5], r#"COPY ["files/0","/opt/x.sh"]"#);
        // A directory fills its target; a file into `dir/` keeps its name.
        assert_eq!(lines[6], r#"COPY ["files/1","/etc/my app/"]"#);
        assert_eq!(lines[7], r#"COPY ["files/2","/usr/local/bin/tool"]"#);
        // Every RUN line is a JSON array, so no shell parses the Dockerfile.
        for line in lines.iter().filter(|l| l.starts_with("RUN ")) {
            let argv: Vec<String> = serde_json::from_str(&line[4..]).unwrap();
            assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        }
    }

    #[test]
    fn copy_targets_escape_the_builders_quoting() {
        let mut r = recipe();
        r.include = vec![Include {
            source: "x".into(),
            target: "/opt/a \"q\" $x 'y' \\z".into(),
        }];
        let text = dockerfile(&r, &[false]);
        let line = text.lines().find(|l| l.starts_with("COPY")).unwrap();
        let words: Vec<String> = serde_json::from_str(&line[5..]).unwrap();
        assert_eq!(words[1], r#"/opt/a \"q\" \$x \'y\' \\z"#);
    }

    #[test]
    fn empty_recipe_is_just_the_base() {
        let r = ImageRecipe {
            base: "debian:12".into(),
            apt: vec![],
            pip: vec![],
            env: BTreeMap::new(),
            include: vec![],
        };
        assert_eq!(
            dockerfile(&r, &[]),
            "# Generated by devinst from [container.build] in devinst.toml.\nFROM debian:12\n"
        );
    }

    #[test]
    fn names_are_checked_like_their_tools_do() {
        for good in [
            "jq",
            "g++",
            "libc6-dev",
            "python3.11",
            "jq=1.6-2.1",
            "jq/bookworm-backports",
            "libssl3:amd64",
        ] {
            assert!(is_apt_package(good), "{good}");
        }
        for bad in [
            "",
            "j",
            "-y",
            "--allow-unauthenticated",
            "Jq",
            "jq vim",
            "jq;rm",
            "$(x)",
            "jq=",
            "jq\n",
        ] {
            assert!(!is_apt_package(bad), "{bad}");
        }
        for good in [
            "six",
            "six==1.16.0",
            "Django>=4,<5",
            "requests[socks,security]~=2.31",
            "zope.interface",
            "a_b-c",
        ] {
            assert!(is_pip_requirement(good), "{good}");
        }
        for bad in [
            "",
            "-e",
            "--index-url=x",
            "six ==1",
            "six;python_version<'3'",
            "pkg @ https://x",
            "six==1 && rm",
            "x[",
            "`x`",
        ] {
            assert!(!is_pip_requirement(bad), "{bad}");
        }
        for good in [
            "ubuntu:22.04",
            "registry.local:5000/team/img:1",
            "img@sha256:abc",
        ] {
            assert!(is_image_reference(good), "{good}");
        }
        for bad in [
            "",
            " ubuntu",
            "-x",
            "ubuntu:22.04 AS x",
            "a\nRUN x",
            "$BASE",
        ] {
            assert!(!is_image_reference(bad), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let base = recipe();
        type Change = Box<dyn Fn(&mut ImageRecipe)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|r| r.base = String::new()), "base"),
            (Box::new(|r| r.apt.push("jq; rm -rf /".into())), "apt"),
            (Box::new(|r| r.pip.push("--pre".into())), "pip"),
            (
                Box::new(|r| {
                    r.env.insert("A-B".into(), "1".into());
                }),
                "env",
            ),
            (
                Box::new(|r| {
                    r.env.insert("A".into(), "x\ny".into());
                }),
                "env",
            ),
            (
                Box::new(|r| r.include[0].source = "../secret".into()),
                "include",
            ),
            (
                Box::new(|r| r.include[0].source = "/etc/passwd".into()),
                "include",
            ),
            (
                Box::new(|r| r.include[0].target = "opt/x".into()),
                "include",
            ),
        ];
        for (change, key) in cases {
            let mut r = base.clone();
            change(&mut r);
            let err = format!("{:#}", r.validate().unwrap_err());
            assert!(err.contains(&format!("[container.build] {key}")), "{err}");
        }
        base.validate().unwrap();
    }

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
        let first = BuildContext::collect(&r, dir.path()).unwrap();
        assert!(first.tag.starts_with("devinst-build/"), "{}", first.tag);
        assert!(first.tag.ends_with(":1"), "{}", first.tag);
        assert_eq!(first.tag.len(), "devinst-build/".len() + 16 + 2);
        let again = BuildContext::collect(&r, dir.path()).unwrap();
        assert_eq!(first.tag, again.tag);

        std::fs::write(dir.path().join("tools/sub/data"), "datA").unwrap();
        let changed = BuildContext::collect(&r, dir.path()).unwrap();
        assert_ne!(first.tag, changed.tag, "a changed byte");

        let script = dir.path().join("tools/x.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let moded = BuildContext::collect(&r, dir.path()).unwrap();
        assert_ne!(changed.tag, moded.tag, "a changed mode");

        let mut other = r.clone();
        other.env.insert("BAR".into(), "1".into());
        let env = BuildContext::collect(&other, dir.path()).unwrap();
        assert_ne!(moded.tag, env.tag, "a changed Dockerfile");
    }

    #[test]
    fn archive_holds_the_dockerfile_and_the_files() {
        let (dir, r) = tree();
        let context = BuildContext::collect(&r, dir.path()).unwrap();
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
        let err = format!("{:#}", BuildContext::collect(&r, dir.path()).unwrap_err());
        assert!(err.contains("`missing.txt` does not exist"), "{err}");

        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        r.include[0].source = "escape".into();
        let err = format!("{:#}", BuildContext::collect(&r, dir.path()).unwrap_err());
        assert!(err.contains("leads outside the worktree"), "{err}");
    }
}

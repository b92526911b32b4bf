//! `[container.build]`: an image recipe (base, apt, pip, env, included files)
//! turned into a Dockerfile and a build context, and named by a hash of both,
//! so each distinct recipe is built once and found again by its tag.
//!
//! Validation is lexical and runs with the rest of the recipe's (no engine,
//! no file reads); the included files are read only when the context is
//! collected, by `start` and `build`.

mod context;
mod dockerfile;
mod syntax;

pub use context::BuildContext;

use crate::recipe::config::BuildConfig;
use crate::recipe::validate::validate_env_name;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Component, Path};
use syntax::{has_control, is_apt_package, is_image_reference, is_pip_requirement};

/// Built images are named `devinst-build/<hash>:1`; the repository part tells
/// `docker images` readers who made them.
pub const TAG_REPOSITORY: &str = "devinst-build";
/// The build context's folder of included files: include `i` is `files/<i>`.
const CONTEXT_DIR: &str = "files";

/// Whether the recipe's steps that fetch (apt, pip) trust the host's CA
/// bundle (`[container] host_ca`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostCa {
    /// Not asked for, or no step fetches.
    #[default]
    Off,
    /// Handed to each step that fetches, and removed in the same step.
    Used,
    /// Asked for, but the host has no CA bundle.
    NotFound,
}

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

    /// Whether any step downloads (apt, pip): those are the steps a
    /// TLS-intercepting proxy breaks, and the ones `host_ca` reaches.
    pub fn fetches(&self) -> bool {
        !self.apt.is_empty() || !self.pip.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A recipe with a value of every kind, some hostile.
    pub(super) fn recipe() -> ImageRecipe {
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
}

//! The scripts in `.sky-dev/bin/`: `activate`, `start-container`,
//! `stop-container` and one shim per `[shims]` entry, written by `setup`.

use crate::recipe::settings::Settings;
use crate::state::layout::{path_text, Layout, Record};
use crate::support::fs as fsutil;
use crate::support::templates::{self as render, Vars};
use anyhow::{Context as _, Result};

pub fn write_scripts(layout: &Layout, settings: &Settings, record: &Record) -> Result<()> {
    let devinst = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map(|p| path_text(&p))
        .unwrap_or_else(|_| "devinst".to_owned());
    let root = path_text(&layout.root);
    let bin = layout.bin_dir();
    let base = || {
        Vars::default()
            .word("devinst", &devinst)
            .word("root", &root)
    };
    let write = |file: &str, text: String, mode: u32| {
        fsutil::write_atomic(&bin.join(file), text.as_bytes(), mode)
    };

    write(
        "start-container",
        render::render(render::START_CONTAINER, &base()),
        0o755,
    )?;
    write(
        "stop-container",
        render::render(render::STOP_CONTAINER, &base()),
        0o755,
    )?;
    for (shim, argv) in &settings.shims {
        write(
            shim,
            render::render(render::SHIM, &base().words("argv", argv)),
            0o755,
        )?;
    }
    let activate = Vars::default()
        .word("bin_dir", &path_text(&bin))
        .word("name", &record.name)
        .word("port", &record.port.to_string())
        .word("root", &root)
        .word("container", &record.container)
        .word("prompt", &format!("({}) ", record.name))
        .exports("service_exports", &service_vars(record))
        .names("service_unsets", &service_vars(record));
    write(
        "activate",
        render::render(render::ACTIVATE, &activate),
        0o644,
    )?;
    remove_stale_shims(layout, settings)
}

/// `DEVINST_SERVICE_<NAME>_PORT` and its host port, for each service that
/// publishes one.
fn service_vars(record: &Record) -> Vec<(String, String)> {
    record
        .service_ports
        .iter()
        .map(|(service, port)| {
            (
                format!(
                    "{}_PORT",
                    crate::recipe::settings::service_env_stem(service)
                ),
                port.to_string(),
            )
        })
        .collect()
}

/// Shims dropped from the recipe disappear on the next setup.
fn remove_stale_shims(layout: &Layout, settings: &Settings) -> Result<()> {
    let bin = layout.bin_dir();
    for entry in
        std::fs::read_dir(&bin).with_context(|| format!("cannot list `{}`", bin.display()))?
    {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = matches!(
            file.as_str(),
            "activate" | "start-container" | "stop-container"
        ) || settings.shims.contains_key(&file)
            || file.starts_with('.');
        if !ours {
            let path = entry.path();
            let is_shim = std::fs::read_to_string(&path).is_ok_and(|t| t.contains("devinst setup"));
            if is_shim {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove `{}`", path.display()))?;
            }
        }
    }
    Ok(())
}

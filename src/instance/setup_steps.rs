//! The recipe's setup steps, run in the container when their inputs changed.

use super::Instance;
use crate::engine::exec::{ExecSpec, Output};
use crate::engine::Engine;
use crate::support::error::WithHint;
use crate::support::{fs, output};
use anyhow::{anyhow, Result};
use sha2::{Digest, Sha256};

/// Runs the recipe's setup steps unless they already ran, with the same
/// inputs, in this very container, and what they made is still there.
pub async fn run_setup_steps(
    engine: &Engine,
    instance: &Instance,
    container_id: &str,
) -> Result<()> {
    let s = &instance.settings;
    if s.setup_commands.is_empty() {
        return Ok(());
    }
    let stamp = setup_stamp(instance, container_id);
    let stamp_file = instance.layout.setup_stamp();
    let done = std::fs::read_to_string(&stamp_file).is_ok_and(|old| old.trim() == stamp);
    let outputs_present = s
        .setup_outputs
        .iter()
        .all(|p| instance.layout.root.join(p).exists());
    if done && outputs_present {
        return Ok(());
    }
    let total = s.setup_commands.len();
    for (i, command) in s.setup_commands.iter().enumerate() {
        output::note(format!("setup step {}/{total}: {command}", i + 1));
        let spec = ExecSpec {
            argv: vec!["sh".into(), "-c".into(), command.clone()],
            workdir: Some(s.workdir.clone()),
            env: super::environment::setup_env(instance),
            user: s.user.for_setup(),
            ..Default::default()
        };
        let code = engine
            .exec_simple(&instance.record.container, &spec, Output::Stderr)
            .await?;
        if code != 0 {
            super::owner::hand_back(engine, instance).await;
            let _ = std::fs::remove_file(&stamp_file);
            return Err(anyhow!(
                "setup step {}/{total} failed with exit code {}: {command}",
                i + 1,
                code
            ))
            .hint("fix the step (its output is above) and run `devinst start` again");
        }
    }
    super::owner::hand_back(engine, instance).await;
    fs::write_atomic(&stamp_file, format!("{stamp}\n").as_bytes(), 0o644)
}

fn setup_stamp(instance: &Instance, container_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(container_id.as_bytes());
    for command in &instance.settings.setup_commands {
        hasher.update(b"\0cmd\0");
        hasher.update(command.as_bytes());
    }
    for input in &instance.settings.setup_inputs {
        hasher.update(b"\0input\0");
        hasher.update(input.as_bytes());
        if let Ok(bytes) = std::fs::read(instance.layout.root.join(input)) {
            hasher.update(&bytes);
        }
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

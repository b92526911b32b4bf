//! Builds the agent (`agent/`) as a static executable and leaves it in
//! OUT_DIR for devinst to embed: it runs in any Linux image of the host's
//! architecture, even one with no libc, and `cargo install` needs nothing
//! more. The explicit `--target` keeps the build's own scripts and proc
//! macros dynamic; only the agent is linked statically.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=agent/src");
    println!("cargo:rerun-if-changed=agent/Cargo.toml");
    println!("cargo:rerun-if-env-changed=DEVINST_NO_AGENT");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dest = out.join("devinst-agent");
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    // Containers run Linux; elsewhere (or when asked) devinst has no agent
    // and every command goes through the engine.
    if !target.contains("-linux-") || std::env::var_os("DEVINST_NO_AGENT").is_some() {
        std::fs::write(&dest, b"").expect("OUT_DIR is writable");
        return;
    }
    let built = build_agent(&target, &out.join("agent-target"));
    std::fs::copy(&built, &dest)
        .unwrap_or_else(|err| panic!("cannot copy the agent from {}: {err}", built.display()));
}

fn build_agent(target: &str, target_dir: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let manifest = Path::new(&root).join("agent/Cargo.toml");
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--offline",
            "--bin",
            "devinst-agent",
            "--profile",
            "agent",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--target", target])
        .arg("--target-dir")
        .arg(target_dir)
        // Only these flags: the outer build's (and a linting wrapper's) are
        // not the agent's.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        // Its stdout would be read as this script's instructions.
        .stdout(std::io::stderr());
    let status = command
        .status()
        .unwrap_or_else(|err| panic!("cannot run cargo to build the agent: {err}"));
    assert!(
        status.success(),
        "building the agent failed (set DEVINST_NO_AGENT=1 to build devinst without it)"
    );
    target_dir.join(target).join("agent").join("devinst-agent")
}

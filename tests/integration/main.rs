//! Integration tests: the real `devinst` binary against a real engine. One
//! test binary (see Cargo.toml); start the engine with `scripts/test-env.sh`.

mod support;

mod core;
mod engines;
mod errors;
mod everyday;
mod exec;
mod fleet;
mod ports;
mod recipe;
mod scripts;
mod services;
mod snapshot;

//! Integration tests: the real `devinst` binary against a real engine. One
//! test binary (see Cargo.toml); start the engine with `scripts/test-env.sh`.

mod poll;
#[macro_use]
mod support;

mod agent;
mod api;
mod claims;
mod cluster;
mod consent;
mod containment;
mod core;
mod developer;
mod engines;
mod errors;
mod everyday;
mod examples;
mod exec;
mod flags;
mod fleet;
mod ports;
mod progress;
mod recipe;
mod registry;
mod rootless;
mod scripts;
mod services;
mod shared;
mod snapshot;
mod travel;
mod warm;

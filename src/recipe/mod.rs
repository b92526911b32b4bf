//! Layer 2: `devinst.toml` parsed and resolved into one validated
//! [`settings::Settings`], and the image recipe (`[container.build]`).

pub mod config;
pub mod image;
pub mod settings;
pub mod validate;

//! Layer 2: `devinst.toml` parsed and resolved into one validated
//! [`settings::Settings`], and the image recipe (`[container.build]`,
//! [`image::ImageRecipe`]). `validate` holds the checks both share.

pub mod config;
pub mod consent;
pub mod image;
pub mod settings;
pub mod user_config;
pub mod validate;

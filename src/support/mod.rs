//! Layer 1: what every other layer leans on. Nothing here knows about
//! instances, recipes or engines.

pub mod certs;
pub mod error;
pub mod fs;
pub mod names;
pub mod output;
pub mod progress;
pub mod shell;
pub mod table;
pub mod templates;
pub mod terminal;
pub mod text;
pub mod time;
pub mod units;

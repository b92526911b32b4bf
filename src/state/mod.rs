//! Layer 3: what devinst keeps on the host: the `.sky-dev/` layout and its
//! files, the host-wide registry, port choice and the worktree's git facts.

pub mod allocate;
pub mod contained;
pub mod layout;
pub mod ports;
pub mod registry;
pub mod restore;
pub mod scripts;
pub mod trust;
pub mod worktree;

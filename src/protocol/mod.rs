//! Wire shapes and names of the protocols tfmirror speaks and reads. Nothing in here does I/O.

pub mod constraints;
pub mod discovery;
pub mod names;
pub mod network_mirror;
pub mod registry;
pub mod releases;

pub use names::{Arch, FileName, NameError, Namespace, Os, Platform, ProviderType, Version};
pub use network_mirror::Hostname;

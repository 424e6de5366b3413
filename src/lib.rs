//! tfmirror: a verified pull-through caching mirror for Terraform providers.
//!
//! A request travels `http` (thin handlers) → `mirror` (the pull-through core) →
//! `store` (the verified cache, by key, over a storage backend) / `upstream` (where releases
//! come from, behind one interface) → `verify` (signatures and digests, pure) over `protocol`
//! (names, keys and wire shapes, pure). `ops` runs the operations (prefetch, gc, verify,
//! export/import, status) on the same core. `config` is read once at start-up and handed
//! down; `server` binds and runs the actix app; `cli` is the command line.
//!
//! Without the default `server` feature only the pure parts build: `protocol`, `verify` and
//! `store::layout` (what the fuzz crate exercises).

#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod mirror;
#[cfg(feature = "server")]
pub mod ops;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod telemetry;
#[cfg(feature = "server")]
pub mod upstream;
pub mod verify;

/// Without `server`: only the key layout of a store (`store/layout.rs`).
#[cfg(not(feature = "server"))]
pub mod store {
    pub mod layout;
    pub use layout::{Item, LayoutError, Location, ReleaseEntry};
}

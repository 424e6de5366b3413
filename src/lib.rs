//! tfmirror: a verified pull-through caching mirror for Terraform providers.
//!
//! A request travels `http` (thin handlers) → `mirror` (the pull-through core) →
//! `store` (the verified cache, by key, over a storage backend) / `upstream` (where releases
//! come from, behind one interface) → `verify` (signatures and digests, pure) over `protocol`
//! (names, keys and wire shapes, pure). `ops` runs the operations (prefetch, gc, verify,
//! export/import, status) on the same core. `config` is read once at start-up and handed
//! down; `server` binds and runs the actix app; `cli` is the command line.

pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod mirror;
pub mod ops;
pub mod protocol;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod verify;

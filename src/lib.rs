//! tfmirror: a verified pull-through caching mirror for Terraform providers.
//!
//! A request travels `http` (thin handlers) → `mirror` (the pull-through core) →
//! `store` (verified disk cache) / `upstream` (the one HTTP client) → `verify` (signatures and
//! digests, pure) over `protocol` (names and wire shapes, pure). `config` is read once at
//! start-up and handed down; `server` binds and runs the actix app; `cli` is the command line.

pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod mirror;
pub mod protocol;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod verify;

//! The integration tests, one module per area, in one test binary: each starts the real
//! server (in-process on an ephemeral port, or the built binary as a child process) against
//! the fakes in `common`. One binary links the harness once instead of once per area. Tests
//! that read process-wide figures exactly (metric counts, the status snapshot counter, this
//! process's memory) are binaries of their own: `metrics`, `status_page_cost`,
//! `terraform_e2e`, `terraform_http2` and `shared_storage`.
//!
//! Run one area with `tests/run.sh --test integration registry::`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod auth;
mod bench_smoke;
mod bundle;
mod cli;
mod complete_hashes;
mod crash_and_verify;
mod gc;
mod hostile_input;
mod http2_framing;
mod network_mirror;
mod offline;
mod operations;
mod poisoning;
mod prefetch;
mod quarantine;
mod registry;
mod registry_operations;
mod registry_upstream;
mod reliability;
mod secrets;
mod sendfile;
mod soak_smoke;
mod status_page;
mod streaming;
mod terraform_lock;
mod terraform_registry;
mod terraform_unchanged_addresses;
mod tls;

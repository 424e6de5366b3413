//! `cargo bench --bench soak [-- --duration SECS --clients N]`: the soak run at full size
//! against the optimised binary. Prints a Markdown table; exits non-zero on any wrong byte or
//! any 5xx for a cached item.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/soak.rs"]
mod soak;

use std::time::Duration;

use soak::{run, SoakOptions};

#[actix_web::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: u64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let options = SoakOptions {
        binary: env!("CARGO_BIN_EXE_tfmirror").into(),
        duration: Duration::from_secs(value("--duration", 60)),
        clients: value("--clients", 64) as usize,
        failure_rate: 0.10,
        payload_bytes: value("--archive-kib", 512) as usize * 1024,
        cold_versions: value("--cold-versions", 300) as usize,
    };
    eprintln!(
        "soak: {} clients for {:?} against {}",
        options.clients,
        options.duration,
        options.binary.display()
    );
    let report = run(&options).await;
    println!("{}", report.table(&options));
    let violations = report.violations();
    if !violations.is_empty() {
        eprintln!("soak FAILED: {}", violations.join("; "));
        std::process::exit(1);
    }
}

//! A two-second soak, so that the benchmark's soak run cannot rot: the same code as
//! `cargo bench --bench soak`, at a size that fits in `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/support/soak.rs"]
mod soak;

use std::time::Duration;

use soak::{run, SoakOptions};

#[actix_web::test]
async fn a_short_soak_gives_no_wrong_bytes_and_no_5xx_for_cached_items() {
    let options = SoakOptions {
        binary: env!("CARGO_BIN_EXE_tfmirror").into(),
        duration: Duration::from_secs(2),
        clients: 8,
        failure_rate: 0.10,
        payload_bytes: 4096,
        cold_versions: 4,
    };
    let report = run(&options).await;
    eprintln!("{}", report.table(&options));
    assert!(report.violations().is_empty(), "{:?}", report.violations());
    assert!(report.cached_metadata.ok > 0 && report.cached_archives.ok > 0);
    assert_eq!(report.cold_releases, 4);
    assert!(report.cold.ok > 0);
    assert!(report.rss_peak_kb > 0);
}

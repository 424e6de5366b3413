//! A smoke run of the performance comparison (`bench/run.sh`), so that it cannot rot: the same
//! code against nginx and wrk, with tiny archives and one-second measurements. It checks that
//! every measurement ran and that the cold miss cost one upstream download; speed is only
//! judged by the full benchmark (this runs a debug build).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../benches/support/perf.rs"]
mod perf;

use perf::{run, Options};

#[actix_web::test]
async fn the_benchmark_runs_end_to_end() {
    let options = Options {
        quick: true,
        smoke: true,
        duration: 1,
        rounds: 1,
        big_bytes: 512 * 1024,
        small_bytes: 16 * 1024,
        upstream_bytes_per_sec: 2 * 1024 * 1024,
        binary: env!("CARGO_BIN_EXE_tfmirror").into(),
        hold: 0,
        profile: None,
    };
    let table = run(&options).await;
    let text = table.render();
    eprintln!("{text}");
    let row = |name: &str| {
        table
            .0
            .iter()
            .find(|r| r[0].starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} row in\n{text}"))
            .clone()
    };
    assert_eq!(row("cold miss, 8 clients: upstream downloads")[1], "1");
    for name in [
        "cached JSON",
        "cached 16 KiB archive",
        "peak RSS",
        "start-up",
    ] {
        let r = row(name);
        assert!(!r[1].starts_with('0'), "{name}: {r:?}");
    }
}

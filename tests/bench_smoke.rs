//! A smoke run of the performance comparison (`bench/run.sh`), so that it cannot rot: the same
//! code against nginx, wrk, h2load and the large-body client, plain and over TLS, with tiny
//! archives and one-second measurements. It checks that
//! every measurement ran and that the cold miss cost one upstream download; speed is only
//! judged by the full benchmark (this runs a debug build).
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
        only: None,
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
        "plain HTTP/1.1, cached JSON",
        "request log as shipped",
        "TLS 1.3 HTTP/1.1, cached JSON",
        "TLS 1.3 HTTP/2, cached JSON",
        "plain HTTP, cached 16 KiB archive",
        "TLS 1.3, cached 0 MiB archive",
        "client check",
        "growth, 20 versions × 14 platforms",
        "50 idle keep-alive TLS connections",
        "growth, 5 cached releases: status page",
        "peak RSS",
        "start-up",
    ] {
        let r = row(name);
        let first: f64 = r[1]
            .split(|c: char| !c.is_ascii_digit() && c != '.')
            .find(|s| !s.is_empty())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        assert!(first > 0.0, "{name}: {r:?}");
    }
}

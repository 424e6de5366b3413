//! `bench/run.sh [--quick] [--duration SECS] [--rounds N] [--big-mib N] [--upstream-mibps N]
//! [--hold SECS] [--profile DIR]`: tfmirror against nginx `proxy_cache` on the same data, in
//! one run (see `benches/support/perf.rs`). Prints one Markdown table of ratios.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/perf.rs"]
mod perf;

use perf::{run, Options};

#[actix_web::main]
async fn main() {
    let options = Options::parse(env!("CARGO_BIN_EXE_tfmirror").into());
    let table = run(&options).await;
    print!("{}", table.render());
    if let Some(dir) = &options.profile {
        eprintln!(
            "bench: profiles (perf record) and their top symbols are in {}",
            dir.display()
        );
    }
}

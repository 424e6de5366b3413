//! `cargo bench --bench replicas [-- --mib N --clients N --seaweedfs]`: the cross-replica cold
//! miss against the optimised binary, with `[cluster]` and without it in one run (see
//! `benches/support/replicas.rs`). Prints a Markdown table; exits non-zero when a client did
//! not get the verified archive or the replicas with `[cluster]` downloaded it more than once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/replicas.rs"]
mod replicas;

use replicas::{run, Options};

#[actix_web::main]
async fn main() {
    let options = Options::parse(env!("CARGO_BIN_EXE_tfmirror").into());
    let (with, without, table) = run(&options).await;
    print!("{table}");
    if !(with.all_verified && without.all_verified && with.upstream_gets == 1) {
        std::process::exit(1);
    }
}

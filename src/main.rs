use clap::Parser;

#[actix_web::main]
async fn main() {
    let result = tfmirror::cli::run(tfmirror::cli::Cli::parse()).await;
    tfmirror::telemetry::flush();
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

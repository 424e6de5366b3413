use clap::Parser;

#[actix_web::main]
async fn main() {
    if let Err(error) = tfmirror::cli::run(tfmirror::cli::Cli::parse()).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

//! The command line: one clap enum, one function per subcommand.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    config::{Config, DEFAULT_CONFIG_PATH},
    server,
    telemetry::{self, LogFormat},
};

/// A verified pull-through caching mirror for Terraform providers.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the registry protocol from the cache, fetching and verifying on a miss.
    Serve {
        /// Config file (TOML).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve { config } => serve(config).await,
    }
}

async fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let required = config_path.is_some();
    let path = config_path.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let config = Config::load(&path, required)?;
    let config_shown = if path.exists() {
        path.display().to_string()
    } else {
        format!("(none: {} not found, built-in defaults)", path.display())
    };
    let server = server::start(&config)
        .await
        .context("cannot start the server")?;
    tracing::info!(config = %config_shown, cache = %config.cache.dir.display(), "tfmirror {} started", env!("CARGO_PKG_VERSION"));
    for (namespace, ns) in &config.namespaces {
        let url = config
            .upstreams
            .get(&ns.upstream)
            .map(|u| u.url.to_string())
            .unwrap_or_default();
        tracing::info!(namespace, upstream = %ns.upstream, url, "serving namespace");
    }
    tracing::info!("listening on {}", server.base_url());
    server.wait().await.context("server stopped with an error")
}

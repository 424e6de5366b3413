//! The command line: one clap enum, one function per subcommand.

mod lock;
mod prefetch;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    config::{Config, DEFAULT_CONFIG_PATH},
    mirror::Mirror,
    ops::{self, AuditMode, BundleFilter},
    protocol::Version,
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
    /// Fill the cache ahead of time from the config's [[prefetch]] list and/or a Terraform
    /// configuration's required_providers and lock file, through the same fetch and
    /// verification path as `serve`. Already cached archives are skipped; safe to run while
    /// `serve` uses the same cache.
    Prefetch {
        /// Config file (TOML).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// A Terraform root module directory: its *.tf required_providers and
        /// .terraform.lock.hcl (locked versions win).
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        /// Platforms to fetch for --from (repeatable; default linux_amd64).
        #[arg(long = "platform", value_name = "OS_ARCH")]
        platforms: Vec<String>,
        /// Downloads at a time.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// Write or merge a complete .terraform.lock.hcl: versions selected as `terraform init`
    /// would (locked versions win), a zh: for every line of each release's verified
    /// SHA256SUMS and an h1: for every --platform, computed from archives verified into the
    /// cache (absent ones are fetched). Re-running it changes nothing.
    Lock {
        /// Config file (TOML).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// A Terraform root module directory: its *.tf required_providers and
        /// .terraform.lock.hcl.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        /// A provider to lock besides --from's (repeatable).
        #[arg(long = "provider", value_name = "HOST/NAMESPACE/TYPE")]
        providers: Vec<String>,
        /// Version constraints for the --provider at the same position (Terraform's syntax).
        #[arg(long = "versions", value_name = "CONSTRAINT")]
        versions: Vec<String>,
        /// Platforms to record an h1: for (repeatable, at least one).
        #[arg(long = "platform", value_name = "OS_ARCH", required = true)]
        platforms: Vec<String>,
        /// The lock file to write or merge (default: DIR/.terraform.lock.hcl, or
        /// ./.terraform.lock.hcl without --from).
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Archives fetched and hashed at a time.
        #[arg(long, default_value_t = 4)]
        jobs: usize,
    },
    /// Evict least-recently-used archives until the cache is under cache.max_size (or
    /// --max-size). Archives of [[prefetch]] providers and archives served within
    /// cache.gc_grace are kept.
    Gc {
        /// Config file (TOML).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Overrides cache.max_size, e.g. "50GB".
        #[arg(long, value_name = "SIZE")]
        max_size: Option<bytesize::ByteSize>,
    },
    /// Write verified releases from the cache to a tar bundle, to carry into an air-gapped
    /// site.
    Export {
        /// Config file (TOML).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The bundle to write.
        #[arg(long, short, value_name = "FILE")]
        output: PathBuf,
        /// Only this provider: TYPE (`local`), UPSTREAM/TYPE (`hashicorp/local`), or for a
        /// registry upstream NAMESPACE/TYPE or UPSTREAM/NAMESPACE/TYPE.
        #[arg(long)]
        provider: Option<String>,
        /// Only this version.
        #[arg(long)]
        version: Option<String>,
    },
    /// Import a bundle made by `export`: every signature and digest is verified before
    /// anything enters the cache; a bundle with any fault is refused whole.
    Import {
        /// Config file (TOML).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// The bundle to read.
        bundle: PathBuf,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Re-hash every cached archive against its signed SHA256SUMS (re-verifying the
    /// signature) and report what does not match. Exits non-zero when anything is damaged.
    Verify {
        /// Config file (TOML).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Remove what fails, so that the next request fetches it again.
        #[arg(long)]
        repair: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate the configuration and print the effective result (defaults, file and
    /// environment merged; secrets redacted).
    Check {
        /// Config file (TOML).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(cli.log_format);
    match cli.command {
        Command::Serve { config } => serve(config).await,
        Command::Verify { config, repair } => verify(config, repair).await,
        Command::Config {
            action: ConfigAction::Check { config },
        } => config_check(config),
        Command::Gc { config, max_size } => gc(config, max_size).await,
        Command::Export {
            config,
            output,
            provider,
            version,
        } => export(config, &output, provider, version).await,
        Command::Import { config, bundle } => import(config, &bundle).await,
        Command::Lock {
            config,
            from,
            providers,
            versions,
            platforms,
            output,
            jobs,
        } => {
            let (config, _) = load_config(config)?;
            lock::run(
                &config,
                lock::LockArgs {
                    from,
                    providers,
                    versions,
                    platforms,
                    output,
                    jobs,
                },
            )
            .await
        }
        Command::Prefetch {
            config,
            from,
            platforms,
            jobs,
        } => {
            let (config, _) = load_config(config)?;
            prefetch::run(
                &config,
                prefetch::PrefetchArgs {
                    from,
                    platforms,
                    jobs,
                },
            )
            .await
        }
    }
}

fn load_config(config_path: Option<PathBuf>) -> anyhow::Result<(Config, PathBuf)> {
    let required = config_path.is_some();
    let path = config_path.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let config = Config::load(&path, required)?;
    Ok((config, path))
}

async fn export(
    config_path: Option<PathBuf>,
    output: &std::path::Path,
    provider: Option<String>,
    version: Option<String>,
) -> anyhow::Result<()> {
    let (config, _) = load_config(config_path)?;
    let version = version
        .map(|v| Version::try_from(v.as_str()))
        .transpose()
        .context("--version")?;
    let mirror = Mirror::for_command(&config)
        .await
        .context("cannot open the cache")?;
    let report = ops::export_bundle(&mirror, output, &BundleFilter { provider, version }).await?;
    println!(
        "export: {} releases, {} files ({}) written to {}",
        report.releases,
        report.files,
        bytesize::ByteSize(report.bytes),
        output.display()
    );
    Ok(())
}

/// The cache one-shot commands work on, for their messages: `cache.dir`, or the bucket with
/// `cache.dir` as its local tier.
fn where_the_cache_is(config: &Config) -> String {
    match (&config.storage.kind, &config.storage.bucket) {
        (crate::config::StorageKind::S3, Some(bucket)) => format!(
            "s3://{bucket}/{} (local tier {})",
            config.storage.prefix,
            config.cache.dir.display()
        ),
        _ => config.cache.dir.display().to_string(),
    }
}

async fn import(config_path: Option<PathBuf>, bundle: &std::path::Path) -> anyhow::Result<()> {
    let (config, _) = load_config(config_path)?;
    let report = ops::import_bundle(&config, bundle, |line| eprintln!("{line}")).await?;
    println!(
        "import: {} releases, {} files ({}) verified and added to {}",
        report.releases,
        report.files,
        bytesize::ByteSize(report.bytes),
        where_the_cache_is(&config)
    );
    Ok(())
}

async fn gc(
    config_path: Option<PathBuf>,
    max_size: Option<bytesize::ByteSize>,
) -> anyhow::Result<()> {
    let (config, _) = load_config(config_path)?;
    let Some(limit) = max_size.or(config.cache.max_size) else {
        anyhow::bail!("no size limit: set cache.max_size in the config or pass --max-size");
    };
    let keep = prefetch::requests_from_config(&config);
    let mirror = Mirror::for_command(&config)
        .await
        .context("cannot open the cache")?;
    let report = ops::collect_garbage(&mirror, limit.as_u64(), config.cache.gc_grace, &keep)
        .await
        .context("garbage collection stopped")?;
    for archive in &report.evicted {
        eprintln!("evicted {archive}");
    }
    println!(
        "gc: cache was {}, limit {}; evicted {} archives ({}); now {}; {} kept for [[prefetch]]",
        bytesize::ByteSize(report.bytes_before),
        limit,
        report.evicted.len(),
        bytesize::ByteSize(report.evicted_bytes),
        bytesize::ByteSize(report.bytes_after),
        report.protected
    );
    if report.bytes_after > limit.as_u64() {
        anyhow::bail!(
            "the cache is still over its limit: what remains is protected or in use within cache.gc_grace"
        );
    }
    Ok(())
}

fn config_check(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, path) = load_config(config_path)?;
    let shown = if path.exists() {
        path.display().to_string()
    } else {
        format!("built-in defaults ({} not found)", path.display())
    };
    let text =
        toml::to_string_pretty(&config.redacted()).context("cannot render the configuration")?;
    println!("# valid; effective configuration from {shown} and the environment\n{text}");
    Ok(())
}

async fn verify(config_path: Option<PathBuf>, repair: bool) -> anyhow::Result<()> {
    let (config, _) = load_config(config_path)?;
    let mirror = Mirror::for_command(&config)
        .await
        .context("cannot open the cache")?;
    eprintln!("verifying the cache in {}", where_the_cache_is(&config));
    let report = ops::audit(
        &mirror,
        if repair {
            AuditMode::Repair
        } else {
            AuditMode::Report
        },
        |line| eprintln!("{line}"),
    )
    .await
    .context("verification stopped")?;
    for damage in &report.damaged {
        println!(
            "DAMAGED {}: {}",
            mirror.store().show(&damage.location),
            damage.problem
        );
    }
    println!(
        "{} releases, {} archives ({} bytes) checked: {} damaged{}",
        report.releases,
        report.archives,
        report.bytes,
        report.damaged.len(),
        if repair {
            format!(", {} removed", report.removed)
        } else {
            String::new()
        }
    );
    if report.damaged.is_empty() {
        Ok(())
    } else if repair {
        anyhow::bail!(
            "{} damaged entries found and removed; they are fetched again on the next request",
            report.damaged.len()
        )
    } else {
        anyhow::bail!(
            "{} damaged entries found; run `tfmirror verify --repair` to remove them",
            report.damaged.len()
        )
    }
}

async fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, path) = load_config(config_path)?;
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
            .map(|u| crate::config::redact_url(&u.url).to_string())
            .unwrap_or_default();
        tracing::info!(namespace = namespace.to_string().as_str(), upstream = %ns.upstream, url, "serving namespace");
    }
    tracing::info!("listening on {}", server.base_url());
    server.wait().await.context("server stopped with an error")
}

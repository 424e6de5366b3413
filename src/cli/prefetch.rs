//! `tfmirror prefetch`: fill the cache before a site goes offline.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use crate::{
    config::Config,
    mirror::Mirror,
    ops::{self, PrefetchOutcome, PrefetchRequest},
    protocol::{
        constraints::VersionConstraints,
        tf_config::{add_required_providers, apply_lock_file, Wanted},
        Platform, ProviderAddress,
    },
};

pub struct PrefetchArgs {
    pub from: Option<PathBuf>,
    pub platforms: Vec<String>,
    pub jobs: usize,
}

/// Platform `--from` fetches for when no `--platform` is given.
const DEFAULT_PLATFORM: &str = "linux_amd64";

pub async fn run(config: &Config, args: PrefetchArgs) -> anyhow::Result<()> {
    let mut requests = requests_from_config(config);
    if let Some(dir) = &args.from {
        requests.extend(requests_from_terraform_dir(dir, &args.platforms)?);
    }
    if requests.is_empty() {
        anyhow::bail!(
            "nothing to prefetch: add [[prefetch]] entries to the config or pass --from DIR"
        );
    }
    let mirror = Mirror::for_command(config)
        .await
        .context("cannot open the cache")?;
    let started = Instant::now();

    let mut failures = Vec::new();
    let mut items = Vec::new();
    for request in &requests {
        let plan = ops::prefetch_plan(&mirror, request).await;
        if let Ok(plan) = &plan {
            for note in &plan.quarantined {
                eprintln!("{note}");
            }
        }
        match plan.map(|plan| plan.items) {
            Ok(found) if found.is_empty() => failures.push(format!(
                "{}: no version matches {} for the platforms asked",
                request.provider,
                request
                    .versions
                    .as_ref()
                    .map_or_else(|| "any".to_owned(), ToString::to_string)
            )),
            Ok(found) => items.extend(found),
            Err(e) => failures.push(format!("{}: {e}", request.provider)),
        }
    }
    eprintln!(
        "prefetch: {} archives from {} providers, {} at a time",
        items.len(),
        requests.len(),
        args.jobs
    );

    let progress = Progress::new(items.len() as u64);
    let (mut fetched, mut skipped, mut bytes_fetched, mut bytes_skipped) = (0, 0, 0u64, 0u64);
    let mut results = futures_util::stream::iter(items)
        .map(|item| {
            let mirror = mirror.clone();
            async move {
                let outcome = ops::prefetch(&mirror, &item).await;
                (item, outcome)
            }
        })
        .buffer_unordered(args.jobs.max(1));
    while let Some((item, outcome)) = results.next().await {
        match outcome {
            Ok(PrefetchOutcome::Fetched { bytes }) => {
                fetched += 1;
                bytes_fetched += bytes;
                progress.done(&format!("fetched {item} ({})", HumanBytes(bytes)), bytes);
            }
            Ok(PrefetchOutcome::Skipped { bytes }) => {
                skipped += 1;
                bytes_skipped += bytes;
                progress.done(&format!("cached  {item}"), 0);
            }
            Err(e) => {
                progress.done(&format!("FAILED  {item}: {e}"), 0);
                failures.push(format!("{item}: {e}"));
            }
        }
    }
    progress.finish();

    for failure in &failures {
        println!("failed: {failure}");
    }
    println!(
        "prefetch: {fetched} fetched ({}), {skipped} skipped (already cached, {}), {} failed in {:.1} s",
        HumanBytes(bytes_fetched),
        HumanBytes(bytes_skipped),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} prefetch failures (listed above)", failures.len())
    }
}

pub(super) fn requests_from_config(config: &Config) -> Vec<PrefetchRequest> {
    config.prefetch.iter().map(PrefetchRequest::from).collect()
}

/// The root module's `required_providers` (every `*.tf` file in `dir`) and its lock file.
fn requests_from_terraform_dir(
    dir: &Path,
    platforms: &[String],
) -> anyhow::Result<Vec<PrefetchRequest>> {
    let mut wanted = required_providers_in(dir)?;
    let lock = dir.join(".terraform.lock.hcl");
    if lock.exists() {
        let text = std::fs::read_to_string(&lock)
            .with_context(|| format!("cannot read {}", lock.display()))?;
        apply_lock_file(&text, &mut wanted)
            .with_context(|| format!("cannot parse {}", lock.display()))?;
    }
    if wanted.is_empty() {
        anyhow::bail!(
            "{} has no required_providers and no .terraform.lock.hcl",
            dir.display()
        );
    }
    let platforms = if platforms.is_empty() {
        vec![DEFAULT_PLATFORM.to_owned()]
    } else {
        platforms.to_vec()
    };
    let platforms = parse_platforms(&platforms)?;
    wanted
        .into_iter()
        .map(|(provider, versions)| {
            Ok(PrefetchRequest {
                versions: versions
                    .as_deref()
                    .map(VersionConstraints::parse)
                    .transpose()
                    .with_context(|| provider.clone())?,
                provider: ProviderAddress::try_from(provider.as_str())
                    .with_context(|| provider.clone())?,
                platforms: platforms.clone(),
            })
        })
        .collect()
}

/// The `required_providers` of every `*.tf` file in `dir` (a root module).
pub(super) fn required_providers_in(dir: &Path) -> anyhow::Result<Wanted> {
    let mut wanted = Wanted::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut tf_files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|ext| ext == "tf"))
        .collect();
    tf_files.sort();
    for path in &tf_files {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        add_required_providers(&text, &mut wanted)
            .with_context(|| format!("cannot parse {}", path.display()))?;
    }
    Ok(wanted)
}

pub(super) fn parse_platforms(platforms: &[String]) -> anyhow::Result<Vec<Platform>> {
    platforms
        .iter()
        .map(|p| Platform::try_from(p.as_str()).map_err(anyhow::Error::from))
        .collect()
}

/// A progress bar with bytes and rate on a terminal; one plain line per archive otherwise
/// (CI logs, pipes).
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    bytes: std::cell::Cell<u64>,
}

impl Progress {
    pub(super) fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} archives  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            bytes: std::cell::Cell::new(0),
        }
    }

    pub(super) fn done(&self, line: &str, bytes: u64) {
        self.bytes.set(self.bytes.get() + bytes);
        let total = self.bytes.get();
        let rate = total as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(format!(
                    "{} fetched, {}/s",
                    HumanBytes(total),
                    HumanBytes(rate as u64)
                ));
                bar.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

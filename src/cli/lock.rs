//! `tfmirror lock`: write or merge a complete `.terraform.lock.hcl` (every `zh:` of the signed
//! SHA256SUMS, an `h1:` per requested platform) from what the mirror verified.

use std::{collections::BTreeMap, path::PathBuf, time::Instant};

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::HumanBytes;

use super::prefetch::{parse_platforms, required_providers_in, Progress};
use crate::{
    config::Config,
    mirror::Mirror,
    ops::{self, LockRequest, LockTarget},
    protocol::{
        constraints::VersionConstraints,
        full_provider_address,
        lock_file::{self, LockAddress},
        Platform, ProviderAddress,
    },
};

pub struct LockArgs {
    pub from: Option<PathBuf>,
    pub providers: Vec<String>,
    pub versions: Vec<String>,
    pub platforms: Vec<String>,
    pub output: Option<PathBuf>,
    pub jobs: usize,
}

pub async fn run(config: &Config, args: LockArgs) -> anyhow::Result<()> {
    if args.platforms.is_empty() {
        anyhow::bail!("name the platforms to lock with --platform OS_ARCH (repeatable)");
    }
    let platforms = parse_platforms(&args.platforms)?;
    let output = args.output.clone().unwrap_or_else(|| {
        args.from
            .clone()
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".terraform.lock.hcl")
    });
    let mut locks = if output.exists() {
        let text = std::fs::read_to_string(&output)
            .with_context(|| format!("cannot read {}", output.display()))?;
        lock_file::parse(&text).with_context(|| format!("cannot parse {}", output.display()))?
    } else {
        lock_file::LockFile::new()
    };
    let before = lock_file::render(&locks);
    let requests = requests(&args, &locks)?;
    if requests.is_empty() {
        anyhow::bail!("nothing to lock: pass --from DIR or --provider HOST/NAMESPACE/TYPE");
    }

    let mirror = Mirror::for_command(config)
        .await
        .context("cannot open the cache")?;
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut targets = Vec::new();
    for request in &requests {
        match ops::select_version(&mirror, request).await {
            Ok(target) => {
                for note in &target.quarantined {
                    eprintln!("{note}");
                }
                targets.push(target)
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    let items: Vec<(LockTarget, Platform)> = targets
        .iter()
        .flat_map(|t| platforms.iter().map(move |p| (t.clone(), p.clone())))
        .collect();
    eprintln!(
        "lock: {} providers, {} platforms, {} archives to hash",
        targets.len(),
        platforms.len(),
        items.len()
    );
    let progress = Progress::new(items.len() as u64);
    let mut h1s: BTreeMap<LockAddress, Vec<String>> = BTreeMap::new();
    let (mut fetched, mut bytes_fetched) = (0usize, 0u64);
    let mut results = futures_util::stream::iter(items)
        .map(|(target, platform)| {
            let mirror = mirror.clone();
            async move {
                let hash = mirror.platform_h1(&target.release, &platform).await;
                (target, platform, hash)
            }
        })
        .buffer_unordered(args.jobs.max(1));
    while let Some((target, platform, hash)) = results.next().await {
        let what = format!("{} {} {platform}", target.address, target.release.version);
        match hash {
            Ok(hash) => {
                let line = match hash.fetched {
                    Some(bytes) => {
                        fetched += 1;
                        bytes_fetched += bytes;
                        format!("fetched {what} ({})", HumanBytes(bytes))
                    }
                    None => format!("cached  {what}"),
                };
                progress.done(&line, hash.fetched.unwrap_or(0));
                h1s.entry(target.address.clone()).or_default().push(hash.h1);
            }
            Err(e) => {
                progress.done(&format!("FAILED  {what}: {e}"), 0);
                failures.push(format!("{what}: {e}"));
            }
        }
    }
    progress.finish();
    for target in &targets {
        match mirror.zh_hashes(&target.release).await {
            Ok(zh) => {
                let h1 = h1s.remove(&target.address).unwrap_or_default();
                ops::merge_lock(&mut locks, target, zh.into_iter().chain(h1));
            }
            Err(e) => failures.push(format!("{}: {e}", target.address)),
        }
    }

    if !failures.is_empty() {
        for failure in &failures {
            println!("failed: {failure}");
        }
        anyhow::bail!(
            "{} lock failures (listed above); {} left unchanged",
            failures.len(),
            output.display()
        );
    }
    for target in &targets {
        println!("locked {} {}", target.address, target.release.version);
    }
    let after = lock_file::render(&locks);
    let changed = after != before;
    if changed {
        std::fs::write(&output, &after)
            .with_context(|| format!("cannot write {}", output.display()))?;
    }
    println!(
        "lock: {} {} ({} providers, {} platforms); {fetched} archives fetched ({}) in {:.1} s",
        if changed { "wrote" } else { "unchanged" },
        output.display(),
        targets.len(),
        platforms.len(),
        HumanBytes(bytes_fetched),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The providers to lock: `--from`'s `required_providers`, then each `--provider` with the
/// `--versions` given for it; the version an existing lock file records wins.
fn requests(args: &LockArgs, locks: &lock_file::LockFile) -> anyhow::Result<Vec<LockRequest>> {
    let mut wanted: BTreeMap<String, Option<String>> = match &args.from {
        Some(dir) => required_providers_in(dir)?,
        None => BTreeMap::new(),
    };
    if !args.versions.is_empty() && args.versions.len() != args.providers.len() {
        anyhow::bail!("give one --versions for each --provider, in the same order, or none");
    }
    for (index, provider) in args.providers.iter().enumerate() {
        let entry = wanted.entry(full_provider_address(provider)).or_default();
        if let Some(versions) = args.versions.get(index) {
            *entry = match entry.take() {
                Some(existing) => Some(format!("{existing}, {versions}")),
                None => Some(versions.clone()),
            };
        }
    }
    wanted
        .into_iter()
        .map(|(address, constraints)| {
            let lock_address = LockAddress::parse(&address)
                .with_context(|| format!("{address} is not a provider address"))?;
            Ok(LockRequest {
                provider: ProviderAddress::try_from(address.as_str())
                    .with_context(|| address.clone())?,
                constraints: constraints
                    .as_deref()
                    .map(VersionConstraints::parse)
                    .transpose()
                    .with_context(|| address.clone())?,
                locked: locks.get(&lock_address).map(|l| l.version.clone()),
                address: lock_address,
            })
        })
        .collect()
}

//! The real binary killed with SIGKILL mid-download, restarted on the same cache; and
//! `tfmirror verify [--repair]` finding and removing damage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::{Duration, Instant},
};

use common::{
    config_toml, files_under, publisher_key, serving::Serving, temp_files, wait_for_recorded_h1,
    FakeRelease, FakeUpstream, MirrorOptions,
};

fn serve(config: &Path) -> Serving {
    Serving::start(Path::new(env!("CARGO_BIN_EXE_tfmirror")), config, "info")
}

fn verify(config: &Path, repair: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tfmirror"));
    command.args(["verify", "--config"]).arg(config);
    if repair {
        command.arg("--repair");
    }
    command.env("RUST_LOG", "warn").output().unwrap()
}

fn write_config(dir: &Path, upstream: &FakeUpstream) -> (PathBuf, PathBuf) {
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let toml = config_toml(&MirrorOptions::new(upstream.url(), &cache));
    let path = dir.join("tfmirror.toml");
    std::fs::write(&path, toml).unwrap();
    (path, cache)
}

#[actix_web::test]
async fn kill_9_mid_download_leaves_nothing_servable_and_restart_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip = published.zip_name("linux", "amd64");
    let upstream_path = format!("{}/{zip}", published.dir);
    // About 2 s for the archive, so the kill lands mid-download.
    upstream.throttle(
        &upstream_path,
        published.zips[&zip].len() / 20 + 1,
        Duration::from_millis(100),
    );
    let (config, cache) = write_config(dir.path(), &upstream);
    let url_path = format!("/v1/providers/myproviders/local/2.1.0/files/{zip}");

    let serving = serve(&config);
    let url = format!("{}{url_path}", serving.base);
    let client = reqwest::Client::new();
    let pending = tokio::spawn(client.get(url).send());
    // The archive's own temp file: the release's metadata is written first, through temp
    // files of its own, before the archive download starts.
    let archive_temp = format!(".{zip}.tmp-");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !temp_files(&cache).iter().any(|f| f.contains(&archive_temp)) {
        assert!(Instant::now() < deadline, "the download never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    serving.kill9();
    let _ = pending.await;
    assert_eq!(
        temp_files(&cache).len(),
        1,
        "the crash should leave a temp file"
    );
    assert!(
        !files_under(&cache).iter().any(|f| f.ends_with(".zip")),
        "a partial archive is visible under its final name"
    );

    // Restart: the temp file is swept and the next request fetches cleanly.
    let serving = serve(&config);
    // The sweep runs in the background right after start-up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !temp_files(&cache).is_empty() {
        assert!(
            Instant::now() < deadline,
            "stale temp file survived start-up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let response = reqwest::get(format!("{}{url_path}", serving.base))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        &response.bytes().await.unwrap()[..],
        &published.zips[&zip][..]
    );
    assert_eq!(upstream.hits(&upstream_path), 2);
    serving.kill9();
}

#[actix_web::test]
async fn verify_reports_damage_and_repair_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    FakeRelease::new("local", "2.2.0").publish(&upstream, publisher_key());
    let (config, cache) = write_config(dir.path(), &upstream);
    let serving = serve(&config);
    let client = reqwest::Client::new();
    for version in ["2.1.0", "2.2.0"] {
        for (os, arch) in [("linux", "amd64"), ("darwin", "arm64")] {
            let zip = format!("terraform-provider-local_{version}_{os}_{arch}.zip");
            let url = format!(
                "{}/v1/providers/myproviders/local/{version}/files/{zip}",
                serving.base
            );
            let response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            // The whole body: the archive is in the cache once its last bytes were sent.
            response.bytes().await.unwrap();
        }
    }
    serving.kill9();

    let clean = verify(&config, false);
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(clean.status.success(), "{stdout}");
    assert!(stdout.contains("2 releases, 4 archives"), "{stdout}");
    assert!(stdout.contains("0 damaged"), "{stdout}");

    // One archive flipped on disk, one release's SHA256SUMS edited behind our back.
    let release_dir = cache.join("releases/hashicorp/terraform-provider-local");
    let zip = release_dir.join(format!("2.1.0/{}", published.zip_name("linux", "amd64")));
    let mut bytes = std::fs::read(&zip).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&zip, bytes).unwrap();
    let sums = release_dir.join("2.2.0/terraform-provider-local_2.2.0_SHA256SUMS");
    let mut text = std::fs::read_to_string(&sums).unwrap();
    text.push('\n');
    std::fs::write(&sums, text).unwrap();

    let damaged = verify(&config, false);
    let stdout = String::from_utf8_lossy(&damaged.stdout);
    assert_eq!(damaged.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("DAMAGED {}", zip.display())),
        "{stdout}"
    );
    assert!(stdout.contains("does not match the signed"), "{stdout}");
    assert!(
        stdout.contains("2.2.0: release record, SHA256SUMS or its signature"),
        "{stdout}"
    );
    assert!(zip.exists(), "verify without --repair removed something");

    let repaired = verify(&config, true);
    let stdout = String::from_utf8_lossy(&repaired.stdout);
    assert_eq!(repaired.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("2 damaged, 2 removed"), "{stdout}");
    assert!(!zip.exists());
    assert!(!release_dir.join("2.2.0").exists());
    assert!(
        release_dir.join("2.1.0/release.json").exists(),
        "a good release was removed"
    );

    let after = verify(&config, false);
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );

    // The removed archive is fetched again, verified, on the next request.
    let serving = serve(&config);
    let zip_name = published.zip_name("linux", "amd64");
    let response = reqwest::get(format!(
        "{}/v1/providers/myproviders/local/2.1.0/files/{zip_name}",
        serving.base
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        &response.bytes().await.unwrap()[..],
        &published.zips[&zip_name][..]
    );
    serving.kill9();
}

#[actix_web::test]
async fn verify_finds_a_wrong_h1_record_and_repair_lets_it_be_computed_again() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let (config, cache) = write_config(dir.path(), &upstream);
    let serving = serve(&config);
    let zip = published.zip_name("linux", "amd64");
    let response = reqwest::get(format!(
        "{}/mirror/registry.terraform.io/hashicorp/local/{zip}",
        serving.base
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    wait_for_recorded_h1(&cache, &zip).await;
    serving.kill9();

    let h1_path = cache.join(format!(
        "releases/hashicorp/terraform-provider-local/2.1.0/{zip}.h1"
    ));
    let good = std::fs::read_to_string(&h1_path).unwrap();
    assert!(good.starts_with("h1:"), "{good}");
    let clean = verify(&config, false);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    // A well-formed h1: of other contents: Terraform would be told to expect another package.
    std::fs::write(&h1_path, "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
    let damaged = verify(&config, false);
    let stdout = String::from_utf8_lossy(&damaged.stdout);
    assert_eq!(damaged.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("DAMAGED {}", h1_path.display())),
        "{stdout}"
    );
    assert!(
        h1_path.exists(),
        "verify without --repair removed something"
    );

    let repaired = verify(&config, true);
    let stdout = String::from_utf8_lossy(&repaired.stdout);
    assert_eq!(repaired.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 damaged, 1 removed"), "{stdout}");
    assert!(!h1_path.exists());
    let archive = h1_path.with_extension("");
    assert!(archive.exists(), "repair removed the good archive");
    let after = verify(&config, false);
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );

    // The next request lists the right h1: again, computed from the archive.
    let serving = serve(&config);
    let body = reqwest::get(format!(
        "{}/mirror/registry.terraform.io/hashicorp/local/2.1.0.json",
        serving.base
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let hashes = doc["archives"]["linux_amd64"]["hashes"].as_array().unwrap();
    assert!(hashes.iter().any(|h| h == good.as_str()), "{doc}");
    assert_eq!(std::fs::read_to_string(&h1_path).unwrap(), good);
    serving.kill9();
}

#[actix_web::test]
async fn sigterm_lets_a_download_in_flight_finish_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let zip = published.zip_name("linux", "amd64");
    let upstream_path = format!("{}/{zip}", published.dir);
    upstream.throttle(
        &upstream_path,
        published.zips[&zip].len() / 10 + 1,
        Duration::from_millis(100),
    );
    let (config, cache) = write_config(dir.path(), &upstream);
    let mut serving = serve(&config);
    let url = format!(
        "{}/v1/providers/myproviders/local/2.1.0/files/{zip}",
        serving.base
    );
    let pending = tokio::spawn(reqwest::get(url.clone()));
    // The archive's own temp file: the release's metadata is written first, through temp
    // files of its own, before the archive download starts.
    let archive_temp = format!(".{zip}.tmp-");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !temp_files(&cache).iter().any(|f| f.contains(&archive_temp)) {
        assert!(Instant::now() < deadline, "the download never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = serving.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    let response = pending.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        &response.bytes().await.unwrap()[..],
        &published.zips[&zip][..]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = serving.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tfmirror did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(temp_files(&cache).is_empty());
    assert!(files_under(&cache).contains(&format!(
        "releases/hashicorp/terraform-provider-local/2.1.0/{zip}"
    )));
}

/// `serve` starting beside a long `import` or `prefetch` of another process: the start-up
/// sweep removes only leftovers, never a temp file or staging directory whose writer still
/// holds its lock, however old.
#[actix_web::test]
async fn the_start_up_sweep_leaves_live_writers_of_other_processes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let (config, cache) = write_config(dir.path(), &upstream);
    let release = cache.join("releases/hashicorp/terraform-provider-local/2.1.0");
    std::fs::create_dir_all(&release).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    let age = |path: &Path| {
        std::fs::File::open(path)
            .unwrap()
            .set_modified(old)
            .unwrap()
    };
    // A download of another process, an hour into its work: locked, as writers lock them.
    let live = release.join(".terraform-provider-local_2.1.0_linux_amd64.zip.tmp-00000000000000aa");
    let live_file = std::fs::File::create(&live).unwrap();
    fs4::FileExt::lock(&live_file).unwrap();
    age(&live);
    // An import's staging directory, locked by that import.
    let staging = cache.join(".import.tmp-00000000000000bb");
    std::fs::create_dir_all(staging.join("releases")).unwrap();
    let staging_lock = std::fs::File::open(&staging).unwrap();
    fs4::FileExt::lock(&staging_lock).unwrap();
    age(&staging);
    // What a crashed process left: unlocked.
    let leftover =
        release.join(".terraform-provider-local_2.1.0_darwin_arm64.zip.tmp-00000000000000cc");
    std::fs::write(&leftover, b"partial").unwrap();
    age(&leftover);
    let crashed_import = cache.join(".import.tmp-00000000000000dd");
    std::fs::create_dir_all(&crashed_import).unwrap();
    age(&crashed_import);

    let serving = serve(&config);
    let deadline = Instant::now() + Duration::from_secs(10);
    while leftover.exists() || crashed_import.exists() {
        assert!(
            Instant::now() < deadline,
            "the sweep never removed the leftovers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        live.exists(),
        "a live download of another process was swept"
    );
    assert!(staging.exists(), "a live import's staging was swept");
    serving.kill9();
    drop((live_file, staging_lock));
}

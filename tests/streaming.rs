//! Cold misses streamed to every client at once: one upstream download, bytes flowing before
//! it ends, late joiners catching up from disk, and the tail held back until the digest has
//! matched — so a tampered archive reaches nobody whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{files_under, publisher_key, start_with_fake_upstream, FakeRelease};
use futures_util::StreamExt;
use tfmirror::mirror::HOLDBACK;

/// Downloads `url`, returning when the first byte came, the bytes, and whether the body ended
/// cleanly.
async fn download(
    client: reqwest::Client,
    url: String,
    started: Instant,
) -> (Duration, Vec<u8>, bool) {
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut first_byte = None;
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => {
                first_byte.get_or_insert_with(|| started.elapsed());
                body.extend_from_slice(&bytes);
            }
            Err(_) => return (first_byte.unwrap_or_default(), body, false),
        }
    }
    (first_byte.unwrap_or_default(), body, true)
}

#[actix_web::test]
async fn eight_clients_share_one_download_and_get_bytes_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let release = FakeRelease {
        payload_bytes: 1024 * 1024,
        ..FakeRelease::new("local", "2.1.0")
    };
    let published = release.publish(&upstream, publisher_key());
    let zip = published.zip_name("linux", "amd64");
    let upstream_path = format!("{}/{zip}", published.dir);
    let size = published.zips[&zip].len();
    // About 1.6 s for the whole archive.
    upstream.throttle(&upstream_path, 64 * 1024, Duration::from_millis(100));
    let url = format!(
        "{}/v1/providers/myproviders/local/2.1.0/files/{zip}",
        app.base
    );
    // The release (SHA256SUMS, signature) first, so timings are about the archive.
    app.get_json("/v1/providers/myproviders/local/2.1.0/download/linux/amd64")
        .await;

    let started = Instant::now();
    let early = (0..8).map(|_| tokio::spawn(download(app.client.clone(), url.clone(), started)));
    let early: Vec<_> = early.collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let late = tokio::spawn(download(app.client.clone(), url.clone(), started));
    let mut results = Vec::new();
    for task in early {
        results.push(task.await.unwrap());
    }
    let late = late.await.unwrap();
    let whole = started.elapsed();

    for (first_byte, body, clean) in results.iter().chain(std::iter::once(&late)) {
        assert!(clean);
        assert_eq!(body.len(), size);
        assert!(body == &published.zips[&zip], "wrong bytes");
        let _ = first_byte;
    }
    for (first_byte, _, _) in &results {
        assert!(
            *first_byte < whole / 2,
            "first byte at {first_byte:?} of {whole:?}: the client waited for the whole download"
        );
    }
    assert_eq!(
        upstream.hits(&upstream_path),
        1,
        "more than one upstream download"
    );
}

#[actix_web::test]
async fn a_tampered_archive_reaches_no_client_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let release = FakeRelease {
        payload_bytes: 512 * 1024,
        ..FakeRelease::new("local", "2.1.0")
    };
    let published = release.publish(&upstream, publisher_key());
    let zip = published.zip_name("linux", "amd64");
    let upstream_path = format!("{}/{zip}", published.dir);
    // One byte changed near the start: only the digest at the very end can tell.
    let mut bytes = upstream.get(&upstream_path).unwrap().to_vec();
    bytes[100] ^= 1;
    let size = bytes.len();
    upstream.put(&upstream_path, bytes);
    upstream.throttle(&upstream_path, 32 * 1024, Duration::from_millis(20));
    let url = format!(
        "{}/v1/providers/myproviders/local/2.1.0/files/{zip}",
        app.base
    );

    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| tokio::spawn(download(app.client.clone(), url.clone(), started)))
        .collect();
    for client in clients {
        let (_, body, clean) = client.await.unwrap();
        assert!(
            !clean,
            "a client saw a complete transfer of a tampered archive"
        );
        assert!(
            body.len() as u64 <= size as u64 - HOLDBACK,
            "{} of {size} bytes reached a client; the tail was not held back",
            body.len()
        );
        assert!(!body.is_empty(), "nothing was streamed before the end");
    }
    assert!(!files_under(&app.cache_dir)
        .iter()
        .any(|f| f.contains(".zip")));
    // A later request tries upstream again, with the same outcome: never a whole file.
    let response = app.client.get(url).send().await.unwrap();
    if response.status() == 200 {
        let body = response.bytes().await;
        assert!(body.is_err() || body.unwrap().len() < size);
    } else {
        assert_eq!(response.status(), 502);
    }
    assert!(!files_under(&app.cache_dir)
        .iter()
        .any(|f| f.contains(".zip")));
}

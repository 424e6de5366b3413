//! The status page's cost does not grow with requests: the cached releases are listed (read
//! and verified) at most once per refresh window, sooner only when something cached changed.
//! Alone in its test binary, so the process-wide snapshot counter is exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{publisher_key, start_with_fake_upstream, FakeRelease, TestApp};

async fn snapshots(app: &TestApp) -> u64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("tfmirror_status_snapshots_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

async fn page(app: &TestApp) -> String {
    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

#[actix_web::test]
async fn many_status_page_requests_list_the_cache_once() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, app) = start_with_fake_upstream(dir.path()).await;
    let published = FakeRelease::new("local", "2.1.0").publish(&upstream, publisher_key());
    let linux = format!(
        "/v1/providers/myproviders/local/2.1.0/files/{}",
        published.zip_name("linux", "amd64")
    );
    assert_eq!(app.get_bytes(&linux).await.0, 200);

    let html = page(&app).await;
    assert!(html.contains("1 releases, 1 archives"), "{html}");
    let built = snapshots(&app).await;
    assert!(built >= 1);

    // Many requests, one after the other and at once, within the refresh window: no new
    // listing, and hit counts still current.
    let window = Instant::now();
    assert_eq!(app.get_bytes(&linux).await.0, 200);
    for _ in 0..20 {
        page(&app).await;
    }
    let pages = futures_util::future::join_all((0..20).map(|_| page(&app))).await;
    assert!(pages
        .iter()
        .all(|html| html.contains("data-platform=\"linux_amd64\" data-hits=\"2\"")));
    let after = snapshots(&app).await;
    if window.elapsed() < tfmirror::ops::STATUS_REFRESH {
        assert_eq!(after, built, "the cache was listed again within the window");
    } else {
        assert!(
            after <= built + 1,
            "{} listings for 41 requests",
            after - built
        );
    }

    // Something new in the cache shows at once.
    let darwin = format!(
        "/v1/providers/myproviders/local/2.1.0/files/{}",
        published.zip_name("darwin", "arm64")
    );
    assert_eq!(app.get_bytes(&darwin).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if page(&app).await.contains("1 releases, 2 archives") {
            break;
        }
        assert!(Instant::now() < deadline, "the new archive never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! What is on disk under a cache directory: every file, the temp files of writes still in
//! progress, and waiting for the `h1:` a download records in the background.

use std::{
    path::Path,
    time::{Duration, Instant},
};

/// Temp files under the cache: a download or an `h1:` still being written.
pub fn temp_files(cache: &std::path::Path) -> Vec<String> {
    files_under(cache)
        .into_iter()
        .filter(|f| f.contains(".tmp-"))
        .collect()
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Waits (up to 10 s) until the archive `zip` has its `h1:` recorded beside it (`<zip>.h1`).
///
/// tfmirror computes and writes an archive's `h1:` in the background just after the download
/// is complete, through a temp file of its own: until `<zip>.h1` is there, a snapshot of the
/// cache may catch that temp file, or miss the `.h1`. Looking at the disk instead of asking
/// for `<version>.json` (`TestApp::version_doc_with_h1`) matters here: a request that finds no
/// `h1:` yet computes and writes one itself, beside the background writer it should wait for.
pub async fn wait_for_recorded_h1(cache: &Path, zip: &str) {
    let name = format!("{zip}.h1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let files = files_under(cache);
        if files
            .iter()
            .any(|f| Path::new(f).file_name().is_some_and(|n| *n == *name))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {name} under {}: {files:?}",
            cache.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

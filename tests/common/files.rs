//! What is on disk under a cache directory: every file, and the temp files of writes still in
//! progress.

use std::path::Path;

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

//! A hot archive on plain HTTP/1.1 goes out with `sendfile`: the real binary, a raw keep-alive
//! connection, and the server's own read counters (`/proc/<pid>/io`) to tell a `sendfile` of
//! the file from reading it chunk by chunk. The bytes, `HEAD`, `Range` and a slow reader stay
//! right on the same connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::Duration,
};

use common::{
    config_toml, publisher_key, serving::Serving, wait_for_recorded_h1, FakeRelease, FakeUpstream,
    MirrorOptions,
};

/// Read system calls the process has made so far (`syscr`: `read`, `pread`, `preadv2`, and
/// one per `sendfile`).
fn read_calls(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscr: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// One response on `conn`: status line, headers (lower-cased names), body. Reads exactly
/// `Content-Length` bytes of body (none for `HEAD`), `pause` between reads of `read_size`.
fn response(
    conn: &mut TcpStream,
    head_only: bool,
    read_size: usize,
    pause: Duration,
) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(conn.read(&mut byte).unwrap(), 1, "closed inside the head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = Vec::new();
    if !head_only {
        let mut chunk = vec![0u8; read_size];
        while body.len() < length {
            let want = read_size.min(length - body.len());
            let n = conn.read(&mut chunk[..want]).unwrap();
            assert!(n > 0, "closed inside the body");
            body.extend_from_slice(&chunk[..n]);
            std::thread::sleep(pause);
        }
    }
    (status, headers, body)
}

fn request(conn: &mut TcpStream, method: &str, path: &str, extra: &str) {
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n"
    )
    .unwrap();
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[actix_web::test]
async fn a_hot_archive_is_sent_with_sendfile_and_the_connection_stays_right() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let release = FakeRelease {
        payload_bytes: 4 * 1024 * 1024,
        ..FakeRelease::new("local", "2.1.0")
    };
    let published = release.publish(&upstream, publisher_key());
    let zip = published.zip_name("linux", "amd64");
    let want = published.zips[&zip].clone();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let config = dir.path().join("tfmirror.toml");
    std::fs::write(
        &config,
        config_toml(&MirrorOptions::new(upstream.url(), &cache)),
    )
    .unwrap();
    let serving = Serving::start(Path::new(env!("CARGO_BIN_EXE_tfmirror")), &config, "info");
    let path = format!("/v1/providers/myproviders/local/2.1.0/files/{zip}");

    // Cold: fetched, verified and cached; then its h1: is computed in the background, which
    // reads the file. Wait for that, so the counters below see the responses alone.
    let cold = reqwest::get(format!("{}{path}", serving.base))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(cold == want, "the cold download has the wrong bytes");
    wait_for_recorded_h1(&cache, &zip).await;

    let addr = serving.base.strip_prefix("http://").unwrap().to_owned();
    let pid = serving.pid();
    tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();

        // Hot, twice on one connection.
        for _ in 0..2 {
            let before = read_calls(pid);
            request(&mut conn, "GET", &path, "");
            let (status, headers, body) = response(&mut conn, false, 1 << 20, Duration::ZERO);
            let reads = read_calls(pid) - before;
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert_eq!(body.len(), want.len());
            assert!(body == want, "a hot download has the wrong bytes");
            assert!(header(&headers, "etag").is_some());
            // Read in 96 KiB chunks this is 45 reads. With `sendfile` it is two calls of at
            // most 2 MiB, plus one for each time a full socket cuts a call short (a few under
            // load), plus whatever else the server reads meanwhile.
            assert!(
                reads <= 20,
                "{reads} read calls for a 4 MiB hot archive: not sent with sendfile"
            );
        }

        // HEAD, a range and a conditional request on the same connection, answered as before.
        request(&mut conn, "HEAD", &path, "");
        let (status, headers, _) = response(&mut conn, true, 0, Duration::ZERO);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(
            header(&headers, "content-length"),
            Some(want.len().to_string().as_str())
        );
        let etag = header(&headers, "etag").unwrap().to_owned();
        request(&mut conn, "GET", &path, "Range: bytes=100-199\r\n");
        let (status, _, body) = response(&mut conn, false, 4096, Duration::ZERO);
        assert_eq!(status, "HTTP/1.1 206 Partial Content");
        assert_eq!(body, want[100..200]);
        request(
            &mut conn,
            "GET",
            &path,
            &format!("If-None-Match: {etag}\r\n"),
        );
        let (status, _, body) = response(&mut conn, false, 4096, Duration::ZERO);
        assert_eq!(status, "HTTP/1.1 304 Not Modified");
        assert!(body.is_empty());

        // A slow reader: the socket fills, sendfile waits for room again and again.
        request(&mut conn, "GET", &path, "");
        let (status, _, body) = response(&mut conn, false, 64 * 1024, Duration::from_millis(1));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body == want, "a slow reader got the wrong bytes");

        // Two requests sent at once: both answered in order, whole.
        request(&mut conn, "GET", &path, "");
        request(&mut conn, "GET", &path, "Range: bytes=0-9\r\n");
        let (_, _, first) = response(&mut conn, false, 1 << 20, Duration::ZERO);
        let (status, _, second) = response(&mut conn, false, 4096, Duration::ZERO);
        assert!(first == want, "a pipelined download has the wrong bytes");
        assert_eq!(status, "HTTP/1.1 206 Partial Content");
        assert_eq!(second, want[..10]);
    })
    .await
    .unwrap();
}

//! HTTP/2 responses as frames on the wire: a body of known length ends on its last DATA frame
//! (END_STREAM set there), never on an empty frame after it, which the `h2` crate would flush
//! as a write and TLS record of its own. The raw client below speaks just enough HTTP/2 (the
//! preface, one request, a frame reader) to see the frames a library client hides.

use std::{
    io::{Read, Write},
    path::Path,
    sync::Arc,
};

use crate::common::{publisher_key, FakeRelease, FakeUpstream, MirrorOptions, TestApp};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One frame of stream 1: its type, flags and payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    kind: u8,
    flags: u8,
    len: usize,
}

/// An HPACK integer with an `prefix`-bit prefix, its first byte or-ed with `first`.
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u32, mut value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header field "literal without indexing" whose name is static-table entry `name`.
fn hpack_literal(out: &mut Vec<u8>, name: usize, value: &str) {
    hpack_int(out, 0x00, 4, name);
    hpack_int(out, 0x00, 7, value.len());
    out.extend_from_slice(value.as_bytes());
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Sends `GET path` as stream 1 over a TLS connection that negotiated `h2`, and returns the
/// frames of stream 1 up to and including the one with END_STREAM.
fn stream_frames(port: u16, cert: &Path, path: &str) -> Vec<Frame> {
    use rustls_pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);

    let mut block = vec![0x82, 0x87]; // :method GET, :scheme https
    hpack_literal(&mut block, 4, path); // :path
    hpack_literal(&mut block, 1, "localhost"); // :authority
    let mut request = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: the largest stream window, and as much again for the connection, so the
    // server never waits for a WINDOW_UPDATE.
    request.extend(frame(0x4, 0, 0, &[0x00, 0x04, 0x7f, 0xff, 0xff, 0xff]));
    request.extend(frame(0x8, 0, 0, &0x7fff_0000u32.to_be_bytes()));
    request.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    tls.write_all(&request).unwrap();
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]));

    let mut frames = Vec::new();
    loop {
        let mut head = [0u8; 9];
        tls.read_exact(&mut head).unwrap();
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        tls.read_exact(&mut payload).unwrap();
        match (head[3], head[4] & 0x1) {
            (0x4, 0) => tls.write_all(&frame(0x4, 0x1, 0, &[])).unwrap(), // SETTINGS ACK
            (0x6, 0) => tls.write_all(&frame(0x6, 0x1, 0, &payload)).unwrap(), // PING ACK
            _ => {}
        }
        assert_ne!(head[3], 0x7, "GOAWAY: {payload:?}");
        if stream != 1 {
            continue;
        }
        let f = Frame {
            kind: head[3],
            flags: head[4],
            len,
        };
        frames.push(f);
        if matches!(f.kind, DATA | HEADERS) && f.flags & END_STREAM != 0 {
            return frames;
        }
    }
}

#[actix_web::test]
async fn bodies_of_known_length_end_on_their_last_data_frame() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = FakeUpstream::start().await;
    let release = FakeRelease {
        payload_bytes: 100_000,
        ..FakeRelease::new("local", "2.1.0")
    }
    .publish(&upstream, publisher_key());
    let cache = dir.path().join("cache");
    let tls_dir = dir.path().join("certs");
    let app = TestApp::spawn(MirrorOptions {
        tls_dir: Some(&tls_dir),
        ..MirrorOptions::new(upstream.url(), &cache)
    })
    .await;
    let port = app.server.addr.port();
    let document = "/v1/providers/myproviders/local/2.1.0/download/linux/amd64";
    let archive = format!(
        "/v1/providers/myproviders/local/2.1.0/files/{}",
        release.zip_name("linux", "amd64")
    );
    // Cached first, so both are answered from the cache with their length known.
    let (status, json) = app.get_bytes(document).await;
    assert_eq!(status, 200);
    let (status, zip) = app.get_bytes(&archive).await;
    assert_eq!(status, 200);
    assert!(
        json.len() > 256 && zip.len() > 16_384,
        "{} {}",
        json.len(),
        zip.len()
    );

    for (path, body_len) in [(document.to_owned(), json.len()), (archive, zip.len())] {
        let cert = tls_dir.join("localhost.pem");
        let frames = tokio::task::spawn_blocking({
            let path = path.clone();
            move || stream_frames(port, &cert, &path)
        })
        .await
        .unwrap();
        let (head, data) = frames.split_first().unwrap();
        assert_eq!(head.kind, HEADERS, "{path}: {frames:?}");
        assert_eq!(head.flags & END_STREAM, 0, "{path}: {frames:?}");
        assert!(
            data.iter().all(|f| f.kind == DATA && f.len > 0),
            "{path}: an empty or non-DATA frame in the body: {frames:?}"
        );
        assert_eq!(
            data.iter().map(|f| f.len).sum::<usize>(),
            body_len,
            "{path}: {frames:?}"
        );
        let last = data.last().unwrap();
        assert_eq!(last.flags & END_STREAM, END_STREAM, "{path}: {frames:?}");
    }
    app.stop().await;
    upstream.stop().await;
}

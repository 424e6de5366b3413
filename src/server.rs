//! Binding, TLS and the actix server's life cycle.
//!
//! `start` returns once the socket is bound, with the real address (port 0 allowed), so tests
//! and embedders can use the server at once without sleeping or guessing ports.

use std::{
    io,
    net::{SocketAddr, TcpListener},
    path::Path,
    sync::Arc,
};

use actix_web::{dev::ServerHandle, middleware, web, App, HttpServer};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use crate::{
    config::{Config, TlsConfig},
    http::{
        self,
        auth::{Access, AuthSetupError},
    },
    mirror::{Mirror, SetupError},
    ops::{self, OpsError, PrefetchRequest},
};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("TLS certificate or key {path}: {reason}")]
    Tls { path: String, reason: String },
    #[error("tls: {present} exists but {missing} does not; a self-signed pair is generated only when both are missing (restore {missing}, or remove {present} to generate both)")]
    TlsIncomplete { present: String, missing: String },
    #[error(transparent)]
    Mirror(#[from] Box<SetupError>),
    #[error(transparent)]
    Ops(#[from] Box<OpsError>),
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    #[error("server failed")]
    Run(#[source] io::Error),
}

/// A running server.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
    handle: ServerHandle,
    finished: tokio::sync::oneshot::Receiver<io::Result<()>>,
}

impl RunningServer {
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Waits until the server stops (SIGINT/SIGTERM are handled by actix).
    pub async fn wait(self) -> Result<(), ServerError> {
        match self.finished.await {
            Ok(result) => result.map_err(ServerError::Run),
            Err(_) => Err(ServerError::Run(io::Error::other(
                "server thread ended unexpectedly",
            ))),
        }
    }

    /// Stops accepting connections and waits for in-flight requests (`graceful`) or not.
    pub async fn stop(self, graceful: bool) {
        self.handle.stop(graceful).await;
        let _ = self.finished.await;
    }
}

/// Evicts least-recently-used archives every `interval` while the cache is over `limit`.
async fn keep_cache_under(
    mirror: Mirror,
    limit: u64,
    interval: std::time::Duration,
    grace: std::time::Duration,
    keep: Vec<PrefetchRequest>,
) {
    let mut ticks = tokio::time::interval(interval);
    loop {
        ticks.tick().await;
        match ops::collect_garbage(&mirror, limit, grace, &keep).await {
            Ok(report) if !report.evicted.is_empty() => tracing::info!(
                evicted = report.evicted.len(),
                evicted_bytes = report.evicted_bytes,
                bytes = report.bytes_after,
                limit,
                "cache over max_size: evicted least-recently-used archives"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cache size check failed"),
        }
    }
}

/// Builds the mirror, binds the listener and starts serving.
///
/// The actix system runs on a thread of its own, so the server keeps answering whatever the
/// caller's runtime does (tests block it while the Terraform CLI runs). The mirror is built
/// there too: the connections its clients pool (to upstreams, to a bucket) must belong to the
/// runtime that serves, not to one the caller may block.
pub async fn start(config: &Config) -> Result<RunningServer, ServerError> {
    let access = Access::from_config(config.auth.as_ref())?.map(web::Data::new);
    let status = http::status_cache();
    let config = config.clone();
    let listener = TcpListener::bind(config.server.listen).map_err(|source| ServerError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.server.listen,
        source,
    })?;
    let tls = config.tls.as_ref().map(rustls_config).transpose()?;
    let shutdown_timeout = config.server.shutdown_timeout.as_secs().max(1);
    let scheme = if tls.is_some() { "https" } else { "http" };

    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (finished_tx, finished_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("tfmirror-server".to_owned())
        .spawn(move || {
            let result = actix_web::rt::System::new().block_on(async move {
                let mirror = match Mirror::new(&config).await {
                    Ok(mirror) => mirror,
                    Err(e) => {
                        let _ = started_tx.send(Err(ServerError::from(Box::new(e))));
                        return Ok(());
                    }
                };
                start_background_work(&mirror, &config, &status);
                let server = HttpServer::new(move || {
                    App::new()
                        .wrap(middleware::from_fn(http::limit_request))
                        .wrap(middleware::from_fn(http::log_request))
                        .configure(http::configure(
                            mirror.clone(),
                            access.clone(),
                            status.clone(),
                        ))
                })
                .workers(worker_count())
                // Responses go out as whole frames: without it, an HTTP/2 body written
                // after its headers waited ~40 ms for the client's delayed ACK (Nagle).
                .tcp_nodelay(true)
                // On SIGTERM/SIGINT: stop accepting, let in-flight requests (and the downloads
                // they wait on) finish for up to this long.
                .shutdown_timeout(shutdown_timeout);
                let server = match tls {
                    Some(tls) => server.listen_rustls_0_23(listener, tls),
                    None => server.listen(listener),
                };
                let server = match server {
                    Ok(server) => server.run(),
                    Err(source) => {
                        let _ = started_tx.send(Err(ServerError::Bind { addr, source }));
                        return Ok(());
                    }
                };
                let _ = started_tx.send(Ok(server.handle()));
                server.await
            });
            let _ = finished_tx.send(result);
        })
        .map_err(|source| ServerError::Bind { addr, source })?;
    let handle = match started_rx.await {
        Ok(Ok(handle)) => handle,
        Ok(Err(error)) => return Err(error),
        Err(_) => {
            return Err(ServerError::Bind {
                addr,
                source: io::Error::other("server thread ended before it started"),
            })
        }
    };
    Ok(RunningServer {
        addr,
        scheme,
        handle,
        finished: finished_rx,
    })
}

/// The start-up sweep, the periodic `gc` (with `cache.max_size`) and the status page's first
/// listing.
fn start_background_work(
    mirror: &Mirror,
    config: &Config,
    status: &web::Data<crate::ops::StatusCache>,
) {
    if let Some(mode) = mirror.cluster_mode() {
        tracing::info!(cluster = %mode, "replicas");
    }
    // A large cache takes a while to walk, and the walk only removes temp files older than
    // this process, so it cannot race the downloads that start meanwhile.
    tokio::spawn({
        let mirror = mirror.clone();
        async move {
            if let Err(e) = mirror.sweep_leftovers().await {
                tracing::warn!(error = %e, "cannot sweep the cache for leftovers");
            }
        }
    });
    if let Some(limit) = config.cache.max_size {
        let keep = config.prefetch.iter().map(PrefetchRequest::from).collect();
        tokio::spawn(keep_cache_under(
            mirror.clone(),
            limit.as_u64(),
            config.cache.gc_interval,
            config.cache.gc_grace,
            keep,
        ));
    }
    status.clone().into_inner().refresh_in_background(mirror);
}

/// One worker per core, at least two so one slow client cannot stall the server.
fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

fn rustls_config(tls: &TlsConfig) -> Result<rustls::ServerConfig, ServerError> {
    match (tls.cert.exists(), tls.key.exists()) {
        (true, true) => {}
        (false, false) if tls.self_signed => generate_self_signed(&tls.cert, &tls.key)?,
        // Never generate over one half of a pair: an existing key may be the real one.
        (_, key) if tls.self_signed => {
            let (present, missing) = if key {
                (&tls.key, &tls.cert)
            } else {
                (&tls.cert, &tls.key)
            };
            return Err(ServerError::TlsIncomplete {
                present: present.display().to_string(),
                missing: missing.display().to_string(),
            });
        }
        (cert, _) => {
            let missing = if cert { &tls.key } else { &tls.cert };
            return Err(ServerError::Tls {
                path: missing.display().to_string(),
                reason: "file not found (set tls.self_signed = true to generate one for localhost)"
                    .to_owned(),
            });
        }
    }
    let tls_error = |path: &Path, reason: String| ServerError::Tls {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(&tls.cert, e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| tls_error(&tls.key, e.to_string()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
    .map_err(|e| tls_error(&tls.cert, e.to_string()))
}

/// A development certificate for `localhost`, `127.0.0.1` and `::1` (as SANs: Go's TLS
/// ignores a legacy CN).
fn generate_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), ServerError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| ServerError::Tls {
        path: cert_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let write = |path: &Path, text: String, mode: u32| -> Result<(), ServerError> {
        let fail = |e: io::Error| ServerError::Tls {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        // `create_new`: never replace a file that appeared meanwhile; the mode applies from
        // the first byte, so the key is never readable by others, not even briefly.
        let mut file = create_new_with_mode(path, mode).map_err(fail)?;
        io::Write::write_all(&mut file, text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(fail)
    };
    write(key_path, generated.signing_key.serialize_pem(), 0o600)?;
    write(cert_path, generated.cert.pem(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), key = %key_path.display(), "generated a self-signed certificate for localhost");
    println!(
        "Generated a self-signed certificate for localhost. Make Terraform trust it with:\n  export SSL_CERT_FILE={}",
        std::fs::canonicalize(cert_path).unwrap_or_else(|_| cert_path.to_path_buf()).display()
    );
    Ok(())
}

#[cfg(unix)]
fn create_new_with_mode(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

#[cfg(not(unix))]
fn create_new_with_mode(path: &Path, _mode: u32) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

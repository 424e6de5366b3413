//! The HTTP client of an upstream: the only code that names `reqwest`.
//!
//! One client per upstream (rustls with the system's roots, its own timeouts and retry
//! policy, a `User-Agent`). Metadata reads stop at a byte cap instead of trusting upstream
//! sizes; archives are handed out as a chunk stream so that nobody ever buffers one whole.
//!
//! Faults are expected, not exceptional: connection errors, timeouts, 5xx and 429 are retried
//! a bounded number of times with jittered exponential backoff (or after the `Retry-After`
//! upstream asked for), and a semaphore bounds how many requests one upstream sees at once.
//!
//! Slots: an upstream sees at most `max_concurrent_fetches` requests at once. Archive
//! downloads hold their slot until the body stream is dropped, so they may take at most
//! `max(1, max_concurrent_fetches - reserved)` of them, `reserved` being a quarter (at least
//! one): the rest stays free for metadata (version lists, download documents, SHA256SUMS,
//! signatures), which slow archives therefore never starve. With `max_concurrent_fetches = 1`
//! there is nothing to reserve and both share the one slot. An archive first takes a permit of
//! its own semaphore, then one of the shared one; metadata takes only the shared one. A
//! request waits for its slot at most `first_byte_timeout`, then fails with
//! `UpstreamError::Timeout` (a 504); it keeps the slot across its retries.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::{UpstreamError, UpstreamHealth};
use crate::{config::UpstreamConfig, metrics::metrics, protocol::HostPattern};

/// Sent on every upstream request.
pub const USER_AGENT: &str = concat!("tfmirror/", env!("CARGO_PKG_VERSION"));

/// How an upstream is asked: timeouts, retries and concurrency, from `[upstreams.NAME]`.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub connect_timeout: Duration,
    /// Longest wait from sending a request to its response headers.
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of a body.
    pub idle_timeout: Duration,
    /// Extra attempts after the first one fails transiently.
    pub retries: u32,
    pub retry_initial_delay: Duration,
    /// Cap on one backoff delay; a `Retry-After` longer than this is not waited for.
    pub retry_max_delay: Duration,
    pub max_concurrent_requests: usize,
}

/// Where a client may go, and what it tells whom. The default: only URLs its caller built
/// from the configured base, no redirects, no credentials.
#[derive(Clone, Default)]
pub struct FetchRules {
    /// The upstream's own host (and port): always allowed, the only one that gets the token.
    pub home: Option<HostPattern>,
    /// Other hosts URLs and redirects may lead to.
    pub allowed_hosts: Vec<HostPattern>,
    /// Plain `http` is allowed (only when the upstream's own URL is `http`, as in tests).
    pub allow_http: bool,
    /// Redirects followed per request, each hop checked like the first URL.
    pub max_redirects: u8,
    /// Sent as `Authorization: Bearer` to the home host only.
    pub token: Option<String>,
    /// Egress proxy for every request (otherwise `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`).
    pub proxy: Option<Url>,
    /// The key to name when a host is refused (`upstreams.NAME.download_hosts`).
    pub hosts_key: String,
}

/// Never shows the token.
impl std::fmt::Debug for FetchRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchRules")
            .field("home", &self.home)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allow_http", &self.allow_http)
            .field("max_redirects", &self.max_redirects)
            .field(
                "token",
                &self.token.as_ref().map(|_| crate::config::REDACTED),
            )
            .field("proxy", &self.proxy.as_ref().map(crate::config::redact_url))
            .field("hosts_key", &self.hosts_key)
            .finish()
    }
}

impl FetchRules {
    fn check(&self, url: &Url) -> Result<(), UpstreamError> {
        if self.home.is_none() {
            return Ok(());
        }
        let scheme_ok = url.scheme() == "https" || (self.allow_http && url.scheme() == "http");
        let host_ok = self.is_home(url) || self.allowed_hosts.iter().any(|p| p.matches(url));
        if scheme_ok && host_ok {
            return Ok(());
        }
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (host, _) => host.unwrap_or_default().to_owned(),
        };
        Err(UpstreamError::HostNotAllowed {
            url: url.clone(),
            reason: if scheme_ok {
                format!(
                    "host {host} is neither the registry's own nor in {}; add it there to allow it",
                    self.hosts_key
                )
            } else {
                format!(
                    "host {host} was asked for over {}, and only https is allowed",
                    url.scheme()
                )
            },
        })
    }

    fn is_home(&self, url: &Url) -> bool {
        self.home.as_ref().is_some_and(|home| home.matches(url))
    }
}

impl From<&UpstreamConfig> for FetchPolicy {
    fn from(config: &UpstreamConfig) -> Self {
        Self {
            connect_timeout: config.connect_timeout,
            first_byte_timeout: config.first_byte_timeout,
            idle_timeout: config.read_timeout,
            retries: config.retries,
            retry_initial_delay: config.retry_initial_delay,
            retry_max_delay: config.retry_max_delay,
            max_concurrent_requests: config.max_concurrent_fetches.max(1),
        }
    }
}

impl FetchPolicy {
    /// Full-jitter exponential backoff (AWS architecture blog): a uniformly random delay up to
    /// `initial * 2^attempt`, so that many mirrors retrying after one outage do not arrive
    /// in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .retry_initial_delay
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.retry_max_delay);
        ceiling.mul_f64(rand::random::<f64>())
    }
}

/// A successful upstream answer whose body has not been read yet.
pub struct UpstreamBody<S> {
    /// What `Content-Length` promised, if anything.
    pub declared_len: Option<u64>,
    pub chunks: S,
}

/// The HTTP client of one upstream.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// The `[upstreams.NAME]` name, for metrics and logs.
    name: String,
    inner: reqwest::Client,
    policy: FetchPolicy,
    rules: Arc<FetchRules>,
    /// Every request to this upstream holds one of these (`max_concurrent_requests`).
    slots: Arc<Semaphore>,
    /// Archive downloads hold one of these as well (`archive_slots`), leaving the rest of
    /// `slots` to metadata.
    archive_slots: Arc<Semaphore>,
    health: Arc<std::sync::Mutex<UpstreamHealth>>,
}

impl HttpClient {
    pub fn new(name: &str, policy: FetchPolicy) -> Result<Self, UpstreamError> {
        Self::with_rules(name, policy, FetchRules::default())
    }

    pub fn with_rules(
        name: &str,
        policy: FetchPolicy,
        rules: FetchRules,
    ) -> Result<Self, UpstreamError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(policy.connect_timeout)
            .read_timeout(policy.idle_timeout)
            // Redirects are followed by hand (`request_head`), each hop checked against the
            // rules: reqwest's own would let a listing send us anywhere.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(proxy) = &rules.proxy {
            builder = builder.proxy(
                reqwest::Proxy::all(proxy.as_str())
                    .map_err(|e| UpstreamError::Client(Arc::new(e)))?,
            );
        }
        let inner = builder
            .build()
            .map_err(|e| UpstreamError::Client(Arc::new(e)))?;
        let slots = Arc::new(Semaphore::new(policy.max_concurrent_requests));
        let archive_slots = Arc::new(Semaphore::new(archive_slots(
            policy.max_concurrent_requests,
        )));
        Ok(Self {
            name: name.to_owned(),
            inner,
            policy,
            rules: Arc::new(rules),
            slots,
            archive_slots,
            health: Default::default(),
        })
    }

    pub fn health(&self) -> UpstreamHealth {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record(&self, started: std::time::Instant, result: &Result<(), &UpstreamError>) {
        let m = metrics();
        m.upstream_duration
            .with_label_values(&[self.name.as_str()])
            .observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(()) => "ok",
            Err(e) if e.is_not_found() => "not_found",
            Err(_) => "error",
        };
        m.upstream_requests
            .with_label_values(&[self.name.as_str(), outcome])
            .inc();
        let mut health = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Err(e) if e.is_transient() => {
                health.reachable = Some(false);
                health.last_error = Some(e.to_string());
            }
            _ => {
                health.reachable = Some(true);
                health.last_success = Some(std::time::SystemTime::now());
            }
        }
    }

    fn count_bytes(&self, bytes: usize) {
        metrics()
            .upstream_bytes
            .with_label_values(&[self.name.as_str()])
            .inc_by(bytes as u64);
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    async fn with_retries<T, F, Fut>(&self, url: &Url, mut attempt: F) -> Result<T, UpstreamError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        let mut tries = 0;
        loop {
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !error.is_transient() || tries >= self.policy.retries {
                return Err(error);
            }
            let delay = match error.retry_after() {
                Some(asked) if asked > self.policy.retry_max_delay => {
                    tracing::warn!(%url, asked_secs = asked.as_secs(), "upstream asks to retry later than retry_max_delay; giving up");
                    return Err(error);
                }
                Some(asked) => asked,
                None => self.policy.backoff(tries),
            };
            tries += 1;
            tracing::warn!(%url, error = %error, attempt = tries, delay_ms = delay.as_millis() as u64, "upstream request failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// A slot for one request of `kind`, waited for at most `first_byte_timeout`.
    async fn acquire(&self, kind: Kind, url: &Url) -> Result<Slot, UpstreamError> {
        let timeout = || UpstreamError::Timeout { url: url.clone() };
        let wait = async {
            let archive = match kind {
                Kind::Archive => Some(self.archive_slots.clone().acquire_owned().await),
                Kind::Metadata => None,
            }
            .transpose()
            .map_err(|_| timeout())?;
            let shared = self
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| timeout())?;
            Ok(Slot {
                _shared: shared,
                _archive: archive,
            })
        };
        match tokio::time::timeout(self.policy.first_byte_timeout, wait).await {
            Ok(slot) => slot,
            Err(_) => {
                tracing::warn!(%url, upstream = %self.name, ?kind, "no upstream slot free within first_byte_timeout");
                Err(timeout())
            }
        }
    }

    /// One request, up to its response headers. The caller holds a slot.
    async fn send_once(&self, url: &Url) -> Result<reqwest::Response, UpstreamError> {
        let started = std::time::Instant::now();
        let result = self.request_head(url).await;
        self.record(started, &result.as_ref().map(|_| ()));
        result
    }

    /// Up to the response headers, following at most `max_redirects` redirects, each hop
    /// checked against the rules before it is asked.
    async fn request_head(&self, first: &Url) -> Result<reqwest::Response, UpstreamError> {
        let mut url = first.clone();
        let mut hops = 0;
        let response = loop {
            self.rules.check(&url)?;
            let mut request = self.inner.get(url.clone());
            if let (Some(token), true) = (&self.rules.token, self.rules.is_home(&url)) {
                request = request.bearer_auth(token);
            }
            let response = tokio::time::timeout(self.policy.first_byte_timeout, request.send())
                .await
                .map_err(|_| UpstreamError::Timeout { url: url.clone() })?
                .map_err(|e| UpstreamError::from_reqwest(&url, e))?;
            if !response.status().is_redirection() || self.rules.max_redirects == 0 {
                break response;
            }
            hops += 1;
            let next = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|location| url.join(location).ok());
            match next {
                Some(next) if hops <= self.rules.max_redirects => url = next,
                _ => {
                    return Err(UpstreamError::InvalidBody {
                        url,
                        reason: format!(
                            "more than {} redirects, or a redirect without a usable Location",
                            self.rules.max_redirects
                        ),
                    })
                }
            }
        };
        let url = &url;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(UpstreamError::NotFound { url: url.clone() });
        }
        if !status.is_success() {
            return Err(UpstreamError::Status {
                url: url.clone(),
                status: status.as_u16(),
                retry_after: response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after),
            });
        }
        Ok(response)
    }

    /// A whole small document, refused once it grows past `limit` bytes. A body cut short is
    /// retried like any other transient failure.
    pub async fn get_bytes(&self, url: &Url, limit: u64) -> Result<Bytes, UpstreamError> {
        let _slot = self.acquire(Kind::Metadata, url).await?;
        self.with_retries(url, || async {
            let response = self.send_once(url).await?;
            if response.content_length().is_some_and(|len| len > limit) {
                return Err(UpstreamError::TooLarge {
                    url: url.clone(),
                    limit,
                });
            }
            // Sized once when upstream says the length (already checked against `limit`),
            // not grown by doubling through a few MB of index.
            let announced = response.content_length().unwrap_or(0);
            let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
            let mut chunks = response.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| UpstreamError::from_reqwest(url, e))?;
                if body.len() as u64 + chunk.len() as u64 > limit {
                    return Err(UpstreamError::TooLarge {
                        url: url.clone(),
                        limit,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            self.count_bytes(body.len());
            Ok(Bytes::from(body))
        })
        .await
    }

    /// A large body as a stream of chunks. Only getting the response is retried: once bytes
    /// flow, a failure ends the stream and the caller starts over. The caller enforces its own
    /// size limit; the upstream slot (an archive one, see the module comment) is held until
    /// the stream is dropped.
    pub async fn get_stream(
        &self,
        url: &Url,
    ) -> Result<
        UpstreamBody<impl Stream<Item = Result<Bytes, UpstreamError>> + Send + 'static>,
        UpstreamError,
    > {
        let permit = self.acquire(Kind::Archive, url).await?;
        let response = self.with_retries(url, || self.send_once(url)).await?;
        let declared_len = response.content_length();
        let url = url.clone();
        let client = self.clone();
        let chunks = response.bytes_stream().map(move |chunk| {
            let _slot = &permit;
            if let Ok(bytes) = &chunk {
                client.count_bytes(bytes.len());
            }
            chunk.map_err(|e| UpstreamError::from_reqwest(&url, e))
        });
        Ok(UpstreamBody {
            declared_len,
            chunks,
        })
    }
}

/// What a request fetches, which decides the slots it may take.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Small documents, read whole.
    Metadata,
    /// Archives, streamed; the slot is held as long as the stream.
    Archive,
}

/// The permits one request holds, given back when it is dropped.
struct Slot {
    _shared: OwnedSemaphorePermit,
    _archive: Option<OwnedSemaphorePermit>,
}

/// How many of `total` slots archives may hold: all but a quarter (at least one) kept for
/// metadata, and at least one.
fn archive_slots(total: usize) -> usize {
    let reserved = (total / 4).max(1);
    total.saturating_sub(reserved).max(1)
}

/// `Retry-After` is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let soon = std::time::SystemTime::now() + Duration::from_secs(120);
        let asked = parse_retry_after(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(asked > Duration::from_secs(100) && asked <= Duration::from_secs(120));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn archives_leave_a_quarter_of_the_slots_to_metadata() {
        let shares: Vec<usize> = [1, 2, 3, 4, 8, 16].map(archive_slots).to_vec();
        assert_eq!(shares, [1, 1, 2, 3, 6, 12]);
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let policy = FetchPolicy {
            connect_timeout: Duration::from_secs(1),
            first_byte_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            retries: 5,
            retry_initial_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_millis(350),
            max_concurrent_requests: 1,
        };
        let delays: Vec<Duration> = (0..200).map(|_| policy.backoff(1)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(200)));
        assert!(
            delays.iter().any(|d| *d != delays[0]),
            "no jitter: {delays:?}"
        );
        assert!((0..200).all(|_| policy.backoff(10) <= Duration::from_millis(350)));
    }
}

//! Prometheus metrics, process-wide (`GET /metrics`).
//!
//! One registry for the process: the instrumented code (upstream client, mirror core, store,
//! HTTP middleware) records into it without threading a handle through every call. Label
//! values are bounded — route patterns, not paths; upstream names from the config — so a
//! hostile client cannot blow up the series count.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Where a request's answer came from, for logs and `tfmirror_cache_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from memory or disk without asking upstream.
    Hit,
    /// Fetched from upstream (and verified) for this request.
    Miss,
    /// Served past its freshness because upstream is down or being asked in the background.
    Stale,
    /// A remembered upstream 404.
    Negative,
}

impl CacheOutcome {
    /// How many outcomes there are: `Negative` is the last.
    const COUNT: usize = Self::Negative as usize + 1;

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Negative => "negative",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_response_bytes: IntCounterVec,
    pub http_versions: IntCounterVec,
    pub cache_events: IntCounterVec,
    pub upstream_requests: IntCounterVec,
    pub upstream_bytes: IntCounterVec,
    pub upstream_duration: HistogramVec,
    pub downloads_in_flight: IntGauge,
    pub verification_failures: IntCounter,
    pub version_lists_refused: IntCounter,
    pub status_snapshots: IntCounter,
    pub signing_key_changes: IntCounterVec,
    pub cache_bytes: IntGauge,
    pub cache_files: IntGauge,
    pub hash_completions_pending: IntGauge,
    pub hash_completions: IntCounterVec,
    /// The series of `cache_events` and `http_versions` that every request counts into, each
    /// looked up on its first use (a lookup hashes the labels under a lock).
    cache_event_series: [OnceLock<IntCounter>; CacheOutcome::COUNT],
    http_version_series: [OnceLock<IntCounter>; HTTP_VERSIONS.len()],
}

/// The `version` labels of `tfmirror_http_requests_by_version_total`, and the log field.
const HTTP_VERSIONS: [&str; 4] = ["HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "other"];

/// Where `version` is in `HTTP_VERSIONS`.
fn http_version_index(version: actix_web::http::Version) -> usize {
    use actix_web::http::Version;
    match version {
        Version::HTTP_10 => 0,
        Version::HTTP_11 => 1,
        Version::HTTP_2 => 2,
        _ => 3,
    }
}

/// The `version` label and log field of an HTTP version.
pub fn http_version_label(version: actix_web::http::Version) -> &'static str {
    HTTP_VERSIONS[http_version_index(version)]
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        // Names and labels are fixed at compile time; registering them cannot fail unless
        // two collide, which the unit test below would catch.
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            let _ = registry.register(c);
        };
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0,
        ];
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(latency_buckets.clone()),
                labels,
            )
            .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        };
        let gauge = |name: &str, help: &str| {
            IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        };
        let metrics = Self {
            http_requests: counter_vec(
                "tfmirror_http_requests_total",
                "HTTP requests answered, by route pattern, method and status code.",
                &["route", "method", "status"],
            ),
            http_duration: histogram_vec(
                "tfmirror_http_request_duration_seconds",
                "Time to the response head, by route pattern.",
                &["route"],
            ),
            http_response_bytes: counter_vec(
                "tfmirror_http_response_bytes_total",
                "Response body bytes announced, by route pattern.",
                &["route"],
            ),
            http_versions: counter_vec(
                "tfmirror_http_requests_by_version_total",
                "HTTP requests answered, by HTTP version (HTTP/1.0, HTTP/1.1, HTTP/2.0, other).",
                &["version"],
            ),
            cache_events: counter_vec(
                "tfmirror_cache_events_total",
                "Cache lookups by outcome: hit, miss (fetched from upstream), stale, negative.",
                &["outcome"],
            ),
            upstream_requests: counter_vec(
                "tfmirror_upstream_requests_total",
                "Requests to upstreams, by upstream and outcome (ok, not_found, error).",
                &["upstream", "outcome"],
            ),
            upstream_bytes: counter_vec(
                "tfmirror_upstream_bytes_total",
                "Body bytes received from upstreams.",
                &["upstream"],
            ),
            upstream_duration: histogram_vec(
                "tfmirror_upstream_request_duration_seconds",
                "Time to an upstream's response head.",
                &["upstream"],
            ),
            downloads_in_flight: gauge(
                "tfmirror_downloads_in_flight",
                "Archive downloads from upstream in progress.",
            ),
            verification_failures: IntCounter::new(
                "tfmirror_verification_failures_total",
                "Upstream files refused: bad signature, digest mismatch, over the size limit.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            version_lists_refused: IntCounter::new(
                "tfmirror_version_lists_refused_total",
                "Version lists from upstream without versions, refused because a list with versions is cached.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            status_snapshots: IntCounter::new(
                "tfmirror_status_snapshots_total",
                "Status page snapshots built (each re-reads and re-verifies the cached releases).",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            signing_key_changes: counter_vec(
                "tfmirror_signing_key_changes_total",
                "Versions signed by another key than the provider's earlier versions, by upstream and outcome (accepted, refused).",
                &["upstream", "outcome"],
            ),
            cache_bytes: gauge("tfmirror_cache_bytes", "Bytes of files in the disk cache."),
            cache_files: gauge("tfmirror_cache_files", "Files in the disk cache."),
            hash_completions_pending: gauge(
                "tfmirror_hash_completions_pending",
                "Archives waiting to be fetched and hashed for cache.complete_hashes, or being.",
            ),
            hash_completions: counter_vec(
                "tfmirror_hash_completions_total",
                "Archives fetched and hashed for cache.complete_hashes, by outcome (ok, failed).",
                &["outcome"],
            ),
            cache_event_series: Default::default(),
            http_version_series: Default::default(),
            registry: registry.clone(),
        };
        reg(Box::new(metrics.http_requests.clone()));
        reg(Box::new(metrics.http_duration.clone()));
        reg(Box::new(metrics.http_response_bytes.clone()));
        reg(Box::new(metrics.http_versions.clone()));
        reg(Box::new(metrics.cache_events.clone()));
        reg(Box::new(metrics.upstream_requests.clone()));
        reg(Box::new(metrics.upstream_bytes.clone()));
        reg(Box::new(metrics.upstream_duration.clone()));
        reg(Box::new(metrics.downloads_in_flight.clone()));
        reg(Box::new(metrics.verification_failures.clone()));
        reg(Box::new(metrics.version_lists_refused.clone()));
        reg(Box::new(metrics.status_snapshots.clone()));
        reg(Box::new(metrics.signing_key_changes.clone()));
        reg(Box::new(metrics.cache_bytes.clone()));
        reg(Box::new(metrics.cache_files.clone()));
        reg(Box::new(metrics.hash_completions_pending.clone()));
        reg(Box::new(metrics.hash_completions.clone()));
        #[cfg(target_os = "linux")]
        reg(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        metrics
    }

    /// `tfmirror_cache_events_total` for `outcome`.
    fn cache_event(&self, outcome: CacheOutcome) -> &IntCounter {
        self.cache_event_series[outcome as usize]
            .get_or_init(|| self.cache_events.with_label_values(&[outcome.as_str()]))
    }

    /// `tfmirror_http_requests_by_version_total` for `version`.
    pub fn http_version(&self, version: actix_web::http::Version) -> &IntCounter {
        let at = http_version_index(version);
        self.http_version_series[at]
            .get_or_init(|| self.http_versions.with_label_values(&[HTTP_VERSIONS[at]]))
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A route's series of `tfmirror_http_request_duration_seconds` and
/// `tfmirror_http_response_bytes_total`, kept with the route and each looked up on its first
/// request.
#[derive(Debug)]
pub struct RouteSeries {
    pattern: &'static str,
    duration: OnceLock<Histogram>,
    response_bytes: OnceLock<IntCounter>,
}

impl RouteSeries {
    pub const fn new(pattern: &'static str) -> Self {
        Self {
            pattern,
            duration: OnceLock::new(),
            response_bytes: OnceLock::new(),
        }
    }

    /// The `route` label: the route's pattern, never a path.
    pub fn pattern(&self) -> &'static str {
        self.pattern
    }

    pub fn duration(&self) -> &Histogram {
        self.duration
            .get_or_init(|| metrics().http_duration.with_label_values(&[self.pattern]))
    }

    pub fn response_bytes(&self) -> &IntCounter {
        self.response_bytes.get_or_init(|| {
            metrics()
                .http_response_bytes
                .with_label_values(&[self.pattern])
        })
    }
}

tokio::task_local! {
    /// The cache outcome of the request being handled on this task.
    static REQUEST_OUTCOME: std::cell::Cell<Option<CacheOutcome>>;
}

/// Records a cache outcome: counted, and remembered for the request's log line.
pub fn note_cache(outcome: CacheOutcome) {
    metrics().cache_event(outcome).inc();
    let _ = REQUEST_OUTCOME.try_with(|cell| cell.set(Some(outcome)));
}

/// Runs a request's handling with room for its cache outcome, and returns both.
pub async fn with_cache_outcome<F: std::future::Future>(
    handling: F,
) -> (F::Output, Option<CacheOutcome>) {
    REQUEST_OUTCOME
        .scope(std::cell::Cell::new(None), async {
            let output = handling.await;
            (output, REQUEST_OUTCOME.with(|cell| cell.get()))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_registered_and_rendered() {
        let m = metrics();
        m.cache_events.with_label_values(&["hit"]).inc();
        m.upstream_requests.with_label_values(&["u", "ok"]).inc();
        m.http_requests
            .with_label_values(&["/r", "GET", "200"])
            .inc();
        m.http_duration.with_label_values(&["/r"]).observe(0.01);
        m.http_response_bytes.with_label_values(&["/r"]).inc_by(1);
        m.http_versions.with_label_values(&["HTTP/2.0"]).inc();
        m.upstream_bytes.with_label_values(&["u"]).inc_by(1);
        m.upstream_duration.with_label_values(&["u"]).observe(0.01);
        m.hash_completions.with_label_values(&["ok"]).inc_by(0);
        let text = m.render();
        for name in [
            "tfmirror_http_requests_total",
            "tfmirror_http_request_duration_seconds_bucket",
            "tfmirror_http_response_bytes_total",
            "tfmirror_http_requests_by_version_total",
            "tfmirror_cache_events_total",
            "tfmirror_upstream_requests_total",
            "tfmirror_upstream_bytes_total",
            "tfmirror_upstream_request_duration_seconds_bucket",
            "tfmirror_downloads_in_flight",
            "tfmirror_verification_failures_total",
            "tfmirror_version_lists_refused_total",
            "tfmirror_status_snapshots_total",
            "tfmirror_cache_bytes",
            "tfmirror_cache_files",
            "tfmirror_hash_completions_pending",
            "tfmirror_hash_completions_total",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}

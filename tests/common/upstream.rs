//! The fake releases.hashicorp.com: an actix server on 127.0.0.1 that serves what it is given,
//! counts every request and injects faults on demand (status codes with `Retry-After`, delays,
//! garbage, throttled bodies, random failures, refusing connections). It can also answer a
//! path with a redirect (GitHub-style release assets), demand a bearer token, and records the
//! `Authorization` header each request carried.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use actix_web::{dev::ServerHandle, web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;

/// Something the fake upstream does instead of (or before) answering normally.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, and `Retry-After: <secs>` when given.
    Status(u16, Option<u64>),
    /// Wait this long, then answer normally.
    Delay(std::time::Duration),
    /// Answer 200 with bytes that were never published.
    Garbage,
}

#[derive(Default)]
struct UpstreamState {
    files: HashMap<String, Bytes>,
    hits: HashMap<String, usize>,
    /// product -> version -> per-version index JSON
    products: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// Faults for the next requests of a path, used up one per request.
    next_faults: HashMap<String, std::collections::VecDeque<Fault>>,
    /// A fault for every request of a path, until cleared.
    standing_faults: HashMap<String, Fault>,
    /// Paths whose body is sent `(chunk bytes, pause between chunks)` at a time.
    throttled: HashMap<String, (usize, std::time::Duration)>,
    /// When the first chunk of a throttled path's body first went out.
    first_sent: HashMap<String, std::time::Instant>,
    in_flight: usize,
    max_in_flight: usize,
    /// Share of all requests answered 503, at random.
    failure_rate: f64,
    /// Paths answered `302 Found` with this `Location`.
    redirects: HashMap<String, String>,
    /// When set, a request without `Authorization: Bearer <token>` gets 401.
    required_token: Option<String>,
    /// `(path, Authorization header or None)` for every request, in arrival order.
    authorizations: Vec<(String, Option<String>)>,
    /// `Content-Type` to answer a path with, when not the default.
    content_types: HashMap<String, String>,
}

/// A releases.hashicorp.com-shaped server on 127.0.0.1 that counts every request and can be
/// told to misbehave.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<UpstreamState>>,
    handle: ServerHandle,
}

/// Counts a request as in flight until the response body is done or dropped.
struct InFlight(Arc<Mutex<UpstreamState>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

async fn fake_upstream_answer(state: Arc<Mutex<UpstreamState>>, req: HttpRequest) -> HttpResponse {
    let path = req.path().to_owned();
    let authorization = req
        .headers()
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (fault, body, throttle, redirect, content_type) = {
        let mut s = state.lock().unwrap();
        *s.hits.entry(path.clone()).or_default() += 1;
        s.authorizations.push((path.clone(), authorization.clone()));
        if let Some(token) = &s.required_token {
            if authorization.as_deref() != Some(format!("Bearer {token}").as_str()) {
                return HttpResponse::Unauthorized()
                    .content_type("application/json")
                    .body(r#"{"errors":["not authorized"]}"#);
            }
        }
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        let random_failure = (s.failure_rate > 0.0 && rand::random::<f64>() < s.failure_rate)
            .then_some(Fault::Status(503, None));
        let fault = s
            .next_faults
            .get_mut(&path)
            .and_then(|q| q.pop_front())
            .or_else(|| s.standing_faults.get(&path).cloned())
            .or(random_failure);
        (
            fault,
            s.files.get(&path).cloned(),
            s.throttled.get(&path).copied(),
            s.redirects.get(&path).cloned(),
            s.content_types.get(&path).cloned(),
        )
    };
    let guard = InFlight(state);
    match fault {
        Some(Fault::Status(code, retry_after)) => {
            let mut response =
                HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap());
            if let Some(secs) = retry_after {
                response.insert_header(("Retry-After", secs.to_string()));
            }
            return response.body("injected fault");
        }
        Some(Fault::Delay(pause)) => tokio::time::sleep(pause).await,
        Some(Fault::Garbage) => return HttpResponse::Ok().body("<html>garbage</html>"),
        None => {}
    }
    if let Some(location) = redirect {
        return HttpResponse::Found()
            .insert_header(("Location", location))
            .finish();
    }
    let Some(body) = body else {
        return HttpResponse::NotFound().body("not found");
    };
    match throttle {
        None => {
            let mut response = HttpResponse::Ok();
            if let Some(content_type) = content_type {
                response.content_type(content_type);
            }
            response.body(body)
        }
        Some((chunk, pause)) => {
            let len = body.len() as u64;
            let chunks: Vec<Bytes> = body.chunks(chunk).map(Bytes::copy_from_slice).collect();
            let stream = futures_util::stream::unfold(
                (chunks.into_iter(), guard, true),
                move |(mut rest, guard, first)| {
                    let path = path.clone();
                    async move {
                        let next = rest.next()?;
                        tokio::time::sleep(pause).await;
                        if first {
                            let mut s = guard.0.lock().unwrap();
                            s.first_sent
                                .entry(path)
                                .or_insert_with(std::time::Instant::now);
                        }
                        Some((Ok::<_, std::io::Error>(next), (rest, guard, false)))
                    }
                },
            );
            HttpResponse::Ok().no_chunking(len).streaming(stream)
        }
    }
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(UpstreamState::default()));
        let shared = state.clone();
        let server = HttpServer::new(move || {
            let state = shared.clone();
            App::new().default_service(web::to(move |req: HttpRequest| {
                fake_upstream_answer(state.clone(), req)
            }))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            addr,
            state,
            handle,
        }
    }

    /// The next requests of `path` meet these faults, one each, then it answers normally.
    pub fn fail_next(&self, path: &str, faults: impl IntoIterator<Item = Fault>) {
        self.state
            .lock()
            .unwrap()
            .next_faults
            .entry(path.to_owned())
            .or_default()
            .extend(faults);
    }

    /// Every request of `path` meets `fault` until `heal`.
    pub fn fail_always(&self, path: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .standing_faults
            .insert(path.to_owned(), fault);
    }

    pub fn heal(&self, path: &str) {
        let mut s = self.state.lock().unwrap();
        s.standing_faults.remove(path);
        s.next_faults.remove(path);
    }

    /// Sends `path`'s body `chunk` bytes at a time with `pause` before each chunk.
    pub fn throttle(&self, path: &str, chunk: usize, pause: std::time::Duration) {
        self.state
            .lock()
            .unwrap()
            .throttled
            .insert(path.to_owned(), (chunk, pause));
    }

    /// Answers this share of all requests (0.0–1.0) with a 503, at random.
    pub fn set_failure_rate(&self, rate: f64) {
        self.state.lock().unwrap().failure_rate = rate;
    }

    /// The most requests that were ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn put(&self, path: &str, body: impl Into<Bytes>) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_owned(), body.into());
    }

    /// Answers `path` with `302 Found` to `location` (an absolute URL, usually on another host).
    pub fn redirect(&self, path: &str, location: &str) {
        self.state
            .lock()
            .unwrap()
            .redirects
            .insert(path.to_owned(), location.to_owned());
    }

    /// Serves `path` with this `Content-Type` (registry documents are `application/json`).
    pub fn set_content_type(&self, path: &str, content_type: &str) {
        self.state
            .lock()
            .unwrap()
            .content_types
            .insert(path.to_owned(), content_type.to_owned());
    }

    /// From now on every request must carry `Authorization: Bearer <token>`, else 401.
    pub fn require_token(&self, token: &str) {
        self.state.lock().unwrap().required_token = Some(token.to_owned());
    }

    /// The `Authorization` header of every request so far, with its path, in arrival order.
    pub fn authorizations(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().authorizations.clone()
    }

    /// Every path requested so far (each once), sorted.
    pub fn requested_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.state.lock().unwrap().hits.keys().cloned().collect();
        paths.sort();
        paths
    }

    pub fn get(&self, path: &str) -> Option<Bytes> {
        self.state.lock().unwrap().files.get(path).cloned()
    }

    /// When the first byte of a throttled path's body first went out, if it has.
    pub fn first_byte_sent(&self, path: &str) -> Option<std::time::Instant> {
        self.state.lock().unwrap().first_sent.get(path).copied()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.lock().unwrap().hits.values().sum()
    }

    /// Stops answering: connections are refused from now on.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    /// Adds `version`'s index to the product's `index.json` (`FakeRelease::publish`).
    pub fn register_version(&self, product: &str, version: &str, index: serde_json::Value) {
        let mut state = self.state.lock().unwrap();
        state
            .products
            .entry(product.to_owned())
            .or_default()
            .insert(version.to_owned(), index);
        let versions = state.products[product].clone();
        let product_index = serde_json::json!({ "name": product, "versions": versions });
        state.files.insert(
            format!("/{product}/index.json"),
            Bytes::from(serde_json::to_vec(&product_index).unwrap()),
        );
    }
}

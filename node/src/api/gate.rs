//! What every `/v1` request passes through before its handler, cheapest check first: the client
//! address's connection cap, rate and requests at once; a place in the access log; the whole body,
//! within its time; a forwarded submission's validator signature; a place among the requests
//! served at once; then the handler, on a worker thread off the async runtime, within the request
//! time. Health probes (`/livez`, `/readyz`) pass through none of it.

use super::limits::{Clients, Connection, Refusal};
use super::{ApiError, Outcome, Signers};
use crate::access::{self, AccessLine, AccessLog};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sabt_core::hash::Hash32;
use sabt_core::sign::{PublicKey, Signature};
use sabt_core::validator::ValidatorSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What every request passes through.
#[derive(Debug)]
pub(super) struct Gate {
    /// Requests admitted at once (waiting for a worker or served).
    pub(super) permits: Arc<tokio::sync::Semaphore>,
    pub(super) max: usize,
    /// Handlers running at once.
    pub(super) workers: Arc<tokio::sync::Semaphore>,
    /// Requests that name a validator as their forwarder, at once (their signature is checked
    /// only once the body is in, so a stranger may claim one: they share this small pool).
    pub(super) forwarded: Arc<tokio::sync::Semaphore>,
    pub(super) access: AccessLog,
    pub(super) clients: Arc<Clients>,
    pub(super) max_body: usize,
    pub(super) body_timeout: Duration,
    pub(super) request_timeout: Duration,
    /// Whose signatures make a submission forwarded, and the chain they sign for.
    pub(super) validators: ValidatorSet,
    pub(super) genesis_hash: Hash32,
    pub(super) metrics: crate::metrics::Metrics,
}

/// A submission another validator forwarded, its signature checked: the handler holds its
/// transactions if their nonces run ahead ([`crate::mempool::Mempool::admit_forwarded`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forwarded;

impl Gate {
    /// Answers a request the limits refuse, and counts it (`sabt_api_refused{code}`).
    fn refuse(&self, e: ApiError) -> Response {
        self.metrics.api_refused(e.code);
        e.into_response()
    }

    /// The validator a forwarded header names, if it names one of this chain's (the signature is
    /// checked once the body is in).
    fn claimed_validator(&self, value: &HeaderValue) -> Option<(String, PublicKey, Signature)> {
        let (key, sig) = crate::forward::parse_header(value.to_str().ok()?)?;
        let v = self.validators.by_key(&key)?;
        Some((v.name.clone(), key, sig))
    }
}

fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::Connections { limit } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            format!("this address has more than {limit} connections open to the node; close some and retry"),
        ),
        Refusal::Concurrent { limit } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("this address has {limit} requests in progress; wait for their answers and retry"),
        ),
        Refusal::Rate { retry_after } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "this address made more requests than the node serves it per second; retry after Retry-After",
        )
        .retry_after(retry_after),
    }
}

fn busy(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
}

/// Records a request's line when the answer is ready, or, if the request is dropped first (the
/// client went away), records it as cancelled.
struct Pending {
    slot: Option<access::Slot>,
    access: AccessLine,
}

impl Pending {
    fn finish(mut self, status: u16, outcome: String, signers: Vec<String>) {
        if let Some(slot) = self.slot.take() {
            let access = AccessLine { status, outcome, signers, ..self.access.clone() };
            slot.send(access);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.send(AccessLine { status: 499, outcome: "cancelled".into(), ..self.access.clone() });
        }
    }
}

pub(super) async fn gate(
    State(g): State<Arc<Gate>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if !req.uri().path().starts_with("/v1/") {
        return next.run(req).await;
    }
    let conn = req.extensions().get::<Arc<Connection>>().cloned();
    let claimed = req.headers().get(crate::forward::FORWARDED_HEADER).map(|v| g.claimed_validator(v));
    // A request that names one of the validators as its forwarder is limited with the
    // validators' traffic, in a small pool of its own, not with its address's (peers share
    // addresses with clients behind a NAT, or on one machine); its signature is checked once the
    // body is in. Every other request, one naming no validator among them, is its address's.
    let _held = match (&conn, &claimed) {
        (Some(c), Some(Some(_))) => {
            if let Err(r) = g.clients.within_connections(c) {
                return g.refuse(refused(r));
            }
            match g.forwarded.clone().try_acquire_owned() {
                Ok(p) => (None, Some(p)),
                Err(_) => return g.refuse(busy("the node is taking its limit of forwarded batches; retry shortly")),
            }
        }
        (Some(c), _) => match g.clients.start(c) {
            Ok(f) => (Some(f), None),
            Err(r) => return g.refuse(refused(r)),
        },
        (None, _) => (None, None),
    };
    if let Some(None) = claimed {
        return g.refuse(forged("it names no validator of this chain"));
    }
    let Some(slot) = g.access.reserve() else {
        return g.refuse(busy("the access log cannot record more requests right now; retry shortly"));
    };
    let target = req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let pending = Pending {
        slot: Some(slot),
        access: AccessLine {
            seq: 0,
            hash: String::new(),
            time_ms: crate::clock::now_ms(),
            client: client.to_string(),
            forwarded_for: req
                .headers()
                .get("x-forwarded-for")
                .map(|v| access::bounded(&String::from_utf8_lossy(v.as_bytes()), 256)),
            signers: Vec::new(),
            method: req.method().to_string(),
            target: access::target(&target),
            status: 0,
            outcome: String::new(),
        },
    };
    let resp = match admit(&g, req, claimed.flatten(), conn.as_deref()).await {
        Ok(req) => serve(&g, req, next).await.unwrap_or_else(|e| g.refuse(e)),
        Err(e) => g.refuse(e),
    };
    let status = resp.status();
    let outcome = match resp.extensions().get::<Outcome>() {
        Some(o) => o.0.to_string(),
        None if status.is_client_error() || status.is_server_error() => format!("http_{}", status.as_u16()),
        None => "ok".to_string(),
    };
    let signers = resp.extensions().get::<Signers>().map(|s| s.0.clone()).unwrap_or_default();
    pending.finish(status.as_u16(), outcome, signers);
    resp
}

fn forged(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forged_forward",
        format!("the {} header is not a validator's signature over this body: {why}", crate::forward::FORWARDED_HEADER),
    )
}

/// Reads the whole body within its time and size, and checks a forwarded submission's signature.
async fn admit(
    g: &Gate,
    req: Request,
    claimed: Option<(String, PublicKey, Signature)>,
    conn: Option<&Connection>,
) -> Result<Request, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the request body is larger than this node's limit of {} bytes", g.max_body),
        )
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > g.max_body as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(g.body_timeout, axum::body::to_bytes(body, g.max_body)).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body did not arrive within {} ms", g.body_timeout.as_millis()),
            ));
        }
        Ok(Err(e)) => {
            return Err(if e.into_inner().downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                too_large()
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_body", "the request body could not be read")
            });
        }
        Ok(Ok(b)) => b,
    };
    let mut req = Request::from_parts(parts, Body::from(bytes.clone()));
    if let Some((validator, key, sig)) = claimed {
        if !crate::forward::verify(&key, &sig, &g.genesis_hash, &bytes) {
            // A forgery costs its address a request of its rate, as any request does.
            if let Some(c) = conn {
                g.clients.charge(c.key()).map_err(refused)?;
            }
            return Err(forged("the signature does not verify"));
        }
        tracing::trace!(validator, "a forwarded submission");
        req.extensions_mut().insert(Forwarded);
    }
    Ok(req)
}

/// Runs the handler on a worker thread, within the limits of requests at once and request time.
async fn serve(g: &Gate, req: Request, next: Next) -> Result<Response, ApiError> {
    let Ok(permit) = g.permits.clone().try_acquire_owned() else {
        return Err(busy(format!("the node is serving its limit of {} requests at once; retry shortly", g.max)));
    };
    let started = tokio::time::Instant::now();
    let timed_out = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the node could not answer within {} ms; retry later", g.request_timeout.as_millis()),
        )
    };
    let worker = tokio::time::timeout(g.request_timeout, g.workers.clone().acquire_owned())
        .await
        .map_err(|_| timed_out())?
        .map_err(ApiError::internal)?;
    // Handlers read the store and may work for a while (a block rendered, a proof built): on a
    // thread of the blocking pool they never hold up the runtime's workers, which keep accepting
    // connections and answering health probes. The permits go with the work: a handler that
    // outlives its request still counts until it ends.
    let handle = tokio::runtime::Handle::current();
    let work = tokio::task::spawn_blocking(move || {
        let _held = (permit, worker);
        handle.block_on(next.run(req))
    });
    let left = g.request_timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, work).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(ApiError::internal(e)),
        Err(_) => Err(timed_out()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::limits::Limits;
    use super::*;
    use axum::Router;
    use axum::routing::{get, post};
    use sabt_core::sign::SecretKey;
    use std::num::NonZeroU32;
    use tower::ServiceExt as _;

    fn request(method: &str, path: &str, body: Vec<u8>) -> Request {
        axum::http::Request::builder()
            .method(method)
            .uri(path)
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 9))))
            .body(Body::from(body))
            .unwrap()
    }

    fn gate(max: usize, access: AccessLog, validators: ValidatorSet) -> Arc<Gate> {
        let limits = Limits {
            max_connections: 64,
            connections_per_address: 2,
            concurrent_per_address: 16,
            per_second: NonZeroU32::new(1000).unwrap(),
            burst: NonZeroU32::new(1000).unwrap(),
            exempt: Vec::new(),
        };
        Arc::new(Gate {
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            workers: Arc::new(tokio::sync::Semaphore::new(2)),
            forwarded: Arc::new(tokio::sync::Semaphore::new(4)),
            access,
            clients: Clients::new(limits, Default::default()),
            max_body: 1024,
            body_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            validators,
            genesis_hash: Hash32([7; 32]),
            metrics: crate::metrics::Metrics::register("gate-test"),
        })
    }

    fn validators(keys: &[&SecretKey]) -> ValidatorSet {
        ValidatorSet::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| sabt_core::validator::Validator { name: format!("v{i}"), key: k.public(), power: 1 })
                .collect(),
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn over_the_limit_is_503_with_retry_after_health_still_answers_and_served_requests_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let (access, _failed) = access::open(&dir.path().join("access.log")).unwrap();
        let g = gate(1, access.clone(), validators(&[&SecretKey::from_seed(&[1; 32])]));
        let permits = g.permits.clone();
        let release = Arc::new(tokio::sync::Notify::new());
        let r = release.clone();
        let app: Router = Router::new()
            .route(
                "/v1/slow",
                get(move || {
                    let r = r.clone();
                    async move {
                        r.notified().await;
                        "done"
                    }
                }),
            )
            .route("/livez", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(g, super::gate));
        let first = tokio::spawn(app.clone().oneshot(request("GET", "/v1/slow?x=1", vec![])));
        while permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let second = app.clone().oneshot(request("GET", "/v1/slow", vec![])).await.unwrap();
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let live = app.clone().oneshot(request("GET", "/livez", vec![])).await.unwrap();
        assert_eq!(live.status(), StatusCode::OK, "health probes are never gated");
        release.notify_one();
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        for _ in 0..200 {
            if access.head_seq() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let text = std::fs::read_to_string(dir.path().join("access.log")).unwrap();
        assert_eq!(access::verify(text.as_bytes()).unwrap().seq, 2);
        let lines: Vec<access::AccessLine> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let seen: Vec<(&str, u16, &str)> =
            lines.iter().map(|l| (l.target.as_str(), l.status, l.outcome.as_str())).collect();
        assert!(seen.contains(&("/v1/slow?x=1", 200, "ok")), "{seen:?}");
        assert!(seen.contains(&("/v1/slow", 503, "busy")), "{seen:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_a_validators_signature_over_the_body_makes_a_submission_forwarded() {
        let dir = tempfile::tempdir().unwrap();
        let (access, _failed) = access::open(&dir.path().join("access.log")).unwrap();
        let validator = SecretKey::from_seed(&[1; 32]);
        let stranger = SecretKey::from_seed(&[2; 32]);
        let g = gate(8, access, validators(&[&validator]));
        let genesis_hash = g.genesis_hash;
        let app: Router = Router::new()
            .route(
                "/v1/txs/batch",
                post(|f: Option<axum::Extension<Forwarded>>, body: String| async move {
                    format!("{}:{body}", if f.is_some() { "forwarded" } else { "client" })
                }),
            )
            .layer(axum::middleware::from_fn_with_state(g, super::gate));
        let send = |header: Option<String>, body: &str| {
            let mut req = request("POST", "/v1/txs/batch", body.as_bytes().to_vec());
            if let Some(h) = header {
                req.headers_mut().insert(crate::forward::FORWARDED_HEADER, HeaderValue::from_str(&h).unwrap());
            }
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await.unwrap();
                let status = resp.status();
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
                (status, String::from_utf8(body.to_vec()).unwrap())
            }
        };
        let body = r#"{"txs":[]}"#;
        let signed = crate::forward::header_value(&validator, &genesis_hash, body.as_bytes());
        assert_eq!(send(Some(signed.clone()), body).await, (StatusCode::OK, format!("forwarded:{body}")));
        assert_eq!(send(None, body).await, (StatusCode::OK, format!("client:{body}")));
        for (case, header, sent) in [
            ("the old mark", Some("1".to_string()), body),
            ("a stranger's key", Some(crate::forward::header_value(&stranger, &genesis_hash, body.as_bytes())), body),
            ("another body", Some(signed.clone()), r#"{"txs":["00"]}"#),
            ("another chain", Some(crate::forward::header_value(&validator, &Hash32([8; 32]), body.as_bytes())), body),
        ] {
            let (status, answer) = send(header, sent).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{case}: {answer}");
            assert!(answer.contains("forged_forward"), "{case}: {answer}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_forwarding_mark_passes_no_connection_cap_and_shares_a_small_pool() {
        let dir = tempfile::tempdir().unwrap();
        let (access, _failed) = access::open(&dir.path().join("access.log")).unwrap();
        let validator = SecretKey::from_seed(&[1; 32]);
        let g = gate(8, access, validators(&[&validator]));
        let (clients, pool, genesis_hash) = (g.clients.clone(), g.forwarded.clone(), g.genesis_hash);
        let app: Router = Router::new()
            .route("/v1/txs/batch", post(|| async { "taken" }))
            .layer(axum::middleware::from_fn_with_state(g, super::gate));
        let conns: Vec<Arc<Connection>> =
            (0..3).map(|_| Arc::new(clients.connect("10.0.0.1".parse().unwrap()).unwrap())).collect();
        assert!(conns[2].over_cap, "the third connection of an address whose cap is 2");
        let body = r#"{"txs":[]}"#;
        let mark = crate::forward::header_value(&validator, &genesis_hash, body.as_bytes());
        let send = |conn: &Arc<Connection>| {
            let mut req = request("POST", "/v1/txs/batch", body.as_bytes().to_vec());
            req.headers_mut().insert(crate::forward::FORWARDED_HEADER, HeaderValue::from_str(&mark).unwrap());
            req.extensions_mut().insert(conn.clone());
            app.clone().oneshot(req)
        };
        assert_eq!(send(&conns[0]).await.unwrap().status(), StatusCode::OK);
        // A slow body under a claimed mark cannot take connections beyond its address's cap…
        assert_eq!(send(&conns[2]).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
        // …nor more than the forwarded batches' own small pool.
        let all = pool.clone().acquire_many_owned(4).await.unwrap();
        assert_eq!(send(&conns[0]).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(all);
        assert_eq!(send(&conns[1]).await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_over_the_limit_is_413_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (access, _failed) = access::open(&dir.path().join("access.log")).unwrap();
        let g = gate(8, access, validators(&[&SecretKey::from_seed(&[1; 32])]));
        let app: Router = Router::new()
            .route("/v1/txs", post(|body: String| async move { body }))
            .layer(axum::middleware::from_fn_with_state(g, super::gate));
        let resp = app.clone().oneshot(request("POST", "/v1/txs", vec![b'x'; 2000])).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let mut req = request("POST", "/v1/txs", vec![b'x'; 10]);
        req.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from_static("5000000"));
        assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
        let ok = app.oneshot(request("POST", "/v1/txs", vec![b'x'; 1000])).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
    }
}

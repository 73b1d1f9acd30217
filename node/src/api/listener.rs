//! Accepting connections and serving HTTP/1 on them, with a timer.
//!
//! `axum::serve` runs hyper without a timer, which leaves hyper's header-read timeout off: a
//! client that sends a request's head one byte every few seconds holds its connection for ever.
//! This loop serves each connection with hyper's HTTP/1 builder and tokio's timer, so a request's
//! head must arrive within `api.header_timeout_ms`, and a kept-alive connection idle that long is
//! closed. Every connection is counted by client address ([`super::limits`]); beyond the node's
//! cap a new connection is answered 503 (if its socket takes the bytes without waiting) and
//! closed at once.

use super::limits::Clients;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tower::Service as _;

/// Connections the kernel queues before they are accepted (capped by `net.core.somaxconn`).
pub(super) const BACKLOG: u32 = 4096;

/// The answer to a connection beyond the node's cap, written without waiting.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: application/json\r\n\
content-length: 85\r\nconnection: close\r\n\r\n\
{\"code\":\"busy\",\"message\":\"the node has its limit of connections open; retry shortly\"}";

/// Serves `app` on every connection `listener` accepts, until the future is dropped.
pub(super) async fn run(
    listener: tokio::net::TcpListener,
    app: Router,
    clients: Arc<Clients>,
    header_timeout: Duration,
    metrics: crate::metrics::Metrics,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            // Out of file descriptors, or a connection reset before it was accepted: the listener
            // itself is fine; pause so as not to spin, then go on.
            Err(e) if is_transient(&e) => {
                tracing::warn!(error = %e, "cannot accept an API connection; pausing 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(conn) = clients.connect(peer.ip()) else {
            metrics.api_refused("node_connections");
            let _ = stream.try_write(TOO_MANY);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(conn);
        let per_conn = conn.clone();
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(per_conn.clone());
            app.clone().call(req.map(axum::body::Body::new))
        });
        let serving = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(e) = serving.await {
                tracing::debug!(client = %peer, error = %e, "API connection ended");
            }
            drop(conn);
        });
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted | WouldBlock)
        || matches!(e.raw_os_error(), Some(code) if code == 23 || code == 24) // ENFILE, EMFILE
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_answer_beyond_the_cap_is_well_formed_http_with_its_exact_length() {
        let text = std::str::from_utf8(TOO_MANY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 ") && head.contains("\r\nretry-after: 1"));
        let length: usize =
            head.split("\r\n").find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
        assert_eq!(length, body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], "busy");
    }
}

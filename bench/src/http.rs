//! A minimal client of the node API for the load generator: JSON in, JSON out, the node's error
//! code on refusal, bounded answers.

use anyhow::{Context as _, anyhow};
use serde_json::Value;
use std::time::Duration;

/// One node's API.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    agent: ureq::Agent,
}

/// An answer: the HTTP status and the JSON body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body (JSON).
    pub body: Value,
    /// The `Retry-After` the node sent (seconds, at most [`MAX_RETRY_AFTER`]), if any.
    pub retry_after: Option<Duration>,
}

/// The longest `Retry-After` the generator honours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

impl Answer {
    /// The node's stable error code, for a refusal.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("unknown")
    }
}

impl Api {
    /// A client of the node at `url`.
    pub fn new(url: &str) -> Api {
        // The node's own agent: each step bounded, no thread started per request.
        let agent = sabt_node::forward::agent(Duration::from_secs(30));
        Api { base: url.trim_end_matches('/').to_string(), agent }
    }

    fn read(&self, path: &str, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> anyhow::Result<Answer> {
        let mut resp = r.with_context(|| format!("cannot reach {}{path}", self.base))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .with_context(|| format!("the answer to {path} is not JSON"))?;
        Ok(Answer { status, body, retry_after })
    }

    /// `GET path`, any status.
    pub fn get_any(&self, path: &str) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        // A read is made again when a system call in it was interrupted (seen once, at the start
        // of a run beside the API attacker); it changes nothing at the node.
        let mut r = self.agent.get(&url).call();
        for _ in 0..3 {
            match &r {
                Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    r = self.agent.get(&url).call();
                }
                _ => break,
            }
        }
        self.read(path, r)
    }

    /// `GET path`; a status other than 2xx is an error naming the node's code.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let a = self.get_any(path)?;
        if (200..300).contains(&a.status) {
            Ok(a.body)
        } else {
            Err(anyhow!("{path}: {} {}: {}", a.status, a.code(), a.body["message"].as_str().unwrap_or("")))
        }
    }

    /// `POST path` with a JSON body, any status.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        self.read(path, self.agent.post(&format!("{}{path}", self.base)).send_json(body))
    }
}

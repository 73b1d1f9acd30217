//! A small client for the node's HTTP API.

use crate::files::{MAX_GENESIS, read_bounded};
use anyhow::{Context as _, anyhow};
use sabt_core::genesis::Genesis;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Where the node is and how to reach it: one node, or several of the same network for failover
/// (`--node URL,URL,…`): a request goes to the node that answered last, and to the next when it
/// cannot be reached or asks to be left alone (429, 503).
#[derive(Debug, Clone)]
pub struct Node {
    bases: Vec<String>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    agent: ureq::Agent,
}

/// How long a request is made again while the node answers 429 (mempool full, this client over
/// its rate or its share of the node) or 503 (not ready yet, busy): the node took nothing, and
/// says in `Retry-After` when to come back.
pub const RETRY_WITHIN: Duration = Duration::from_secs(60);
/// The longest wait between two attempts, whatever `Retry-After` asks.
const RETRY_WAIT_MAX: Duration = Duration::from_secs(10);

/// The wait before attempt `attempt` (from 1) after an answer of `status` with `retry_after`
/// (seconds), or `None` if the answer is final: what the node asks, else a backoff doubling from
/// half a second; at most [`RETRY_WAIT_MAX`].
fn retry_wait(status: u16, retry_after: Option<&str>, attempt: u32) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    let asked = retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let backoff = Duration::from_millis(500).saturating_mul(1 << attempt.saturating_sub(1).min(5));
    Some(asked.unwrap_or(backoff).clamp(Duration::from_millis(100), RETRY_WAIT_MAX))
}

/// A request that reached the node and was refused, with the node's code and message.
#[derive(Debug, thiserror::Error)]
#[error("the node answered {status} {code}: {message}")]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// Stable machine code.
    pub code: String,
    /// Human message.
    pub message: String,
}

impl Node {
    /// A client for the node at `url` (e.g. `http://127.0.0.1:26701`), or for the nodes of a
    /// comma-separated list of such URLs.
    pub fn new(url: &str) -> anyhow::Result<Node> {
        let bases: Vec<String> =
            url.split(',').map(|u| u.trim().trim_end_matches('/').to_string()).filter(|u| !u.is_empty()).collect();
        if bases.is_empty() {
            return Err(anyhow!("--node is empty: give a node's URL, e.g. http://127.0.0.1:26701"));
        }
        if let Some(bad) = bases.iter().find(|b| !(b.starts_with("http://") || b.starts_with("https://"))) {
            return Err(anyhow!(
                "--node {bad:?} must be an http:// or https:// URL, e.g. http://127.0.0.1:26701 \
                 (several, for failover, separated by commas)"
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Node { bases, current: Default::default(), agent })
    }

    /// The node requests go to now.
    fn base(&self) -> &str {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len();
        &self.bases[i]
    }

    /// Moves on to the next node, if there are several; says so on stderr.
    fn fail_over(&self, why: &str) -> bool {
        if self.bases.len() < 2 {
            return false;
        }
        let from = self.base().to_string();
        self.current.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        eprintln!("{from} {why}; trying {}", self.base());
        true
    }

    /// Makes a request with `send` (given the URL) until a node answers for good (see
    /// [`RETRY_WITHIN`]): the answer if it is a success, else the node's refusal. A node that
    /// cannot be reached passes the request to the next one, once around the list.
    fn send_retrying(
        &self,
        path: &str,
        send: impl Fn(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let started = std::time::Instant::now();
        let (mut attempt, mut unreachable) = (0, 0);
        loop {
            attempt += 1;
            let base = self.base().to_string();
            let mut resp = match send(&format!("{base}{path}")) {
                Ok(r) => r,
                Err(e) => {
                    unreachable += 1;
                    if unreachable < self.bases.len() && self.fail_over(&format!("cannot be reached ({e})")) {
                        continue;
                    }
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot reach the node at {base}; is it running? (check --node or SABT_NODE)"
                    )));
                }
            };
            unreachable = 0;
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(resp);
            }
            let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body: Value = resp
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_json()
                .with_context(|| format!("the answer of {base} to {path} ({status}) is not JSON"))?;
            let refused = Refused {
                status,
                code: body["code"].as_str().unwrap_or("unknown").to_string(),
                message: body["message"].as_str().unwrap_or("").to_string(),
            };
            match retry_wait(status, retry_after.as_deref(), attempt) {
                Some(wait) if started.elapsed() + wait < RETRY_WITHIN => {
                    if !self.fail_over(&format!("answered {status} {}", refused.code)) && attempt == 1 {
                        eprintln!("the node answered {status} {}; trying again in {wait:?}", refused.code);
                    }
                    std::thread::sleep(wait);
                }
                _ => return Err(refused.into()),
            }
        }
    }

    /// [`Node::send_retrying`], the answer read as JSON.
    fn call(
        &self,
        path: &str,
        send: impl Fn(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        self.send_retrying(path, send)?
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .with_context(|| format!("the node's answer to {path} is not JSON"))
    }

    /// `GET path`, its answer copied to `out` as it arrives, however long (a streamed export);
    /// returns the bytes copied.
    pub fn get_to(&self, path: &str, out: &mut dyn std::io::Write) -> anyhow::Result<u64> {
        // Not the agent's 30 s for the whole request: a large export takes minutes to arrive (a
        // node gives it at most 10); each step is still bounded.
        let step = Some(Duration::from_secs(30));
        let mut resp = self.send_retrying(path, |url| {
            let config = self.agent.get(url).config().timeout_global(None).timeout_connect(step);
            config.timeout_recv_response(step).timeout_recv_body(Some(Duration::from_secs(660))).build().call()
        })?;
        let mut body = resp.body_mut().with_config().limit(u64::MAX).reader();
        std::io::copy(&mut body, out).with_context(|| format!("the node's answer to {path} was cut off"))
    }

    /// `GET path`, as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(path, |url| self.agent.get(url).call())
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(path, |url| self.agent.post(url).send_json(body))
    }
}

/// The genesis to trust: the file given, else the node's (its hash is printed on stderr so the
/// user can compare it with a copy obtained out of band).
pub fn genesis_of(node: &Node, path: Option<&PathBuf>) -> anyhow::Result<Genesis> {
    match path {
        Some(p) => {
            Genesis::from_json(&read_bounded(p, MAX_GENESIS).with_context(|| format!("--genesis {}", p.display()))?)
                .with_context(|| format!("{} is not a valid genesis", p.display()))
        }
        None => {
            let g = Genesis::from_json(&node.get("/v1/genesis")?.to_string()).context("the node's genesis")?;
            eprintln!("trusting the node's genesis {} (pass --genesis to check against your own copy)", g.hash());
            Ok(g)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn refusals_that_take_nothing_are_retried_after_what_the_node_asks_within_bounds() {
        assert_eq!(retry_wait(429, Some("3"), 1), Some(Duration::from_secs(3)));
        assert_eq!(retry_wait(503, Some("600"), 1), Some(RETRY_WAIT_MAX), "a wait beyond 10 s is cut");
        assert_eq!(retry_wait(503, Some("0"), 1), Some(Duration::from_millis(100)));
        assert_eq!(retry_wait(503, None, 1), Some(Duration::from_millis(500)));
        assert_eq!(retry_wait(503, None, 3), Some(Duration::from_secs(2)), "backoff doubles");
        assert_eq!(retry_wait(429, Some("soon"), 10), Some(RETRY_WAIT_MAX));
        for final_status in [400, 404, 409, 413, 422, 500] {
            assert_eq!(retry_wait(final_status, Some("1"), 1), None, "{final_status} is final");
        }
    }
}

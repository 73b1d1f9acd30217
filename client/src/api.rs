//! A small client for the node's HTTP API.

use crate::files::{MAX_GENESIS, read_bounded};
use anyhow::{Context as _, anyhow};
use sabt_core::genesis::Genesis;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Where the node is and how to reach it.
#[derive(Debug, Clone)]
pub struct Node {
    base: String,
    agent: ureq::Agent,
}

/// How long a submission waits for a node that is not ready yet.
pub const NOT_READY_WAIT: Duration = Duration::from_secs(60);

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
    /// A client for the node at `url` (e.g. `http://127.0.0.1:26701`).
    pub fn new(url: &str) -> anyhow::Result<Node> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(anyhow!("--node {url:?} must be an http:// or https:// URL, e.g. http://127.0.0.1:26701"));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(Node { base, agent })
    }

    fn answer(&self, path: &str, r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> anyhow::Result<Value> {
        let mut resp = r.with_context(|| {
            format!("cannot reach the node at {}; is it running? (check --node or SABT_NODE)", self.base)
        })?;
        let status = resp.status().as_u16();
        let body: Value = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .with_context(|| format!("the node's answer to {path} is not JSON"))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(Refused {
            status,
            code: body["code"].as_str().unwrap_or("unknown").to_string(),
            message: body["message"].as_str().unwrap_or("").to_string(),
        }
        .into())
    }

    /// `GET path`, as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        self.answer(path, self.agent.get(&url).call())
    }

    /// `POST path` with a JSON body. A node that is not ready (starting, or catching up with the
    /// network) took nothing: the request is made again, every second, for up to
    /// [`NOT_READY_WAIT`].
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let started = std::time::Instant::now();
        loop {
            let r = self.answer(path, self.agent.post(&url).send_json(body));
            let not_ready =
                r.as_ref().err().and_then(|e| e.downcast_ref::<Refused>()).is_some_and(|x| x.code == "not_ready");
            if !not_ready || started.elapsed() >= NOT_READY_WAIT {
                return r;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
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

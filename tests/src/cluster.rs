//! A local cluster of real `sabt-node` processes on 127.0.0.1, for multi-node and fault tests.
//!
//! The binaries are the ones built beside the test executable (`target/debug/`), so
//! `scripts/test` builds them first. Clusters in one test binary run one at a time ([`Cluster::lock`]):
//! this machine has two cores, and consensus timing tests must not compete with each other.

use anyhow::{Context as _, anyhow, bail};
use sabt_core::block::{Block, Commit, verify_commit};
use sabt_core::checkpoint::verify_cosigned;
use sabt_core::codec;
use sabt_core::genesis::Genesis;
use sabt_core::hash::Hash32;
use sabt_core::sign::SecretKey;
use sabt_core::tx::{SignedTx, Transaction, TxBody};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static LOCK: Mutex<()> = Mutex::new(());

/// The environment variable `scripts/faults --full` sets.
pub const FULL_ENV: &str = "SABT_FAULTS_FULL";

/// `full` when the fault suites run in full (`scripts/faults --full`), `reduced` in their reduced
/// form, the one the test command and CI run: the same faults against the same real nodes, held
/// for less time (a node isolated 20 s rather than 60).
pub fn per_run<T>(full: T, reduced: T) -> T {
    if std::env::var_os(FULL_ENV).is_some() { full } else { reduced }
}

/// Directory holding the workspace binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("SABT_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/<test> → target/debug
    exe.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
}

/// A binary from the workspace.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// A running (or stopped) node.
#[derive(Debug)]
pub struct NodeProc {
    /// Home directory.
    pub home: PathBuf,
    /// API base URL.
    pub url: String,
    /// Metrics base URL.
    pub metrics_url: String,
    /// The command line the node's binary runs under (as `ip netns exec NS`), empty to run it
    /// directly.
    pub prefix: Vec<String>,
    /// Environment given to the node at its next start (as `SABT_FAULTS` for a faulty node).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

/// How a cluster is laid out: [`Cluster::start`] takes the defaults, four nodes on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Number of validators.
    pub validators: u16,
    /// Node I listens for p2p on BASE+I, API on BASE+100+I, metrics on BASE+200+I.
    pub base_port: u16,
    /// Each node's IPv4 address, empty for all on 127.0.0.1.
    pub hosts: Vec<std::net::Ipv4Addr>,
    /// Each node's command prefix (see [`NodeProc::prefix`]), empty for none.
    pub prefixes: Vec<Vec<String>>,
    /// Environment for node I at its first start: `(I, name, value)`.
    pub env: Vec<(usize, String, String)>,
    /// More arguments to `sabt-genesis testnet` (as `--max-block-bytes N`).
    pub genesis_args: Vec<String>,
}

impl Setup {
    /// `validators` nodes on 127.0.0.1 with ports from `base_port`.
    pub fn new(validators: u16, base_port: u16) -> Setup {
        Setup {
            validators,
            base_port,
            hosts: Vec::new(),
            prefixes: Vec::new(),
            env: Vec::new(),
            genesis_args: Vec::new(),
        }
    }
}

/// A cluster of nodes sharing one genesis.
#[derive(Debug)]
pub struct Cluster {
    /// Its directory.
    pub dir: tempfile::TempDir,
    /// The genesis.
    pub genesis: Genesis,
    /// The nodes, `nodes[0]` is node-1.
    pub nodes: Vec<NodeProc>,
    agent: ureq::Agent,
    checked: bool,
    _guard: MutexGuard<'static, ()>,
}

/// An HTTP agent for tests: statuses are answers, not errors; 5 s timeout.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

impl Cluster {
    /// Serializes clusters within a test binary.
    fn lock() -> MutexGuard<'static, ()> {
        LOCK.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a testnet of `n` validators with ports from `base_port` and starts every node.
    /// Tests choose bases below 32768, where Linux never hands out ephemeral ports to outgoing
    /// connections, so that no other connection on the machine can hold a node's port.
    pub fn start(n: u16, base_port: u16) -> anyhow::Result<Cluster> {
        Self::start_with(Setup::new(n, base_port))
    }

    /// Writes a testnet laid out as `setup` says and starts every node.
    pub fn start_with(setup: Setup) -> anyhow::Result<Cluster> {
        let guard = Self::lock();
        let (n, base_port) = (setup.validators, setup.base_port);
        let dir = tempfile::tempdir()?;
        let mut genesis_cmd = Command::new(bin("sabt-genesis"));
        genesis_cmd.args(["testnet", "--validators", &n.to_string(), "--base-port", &base_port.to_string()]);
        genesis_cmd.args(&setup.genesis_args);
        if !setup.hosts.is_empty() {
            let hosts: Vec<String> = setup.hosts.iter().map(|h| h.to_string()).collect();
            genesis_cmd.args(["--hosts", &hosts.join(",")]);
        }
        let out = genesis_cmd
            .arg("--out")
            .arg(dir.path())
            .output()
            .context("running sabt-genesis (build the workspace binaries first: cargo build --workspace)")?;
        if !out.status.success() {
            bail!("sabt-genesis testnet failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let genesis = Genesis::from_json(&std::fs::read_to_string(dir.path().join("genesis.json"))?)?;
        let mut nodes = Vec::new();
        for i in 1..=n {
            let home = dir.path().join(format!("node-{i}"));
            let k = usize::from(i) - 1;
            let host = setup.hosts.get(k).copied().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
            nodes.push(NodeProc {
                home,
                url: format!("http://{host}:{}", base_port + 100 + i),
                metrics_url: format!("http://{host}:{}", base_port + 200 + i),
                prefix: setup.prefixes.get(k).cloned().unwrap_or_default(),
                env: setup.env.iter().filter(|(j, _, _)| *j == k).map(|(_, a, b)| (a.clone(), b.clone())).collect(),
                child: None,
            });
        }
        let mut c = Cluster { dir, genesis, nodes, agent: agent(), checked: false, _guard: guard };
        for i in 0..c.nodes.len() {
            c.start_node(i)?;
        }
        Ok(c)
    }

    /// Starts node `i` (0-based), appending to its log.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(node.home.join("log"))?;
        let mut cmd = match node.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin("sabt-node"));
                c
            }
            None => Command::new(bin("sabt-node")),
        };
        let child = cmd
            .envs(node.env.iter().map(|(a, b)| (a, b)))
            .args(["start", "--home"])
            .arg(&node.home)
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting sabt-node")?;
        node.child = Some(child);
        Ok(())
    }

    fn signal(&mut self, i: usize, sig: &str) -> anyhow::Result<()> {
        let pid =
            self.nodes[i].child.as_ref().map(|c| c.id()).ok_or_else(|| anyhow!("node {} is not running", i + 1))?;
        let st = Command::new("kill").args([sig, &pid.to_string()]).status()?;
        if !st.success() {
            bail!("kill {sig} {pid} failed");
        }
        Ok(())
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-KILL")?;
        if let Some(mut c) = self.nodes[i].child.take() {
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM node `i` and wait for a clean exit; returns its exit status.
    pub fn terminate(&mut self, i: usize) -> anyhow::Result<std::process::ExitStatus> {
        self.signal(i, "-TERM")?;
        let mut c = self.nodes[i].child.take().ok_or_else(|| anyhow!("node {} is not running", i + 1))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("node {} did not stop within 20 s of SIGTERM", i + 1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `i` exits by itself (a crash point, a refusal to go on); returns how.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            let child = self.nodes[i].child.as_mut().ok_or_else(|| anyhow!("node {} is not running", i + 1))?;
            if let Some(st) = child.try_wait()? {
                self.nodes[i].child = None;
                return Ok(st);
            }
            if Instant::now() > deadline {
                bail!("node {} still runs after {within:?}; its log ends:\n{}", i + 1, self.log_tail(i, 20));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGSTOP node `i`.
    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-STOP")
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-CONT")
    }

    /// `GET path` on node `i`; `None` if the node does not answer.
    pub fn get(&self, i: usize, path: &str) -> Option<(u16, Value)> {
        let mut r = self.agent.get(format!("{}{path}", self.nodes[i].url)).call().ok()?;
        let status = r.status().as_u16();
        let v: Value = r.body_mut().with_config().limit(64 << 20).read_json().ok()?;
        Some((status, v))
    }

    /// The sum of node `i`'s metric samples named `name` (a counter's `_total` sample included)
    /// whose labels contain `label` (as `reason="swapped_body"`, or empty for all); 0 if there is
    /// none or the node does not answer.
    pub fn metric(&self, i: usize, name: &str, label: &str) -> f64 {
        let Ok(mut r) = self.agent.get(format!("{}/metrics", self.nodes[i].metrics_url)).call() else { return 0.0 };
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let named = |l: &str| {
            l.strip_prefix(name)
                .map(|rest| rest.strip_prefix("_total").unwrap_or(rest))
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        };
        text.lines()
            .filter(|l| named(l) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Checks that the nodes in `nodes` keep committing: `windows` times in a row, a new block
    /// within `within` of the last, calling `between` at the start of each window (to submit load).
    pub fn keeps_going(
        &self,
        nodes: &[usize],
        windows: usize,
        within: Duration,
        mut between: impl FnMut(usize),
    ) -> anyhow::Result<()> {
        let top = |c: &Cluster| nodes.iter().filter_map(|&i| c.height(i)).max().unwrap_or(0);
        for w in 0..windows {
            between(w);
            let from = top(self);
            let deadline = Instant::now() + within;
            while top(self) <= from {
                if Instant::now() > deadline {
                    let logs: Vec<String> =
                        nodes.iter().map(|&i| format!("node {}:\n{}", i + 1, self.log_tail(i, 15))).collect();
                    bail!("no new block above {from} within {within:?} (window {w}); logs:\n{}", logs.join("\n"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(())
    }

    /// Every vote and proposal each node in `nodes` signed (its `signed.log`, kept by test
    /// builds), checked for equivocation: no validator signed two different values for one
    /// height, round and kind. Returns how many signed messages were read.
    pub fn check_signed(&self, nodes: &[usize]) -> anyhow::Result<usize> {
        let mut read = 0;
        for &i in nodes {
            let path = self.nodes[i].home.join("signed.log");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("node {} kept no record of its signatures ({})", i + 1, path.display()))?;
            let mut seen = std::collections::BTreeMap::new();
            for line in text.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                let [kind, height, round, value] = f[..] else { bail!("node {}: bad signed.log line {line:?}", i + 1) };
                read += 1;
                if let Some(before) = seen.insert((height.parse::<u64>()?, round.parse::<u32>()?, kind), value)
                    && before != value
                {
                    bail!(
                        "node {} signed two conflicting messages (kind {kind}) at height {height} round {round}: \
                         {before} and {value}",
                        i + 1
                    );
                }
            }
        }
        Ok(read)
    }

    pub fn height(&self, i: usize) -> Option<u64> {
        self.get(i, "/v1/status").and_then(|(_, v)| v["height"].as_u64())
    }

    /// Waits until node `i` reaches `height`.
    pub fn wait_height(&self, i: usize, height: u64, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(h) = self.height(i).filter(|h| *h >= height) {
                return Ok(h);
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not reach height {height} within {within:?} (at {:?}); its log ends:\n{}",
                    i + 1,
                    self.height(i),
                    self.log_tail(i, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every node reaches `height`.
    pub fn wait_all(&self, height: u64, within: Duration) -> anyhow::Result<()> {
        for i in 0..self.nodes.len() {
            self.wait_height(i, height, within)?;
        }
        Ok(())
    }

    /// The last `n` lines of node `i`'s log.
    pub fn log_tail(&self, i: usize, n: usize) -> String {
        let text = std::fs::read_to_string(self.nodes[i].home.join("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Node `i`'s whole log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].home.join("log")).unwrap_or_default()
    }

    /// The block and commit at `height` from node `i`, decoded and checked against each other.
    pub fn block(&self, i: usize, height: u64) -> anyhow::Result<(Block, Commit, Vec<u8>)> {
        let (status, v) =
            self.get(i, &format!("/v1/blocks/{height}/raw")).ok_or_else(|| anyhow!("node {} did not answer", i + 1))?;
        if status != 200 {
            bail!("node {} has no block {height}: {v}", i + 1);
        }
        let bytes = hex::decode(v["block"].as_str().unwrap_or_default())?;
        let block: Block = codec::decode(&bytes)?;
        let commit: Commit = codec::decode(&hex::decode(v["commit"].as_str().unwrap_or_default())?)?;
        Ok((block, commit, bytes))
    }

    /// Checks blocks 1..=`to` on every listed node: byte-identical, hash-chained from the genesis,
    /// each commit certificate valid under the genesis validator set, and each block's checkpoint
    /// cosigned by a quorum.
    pub fn check_chain(&self, nodes: &[usize], to: u64) -> anyhow::Result<()> {
        let set = self.genesis.validator_set()?;
        let mut prev = self.genesis.hash();
        for h in 1..=to {
            let (block, commit, bytes) = self.block(nodes[0], h)?;
            for &j in &nodes[1..] {
                let (_, _, other) = self.block(j, h)?;
                if other != bytes {
                    bail!("block {h} differs between node {} and node {}", nodes[0] + 1, j + 1);
                }
            }
            if block.header.prev_hash != prev {
                bail!("block {h} does not link to block {}", h - 1);
            }
            verify_commit(&commit, &set, &self.genesis.chain_id, h, &block.hash())?;
            let (_, v) = self.get(nodes[0], &format!("/v1/blocks/{h}")).ok_or_else(|| anyhow!("no block json"))?;
            let note = v["checkpoint"].as_str().unwrap_or_default();
            let cp = verify_cosigned(note, &set, &self.genesis.chain_id)?;
            if cp.checkpoint.size != block.header.log_size || cp.checkpoint.root != block.header.log_root {
                bail!("the checkpoint of block {h} is not the block's log");
            }
            prev = block.hash();
        }
        Ok(())
    }

    /// The checks every multi-node test ends with, on the nodes in `nodes` (the honest ones, all
    /// running): blocks 1 to the lowest of their heights byte-identical on each, hash-chained,
    /// each transactions root matching its body, each commit certificate valid and each
    /// checkpoint cosigned by a quorum ([`Cluster::check_chain`]); no conflicting signatures by
    /// any of them ([`Cluster::check_signed`]); then `sabt audit chain`
    /// re-executes every node's whole chain from the genesis. A cluster dropped without this
    /// check, outside a failing test, fails its test.
    pub fn finish(mut self, nodes: &[usize]) -> anyhow::Result<()> {
        let result = self.check_all(nodes);
        self.checked = true;
        if result.is_err() {
            self.keep_dir();
        }
        result
    }

    fn check_all(&self, nodes: &[usize]) -> anyhow::Result<()> {
        let mut common = u64::MAX;
        for &i in nodes {
            let h = self.height(i).ok_or_else(|| anyhow!("node {} does not answer at the final check", i + 1))?;
            common = common.min(h);
        }
        self.check_chain(nodes, common)?;
        self.check_signed(nodes)?;
        for &i in nodes {
            for h in 1..=common {
                let (block, _, _) = self.block(i, h)?;
                block
                    .check_body()
                    .map_err(|e| anyhow!("node {} holds block {h} not matching its header: {e}", i + 1))?;
            }
            let out = Command::new(bin("sabt"))
                .args(["audit", "chain", "--node", &self.nodes[i].url, "--genesis"])
                .arg(self.dir.path().join("genesis.json"))
                .output()
                .context("running sabt audit chain")?;
            if !out.status.success() {
                bail!(
                    "sabt audit chain fails on node {}: {}{}",
                    i + 1,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(())
    }

    /// Agency `i`'s admin key (it may sign transactions).
    pub fn admin_key(&self, i: usize) -> anyhow::Result<SecretKey> {
        let text = std::fs::read_to_string(self.nodes[i].home.join("keys/admin.key"))?;
        let bytes: [u8; 32] =
            hex::decode(text.trim())?.try_into().map_err(|_| anyhow!("admin key file is not 32 bytes"))?;
        Ok(SecretKey::from_seed(&bytes))
    }

    /// A batch-anchor transaction by `key` with `nonce` and a root made from `tag`.
    pub fn anchor_tx(&self, key: &SecretKey, nonce: u64, tag: u64) -> SignedTx {
        let root = sabt_core::hash::hash(sabt_core::hash::TX, &tag.to_be_bytes());
        Transaction {
            chain_id: self.genesis.chain_id.clone(),
            signer: key.public(),
            nonce,
            body: TxBody::AnchorBatch(sabt_core::entry::BatchAnchor {
                root,
                size: 1 + tag % 1000,
                kind: sabt_core::entry::RecordKind::Other,
            }),
        }
        .sign(key)
    }

    /// Submits `tx` to node `i`; returns the HTTP status and answer. A node not ready (just
    /// started, or catching up) is asked again for up to 20 s, as the `sabt` CLI does.
    pub fn submit(&self, i: usize, tx: &SignedTx) -> anyhow::Result<(u16, Value)> {
        let body = serde_json::json!({"tx": hex::encode(codec::encode(tx))});
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut r = self.agent.post(format!("{}/v1/txs", self.nodes[i].url)).send_json(&body)?;
            let status = r.status().as_u16();
            let v: Value = r.body_mut().read_json()?;
            if status != 503 || v["code"] != "not_ready" || Instant::now() > deadline {
                return Ok((status, v));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits until every transaction in `ids` is committed on every node in `nodes`.
    pub fn wait_committed(&self, nodes: &[usize], ids: &[Hash32], within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let missing = ids.iter().filter(|id| nodes.iter().any(|&i| self.committed_at(i, id).is_none())).count();
            if missing == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{missing} of {} transactions not committed on every node of {nodes:?} within {within:?}",
                    ids.len()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Where transaction `id` is committed according to node `i`, if it is.
    pub fn committed_at(&self, i: usize, id: &Hash32) -> Option<u64> {
        let (_, v) = self.get(i, &format!("/v1/txs/{id}"))?;
        (v["status"] == "committed").then(|| v["height"].as_u64()).flatten()
    }
}

impl Cluster {
    /// Keeps the cluster's directory (node homes and logs) after the cluster is dropped, and says
    /// where it is.
    fn keep_dir(&mut self) {
        let kept = self.dir.path().to_path_buf();
        let Ok(fresh) = tempfile::TempDir::new() else { return };
        let _ = std::mem::replace(&mut self.dir, fresh).keep();
        eprintln!("the failed test's node homes and logs are kept in {}", kept.display());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failed test's nodes left their logs in a directory about to be removed: keep it, and
        // say where, so the failure can be read.
        let panicking = std::thread::panicking();
        if panicking {
            self.keep_dir();
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if !panicking && !self.checked {
            panic!("a multi-node test ended without Cluster::finish, the check of every node's chain");
        }
    }
}

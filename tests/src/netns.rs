//! Separate hosts on one machine, for network fault tests: Linux network namespaces joined by a
//! bridge, whose links the tests cut, heal and slow down.
//!
//! ```text
//!   root namespace: bridge sbt<pid><k>br 10.200.S.254/24  (the test process reaches every API)
//!     ├─ veth sbt<pid><k>h0 ── namespace sbt<pid><k>n0: eth0 10.200.S.1/24
//!     ├─ veth sbt<pid><k>h1 ── namespace sbt<pid><k>n1: eth0 10.200.S.2/24
//!     └─ …
//! ```
//!
//! `<pid>` is the test process's id and `<k>` a letter numbering the networks this process made,
//! so that concurrent test processes and concurrent tests never share a name; `S` is the first
//! /24 of 10.200.0.0/16 from `pid % 256` on that no address or route of the root namespace uses.
//!
//! Links are cut with blackhole routes inside the namespaces (this machine has no iptables or
//! nft): a blackhole route to B in A's namespace drops every packet A sends to B. Cutting in both
//! namespaces cuts both ways; in one, one way only. The namespaces' links to the bridge's own
//! address are never cut, so the test process keeps watching a node that is cut off from all the
//! others.
//!
//! Nothing leaves the machine: a namespace has no route but its own /24 (no default route), the
//! bridge has no uplink, and nothing here enables forwarding or NAT in the root namespace.
//!
//! Requires root (`CAP_NET_ADMIN` and `CAP_SYS_ADMIN`) and iproute2 (`ip`, `tc`); [`available`]
//! says why not when they are missing.

use anyhow::{Context as _, anyhow, bail};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The second octet of every network made here: 10.200.S.0/24.
const OCTET: u8 = 200;
/// Most nodes in one network: names end in the node's index (two digits at most, interface names
/// being limited to 15 bytes) and addresses run from .1 to .253 (.254 is the bridge).
const MAX_NODES: usize = 99;

/// Held while a network is being made, so that two tests of one process never choose the same
/// subnet (the choice reads the root namespace's addresses and the creation adds one).
static CREATING: Mutex<()> = Mutex::new(());
/// Networks made by this process so far; numbers the names.
static MADE: AtomicUsize = AtomicUsize::new(0);
/// Whether this process has removed leftovers of an earlier process with its pid.
static SWEPT: std::sync::Once = std::sync::Once::new();

/// Why network namespaces cannot be used here, if they cannot: the process is not root, or `ip`
/// or `tc` (iproute2) cannot be run.
pub fn available() -> Result<(), String> {
    if !is_root() {
        return Err("network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN); this process is not root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("tc", "-V")] {
        match Command::new(tool).arg(arg).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!("`{tool} {arg}` failed: {}", String::from_utf8_lossy(&o.stderr).trim()));
            }
            Err(e) => return Err(format!("`{tool}` (iproute2) cannot be run: {e}")),
        }
    }
    Ok(())
}

/// Whether this process runs with effective user id 0. Read from `/proc/self/status` (its
/// `Uid:` line lists the real, effective, saved and filesystem ids), as the workspace forbids the
/// `unsafe` a `geteuid` call would need.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:").and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned)))
        })
        .is_some_and(|euid| euid == "0")
}

/// Runs `program args…`; its standard output, or an error naming the command and its stderr.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let shown = || format!("`{program} {}`", args.join(" "));
    let out = Command::new(program).args(args).output().with_context(|| format!("running {}", shown()))?;
    if !out.status.success() {
        bail!("{} failed ({}): {}", shown(), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `n` hosts, each in its own network namespace, on one bridge; removed on drop.
#[derive(Debug)]
pub struct Net {
    /// The start of every name: `sbt<pid><letter>`.
    prefix: String,
    /// Third octet of the subnet 10.200.S.0/24.
    subnet: u8,
    /// Number of hosts.
    n: usize,
    /// Namespaces made so far (all `n` once [`Net::create`] returns).
    namespaces: Vec<String>,
    /// Root-namespace ends of the veth pairs made so far.
    veths: Vec<String>,
    /// The bridge, once made.
    bridge: Option<String>,
    /// Blackhole routes in place: `(from, to)` drops what host `from` sends to host `to`.
    cuts: BTreeSet<(usize, usize)>,
    /// Hosts whose outgoing traffic is rate-limited.
    slowed: BTreeSet<usize>,
}

impl Net {
    /// Makes a bridge and `n` namespaces on it, host `i` at 10.200.S.(i+1) with its loopback up.
    /// Whatever was made before an error is removed again.
    pub fn create(n: usize) -> anyhow::Result<Net> {
        if n == 0 || n > MAX_NODES {
            bail!("a network has 1 to {MAX_NODES} hosts, not {n}");
        }
        let _creating = CREATING.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        // A process killed before its networks' drop left them behind; one with the same pid
        // (pids are reused) removes them, before it makes any of its own.
        SWEPT.call_once(|| sweep(&format!("sbt{pid}")));
        // A letter after the pid keeps the names of pid 12 network 3 and pid 123 apart.
        let k = MADE.fetch_add(1, Ordering::Relaxed) % 26;
        let letter = char::from(b'a' + u8::try_from(k).unwrap_or(0));
        let mut net = Net {
            prefix: format!("sbt{pid}{letter}"),
            subnet: free_subnet(pid)?,
            n,
            namespaces: Vec::new(),
            veths: Vec::new(),
            bridge: None,
            cuts: BTreeSet::new(),
            slowed: BTreeSet::new(),
        };
        let bridge = format!("{}br", net.prefix);
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        net.bridge = Some(bridge.clone());
        run("ip", &["addr", "add", &format!("{}/24", net.bridge_addr()), "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for i in 0..n {
            let ns = format!("{}n{i}", net.prefix);
            run("ip", &["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let host_end = format!("{}h{i}", net.prefix);
            let ns_end = format!("{}p{i}", net.prefix);
            run("ip", &["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end])?;
            net.veths.push(host_end.clone());
            run("ip", &["link", "set", &ns_end, "netns", &ns])?;
            // Inside its namespace the interface is free to take the usual name, which is the
            // one the tc commands name.
            run("ip", &["-n", &ns, "link", "set", &ns_end, "name", "eth0"])?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{}/24", net.host(i)), "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            // Loopback up, as on any host: a program in the namespace may talk to itself on
            // 127.0.0.1.
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            run("ip", &["link", "set", &host_end, "master", &bridge])?;
            run("ip", &["link", "set", &host_end, "up"])?;
        }
        Ok(net)
    }

    /// Host `i`'s address.
    fn host(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, OCTET, self.subnet, u8::try_from(i + 1).unwrap_or(u8::MAX))
    }

    /// The bridge's address in the root namespace, through which the test process reaches the
    /// hosts.
    pub fn bridge_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, OCTET, self.subnet, 254)
    }

    /// Every host's address, host 0 first (for [`crate::cluster::Setup::hosts`]).
    pub fn hosts(&self) -> Vec<Ipv4Addr> {
        (0..self.n).map(|i| self.host(i)).collect()
    }

    /// The command prefix that runs a program in host `i`'s namespace (for
    /// [`crate::cluster::Setup::prefixes`]). `ip netns exec` execs the program, so its pid is the
    /// program's own and signals reach it.
    pub fn prefix(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec", &self.namespaces[i]].iter().map(|s| (*s).to_owned()).collect()
    }

    fn check(&self, hosts: &[usize]) -> anyhow::Result<()> {
        match hosts.iter().find(|&&i| i >= self.n) {
            Some(i) => Err(anyhow!("host {i} is not in this network of {}", self.n)),
            None => Ok(()),
        }
    }

    /// Drops every packet host `from` sends to host `to`; `to` still reaches `from`. Over TCP,
    /// which needs both directions, this still breaks the connection, but by a one-sided fault:
    /// `to` sees its segments go unanswered while `from` cannot send at all.
    pub fn cut_one_way(&mut self, from: usize, to: usize) -> anyhow::Result<()> {
        self.check(&[from, to])?;
        if from == to {
            bail!("a host cannot be cut from itself");
        }
        if self.cuts.contains(&(from, to)) {
            return Ok(());
        }
        let dest = format!("{}/32", self.host(to));
        run("ip", &["-n", &self.namespaces[from], "route", "add", "blackhole", &dest])?;
        self.cuts.insert((from, to));
        Ok(())
    }

    /// Restores what [`Net::cut_one_way`] dropped.
    pub fn heal_one_way(&mut self, from: usize, to: usize) -> anyhow::Result<()> {
        self.check(&[from, to])?;
        if !self.cuts.contains(&(from, to)) {
            return Ok(());
        }
        let dest = format!("{}/32", self.host(to));
        run("ip", &["-n", &self.namespaces[from], "route", "del", "blackhole", &dest])?;
        self.cuts.remove(&(from, to));
        Ok(())
    }

    /// Cuts the link between hosts `a` and `b`, both ways.
    pub fn cut(&mut self, a: usize, b: usize) -> anyhow::Result<()> {
        self.cut_one_way(a, b)?;
        self.cut_one_way(b, a)
    }

    /// Restores the link between hosts `a` and `b`, both ways.
    pub fn heal(&mut self, a: usize, b: usize) -> anyhow::Result<()> {
        self.heal_one_way(a, b)?;
        self.heal_one_way(b, a)
    }

    /// Cuts every link of `side` to a host not in `side`, both ways: a partition.
    pub fn split(&mut self, side: &[usize]) -> anyhow::Result<()> {
        self.check(side)?;
        for &a in side {
            for b in (0..self.n).filter(|b| !side.contains(b)) {
                self.cut(a, b)?;
            }
        }
        Ok(())
    }

    /// Restores every link cut, one-way or both ways.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        for (from, to) in self.cuts.clone() {
            self.heal_one_way(from, to)?;
        }
        Ok(())
    }

    /// Cuts host `i` from every other host, both ways. Its link to the bridge stays up, so the
    /// test process still reaches its API.
    pub fn isolate(&mut self, i: usize) -> anyhow::Result<()> {
        self.split(&[i])
    }

    /// Restores every link of host `i`, including one cut by [`Net::cut`] or
    /// [`Net::cut_one_way`].
    pub fn rejoin(&mut self, i: usize) -> anyhow::Result<()> {
        self.check(&[i])?;
        for (from, to) in self.cuts.clone() {
            if from == i || to == i {
                self.heal_one_way(from, to)?;
            }
        }
        Ok(())
    }

    /// Limits what host `i` sends to `rate` (as tc writes it: `256kbit`, `1mbit`) with a token
    /// bucket queueing at most 400 ms; what it receives is not limited.
    pub fn slow(&mut self, i: usize, rate: &str) -> anyhow::Result<()> {
        self.check(&[i])?;
        // `replace` both adds the queue and changes the rate of one already there.
        let tc = ["netns", "exec", &self.namespaces[i], "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf"];
        let args = [&tc[..], &["rate", rate, "burst", "32kbit", "latency", "400ms"]].concat();
        run("ip", &args)?;
        self.slowed.insert(i);
        Ok(())
    }

    /// Removes the limit [`Net::slow`] put on host `i`.
    pub fn unslow(&mut self, i: usize) -> anyhow::Result<()> {
        self.check(&[i])?;
        if !self.slowed.contains(&i) {
            return Ok(());
        }
        run("ip", &["netns", "exec", &self.namespaces[i], "tc", "qdisc", "del", "dev", "eth0", "root"])?;
        self.slowed.remove(&i);
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a veth end deletes its peer; deleting a namespace moves nothing back, so both
        // go explicitly. Processes still running in a namespace keep it (and its veth end) alive
        // until they exit, which is why the cluster is dropped before the network.
        for veth in &self.veths {
            if let Err(e) = run("ip", &["link", "del", veth]) {
                eprintln!("removing the network: {e:#}");
            }
        }
        for ns in &self.namespaces {
            if let Err(e) = run("ip", &["netns", "del", ns]) {
                eprintln!("removing the network: {e:#}");
            }
        }
        if let Some(bridge) = &self.bridge
            && let Err(e) = run("ip", &["link", "del", bridge])
        {
            eprintln!("removing the network: {e:#}");
        }
    }
}

/// Whether `name` was made by a network of the process whose names start with `stem`
/// (`sbt<pid>`): the stem followed by a network letter, not by another digit of a longer pid.
fn is_ours(name: &str, stem: &str) -> bool {
    name.strip_prefix(stem).and_then(|rest| rest.chars().next()).is_some_and(|c| c.is_ascii_lowercase())
}

/// Removes, best effort, the namespaces and interfaces whose names start with `stem` and a
/// network letter.
fn sweep(stem: &str) {
    // `ip netns list` prints `NAME` or `NAME (id: N)`.
    let namespaces = run("ip", &["netns", "list"]).unwrap_or_default();
    for ns in namespaces.lines().filter_map(|l| l.split_whitespace().next()).filter(|n| is_ours(n, stem)) {
        if let Err(e) = run("ip", &["netns", "del", ns]) {
            eprintln!("removing a leftover namespace: {e:#}");
        }
    }
    // `ip -o link show` prints `N: NAME: <…` or `N: NAME@PEER: <…`; veth ends go before the
    // bridges only by chance of order, which does not matter as each is deleted on its own.
    let links = run("ip", &["-o", "link", "show"]).unwrap_or_default();
    for link in links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .filter(|n| is_ours(n, stem))
    {
        if let Err(e) = run("ip", &["link", "del", link]) {
            // A veth end whose peer went first has already gone with it.
            if !e.to_string().contains("Cannot find device") {
                eprintln!("removing a leftover interface: {e:#}");
            }
        }
    }
}

/// The first subnet 10.200.S.0/24, from `pid % 256` on, that no address or route of the root
/// namespace uses: another test process, or another network of this one, may hold the others.
fn free_subnet(pid: u32) -> anyhow::Result<u8> {
    let used = format!("{}\n{}", run("ip", &["-4", "-o", "addr", "show"])?, run("ip", &["-4", "route", "show"])?);
    let start = pid % 256;
    (0..256)
        .filter_map(|d| u8::try_from((start + d) % 256).ok())
        .find(|s| !used.contains(&format!("10.{OCTET}.{s}.")))
        .ok_or_else(|| anyhow!("every subnet of 10.{OCTET}.0.0/16 is in use in the root namespace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_another_pid_are_not_ours() {
        assert!(is_ours("sbt123abr", "sbt123"));
        assert!(is_ours("sbt123cn4", "sbt123"));
        assert!(!is_ours("sbt1234abr", "sbt123"));
        assert!(!is_ours("sbt123", "sbt123"));
        assert!(!is_ours("eth0", "sbt123"));
    }
}

//! Where a load run's CPU went, from Linux's `/proc`: the CPU time the nodes and the load generator
//! used within the throughput window, per transaction committed in it, and how busy the machine's
//! cores were. Throughput on one machine is bounded by CPU per transaction once the cores are busy;
//! these figures say whether they were, and who spent it.
//!
//! `/proc/PID/stat` gives a process's user and system time (all its threads) in clock ticks,
//! `/proc/stat` the machine's time per state since boot. Where they cannot be read (another
//! system, a process gone), the figures are left out, never guessed.

use serde::Serialize;

/// CPU seconds (user and system, all threads) a process has used, from the text of its
/// `/proc/PID/stat` and the clock-tick rate.
pub fn parse_process_stat(text: &str, ticks_per_s: f64) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself: the
    // fields after it start at the last ')'. Counting from the state (field 3), utime and stime
    // (fields 14 and 15) are the 12th and 13th.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_s)
}

/// The machine's (not idle, all) CPU seconds since boot, summed over its cores, from the text of
/// `/proc/stat`. Idle and waiting for I/O count as idle; time a hypervisor gave other guests
/// (steal) counts as not idle: this machine could not use it.
pub fn parse_machine_stat(text: &str, ticks_per_s: f64) -> Option<(f64, f64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>().ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user and nice]
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some(((total - idle) as f64 / ticks_per_s, total as f64 / ticks_per_s))
}

/// The clock-tick rate of `/proc`'s times (`getconf CLK_TCK`; 100 on Linux wherever it cannot be
/// asked, the value its user interface has kept fixed).
pub fn ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// CPU times at one instant.
#[derive(Debug, Clone)]
pub struct Sample {
    nodes: Vec<Option<f64>>,
    generator: Option<f64>,
    machine: Option<(f64, f64)>,
    at: std::time::Instant,
}

/// Reads the CPU times of the processes `pids` (the nodes), of this process, and of the machine.
pub fn sample(pids: &[u32], ticks_per_s: f64) -> Sample {
    let read = |path: String| std::fs::read_to_string(path).ok();
    Sample {
        nodes: pids
            .iter()
            .map(|p| read(format!("/proc/{p}/stat")).and_then(|t| parse_process_stat(&t, ticks_per_s)))
            .collect(),
        generator: read("/proc/self/stat".into()).and_then(|t| parse_process_stat(&t, ticks_per_s)),
        machine: read("/proc/stat".into()).and_then(|t| parse_machine_stat(&t, ticks_per_s)),
        at: std::time::Instant::now(),
    }
}

/// CPU used between two samples, per transaction committed between them.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    /// Wall-clock seconds between the samples.
    pub window_s: f64,
    /// Cores' worth of CPU the nodes used (CPU seconds ÷ window seconds), together.
    pub nodes_cores: f64,
    /// Cores' worth the load generator (signing, HTTP, following blocks, checking proofs) used.
    pub generator_cores: f64,
    /// The share of the machine's cores not idle, whoever used them.
    pub busy_share: f64,
    /// The machine's cores.
    pub cores: f64,
    /// Node CPU per committed transaction, microseconds, all nodes together.
    pub nodes_us_per_tx: f64,
    /// Load-generator CPU per committed transaction, microseconds.
    pub generator_us_per_tx: f64,
}

/// What the nodes, the generator and the machine used from `a` to `b`, over `txs` transactions
/// committed in between; `None` if a figure could not be read or nothing committed.
pub fn between(a: &Sample, b: &Sample, txs: usize) -> Option<CpuUse> {
    let window_s = b.at.saturating_duration_since(a.at).as_secs_f64();
    if txs == 0 || window_s <= 0.0 || a.nodes.len() != b.nodes.len() {
        return None;
    }
    let mut nodes_s = 0.0;
    for (x, y) in a.nodes.iter().zip(&b.nodes) {
        nodes_s += y.as_ref()? - x.as_ref()?;
    }
    let generator_s = b.generator? - a.generator?;
    let ((busy_a, total_a), (busy_b, total_b)) = (a.machine?, b.machine?);
    let total = total_b - total_a;
    if total <= 0.0 {
        return None;
    }
    Some(CpuUse {
        window_s,
        nodes_cores: nodes_s / window_s,
        generator_cores: generator_s / window_s,
        busy_share: (busy_b - busy_a) / total,
        cores: total / window_s,
        nodes_us_per_tx: nodes_s * 1e6 / txs as f64,
        generator_us_per_tx: generator_s * 1e6 / txs as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_times_are_read_after_the_command_name() {
        // A command name with a space and a parenthesis; utime 250 and stime 50 ticks.
        let text = "4242 (sabt node) x) S 1 4242 4242 0 -1 4194560 1200 0 3 0 250 50 0 0 20 0 9 0 77 0 0";
        assert_eq!(parse_process_stat(text, 100.0), Some(3.0));
        assert_eq!(parse_process_stat("4242 (short) S 1 2", 100.0), None);
        assert_eq!(parse_process_stat("no parenthesis", 100.0), None);
    }

    #[test]
    fn machine_times_count_idle_and_iowait_as_idle_and_steal_as_busy() {
        let text = "cpu  100 10 40 800 50 0 0 0 0 0\ncpu0 50 5 20 400 25 0 0 0 0 0\nintr 1\n";
        assert_eq!(parse_machine_stat(text, 100.0), Some((1.5, 10.0)));
        let steal = "cpu  100 0 0 700 0 0 0 200 0 0\n";
        assert_eq!(parse_machine_stat(steal, 100.0), Some((3.0, 10.0)));
        assert_eq!(parse_machine_stat("intr 1\n", 100.0), None);
    }

    #[test]
    fn this_process_and_machine_are_readable_and_spending_shows() {
        let t = ticks_per_s();
        let a = sample(&[std::process::id()], t);
        // Spend about 0.3 s of this thread's CPU.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_secs_f64() < 0.3 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let b = sample(&[std::process::id()], t);
        let u = between(&a, &b, 1000).expect("/proc is readable on Linux");
        assert!(u.generator_cores > 0.05, "{u:?}");
        assert!(u.nodes_us_per_tx > 0.0 && u.busy_share > 0.0 && u.busy_share <= 1.0 + 1e-9, "{u:?}");
        assert!(between(&a, &b, 0).is_none());
    }
}

//! Faults for the test suites: a validator that lies, crash points on the commit path, and a
//! record of every vote and proposal this node signs.
//!
//! All of it is compiled only with the `fault-injection` feature, which the multi-node test
//! suites enable and a release build refuses (a `compile_error!` below). Without the feature,
//! [`crash`] and [`signed`] compile to nothing and a node started with `SABT_FAULTS` set refuses
//! to start, so a test can never believe it ran a fault that was not there.
//!
//! `SABT_FAULTS` holds TOML:
//!
//! ```toml
//! [engine]            # Malachite's Byzantine network proxy (its ByzantineConfig)
//! equivocate_votes = { mode = "always" }
//! equivocate_proposals = { mode = "always" }
//!
//! [app]               # lies told by this application
//! swap_body = true        # its proposals carry other transactions than their headers name, and
//!                         # it re-sends others' proposals, under their signed headers, with other
//!                         # transactions
//! bad_parts = true        # before each proposal: a part with a bad signature, one that does not
//!                         # decode, one over the block size limit; then its real part 20 times
//! wrong_extension = true  # its precommits cosign a checkpoint with another root
//! forge_sync = true       # it answers sync with blocks whose transactions were altered, or cut
//!
//! [crash]             # abort (as kill -9 would) at a point of the commit path
//! point = "before-commit" # decided | before-commit | after-commit | after-vote-record |
//!                         # after-proposal-stored | after-received-stored
//! height = 5              # the first time the point is reached at this height or above
//!
//! [clock]             # this node's clock is off
//! offset_ms = -40000      # added to the system clock wherever the node reads it
//!
//! [disk]              # the disk fails the node's synced writes
//! fail_sync_height = 6    # the store's synced write of every block at this height or above
//!                         # fails with EIO, as a failing fsync would
//! ```

#[cfg(all(feature = "fault-injection", not(debug_assertions)))]
compile_error!(
    "the fault-injection feature is for test builds only; build release binaries without it \
     (cargo build --release --workspace --exclude sabt-tests)"
);

use serde::Deserialize;
use std::path::Path;

/// The environment variable that configures faults.
pub const ENV: &str = "SABT_FAULTS";

/// The file, in the node's home, where a test build records every vote and proposal it signs:
/// one line `KIND HEIGHT ROUND VALUE` each (`KIND` 0 prevote, 1 precommit, 2 proposal; `VALUE` a
/// block hash or `nil`).
pub const SIGNED_LOG: &str = "signed.log";

/// What `SABT_FAULTS` configures.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Malachite's Byzantine proxy between the engine and the network.
    #[cfg(feature = "fault-injection")]
    pub engine: Option<malachitebft_engine_byzantine::ByzantineConfig>,
    /// Lies told by the application.
    pub app: AppFaults,
    /// A crash point.
    pub crash: Option<Crash>,
    /// A clock that is off.
    pub clock: ClockFault,
    /// A disk that fails synced writes.
    pub disk: DiskFault,
}

/// A clock off by a constant offset.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockFault {
    /// Milliseconds added to the system clock (negative: the clock is behind).
    pub offset_ms: i64,
}

/// A disk whose synced writes fail.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskFault {
    /// The lowest height whose block commit (a synced write) fails with an I/O error.
    pub fail_sync_height: Option<u64>,
}

/// Lies told by the consensus application (see the module documentation).
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[allow(clippy::struct_excessive_bools)]
pub struct AppFaults {
    /// Proposals with other transactions than their headers name; others' proposals re-sent so.
    pub swap_body: bool,
    /// Invalid, oversized and replayed proposal parts.
    pub bad_parts: bool,
    /// Precommits cosigning a wrong checkpoint.
    pub wrong_extension: bool,
    /// Sync answers with altered or cut blocks.
    pub forge_sync: bool,
}

/// Where and when to crash.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crash {
    /// The point.
    pub point: CrashPoint,
    /// The lowest height at which it fires.
    pub height: u64,
}

/// The crash points of the commit path, in the order a height passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrashPoint {
    /// A vote or proposal recorded in the store, not signed nor sent yet.
    AfterVoteRecord,
    /// Its own proposal stored, not published yet.
    AfterProposalStored,
    /// A block found valid and stored, the vote for it not cast yet.
    AfterReceivedStored,
    /// A decision received, nothing written yet.
    Decided,
    /// The decided block executed, its synced write not made yet.
    BeforeCommit,
    /// The block written, the engine not told yet.
    AfterCommit,
}

#[cfg(feature = "fault-injection")]
static FAULTS: std::sync::OnceLock<(Faults, std::path::PathBuf)> = std::sync::OnceLock::new();

/// Reads `SABT_FAULTS` once, for the node at `home`. Without the `fault-injection` feature, a set
/// variable is an error: this binary cannot do what the test asks.
pub fn init(home: &Path) -> anyhow::Result<()> {
    let text = std::env::var(ENV).ok();
    #[cfg(feature = "fault-injection")]
    {
        let faults = match text.as_deref() {
            Some(t) => {
                let f: Faults = toml::from_str(t).map_err(|e| anyhow::anyhow!("{ENV} is not valid: {e}"))?;
                if let Some(engine) = &f.engine {
                    engine.validate().map_err(|e| anyhow::anyhow!("{ENV} [engine]: {e}"))?;
                }
                tracing::warn!(faults = t, "FAULT INJECTION: this node runs with injected faults; a test build only");
                f
            }
            None => Faults::default(),
        };
        let _ = FAULTS.set((faults, home.join(SIGNED_LOG)));
        Ok(())
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = home;
        match text {
            Some(_) => anyhow::bail!(
                "{ENV} is set, but this sabt-node is built without fault injection (a test-only feature); \
                 unset {ENV} to run the node"
            ),
            None => Ok(()),
        }
    }
}

/// The faults configured (none before [`init`], and none ever without the feature).
pub fn get() -> Faults {
    #[cfg(feature = "fault-injection")]
    {
        FAULTS.get().map(|(f, _)| f.clone()).unwrap_or_default()
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        Faults::default()
    }
}

/// The application's lies (none in a release build).
pub fn app() -> AppFaults {
    #[cfg(feature = "fault-injection")]
    {
        FAULTS.get().map(|(f, _)| f.app).unwrap_or_default()
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        AppFaults::default()
    }
}

/// The clock's offset in milliseconds (0 in a release build).
#[inline]
pub fn clock_offset_ms() -> i64 {
    #[cfg(feature = "fault-injection")]
    {
        FAULTS.get().map_or(0, |(f, _)| f.clock.offset_ms)
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        0
    }
}

/// The error a failing disk gives the synced write of the block at `height`, if the faults say
/// it fails (never in a release build).
#[inline]
pub fn failed_sync(height: u64) -> Option<std::io::Error> {
    #[cfg(feature = "fault-injection")]
    if let Some(from) = FAULTS.get().and_then(|(f, _)| f.disk.fail_sync_height)
        && height >= from
    {
        eprintln!("fault injection: the synced write of height {height} fails");
        // EIO, what fsync(2) reports when the device could not write.
        return Some(std::io::Error::from_raw_os_error(5));
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = height;
    None
}

/// Aborts the process, as `kill -9` would (no destructor runs, nothing is flushed), if the crash
/// point configured is `point` and `height` has reached its height.
#[inline]
pub fn crash(point: CrashPoint, height: u64) {
    #[cfg(feature = "fault-injection")]
    if let Some(c) = FAULTS.get().and_then(|(f, _)| f.crash)
        && c.point == point
        && height >= c.height
    {
        eprintln!("fault injection: crashing at {point:?} at height {height}");
        std::process::abort();
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = (point, height);
}

/// Appends a signed vote or proposal to [`SIGNED_LOG`] (test builds only), before it can leave
/// the process: the suites collect every node's record and check that no validator ever signed
/// two conflicting messages.
#[inline]
pub fn signed(kind: u8, height: u64, round: u32, value: Option<sabt_core::hash::Hash32>) {
    #[cfg(feature = "fault-injection")]
    if let Some((_, path)) = FAULTS.get() {
        use std::io::Write as _;
        let value = value.map(|h| h.to_string()).unwrap_or_else(|| "nil".into());
        let line = format!("{kind} {height} {round} {value}\n");
        // One write of one line with O_APPEND: a crash leaves whole lines.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!("fault injection: cannot record a signed message in {}: {e}", path.display());
            std::process::abort();
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = (kind, height, round, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_configuration_reads_and_refuses_unknown_keys() {
        let f: Faults = toml::from_str(
            "[app]\nswap_body = true\nforge_sync = true\n[crash]\npoint = \"before-commit\"\nheight = 3\n",
        )
        .unwrap();
        assert!(f.app.swap_body && f.app.forge_sync && !f.app.bad_parts);
        let c = f.crash.unwrap();
        assert_eq!((c.point, c.height), (CrashPoint::BeforeCommit, 3));
        let f: Faults = toml::from_str("[clock]\noffset_ms = -40000\n[disk]\nfail_sync_height = 6\n").unwrap();
        assert_eq!((f.clock.offset_ms, f.disk.fail_sync_height), (-40_000, Some(6)));
        assert!(toml::from_str::<Faults>("[app]\nswap_bodies = true\n").is_err());
        assert!(toml::from_str::<Faults>("[crash]\npoint = \"somewhere\"\nheight = 1\n").is_err());
    }
}

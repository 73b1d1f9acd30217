//! The node's clock: the one place it reads the time of day, for the times of the blocks it
//! proposes, the check of others' block times, and its access log's lines. A test build may set it
//! off by a constant (`[clock]` in [`crate::faults`]), so that the suites can run a validator
//! whose clock is wrong.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by this node's clock.
pub fn now_ms() -> u64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    system.saturating_add_signed(crate::faults::clock_offset_ms())
}

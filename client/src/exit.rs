//! Exit codes, stable for scripts.

/// Success: the document verified, the command did what was asked.
pub const OK: u8 = 0;
/// Verification failed: the proof does not prove the document.
pub const INVALID: u8 = 1;
/// Usage or input error: bad arguments, unreadable files, bad genesis.
pub const USAGE: u8 = 2;
/// The node accepted the transaction but it was not committed in time; run the command again.
pub const PENDING: u8 = 3;
/// The node could not be reached, or refused the request (its code and message are printed).
pub const UNAVAILABLE: u8 = 4;

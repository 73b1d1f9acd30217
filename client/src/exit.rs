//! Exit codes, stable for scripts.

/// Success: the document verified, the command did what was asked.
pub const OK: u8 = 0;
/// Verification failed: the proof does not prove the document.
pub const INVALID: u8 = 1;
/// Usage or input error: bad arguments, unreadable files, bad genesis.
pub const USAGE: u8 = 2;

//! Standard output for what a command prints.
//!
//! `println!` panics when standard output is gone (`sabt status | head -1` closes the pipe after a
//! line), which would abort a command half done: a batch whose proof files are not all written.
//! Here a reader that went away only ends the printing; the command finishes its work and exits
//! with its own code. Any other failure to write (a full disk under a redirect) is reported once on
//! standard error, and the command then exits with [`crate::exit::USAGE`], since what it printed is
//! incomplete.

use std::fmt;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicU8, Ordering};

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OPEN);

/// Writes `args` to standard output, unless an earlier write found it gone or failing.
pub fn write(args: fmt::Arguments<'_>) {
    if STATE.load(Ordering::Relaxed) != OPEN {
        return;
    }
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            STATE.store(CLOSED, Ordering::Relaxed);
        } else {
            STATE.store(FAILED, Ordering::Relaxed);
            eprintln!(
                "error: cannot write to standard output: {e}; the command goes on, but what it prints is lost: \
                 send its output somewhere writable"
            );
        }
    }
}

/// Whether writing to standard output failed (other than by its reader going away).
pub fn failed() -> bool {
    STATE.load(Ordering::Relaxed) == FAILED
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

/// `println!` through [`write`].
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

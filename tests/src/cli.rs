//! Running the `sabt` command line from tests.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `sabt` with `args` and returns its output.
///
/// # Panics
/// If the binary cannot be started (it is built before the tests run).
#[allow(clippy::expect_used)]
pub fn sabt(args: &[&str]) -> Output {
    Command::new(crate::cluster::bin("sabt")).args(args).output().expect("run sabt")
}

/// Standard output and standard error, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A path as an argument (test paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

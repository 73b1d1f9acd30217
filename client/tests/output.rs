//! What the command line does when its standard output goes away or fails: a closed pipe ends the
//! printing, not the command; a failing write is reported and fails the command with exit code 2.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.

use std::process::{Command, Stdio};

/// A directory of `n` small documents, and their paths.
fn documents(n: usize) -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths = (0..n)
        .map(|i| {
            let p = dir.path().join(format!("page-{i:04}.txt"));
            std::fs::write(&p, format!("page {i}\n")).unwrap();
            p
        })
        .collect();
    (dir, paths)
}

#[test]
fn a_reader_that_goes_away_ends_the_printing_quietly() {
    let (_dir, paths) = documents(300);
    let mut child = Command::new(env!("CARGO_BIN_EXE_sabt"))
        .arg("fingerprint")
        .args(&paths)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the only reading end before the command prints: every write it makes finds the pipe
    // gone (as `sabt fingerprint … | head -1` does after one line).
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "stderr: {err}");
}

#[test]
fn output_that_cannot_be_written_fails_the_command() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("no /dev/full here; nothing to check");
        return;
    };
    let (_dir, paths) = documents(2);
    let out = Command::new(env!("CARGO_BIN_EXE_sabt")).arg("fingerprint").args(&paths).stdout(full).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("cannot write to standard output"), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    // Reported once, not once per line.
    assert_eq!(err.matches("cannot write to standard output").count(), 1, "stderr: {err}");
}

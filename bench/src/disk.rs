//! Bytes on disk and resident memory, read from the file system and `/proc`.

use std::path::Path;

/// Total bytes of the files under `dir` (recursively; symlinks not followed).
pub fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            total += dir_bytes(&e.path())?;
        } else if t.is_file() {
            total += e.metadata()?.len();
        }
    }
    Ok(total)
}

/// A process's peak and current resident set size, in bytes (`VmHWM`, `VmRSS` of
/// `/proc/PID/status`).
pub fn rss(pid: u32) -> std::io::Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn measures_files_and_this_process() {
        let d = tempfile_dir();
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("a"), [0u8; 100]).unwrap();
        std::fs::write(d.join("sub/b"), [0u8; 23]).unwrap();
        assert_eq!(super::dir_bytes(&d).unwrap(), 123);
        std::fs::remove_dir_all(&d).unwrap();
        let (peak, now) = super::rss(std::process::id()).unwrap();
        assert!(peak >= now && now > 0);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("sabt-bench-disk-{}", std::process::id()))
    }
}

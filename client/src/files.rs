//! Reading the small files the command line is given (genesis, proofs, checkpoints, passphrases),
//! refusing oversized ones before reading them.

use std::io::Write as _;
use std::path::Path;

/// Genesis documents (as `Genesis::from_json` accepts).
pub const MAX_GENESIS: u64 = 4 << 20;
/// Checkpoint notes and passphrase files.
pub const MAX_NOTE: u64 = 128 << 10;

/// Reads a text file, refusing files larger than `max` bytes before reading them.
pub fn read_bounded(path: &Path, max: u64) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    if meta.len() > max {
        anyhow::bail!("{} is {} bytes, more than the {} allowed", path.display(), meta.len(), max);
    }
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// Refuses a secret file (a key, a salt) that users other than its owner can read or write:
/// `what` names it in the error, which says how to fix it. Returns its metadata.
pub fn check_private(path: &Path, what: &str) -> anyhow::Result<std::fs::Metadata> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{what} {} has mode {mode:o}: other users can access it; run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(meta)
}

/// Writes `text` to `path` through a temporary file, synced, and a rename, so a crash never leaves a
/// half-written file under the final name. Creates the parent directory.
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    write_atomic_with(path, |w| Ok(w.write_all(text.as_bytes())?))
}

/// Writes `path` atomically with what `fill` writes: into a temporary file beside it, synced,
/// then renamed over it; returns what `fill` returns. A failure leaves `path` as it was.
pub fn write_atomic_with<T>(
    path: &Path,
    fill: impl FnOnce(&mut dyn std::io::Write) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let file = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let result = fill(&mut w).and_then(|r| {
        w.flush().with_context(|| format!("cannot write {}", tmp.display()))?;
        w.get_ref().sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        Ok(r)
    });
    match result {
        Ok(r) => {
            std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(r)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

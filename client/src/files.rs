//! Reading the small files the command line is given (genesis, proofs, checkpoints, passphrases),
//! refusing oversized ones before reading them.

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

/// Writes `text` to `path` through a temporary file and a rename, so a crash never leaves a
/// half-written file under the final name. Creates the parent directory.
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

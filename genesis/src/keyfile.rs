//! Key files: one Ed25519 seed per file, hex, mode 0600.
//!
//! A node refuses to start with a key file that other users can read or write, and says how to
//! fix it. Files are written with mode 0600 from the start (never created wider and narrowed later)
//! and an existing key is never overwritten.

use anyhow::{Context as _, bail};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// A new random 32-byte seed from the operating system.
pub fn random_seed() -> anyhow::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("the operating system gave no randomness: {e}"))?;
    Ok(seed)
}

/// Writes `seed` to a new file at `path` with mode 0600; refuses to overwrite.
pub fn write(path: &Path, seed: &[u8; 32]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).with_context(|| {
            format!("cannot create key file {} (an existing key is never overwritten)", path.display())
        })?;
    f.write_all(format!("{}\n", hex::encode(seed)).as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Reads a key file, refusing one that group or others may access.
pub fn read(path: &Path) -> anyhow::Result<[u8; 32]> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} has mode {:o}: other users can access it; run `chmod 600 {}` and start again",
            path.display(),
            mode,
            path.display()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    let bytes = hex::decode(text.trim()).with_context(|| format!("key file {} is not hex", path.display()))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| anyhow::anyhow!("key file {} must hold 32 bytes (64 hex digits)", path.display()))
}

/// The libp2p peer id (base58) of the network key with this seed.
pub fn peer_id(seed: &[u8; 32]) -> anyhow::Result<String> {
    let mut s = *seed;
    let kp = libp2p_identity::Keypair::ed25519_from_bytes(&mut s).context("network key")?;
    Ok(kp.public().to_peer_id().to_base58())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn written_0600_never_overwritten_and_wide_modes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k/consensus.key");
        write(&p, &[7; 32]).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(read(&p).unwrap(), [7; 32]);
        assert!(write(&p, &[8; 32]).is_err());
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(peer_id(&[7; 32]).unwrap().starts_with("12D3KooW"));
    }
}

//! Signing keys for the command line.
//!
//! A clerk's key lives in a passphrase-encrypted keystore: the age format (scrypt passphrase
//! recipient, ASCII armour) around the 32-byte Ed25519 seed in hex. The passphrase comes from
//! `--passphrase-file`, else the `SABT_PASSPHRASE` environment variable, else a prompt on the
//! terminal; it is never taken from the command line, where other users could read it.
//!
//! An agency admin key written by `sabt-node init` or `sabt-genesis testnet` (a hex seed in a file
//! of mode 0600) is also accepted wherever a key is asked for.

use anyhow::{Context as _, anyhow, bail};
use sabt_core::sign::SecretKey;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";

/// Where a passphrase comes from.
#[derive(Debug, Clone, Default)]
pub struct PassphraseSource {
    /// `--passphrase-file`.
    pub file: Option<std::path::PathBuf>,
}

impl PassphraseSource {
    /// The passphrase: file, then `SABT_PASSPHRASE`, then a prompt (twice when `confirm`).
    pub fn get(&self, purpose: &str, confirm: bool) -> anyhow::Result<String> {
        if let Some(f) = &self.file {
            let text = crate::files::read_bounded(f, crate::files::MAX_NOTE)
                .with_context(|| format!("passphrase file {}", f.display()))?;
            let pass = text.trim_end_matches(['\n', '\r']).to_string();
            if pass.is_empty() {
                bail!("passphrase file {} is empty", f.display());
            }
            return Ok(pass);
        }
        if let Ok(pass) = std::env::var("SABT_PASSPHRASE")
            && !pass.is_empty()
        {
            return Ok(pass);
        }
        let pass = rpassword::prompt_password(format!("passphrase for {purpose}: ")).context(
            "no passphrase: give --passphrase-file FILE or set SABT_PASSPHRASE, or run on a terminal to be asked",
        )?;
        if confirm {
            let again = rpassword::prompt_password("the same passphrase again: ")?;
            if again != pass {
                bail!("the two passphrases differ; nothing was written");
            }
        }
        if pass.len() < 8 {
            bail!("the passphrase must be at least 8 characters");
        }
        Ok(pass)
    }
}

/// Writes a new keystore at `path` (mode 0600, never overwriting) holding `seed`.
pub fn write_keystore(path: &Path, seed: &[u8; 32], passphrase: String) -> anyhow::Result<()> {
    let encryptor = age::Encryptor::with_user_passphrase(age::secrecy::SecretString::from(passphrase));
    let mut out = Vec::new();
    {
        let armored = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)?;
        let mut w = encryptor.wrap_output(armored)?;
        w.write_all(hex::encode(seed).as_bytes())?;
        w.finish()?.finish()?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (an existing key is never overwritten)", path.display()))?;
    f.write_all(&out)?;
    f.sync_all()?;
    Ok(())
}

/// Loads a signing key from a keystore (asking `pass` for its passphrase) or a plain key file.
pub fn load(path: &Path, pass: &PassphraseSource) -> anyhow::Result<SecretKey> {
    let meta = crate::files::check_private(path, "key file")?;
    if meta.len() > 64 * 1024 {
        bail!("{} is too large to be a key file", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read key {}", path.display()))?;
    let seed_hex = if bytes.starts_with(ARMOR_BEGIN.as_bytes()) {
        let passphrase = pass.get(&path.display().to_string(), false)?;
        let decryptor = age::Decryptor::new(age::armor::ArmoredReader::new(&bytes[..]))
            .with_context(|| format!("{} is not a valid keystore", path.display()))?;
        if !decryptor.is_scrypt() {
            bail!("{} is not a passphrase keystore", path.display());
        }
        let identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase));
        let reader = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|e| anyhow!("cannot open keystore {}: {e} (wrong passphrase?)", path.display()))?;
        let mut text = String::new();
        reader.take(256).read_to_string(&mut text)?;
        text
    } else {
        String::from_utf8(bytes).map_err(|_| anyhow!("{} is neither a keystore nor a hex key file", path.display()))?
    };
    let seed: [u8; 32] = hex::decode(seed_hex.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("{} does not hold a 32-byte key", path.display()))?;
    Ok(SecretKey::from_seed(&seed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn keystore_round_trip_and_wrong_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clerk.key");
        write_keystore(&path, &[9; 32], "correct horse".into()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(ARMOR_BEGIN) && !text.contains(&hex::encode([9u8; 32])));
        let pf = dir.path().join("pass");
        std::fs::write(&pf, "correct horse\n").unwrap();
        let src = PassphraseSource { file: Some(pf.clone()) };
        assert_eq!(load(&path, &src).unwrap().public(), SecretKey::from_seed(&[9; 32]).public());
        std::fs::write(&pf, "wrong horse\n").unwrap();
        assert!(load(&path, &src).unwrap_err().to_string().contains("wrong passphrase"));
        assert!(write_keystore(&path, &[1; 32], "x".repeat(10)).is_err(), "never overwrites");
    }
}

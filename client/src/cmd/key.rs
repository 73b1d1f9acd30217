//! `sabt key`: create a clerk keystore, show a key, and (as an agency admin) authorise or revoke a
//! clerk key on the ledger.

use crate::api::Node;
use crate::exit;
use crate::keystore::{self, PassphraseSource};
use crate::submit;
use anyhow::bail;
use clap::{Args as ClapArgs, Subcommand};
use sabt_core::entry::RecordKind;
use sabt_core::sign::{PublicKey, SecretKey};
use sabt_core::tx::TxBody;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: KeyCommand,
}

/// The key file and its passphrase.
#[derive(ClapArgs, Debug, Clone)]
pub struct KeyArgs {
    /// The signing key: a keystore from `sabt key new`, or an agency admin key file.
    #[arg(long, env = "SABT_KEY")]
    pub key: PathBuf,
    /// File holding the keystore's passphrase (else SABT_PASSPHRASE, else a prompt).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

impl KeyArgs {
    /// Loads the key.
    pub fn load(&self) -> anyhow::Result<SecretKey> {
        keystore::load(&self.key, &PassphraseSource { file: self.passphrase_file.clone() })
    }
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create a new Ed25519 key in a passphrase-encrypted keystore (age format, mode 0600).
    New {
        /// Where to write the keystore (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// File holding the passphrase (else SABT_PASSPHRASE, else asked twice).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Print a key's public key.
    Show(KeyArgs),
    /// As an agency admin, authorise a clerk key to anchor some record kinds.
    Authorize {
        #[command(flatten)]
        key: KeyArgs,
        /// The node's API URL.
        #[arg(long, env = "SABT_NODE")]
        node: String,
        /// The clerk's public key (hex), as `sabt key show` prints it.
        #[arg(long)]
        clerk: String,
        /// Record kinds it may anchor (comma-separated or repeated), or `all`.
        #[arg(long = "kind", required = true, value_delimiter = ',')]
        kinds: Vec<String>,
        /// Consensus time from which the key no longer acts: YYYY-MM-DD (UTC midnight).
        #[arg(long)]
        expires: Option<String>,
    },
    /// As an agency admin, revoke a clerk key; it acts in no block after the one that revokes it.
    Revoke {
        #[command(flatten)]
        key: KeyArgs,
        /// The node's API URL.
        #[arg(long, env = "SABT_NODE")]
        node: String,
        /// The clerk's public key (hex).
        #[arg(long)]
        clerk: String,
    },
}

/// Parses record kinds (`all` for every kind) into the canonical sorted list.
pub fn parse_kinds(list: &[String]) -> anyhow::Result<Vec<RecordKind>> {
    let mut kinds = Vec::new();
    for k in list {
        if k.trim() == "all" {
            kinds.extend(RecordKind::ALL);
        } else {
            kinds.push(RecordKind::parse(k).map_err(|e| anyhow::anyhow!("--kind {k:?}: {e}"))?);
        }
    }
    kinds.sort();
    kinds.dedup();
    if kinds.is_empty() {
        bail!("give at least one --kind");
    }
    Ok(kinds)
}

fn submit_admin(node: &str, key: &KeyArgs, body: TxBody) -> anyhow::Result<u8> {
    let node = Node::new(node)?;
    let admin = key.load()?;
    let chain = submit::chain_id(&node)?;
    let nonce = submit::next_nonce(&node, &admin)?;
    let s = submit::submit(&node, &chain, &admin, nonce, body)?;
    let height = submit::wait_committed(&node, &s.id, Duration::from_secs(60))?;
    outln!("committed at height {height} (transaction {})", s.id);
    Ok(exit::OK)
}

/// Runs the command.
pub fn exec(args: Args) -> anyhow::Result<u8> {
    match args.command {
        KeyCommand::New { out, passphrase_file } => {
            let seed = random_seed()?;
            let pass = PassphraseSource { file: passphrase_file }.get(&out.display().to_string(), true)?;
            keystore::write_keystore(&out, &seed, pass)?;
            outln!("{}", SecretKey::from_seed(&seed).public());
            eprintln!("wrote {}; give the public key above to your agency's admin to authorise it", out.display());
            Ok(exit::OK)
        }
        KeyCommand::Show(k) => {
            outln!("{}", k.load()?.public());
            Ok(exit::OK)
        }
        KeyCommand::Authorize { key, node, clerk, kinds, expires } => {
            let clerk = PublicKey::from_hex(&clerk).map_err(|e| anyhow::anyhow!("--clerk: {e}"))?;
            let expires_ms = expires.as_deref().map(crate::time::parse_utc_date_ms).transpose()?;
            let body = TxBody::AuthorizeKey { key: clerk, kinds: parse_kinds(&kinds)?, expires_ms };
            submit_admin(&node, &key, body)
        }
        KeyCommand::Revoke { key, node, clerk } => {
            let clerk = PublicKey::from_hex(&clerk).map_err(|e| anyhow::anyhow!("--clerk: {e}"))?;
            submit_admin(&node, &key, TxBody::RevokeKey { key: clerk })
        }
    }
}

fn random_seed() -> anyhow::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
    Ok(seed)
}

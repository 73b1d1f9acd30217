//! `sabt record`: withdraw or supersede an anchored record, and prove its status.
//!
//! Nothing is ever deleted. A withdrawal or supersession is a new log entry that names the old
//! record; the state map then marks the old record withdrawn or superseded, and a status proof
//! (`*.sabt-status.json`, a state-map proof under a committed block header) shows it to anyone
//! holding the old proof file: `sabt verify FILE --status S` checks both offline.
//!
//! - `withdraw --proof P --reason TEXT`: the record the proof file names is withdrawn.
//! - `supersede --proof P NEWFILE --reason TEXT`: NEWFILE is anchored as the record that replaces
//!   it (same archive metadata unless overridden), and gets its own proof file.
//! - `status --proof P | --digest sha256:HEX`: fetches the status proof at the latest block,
//!   verifies it against the genesis and writes it.
//!
//! Only a key of the agency that anchored the record, allowed for its kind, may change its status.

use crate::api::{Node, genesis_of};
use crate::cmd::anchor::{fetch_proof, write_bundle};
use crate::cmd::key::KeyArgs;
use crate::files::{read_bounded, write_atomic};
use crate::{exit, submit, time};
use anyhow::{Context as _, anyhow, bail};
use clap::{Args as ClapArgs, Subcommand};
use sabt_core::bundle::{self, DocumentClaim, ProofBundle};
use sabt_core::entry::{AccessClass, ArchiveRecord, RecordKind};
use sabt_core::fingerprint::{DocDigest, Fingerprint};
use sabt_core::genesis::Genesis;
use sabt_core::registry::{RecordId, RecordState, RecordStatus};
use sabt_core::status::{self, StatusProof, StatusVerified};
use sabt_core::tx::TxBody;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: RecordCommand,
}

/// The node and the genesis to trust.
#[derive(ClapArgs, Debug)]
struct Conn {
    /// The node's API URL.
    #[arg(long, env = "SABT_NODE")]
    node: String,
    /// The genesis to trust (default: the node's).
    #[arg(long, env = "SABT_GENESIS")]
    genesis: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The node, the genesis, the signing key, and how long to wait for the commit.
#[derive(ClapArgs, Debug)]
struct Signing {
    #[command(flatten)]
    conn: Conn,
    #[command(flatten)]
    key: KeyArgs,
    /// Seconds to wait for the transaction to commit.
    #[arg(long, default_value_t = 120)]
    wait: u64,
}

#[derive(Subcommand, Debug)]
enum RecordCommand {
    /// Withdraw the record a proof file names (it stays in the log, marked withdrawn).
    Withdraw {
        /// The record's proof file.
        #[arg(long)]
        proof: PathBuf,
        /// Why (no personal data).
        #[arg(long)]
        reason: String,
        /// Where to write the status proof (default: beside the proof file, `.sabt-status.json`).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        signing: Signing,
    },
    /// Anchor NEWFILE as the record that supersedes the one a proof file names.
    Supersede {
        /// The superseded record's proof file.
        #[arg(long)]
        proof: PathBuf,
        /// The new document.
        file: PathBuf,
        /// Why (no personal data).
        #[arg(long)]
        reason: String,
        /// The new record's title (default: the old record's).
        #[arg(long)]
        title: Option<String>,
        /// The new record's kind (default: the old record's).
        #[arg(long)]
        kind: Option<String>,
        /// The new record's sheets (default: the old record's).
        #[arg(long)]
        sheets: Option<String>,
        /// The new record's earliest date (default: the old record's).
        #[arg(long)]
        date_from: Option<String>,
        /// The new record's latest date (default: the old record's).
        #[arg(long)]
        date_to: Option<String>,
        /// The new record's access class (default: the old record's).
        #[arg(long)]
        access: Option<String>,
        /// Write the new proof file under this directory instead of beside NEWFILE.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        signing: Signing,
    },
    /// Fetch and verify a record's status proof at the latest block.
    Status {
        /// The record's proof file.
        #[arg(long, required_unless_present = "digest", conflicts_with = "digest")]
        proof: Option<PathBuf>,
        /// The document's SHA-256 digest instead: `sha256:HEX` or bare HEX.
        #[arg(long)]
        digest: Option<String>,
        /// Where to write the status proof (default: beside the proof file; with --digest, stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs the command.
pub fn exec(args: Args) -> anyhow::Result<u8> {
    match args.command {
        RecordCommand::Withdraw { proof, reason, out, signing: Signing { conn, key, wait } } => {
            let node = Node::new(&conn.node)?;
            let genesis = genesis_of(&node, conn.genesis.as_ref())?;
            let (bundle, _) = load_proof(&proof, &genesis)?;
            let key = key.load()?;
            let body = TxBody::Withdraw { target: bundle.record_ref(), reason };
            send(&node, &genesis, &key, body, Duration::from_secs(wait))?;
            let (sp, v) = fetch_status(&node, &genesis, &bundle.record_id())?;
            let out = out.unwrap_or_else(|| status_path(&proof));
            write_atomic(&out, &sp.to_json())?;
            report(&v, Some(&out), conn.json);
            Ok(exit::OK)
        }
        RecordCommand::Supersede {
            proof,
            file,
            reason,
            title,
            kind,
            sheets,
            date_from,
            date_to,
            access,
            out,
            signing: Signing { conn, key, wait },
        } => {
            let node = Node::new(&conn.node)?;
            let genesis = genesis_of(&node, conn.genesis.as_ref())?;
            let (bundle, _) = load_proof(&proof, &genesis)?;
            let handle = std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
            let (fingerprint, _) = Fingerprint::of_reader(std::io::BufReader::new(handle))
                .with_context(|| format!("cannot read {}", file.display()))?;
            let old = &bundle.record;
            let mut record = ArchiveRecord { fingerprint, ..old.clone() };
            if let Some(k) = kind {
                record.kind = RecordKind::parse(&k).map_err(|e| anyhow!("--kind: {e}"))?;
            }
            if let Some(a) = access {
                record.access = AccessClass::parse(&a).map_err(|e| anyhow!("--access: {e}"))?;
            }
            record.title = title.unwrap_or_else(|| old.title.clone());
            record.reference.sheets = sheets.or_else(|| old.reference.sheets.clone());
            record.date_from = date_from.or_else(|| old.date_from.clone());
            record.date_to = date_to.or_else(|| old.date_to.clone());
            record.validate().map_err(|e| anyhow!("{}: metadata refused: {e}", file.display()))?;
            let key = key.load()?;
            let body = TxBody::Supersede { target: bundle.record_ref(), record: record.clone(), reason };
            send(&node, &genesis, &key, body, Duration::from_secs(wait))?;
            let digest = format!("sha256:{}", record.fingerprint.sha256);
            let index = node.get(&format!("/v1/records/{digest}"))?["index"].as_u64().context("record index")?;
            let (entry, note) = fetch_proof(&node, index)?;
            let new_proof = new_proof_path(&file, out.as_deref());
            write_bundle(&genesis, &record, None, entry, note, &new_proof)?;
            let (sp, v) = fetch_status(&node, &genesis, &bundle.record_id())?;
            let status_out = status_path(&proof);
            write_atomic(&status_out, &sp.to_json())?;
            if conn.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "superseded": old.fingerprint.sha256.to_hex(),
                        "record": record.fingerprint.sha256.to_hex(),
                        "index": index,
                        "proof": new_proof.display().to_string(),
                        "status_proof": status_out.display().to_string(),
                        "status": status_json(&v),
                    })
                );
            } else {
                outln!("anchored  {}  sha256:{}  entry {index}", file.display(), record.fingerprint.sha256);
                outln!("proof     {}", new_proof.display());
                report(&v, Some(&status_out), false);
            }
            Ok(exit::OK)
        }
        RecordCommand::Status { proof, digest, out, conn } => {
            let node = Node::new(&conn.node)?;
            let genesis = genesis_of(&node, conn.genesis.as_ref())?;
            let (sp, v, default_out) = match (&proof, &digest) {
                (Some(p), _) => {
                    let (b, _) = load_proof(p, &genesis)?;
                    let (sp, v) = fetch_status(&node, &genesis, &b.record_id())?;
                    (sp, v, Some(status_path(p)))
                }
                (None, Some(d)) => {
                    let sha = match DocDigest::parse(d).map_err(|e| anyhow!("--digest: {e}"))? {
                        DocDigest::Sha256(h) | DocDigest::Either(h) => h,
                        DocDigest::Blake3(_) => bail!("--digest: a record's status is kept under its SHA-256 digest"),
                    };
                    // The document's single anchoring, whichever it is: the node names it.
                    let answer = node.get(&format!("/v1/records/sha256:{sha}/status"))?;
                    let (sp, v) = check_status(&answer, &genesis)?;
                    (sp, v, None)
                }
                (None, None) => bail!("give --proof P or --digest sha256:HEX"),
            };
            match out.or(default_out) {
                Some(path) => {
                    write_atomic(&path, &sp.to_json())?;
                    report(&v, Some(&path), conn.json);
                }
                None => out!("{}", sp.to_json()),
            }
            Ok(exit::OK)
        }
    }
}

/// Reads and verifies a proof file: a status change is only ever made from a valid proof.
fn load_proof(path: &Path, genesis: &Genesis) -> anyhow::Result<(ProofBundle, bundle::Verified)> {
    let text = read_bounded(path, bundle::MAX_BUNDLE_LEN as u64)?;
    let b = ProofBundle::from_json(&text).with_context(|| format!("{} is not a proof file", path.display()))?;
    let claim = DocumentClaim::File(b.record.fingerprint);
    let v = bundle::verify(&b, genesis, &claim)
        .map_err(|e| anyhow!("{} does not verify ({}): {e}", path.display(), e.code()))?;
    Ok((b, v))
}

fn send(
    node: &Node,
    genesis: &Genesis,
    key: &sabt_core::sign::SecretKey,
    body: TxBody,
    wait: Duration,
) -> anyhow::Result<()> {
    let nonce = submit::next_nonce(node, key)?;
    let s = submit::submit(node, &genesis.chain_id, key, nonce, body)?;
    submit::wait_committed(node, &s.id, wait)?;
    Ok(())
}

/// Fetches the status proof of `record` and verifies it against `genesis`, and that it is about
/// that record (its document, anchoring entry and leaf) and covers its entry.
fn fetch_status(node: &Node, genesis: &Genesis, record: &RecordId) -> anyhow::Result<(StatusProof, StatusVerified)> {
    let answer =
        node.get(&format!("/v1/records/sha256:{}/status?entry={}&leaf={}", record.sha256, record.entry, record.leaf))?;
    let (sp, v) = check_status(&answer, genesis)?;
    status::check_applies(&v, record).map_err(|e| anyhow!("the node's status proof: {e}"))?;
    Ok((sp, v))
}

/// Parses and verifies a status proof the node gave.
fn check_status(answer: &serde_json::Value, genesis: &Genesis) -> anyhow::Result<(StatusProof, StatusVerified)> {
    let sp = StatusProof::from_json(&answer.to_string()).context("the node's status proof")?;
    let v = status::verify(&sp, genesis)
        .map_err(|e| anyhow!("the status proof the node gave does not verify ({}): {e}", e.code()))?;
    Ok((sp, v))
}

/// `DIR/NAME.sabt-proof.json` → `DIR/NAME.sabt-status.json`.
pub(crate) fn status_path(proof: &Path) -> PathBuf {
    let text = proof.to_string_lossy();
    match text.strip_suffix(".sabt-proof.json") {
        Some(stem) => PathBuf::from(format!("{stem}.sabt-status.json")),
        None => PathBuf::from(format!("{text}.sabt-status.json")),
    }
}

fn new_proof_path(file: &Path, out: Option<&Path>) -> PathBuf {
    let name = format!("{}.sabt-proof.json", file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    match out {
        Some(dir) => dir.join(name),
        None => file.with_file_name(name),
    }
}

/// One line describing a status.
pub(crate) fn describe(status: Option<&RecordStatus>) -> String {
    match status {
        None => "current".to_string(),
        Some(s) => {
            let by = match (&s.state, &s.superseded_by) {
                (RecordState::Superseded, Some(fp)) => format!(" by sha256:{}", fp.sha256),
                _ => String::new(),
            };
            format!(
                "{}{by} at height {} (entry {}, {}): {}",
                s.state.as_str().to_uppercase(),
                s.height,
                s.index,
                time::format_utc_ms(s.time_ms),
                s.reason
            )
        }
    }
}

/// The status as JSON.
pub(crate) fn status_json(v: &StatusVerified) -> serde_json::Value {
    serde_json::json!({
        "state": v.status.as_ref().map_or("current", |s| s.state.as_str()),
        "at_height": v.height,
        "at_time": time::format_utc_ms(v.time_ms),
        "change": v.status,
    })
}

fn report(v: &StatusVerified, written: Option<&Path>, json: bool) {
    if json {
        let mut out = status_json(v);
        out["sha256"] = v.record.sha256.to_hex().into();
        out["entry"] = v.record.entry.into();
        out["leaf"] = v.record.leaf.into();
        out["status_proof"] = written.map(|p| p.display().to_string()).into();
        outln!("{out}");
    } else {
        outln!("record    sha256:{} anchored at entry {} (leaf {})", v.record.sha256, v.record.entry, v.record.leaf);
        outln!("status    {} (proven at height {})", describe(v.status.as_ref()), v.height);
        if let Some(p) = written {
            outln!("written   {}", p.display());
        }
    }
}

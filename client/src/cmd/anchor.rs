//! `sabt anchor FILE... | --dir DIR`: fingerprint documents locally, anchor them, and write one
//! proof file per document.
//!
//! Each file is hashed here (SHA-256 and BLAKE3, streamed); only the fingerprint and the archive
//! metadata leave the machine. One file is anchored as a single record; several are anchored as
//! batches (a local RFC 9162 tree over their records, at most `--batch-size` per transaction), and
//! each document still gets its own proof file, `FILE.sabt-proof.json` beside it (or under `--out`).
//!
//! Rerunning skips documents whose proof file is already there and verifies; a batch that was
//! committed before a crash is found by its root and its proofs are written without anchoring it
//! again. Exit 0 when every document has a valid proof, 3 when a transaction is still pending.

use crate::api::Node;
use crate::cmd::key::KeyArgs;
use crate::exit;
use crate::submit;
use anyhow::{Context as _, anyhow, bail};
use clap::Args as ClapArgs;
use sabt_core::bundle::{self, BUNDLE_FORMAT, BUNDLE_VERSION, BatchProof, DocumentClaim, EntryProof, ProofBundle};
use sabt_core::codec;
use sabt_core::entry::{AccessClass, ArchiveRecord, BatchAnchor, RecordKind, ReferenceCode};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::genesis::Genesis;
use sabt_core::hash::Hash32;
use sabt_core::merkle::{Blake3, MemoryTree};
use sabt_core::tx::TxBody;
use serde_json::json;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Documents to anchor.
    #[arg(conflicts_with = "dir")]
    pub files: Vec<PathBuf>,
    /// Anchor every file under this directory (recursively; proof files are skipped).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The node's API URL.
    #[arg(long, env = "SABT_NODE")]
    pub node: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Record kind: civil_status, notary, labour, land_property, education, health, permit,
    /// intellectual_property, other.
    #[arg(long)]
    pub kind: String,
    /// Archive (repository) holding the documents.
    #[arg(long)]
    pub repository: String,
    /// Fund number.
    #[arg(long)]
    pub fund: String,
    /// Inventory number.
    #[arg(long)]
    pub inventory: String,
    /// File (case) number within the inventory.
    #[arg(long = "file-no")]
    pub file_no: String,
    /// Sheets, e.g. `12-14`.
    #[arg(long)]
    pub sheets: Option<String>,
    /// The agency that created the documents.
    #[arg(long)]
    pub agency: String,
    /// Title (no personal data). Default: the file name.
    #[arg(long)]
    pub title: Option<String>,
    /// Earliest date of the documents: YYYY, YYYY-MM or YYYY-MM-DD.
    #[arg(long)]
    pub date_from: Option<String>,
    /// Latest date of the documents.
    #[arg(long)]
    pub date_to: Option<String>,
    /// Access class: public, restricted or confidential.
    #[arg(long, default_value = "public")]
    pub access: String,
    /// Write proof files under this directory instead of beside the documents.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Most documents in one batch transaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_size: u64,
    /// The genesis to check the written proofs against (default: the node's).
    #[arg(long, env = "SABT_GENESIS")]
    pub genesis: Option<PathBuf>,
    /// Print one JSON line per document.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for each transaction to commit.
    #[arg(long, default_value_t = 120)]
    pub wait: u64,
}

struct Doc {
    path: PathBuf,
    proof: PathBuf,
    record: ArchiveRecord,
}

fn collect(args: &Args) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    if let Some(dir) = &args.dir {
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if !is_sabt_output(&p) {
                    files.push(p);
                }
            }
        }
    } else {
        files.clone_from(&args.files);
    }
    if files.is_empty() {
        bail!("nothing to anchor: give FILE... or --dir DIR");
    }
    files.sort();
    Ok(files)
}

/// Proof and status files this tool writes (and their temporary files): never anchored by `--dir`.
fn is_sabt_output(path: &Path) -> bool {
    let name = path.to_string_lossy();
    let name = name.strip_suffix(".tmp").unwrap_or(&name);
    name.ends_with(".sabt-proof.json") || name.ends_with(".sabt-status.json")
}

fn proof_path(args: &Args, file: &Path) -> PathBuf {
    let name = format!("{}.sabt-proof.json", file.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    match &args.out {
        Some(dir) => dir.join(name),
        None => file.with_file_name(name),
    }
}

fn record_for(
    args: &Args,
    kind: RecordKind,
    access: AccessClass,
    fp: Fingerprint,
    path: &Path,
) -> anyhow::Result<ArchiveRecord> {
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default());
    let r = ArchiveRecord {
        fingerprint: fp,
        kind,
        reference: ReferenceCode {
            repository: args.repository.clone(),
            fund: args.fund.clone(),
            inventory: args.inventory.clone(),
            file: args.file_no.clone(),
            sheets: args.sheets.clone(),
        },
        creating_agency: args.agency.clone(),
        title,
        date_from: args.date_from.clone(),
        date_to: args.date_to.clone(),
        access,
    };
    r.validate().map_err(|e| anyhow!("{}: metadata refused: {e}", path.display()))?;
    Ok(r)
}

/// Builds the proof bundle for `record`, checks it against `genesis` (a proof that does not verify
/// is never written), and writes it to `path`.
pub(crate) fn write_bundle(
    genesis: &Genesis,
    record: &ArchiveRecord,
    batch: Option<BatchProof>,
    entry: EntryProof,
    note: String,
    path: &Path,
) -> anyhow::Result<bundle::Verified> {
    let b = ProofBundle {
        format: BUNDLE_FORMAT.to_string(),
        version: BUNDLE_VERSION,
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
        record: record.clone(),
        batch,
        entry,
        checkpoint: note,
        validator_set_updates: Vec::new(),
    };
    let v = bundle::verify(&b, genesis, &DocumentClaim::File(record.fingerprint))
        .map_err(|e| anyhow!("the proof the node gave does not verify: {e}"))?;
    crate::files::write_atomic(path, &b.to_json())?;
    Ok(v)
}

/// The entry at `index` with its inclusion path and the latest cosigned checkpoint.
pub(crate) fn fetch_proof(node: &Node, index: u64) -> anyhow::Result<(EntryProof, String)> {
    let p = node.get(&format!("/v1/entries/{index}/proof"))?;
    let encoded = hex::decode(p["encoded"].as_str().unwrap_or_default()).context("entry bytes from the node")?;
    let path = p["path"]
        .as_array()
        .context("inclusion path from the node")?
        .iter()
        .map(|h| Hash32::from_hex(h.as_str().unwrap_or_default()).map_err(|e| anyhow!("inclusion path: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let note = p["checkpoint"].as_str().context("checkpoint from the node")?.to_string();
    Ok((EntryProof { index, encoded, path }, note))
}

struct Ctx<'a> {
    genesis: &'a Genesis,
    json: bool,
    done: usize,
    total: usize,
    progress: bool,
}

impl Ctx<'_> {
    fn write(&mut self, doc: &Doc, batch: Option<BatchProof>, entry: EntryProof, note: String) -> anyhow::Result<()> {
        let v = write_bundle(self.genesis, &doc.record, batch, entry, note, &doc.proof)
            .with_context(|| format!("proof for {}", doc.path.display()))?;
        self.report(doc, "anchored", Some(v.index));
        Ok(())
    }

    fn report(&mut self, doc: &Doc, status: &str, index: Option<u64>) {
        self.done += 1;
        if self.json {
            println!(
                "{}",
                json!({
                    "file": doc.path.display().to_string(),
                    "status": status,
                    "sha256": doc.record.fingerprint.sha256.to_hex(),
                    "index": index,
                    "proof": doc.proof.display().to_string(),
                })
            );
        } else if !self.progress {
            println!("{status:<9} {}  sha256:{}", doc.path.display(), doc.record.fingerprint.sha256);
        }
        if self.progress {
            eprint!("\ranchored {}/{} documents", self.done, self.total);
            if self.done == self.total {
                eprintln!();
            }
        }
    }
}

/// Runs the command.
pub fn exec(args: Args) -> anyhow::Result<u8> {
    let kind = RecordKind::parse(&args.kind).map_err(|e| anyhow!("--kind: {e}"))?;
    let access = AccessClass::parse(&args.access).map_err(|e| anyhow!("--access: {e}"))?;
    let node = Node::new(&args.node)?;
    let genesis = crate::api::genesis_of(&node, args.genesis.as_ref())?;
    let files = collect(&args)?;
    let key = args.key.load()?;
    let progress = std::io::stderr().is_terminal() && !args.json;
    let mut ctx = Ctx { genesis: &genesis, json: args.json, done: 0, total: files.len(), progress };

    // Hash locally; skip documents whose proof is already written and valid.
    let mut todo = Vec::new();
    for f in files {
        let file = std::fs::File::open(&f).with_context(|| format!("cannot open {}", f.display()))?;
        let (fp, _) = Fingerprint::of_reader(std::io::BufReader::new(file))
            .with_context(|| format!("cannot read {}", f.display()))?;
        let proof = proof_path(&args, &f);
        let doc = Doc { record: record_for(&args, kind, access, fp, &f)?, path: f, proof };
        let valid = crate::files::read_bounded(&doc.proof, bundle::MAX_BUNDLE_LEN as u64)
            .ok()
            .and_then(|t| ProofBundle::from_json(&t).ok())
            .is_some_and(|b| bundle::verify(&b, &genesis, &DocumentClaim::File(fp)).is_ok());
        if valid {
            ctx.report(&doc, "skipped", None);
        } else {
            todo.push(doc);
        }
    }
    if todo.is_empty() {
        return Ok(exit::OK);
    }
    let chain = genesis.chain_id.clone();
    let wait = Duration::from_secs(args.wait);
    if todo.len() == 1 {
        let doc = &todo[0];
        let digest = format!("sha256:{}", doc.record.fingerprint.sha256);
        let index = match node.get(&format!("/v1/records/{digest}")) {
            Ok(v) => v["index"].as_u64().context("record index")?,
            Err(_) => {
                let nonce = submit::next_nonce(&node, &key)?;
                let s = submit::submit(&node, &chain, &key, nonce, TxBody::Anchor(doc.record.clone()))?;
                submit::wait_committed(&node, &s.id, wait)?;
                node.get(&format!("/v1/records/{digest}"))?["index"].as_u64().context("record index")?
            }
        };
        let (entry, note) = fetch_proof(&node, index)?;
        ctx.write(doc, None, entry, note)?;
        return Ok(exit::OK);
    }
    let per = usize::try_from(args.batch_size).unwrap_or(10_000);
    for chunk in todo.chunks(per) {
        let mut tree = MemoryTree::<Blake3>::new();
        for d in chunk {
            tree.push(&codec::encode(&d.record));
        }
        let root = tree.root();
        let index = match node.get(&format!("/v1/batches/{root}")) {
            Ok(v) => v["index"].as_u64().context("batch index")?,
            Err(_) => {
                let nonce = submit::next_nonce(&node, &key)?;
                let body = TxBody::AnchorBatch(BatchAnchor { root, size: tree.size(), kind });
                let s = submit::submit(&node, &chain, &key, nonce, body)?;
                submit::wait_committed(&node, &s.id, wait)?;
                node.get(&format!("/v1/batches/{root}"))?["index"].as_u64().context("batch index")?
            }
        };
        let (entry, note) = fetch_proof(&node, index)?;
        for (i, d) in (0u64..).zip(chunk) {
            let path = tree.inclusion_proof(i, tree.size()).map_err(|e| anyhow!("batch path: {e}"))?;
            ctx.write(d, Some(BatchProof { index: i, size: tree.size(), path }), entry.clone(), note.clone())?;
        }
    }
    Ok(exit::OK)
}

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
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sabt_core::bundle::{self, BUNDLE_FORMAT, BUNDLE_VERSION, BatchProof, DocumentClaim, EntryProof, ProofBundle};
use sabt_core::codec;
use sabt_core::entry::{AccessClass, ArchiveRecord, BatchAnchor, RecordKind, ReferenceCode};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::genesis::Genesis;
use sabt_core::hash::Hash32;
use sabt_core::merkle::{Blake3, MemoryTree};
use sabt_core::sign::SecretKey;
use sabt_core::tx::TxBody;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Documents to anchor.
    #[arg(conflicts_with_all = ["dir", "manifest"])]
    pub files: Vec<PathBuf>,
    /// Anchor every file under this directory (recursively; proof files are skipped).
    #[arg(long, conflicts_with = "manifest")]
    pub dir: Option<PathBuf>,
    /// A CSV or JSON manifest listing the documents and their metadata, one per row: a `file`
    /// column (relative to the manifest) and any of kind, repository, fund, inventory, file_no,
    /// sheets, agency, title, date_from, date_to, access. Flags give the values a row leaves empty.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The node's API URL.
    #[arg(long, env = "SABT_NODE")]
    pub node: String,
    #[command(flatten)]
    pub key: KeyArgs,
    #[command(flatten)]
    pub meta: MetaArgs,
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
    /// When a document (or a batch) is already anchored by another key, write that anchoring's
    /// proof as this document's instead of refusing. The record stays the other signer's: only
    /// its agency may withdraw or supersede it.
    #[arg(long)]
    pub accept_existing: bool,
}

/// Archive metadata: from flags, or per document from a manifest row (a row's values win).
#[derive(ClapArgs, Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaArgs {
    /// Record kind: civil_status, notary, labour, land_property, education, health, permit,
    /// intellectual_property, other.
    #[arg(long)]
    pub kind: Option<String>,
    /// Archive (repository) holding the documents.
    #[arg(long)]
    pub repository: Option<String>,
    /// Fund number.
    #[arg(long)]
    pub fund: Option<String>,
    /// Inventory number.
    #[arg(long)]
    pub inventory: Option<String>,
    /// File (case) number within the inventory.
    #[arg(long = "file-no")]
    pub file_no: Option<String>,
    /// Sheets, e.g. `12-14`.
    #[arg(long)]
    pub sheets: Option<String>,
    /// The agency that created the documents.
    #[arg(long)]
    pub agency: Option<String>,
    /// Title (no personal data). Default: none. Not the file name, which often names a person
    /// and would stay on the ledger for good.
    #[arg(long)]
    pub title: Option<String>,
    /// Earliest date of the documents: YYYY, YYYY-MM or YYYY-MM-DD.
    #[arg(long)]
    pub date_from: Option<String>,
    /// Latest date of the documents.
    #[arg(long)]
    pub date_to: Option<String>,
    /// Access class: public (default), restricted or confidential.
    #[arg(long)]
    pub access: Option<String>,
}

impl MetaArgs {
    /// This row's values, with `defaults` where the row has none (empty cells count as none).
    fn or(self, defaults: &MetaArgs) -> MetaArgs {
        let pick = |a: Option<String>, b: &Option<String>| a.filter(|v| !v.trim().is_empty()).or_else(|| b.clone());
        MetaArgs {
            kind: pick(self.kind, &defaults.kind),
            repository: pick(self.repository, &defaults.repository),
            fund: pick(self.fund, &defaults.fund),
            inventory: pick(self.inventory, &defaults.inventory),
            file_no: pick(self.file_no, &defaults.file_no),
            sheets: pick(self.sheets, &defaults.sheets),
            agency: pick(self.agency, &defaults.agency),
            title: pick(self.title, &defaults.title),
            date_from: pick(self.date_from, &defaults.date_from),
            date_to: pick(self.date_to, &defaults.date_to),
            access: pick(self.access, &defaults.access),
        }
    }

    /// The record for a document with fingerprint `fp`; `what` names the source of the metadata
    /// in errors.
    fn record(&self, fp: Fingerprint, what: &str) -> anyhow::Result<ArchiveRecord> {
        let need = |v: &Option<String>, flag: &str, column: &str| {
            v.clone().ok_or_else(|| anyhow!("{what}: no {column}: give --{flag} or a {column} column in the manifest"))
        };
        let kind = RecordKind::parse(&need(&self.kind, "kind", "kind")?).map_err(|e| anyhow!("{what}: {e}"))?;
        let access =
            AccessClass::parse(self.access.as_deref().unwrap_or("public")).map_err(|e| anyhow!("{what}: {e}"))?;
        let title = self.title.clone().unwrap_or_default();
        let r = ArchiveRecord {
            fingerprint: fp,
            kind,
            reference: ReferenceCode {
                repository: need(&self.repository, "repository", "repository")?,
                fund: need(&self.fund, "fund", "fund")?,
                inventory: need(&self.inventory, "inventory", "inventory")?,
                file: need(&self.file_no, "file-no", "file_no")?,
                sheets: self.sheets.clone(),
            },
            creating_agency: need(&self.agency, "agency", "agency")?,
            title,
            date_from: self.date_from.clone(),
            date_to: self.date_to.clone(),
            access,
        };
        r.validate().map_err(|e| anyhow!("{what}: metadata refused: {e}"))?;
        Ok(r)
    }
}

/// The largest manifest read.
const MAX_MANIFEST: u64 = 256 << 20;

/// One manifest row, as a JSON object: its `file`, and the rest as metadata.
fn manifest_row(
    base: &Path,
    mut row: serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<(PathBuf, MetaArgs)> {
    let file = match row.remove("file") {
        Some(serde_json::Value::String(f)) if !f.trim().is_empty() => f,
        _ => bail!("no \"file\": every row names its document in a \"file\" column"),
    };
    let meta: MetaArgs = serde_json::from_value(serde_json::Value::Object(row)).map_err(|e| anyhow!("{e}"))?;
    Ok((base.join(file.trim()), meta))
}

/// Reads a CSV (`.csv`, with a header row) or JSON (`.json`: an array of objects) manifest: each
/// document's path, resolved against the manifest's directory, and its metadata.
fn read_manifest(path: &Path) -> anyhow::Result<Vec<(PathBuf, MetaArgs)>> {
    use serde_json::{Map, Value};
    let text = crate::files::read_bounded(path, MAX_MANIFEST)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let mut rows = Vec::new();
    match ext.as_str() {
        "csv" => {
            let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
            let headers = reader.headers().map_err(|e| anyhow!("{}: header row: {e}", path.display()))?.clone();
            for (i, record) in reader.records().enumerate() {
                // Line 1 is the header.
                let at = || format!("{} row {}", path.display(), i + 2);
                let record = record.map_err(|e| anyhow!("{}: {e}", at()))?;
                let row: Map<String, Value> = headers
                    .iter()
                    .zip(record.iter())
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                    .collect();
                rows.push(manifest_row(base, row).map_err(|e| anyhow!("{}: {e}", at()))?);
            }
        }
        "json" => {
            let list: Vec<Map<String, Value>> = serde_json::from_str(&text)
                .map_err(|e| anyhow!("{}: {e}; expected an array of objects with a \"file\" field", path.display()))?;
            for (i, row) in list.into_iter().enumerate() {
                rows.push(manifest_row(base, row).map_err(|e| anyhow!("{} item {}: {e}", path.display(), i + 1))?);
            }
        }
        _ => bail!("--manifest {}: name it .csv or .json", path.display()),
    }
    if rows.is_empty() {
        bail!("--manifest {} lists no documents", path.display());
    }
    Ok(rows)
}

struct Doc {
    path: PathBuf,
    proof: PathBuf,
    record: ArchiveRecord,
}

/// The documents to anchor, each with its metadata (flags, or the manifest row over the flags).
fn collect(args: &Args) -> anyhow::Result<Vec<(PathBuf, MetaArgs)>> {
    if let Some(m) = &args.manifest {
        return Ok(read_manifest(m)?.into_iter().map(|(p, meta)| (p, meta.or(&args.meta))).collect());
    }
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
        bail!("nothing to anchor: give FILE..., --dir DIR or --manifest FILE");
    }
    files.sort();
    Ok(files.into_iter().map(|f| (f, args.meta.clone())).collect())
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
    bar: ProgressBar,
}

impl Ctx<'_> {
    fn write(&mut self, doc: &Doc, batch: Option<BatchProof>, entry: EntryProof, note: String) -> anyhow::Result<()> {
        let v = write_bundle(self.genesis, &doc.record, batch, entry, note, &doc.proof)
            .with_context(|| format!("proof for {}", doc.path.display()))?;
        self.report(doc, "anchored", Some(v.index));
        Ok(())
    }

    fn report(&mut self, doc: &Doc, status: &str, index: Option<u64>) {
        self.bar.inc(1);
        if self.json {
            let line = json!({
                "file": doc.path.display().to_string(),
                "status": status,
                "sha256": doc.record.fingerprint.sha256.to_hex(),
                "index": index,
                "proof": doc.proof.display().to_string(),
            });
            self.bar.suspend(|| outln!("{line}"));
        } else if self.bar.is_hidden() {
            outln!("{status:<9} {}  sha256:{}", doc.path.display(), doc.record.fingerprint.sha256);
        }
    }
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress_bar(len: usize, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(u64::try_from(len).unwrap_or(u64::MAX)),
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    if let Ok(style) = ProgressStyle::with_template("{msg:10} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// Runs the command.
pub fn exec(args: Args) -> anyhow::Result<u8> {
    let node = Node::new(&args.node)?;
    let genesis = crate::api::genesis_of(&node, args.genesis.as_ref())?;
    let files = collect(&args)?;
    // Every row's metadata is checked before anything is hashed or sent.
    for (i, (f, meta)) in files.iter().enumerate() {
        let what = format!("document {} ({})", i + 1, f.display());
        meta.record(Fingerprint::of_bytes(b""), &what)?;
    }
    let key = args.key.load()?;

    // Hash locally; skip documents whose proof is already written and valid.
    let hashing = progress_bar(files.len(), "hashing");
    let mut todo = Vec::new();
    let mut done = Vec::new();
    for (f, meta) in files {
        let file = std::fs::File::open(&f).with_context(|| format!("cannot open {}", f.display()))?;
        let (fp, _) = Fingerprint::of_reader(std::io::BufReader::new(file))
            .with_context(|| format!("cannot read {}", f.display()))?;
        let proof = proof_path(&args, &f);
        let doc = Doc { record: meta.record(fp, &f.display().to_string())?, path: f, proof };
        let valid = crate::files::read_bounded(&doc.proof, bundle::MAX_BUNDLE_LEN as u64)
            .ok()
            .and_then(|t| ProofBundle::from_json(&t).ok())
            .is_some_and(|b| bundle::verify(&b, &genesis, &DocumentClaim::File(fp)).is_ok());
        if valid {
            done.push(doc)
        } else {
            todo.push(doc)
        }
        hashing.inc(1);
    }
    hashing.finish_and_clear();
    let mut ctx = Ctx { genesis: &genesis, json: args.json, bar: progress_bar(done.len() + todo.len(), "anchoring") };
    for doc in &done {
        ctx.report(doc, "skipped", None);
    }
    let result = anchor_all(&args, &node, &key, &mut ctx, todo);
    ctx.bar.finish_and_clear();
    result
}

/// The entry of an anchoring that exists already (the node's answer `v` about `what`): this key's
/// own (a run interrupted after its transaction committed), or another key's, which is refused
/// unless `accept` says to take it.
fn existing(v: &serde_json::Value, key: &SecretKey, accept: bool, what: &str) -> anyhow::Result<u64> {
    let index = v["index"].as_u64().context("the anchoring's entry index")?;
    let signer = v["signer"].as_str().unwrap_or_default();
    if signer == key.public().to_hex() || accept {
        return Ok(index);
    }
    let agency = v["agency"].as_str().unwrap_or("(unknown)");
    Err(crate::api::Refused {
        status: 409,
        code: "already_anchored".into(),
        message: format!(
            "{what} is already anchored by agency {agency} at entry {index}, by another key; that record is theirs. \
             Pass --accept-existing to write its proof for this document anyway"
        ),
    }
    .into())
}

fn anchor_all(args: &Args, node: &Node, key: &SecretKey, ctx: &mut Ctx<'_>, todo: Vec<Doc>) -> anyhow::Result<u8> {
    if todo.is_empty() {
        return Ok(exit::OK);
    }
    let chain = ctx.genesis.chain_id.clone();
    let wait = Duration::from_secs(args.wait);
    if todo.len() == 1 {
        let doc = &todo[0];
        let digest = format!("sha256:{}", doc.record.fingerprint.sha256);
        let index = match node.get(&format!("/v1/records/{digest}")) {
            Ok(v) => existing(&v, key, args.accept_existing, &digest)?,
            Err(_) => {
                let nonce = submit::next_nonce(node, key)?;
                let s = submit::submit(node, &chain, key, nonce, TxBody::Anchor(doc.record.clone()))?;
                submit::wait_committed(node, &s.id, wait)?;
                node.get(&format!("/v1/records/{digest}"))?["index"].as_u64().context("record index")?
            }
        };
        let (entry, note) = fetch_proof(node, index)?;
        ctx.write(doc, None, entry, note)?;
        return Ok(exit::OK);
    }
    // A batch declares one record kind: documents of different kinds go in different batches.
    let mut by_kind: BTreeMap<RecordKind, Vec<Doc>> = BTreeMap::new();
    for d in todo {
        by_kind.entry(d.record.kind).or_default().push(d);
    }
    let per = usize::try_from(args.batch_size).unwrap_or(10_000);
    for (kind, docs) in by_kind {
        for chunk in docs.chunks(per) {
            let mut tree = MemoryTree::<Blake3>::new();
            for d in chunk {
                tree.push(&codec::encode(&d.record));
            }
            let root = tree.root();
            let index = match node.get(&format!("/v1/batches/{root}")) {
                Ok(v) => existing(&v, key, args.accept_existing, &format!("batch {root}"))?,
                Err(_) => {
                    let nonce = submit::next_nonce(node, key)?;
                    let body = TxBody::AnchorBatch(BatchAnchor { root, size: tree.size(), kind });
                    let s = submit::submit(node, &chain, key, nonce, body)?;
                    submit::wait_committed(node, &s.id, wait)?;
                    node.get(&format!("/v1/batches/{root}"))?["index"].as_u64().context("batch index")?
                }
            };
            let (entry, note) = fetch_proof(node, index)?;
            for (i, d) in (0u64..).zip(chunk) {
                let path = tree.inclusion_proof(i, tree.size()).map_err(|e| anyhow!("batch path: {e}"))?;
                ctx.write(d, Some(BatchProof { index: i, size: tree.size(), path }), entry.clone(), note.clone())?;
            }
        }
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn defaults() -> MetaArgs {
        MetaArgs {
            kind: Some("notary".into()),
            repository: Some("Main Archive".into()),
            fund: Some("7".into()),
            agency: Some("Notary Office 1".into()),
            ..MetaArgs::default()
        }
    }

    #[test]
    fn csv_and_json_manifests_fill_in_from_flags_and_name_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("m.csv");
        std::fs::write(
            &csv,
            "file,kind,inventory,file_no,sheets,title,date_from\n\
             scans/a.tif,civil_status,2,31,12,Birth register,1961\n\
             scans/b.tif,,2,32,,,\n",
        )
        .unwrap();
        let rows = read_manifest(&csv).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, dir.path().join("scans/a.tif"));
        let fp = Fingerprint::of_bytes(b"x");
        let a = rows[0].1.clone().or(&defaults()).record(fp, "a").unwrap();
        assert_eq!(
            (a.kind, a.reference.sheets.as_deref(), a.title.as_str()),
            (RecordKind::CivilStatus, Some("12"), "Birth register")
        );
        assert_eq!(a.reference.repository, "Main Archive");
        let b = rows[1].1.clone().or(&defaults()).record(fp, "b").unwrap();
        // No title given: none, not the file name (which may name a person).
        assert_eq!((b.kind, b.reference.file.as_str(), b.title.as_str()), (RecordKind::Notary, "32", ""));
        // A row missing a required value names it and the fix.
        let err = rows[1].1.clone().record(fp, "row 3").unwrap_err().to_string();
        assert!(err.contains("row 3") && err.contains("--kind"), "{err}");

        let json = dir.path().join("m.json");
        std::fs::write(
            &json,
            r#"[{"file": "c.pdf", "kind": "labour", "inventory": "1", "file_no": "9", "access": "restricted"}]"#,
        )
        .unwrap();
        let rows = read_manifest(&json).unwrap();
        let c = rows[0].1.clone().or(&defaults()).record(fp, "c").unwrap();
        assert_eq!((c.kind, c.access), (RecordKind::Labour, AccessClass::Restricted));

        // Unknown columns, a bad kind, a bad date and an unknown extension are refused with the place.
        std::fs::write(&csv, "file,colour\na.tif,red\n").unwrap();
        assert!(read_manifest(&csv).unwrap_err().to_string().contains("row 2"));
        std::fs::write(&json, r#"[{"file": "c.pdf", "kind": "deed"}]"#).unwrap();
        let rows = read_manifest(&json).unwrap();
        assert!(rows[0].1.clone().or(&defaults()).record(fp, "c").unwrap_err().to_string().contains("deed"));
        std::fs::write(&json, r#"[{"file": "c.pdf", "date_from": "1961-13"}]"#).unwrap();
        let rows = read_manifest(&json).unwrap();
        let mut d = defaults();
        d.inventory = Some("1".into());
        d.file_no = Some("2".into());
        assert!(rows[0].1.clone().or(&d).record(fp, "c").unwrap_err().to_string().contains("date_from"));
        let txt = dir.path().join("m.txt");
        std::fs::write(&txt, "file\n").unwrap();
        assert!(read_manifest(&txt).unwrap_err().to_string().contains(".csv or .json"));
    }
}

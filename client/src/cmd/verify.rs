//! `sabt verify`: check a document against its proof file, offline, trusting only the genesis.
//!
//! Exit 0 when the proof is valid, 1 when it is not (with the reason), 2 for usage or input errors
//! (a missing file, an unreadable or invalid genesis).
//!
//! With `--status S` (from `sabt record status`) it also checks, offline, whether the record was
//! withdrawn or superseded by the block that status proof is taken at; `--require-current` makes a
//! withdrawn or superseded record exit 1.

use crate::cmd::record;
use crate::files::read_bounded;
use crate::{exit, time};
use anyhow::Context as _;
use sabt_core::bundle::{self, DocumentClaim, ProofBundle, VerifyError};
use sabt_core::fingerprint::{DocDigest, Fingerprint};
use sabt_core::genesis::Genesis;
use sabt_core::status::{self, StatusError, StatusProof, StatusVerified};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The document to verify (hashed locally). Omit it and give --digest instead.
    #[arg(required_unless_present_any = ["digest", "parcel"], conflicts_with_all = ["digest", "parcel"])]
    file: Option<PathBuf>,
    /// A parcel's current-state proof (`sabt parcel show --proof-out`) instead of a document.
    #[arg(long, value_name = "PARCEL_PROOF", conflicts_with_all = ["digest", "proof", "status"])]
    parcel: Option<PathBuf>,
    /// A digest instead of a file: `sha256:HEX`, `blake3:HEX` or bare HEX (either algorithm).
    #[arg(long, value_name = "DIGEST")]
    digest: Option<String>,
    /// The proof file. Default: FILE.sabt-proof.json beside the document.
    #[arg(long, value_name = "P", required_unless_present_any = ["file", "parcel"])]
    proof: Option<PathBuf>,
    /// The chain's genesis document: the only thing the verification trusts.
    #[arg(long, value_name = "G", env = "SABT_GENESIS")]
    genesis: PathBuf,
    /// A status proof (`sabt record status`): also prove whether the record is still current.
    #[arg(long, value_name = "S")]
    status: Option<PathBuf>,
    /// Exit 1 when the status proof shows the record withdrawn or superseded.
    #[arg(long, requires = "status")]
    require_current: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn exec(args: Args) -> anyhow::Result<u8> {
    if let Some(p) = &args.parcel {
        return crate::cmd::parcel::verify_file(p, &args.genesis, args.json);
    }
    let genesis_text = read_bounded(&args.genesis, 4 << 20).with_context(|| {
        format!("cannot read genesis {}: pass the chain's genesis.json with --genesis", args.genesis.display())
    })?;
    let genesis = Genesis::from_json(&genesis_text)
        .with_context(|| format!("{} is not a valid genesis document", args.genesis.display()))?;

    let claim = match (&args.file, &args.digest) {
        (_, Some(d)) => DocumentClaim::Digest(DocDigest::parse(d).map_err(|e| anyhow::anyhow!("--digest: {e}"))?),
        (Some(f), None) => {
            let file = std::fs::File::open(f)
                .with_context(|| format!("cannot open document {}: check the path", f.display()))?;
            let (fp, _) = Fingerprint::of_reader(std::io::BufReader::new(file))
                .with_context(|| format!("cannot read document {}", f.display()))?;
            DocumentClaim::File(fp)
        }
        (None, None) => anyhow::bail!("give a FILE or --digest"),
    };
    let proof_path = match (&args.proof, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => PathBuf::from(format!("{}.sabt-proof.json", f.display())),
        (None, None) => anyhow::bail!("give --proof"),
    };
    let proof_text = read_bounded(&proof_path, bundle::MAX_BUNDLE_LEN as u64)
        .with_context(|| format!("cannot read proof {}: pass it with --proof", proof_path.display()))?;

    let status_text = match &args.status {
        Some(p) => Some(read_bounded(p, status::MAX_STATUS_LEN as u64).with_context(|| {
            format!("cannot read status proof {}: fetch one with `sabt record status`", p.display())
        })?),
        None => None,
    };

    let outcome = ProofBundle::from_json(&proof_text).and_then(|b| bundle::verify(&b, &genesis, &claim));
    match outcome {
        Ok(v) => {
            let st = match status_text.as_deref().map(|t| check_status(t, &genesis, &v)).transpose() {
                Ok(st) => st,
                Err(e) => {
                    if args.json {
                        let out = serde_json::json!({"valid": false, "error": e.code(), "message": e.to_string()});
                        outln!("{out}");
                    } else {
                        outln!("INVALID status proof ({}): {e}", e.code());
                    }
                    return Ok(exit::INVALID);
                }
            };
            let not_current = st.as_ref().is_some_and(|s| s.status.is_some());
            let time = time::format_utc_ms(v.time_ms);
            if args.json {
                let out = serde_json::json!({
                    "valid": true,
                    "chain_id": genesis.chain_id,
                    "genesis_hash": genesis.hash().to_hex(),
                    "index": v.index,
                    "height": v.height,
                    "time": time,
                    "time_ms": v.time_ms,
                    "tx": v.tx.to_hex(),
                    "signer": v.signer.to_hex(),
                    "batch_index": v.batch_index.map(|b| b.0),
                    "batch_size": v.batch_index.map(|b| b.1),
                    "checkpoint_size": v.checkpoint.checkpoint.size,
                    "checkpoint_root": v.checkpoint.checkpoint.root.to_hex(),
                    "signers": v.checkpoint.signers,
                    "signed_power": v.checkpoint.signed_power.to_string(),
                    "total_power": v.checkpoint.total_power.to_string(),
                    "record": v.record,
                    "status": st.as_ref().map(record::status_json),
                    "current": st.as_ref().map(|s| s.status.is_none()),
                });
                outln!("{out}");
            } else {
                let r = &v.record;
                outln!("VALID");
                outln!("  document   sha256:{}", r.fingerprint.sha256);
                outln!("             blake3:{}", r.fingerprint.blake3);
                outln!(
                    "  record     {} · {} / fund {} / inventory {} / file {}{}",
                    r.kind.as_str(),
                    r.reference.repository,
                    r.reference.fund,
                    r.reference.inventory,
                    r.reference.file,
                    r.reference.sheets.as_ref().map(|s| format!(" / sheets {s}")).unwrap_or_default()
                );
                outln!("  title      {}", r.title);
                outln!("  anchored   entry {} at height {}, {} (consensus time)", v.index, v.height, time);
                if let Some((i, n)) = v.batch_index {
                    outln!("  batch      document {} of {}", i + 1, n);
                }
                outln!("  chain      {} (genesis {})", genesis.chain_id, genesis.hash());
                outln!(
                    "  checkpoint size {} signed by {} ({} of {} voting power)",
                    v.checkpoint.checkpoint.size,
                    v.checkpoint.signers.join(", "),
                    v.checkpoint.signed_power,
                    v.checkpoint.total_power
                );
                match &st {
                    Some(s) => {
                        outln!("  status     {} (proven at height {})", record::describe(s.status.as_ref()), s.height)
                    }
                    None => outln!("  status     not checked (pass --status from `sabt record status`)"),
                }
            }
            if not_current && args.require_current {
                if !args.json {
                    outln!("NOT CURRENT: the record was withdrawn or superseded (--require-current)");
                }
                return Ok(exit::INVALID);
            }
            Ok(exit::OK)
        }
        Err(e) => {
            report_invalid(&e, &proof_path, args.json);
            Ok(exit::INVALID)
        }
    }
}

fn check_status(text: &str, genesis: &Genesis, v: &bundle::Verified) -> Result<StatusVerified, StatusError> {
    let sp = StatusProof::from_json(text)?;
    let sv = status::verify(&sp, genesis)?;
    status::check_applies(&sv, &v.record_id())?;
    Ok(sv)
}

fn report_invalid(e: &VerifyError, proof: &Path, json: bool) {
    if json {
        let out = serde_json::json!({"valid": false, "error": e.code(), "message": e.to_string(), "proof": proof.display().to_string()});
        outln!("{out}");
    } else {
        outln!("INVALID ({}): {e}", e.code());
    }
}

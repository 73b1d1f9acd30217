//! `sabt audit`: check that a node's history is what the genesis allows, and was never rewritten.
//!
//! - `chain`: fetches every block and re-executes the whole registry from the genesis in memory:
//!   hash links, every commit certificate (distinct validators holding more than two thirds of the
//!   power), every transaction's signature, nonce and authority, the log root, the state root, and
//!   each block's cosigned checkpoint. The first inconsistency is reported with its evidence.
//! - `consistency`: proves that the node's current checkpoint extends an older one (RFC 9162).
//! - `watch`: keeps the last trusted checkpoint in a state file; each round checks that the new
//!   checkpoint extends it, and alarms (exit 1) on a fork or a rollback.
//!
//! Exit codes: 0 consistent, 1 inconsistency found (printed with evidence), 2 usage or input
//! error, 4 the node could not be reached.

use crate::api::{Node, genesis_of};
use crate::exit;
use crate::files::{MAX_NOTE, read_bounded};
use anyhow::{Context as _, anyhow};
use clap::{Args as ClapArgs, Subcommand};
use sabt_core::block::{Block, Commit, verify_commit};
use sabt_core::checkpoint::{VerifiedCheckpoint, verify_cosigned};
use sabt_core::codec;
use sabt_core::genesis::Genesis;
use sabt_core::hash::Hash32;
use sabt_core::merkle::{self, Blake3};
use sabt_core::registry::{MemoryLedger, Registry, Tip};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand, Debug)]
enum AuditCommand {
    /// Re-verify the whole chain from the genesis.
    Chain {
        /// The node's API URL.
        #[arg(long, env = "SABT_NODE")]
        node: String,
        /// The genesis to trust (default: the node's, whose hash is printed to compare).
        #[arg(long, env = "SABT_GENESIS")]
        genesis: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Prove that the node's current checkpoint extends an older cosigned checkpoint.
    Consistency {
        /// The node's API URL.
        #[arg(long, env = "SABT_NODE")]
        node: String,
        /// A file holding the older checkpoint (a cosigned note, e.g. from a proof file).
        #[arg(long)]
        old: PathBuf,
        /// The genesis to trust (default: the node's).
        #[arg(long, env = "SABT_GENESIS")]
        genesis: Option<PathBuf>,
    },
    /// Keep the last trusted checkpoint in a state file and alarm on a fork or rollback.
    Watch {
        /// The node's API URL.
        #[arg(long, env = "SABT_NODE")]
        node: String,
        /// State file (created on the first round).
        #[arg(long)]
        state: PathBuf,
        /// The genesis to trust (default: the node's).
        #[arg(long, env = "SABT_GENESIS")]
        genesis: Option<PathBuf>,
        /// Seconds between rounds.
        #[arg(long, default_value_t = 30)]
        interval: u64,
        /// Run one round and exit.
        #[arg(long)]
        once: bool,
    },
}

/// An inconsistency, with its evidence.
#[derive(Debug)]
struct Finding {
    height: Option<u64>,
    what: String,
    evidence: String,
}

/// The node's current checkpoint note, and either its verification or the finding that it lacks
/// a quorum.
fn current_checkpoint(node: &Node, genesis: &Genesis) -> anyhow::Result<(String, Result<VerifiedCheckpoint, Finding>)> {
    let c = node.get("/v1/checkpoint")?;
    let note = c["note"].as_str().context("checkpoint note")?.to_string();
    let set = genesis.validator_set()?;
    let v = verify_cosigned(&note, &set, &genesis.chain_id).map_err(|e| Finding {
        height: None,
        what: "the node's checkpoint is not cosigned by a quorum".into(),
        evidence: e.to_string(),
    });
    Ok((note, v))
}

fn consistency_proof(node: &Node, old: u64, new: u64) -> anyhow::Result<Vec<Hash32>> {
    let p = node.get(&format!("/v1/consistency?old={old}&new={new}"))?;
    p["proof"]
        .as_array()
        .context("consistency proof")?
        .iter()
        .map(|h| Hash32::from_hex(h.as_str().unwrap_or_default()).map_err(|e| anyhow!("consistency proof: {e}")))
        .collect()
}

fn report(f: &Finding, json: bool) -> u8 {
    if json {
        outln!("{}", json!({"consistent": false, "height": f.height, "finding": f.what, "evidence": f.evidence}));
    } else {
        match f.height {
            Some(h) => outln!("INCONSISTENT at height {h}: {}\n  evidence: {}", f.what, f.evidence),
            None => outln!("INCONSISTENT: {}\n  evidence: {}", f.what, f.evidence),
        }
    }
    exit::INVALID
}

fn audit_chain(node: &Node, genesis: &Genesis, json: bool) -> anyhow::Result<u8> {
    let registry = Registry::new(genesis)?;
    let set = genesis.validator_set()?;
    let mut ledger = MemoryLedger::default();
    let mut tip = Tip::genesis(genesis);
    let status = node.get("/v1/status")?;
    if status["genesis_hash"].as_str() != Some(genesis.hash().to_hex().as_str()) {
        let f = Finding {
            height: None,
            what: "the node runs another genesis".into(),
            evidence: format!("node genesis {}, trusted genesis {}", status["genesis_hash"], genesis.hash()),
        };
        return Ok(report(&f, json));
    }
    let top = status["height"].as_u64().context("status height")?;
    for h in 1..=top {
        let raw = node.get(&format!("/v1/blocks/{h}/raw"))?;
        let block_bytes = hex::decode(raw["block"].as_str().unwrap_or_default()).context("block bytes")?;
        let commit_bytes = hex::decode(raw["commit"].as_str().unwrap_or_default()).context("commit bytes")?;
        let finding = |what: &str, evidence: String| Finding { height: Some(h), what: what.into(), evidence };
        let block: Block = match codec::decode(&block_bytes) {
            Ok(b) => b,
            Err(e) => return Ok(report(&finding("block does not decode canonically", e.to_string()), json)),
        };
        let commit: Commit = match codec::decode(&commit_bytes) {
            Ok(c) => c,
            Err(e) => return Ok(report(&finding("commit does not decode canonically", e.to_string()), json)),
        };
        if let Err(e) = verify_commit(&commit, &set, &genesis.chain_id, h, &block.hash()) {
            return Ok(report(&finding("commit certificate", format!("block {}: {e}", block.hash())), json));
        }
        if let Err(e) = registry.execute_block(&mut ledger, &tip, &block, &sabt_core::registry::NoCache) {
            return Ok(report(&finding("block does not follow from the previous state", e.to_string()), json));
        }
        let b = node.get(&format!("/v1/blocks/{h}"))?;
        let note = b["checkpoint"].as_str().unwrap_or_default();
        match verify_cosigned(note, &set, &genesis.chain_id) {
            Ok(v) if v.checkpoint.size == block.header.log_size && v.checkpoint.root == block.header.log_root => {}
            Ok(v) => {
                let e = format!(
                    "note says size {} root {}, header says size {} root {}",
                    v.checkpoint.size, v.checkpoint.root, block.header.log_size, block.header.log_root
                );
                return Ok(report(&finding("checkpoint differs from the block", e), json));
            }
            Err(e) => return Ok(report(&finding("checkpoint is not cosigned by a quorum", e.to_string()), json)),
        }
        tip = Tip::after(&block.header);
    }
    if json {
        outln!(
            "{}",
            json!({"consistent": true, "height": tip.height, "block_hash": tip.block_hash.to_hex(),
                   "log_size": tip.log_size, "log_root": tip.log_root.to_hex(), "state_root": tip.state_root.to_hex()})
        );
    } else {
        outln!(
            "CONSISTENT: {} blocks re-executed from genesis {}\n  tip        {} (height {})\n  log        size {} root {}\n  state root {}",
            tip.height,
            genesis.hash(),
            tip.block_hash,
            tip.height,
            tip.log_size,
            tip.log_root,
            tip.state_root
        );
    }
    Ok(exit::OK)
}

/// Checks that `new` extends `old` (both already quorum-verified); `Err` is the finding.
fn extends(node: &Node, old: &VerifiedCheckpoint, new: &VerifiedCheckpoint) -> anyhow::Result<Result<(), Finding>> {
    let (o, n) = (&old.checkpoint, &new.checkpoint);
    if n.size < o.size {
        return Ok(Err(Finding {
            height: None,
            what: "rollback: the log is shorter than a checkpoint trusted before".into(),
            evidence: format!("trusted size {} root {}, now size {} root {}", o.size, o.root, n.size, n.root),
        }));
    }
    let proof = consistency_proof(node, o.size, n.size)?;
    if let Err(e) = merkle::verify_consistency::<Blake3>(o.size, n.size, &o.root, &n.root, &proof) {
        return Ok(Err(Finding {
            height: None,
            what: "fork: the current log does not extend a checkpoint trusted before".into(),
            evidence: format!("trusted size {} root {}, now size {} root {}: {e}", o.size, o.root, n.size, n.root),
        }));
    }
    Ok(Ok(()))
}

fn verified(note: &str, genesis: &Genesis, what: &str) -> anyhow::Result<VerifiedCheckpoint> {
    verify_cosigned(note, &genesis.validator_set()?, &genesis.chain_id)
        .map_err(|e| anyhow!("{what} is not a checkpoint cosigned by a quorum of this chain: {e}"))
}

/// Runs the command.
pub fn exec(args: Args) -> anyhow::Result<u8> {
    match args.command {
        AuditCommand::Chain { node, genesis, json } => {
            let node = Node::new(&node)?;
            let genesis = genesis_of(&node, genesis.as_ref())?;
            audit_chain(&node, &genesis, json)
        }
        AuditCommand::Consistency { node, old, genesis } => {
            let node = Node::new(&node)?;
            let genesis = genesis_of(&node, genesis.as_ref())?;
            let old_note = read_bounded(&old, MAX_NOTE)?;
            let old_v = verified(&old_note, &genesis, &old.display().to_string())?;
            let (_, new_v) = current_checkpoint(&node, &genesis)?;
            let new_v = match new_v {
                Ok(v) => v,
                Err(f) => return Ok(report(&f, false)),
            };
            match extends(&node, &old_v, &new_v)? {
                Ok(()) => {
                    outln!(
                        "CONSISTENT: size {} root {} extends size {} root {}",
                        new_v.checkpoint.size,
                        new_v.checkpoint.root,
                        old_v.checkpoint.size,
                        old_v.checkpoint.root
                    );
                    Ok(exit::OK)
                }
                Err(f) => Ok(report(&f, false)),
            }
        }
        AuditCommand::Watch { node, state, genesis, interval, once } => {
            let node = Node::new(&node)?;
            let genesis = genesis_of(&node, genesis.as_ref())?;
            loop {
                let (note, new_v) = current_checkpoint(&node, &genesis)?;
                let new_v = match new_v {
                    Ok(v) => v,
                    Err(f) => return Ok(report(&f, false)),
                };
                if state.exists() {
                    let old_note = read_bounded(&state, MAX_NOTE)?;
                    let old_v = verified(&old_note, &genesis, &state.display().to_string())?;
                    if let Err(f) = extends(&node, &old_v, &new_v)? {
                        return Ok(report(&f, false));
                    }
                }
                let tmp = state.with_extension("tmp");
                std::fs::write(&tmp, &note).with_context(|| format!("cannot write {}", tmp.display()))?;
                std::fs::rename(&tmp, &state).with_context(|| format!("cannot write {}", state.display()))?;
                outln!("ok: trusted checkpoint now size {} root {}", new_v.checkpoint.size, new_v.checkpoint.root);
                if once {
                    return Ok(exit::OK);
                }
                std::thread::sleep(Duration::from_secs(interval.max(1)));
            }
        }
    }
}

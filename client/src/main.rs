//! `sabt`: the command line for clerks and auditors.
//!
//! One file per subcommand under `cmd/`, each with its arguments (`Args`) and `exec`. Exit codes are
//! deliberate and stable: 0 ok, 1 verification failed, 2 usage or input error, 3 pending, 4 the node
//! could not be reached or refused the request.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[macro_use]
mod out;
mod api;
mod cmd;
mod exit;
mod files;
mod keystore;
mod submit;
mod time;

#[derive(Parser, Debug)]
#[command(name = "sabt", version, about = "Sabt: anchor documents, verify proofs, audit the registry")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compute a document's SHA-256 and BLAKE3 fingerprint locally (nothing is sent anywhere).
    Fingerprint(cmd::fingerprint::Args),
    /// Verify a document against its proof file, offline, trusting only the genesis.
    Verify(cmd::verify::Args),
    /// Show a node's chain, height, latest block hash, log size and validator set.
    Status(cmd::status::Args),
    /// Show one block: header, transactions, commit certificate, cosigned checkpoint.
    Block(cmd::block::Args),
    /// Create, show, authorise or revoke signing keys.
    Key(cmd::key::Args),
    /// Fingerprint documents locally, anchor them, and write one proof file per document.
    Anchor(Box<cmd::anchor::Args>),
    /// Re-verify a node's chain from the genesis, or check that its log was never rewritten.
    Audit(cmd::audit::Args),
    /// Register land parcels from GeoJSON or WKT, show them, and verify their state proofs.
    Parcel(Box<cmd::parcel::Args>),
    /// Withdraw or supersede an anchored record, or prove whether it is still current.
    Record(Box<cmd::record::Args>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(exit::USAGE) } else { ExitCode::SUCCESS };
        }
    };
    let outcome = match cli.command {
        Command::Fingerprint(args) => cmd::fingerprint::exec(args),
        Command::Verify(args) => cmd::verify::exec(args),
        Command::Status(args) => cmd::status::exec(args),
        Command::Block(args) => cmd::block::exec(args),
        Command::Key(args) => cmd::key::exec(args),
        Command::Anchor(args) => cmd::anchor::exec(*args),
        Command::Audit(args) => cmd::audit::exec(args),
        Command::Record(args) => cmd::record::exec(*args),
        Command::Parcel(args) => cmd::parcel::exec(*args),
    };
    match outcome {
        // Output lost on the way (a full disk under a redirect) fails a command that did its work.
        Ok(code) if code == exit::OK && out::failed() => ExitCode::from(exit::USAGE),
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let (code, exit) = classify(&e);
            // With --json, the error is a JSON object on standard output too, where a script
            // reads the command's answers: its stable code, the node's HTTP status if a node
            // refused, the message and the exit code.
            if std::env::args_os().any(|a| a == "--json") {
                let status = e.downcast_ref::<api::Refused>().map(|r| r.status);
                outln!(
                    "{}",
                    serde_json::json!({"error": {"code": code, "status": status, "message": format!("{e:#}"), "exit": exit}})
                );
            }
            eprintln!("error: {e:#}");
            ExitCode::from(exit)
        }
    }
}

/// A failure's stable code and exit code: a node's own refusal code, `pending`, `unreachable`,
/// or `usage` (bad arguments or input).
fn classify(e: &anyhow::Error) -> (String, u8) {
    if e.downcast_ref::<submit::StillPending>().is_some() {
        ("pending".into(), exit::PENDING)
    } else if let Some(r) = e.downcast_ref::<api::Refused>() {
        (r.code.clone(), exit::UNAVAILABLE)
    } else if e.chain().any(|c| c.is::<ureq::Error>()) {
        ("unreachable".into(), exit::UNAVAILABLE)
    } else {
        ("usage".into(), exit::USAGE)
    }
}

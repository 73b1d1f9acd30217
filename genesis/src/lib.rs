//! Builds, validates and hashes Sabt genesis documents (the document type itself is
//! [`sabt_core::genesis::Genesis`], since offline verifiers need it too).

pub mod keyfile;
pub mod testnet;

use anyhow::Context as _;
use sabt_core::genesis::Genesis;
use std::fmt::Write as _;
use std::path::Path;

/// Reads and validates a genesis file, with errors that name the file.
pub fn load(path: &Path) -> anyhow::Result<Genesis> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read genesis {}", path.display()))?;
    Genesis::from_json(&text).with_context(|| format!("{} is not a valid genesis document", path.display()))
}

/// A human summary: chain id, genesis hash, validators and their power, agencies and roles.
pub fn describe(g: &Genesis) -> anyhow::Result<String> {
    let set = g.validator_set()?;
    let mut out = String::new();
    writeln!(out, "chain_id      {}", g.chain_id)?;
    writeln!(out, "genesis_hash  {}", g.hash())?;
    writeln!(
        out,
        "validators    {} (total power {}, quorum {})",
        set.validators().len(),
        set.total_power(),
        set.quorum_power()
    )?;
    for a in &g.agencies {
        let roles: Vec<String> = a.roles.iter().map(|r| format!("{r:?}").to_lowercase()).collect();
        match &a.validator {
            Some(v) => writeln!(
                out,
                "  {:<24} power {:<4} key {} roles {}",
                a.name,
                v.power,
                v.consensus_key,
                roles.join(",")
            )?,
            None => writeln!(out, "  {:<24} (no validator) roles {}", a.name, roles.join(","))?,
        }
    }
    Ok(out)
}

/// Prints a command's text result, or its error with context, and gives the exit code: 0 on
/// success, 2 (usage or input error) otherwise. Shared by the genesis and node binaries.
pub fn finish(result: anyhow::Result<String>) -> std::process::ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

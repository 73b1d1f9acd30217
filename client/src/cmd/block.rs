//! `sabt block HEIGHT`: one block's header, transactions, commit certificate and checkpoint.

use crate::api::Node;
use crate::exit;
use clap::Args as ClapArgs;

/// Arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Block height (from 1).
    pub height: u64,
    /// The node's API URL.
    #[arg(long, env = "SABT_NODE")]
    pub node: String,
    /// Print the node's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn exec(args: Args) -> anyhow::Result<u8> {
    if args.height == 0 {
        anyhow::bail!("HEIGHT must be 1 or more (height 0 is the genesis, which is not a block)");
    }
    let b = Node::new(&args.node)?.get(&format!("/v1/blocks/{}", args.height))?;
    if args.json {
        outln!("{b}");
    } else {
        let h = &b["header"];
        outln!("height     {}", b["height"]);
        outln!("hash       {}", b["hash"].as_str().unwrap_or("?"));
        outln!("time       {}", crate::time::format_utc_ms(h["time_ms"].as_u64().unwrap_or(0)));
        outln!("previous   {}", h["prev_hash"].as_str().unwrap_or("?"));
        outln!("txs        {}", h["tx_count"]);
        outln!("log        size {} root {}", h["log_size"], h["log_root"].as_str().unwrap_or("?"));
        outln!("state root {}", h["state_root"].as_str().unwrap_or("?"));
        if let Some(sigs) = b["commit"]["signatures"].as_array() {
            outln!("commit     round {}, {} precommits", b["commit"]["round"], sigs.len());
        }
        out!("{}", b["checkpoint"].as_str().unwrap_or(""));
    }
    Ok(exit::OK)
}

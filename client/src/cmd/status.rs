//! `sabt status`: the node's chain, height, latest block hash, log size and validator set.

use crate::api::Node;
use crate::exit;
use clap::Args as ClapArgs;

/// Arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The node's API URL.
    #[arg(long, env = "SABT_NODE")]
    pub node: String,
    /// Print the node's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn exec(args: Args) -> anyhow::Result<u8> {
    let s = Node::new(&args.node)?.get("/v1/status")?;
    if args.json {
        outln!("{s}");
    } else {
        outln!(
            "chain      {} (genesis {})",
            s["chain_id"].as_str().unwrap_or("?"),
            s["genesis_hash"].as_str().unwrap_or("?")
        );
        outln!("node       {}", s["node"].as_str().unwrap_or("?"));
        outln!("height     {}", s["height"]);
        outln!("block      {}", s["block_hash"].as_str().unwrap_or("?"));
        outln!("log size   {}", s["log_size"]);
        outln!("log root   {}", s["log_root"].as_str().unwrap_or("?"));
        outln!("mempool    {}", s["mempool_size"]);
        if let Some(vs) = s["validators"].as_array() {
            outln!("validators {}", vs.len());
            for v in vs {
                outln!("  {:<24} power {}", v["name"].as_str().unwrap_or("?"), v["power"]);
            }
        }
    }
    Ok(exit::OK)
}

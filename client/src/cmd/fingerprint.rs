//! `sabt fingerprint FILE...`: SHA-256 and BLAKE3 of each file, streamed, computed locally.

use crate::exit;
use anyhow::Context as _;
use sabt_core::fingerprint::Fingerprint;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files to fingerprint.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

pub fn exec(args: Args) -> anyhow::Result<u8> {
    for path in &args.files {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}: check the path", path.display()))?;
        let (fp, len) = Fingerprint::of_reader(std::io::BufReader::new(file))
            .with_context(|| format!("cannot read {}", path.display()))?;
        if args.json {
            let line = serde_json::json!({
                "file": path.display().to_string(),
                "bytes": len,
                "sha256": fp.sha256.to_hex(),
                "blake3": fp.blake3.to_hex(),
            });
            outln!("{line}");
        } else {
            outln!("sha256:{}  blake3:{}  {}", fp.sha256, fp.blake3, path.display());
        }
    }
    Ok(exit::OK)
}

//! `sabt-demo`: builds a small chain in one process (4 validators with fresh keys), anchors the
//! given documents among some synthetic back-fill, and writes `genesis.json` and one
//! `<document>.sabt-proof.json` per document into the output directory, for `sabt verify`.
//!
//! Until the agency network runs, this is how to see a real proof end to end (`scripts/demo`).

use anyhow::Context as _;
use clap::Parser;
use sabt_core::devnet::Devnet;
use sabt_core::entry::{AccessClass, ArchiveRecord, RecordKind, ReferenceCode};
use sabt_core::fingerprint::Fingerprint;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "sabt-demo", about = "Build a one-process Sabt chain and issue proofs for documents")]
struct Args {
    /// Documents to anchor.
    #[arg(required = true)]
    documents: Vec<PathBuf>,
    /// Where to write genesis.json and the proof files.
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
    /// Record kind of the documents.
    #[arg(long, default_value = "notary")]
    kind: String,
    /// Consensus time to stamp, Unix milliseconds (default: 2026-11-23T09:00:00Z).
    #[arg(long, default_value_t = 1_795_424_400_000)]
    time_ms: u64,
}

fn seed() -> anyhow::Result<[u8; 32]> {
    let mut s = [0u8; 32];
    getrandom::getrandom(&mut s).context("the operating system's random source failed")?;
    Ok(s)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kind = RecordKind::parse(&args.kind).map_err(|e| anyhow::anyhow!("--kind: {e}"))?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let seeds = [seed()?, seed()?, seed()?, seed()?];
    let mut net = Devnet::new("tj.sabt.demo", args.time_ms - 3_600_000, &seeds, seed()?);

    // Some earlier back-fill, so the proof has a real path.
    let backfill: Vec<ArchiveRecord> = (0..37u32)
        .map(|i| record(Fingerprint::of_bytes(&i.to_be_bytes()), kind, &format!("back-fill sheet {i}")))
        .collect();
    net.append_batch(1, args.time_ms - 60_000, backfill);
    for i in 0..5u32 {
        net.append_record(2, args.time_ms - 30_000, record(Fingerprint::of_bytes(&[i as u8; 3]), kind, "earlier act"));
    }
    let mut mine = Vec::new();
    for (i, path) in args.documents.iter().enumerate() {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let (fp, _) = Fingerprint::of_reader(std::io::BufReader::new(file))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let index = net.append_record(3, args.time_ms, record(fp, kind, &format!("{name} (act {})", i + 1)));
        mine.push((path, name, index));
    }
    net.append_record(4, args.time_ms + 1000, record(Fingerprint::of_bytes(b"later"), kind, "later act"));

    std::fs::write(args.out.join("genesis.json"), net.genesis.to_json())?;
    for (_, name, index) in &mine {
        // Validators 1, 2 and 4 of 4 cosign: 3 of 4 voting power.
        let bundle = net.bundle(*index, None, &[0, 1, 3])?;
        let proof = args.out.join(format!("{name}.sabt-proof.json"));
        std::fs::write(&proof, bundle.to_json())?;
        println!("{}", proof.display());
    }
    Ok(())
}

fn record(fingerprint: Fingerprint, kind: RecordKind, title: &str) -> ArchiveRecord {
    ArchiveRecord {
        fingerprint,
        kind,
        reference: ReferenceCode {
            repository: "Main Archive Administration, Dushanbe".into(),
            fund: "R-12".into(),
            inventory: "3".into(),
            file: "118".into(),
            sheets: Some("1-4".into()),
        },
        creating_agency: "Notary office No. 1, Dushanbe".into(),
        title: title.into(),
        date_from: Some("1998-06-12".into()),
        date_to: None,
        access: AccessClass::Restricted,
    }
}

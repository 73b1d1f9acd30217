//! `sabt parcel`: register land parcels from GeoJSON or WKT, show them, and check their
//! current-state proofs offline.
//!
//! - `register --geojson FILE | --wkt FILE`: the geometry (WGS84 longitude/latitude) is projected
//!   here to the chain's CRS (the genesis names it) and rounded to the millimetre; each holder
//!   (`--holder ID[=NUM/DEN]`) goes on the ledger only as a salted hash (`--salt-file`).
//! - `show CADASTRAL [--proof-out FILE]`: the parcel's current state; with `--proof-out`, a proof of
//!   it at the latest block, verified before it is written.
//! - `verify PROOF --genesis G`: offline; exit 0 valid, 1 invalid.

use crate::api::{Node, genesis_of};
use crate::cmd::key::KeyArgs;
use crate::files::{read_bounded, write_atomic};
use crate::{exit, submit};
use anyhow::{Context as _, anyhow, bail};
use clap::{Args as ClapArgs, Subcommand};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::geo_io::{self, Crs};
use sabt_core::land::{self, Holding, LandCategory, LandOp, Parcel, Right, RightKind, Share};
use sabt_core::status::{self, ParcelProof};
use sabt_core::tx::TxBody;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: ParcelCommand,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // Parsed once per run.
enum ParcelCommand {
    /// Register a parcel (first registration) with its use right.
    Register {
        /// A GeoJSON Polygon, Feature or one-feature FeatureCollection (WGS84).
        #[arg(long, conflicts_with = "wkt", required_unless_present = "wkt")]
        geojson: Option<PathBuf>,
        /// A WKT POLYGON (longitude latitude, WGS84).
        #[arg(long)]
        wkt: Option<PathBuf>,
        /// Cadastral number (default: the feature's `properties.cadastral_number`).
        #[arg(long)]
        cadastral: Option<String>,
        /// Land category: agricultural, settlement, industrial, protected, forest, water, reserve.
        #[arg(long)]
        category: String,
        /// Permitted use, as the land plan words it.
        #[arg(long = "use")]
        permitted_use: String,
        /// Kind of right: perpetual_use, fixed_term_use, lifelong_inheritable_use, lease.
        #[arg(long, default_value = "lifelong_inheritable_use")]
        right: String,
        /// A holder's identifier, with its share (`ID=1/2`; default the whole). Repeat for each.
        #[arg(long = "holder", required = true)]
        holders: Vec<String>,
        /// The agency's salt for party hashes (a file; never on the ledger).
        #[arg(long)]
        salt_file: PathBuf,
        /// Start of the right: YYYY-MM-DD.
        #[arg(long)]
        start: String,
        /// End of the right (fixed-term use, lease): YYYY-MM-DD.
        #[arg(long)]
        end: Option<String>,
        /// The source document (the act of allocation); only its fingerprint is sent.
        #[arg(long)]
        source: PathBuf,
        /// The node's API URL.
        #[arg(long, env = "SABT_NODE")]
        node: String,
        #[command(flatten)]
        key: KeyArgs,
        /// The genesis to trust (default: the node's).
        #[arg(long, env = "SABT_GENESIS")]
        genesis: Option<PathBuf>,
        /// Seconds to wait for the commit.
        #[arg(long, default_value_t = 120)]
        wait: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a parcel's current state.
    Show {
        /// Cadastral number.
        cadastral: String,
        /// The node's API URL.
        #[arg(long, env = "SABT_NODE")]
        node: String,
        /// Also fetch a proof of this state at the latest block, verify it, and write it here.
        #[arg(long)]
        proof_out: Option<PathBuf>,
        /// The genesis to trust for the proof (default: the node's).
        #[arg(long, env = "SABT_GENESIS")]
        genesis: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The live parcels containing a point (WGS84 longitude and latitude).
    At {
        /// Longitude, degrees east.
        #[arg(allow_negative_numbers = true)]
        lon: f64,
        /// Latitude, degrees north.
        #[arg(allow_negative_numbers = true)]
        lat: f64,
        /// The node's API URL.
        #[arg(long, env = "SABT_NODE")]
        node: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a parcel proof offline, trusting only the genesis.
    Verify {
        /// The proof file (`sabt parcel show --proof-out`).
        proof: PathBuf,
        /// The chain's genesis.
        #[arg(long, env = "SABT_GENESIS")]
        genesis: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_holder(text: &str, salt: &[u8]) -> anyhow::Result<Holding> {
    let (id, share) = match text.rsplit_once('=') {
        Some((id, s)) => {
            let (n, d) = s.split_once('/').ok_or_else(|| anyhow!("--holder {text:?}: the share is NUM/DEN"))?;
            let num = n.trim().parse().map_err(|_| anyhow!("--holder {text:?}: {n:?} is not a number"))?;
            let den = d.trim().parse().map_err(|_| anyhow!("--holder {text:?}: {d:?} is not a number"))?;
            (id, Share { num, den })
        }
        None => (text, Share { num: 1, den: 1 }),
    };
    if id.trim().is_empty() {
        bail!("--holder {text:?}: give the holder's identifier before the share");
    }
    Ok(Holding { party: land::party_hash(salt, id.trim()), share })
}

fn enum_arg<T: serde::de::DeserializeOwned>(flag: &str, value: &str, allowed: &str) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(value.trim().replace('-', "_").to_ascii_lowercase()))
        .map_err(|_| anyhow!("--{flag} {value:?}: use one of {allowed}"))
}

/// Runs the command.
pub fn exec(args: Args) -> anyhow::Result<u8> {
    match args.command {
        ParcelCommand::Register {
            geojson,
            wkt,
            cadastral,
            category,
            permitted_use,
            right,
            holders,
            salt_file,
            start,
            end,
            source,
            node,
            key,
            genesis,
            wait,
            json,
        } => {
            let node = Node::new(&node)?;
            let genesis = genesis_of(&node, genesis.as_ref())?;
            let crs = Crs::from_epsg(genesis.params.land_crs_epsg)?;
            let (named, geometry) = match (&geojson, &wkt) {
                (Some(p), _) => {
                    let mut found = geo_io::parse_geojson(&read_bounded(p, 16 << 20)?, &crs)
                        .with_context(|| format!("{}", p.display()))?;
                    if found.len() != 1 {
                        bail!("{}: {} features; register one parcel at a time", p.display(), found.len());
                    }
                    let f = found.remove(0);
                    (f.cadastral, f.polygon)
                }
                (None, Some(p)) => (
                    None,
                    geo_io::parse_wkt(&read_bounded(p, 16 << 20)?, &crs).with_context(|| format!("{}", p.display()))?,
                ),
                (None, None) => bail!("give --geojson FILE or --wkt FILE"),
            };
            let cadastral = cadastral.or(named).ok_or_else(|| {
                anyhow!("no cadastral number: give --cadastral or properties.cadastral_number in the GeoJSON")
            })?;
            let category: LandCategory = enum_arg(
                "category",
                &category,
                "agricultural, settlement, industrial, protected, forest, water, reserve",
            )?;
            let kind: RightKind =
                enum_arg("right", &right, "perpetual_use, fixed_term_use, lifelong_inheritable_use, lease")?;
            let salt = std::fs::read(&salt_file)
                .with_context(|| format!("cannot read --salt-file {}", salt_file.display()))?;
            if salt.len() < 16 {
                bail!("--salt-file {}: at least 16 bytes of secret salt are needed", salt_file.display());
            }
            let mut holdings = holders.iter().map(|h| parse_holder(h, &salt)).collect::<anyhow::Result<Vec<_>>>()?;
            holdings.sort_by_key(|h| h.party);
            let doc =
                std::fs::File::open(&source).with_context(|| format!("cannot open --source {}", source.display()))?;
            let (source_fp, _) = Fingerprint::of_reader(std::io::BufReader::new(doc))?;
            let op = LandOp::Register {
                parcel: Parcel { cadastral: cadastral.clone(), category, permitted_use, geometry },
                right: Right { kind, holders: holdings, start, end },
                source: source_fp,
            };
            // The same checks every node applies, before anything is signed.
            op.validate().map_err(|e| anyhow!("{e}"))?;
            let key = key.load()?;
            let nonce = submit::next_nonce(&node, &key)?;
            let s = submit::submit(&node, &genesis.chain_id, &key, nonce, TxBody::Land(op))?;
            let height = submit::wait_committed(&node, &s.id, Duration::from_secs(wait))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"cadastral_number": cadastral, "tx": s.id.to_hex(), "height": height})
                );
            } else {
                println!("registered {cadastral} at height {height} (transaction {})", s.id);
            }
            Ok(exit::OK)
        }
        ParcelCommand::Show { cadastral, node, proof_out, genesis, json } => {
            let node = Node::new(&node)?;
            let v = node.get(&format!("/v1/parcels/{cadastral}"))?;
            if let Some(out) = &proof_out {
                let genesis = genesis_of(&node, genesis.as_ref())?;
                let p = ParcelProof::from_json(&node.get(&format!("/v1/parcels/{cadastral}/proof"))?.to_string())?;
                status::verify_parcel(&p, &genesis).map_err(|e| anyhow!("the node's proof does not verify: {e}"))?;
                write_atomic(out, &p.to_json())?;
            }
            if json {
                println!("{v}");
            } else {
                println!("parcel     {}", v["cadastral_number"].as_str().unwrap_or_default());
                println!(
                    "category   {}  use: {}",
                    v["category"].as_str().unwrap_or_default(),
                    v["permitted_use"].as_str().unwrap_or_default()
                );
                println!("area       {:.2} m²", v["area_m2"].as_f64().unwrap_or_default());
                println!(
                    "right      {}  holders: {}",
                    v["right"]["kind"].as_str().unwrap_or_default(),
                    v["right"]["holders"].as_array().map_or(0, Vec::len)
                );
                println!("version    {} (entry {}, height {})", v["version"], v["index"], v["height"]);
                if !v["retired_height"].is_null() {
                    println!("RETIRED    at height {}", v["retired_height"]);
                }
                if let Some(out) = &proof_out {
                    println!("proof      {}", out.display());
                }
            }
            Ok(exit::OK)
        }
        ParcelCommand::At { lon, lat, node, json } => {
            let node = Node::new(&node)?;
            let v = node.get(&format!("/v1/parcels/at?lon={lon}&lat={lat}"))?;
            if json {
                println!("{v}");
            } else {
                let parcels = v["parcels"].as_array().cloned().unwrap_or_default();
                if parcels.is_empty() {
                    println!("no registered parcel at {lon}, {lat} (height {})", v["height"]);
                }
                for p in parcels {
                    println!(
                        "{}  ({}, version {})",
                        p["cadastral_number"].as_str().unwrap_or_default(),
                        p["where"].as_str().unwrap_or_default(),
                        p["version"]
                    );
                }
            }
            Ok(exit::OK)
        }
        ParcelCommand::Verify { proof, genesis, json } => {
            let g = sabt_core::genesis::Genesis::from_json(&read_bounded(&genesis, crate::files::MAX_GENESIS)?)
                .with_context(|| format!("{} is not a valid genesis", genesis.display()))?;
            let text = read_bounded(&proof, 4 * status::MAX_STATUS_LEN as u64)?;
            match ParcelProof::from_json(&text).and_then(|p| status::verify_parcel(&p, &g).map(|v| (p, v))) {
                Ok((p, (height, _, state))) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"valid": true, "cadastral_number": p.cadastral, "height": height, "state": state})
                        );
                    } else {
                        println!("VALID: at height {height}, parcel {}", p.cadastral);
                        match state {
                            None => println!("  is not registered"),
                            Some(s) if s.retired_height.is_some() => {
                                println!("  is RETIRED (since height {})", s.retired_height.unwrap_or_default())
                            }
                            Some(s) => println!(
                                "  version {}, {:?} right, {} holder(s), {} restriction(s), {:.2} m²",
                                s.version,
                                s.right.kind,
                                s.right.holders.len(),
                                s.restrictions.len(),
                                s.parcel.geometry.area_m2()
                            ),
                        }
                    }
                    Ok(exit::OK)
                }
                Err(e) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({"valid": false, "error": e.code(), "message": e.to_string()})
                        );
                    } else {
                        println!("INVALID ({}): {e}", e.code());
                    }
                    Ok(exit::INVALID)
                }
            }
        }
    }
}

//! `sabt parcel`: register land parcels from GeoJSON or WKT, show them, and check their
//! current-state proofs offline.
//!
//! - `register --geojson FILE | --wkt FILE`: the geometry (WGS84 longitude/latitude) is projected
//!   here to the chain's CRS (the genesis names it) and rounded to the millimetre; each holder
//!   (`--holder ID[=NUM/DEN]`) goes on the ledger only as a salted hash (`--salt-file`).
//! - `show CADASTRAL [--proof-out FILE]`: the parcel's current state; with `--proof-out`, a proof of
//!   it at the latest block, verified before it is written.
//! - `transfer`, `encumber`, `release`, `correct`, `split`, `merge`, `retire`: the other operations,
//!   each citing its source document by fingerprint.
//! - `at LON LAT`: the live parcels containing a point.
//! - `verify PROOF --genesis G`: offline; exit 0 valid, 1 invalid.

use crate::api::{Node, genesis_of};
use crate::cmd::key::KeyArgs;
use crate::files::{read_bounded, write_atomic};
use crate::{exit, submit};
use anyhow::{Context as _, anyhow, bail};
use clap::{Args as ClapArgs, Subcommand};
use sabt_core::fingerprint::Fingerprint;
use sabt_core::geo_io::{self, Crs};
use sabt_core::land::{
    self, Holding, LandCategory, LandOp, Parcel, Restriction, Right, RightKind, Share, Structure, StructureKind,
};
use sabt_core::sign::{PublicKey, Signature};
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

/// The node, the signing key, and how long to wait.
#[derive(ClapArgs, Debug)]
struct Signing {
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
}

/// A right: its kind, holders (salted here) and dates.
#[derive(ClapArgs, Debug)]
struct RightArgs {
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
}

/// A geometry file.
#[derive(ClapArgs, Debug)]
struct GeometryArgs {
    /// GeoJSON (WGS84): a Polygon, a Feature, or a one-feature FeatureCollection.
    #[arg(long, conflicts_with = "wkt", required_unless_present = "wkt")]
    geojson: Option<PathBuf>,
    /// A WKT POLYGON (longitude latitude, WGS84).
    #[arg(long)]
    wkt: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // Parsed once per run.
enum ParcelCommand {
    /// Register a parcel (first registration) with its use right.
    Register {
        #[command(flatten)]
        geometry: GeometryArgs,
        /// Cadastral number (default: the feature's `properties.cadastral_number`).
        #[arg(long)]
        cadastral: Option<String>,
        /// Land category: agricultural, settlement, industrial, protected, forest, water, reserve.
        #[arg(long)]
        category: String,
        /// Permitted use, as the land plan words it.
        #[arg(long = "use")]
        permitted_use: String,
        #[command(flatten)]
        right: RightArgs,
        /// The source document (the act of allocation); only its fingerprint is sent.
        #[arg(long)]
        source: PathBuf,
        #[command(flatten)]
        signing: Signing,
    },
    /// Transfer the use right to new holders (refused under an arrest; a mortgage needs consent).
    Transfer {
        /// Cadastral number.
        cadastral: String,
        #[command(flatten)]
        right: RightArgs,
        /// Mortgagees' consent signatures, hex (one per mortgage).
        #[arg(long = "consent")]
        consents: Vec<String>,
        /// The source document (contract, deed).
        #[arg(long)]
        source: PathBuf,
        #[command(flatten)]
        signing: Signing,
    },
    /// Add a mortgage or an arrest.
    Encumber {
        /// Cadastral number.
        cadastral: String,
        /// mortgage or arrest.
        #[arg(long)]
        kind: String,
        /// The beneficiary's identifier (mortgagee, court); salted with --salt-file.
        #[arg(long)]
        beneficiary: String,
        /// The agency's salt for party hashes.
        #[arg(long)]
        salt_file: PathBuf,
        /// The public key (hex) whose signature releases it: the mortgagee's for a mortgage (it
        /// also consents to transfers), the imposing authority's (court, bailiff) for an arrest.
        #[arg(long)]
        consent_key: String,
        /// From: YYYY-MM-DD.
        #[arg(long)]
        start: String,
        /// The document imposing it (identifies the restriction for its release).
        #[arg(long)]
        source: PathBuf,
        #[command(flatten)]
        signing: Signing,
    },
    /// Release a restriction, named by the document that imposed it, with the signature of its
    /// consent key (`sabt parcel release-consent`).
    Release {
        /// Cadastral number.
        cadastral: String,
        /// The document that imposed the restriction.
        #[arg(long)]
        restriction: PathBuf,
        /// The releasing document.
        #[arg(long)]
        source: PathBuf,
        /// The restriction's consent key's signature over this release, hex (from `release-consent`).
        #[arg(long)]
        consent: String,
        #[command(flatten)]
        signing: Signing,
    },
    /// Correct the boundary (overlap is checked again).
    Correct {
        /// Cadastral number.
        cadastral: String,
        #[command(flatten)]
        geometry: GeometryArgs,
        /// The survey document.
        #[arg(long)]
        source: PathBuf,
        #[command(flatten)]
        signing: Signing,
    },
    /// Split a parcel into the features of a GeoJSON FeatureCollection (each with its
    /// `properties.cadastral_number`); the children take its right.
    Split {
        /// The parent's cadastral number.
        cadastral: String,
        /// The children, a GeoJSON FeatureCollection.
        #[arg(long)]
        geojson: PathBuf,
        /// The source document.
        #[arg(long)]
        source: PathBuf,
        #[command(flatten)]
        signing: Signing,
    },
    /// Merge adjacent parcels with the same right into the parcel a GeoJSON feature describes.
    Merge {
        /// A parcel to merge (repeat; at least two).
        #[arg(long = "parent", required = true)]
        parents: Vec<String>,
        /// The new parcel: a GeoJSON Feature with its `properties.cadastral_number`.
        #[arg(long)]
        geojson: PathBuf,
        /// The source document.
        #[arg(long)]
        source: PathBuf,
        #[command(flatten)]
        signing: Signing,
    },
    /// As the holder of a restriction's consent key (the mortgagee, or the authority that imposed an
    /// arrest), sign its release: prints the signature to pass to `release --consent`.
    ReleaseConsent {
        /// Cadastral number.
        cadastral: String,
        /// The document that imposed the restriction.
        #[arg(long)]
        restriction: PathBuf,
        /// The releasing document.
        #[arg(long)]
        source: PathBuf,
        /// The node's API URL (for the chain id and the parcel's current version).
        #[arg(long, env = "SABT_NODE")]
        node: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// As a mortgagee, consent to a transfer: prints the signature to pass to `transfer --consent`.
    Consent {
        /// Cadastral number.
        cadastral: String,
        #[command(flatten)]
        right: RightArgs,
        /// The node's API URL (for the chain id and the parcel's current version).
        #[arg(long, env = "SABT_NODE")]
        node: String,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Retire a parcel (it stays in history, frozen).
    Retire {
        /// Cadastral number.
        cadastral: String,
        /// The source document.
        #[arg(long)]
        source: PathBuf,
        #[command(flatten)]
        signing: Signing,
    },
    /// Show a parcel's current state, or its state as of a past block (`--height`).
    Show {
        /// Cadastral number.
        cadastral: String,
        /// The state as of this block height.
        #[arg(long, conflicts_with = "proof_out")]
        height: Option<u64>,
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
    /// Register a building (footprint polygon) or a road (centreline LineString) on parcels.
    Structure {
        /// Its registry number.
        id: String,
        /// building or road.
        #[arg(long)]
        kind: String,
        /// A parcel it stands on or crosses (repeat).
        #[arg(long = "parcel")]
        parcels: Vec<String>,
        /// GeoJSON: a Polygon footprint (building) or a LineString centreline (road), WGS84.
        #[arg(long)]
        geojson: PathBuf,
        /// What it is.
        #[arg(long)]
        description: String,
        /// The source document (permit, acceptance act).
        #[arg(long)]
        source: PathBuf,
        #[command(flatten)]
        signing: Signing,
    },
    /// Retire a building or road (demolished, closed); it stays in history.
    Demolish {
        /// Its registry number.
        id: String,
        /// The source document.
        #[arg(long)]
        source: PathBuf,
        #[command(flatten)]
        signing: Signing,
    },
    /// Every live parcel as a GeoJSON FeatureCollection (WGS84; opens in QGIS).
    Export {
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only parcels in this box: `minlon,minlat,maxlon,maxlat`.
        #[arg(long)]
        bbox: Option<String>,
        /// The node's API URL.
        #[arg(long, env = "SABT_NODE")]
        node: String,
    },
    /// Every change of a parcel, oldest first.
    History {
        /// Cadastral number.
        cadastral: String,
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

/// The agency's salt: secret (whoever reads it can test a guessed identifier against the party
/// hashes on the public ledger), so a file others can read is refused.
fn read_salt(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    crate::files::check_private(path, "--salt-file")?;
    let salt = std::fs::read(path).with_context(|| format!("cannot read --salt-file {}", path.display()))?;
    if salt.len() < 16 {
        bail!("--salt-file {}: at least 16 bytes of secret salt are needed", path.display());
    }
    Ok(salt)
}

impl RightArgs {
    fn build(&self) -> anyhow::Result<Right> {
        let kind: RightKind =
            enum_arg("right", &self.right, "perpetual_use, fixed_term_use, lifelong_inheritable_use, lease")?;
        let salt = read_salt(&self.salt_file)?;
        let mut holders = self.holders.iter().map(|h| parse_holder(h, &salt)).collect::<anyhow::Result<Vec<_>>>()?;
        holders.sort_by_key(|h| h.party);
        Ok(Right { kind, holders, start: self.start.clone(), end: self.end.clone() })
    }
}

fn fingerprint(path: &std::path::Path) -> anyhow::Result<Fingerprint> {
    let doc = std::fs::File::open(path).with_context(|| format!("cannot open --source {}", path.display()))?;
    Ok(Fingerprint::of_reader(std::io::BufReader::new(doc))?.0)
}

/// The one polygon a GeoJSON or WKT file holds, with the number it names, if any.
fn read_one(g: &GeometryArgs, crs: &Crs) -> anyhow::Result<(Option<String>, sabt_core::geometry::Polygon)> {
    match (&g.geojson, &g.wkt) {
        (Some(p), _) => {
            let mut found =
                geo_io::parse_geojson(&read_bounded(p, 16 << 20)?, crs).with_context(|| format!("{}", p.display()))?;
            if found.len() != 1 {
                bail!("{}: {} features; give one parcel", p.display(), found.len());
            }
            let f = found.remove(0);
            Ok((f.cadastral, f.polygon))
        }
        (None, Some(p)) => {
            Ok((None, geo_io::parse_wkt(&read_bounded(p, 16 << 20)?, crs).with_context(|| format!("{}", p.display()))?))
        }
        (None, None) => bail!("give --geojson FILE or --wkt FILE"),
    }
}

fn send_with_node_genesis(signing: &Signing, op: LandOp) -> anyhow::Result<u8> {
    let node = Node::new(&signing.node)?;
    let genesis = genesis_of(&node, signing.genesis.as_ref())?;
    send(&node, &genesis, signing, op)
}

/// Checks the operation as every node will, signs it, submits it and waits for its block.
fn send(node: &Node, genesis: &sabt_core::genesis::Genesis, signing: &Signing, op: LandOp) -> anyhow::Result<u8> {
    op.validate().map_err(|e| anyhow!("{e}"))?;
    let (name, cadastral) = (op.name(), op.cadastral().to_string());
    let key = signing.key.load()?;
    let nonce = submit::next_nonce(node, &key)?;
    let s = submit::submit(node, &genesis.chain_id, &key, nonce, TxBody::Land(op))?;
    let height = submit::wait_committed(node, &s.id, Duration::from_secs(signing.wait))?;
    if signing.json {
        outln!(
            "{}",
            serde_json::json!({"operation": name, "cadastral_number": cadastral, "tx": s.id.to_hex(), "height": height})
        );
    } else {
        outln!("{name} {cadastral}: committed at height {height} (transaction {})", s.id);
    }
    Ok(exit::OK)
}

/// A signature given on the command line as 128 hex digits.
fn signature_arg(text: &str) -> anyhow::Result<Signature> {
    let bytes: [u8; 64] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow!("--consent {text:?}: a signature is 128 hex digits"))?;
    Ok(Signature(bytes))
}

/// A parcel's current version, which consents and releases are signed over.
fn current_version(node: &Node, cadastral: &str) -> anyhow::Result<u32> {
    node.get(&format!("/v1/parcels/{cadastral}"))?["version"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .context("the parcel's version")
}

/// Runs the command.
pub fn exec(args: Args) -> anyhow::Result<u8> {
    match args.command {
        ParcelCommand::Register { geometry, cadastral, category, permitted_use, right, source, signing } => {
            let node = Node::new(&signing.node)?;
            let genesis = genesis_of(&node, signing.genesis.as_ref())?;
            let crs = Crs::from_epsg(genesis.params.land_crs_epsg)?;
            let (named, polygon) = read_one(&geometry, &crs)?;
            let cadastral = cadastral.or(named).ok_or_else(|| {
                anyhow!("no cadastral number: give --cadastral or properties.cadastral_number in the GeoJSON")
            })?;
            let category: LandCategory = enum_arg(
                "category",
                &category,
                "agricultural, settlement, industrial, protected, forest, water, reserve",
            )?;
            let op = LandOp::Register {
                parcel: Parcel { cadastral, category, permitted_use, geometry: polygon },
                right: right.build()?,
                source: fingerprint(&source)?,
            };
            send(&node, &genesis, &signing, op)
        }
        ParcelCommand::Transfer { cadastral, right, consents, source, signing } => {
            let consents = consents.iter().map(|c| signature_arg(c)).collect::<anyhow::Result<Vec<_>>>()?;
            let op = LandOp::Transfer { cadastral, right: right.build()?, source: fingerprint(&source)?, consents };
            send_with_node_genesis(&signing, op)
        }
        ParcelCommand::Encumber { cadastral, kind, beneficiary, salt_file, consent_key, start, source, signing } => {
            let salt = read_salt(&salt_file)?;
            let restriction = Restriction {
                kind: enum_arg("kind", &kind, "mortgage, arrest")?,
                beneficiary: land::party_hash(&salt, beneficiary.trim()),
                consent_key: Some(PublicKey::from_hex(&consent_key).map_err(|e| anyhow!("--consent-key: {e}"))?),
                start,
                source: fingerprint(&source)?,
            };
            send_with_node_genesis(&signing, LandOp::Encumber { cadastral, restriction })
        }
        ParcelCommand::Release { cadastral, restriction, source, consent, signing } => {
            let op = LandOp::Release {
                cadastral,
                restriction: fingerprint(&restriction)?,
                source: fingerprint(&source)?,
                consent: signature_arg(&consent)?,
            };
            send_with_node_genesis(&signing, op)
        }
        ParcelCommand::Correct { cadastral, geometry, source, signing } => {
            let node = Node::new(&signing.node)?;
            let genesis = genesis_of(&node, signing.genesis.as_ref())?;
            let crs = Crs::from_epsg(genesis.params.land_crs_epsg)?;
            let (_, polygon) = read_one(&geometry, &crs)?;
            let op = LandOp::CorrectBoundary { cadastral, geometry: polygon, source: fingerprint(&source)? };
            send(&node, &genesis, &signing, op)
        }
        ParcelCommand::Split { cadastral, geojson, source, signing } => {
            let node = Node::new(&signing.node)?;
            let genesis = genesis_of(&node, signing.genesis.as_ref())?;
            let crs = Crs::from_epsg(genesis.params.land_crs_epsg)?;
            let parent = node.get(&format!("/v1/parcels/{cadastral}"))?;
            let category: LandCategory =
                serde_json::from_value(parent["category"].clone()).context("parent category")?;
            let permitted_use = parent["permitted_use"].as_str().unwrap_or_default().to_string();
            let mut children = Vec::new();
            for (i, f) in geo_io::parse_geojson(&read_bounded(&geojson, 16 << 20)?, &crs)?.into_iter().enumerate() {
                let number = f.cadastral.ok_or_else(|| anyhow!("feature {i} has no properties.cadastral_number"))?;
                children.push(Parcel {
                    cadastral: number,
                    category,
                    permitted_use: permitted_use.clone(),
                    geometry: f.polygon,
                });
            }
            children.sort_by(|a, b| a.cadastral.cmp(&b.cadastral));
            let op = LandOp::Split { cadastral, children, source: fingerprint(&source)? };
            send(&node, &genesis, &signing, op)
        }
        ParcelCommand::Merge { mut parents, geojson, source, signing } => {
            let node = Node::new(&signing.node)?;
            let genesis = genesis_of(&node, signing.genesis.as_ref())?;
            let crs = Crs::from_epsg(genesis.params.land_crs_epsg)?;
            let (named, polygon) = read_one(&GeometryArgs { geojson: Some(geojson), wkt: None }, &crs)?;
            let number = named.ok_or_else(|| anyhow!("the new parcel's feature has no properties.cadastral_number"))?;
            parents.sort();
            let first = node.get(&format!("/v1/parcels/{}", parents[0]))?;
            let category: LandCategory =
                serde_json::from_value(first["category"].clone()).context("parcel category")?;
            let parcel = Parcel {
                cadastral: number,
                category,
                permitted_use: first["permitted_use"].as_str().unwrap_or_default().to_string(),
                geometry: polygon,
            };
            send(&node, &genesis, &signing, LandOp::Merge { parents, parcel, source: fingerprint(&source)? })
        }
        ParcelCommand::Consent { cadastral, right, node, key } => {
            let node = Node::new(&node)?;
            let (chain, version) = (submit::chain_id(&node)?, current_version(&node, &cadastral)?);
            let message = land::transfer_consent_bytes(&chain, &cadastral, version, &right.build()?);
            let sig = key.load()?.sign(sabt_core::sign::LAND_CONSENT, &message);
            outln!("{}", hex::encode(sig.0));
            Ok(exit::OK)
        }
        ParcelCommand::ReleaseConsent { cadastral, restriction, source, node, key } => {
            let node = Node::new(&node)?;
            let (chain, version) = (submit::chain_id(&node)?, current_version(&node, &cadastral)?);
            let (restriction, source) = (fingerprint(&restriction)?, fingerprint(&source)?);
            let message = land::release_consent_bytes(&chain, &cadastral, version, &restriction, &source);
            let sig = key.load()?.sign(sabt_core::sign::LAND_RELEASE, &message);
            outln!("{}", hex::encode(sig.0));
            Ok(exit::OK)
        }
        ParcelCommand::Retire { cadastral, source, signing } => {
            send_with_node_genesis(&signing, LandOp::Retire { cadastral, source: fingerprint(&source)? })
        }
        ParcelCommand::Show { cadastral, height, node, proof_out, genesis, json } => {
            let node = Node::new(&node)?;
            let at = height.map(|h| format!("?height={h}")).unwrap_or_default();
            let v = node.get(&format!("/v1/parcels/{cadastral}{at}"))?;
            if let Some(out) = &proof_out {
                let genesis = genesis_of(&node, genesis.as_ref())?;
                let p = ParcelProof::from_json(&node.get(&format!("/v1/parcels/{cadastral}/proof"))?.to_string())?;
                status::verify_parcel(&p, &genesis).map_err(|e| anyhow!("the node's proof does not verify: {e}"))?;
                write_atomic(out, &p.to_json())?;
            }
            if json {
                outln!("{v}");
            } else {
                outln!("parcel     {}", v["cadastral_number"].as_str().unwrap_or_default());
                outln!(
                    "category   {}  use: {}",
                    v["category"].as_str().unwrap_or_default(),
                    v["permitted_use"].as_str().unwrap_or_default()
                );
                outln!("area       {:.2} m²", v["area_m2"].as_f64().unwrap_or_default());
                outln!(
                    "right      {}  holders: {}",
                    v["right"]["kind"].as_str().unwrap_or_default(),
                    v["right"]["holders"].as_array().map_or(0, Vec::len)
                );
                outln!("version    {} (entry {}, height {})", v["version"], v["index"], v["height"]);
                if !v["retired_height"].is_null() {
                    outln!("RETIRED    at height {}", v["retired_height"]);
                }
                if let Some(out) = &proof_out {
                    outln!("proof      {}", out.display());
                }
            }
            Ok(exit::OK)
        }
        ParcelCommand::At { lon, lat, node, json } => {
            let node = Node::new(&node)?;
            let v = node.get(&format!("/v1/parcels/at?lon={lon}&lat={lat}"))?;
            if json {
                outln!("{v}");
            } else {
                let parcels = v["parcels"].as_array().cloned().unwrap_or_default();
                if parcels.is_empty() {
                    outln!("no registered parcel at {lon}, {lat} (height {})", v["height"]);
                }
                for p in parcels {
                    outln!(
                        "{}  ({}, version {})",
                        p["cadastral_number"].as_str().unwrap_or_default(),
                        p["where"].as_str().unwrap_or_default(),
                        p["version"]
                    );
                }
            }
            Ok(exit::OK)
        }
        ParcelCommand::Structure { id, kind, mut parcels, geojson, description, source, signing } => {
            let node = Node::new(&signing.node)?;
            let genesis = genesis_of(&node, signing.genesis.as_ref())?;
            let crs = Crs::from_epsg(genesis.params.land_crs_epsg)?;
            let kind: StructureKind = enum_arg("kind", &kind, "building, road")?;
            let text = read_bounded(&geojson, 16 << 20)?;
            let (footprint, line) = match kind {
                StructureKind::Building => {
                    (Some(read_one(&GeometryArgs { geojson: Some(geojson.clone()), wkt: None }, &crs)?.1), None)
                }
                StructureKind::Road => (None, Some(geo_io::parse_geojson_line(&text, &crs)?)),
            };
            parcels.sort();
            let structure = Structure { id, kind, parcels, footprint, line, description };
            send(&node, &genesis, &signing, LandOp::RegisterStructure { structure, source: fingerprint(&source)? })
        }
        ParcelCommand::Demolish { id, source, signing } => {
            send_with_node_genesis(&signing, LandOp::RetireStructure { id, source: fingerprint(&source)? })
        }
        ParcelCommand::Export { out, bbox: None, node } => {
            // The whole registry, streamed by the node as it reads it: copied to the file (or to
            // standard output) as it arrives, never held whole.
            let node = Node::new(&node)?;
            match out {
                Some(p) => {
                    let bytes = crate::files::write_atomic_with(&p, |f| node.get_to("/v1/parcels/export", f))?;
                    eprintln!("{bytes} bytes of GeoJSON written to {}", p.display());
                }
                None => {
                    node.get_to("/v1/parcels/export", &mut std::io::stdout().lock())?;
                    outln!("");
                }
            }
            Ok(exit::OK)
        }
        ParcelCommand::Export { out, bbox: Some(b), node } => {
            // A box's parcels, page after page (each names the cursor of the next).
            let node = Node::new(&node)?;
            let bbox = b.replace(' ', "");
            let (mut features, mut after, mut height) = (Vec::new(), None::<String>, None);
            loop {
                let cursor = after.as_ref().map(|a| format!("&after={a}")).unwrap_or_default();
                let page = node.get(&format!("/v1/parcels?bbox={bbox}{cursor}"))?;
                height = height.or(page["height"].as_u64());
                features.extend(page["features"].as_array().cloned().unwrap_or_default());
                // Cursors only move forward (cadastral order): a node naming one that does not
                // cannot keep the command going round.
                match page["next"].as_str() {
                    Some(n) if after.as_deref().is_none_or(|a| n > a) => after = Some(n.to_string()),
                    _ => break,
                }
            }
            let count = features.len();
            let fc = serde_json::json!({"type": "FeatureCollection", "height": height, "features": features});
            let text = serde_json::to_string_pretty(&fc)? + "\n";
            match out {
                Some(p) => {
                    write_atomic(&p, &text)?;
                    eprintln!("{count} parcels written to {}", p.display());
                }
                None => out!("{text}"),
            }
            Ok(exit::OK)
        }
        ParcelCommand::History { cadastral, node, json } => {
            let node = Node::new(&node)?;
            // Page after page (each names the cursor of the next), joined into one answer.
            let mut h = node.get(&format!("/v1/parcels/{cadastral}/history"))?;
            let mut last = None;
            // Cursors (log indices) only move forward: a node naming one that does not cannot
            // keep the command going round.
            while let Some(next) = h["next"].as_u64().filter(|n| last.is_none_or(|l| *n > l)) {
                last = Some(next);
                let page = node.get(&format!("/v1/parcels/{cadastral}/history?after={next}"))?;
                let more = page["entries"].as_array().cloned().unwrap_or_default();
                if more.is_empty() {
                    break;
                }
                if let Some(entries) = h["entries"].as_array_mut() {
                    entries.extend(more);
                }
                h["next"] = page["next"].clone();
            }
            if json {
                outln!("{h}");
            } else {
                for e in h["entries"].as_array().cloned().unwrap_or_default() {
                    let version = e["version"].as_u64().map(|v| format!("v{v}")).unwrap_or_else(|| "-".into());
                    outln!(
                        "{:<4} {:<17} entry {:<6} height {:<6} {}",
                        version,
                        e["operation"].as_str().unwrap_or_default(),
                        e["index"],
                        e["height"],
                        crate::time::format_utc_ms(e["time_ms"].as_u64().unwrap_or_default())
                    );
                }
            }
            Ok(exit::OK)
        }
        ParcelCommand::Verify { proof, genesis, json } => verify_file(&proof, &genesis, json),
    }
}

/// Verifies a parcel proof file offline against the genesis file: exit 0 valid, 1 invalid.
pub(crate) fn verify_file(proof: &std::path::Path, genesis: &std::path::Path, json: bool) -> anyhow::Result<u8> {
    let g = sabt_core::genesis::Genesis::from_json(&read_bounded(genesis, crate::files::MAX_GENESIS)?)
        .with_context(|| format!("{} is not a valid genesis", genesis.display()))?;
    let text = read_bounded(proof, 4 * status::MAX_STATUS_LEN as u64)?;
    match ParcelProof::from_json(&text).and_then(|p| status::verify_parcel(&p, &g).map(|v| (p, v))) {
        Ok((p, (height, _, state))) => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"valid": true, "cadastral_number": p.cadastral, "height": height, "state": state})
                );
            } else {
                outln!("VALID: at height {height}, parcel {}", p.cadastral);
                match state {
                    None => outln!("  is not registered"),
                    Some(s) if s.retired_height.is_some() => {
                        outln!("  is RETIRED (since height {})", s.retired_height.unwrap_or_default())
                    }
                    Some(s) => outln!(
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
                outln!("{}", serde_json::json!({"valid": false, "error": e.code(), "message": e.to_string()}));
            } else {
                outln!("INVALID ({}): {e}", e.code());
            }
            Ok(exit::INVALID)
        }
    }
}

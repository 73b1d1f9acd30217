//! The land registry's model (ISO 19152 LADM, minimal profile) and the checks on its operations
//! that need no state.
//!
//! In Tajikistan land belongs to the state: what is registered is a **parcel** (cadastral number,
//! land category, permitted use, geometry), the **use right** on it (perpetual, fixed-term, lifelong
//! inheritable, or a lease) with its holders and their exact shares, and **restrictions**
//! (mortgages, which need the mortgagee's consent to a transfer, and arrests, which block it).
//! Holders are salted hashes of party identifiers ([`party_hash`]): no names or national ids go on
//! the ledger. Every operation cites the fingerprint of its source document and appends a version
//! to the parcel's history; nothing is overwritten.
//!
//! The rules that need the state (overlap with live parcels, arrests, consents, authority) are in
//! [`crate::registry::land`].

use crate::entry::check_date;
use crate::fingerprint::Fingerprint;
use crate::geometry::{GeometryError, Polygon};
use crate::hash::{self, Hash32};
use crate::sign::{self, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest cadastral number.
pub const MAX_CADASTRAL_LEN: usize = 64;
/// Most holders of one right.
pub const MAX_HOLDERS: usize = 64;
/// Most restrictions on one parcel.
pub const MAX_RESTRICTIONS: usize = 32;
/// Most children of a split, or parents of a merge.
pub const MAX_PARTS: usize = 64;

/// The salted hash that stands for a party (person or organisation) on the ledger:
/// `BLAKE3("sabt/party/v1", salt ‖ 0x00 ‖ identifier)`. The salt is kept by the registering agency.
pub fn party_hash(salt: &[u8], identifier: &str) -> Hash32 {
    let mut buf = salt.to_vec();
    buf.push(0);
    buf.extend_from_slice(identifier.as_bytes());
    hash::hash(hash::PARTY, &buf)
}

/// Land categories of the land fund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LandCategory {
    /// Agricultural land.
    Agricultural,
    /// Land of settlements.
    Settlement,
    /// Industry, transport, communications, defence.
    Industrial,
    /// Specially protected natural areas, recreation, history and culture.
    Protected,
    /// Forest fund.
    Forest,
    /// Water fund.
    Water,
    /// State reserve.
    Reserve,
}

/// Kinds of use right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RightKind {
    /// Perpetual (indefinite) use.
    PerpetualUse,
    /// Fixed-term use (needs an end date).
    FixedTermUse,
    /// Lifelong inheritable use.
    LifelongInheritableUse,
    /// Lease (needs an end date).
    Lease,
}

/// Kinds of restriction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestrictionKind {
    /// A mortgage on the whole parcel: a transfer needs the mortgagee's consent.
    Mortgage,
    /// An arrest (court order): no transfer while it stands.
    Arrest,
}

/// An exact fraction `num/den`, `0 < num <= den`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// Numerator.
    pub num: u64,
    /// Denominator.
    pub den: u64,
}

/// A holder of a right and their share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holding {
    /// [`party_hash`] of the holder.
    pub party: Hash32,
    /// Their share.
    pub share: Share,
}

/// A use right on a parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Right {
    /// Kind of right.
    pub kind: RightKind,
    /// Holders; shares sum to exactly 1; each party once, in increasing order.
    pub holders: Vec<Holding>,
    /// From: `YYYY-MM-DD`.
    pub start: String,
    /// Until (required for fixed-term use and leases).
    pub end: Option<String>,
}

/// A restriction on a parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restriction {
    /// Mortgage or arrest.
    pub kind: RestrictionKind,
    /// The beneficiary (mortgagee, or the court), as a [`party_hash`].
    pub beneficiary: Hash32,
    /// The key whose signature releases the restriction (required): the mortgagee's for a
    /// mortgage, which also consents to transfers; for an arrest, the key of the authority that
    /// imposed it.
    pub consent_key: Option<PublicKey>,
    /// From: `YYYY-MM-DD`.
    pub start: String,
    /// The document that imposed it.
    pub source: Fingerprint,
}

/// A parcel's identity and shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parcel {
    /// Cadastral number.
    pub cadastral: String,
    /// Land category.
    pub category: LandCategory,
    /// Permitted use, as the land plan words it.
    pub permitted_use: String,
    /// Boundary, in the genesis CRS.
    pub geometry: Polygon,
}

/// Kinds of structure on the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructureKind {
    /// A building: its footprint lies on the parcels it is linked to.
    Building,
    /// A linear object (road, canal, power line): its centreline.
    Road,
}

/// A building or a linear object, registered separately from the land and linked to parcels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Structure {
    /// Its registry number (same form as a cadastral number).
    pub id: String,
    /// Building or road.
    pub kind: StructureKind,
    /// The parcels it stands on (a building: at least one; a road: any), in increasing order.
    pub parcels: Vec<String>,
    /// A building's footprint.
    pub footprint: Option<Polygon>,
    /// A road's centreline, at least two vertices.
    pub line: Option<Vec<crate::geometry::Point>>,
    /// What it is, e.g. "two-storey house", "M41 highway".
    pub description: String,
}

/// A structure's state, as the state map holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructureState {
    /// The structure.
    pub structure: Structure,
    /// Log index of the entry that registered it.
    pub index: u64,
    /// Height of that entry's block.
    pub height: u64,
    /// Height of the block that retired it (demolished, closed), if any.
    pub retired_height: Option<u64>,
}

impl Structure {
    /// Checks the number, the links and the geometry.
    pub fn validate(&self) -> Result<(), LandError> {
        check_cadastral(&self.id)
            .map_err(|_| field("structure.id", "1 to 64 characters: letters, digits and : . / -"))?;
        let d = &self.description;
        if d.trim().is_empty() || d.chars().count() > 256 || d.chars().any(char::is_control) {
            return Err(field("structure.description", "1 to 256 characters, no control characters"));
        }
        if self.parcels.len() > MAX_PARTS || self.parcels.windows(2).any(|w| w[0] >= w[1]) {
            return Err(field("structure.parcels", format!("at most {MAX_PARTS}, each once, in increasing order")));
        }
        self.parcels.iter().try_for_each(|p| check_cadastral(p))?;
        match (self.kind, &self.footprint, &self.line) {
            (StructureKind::Building, Some(f), None) => {
                if self.parcels.is_empty() {
                    return Err(field("structure.parcels", "a building stands on at least one parcel"));
                }
                f.validate().map_err(|error| LandError::Geometry { cadastral: self.id.clone(), error })
            }
            (StructureKind::Road, None, Some(line)) => {
                if line.len() < 2 || line.len() > crate::geometry::MAX_VERTICES {
                    return Err(field("structure.line", format!("2 to {} vertices", crate::geometry::MAX_VERTICES)));
                }
                if let Some(i) = line.windows(2).position(|w| w[0] == w[1]) {
                    return Err(field("structure.line", format!("vertex {} repeats the vertex before it", i + 1)));
                }
                let max = crate::geometry::MAX_COORD_MM;
                if let Some(i) = line.iter().position(|p| p.x.abs() > max || p.y.abs() > max) {
                    return Err(field("structure.line", format!("vertex {i} is out of range; is it projected?")));
                }
                Ok(())
            }
            _ => Err(field("structure", "a building has a footprint and no line; a road a line and no footprint")),
        }
    }
}

/// An operation on the land registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // Operations are handled one at a time.
pub enum LandOp {
    /// First registration of a parcel and its use right.
    Register {
        /// The parcel.
        parcel: Parcel,
        /// Its use right.
        right: Right,
        /// The source document.
        source: Fingerprint,
    },
    /// A transfer: the use right passes to new holders.
    Transfer {
        /// The parcel.
        cadastral: String,
        /// The new right.
        right: Right,
        /// The source document (contract, deed).
        source: Fingerprint,
        /// Consents of mortgagees: signatures over [`transfer_consent_bytes`].
        consents: Vec<Signature>,
    },
    /// A boundary correction (the overlap rule is applied again).
    CorrectBoundary {
        /// The parcel.
        cadastral: String,
        /// The corrected boundary.
        geometry: Polygon,
        /// The source document (survey).
        source: Fingerprint,
    },
    /// A restriction is added.
    Encumber {
        /// The parcel.
        cadastral: String,
        /// The restriction.
        restriction: Restriction,
    },
    /// A restriction is released, with the signature of its consent key over
    /// [`release_consent_bytes`].
    Release {
        /// The parcel.
        cadastral: String,
        /// The restriction's source document (identifies it).
        restriction: Fingerprint,
        /// The releasing document.
        source: Fingerprint,
        /// The restriction's consent key's signature over the release.
        consent: Signature,
    },
    /// The parcel is split: it is retired and the children, which cover it without overlapping
    /// each other, are registered with its right.
    Split {
        /// The parent parcel.
        cadastral: String,
        /// The children (new cadastral numbers).
        children: Vec<Parcel>,
        /// The source document.
        source: Fingerprint,
    },
    /// Adjacent parcels with the same right are merged: they are retired and the new parcel, which
    /// covers exactly them, is registered with their right.
    Merge {
        /// The parcels merged (at least two, in increasing order).
        parents: Vec<String>,
        /// The new parcel.
        parcel: Parcel,
        /// The source document.
        source: Fingerprint,
    },
    /// A building or road is registered.
    RegisterStructure {
        /// The structure.
        structure: Structure,
        /// The source document (permit, acceptance act).
        source: Fingerprint,
    },
    /// A building or road is retired (demolished, closed); it stays in history.
    RetireStructure {
        /// Its number.
        id: String,
        /// The source document.
        source: Fingerprint,
    },
    /// The parcel is retired (it stays in history; nothing may change it again).
    Retire {
        /// The parcel.
        cadastral: String,
        /// The source document.
        source: Fingerprint,
    },
}

impl LandOp {
    /// The parcel the operation is about.
    pub fn cadastral(&self) -> &str {
        match self {
            LandOp::Register { parcel, .. } | LandOp::Merge { parcel, .. } => &parcel.cadastral,
            LandOp::Split { cadastral, .. }
            | LandOp::Transfer { cadastral, .. }
            | LandOp::CorrectBoundary { cadastral, .. }
            | LandOp::Encumber { cadastral, .. }
            | LandOp::Release { cadastral, .. }
            | LandOp::Retire { cadastral, .. } => cadastral,
            LandOp::RegisterStructure { structure, .. } => &structure.id,
            LandOp::RetireStructure { id, .. } => id,
        }
    }

    /// Whether the operation is about a building or road rather than a parcel.
    pub fn is_structure(&self) -> bool {
        matches!(self, LandOp::RegisterStructure { .. } | LandOp::RetireStructure { .. })
    }

    /// The operation's name.
    pub fn name(&self) -> &'static str {
        match self {
            LandOp::Register { .. } => "register",
            LandOp::Transfer { .. } => "transfer",
            LandOp::CorrectBoundary { .. } => "correct_boundary",
            LandOp::Encumber { .. } => "encumber",
            LandOp::Release { .. } => "release",
            LandOp::Split { .. } => "split",
            LandOp::RegisterStructure { .. } => "register_structure",
            LandOp::RetireStructure { .. } => "retire_structure",
            LandOp::Merge { .. } => "merge",
            LandOp::Retire { .. } => "retire",
        }
    }
}

/// What a mortgagee signs to consent to a transfer (in the `sabt/land-consent/v1` context): the
/// chain, the parcel, its current version and the new right.
pub fn transfer_consent_bytes(chain_id: &str, cadastral: &str, version: u32, right: &Right) -> Vec<u8> {
    crate::codec::encode_body(&(chain_id, cadastral, version, right))
}

/// Verifies a mortgagee's consent.
pub fn consent_verifies(key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    key.verify(sign::LAND_CONSENT, message, signature).is_ok()
}

/// What a restriction's consent key signs to release it (in the `sabt/land-release/v1` context):
/// the chain, the parcel, its current version, the restriction's source document and the releasing
/// document.
pub fn release_consent_bytes(
    chain_id: &str,
    cadastral: &str,
    version: u32,
    restriction: &Fingerprint,
    source: &Fingerprint,
) -> Vec<u8> {
    crate::codec::encode_body(&(chain_id, cadastral, version, restriction, source))
}

/// Verifies a release signed by a restriction's consent key.
pub fn release_verifies(key: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    key.verify(sign::LAND_RELEASE, message, signature).is_ok()
}

/// Why a land operation is refused before any state is consulted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LandError {
    /// A field's form.
    #[error("{field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The geometry.
    #[error("geometry of parcel {cadastral}: {error}")]
    Geometry {
        /// The parcel.
        cadastral: String,
        /// What is wrong.
        error: GeometryError,
    },
    /// Shares that do not sum to 1.
    #[error("holders' shares sum to {num}/{den}, not exactly 1")]
    Shares {
        /// Sum numerator.
        num: u128,
        /// Sum denominator.
        den: u128,
    },
    /// The shares' sum cannot be computed exactly in 128 bits: their denominators are too large
    /// and too different. Reduce each share's fraction.
    #[error(
        "holders' shares cannot be summed exactly: reduce their fractions (denominators too large and too different)"
    )]
    ShareOverflow,
}

fn field(field: &'static str, reason: impl Into<String>) -> LandError {
    LandError::Field { field, reason: reason.into() }
}

/// Checks a cadastral number: 1 to 64 characters `0-9 A-Z a-z : . / -`.
pub fn check_cadastral(c: &str) -> Result<(), LandError> {
    if c.is_empty() || c.len() > MAX_CADASTRAL_LEN {
        return Err(field("cadastral", format!("must be 1 to {MAX_CADASTRAL_LEN} characters")));
    }
    if !c.bytes().all(|b| b.is_ascii_alphanumeric() || b":./-".contains(&b)) {
        return Err(field("cadastral", format!("{c:?} may hold only letters, digits and : . / -")));
    }
    Ok(())
}

fn check_day(name: &'static str, d: &str) -> Result<(), LandError> {
    if d.len() != 10 {
        return Err(field(name, format!("{d:?} must be YYYY-MM-DD")));
    }
    check_date(d).map_err(|e| field(name, e))
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Right {
    /// Checks holders (each once, in order, shares exact and summing to 1) and dates.
    pub fn validate(&self) -> Result<(), LandError> {
        if self.holders.is_empty() || self.holders.len() > MAX_HOLDERS {
            return Err(field("right.holders", format!("1 to {MAX_HOLDERS} holders")));
        }
        if self.holders.windows(2).any(|w| w[0].party >= w[1].party) {
            return Err(field("right.holders", "each party once, in increasing order of its hash"));
        }
        let (mut num, mut den) = (0u128, 1u128);
        for h in &self.holders {
            let Share { num: n, den: d } = h.share;
            if d == 0 || n == 0 || n > d {
                return Err(field("right.holders.share", format!("{n}/{d} is not a share in (0, 1]")));
            }
            // num/den + n/d, reduced at each step; past 128 bits it is refused, never wrapped.
            let (n, d) = (u128::from(n), u128::from(d));
            let sum = num.checked_mul(d).zip(n.checked_mul(den)).and_then(|(a, b)| a.checked_add(b));
            let (sn, sd) = sum.zip(den.checked_mul(d)).ok_or(LandError::ShareOverflow)?;
            let g = gcd(sn, sd);
            (num, den) = (sn / g, sd / g);
        }
        if num != den {
            return Err(LandError::Shares { num, den });
        }
        check_day("right.start", &self.start)?;
        match (&self.end, self.kind) {
            (None, RightKind::FixedTermUse | RightKind::Lease) => {
                return Err(field("right.end", "a fixed-term use right or a lease needs an end date"));
            }
            (Some(e), _) => {
                check_day("right.end", e)?;
                if *e <= self.start {
                    return Err(field("right.end", format!("{e} is not after the start {}", self.start)));
                }
            }
            (None, _) => {}
        }
        Ok(())
    }
}

impl Parcel {
    /// Checks the cadastral number, the permitted use and the geometry.
    pub fn validate(&self) -> Result<(), LandError> {
        check_cadastral(&self.cadastral)?;
        let u = &self.permitted_use;
        if u.trim().is_empty() || u.chars().count() > 256 || u.chars().any(char::is_control) {
            return Err(field("permitted_use", "1 to 256 characters, no control characters"));
        }
        self.geometry.validate().map_err(|error| LandError::Geometry { cadastral: self.cadastral.clone(), error })
    }
}

impl LandOp {
    /// The checks that need no state.
    pub fn validate(&self) -> Result<(), LandError> {
        check_cadastral(self.cadastral())?;
        match self {
            LandOp::Register { parcel, right, .. } => {
                parcel.validate()?;
                right.validate()
            }
            LandOp::Transfer { right, consents, .. } => {
                if consents.len() > MAX_RESTRICTIONS {
                    return Err(field("consents", format!("at most {MAX_RESTRICTIONS}")));
                }
                right.validate()
            }
            LandOp::CorrectBoundary { cadastral, geometry, .. } => {
                geometry.validate().map_err(|error| LandError::Geometry { cadastral: cadastral.clone(), error })
            }
            LandOp::Encumber { restriction, .. } => {
                check_day("restriction.start", &restriction.start)?;
                match (restriction.kind, restriction.consent_key) {
                    (RestrictionKind::Mortgage, None) => Err(field(
                        "restriction.consent_key",
                        "a mortgage names the mortgagee's key, which consents to transfers and signs the release",
                    )),
                    (RestrictionKind::Arrest, None) => Err(field(
                        "restriction.consent_key",
                        "an arrest names the key of the authority that imposed it, which signs its release",
                    )),
                    _ => Ok(()),
                }
            }
            LandOp::Split { children, .. } => {
                if children.len() < 2 || children.len() > MAX_PARTS {
                    return Err(field("children", format!("2 to {MAX_PARTS} children")));
                }
                if children.windows(2).any(|w| w[0].cadastral >= w[1].cadastral) {
                    return Err(field("children", "each cadastral number once, in increasing order"));
                }
                children.iter().try_for_each(Parcel::validate)
            }
            LandOp::Merge { parents, parcel, .. } => {
                if parents.len() < 2 || parents.len() > MAX_PARTS {
                    return Err(field("parents", format!("2 to {MAX_PARTS} parcels")));
                }
                if parents.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(field("parents", "each cadastral number once, in increasing order"));
                }
                parents.iter().try_for_each(|p| check_cadastral(p))?;
                parcel.validate()
            }
            LandOp::RegisterStructure { structure, .. } => structure.validate(),
            LandOp::Release { .. } | LandOp::Retire { .. } | LandOp::RetireStructure { .. } => Ok(()),
        }
    }
}

/// A parcel's current state, as the state map holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParcelState {
    /// The parcel (current geometry).
    pub parcel: Parcel,
    /// The current use right.
    pub right: Right,
    /// Standing restrictions.
    pub restrictions: Vec<Restriction>,
    /// Version: 1 at registration, one more with every change.
    pub version: u32,
    /// Log index of the entry that made this version.
    pub index: u64,
    /// Height of that entry's block.
    pub height: u64,
    /// Height of the block that retired it, if retired.
    pub retired_height: Option<u64>,
}

/// A land operation as logged: the operation and the version it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LandEntry {
    /// The operation, as submitted.
    pub op: LandOp,
    /// The parcel's version after it.
    pub version: u32,
}

/// Side of a grid cell of the spatial index in the state, mm (500 m).
pub const CELL_MM: i64 = 500_000;
/// Most grid cells one parcel's bounding box may cover (a 50 km × 50 km box).
pub const MAX_CELLS: u64 = 10_000;

/// The grid cells a bounding box covers, or `None` if more than [`MAX_CELLS`].
pub fn cells(b: &crate::geometry::BBox) -> Option<Vec<(i64, i64)>> {
    let (x0, x1) = (b.min.x.div_euclid(CELL_MM), b.max.x.div_euclid(CELL_MM));
    let (y0, y1) = (b.min.y.div_euclid(CELL_MM), b.max.y.div_euclid(CELL_MM));
    let n = u64::try_from((x1 - x0 + 1).checked_mul(y1 - y0 + 1)?).ok()?;
    if n > MAX_CELLS {
        return None;
    }
    Some((x0..=x1).flat_map(|x| (y0..=y1).map(move |y| (x, y))).collect())
}

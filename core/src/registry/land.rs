//! The land rules that need the state: overlap with live parcels, splits and merges, restrictions,
//! consents, buildings and roads. The operations' own fields are checked in [`crate::land`].
//!
//! Every limit a registration obeys binds every parcel an operation creates: a split's children and
//! a merge's new parcel are checked for the grid-cell limit and for overlap with live parcels here,
//! in the check, so that applying can never meet a parcel it cannot write.
//!
//! Restrictions:
//! - a parcel under arrest cannot be transferred; a mortgaged one only with the signature of each
//!   mortgage's consent key over the transfer ([`crate::land::transfer_consent_bytes`]);
//! - a restriction is released only with the signature of its consent key over the release
//!   ([`crate::land::release_consent_bytes`]): the mortgagee's for a mortgage, the key of the
//!   authority that imposed it for an arrest;
//! - an encumbered parcel cannot be split, merged, retired or re-drawn: each would let its
//!   restrictions fall away or change what they bind. Release them first.

use super::schema::{CellMembers, ParcelOf, StructureOf};
use super::{CheckError, Draft, Ledger, Registry, TxError};
use crate::geometry::{Polygon, overlap_area_mm2};
use crate::land::{self, LandOp, ParcelState, RestrictionKind, StructureState};
use crate::merkle::StoreError;
use std::collections::BTreeSet;

/// A grid cell of the spatial index.
type Cell = (i64, i64);

/// Where in the log and the chain an operation lands.
#[derive(Debug, Clone, Copy)]
pub(super) struct Landing {
    pub index: u64,
    pub height: u64,
}

impl Registry {
    /// A parcel's state (retired parcels included).
    pub fn parcel<L: Ledger + ?Sized>(&self, ledger: &L, cadastral: &str) -> Result<Option<ParcelState>, StoreError> {
        super::schema::get::<ParcelOf, L>(ledger, cadastral)
    }

    /// A structure's state (retired ones included).
    pub fn structure<L: Ledger + ?Sized>(&self, ledger: &L, id: &str) -> Result<Option<StructureState>, StoreError> {
        super::schema::get::<StructureOf, L>(ledger, id)
    }

    /// The live parcels whose bounding box touches a grid cell.
    pub fn cell_members<L: Ledger + ?Sized>(&self, ledger: &L, cell: Cell) -> Result<Vec<String>, StoreError> {
        Ok(super::schema::get::<CellMembers, L>(ledger, &cell)?.unwrap_or_default())
    }

    /// Checks a land operation by a key of `agency` and plans its writes; returns the version it
    /// makes (of the parcel, the new parcel of a merge, or the structure).
    pub(super) fn plan_land<L: Ledger + ?Sized>(
        &self,
        d: &mut Draft<'_, L>,
        agency: &str,
        op: &LandOp,
        at: Landing,
    ) -> Result<u32, CheckError> {
        if !self.land_agencies.contains(agency) {
            return Err(TxError::NoLandRole(agency.to_string()).into());
        }
        match op {
            LandOp::RegisterStructure { structure, .. } => {
                if d.get::<StructureOf>(&structure.id)?.is_some() {
                    return Err(TxError::ParcelExists(structure.id.clone()).into());
                }
                let mut inside = 0.0;
                for p in &structure.parcels {
                    let st = live(d, p)?;
                    if let Some(f) = &structure.footprint {
                        inside += overlap_area_mm2(f, &st.parcel.geometry);
                    }
                }
                if let Some(f) = &structure.footprint {
                    let outside = f.area2() as f64 / 2.0 - inside;
                    if outside > self.tolerance() {
                        return Err(TxError::Partition {
                            op: "register_structure",
                            cadastral: structure.id.clone(),
                            reason: format!("the footprint extends {outside:.0} mm² beyond the parcels it names"),
                        }
                        .into());
                    }
                }
                let st = StructureState {
                    structure: structure.clone(),
                    index: at.index,
                    height: at.height,
                    retired_height: None,
                };
                d.set::<StructureOf>(&structure.id, &st)?;
                Ok(1)
            }
            LandOp::RetireStructure { id, .. } => {
                let mut st = d.get::<StructureOf>(id)?.ok_or_else(|| TxError::NoSuchParcel(id.clone()))?;
                if let Some(height) = st.retired_height {
                    return Err(TxError::ParcelRetired { cadastral: id.clone(), height }.into());
                }
                st.retired_height = Some(at.height);
                d.set::<StructureOf>(id, &st)?;
                Ok(2)
            }
            LandOp::Register { parcel, right, .. } => {
                if d.get::<ParcelOf>(&parcel.cadastral)?.is_some() {
                    return Err(TxError::ParcelExists(parcel.cadastral.clone()).into());
                }
                self.check_overlap(d, &parcel.cadastral, &parcel.geometry, &[])?;
                let st = fresh(parcel, right, at);
                write_parcel(d, &st, Vec::new())?;
                Ok(1)
            }
            LandOp::Transfer { cadastral, right, consents, .. } => {
                let mut st = live(d, cadastral)?;
                if st.restrictions.iter().any(|r| r.kind == RestrictionKind::Arrest) {
                    return Err(TxError::Arrested(cadastral.clone()).into());
                }
                let message = land::transfer_consent_bytes(&self.chain_id, cadastral, st.version, right);
                for key in st.restrictions.iter().filter_map(|r| r.consent_key) {
                    if !consents.iter().any(|s| land::consent_verifies(&key, &message, s)) {
                        return Err(TxError::ConsentMissing {
                            what: "transfer",
                            cadastral: cadastral.clone(),
                            key: key.to_hex(),
                        }
                        .into());
                    }
                }
                st.right = right.clone();
                self.next_version(d, st, at)
            }
            LandOp::CorrectBoundary { cadastral, geometry, .. } => {
                let mut st = unencumbered(d, cadastral)?;
                self.check_overlap(d, cadastral, geometry, &[])?;
                st.parcel.geometry = geometry.clone();
                self.next_version(d, st, at)
            }
            LandOp::Encumber { cadastral, restriction } => {
                let mut st = live(d, cadastral)?;
                if st.restrictions.len() >= land::MAX_RESTRICTIONS {
                    return Err(land_field("restriction", format!("at most {} restrictions", land::MAX_RESTRICTIONS)));
                }
                if st.restrictions.iter().any(|r| r.source == restriction.source) {
                    return Err(land_field(
                        "restriction.source",
                        "a restriction from this document already stands".into(),
                    ));
                }
                st.restrictions.push(restriction.clone());
                self.next_version(d, st, at)
            }
            LandOp::Release { cadastral, restriction, source, consent } => {
                let mut st = live(d, cadastral)?;
                let Some(standing) = st.restrictions.iter().find(|r| r.source.sha256 == restriction.sha256) else {
                    return Err(TxError::NoSuchRestriction {
                        cadastral: cadastral.clone(),
                        document: restriction.sha256.to_hex(),
                    }
                    .into());
                };
                let message = land::release_consent_bytes(&self.chain_id, cadastral, st.version, restriction, source);
                match standing.consent_key {
                    Some(key) if land::release_verifies(&key, &message, consent) => {}
                    key => {
                        return Err(TxError::ConsentMissing {
                            what: "release",
                            cadastral: cadastral.clone(),
                            key: key.map(|k| k.to_hex()).unwrap_or_else(|| "(none named)".into()),
                        }
                        .into());
                    }
                }
                st.restrictions.retain(|r| r.source.sha256 != restriction.sha256);
                self.next_version(d, st, at)
            }
            LandOp::Retire { cadastral, .. } => {
                let mut st = unencumbered(d, cadastral)?;
                st.retired_height = Some(at.height);
                self.next_version(d, st, at)
            }
            LandOp::Split { cadastral, children, .. } => {
                let parent = unencumbered(d, cadastral)?;
                let bad = |reason: String| TxError::Partition { op: "split", cadastral: cadastral.clone(), reason };
                let tol = self.tolerance();
                let pg = &parent.parcel.geometry;
                let mut covered = 0.0;
                let siblings: Vec<&str> = children.iter().map(|c| c.cadastral.as_str()).collect();
                let mut exclude = siblings.clone();
                exclude.push(cadastral);
                for (i, child) in children.iter().enumerate() {
                    if d.get::<ParcelOf>(&child.cadastral)?.is_some() {
                        return Err(TxError::ParcelExists(child.cadastral.clone()).into());
                    }
                    let inside = overlap_area_mm2(&child.geometry, pg);
                    let outside = child.geometry.area2() as f64 / 2.0 - inside;
                    if outside > tol {
                        return Err(bad(format!(
                            "child {} extends {outside:.0} mm² beyond the parent",
                            child.cadastral
                        ))
                        .into());
                    }
                    covered += inside;
                    for other in &children[i + 1..] {
                        let shared = overlap_area_mm2(&child.geometry, &other.geometry);
                        if shared > tol {
                            return Err(bad(format!(
                                "children {} and {} overlap by {shared:.0} mm²",
                                child.cadastral, other.cadastral
                            ))
                            .into());
                        }
                    }
                    self.check_overlap(d, &child.cadastral, &child.geometry, &exclude)?;
                }
                let gap = pg.area2() as f64 / 2.0 - covered;
                if gap > tol {
                    return Err(bad(format!("the children leave {gap:.0} mm² of the parent uncovered")).into());
                }
                let right = parent.right.clone();
                let mut retired = parent;
                retired.retired_height = Some(at.height);
                let version = self.next_version(d, retired, at)?;
                for child in children {
                    write_parcel(d, &fresh(child, &right, at), Vec::new())?;
                }
                Ok(version)
            }
            LandOp::Merge { parents, parcel, .. } => {
                if d.get::<ParcelOf>(&parcel.cadastral)?.is_some() {
                    return Err(TxError::ParcelExists(parcel.cadastral.clone()).into());
                }
                let bad =
                    |reason: String| TxError::Partition { op: "merge", cadastral: parcel.cadastral.clone(), reason };
                let tol = self.tolerance();
                let mut states: Vec<ParcelState> = Vec::with_capacity(parents.len());
                let mut total = 0.0;
                for p in parents {
                    let st = unencumbered(d, p)?;
                    if let Some(f) = states.first()
                        && (f.right.kind != st.right.kind || f.right.holders != st.right.holders)
                    {
                        return Err(
                            bad(format!("{p} has other holders or another right than {}", f.parcel.cadastral)).into()
                        );
                    }
                    let area = st.parcel.geometry.area2() as f64 / 2.0;
                    let inside = overlap_area_mm2(&st.parcel.geometry, &parcel.geometry);
                    if area - inside > tol {
                        return Err(bad(format!("the new parcel leaves out {:.0} mm² of {p}", area - inside)).into());
                    }
                    total += area;
                    states.push(st);
                }
                // The new polygon is one simple polygon holding exactly the parents: they are
                // adjacent, or it would have to hold land between them.
                let extra = parcel.geometry.area2() as f64 / 2.0 - total;
                if extra > tol {
                    return Err(bad(format!(
                        "the new parcel holds {extra:.0} mm² outside the merged parcels: are they adjacent?"
                    ))
                    .into());
                }
                let exclude: Vec<&str> = parents.iter().map(String::as_str).collect();
                self.check_overlap(d, &parcel.cadastral, &parcel.geometry, &exclude)?;
                let right = states.first().map(|s| s.right.clone()).ok_or_else(|| bad("no parents".into()))?;
                for mut st in states {
                    st.retired_height = Some(at.height);
                    self.next_version(d, st, at)?;
                }
                write_parcel(d, &fresh(parcel, &right, at), Vec::new())?;
                Ok(1)
            }
        }
    }

    fn tolerance(&self) -> f64 {
        self.overlap_tolerance_mm2 as f64
    }

    /// Refuses `geometry` for parcel `cadastral` if its bounding box covers more grid cells than
    /// one registration may, or if it overlaps a live parcel (other than itself and those in
    /// `exclude`) by more than the genesis tolerance. Neighbours come from the grid index in the
    /// state, in cadastral order.
    fn check_overlap<L: Ledger + ?Sized>(
        &self,
        d: &Draft<'_, L>,
        cadastral: &str,
        geometry: &Polygon,
        exclude: &[&str],
    ) -> Result<(), CheckError> {
        let cells = land::cells(&geometry.bbox()).ok_or_else(|| TxError::ParcelTooLarge(cadastral.to_string()))?;
        let mut neighbours = BTreeSet::new();
        for c in cells {
            let members = d.get::<CellMembers>(&c)?.unwrap_or_default();
            neighbours.extend(members.into_iter().filter(|o| o != cadastral && !exclude.contains(&o.as_str())));
        }
        for other in neighbours {
            let st = d.get::<ParcelOf>(&other)?.ok_or_else(|| {
                StoreError::Damaged(format!("the spatial index names parcel {other}, which is missing"))
            })?;
            let area = overlap_area_mm2(geometry, &st.parcel.geometry);
            if area > self.tolerance() {
                return Err(TxError::Overlap {
                    cadastral: cadastral.to_string(),
                    other,
                    area_mm2: area as u64,
                    tolerance_mm2: self.overlap_tolerance_mm2,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Writes `st` as the parcel's next version, made by the entry at `at`; returns that version.
    fn next_version<L: Ledger + ?Sized>(
        &self,
        d: &mut Draft<'_, L>,
        mut st: ParcelState,
        at: Landing,
    ) -> Result<u32, CheckError> {
        let stored = d.get::<ParcelOf>(&st.parcel.cadastral)?.ok_or_else(|| {
            StoreError::Damaged(format!("parcel {} vanished while it was checked", st.parcel.cadastral))
        })?;
        let old_cells = cells_of_stored(&stored)?;
        st.version = stored.version.checked_add(1).ok_or_else(|| {
            TxError::Land(land::LandError::Field { field: "version", reason: "the parcel has no version left".into() })
        })?;
        st.index = at.index;
        st.height = at.height;
        write_parcel(d, &st, old_cells)?;
        Ok(st.version)
    }
}

fn land_field(field: &'static str, reason: String) -> CheckError {
    TxError::Land(land::LandError::Field { field, reason }).into()
}

/// Version 1 of a new parcel, made by the entry at `at`.
fn fresh(parcel: &land::Parcel, right: &land::Right, at: Landing) -> ParcelState {
    ParcelState {
        parcel: parcel.clone(),
        right: right.clone(),
        restrictions: Vec::new(),
        version: 1,
        index: at.index,
        height: at.height,
        retired_height: None,
    }
}

/// A live parcel's state.
fn live<L: Ledger + ?Sized>(d: &Draft<'_, L>, cadastral: &str) -> Result<ParcelState, CheckError> {
    match d.get::<ParcelOf>(cadastral)? {
        None => Err(TxError::NoSuchParcel(cadastral.to_string()).into()),
        Some(p) => match p.retired_height {
            Some(height) => Err(TxError::ParcelRetired { cadastral: cadastral.to_string(), height }.into()),
            None => Ok(p),
        },
    }
}

/// A live parcel with no standing restriction.
fn unencumbered<L: Ledger + ?Sized>(d: &Draft<'_, L>, cadastral: &str) -> Result<ParcelState, CheckError> {
    let st = live(d, cadastral)?;
    if !st.restrictions.is_empty() {
        return Err(TxError::Encumbered(cadastral.to_string()).into());
    }
    Ok(st)
}

/// The cells a stored parcel occupies in the index (none once retired).
fn cells_of_stored(st: &ParcelState) -> Result<Vec<Cell>, StoreError> {
    if st.retired_height.is_some() {
        return Ok(Vec::new());
    }
    land::cells(&st.parcel.geometry.bbox())
        .ok_or_else(|| StoreError::Damaged(format!("stored parcel {} covers too many cells", st.parcel.cadastral)))
}

/// Writes a parcel's state and moves it in the grid index from `old_cells` to the cells its
/// geometry covers now (none once retired). The caller checked the new geometry's cells.
fn write_parcel<L: Ledger + ?Sized>(
    d: &mut Draft<'_, L>,
    state: &ParcelState,
    old_cells: Vec<Cell>,
) -> Result<(), CheckError> {
    let new_cells = match state.retired_height {
        Some(_) => Vec::new(),
        None => land::cells(&state.parcel.geometry.bbox())
            .ok_or_else(|| TxError::ParcelTooLarge(state.parcel.cadastral.clone()))?,
    };
    let cadastral = &state.parcel.cadastral;
    d.set::<ParcelOf>(cadastral, state)?;
    // Index cells: leave the cells no longer covered, join the new ones (in cell order).
    let old: BTreeSet<Cell> = old_cells.into_iter().collect();
    let new: BTreeSet<Cell> = new_cells.into_iter().collect();
    for c in old.symmetric_difference(&new) {
        let mut members = d.get::<CellMembers>(c)?.unwrap_or_default();
        if new.contains(c) {
            if let Err(at) = members.binary_search(cadastral) {
                members.insert(at, cadastral.clone());
            }
        } else {
            members.retain(|m| m != cadastral);
        }
        d.set::<CellMembers>(c, &members)?;
    }
    Ok(())
}

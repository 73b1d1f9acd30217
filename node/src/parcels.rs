//! The node's map of the land registry: an R-tree of the live parcels' bounding boxes and each
//! parcel's history (the log entries that changed it). Both are derived from the log: rebuilt
//! from storage at start and extended with every committed block, so they never disagree with the
//! chain. Answers are then read from the committed state.

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, RTree};
use sabt_core::codec;
use sabt_core::entry::{EntryBody, LogEntry};
use sabt_core::geometry::{BBox, Polygon};
use sabt_core::land::{LandOp, Parcel, ParcelState, Right};
use std::collections::BTreeMap;

type Item = GeomWithData<Rectangle<[i64; 2]>, String>;

/// Live parcels by bounding box, and every parcel's history.
#[derive(Debug, Default)]
pub struct ParcelIndex {
    tree: RTree<Item>,
    boxes: BTreeMap<String, BBox>,
    history: BTreeMap<String, Vec<u64>>,
    /// Log entries indexed so far.
    pub indexed: u64,
}

fn rect(b: &BBox) -> Rectangle<[i64; 2]> {
    Rectangle::from_corners([b.min.x, b.min.y], [b.max.x, b.max.y])
}

impl ParcelIndex {
    fn insert(&mut self, cadastral: &str, g: &Polygon) {
        self.remove(cadastral);
        let b = g.bbox();
        self.tree.insert(GeomWithData::new(rect(&b), cadastral.to_string()));
        self.boxes.insert(cadastral.to_string(), b);
    }

    fn remove(&mut self, cadastral: &str) {
        if let Some(b) = self.boxes.remove(cadastral) {
            self.tree.remove(&GeomWithData::new(rect(&b), cadastral.to_string()));
        }
    }

    fn touch(&mut self, cadastral: &str, index: u64) {
        self.history.entry(cadastral.to_string()).or_default().push(index);
    }

    /// Takes in log entry `index` (entries must come in order).
    pub fn apply(&mut self, index: u64, entry: &LogEntry) {
        self.indexed = index + 1;
        let EntryBody::Land(l) = &entry.body else { return };
        if l.op.is_structure() {
            return;
        }
        match &l.op {
            LandOp::Register { parcel, .. } => self.insert(&parcel.cadastral, &parcel.geometry),
            LandOp::CorrectBoundary { cadastral, geometry, .. } => self.insert(cadastral, geometry),
            LandOp::Retire { cadastral, .. } => self.remove(cadastral),
            LandOp::Split { cadastral, children, .. } => {
                self.remove(cadastral);
                for c in children {
                    self.insert(&c.cadastral, &c.geometry);
                    self.touch(&c.cadastral, index);
                }
            }
            LandOp::Merge { parents, parcel, .. } => {
                for p in parents {
                    self.remove(p);
                    self.touch(p, index);
                }
                self.insert(&parcel.cadastral, &parcel.geometry);
            }
            LandOp::Transfer { .. }
            | LandOp::Encumber { .. }
            | LandOp::Release { .. }
            | LandOp::RegisterStructure { .. }
            | LandOp::RetireStructure { .. } => {}
        }
        self.touch(l.op.cadastral(), index);
    }

    /// Takes in the canonical bytes of log entry `index`.
    pub fn apply_bytes(&mut self, index: u64, bytes: &[u8]) -> Result<(), codec::CodecError> {
        let entry: LogEntry = codec::decode(bytes)?;
        self.apply(index, &entry);
        Ok(())
    }

    /// Live parcels whose bounding box meets `b`, in cadastral order, after `after` if given, at
    /// most `limit`; and whether more follow.
    pub fn in_box(&self, b: &BBox, after: Option<&str>, limit: usize) -> (Vec<String>, bool) {
        let env = AABB::from_corners([b.min.x, b.min.y], [b.max.x, b.max.y]);
        let mut v: Vec<&String> = self
            .tree
            .locate_in_envelope_intersecting(&env)
            .map(|i| &i.data)
            .filter(|c| after.is_none_or(|a| c.as_str() > a))
            .collect();
        v.sort();
        let more = v.len() > limit;
        (v.into_iter().take(limit).cloned().collect(), more)
    }

    /// Every parcel ever registered (live or retired), in cadastral order after `after` (from the
    /// first if `None`), at most `limit`.
    pub fn known_after(&self, after: Option<&str>, limit: usize) -> Vec<String> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        self.history.range((from, Bound::Unbounded)).take(limit).map(|(c, _)| c.clone()).collect()
    }

    /// Live parcels in cadastral order after `after` (from the first if `None`), at most `limit`.
    pub fn live_after(&self, after: Option<&str>, limit: usize) -> Vec<String> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, |a| Bound::Excluded(a.to_string()));
        self.boxes.range((from, Bound::Unbounded)).take(limit).map(|(c, _)| c.clone()).collect()
    }

    /// The log entries that changed a parcel, oldest first.
    pub fn history(&self, cadastral: &str) -> &[u64] {
        self.history.get(cadastral).map_or(&[], Vec::as_slice)
    }
}

/// Rebuilds a parcel's state as of block `height` by replaying its log entries up to that height
/// (the state map keeps only the latest state). `history` gives a parcel's entries
/// ([`ParcelIndex::history`], copied out, so that no lock on the index is held while entries are
/// read); `entry` reads log entry `i`; `None` if the parcel did not exist then.
pub fn state_as_of(
    history: &dyn Fn(&str) -> Vec<u64>,
    cadastral: &str,
    height: u64,
    before: u64,
    entry: &dyn Fn(u64) -> Option<LogEntry>,
    depth: u32,
) -> Option<ParcelState> {
    if depth > 64 {
        return None;
    }
    let mut st: Option<ParcelState> = None;
    for i in history(cadastral).into_iter().filter(|i| *i < before) {
        let e = entry(i)?;
        if e.height > height {
            break;
        }
        let EntryBody::Land(l) = &e.body else { continue };
        let fresh = |parcel: &Parcel, right: Right, version| ParcelState {
            parcel: parcel.clone(),
            right,
            restrictions: Vec::new(),
            version,
            index: i,
            height: e.height,
            retired_height: None,
        };
        match &l.op {
            LandOp::Register { parcel, right, .. } => st = Some(fresh(parcel, right.clone(), l.version)),
            LandOp::Split { cadastral: parent, children, .. } if parent != cadastral => {
                let child = children.iter().find(|c| c.cadastral == cadastral)?;
                let p = state_as_of(history, parent, height, i, entry, depth + 1)?;
                st = Some(fresh(child, p.right, 1));
            }
            LandOp::Merge { parents, parcel, .. } if parcel.cadastral == cadastral => {
                let p = state_as_of(history, parents.first()?, height, i, entry, depth + 1)?;
                st = Some(fresh(parcel, p.right, l.version));
            }
            op => {
                let s = st.as_mut()?;
                match op {
                    LandOp::Transfer { right, .. } => s.right = right.clone(),
                    LandOp::CorrectBoundary { geometry, .. } => s.parcel.geometry = geometry.clone(),
                    LandOp::Encumber { restriction, .. } => s.restrictions.push(restriction.clone()),
                    LandOp::Release { restriction, .. } => {
                        s.restrictions.retain(|r| r.source.sha256 != restriction.sha256)
                    }
                    LandOp::Retire { .. } | LandOp::Split { .. } | LandOp::Merge { .. } => {
                        s.retired_height = Some(e.height)
                    }
                    LandOp::Register { .. } | LandOp::RegisterStructure { .. } | LandOp::RetireStructure { .. } => {}
                }
                s.version = if l.op.cadastral() == cadastral { l.version } else { s.version + 1 };
                s.index = i;
                s.height = e.height;
            }
        }
    }
    st
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sabt_core::fingerprint::Fingerprint;
    use sabt_core::geometry::Point;
    use sabt_core::land::{Holding, LandCategory, LandEntry, Parcel, Right, RightKind, Share};

    fn rect_poly(x0: i64, y0: i64, x1: i64, y1: i64) -> Polygon {
        let p = Point::new;
        Polygon { exterior: vec![p(x0, y0), p(x1, y0), p(x1, y1), p(x0, y1), p(x0, y0)], holes: vec![] }
    }

    fn entry(op: LandOp) -> LogEntry {
        LogEntry {
            height: 1,
            time_ms: 1,
            tx: sabt_core::hash::Hash32([0; 32]),
            signer: sabt_core::sign::SecretKey::from_seed(&[1; 32]).public(),
            body: EntryBody::Land(LandEntry { op, version: 1 }),
        }
    }

    fn parcel(c: &str, g: Polygon) -> Parcel {
        Parcel { cadastral: c.into(), category: LandCategory::Settlement, permitted_use: "x".into(), geometry: g }
    }

    #[test]
    fn follows_registration_split_merge_and_retirement() {
        let right = Right {
            kind: RightKind::PerpetualUse,
            holders: vec![Holding { party: sabt_core::hash::Hash32([1; 32]), share: Share { num: 1, den: 1 } }],
            start: "2026-01-01".into(),
            end: None,
        };
        let src = Fingerprint::of_bytes(b"s");
        let mut ix = ParcelIndex::default();
        ix.apply(
            0,
            &entry(LandOp::Register {
                parcel: parcel("A", rect_poly(0, 0, 100, 100)),
                right: right.clone(),
                source: src,
            }),
        );
        ix.apply(1, &entry(LandOp::Register { parcel: parcel("B", rect_poly(200, 0, 300, 100)), right, source: src }));
        let all = BBox { min: Point::new(-1000, -1000), max: Point::new(1000, 1000) };
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(ix.in_box(&all, None, 10), (names(&["A", "B"]), false));
        assert_eq!(ix.in_box(&BBox { min: Point::new(150, 0), max: Point::new(160, 10) }, None, 10), (vec![], false));
        let children = vec![parcel("A1", rect_poly(0, 0, 50, 100)), parcel("A2", rect_poly(50, 0, 100, 100))];
        ix.apply(2, &entry(LandOp::Split { cadastral: "A".into(), children, source: src }));
        assert_eq!(ix.in_box(&all, None, 10), (names(&["A1", "A2", "B"]), false));
        // Pages by cadastral number: each says whether more follow, and they join up.
        assert_eq!(ix.in_box(&all, None, 2), (names(&["A1", "A2"]), true));
        assert_eq!(ix.in_box(&all, Some("A2"), 2), (names(&["B"]), false));
        assert_eq!(ix.live_after(None, 2), names(&["A1", "A2"]));
        assert_eq!(ix.live_after(Some("A2"), 2), names(&["B"]));
        assert_eq!(ix.live_after(Some("B"), 2), names(&[]));
        ix.apply(
            3,
            &entry(LandOp::Merge {
                parents: vec!["A1".into(), "A2".into()],
                parcel: parcel("C", rect_poly(0, 0, 100, 100)),
                source: src,
            }),
        );
        ix.apply(4, &entry(LandOp::Retire { cadastral: "B".into(), source: src }));
        assert_eq!(ix.live_after(None, 10), names(&["C"]));
        assert_eq!(ix.known_after(None, 10), names(&["A", "A1", "A2", "B", "C"]), "retired parcels are known");
        assert_eq!(ix.known_after(Some("A2"), 2), names(&["B", "C"]));
        assert_eq!(ix.history("A"), &[0, 2]);
        assert_eq!(ix.history("A1"), &[2, 3]);
        assert_eq!(ix.history("C"), &[3]);
        assert_eq!(ix.history("B"), &[1, 4]);
        assert_eq!(ix.indexed, 5);
    }
}

//! Parcel geometry on the chain: polygons with integer-millimetre vertices in the projected CRS the
//! genesis names (default UTM zone 42N, EPSG:32642), and the checks every node applies to them.
//!
//! Coordinates arrive already projected and rounded: WGS84 GeoJSON or WKT is converted at the edge
//! (the `sabt` CLI, the node's API), so consensus never depends on floating-point projection. On the
//! chain every predicate here is exact integer arithmetic (`i128` orientation tests) except the
//! overlap *area*, which is computed by `geo`'s boolean operations and compared against the
//! genesis tolerance (millimetre-squared), after an exact bounding-box filter.
//!
//! ## Canonical polygon
//! - Rings are closed: the last vertex repeats the first. Ring 0 is the exterior; rings 1.. are
//!   holes.
//! - At least 3 distinct vertices per ring; no vertex repeated consecutively.
//! - Orientation: exterior counter-clockwise, holes clockwise (RFC 7946 §3.1.6); the edge
//!   normalises input before submitting, the chain refuses other orientations.
//! - Simple: no two edges of any rings meet except consecutive edges of one ring at their shared
//!   vertex; holes lie strictly inside the exterior and outside each other.
//! - Positive area; at most [`MAX_VERTICES`] vertices; every coordinate within ±[`MAX_COORD_MM`].

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most vertices in one polygon, over all its rings.
pub const MAX_VERTICES: usize = 4096;
/// Largest absolute coordinate, in millimetres (10,000 km).
pub const MAX_COORD_MM: i64 = 10_000_000_000;

/// A vertex: easting and northing in millimetres in the chain's projected CRS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Point {
    /// Easting, mm.
    pub x: i64,
    /// Northing, mm.
    pub y: i64,
}

impl Point {
    /// A point.
    pub const fn new(x: i64, y: i64) -> Point {
        Point { x, y }
    }
}

/// A polygon: an exterior ring and holes, each closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polygon {
    /// Ring 0: the boundary, counter-clockwise.
    pub exterior: Vec<Point>,
    /// Rings 1..: holes, clockwise.
    pub holes: Vec<Vec<Point>>,
}

/// An axis-aligned bounding box, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BBox {
    /// Lower-left.
    pub min: Point,
    /// Upper-right.
    pub max: Point,
}

impl BBox {
    /// Whether the boxes share any point (touching counts).
    pub fn intersects(&self, o: &BBox) -> bool {
        self.min.x <= o.max.x && o.min.x <= self.max.x && self.min.y <= o.max.y && o.min.y <= self.max.y
    }

    /// Whether `p` is inside or on the box.
    pub fn contains(&self, p: Point) -> bool {
        self.min.x <= p.x && p.x <= self.max.x && self.min.y <= p.y && p.y <= self.max.y
    }
}

/// Why a polygon is refused. Rings are numbered 0 (exterior), 1.. (holes); vertices from 0 in the
/// ring as given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GeometryError {
    /// Too many vertices.
    #[error("the polygon has {0} vertices; at most {MAX_VERTICES} are accepted")]
    TooManyVertices(usize),
    /// A coordinate out of range.
    #[error("ring {ring} vertex {vertex}: coordinate out of range (±{MAX_COORD_MM} mm); is it projected?")]
    OutOfRange {
        /// Ring.
        ring: usize,
        /// Vertex.
        vertex: usize,
    },
    /// Fewer than 4 points (3 distinct and the closing one).
    #[error("ring {ring} has {points} points; a ring needs at least 3 distinct vertices and the closing one")]
    TooFewPoints {
        /// Ring.
        ring: usize,
        /// Points given.
        points: usize,
    },
    /// Last point differs from the first.
    #[error("ring {ring} is not closed: its last vertex must repeat the first")]
    NotClosed {
        /// Ring.
        ring: usize,
    },
    /// A vertex equal to the one before it.
    #[error("ring {ring} vertex {vertex} repeats the vertex before it")]
    RepeatedVertex {
        /// Ring.
        ring: usize,
        /// Vertex.
        vertex: usize,
    },
    /// Zero area.
    #[error("ring {ring} encloses no area (its vertices are collinear)")]
    ZeroArea {
        /// Ring.
        ring: usize,
    },
    /// Wrong winding.
    #[error("ring {ring} runs {found}; {expected} is required (exterior counter-clockwise, holes clockwise)")]
    WrongOrientation {
        /// Ring.
        ring: usize,
        /// Required.
        expected: &'static str,
        /// Found.
        found: &'static str,
    },
    /// Two edges cross or touch.
    #[error(
        "ring {ring} edge from vertex {vertex} meets ring {other_ring} edge from vertex {other_vertex}: the boundary intersects itself"
    )]
    SelfIntersection {
        /// Ring of the first edge.
        ring: usize,
        /// Its start vertex.
        vertex: usize,
        /// Ring of the second edge.
        other_ring: usize,
        /// Its start vertex.
        other_vertex: usize,
    },
    /// A hole outside the exterior, or inside another hole.
    #[error("hole {ring} is not inside the exterior and outside the other holes")]
    HoleOutside {
        /// Ring.
        ring: usize,
    },
}

impl GeometryError {
    /// A stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            GeometryError::TooManyVertices(_) => "too_many_vertices",
            GeometryError::OutOfRange { .. } => "out_of_range",
            GeometryError::TooFewPoints { .. } => "too_few_points",
            GeometryError::NotClosed { .. } => "not_closed",
            GeometryError::RepeatedVertex { .. } => "repeated_vertex",
            GeometryError::ZeroArea { .. } => "zero_area",
            GeometryError::WrongOrientation { .. } => "wrong_orientation",
            GeometryError::SelfIntersection { .. } => "self_intersection",
            GeometryError::HoleOutside { .. } => "hole_outside",
        }
    }
}

/// `(b - a) × (c - a)`: positive when a→b→c turns left.
fn orient(a: Point, b: Point, c: Point) -> i128 {
    let (bx, by) = (i128::from(b.x) - i128::from(a.x), i128::from(b.y) - i128::from(a.y));
    let (cx, cy) = (i128::from(c.x) - i128::from(a.x), i128::from(c.y) - i128::from(a.y));
    bx * cy - by * cx
}

/// Whether `p`, collinear with segment a–b, lies on it.
fn on_segment(a: Point, b: Point, p: Point) -> bool {
    a.x.min(b.x) <= p.x && p.x <= a.x.max(b.x) && a.y.min(b.y) <= p.y && p.y <= a.y.max(b.y)
}

/// Whether closed segments p1–p2 and q1–q2 share any point.
pub fn segments_meet(p1: Point, p2: Point, q1: Point, q2: Point) -> bool {
    let (d1, d2) = (orient(q1, q2, p1), orient(q1, q2, p2));
    let (d3, d4) = (orient(p1, p2, q1), orient(p1, p2, q2));
    if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) {
        return true;
    }
    (d1 == 0 && on_segment(q1, q2, p1))
        || (d2 == 0 && on_segment(q1, q2, p2))
        || (d3 == 0 && on_segment(p1, p2, q1))
        || (d4 == 0 && on_segment(p1, p2, q2))
}

/// Twice the signed area of a closed ring (positive when counter-clockwise), mm².
pub fn ring_area2(ring: &[Point]) -> i128 {
    ring.windows(2).map(|w| i128::from(w[0].x) * i128::from(w[1].y) - i128::from(w[1].x) * i128::from(w[0].y)).sum()
}

/// Where a point is relative to a closed ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Strictly inside.
    Inside,
    /// On the boundary.
    Boundary,
    /// Strictly outside.
    Outside,
}

/// Locates `p` against a closed ring, exactly (crossing number with the boundary checked first).
pub fn locate_in_ring(ring: &[Point], p: Point) -> Location {
    let mut inside = false;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if orient(a, b, p) == 0 && on_segment(a, b, p) {
            return Location::Boundary;
        }
        if (a.y > p.y) != (b.y > p.y) {
            // x of the edge at p.y, compared without division: sign of orient, adjusted for direction.
            let o = orient(a, b, p);
            let left = if b.y > a.y { o > 0 } else { o < 0 };
            if left {
                inside = !inside;
            }
        }
    }
    if inside { Location::Inside } else { Location::Outside }
}

impl Polygon {
    fn rings(&self) -> impl Iterator<Item = &Vec<Point>> {
        std::iter::once(&self.exterior).chain(self.holes.iter())
    }

    /// The bounding box of the exterior.
    pub fn bbox(&self) -> BBox {
        let mut b = BBox { min: Point::new(i64::MAX, i64::MAX), max: Point::new(i64::MIN, i64::MIN) };
        for p in &self.exterior {
            b.min.x = b.min.x.min(p.x);
            b.min.y = b.min.y.min(p.y);
            b.max.x = b.max.x.max(p.x);
            b.max.y = b.max.y.max(p.y);
        }
        b
    }

    /// Twice the area (exterior minus holes), mm², for a valid polygon.
    pub fn area2(&self) -> i128 {
        ring_area2(&self.exterior) + self.holes.iter().map(|h| ring_area2(h)).sum::<i128>()
    }

    /// The area in square metres (for display).
    pub fn area_m2(&self) -> f64 {
        // Twice-area in mm² to m²: divide by 2 × 10^6; exact enough for display.
        self.area2() as f64 / 2.0e6
    }

    /// Locates `p`: inside the exterior and not inside or on a hole.
    pub fn locate(&self, p: Point) -> Location {
        if !self.bbox().contains(p) {
            return Location::Outside;
        }
        match locate_in_ring(&self.exterior, p) {
            Location::Inside => {}
            other => return other,
        }
        for h in &self.holes {
            match locate_in_ring(h, p) {
                Location::Inside => return Location::Outside,
                Location::Boundary => return Location::Boundary,
                Location::Outside => {}
            }
        }
        Location::Inside
    }

    /// The same polygon with the required orientations (exterior counter-clockwise, holes
    /// clockwise). For the edge, before submitting; the chain refuses any other orientation.
    pub fn normalized(mut self) -> Polygon {
        if ring_area2(&self.exterior) < 0 {
            self.exterior.reverse();
        }
        for h in &mut self.holes {
            if ring_area2(h) > 0 {
                h.reverse();
            }
        }
        self
    }

    /// Checks every rule of the canonical polygon (module docs).
    pub fn validate(&self) -> Result<(), GeometryError> {
        let total: usize = self.rings().map(Vec::len).sum();
        if total > MAX_VERTICES {
            return Err(GeometryError::TooManyVertices(total));
        }
        for (ring, r) in self.rings().enumerate() {
            if let Some(vertex) = r.iter().position(|p| p.x.abs() > MAX_COORD_MM || p.y.abs() > MAX_COORD_MM) {
                return Err(GeometryError::OutOfRange { ring, vertex });
            }
            if r.len() < 4 {
                return Err(GeometryError::TooFewPoints { ring, points: r.len() });
            }
            if r.first() != r.last() {
                return Err(GeometryError::NotClosed { ring });
            }
            if let Some(i) = r.windows(2).position(|w| w[0] == w[1]) {
                return Err(GeometryError::RepeatedVertex { ring, vertex: i + 1 });
            }
            if r.iter().all(|p| orient(r[0], r[1], *p) == 0) {
                return Err(GeometryError::ZeroArea { ring });
            }
        }
        // Simplicity before orientation: a self-intersecting ring has no meaningful winding.
        self.check_simple()?;
        for (ring, r) in self.rings().enumerate() {
            let a = ring_area2(r);
            let (expected, ok) = if ring == 0 { ("counter-clockwise", a > 0) } else { ("clockwise", a < 0) };
            if !ok {
                let found = if a > 0 { "counter-clockwise" } else { "clockwise" };
                return Err(GeometryError::WrongOrientation { ring, expected, found });
            }
        }
        for (i, h) in self.holes.iter().enumerate() {
            let ring = i + 1;
            // The rings do not meet (checked above), so one vertex decides containment.
            if locate_in_ring(&self.exterior, h[0]) != Location::Inside {
                return Err(GeometryError::HoleOutside { ring });
            }
            for (j, other) in self.holes.iter().enumerate() {
                if i != j && locate_in_ring(other, h[0]) == Location::Inside {
                    return Err(GeometryError::HoleOutside { ring });
                }
            }
        }
        Ok(())
    }

    /// No two edges meet, except consecutive edges of one ring at their shared vertex.
    fn check_simple(&self) -> Result<(), GeometryError> {
        let edges: Vec<(usize, usize, Point, Point)> = self
            .rings()
            .enumerate()
            .flat_map(|(ring, r)| r.windows(2).enumerate().map(move |(v, w)| (ring, v, w[0], w[1])))
            .collect();
        let ring_edges = |ring: usize| if ring == 0 { self.exterior.len() - 1 } else { self.holes[ring - 1].len() - 1 };
        for (i, &(r1, v1, a, b)) in edges.iter().enumerate() {
            let bb1 = (a.x.min(b.x), a.x.max(b.x), a.y.min(b.y), a.y.max(b.y));
            for &(r2, v2, c, d) in &edges[i + 1..] {
                if c.x.max(d.x) < bb1.0 || c.x.min(d.x) > bb1.1 || c.y.max(d.y) < bb1.2 || c.y.min(d.y) > bb1.3 {
                    continue;
                }
                let n = ring_edges(r1);
                let adjacent = r1 == r2 && (v2 == v1 + 1 || (v1 == 0 && v2 == n - 1));
                if adjacent {
                    // Consecutive edges share exactly one vertex; they must not fold back on each other.
                    let (shared, p, q) = if v2 == v1 + 1 { (b, a, d) } else { (a, b, c) };
                    if orient(shared, p, q) == 0 && on_segment(shared, p, q)
                        || orient(shared, q, p) == 0 && on_segment(shared, q, p)
                    {
                        return Err(GeometryError::SelfIntersection {
                            ring: r1,
                            vertex: v1,
                            other_ring: r2,
                            other_vertex: v2,
                        });
                    }
                    continue;
                }
                if segments_meet(a, b, c, d) {
                    return Err(GeometryError::SelfIntersection {
                        ring: r1,
                        vertex: v1,
                        other_ring: r2,
                        other_vertex: v2,
                    });
                }
            }
        }
        Ok(())
    }

    fn to_geo(&self) -> geo::Polygon<f64> {
        // Millimetre integers within ±10^10 are exact in f64.
        let ring =
            |r: &Vec<Point>| geo::LineString::from(r.iter().map(|p| (p.x as f64, p.y as f64)).collect::<Vec<_>>());
        geo::Polygon::new(ring(&self.exterior), self.holes.iter().map(ring).collect())
    }
}

/// The area shared by two valid polygons, mm² (0 when they only touch).
pub fn overlap_area_mm2(a: &Polygon, b: &Polygon) -> f64 {
    use geo::{Area as _, BooleanOps as _};
    if !a.bbox().intersects(&b.bbox()) {
        return 0.0;
    }
    a.to_geo().intersection(&b.to_geo()).unsigned_area()
}

/// Whether two valid polygons overlap by more than `tolerance_mm2`.
pub fn overlaps(a: &Polygon, b: &Polygon, tolerance_mm2: u64) -> bool {
    overlap_area_mm2(a, b) > tolerance_mm2 as f64
}

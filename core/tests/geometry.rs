#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly by design.
//! Parcel geometry: a table of polygons with their expected verdicts, and a table of neighbour pairs
//! with their expected overlap verdicts under the default genesis tolerance (10,000 mm²).

use sabt_core::geometry::{Location, Point, Polygon, overlap_area_mm2, overlaps};

/// Metres to a point in millimetres, offset into UTM 42N-like ranges.
fn m(x: f64, y: f64) -> Point {
    Point::new(500_000_000 + (x * 1000.0) as i64, 4_200_000_000 + (y * 1000.0) as i64)
}

fn ring(pts: &[(f64, f64)]) -> Vec<Point> {
    pts.iter().map(|&(x, y)| m(x, y)).collect()
}

fn poly(ext: &[(f64, f64)]) -> Polygon {
    Polygon { exterior: ring(ext), holes: vec![] }
}

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Polygon {
    poly(&[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)])
}

const TOLERANCE_MM2: u64 = 10_000;

#[test]
fn polygon_verdicts() {
    let square = [(0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0), (0.0, 0.0)];
    let hole_cw = [(40.0, 40.0), (40.0, 60.0), (60.0, 60.0), (60.0, 40.0), (40.0, 40.0)];
    let cases: Vec<(&str, Polygon, Result<(), &str>)> = vec![
        ("valid square", poly(&square), Ok(())),
        (
            "valid concave L",
            poly(&[(0.0, 0.0), (100.0, 0.0), (100.0, 50.0), (50.0, 50.0), (50.0, 100.0), (0.0, 100.0), (0.0, 0.0)]),
            Ok(()),
        ),
        (
            "bow-tie",
            poly(&[(0.0, 0.0), (100.0, 100.0), (100.0, 0.0), (0.0, 100.0), (0.0, 0.0)]),
            Err("self_intersection"),
        ),
        ("unclosed ring", poly(&[(0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0)]), Err("not_closed")),
        ("two points", poly(&[(0.0, 0.0), (100.0, 0.0), (0.0, 0.0)]), Err("too_few_points")),
        ("zero area", poly(&[(0.0, 0.0), (50.0, 0.0), (100.0, 0.0), (0.0, 0.0)]), Err("zero_area")),
        (
            "repeated vertex",
            poly(&[(0.0, 0.0), (100.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0), (0.0, 0.0)]),
            Err("repeated_vertex"),
        ),
        (
            "clockwise exterior",
            poly(&[(0.0, 0.0), (0.0, 100.0), (100.0, 100.0), (100.0, 0.0), (0.0, 0.0)]),
            Err("wrong_orientation"),
        ),
        (
            "spike folding back",
            poly(&[(0.0, 0.0), (100.0, 0.0), (150.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0), (0.0, 0.0)]),
            Err("self_intersection"),
        ),
        (
            "ring touching itself",
            poly(&[(0.0, 0.0), (100.0, 0.0), (50.0, 50.0), (100.0, 100.0), (0.0, 100.0), (50.0, 50.0), (0.0, 0.0)]),
            Err("self_intersection"),
        ),
        (
            "unprojected degrees",
            Polygon {
                exterior: vec![Point::new(0, 0), Point::new(1, 0), Point::new(1, 1), Point::new(0, 0)],
                holes: vec![],
            },
            Ok(()),
        ),
        (
            "out of range",
            Polygon {
                exterior: vec![Point::new(0, 0), Point::new(i64::MAX, 0), Point::new(1, 1), Point::new(0, 0)],
                holes: vec![],
            },
            Err("out_of_range"),
        ),
        ("hole", Polygon { exterior: ring(&square), holes: vec![ring(&hole_cw)] }, Ok(())),
        (
            "hole counter-clockwise",
            Polygon {
                exterior: ring(&square),
                holes: vec![ring(&[(40.0, 40.0), (60.0, 40.0), (60.0, 60.0), (40.0, 60.0), (40.0, 40.0)])],
            },
            Err("wrong_orientation"),
        ),
        (
            "hole outside",
            Polygon {
                exterior: ring(&square),
                holes: vec![ring(&[(140.0, 40.0), (140.0, 60.0), (160.0, 60.0), (160.0, 40.0), (140.0, 40.0)])],
            },
            Err("hole_outside"),
        ),
        (
            "hole crossing the boundary",
            Polygon {
                exterior: ring(&square),
                holes: vec![ring(&[(90.0, 40.0), (90.0, 60.0), (110.0, 60.0), (110.0, 40.0), (90.0, 40.0)])],
            },
            Err("self_intersection"),
        ),
        (
            "hole inside a hole",
            Polygon {
                exterior: ring(&square),
                holes: vec![
                    ring(&[(10.0, 10.0), (10.0, 90.0), (90.0, 90.0), (90.0, 10.0), (10.0, 10.0)]),
                    ring(&hole_cw),
                ],
            },
            Err("hole_outside"),
        ),
    ];
    for (name, p, expected) in cases {
        let got = p.validate().map_err(|e| e.code());
        assert_eq!(got, expected, "{name}: {:?}", p.validate());
    }
    // Errors name the ring and the vertex.
    let e = poly(&[(0.0, 0.0), (100.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0), (0.0, 0.0)])
        .validate()
        .unwrap_err();
    assert_eq!(e.to_string(), "ring 0 vertex 2 repeats the vertex before it");
    // Normalising fixes orientation only.
    let cw = poly(&[(0.0, 0.0), (0.0, 100.0), (100.0, 100.0), (100.0, 0.0), (0.0, 0.0)]);
    assert!(cw.clone().normalized().validate().is_ok());
    assert_eq!(cw.normalized().area2(), 2 * 100_000 * 100_000);
}

#[test]
fn neighbour_verdicts() {
    let parcel = rect(0.0, 0.0, 100.0, 100.0);
    let cases: Vec<(&str, Polygon, f64, bool)> = vec![
        ("sharing an edge", rect(100.0, 0.0, 200.0, 100.0), 0.0, false),
        ("touching at a corner", rect(100.0, 100.0, 200.0, 200.0), 0.0, false),
        ("apart", rect(300.0, 0.0, 400.0, 100.0), 0.0, false),
        ("overlapping by 1 m²", rect(99.0, 0.0, 199.0, 1.0), 1.0e6, true),
        ("overlapping by 1 mm along 5 m (within tolerance)", rect(99.999, 0.0, 199.0, 5.0), 5_000.0, false),
        ("containing another", rect(10.0, 10.0, 20.0, 20.0), 100.0e6, true),
        ("identical", rect(0.0, 0.0, 100.0, 100.0), 10_000.0e6, true),
    ];
    for (name, other, area, verdict) in cases {
        other.validate().unwrap();
        let got = overlap_area_mm2(&parcel, &other);
        assert!((got - area).abs() < 1.0, "{name}: overlap {got} mm², expected {area}");
        assert_eq!(overlaps(&parcel, &other, TOLERANCE_MM2), verdict, "{name}");
        assert_eq!(overlaps(&other, &parcel, TOLERANCE_MM2), verdict, "{name}, reversed");
    }
    // A hole leaves room: a parcel inside another's hole does not overlap it.
    let with_hole = Polygon {
        exterior: parcel.exterior.clone(),
        holes: vec![ring(&[(40.0, 40.0), (40.0, 60.0), (60.0, 60.0), (60.0, 40.0), (40.0, 40.0)])],
    };
    with_hole.validate().unwrap();
    assert!(!overlaps(&with_hole, &rect(40.0, 40.0, 60.0, 60.0), TOLERANCE_MM2));
}

#[test]
fn points_are_located_exactly() {
    let p = Polygon {
        exterior: rect(0.0, 0.0, 100.0, 100.0).exterior,
        holes: vec![ring(&[(40.0, 40.0), (40.0, 60.0), (60.0, 60.0), (60.0, 40.0), (40.0, 40.0)])],
    };
    assert_eq!(p.locate(m(10.0, 10.0)), Location::Inside);
    assert_eq!(p.locate(m(0.0, 50.0)), Location::Boundary);
    assert_eq!(p.locate(m(100.0, 100.0)), Location::Boundary);
    assert_eq!(p.locate(m(50.0, 50.0)), Location::Outside);
    assert_eq!(p.locate(m(40.0, 50.0)), Location::Boundary);
    assert_eq!(p.locate(m(100.001, 50.0)), Location::Outside);
    assert_eq!(p.locate(m(-5.0, 50.0)), Location::Outside);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn rect_mm(x: i64, y: i64, w: i64, h: i64) -> Polygon {
        let p = |dx, dy| Point::new(500_000_000 + x + dx, 4_200_000_000 + y + dy);
        Polygon { exterior: vec![p(0, 0), p(w, 0), p(w, h), p(0, h), p(0, 0)], holes: vec![] }
    }

    proptest! {
        /// For rectangles the overlap is known exactly; the boolean operations must agree to well
        /// under a square millimetre, whichever way round, so verdicts never depend on argument order.
        #[test]
        fn rectangle_overlaps_are_exact(
            x1 in 0i64..200_000, y1 in 0i64..200_000, w1 in 1i64..150_000, h1 in 1i64..150_000,
            x2 in 0i64..200_000, y2 in 0i64..200_000, w2 in 1i64..150_000, h2 in 1i64..150_000,
        ) {
            let (a, b) = (rect_mm(x1, y1, w1, h1), rect_mm(x2, y2, w2, h2));
            prop_assert!(a.validate().is_ok() && b.validate().is_ok());
            let dx = ((x1 + w1).min(x2 + w2) - x1.max(x2)).max(0);
            let dy = ((y1 + h1).min(y2 + h2) - y1.max(y2)).max(0);
            let exact = (dx as f64) * (dy as f64);
            let ab = overlap_area_mm2(&a, &b);
            let ba = overlap_area_mm2(&b, &a);
            prop_assert!((ab - exact).abs() < 0.5, "a∩b {} vs exact {}", ab, exact);
            prop_assert!((ba - exact).abs() < 0.5, "b∩a {} vs exact {}", ba, exact);
            prop_assert_eq!(overlaps(&a, &b, TOLERANCE_MM2), overlaps(&b, &a, TOLERANCE_MM2));
        }
    }
}

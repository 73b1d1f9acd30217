//! Parcel geometry at the edges: GeoJSON (RFC 7946, WGS84 longitude/latitude) and WKT in, GeoJSON
//! out, and the projection between WGS84 and the chain's projected CRS (UTM, the `utm` crate).
//!
//! Consensus never calls this module: the `sabt` CLI projects and rounds to millimetres before it
//! signs, and the node uses it only to answer queries in GeoJSON. What the chain checks is the
//! integer polygon ([`crate::geometry`]).

use crate::geometry::{Point, Polygon};
use geojson::{Feature, GeoJson, Geometry, GeometryValue, Position};
use thiserror::Error;

/// Why an input geometry was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GeoIoError {
    /// Not GeoJSON, or not the expected shape.
    #[error("GeoJSON: {0}")]
    GeoJson(String),
    /// Not WKT, or not a polygon.
    #[error("WKT: {0}")]
    Wkt(String),
    /// The CRS is not supported.
    #[error("CRS EPSG:{0} is not supported; use a WGS84 UTM zone (EPSG:32601–32660, 32701–32760)")]
    Crs(u32),
    /// A coordinate that cannot be projected.
    #[error("{place}: {reason}")]
    Coordinate {
        /// Feature, ring and vertex.
        place: String,
        /// What is wrong.
        reason: String,
    },
}

/// A WGS84 UTM zone, the chain's projected CRS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crs {
    /// EPSG code.
    pub epsg: u32,
    zone: u8,
    north: bool,
}

impl Crs {
    /// The CRS with this EPSG code (WGS84 / UTM zones only).
    pub fn from_epsg(epsg: u32) -> Result<Crs, GeoIoError> {
        let (zone, north) = match epsg {
            32601..=32660 => (epsg - 32600, true),
            32701..=32760 => (epsg - 32700, false),
            _ => return Err(GeoIoError::Crs(epsg)),
        };
        Ok(Crs { epsg, zone: u8::try_from(zone).map_err(|_| GeoIoError::Crs(epsg))?, north })
    }

    fn central_meridian(&self) -> f64 {
        f64::from(self.zone) * 6.0 - 183.0
    }

    /// Projects WGS84 longitude/latitude (degrees) to millimetres, rounded to the nearest.
    pub fn project(&self, lon: f64, lat: f64) -> Result<Point, String> {
        if !lon.is_finite() || !lat.is_finite() || !(-180.0..=180.0).contains(&lon) || !(-80.0..=84.0).contains(&lat) {
            return Err(format!("[{lon}, {lat}] is not a WGS84 longitude, latitude within UTM's range"));
        }
        if (lon - self.central_meridian()).abs() > 9.0 {
            return Err(format!(
                "longitude {lon} is more than 9° from the central meridian {} of EPSG:{}",
                self.central_meridian(),
                self.epsg
            ));
        }
        if (lat >= 0.0) != self.north && lat != 0.0 {
            return Err(format!("latitude {lat} is in the other hemisphere than EPSG:{}", self.epsg));
        }
        let (northing, easting, _) = utm::to_utm_wgs84(lat, lon, self.zone);
        let northing = if self.north { northing } else { northing + if northing < 0.0 { 10_000_000.0 } else { 0.0 } };
        Ok(Point::new((easting * 1000.0).round() as i64, (northing * 1000.0).round() as i64))
    }

    /// Longitude and latitude (degrees) of a point in millimetres.
    pub fn unproject(&self, p: Point) -> Result<(f64, f64), String> {
        let letter = if self.north { 'N' } else { 'M' };
        utm::wsg84_utm_to_lat_lon(p.x as f64 / 1000.0, p.y as f64 / 1000.0, self.zone, letter)
            .map(|(lat, lon)| (lon, lat))
            .map_err(|e| format!("{e:?}"))
    }
}

/// A parcel geometry read from a file: its cadastral number if the input names one
/// (`properties.cadastral_number`), and the projected polygon with canonical orientation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputPolygon {
    /// `properties.cadastral_number`, if given.
    pub cadastral: Option<String>,
    /// The polygon, projected and normalised (not yet validated).
    pub polygon: Polygon,
}

fn project_rings(crs: &Crs, rings: &[Vec<Position>], what: &str) -> Result<Polygon, GeoIoError> {
    let mut out = Vec::with_capacity(rings.len());
    for (r, ring) in rings.iter().enumerate() {
        let mut pts = Vec::with_capacity(ring.len());
        for (v, pos) in ring.iter().enumerate() {
            let place = || format!("{what} ring {r} vertex {v}");
            let c = pos.as_slice();
            if c.len() < 2 {
                return Err(GeoIoError::Coordinate {
                    place: place(),
                    reason: "a position needs longitude and latitude".into(),
                });
            }
            pts.push(crs.project(c[0], c[1]).map_err(|reason| GeoIoError::Coordinate { place: place(), reason })?);
        }
        out.push(pts);
    }
    if out.is_empty() {
        return Err(GeoIoError::GeoJson(format!("{what}: a polygon needs at least its exterior ring")));
    }
    let exterior = out.remove(0);
    Ok(Polygon { exterior, holes: out }.normalized())
}

fn from_geometry(crs: &Crs, g: &Geometry, what: &str) -> Result<Polygon, GeoIoError> {
    match &g.value {
        GeometryValue::Polygon { coordinates } => project_rings(crs, coordinates, what),
        other => Err(GeoIoError::GeoJson(format!("{what} is a {}; a parcel is one Polygon", other.type_name()))),
    }
}

fn from_feature(crs: &Crs, f: &Feature, what: &str) -> Result<InputPolygon, GeoIoError> {
    let g = f.geometry.as_ref().ok_or_else(|| GeoIoError::GeoJson(format!("{what} has no geometry")))?;
    let cadastral = match f.properties.as_ref().and_then(|p| p.get("cadastral_number")) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    Ok(InputPolygon { cadastral, polygon: from_geometry(crs, g, what)? })
}

/// Reads a GeoJSON Polygon geometry, Feature or FeatureCollection (WGS84 longitude/latitude).
pub fn parse_geojson(text: &str, crs: &Crs) -> Result<Vec<InputPolygon>, GeoIoError> {
    let gj: GeoJson = text.parse().map_err(|e: geojson::Error| GeoIoError::GeoJson(e.to_string()))?;
    match gj {
        GeoJson::Geometry(g) => {
            Ok(vec![InputPolygon { cadastral: None, polygon: from_geometry(crs, &g, "geometry")? }])
        }
        GeoJson::Feature(f) => Ok(vec![from_feature(crs, &f, "feature")?]),
        GeoJson::FeatureCollection(fc) => {
            if fc.features.is_empty() {
                return Err(GeoIoError::GeoJson("the FeatureCollection has no features".into()));
            }
            fc.features.iter().enumerate().map(|(i, f)| from_feature(crs, f, &format!("feature {i}"))).collect()
        }
    }
}

/// Reads a GeoJSON LineString geometry, or a Feature holding one (a road's centreline), projected.
pub fn parse_geojson_line(text: &str, crs: &Crs) -> Result<Vec<Point>, GeoIoError> {
    let gj: GeoJson = text.parse().map_err(|e: geojson::Error| GeoIoError::GeoJson(e.to_string()))?;
    let g = match gj {
        GeoJson::Geometry(g) => g,
        GeoJson::Feature(f) => f.geometry.ok_or_else(|| GeoIoError::GeoJson("the feature has no geometry".into()))?,
        GeoJson::FeatureCollection(_) => {
            return Err(GeoIoError::GeoJson("give one LineString, not a collection".into()));
        }
    };
    let GeometryValue::LineString { coordinates } = &g.value else {
        return Err(GeoIoError::GeoJson(format!("a {}; a road is one LineString", g.value.type_name())));
    };
    coordinates
        .iter()
        .enumerate()
        .map(|(v, pos)| {
            let c = pos.as_slice();
            let place = format!("line vertex {v}");
            if c.len() < 2 {
                return Err(GeoIoError::Coordinate { place, reason: "a position needs longitude and latitude".into() });
            }
            crs.project(c[0], c[1]).map_err(|reason| GeoIoError::Coordinate { place, reason })
        })
        .collect()
}

/// A polygon as WKT (`POLYGON ((lon lat, …), …)`, WGS84, nine decimals: about 0.1 mm).
pub fn polygon_to_wkt(crs: &Crs, p: &Polygon) -> Result<String, String> {
    let ring = |r: &Vec<Point>| -> Result<String, String> {
        let pts: Vec<String> = r
            .iter()
            .map(|pt| crs.unproject(*pt).map(|(lon, lat)| format!("{lon:.9} {lat:.9}")))
            .collect::<Result<_, _>>()?;
        Ok(format!("({})", pts.join(", ")))
    };
    let mut rings = vec![ring(&p.exterior)?];
    for h in &p.holes {
        rings.push(ring(h)?);
    }
    Ok(format!("POLYGON ({})", rings.join(", ")))
}

/// A line as a GeoJSON LineString geometry in WGS84.
pub fn line_to_geojson(crs: &Crs, line: &[Point]) -> Result<serde_json::Value, String> {
    let coords: Vec<[f64; 2]> =
        line.iter().map(|p| crs.unproject(*p).map(|(lon, lat)| [lon, lat])).collect::<Result<_, _>>()?;
    Ok(serde_json::json!({"type": "LineString", "coordinates": coords}))
}

/// Reads a WKT `POLYGON` (longitude latitude, WGS84).
pub fn parse_wkt(text: &str, crs: &Crs) -> Result<Polygon, GeoIoError> {
    let w: wkt::Wkt<f64> = text.parse().map_err(|e: &str| GeoIoError::Wkt(e.to_string()))?;
    match w {
        wkt::Wkt::Polygon(p) => {
            let rings: Vec<Vec<Position>> =
                p.rings().iter().map(|r| r.coords().iter().map(|c| Position::from([c.x, c.y])).collect()).collect();
            project_rings(crs, &rings, "polygon")
        }
        _ => Err(GeoIoError::Wkt("a parcel is one POLYGON".into())),
    }
}

/// A polygon as a GeoJSON Polygon geometry in WGS84.
pub fn polygon_to_geojson(crs: &Crs, p: &Polygon) -> Result<serde_json::Value, String> {
    let ring = |r: &Vec<Point>| -> Result<Vec<[f64; 2]>, String> {
        r.iter().map(|pt| crs.unproject(*pt).map(|(lon, lat)| [lon, lat])).collect()
    };
    let mut rings = vec![ring(&p.exterior)?];
    for h in &p.holes {
        rings.push(ring(h)?);
    }
    Ok(serde_json::json!({"type": "Polygon", "coordinates": rings}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_42n_round_trips_to_the_millimetre() {
        let crs = Crs::from_epsg(32642).unwrap();
        // The central meridian of zone 42 is 69°E: easting exactly 500 km.
        assert_eq!(crs.project(69.0, 38.5).unwrap().x, 500_000_000);
        let p = crs.project(68.7791, 38.5598).unwrap();
        let (lon, lat) = crs.unproject(p).unwrap();
        assert!((lon - 68.7791).abs() < 1e-7 && (lat - 38.5598).abs() < 1e-7, "{lon} {lat}");
        assert!(crs.project(10.0, 38.0).unwrap_err().contains("central meridian"));
        assert!(crs.project(f64::NAN, 38.0).is_err());
        assert!(Crs::from_epsg(4326).is_err());
    }

    #[test]
    fn geojson_and_wkt_inputs() {
        let crs = Crs::from_epsg(32642).unwrap();
        // Clockwise in the input: normalised to counter-clockwise.
        let fc = r#"{"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"cadastral_number": "01:01:0001"},
             "geometry": {"type": "Polygon", "coordinates": [[[68.78, 38.56], [68.78, 38.561], [68.781, 38.561], [68.781, 38.56], [68.78, 38.56]]]}}]}"#;
        let got = parse_geojson(fc, &crs).unwrap();
        assert_eq!(got[0].cadastral.as_deref(), Some("01:01:0001"));
        got[0].polygon.validate().unwrap();
        let w =
            parse_wkt("POLYGON ((68.78 38.56, 68.781 38.56, 68.781 38.561, 68.78 38.561, 68.78 38.56))", &crs).unwrap();
        assert_eq!(w, got[0].polygon);
        let text = polygon_to_wkt(&crs, &w).unwrap();
        assert!(text.starts_with("POLYGON ((68.78"), "{text}");
        assert_eq!(parse_wkt(&text, &crs).unwrap(), w, "WKT out and back in gives the same millimetres");
        let back = polygon_to_geojson(&crs, &w).unwrap();
        assert_eq!(back["type"], "Polygon");
        assert!((back["coordinates"][0][0][0].as_f64().unwrap() - 68.78).abs() < 1e-7);
        // Errors name the place.
        let bad = r#"{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[68.78, 38.56], [168.0, 38.56], [68.781, 38.561], [68.78, 38.56]]]}}"#;
        assert!(parse_geojson(bad, &crs).unwrap_err().to_string().starts_with("feature ring 0 vertex 1"));
        let point = r#"{"type": "Point", "coordinates": [68.78, 38.56]}"#;
        assert!(parse_geojson(point, &crs).unwrap_err().to_string().contains("Point"));
        assert!(parse_wkt("LINESTRING (1 2, 3 4)", &crs).is_err());
        assert!(parse_geojson("{", &crs).is_err());
    }
}

//! Dispatch regions: GeoJSON polygons (each feature's `region` property names it), and
//! routing a fix to the first region containing it. The demo ships approximate Seoul, Busan
//! and Gyeonggi (`server/data/regions.geojson`, embedded; `--regions-file` replaces it).
//! A fix in no region is [`UNROUTED`]: only dispatchers granted the scope [`ALL_REGIONS`]
//! see it (ADR 0006).

use geo::{Contains, Coord, LineString, MultiPolygon, Point, Polygon};
use geojson::{GeoJson, GeometryValue};

/// The region of a fix in no polygon.
pub const UNROUTED: &str = "unrouted";
/// The dispatcher scope that sees every region, unrouted incidents included.
pub const ALL_REGIONS: &str = "all";

/// The shipped regions.
const EMBEDDED: &str = include_str!("../../data/regions.geojson");

/// Why a regions file is refused.
#[derive(Debug, thiserror::Error)]
pub enum RegionsError {
    /// Not GeoJSON.
    #[error("regions file is not GeoJSON: {0}")]
    GeoJson(#[from] Box<geojson::Error>),
    /// Not a FeatureCollection.
    #[error("regions file must be a FeatureCollection")]
    NotACollection,
    /// A feature without a `region` name.
    #[error("feature {0} has no string property \"region\"")]
    Unnamed(usize),
    /// A feature whose name is reserved or malformed.
    #[error("feature {0}: region names are 1 to 64 of a-z, 0-9, _ and -, and not \"unrouted\" or \"all\"")]
    BadName(usize),
    /// A feature that is not a (multi)polygon.
    #[error("feature {0} is not a Polygon or MultiPolygon")]
    NotAPolygon(usize),
    /// A position with fewer than two numbers.
    #[error("feature {0} has a position without longitude and latitude")]
    BadPosition(usize),
}

/// The regions, in file order (the first containing a point wins).
#[derive(Debug, Clone, Default)]
pub struct Regions {
    regions: Vec<(String, MultiPolygon<f64>)>,
}

impl Regions {
    /// The shipped approximate Seoul, Busan and Gyeonggi.
    pub fn embedded() -> Result<Self, RegionsError> {
        Self::from_geojson(EMBEDDED)
    }

    /// Parses a FeatureCollection of named polygons.
    pub fn from_geojson(text: &str) -> Result<Self, RegionsError> {
        let parsed: GeoJson = text.parse().map_err(Box::new)?;
        let GeoJson::FeatureCollection(collection) = parsed else {
            return Err(RegionsError::NotACollection);
        };
        let mut regions = Vec::with_capacity(collection.features.len());
        for (i, feature) in collection.features.iter().enumerate() {
            let name = feature
                .properties
                .as_ref()
                .and_then(|p| p.get("region"))
                .and_then(|v| v.as_str())
                .ok_or(RegionsError::Unnamed(i))?;
            if !valid_name(name) {
                return Err(RegionsError::BadName(i));
            }
            let shape = match feature.geometry.as_ref().map(|g| &g.value) {
                Some(GeometryValue::Polygon { coordinates }) => {
                    MultiPolygon(vec![polygon(i, coordinates)?])
                }
                Some(GeometryValue::MultiPolygon { coordinates }) => MultiPolygon(
                    coordinates
                        .iter()
                        .map(|p| polygon(i, p))
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(RegionsError::NotAPolygon(i)),
            };
            regions.push((name.to_owned(), shape));
        }
        Ok(Self { regions })
    }

    /// The region containing the point, or [`UNROUTED`].
    pub fn route(&self, lat: f64, lon: f64) -> &str {
        let point = Point::new(lon, lat);
        self.regions
            .iter()
            .find(|(_, shape)| shape.contains(&point))
            .map_or(UNROUTED, |(name, _)| name.as_str())
    }

    /// The region names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.regions.iter().map(|(n, _)| n.as_str())
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name != UNROUTED
        && name != ALL_REGIONS
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn polygon(feature: usize, rings: &[Vec<geojson::Position>]) -> Result<Polygon<f64>, RegionsError> {
    let ring = |positions: &Vec<geojson::Position>| -> Result<LineString<f64>, RegionsError> {
        positions
            .iter()
            .map(|p| match p.as_slice() {
                [lon, lat, ..] => Ok(Coord { x: *lon, y: *lat }),
                _ => Err(RegionsError::BadPosition(feature)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(LineString::new)
    };
    let mut rings = rings.iter();
    let exterior = ring(rings.next().ok_or(RegionsError::NotAPolygon(feature))?)?;
    let interiors = rings.map(ring).collect::<Result<_, _>>()?;
    Ok(Polygon::new(exterior, interiors))
}

/// The regions a dispatcher with these scopes sees: `None` for every region (the scope
/// [`ALL_REGIONS`]), else exactly the named ones.
pub fn visible(scopes: &[&str]) -> Option<Vec<String>> {
    if scopes.contains(&ALL_REGIONS) {
        return None;
    }
    Some(scopes.iter().map(|s| (*s).to_owned()).collect())
}

/// Whether a dispatcher with these scopes sees an incident in `region` (`None`: no fix yet,
/// seen like [`UNROUTED`]).
pub fn sees(scopes: &[&str], region: Option<&str>) -> bool {
    scopes.contains(&ALL_REGIONS) || region.is_some_and(|r| scopes.contains(&r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_regions_route_known_places() {
        let regions = Regions::embedded().unwrap();
        assert_eq!(
            regions.names().collect::<Vec<_>>(),
            vec!["seoul", "busan", "gyeonggi"]
        );
        // Seoul City Hall, Gangnam station: Seoul, though Gyeonggi surrounds it.
        assert_eq!(regions.route(37.5665, 126.9780), "seoul");
        assert_eq!(regions.route(37.4979, 127.0276), "seoul");
        // Suwon, Uijeongbu: Gyeonggi.
        assert_eq!(regions.route(37.2636, 127.0286), "gyeonggi");
        assert_eq!(regions.route(37.7381, 127.0337), "gyeonggi");
        // Busan station, Haeundae.
        assert_eq!(regions.route(35.1151, 129.0422), "busan");
        assert_eq!(regions.route(35.1587, 129.1604), "busan");
        // The Yellow Sea, the East Sea.
        assert_eq!(regions.route(36.0, 125.0), UNROUTED);
        assert_eq!(regions.route(37.5, 130.5), UNROUTED);
    }

    #[test]
    fn bad_files_are_refused_clearly() {
        assert!(matches!(
            Regions::from_geojson("{"),
            Err(RegionsError::GeoJson(_))
        ));
        assert!(matches!(
            Regions::from_geojson(r#"{"type":"Point","coordinates":[1,2]}"#),
            Err(RegionsError::NotACollection)
        ));
        let feature = |props: &str, geometry: &str| {
            format!(
                r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{props},"geometry":{geometry}}}]}}"#
            )
        };
        let square = r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]}"#;
        assert!(matches!(
            Regions::from_geojson(&feature("{}", square)),
            Err(RegionsError::Unnamed(0))
        ));
        assert!(matches!(
            Regions::from_geojson(&feature(r#"{"region":"all"}"#, square)),
            Err(RegionsError::BadName(0))
        ));
        assert!(matches!(
            Regions::from_geojson(&feature(
                r#"{"region":"x"}"#,
                r#"{"type":"Point","coordinates":[1,2]}"#
            )),
            Err(RegionsError::NotAPolygon(0))
        ));
        let ok = Regions::from_geojson(&feature(r#"{"region":"x"}"#, square)).unwrap();
        assert_eq!(ok.route(0.5, 0.5), "x");
        assert_eq!(ok.route(2.0, 2.0), UNROUTED);
    }

    #[test]
    fn visibility_follows_scopes() {
        assert_eq!(visible(&["seoul"]), Some(vec!["seoul".to_owned()]));
        assert_eq!(visible(&["seoul", "all"]), None);
        assert!(sees(&["seoul"], Some("seoul")));
        assert!(!sees(&["seoul"], Some("busan")));
        assert!(!sees(&["seoul"], Some(UNROUTED)));
        assert!(!sees(&["seoul"], None));
        assert!(sees(&["all"], Some(UNROUTED)));
        assert!(sees(&["all"], None));
    }
}

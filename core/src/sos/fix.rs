//! A location fix as the platform reports it, its validation, and the great-circle distance
//! between two fixes.
//!
//! Error messages name the field at fault, never its value: a position is personal data and
//! errors end up in logs.

use serde::{Deserialize, Serialize};

/// Oldest time of fix accepted (2020-01-01T00:00:00Z): anything earlier is a platform that
/// reported 0 or an unset clock, not a real position.
pub const MIN_FIX_TIME_MS: i64 = 1_577_836_800_000;
/// How far a fix's time may lie ahead of the checking clock. Phone clocks drift and GPS time
/// is not the phone's time, so a few minutes are tolerated; more is a broken clock.
pub const MAX_FUTURE_SKEW_MS: i64 = 10 * 60 * 1000;
/// Largest accuracy radius accepted, in metres (a coarse cell-tower fix is a few km).
pub const MAX_ACCURACY_M: f64 = 100_000.0;
/// Altitude range accepted, in metres above the WGS84 ellipsoid.
pub const ALTITUDE_RANGE_M: (f64, f64) = (-1_000.0, 20_000.0);
/// Fastest speed accepted, in metres per second (an airliner at cruise is ~250).
pub const MAX_SPEED_MPS: f64 = 350.0;

/// How the platform found the position. Serialized as `gps`, `wifi`, `cell`, `fused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixMethod {
    /// Satellite positioning (GPS, Galileo, GLONASS, BeiDou…).
    Gps,
    /// Wi-Fi access point positioning.
    Wifi,
    /// Cell tower positioning.
    Cell,
    /// The platform's fused provider (a mix of the above).
    Fused,
}

impl FixMethod {
    /// Every method, in declaration order.
    pub const ALL: [FixMethod; 4] = [
        FixMethod::Gps,
        FixMethod::Wifi,
        FixMethod::Cell,
        FixMethod::Fused,
    ];

    /// The stable lowercase name (`gps`, `wifi`, `cell`, `fused`), as in JSON and SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            FixMethod::Gps => "gps",
            FixMethod::Wifi => "wifi",
            FixMethod::Cell => "cell",
            FixMethod::Fused => "fused",
        }
    }

    /// The inverse of [`FixMethod::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// One location fix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// Latitude, degrees (WGS84), -90 to 90.
    pub lat: f64,
    /// Longitude, degrees (WGS84), -180 to 180.
    pub lon: f64,
    /// Radius of the 68% confidence circle, metres; greater than 0.
    pub accuracy_m: f64,
    /// Altitude above the WGS84 ellipsoid, metres, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_m: Option<f64>,
    /// Ground speed, metres per second, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    /// Direction of travel, degrees clockwise from true north, 0 to under 360, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    /// When the position was measured (not when it was sent), milliseconds since the Unix
    /// epoch.
    pub time_ms: i64,
    /// How the position was found.
    pub method: FixMethod,
    /// The phone's battery level, percent (0 to 100), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_pct: Option<u8>,
}

/// Why a fix is refused. Names the field, never its value.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum FixError {
    /// A number is NaN or infinite.
    #[error("fix field {0} is not a finite number")]
    NotFinite(&'static str),
    /// Latitude outside -90 to 90.
    #[error("fix latitude is outside -90 to 90")]
    Latitude,
    /// Longitude outside -180 to 180.
    #[error("fix longitude is outside -180 to 180")]
    Longitude,
    /// Accuracy radius not greater than 0, or above [`MAX_ACCURACY_M`].
    #[error("fix accuracy radius must be greater than 0 and at most {MAX_ACCURACY_M} m")]
    Accuracy,
    /// Altitude outside [`ALTITUDE_RANGE_M`].
    #[error("fix altitude is out of range")]
    Altitude,
    /// Speed negative or above [`MAX_SPEED_MPS`].
    #[error("fix speed is out of range")]
    Speed,
    /// Heading outside 0 to under 360.
    #[error("fix heading must be at least 0 and under 360 degrees")]
    Heading,
    /// Time of fix more than [`MAX_FUTURE_SKEW_MS`] ahead of the checking clock.
    #[error("fix time is too far in the future")]
    TimeInFuture,
    /// Time of fix before [`MIN_FIX_TIME_MS`].
    #[error("fix time is before 2020")]
    TimeTooOld,
    /// Battery level above 100.
    #[error("battery level must be 0 to 100")]
    Battery,
}

impl Fix {
    /// Checks every field; `now_ms` is the checking side's clock (for the time of fix).
    pub fn validate(&self, now_ms: i64) -> Result<(), FixError> {
        self.validate_position()?;
        if self.time_ms < MIN_FIX_TIME_MS {
            return Err(FixError::TimeTooOld);
        }
        if self.time_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
            return Err(FixError::TimeInFuture);
        }
        Ok(())
    }

    /// Checks every field but the time of fix. The server checks a received fix this way: a
    /// phone whose clock is wrong must still be located, so its time is recorded, never
    /// refused (the server keeps its own time of receipt).
    pub fn validate_position(&self) -> Result<(), FixError> {
        finite("lat", self.lat)?;
        finite("lon", self.lon)?;
        finite("accuracy_m", self.accuracy_m)?;
        if !(-90.0..=90.0).contains(&self.lat) {
            return Err(FixError::Latitude);
        }
        if !(-180.0..=180.0).contains(&self.lon) {
            return Err(FixError::Longitude);
        }
        if self.accuracy_m <= 0.0 || self.accuracy_m > MAX_ACCURACY_M {
            return Err(FixError::Accuracy);
        }
        if let Some(alt) = self.altitude_m {
            finite("altitude_m", alt)?;
            if !(ALTITUDE_RANGE_M.0..=ALTITUDE_RANGE_M.1).contains(&alt) {
                return Err(FixError::Altitude);
            }
        }
        if let Some(speed) = self.speed_mps {
            finite("speed_mps", speed)?;
            if !(0.0..=MAX_SPEED_MPS).contains(&speed) {
                return Err(FixError::Speed);
            }
        }
        if let Some(heading) = self.heading_deg {
            finite("heading_deg", heading)?;
            if !(0.0..360.0).contains(&heading) {
                return Err(FixError::Heading);
            }
        }
        if self.battery_pct.is_some_and(|b| b > 100) {
            return Err(FixError::Battery);
        }
        Ok(())
    }

    /// Great-circle distance to `other` in metres.
    pub fn distance_m(&self, other: &Fix) -> f64 {
        distance_m((self.lat, self.lon), (other.lat, other.lon))
    }
}

fn finite(field: &'static str, v: f64) -> Result<(), FixError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(FixError::NotFinite(field))
    }
}

/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle (haversine) distance between two (lat, lon) points in degrees, in metres.
/// Within 0.5% of the ellipsoidal distance, which is plenty for "has the phone moved ~50 m".
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const NOW: i64 = 1_764_448_633_123;

    /// A valid fix at Seoul City Hall.
    pub(crate) fn seoul() -> Fix {
        Fix {
            lat: 37.566_54,
            lon: 126.977_96,
            accuracy_m: 12.5,
            altitude_m: Some(38.0),
            speed_mps: Some(1.2),
            heading_deg: Some(270.0),
            time_ms: NOW - 1_500,
            method: FixMethod::Gps,
            battery_pct: Some(64),
        }
    }

    #[test]
    fn accepts_valid_fixes_including_the_edges() {
        seoul().validate(NOW).unwrap();
        let minimal = Fix {
            altitude_m: None,
            speed_mps: None,
            heading_deg: None,
            battery_pct: None,
            ..seoul()
        };
        minimal.validate(NOW).unwrap();
        for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0)] {
            Fix {
                lat,
                lon,
                ..seoul()
            }
            .validate(NOW)
            .unwrap();
        }
        let edges = Fix {
            accuracy_m: MAX_ACCURACY_M,
            heading_deg: Some(0.0),
            speed_mps: Some(0.0),
            battery_pct: Some(100),
            time_ms: NOW + MAX_FUTURE_SKEW_MS,
            ..seoul()
        };
        edges.validate(NOW).unwrap();
        Fix {
            time_ms: MIN_FIX_TIME_MS,
            ..seoul()
        }
        .validate(NOW)
        .unwrap();
    }

    #[test]
    fn refuses_each_bad_field_with_its_own_error() {
        let cases: Vec<(Fix, FixError)> = vec![
            (
                Fix {
                    lat: f64::NAN,
                    ..seoul()
                },
                FixError::NotFinite("lat"),
            ),
            (
                Fix {
                    lon: f64::INFINITY,
                    ..seoul()
                },
                FixError::NotFinite("lon"),
            ),
            (
                Fix {
                    accuracy_m: f64::NAN,
                    ..seoul()
                },
                FixError::NotFinite("accuracy_m"),
            ),
            (
                Fix {
                    altitude_m: Some(f64::NEG_INFINITY),
                    ..seoul()
                },
                FixError::NotFinite("altitude_m"),
            ),
            (
                Fix {
                    speed_mps: Some(f64::NAN),
                    ..seoul()
                },
                FixError::NotFinite("speed_mps"),
            ),
            (
                Fix {
                    heading_deg: Some(f64::NAN),
                    ..seoul()
                },
                FixError::NotFinite("heading_deg"),
            ),
            (
                Fix {
                    lat: 90.000_01,
                    ..seoul()
                },
                FixError::Latitude,
            ),
            (
                Fix {
                    lat: -91.0,
                    ..seoul()
                },
                FixError::Latitude,
            ),
            (
                Fix {
                    lon: 180.5,
                    ..seoul()
                },
                FixError::Longitude,
            ),
            (
                Fix {
                    lon: -181.0,
                    ..seoul()
                },
                FixError::Longitude,
            ),
            (
                Fix {
                    accuracy_m: 0.0,
                    ..seoul()
                },
                FixError::Accuracy,
            ),
            (
                Fix {
                    accuracy_m: -3.0,
                    ..seoul()
                },
                FixError::Accuracy,
            ),
            (
                Fix {
                    accuracy_m: 100_001.0,
                    ..seoul()
                },
                FixError::Accuracy,
            ),
            (
                Fix {
                    altitude_m: Some(30_000.0),
                    ..seoul()
                },
                FixError::Altitude,
            ),
            (
                Fix {
                    altitude_m: Some(-2_000.0),
                    ..seoul()
                },
                FixError::Altitude,
            ),
            (
                Fix {
                    speed_mps: Some(-0.1),
                    ..seoul()
                },
                FixError::Speed,
            ),
            (
                Fix {
                    speed_mps: Some(400.0),
                    ..seoul()
                },
                FixError::Speed,
            ),
            (
                Fix {
                    heading_deg: Some(360.0),
                    ..seoul()
                },
                FixError::Heading,
            ),
            (
                Fix {
                    heading_deg: Some(-1.0),
                    ..seoul()
                },
                FixError::Heading,
            ),
            (
                Fix {
                    time_ms: NOW + MAX_FUTURE_SKEW_MS + 1,
                    ..seoul()
                },
                FixError::TimeInFuture,
            ),
            (
                Fix {
                    time_ms: i64::MAX,
                    ..seoul()
                },
                FixError::TimeInFuture,
            ),
            (
                Fix {
                    time_ms: 0,
                    ..seoul()
                },
                FixError::TimeTooOld,
            ),
            (
                Fix {
                    time_ms: -5,
                    ..seoul()
                },
                FixError::TimeTooOld,
            ),
            (
                Fix {
                    battery_pct: Some(101),
                    ..seoul()
                },
                FixError::Battery,
            ),
        ];
        for (fix, expected) in cases {
            assert_eq!(fix.validate(NOW), Err(expected), "{fix:?}");
            // No value in the message: positions are personal data.
            assert!(!expected.to_string().contains("37.5"));
        }
    }

    #[test]
    fn json_form_is_stable() {
        let json = serde_json::to_string(&seoul()).unwrap();
        assert_eq!(
            json,
            r#"{"lat":37.56654,"lon":126.97796,"accuracy_m":12.5,"altitude_m":38.0,"speed_mps":1.2,"heading_deg":270.0,"time_ms":1764448631623,"method":"gps","battery_pct":64}"#
        );
        assert_eq!(serde_json::from_str::<Fix>(&json).unwrap(), seoul());
        let bare =
            r#"{"lat":1.0,"lon":2.0,"accuracy_m":3.0,"time_ms":1764448631623,"method":"wifi"}"#;
        let fix: Fix = serde_json::from_str(bare).unwrap();
        assert_eq!((fix.altitude_m, fix.battery_pct), (None, None));
        assert_eq!(serde_json::to_string(&fix).unwrap(), bare);
        for m in FixMethod::ALL {
            assert_eq!(FixMethod::from_name(m.as_str()), Some(m));
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        assert_eq!(FixMethod::from_name("GPS"), None);
    }

    #[test]
    fn distances_match_known_values() {
        // Seoul City Hall to Busan City Hall: about 325 km.
        let d = distance_m((37.566_54, 126.977_96), (35.179_8, 129.075_0));
        assert!((320_000.0..330_000.0).contains(&d), "{d}");
        // 0.0005 degrees of latitude is about 55.6 m.
        let d = distance_m((37.5, 127.0), (37.5005, 127.0));
        assert!((55.0..56.2).contains(&d), "{d}");
        assert_eq!(distance_m((37.5, 127.0), (37.5, 127.0)), 0.0);
        // Antipodes do not produce NaN.
        let d = distance_m((0.0, 0.0), (0.0, 180.0));
        assert!((d - std::f64::consts::PI * EARTH_RADIUS_M).abs() < 1.0);
        let a = seoul();
        let b = Fix {
            lat: a.lat + 0.001,
            ..a
        };
        assert!((a.distance_m(&b) - 111.2).abs() < 0.5);
    }
}

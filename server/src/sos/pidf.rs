//! Exports of an incident's latest position for existing police systems: PIDF-LO
//! (RFC 4119, shapes per RFC 5491: a `gs:Circle` with the accuracy radius, or a `gml:Point`
//! when there is none), written with `quick-xml` so that every value is escaped; and the
//! AML-style fields (`lt`, `lg`, `rd`, `top`, `pm`) of the Advanced Mobile Location SMS.

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;
use serde::Serialize;
use sotong_core::sos::{Fix, FixMethod, IncidentId};

/// The PIDF-LO document of `fix` as the location of `incident` (beacon `seq`).
pub fn pidf_lo(incident: &IncidentId, seq: u32, fix: &Fix) -> Result<String, std::io::Error> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let entity = format!("pres:sos-{incident}@sotong.invalid");
    let tuple_id = format!("fix-{seq}");
    let pos = format!("{:.6} {:.6}", fix.lat, fix.lon);
    let timestamp = rfc3339(fix.time_ms);
    w.create_element("presence")
        .with_attribute(("xmlns", "urn:ietf:params:xml:ns:pidf"))
        .with_attribute(("xmlns:gp", "urn:ietf:params:xml:ns:pidf:geopriv10"))
        .with_attribute(("xmlns:gml", "http://www.opengis.net/gml"))
        .with_attribute(("xmlns:gs", "http://www.opengis.net/pidflo/1.0"))
        .with_attribute(("entity", entity.as_str()))
        .write_inner_content(|w| {
            w.create_element("tuple")
                .with_attribute(("id", tuple_id.as_str()))
                .write_inner_content(|w| {
                    w.create_element("status").write_inner_content(|w| {
                        w.create_element("gp:geopriv").write_inner_content(|w| {
                            w.create_element("gp:location-info")
                                .write_inner_content(|w| shape(w, fix, &pos))?;
                            w.create_element("gp:usage-rules").write_empty()?;
                            w.create_element("gp:method")
                                .write_text_content(BytesText::new(method_name(fix.method)))?;
                            Ok(())
                        })?;
                        Ok(())
                    })?;
                    w.create_element("timestamp")
                        .write_text_content(BytesText::new(&timestamp))?;
                    Ok(())
                })?;
            Ok(())
        })?;
    String::from_utf8(w.into_inner())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

const WGS84_2D: &str = "urn:ogc:def:crs:EPSG::4326";
const METRE: &str = "urn:ogc:def:uom:EPSG::9001";

fn shape(w: &mut Writer<Vec<u8>>, fix: &Fix, pos: &str) -> std::io::Result<()> {
    if fix.accuracy_m > 0.0 {
        let radius = format!("{:.1}", fix.accuracy_m);
        w.create_element("gs:Circle")
            .with_attribute(("srsName", WGS84_2D))
            .write_inner_content(|w| {
                w.create_element("gml:pos")
                    .write_text_content(BytesText::new(pos))?;
                w.create_element("gs:radius")
                    .with_attribute(("uom", METRE))
                    .write_text_content(BytesText::new(&radius))?;
                Ok(())
            })?;
    } else {
        w.create_element("gml:Point")
            .with_attribute(("srsName", WGS84_2D))
            .write_inner_content(|w| {
                w.create_element("gml:pos")
                    .write_text_content(BytesText::new(pos))?;
                Ok(())
            })?;
    }
    Ok(())
}

/// RFC 4119 `method` values (IANA "Method Tokens").
fn method_name(m: FixMethod) -> &'static str {
    match m {
        FixMethod::Gps => "GPS",
        FixMethod::Wifi => "Wiremap",
        FixMethod::Cell => "Cell",
        FixMethod::Fused => "Hybrid",
    }
}

/// AML-style fields of a fix (Advanced Mobile Location, ETSI TS 103 625 naming).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmlFields {
    /// The incident.
    pub incident: IncidentId,
    /// Latitude, degrees, 5 decimals.
    pub lt: String,
    /// Longitude, degrees, 5 decimals.
    pub lg: String,
    /// Radius, whole metres (rounded up).
    pub rd: u32,
    /// Time of positioning, `YYYYMMDDhhmmss` UTC.
    pub top: String,
    /// Positioning method: `G` GNSS, `W` Wi-Fi, `C` cell, `F` fused.
    pub pm: &'static str,
    /// Battery, percent, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ba: Option<u8>,
}

/// The AML fields of `fix`.
pub fn aml(incident: &IncidentId, fix: &Fix) -> AmlFields {
    let (y, mo, d, h, mi, s) = civil(fix.time_ms.div_euclid(1000));
    AmlFields {
        incident: *incident,
        lt: format!("{:+.5}", fix.lat),
        lg: format!("{:+.5}", fix.lon),
        // Accuracy is validated finite and bounded; the cast saturates anyway.
        rd: fix.accuracy_m.ceil().max(1.0) as u32,
        top: format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}"),
        pm: match fix.method {
            FixMethod::Gps => "G",
            FixMethod::Wifi => "W",
            FixMethod::Cell => "C",
            FixMethod::Fused => "F",
        },
        ba: fix.battery_pct,
    }
}

/// `YYYY-MM-DDThh:mm:ss.sssZ`.
fn rfc3339(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms.div_euclid(1000));
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        ms.rem_euclid(1000)
    )
}

/// UTC civil time of Unix seconds (H. Hinnant's days-from-civil inverse).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event as XmlEvent;
    use quick_xml::Reader;

    fn fix(accuracy_m: f64) -> Fix {
        Fix {
            lat: 37.56654,
            lon: 126.97796,
            accuracy_m,
            altitude_m: None,
            speed_mps: None,
            heading_deg: None,
            time_ms: 1_764_448_631_623,
            method: FixMethod::Gps,
            battery_pct: Some(64),
        }
    }

    /// Every element name, in document order; fails on malformed XML.
    fn element_names(xml: &str) -> Vec<String> {
        let mut reader = Reader::from_str(xml);
        reader.config_mut().check_end_names = true;
        let mut names = Vec::new();
        let mut depth = 0i32;
        loop {
            match reader.read_event().unwrap() {
                XmlEvent::Start(e) => {
                    depth += 1;
                    names.push(AsRef::<str>::as_ref(&e.name()).to_owned());
                }
                XmlEvent::Empty(e) => {
                    names.push(AsRef::<str>::as_ref(&e.name()).to_owned());
                }
                XmlEvent::End(_) => depth -= 1,
                XmlEvent::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0);
        names
    }

    #[test]
    fn pidf_lo_is_well_formed_with_a_circle() {
        let id = IncidentId::from_bytes(&[7u8; 16]).unwrap();
        let xml = pidf_lo(&id, 3, &fix(12.5)).unwrap();
        let names = element_names(&xml);
        assert_eq!(names[0], "presence");
        assert!(names.contains(&"gs:Circle".to_owned()));
        assert!(names.contains(&"gs:radius".to_owned()));
        assert!(
            xml.contains("<gml:pos>37.566540 126.977960</gml:pos>"),
            "{xml}"
        );
        assert!(
            xml.contains("<timestamp>2025-11-29T20:37:11.623Z</timestamp>"),
            "{xml}"
        );
        assert!(xml.contains("urn:ietf:params:xml:ns:pidf:geopriv10"));
        let point = pidf_lo(&id, 3, &fix(0.0)).unwrap();
        assert!(element_names(&point).contains(&"gml:Point".to_owned()));
    }

    #[test]
    fn aml_fields_follow_the_sms_format() {
        let id = IncidentId::from_bytes(&[7u8; 16]).unwrap();
        let a = aml(&id, &fix(12.5));
        assert_eq!(a.lt, "+37.56654");
        assert_eq!(a.lg, "+126.97796");
        assert_eq!(a.rd, 13);
        assert_eq!(a.top, "20251129203711");
        assert_eq!(a.pm, "G");
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
    }
}

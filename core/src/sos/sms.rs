//! The SMS text a phone sends when it has no data network: AML-style fields (after the
//! Advanced Mobile Location SMS: `lt`, `lg`, `rd`, `top`, `pm`) plus the incident, its
//! sequence number and state, and a MAC under a per-device key, so that a text cannot be
//! forged or altered on its way through the SMS gateway. Format version 1:
//!
//! ```text
//! SOS1;k=<key id>;id=<incident>;sq=<seq>;st=<A|D|C>;lt=<±dd.ddddd>;lg=<±ddd.ddddd>;
//! rd=<radius m>;top=<YYYYMMDDhhmmss UTC>;pm=<G|W|C|F>[;ba=<battery %>];m=<MAC>
//! ```
//!
//! (one line, no spaces). `m` is HMAC-SHA256 over every byte before `m=`, truncated to
//! [`MAC_BYTES`] bytes, in base58 (letters and digits only). Every character is in the GSM-7
//! basic set and the longest possible text fits one 160-character SMS. Positions are
//! rounded to 5 decimals (about 1 m), the radius up to a whole metre and the time of fix down
//! to the second; altitude, speed and heading are left out. A replayed text is harmless: the
//! server stores each (incident, seq) once.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::beacon::ReportedState;
use super::fix::{Fix, FixError, FixMethod};
use super::incident_id::IncidentId;

/// Longest text, in characters: one GSM-7 SMS.
pub const MAX_SMS_CHARS: usize = 160;
/// Bytes of HMAC-SHA256 kept (80 bits: far beyond what anyone can try by SMS).
pub const MAC_BYTES: usize = 10;
/// Every text starts with this.
pub const PREFIX: &str = "SOS1;";

/// A device's SMS key: 32 random bytes the phone and the server share. Never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsKey([u8; 32]);

impl std::fmt::Debug for SmsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SmsKey(<redacted>)")
    }
}

impl SmsKey {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        Self(bytes)
    }

    /// From 32 stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SmsError> {
        Ok(Self(bytes.try_into().map_err(|_| SmsError::KeyLength)?))
    }

    /// The raw bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self) -> Result<Hmac<Sha256>, SmsError> {
        // HMAC takes keys of any length; the error cannot happen.
        Hmac::<Sha256>::new_from_slice(&self.0).map_err(|_| SmsError::KeyLength)
    }
}

/// What a verified text says.
#[derive(Debug, Clone, PartialEq)]
pub struct SmsBeacon {
    /// The id of the key that signed it (the server's reference for the device's key).
    pub key_id: u32,
    /// The incident.
    pub incident: IncidentId,
    /// The beacon's sequence number.
    pub seq: u32,
    /// The state the phone reports.
    pub state: ReportedState,
    /// The position (no altitude, speed or heading; time to the second).
    pub fix: Fix,
}

/// Why a text is refused (or cannot be written).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SmsError {
    /// Longer than [`MAX_SMS_CHARS`].
    #[error("SMS text longer than {MAX_SMS_CHARS} characters")]
    TooLong,
    /// Not the Sotong SOS format (wrong prefix, or characters outside printable ASCII).
    #[error("not a Sotong SOS text")]
    NotSos,
    /// A field is missing or out of order (a truncated text ends up here).
    #[error("SMS field {0} missing or out of order")]
    Missing(&'static str),
    /// A field's value does not parse.
    #[error("SMS field {0} is malformed")]
    Malformed(&'static str),
    /// Text after the MAC.
    #[error("unexpected text after the SMS fields")]
    Trailing,
    /// No key is known under the text's key id.
    #[error("unknown SMS key")]
    UnknownKey,
    /// The MAC does not match: forged or altered.
    #[error("SMS authentication failed")]
    BadMac,
    /// The position in it is invalid.
    #[error(transparent)]
    Fix(#[from] FixError),
    /// A key that is not 32 bytes.
    #[error("SMS key must be 32 bytes")]
    KeyLength,
    /// The text would not fit one SMS (cannot happen for valid input; guarded anyway).
    #[error("SMS text would not fit one message")]
    Overflow,
}

fn state_letter(s: ReportedState) -> char {
    match s {
        ReportedState::Active => 'A',
        ReportedState::Duress => 'D',
        ReportedState::Cancelled => 'C',
    }
}

fn method_letter(m: FixMethod) -> char {
    match m {
        FixMethod::Gps => 'G',
        FixMethod::Wifi => 'W',
        FixMethod::Cell => 'C',
        FixMethod::Fused => 'F',
    }
}

/// Writes the text for `fix` as beacon `seq` of `incident`, signed with `key` (known to the
/// server as `key_id`). `now_ms` checks the fix's time. The result is at most
/// [`MAX_SMS_CHARS`] GSM-7 characters.
pub fn encode(
    fix: &Fix,
    incident: &IncidentId,
    seq: u32,
    state: ReportedState,
    key_id: u32,
    key: &SmsKey,
    now_ms: i64,
) -> Result<String, SmsError> {
    fix.validate(now_ms)?;
    let radius = fix.accuracy_m.ceil().max(1.0) as u32;
    let mut text = format!(
        "{PREFIX}k={key_id};id={incident};sq={seq};st={};lt={:+.5};lg={:+.5};rd={radius};top={};pm={}",
        state_letter(state),
        fix.lat,
        fix.lon,
        civil::format(fix.time_ms.div_euclid(1000)),
        method_letter(fix.method),
    );
    if let Some(b) = fix.battery_pct {
        text.push_str(&format!(";ba={b}"));
    }
    text.push(';');
    let mut mac = key.mac()?;
    mac.update(text.as_bytes());
    let tag = mac.finalize().into_bytes();
    text.push_str("m=");
    text.push_str(&bs58::encode(&tag[..MAC_BYTES]).into_string());
    if text.len() > MAX_SMS_CHARS {
        return Err(SmsError::Overflow);
    }
    Ok(text)
}

/// Reads a text and checks its MAC with the key `key_lookup` finds for its key id. Refuses
/// anything forged, altered, truncated or malformed; the fix's time is kept as sent, never
/// refused ([`Fix::validate_position`]).
pub fn decode_verified(
    text: &str,
    key_lookup: impl FnOnce(u32) -> Option<SmsKey>,
) -> Result<SmsBeacon, SmsError> {
    if text.len() > MAX_SMS_CHARS {
        return Err(SmsError::TooLong);
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SmsError::NotSos);
    }
    let body = text.strip_prefix(PREFIX).ok_or(SmsError::NotSos)?;
    let mut fields = Fields(body.split(';').peekable());

    let key_id = fields.next("k")?;
    let key_id: u32 = number("k", key_id)?;
    let incident = fields
        .next("id")?
        .parse::<IncidentId>()
        .map_err(|_| SmsError::Malformed("id"))?;
    let seq: u32 = number("sq", fields.next("sq")?)?;
    let state = match fields.next("st")? {
        "A" => ReportedState::Active,
        "D" => ReportedState::Duress,
        "C" => ReportedState::Cancelled,
        _ => return Err(SmsError::Malformed("st")),
    };
    let lat = degrees("lt", fields.next("lt")?, 2)?;
    let lon = degrees("lg", fields.next("lg")?, 3)?;
    let radius: u32 = number("rd", fields.next("rd")?)?;
    let time_s = civil::parse(fields.next("top")?).ok_or(SmsError::Malformed("top"))?;
    let method = match fields.next("pm")? {
        "G" => FixMethod::Gps,
        "W" => FixMethod::Wifi,
        "C" => FixMethod::Cell,
        "F" => FixMethod::Fused,
        _ => return Err(SmsError::Malformed("pm")),
    };
    let battery = match fields.optional("ba") {
        Some(v) => Some(number::<u8>("ba", v)?),
        None => None,
    };
    let mac_text = fields.next("m")?;
    if fields.0.next().is_some() {
        return Err(SmsError::Trailing);
    }

    let key = key_lookup(key_id).ok_or(SmsError::UnknownKey)?;
    let signed = &text[..text.len() - mac_text.len() - "m=".len()];
    let tag = bs58::decode(mac_text)
        .into_vec()
        .map_err(|_| SmsError::BadMac)?;
    if tag.len() != MAC_BYTES {
        return Err(SmsError::BadMac);
    }
    let mut mac = key.mac()?;
    mac.update(signed.as_bytes());
    // Constant-time comparison of the kept bytes.
    mac.verify_truncated_left(&tag)
        .map_err(|_| SmsError::BadMac)?;

    let fix = Fix {
        lat,
        lon,
        accuracy_m: f64::from(radius),
        altitude_m: None,
        speed_mps: None,
        heading_deg: None,
        time_ms: time_s.saturating_mul(1000),
        method,
        battery_pct: battery,
    };
    // The phone's clock may be wrong; a person in danger is located all the same.
    fix.validate_position()?;
    Ok(SmsBeacon {
        key_id,
        incident,
        seq,
        state,
        fix,
    })
}

/// The `name=value` fields, expected in a fixed order.
struct Fields<'a>(std::iter::Peekable<std::str::Split<'a, char>>);

impl<'a> Fields<'a> {
    fn next(&mut self, name: &'static str) -> Result<&'a str, SmsError> {
        self.optional(name).ok_or(SmsError::Missing(name))
    }

    fn optional(&mut self, name: &'static str) -> Option<&'a str> {
        let value = self
            .0
            .peek()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('='))?;
        self.0.next();
        Some(value)
    }
}

/// A decimal number without sign or leading zeros, as `encode` writes it.
fn number<T: std::str::FromStr>(name: &'static str, v: &str) -> Result<T, SmsError> {
    let canonical =
        !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && (v == "0" || !v.starts_with('0'));
    if !canonical {
        return Err(SmsError::Malformed(name));
    }
    v.parse().map_err(|_| SmsError::Malformed(name))
}

/// `±d.ddddd` with at most `int_digits` integer digits and exactly 5 decimals.
fn degrees(name: &'static str, v: &str, int_digits: usize) -> Result<f64, SmsError> {
    let bad = SmsError::Malformed(name);
    let unsigned = v
        .strip_prefix('+')
        .or_else(|| v.strip_prefix('-'))
        .ok_or(bad.clone())?;
    let (int, frac) = unsigned.split_once('.').ok_or(bad.clone())?;
    let ok = (1..=int_digits).contains(&int.len())
        && frac.len() == 5
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit());
    if !ok {
        return Err(bad);
    }
    v.parse().map_err(|_| bad)
}

/// UTC calendar time as `YYYYMMDDhhmmss`, from and to seconds since the Unix epoch
/// (proleptic Gregorian, after Howard Hinnant's `days_from_civil` / `civil_from_days`).
mod civil {
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (
            if m <= 2 {
                yoe + era * 400 + 1
            } else {
                yoe + era * 400
            },
            m,
            d,
        )
    }

    pub(super) fn format(secs: i64) -> String {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }

    /// Seconds since the epoch; `None` unless `s` is exactly what [`format`] writes.
    pub(super) fn parse(s: &str) -> Option<i64> {
        if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<i64>().ok());
        let (y, mo, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
        let (h, mi, se) = (n(8..10)?, n(10..12)?, n(12..14)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
            return None;
        }
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se;
        // 31 February and friends do not survive the round trip.
        (format(secs) == s).then_some(secs)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn known_dates_and_round_trips() {
            assert_eq!(format(0), "19700101000000");
            assert_eq!(format(951_782_400), "20000229000000");
            assert_eq!(format(1_764_448_633), "20251129203713");
            assert_eq!(parse("20251129203713"), Some(1_764_448_633));
            assert_eq!(parse("20000229000000"), Some(951_782_400));
            for secs in (0..4_102_444_800).step_by(7_777_777) {
                assert_eq!(parse(&format(secs)), Some(secs));
            }
            for bad in [
                "20250229000000",
                "20251131000000",
                "20251301000000",
                "20251200000000",
                "20251129240000",
                "20251129236000",
                "20251129235960",
                "2025112923595",
                "2025112923595x",
                "+0251129235959",
            ] {
                assert_eq!(parse(bad), None, "{bad}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sos::fix::tests::{seoul, NOW};

    /// The GSM 03.38 basic character set, without the escape and the characters that need it.
    const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
        ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

    fn key() -> SmsKey {
        SmsKey::from_bytes(&[42u8; 32]).unwrap()
    }

    fn lookup(id: u32) -> Option<SmsKey> {
        (id == 9).then(key)
    }

    fn text() -> String {
        encode(
            &seoul(),
            &IncidentId::from_bytes(&[7; 16]).unwrap(),
            12,
            ReportedState::Active,
            9,
            &key(),
            NOW,
        )
        .unwrap()
    }

    #[test]
    fn round_trips_with_documented_rounding() {
        let incident = IncidentId::random();
        for state in ReportedState::ALL {
            for method in FixMethod::ALL {
                let fix = Fix { method, ..seoul() };
                let text = encode(&fix, &incident, 12, state, 9, &key(), NOW).unwrap();
                let got = decode_verified(&text, lookup).unwrap();
                assert_eq!(
                    (got.key_id, got.incident, got.seq, got.state),
                    (9, incident, 12, state)
                );
                let f = got.fix;
                assert!(
                    (f.lat - fix.lat).abs() <= 0.000_005 && (f.lon - fix.lon).abs() <= 0.000_005
                );
                assert_eq!(f.accuracy_m, 13.0, "rounded up to whole metres");
                assert_eq!(f.time_ms, fix.time_ms / 1000 * 1000, "down to the second");
                assert_eq!((f.method, f.battery_pct), (method, Some(64)));
                assert_eq!(
                    (f.altitude_m, f.speed_mps, f.heading_deg),
                    (None, None, None)
                );
            }
        }
        let no_battery = Fix {
            battery_pct: None,
            lat: -33.868_82,
            lon: -0.000_004,
            ..seoul()
        };
        let text = encode(
            &no_battery,
            &incident,
            1,
            ReportedState::Duress,
            9,
            &key(),
            NOW,
        )
        .unwrap();
        assert!(!text.contains("ba="));
        assert!(text.contains(";lt=-33.86882;lg=-0.00000;"), "{text}");
        let got = decode_verified(&text, lookup).unwrap();
        assert_eq!(got.fix.battery_pct, None);
        assert_eq!(got.state, ReportedState::Duress);
    }

    #[test]
    fn looks_like_aml_and_fits_one_gsm7_sms_at_its_longest() {
        let t = text();
        assert!(t.starts_with("SOS1;k=9;id="), "{t}");
        assert!(
            t.contains(
                ";sq=12;st=A;lt=+37.56654;lg=+126.97796;rd=13;top=20251129203711;pm=G;ba=64;m="
            ),
            "{t}"
        );
        // The longest: every number at its widest.
        let widest = Fix {
            lat: -89.999_99,
            lon: -179.999_99,
            accuracy_m: 99_999.5,
            battery_pct: Some(100),
            time_ms: NOW,
            method: FixMethod::Fused,
            ..seoul()
        };
        let incident = IncidentId::from_bytes(&[0xff; 16]).unwrap();
        let long = encode(
            &widest,
            &incident,
            u32::MAX,
            ReportedState::Cancelled,
            u32::MAX,
            &key(),
            NOW,
        )
        .unwrap();
        assert!(long.len() <= MAX_SMS_CHARS, "{} chars: {long}", long.len());
        for t in [&t, &long] {
            assert!(t.chars().all(|c| GSM7_BASIC.contains(c)), "{t}");
        }
        decode_verified(&long, |_| Some(key())).unwrap();
    }

    #[test]
    fn every_changed_character_is_refused() {
        let t = text();
        decode_verified(&t, lookup).unwrap();
        let alphabet: Vec<char> = (0x20u8..0x7f).map(char::from).collect();
        let mut tried = 0;
        for (i, original) in t.char_indices() {
            for &c in &alphabet {
                if c == original {
                    continue;
                }
                let mut forged = t.clone();
                forged.replace_range(i..i + 1, c.encode_utf8(&mut [0; 4]));
                tried += 1;
                assert!(
                    decode_verified(&forged, lookup).is_err(),
                    "accepted with {c:?} at {i}: {forged}"
                );
            }
        }
        assert!(tried > 10_000);
    }

    #[test]
    fn every_deleted_or_inserted_character_is_refused() {
        let t = text();
        for i in 0..t.len() {
            let mut shorter = t.clone();
            shorter.remove(i);
            assert!(decode_verified(&shorter, lookup).is_err(), "without {i}");
            for c in ['0', '9', 'A', 'z', ';', '=', '+', '-', '.', ' '] {
                let mut longer = t.clone();
                longer.insert(i, c);
                assert!(decode_verified(&longer, lookup).is_err(), "{c:?} at {i}");
            }
        }
    }

    #[test]
    fn random_garbage_never_panics_and_is_refused() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let t = text();
        for _ in 0..5_000 {
            let len = rng.gen_range(0..200);
            let garbage: String = (0..len)
                .map(|_| char::from(rng.gen_range(0x20u8..0x7f)))
                .collect();
            assert!(decode_verified(&garbage, |_| Some(key())).is_err());
            // A valid text's prefix with garbage after it.
            let cut = rng.gen_range(0..t.len());
            let spliced = format!("{}{}", &t[..cut], &garbage[..garbage.len().min(20)]);
            if spliced != t {
                assert!(
                    decode_verified(&spliced, |_| Some(key())).is_err(),
                    "{spliced}"
                );
            }
        }
    }

    #[test]
    fn truncated_extended_and_reordered_texts_are_refused() {
        let t = text();
        for len in 0..t.len() {
            assert!(decode_verified(&t[..len], lookup).is_err(), "prefix {len}");
        }
        assert_eq!(
            decode_verified(&format!("{t};x=1"), lookup),
            Err(SmsError::Trailing)
        );
        assert_eq!(
            decode_verified(&format!("{t}1"), lookup),
            Err(SmsError::BadMac)
        );
        assert_eq!(
            decode_verified(&format!("{t} "), lookup),
            Err(SmsError::NotSos)
        );
        let without_mac = &t[..t.find(";m=").unwrap()];
        assert_eq!(
            decode_verified(without_mac, lookup),
            Err(SmsError::Missing("m"))
        );
        let swapped = t.replace(";sq=12;st=A;", ";st=A;sq=12;");
        assert_eq!(
            decode_verified(&swapped, lookup),
            Err(SmsError::Missing("sq"))
        );
        assert_eq!(decode_verified("hello", lookup), Err(SmsError::NotSos));
        assert_eq!(
            decode_verified(&"x".repeat(161), lookup),
            Err(SmsError::TooLong)
        );
        assert_eq!(
            decode_verified("SOS1;k=9;id=가", lookup),
            Err(SmsError::NotSos)
        );
    }

    #[test]
    fn wrong_or_unknown_keys_and_malformed_fields_are_refused() {
        let t = text();
        assert_eq!(decode_verified(&t, |_| None), Err(SmsError::UnknownKey));
        assert_eq!(
            decode_verified(&t, |_| Some(SmsKey::random())),
            Err(SmsError::BadMac)
        );
        // Even a correctly signed text is refused when a field does not parse.
        let sign = |body: &str| {
            let mut mac = key().mac().unwrap();
            mac.update(body.as_bytes());
            format!(
                "{body}m={}",
                bs58::encode(&mac.finalize().into_bytes()[..MAC_BYTES]).into_string()
            )
        };
        let id = IncidentId::from_bytes(&[7; 16]).unwrap();
        let ok = format!(
            "SOS1;k=9;id={id};sq=1;st=A;lt=+37.00000;lg=+127.00000;rd=5;top=20251129203711;pm=G;"
        );
        decode_verified(&sign(&ok), lookup).unwrap();
        // A phone whose clock is ten years ahead is still located, its time kept as sent.
        let ahead = ok.replace("top=20251129203711", "top=20351129203711");
        let decoded = decode_verified(&sign(&ahead), lookup).unwrap();
        assert!(decoded.fix.time_ms > NOW);
        let cases = [
            (
                "lt=+37.00000",
                "lt=+95.00000",
                SmsError::Fix(FixError::Latitude),
            ),
            ("lt=+37.00000", "lt=37.00000", SmsError::Malformed("lt")),
            ("lt=+37.00000", "lt=+37.0000", SmsError::Malformed("lt")),
            ("lg=+127.00000", "lg=+1270.0000", SmsError::Malformed("lg")),
            ("rd=5", "rd=0", SmsError::Fix(FixError::Accuracy)),
            ("rd=5", "rd=05", SmsError::Malformed("rd")),
            ("sq=1", "sq=-1", SmsError::Malformed("sq")),
            ("sq=1", "sq=4294967296", SmsError::Malformed("sq")),
            ("st=A", "st=X", SmsError::Malformed("st")),
            ("pm=G", "pm=N", SmsError::Malformed("pm")),
            (
                "top=20251129203711",
                "top=20250230203711",
                SmsError::Malformed("top"),
            ),
            ("pm=G;", "pm=G;ba=101;", SmsError::Fix(FixError::Battery)),
            ("pm=G;", "pm=G;ba=256;", SmsError::Malformed("ba")),
            ("pm=G;", "pm=G;ba=;", SmsError::Malformed("ba")),
        ];
        for (from, to, err) in cases {
            let body = ok.replace(from, to);
            assert_eq!(decode_verified(&sign(&body), lookup), Err(err), "{body}");
        }
        assert!(!format!("{:?}", key()).contains("42"));
        assert_eq!(SmsKey::from_bytes(&[1; 31]), Err(SmsError::KeyLength));
        let bad_fix = Fix {
            accuracy_m: 0.0,
            ..seoul()
        };
        assert_eq!(
            encode(&bad_fix, &id, 1, ReportedState::Active, 9, &key(), NOW),
            Err(SmsError::Fix(FixError::Accuracy))
        );
    }
}

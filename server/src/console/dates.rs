//! Dates as the console shows and reads them: `YYYY-MM-DD` and `YYYY-MM-DD HH:MM:SS`, in UTC
//! (the audit log is kept in Unix seconds; one zone for every reader avoids ambiguity).

const SECS_PER_DAY: i64 = 86_400;

/// `2026-11-29 20:15:03` for Unix seconds `secs`.
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(SECS_PER_DAY);
    let rem = secs.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix seconds at the start (00:00:00 UTC) of the day `YYYY-MM-DD`; `None` if it is not a
/// real date in years 1970–9999.
pub fn parse_day(text: &str) -> Option<i64> {
    let text = text.trim();
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !(all_digits(y) && all_digits(m) && all_digits(d)) {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if y < 1970 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d) * SECS_PER_DAY)
}

/// The last second of the day that `parse_day` starts.
pub fn end_of_day(start: i64) -> i64 {
    start + SECS_PER_DAY - 1
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days-from-civil algorithms (proleptic Gregorian calendar).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_utc(1_795_983_303), "2026-11-29 20:15:03");
    }

    #[test]
    fn parses_days_and_round_trips() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2000-02-29"), Some(951_782_400));
        let start = parse_day("2026-11-29").unwrap();
        assert_eq!(format_utc(start), "2026-11-29 00:00:00");
        assert_eq!(format_utc(end_of_day(start)), "2026-11-29 23:59:59");
        for day in (0..200_000).step_by(37) {
            let secs = day * SECS_PER_DAY;
            let text = format_utc(secs);
            assert_eq!(parse_day(&text[..10]), Some(secs), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_date() {
        for bad in [
            "",
            "2026-2-1",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "1969-12-31",
            "２０２６-01-01",
            "2026-01-01-01",
            "abcd-ef-gh",
            "+202-01-01",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
    }
}

//! Dates as the console shows and reads them: `YYYY-MM-DD` and `YYYY-MM-DD HH:MM:SS`, in UTC
//! (the audit log is kept in Unix seconds; one zone for every reader avoids ambiguity). The
//! calendar arithmetic is the admin command line's (`staff::admin_cli::{rfc3339,
//! parse_since}`), so the console and the CSV export never disagree on a date.

use crate::staff::admin_cli::{parse_since, rfc3339};

const SECS_PER_DAY: i64 = 86_400;

/// `2026-11-29 20:15:03` for Unix seconds `secs`.
pub fn format_utc(secs: i64) -> String {
    rfc3339(secs)
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_owned()
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
    parse_since(&format!("{text}T00:00:00Z")).ok()
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

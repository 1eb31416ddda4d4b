//! The audit log as the admin's CSV download: the same columns and quoting as the command
//! line's `audit export --format csv` (`staff::admin_cli::csv_row`), CRLF line ends and a
//! byte order mark first, so spreadsheet programs read Hangul right.

use crate::staff::admin_cli::{csv_row, CSV_HEADER};
use crate::staff::audit::AuditRecord;

/// The UTF-8 byte order mark the file starts with.
pub const BOM: &str = "\u{feff}";

/// The whole file for `records`.
pub fn write(records: &[AuditRecord]) -> String {
    let mut out = String::from(BOM);
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for r in records {
        out.push_str(&csv_row(r));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staff::audit::{Actor, Outcome};

    #[test]
    fn one_line_per_entry_after_the_header() {
        let r = AuditRecord {
            id: 7,
            at: 0,
            actor: Actor::Staff {
                id: 1,
                username: "kim".into(),
            },
            action: "login".into(),
            target_kind: Some("session".into()),
            target_id: Some("=cmd".into()),
            outcome: Outcome::Success,
            client_ip: Some("127.0.0.1".parse().unwrap()),
            detail: Some(serde_json::json!({"a": 1})),
        };
        let csv = write(&[r]);
        let lines: Vec<&str> = csv.trim_start_matches(BOM).split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert!(lines[1].starts_with("7,0,"), "{}", lines[1]);
        assert!(lines[1].contains(",kim,login,session,'=cmd,success,127.0.0.1,"));
        assert!(lines[1].ends_with(",\"{\"\"a\"\":1}\""), "{}", lines[1]);
        assert_eq!(lines[2], "");
    }
}

//! The audit log as CSV, for the admin's download: one header line, one line per entry,
//! RFC 4180 quoting, and cells a spreadsheet would run as a formula defused.

use crate::console::dates;
use crate::staff::audit::{Actor, AuditRecord};

/// The header line's columns.
pub const COLUMNS: [&str; 10] = [
    "id",
    "time_utc",
    "actor_kind",
    "actor",
    "action",
    "target_kind",
    "target_id",
    "outcome",
    "client_ip",
    "detail",
];

/// A UTF-8 byte order mark first, so spreadsheet programs read Hangul right.
pub const BOM: &str = "\u{feff}";

/// The whole file for `records`.
pub fn write(records: &[AuditRecord]) -> String {
    let mut out = String::from(BOM);
    push_line(&mut out, COLUMNS.iter().map(|c| (*c).to_owned()));
    for r in records {
        let actor = match &r.actor {
            Actor::Staff { username, .. } => username.clone(),
            Actor::UnknownName | Actor::System => String::new(),
        };
        push_line(
            &mut out,
            [
                r.id.to_string(),
                dates::format_utc(r.at),
                r.actor.kind().to_owned(),
                actor,
                r.action.clone(),
                r.target_kind.clone().unwrap_or_default(),
                r.target_id.clone().unwrap_or_default(),
                r.outcome.as_str().to_owned(),
                r.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                r.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            ]
            .into_iter(),
        );
    }
    out
}

fn push_line(out: &mut String, cells: impl Iterator<Item = String>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&cell_text(&cell));
    }
    out.push_str("\r\n");
}

/// One cell: a leading `= + - @` (or tab, CR) gets a `'` so no spreadsheet evaluates it;
/// quoted when it holds a comma, quote or line break.
fn cell_text(cell: &str) -> String {
    let defused = match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::staff::audit::Outcome;

    #[test]
    fn quotes_and_defuses() {
        assert_eq!(cell_text("plain"), "plain");
        assert_eq!(cell_text("a,b"), "\"a,b\"");
        assert_eq!(cell_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell_text("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(cell_text("-1,2"), "\"'-1,2\"");
    }

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
            target_id: Some("3".into()),
            outcome: Outcome::Success,
            client_ip: Some("127.0.0.1".parse().unwrap()),
            detail: Some(serde_json::json!({"a": 1})),
        };
        let csv = write(&[r]);
        let lines: Vec<&str> = csv.trim_start_matches(BOM).split("\r\n").collect();
        assert_eq!(lines[0], COLUMNS.join(","));
        assert_eq!(
            lines[1],
            "7,1970-01-01 00:00:00,staff,kim,login,session,3,success,127.0.0.1,\"{\"\"a\"\":1}\""
        );
        assert_eq!(lines[2], "");
    }
}

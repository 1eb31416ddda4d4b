//! Recovery after the server refused a draft's changes: the draft is rewound to the server's
//! heads and its still-valid content replayed on top, as new changes the server will accept.
//! It works from the document's schema as data, field by field, for every kind.

use automerge::{Automerge, ChangeHash, ReadDoc};

use super::error::ClientError;
use crate::schema::{find_schema, read_kind, FieldValue, Schema, SCHEMAS};

/// Rewinds a refused draft to the server's heads and replays its still-valid content on top,
/// as new changes the server will accept. Heads the phone does not know yet are skipped; the
/// sync that follows brings them.
pub(crate) fn recover(
    doc: &Automerge,
    server_heads: &[ChangeHash],
) -> Result<Automerge, ClientError> {
    recover_among(SCHEMAS, doc, server_heads)
}

/// [`recover`] with the document kinds to know (tests add kinds of their own).
fn recover_among(
    schemas: &'static [&'static Schema],
    doc: &Automerge,
    server_heads: &[ChangeHash],
) -> Result<Automerge, ClientError> {
    let known: Vec<ChangeHash> = server_heads
        .iter()
        .copied()
        .filter(|h| doc.get_change_by_hash(h).is_some())
        .collect();
    // The kind is set once, when the draft is created: tampering with it later is refused by
    // the server, and the rewound base (or the first change) still names the real kind.
    let base = if known.is_empty() {
        None
    } else {
        Some(
            doc.fork_at(&known)
                .map_err(|e| ClientError::Internal(format!("cannot rewind draft: {e}")))?,
        )
    };
    let kind = match &base {
        Some(base) => read_kind(base)?,
        None => first_kind(doc)?,
    };
    let schema = find_schema(schemas, &kind)
        .ok_or_else(|| ClientError::Internal(format!("no schema for a \"{kind}\" draft")))?;
    // Field by field: a tampered field must not cost the valid ones, and a text over its limit
    // keeps what fits.
    let local: Vec<Option<FieldValue>> = schema
        .fields
        .iter()
        .map(|f| f.read(doc).ok().and_then(|v| f.fit(v)))
        .collect();
    let Some(mut base) = base else {
        // Nothing of this draft reached the server: start it again from its valid content.
        let value = |f: &crate::schema::Field| {
            let i = schema.fields.iter().position(|g| g.name == f.name)?;
            local[i].clone()
        };
        return Ok(schema.create(value)?);
    };
    for (field, mine) in schema.fields.iter().zip(local) {
        let Some(mine) = mine else { continue };
        // A field the server's copy does not hold as its schema says cannot be written to.
        match field.read(&base) {
            Ok(theirs) if theirs != mine => field.write(&mut base, &mine)?,
            _ => {}
        }
    }
    Ok(base)
}

/// The kind named by a draft's first change (the one that created it).
fn first_kind(doc: &Automerge) -> Result<String, ClientError> {
    let changes = doc.get_changes(&[]);
    let first = changes
        .first()
        .ok_or_else(|| ClientError::Internal("an empty draft cannot be recovered".into()))?;
    let mut created = Automerge::new();
    created
        .apply_changes([(*first).clone()])
        .map_err(|e| ClientError::Internal(format!("cannot read the draft's kind: {e}")))?;
    Ok(read_kind(&created)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::proposal::{self, ProposalEdit, TextField};
    use crate::schema::validate::check_changes_among;
    use crate::schema::{Field, FieldType};
    use automerge::transaction::Transactable;
    use automerge::ROOT;

    fn tamper(doc: &mut Automerge) {
        let mut tx = doc.transaction();
        tx.put(ROOT, "title", 42).unwrap();
        tx.put(ROOT, "extra", "x").unwrap();
        tx.commit();
    }

    fn changes_after(doc: &Automerge, heads: &[ChangeHash]) -> Vec<automerge::Change> {
        doc.get_changes(heads).into_iter().cloned().collect()
    }

    #[test]
    fn recovery_rewinds_to_the_server_and_replays_valid_fields() {
        let server = proposal::create("title", "body", "c").unwrap();
        let mut phone = server.fork();
        proposal::apply(
            &mut phone,
            &ProposalEdit::Splice {
                field: TextField::Body,
                pos: 4,
                delete: 0,
                insert: " kept".into(),
            },
        )
        .unwrap();
        tamper(&mut phone);
        let rebuilt = recover(&phone, &server.get_heads()).unwrap();
        let p = proposal::read(&rebuilt).unwrap();
        assert_eq!((p.title.as_str(), p.body.as_str()), ("title", "body kept"));
        // Only valid changes on top of the server's heads.
        let new = changes_after(&rebuilt, &server.get_heads());
        crate::schema::validate::check_changes(&server, &new).unwrap();
    }

    #[test]
    fn a_refused_new_draft_starts_again_from_its_valid_content() {
        let mut phone = proposal::create("title", "body", "c").unwrap();
        tamper(&mut phone);
        let rebuilt = recover(&phone, &[]).unwrap();
        let p = proposal::read(&rebuilt).unwrap();
        assert_eq!((p.title.as_str(), p.body.as_str()), ("", "body"));
        let all = changes_after(&rebuilt, &[]);
        crate::schema::validate::check_changes(&Automerge::new(), &all).unwrap();
    }

    #[test]
    fn a_body_over_its_limit_is_cut_to_fit() {
        let server = proposal::create("title", "body", "c").unwrap();
        let mut phone = server.fork();
        // Written around the typed API, as an older app or a merge could leave it.
        let body = proposal::TextField::Body.field().text_obj(&phone).unwrap();
        let mut tx = phone.transaction();
        tx.splice_text(&body, 4, 0, &"가".repeat(proposal::MAX_BODY_CHARS))
            .unwrap();
        tx.commit();
        let new = changes_after(&phone, &server.get_heads());
        let refused = crate::schema::validate::check_changes(&server, &new).unwrap_err();
        assert_eq!(refused.code, crate::schema::validate::codes::TOO_LONG);
        let rebuilt = recover(&phone, &server.get_heads()).unwrap();
        let p = proposal::read(&rebuilt).unwrap();
        assert_eq!(p.body.chars().count(), proposal::MAX_BODY_CHARS);
        assert!(p.body.starts_with("body가"));
        let new = changes_after(&rebuilt, &server.get_heads());
        crate::schema::validate::check_changes(&server, &new).unwrap();
        crate::schema::validate::check_limits(&rebuilt).unwrap();
    }

    /// A kind that exists only here, so that recovery cannot be proposal code in disguise:
    /// two texts and two strings, with small limits.
    static NOTE: Schema = Schema {
        kind: "test-note",
        fields: &[
            Field {
                name: "tag",
                ty: FieldType::Str { max_bytes: 8 },
            },
            Field {
                name: "heading",
                ty: FieldType::Text { max_chars: 10 },
            },
            Field {
                name: "lang",
                ty: FieldType::Str { max_bytes: 2 },
            },
            Field {
                name: "text",
                ty: FieldType::Text { max_chars: 50 },
            },
        ],
    };
    static KINDS: &[&Schema] = &[&NOTE, &proposal::SCHEMA];

    fn note(doc: &Automerge) -> Vec<FieldValue> {
        NOTE.fields.iter().map(|f| f.read(doc).unwrap()).collect()
    }

    fn text(s: &str) -> FieldValue {
        FieldValue::Text(s.into())
    }

    fn str(s: &str) -> FieldValue {
        FieldValue::Str(s.into())
    }

    /// Local edits of every kind: valid ones, a string too long, a text too long, a field of
    /// the wrong type and an unknown field.
    fn edit_note(phone: &mut Automerge) {
        NOTE.fields[1].write(phone, &text("Hello")).unwrap();
        let heading = NOTE.fields[1].text_obj(phone).unwrap();
        let body = NOTE.fields[3].text_obj(phone).unwrap();
        let mut tx = phone.transaction();
        tx.put(ROOT, "tag", "far-too-long").unwrap();
        tx.put(ROOT, "lang", 7).unwrap();
        tx.splice_text(&heading, 5, 0, ", world and more").unwrap();
        tx.splice_text(&body, 0, 0, "kept").unwrap();
        tx.put(ROOT, "extra", "x").unwrap();
        tx.commit();
    }

    #[test]
    fn recovery_works_from_the_schema_for_any_kind() {
        let server = NOTE
            .create(|f| (f.name == "lang").then(|| str("ko")))
            .unwrap();
        let mut phone = server.fork();
        edit_note(&mut phone);
        let new = changes_after(&phone, &server.get_heads());
        assert!(check_changes_among(KINDS, &server, &new).is_err());

        let rebuilt = recover_among(KINDS, &phone, &server.get_heads()).unwrap();
        assert_eq!(
            note(&rebuilt),
            vec![str(""), text("Hello, wor"), str("ko"), text("kept")]
        );
        let new = changes_after(&rebuilt, &server.get_heads());
        check_changes_among(KINDS, &server, &new).unwrap();
        crate::schema::validate::check_limits_among(KINDS, &rebuilt).unwrap();

        // Never synced: started again from the valid content, in one valid first change.
        let mut fresh = NOTE.create(|_| None).unwrap();
        edit_note(&mut fresh);
        let rebuilt = recover_among(KINDS, &fresh, &[]).unwrap();
        assert_eq!(
            note(&rebuilt),
            vec![str(""), text("Hello, wor"), str(""), text("kept")]
        );
        let all = changes_after(&rebuilt, &[]);
        check_changes_among(KINDS, &Automerge::new(), &all).unwrap();
    }

    /// Every kind Sotong knows recovers the same way: a valid value in every field, then
    /// tampering, then recovery that keeps the values and passes the server's check.
    #[test]
    fn every_known_kind_recovers() {
        for schema in SCHEMAS {
            let value = |f: &crate::schema::Field| match f.ty {
                FieldType::Text { .. } => text("kept text"),
                FieldType::Str { .. } => str("kept"),
            };
            let server = schema.create(|_| None).unwrap();
            let mut phone = server.fork();
            for field in schema.fields {
                field.write(&mut phone, &value(field)).unwrap();
            }
            let mut tx = phone.transaction();
            tx.put(ROOT, "not-a-field", 1).unwrap();
            tx.commit();
            let rebuilt = recover(&phone, &server.get_heads()).unwrap();
            for field in schema.fields {
                assert_eq!(
                    field.read(&rebuilt).unwrap(),
                    value(field),
                    "{}",
                    schema.kind
                );
            }
            let new = changes_after(&rebuilt, &server.get_heads());
            crate::schema::validate::check_changes(&server, &new).unwrap();
        }
    }
}

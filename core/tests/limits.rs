//! The body limit through the public API, as the issue states it: a body of 30,001
//! characters is refused by the core, and, if forced around the typed API, by the server's
//! checks (before applying, and on the applied result), each with the code `too_long`.

use sotong_core::automerge::transaction::Transactable;
use sotong_core::automerge::{Automerge, ReadDoc, ROOT};
use sotong_core::schema::proposal::{self, ProposalEdit, TextField, MAX_BODY_CHARS};
use sotong_core::schema::validate::{check_changes, check_limits, codes};
use sotong_core::schema::{schema_for, SchemaError};

#[test]
fn a_body_of_30001_characters_is_refused_by_the_core_and_the_server_check() {
    let body_limit = schema_for("proposal")
        .and_then(|s| s.field("body"))
        .and_then(|f| f.max_chars());
    assert_eq!(body_limit, Some(MAX_BODY_CHARS));

    let too_long = "가".repeat(MAX_BODY_CHARS + 1);
    assert_eq!(
        proposal::create("t", &too_long, "c").unwrap_err(),
        SchemaError::TooManyCharacters {
            field: "body",
            max_chars: MAX_BODY_CHARS
        }
    );
    let server = proposal::create("t", "", "c").unwrap();
    let mut phone = server.fork();
    let edit = ProposalEdit::Replace {
        field: TextField::Body,
        text: too_long.clone(),
    };
    assert!(proposal::apply(&mut phone, &edit).is_err());
    assert_eq!(phone.get_heads(), server.get_heads());

    // Forced: written with automerge directly, as a modified client could.
    let (_, body) = phone.get(ROOT, "body").unwrap().unwrap();
    let mut tx = phone.transaction();
    tx.splice_text(&body, 0, 0, &too_long).unwrap();
    tx.commit();
    let batch: Vec<_> = phone
        .get_changes(&server.get_heads())
        .into_iter()
        .cloned()
        .collect();
    let refused = check_changes(&server, &batch).unwrap_err();
    assert_eq!(refused.code, codes::TOO_LONG);
    assert!(refused.message.contains("\"body\""));
    let mut applied: Automerge = server.fork();
    applied.apply_changes(batch).unwrap();
    assert_eq!(check_limits(&applied).unwrap_err().code, codes::TOO_LONG);
}

//! Recovery after the server refused a draft's changes: the draft is rewound to the server's
//! heads and its still-valid content replayed on top, as new changes the server will accept.

use automerge::{Automerge, ChangeHash, ReadDoc};

use super::error::ClientError;
use crate::schema::proposal::{self, ProposalEdit, TextField};

/// Rewinds a refused draft to the server's heads and replays its still-valid content on top,
/// as new changes the server will accept. Heads the phone does not know yet are skipped; the
/// sync that follows brings them.
pub(crate) fn recover(
    doc: &Automerge,
    server_heads: &[ChangeHash],
) -> Result<Automerge, ClientError> {
    let known: Vec<ChangeHash> = server_heads
        .iter()
        .copied()
        .filter(|h| doc.get_change_by_hash(h).is_some())
        .collect();
    // Field by field: a tampered field must not cost the valid ones.
    let local = proposal::read_fields(doc);
    let category = local
        .category
        .filter(|c| c.len() <= proposal::MAX_CATEGORY_BYTES);
    if known.is_empty() {
        // Nothing of this draft reached the server: start it again from its valid content.
        return Ok(proposal::create(
            local.title.as_deref().unwrap_or_default(),
            local.body.as_deref().unwrap_or_default(),
            category.as_deref().unwrap_or_default(),
        )?);
    }
    let mut base = doc
        .fork_at(&known)
        .map_err(|e| ClientError::Internal(format!("cannot rewind draft: {e}")))?;
    let server = proposal::read_fields(&base);
    let replays = [
        (local.title, server.title, TextField::Title),
        (local.body, server.body, TextField::Body),
    ];
    for (mine, theirs, field) in replays {
        if let (Some(text), Some(theirs)) = (mine, theirs) {
            if text != theirs {
                proposal::apply(&mut base, &ProposalEdit::Replace { field, text })?;
            }
        }
    }
    if let Some(c) = category.filter(|c| Some(c) != server.category.as_ref()) {
        proposal::apply(&mut base, &ProposalEdit::SetCategory(c))?;
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::ROOT;

    fn tamper(doc: &mut Automerge) {
        let mut tx = doc.transaction();
        tx.put(ROOT, "title", 42).unwrap();
        tx.put(ROOT, "extra", "x").unwrap();
        tx.commit();
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
        let new: Vec<_> = rebuilt
            .get_changes(&server.get_heads())
            .into_iter()
            .cloned()
            .collect();
        crate::schema::validate::check_changes(&server, &new).unwrap();
    }

    #[test]
    fn a_refused_new_draft_starts_again_from_its_valid_content() {
        let mut phone = proposal::create("title", "body", "c").unwrap();
        tamper(&mut phone);
        let rebuilt = recover(&phone, &[]).unwrap();
        let p = proposal::read(&rebuilt).unwrap();
        assert_eq!((p.title.as_str(), p.body.as_str()), ("", "body"));
        let all: Vec<_> = rebuilt.get_changes(&[]).into_iter().cloned().collect();
        crate::schema::validate::check_changes(&Automerge::new(), &all).unwrap();
    }
}

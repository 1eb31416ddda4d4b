//! The server's check of incoming changes, run on the operations of every change before any
//! of them is applied. Checking operations rather than the resulting document matters: "add an
//! unknown key, then delete it" leaves a valid document but a bad operation in history.
//!
//! Text limits are checked twice: [`check_changes`] refuses a batch whose own insertions
//! already take a text past its limit (cheap, before anything is applied), and
//! [`check_limits`] checks the document after the batch was applied in memory, which also
//! catches concurrent edits that are each within the limit but not together.

use std::collections::HashMap;
use std::mem::discriminant;
use std::rc::Rc;
use std::sync::OnceLock;

use automerge::{Automerge, Change, ObjType, ReadDoc, ScalarValue, Value, ROOT};

use super::{find_schema, Field, FieldType, Schema, KIND_FIELD, SCHEMAS};

/// Why a batch of changes was refused. The text is shown to the citizen and logged; it holds
/// no document content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    /// A stable code a client can act on (one of [`codes`]).
    pub code: &'static str,
    /// What was wrong, for humans.
    pub message: String,
}

/// The codes a [`Rejection`] (and the wire's `sotong-rejected`) carries.
pub mod codes {
    /// A change breaks the document's schema (unknown field, wrong type, …).
    pub const INVALID_CHANGE: &str = "invalid_change";
    /// The changes could not be read at all.
    pub const UNREADABLE: &str = "unreadable_change";
    /// A field would be longer than its schema allows (text in characters, strings in bytes).
    pub const TOO_LONG: &str = "too_long";
    /// The changes are too large to take in at once (they inflate past the server's cap, or
    /// hold too many operations); see `changes::decode`.
    pub const TOO_LARGE: &str = "too_large";
}

/// What an operation does, as far as schemas care.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    MakeText,
    MakeOther,
    PutStr(String),
    /// A string put inside an object (a text's characters): only its length in characters
    /// matters, so the string itself is not copied.
    PutChars(usize),
    PutOther,
    Delete,
    Mark,
    Other,
}

/// One operation of a change, reduced to what the check needs.
#[derive(Debug)]
struct Op {
    action: Action,
    /// `None` for the root map, else the object's id as `counter@actor` (shared by the
    /// operations on one object: a text's characters are thousands of operations).
    obj: Option<Rc<str>>,
    /// The map key, for operations on a map.
    key: Option<String>,
    insert: bool,
}

impl Op {
    fn str_value(&self) -> Option<&str> {
        match &self.action {
            Action::PutStr(s) => Some(s),
            _ => None,
        }
    }
}

/// automerge 0.6 exposes a change's operations only through types it does not export by name
/// (`ExpandedChange::operations`). Their variants are told apart by comparing discriminants with
/// those of a reference change made once, which avoids a serde round trip per operation (the
/// check's main cost on large uploads).
struct Reference {
    change: automerge::ExpandedChange,
    root_put: usize,
    make: usize,
    delete: usize,
    mark_begin: usize,
    mark_end: usize,
}

fn reference() -> Option<&'static Reference> {
    static REFERENCE: OnceLock<Option<Reference>> = OnceLock::new();
    REFERENCE.get_or_init(build_reference).as_ref()
}

fn build_reference() -> Option<Reference> {
    use automerge::marks::{ExpandMark, Mark};
    use automerge::transaction::Transactable;
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, "s", "v").ok()?;
    let t = tx.put_object(ROOT, "t", ObjType::Text).ok()?;
    tx.splice_text(&t, 0, 0, "ab").ok()?;
    tx.delete(&t, 0).ok()?;
    tx.mark(&t, Mark::new("m".into(), true, 0, 1), ExpandMark::None)
        .ok()?;
    tx.commit();
    let change = doc.get_last_local_change()?.decode();
    let ops = &change.operations;
    let find = |f: &dyn Fn(usize) -> bool| (0..ops.len()).find(|i| f(*i));
    let root_put = find(&|i| ops[i].primitive_value() == Some(ScalarValue::from("v")))?;
    let make = find(&|i| ops[i].obj_type() == Some(ObjType::Text))?;
    let mark_begin = find(&|i| ops[i].primitive_value() == Some(ScalarValue::Boolean(true)))?;
    let bare = |i: usize| ops[i].primitive_value().is_none() && ops[i].obj_type().is_none();
    let delete = find(&|i| bare(i) && !ops[i].pred.is_empty())?;
    let mark_end = find(&|i| bare(i) && ops[i].pred.is_empty())?;
    Some(Reference {
        root_put,
        make,
        delete,
        mark_begin,
        mark_end,
        change,
    })
}

/// Reduces every operation of `change` to an [`Op`].
fn ops_of(change: &Change) -> Result<Vec<Op>, Rejection> {
    let Some(r) = reference() else {
        return reject("the server cannot check changes right now");
    };
    let reference_ops = &r.change.operations;
    let kind = |i: usize| discriminant(&reference_ops[i].action);
    let root = discriminant(&reference_ops[r.root_put].obj);
    // automerge 0.6.1 panics expanding some malformed changes that parse (an operation naming
    // an actor the change does not list): a bad change must be refused, never crash the check.
    let Ok(expanded) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
    else {
        return unreadable("a change could not be read");
    };
    let mut out = Vec::with_capacity(expanded.operations.len());
    // Consecutive operations mostly touch the same object: format its id once.
    let mut last = None;
    for op in &expanded.operations {
        let d = discriminant(&op.action);
        let is_root = discriminant(&op.obj) == root;
        let action = if d == kind(r.root_put) {
            match op.primitive_value() {
                Some(ScalarValue::Str(s)) if is_root => Action::PutStr(s.to_string()),
                Some(ScalarValue::Str(s)) => Action::PutChars(s.chars().count()),
                _ => Action::PutOther,
            }
        } else if d == kind(r.make) {
            if op.obj_type() == Some(ObjType::Text) {
                Action::MakeText
            } else {
                Action::MakeOther
            }
        } else if d == kind(r.delete) {
            Action::Delete
        } else if d == kind(r.mark_begin) || d == kind(r.mark_end) {
            Action::Mark
        } else {
            Action::Other
        };
        let obj = if is_root {
            None
        } else {
            match &last {
                Some((o, id)) if *o == &op.obj => Some(Rc::clone(id)),
                _ => {
                    let id: Rc<str> = op.obj.to_string().into();
                    last = Some((&op.obj, id.clone()));
                    Some(id)
                }
            }
        };
        let key = if op.key.is_map_key() {
            match serde_json::to_value(&op.key) {
                Ok(serde_json::Value::String(k)) => Some(k),
                _ => return unreadable("a change could not be read"),
            }
        } else {
            None
        };
        out.push(Op {
            action,
            obj,
            key,
            insert: op.insert,
        });
    }
    Ok(out)
}

/// An operation id in legacy form, `counter@actor`.
type OpId = String;

fn reject<T>(msg: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection {
        code: codes::INVALID_CHANGE,
        message: msg.into(),
    })
}

fn unreadable<T>(msg: &str) -> Result<T, Rejection> {
    Err(Rejection {
        code: codes::UNREADABLE,
        message: msg.into(),
    })
}

fn too_long<T>(field: &Field) -> Result<T, Rejection> {
    let message = match field.ty {
        FieldType::Text { max_chars } => {
            format!(
                "field \"{}\" is longer than {max_chars} characters",
                field.name
            )
        }
        FieldType::Str { max_bytes } => {
            format!("field \"{}\" is longer than {max_bytes} bytes", field.name)
        }
    };
    Err(Rejection {
        code: codes::TOO_LONG,
        message,
    })
}

/// A text object of the document and how the batch changes its length.
struct TextState {
    field: &'static Field,
    /// Its length in characters before the batch.
    len_before: usize,
    /// Characters inserted minus characters deleted by the batch so far. A delete removes at
    /// most one visible character, so `len_before + growth` never exceeds the final length:
    /// refusing on it never refuses a batch that fits.
    growth: i64,
}

/// What is known about a document before a batch: its kind and the objects its fields hold.
struct DocState {
    schemas: &'static [&'static Schema],
    schema: Option<&'static Schema>,
    /// Root fields that already hold a value.
    present: Vec<String>,
    /// Text objects, by id.
    texts: HashMap<OpId, TextState>,
}

impl DocState {
    fn of(schemas: &'static [&'static Schema], doc: &Automerge) -> Result<Self, Rejection> {
        let mut state = DocState {
            schemas,
            schema: None,
            present: Vec::new(),
            texts: HashMap::new(),
        };
        for key in doc.keys(ROOT) {
            state.present.push(key);
        }
        if let Ok(Some((Value::Scalar(v), _))) = doc.get(ROOT, KIND_FIELD) {
            if let ScalarValue::Str(kind) = v.as_ref() {
                state.schema = find_schema(schemas, kind);
            }
        }
        if let Some(schema) = state.schema {
            for field in schema.fields.iter().filter(|f| f.is_text()) {
                // Every conflicting value, so that edits to either side of a conflict pass.
                for (value, id) in doc.get_all(ROOT, field.name).unwrap_or_default() {
                    if let (Value::Object(ObjType::Text), automerge::ObjId::Id(ctr, actor, _)) =
                        (value, &id)
                    {
                        state.texts.insert(
                            format!("{ctr}@{actor}"),
                            TextState {
                                field,
                                len_before: doc.length(&id),
                                growth: 0,
                            },
                        );
                    }
                }
            }
        } else if !state.present.is_empty() {
            return reject("the stored document has no known type");
        }
        Ok(state)
    }
}

/// Checks that `changes`, applied in order to `doc`, keep it a valid document of its kind
/// (or, for an empty document, create a valid one). Changes `doc` already holds are skipped.
/// Returns the document's schema, `None` only for a document that stays empty.
///
/// A batch whose insertions alone take a text past its limit is refused with
/// [`codes::TOO_LONG`]; the server still runs [`check_limits`] on the result.
pub fn check_changes(
    doc: &Automerge,
    changes: &[Change],
) -> Result<Option<&'static Schema>, Rejection> {
    check_changes_among(SCHEMAS, doc, changes)
}

/// [`check_changes`] with the document kinds to know (tests add kinds of their own).
pub(crate) fn check_changes_among(
    schemas: &'static [&'static Schema],
    doc: &Automerge,
    changes: &[Change],
) -> Result<Option<&'static Schema>, Rejection> {
    let mut state = DocState::of(schemas, doc)?;
    for change in changes {
        if doc.get_change_by_hash(&change.hash()).is_some() {
            continue;
        }
        check_change(&mut state, change)?;
    }
    for text in state.texts.values() {
        let max = text.field.max_chars().unwrap_or(usize::MAX);
        if text.len_before as i64 + text.growth > max as i64 {
            return too_long(text.field);
        }
    }
    Ok(state.schema)
}

/// Checks that `doc` (typically after applying a batch in memory, before storing it) is
/// within its schema's limits: every text (each side of a conflict included) in characters,
/// every string in bytes. A document over a limit is refused with [`codes::TOO_LONG`]; an
/// empty document passes, one of an unknown kind is refused as [`codes::INVALID_CHANGE`].
pub fn check_limits(doc: &Automerge) -> Result<(), Rejection> {
    check_limits_among(SCHEMAS, doc)
}

/// [`check_limits`] with the document kinds to know.
pub(crate) fn check_limits_among(
    schemas: &'static [&'static Schema],
    doc: &Automerge,
) -> Result<(), Rejection> {
    let kind = match doc.get(ROOT, KIND_FIELD) {
        Ok(Some((Value::Scalar(v), _))) => match v.as_ref() {
            ScalarValue::Str(kind) => kind.to_string(),
            _ => return reject("the document type must be a string"),
        },
        Ok(_) if doc.keys(ROOT).next().is_none() => return Ok(()),
        _ => return reject("the document has no type"),
    };
    let Some(schema) = find_schema(schemas, &kind) else {
        return reject(format!("unknown document type \"{kind}\""));
    };
    for field in schema.fields {
        for (value, id) in doc.get_all(ROOT, field.name).unwrap_or_default() {
            let over = match (field.ty, value) {
                (FieldType::Text { max_chars }, Value::Object(ObjType::Text)) => {
                    doc.length(&id) > max_chars
                }
                (FieldType::Str { max_bytes }, Value::Scalar(v)) => match v.as_ref() {
                    ScalarValue::Str(s) => s.len() > max_bytes,
                    _ => false,
                },
                _ => false,
            };
            if over {
                return too_long(field);
            }
        }
    }
    Ok(())
}

fn check_change(state: &mut DocState, change: &Change) -> Result<(), Rejection> {
    let ops = ops_of(change)?;
    if state.schema.is_none() {
        // The first change must name the kind.
        let kind = ops
            .iter()
            .find(|op| op.obj.is_none() && op.key.as_deref() == Some(KIND_FIELD))
            .and_then(Op::str_value);
        match kind {
            Some(kind) => match find_schema(state.schemas, kind) {
                Some(s) => state.schema = Some(s),
                None => return reject(format!("unknown document type \"{kind}\"")),
            },
            None => return reject("a new document must first set its \"type\""),
        }
    }
    let Some(schema) = state.schema else {
        return reject("document has no type");
    };
    let start = change.start_op().get();
    let actor = change.actor_id();
    for (i, op) in ops.iter().enumerate() {
        let Some(obj) = &op.obj else {
            let id = format!("{}@{actor}", start + i as u64);
            check_root_op(state, schema, id, op)?;
            continue;
        };
        let Some(text) = state.texts.get_mut(&**obj) else {
            return reject(format!(
                "operation on an object that is not part of this {}",
                schema.kind
            ));
        };
        text.growth += check_text_op(text.field.name, op)?;
    }
    Ok(())
}

fn check_root_op(
    state: &mut DocState,
    schema: &'static Schema,
    id: OpId,
    op: &Op,
) -> Result<(), Rejection> {
    let (Some(key), false) = (op.key.as_deref(), op.insert) else {
        return reject("the document root is a map");
    };
    let present = state.present.iter().any(|k| k == key);
    if key == KIND_FIELD {
        return match op.str_value() {
            Some(s) if !present && s == schema.kind => {
                state.present.push(key.to_owned());
                Ok(())
            }
            _ => reject("the document type cannot be changed"),
        };
    }
    let Some(field) = schema.field(key) else {
        return reject(format!("unknown field \"{key}\" in a {}", schema.kind));
    };
    match (field.ty, &op.action) {
        (_, Action::Delete) => reject(format!("field \"{}\" cannot be deleted", field.name)),
        (FieldType::Text { .. }, Action::MakeText) => {
            if present {
                return reject(format!("field \"{}\" already exists", field.name));
            }
            state.present.push(key.to_owned());
            state.texts.insert(
                id,
                TextState {
                    field,
                    len_before: 0,
                    growth: 0,
                },
            );
            Ok(())
        }
        (FieldType::Text { .. }, _) => reject(format!("field \"{}\" must be text", field.name)),
        (FieldType::Str { max_bytes }, _) => match op.str_value() {
            Some(s) if s.len() > max_bytes => too_long(field),
            Some(_) => {
                if !present {
                    state.present.push(key.to_owned());
                }
                Ok(())
            }
            None => reject(format!("field \"{}\" must be a string", field.name)),
        },
    }
}

/// Checks one operation inside a text; returns how it changes the text's length at most.
fn check_text_op(field: &str, op: &Op) -> Result<i64, Rejection> {
    if op.key.is_some() {
        return reject(format!("field \"{field}\" is text, not a map"));
    }
    match op.action {
        Action::Delete => Ok(-1),
        // Foreign clients may insert several characters as one element.
        Action::PutStr(ref s) if op.insert => Ok(s.chars().count() as i64),
        Action::PutChars(n) if op.insert => Ok(n as i64),
        Action::PutStr(_) | Action::PutChars(_) => Ok(0),
        Action::Mark => reject(format!(
            "field \"{field}\" is plain text: marks are not allowed"
        )),
        _ => reject(format!("field \"{field}\" may hold only characters")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::proposal::{self, ProposalEdit, TextField};
    use automerge::transaction::Transactable;

    fn new_changes(base: &Automerge, edited: &Automerge) -> Vec<Change> {
        edited
            .get_changes(&base.get_heads())
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn the_reference_change_tells_every_action_apart() {
        let r = reference().expect("reference change");
        let ops = &r.change.operations;
        let kinds = [r.root_put, r.make, r.delete, r.mark_begin, r.mark_end];
        for (i, a) in kinds.iter().enumerate() {
            for b in &kinds[i + 1..] {
                if !(*a == r.mark_begin && *b == r.mark_end) {
                    assert_ne!(discriminant(&ops[*a].action), discriminant(&ops[*b].action));
                }
            }
        }
        assert_eq!(ops[r.make].obj_type(), Some(ObjType::Text));
    }

    #[test]
    fn marks_and_counters_in_text_are_refused() {
        use automerge::marks::{ExpandMark, Mark};
        let doc = proposal::create("title", "body", "c").unwrap();
        let body = doc.get(ROOT, "body").unwrap().unwrap().1;
        assert!(rejected(&doc, |tx| {
            tx.mark(
                &body,
                Mark::new("bold".into(), true, 0, 2),
                ExpandMark::None,
            )
            .unwrap();
        })
        .contains("marks are not allowed"));
        assert!(rejected(&doc, |tx| {
            tx.insert(&body, 0, 5).unwrap();
        })
        .contains("only characters"));
        assert!(rejected(&doc, |tx| {
            tx.put(ROOT, "category", automerge::ScalarValue::counter(1))
                .unwrap();
        })
        .contains("must be a string"));
    }

    #[test]
    fn creating_and_editing_a_proposal_passes() {
        let empty = Automerge::new();
        let doc = proposal::create("t", "b", "c").unwrap();
        let schema = check_changes(&empty, &new_changes(&empty, &doc)).unwrap();
        assert_eq!(schema.map(|s| s.kind), Some("proposal"));
        let mut edited = doc.fork();
        proposal::apply(
            &mut edited,
            &ProposalEdit::Splice {
                field: TextField::Body,
                pos: 0,
                delete: 1,
                insert: "body".into(),
            },
        )
        .unwrap();
        proposal::apply(&mut edited, &ProposalEdit::SetCategory("x".into())).unwrap();
        check_changes(&doc, &new_changes(&doc, &edited)).unwrap();
    }

    fn rejected(
        doc: &Automerge,
        f: impl FnOnce(&mut automerge::transaction::Transaction),
    ) -> String {
        let mut edited = doc.fork();
        let mut tx = edited.transaction();
        f(&mut tx);
        tx.commit();
        check_changes(doc, &new_changes(doc, &edited))
            .unwrap_err()
            .message
    }

    #[test]
    fn invalid_changes_are_refused_with_a_reason() {
        let doc = proposal::create("t", "b", "c").unwrap();
        let title = doc.get(ROOT, "title").unwrap().unwrap().1;
        assert!(rejected(&doc, |tx| {
            tx.put(ROOT, "title", 5).unwrap();
        })
        .contains("\"title\" must be text"));
        assert!(rejected(&doc, |tx| {
            tx.put(ROOT, "extra", "x").unwrap();
        })
        .contains("unknown field \"extra\""));
        // Added then removed in one change: the result is valid, the history is not.
        assert!(rejected(&doc, |tx| {
            tx.put(ROOT, "extra", "x").unwrap();
            tx.delete(ROOT, "extra").unwrap();
        })
        .contains("unknown field"));
        assert!(rejected(&doc, |tx| {
            tx.delete(ROOT, "body").unwrap();
        })
        .contains("cannot be deleted"));
        assert!(rejected(&doc, |tx| {
            tx.put(ROOT, "type", "other").unwrap();
        })
        .contains("type cannot be changed"));
        assert!(rejected(&doc, |tx| {
            tx.put_object(ROOT, "title", ObjType::Text).unwrap();
        })
        .contains("already exists"));
        assert!(rejected(&doc, |tx| {
            tx.insert_object(&title, 0, ObjType::Map).unwrap();
        })
        .contains("only characters"));
        assert!(rejected(&doc, |tx| {
            tx.put(ROOT, "category", "x".repeat(100)).unwrap();
        })
        .contains("longer than"));
    }

    #[test]
    fn a_new_document_must_name_a_known_type() {
        let empty = Automerge::new();
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "title", "x").unwrap();
        tx.commit();
        assert!(check_changes(&empty, &new_changes(&empty, &doc))
            .unwrap_err()
            .message
            .contains("first set its \"type\""));
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "type", "spaceship").unwrap();
        tx.commit();
        assert!(check_changes(&empty, &new_changes(&empty, &doc))
            .unwrap_err()
            .message
            .contains("unknown document type"));
    }

    /// A body longer than its limit, written around the typed API as a foreign client could.
    fn with_body_chars(doc: &Automerge, chars: usize) -> Automerge {
        let mut edited = doc.fork();
        let body = TextField::Body.field().text_obj(&edited).unwrap();
        let len = edited.length(&body);
        let mut tx = edited.transaction();
        tx.splice_text(&body, len, 0, &"x".repeat(chars - len))
            .unwrap();
        tx.commit();
        edited
    }

    #[test]
    fn a_batch_inserting_past_a_limit_is_refused_before_it_is_applied() {
        let doc = proposal::create("t", "b", "c").unwrap();
        let over = with_body_chars(&doc, proposal::MAX_BODY_CHARS + 1);
        let refused = check_changes(&doc, &new_changes(&doc, &over)).unwrap_err();
        assert_eq!(refused.code, codes::TOO_LONG);
        assert_eq!(
            refused.message,
            "field \"body\" is longer than 30000 characters"
        );
        let at_limit = with_body_chars(&doc, proposal::MAX_BODY_CHARS);
        check_changes(&doc, &new_changes(&doc, &at_limit)).unwrap();
        // A whole history counts what it leaves, not what it ever typed: write 30,000
        // characters, delete them, write 30,000 again.
        let empty = Automerge::new();
        let mut history = proposal::create("t", "", "c").unwrap();
        for (delete, text) in [(0, "a"), (proposal::MAX_BODY_CHARS, "b")] {
            proposal::apply(
                &mut history,
                &ProposalEdit::Splice {
                    field: TextField::Body,
                    pos: 0,
                    delete,
                    insert: text.repeat(proposal::MAX_BODY_CHARS),
                },
            )
            .unwrap();
        }
        check_changes(&empty, &new_changes(&empty, &history)).unwrap();
        // A new document over the limit in its first change.
        let mut new_doc = Automerge::new();
        let mut tx = new_doc.transaction();
        tx.put(ROOT, "type", "proposal").unwrap();
        let title = tx.put_object(ROOT, "title", ObjType::Text).unwrap();
        tx.splice_text(&title, 0, 0, &"가".repeat(201)).unwrap();
        tx.commit();
        let refused = check_changes(&empty, &new_changes(&empty, &new_doc)).unwrap_err();
        assert_eq!(refused.code, codes::TOO_LONG);
        assert!(refused.message.contains("\"title\""));
    }

    #[test]
    fn concurrent_edits_within_the_limit_are_caught_on_the_result() {
        let max = proposal::MAX_BODY_CHARS;
        let base = with_body_chars(&proposal::create("t", "", "c").unwrap(), 20_000);
        let splice = |doc: &Automerge, insert: usize| {
            let mut doc = doc.fork().with_actor(automerge::ActorId::random());
            let edit = ProposalEdit::Splice {
                field: TextField::Body,
                pos: 0,
                delete: 5_000,
                insert: "y".repeat(insert),
            };
            proposal::apply(&mut doc, &edit).unwrap();
            doc
        };
        // Both delete the same 5,000 characters and insert 10,000: 25,000 each.
        let a = splice(&base, 10_000);
        let b = splice(&base, 10_000);
        let mut server = a.clone();
        // B's batch passes the check on its own (25,000 + 10,000 - 5,000 = 30,000)...
        check_changes(&server, &new_changes(&base, &b)).unwrap();
        server.apply_changes(new_changes(&base, &b)).unwrap();
        // ...but the deletes overlap, so the result holds 35,000: the server drops it
        // instead of storing it.
        let body = TextField::Body.field().text_obj(&server).unwrap();
        assert_eq!(server.length(&body), max + 5_000);
        let refused = check_limits(&server).unwrap_err();
        assert_eq!(refused.code, codes::TOO_LONG);
        assert!(refused.message.contains("\"body\""));
    }

    #[test]
    fn check_limits_reads_every_field_of_the_schema() {
        check_limits(&Automerge::new()).unwrap();
        check_limits(&proposal::create("t", "b", "c").unwrap()).unwrap();
        let mut doc = proposal::create("t", "b", "c").unwrap();
        let title = TextField::Title.field().text_obj(&doc).unwrap();
        let mut tx = doc.transaction();
        tx.splice_text(&title, 0, 0, &"x".repeat(200)).unwrap();
        tx.commit();
        assert!(check_limits(&doc).unwrap_err().message.contains("title"));
        let mut doc = proposal::create("t", "b", "c").unwrap();
        let mut tx = doc.transaction();
        tx.put(ROOT, "category", "x".repeat(65)).unwrap();
        tx.commit();
        let refused = check_limits(&doc).unwrap_err();
        assert_eq!(
            (refused.code, refused.message.as_str()),
            (
                codes::TOO_LONG,
                "field \"category\" is longer than 64 bytes"
            )
        );
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "type", "spaceship").unwrap();
        tx.commit();
        assert_eq!(check_limits(&doc).unwrap_err().code, codes::INVALID_CHANGE);
    }

    #[test]
    fn every_refusal_carries_a_known_code() {
        let doc = proposal::create("t", "b", "c").unwrap();
        let mut edited = doc.fork();
        let mut tx = edited.transaction();
        tx.put(ROOT, "extra", "x").unwrap();
        tx.commit();
        let refused = check_changes(&doc, &new_changes(&doc, &edited)).unwrap_err();
        assert_eq!(refused.code, codes::INVALID_CHANGE);
        let mut edited = doc.fork();
        let mut tx = edited.transaction();
        tx.put(ROOT, "category", "x".repeat(65)).unwrap();
        tx.commit();
        let refused = check_changes(&doc, &new_changes(&doc, &edited)).unwrap_err();
        assert_eq!(refused.code, codes::TOO_LONG);
    }

    /// A kind with a small limit, so that random histories cross it often and quickly.
    static SHORT: Schema = Schema {
        kind: "test-short",
        fields: &[Field {
            name: "text",
            ty: FieldType::Text { max_chars: 12 },
        }],
    };
    static SHORT_KINDS: &[&Schema] = &[&SHORT];

    /// Random splices by two devices, with random syncs between them: whenever the batch check
    /// refuses with `too_long`, the result really is over the limit (it never refuses what
    /// fits), and `check_limits` on the result agrees with its real length. Seeded.
    #[test]
    fn property_the_batch_check_never_refuses_what_fits() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let field = &SHORT.fields[0];
        let (mut refused, mut over) = (0, 0);
        for _ in 0..150 {
            let server = SHORT.create(|_| None).unwrap();
            let mut devices = [
                server.fork().with_actor(automerge::ActorId::random()),
                server.fork().with_actor(automerge::ActorId::random()),
            ];
            for _ in 0..rng.gen_range(1..6) {
                let d = &mut devices[rng.gen_range(0..2)];
                let obj = field.text_obj(d).unwrap();
                let len = d.length(&obj);
                let pos = rng.gen_range(0..=len);
                let del = rng.gen_range(0..=(len - pos).min(4)) as isize;
                let n = rng.gen_range(0..8);
                let mut tx = d.transaction();
                tx.splice_text(&obj, pos, del, &"z".repeat(n)).unwrap();
                tx.commit();
                if rng.gen_bool(0.3) {
                    let [a, b] = &mut devices;
                    a.merge(b).unwrap();
                }
            }
            let [a, b] = &devices;
            let mut doc = server.clone();
            for device in [a, b] {
                let batch = new_changes(&doc, device);
                let checked = check_changes_among(SHORT_KINDS, &doc, &batch);
                let mut applied = doc.clone();
                applied.apply_changes(batch).unwrap();
                let obj = field.text_obj(&applied).unwrap();
                let is_over = applied.length(&obj) > 12;
                over += usize::from(is_over);
                match checked {
                    Err(r) if r.code == codes::TOO_LONG => {
                        refused += 1;
                        assert!(is_over, "refused a batch whose result fits");
                    }
                    Err(r) => panic!("unexpected refusal {r:?}"),
                    Ok(_) => {}
                }
                assert_eq!(check_limits_among(SHORT_KINDS, &applied).is_err(), is_over);
                if !is_over {
                    doc = applied;
                }
            }
        }
        // The property was exercised: a third of the histories end over the limit.
        assert!(
            refused > 20 && refused <= over,
            "{refused} refused, {over} over"
        );
    }
}

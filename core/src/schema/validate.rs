//! The server's check of incoming changes, run on the operations of every change before any
//! of them is applied. Checking operations rather than the resulting document matters: "add an
//! unknown key, then delete it" leaves a valid document but a bad operation in history.

use std::collections::HashMap;
use std::mem::discriminant;
use std::sync::OnceLock;

use automerge::{Automerge, Change, ObjType, ReadDoc, ScalarValue, Value, ROOT};

use super::{schema_for, FieldType, Schema, KIND_FIELD};

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
}

/// What an operation does, as far as schemas care.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    MakeText,
    MakeOther,
    PutStr(String),
    PutOther,
    Delete,
    Mark,
    Other,
}

/// One operation of a change, reduced to what the check needs.
#[derive(Debug)]
struct Op {
    action: Action,
    /// `None` for the root map, else the object's id as `counter@actor`.
    obj: Option<OpId>,
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
        return reject("a change could not be read");
    };
    let mut out = Vec::with_capacity(expanded.operations.len());
    // Consecutive operations mostly touch the same object: format its id once.
    let mut last = None;
    for op in &expanded.operations {
        let d = discriminant(&op.action);
        let action = if d == kind(r.root_put) {
            match op.primitive_value() {
                Some(ScalarValue::Str(s)) => Action::PutStr(s.to_string()),
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
        let is_root = discriminant(&op.obj) == root;
        let obj = if is_root {
            None
        } else {
            match &last {
                Some((o, id)) if *o == &op.obj => Some(String::clone(id)),
                _ => {
                    let id = op.obj.to_string();
                    last = Some((&op.obj, id.clone()));
                    Some(id)
                }
            }
        };
        let key = if op.key.is_map_key() {
            match serde_json::to_value(&op.key) {
                Ok(serde_json::Value::String(k)) => Some(k),
                _ => return reject("a change could not be read"),
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

/// What is known about a document before a batch: its kind and the objects its fields hold.
struct DocState {
    schema: Option<&'static Schema>,
    /// Root fields that already hold a value.
    present: Vec<String>,
    /// Text objects and the field holding them.
    texts: HashMap<OpId, &'static str>,
}

impl DocState {
    fn of(doc: &Automerge) -> Result<Self, Rejection> {
        let mut state = DocState {
            schema: None,
            present: Vec::new(),
            texts: HashMap::new(),
        };
        for key in doc.keys(ROOT) {
            state.present.push(key);
        }
        if let Ok(Some((Value::Scalar(v), _))) = doc.get(ROOT, KIND_FIELD) {
            if let ScalarValue::Str(kind) = v.as_ref() {
                state.schema = schema_for(kind);
            }
        }
        if let Some(schema) = state.schema {
            for field in schema.fields.iter().filter(|f| f.ty == FieldType::Text) {
                // Every conflicting value, so that edits to either side of a conflict pass.
                for (value, id) in doc.get_all(ROOT, field.name).unwrap_or_default() {
                    if let (Value::Object(ObjType::Text), automerge::ObjId::Id(ctr, actor, _)) =
                        (value, id)
                    {
                        state.texts.insert(format!("{ctr}@{actor}"), field.name);
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
pub fn check_changes(
    doc: &Automerge,
    changes: &[Change],
) -> Result<Option<&'static Schema>, Rejection> {
    let mut state = DocState::of(doc)?;
    for change in changes {
        if doc.get_change_by_hash(&change.hash()).is_some() {
            continue;
        }
        check_change(&mut state, change)?;
    }
    Ok(state.schema)
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
            Some(kind) => match schema_for(kind) {
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
        {
            let Some(field) = state.texts.get(obj).copied() else {
                return reject(format!(
                    "operation on an object that is not part of this {}",
                    schema.kind
                ));
            };
            check_text_op(field, op)?;
        }
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
        (FieldType::Text, Action::MakeText) => {
            if present {
                return reject(format!("field \"{}\" already exists", field.name));
            }
            state.present.push(key.to_owned());
            state.texts.insert(id, field.name);
            Ok(())
        }
        (FieldType::Text, _) => reject(format!("field \"{}\" must be text", field.name)),
        (FieldType::Str { max_bytes }, _) => match op.str_value() {
            Some(s) if s.len() > max_bytes => reject(format!(
                "field \"{}\" is longer than {max_bytes} bytes",
                field.name
            )),
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

fn check_text_op(field: &str, op: &Op) -> Result<(), Rejection> {
    if op.key.is_some() {
        return reject(format!("field \"{field}\" is text, not a map"));
    }
    match op.action {
        Action::Delete | Action::PutStr(_) => Ok(()),
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
}

//! The server's check of incoming changes, run on the operations of every change before any
//! of them is applied. Checking operations rather than the resulting document matters: "add an
//! unknown key, then delete it" leaves a valid document but a bad operation in history.

use std::collections::HashMap;

use automerge::{Automerge, Change, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use serde::Deserialize;

use super::{schema_for, FieldType, Schema, KIND_FIELD};

/// Why a batch of changes was refused. The text is shown to the citizen and logged; it holds
/// no document content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

/// An operation as automerge's legacy (JSON) form describes it: the crate keeps its own op
/// types private, and this form is stable across versions.
#[derive(Debug, Deserialize)]
struct Op {
    action: String,
    obj: String,
    key: Option<String>,
    #[serde(default)]
    insert: bool,
    value: Option<serde_json::Value>,
}

impl Op {
    fn str_value(&self) -> Option<&str> {
        match (&self.action[..], &self.value) {
            ("set", Some(serde_json::Value::String(s))) => Some(s),
            _ => None,
        }
    }
}

const ROOT_OBJ: &str = "_root";

/// An operation id in legacy form, `counter@actor`.
type OpId = String;

fn reject<T>(msg: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection(msg.into()))
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
    let ops: Vec<Op> = serde_json::to_value(&change.decode().operations)
        .and_then(serde_json::from_value)
        .map_err(|_| Rejection("a change could not be read".into()))?;
    if state.schema.is_none() {
        // The first change must name the kind.
        let kind = ops
            .iter()
            .find(|op| op.obj == ROOT_OBJ && op.key.as_deref() == Some(KIND_FIELD))
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
        if op.obj == ROOT_OBJ {
            let id = format!("{}@{actor}", start + i as u64);
            check_root_op(state, schema, id, op)?;
        } else {
            let Some(field) = state.texts.get(&op.obj).copied() else {
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
    match (field.ty, op.action.as_str()) {
        (_, "del") => reject(format!("field \"{}\" cannot be deleted", field.name)),
        (FieldType::Text, "makeText") => {
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
    match op.action.as_str() {
        "del" => Ok(()),
        "set" if op.str_value().is_some() => Ok(()),
        "markBegin" | "markEnd" => reject(format!(
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
            .0
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
            .0
            .contains("first set its \"type\""));
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "type", "spaceship").unwrap();
        tx.commit();
        assert!(check_changes(&empty, &new_changes(&empty, &doc))
            .unwrap_err()
            .0
            .contains("unknown document type"));
    }
}

//! A citizen's policy proposal draft: `title` and `body` are Automerge text (concurrent edits
//! merge by character), `category` a short string. Callers read and write it through
//! [`Proposal`] and [`ProposalEdit`]; no Automerge path leaks out of this module.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ReadDoc, Value, ROOT};

use super::{read_kind, read_str, Field, FieldType, Schema, SchemaError, KIND_FIELD};

/// The `type` of a proposal draft.
pub const KIND: &str = "proposal";
/// Longest category, in UTF-8 bytes.
pub const MAX_CATEGORY_BYTES: usize = 64;

/// The proposal draft schema.
pub static SCHEMA: Schema = Schema {
    kind: KIND,
    fields: &[
        Field {
            name: "title",
            ty: FieldType::Text,
        },
        Field {
            name: "body",
            ty: FieldType::Text,
        },
        Field {
            name: "category",
            ty: FieldType::Str {
                max_bytes: MAX_CATEGORY_BYTES,
            },
        },
    ],
};

/// A proposal draft's content, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The title.
    pub title: String,
    /// The body.
    pub body: String,
    /// The policy category, e.g. "transport".
    pub category: String,
}

/// One of a proposal's two text fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// The title.
    Title,
    /// The body.
    Body,
}

impl TextField {
    fn key(self) -> &'static str {
        match self {
            TextField::Title => "title",
            TextField::Body => "body",
        }
    }
}

/// An edit to a proposal draft. Positions count Unicode scalar values (Kotlin and Swift
/// callers convert from UTF-16 indices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalEdit {
    /// Delete `delete` characters at `pos` in a text field and insert `insert` there.
    Splice {
        /// Which text.
        field: TextField,
        /// Where, in characters from the start.
        pos: usize,
        /// How many characters to delete.
        delete: usize,
        /// What to insert.
        insert: String,
    },
    /// Replace a whole text field, as a minimal character diff (for editors that cannot report
    /// individual keystrokes).
    Replace {
        /// Which text.
        field: TextField,
        /// The new text.
        text: String,
    },
    /// Set the category.
    SetCategory(String),
}

impl ProposalEdit {
    /// Inserts `text` at `pos` (in characters) in a text field.
    pub fn insert(field: TextField, pos: usize, text: impl Into<String>) -> Self {
        ProposalEdit::Splice {
            field,
            pos,
            delete: 0,
            insert: text.into(),
        }
    }
}

/// Creates a new proposal draft document in one change.
pub fn create(title: &str, body: &str, category: &str) -> Result<Automerge, SchemaError> {
    check_category(category)?;
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    tx.put(ROOT, KIND_FIELD, KIND)?;
    let t = tx.put_object(ROOT, "title", ObjType::Text)?;
    tx.splice_text(&t, 0, 0, title)?;
    let b = tx.put_object(ROOT, "body", ObjType::Text)?;
    tx.splice_text(&b, 0, 0, body)?;
    tx.put(ROOT, "category", category)?;
    tx.commit();
    Ok(doc)
}

/// Reads a proposal draft.
pub fn read(doc: &Automerge) -> Result<Proposal, SchemaError> {
    let kind = read_kind(doc)?;
    if kind != KIND {
        return Err(SchemaError::WrongKind {
            expected: KIND,
            found: kind,
        });
    }
    Ok(Proposal {
        title: doc.text(text_obj(doc, TextField::Title)?)?,
        body: doc.text(text_obj(doc, TextField::Body)?)?,
        category: read_str(doc, "category")?,
    })
}

/// Each field of a proposal that reads as its schema says; the others are `None`. For
/// salvaging what is valid in a document that, as a whole, is not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProposalFields {
    /// The title, if it is text.
    pub title: Option<String>,
    /// The body, if it is text.
    pub body: Option<String>,
    /// The category, if it is a string.
    pub category: Option<String>,
}

/// Reads every field that is valid, whatever the others hold.
pub fn read_fields(doc: &Automerge) -> ProposalFields {
    let text = |f| text_obj(doc, f).ok().and_then(|obj| doc.text(obj).ok());
    ProposalFields {
        title: text(TextField::Title),
        body: text(TextField::Body),
        category: read_str(doc, "category").ok(),
    }
}

/// Applies one edit in one Automerge change. Nothing is changed if the edit is invalid.
pub fn apply(doc: &mut Automerge, edit: &ProposalEdit) -> Result<(), SchemaError> {
    // Only the kind: reading the whole text costs O(length) on every keystroke.
    let kind = read_kind(doc)?;
    if kind != KIND {
        return Err(SchemaError::WrongKind {
            expected: KIND,
            found: kind,
        });
    }
    match edit {
        ProposalEdit::Splice {
            field,
            pos,
            delete,
            insert,
        } => {
            let obj = text_obj(doc, *field)?;
            let len = doc.length(&obj);
            if *pos > len || pos.saturating_add(*delete) > len {
                return Err(SchemaError::OutOfRange {
                    field: field.key(),
                    pos: pos.saturating_add(*delete),
                    len,
                });
            }
            let delete = isize::try_from(*delete).map_err(|_| SchemaError::OutOfRange {
                field: field.key(),
                pos: *pos,
                len,
            })?;
            let mut tx = doc.transaction();
            tx.splice_text(&obj, *pos, delete, insert)?;
            tx.commit();
        }
        ProposalEdit::Replace { field, text } => {
            let obj = text_obj(doc, *field)?;
            let mut tx = doc.transaction();
            tx.update_text(&obj, text)?;
            tx.commit();
        }
        ProposalEdit::SetCategory(c) => {
            check_category(c)?;
            let mut tx = doc.transaction();
            tx.put(ROOT, "category", c.as_str())?;
            tx.commit();
        }
    }
    Ok(())
}

fn check_category(c: &str) -> Result<(), SchemaError> {
    if c.len() > MAX_CATEGORY_BYTES {
        return Err(SchemaError::TooLong {
            field: "category",
            max_bytes: MAX_CATEGORY_BYTES,
        });
    }
    Ok(())
}

fn text_obj(doc: &Automerge, field: TextField) -> Result<ObjId, SchemaError> {
    match doc.get(ROOT, field.key())? {
        Some((Value::Object(ObjType::Text), id)) => Ok(id),
        Some(_) => Err(SchemaError::WrongType {
            field: field.key(),
            expected: "text",
        }),
        None => Err(SchemaError::Missing(field.key())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_read_and_edit() {
        let mut doc = create("버스 노선", "배차 간격을 줄여 주세요.", "transport").unwrap();
        apply(
            &mut doc,
            &ProposalEdit::Splice {
                field: TextField::Title,
                pos: 5,
                delete: 0,
                insert: " 개선".into(),
            },
        )
        .unwrap();
        apply(
            &mut doc,
            &ProposalEdit::Replace {
                field: TextField::Body,
                text: "배차 간격을 10분으로 줄여 주세요.".into(),
            },
        )
        .unwrap();
        apply(&mut doc, &ProposalEdit::SetCategory("welfare".into())).unwrap();
        assert_eq!(
            read(&doc).unwrap(),
            Proposal {
                title: "버스 노선 개선".into(),
                body: "배차 간격을 10분으로 줄여 주세요.".into(),
                category: "welfare".into(),
            }
        );
    }

    #[test]
    fn invalid_edits_change_nothing() {
        let mut doc = create("t", "b", "c").unwrap();
        let heads = doc.get_heads();
        let err = apply(
            &mut doc,
            &ProposalEdit::Splice {
                field: TextField::Body,
                pos: 1,
                delete: 5,
                insert: String::new(),
            },
        )
        .unwrap_err();
        assert!(matches!(err, SchemaError::OutOfRange { .. }));
        let err = apply(&mut doc, &ProposalEdit::SetCategory("x".repeat(65))).unwrap_err();
        assert!(matches!(err, SchemaError::TooLong { .. }));
        assert_eq!(doc.get_heads(), heads);
    }

    #[test]
    fn concurrent_edits_merge_by_character() {
        let a = create("title", "hello world", "c").unwrap();
        let mut a = a.with_actor(automerge::ActorId::random());
        let mut b = a.fork();
        apply(
            &mut a,
            &ProposalEdit::Splice {
                field: TextField::Body,
                pos: 5,
                delete: 0,
                insert: ",".into(),
            },
        )
        .unwrap();
        apply(
            &mut b,
            &ProposalEdit::Splice {
                field: TextField::Body,
                pos: 11,
                delete: 0,
                insert: "!".into(),
            },
        )
        .unwrap();
        a.merge(&mut b).unwrap();
        assert_eq!(read(&a).unwrap().body, "hello, world!");
    }
}

//! A citizen's policy proposal draft: `title` and `body` are Automerge text (concurrent edits
//! merge by character), `category` a short string. Callers read and write it through
//! [`Proposal`] and [`ProposalEdit`]; no Automerge path leaks out of this module.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ReadDoc, ROOT};

use super::{read_kind, read_str, Field, FieldType, FieldValue, Schema, SchemaError};

/// The `type` of a proposal draft.
pub const KIND: &str = "proposal";
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest body, in characters.
pub const MAX_BODY_CHARS: usize = 30_000;
/// Longest category, in UTF-8 bytes.
pub const MAX_CATEGORY_BYTES: usize = 64;

/// The proposal draft schema.
pub static SCHEMA: Schema = Schema {
    kind: KIND,
    fields: &[
        Field {
            name: "title",
            ty: FieldType::Text {
                max_chars: MAX_TITLE_CHARS,
            },
        },
        Field {
            name: "body",
            ty: FieldType::Text {
                max_chars: MAX_BODY_CHARS,
            },
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
        self.field().name
    }

    /// The schema's field, with its limit (`TextField::Body.field().max_chars()`).
    pub fn field(self) -> &'static Field {
        match self {
            TextField::Title => &SCHEMA.fields[0],
            TextField::Body => &SCHEMA.fields[1],
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

/// Creates a new proposal draft document in one change. Fails, creating nothing, if a value
/// is over its field's limit.
pub fn create(title: &str, body: &str, category: &str) -> Result<Automerge, SchemaError> {
    SCHEMA.create(|f| {
        Some(match f.name {
            "title" => FieldValue::Text(title.to_owned()),
            "body" => FieldValue::Text(body.to_owned()),
            _ => FieldValue::Str(category.to_owned()),
        })
    })
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

/// Applies one edit in one Automerge change. Nothing is changed if the edit is invalid,
/// including when it would make a text longer than its field's limit.
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
            // Counted before anything is written; `len - delete` cannot underflow (checked above).
            field
                .field()
                .check_chars(len - delete.unsigned_abs() + insert.chars().count())?;
            let mut tx = doc.transaction();
            tx.splice_text(&obj, *pos, delete, insert)?;
            tx.commit();
        }
        ProposalEdit::Replace { field, text } => {
            field.field().write(doc, &FieldValue::Text(text.clone()))?;
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
    SCHEMA.fields[2].check(&FieldValue::Str(c.to_owned()))
}

fn text_obj(doc: &Automerge, field: TextField) -> Result<ObjId, SchemaError> {
    field.field().text_obj(doc)
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

    #[test]
    fn limits_are_data() {
        assert_eq!(SCHEMA.field("title").and_then(Field::max_chars), Some(200));
        assert_eq!(TextField::Body.field().max_chars(), Some(30_000));
        assert_eq!(
            SCHEMA.field("category").and_then(Field::max_bytes),
            Some(64)
        );
        assert_eq!(SCHEMA.field("category").and_then(Field::max_chars), None);
    }

    #[test]
    fn texts_over_their_limit_are_refused_naming_field_and_limit() {
        let err = create(&"t".repeat(201), "b", "c").unwrap_err();
        assert_eq!(
            err,
            SchemaError::TooManyCharacters {
                field: "title",
                max_chars: 200
            }
        );
        assert_eq!(
            err.to_string(),
            "field \"title\" is longer than 200 characters"
        );
        // Characters, not bytes: 30,000 Hangul syllables (90,000 bytes) fit.
        let mut doc = create("t", &"가".repeat(MAX_BODY_CHARS), "c").unwrap();
        let heads = doc.get_heads();
        let err = apply(&mut doc, &ProposalEdit::insert(TextField::Body, 0, "x")).unwrap_err();
        assert!(matches!(
            err,
            SchemaError::TooManyCharacters { field: "body", .. }
        ));
        let err = apply(
            &mut doc,
            &ProposalEdit::Replace {
                field: TextField::Body,
                text: "나".repeat(MAX_BODY_CHARS + 1),
            },
        )
        .unwrap_err();
        assert!(matches!(err, SchemaError::TooManyCharacters { .. }));
        assert_eq!(doc.get_heads(), heads);
        // Replacing one character keeps the length: allowed at the limit.
        apply(
            &mut doc,
            &ProposalEdit::Splice {
                field: TextField::Body,
                pos: 0,
                delete: 1,
                insert: "x".into(),
            },
        )
        .unwrap();
        assert_eq!(read(&doc).unwrap().body.chars().count(), MAX_BODY_CHARS);
    }

    /// Random splices on the title: an edit succeeds exactly when the result fits, and a
    /// refused edit changes nothing. Seeded, so a failure reproduces.
    #[test]
    fn property_random_splices_keep_the_title_within_its_limit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut doc = create("", "b", "c").unwrap();
        let mut model: Vec<char> = Vec::new();
        for _ in 0..600 {
            let len = model.len();
            let pos = rng.gen_range(0..=len);
            let delete = rng.gen_range(0..=(len - pos).min(8));
            let insert: String = (0..rng.gen_range(0..40))
                .map(|_| if rng.gen_bool(0.5) { 'a' } else { '한' })
                .collect();
            let fits = len - delete + insert.chars().count() <= MAX_TITLE_CHARS;
            let heads = doc.get_heads();
            let edit = ProposalEdit::Splice {
                field: TextField::Title,
                pos,
                delete,
                insert: insert.clone(),
            };
            match apply(&mut doc, &edit) {
                Ok(()) => {
                    assert!(fits);
                    model.splice(pos..pos + delete, insert.chars());
                }
                Err(e) => {
                    assert!(!fits, "refused an edit that fits: {e}");
                    assert_eq!(doc.get_heads(), heads);
                }
            }
            assert_eq!(read(&doc).unwrap().title, model.iter().collect::<String>());
        }
    }
}

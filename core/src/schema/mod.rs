//! Document schemas shared by phone and server: what each kind of document may contain, and
//! the check the server runs on every incoming change before applying it.
//!
//! A schema is data ([`Schema`]): the root fields a document kind may have, their types and
//! their limits. The typed APIs (e.g. [`proposal`]) write documents that satisfy it;
//! [`validate`] checks the operations of foreign changes, and the documents they produce,
//! against it; recovery after a refusal replays a draft field by field from it.

pub mod proposal;
pub mod validate;

/// The root key naming a document's kind; set once, when the document is created.
pub const KIND_FIELD: &str = "type";

/// What a root field holds, with its limit. Limits are data so that apps can show counters
/// and the server and the typed APIs enforce the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Automerge text, created once; edited character by character.
    Text {
        /// Longest accepted text in characters (Unicode scalar values, as positions count).
        max_chars: usize,
    },
    /// A string scalar no longer than `max_bytes`, which may be overwritten.
    Str {
        /// Longest accepted value in UTF-8 bytes.
        max_bytes: usize,
    },
}

/// One root field of a document kind.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Its key in the root map.
    pub name: &'static str,
    /// What it holds.
    pub ty: FieldType,
}

/// A field's value, read or to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    /// The content of a text field.
    Text(String),
    /// The value of a string field.
    Str(String),
}

impl Field {
    /// The longest text this field accepts, in characters; `None` unless it is text.
    pub fn max_chars(&self) -> Option<usize> {
        match self.ty {
            FieldType::Text { max_chars } => Some(max_chars),
            FieldType::Str { .. } => None,
        }
    }

    /// The longest string this field accepts, in UTF-8 bytes; `None` unless it is a string.
    pub fn max_bytes(&self) -> Option<usize> {
        match self.ty {
            FieldType::Str { max_bytes } => Some(max_bytes),
            FieldType::Text { .. } => None,
        }
    }

    /// Whether this field holds Automerge text.
    pub fn is_text(&self) -> bool {
        matches!(self.ty, FieldType::Text { .. })
    }

    /// Checks that a text of `chars` characters fits this field.
    pub fn check_chars(&self, chars: usize) -> Result<(), SchemaError> {
        match self.ty {
            FieldType::Text { max_chars } if chars > max_chars => {
                Err(SchemaError::TooManyCharacters {
                    field: self.name,
                    max_chars,
                })
            }
            FieldType::Text { .. } => Ok(()),
            FieldType::Str { .. } => Err(SchemaError::WrongType {
                field: self.name,
                expected: "a string",
            }),
        }
    }

    /// Checks that `value` is of this field's type and within its limit.
    pub fn check(&self, value: &FieldValue) -> Result<(), SchemaError> {
        match (self.ty, value) {
            (FieldType::Text { .. }, FieldValue::Text(t)) => self.check_chars(t.chars().count()),
            (FieldType::Str { max_bytes }, FieldValue::Str(s)) => {
                if s.len() > max_bytes {
                    Err(SchemaError::TooLong {
                        field: self.name,
                        max_bytes,
                    })
                } else {
                    Ok(())
                }
            }
            (FieldType::Text { .. }, _) => Err(SchemaError::WrongType {
                field: self.name,
                expected: "text",
            }),
            (FieldType::Str { .. }, _) => Err(SchemaError::WrongType {
                field: self.name,
                expected: "a string",
            }),
        }
    }

    /// `value` made to fit this field: text cut to its longest length, a string too long (or
    /// a value of the wrong type) dropped. For salvaging content after a refusal.
    pub fn fit(&self, value: FieldValue) -> Option<FieldValue> {
        match (self.ty, value) {
            (FieldType::Text { max_chars }, FieldValue::Text(t)) => {
                match t.char_indices().nth(max_chars) {
                    Some((end, _)) => Some(FieldValue::Text(t[..end].to_owned())),
                    None => Some(FieldValue::Text(t)),
                }
            }
            (FieldType::Str { max_bytes }, FieldValue::Str(s)) if s.len() <= max_bytes => {
                Some(FieldValue::Str(s))
            }
            _ => None,
        }
    }

    /// The value a field holds in a new, empty document.
    pub fn empty(&self) -> FieldValue {
        match self.ty {
            FieldType::Text { .. } => FieldValue::Text(String::new()),
            FieldType::Str { .. } => FieldValue::Str(String::new()),
        }
    }

    /// Reads this field from the root of `doc`, whatever its limit.
    pub fn read(&self, doc: &automerge::Automerge) -> Result<FieldValue, SchemaError> {
        use automerge::ReadDoc;
        match self.ty {
            FieldType::Text { .. } => Ok(FieldValue::Text(doc.text(self.text_obj(doc)?)?)),
            FieldType::Str { .. } => read_str(doc, self.name).map(FieldValue::Str),
        }
    }

    /// The text object this field holds in `doc`.
    pub(crate) fn text_obj(
        &self,
        doc: &automerge::Automerge,
    ) -> Result<automerge::ObjId, SchemaError> {
        use automerge::{ObjType, ReadDoc, Value, ROOT};
        match doc.get(ROOT, self.name)? {
            Some((Value::Object(ObjType::Text), id)) => Ok(id),
            Some(_) => Err(SchemaError::WrongType {
                field: self.name,
                expected: "text",
            }),
            None => Err(SchemaError::Missing(self.name)),
        }
    }

    /// Writes `value` in one change: text as a minimal character diff of the current text,
    /// a string as a new value. Nothing is changed if the value does not fit.
    pub fn write(
        &self,
        doc: &mut automerge::Automerge,
        value: &FieldValue,
    ) -> Result<(), SchemaError> {
        use automerge::transaction::Transactable;
        self.check(value)?;
        match value {
            FieldValue::Text(t) => {
                let obj = self.text_obj(doc)?;
                let mut tx = doc.transaction();
                tx.update_text(&obj, t)?;
                tx.commit();
            }
            FieldValue::Str(s) => {
                let mut tx = doc.transaction();
                tx.put(automerge::ROOT, self.name, s.as_str())?;
                tx.commit();
            }
        }
        Ok(())
    }
}

/// The shape of one kind of document.
#[derive(Debug)]
pub struct Schema {
    /// The value of the root `type` field.
    pub kind: &'static str,
    /// Every root field besides `type`; each is required.
    pub fields: &'static [Field],
}

impl Schema {
    /// The field named `name`, if the schema has it. `SCHEMA.field("body")?.max_chars()`
    /// gives an app the limit to show next to a text box.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// A new document of this kind in one change, each field holding `value(field)` (or, when
    /// that is `None`, its empty value). Nothing is created if a value does not fit.
    pub fn create(
        &self,
        value: impl Fn(&Field) -> Option<FieldValue>,
    ) -> Result<automerge::Automerge, SchemaError> {
        use automerge::transaction::Transactable;
        use automerge::{ObjType, ROOT};
        let values: Vec<FieldValue> = self
            .fields
            .iter()
            .map(|f| value(f).unwrap_or_else(|| f.empty()))
            .collect();
        for (field, v) in self.fields.iter().zip(&values) {
            field.check(v)?;
        }
        let mut doc = automerge::Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, KIND_FIELD, self.kind)?;
        for (field, v) in self.fields.iter().zip(&values) {
            match v {
                FieldValue::Text(t) => {
                    let obj = tx.put_object(ROOT, field.name, ObjType::Text)?;
                    tx.splice_text(&obj, 0, 0, t)?;
                }
                FieldValue::Str(s) => {
                    tx.put(ROOT, field.name, s.as_str())?;
                }
            }
        }
        tx.commit();
        Ok(doc)
    }
}

/// Every document kind Sotong knows.
pub static SCHEMAS: &[&Schema] = &[&proposal::SCHEMA];

/// The schema for a `type` value.
pub fn schema_for(kind: &str) -> Option<&'static Schema> {
    find_schema(SCHEMAS, kind)
}

/// The schema for a `type` value among `schemas` (tests pass kinds of their own).
pub(crate) fn find_schema(schemas: &[&'static Schema], kind: &str) -> Option<&'static Schema> {
    schemas.iter().copied().find(|s| s.kind == kind)
}

/// A document's kind: its root `type` field.
pub fn read_kind(doc: &automerge::Automerge) -> Result<String, SchemaError> {
    read_str(doc, KIND_FIELD)
}

/// A string scalar of the root map.
pub(crate) fn read_str(
    doc: &automerge::Automerge,
    key: &'static str,
) -> Result<String, SchemaError> {
    use automerge::{ReadDoc, ScalarValue, Value, ROOT};
    let wrong = || SchemaError::WrongType {
        field: key,
        expected: "a string",
    };
    match doc.get(ROOT, key)? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => Ok(s.to_string()),
            _ => Err(wrong()),
        },
        Some(_) => Err(wrong()),
        None => Err(SchemaError::Missing(key)),
    }
}

/// Why a document does not read as its schema says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    /// A required field is absent.
    #[error("field \"{0}\" is missing")]
    Missing(&'static str),
    /// A field holds the wrong type.
    #[error("field \"{field}\" must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// The document is of another kind.
    #[error("document is a \"{found}\", not a \"{expected}\"")]
    WrongKind {
        /// The kind expected.
        expected: &'static str,
        /// The kind found.
        found: String,
    },
    /// A string value is too long.
    #[error("field \"{field}\" is longer than {max_bytes} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its limit.
        max_bytes: usize,
    },
    /// A text would be longer than its field allows.
    #[error("field \"{field}\" is longer than {max_chars} characters")]
    TooManyCharacters {
        /// The field.
        field: &'static str,
        /// Its limit, in characters.
        max_chars: usize,
    },
    /// A position is past the end of a text.
    #[error("position {pos} is past the end of \"{field}\" ({len} characters)")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The position asked for.
        pos: usize,
        /// The text's length in characters.
        len: usize,
    },
    /// Automerge itself failed.
    #[error("document error: {0}")]
    Automerge(String),
}

impl From<automerge::AutomergeError> for SchemaError {
    fn from(e: automerge::AutomergeError) -> Self {
        SchemaError::Automerge(e.to_string())
    }
}

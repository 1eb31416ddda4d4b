//! Document schemas shared by phone and server: what each kind of document may contain, and
//! the check the server runs on every incoming change before applying it.
//!
//! A schema is data ([`Schema`]): the root fields a document kind may have and their types.
//! The typed APIs (e.g. [`proposal`]) write documents that satisfy it; [`validate`] checks
//! the operations of foreign changes against it.

pub mod proposal;
pub mod validate;

/// The root key naming a document's kind; set once, when the document is created.
pub const KIND_FIELD: &str = "type";

/// What a root field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Automerge text, created once; edited character by character.
    Text,
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

/// The shape of one kind of document.
#[derive(Debug)]
pub struct Schema {
    /// The value of the root `type` field.
    pub kind: &'static str,
    /// Every root field besides `type`; each is required.
    pub fields: &'static [Field],
}

impl Schema {
    /// The field named `name`, if the schema has it.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Every document kind Sotong knows.
pub static SCHEMAS: &[&Schema] = &[&proposal::SCHEMA];

/// The schema for a `type` value.
pub fn schema_for(kind: &str) -> Option<&'static Schema> {
    SCHEMAS.iter().copied().find(|s| s.kind == kind)
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
    /// A value is too long.
    #[error("field \"{field}\" is longer than {max_bytes} bytes")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its limit.
        max_bytes: usize,
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

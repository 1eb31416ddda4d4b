//! Document ids in automerge-repo's format: 16 random bytes, base58check encoded, and
//! `automerge:<id>` as a URL. The same id names a document on the phone, the server and in
//! any automerge-repo client.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;

/// The URL scheme automerge-repo uses for document URLs.
pub const URL_PREFIX: &str = "automerge:";

/// A document id: 16 random bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId([u8; 16]);

/// Why a string is not a document id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentIdError {
    /// Not base58check, or the checksum does not match.
    #[error("document id is not valid base58check")]
    Encoding,
    /// Decoded, but not 16 bytes long.
    #[error("document id must be 16 bytes, found {0}")]
    Length(usize),
}

impl DocumentId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// From raw bytes, as stored in a database.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DocumentIdError> {
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| DocumentIdError::Length(bytes.len()))?;
        Ok(Self(arr))
    }

    /// The `automerge:<id>` URL.
    pub fn url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }

    /// Parses either a bare id or an `automerge:` URL.
    pub fn parse_url_or_id(s: &str) -> Result<Self, DocumentIdError> {
        s.strip_prefix(URL_PREFIX).unwrap_or(s).parse()
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_16(&self.0))
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode_16(s).map(Self)
    }
}

/// 16 bytes as base58check text: the text form of every 16-byte random id in the project
/// (documents, SOS incidents).
pub(crate) fn encode_16(bytes: &[u8; 16]) -> String {
    bs58::encode(bytes).with_check().into_string()
}

/// The inverse of [`encode_16`].
pub(crate) fn decode_16(s: &str) -> Result<[u8; 16], DocumentIdError> {
    // A 16-byte id with a 4-byte checksum is at most 28 base58 digits; refuse long input
    // before decoding it.
    if s.is_empty() || s.len() > 32 {
        return Err(DocumentIdError::Encoding);
    }
    let bytes = bs58::decode(s)
        .with_check(None)
        .into_vec()
        .map_err(|_| DocumentIdError::Encoding)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| DocumentIdError::Length(bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_url() {
        let id = DocumentId::random();
        let text = id.to_string();
        assert_eq!(text.parse::<DocumentId>().unwrap(), id);
        assert_eq!(DocumentId::parse_url_or_id(&id.url()).unwrap(), id);
        assert!(id.url().starts_with("automerge:"));
    }

    #[test]
    fn refuses_bad_checksum_and_length() {
        let id = DocumentId::random().to_string();
        let mut broken = id.clone().into_bytes();
        let last = broken.len() - 1;
        broken[last] = if broken[last] == b'2' { b'3' } else { b'2' };
        let broken = String::from_utf8(broken).unwrap();
        assert_eq!(broken.parse::<DocumentId>(), Err(DocumentIdError::Encoding));
        let short = bs58::encode([1u8; 8]).with_check().into_string();
        assert_eq!(short.parse::<DocumentId>(), Err(DocumentIdError::Length(8)));
        assert_eq!("".parse::<DocumentId>(), Err(DocumentIdError::Encoding));
        assert_eq!("0OIl".parse::<DocumentId>(), Err(DocumentIdError::Encoding));
    }
}

//! SOS incident ids: 16 random bytes, written as base58check text like document ids
//! ([`crate::doc_id`]), so they read back without ambiguity (no `0`/`O`, `I`/`l`) and a
//! mistyped or truncated id fails its checksum instead of naming another incident.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::doc_id::{decode_16, encode_16, DocumentIdError};

/// An SOS incident's id, chosen by the phone when the person triggers it, so that every fix
/// can be stored and sent before the server has ever heard of the incident.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentId([u8; 16]);

/// Why a string or byte string is not an incident id.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IncidentIdError {
    /// Not base58check, or the checksum does not match.
    #[error("incident id is not valid base58check")]
    Encoding,
    /// Decoded, but not 16 bytes long.
    #[error("incident id must be 16 bytes, found {0}")]
    Length(usize),
}

impl From<DocumentIdError> for IncidentIdError {
    fn from(e: DocumentIdError) -> Self {
        match e {
            DocumentIdError::Encoding => IncidentIdError::Encoding,
            DocumentIdError::Length(n) => IncidentIdError::Length(n),
        }
    }
}

impl IncidentId {
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
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IncidentIdError> {
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| IncidentIdError::Length(bytes.len()))?;
        Ok(Self(arr))
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_16(&self.0))
    }
}

impl fmt::Debug for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IncidentId({self})")
    }
}

impl FromStr for IncidentId {
    type Err = IncidentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(decode_16(s)?))
    }
}

impl Serialize for IncidentId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IncidentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_bytes_and_json() {
        let id = IncidentId::random();
        assert_ne!(id, IncidentId::random());
        assert_eq!(id.to_string().parse::<IncidentId>().unwrap(), id);
        assert_eq!(IncidentId::from_bytes(id.as_bytes()).unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<IncidentId>(&json).unwrap(), id);
    }

    #[test]
    fn refuses_bad_text_and_lengths() {
        let text = IncidentId::random().to_string();
        let truncated = &text[..text.len() - 1];
        assert_eq!(
            truncated.parse::<IncidentId>(),
            Err(IncidentIdError::Encoding)
        );
        assert_eq!("".parse::<IncidentId>(), Err(IncidentIdError::Encoding));
        let short = bs58::encode([7u8; 8]).with_check().into_string();
        assert_eq!(short.parse::<IncidentId>(), Err(IncidentIdError::Length(8)));
        assert_eq!(
            IncidentId::from_bytes(&[1, 2, 3]),
            Err(IncidentIdError::Length(3))
        );
        assert!(serde_json::from_str::<IncidentId>("\"nope\"").is_err());
        assert!(serde_json::from_str::<IncidentId>("12").is_err());
    }
}

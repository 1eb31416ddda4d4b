//! The automerge-repo network messages (protocol version "1"), CBOR encoded, one per
//! WebSocket binary frame, plus Sotong's `sotong-rejected` message.
//!
//! Decoding goes through `ciborium::Value` rather than serde derive so that any field order
//! or CBOR tag a peer uses is accepted, and a malformed frame gets a precise reason.

use automerge::ChangeHash;
use ciborium::Value;

use crate::doc_id::DocumentId;

/// The automerge-repo protocol version we speak.
pub const PROTOCOL_VERSION: &str = "1";
/// Largest frame a peer may send; larger frames are refused before decoding.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// A peer's self-chosen id on one connection.
pub type PeerId = String;

/// What a peer says about itself when joining.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMetadata {
    /// Id of the peer's storage, if it has durable storage.
    pub storage_id: Option<String>,
    /// Whether the peer keeps nothing between sessions.
    pub is_ephemeral: bool,
}

/// One message of the sync protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum WireMessage {
    /// Client → server: opens the conversation.
    Join {
        /// The client's peer id.
        sender_id: PeerId,
        /// Protocol versions the client speaks.
        supported_protocol_versions: Vec<String>,
        /// What the client says about itself.
        peer_metadata: Option<PeerMetadata>,
    },
    /// Server → client: answers `Join`.
    Peer {
        /// The server's peer id.
        sender_id: PeerId,
        /// The client's peer id.
        target_id: PeerId,
        /// The version both speak.
        selected_protocol_version: String,
        /// What the server says about itself.
        peer_metadata: Option<PeerMetadata>,
    },
    /// Client → server: the client is going away.
    Leave {
        /// The leaving peer.
        sender_id: PeerId,
    },
    /// Either way: a protocol error; the connection closes after it.
    Error {
        /// Who reports the error.
        sender_id: Option<PeerId>,
        /// Who it is for.
        target_id: Option<PeerId>,
        /// What went wrong, for humans.
        message: String,
    },
    /// "I want this document" (the sender may have nothing yet).
    Request(DocMessage),
    /// An automerge sync message for a document.
    Sync(DocMessage),
    /// The sender does not have the document (or may not share it).
    DocUnavailable {
        /// Who answers.
        sender_id: PeerId,
        /// Who asked.
        target_id: PeerId,
        /// The document asked for.
        document_id: DocumentId,
    },
    /// Sotong: the server refused the changes in a sync message. Nothing of that message was
    /// stored; the client should fork at `heads` and replay its valid edits.
    Rejected {
        /// The server.
        sender_id: PeerId,
        /// The client whose message was refused.
        target_id: PeerId,
        /// The document concerned.
        document_id: DocumentId,
        /// A stable, machine-readable code a client can act on (e.g. `too_long`,
        /// `account_documents`); see `schema::validate::codes`.
        code: String,
        /// Why, for the citizen and the logs (no personal data).
        reason: String,
        /// The server's heads for the document after refusing.
        heads: Vec<ChangeHash>,
    },
    /// A message type we accept but do not act on (ephemeral, remote-heads…).
    Ignored {
        /// Its `type` field.
        kind: String,
    },
}

/// The fields shared by `request` and `sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocMessage {
    /// Who sends.
    pub sender_id: PeerId,
    /// Who receives.
    pub target_id: PeerId,
    /// The document.
    pub document_id: DocumentId,
    /// An encoded `automerge::sync::Message`.
    pub data: Vec<u8>,
}

/// Why a frame is not a valid message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The frame exceeds [`MAX_FRAME_BYTES`].
    #[error("message of {0} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge(usize),
    /// Not CBOR at all.
    #[error("message is not valid CBOR")]
    NotCbor,
    /// CBOR, but not a map with a string `type`.
    #[error("message must be a CBOR map with a text field \"type\"")]
    NotAMessage,
    /// A field is missing or of the wrong type.
    #[error("field \"{field}\" of a \"{kind}\" message is missing or malformed")]
    BadField {
        /// The message type.
        kind: String,
        /// The field.
        field: &'static str,
    },
    /// The `type` is not one we know.
    #[error("unknown message type \"{0}\"")]
    UnknownType(String),
}

// Message types that the reference client may send and that we may ignore safely.
const IGNORED_TYPES: &[&str] = &[
    "ephemeral",
    "remote-heads-changed",
    "remote-subscription-change",
];

impl WireMessage {
    /// Decodes one frame.
    pub fn decode(frame: &[u8]) -> Result<Self, WireError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(WireError::TooLarge(frame.len()));
        }
        let value: Value = ciborium::from_reader(frame).map_err(|_| WireError::NotCbor)?;
        let map = Fields::new(value).ok_or(WireError::NotAMessage)?;
        let kind = map.text("type").ok_or(WireError::NotAMessage)?.to_owned();
        let f = FieldReader {
            map: &map,
            kind: &kind,
        };
        let msg = match kind.as_str() {
            "join" => WireMessage::Join {
                sender_id: f.text("senderId")?,
                supported_protocol_versions: f.text_list("supportedProtocolVersions")?,
                peer_metadata: map.get("peerMetadata").and_then(PeerMetadata::from_value),
            },
            "peer" => WireMessage::Peer {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                selected_protocol_version: f.text("selectedProtocolVersion")?,
                peer_metadata: map.get("peerMetadata").and_then(PeerMetadata::from_value),
            },
            "leave" => WireMessage::Leave {
                sender_id: f.text("senderId")?,
            },
            "error" => WireMessage::Error {
                sender_id: map.text("senderId").map(str::to_owned),
                target_id: map.text("targetId").map(str::to_owned),
                message: f.text("message")?,
            },
            "request" => WireMessage::Request(f.doc_message()?),
            "sync" => WireMessage::Sync(f.doc_message()?),
            "doc-unavailable" => WireMessage::DocUnavailable {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                document_id: f.document_id()?,
            },
            "sotong-rejected" => WireMessage::Rejected {
                sender_id: f.text("senderId")?,
                target_id: f.text("targetId")?,
                document_id: f.document_id()?,
                // Older servers sent no code.
                code: map.text("code").unwrap_or("refused").to_owned(),
                reason: f.text("reason")?,
                heads: f.heads("heads")?,
            },
            other if IGNORED_TYPES.contains(&other) => WireMessage::Ignored { kind },
            _ => return Err(WireError::UnknownType(kind)),
        };
        Ok(msg)
    }

    /// Encodes the message as one CBOR frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut m: Vec<(Value, Value)> = Vec::with_capacity(7);
        let mut put = |k: &str, v: Value| m.push((Value::Text(k.to_owned()), v));
        let text = |s: &str| Value::Text(s.to_owned());
        match self {
            WireMessage::Join {
                sender_id,
                supported_protocol_versions,
                peer_metadata,
            } => {
                put("type", text("join"));
                put("senderId", text(sender_id));
                put(
                    "supportedProtocolVersions",
                    Value::Array(
                        supported_protocol_versions
                            .iter()
                            .map(|v| text(v))
                            .collect(),
                    ),
                );
                if let Some(meta) = peer_metadata {
                    put("peerMetadata", meta.to_value());
                }
            }
            WireMessage::Peer {
                sender_id,
                target_id,
                selected_protocol_version,
                peer_metadata,
            } => {
                put("type", text("peer"));
                put("senderId", text(sender_id));
                put("targetId", text(target_id));
                put("selectedProtocolVersion", text(selected_protocol_version));
                if let Some(meta) = peer_metadata {
                    put("peerMetadata", meta.to_value());
                }
            }
            WireMessage::Leave { sender_id } => {
                put("type", text("leave"));
                put("senderId", text(sender_id));
            }
            WireMessage::Error {
                sender_id,
                target_id,
                message,
            } => {
                put("type", text("error"));
                if let Some(s) = sender_id {
                    put("senderId", text(s));
                }
                if let Some(t) = target_id {
                    put("targetId", text(t));
                }
                put("message", text(message));
            }
            WireMessage::Request(d) | WireMessage::Sync(d) => {
                let kind = if matches!(self, WireMessage::Request(_)) {
                    "request"
                } else {
                    "sync"
                };
                put("type", text(kind));
                put("senderId", text(&d.sender_id));
                put("targetId", text(&d.target_id));
                put("documentId", Value::Text(d.document_id.to_string()));
                put("data", Value::Bytes(d.data.clone()));
            }
            WireMessage::DocUnavailable {
                sender_id,
                target_id,
                document_id,
            } => {
                put("type", text("doc-unavailable"));
                put("senderId", text(sender_id));
                put("targetId", text(target_id));
                put("documentId", Value::Text(document_id.to_string()));
            }
            WireMessage::Rejected {
                sender_id,
                target_id,
                document_id,
                code,
                reason,
                heads,
            } => {
                put("type", text("sotong-rejected"));
                put("senderId", text(sender_id));
                put("targetId", text(target_id));
                put("documentId", Value::Text(document_id.to_string()));
                put("code", text(code));
                put("reason", text(reason));
                put(
                    "heads",
                    Value::Array(heads.iter().map(|h| Value::Text(h.to_string())).collect()),
                );
            }
            WireMessage::Ignored { kind } => put("type", text(kind)),
        }
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = ciborium::into_writer(&Value::Map(m), &mut out);
        out
    }
}

impl PeerMetadata {
    fn from_value(v: &Value) -> Option<Self> {
        let f = Fields::new(v.clone())?;
        Some(Self {
            storage_id: f.text("storageId").map(str::to_owned),
            is_ephemeral: matches!(f.get("isEphemeral"), Some(Value::Bool(true))),
        })
    }

    fn to_value(&self) -> Value {
        let mut m = Vec::new();
        if let Some(s) = &self.storage_id {
            m.push((Value::Text("storageId".into()), Value::Text(s.clone())));
        }
        m.push((
            Value::Text("isEphemeral".into()),
            Value::Bool(self.is_ephemeral),
        ));
        Value::Map(m)
    }
}

/// A decoded CBOR map with text keys.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn new(v: Value) -> Option<Self> {
        match untag(v) {
            Value::Map(entries) => Some(Self(
                entries
                    .into_iter()
                    .filter_map(|(k, v)| match untag(k) {
                        Value::Text(k) => Some((k, untag(v))),
                        _ => None,
                    })
                    .collect(),
            )),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }
}

/// CBOR encoders may wrap byte strings in tags (cbor-x tags typed arrays); look through them.
fn untag(v: Value) -> Value {
    match v {
        Value::Tag(_, inner) => untag(*inner),
        other => other,
    }
}

struct FieldReader<'a> {
    map: &'a Fields,
    kind: &'a str,
}

impl FieldReader<'_> {
    fn bad(&self, field: &'static str) -> WireError {
        WireError::BadField {
            kind: self.kind.to_owned(),
            field,
        }
    }

    fn text(&self, field: &'static str) -> Result<String, WireError> {
        self.map
            .text(field)
            .map(str::to_owned)
            .ok_or_else(|| self.bad(field))
    }

    fn text_list(&self, field: &'static str) -> Result<Vec<String>, WireError> {
        match self.map.get(field) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::Text(s) => Ok(s.clone()),
                    _ => Err(self.bad(field)),
                })
                .collect(),
            _ => Err(self.bad(field)),
        }
    }

    fn document_id(&self) -> Result<DocumentId, WireError> {
        self.map
            .text("documentId")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.bad("documentId"))
    }

    fn heads(&self, field: &'static str) -> Result<Vec<ChangeHash>, WireError> {
        self.text_list(field)?
            .iter()
            .map(|h| h.parse().map_err(|_| self.bad(field)))
            .collect()
    }

    fn doc_message(&self) -> Result<DocMessage, WireError> {
        let data = match self.map.get("data") {
            Some(Value::Bytes(b)) => b.clone(),
            _ => return Err(self.bad("data")),
        };
        Ok(DocMessage {
            sender_id: self.text("senderId")?,
            target_id: self.text("targetId")?,
            document_id: self.document_id()?,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: WireMessage) {
        assert_eq!(WireMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn every_message_round_trips() {
        let doc = DocumentId::random();
        round_trip(WireMessage::Join {
            sender_id: "phone-1".into(),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: Some(PeerMetadata {
                storage_id: Some("s".into()),
                is_ephemeral: false,
            }),
        });
        round_trip(WireMessage::Peer {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
            selected_protocol_version: "1".into(),
            peer_metadata: None,
        });
        round_trip(WireMessage::Sync(DocMessage {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
            data: vec![0x42, 1, 2],
        }));
        round_trip(WireMessage::Request(DocMessage {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
            data: vec![],
        }));
        round_trip(WireMessage::DocUnavailable {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
        });
        round_trip(WireMessage::Rejected {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
            code: "invalid_change".into(),
            reason: "title must be text".into(),
            heads: vec![ChangeHash([7; 32])],
        });
        round_trip(WireMessage::Error {
            sender_id: Some("s".into()),
            target_id: None,
            message: "bad".into(),
        });
        round_trip(WireMessage::Leave {
            sender_id: "a".into(),
        });
    }

    #[test]
    fn garbage_gets_a_precise_error() {
        assert_eq!(
            WireMessage::decode(&[0xff, 0x00, 0x13]),
            Err(WireError::NotCbor)
        );
        let mut num = Vec::new();
        ciborium::into_writer(&Value::Integer(5.into()), &mut num).unwrap();
        assert_eq!(WireMessage::decode(&num), Err(WireError::NotAMessage));
        let mut unknown = Vec::new();
        ciborium::into_writer(
            &Value::Map(vec![(Value::Text("type".into()), Value::Text("x".into()))]),
            &mut unknown,
        )
        .unwrap();
        assert_eq!(
            WireMessage::decode(&unknown),
            Err(WireError::UnknownType("x".into()))
        );
        let no_doc = Value::Map(vec![
            (Value::Text("type".into()), Value::Text("sync".into())),
            (Value::Text("senderId".into()), Value::Text("a".into())),
            (Value::Text("targetId".into()), Value::Text("b".into())),
            (Value::Text("documentId".into()), Value::Text("nope".into())),
            (Value::Text("data".into()), Value::Bytes(vec![])),
        ]);
        let mut buf = Vec::new();
        ciborium::into_writer(&no_doc, &mut buf).unwrap();
        assert_eq!(
            WireMessage::decode(&buf),
            Err(WireError::BadField {
                kind: "sync".into(),
                field: "documentId"
            })
        );
        assert_eq!(
            WireMessage::decode(&vec![0u8; MAX_FRAME_BYTES + 1]),
            Err(WireError::TooLarge(MAX_FRAME_BYTES + 1))
        );
    }

    #[test]
    fn tagged_byte_strings_are_accepted() {
        let doc = DocumentId::random();
        let v = Value::Map(vec![
            (Value::Text("type".into()), Value::Text("sync".into())),
            (Value::Text("senderId".into()), Value::Text("a".into())),
            (Value::Text("targetId".into()), Value::Text("b".into())),
            (
                Value::Text("documentId".into()),
                Value::Text(doc.to_string()),
            ),
            (
                Value::Text("data".into()),
                Value::Tag(64, Box::new(Value::Bytes(vec![1, 2]))),
            ),
        ]);
        let mut buf = Vec::new();
        ciborium::into_writer(&v, &mut buf).unwrap();
        match WireMessage::decode(&buf).unwrap() {
            WireMessage::Sync(d) => assert_eq!(d.data, vec![1, 2]),
            other => panic!("unexpected {other:?}"),
        }
    }
}

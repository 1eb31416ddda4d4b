//! The automerge-repo network messages (protocol version "1"), CBOR encoded, one per
//! WebSocket binary frame, plus Sotong's `sotong-rejected` message and the SOS beacons sent
//! over an open connection (`sotong-sos-beacon`, answered by `sotong-sos-ack`; ADR 0005).
//!
//! Decoding reads the frame as a stream of CBOR items (`ciborium-ll`) rather than through
//! serde derive or a `ciborium::Value` tree: any field order or CBOR tag a peer uses is
//! accepted, unknown fields are skipped without being built, `data` is copied once, and a
//! malformed frame gets a precise reason.

use automerge::ChangeHash;
use ciborium_io::Read as _;
use ciborium_ll::{simple, Decoder, Encoder, Header};

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
    /// Sotong, client → server: SOS beacons over the open connection. `data` is the JSON body
    /// of `POST /v1/sos/beacons` (beacons, `after`); `batch` (the client's choice) names the
    /// answer.
    SosBeacon {
        /// The client.
        sender_id: PeerId,
        /// Names this batch in its [`WireMessage::SosAck`].
        batch: String,
        /// The JSON body.
        data: Vec<u8>,
    },
    /// Sotong, server → client: the answer to a [`WireMessage::SosBeacon`], sent only after
    /// the beacons are durably stored. `data` is the JSON answer of `POST /v1/sos/beacons`
    /// (the stored seqs per incident, the events); with a `code`, the batch was refused
    /// (nothing of it stored) and `data` is empty.
    SosAck {
        /// The server.
        sender_id: PeerId,
        /// The client.
        target_id: PeerId,
        /// The batch answered.
        batch: String,
        /// Why the batch was refused, if it was (the HTTPS route's error code).
        code: Option<String>,
        /// The JSON answer (empty when refused).
        data: Vec<u8>,
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
    /// Decodes one frame. The frame is read as a stream of CBOR items: `data` is copied once,
    /// straight into its buffer, and fields we do not know are skipped without being built, so
    /// decoding never holds much more than the frame itself.
    pub fn decode(frame: &[u8]) -> Result<Self, WireError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(WireError::TooLarge(frame.len()));
        }
        let mut raw = RawMessage::read(frame)?;
        let data = raw.data.take();
        let Some(Slot::Good(kind)) = raw.kind.clone() else {
            return Err(WireError::NotAMessage);
        };
        let f = FieldReader {
            raw: &raw,
            kind: &kind,
        };
        let msg = match kind.as_str() {
            "join" => WireMessage::Join {
                sender_id: f.text(&raw.sender_id, "senderId")?,
                supported_protocol_versions: f.take(
                    &raw.supported_protocol_versions,
                    "supportedProtocolVersions",
                )?,
                peer_metadata: raw.peer_metadata.clone().and_then(Slot::good),
            },
            "peer" => WireMessage::Peer {
                sender_id: f.text(&raw.sender_id, "senderId")?,
                target_id: f.text(&raw.target_id, "targetId")?,
                selected_protocol_version: f
                    .text(&raw.selected_protocol_version, "selectedProtocolVersion")?,
                peer_metadata: raw.peer_metadata.clone().and_then(Slot::good),
            },
            "leave" => WireMessage::Leave {
                sender_id: f.text(&raw.sender_id, "senderId")?,
            },
            "error" => WireMessage::Error {
                sender_id: raw.sender_id.clone().and_then(Slot::good),
                target_id: raw.target_id.clone().and_then(Slot::good),
                message: f.text(&raw.message, "message")?,
            },
            "request" | "sync" => {
                let doc = f.doc_message(data)?;
                if kind == "request" {
                    WireMessage::Request(doc)
                } else {
                    WireMessage::Sync(doc)
                }
            }
            "doc-unavailable" => WireMessage::DocUnavailable {
                sender_id: f.text(&raw.sender_id, "senderId")?,
                target_id: f.text(&raw.target_id, "targetId")?,
                document_id: f.document_id()?,
            },
            "sotong-rejected" => WireMessage::Rejected {
                sender_id: f.text(&raw.sender_id, "senderId")?,
                target_id: f.text(&raw.target_id, "targetId")?,
                document_id: f.document_id()?,
                // Older servers sent no code.
                code: raw
                    .code
                    .clone()
                    .and_then(Slot::good)
                    .unwrap_or_else(|| "refused".to_owned()),
                reason: f.text(&raw.reason, "reason")?,
                heads: f.heads()?,
            },
            "sotong-sos-beacon" => WireMessage::SosBeacon {
                sender_id: f.text(&raw.sender_id, "senderId")?,
                batch: f.text(&raw.batch, "batch")?,
                data: f.data(data)?,
            },
            "sotong-sos-ack" => WireMessage::SosAck {
                sender_id: f.text(&raw.sender_id, "senderId")?,
                target_id: f.text(&raw.target_id, "targetId")?,
                batch: f.text(&raw.batch, "batch")?,
                code: raw.code.clone().and_then(Slot::good),
                data: f.data(data)?,
            },
            other if IGNORED_TYPES.contains(&other) => WireMessage::Ignored { kind },
            _ => return Err(WireError::UnknownType(kind)),
        };
        Ok(msg)
    }

    /// Encodes the message as one CBOR frame (a map with definite lengths, as `cbor-x` and
    /// ciborium write it), straight into the output: `data` is copied once.
    pub fn encode(&self) -> Vec<u8> {
        let text = Item::Text;
        let mut m: Vec<(&str, Item)> = Vec::with_capacity(7);
        match self {
            WireMessage::Join {
                sender_id,
                supported_protocol_versions,
                peer_metadata,
            } => {
                m.push(("type", text("join")));
                m.push(("senderId", text(sender_id)));
                m.push((
                    "supportedProtocolVersions",
                    Item::Texts(supported_protocol_versions),
                ));
                if let Some(meta) = peer_metadata {
                    m.push(("peerMetadata", Item::Meta(meta)));
                }
            }
            WireMessage::Peer {
                sender_id,
                target_id,
                selected_protocol_version,
                peer_metadata,
            } => {
                m.push(("type", text("peer")));
                m.push(("senderId", text(sender_id)));
                m.push(("targetId", text(target_id)));
                m.push(("selectedProtocolVersion", text(selected_protocol_version)));
                if let Some(meta) = peer_metadata {
                    m.push(("peerMetadata", Item::Meta(meta)));
                }
            }
            WireMessage::Leave { sender_id } => {
                m.push(("type", text("leave")));
                m.push(("senderId", text(sender_id)));
            }
            WireMessage::Error {
                sender_id,
                target_id,
                message,
            } => {
                m.push(("type", text("error")));
                if let Some(s) = sender_id {
                    m.push(("senderId", text(s)));
                }
                if let Some(t) = target_id {
                    m.push(("targetId", text(t)));
                }
                m.push(("message", text(message)));
            }
            WireMessage::Request(d) | WireMessage::Sync(d) => {
                let kind = if matches!(self, WireMessage::Request(_)) {
                    "request"
                } else {
                    "sync"
                };
                m.push(("type", text(kind)));
                m.push(("senderId", text(&d.sender_id)));
                m.push(("targetId", text(&d.target_id)));
                m.push(("documentId", Item::Id(d.document_id)));
                m.push(("data", Item::Bytes(&d.data)));
            }
            WireMessage::DocUnavailable {
                sender_id,
                target_id,
                document_id,
            } => {
                m.push(("type", text("doc-unavailable")));
                m.push(("senderId", text(sender_id)));
                m.push(("targetId", text(target_id)));
                m.push(("documentId", Item::Id(*document_id)));
            }
            WireMessage::Rejected {
                sender_id,
                target_id,
                document_id,
                code,
                reason,
                heads,
            } => {
                m.push(("type", text("sotong-rejected")));
                m.push(("senderId", text(sender_id)));
                m.push(("targetId", text(target_id)));
                m.push(("documentId", Item::Id(*document_id)));
                m.push(("code", text(code)));
                m.push(("reason", text(reason)));
                m.push(("heads", Item::Heads(heads)));
            }
            WireMessage::SosBeacon {
                sender_id,
                batch,
                data,
            } => {
                m.push(("type", text("sotong-sos-beacon")));
                m.push(("senderId", text(sender_id)));
                m.push(("batch", text(batch)));
                m.push(("data", Item::Bytes(data)));
            }
            WireMessage::SosAck {
                sender_id,
                target_id,
                batch,
                code,
                data,
            } => {
                m.push(("type", text("sotong-sos-ack")));
                m.push(("senderId", text(sender_id)));
                m.push(("targetId", text(target_id)));
                m.push(("batch", text(batch)));
                if let Some(code) = code {
                    m.push(("code", text(code)));
                }
                m.push(("data", Item::Bytes(data)));
            }
            WireMessage::Ignored { kind } => m.push(("type", text(kind))),
        }
        let size: usize = m.iter().map(|(k, v)| k.len() + v.size_hint()).sum();
        let mut out = Vec::with_capacity(size + 16);
        let mut enc = Encoder::from(&mut out);
        // Writing into a Vec cannot fail.
        let _ = enc.push(Header::Map(Some(m.len())));
        for (key, value) in &m {
            let _ = enc.text(key, None);
            value.write(&mut enc);
        }
        out
    }
}

/// A value of an encoded message.
enum Item<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    Id(DocumentId),
    Texts(&'a [String]),
    Heads(&'a [ChangeHash]),
    Meta(&'a PeerMetadata),
}

impl Item<'_> {
    /// Roughly its encoded size, to allocate the frame once.
    fn size_hint(&self) -> usize {
        9 + match self {
            Item::Text(s) => s.len(),
            Item::Bytes(b) => b.len(),
            Item::Id(_) => 40,
            Item::Texts(l) => l.iter().map(|s| s.len() + 9).sum(),
            Item::Heads(h) => h.len() * 66,
            Item::Meta(m) => 32 + m.storage_id.as_ref().map_or(0, String::len),
        }
    }

    fn write(&self, enc: &mut Encoder<&mut Vec<u8>>) {
        // Writing into a Vec cannot fail.
        let _ = match self {
            Item::Text(s) => enc.text(s, None),
            Item::Bytes(b) => enc.bytes(b, None),
            Item::Id(id) => enc.text(&id.to_string(), None),
            Item::Texts(list) => enc
                .push(Header::Array(Some(list.len())))
                .and_then(|()| list.iter().try_for_each(|s| enc.text(s, None))),
            Item::Heads(heads) => enc.push(Header::Array(Some(heads.len()))).and_then(|()| {
                heads
                    .iter()
                    .try_for_each(|h| enc.text(&h.to_string(), None))
            }),
            Item::Meta(meta) => {
                let n = 1 + usize::from(meta.storage_id.is_some());
                let _ = enc.push(Header::Map(Some(n)));
                if let Some(s) = &meta.storage_id {
                    let _ = enc.text("storageId", None);
                    let _ = enc.text(s, None);
                }
                let _ = enc.text("isEphemeral", None);
                let simple = if meta.is_ephemeral {
                    simple::TRUE
                } else {
                    simple::FALSE
                };
                enc.push(Header::Simple(simple))
            }
        };
    }
}

/// A field as found in a frame: of the expected shape, or present but malformed.
#[derive(Debug, Clone)]
enum Slot<T> {
    Good(T),
    Bad,
}

impl<T> Slot<T> {
    fn good(self) -> Option<T> {
        match self {
            Slot::Good(v) => Some(v),
            Slot::Bad => None,
        }
    }
}

/// The fields of a message we know, read in any order; the first occurrence of a key wins.
#[derive(Debug, Default)]
struct RawMessage {
    kind: Option<Slot<String>>,
    sender_id: Option<Slot<String>>,
    target_id: Option<Slot<String>>,
    document_id: Option<Slot<String>>,
    selected_protocol_version: Option<Slot<String>>,
    message: Option<Slot<String>>,
    reason: Option<Slot<String>>,
    code: Option<Slot<String>>,
    batch: Option<Slot<String>>,
    supported_protocol_versions: Option<Slot<Vec<String>>>,
    heads: Option<Slot<Vec<ChangeHash>>>,
    peer_metadata: Option<Slot<PeerMetadata>>,
    data: Option<Slot<Vec<u8>>>,
}

/// Deepest nesting of skipped items; deeper frames are refused rather than recursed into.
const MAX_DEPTH: usize = 32;
/// Most entries in a list of protocol versions or heads: real peers send a handful, and a list
/// of millions of tiny items must not become millions of allocations.
const MAX_LIST_ITEMS: usize = 256;
/// Longest map key we look at; longer keys cannot be ours and are skipped.
const MAX_KEY_BYTES: usize = 64;

impl RawMessage {
    fn read(frame: &[u8]) -> Result<Self, WireError> {
        let mut cbor = Cbor {
            dec: Decoder::from(frame),
            len: frame.len(),
        };
        let entries = match cbor.pull_untagged()? {
            Header::Map(len) => len,
            other => {
                // Still CBOR? Then it is a value that is not a message.
                cbor.skip_body(other, 0)?;
                return Err(WireError::NotAMessage);
            }
        };
        let mut raw = RawMessage::default();
        cbor.entries(entries, |cbor, key| {
            let text = |slot: &mut Option<Slot<String>>, cbor: &mut Cbor| match slot {
                Some(_) => cbor.skip_item(1),
                None => {
                    *slot = Some(cbor.text_slot()?);
                    Ok(())
                }
            };
            match key {
                Some("type") => text(&mut raw.kind, cbor),
                Some("senderId") => text(&mut raw.sender_id, cbor),
                Some("targetId") => text(&mut raw.target_id, cbor),
                Some("documentId") => text(&mut raw.document_id, cbor),
                Some("selectedProtocolVersion") => text(&mut raw.selected_protocol_version, cbor),
                Some("message") => text(&mut raw.message, cbor),
                Some("reason") => text(&mut raw.reason, cbor),
                Some("code") => text(&mut raw.code, cbor),
                Some("batch") => text(&mut raw.batch, cbor),
                Some("supportedProtocolVersions") if raw.supported_protocol_versions.is_none() => {
                    raw.supported_protocol_versions = Some(cbor.list_slot(Some)?);
                    Ok(())
                }
                Some("heads") if raw.heads.is_none() => {
                    raw.heads = Some(cbor.list_slot(|h| h.parse().ok())?);
                    Ok(())
                }
                Some("peerMetadata") if raw.peer_metadata.is_none() => {
                    raw.peer_metadata = Some(cbor.peer_metadata()?);
                    Ok(())
                }
                Some("data") if raw.data.is_none() => {
                    raw.data = Some(cbor.bytes_slot()?);
                    Ok(())
                }
                _ => cbor.skip_item(1),
            }
        })?;
        Ok(raw)
    }
}

/// A CBOR item stream over one frame.
struct Cbor<'a> {
    dec: Decoder<&'a [u8]>,
    len: usize,
}

impl Cbor<'_> {
    fn pull(&mut self) -> Result<Header, WireError> {
        self.dec.pull().map_err(|_| WireError::NotCbor)
    }

    /// The next header, looking through tags (cbor-x tags typed arrays, for one).
    fn pull_untagged(&mut self) -> Result<Header, WireError> {
        loop {
            match self.pull()? {
                Header::Tag(_) => continue,
                other => return Ok(other),
            }
        }
    }

    fn remaining(&mut self) -> usize {
        self.len.saturating_sub(self.dec.offset())
    }

    /// Reads a byte or text string's content whose header was just pulled: a definite length
    /// is read straight into one buffer of that size, after checking the frame holds it.
    fn read_string(&mut self, len: Option<usize>, text: bool) -> Result<Vec<u8>, WireError> {
        if let Some(len) = len {
            if len > self.remaining() {
                return Err(WireError::NotCbor);
            }
            let mut out = vec![0; len];
            self.dec
                .read_exact(&mut out)
                .map_err(|_| WireError::NotCbor)?;
            return Ok(out);
        }
        // Indefinite length: definite segments of the same major type, then a break.
        let mut out = Vec::new();
        loop {
            match self.pull()? {
                Header::Break => return Ok(out),
                Header::Bytes(Some(n)) if !text => out.extend(self.read_string(Some(n), text)?),
                Header::Text(Some(n)) if text => out.extend(self.read_string(Some(n), text)?),
                _ => return Err(WireError::NotCbor),
            }
        }
    }

    fn read_text(&mut self, len: Option<usize>) -> Result<String, WireError> {
        String::from_utf8(self.read_string(len, true)?).map_err(|_| WireError::NotCbor)
    }

    /// Skips `len` bytes of string content without keeping them.
    fn skip_content(&mut self, len: usize) -> Result<(), WireError> {
        if len > self.remaining() {
            return Err(WireError::NotCbor);
        }
        let mut scratch = [0u8; 512];
        let mut left = len;
        while left > 0 {
            let n = left.min(scratch.len());
            self.dec
                .read_exact(&mut scratch[..n])
                .map_err(|_| WireError::NotCbor)?;
            left -= n;
        }
        Ok(())
    }

    fn skip_item(&mut self, depth: usize) -> Result<(), WireError> {
        let header = self.pull()?;
        self.skip_body(header, depth)
    }

    /// Skips what follows `header` without building anything.
    fn skip_body(&mut self, header: Header, depth: usize) -> Result<(), WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::NotCbor);
        }
        match header {
            Header::Bytes(Some(n)) | Header::Text(Some(n)) => self.skip_content(n),
            Header::Bytes(None) | Header::Text(None) => loop {
                match self.pull()? {
                    Header::Break => return Ok(()),
                    Header::Bytes(Some(n)) | Header::Text(Some(n)) => self.skip_content(n)?,
                    _ => return Err(WireError::NotCbor),
                }
            },
            Header::Array(len) => self.items(len, |cbor, h| cbor.skip_body(h, depth + 1)),
            Header::Map(len) => self.entries(len, |cbor, _| cbor.skip_item(depth + 1)),
            Header::Tag(_) => self.skip_item(depth + 1),
            Header::Break => Err(WireError::NotCbor),
            Header::Positive(_) | Header::Negative(_) | Header::Float(_) | Header::Simple(_) => {
                Ok(())
            }
        }
    }

    /// Calls `each` with the header of every item of an array of `len` items (or, for `None`,
    /// up to its break).
    fn items(
        &mut self,
        len: Option<usize>,
        mut each: impl FnMut(&mut Self, Header) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        match len {
            Some(n) => {
                // Every item takes a byte at least: a huge count ends at the frame's end.
                for _ in 0..n {
                    let h = self.pull()?;
                    each(self, h)?;
                }
                Ok(())
            }
            None => loop {
                match self.pull()? {
                    Header::Break => return Ok(()),
                    h => each(self, h)?,
                }
            },
        }
    }

    /// Calls `each` with every key of a map of `len` entries (the key, if it is short text),
    /// positioned on the entry's value, which `each` must consume.
    fn entries(
        &mut self,
        len: Option<usize>,
        mut each: impl FnMut(&mut Self, Option<&str>) -> Result<(), WireError>,
    ) -> Result<(), WireError> {
        let mut entry = |cbor: &mut Self, key: Header| -> Result<(), WireError> {
            let mut key = key;
            while let Header::Tag(_) = key {
                key = cbor.pull()?;
            }
            match key {
                Header::Text(Some(n)) if n <= MAX_KEY_BYTES => {
                    let k = cbor.read_text(Some(n))?;
                    each(cbor, Some(&k))
                }
                other => {
                    cbor.skip_body(other, 1)?;
                    each(cbor, None)
                }
            }
        };
        match len {
            Some(n) => {
                for _ in 0..n {
                    let key = self.pull()?;
                    entry(self, key)?;
                }
                Ok(())
            }
            None => loop {
                match self.pull()? {
                    Header::Break => return Ok(()),
                    key => entry(self, key)?,
                }
            },
        }
    }

    fn text_slot(&mut self) -> Result<Slot<String>, WireError> {
        match self.pull_untagged()? {
            Header::Text(len) => Ok(Slot::Good(self.read_text(len)?)),
            other => {
                self.skip_body(other, 1)?;
                Ok(Slot::Bad)
            }
        }
    }

    fn bytes_slot(&mut self) -> Result<Slot<Vec<u8>>, WireError> {
        match self.pull_untagged()? {
            Header::Bytes(len) => Ok(Slot::Good(self.read_string(len, false)?)),
            other => {
                self.skip_body(other, 1)?;
                Ok(Slot::Bad)
            }
        }
    }

    /// A list of texts, each turned into a `T` by `parse`; bad if any item is not, or if the
    /// list is longer than [`MAX_LIST_ITEMS`].
    fn list_slot<T>(
        &mut self,
        parse: impl Fn(String) -> Option<T>,
    ) -> Result<Slot<Vec<T>>, WireError> {
        let len = match self.pull_untagged()? {
            Header::Array(len) => len,
            other => {
                self.skip_body(other, 1)?;
                return Ok(Slot::Bad);
            }
        };
        let mut out = Some(Vec::new());
        self.items(len, |cbor, mut h| {
            while let Header::Tag(_) = h {
                h = cbor.pull()?;
            }
            let item = match h {
                Header::Text(len) => parse(cbor.read_text(len)?),
                other => {
                    cbor.skip_body(other, 2)?;
                    None
                }
            };
            out = match (out.take(), item) {
                (Some(mut list), Some(item)) if list.len() < MAX_LIST_ITEMS => {
                    list.push(item);
                    Some(list)
                }
                _ => None,
            };
            Ok(())
        })?;
        Ok(out.map_or(Slot::Bad, Slot::Good))
    }

    fn peer_metadata(&mut self) -> Result<Slot<PeerMetadata>, WireError> {
        let len = match self.pull_untagged()? {
            Header::Map(len) => len,
            other => {
                self.skip_body(other, 1)?;
                return Ok(Slot::Bad);
            }
        };
        let mut meta = PeerMetadata::default();
        self.entries(len, |cbor, key| match key {
            Some("storageId") if meta.storage_id.is_none() => {
                meta.storage_id = cbor.text_slot()?.good();
                Ok(())
            }
            Some("isEphemeral") => match cbor.pull_untagged()? {
                Header::Simple(simple::TRUE) => {
                    meta.is_ephemeral = true;
                    Ok(())
                }
                other => cbor.skip_body(other, 2),
            },
            _ => cbor.skip_item(2),
        })?;
        Ok(Slot::Good(meta))
    }
}

struct FieldReader<'a> {
    raw: &'a RawMessage,
    kind: &'a str,
}

impl FieldReader<'_> {
    fn bad(&self, field: &'static str) -> WireError {
        WireError::BadField {
            kind: self.kind.to_owned(),
            field,
        }
    }

    fn take<T: Clone>(&self, slot: &Option<Slot<T>>, field: &'static str) -> Result<T, WireError> {
        match slot {
            Some(Slot::Good(v)) => Ok(v.clone()),
            _ => Err(self.bad(field)),
        }
    }

    fn text(&self, slot: &Option<Slot<String>>, field: &'static str) -> Result<String, WireError> {
        self.take(slot, field)
    }

    fn document_id(&self) -> Result<DocumentId, WireError> {
        match &self.raw.document_id {
            Some(Slot::Good(s)) => s.parse().map_err(|_| self.bad("documentId")),
            _ => Err(self.bad("documentId")),
        }
    }

    fn heads(&self) -> Result<Vec<ChangeHash>, WireError> {
        self.take(&self.raw.heads, "heads")
    }

    fn data(&self, data: Option<Slot<Vec<u8>>>) -> Result<Vec<u8>, WireError> {
        match data {
            Some(Slot::Good(data)) => Ok(data),
            _ => Err(self.bad("data")),
        }
    }

    fn doc_message(&self, data: Option<Slot<Vec<u8>>>) -> Result<DocMessage, WireError> {
        let Some(Slot::Good(data)) = data else {
            return Err(self.bad("data"));
        };
        Ok(DocMessage {
            sender_id: self.text(&self.raw.sender_id, "senderId")?,
            target_id: self.text(&self.raw.target_id, "targetId")?,
            document_id: self.document_id()?,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value;

    fn round_trip(m: WireMessage) {
        assert_eq!(WireMessage::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn sos_messages_round_trip() {
        round_trip(WireMessage::SosBeacon {
            sender_id: "phone-1".into(),
            batch: "7".into(),
            data: br#"{"beacons":[],"after":3}"#.to_vec(),
        });
        round_trip(WireMessage::SosAck {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
            batch: "7".into(),
            code: None,
            data: br#"{"acked":[]}"#.to_vec(),
        });
        round_trip(WireMessage::SosAck {
            sender_id: "server".into(),
            target_id: "phone-1".into(),
            batch: "8".into(),
            code: Some("invalid_beacon".into()),
            data: Vec::new(),
        });
        // A beacon frame without its batch name is refused with the field named.
        let mut frame = Vec::new();
        ciborium::into_writer(
            &Value::Map(vec![
                (
                    Value::Text("type".into()),
                    Value::Text("sotong-sos-beacon".into()),
                ),
                (Value::Text("senderId".into()), Value::Text("p".into())),
                (Value::Text("data".into()), Value::Bytes(vec![1])),
            ]),
            &mut frame,
        )
        .unwrap();
        assert_eq!(
            WireMessage::decode(&frame),
            Err(WireError::BadField {
                kind: "sotong-sos-beacon".into(),
                field: "batch"
            })
        );
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

    fn cbor(v: &Value) -> Vec<u8> {
        let mut buf = Vec::new();
        ciborium::into_writer(v, &mut buf).unwrap();
        buf
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn sync_fields(doc: DocumentId) -> Vec<(Value, Value)> {
        vec![
            (t("type"), t("sync")),
            (t("senderId"), t("a")),
            (t("targetId"), t("b")),
            (t("documentId"), t(&doc.to_string())),
            (t("data"), Value::Bytes(vec![1, 2, 3])),
        ]
    }

    #[test]
    fn any_field_order_and_unknown_fields_are_accepted() {
        let doc = DocumentId::random();
        let expected = WireMessage::Sync(DocMessage {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
            data: vec![1, 2, 3],
        });
        let mut fields = sync_fields(doc);
        fields.reverse();
        // Unknown fields of every shape, nested, tagged, and with non-text keys.
        fields.insert(
            2,
            (
                t("extra"),
                Value::Array(vec![Value::Map(vec![(
                    Value::Integer(1.into()),
                    Value::Tag(9, Box::new(Value::Bytes(vec![0; 100]))),
                )])]),
            ),
        );
        fields.push((Value::Integer(7.into()), Value::Float(1.5)));
        fields.push((t(&"k".repeat(100)), Value::Bool(true)));
        assert_eq!(
            WireMessage::decode(&cbor(&Value::Map(fields))).unwrap(),
            expected
        );
    }

    #[test]
    fn indefinite_lengths_are_accepted() {
        use ciborium_ll::Encoder;
        let doc = DocumentId::random();
        let mut buf = Vec::new();
        let mut enc = Encoder::from(&mut buf);
        enc.push(Header::Map(None)).unwrap();
        for (k, v) in [("type", "sync"), ("senderId", "a"), ("targetId", "b")] {
            enc.text(k, None).unwrap();
            enc.text(v, Some(1)).unwrap();
        }
        enc.text("documentId", None).unwrap();
        enc.text(&doc.to_string(), Some(5)).unwrap();
        enc.text("data", None).unwrap();
        enc.bytes(&[1, 2, 3, 4, 5], Some(2)).unwrap();
        enc.push(Header::Break).unwrap();
        match WireMessage::decode(&buf).unwrap() {
            WireMessage::Sync(d) => {
                assert_eq!((d.sender_id.as_str(), d.data), ("a", vec![1, 2, 3, 4, 5]));
                assert_eq!(d.document_id, doc);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_fields_and_frames_get_precise_errors() {
        let doc = DocumentId::random();
        let bad = |field: &str, value: Value| {
            let mut fields = sync_fields(doc);
            for (k, v) in fields.iter_mut() {
                if *k == t(field) {
                    *v = value.clone();
                }
            }
            WireMessage::decode(&cbor(&Value::Map(fields)))
        };
        let bad_field = |field| {
            Err(WireError::BadField {
                kind: "sync".into(),
                field,
            })
        };
        assert_eq!(bad("data", t("not bytes")), bad_field("data"));
        assert_eq!(
            bad("senderId", Value::Integer(1.into())),
            bad_field("senderId")
        );
        assert_eq!(bad("targetId", Value::Array(vec![])), bad_field("targetId"));
        assert_eq!(bad("type", Value::Null), Err(WireError::NotAMessage));
        assert_eq!(
            WireMessage::decode(&cbor(&Value::Array(vec![t("type")]))),
            Err(WireError::NotAMessage)
        );
        // Truncated anywhere: not CBOR.
        let good = cbor(&Value::Map(sync_fields(doc)));
        for end in 1..good.len() {
            assert_eq!(WireMessage::decode(&good[..end]), Err(WireError::NotCbor));
        }
        // A length beyond the frame is refused before anything is allocated for it.
        let mut huge = good[..good.len() - 4].to_vec();
        huge.extend([0x5b, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(WireMessage::decode(&huge), Err(WireError::NotCbor));
        // Nesting past the limit, in a field we skip.
        let mut deep = Value::Null;
        for _ in 0..100 {
            deep = Value::Array(vec![deep]);
        }
        let mut fields = sync_fields(doc);
        fields.push((t("extra"), deep));
        assert_eq!(
            WireMessage::decode(&cbor(&Value::Map(fields))),
            Err(WireError::NotCbor)
        );
        // Lists are bounded: a join offering thousands of versions is refused, not stored.
        let join = |n: usize| {
            Value::Map(vec![
                (t("type"), t("join")),
                (t("senderId"), t("p")),
                (
                    t("supportedProtocolVersions"),
                    Value::Array(vec![t("1"); n]),
                ),
            ])
        };
        assert!(WireMessage::decode(&cbor(&join(3))).is_ok());
        assert_eq!(
            WireMessage::decode(&cbor(&join(10_000))),
            Err(WireError::BadField {
                kind: "join".into(),
                field: "supportedProtocolVersions"
            })
        );
    }

    #[test]
    fn encoding_is_what_a_cbor_value_map_encodes_to() {
        let doc = DocumentId::random();
        let sync = WireMessage::Sync(DocMessage {
            sender_id: "a".into(),
            target_id: "b".into(),
            document_id: doc,
            data: vec![1, 2, 3],
        });
        assert_eq!(sync.encode(), cbor(&Value::Map(sync_fields(doc))));
        let join = WireMessage::Join {
            sender_id: "p".into(),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
            }),
        };
        let expected = Value::Map(vec![
            (t("type"), t("join")),
            (t("senderId"), t("p")),
            (t("supportedProtocolVersions"), Value::Array(vec![t("1")])),
            (
                t("peerMetadata"),
                Value::Map(vec![(t("isEphemeral"), Value::Bool(true))]),
            ),
        ]);
        assert_eq!(join.encode(), cbor(&expected));
    }
}

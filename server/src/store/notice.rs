//! The `NOTIFY` payload by which an instance announces a stored chunk to the others on one
//! PostgreSQL database (`sync::feed` listens for it):
//! `<instance>:<document id>:<prev>:<seq>:<chunk in base64, or nothing>`.
//!
//! A small chunk travels inside the notification, so the other instances can apply it without
//! reading it back; `prev` (the document's highest sequence number before it) tells them
//! whether they hold everything before it. Larger chunks, and any gap, are read from the store.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use sotong_core::DocumentId;

/// The notification channel.
pub const CHANNEL: &str = "sotong_chunks";

/// Largest chunk carried inside a notification: PostgreSQL refuses payloads of 8000 bytes or
/// more, and base64 takes 4 bytes for 3.
pub const MAX_INLINE_BYTES: usize = 5_000;

/// A chunk stored by another instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The instance that stored it.
    pub from: String,
    /// Its document.
    pub id: DocumentId,
    /// The document's highest sequence number before this chunk (0 if none).
    pub prev: i64,
    /// The chunk's sequence number.
    pub seq: i64,
    /// The chunk, if small enough to travel along.
    pub bytes: Option<Vec<u8>>,
}

/// The payload announcing a chunk of `id` stored at `seq` after `prev`.
pub fn encode(from: &str, id: &DocumentId, prev: i64, seq: i64, bytes: &[u8]) -> String {
    let inline = if bytes.len() <= MAX_INLINE_BYTES {
        STANDARD_NO_PAD.encode(bytes)
    } else {
        String::new()
    };
    format!("{from}:{id}:{prev}:{seq}:{inline}")
}

/// Reads a payload; `None` if it is not one (a notification from other software, say).
pub fn parse(payload: &str) -> Option<Notice> {
    let mut parts = payload.splitn(5, ':');
    let from = parts.next()?.to_owned();
    let id = parts.next()?.parse().ok()?;
    let prev = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let inline = parts.next()?;
    let bytes = if inline.is_empty() {
        None
    } else {
        Some(STANDARD_NO_PAD.decode(inline).ok()?)
    };
    Some(Notice {
        from,
        id,
        prev,
        seq,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_chunk_travels_inside_and_a_large_one_does_not() {
        let id = DocumentId::random();
        let small = encode("sotong-server-ab", &id, 7, 9, b"chunk");
        assert_eq!(
            parse(&small),
            Some(Notice {
                from: "sotong-server-ab".into(),
                id,
                prev: 7,
                seq: 9,
                bytes: Some(b"chunk".to_vec()),
            })
        );
        let big = vec![1u8; MAX_INLINE_BYTES + 1];
        let payload = encode("x", &id, 0, 1, &big);
        assert!(payload.len() < 100);
        assert_eq!(parse(&payload).and_then(|n| n.bytes), None);
        let largest = encode(
            "sotong-server-abcdef012345",
            &id,
            i64::MAX,
            i64::MAX,
            &big[1..],
        );
        assert!(largest.len() < 8000, "{}", largest.len());
    }

    #[test]
    fn other_payloads_are_not_notices() {
        let id = DocumentId::random();
        for bad in [
            String::new(),
            "x".into(),
            format!("x:{id}"),
            format!("x:{id}:1:two:"),
            "x:nope:1:2:".to_string(),
            format!("x:{id}:1:2:!!!"),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }
}

//! Reading the changes carried by a sync message or a stored chunk. A chunk list may hold
//! concatenated change chunks, or a whole saved document (automerge sends one when the other
//! side has nothing yet); both become a list of [`Change`]s, in causal order.

use automerge::{Automerge, Change};

/// Magic bytes that start every Automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;

/// Why bytes are not Automerge chunks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// Truncated, bad magic bytes or bad length.
    #[error("malformed automerge chunk: {0}")]
    Malformed(&'static str),
    /// Framed correctly, but the content does not parse.
    #[error("automerge chunk does not parse: {0}")]
    Invalid(String),
}

/// Splits `bytes` into its chunks (each with its header).
pub fn split(mut bytes: &[u8]) -> Result<Vec<&[u8]>, ChunkError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 9 || bytes[..4] != MAGIC {
            return Err(ChunkError::Malformed("bad header"));
        }
        let (len, used) = read_uleb(&bytes[9..]).ok_or(ChunkError::Malformed("bad length"))?;
        let total = 9usize
            .checked_add(used)
            .and_then(|n| n.checked_add(len))
            .ok_or(ChunkError::Malformed("bad length"))?;
        if total > bytes.len() {
            return Err(ChunkError::Malformed("truncated"));
        }
        out.push(&bytes[..total]);
        bytes = &bytes[total..];
    }
    Ok(out)
}

fn read_uleb(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

/// Every change in `bytes`, in the order they are stored (causal for a saved document).
pub fn decode(bytes: &[u8]) -> Result<Vec<Change>, ChunkError> {
    let mut changes = Vec::new();
    for chunk in split(bytes)? {
        match chunk[8] {
            CHUNK_DOCUMENT => {
                let doc = Automerge::load(chunk).map_err(|e| ChunkError::Invalid(e.to_string()))?;
                changes.extend(doc.get_changes(&[]).into_iter().cloned());
            }
            CHUNK_CHANGE | CHUNK_COMPRESSED_CHANGE => changes
                .push(Change::try_from(chunk).map_err(|e| ChunkError::Invalid(e.to_string()))?),
            _ => return Err(ChunkError::Malformed("unknown chunk type")),
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::proposal::{self, ProposalEdit};

    #[test]
    fn reads_saved_documents_and_concatenated_changes() {
        let mut doc = proposal::create("t", "b", "c").unwrap();
        let heads = doc.get_heads();
        proposal::apply(&mut doc, &ProposalEdit::SetCategory("d".into())).unwrap();
        proposal::apply(&mut doc, &ProposalEdit::SetCategory("e".into())).unwrap();
        let saved = decode(&doc.save()).unwrap();
        assert_eq!(saved.len(), 3);
        let incremental = decode(&doc.save_after(&heads)).unwrap();
        assert_eq!(incremental.len(), 2);
        let mut both = doc.save();
        both.extend(doc.save_after(&heads));
        assert_eq!(decode(&both).unwrap().len(), 5);
    }

    #[test]
    fn refuses_garbage() {
        assert!(decode(b"hello world, not a chunk").is_err());
        let doc = proposal::create("t", "b", "c").unwrap().save();
        assert_eq!(
            decode(&doc[..doc.len() - 3]),
            Err(ChunkError::Malformed("truncated"))
        );
        let mut corrupt = doc.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert!(decode(&corrupt).is_err());
    }
}

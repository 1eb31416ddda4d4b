//! Reading the changes carried by a sync message or a stored chunk. A chunk list may hold
//! concatenated change chunks, or a whole saved document (automerge sends one when the other
//! side has nothing yet); both become a list of [`Change`]s, in causal order.
//!
//! Peers may deflate what they send: a compressed change chunk, or compressed columns in a
//! saved document. Automerge inflates those without a limit, so a few kilobytes could ask for
//! gigabytes. Before any chunk reaches automerge, [`decode`] inflates its compressed parts
//! into a sink, stopping at [`MAX_INFLATED_BYTES`] for the whole list, and refuses past it; it
//! also refuses lists of more than [`MAX_OPS`] operations before they are expanded.
//!
//! Residual risk: a saved document's columns are run-length encoded, so an uncompressed
//! document chunk of a few bytes can still describe millions of operations, which
//! `Automerge::load` builds before [`MAX_OPS`] can be counted (change chunks are counted by
//! automerge's parse, which walks but does not keep their operations). Automerge 0.6 offers
//! no hook to bound that; the frame limit bounds the input, not that expansion.

use std::io::Read;

use automerge::{Automerge, Change};

use crate::wire::MAX_FRAME_BYTES;

/// Most bytes the compressed parts of one chunk list may inflate to: four times the largest
/// frame, far above what a draft within its limits compresses to.
pub const MAX_INFLATED_BYTES: usize = 4 * MAX_FRAME_BYTES;
/// Most operations one chunk list may hold. A draft within its limits, with a long history,
/// holds well under this; each operation costs the change check around a hundred bytes.
pub const MAX_OPS: usize = 1_000_000;

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
    /// Compressed content would inflate past [`MAX_INFLATED_BYTES`].
    #[error("compressed automerge chunks inflate past the limit of {MAX_INFLATED_BYTES} bytes")]
    InflatesTooLarge,
    /// More operations than [`MAX_OPS`].
    #[error("automerge chunks hold more than {MAX_OPS} operations")]
    TooManyOps,
}

impl ChunkError {
    /// The refusal code a server sends for these chunks (see `schema::validate::codes`).
    pub fn code(&self) -> &'static str {
        use crate::schema::validate::codes;
        match self {
            ChunkError::InflatesTooLarge | ChunkError::TooManyOps => codes::TOO_LARGE,
            ChunkError::Malformed(_) | ChunkError::Invalid(_) => codes::UNREADABLE,
        }
    }
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
/// Refuses, before automerge reads them, chunks whose compressed parts inflate past
/// [`MAX_INFLATED_BYTES`]; refuses lists of more than [`MAX_OPS`] operations.
pub fn decode(bytes: &[u8]) -> Result<Vec<Change>, ChunkError> {
    decode_within(bytes, MAX_INFLATED_BYTES, MAX_OPS)
}

/// [`decode`] with its limits as arguments (tests use small ones).
fn decode_within(
    bytes: &[u8],
    max_inflated: usize,
    max_ops: usize,
) -> Result<Vec<Change>, ChunkError> {
    let chunks = split(bytes)?;
    let mut budget = max_inflated;
    for chunk in &chunks {
        budget -= inflated_size(chunk, budget)?;
    }
    let mut changes = Vec::new();
    let mut ops = 0usize;
    for chunk in chunks {
        match chunk[8] {
            CHUNK_DOCUMENT => {
                let doc = Automerge::load(chunk).map_err(|e| ChunkError::Invalid(e.to_string()))?;
                for change in doc.get_changes(&[]) {
                    ops = count_ops(ops, change, max_ops)?;
                    changes.push(change.clone());
                }
            }
            CHUNK_CHANGE | CHUNK_COMPRESSED_CHANGE => {
                let change =
                    Change::try_from(chunk).map_err(|e| ChunkError::Invalid(e.to_string()))?;
                ops = count_ops(ops, &change, max_ops)?;
                changes.push(change);
            }
            _ => return Err(ChunkError::Malformed("unknown chunk type")),
        }
    }
    Ok(changes)
}

fn count_ops(so_far: usize, change: &Change, max_ops: usize) -> Result<usize, ChunkError> {
    match so_far.checked_add(change.len()) {
        Some(n) if n <= max_ops => Ok(n),
        _ => Err(ChunkError::TooManyOps),
    }
}

/// A chunk's content after its header (`chunk` is one item of [`split`]).
fn body(chunk: &[u8]) -> Result<&[u8], ChunkError> {
    let (_, used) = read_uleb(&chunk[9..]).ok_or(ChunkError::Malformed("bad length"))?;
    Ok(&chunk[9 + used..])
}

/// How many bytes the compressed parts of `chunk` inflate to, refusing past `budget`.
fn inflated_size(chunk: &[u8], budget: usize) -> Result<usize, ChunkError> {
    match chunk[8] {
        CHUNK_COMPRESSED_CHANGE => inflate_within(body(chunk)?, budget),
        CHUNK_DOCUMENT => {
            let mut used = 0;
            for column in compressed_columns(body(chunk)?)? {
                used += inflate_within(column, budget - used)?;
            }
            Ok(used)
        }
        _ => Ok(0),
    }
}

/// Inflates raw deflate data into a sink, reading at most `budget + 1` bytes of output.
fn inflate_within(deflated: &[u8], budget: usize) -> Result<usize, ChunkError> {
    let limit = u64::try_from(budget).unwrap_or(u64::MAX).saturating_add(1);
    let mut inflater = flate2::read::DeflateDecoder::new(deflated).take(limit);
    let n = std::io::copy(&mut inflater, &mut std::io::sink())
        .map_err(|_| ChunkError::Invalid("compressed data does not inflate".into()))?;
    match usize::try_from(n) {
        Ok(n) if n <= budget => Ok(n),
        _ => Err(ChunkError::InflatesTooLarge),
    }
}

/// The data of every deflated column of a saved document's content, read from its column
/// metadata (format: actors, heads, change and operation column specs, then column data).
fn compressed_columns(body: &[u8]) -> Result<Vec<&[u8]>, ChunkError> {
    const DEFLATE_BIT: u64 = 0b1000;
    let mut at = 0usize;
    let uleb = |at: &mut usize| -> Result<usize, ChunkError> {
        let (v, used) = read_uleb(body.get(*at..).unwrap_or_default())
            .ok_or(ChunkError::Malformed("bad document columns"))?;
        *at += used;
        Ok(v)
    };
    let actors = uleb(&mut at)?;
    for _ in 0..actors {
        let len = uleb(&mut at)?;
        at = at
            .checked_add(len)
            .ok_or(ChunkError::Malformed("bad actor"))?;
    }
    let heads = uleb(&mut at)?;
    at = heads
        .checked_mul(32)
        .and_then(|n| n.checked_add(at))
        .ok_or(ChunkError::Malformed("bad heads"))?;
    let mut columns = Vec::new();
    for _ in 0..2 {
        let count = uleb(&mut at)?;
        for _ in 0..count {
            let spec = uleb(&mut at)? as u64;
            let len = uleb(&mut at)?;
            columns.push((spec & DEFLATE_BIT != 0, len));
        }
    }
    let mut out = Vec::new();
    for (deflated, len) in columns {
        let end = at
            .checked_add(len)
            .ok_or(ChunkError::Malformed("bad column"))?;
        let data = body
            .get(at..end)
            .ok_or(ChunkError::Malformed("truncated document columns"))?;
        if deflated {
            out.push(data);
        }
        at = end;
    }
    Ok(out)
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

    fn uleb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([0; 4]); // checksum: never reached, the chunk is refused before
        out.push(kind);
        uleb(body.len(), &mut out);
        out.extend(body);
        out
    }

    /// Raw deflate of `n` zero bytes: about a thousandth of `n`.
    fn bomb(n: usize) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..n >> 20 {
            enc.write_all(&zeros).unwrap();
        }
        enc.finish().unwrap()
    }

    #[test]
    fn deflate_bombs_are_refused_before_automerge_inflates_them() {
        let deflated = bomb(MAX_INFLATED_BYTES + (1 << 20));
        assert!(deflated.len() < 100 * 1024);
        let change = chunk(CHUNK_COMPRESSED_CHANGE, &deflated);
        assert_eq!(decode(&change), Err(ChunkError::InflatesTooLarge));

        // A saved document with one compressed column: no actors, no heads, one change
        // column (deflate bit set), no operation columns.
        let mut body = vec![0, 0, 1];
        uleb(0b1000 | 1, &mut body);
        uleb(deflated.len(), &mut body);
        body.push(0);
        body.extend(&deflated);
        assert_eq!(
            decode(&chunk(CHUNK_DOCUMENT, &body)),
            Err(ChunkError::InflatesTooLarge)
        );

        // The budget is for the whole list: two chunks each within it, not together.
        let half = chunk(
            CHUNK_COMPRESSED_CHANGE,
            &bomb(MAX_INFLATED_BYTES / 2 + (1 << 20)),
        );
        let mut both = half.clone();
        both.extend(&half);
        assert_eq!(decode(&both), Err(ChunkError::InflatesTooLarge));
        assert!(matches!(decode(&half), Err(ChunkError::Invalid(_))));
    }

    #[test]
    fn operations_are_counted_across_the_list() {
        let mut doc = proposal::create("title", "body", "c").unwrap();
        let heads = doc.get_heads();
        proposal::apply(&mut doc, &ProposalEdit::SetCategory("d".into())).unwrap();
        let saved = doc.save();
        let ops: usize = decode(&saved).unwrap().iter().map(Change::len).sum();
        assert!(decode_within(&saved, MAX_INFLATED_BYTES, ops).is_ok());
        assert_eq!(
            decode_within(&saved, MAX_INFLATED_BYTES, ops - 1),
            Err(ChunkError::TooManyOps)
        );
        let mut both = doc.save_after(&heads);
        both.extend(doc.save_after(&heads));
        assert_eq!(
            decode_within(&both, MAX_INFLATED_BYTES, 1),
            Err(ChunkError::TooManyOps)
        );
    }

    #[test]
    fn compressed_columns_of_real_documents_are_read() {
        // Large enough for automerge to deflate its columns and changes.
        let mut doc = proposal::create("t", &"본문 ".repeat(3_000), "c").unwrap();
        let saved = doc.save();
        let columns = compressed_columns(body(&saved).unwrap()).unwrap();
        assert!(!columns.is_empty());
        let inflated = inflated_size(&saved, MAX_INFLATED_BYTES).unwrap();
        assert!(inflated > 0);
        assert_eq!(decode(&saved).unwrap().len(), 1);
        let heads = doc.get_heads();
        proposal::apply(
            &mut doc,
            &ProposalEdit::insert(proposal::TextField::Body, 0, "x".repeat(2_000)),
        )
        .unwrap();
        let change = doc.get_last_local_change().unwrap().clone();
        // automerge deflates large changes when it encodes them: a compressed change chunk.
        let mut bytes = change.clone();
        let raw = bytes.bytes().into_owned();
        assert_eq!(raw[8], CHUNK_COMPRESSED_CHANGE);
        assert!(inflated_size(&raw, MAX_INFLATED_BYTES).unwrap() > raw.len());
        let decoded = decode(&raw).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].hash(), change.hash());
        assert_eq!(decode(&doc.save_after(&heads)).unwrap().len(), 1);
    }
}

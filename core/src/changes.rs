//! Reading the changes carried by a sync message or a stored chunk. A chunk list may hold
//! concatenated change chunks, or a whole saved document (automerge sends one when the other
//! side has nothing yet); both become a list of [`Change`]s, in causal order.
//!
//! Peers may deflate what they send (a compressed change chunk, or compressed columns in a
//! saved document) and run-length encode columns, so a few kilobytes could ask automerge,
//! which inflates and expands without a limit, for gigabytes. Before any chunk reaches
//! automerge, [`decode`] measures it: compressed parts are inflated into a sink, stopping at
//! [`MAX_INFLATED_BYTES`] for the whole list; operations and their references are counted
//! from the run-length-encoded columns without expanding them, stopping at [`MAX_OPS`].
//!
//! Residual cost: a list within both limits still makes automerge build up to [`MAX_OPS`]
//! operations (a few hundred bytes each while loading a saved document), and the compressed
//! parts are inflated twice (here, then by automerge).

use std::io::Read;

use automerge::{Automerge, Change};

use crate::wire::MAX_FRAME_BYTES;

/// Most bytes the compressed parts of one chunk list may inflate to: four times the largest
/// frame, far above what a draft within its limits compresses to.
pub const MAX_INFLATED_BYTES: usize = 4 * MAX_FRAME_BYTES;
/// Most operations one chunk list may hold, counting each reference between them
/// (predecessors, successors, dependencies) as one more. A draft within its limits, with a
/// long history, holds well under this; each operation costs the change check around a
/// hundred bytes.
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
    Ok(decode_within(bytes, MAX_INFLATED_BYTES, MAX_OPS)?.changes)
}

/// What [`decode_keeping_document`] read.
pub struct Decoded {
    /// Every change, as [`decode`] returns them.
    pub changes: Vec<Change>,
    /// The document, loaded, when the bytes are exactly one saved document: a caller that
    /// has nothing yet can take it as it is instead of having automerge load it again (the
    /// costliest step of receiving a new document).
    pub document: Option<Automerge>,
}

/// [`decode`], also keeping the document it loaded when the bytes are one saved document.
pub fn decode_keeping_document(bytes: &[u8]) -> Result<Decoded, ChunkError> {
    decode_within(bytes, MAX_INFLATED_BYTES, MAX_OPS)
}

/// Checks what [`decode`] checks before automerge reads anything (framing, inflated size,
/// operation count) without loading the changes: for chunks whose changes the caller already
/// holds, so that bad input is still refused.
pub fn check_framing(bytes: &[u8]) -> Result<(), ChunkError> {
    measure(&split(bytes)?, MAX_INFLATED_BYTES, MAX_OPS)
}

/// Measures every chunk of a list against the limits.
fn measure(chunks: &[&[u8]], max_inflated: usize, max_ops: usize) -> Result<(), ChunkError> {
    let (mut budget, mut claimed) = (max_inflated, 0usize);
    for chunk in chunks {
        let cost = cost(chunk, budget, max_ops - claimed)?;
        budget -= cost.inflated;
        claimed += cost.ops;
    }
    Ok(())
}

/// [`decode_keeping_document`] with its limits as arguments (tests use small ones).
fn decode_within(bytes: &[u8], max_inflated: usize, max_ops: usize) -> Result<Decoded, ChunkError> {
    let chunks = split(bytes)?;
    // Everything is measured before automerge reads anything.
    measure(&chunks, max_inflated, max_ops)?;
    let only_one = chunks.len() == 1;
    let mut changes = Vec::new();
    let mut document = None;
    let mut ops = 0usize;
    for chunk in chunks {
        match chunk[8] {
            CHUNK_DOCUMENT => {
                let doc = Automerge::load(chunk).map_err(|e| ChunkError::Invalid(e.to_string()))?;
                for change in doc.get_changes(&[]) {
                    ops = count_ops(ops, change, max_ops)?;
                    changes.push(change.clone());
                }
                if only_one {
                    document = Some(doc);
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
    Ok(Decoded { changes, document })
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

/// What a chunk costs before automerge reads it: how many bytes its compressed parts inflate
/// to, and at most how many operations it describes.
#[derive(Debug, PartialEq, Eq)]
struct Cost {
    inflated: usize,
    ops: usize,
}

/// Measures `chunk` without handing it to automerge, refusing as soon as its compressed parts
/// inflate past `budget` bytes or it describes more than `max_ops` operations.
fn cost(chunk: &[u8], budget: usize, max_ops: usize) -> Result<Cost, ChunkError> {
    let body = body(chunk)?;
    match chunk[8] {
        CHUNK_CHANGE => Ok(Cost {
            inflated: 0,
            ops: column_ops(&change_columns(body)?, max_ops)?,
        }),
        CHUNK_COMPRESSED_CHANGE => {
            // automerge inflates the whole change into memory too, right after.
            let inflated = inflate_to_vec(body, budget)?;
            Ok(Cost {
                inflated: inflated.len(),
                ops: column_ops(&change_columns(&inflated)?, max_ops)?,
            })
        }
        CHUNK_DOCUMENT => {
            let columns = document_columns(body)?;
            let mut inflated = 0;
            for column in columns.iter().filter(|c| c.deflated()) {
                inflated += inflate_within(column.data, budget - inflated)?;
            }
            Ok(Cost {
                inflated,
                ops: column_ops(&columns, max_ops)?,
            })
        }
        _ => Err(ChunkError::Malformed("unknown chunk type")),
    }
}

/// Inflates raw deflate data into a sink, reading at most `budget + 1` bytes of output.
fn inflate_within(deflated: &[u8], budget: usize) -> Result<usize, ChunkError> {
    let mut inflater = bounded_inflater(deflated, budget);
    let n = std::io::copy(&mut inflater, &mut std::io::sink()).map_err(|_| not_deflate())?;
    match usize::try_from(n) {
        Ok(n) if n <= budget => Ok(n),
        _ => Err(ChunkError::InflatesTooLarge),
    }
}

/// Inflates raw deflate data into memory, refusing past `budget` bytes.
fn inflate_to_vec(deflated: &[u8], budget: usize) -> Result<Vec<u8>, ChunkError> {
    let mut out = Vec::new();
    bounded_inflater(deflated, budget)
        .read_to_end(&mut out)
        .map_err(|_| not_deflate())?;
    if out.len() > budget {
        return Err(ChunkError::InflatesTooLarge);
    }
    Ok(out)
}

fn bounded_inflater(deflated: &[u8], budget: usize) -> impl Read + '_ {
    let limit = u64::try_from(budget).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::DeflateDecoder::new(deflated).take(limit)
}

fn not_deflate() -> ChunkError {
    ChunkError::Invalid("compressed data does not inflate".into())
}

/// One column of a change or document chunk.
struct Column<'a> {
    /// In the operation columns (not a document's change columns).
    ops: bool,
    spec: u64,
    data: &'a [u8],
}

impl Column<'_> {
    fn deflated(&self) -> bool {
        self.spec & 0b1000 != 0
    }

    /// The action column: one entry per operation, required by automerge for each.
    fn is_action(&self) -> bool {
        self.ops && self.spec >> 4 == 4
    }

    /// A group column: how many entries each row has in the columns that follow it.
    fn is_group(&self) -> bool {
        self.spec & 0b0111 == 0
    }
}

/// Reads the LEB128 fields of a chunk's content.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn bad() -> ChunkError {
        ChunkError::Malformed("bad chunk columns")
    }

    fn uleb(&mut self) -> Result<usize, ChunkError> {
        let (v, used) =
            read_uleb(self.bytes.get(self.at..).unwrap_or_default()).ok_or_else(Self::bad)?;
        self.at += used;
        Ok(v)
    }

    /// Skips a LEB128 number of any sign and size.
    fn skip_leb(&mut self) -> Result<(), ChunkError> {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let used = rest.iter().take(10).position(|b| b & 0x80 == 0);
        self.at += used.ok_or_else(Self::bad)? + 1;
        Ok(())
    }

    fn skip(&mut self, n: usize) -> Result<(), ChunkError> {
        self.at = self.at.checked_add(n).ok_or_else(Self::bad)?;
        Ok(())
    }

    /// Skips a length-prefixed byte string.
    fn skip_prefixed(&mut self) -> Result<(), ChunkError> {
        let len = self.uleb()?;
        self.skip(len)
    }

    /// Reads a column list (count, then spec and length of each) into `specs`.
    fn specs(&mut self, ops: bool, specs: &mut Vec<(bool, u64, usize)>) -> Result<(), ChunkError> {
        let count = self.uleb()?;
        for _ in 0..count {
            let spec = self.uleb()? as u64;
            let len = self.uleb()?;
            specs.push((ops, spec, len));
        }
        Ok(())
    }

    /// The data of each listed column, which follows in order.
    fn columns(mut self, specs: Vec<(bool, u64, usize)>) -> Result<Vec<Column<'a>>, ChunkError> {
        let mut out = Vec::with_capacity(specs.len());
        for (ops, spec, len) in specs {
            let end = self.at.checked_add(len).ok_or_else(Self::bad)?;
            let data = self.bytes.get(self.at..end).ok_or_else(Self::bad)?;
            out.push(Column { ops, spec, data });
            self.at = end;
        }
        Ok(out)
    }
}

/// The columns of a saved document's content: actors, heads, change and operation column
/// specs, then the columns' data (automerge's storage format).
fn document_columns(body: &[u8]) -> Result<Vec<Column<'_>>, ChunkError> {
    let mut c = Cursor { bytes: body, at: 0 };
    let actors = c.uleb()?;
    for _ in 0..actors {
        c.skip_prefixed()?;
    }
    let heads = c.uleb()?;
    c.skip(heads.checked_mul(32).ok_or_else(Cursor::bad)?)?;
    let mut specs = Vec::new();
    c.specs(false, &mut specs)?;
    c.specs(true, &mut specs)?;
    c.columns(specs)
}

/// The operation columns of a change's content: dependencies, actor, sequence number, start
/// op, time, message, other actors, column specs, then the columns' data.
fn change_columns(body: &[u8]) -> Result<Vec<Column<'_>>, ChunkError> {
    let mut c = Cursor { bytes: body, at: 0 };
    let deps = c.uleb()?;
    c.skip(deps.checked_mul(32).ok_or_else(Cursor::bad)?)?;
    c.skip_prefixed()?; // actor
    c.skip_leb()?; // seq
    c.skip_leb()?; // start op
    c.skip_leb()?; // time
    c.skip_prefixed()?; // message
    let others = c.uleb()?;
    for _ in 0..others {
        c.skip_prefixed()?;
    }
    let mut specs = Vec::new();
    c.specs(true, &mut specs)?;
    c.columns(specs)
}

/// At most how many items automerge builds for these columns: one per operation (the length
/// of the action column) plus one per reference in a group column (an operation's
/// predecessors or successors, a change's dependencies). Read run by run without expanding
/// anything: a run of a billion equal values takes a few bytes. Refuses past `max`.
fn column_ops(columns: &[Column<'_>], max: usize) -> Result<usize, ChunkError> {
    let mut total = 0usize;
    for column in columns {
        let measure = if column.is_action() {
            Measure::Count
        } else if column.is_group() {
            Measure::Sum
        } else {
            continue;
        };
        let left = max - total;
        total += if column.deflated() {
            // Bounded here too: change chunks are not measured by `inflate_within` first.
            let inflater = bounded_inflater(column.data, MAX_INFLATED_BYTES);
            rle(std::io::BufReader::new(inflater).bytes(), measure, left)?
        } else {
            rle(column.data.iter().map(|b| Ok(*b)), measure, left)?
        };
    }
    Ok(total)
}

/// What [`rle`] adds up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// How many values the column holds.
    Count,
    /// The sum of its values.
    Sum,
}

/// Measures an RLE-encoded column of unsigned integers: runs of a signed count, then one
/// value repeated (count > 0), that many literal values (count < 0), or a count of nulls
/// (count 0). Refuses as soon as the measure exceeds `max`.
fn rle(
    mut bytes: impl Iterator<Item = std::io::Result<u8>>,
    measure: Measure,
    max: usize,
) -> Result<usize, ChunkError> {
    let bad = || ChunkError::Malformed("bad column encoding");
    // One LEB128 number; `None` at the end of the column. Returns (magnitude, negative).
    let mut leb = |signed: bool| -> Result<Option<(u64, bool)>, ChunkError> {
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let Some(b) = bytes.next() else {
                return if i == 0 { Ok(None) } else { Err(bad()) };
            };
            let b = b.map_err(|_| not_deflate())?;
            value |= u64::from(b & 0x7f).checked_shl(7 * i).unwrap_or(0);
            if b & 0x80 == 0 {
                let shift = 7 * (i + 1);
                if signed && b & 0x40 != 0 && shift < 64 {
                    let v = (value | (!0u64 << shift)) as i64;
                    return Ok(Some((v.unsigned_abs(), true)));
                }
                return Ok(Some((value, signed && (value as i64) < 0)));
            }
        }
        Err(bad())
    };
    let big = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let mut total: usize = 0;
    while let Some((count, negative)) = leb(true)? {
        let count = big(count);
        if count == 0 {
            let nulls = big(leb(false)?.ok_or_else(bad)?.0);
            if measure == Measure::Count {
                total = total.saturating_add(nulls);
            }
        } else if negative {
            for _ in 0..count {
                let v = big(leb(false)?.ok_or_else(bad)?.0);
                total = total.saturating_add(if measure == Measure::Count { 1 } else { v });
                if total > max {
                    return Err(ChunkError::TooManyOps);
                }
            }
        } else {
            let v = big(leb(false)?.ok_or_else(bad)?.0);
            let add = match measure {
                Measure::Count => count,
                Measure::Sum => count.saturating_mul(v),
            };
            total = total.saturating_add(add);
        }
        if total > max {
            return Err(ChunkError::TooManyOps);
        }
    }
    Ok(total)
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
        let ops = cost(&saved, MAX_INFLATED_BYTES, MAX_OPS).unwrap().ops;
        assert!(ops >= decode(&saved).unwrap().iter().map(Change::len).sum());
        assert!(decode_within(&saved, MAX_INFLATED_BYTES, ops).is_ok());
        assert_eq!(
            decode_within(&saved, MAX_INFLATED_BYTES, ops - 1).map(|d| d.changes),
            Err(ChunkError::TooManyOps)
        );
        let mut both = doc.save_after(&heads);
        both.extend(doc.save_after(&heads));
        assert_eq!(
            decode_within(&both, MAX_INFLATED_BYTES, 1).map(|d| d.changes),
            Err(ChunkError::TooManyOps)
        );
    }

    #[test]
    fn one_saved_document_is_kept_loaded() {
        let mut doc = proposal::create("title", "body", "c").unwrap();
        let heads = doc.get_heads();
        proposal::apply(&mut doc, &ProposalEdit::SetCategory("d".into())).unwrap();
        let saved = doc.save();
        let kept = decode_keeping_document(&saved).unwrap();
        let loaded = kept.document.expect("the document, loaded");
        assert_eq!(loaded.get_heads(), doc.get_heads());
        assert_eq!(kept.changes.len(), doc.get_changes(&[]).len());
        // Change chunks, or a document followed by more, are not one document.
        let changes = doc.save_after(&heads);
        assert!(decode_keeping_document(&changes)
            .unwrap()
            .document
            .is_none());
        let mut more = saved.clone();
        more.extend(&changes);
        let both = decode_keeping_document(&more).unwrap();
        assert!(both.document.is_none());
        assert_eq!(both.changes.len(), kept.changes.len() + 1);
        // Framing alone: the same verdicts as decoding, for good and bad input.
        assert_eq!(check_framing(&more), Ok(()));
        assert_eq!(
            check_framing(&more[..more.len() - 1]),
            Err(ChunkError::Malformed("truncated"))
        );
        assert_eq!(
            check_framing(b"junk"),
            Err(ChunkError::Malformed("bad header"))
        );
    }

    #[test]
    fn compressed_columns_of_real_documents_are_read() {
        // Large enough for automerge to deflate its columns and changes.
        let mut doc = proposal::create("t", &"본문 ".repeat(3_000), "c").unwrap();
        let saved = doc.save();
        let columns = document_columns(body(&saved).unwrap()).unwrap();
        assert!(columns.iter().any(Column::deflated));
        let measured = cost(&saved, MAX_INFLATED_BYTES, MAX_OPS).unwrap();
        assert!(measured.inflated > 0);
        assert_eq!(measured.ops, decode(&saved).unwrap()[0].len());
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
        let measured = cost(&raw, MAX_INFLATED_BYTES, MAX_OPS).unwrap();
        assert!(measured.inflated > raw.len());
        assert_eq!(measured.ops, 2_000);
        let decoded = decode(&raw).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].hash(), change.hash());
        assert_eq!(decode(&doc.save_after(&heads)).unwrap().len(), 1);
    }

    fn sleb(n: i64, out: &mut Vec<u8>) {
        let mut n = n;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            let done = (n == 0 && byte & 0x40 == 0) || (n == -1 && byte & 0x40 != 0);
            out.push(if done { byte } else { byte | 0x80 });
            if done {
                return;
            }
        }
    }

    #[test]
    fn operation_counts_are_read_from_the_columns_without_expanding_them() {
        // Real chunks: the count read from the action column is the change's own, for
        // several actors, deletions, compressed and plain changes and whole documents.
        let mut a = proposal::create("title", "hello", "c").unwrap();
        let mut b = a.fork();
        proposal::apply(
            &mut b,
            &ProposalEdit::insert(proposal::TextField::Body, 5, "!"),
        )
        .unwrap();
        proposal::apply(
            &mut a,
            &ProposalEdit::Splice {
                field: proposal::TextField::Title,
                pos: 0,
                delete: 3,
                insert: "T".repeat(150),
            },
        )
        .unwrap();
        a.merge(&mut b).unwrap();
        proposal::apply(&mut a, &ProposalEdit::SetCategory("d".into())).unwrap();
        let mut all = 0;
        for change in a.get_changes(&[]) {
            let raw = change.clone().bytes().into_owned();
            // One per operation and one per predecessor.
            let items: usize = change
                .decode()
                .operations
                .iter()
                .map(|op| 1 + op.pred.len())
                .sum();
            all += items;
            assert_eq!(cost(&raw, MAX_INFLATED_BYTES, MAX_OPS).unwrap().ops, items);
        }
        // A document stores deletions as successors, and dependencies as references.
        let saved = a.save();
        let measured = cost(&saved, MAX_INFLATED_BYTES, MAX_OPS).unwrap().ops;
        assert!(
            measured >= all - 3 && measured <= all + 10,
            "{measured} for {all}"
        );

        // A run of a billion equal actions takes six bytes: refused before automerge walks
        // (a change) or builds (a document) a single operation.
        let mut action = Vec::new();
        sleb(1_000_000_000, &mut action);
        uleb(1, &mut action);
        let mut doc = vec![0, 0, 0, 1, 0x42];
        uleb(action.len(), &mut doc);
        doc.extend(&action);
        assert_eq!(
            decode(&chunk(CHUNK_DOCUMENT, &doc)),
            Err(ChunkError::TooManyOps)
        );
        let mut change = vec![0, 1, 0xaa, 1, 1, 0, 0, 0, 1, 0x42];
        uleb(action.len(), &mut change);
        change.extend(&action);
        assert_eq!(
            decode(&chunk(CHUNK_CHANGE, &change)),
            Err(ChunkError::TooManyOps)
        );
        // Literal runs and null runs count too.
        let mut literal = Vec::new();
        sleb(-3, &mut literal);
        literal.extend([1, 2, 3, 0]);
        uleb(7, &mut literal);
        let column = [Column {
            ops: true,
            spec: 0x42,
            data: &literal,
        }];
        assert_eq!(column_ops(&column, 100), Ok(10));
        assert_eq!(column_ops(&column, 9), Err(ChunkError::TooManyOps));
        // A group column counts its values' sum: one operation with a billion predecessors.
        let mut preds = Vec::new();
        sleb(1, &mut preds);
        uleb(1_000_000_000, &mut preds);
        let column = [Column {
            ops: true,
            spec: 7 << 4,
            data: &preds,
        }];
        assert_eq!(column_ops(&column, MAX_OPS), Err(ChunkError::TooManyOps));
    }
}

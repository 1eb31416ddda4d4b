//! Decoding a frame holds about one copy of its payload, never a tree of values many times
//! its size; encoding one allocates the frame once. Measured with a counting global
//! allocator, so this file holds a single test (others running meanwhile would be counted).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use ciborium::Value;
use sotong_core::wire::{DocMessage, WireMessage, MAX_FRAME_BYTES};
use sotong_core::DocumentId;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
    TOTAL.fetch_add(by, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as a new block: a realloc may copy.
        grew(new_size);
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated in total, and the peak of live bytes above the start, while `f` runs.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let start_live = LIVE.load(Relaxed);
    PEAK.store(start_live, Relaxed);
    let start_total = TOTAL.load(Relaxed);
    let out = f();
    let total = TOTAL.load(Relaxed) - start_total;
    let peak = PEAK.load(Relaxed) - start_live;
    (out, total, peak)
}

#[test]
fn decoding_holds_about_one_copy_of_the_frame() {
    // The largest `data` a frame may carry.
    let data_len = MAX_FRAME_BYTES - 256;
    let message = WireMessage::Sync(DocMessage {
        sender_id: "phone".into(),
        target_id: "server".into(),
        document_id: DocumentId::random(),
        data: (0..data_len).map(|i| i as u8).collect(),
    });
    let (frame, encode_total, _) = measure(|| message.encode());
    assert!(frame.len() <= MAX_FRAME_BYTES);
    // Encoding, too, writes the frame once.
    assert!(
        encode_total <= frame.len() + 1024,
        "encode allocated {encode_total} bytes"
    );
    let (decoded, total, peak) = measure(|| WireMessage::decode(&frame));
    assert_eq!(decoded.as_ref(), Ok(&message));
    drop(decoded);
    // One copy of `data` and a few small strings: a `ciborium::Value` tree took about three.
    let slack = 64 * 1024;
    assert!(
        total <= data_len + slack,
        "allocated {total} bytes for {data_len}"
    );
    assert!(peak <= data_len + slack, "peak {peak} bytes for {data_len}");
    // What the former decoder's first step alone cost, so this test can tell the two apart.
    let (value, value_total, _) = measure(|| ciborium::from_reader::<Value, _>(&frame[..]));
    drop(value);
    eprintln!(
        "8 MiB data: decode allocated {total} B (peak {peak} B); a Value tree {value_total} B"
    );
    assert!(value_total > total + data_len / 2);

    // An unknown field holding millions of one-byte items is skipped, not built: as values
    // it would take tens of bytes per item.
    let items = MAX_FRAME_BYTES - 1024;
    let mut frame = Vec::new();
    ciborium::into_writer(
        &Value::Map(vec![
            (Value::Text("type".into()), Value::Text("leave".into())),
            (Value::Text("senderId".into()), Value::Text("p".into())),
        ]),
        &mut frame,
    )
    .unwrap();
    // Rewrite the map header to three entries and append `"extra": [0, 0, …]`.
    frame[0] = 0xa3;
    ciborium::into_writer(&Value::Text("extra".into()), &mut frame).unwrap();
    frame.push(0x9a);
    frame.extend((items as u32).to_be_bytes());
    frame.resize(frame.len() + items, 0);
    let (decoded, total, peak) = measure(|| WireMessage::decode(&frame));
    assert_eq!(
        decoded,
        Ok(WireMessage::Leave {
            sender_id: "p".into()
        })
    );
    assert!(
        total <= slack,
        "allocated {total} bytes skipping {items} items"
    );
    assert!(peak <= slack);
    // (A `ciborium::Value` tree of this frame peaks at ~400 MB.)
}

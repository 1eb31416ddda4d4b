//! Randomly corrupted frames, sync messages and chunks: every decoder answers with an error
//! (or a valid value), never a panic. Seeded, so a failure reproduces.

use rand::{Rng, SeedableRng};
use sotong_core::automerge::sync::{self, SyncDoc};
use sotong_core::automerge::Automerge;
use sotong_core::schema::proposal::{self, ProposalEdit, TextField};
use sotong_core::schema::validate::check_changes;
use sotong_core::wire::{DocMessage, PeerMetadata, WireMessage};
use sotong_core::{changes, DocumentId};

fn samples() -> Vec<Vec<u8>> {
    let mut doc = proposal::create("제목", "본문 body", "c").unwrap();
    let base = doc.get_heads();
    proposal::apply(
        &mut doc,
        &ProposalEdit::Splice {
            field: TextField::Body,
            pos: 2,
            delete: 1,
            insert: "x".into(),
        },
    )
    .unwrap();
    let mut state = sync::State::new();
    let first = doc.generate_sync_message(&mut state).unwrap().encode();
    let frame = WireMessage::Sync(DocMessage {
        sender_id: "a".into(),
        target_id: "b".into(),
        document_id: DocumentId::random(),
        data: first.clone(),
    })
    .encode();
    // Large enough for automerge to deflate: a compressed change chunk, and a saved document
    // with compressed columns, for the bounded inflation to read.
    let mut big = proposal::create("t", &"본문 ".repeat(400), "c").unwrap();
    let before = big.get_heads();
    proposal::apply(
        &mut big,
        &ProposalEdit::insert(TextField::Body, 0, "x".repeat(600)),
    )
    .unwrap();
    let compressed_change = big.save_after(&before);
    let other_frames = [
        WireMessage::Join {
            sender_id: "p".into(),
            supported_protocol_versions: vec!["1".into(), "2".into()],
            peer_metadata: Some(PeerMetadata {
                storage_id: Some("s".into()),
                is_ephemeral: true,
            }),
        },
        WireMessage::Rejected {
            sender_id: "s".into(),
            target_id: "p".into(),
            document_id: DocumentId::random(),
            code: "too_long".into(),
            reason: "r".into(),
            heads: doc.get_heads(),
        },
    ]
    .map(|m| m.encode());
    let mut all = vec![doc.save(), doc.save_after(&base), first, frame];
    all.extend([big.save(), compressed_change]);
    all.extend(other_frames);
    all
}

fn mutate(rng: &mut impl Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    match rng.gen_range(0..4) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                if !out.is_empty() {
                    let i = rng.gen_range(0..out.len());
                    out[i] = rng.gen();
                }
            }
        }
        1 => out.truncate(rng.gen_range(0..=out.len())),
        2 => {
            let i = rng.gen_range(0..=out.len());
            let extra: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
            out.splice(i..i, extra);
        }
        _ => out = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
    }
    out
}

#[test]
fn corrupted_input_gives_errors_not_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_128);
    let samples = samples();
    let target = proposal::create("t", "b", "c").unwrap();
    for _ in 0..20_000 {
        let sample = &samples[rng.gen_range(0..samples.len())];
        let bytes = mutate(&mut rng, sample);
        let _ = WireMessage::decode(&bytes);
        if let Ok(found) = changes::decode(&bytes) {
            // What the server does with a message's changes: check, then apply what passed.
            if check_changes(&target, &found).is_ok() {
                let _ = target.fork().apply_changes(found.clone());
            }
            if check_changes(&Automerge::new(), &found).is_ok() {
                let _ = Automerge::new().apply_changes(found);
            }
        }
        if let Ok(msg) = sync::Message::decode(&bytes) {
            let mut all_pass = true;
            for chunk in msg.changes.iter() {
                match changes::decode(chunk) {
                    Ok(found) => all_pass &= check_changes(&target, &found).is_ok(),
                    Err(_) => all_pass = false,
                }
            }
            if all_pass {
                let mut doc = target.fork();
                let _ = doc.receive_sync_message(&mut sync::State::new(), msg);
            }
        }
    }
}

//! One WebSocket connection speaking the automerge-repo protocol for one authenticated device.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, SinkExt, StreamExt};
use sotong_core::wire::{PeerMetadata, WireMessage, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use tokio::sync::mpsc;

use super::hub::{ConnId, Hub, HubError, Requester};
use crate::store::AccountId;

/// Frames queued for one connection before it counts as too slow.
const OUTBOX_FRAMES: usize = 1024;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Serves one connection until the peer leaves or the socket closes.
pub async fn serve(socket: WebSocket, hub: Arc<Hub>, account: AccountId) {
    let conn: ConnId = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<Vec<u8>>(OUTBOX_FRAMES);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let mut peer_id: Option<String> = None;
    let mut closing = hub.closing();
    loop {
        let frame = tokio::select! {
            frame = stream.next() => match frame {
                Some(frame) => frame,
                None => break,
            },
            _ = closing.wait_for(|c| *c) => break,
        };
        let bytes = match frame {
            Ok(Message::Binary(b)) => b,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(Message::Text(_)) => {
                send(
                    &outbox,
                    error(&hub, peer_id.as_deref(), "frames must be binary CBOR"),
                );
                continue;
            }
            Ok(_) => continue, // ping/pong are answered by axum
        };
        if bytes.len() > MAX_FRAME_BYTES {
            let msg = format!(
                "message of {} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes",
                bytes.len()
            );
            send(&outbox, error(&hub, peer_id.as_deref(), &msg));
            continue;
        }
        let msg = match WireMessage::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                send(&outbox, error(&hub, peer_id.as_deref(), &e.to_string()));
                continue;
            }
        };
        match (msg, peer_id.as_deref()) {
            (
                WireMessage::Join {
                    sender_id,
                    supported_protocol_versions,
                    ..
                },
                None,
            ) => {
                if !supported_protocol_versions
                    .iter()
                    .any(|v| v == PROTOCOL_VERSION)
                {
                    send(
                        &outbox,
                        error(&hub, Some(&sender_id), "unsupported protocol version"),
                    );
                    break;
                }
                send(
                    &outbox,
                    WireMessage::Peer {
                        sender_id: hub.peer_id().to_owned(),
                        target_id: sender_id.clone(),
                        selected_protocol_version: PROTOCOL_VERSION.to_owned(),
                        peer_metadata: Some(PeerMetadata {
                            storage_id: None,
                            is_ephemeral: false,
                        }),
                    },
                );
                hub.join(conn, account, &sender_id, &outbox);
                peer_id = Some(sender_id);
            }
            (WireMessage::Join { .. }, Some(p)) => {
                send(&outbox, error(&hub, Some(p), "already joined"));
            }
            (_, None) => {
                send(&outbox, error(&hub, None, "send \"join\" first"));
            }
            (m @ (WireMessage::Request(_) | WireMessage::Sync(_)), Some(p)) => {
                let (d, is_request) = match m {
                    WireMessage::Request(d) => (d, true),
                    WireMessage::Sync(d) => (d, false),
                    _ => continue,
                };
                let who = Requester {
                    conn,
                    peer_id: p,
                    account,
                    outbox: &outbox,
                };
                // A panic inside automerge must cost this message, not the connection (or the
                // in-memory document, which is dropped and reloaded from the store).
                let handled = AssertUnwindSafe(hub.handle(&who, &d, is_request))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        hub.forget(&d.document_id);
                        Err(HubError::Internal)
                    });
                match handled {
                    Ok(replies) => {
                        for r in replies {
                            send(&outbox, r);
                        }
                    }
                    Err(e) => {
                        tracing::error!(doc = %d.document_id, error = %e, "sync failed");
                        send(
                            &outbox,
                            error(
                                &hub,
                                Some(p),
                                "the server could not process this document now; retry later",
                            ),
                        );
                    }
                }
            }
            (WireMessage::Leave { .. }, Some(_)) => break,
            (WireMessage::Ignored { .. }, Some(_)) => {}
            (WireMessage::Error { message, .. }, Some(_)) => {
                tracing::info!(%message, "peer reported an error");
            }
            (_, Some(p)) => {
                send(
                    &outbox,
                    error(&hub, Some(p), "unexpected message type from a client"),
                );
            }
        }
    }
    drop(outbox);
    hub.disconnect(conn).await;
    let _ = writer.await;
}

fn error(hub: &Hub, target: Option<&str>, message: &str) -> WireMessage {
    WireMessage::Error {
        sender_id: Some(hub.peer_id().to_owned()),
        target_id: target.map(str::to_owned),
        message: message.to_owned(),
    }
}

fn send(outbox: &mpsc::Sender<Vec<u8>>, msg: WireMessage) {
    if outbox.try_send(msg.encode()).is_err() {
        tracing::warn!("outgoing queue full; dropping the connection's reply");
    }
}

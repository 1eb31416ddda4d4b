//! One WebSocket session with the server: connect and join, send and receive automerge-repo
//! messages, ping, and notice silence. No document logic lives here.

use std::time::Duration;

use automerge::sync;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::api::Api;
use crate::client::error::ClientError;
use crate::wire::{DocMessage, PeerMetadata, WireMessage, PROTOCOL_VERSION};
use crate::DocumentId;

/// How long connecting and joining may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A joined sync session.
pub(super) struct Transport {
    socket: Socket,
    me: String,
    server: String,
    /// When the server last sent anything (a message, a ping or a pong).
    last_heard: Instant,
}

impl Transport {
    /// Opens the WebSocket with the device's token and joins as peer `me`.
    pub(super) async fn connect(api: &Api, token: &str, me: String) -> Result<Self, ClientError> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(api, token, me))
            .await
            .map_err(|_| ClientError::TimedOut)?
    }

    async fn connect_inner(api: &Api, token: &str, me: String) -> Result<Self, ClientError> {
        let url = api.sync_url()?;
        let mut request = url.as_str().into_client_request()?;
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Internal("token is not a valid header".into()))?;
        request.headers_mut().insert("authorization", auth);
        // No Nagle: sync messages are small and latency-bound (40 ms delayed-ACK stalls).
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(resp)
                    if resp.status().as_u16() == 401 =>
                {
                    ClientError::Unauthorized("the server refused this device's token".into())
                }
                other => other.into(),
            })?;
        let mut t = Transport {
            socket,
            me,
            server: String::new(),
            last_heard: Instant::now(),
        };
        t.send(&WireMessage::Join {
            sender_id: t.me.clone(),
            supported_protocol_versions: vec![PROTOCOL_VERSION.to_owned()],
            peer_metadata: Some(PeerMetadata {
                storage_id: Some(t.me.clone()),
                is_ephemeral: false,
            }),
        })
        .await?;
        match t.recv().await? {
            WireMessage::Peer { sender_id, .. } => t.server = sender_id,
            WireMessage::Error { message, .. } => {
                return Err(ClientError::Server { status: 0, message })
            }
            _ => return Err(ClientError::Protocol("unexpected answer to join".into())),
        }
        Ok(t)
    }

    /// Sends one protocol message.
    pub(super) async fn send(&mut self, msg: &WireMessage) -> Result<(), ClientError> {
        Ok(self
            .socket
            .send(Message::Binary(msg.encode().into()))
            .await?)
    }

    /// Sends an Automerge sync message about `id` (as a `request` if the device lacks it).
    pub(super) async fn send_doc(
        &mut self,
        id: DocumentId,
        msg: sync::Message,
        request: bool,
    ) -> Result<(), ClientError> {
        let d = DocMessage {
            sender_id: self.me.clone(),
            target_id: self.server.clone(),
            document_id: id,
            data: msg.encode(),
        };
        let wire = if request {
            WireMessage::Request(d)
        } else {
            WireMessage::Sync(d)
        };
        self.send(&wire).await
    }

    /// Sends a batch of SOS beacons (`data`: the JSON body) named `batch`.
    pub(super) async fn send_sos(
        &mut self,
        batch: String,
        data: Vec<u8>,
    ) -> Result<(), ClientError> {
        let msg = WireMessage::SosBeacon {
            sender_id: self.me.clone(),
            batch,
            data,
        };
        self.send(&msg).await
    }

    /// The server's next message. Cancel-safe: nothing is lost if the future is dropped.
    pub(super) async fn recv(&mut self) -> Result<WireMessage, ClientError> {
        loop {
            let frame = self.socket.next().await;
            if matches!(frame, Some(Ok(_))) {
                self.last_heard = Instant::now();
            }
            match frame {
                Some(Ok(Message::Binary(b))) => {
                    return WireMessage::decode(&b)
                        .map_err(|e| ClientError::Protocol(e.to_string()))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClientError::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    })
                }
                None => {
                    return Err(ClientError::Closed {
                        code: None,
                        reason: String::new(),
                    })
                }
                // Pings are answered by the WebSocket layer; pongs only count as life.
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Pings the server (its pong, like any frame, resets [`Transport::silent_for`]).
    pub(super) async fn ping(&mut self) -> Result<(), ClientError> {
        Ok(self.socket.send(Message::Ping(Vec::new().into())).await?)
    }

    /// How long the server has sent nothing.
    pub(super) fn silent_for(&self) -> Duration {
        self.last_heard.elapsed()
    }

    /// Leaves politely and closes the socket; errors are moot at this point.
    pub(super) async fn close(mut self) {
        let leave = WireMessage::Leave {
            sender_id: self.me.clone(),
        };
        if self.send(&leave).await.is_ok() {
            let _ = self.socket.close(None).await;
        }
    }
}

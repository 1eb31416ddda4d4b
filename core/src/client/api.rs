//! The server's HTTPS API as the phone uses it: one-time codes, registration, the list of the
//! account's documents, and the SOS beacon and event routes.

use serde::{Deserialize, Serialize};

use super::error::ClientError;
use crate::sos::{Beacon, Feedback, IncidentId, ServerEvent};
use crate::DocumentId;

/// Installs ring as rustls' process-wide crypto provider (once; later calls are no-ops).
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A thin typed wrapper over the server's JSON routes.
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: url::Url,
}

#[derive(Deserialize)]
pub(crate) struct Registration {
    pub account_id: i64,
    pub device_id: i64,
    pub token: String,
    pub expires_at: i64,
}

#[derive(Deserialize)]
struct DocumentList {
    documents: Vec<RemoteDocument>,
}

#[derive(Deserialize)]
struct RemoteDocument {
    id: String,
}

/// The body of `POST /v1/sos/beacons` (and of a `sotong-sos-beacon` frame).
#[derive(Serialize)]
pub(crate) struct BeaconBatch<'a> {
    pub beacons: &'a [Beacon],
    /// The last event id the phone has: the answer holds only later events.
    pub after: i64,
}

/// The server holds every beacon of `incident` with seq 1..=`up_to_seq`.
#[derive(Debug, Deserialize)]
pub(crate) struct BeaconAck {
    pub incident: IncidentId,
    pub up_to_seq: u32,
}

/// The answer to `POST /v1/sos/beacons`, sent once the beacons are durably stored.
#[derive(Debug, Deserialize)]
pub(crate) struct BeaconAnswer {
    pub acked: Vec<BeaconAck>,
    #[serde(default)]
    pub events: Vec<ServerEvent>,
    /// The id of the last of `events` (older servers do not send it).
    #[serde(default)]
    pub last_event_id: Option<i64>,
}

/// One event of an incident's long-poll, with its server-wide increasing id.
#[derive(Debug, Deserialize)]
pub(crate) struct NumberedEvent {
    pub id: i64,
    pub event: ServerEvent,
}

/// The answer to `POST /v1/sos/sms-channel`: the gateway's number and this device's key.
#[derive(Deserialize)]
pub(crate) struct SmsChannelAnswer {
    pub number: String,
    pub key_id: u32,
    /// base64url, 32 bytes.
    pub key: String,
}

#[derive(Deserialize)]
struct EventList {
    events: Vec<NumberedEvent>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

#[derive(Serialize)]
struct CodeRequest<'a> {
    phone: &'a str,
}

#[derive(Serialize)]
struct RegisterRequest<'a> {
    phone: &'a str,
    code: &'a str,
    device_name: &'a str,
}

impl Api {
    pub(crate) fn new(server_url: &str) -> Result<Self, ClientError> {
        install_crypto_provider();
        let base = url::Url::parse(server_url)
            .map_err(|e| ClientError::InvalidInput(format!("server url: {e}")))?;
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(&base) => {}
            "http" => {
                return Err(ClientError::InsecureServer {
                    host: base.host_str().unwrap_or_default().to_owned(),
                })
            }
            _ => {
                return Err(ClientError::InvalidInput(
                    "server url must start with https:// (or http:// to this machine)".into(),
                ))
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| ClientError::Internal(format!("http client: {e}")))?;
        Ok(Self { http, base })
    }

    pub(crate) fn base(&self) -> &url::Url {
        &self.base
    }

    fn url(&self, path: &str) -> Result<url::Url, ClientError> {
        self.base
            .join(path)
            .map_err(|e| ClientError::InvalidInput(format!("server url: {e}")))
    }

    /// The WebSocket URL of the sync endpoint.
    pub(crate) fn sync_url(&self) -> Result<url::Url, ClientError> {
        let mut url = self.url("/v1/sync")?;
        let scheme = if self.base.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        url.set_scheme(scheme)
            .map_err(|_| ClientError::Internal("cannot build the sync url".into()))?;
        Ok(url)
    }

    pub(crate) async fn request_code(&self, phone: &str) -> Result<(), ClientError> {
        let resp = self
            .http
            .post(self.url("/v1/auth/code")?)
            .json(&CodeRequest { phone })
            .send()
            .await?;
        check(resp).await.map(|_| ())
    }

    pub(crate) async fn register(
        &self,
        phone: &str,
        code: &str,
        device_name: &str,
    ) -> Result<Registration, ClientError> {
        let resp = self
            .http
            .post(self.url("/v1/auth/register")?)
            .json(&RegisterRequest {
                phone,
                code,
                device_name,
            })
            .send()
            .await?;
        Ok(check(resp).await?.json().await?)
    }

    /// Ids of the documents the account may sync.
    pub(crate) async fn documents(&self, token: &str) -> Result<Vec<DocumentId>, ClientError> {
        let resp = self
            .http
            .get(self.url("/v1/documents")?)
            .bearer_auth(token)
            .send()
            .await?;
        let list: DocumentList = check(resp).await?.json().await?;
        list.documents
            .iter()
            .map(|d| {
                d.id.parse().map_err(|_| {
                    ClientError::Internal("server sent a malformed document id".into())
                })
            })
            .collect()
    }
}

impl Api {
    /// Sends SOS beacons; answers once the server has durably stored them, with the
    /// incidents' events after event id `after`.
    pub(crate) async fn sos_beacons(
        &self,
        token: &str,
        beacons: &[Beacon],
        after: i64,
    ) -> Result<BeaconAnswer, ClientError> {
        let resp = self
            .http
            .post(self.url("/v1/sos/beacons")?)
            .bearer_auth(token)
            .json(&BeaconBatch { beacons, after })
            .send()
            .await?;
        Ok(check(resp).await?.json().await?)
    }

    /// Sends the person's feedback on a closed incident (409 while it is open).
    pub(crate) async fn sos_feedback(
        &self,
        token: &str,
        incident: &IncidentId,
        feedback: &Feedback,
    ) -> Result<(), ClientError> {
        let resp = self
            .http
            .post(self.url(&format!("/v1/sos/incidents/{incident}/feedback"))?)
            .bearer_auth(token)
            .json(feedback)
            .send()
            .await?;
        check(resp).await.map(|_| ())
    }

    /// Provisions (or fetches) this device's SMS key and the gateway's number.
    pub(crate) async fn sos_sms_channel(
        &self,
        token: &str,
    ) -> Result<SmsChannelAnswer, ClientError> {
        let resp = self
            .http
            .post(self.url("/v1/sos/sms-channel")?)
            .bearer_auth(token)
            .send()
            .await?;
        Ok(check(resp).await?.json().await?)
    }

    /// Long-polls an incident's dispatch events after event id `after`, waiting up to
    /// `wait` (at most 30 s, the server's limit) for one.
    pub(crate) async fn sos_events(
        &self,
        token: &str,
        incident: &IncidentId,
        after: i64,
        wait: std::time::Duration,
    ) -> Result<Vec<NumberedEvent>, ClientError> {
        let wait = wait.min(std::time::Duration::from_secs(30));
        let mut url = self.url(&format!("/v1/sos/incidents/{incident}/events"))?;
        url.query_pairs_mut()
            .append_pair("after", &after.to_string())
            .append_pair("wait", &wait.as_secs().to_string());
        let resp = self
            .http
            .get(url)
            .bearer_auth(token)
            // The client's 30 s limit would cut a full wait short.
            .timeout(wait + std::time::Duration::from_secs(15))
            .send()
            .await?;
        let list: EventList = check(resp).await?.json().await?;
        Ok(list.events)
    }
}

/// Whether `url` names this machine, where plain HTTP never crosses a network.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let message = resp
        .json::<ErrorBody>()
        .await
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    Err(match status.as_u16() {
        401 | 403 => ClientError::Unauthorized(message),
        400 | 422 => ClientError::InvalidInput(message),
        404 => ClientError::NotFound(message),
        code => ClientError::Server {
            status: code,
            message,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_only_for_loopback() {
        for ok in [
            "https://sotong.example.kr",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:80",
        ] {
            assert!(Api::new(ok).is_ok(), "{ok}");
        }
        for insecure in [
            "http://sotong.example.kr",
            "http://10.0.0.2:8080",
            "http://[fe80::1]",
        ] {
            assert!(
                matches!(Api::new(insecure), Err(ClientError::InsecureServer { .. })),
                "{insecure}"
            );
        }
        assert!(matches!(
            Api::new("ftp://127.0.0.1"),
            Err(ClientError::InvalidInput(_))
        ));
    }
}

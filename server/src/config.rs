//! Server configuration: where data lives, what development allows, and the knobs of
//! registration and tokens.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use sotong_core::clock::{Clock, SystemClock};

/// Everything a server instance needs to know at start.
#[derive(Clone)]
pub struct Config {
    /// Directory of the SQLite store (`<data_dir>/sotong.db`), used when `database_url` is
    /// not set.
    pub data_dir: PathBuf,
    /// `postgres://…`: use PostgreSQL instead of SQLite. `sslmode=require` for TLS.
    pub database_url: Option<String>,
    /// PEM file of the certificate authorities trusted for PostgreSQL TLS, instead of the
    /// Mozilla roots.
    pub database_ca_file: Option<PathBuf>,
    /// Development mode: allows the log notifier, which writes one-time codes to the log.
    /// Without it [`serve`](crate::serve) refuses to start on development settings.
    pub dev: bool,
    /// Server-wide secret mixed into the hashes of phone numbers, codes and client
    /// addresses. Every instance sharing a database must use the same one; changing it
    /// orphans every account. Never empty: `serve` refuses an empty pepper.
    pub pepper: Vec<u8>,
    /// Reverse proxies whose `X-Forwarded-For` is believed: the client is the rightmost
    /// address in it that is not one of these. Empty: the header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Lifetime of a bearer token.
    pub token_ttl: Duration,
    /// Lifetime of a one-time code.
    pub code_ttl: Duration,
    /// Wrong attempts after which a code is dead.
    pub code_max_attempts: u32,
    /// Codes issued per phone number per hour.
    pub codes_per_phone_per_hour: u32,
    /// Codes issued per client address per hour.
    pub codes_per_client_per_hour: u32,
    /// Lifetime of a WebSocket ticket.
    pub ticket_ttl: Duration,
    /// Largest JSON request body accepted, in bytes.
    pub max_json_body: usize,
    /// Wall-clock time for expiries and rate-limit windows (a manual clock in tests).
    pub clock: Arc<dyn Clock>,
    /// Sync limits: memory budget, per-account quotas, rates and keep-alive.
    pub sync: SyncLimits,
    /// A staff session unused this long ends (seconds; default 30 min).
    pub staff_idle_timeout_secs: u64,
    /// A staff session ends this long after login, used or not (seconds; default 12 h).
    pub staff_session_lifetime_secs: u64,
    /// Failed logins of one name within the window that lock it (default 10).
    pub staff_lockout_threshold: u32,
    /// The window failed logins are counted in (seconds; default 15 min).
    pub staff_lockout_window_secs: u64,
    /// How long a locked name stays locked (seconds; default 15 min).
    pub staff_lockout_secs: u64,
    /// Failed logins from one client address (IPv6: one /64), whatever the names, within the
    /// window that lock the address for `staff_lockout_secs` (default 100; against password
    /// spraying across many names).
    pub staff_lockout_address_threshold: u32,
    /// SOS: regions, SMS gateway, retention.
    pub sos: SosConfig,
}

/// SOS settings (issue 7).
#[derive(Clone)]
pub struct SosConfig {
    /// Dispatch regions (the embedded ones unless `--regions-file`).
    pub regions: Arc<crate::sos::regions::Regions>,
    /// The SMS gateway's webhook secret (`--sms-gateway-secret`); no webhook without it.
    pub sms_gateway_secret: Option<Vec<u8>>,
    /// The number phones text (`--sms-gateway-number`); no SMS channel without it.
    pub sms_gateway_number: Option<String>,
    /// Days after close before an incident's trail and messages are purged.
    pub retention_days: u32,
    /// How often the purge runs.
    pub purge_interval: Duration,
    /// How often an idle dispatcher feed sends a heartbeat comment.
    pub feed_heartbeat: Duration,
    /// The dispatch map's tile server (`--map-tiles`); none: a coordinate grid.
    pub map_tiles: Option<crate::console::map_tiles::MapTiles>,
}

impl Default for SosConfig {
    fn default() -> Self {
        Self {
            // The embedded file is tested to parse; empty regions would route all to unrouted.
            regions: Arc::new(crate::sos::regions::Regions::embedded().unwrap_or_default()),
            sms_gateway_secret: None,
            sms_gateway_number: None,
            retention_days: 30,
            purge_interval: Duration::from_secs(3600),
            feed_heartbeat: Duration::from_secs(15),
            map_tiles: None,
        }
    }
}

/// What the sync hub and its connections may use, whatever clients do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLimits {
    /// Estimated bytes of loaded documents kept in memory (`--memory-budget`, in MiB).
    pub memory_budget: usize,
    /// Documents one account may own.
    pub documents_per_account: u64,
    /// Bytes of stored chunks one account may own.
    pub bytes_per_account: u64,
    /// Sustained messages per second on one connection.
    pub messages_per_sec: u32,
    /// Messages one connection may send at once above that rate.
    pub message_burst: u32,
    /// Open sync connections per account.
    pub connections_per_account: u32,
    /// Frames queued for a peer before it counts as too slow and is closed.
    pub outbox_frames: usize,
    /// How often the server pings a connection.
    pub ping_interval: Duration,
    /// A connection that sends nothing (not even a pong) for this long is dropped.
    pub idle_timeout: Duration,
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            // Leaves half of a 2 GiB container to connections, buffers and the allocator.
            memory_budget: 1024 * 1024 * 1024,
            documents_per_account: 10_000,
            bytes_per_account: 256 * 1024 * 1024,
            messages_per_sec: 200,
            message_burst: 2_000,
            connections_per_account: 16,
            outbox_frames: 256,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
        }
    }
}

impl Config {
    /// Production defaults with SQLite in `data_dir`. The pepper is empty and `dev` is off:
    /// set a pepper (and a notifier) before serving (`main` does).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database_url: None,
            database_ca_file: None,
            dev: false,
            pepper: Vec::new(),
            trusted_proxies: Vec::new(),
            token_ttl: Duration::from_secs(90 * 24 * 3600),
            code_ttl: Duration::from_secs(10 * 60),
            code_max_attempts: 5,
            codes_per_phone_per_hour: 5,
            codes_per_client_per_hour: 20,
            ticket_ttl: Duration::from_secs(60),
            max_json_body: 64 * 1024,
            clock: Arc::new(SystemClock),
            sync: SyncLimits::default(),
            staff_idle_timeout_secs: 30 * 60,
            staff_session_lifetime_secs: 12 * 3600,
            staff_lockout_threshold: 10,
            staff_lockout_window_secs: 15 * 60,
            staff_lockout_secs: 15 * 60,
            staff_lockout_address_threshold: 100,
            sos: SosConfig::default(),
        }
    }

    /// Development mode (the log notifier) with a fixed test pepper, SQLite in `data_dir`.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            dev: true,
            pepper: b"sotong-test-pepper".to_vec(),
            ..Self::new(data_dir)
        }
    }

    /// Now, in Unix seconds, by this configuration's clock.
    pub fn now_secs(&self) -> i64 {
        self.clock.now_unix_millis().div_euclid(1000)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new("./sotong-data")
    }
}

// By hand, so that neither the pepper nor a password in the database URL reaches a log.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("database_ca_file", &self.database_ca_file)
            .field("dev", &self.dev)
            .field("pepper", &"<redacted>")
            .field("trusted_proxies", &self.trusted_proxies)
            .field("token_ttl", &self.token_ttl)
            .field("code_ttl", &self.code_ttl)
            .field("code_max_attempts", &self.code_max_attempts)
            .field("codes_per_phone_per_hour", &self.codes_per_phone_per_hour)
            .field("codes_per_client_per_hour", &self.codes_per_client_per_hour)
            .field("ticket_ttl", &self.ticket_ttl)
            .field("max_json_body", &self.max_json_body)
            .field("sync", &self.sync)
            .field("staff_idle_timeout_secs", &self.staff_idle_timeout_secs)
            .field(
                "staff_session_lifetime_secs",
                &self.staff_session_lifetime_secs,
            )
            .field("staff_lockout_threshold", &self.staff_lockout_threshold)
            .field("staff_lockout_window_secs", &self.staff_lockout_window_secs)
            .field("staff_lockout_secs", &self.staff_lockout_secs)
            .field(
                "staff_lockout_address_threshold",
                &self.staff_lockout_address_threshold,
            )
            .field("sos_retention_days", &self.sos.retention_days)
            .field(
                "sms_gateway_secret",
                &self.sos.sms_gateway_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

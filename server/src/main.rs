//! `sotong-server`: the command line around `sotong_server::serve`, and the administration
//! commands (`staff …`, `audit export`) whose logic is in `sotong_server::staff::admin_cli`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use rand::RngCore;
use sotong_server::client_ip::parse_trusted_proxy;
use sotong_server::staff::admin_cli::{self, AddStaff, AdminError, ExportFormat, PasswordSource};
use sotong_server::store::open_store;
use sotong_server::{serve, Config};

/// Sotong's sync and API server. Without a subcommand it serves; `staff` and `audit` are
/// administration commands on the same store (--data-dir or --database-url).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Development mode: one-time codes go to the log (no SMS/e-mail notifier is built yet,
    /// so the server does not start without it) and a pepper is generated in the data
    /// directory if none is given.
    #[arg(long, env = "SOTONG_DEV")]
    dev: bool,
    /// Directory of the SQLite store (and, with --dev, of the generated pepper file).
    #[arg(
        long,
        env = "SOTONG_DATA_DIR",
        default_value = "./sotong-data",
        global = true
    )]
    data_dir: PathBuf,
    /// Use PostgreSQL (`postgres://user@host/db`) instead of SQLite; add `?sslmode=require`
    /// for TLS (certificate and host name verified).
    #[arg(long, env = "SOTONG_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// PEM file of the certificate authorities trusted for PostgreSQL TLS (default: the
    /// Mozilla roots).
    #[arg(long, env = "SOTONG_DATABASE_CA_FILE", global = true)]
    database_ca_file: Option<PathBuf>,
    /// File holding the pepper, the secret mixed into phone-number and code hashes (at
    /// least 16 bytes; the same on every instance of one database). `SOTONG_PEPPER` may
    /// hold it instead. Required unless --dev.
    #[arg(long, env = "SOTONG_PEPPER_FILE")]
    pepper_file: Option<PathBuf>,
    /// Reverse proxies (IP addresses or CIDR networks, comma-separated or repeated) whose
    /// `X-Forwarded-For` header names the client, for per-client rate limits.
    #[arg(long, env = "SOTONG_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_trusted_proxy)]
    trusted_proxy: Vec<IpNet>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "SOTONG_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// Lifetime of device tokens, in seconds (default 90 days).
    #[arg(long, env = "SOTONG_TOKEN_TTL_SECS")]
    token_ttl_secs: Option<u64>,
    /// Most one-time codes one phone number may request per hour.
    #[arg(long, env = "SOTONG_CODES_PER_PHONE_PER_HOUR")]
    codes_per_phone_per_hour: Option<u32>,
    /// Most one-time codes one client address may request per hour (SMS pumping guard).
    #[arg(long, env = "SOTONG_CODES_PER_CLIENT_PER_HOUR")]
    codes_per_client_per_hour: Option<u32>,
    /// Memory for loaded documents, in MiB (estimated cost; default 1024, for a 2 GiB container).
    #[arg(long, env = "SOTONG_MEMORY_BUDGET")]
    memory_budget: Option<usize>,
    /// Documents one account may own.
    #[arg(long, env = "SOTONG_DOCUMENTS_PER_ACCOUNT")]
    documents_per_account: Option<u64>,
    /// Stored document bytes one account may own, in MiB.
    #[arg(long, env = "SOTONG_STORAGE_PER_ACCOUNT")]
    storage_per_account: Option<u64>,
    /// Sustained sync messages per second per connection (bursts of ten times as many).
    #[arg(long, env = "SOTONG_MESSAGES_PER_SEC")]
    messages_per_sec: Option<u32>,
    /// Open sync connections per account.
    #[arg(long, env = "SOTONG_CONNECTIONS_PER_ACCOUNT")]
    connections_per_account: Option<u32>,
    /// Drop a sync connection silent (not even a pong) for this many seconds (pings at a third).
    #[arg(long, env = "SOTONG_IDLE_TIMEOUT_SECS")]
    idle_timeout_secs: Option<u64>,
    /// Write the bound address (`127.0.0.1:PORT`) to this file once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// A staff session unused this many seconds ends (default 1800).
    #[arg(long, env = "SOTONG_STAFF_IDLE_TIMEOUT_SECS")]
    staff_idle_timeout_secs: Option<u64>,
    /// A staff session ends this many seconds after login (default 43200, 12 h).
    #[arg(long, env = "SOTONG_STAFF_SESSION_LIFETIME_SECS")]
    staff_session_lifetime_secs: Option<u64>,
    /// Failed staff logins of one name within the window that lock it (default 10).
    #[arg(long, env = "SOTONG_STAFF_LOCKOUT_THRESHOLD")]
    staff_lockout_threshold: Option<u32>,
    /// The window failed staff logins are counted in, seconds (default 900).
    #[arg(long, env = "SOTONG_STAFF_LOCKOUT_WINDOW_SECS")]
    staff_lockout_window_secs: Option<u64>,
    /// How long a locked staff login name stays locked, seconds (default 900).
    #[arg(long, env = "SOTONG_STAFF_LOCKOUT_SECS")]
    staff_lockout_secs: Option<u64>,
    /// Failed staff logins from one client address (any names) within the window that lock
    /// the address (default 100).
    #[arg(long, env = "SOTONG_STAFF_LOCKOUT_ADDRESS_THRESHOLD")]
    staff_lockout_address_threshold: Option<u32>,
    /// SOS dispatch regions, a GeoJSON FeatureCollection of polygons named by their
    /// `region` property (default: the embedded approximate Seoul, Busan and Gyeonggi).
    #[arg(long, env = "SOTONG_REGIONS_FILE")]
    regions_file: Option<PathBuf>,
    /// The SMS gateway's webhook secret (HMAC-SHA256 of each webhook body); without it the
    /// webhook answers 503. Prefer the environment variable to the command line.
    #[arg(long, env = "SOTONG_SMS_GATEWAY_SECRET", hide_env_values = true)]
    sms_gateway_secret: Option<String>,
    /// The number phones text their SOS to when they have no data network.
    #[arg(long, env = "SOTONG_SMS_GATEWAY_NUMBER")]
    sms_gateway_number: Option<String>,
    /// Days after an SOS incident is closed before its trail and messages are purged
    /// (default 30; the incident's outcome and the audit log stay).
    #[arg(long, env = "SOTONG_SOS_RETENTION_DAYS")]
    sos_retention_days: Option<u32>,
    /// The dispatch map's tile URL template, e.g. `https://{s}.tile.example.org/{z}/{x}/{y}.png`
    /// (default none: positions on a coordinate grid, nothing loaded from outside). The
    /// console's CSP then allows images from that origin only.
    #[arg(long, env = "SOTONG_MAP_TILES")]
    map_tiles: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Staff accounts: add, disable, enable, totp, reset-password, list.
    #[command(subcommand)]
    Staff(StaffCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
enum StaffCommand {
    /// Adds a staff member. The password is read from the first line of stdin, or of
    /// --password-file, or generated and printed (--generate-password).
    Add {
        /// Login name (3-64 of a-z 0-9 . _ -).
        username: String,
        /// Name shown in the console and the audit log.
        #[arg(long)]
        name: String,
        /// A role: admin, agency_officer or dispatcher; repeat for several. Each --scope
        /// after it (an agency code for officers, a region code for dispatchers) scopes it.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Scope of the --role before it; repeat for several agencies or regions.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Also set up a TOTP second factor (the otpauth:// URI is printed once).
        #[arg(long)]
        totp: bool,
        /// Read the password from the first line of this file.
        #[arg(long, conflicts_with = "generate_password")]
        password_file: Option<PathBuf>,
        /// Generate a password and print it once.
        #[arg(long)]
        generate_password: bool,
    },
    /// Disables a member: no login, and their sessions end.
    Disable {
        /// Login name.
        username: String,
    },
    /// Lets a disabled member log in again.
    Enable {
        /// Login name.
        username: String,
    },
    /// Gives a member a new TOTP secret (the otpauth:// URI is printed once), or removes
    /// their second factor with --remove; ends their sessions.
    Totp {
        /// Login name.
        username: String,
        /// Remove the second factor instead.
        #[arg(long)]
        remove: bool,
    },
    /// Replaces a member's password (stdin, --password-file or --generate-password) and
    /// ends their sessions.
    ResetPassword {
        /// Login name.
        username: String,
        /// Read the password from the first line of this file.
        #[arg(long, conflicts_with = "generate_password")]
        password_file: Option<PathBuf>,
        /// Generate a password and print it once.
        #[arg(long)]
        generate_password: bool,
    },
    /// Lists members: username, name, grants, disabled, TOTP.
    List,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Writes the audit log to stdout, oldest first.
    Export {
        /// Only entries from this time on: RFC 3339 (2026-11-29T09:00:00Z) or Unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// jsonl (one JSON object per line) or csv.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Jsonl,
    Csv,
}

#[derive(Debug, thiserror::Error)]
enum MainError {
    #[error("{0}")]
    Serve(#[from] sotong_server::ServeError),
    #[error("{0}")]
    Pepper(String),
    #[error("regions file {0}")]
    Regions(String),
    #[error("{0}")]
    MapTiles(String),
    #[error("{0}")]
    Admin(#[from] AdminError),
    #[error("store: {0}")]
    Store(#[from] sotong_server::store::StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MainError {
    let what = what.into();
    move |source| MainError::Io { what, source }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(sotong_server::log_filter::from_env())
        .with_writer(std::io::stderr)
        .init();
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    let result = match args.command {
        Some(_) => match admin(args, &matches).await {
            // The reader of stdout went away (`… | head`): nothing is wrong.
            Err(MainError::Admin(AdminError::Io { source, .. }))
                if source.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                Ok(())
            }
            other => other,
        },
        None => run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sotong-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `staff …` and `audit export`: on the store the serving flags name.
async fn admin(args: Args, matches: &ArgMatches) -> Result<(), MainError> {
    let mut config = Config::new(&args.data_dir);
    config.database_url = args.database_url;
    config.database_ca_file = args.database_ca_file;
    let store = open_store(&config).await?;
    let store = store.as_ref();
    let now = config.now_secs();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let source = |file: Option<PathBuf>, generate: bool| match (file, generate) {
        (Some(path), _) => PasswordSource::File(path),
        (None, true) => PasswordSource::Generate,
        (None, false) => {
            use std::io::IsTerminal as _;
            if std::io::stdin().is_terminal() {
                eprint!("password (the terminal shows it; prefer --password-file): ");
            }
            PasswordSource::Stdin
        }
    };
    match args.command {
        Some(Command::Staff(StaffCommand::Add {
            username,
            name,
            totp,
            password_file,
            generate_password,
            ..
        })) => {
            let grants =
                admin_cli::pair_grants(&indexed(matches, "roles"), &indexed(matches, "scopes"))?;
            let add = AddStaff {
                username,
                display_name: name,
                grants,
                password: source(password_file, generate_password),
                totp,
            };
            admin_cli::add(store, now, add, &mut input, &mut out).await?;
        }
        Some(Command::Staff(StaffCommand::Disable { username })) => {
            admin_cli::disable(store, now, &username, &mut out).await?;
        }
        Some(Command::Staff(StaffCommand::Enable { username })) => {
            admin_cli::enable(store, now, &username, &mut out).await?;
        }
        Some(Command::Staff(StaffCommand::Totp { username, remove })) => {
            admin_cli::set_totp(store, now, &username, remove, &mut out).await?;
        }
        Some(Command::Staff(StaffCommand::ResetPassword {
            username,
            password_file,
            generate_password,
        })) => {
            let source = source(password_file, generate_password);
            admin_cli::reset_password(store, now, &username, &source, &mut input, &mut out).await?;
        }
        Some(Command::Staff(StaffCommand::List)) => admin_cli::list(store, &mut out).await?,
        Some(Command::Audit(AuditCommand::Export { since, format })) => {
            let since = since.as_deref().map(admin_cli::parse_since).transpose()?;
            let format = match format {
                Format::Jsonl => ExportFormat::Jsonl,
                Format::Csv => ExportFormat::Csv,
            };
            admin_cli::export(store, now, since, format, &mut out).await?;
        }
        None => {}
    }
    Ok(())
}

/// The values of `staff add`'s argument `id` with their positions on the command line, so
/// that each --scope pairs with the --role before it.
fn indexed(matches: &ArgMatches, id: &str) -> Vec<(usize, String)> {
    let Some(add) = matches
        .subcommand_matches("staff")
        .and_then(|m| m.subcommand_matches("add"))
    else {
        return Vec::new();
    };
    match (add.indices_of(id), add.get_many::<String>(id)) {
        (Some(indices), Some(values)) => indices.zip(values.cloned()).collect(),
        _ => Vec::new(),
    }
}

async fn run(args: Args) -> Result<(), MainError> {
    let mut config = Config::new(&args.data_dir);
    config.dev = args.dev;
    apply_sync_limits(&args, &mut config.sync);
    apply_staff_policy(&args, &mut config);
    config.database_url = args.database_url;
    config.database_ca_file = args.database_ca_file;
    config.trusted_proxies = args.trusted_proxy;
    if let Some(path) = &args.regions_file {
        let text = std::fs::read_to_string(path)
            .map_err(io_err(format!("cannot read {}", path.display())))?;
        let regions = sotong_server::sos::regions::Regions::from_geojson(&text)
            .map_err(|e| MainError::Regions(format!("{}: {e}", path.display())))?;
        config.sos.regions = std::sync::Arc::new(regions);
    }
    config.sos.sms_gateway_secret = args
        .sms_gateway_secret
        .filter(|s| !s.is_empty())
        .map(String::into_bytes);
    config.sos.sms_gateway_number = args.sms_gateway_number.filter(|s| !s.is_empty());
    if let Some(template) = args.map_tiles.as_deref().filter(|s| !s.is_empty()) {
        config.sos.map_tiles = Some(
            sotong_server::console::map_tiles::MapTiles::parse(template)
                .map_err(|e| MainError::MapTiles(e.to_string()))?,
        );
    }
    if let Some(days) = args.sos_retention_days {
        config.sos.retention_days = days;
    }
    if let Some(secs) = args.token_ttl_secs {
        config.token_ttl = Duration::from_secs(secs);
    }
    if let Some(n) = args.codes_per_phone_per_hour {
        config.codes_per_phone_per_hour = n;
    }
    if let Some(n) = args.codes_per_client_per_hour {
        config.codes_per_client_per_hour = n;
    }
    // Without --dev the server refuses to start anyway (no production notifier yet): say
    // that first rather than asking for a pepper.
    if !config.dev {
        return Err(sotong_server::ServeError::NoNotifier.into());
    }
    let env_pepper = std::env::var("SOTONG_PEPPER").ok();
    config.pepper = load_pepper(
        env_pepper.as_deref(),
        args.pepper_file.as_deref(),
        config.dev.then_some(args.data_dir.as_path()),
    )?;
    if config.dev
        && config.database_url.is_some()
        && env_pepper.is_none()
        && args.pepper_file.is_none()
    {
        tracing::warn!(
            "no pepper given: using the pepper file of the data directory; every instance on \
             this database must use the same pepper"
        );
    }

    let listener = tokio::net::TcpListener::bind(&args.bind)
        .await
        .map_err(io_err(format!("cannot listen on {}", args.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(io_err("cannot read the bound address"))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving plain HTTP on a non-loopback address; put TLS in front");
    }
    let handle = serve(listener, config).await?;
    println!("listening on http://{addr}");
    if let Some(path) = &args.port_file {
        write_atomically(path, format!("{addr}\n").as_bytes())
            .map_err(io_err(format!("cannot write {}", path.display())))?;
    }
    tracing::info!(%addr, "listening");
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

fn apply_staff_policy(args: &Args, config: &mut Config) {
    if let Some(secs) = args.staff_idle_timeout_secs {
        config.staff_idle_timeout_secs = secs.max(1);
    }
    if let Some(secs) = args.staff_session_lifetime_secs {
        config.staff_session_lifetime_secs = secs.max(1);
    }
    if let Some(n) = args.staff_lockout_threshold {
        config.staff_lockout_threshold = n.max(1);
    }
    if let Some(secs) = args.staff_lockout_window_secs {
        config.staff_lockout_window_secs = secs.max(1);
    }
    if let Some(secs) = args.staff_lockout_secs {
        config.staff_lockout_secs = secs;
    }
    if let Some(n) = args.staff_lockout_address_threshold {
        config.staff_lockout_address_threshold = n.max(1);
    }
}

fn apply_sync_limits(args: &Args, sync: &mut sotong_server::config::SyncLimits) {
    const MIB: usize = 1024 * 1024;
    if let Some(mib) = args.memory_budget {
        sync.memory_budget = mib.saturating_mul(MIB);
    }
    if let Some(n) = args.documents_per_account {
        sync.documents_per_account = n;
    }
    if let Some(mib) = args.storage_per_account {
        sync.bytes_per_account = mib.saturating_mul(MIB as u64);
    }
    if let Some(n) = args.messages_per_sec {
        sync.messages_per_sec = n;
        sync.message_burst = n.saturating_mul(10);
    }
    if let Some(n) = args.connections_per_account {
        sync.connections_per_account = n;
    }
    if let Some(secs) = args.idle_timeout_secs {
        sync.idle_timeout = Duration::from_secs(secs.max(3));
        sync.ping_interval = Duration::from_secs((secs / 3).max(1));
    }
}

/// Shortest pepper accepted from the environment or a file.
const MIN_PEPPER_BYTES: usize = 16;

/// The pepper: `SOTONG_PEPPER` if set, else the `--pepper-file`; with neither, in
/// development (`dev_dir` given) `<dev_dir>/pepper`, created with 32 random bytes on first
/// start, and otherwise an error. Never a flag value, so that it never shows in a process
/// list.
fn load_pepper(
    env: Option<&str>,
    file: Option<&Path>,
    dev_dir: Option<&Path>,
) -> Result<Vec<u8>, MainError> {
    let checked = |bytes: Vec<u8>, from: &str| {
        if bytes.len() < MIN_PEPPER_BYTES {
            Err(MainError::Pepper(format!(
                "the pepper from {from} is {} bytes; it must be at least {MIN_PEPPER_BYTES}",
                bytes.len()
            )))
        } else {
            Ok(bytes)
        }
    };
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return checked(p.as_bytes().to_vec(), "SOTONG_PEPPER");
    }
    if let Some(path) = file {
        let bytes =
            std::fs::read(path).map_err(io_err(format!("cannot read {}", path.display())))?;
        let trimmed = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
        return checked(trimmed, &path.display().to_string());
    }
    let Some(data_dir) = dev_dir else {
        return Err(sotong_server::ServeError::EmptyPepper.into());
    };
    let path = data_dir.join("pepper");
    match std::fs::read(&path) {
        Ok(bytes) if !bytes.is_empty() => return Ok(bytes),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("cannot read {}", path.display()))(e)),
    }
    std::fs::create_dir_all(data_dir)
        .map_err(io_err(format!("cannot create {}", data_dir.display())))?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let text = hex::encode(bytes);
    write_atomically(&path, text.as_bytes())
        .map_err(io_err(format!("cannot write {}", path.display())))?;
    Ok(text.into_bytes())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pepper_comes_from_env_then_file_and_is_generated_only_in_dev() {
        let dir = tempfile::tempdir().unwrap();
        let env = "0123456789abcdef0123";
        assert_eq!(
            load_pepper(Some(env), None, None).unwrap(),
            env.as_bytes().to_vec()
        );
        assert!(matches!(
            load_pepper(Some("short"), None, None),
            Err(MainError::Pepper(_))
        ));

        let file = dir.path().join("pepper.txt");
        std::fs::write(&file, "fedcba9876543210fedcba\n").unwrap();
        assert_eq!(
            load_pepper(None, Some(&file), None).unwrap(),
            b"fedcba9876543210fedcba".to_vec()
        );
        assert!(load_pepper(None, Some(&dir.path().join("missing")), None).is_err());

        // Outside development nothing is generated: no pepper is an error.
        let err = load_pepper(None, None, None).unwrap_err();
        assert!(err.to_string().contains("SOTONG_PEPPER"), "{err}");
        assert!(!dir.path().join("data").exists());

        // In development a pepper is generated once and kept.
        let data = dir.path().join("data");
        let first = load_pepper(None, None, Some(&data)).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(load_pepper(None, None, Some(&data)).unwrap(), first);
    }
}

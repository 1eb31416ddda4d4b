//! `sotong`: a citizen's phone in a terminal. Registers a device, writes proposal drafts and
//! syncs them with a Sotong server, using the same `sotong-core` as the Android and iOS apps.
//!
//! ```text
//! sotong --home DIR [--server URL] register --phone P [--code C] [--device-name N]
//! sotong --home DIR proposal new --title T --body B --category C
//! sotong --home DIR proposal edit ID [--title T] [--body B] [--category C]
//!                                    [--insert-body POS TEXT] [--delete-body POS COUNT] ...
//! sotong --home DIR proposal list | proposal show ID
//! sotong --home DIR sync | live | sign-out
//! sotong --home DIR sos trigger [--how button|power-key|widget|watch]
//! sotong --home DIR sos fix --lat LAT --lon LON --accuracy M [--method gps|wifi|cell] ...
//! sotong --home DIR sos cancel --pin P | status | reply (--text T|--yes|--no|--cant-talk)
//! sotong --home DIR sos pins --set PIN [--duress PIN] [--current PIN] | sos run
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::{Arc, Mutex};

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use sotong_core::client::{Client, LiveState, Rejected, SyncListener};
use sotong_core::privacy::mask_phone;
use sotong_core::schema::proposal::{Proposal, ProposalEdit, TextField};
use sotong_core::DocumentId;
use tokio::sync::oneshot;

/// Writes a line to standard output. Unlike `println!`, a closed pipe (`sotong proposal list
/// | head -1`) ends the program quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

mod sos;

/// Standard output is gone: whoever read it stopped reading (exit quietly) or it failed.
fn stdout_failed(e: io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("sotong: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// Where the server URL is remembered inside the home directory.
const SERVER_FILE: &str = "cli-server-url";
/// The server used when none was ever given.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

#[derive(Parser)]
#[command(
    name = "sotong",
    version,
    about = "A citizen's Sotong phone in a terminal"
)]
struct Cli {
    /// The phone's data directory (database, account); created if missing.
    #[arg(long, env = "SOTONG_HOME", value_name = "DIR")]
    home: PathBuf,
    /// The Sotong server; remembered in the home after first use
    /// [default: http://127.0.0.1:8080].
    #[arg(long, env = "SOTONG_SERVER", value_name = "URL")]
    server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register this home as a device: first without --code (a code is sent), then with it.
    Register {
        /// The citizen's phone number.
        #[arg(long)]
        phone: String,
        /// The one-time code received; without it, a new code is requested.
        #[arg(long)]
        code: Option<String>,
        /// The name shown in the citizen's device list.
        #[arg(long, default_value = "sotong-cli")]
        device_name: String,
    },
    /// Write, edit and read proposal drafts (offline; `sync` shares them).
    #[command(subcommand)]
    Proposal(ProposalCommand),
    /// Send local changes to the server and receive those of the citizen's other devices.
    Sync,
    /// Stay connected: print the session's state and the drafts changed by other devices,
    /// reconnecting by itself after an outage, until Ctrl-C.
    Live,
    /// The SOS silent call: trigger, fixes, cancel, replies (offline), and `run` to send.
    #[command(subcommand)]
    Sos(sos::SosCommand),
    /// Forget this device's registration and wipe its drafts (run `sync` first to keep
    /// unsent changes). The server is not told; the token expires there by itself.
    SignOut,
}

#[derive(Subcommand)]
enum ProposalCommand {
    /// Create a proposal draft and print its id.
    New {
        /// The title.
        #[arg(long)]
        title: String,
        /// The body.
        #[arg(long)]
        body: String,
        /// The policy category, e.g. "transport".
        #[arg(long)]
        category: String,
    },
    /// Edit a draft: replace whole fields, or splice text at positions (in characters).
    /// Splices apply in the order given, each to the result of the previous one.
    Edit(EditArgs),
    /// List the drafts on this phone: id, category, title.
    List,
    /// Print a draft's title, category, URL and body.
    Show {
        /// The document id or `automerge:` URL.
        id: String,
    },
}

#[derive(Args)]
struct EditArgs {
    /// The document id or `automerge:` URL.
    id: String,
    /// Replace the whole title.
    #[arg(long, conflicts_with_all = ["insert_title", "delete_title"])]
    title: Option<String>,
    /// Replace the whole body.
    #[arg(long, conflicts_with_all = ["insert_body", "delete_body"])]
    body: Option<String>,
    /// Set the category.
    #[arg(long)]
    category: Option<String>,
    /// Insert TEXT into the title at character POS (repeatable).
    #[arg(long, num_args = 2, value_names = ["POS", "TEXT"])]
    insert_title: Vec<String>,
    /// Insert TEXT into the body at character POS (repeatable).
    #[arg(long, num_args = 2, value_names = ["POS", "TEXT"])]
    insert_body: Vec<String>,
    /// Delete COUNT characters of the title at POS (repeatable).
    #[arg(long, num_args = 2, value_names = ["POS", "COUNT"])]
    delete_title: Vec<String>,
    /// Delete COUNT characters of the body at POS (repeatable).
    #[arg(long, num_args = 2, value_names = ["POS", "COUNT"])]
    delete_body: Vec<String>,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sotong: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, matches: &ArgMatches) -> Result<(), String> {
    fs::create_dir_all(&cli.home)
        .map_err(|e| format!("cannot create {}: {e}", cli.home.display()))?;
    let server = resolve_server(&cli.home, cli.server.as_deref())?;
    let client = Client::open(&cli.home, &server).map_err(|e| e.to_string())?;
    remember_server(&cli.home, &server)?;
    match cli.command {
        Command::Register {
            phone,
            code,
            device_name,
        } => register(&client, &phone, code.as_deref(), &device_name),
        Command::Proposal(ProposalCommand::New {
            title,
            body,
            category,
        }) => {
            let id = client
                .create_proposal(&title, &body, &category)
                .map_err(|e| e.to_string())?;
            out!("{id}");
            Ok(())
        }
        Command::Proposal(ProposalCommand::Edit(args)) => {
            let edit_matches = matches
                .subcommand_matches("proposal")
                .and_then(|m| m.subcommand_matches("edit"))
                .ok_or("internal error: edit arguments not found")?;
            edit(&client, &args, edit_matches)
        }
        Command::Proposal(ProposalCommand::List) => {
            let list = client.list_proposals().map_err(|e| e.to_string())?;
            if list.is_empty() {
                eprintln!("no proposal drafts yet");
            }
            for p in list {
                out!("{}\t{}\t{}", p.id, p.category, p.title);
            }
            Ok(())
        }
        Command::Proposal(ProposalCommand::Show { id }) => {
            let id = parse_id(&id)?;
            let p = client.read_proposal(&id).map_err(|e| e.to_string())?;
            print_proposal(&id, &p);
            Ok(())
        }
        Command::Sync => sync(&client),
        Command::Live => live(&client),
        Command::Sos(command) => sos::run(&client, command),
        Command::SignOut => {
            client.sign_out().map_err(|e| e.to_string())?;
            out!("Signed out; the drafts on this device were wiped.");
            Ok(())
        }
    }
}

/// The server to use: the flag, else the one remembered in the home, else the default.
fn resolve_server(home: &Path, flag: Option<&str>) -> Result<String, String> {
    if let Some(url) = flag {
        // Accept a bare `host:port`, as sotong-server prints and writes to its port file.
        return Ok(if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        });
    }
    match fs::read_to_string(home.join(SERVER_FILE)) {
        Ok(saved) if !saved.trim().is_empty() => Ok(saved.trim().to_owned()),
        Ok(_) => Ok(DEFAULT_SERVER.to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DEFAULT_SERVER.to_owned()),
        Err(e) => Err(format!(
            "cannot read {}: {e}",
            home.join(SERVER_FILE).display()
        )),
    }
}

fn remember_server(home: &Path, server: &str) -> Result<(), String> {
    let path = home.join(SERVER_FILE);
    if fs::read_to_string(&path).is_ok_and(|saved| saved.trim() == server) {
        return Ok(());
    }
    fs::write(&path, format!("{server}\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn register(client: &Client, phone: &str, code: Option<&str>, device: &str) -> Result<(), String> {
    let rt = runtime()?;
    match code {
        None => {
            rt.block_on(client.request_code(phone))
                .map_err(|e| e.to_string())?;
            out!(
                "A one-time code was sent to the phone {}. Run again with --code CODE to register.",
                mask_phone(phone)
            );
        }
        Some(code) => {
            let info = rt
                .block_on(client.register(phone, code, device))
                .map_err(|e| e.to_string())?;
            out!(
                "Registered device {} of account {} on {}",
                info.device_id,
                info.account_id,
                info.server_url
            );
        }
    }
    Ok(())
}

fn sync(client: &Client) -> Result<(), String> {
    let report = runtime()?
        .block_on(client.sync())
        .map_err(|e| e.to_string())?;
    out!(
        "sent {} document(s), received {} document(s), {} rejected",
        report.documents_sent,
        report.documents_received,
        report.rejected.len()
    );
    for r in report.rejected {
        out!("rejected {} ({}): {}", r.id, r.code, r.reason);
    }
    Ok(())
}

/// Prints what a live session does; tells `live` when it ends.
struct Printer {
    ended: Mutex<Option<oneshot::Sender<Option<String>>>>,
}

impl SyncListener for Printer {
    fn state_changed(&self, state: LiveState) {
        match state {
            LiveState::Connecting => eprintln!("connecting"),
            LiveState::Online => eprintln!("online"),
            LiveState::BackingOff { until_ms, error } => {
                let wait = until_ms.saturating_sub(now_millis()).max(0);
                eprintln!(
                    "offline ({error}); next attempt in {:.1} s",
                    wait as f64 / 1000.0
                );
            }
            LiveState::Stopped { .. } => {}
        }
    }
    fn draft_changed(&self, id: DocumentId) {
        out!("changed {id}");
    }
    fn draft_rejected(&self, r: Rejected) {
        out!("rejected {} ({}): {}", r.id, r.code, r.reason);
    }
    fn stopped(&self, error: Option<String>) {
        if let Some(tx) = self.ended.lock().ok().and_then(|mut e| e.take()) {
            let _ = tx.send(error);
        }
    }
}

fn live(client: &Client) -> Result<(), String> {
    runtime()?.block_on(async {
        let (tx, rx) = oneshot::channel();
        let printer = Arc::new(Printer {
            ended: Mutex::new(Some(tx)),
        });
        let session = client
            .start_live_sync(printer)
            .await
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                session.stop().await;
                Ok(())
            }
            ended = rx => match ended {
                Ok(Some(error)) => Err(error),
                _ => Ok(()),
            },
        }
    })
}

fn now_millis() -> i64 {
    sotong_core::clock::unix_millis_now()
}

fn edit(client: &Client, args: &EditArgs, matches: &ArgMatches) -> Result<(), String> {
    let id = parse_id(&args.id)?;
    let mut edits = Vec::new();
    if let Some(text) = &args.title {
        edits.push(ProposalEdit::Replace {
            field: TextField::Title,
            text: text.clone(),
        });
    }
    if let Some(text) = &args.body {
        edits.push(ProposalEdit::Replace {
            field: TextField::Body,
            text: text.clone(),
        });
    }
    if let Some(category) = &args.category {
        edits.push(ProposalEdit::SetCategory(category.clone()));
    }
    // Splices keep their command-line order, across options, since each position refers to
    // the text as left by the previous splice.
    let mut splices = Vec::new();
    for (arg, values, field, insert) in [
        ("insert_title", &args.insert_title, TextField::Title, true),
        ("insert_body", &args.insert_body, TextField::Body, true),
        ("delete_title", &args.delete_title, TextField::Title, false),
        ("delete_body", &args.delete_body, TextField::Body, false),
    ] {
        let indices: Vec<usize> = matches.indices_of(arg).into_iter().flatten().collect();
        for (pair, index) in values.chunks(2).zip(indices.iter().step_by(2)) {
            let [pos, value] = pair else {
                return Err(format!("--{} needs two values", arg.replace('_', "-")));
            };
            let pos = parse_count(pos, "position")?;
            let splice = if insert {
                ProposalEdit::Splice {
                    field,
                    pos,
                    delete: 0,
                    insert: value.clone(),
                }
            } else {
                ProposalEdit::Splice {
                    field,
                    pos,
                    delete: parse_count(value, "count")?,
                    insert: String::new(),
                }
            };
            splices.push((*index, splice));
        }
    }
    splices.sort_by_key(|(index, _)| *index);
    edits.extend(splices.into_iter().map(|(_, e)| e));
    if edits.is_empty() {
        return Err("nothing to edit: give --title, --body, --category or a splice option".into());
    }
    let mut last = None;
    for e in edits {
        last = Some(client.edit_proposal(&id, e).map_err(|e| e.to_string())?);
    }
    if let Some(p) = last {
        print_proposal(&id, &p);
    }
    Ok(())
}

fn print_proposal(id: &DocumentId, p: &Proposal) {
    out!("title:    {}", p.title);
    out!("category: {}", p.category);
    out!("url:      {}", id.url());
    out!();
    out!("{}", p.body);
}

fn parse_id(s: &str) -> Result<DocumentId, String> {
    DocumentId::parse_url_or_id(s).map_err(|e| format!("not a document id: {e}"))
}

fn parse_count(s: &str, what: &str) -> Result<usize, String> {
    s.parse()
        .map_err(|_| format!("{what} must be a non-negative whole number, not \"{s}\""))
}

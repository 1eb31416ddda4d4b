//! `sotong sos …`: run an SOS silent call from a terminal, as the demo does. Everything but
//! `run` works offline: it only writes to the phone's SQLite file; `run` sends the queue and
//! prints dispatch's events until the incident is over (or Ctrl-C).

use std::sync::{Arc, Mutex};

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use sotong_core::client::{
    Client, SendFailure, SmsText, SosLinkState, SosListener, SosOptions, SosStatus,
};
use sotong_core::sos::{
    Feedback, Fix, FixMethod, IncidentEvent, IncidentId, QuickReply, Reply, ServerEvent,
    TriggerMethod,
};
use tokio::sync::oneshot;

#[derive(Subcommand)]
pub(crate) enum SosCommand {
    /// Start an incident (or show the live one) and print its id.
    Trigger {
        /// How it was triggered.
        #[arg(long, value_enum, default_value = "button")]
        how: How,
    },
    /// Record a location fix for the live incident and print its sequence number.
    Fix(FixArgs),
    /// Cancel with the PIN (the duress PIN only looks like a cancel).
    Cancel {
        /// The PIN.
        #[arg(long)]
        pin: String,
    },
    /// Print what the phone may show about the latest incident.
    Status,
    /// Answer dispatch: free text or a one-tap reply.
    Reply(ReplyArgs),
    /// Set the cancel PIN and, optionally, the duress PIN.
    Pins {
        /// The new cancel PIN (4 to 64 characters).
        #[arg(long = "set")]
        pin: String,
        /// The new duress PIN: it looks like a cancel but keeps the incident live.
        #[arg(long)]
        duress: Option<String>,
        /// The current PIN, once one is set.
        #[arg(long)]
        current: Option<String>,
    },
    /// Leave feedback on the latest incident once it has ended (sent by `sos run` once
    /// dispatch has closed it; a second replaces the first).
    Feedback(FeedbackArgs),
    /// Send the queue and print dispatch's events until the incident is over (or Ctrl-C).
    Run,
}

/// Yes or no, as the command line names it.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum YesNo {
    Yes,
    No,
}

#[derive(Args)]
pub(crate) struct FeedbackArgs {
    /// 1 (bad) to 5 (good).
    #[arg(long)]
    rating: u8,
    /// Whether you felt safe once help came.
    #[arg(long, value_enum)]
    felt_safe: Option<YesNo>,
    /// A comment, at most 1,000 characters.
    #[arg(long)]
    comment: Option<String>,
    /// The incident [default: the latest].
    #[arg(long)]
    incident: Option<String>,
}

/// How an incident was triggered, as the command line names it.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum How {
    Button,
    PowerKey,
    Widget,
    Watch,
    VolumeKeys,
    Voice,
}

impl From<How> for TriggerMethod {
    fn from(h: How) -> Self {
        match h {
            How::Button => TriggerMethod::ButtonHold,
            How::PowerKey => TriggerMethod::PowerKey,
            How::Widget => TriggerMethod::Widget,
            How::Watch => TriggerMethod::Watch,
            How::VolumeKeys => TriggerMethod::VolumeKeys,
            How::Voice => TriggerMethod::Voice,
        }
    }
}

/// A fix's method, as the command line names it.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Method {
    Gps,
    Wifi,
    Cell,
    Fused,
}

impl From<Method> for FixMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::Gps => FixMethod::Gps,
            Method::Wifi => FixMethod::Wifi,
            Method::Cell => FixMethod::Cell,
            Method::Fused => FixMethod::Fused,
        }
    }
}

#[derive(Args)]
pub(crate) struct FixArgs {
    /// Latitude, degrees.
    #[arg(long, allow_negative_numbers = true)]
    lat: f64,
    /// Longitude, degrees.
    #[arg(long, allow_negative_numbers = true)]
    lon: f64,
    /// Accuracy radius, metres.
    #[arg(long)]
    accuracy: f64,
    /// Altitude, metres.
    #[arg(long, allow_negative_numbers = true)]
    altitude: Option<f64>,
    /// Speed, metres per second.
    #[arg(long)]
    speed: Option<f64>,
    /// Heading, degrees from north.
    #[arg(long)]
    heading: Option<f64>,
    /// How the position was found.
    #[arg(long, value_enum, default_value = "gps")]
    method: Method,
    /// Battery level, percent.
    #[arg(long)]
    battery: Option<u8>,
    /// When the fix was taken, milliseconds since the Unix epoch [default: now].
    #[arg(long)]
    time_ms: Option<i64>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("answer").required(true).args(["text", "yes", "no", "cant_talk"])))]
pub(crate) struct ReplyArgs {
    /// A free-text answer.
    #[arg(long)]
    text: Option<String>,
    /// Yes.
    #[arg(long)]
    yes: bool,
    /// No.
    #[arg(long)]
    no: bool,
    /// I can't talk.
    #[arg(long)]
    cant_talk: bool,
}

pub(crate) fn run(client: &Client, command: SosCommand) -> Result<(), String> {
    match command {
        SosCommand::Trigger { how } => {
            let id = client.sos_trigger(how.into()).map_err(|e| e.to_string())?;
            out!("{id}");
        }
        SosCommand::Fix(a) => {
            let fix = Fix {
                lat: a.lat,
                lon: a.lon,
                accuracy_m: a.accuracy,
                altitude_m: a.altitude,
                speed_mps: a.speed,
                heading_deg: a.heading,
                time_ms: a.time_ms.unwrap_or_else(crate::now_millis),
                method: a.method.into(),
                battery_pct: a.battery,
            };
            let seq = client.sos_push_fix(fix).map_err(|e| e.to_string())?;
            out!("{seq}");
        }
        SosCommand::Cancel { pin } => {
            let status = client.sos_cancel(&pin).map_err(|e| e.to_string())?;
            print_status(&status);
        }
        SosCommand::Status => match client.sos_status().map_err(|e| e.to_string())? {
            Some(status) => print_status(&status),
            None => eprintln!("no SOS incident on this phone"),
        },
        SosCommand::Reply(a) => {
            let reply = match (a.text, a.yes, a.no) {
                (Some(text), ..) => Reply::Text(text),
                (None, true, _) => Reply::Quick(QuickReply::Yes),
                (None, _, true) => Reply::Quick(QuickReply::No),
                _ => Reply::Quick(QuickReply::CantTalk),
            };
            let seq = client.sos_reply(reply).map_err(|e| e.to_string())?;
            out!("{seq}");
        }
        SosCommand::Pins {
            pin,
            duress,
            current,
        } => {
            client
                .sos_set_pins(current.as_deref(), &pin, duress.as_deref())
                .map_err(|e| e.to_string())?;
            out!("PINs set");
        }
        SosCommand::Feedback(a) => {
            let incident: IncidentId = match a.incident {
                Some(id) => id
                    .parse()
                    .map_err(|_| format!("{id:?} is not an incident id"))?,
                None => {
                    client
                        .sos_status()
                        .map_err(|e| e.to_string())?
                        .ok_or("no SOS incident on this phone")?
                        .incident
                }
            };
            let feedback = Feedback {
                rating: a.rating,
                felt_safe: a.felt_safe.map(|f| matches!(f, YesNo::Yes)),
                comment: a.comment,
            };
            client
                .sos_feedback(&incident, feedback)
                .map_err(|e| e.to_string())?;
            out!(
                "feedback stored; `sotong sos run` sends it once dispatch has closed the incident"
            );
        }
        SosCommand::Run => send(client)?,
    }
    Ok(())
}

fn print_status(s: &SosStatus) {
    out!("incident:  {}", s.incident);
    out!("phase:     {}", s.phase.as_str());
    out!("trigger:   {}", s.trigger.as_str());
    out!("triggered: {}", s.triggered_at);
    if let Some(unit) = &s.unit {
        out!("unit:      {unit}");
    }
    for m in &s.messages {
        let who = if m.from_dispatcher { "dispatch" } else { "me" };
        out!("{who}: {}", reply_text(&m.content));
    }
    if let Some(error) = &s.send_error {
        out!("not sent:  {error} (kept on this phone)");
    }
    if let Some(f) = &s.feedback {
        let state = match (&f.send_error, f.sent) {
            (Some(e), _) => format!("refused: {e}"),
            (None, true) => "sent".to_owned(),
            (None, false) => "queued".to_owned(),
        };
        out!("feedback:  {}/5 ({state})", f.feedback.rating);
    }
}

fn reply_text(r: &Reply) -> String {
    match r {
        Reply::Text(t) => t.clone(),
        Reply::Quick(q) => format!("[{}]", q.as_str()),
    }
}

/// Prints what the beacon sender does; tells `send` when it ends.
struct Printer {
    ended: Mutex<Option<oneshot::Sender<Option<String>>>>,
}

impl SosListener for Printer {
    fn state_changed(&self, state: SosLinkState) {
        match state {
            SosLinkState::Sending => eprintln!("sending"),
            SosLinkState::Waiting => eprintln!("delivered; waiting for dispatch"),
            SosLinkState::BackingOff { until_ms, error } => {
                let wait = until_ms.saturating_sub(crate::now_millis()).max(0);
                eprintln!(
                    "not sent ({error}); next attempt in {:.1} s",
                    wait as f64 / 1000.0
                );
            }
            SosLinkState::Stopped { .. } => {}
        }
    }
    fn event(&self, event: ServerEvent) {
        match event.event {
            IncidentEvent::Received => out!("received"),
            IncidentEvent::Acknowledged => out!("acknowledged"),
            IncidentEvent::UnitAssigned { unit } => {
                out!("unit assigned {}", unit.unwrap_or_default())
            }
            IncidentEvent::Resolved => out!("resolved"),
            IncidentEvent::Message { text, .. } => out!("message: {text}"),
        }
    }
    fn send_failed(&self, incident: IncidentId, what: SendFailure, reason: String) {
        let what = match what {
            SendFailure::Beacons => "fixes",
            SendFailure::Feedback => "feedback",
        };
        eprintln!("the server refused the {what} of {incident} for good: {reason} (kept)");
    }
    fn send_sms(&self, sms: SmsText) {
        // A terminal cannot send an SMS: show what a phone would send.
        out!("sms to {}: {}", sms.number, sms.text);
    }
    fn stopped(&self, error: Option<String>) {
        if let Some(tx) = self.ended.lock().ok().and_then(|mut e| e.take()) {
            let _ = tx.send(error);
        }
    }
}

fn send(client: &Client) -> Result<(), String> {
    crate::runtime()?.block_on(async {
        let (tx, rx) = oneshot::channel();
        let printer = Arc::new(Printer {
            ended: Mutex::new(Some(tx)),
        });
        let sender = client
            .sos_start_transport(printer, SosOptions::default())
            .map_err(|e| e.to_string())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                sender.stop().await;
                Ok(())
            }
            ended = rx => match ended {
                Ok(Some(error)) => Err(error),
                _ => {
                    eprintln!("no live incident; everything delivered");
                    Ok(())
                }
            },
        }
    })
}

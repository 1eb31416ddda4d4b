//! The incident state machine: every rule about which state an incident moves to, in one
//! place, with no I/O. The phone's store persists [`IncidentState`] and asks [`apply`] what
//! each input does; the server may use [`Phase`] for its own progress.
//!
//! ```text
//!            received        acknowledged        unit assigned        resolved
//!  Active ─────────▶ Received ─────────▶ Acknowledged ─────────▶ UnitAssigned ─────▶ Resolved
//!     │ (server events only move forward; a later one skips the ones it implies)
//!     ├─ real PIN ──▶ Cancelled
//!     └─ duress PIN ─▶ same phase, duress: the phone *shows* Cancelled, reports Duress,
//!                      keeps sending fixes; server events still move it forward, silently
//! ```
//!
//! While under duress the phone behaves exactly as a cancelled incident does for anything a
//! person can see or try (cancel again, reply): an attacker holding the phone learns nothing.
//! A new trigger under duress brings the incident back into view (same incident; the server
//! keeps its duress mark).

use super::beacon::ReportedState;

/// Where an incident stands. `Resolved` and `Cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Triggered; the server has not confirmed it yet.
    Active,
    /// The server has stored it.
    Received,
    /// A dispatcher took it on.
    Acknowledged,
    /// A unit is on the way.
    UnitAssigned,
    /// Dispatch closed it.
    Resolved,
    /// The person cancelled it with their real PIN.
    Cancelled,
}

impl Phase {
    /// Every phase, in declaration order.
    pub const ALL: [Phase; 6] = [
        Phase::Active,
        Phase::Received,
        Phase::Acknowledged,
        Phase::UnitAssigned,
        Phase::Resolved,
        Phase::Cancelled,
    ];

    /// Whether the incident is still open (fixes keep flowing).
    pub fn is_live(self) -> bool {
        !matches!(self, Phase::Resolved | Phase::Cancelled)
    }

    /// Position along dispatch's progress, so that server events only move forward.
    fn progress(self) -> u8 {
        match self {
            Phase::Active => 0,
            Phase::Received => 1,
            Phase::Acknowledged => 2,
            Phase::UnitAssigned => 3,
            Phase::Resolved | Phase::Cancelled => 4,
        }
    }

    /// The stable snake_case name, as stored in SQLite.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Active => "active",
            Phase::Received => "received",
            Phase::Acknowledged => "acknowledged",
            Phase::UnitAssigned => "unit_assigned",
            Phase::Resolved => "resolved",
            Phase::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`Phase::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// An incident's true state: its phase, and whether the duress cover is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IncidentState {
    phase: Phase,
    duress: bool,
}

/// A stored state that cannot exist (a cancelled incident is never under duress).
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("an incident cannot be both cancelled and under duress")]
pub struct InvalidState;

impl IncidentState {
    /// A freshly triggered incident.
    pub const TRIGGERED: IncidentState = IncidentState {
        phase: Phase::Active,
        duress: false,
    };

    /// From stored parts; refuses the one combination that cannot exist.
    pub fn from_parts(phase: Phase, duress: bool) -> Result<Self, InvalidState> {
        if duress && phase == Phase::Cancelled {
            return Err(InvalidState);
        }
        Ok(Self { phase, duress })
    }

    /// The true phase.
    pub fn phase(self) -> Phase {
        self.phase
    }

    /// Whether the duress cover is up.
    pub fn duress(self) -> bool {
        self.duress
    }

    /// Whether the incident is truly open: fixes keep being recorded and sent.
    pub fn is_live(self) -> bool {
        self.phase.is_live()
    }

    /// What the phone shows: `Cancelled` under duress, the true phase otherwise.
    pub fn apparent_phase(self) -> Phase {
        if self.duress {
            Phase::Cancelled
        } else {
            self.phase
        }
    }

    /// What the phone reports to the server in its beacons.
    pub fn reported(self) -> ReportedState {
        if self.phase == Phase::Cancelled {
            ReportedState::Cancelled
        } else if self.duress {
            ReportedState::Duress
        } else {
            ReportedState::Active
        }
    }
}

/// Everything that can happen to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    /// The person triggered SOS again while this incident exists.
    Trigger,
    /// Server: the incident is stored.
    Received,
    /// Server: a dispatcher took it on.
    Acknowledged,
    /// Server: a unit is on the way.
    UnitAssigned,
    /// Server: dispatch closed it.
    Resolved,
    /// Server: a dispatcher's message.
    DispatcherMessage,
    /// The person entered their real PIN to cancel.
    CancelPin,
    /// The person entered the duress PIN to cancel.
    DuressPin,
    /// The person entered a PIN that is neither.
    WrongPin,
    /// The person replied to dispatch.
    Reply,
}

impl Input {
    /// Every input, in declaration order.
    pub const ALL: [Input; 10] = [
        Input::Trigger,
        Input::Received,
        Input::Acknowledged,
        Input::UnitAssigned,
        Input::Resolved,
        Input::DispatcherMessage,
        Input::CancelPin,
        Input::DuressPin,
        Input::WrongPin,
        Input::Reply,
    ];
}

/// The result of an accepted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The state after the input.
    pub state: IncidentState,
    /// Queue a beacon: the reported state changed, or the input (a reply) is itself something
    /// to send.
    pub report: bool,
    /// The app may surface the input (discreetly; the core makes no sound). Never under the
    /// duress cover, never after a cancel.
    pub visible: bool,
}

/// Why an input is refused. Under the duress cover, inputs a person can make are refused
/// exactly as for a cancelled incident.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum TransitionError {
    /// The incident is not open (as far as the phone shows).
    #[error("the incident is no longer active")]
    NotLive,
    /// The incident has ended: a trigger starts a new one.
    #[error("the incident has ended")]
    Ended,
    /// The PIN matched neither the PIN nor the duress PIN. The same error whichever PINs are
    /// set.
    #[error("wrong PIN")]
    WrongPin,
}

/// What `input` does to an incident in `state`.
pub fn apply(state: IncidentState, input: Input) -> Result<Step, TransitionError> {
    let IncidentState { phase, duress } = state;
    let stay = |visible| Step {
        state,
        report: false,
        visible,
    };
    match input {
        Input::Trigger if !phase.is_live() => Err(TransitionError::Ended),
        // Back into view: the person is able to use the phone again.
        Input::Trigger if duress => Ok(Step {
            state: IncidentState {
                phase,
                duress: false,
            },
            report: true,
            visible: true,
        }),
        Input::Trigger => Ok(stay(false)),
        Input::Received | Input::Acknowledged | Input::UnitAssigned | Input::Resolved => {
            let target = match input {
                Input::Received => Phase::Received,
                Input::Acknowledged => Phase::Acknowledged,
                Input::UnitAssigned => Phase::UnitAssigned,
                _ => Phase::Resolved,
            };
            // Duplicates and stale events are harmless: stay, silently.
            if !phase.is_live() || target.progress() <= phase.progress() {
                return Ok(stay(false));
            }
            Ok(Step {
                state: IncidentState {
                    phase: target,
                    duress,
                },
                report: false,
                visible: !duress,
            })
        }
        Input::DispatcherMessage => Ok(stay(!duress && phase != Phase::Cancelled)),
        // Under the cover, or after the end, a person's input meets "no longer active".
        Input::CancelPin | Input::DuressPin | Input::WrongPin | Input::Reply
            if duress || !phase.is_live() =>
        {
            Err(TransitionError::NotLive)
        }
        Input::CancelPin => Ok(Step {
            state: IncidentState {
                phase: Phase::Cancelled,
                duress: false,
            },
            report: true,
            visible: true,
        }),
        Input::DuressPin => Ok(Step {
            state: IncidentState {
                phase,
                duress: true,
            },
            report: true,
            visible: true,
        }),
        Input::WrongPin => Err(TransitionError::WrongPin),
        Input::Reply => Ok(Step {
            state,
            report: true,
            visible: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole transition table: one row per state, one column per input (in
    /// [`Input::ALL`] order). A cell is the resulting state (`A`ctive, `R`eceived,
    /// ac`K`nowledged, `U`nit assigned, resolved `Z`, `C`ancelled, `*` = duress cover) with
    /// `/r` (report), `/v` (visible), `/rv`; or an error: `!L` not live, `!E` ended, `!W`
    /// wrong PIN.
    const TABLE: &str = "
    #     Trigger Received Ack   Unit   Resolved Message CancelPin DuressPin WrongPin Reply
    A     A       R/v      K/v   U/v    Z/v      A/v     C/rv      A*/rv     !W       A/r
    R     R       R        K/v   U/v    Z/v      R/v     C/rv      R*/rv     !W       R/r
    K     K       K        K     U/v    Z/v      K/v     C/rv      K*/rv     !W       K/r
    U     U       U        U     U      Z/v      U/v     C/rv      U*/rv     !W       U/r
    Z     !E      Z        Z     Z      Z        Z/v     !L        !L        !L       !L
    C     !E      C        C     C      C        C       !L        !L        !L       !L
    A*    A/rv    R*       K*    U*     Z*       A*      !L        !L        !L       !L
    R*    R/rv    R*       K*    U*     Z*       R*      !L        !L        !L       !L
    K*    K/rv    K*       K*    U*     Z*       K*      !L        !L        !L       !L
    U*    U/rv    U*       U*    U*     Z*       U*      !L        !L        !L       !L
    Z*    !E      Z*       Z*    Z*     Z*       Z*      !L        !L        !L       !L
    ";

    fn state(code: &str) -> IncidentState {
        let (letter, duress) = match code.strip_suffix('*') {
            Some(l) => (l, true),
            None => (code, false),
        };
        let phase = match letter {
            "A" => Phase::Active,
            "R" => Phase::Received,
            "K" => Phase::Acknowledged,
            "U" => Phase::UnitAssigned,
            "Z" => Phase::Resolved,
            "C" => Phase::Cancelled,
            other => panic!("bad state code {other}"),
        };
        IncidentState::from_parts(phase, duress).unwrap()
    }

    fn expected(cell: &str) -> Result<Step, TransitionError> {
        match cell {
            "!L" => return Err(TransitionError::NotLive),
            "!E" => return Err(TransitionError::Ended),
            "!W" => return Err(TransitionError::WrongPin),
            _ => {}
        }
        let (code, flags) = cell.split_once('/').unwrap_or((cell, ""));
        Ok(Step {
            state: state(code),
            report: flags.contains('r'),
            visible: flags.contains('v'),
        })
    }

    #[test]
    fn every_state_and_input_follows_the_table() {
        let rows: Vec<Vec<&str>> = TABLE
            .lines()
            .map(str::split_whitespace)
            .map(Iterator::collect::<Vec<_>>)
            .filter(|cells| !cells.is_empty() && cells[0] != "#")
            .collect();
        // Every reachable state appears once: 4 live phases with and without duress, plus
        // resolved with and without, plus cancelled.
        assert_eq!(rows.len(), 11);
        let mut seen = std::collections::HashSet::new();
        for row in &rows {
            assert_eq!(row.len(), 1 + Input::ALL.len(), "row {row:?}");
            let from = state(row[0]);
            assert!(seen.insert(from), "state listed twice: {from:?}");
            for (input, cell) in Input::ALL.into_iter().zip(&row[1..]) {
                assert_eq!(
                    apply(from, input),
                    expected(cell),
                    "from {} on {input:?}",
                    row[0]
                );
            }
        }
        // ...and the table covers every state that can be constructed.
        for phase in Phase::ALL {
            for duress in [false, true] {
                if let Ok(s) = IncidentState::from_parts(phase, duress) {
                    assert!(seen.contains(&s), "{s:?} missing from the table");
                }
            }
        }
    }

    #[test]
    fn duress_looks_cancelled_but_reports_duress() {
        let cancelled = apply(IncidentState::TRIGGERED, Input::CancelPin)
            .unwrap()
            .state;
        let duress = apply(IncidentState::TRIGGERED, Input::DuressPin)
            .unwrap()
            .state;
        assert_eq!(cancelled.apparent_phase(), Phase::Cancelled);
        assert_eq!(duress.apparent_phase(), Phase::Cancelled);
        assert_eq!(cancelled.reported(), ReportedState::Cancelled);
        assert_eq!(duress.reported(), ReportedState::Duress);
        assert!(!cancelled.is_live());
        assert!(duress.is_live());
        // Whatever a person tries meets the same answer on both.
        for input in [
            Input::CancelPin,
            Input::DuressPin,
            Input::WrongPin,
            Input::Reply,
        ] {
            assert_eq!(apply(cancelled, input), apply(duress, input), "{input:?}");
        }
        assert_eq!(IncidentState::TRIGGERED.reported(), ReportedState::Active);
    }

    #[test]
    fn stored_parts_round_trip_and_the_impossible_one_is_refused() {
        assert_eq!(
            IncidentState::from_parts(Phase::Cancelled, true),
            Err(InvalidState)
        );
        for phase in Phase::ALL {
            assert_eq!(Phase::from_name(phase.as_str()), Some(phase));
        }
        assert_eq!(Phase::from_name("Active"), None);
    }
}

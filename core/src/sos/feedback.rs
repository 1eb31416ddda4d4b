//! After an incident is closed: the person's feedback (a rating, whether they felt safe, a
//! comment) and dispatch's outcome, a closed set so that admins can count them by region and
//! month (issue 7 item 7). Shared by the phone (which stores and sends the feedback) and the
//! server (which checks it again and aggregates it).

use serde::{Deserialize, Serialize};

use super::beacon::{check_text, BeaconError};

/// Longest feedback comment, in characters.
pub const MAX_FEEDBACK_COMMENT_CHARS: usize = 1_000;

/// The person's feedback on a closed incident. JSON: `{"rating": 1..=5, "felt_safe": true |
/// false | null, "comment": "…" | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// 1 (bad) to 5 (good).
    pub rating: u8,
    /// Whether they felt safe once help came; `None` when they would rather not say.
    #[serde(default)]
    pub felt_safe: Option<bool>,
    /// Free text, at most [`MAX_FEEDBACK_COMMENT_CHARS`] characters.
    #[serde(default)]
    pub comment: Option<String>,
}

/// Why feedback is refused. Messages hold no comment text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    /// The rating is outside 1..=5.
    #[error("the rating must be 1 to 5, not {0}")]
    Rating(u8),
    /// The comment is empty, too long or holds control characters.
    #[error("feedback comment: {0}")]
    Comment(#[from] BeaconError),
}

impl Feedback {
    /// Checks the rating and the comment (an empty or all-blank comment is an error: pass
    /// `None` instead).
    pub fn validate(&self) -> Result<(), FeedbackError> {
        if !(1..=5).contains(&self.rating) {
            return Err(FeedbackError::Rating(self.rating));
        }
        if let Some(c) = &self.comment {
            check_text(c, MAX_FEEDBACK_COMMENT_CHARS)?;
        }
        Ok(())
    }
}

/// How dispatch closed an incident: a closed set, stored by [`Outcome::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Help was given on the scene; the person is safe.
    Assisted,
    /// Someone was arrested.
    Arrest,
    /// Handed to another service (shelter, counselling, child protection…).
    Referred,
    /// The person was taken to hospital or a safe place.
    Transported,
    /// The person cancelled and dispatch confirmed they are safe.
    CallerCancelled,
    /// Triggered by mistake.
    FalseAlarm,
    /// The person could not be found or reached.
    NotFound,
    /// None of the above (details in a note); also old free-text outcomes.
    Other,
}

impl Outcome {
    /// Every outcome, in declaration order.
    pub const ALL: [Outcome; 8] = [
        Outcome::Assisted,
        Outcome::Arrest,
        Outcome::Referred,
        Outcome::Transported,
        Outcome::CallerCancelled,
        Outcome::FalseAlarm,
        Outcome::NotFound,
        Outcome::Other,
    ];

    /// The stable snake_case name, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Assisted => "assisted",
            Outcome::Arrest => "arrest",
            Outcome::Referred => "referred",
            Outcome::Transported => "transported",
            Outcome::CallerCancelled => "caller_cancelled",
            Outcome::FalseAlarm => "false_alarm",
            Outcome::NotFound => "not_found",
            Outcome::Other => "other",
        }
    }

    /// The inverse of [`Outcome::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fb(rating: u8, comment: Option<&str>) -> Feedback {
        Feedback {
            rating,
            felt_safe: Some(true),
            comment: comment.map(str::to_owned),
        }
    }

    #[test]
    fn ratings_and_comments_are_checked() {
        for ok in 1..=5 {
            assert_eq!(fb(ok, None).validate(), Ok(()));
        }
        assert_eq!(fb(0, None).validate(), Err(FeedbackError::Rating(0)));
        assert_eq!(fb(6, None).validate(), Err(FeedbackError::Rating(6)));
        let long = "가".repeat(MAX_FEEDBACK_COMMENT_CHARS);
        assert_eq!(fb(3, Some(&long)).validate(), Ok(()));
        let too_long = "가".repeat(MAX_FEEDBACK_COMMENT_CHARS + 1);
        assert!(matches!(
            fb(3, Some(&too_long)).validate(),
            Err(FeedbackError::Comment(BeaconError::TextTooLong { .. }))
        ));
        assert!(fb(3, Some("  ")).validate().is_err());
        assert!(fb(3, Some("a\u{7}b")).validate().is_err());
    }

    #[test]
    fn json_form_is_stable() {
        let f: Feedback = serde_json::from_str(r#"{"rating":4}"#).unwrap();
        assert_eq!(f, fb(4, None).clone_with_safe(None));
        assert_eq!(
            serde_json::to_string(&fb(5, Some("thanks"))).unwrap(),
            r#"{"rating":5,"felt_safe":true,"comment":"thanks"}"#
        );
    }

    #[test]
    fn outcome_names_round_trip() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::from_name(o.as_str()), Some(o));
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
        assert_eq!(Outcome::from_name("arrested"), None);
    }

    impl Feedback {
        fn clone_with_safe(mut self, felt_safe: Option<bool>) -> Self {
            self.felt_safe = felt_safe;
            self
        }
    }
}

//! Data-subject rights under the GDPR: the records a request leaves, the
//! keyed hash that keeps an erased person suppressed, retention settings and
//! the access document.
//!
//! The engine carries the rights out ([`Engine::subject_access`],
//! [`Engine::erase`], [`Engine::rectify`], [`Engine::restrict`],
//! [`Engine::object`], [`Engine::purge_expired`]); this module defines the
//! types they read and write.
//!
//! [`Engine::subject_access`]: crate::engine::Engine::subject_access
//! [`Engine::erase`]: crate::engine::Engine::erase
//! [`Engine::rectify`]: crate::engine::Engine::rectify
//! [`Engine::restrict`]: crate::engine::Engine::restrict
//! [`Engine::object`]: crate::engine::Engine::object
//! [`Engine::purge_expired`]: crate::engine::Engine::purge_expired

mod access;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::Months;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Timestamp;
use crate::contact::ContactPoint;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{OrgId, ProspectId};
use crate::ports::Actor;

pub use access::{
    ConversationRecord, CsvTable, EXPORT_SCHEMA_VERSION, Enrolment, ProcessingInfo, SubjectExport,
};

/// The prefix of every suppression digest, naming the function that made it.
pub const DIGEST_PREFIX: &str = "hmac-sha256:";

/// The secret key of an org's suppression list.
///
/// The suppression list contains no contact point in clear: each entry is the
/// HMAC-SHA256 of the channel and the normalised contact point under this
/// key. A store creates one key per org the first time the org suppresses a
/// contact point, keeps it with the org, and deletes it with the org.
/// `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SuppressionKey([u8; 32]);

impl SuppressionKey {
    /// Creates a key from the operating system's random source.
    ///
    /// # Errors
    /// `Unexpected` when the random source fails.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0_u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| {
            Error::new(
                ErrorKind::Unexpected,
                format!("the system random source failed: {error}"),
            )
            .with_operation("generate_suppression_key")
        })?;
        Ok(SuppressionKey(bytes))
    }

    /// Wraps stored key bytes.
    ///
    /// # Errors
    /// `Unexpected` when `bytes` is not 32 bytes long: the stored key is damaged.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::new(
                ErrorKind::Unexpected,
                format!("a stored suppression key is {} bytes long instead of 32; restore it from a backup", bytes.len()),
            )
        })?;
        Ok(SuppressionKey(bytes))
    }

    /// Returns the key bytes, for the store to keep.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Returns the digest stored in the suppression list for `contact`:
    /// `hmac-sha256:` and 64 lower-case hex digits over `channel:key`.
    // HMAC takes a key of any length, so `new_from_slice` cannot fail here.
    #[allow(clippy::expect_used)]
    pub fn digest(&self, contact: &ContactPoint) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts any key length");
        mac.update(contact.channel().as_str().as_bytes());
        mac.update(b":");
        mac.update(contact.key().as_bytes());
        let bytes = mac.finalize().into_bytes();
        let mut text = String::with_capacity(DIGEST_PREFIX.len() + 64);
        text.push_str(DIGEST_PREFIX);
        for byte in bytes {
            text.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            text.push(char::from_digit(u32::from(byte & 0x0f), 16).unwrap_or('0'));
        }
        text
    }
}

impl fmt::Debug for SuppressionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SuppressionKey([redacted])")
    }
}

/// The right a data-subject request invokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Art. 15: a copy of the data and how it is processed.
    Access,
    /// Art. 20: the data in a machine-readable format.
    Portability,
    /// Art. 16: correct inaccurate data.
    Rectification,
    /// Art. 17: erase the data.
    Erasure,
    /// Art. 18: keep the data but stop processing it.
    Restriction,
    /// Art. 18(3): lift a restriction.
    LiftRestriction,
    /// Art. 21: no direct marketing.
    Objection,
}

impl RequestKind {
    /// Returns the snake-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Portability => "portability",
            RequestKind::Rectification => "rectification",
            RequestKind::Erasure => "erasure",
            RequestKind::Restriction => "restriction",
            RequestKind::LiftRestriction => "lift_restriction",
            RequestKind::Objection => "objection",
        }
    }

    /// Parses [`RequestKind::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "access" => RequestKind::Access,
            "portability" => RequestKind::Portability,
            "rectification" => RequestKind::Rectification,
            "erasure" => RequestKind::Erasure,
            "restriction" => RequestKind::Restriction,
            "lift_restriction" => RequestKind::LiftRestriction,
            "objection" => RequestKind::Objection,
            _ => return None,
        })
    }
}

/// The state of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum RequestOutcome {
    /// Received, with no response yet.
    Open,
    /// Carried out. The detail describes what was done, without personal data.
    Completed(String),
    /// Refused; the detail gives the reason.
    Refused(String),
}

/// A data-subject request and its outcome, kept as proof of the response.
///
/// It names the prospect by id only. After an erasure the id matches no row
/// any more, so the record contains no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRequest {
    /// The id.
    pub id: uuid::Uuid,
    /// The org.
    pub org_id: OrgId,
    /// The prospect the request is about.
    pub prospect_id: ProspectId,
    /// The right invoked.
    pub kind: RequestKind,
    /// The actor who recorded it.
    pub actor: Actor,
    /// When it was received.
    pub received_at: Timestamp,
    /// The deadline of the response: one month after receipt (Art. 12(3)).
    pub due_at: Timestamp,
    /// When it was answered.
    pub completed_at: Option<Timestamp>,
    /// The outcome.
    pub outcome: RequestOutcome,
}

impl SubjectRequest {
    /// Creates an open request received at `received_at`, due one calendar month
    /// later (the last day of the month when the day does not exist).
    pub fn open(
        org_id: OrgId,
        prospect_id: ProspectId,
        kind: RequestKind,
        actor: Actor,
        received_at: Timestamp,
    ) -> Self {
        SubjectRequest {
            id: uuid::Uuid::now_v7(),
            org_id,
            prospect_id,
            kind,
            actor,
            received_at,
            due_at: one_month_after(received_at),
            completed_at: None,
            outcome: RequestOutcome::Open,
        }
    }

    /// Marks the request answered at `at` with `detail`.
    pub fn complete(&mut self, at: Timestamp, detail: impl Into<String>) {
        self.completed_at = Some(at);
        self.outcome = RequestOutcome::Completed(detail.into());
    }

    /// Marks the request refused at `at` for `reason`.
    pub fn refuse(&mut self, at: Timestamp, reason: impl Into<String>) {
        self.completed_at = Some(at);
        self.outcome = RequestOutcome::Refused(reason.into());
    }
}

/// `at` plus one calendar month, clamped to the last day of the month.
pub fn one_month_after(at: Timestamp) -> Timestamp {
    at.checked_add_months(Months::new(1)).unwrap_or(at)
}

/// Rows deleted by an erasure, by table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReport {
    /// Rows deleted per table name, such as `messages` or `outbox`.
    pub deleted: BTreeMap<String, u64>,
}

impl ErasureReport {
    /// Adds `rows` deleted from `table`.
    pub fn add(&mut self, table: &str, rows: u64) {
        *self.deleted.entry(table.to_owned()).or_default() += rows;
    }

    /// The total number of rows deleted.
    pub fn total(&self) -> u64 {
        self.deleted.values().sum()
    }
}

/// How long personal data is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// A prospect is erased when this long has passed since it was collected
    /// and since its last own message. The default is three years, the
    /// period the CNIL recommends for prospects who do not answer.
    pub prospect: Duration,
    /// Messages older than this are deleted, whoever wrote them. `None`
    /// keeps them as long as their prospect.
    pub messages: Option<Duration>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            prospect: THREE_YEARS,
            messages: None,
        }
    }
}

impl RetentionPolicy {
    /// Sets how long a silent prospect is kept.
    pub fn with_prospect(mut self, keep: Duration) -> Self {
        self.prospect = keep;
        self
    }

    /// Sets how long messages are kept.
    pub fn with_messages(mut self, keep: Option<Duration>) -> Self {
        self.messages = keep;
        self
    }
}

/// Three years of 365.25 days.
pub const THREE_YEARS: Duration = Duration::from_secs(3 * 365 * 86_400 + 3 * 21_600);

/// What a retention purge removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Prospects erased because they were kept past the retention period.
    pub prospects_erased: u64,
    /// Messages deleted past their own limit.
    pub messages_deleted: u64,
}

/// A correction to a prospect's data. Fields left `None` are kept.
#[derive(Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Rectification {
    /// New given name; `Some(None)` clears it.
    pub first_name: Option<Option<String>>,
    /// New family name; `Some(None)` clears it.
    pub last_name: Option<Option<String>>,
    /// New company; `Some(None)` clears it.
    pub company: Option<Option<String>>,
    /// New job title; `Some(None)` clears it.
    pub job_title: Option<Option<String>>,
    /// New e-mail address; `Some(None)` clears it.
    pub email: Option<Option<crate::contact::EmailAddress>>,
    /// New phone number; `Some(None)` clears it.
    pub phone: Option<Option<crate::contact::PhoneNumber>>,
    /// Custom fields to set; a `None` value removes the field.
    pub custom_fields: BTreeMap<String, Option<crate::prospect::CustomValue>>,
    /// Corrected qualification facts by criterion key; a `None` value
    /// removes the fact. The score is recomputed from the result.
    pub facts: BTreeMap<String, Option<crate::qualification::FactValue>>,
}

impl Rectification {
    /// An empty correction.
    pub fn new() -> Self {
        Rectification::default()
    }

    /// Whether the correction changes nothing.
    pub fn is_empty(&self) -> bool {
        self.first_name.is_none()
            && self.last_name.is_none()
            && self.company.is_none()
            && self.job_title.is_none()
            && self.email.is_none()
            && self.phone.is_none()
            && self.custom_fields.is_empty()
            && self.facts.is_empty()
    }
}

impl fmt::Debug for Rectification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut fields: Vec<&str> = Vec::new();
        for (name, set) in [
            ("first_name", self.first_name.is_some()),
            ("last_name", self.last_name.is_some()),
            ("company", self.company.is_some()),
            ("job_title", self.job_title.is_some()),
            ("email", self.email.is_some()),
            ("phone", self.phone.is_some()),
        ] {
            if set {
                fields.push(name);
            }
        }
        f.debug_struct("Rectification")
            .field("fields", &fields)
            .field(
                "custom_fields",
                &self.custom_fields.keys().collect::<Vec<_>>(),
            )
            .field("facts", &self.facts.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::{EmailAddress, PhoneNumber, Region};

    #[test]
    fn digest_is_stable_per_key_and_differs_across_keys() {
        let key = SuppressionKey::from_slice(&[7; 32]).unwrap();
        let other = SuppressionKey::from_slice(&[8; 32]).unwrap();
        let email = ContactPoint::Email(EmailAddress::parse("Jean@Example.fr").unwrap());
        let digest = key.digest(&email);
        assert!(digest.starts_with(DIGEST_PREFIX));
        assert_eq!(digest.len(), DIGEST_PREFIX.len() + 64);
        assert_eq!(digest, key.digest(&email));
        assert_ne!(digest, other.digest(&email));
        assert!(!digest.contains("example"));
    }

    #[test]
    fn digest_separates_channels() {
        let key = SuppressionKey::from_slice(&[1; 32]).unwrap();
        let phone = ContactPoint::Phone(PhoneNumber::parse("+33612345678", Region::FR).unwrap());
        let psid =
            ContactPoint::Messenger(crate::contact::MessengerPsid::parse("33612345678").unwrap());
        assert_ne!(key.digest(&phone), key.digest(&psid));
    }

    #[test]
    fn a_damaged_key_is_an_error() {
        let error = SuppressionKey::from_slice(&[1; 5]).unwrap_err();
        assert!(error.to_string().contains("5 bytes"));
    }

    #[test]
    fn due_date_is_one_calendar_month_later() {
        let at = "2026-01-31T10:00:00Z".parse::<Timestamp>().unwrap();
        assert_eq!(
            one_month_after(at).to_rfc3339(),
            "2026-02-28T10:00:00+00:00"
        );
        let at = "2026-03-15T00:00:00Z".parse::<Timestamp>().unwrap();
        assert_eq!(
            one_month_after(at).to_rfc3339(),
            "2026-04-15T00:00:00+00:00"
        );
    }

    #[test]
    fn key_debug_is_redacted() {
        let key = SuppressionKey::from_slice(&[9; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "SuppressionKey([redacted])");
    }
}

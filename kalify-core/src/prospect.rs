//! The prospect: who kalify talks to, how to reach them and what is known.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::contact::{ChannelKind, ContactPoint, EmailAddress, MessengerPsid, PhoneNumber};
use crate::conversation::ConversationState;
use crate::error::{Error, Result};
use crate::id::{MemberId, OrgId, ProspectId};
use crate::qualification::Score;

/// A monotonically increasing row version for optimistic concurrency.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version after one more write.
    pub fn next(self) -> Version {
        Version(self.0 + 1)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// The language kalify writes to a prospect in.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    /// English.
    #[default]
    En,
    /// French.
    Fr,
}

impl Locale {
    /// The BCP 47 language code.
    pub fn as_str(&self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fr => "fr",
        }
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Locale {
    type Err = Error;

    /// Reads `en`, `fr` and tags such as `fr-FR`, `fr_CA` or `English`.
    fn from_str(text: &str) -> Result<Self> {
        let lower = text.trim().to_ascii_lowercase();
        let language = lower.split(['-', '_']).next().unwrap_or("");
        match language {
            "en" | "english" | "anglais" => Ok(Locale::En),
            "fr" | "french" | "francais" | "français" => Ok(Locale::Fr),
            _ => Err(Error::invalid_input(format!(
                "unsupported locale {text:?}: expected en or fr"
            ))),
        }
    }
}

/// The value of a custom field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum CustomValue {
    /// Free text.
    Text(String),
    /// A number.
    Number(f64),
    /// A yes/no value.
    Bool(bool),
    /// A calendar date.
    Date(NaiveDate),
}

impl fmt::Display for CustomValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CustomValue::Text(text) => f.write_str(text),
            CustomValue::Number(number) => write!(f, "{number}"),
            CustomValue::Bool(value) => write!(f, "{value}"),
            CustomValue::Date(date) => write!(f, "{date}"),
        }
    }
}

/// The legal basis a send relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentBasis {
    /// The person gave recorded consent (required for B2C SMS and e-mail marketing in France).
    Consent,
    /// A documented professional interest (B2B e-mail).
    LegitimateInterest,
}

/// A recorded consent or legal basis for one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    /// The channel it covers.
    pub channel: ChannelKind,
    /// The basis.
    pub basis: ConsentBasis,
    /// When it was collected.
    pub collected_at: Timestamp,
    /// Where it was collected, such as a form name or an import file.
    pub source: String,
    /// The version of the wording the person agreed to, when known.
    pub wording_version: Option<String>,
    /// When it was withdrawn, if it was.
    pub withdrawn_at: Option<Timestamp>,
}

impl Consent {
    /// True while not withdrawn.
    pub fn is_active(&self) -> bool {
        self.withdrawn_at.is_none()
    }
}

/// A person kalify may qualify.
///
/// `Debug` omits names and contact data.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Prospect {
    /// The id.
    pub id: ProspectId,
    /// The org the prospect belongs to.
    pub org_id: OrgId,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Company name.
    pub company: Option<String>,
    /// Job title.
    pub job_title: Option<String>,
    /// Mobile or landline number.
    pub phone: Option<PhoneNumber>,
    /// E-mail address.
    pub email: Option<EmailAddress>,
    /// Messenger page-scoped id.
    pub messenger: Option<MessengerPsid>,
    /// Language to write in.
    pub locale: Locale,
    /// IANA time zone, when known.
    pub time_zone: Option<chrono_tz::Tz>,
    /// Where the prospect came from, such as the import file's source tag.
    pub source: Option<String>,
    /// Free tags.
    pub tags: Vec<String>,
    /// Typed custom fields by name.
    pub custom_fields: BTreeMap<String, CustomValue>,
    /// The state of the prospect's most recent conversation.
    pub status: ConversationState,
    /// The latest score and its breakdown.
    pub score: Option<Score>,
    /// The member who owns the prospect.
    pub owner: Option<MemberId>,
    /// Consent records per channel.
    pub consents: Vec<Consent>,
    /// Processing is restricted: the data is kept but not processed.
    pub restricted: bool,
    /// The person objected to direct marketing, on every channel.
    pub objected: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Row version.
    pub version: Version,
}

impl Prospect {
    /// Creates an empty prospect in `org_id`.
    pub fn new(org_id: OrgId, now: Timestamp) -> Self {
        Prospect {
            id: ProspectId::new(),
            org_id,
            first_name: None,
            last_name: None,
            company: None,
            job_title: None,
            phone: None,
            email: None,
            messenger: None,
            locale: Locale::default(),
            time_zone: None,
            source: None,
            tags: Vec::new(),
            custom_fields: BTreeMap::new(),
            status: ConversationState::New,
            score: None,
            owner: None,
            consents: Vec::new(),
            restricted: false,
            objected: false,
            created_at: now,
            updated_at: now,
            version: Version(0),
        }
    }

    /// The given and family names joined, or the company, or `"(no name)"`.
    pub fn display_name(&self) -> String {
        let parts: Vec<&str> = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|part| !part.is_empty())
            .collect();
        if !parts.is_empty() {
            return parts.join(" ");
        }
        self.company
            .clone()
            .unwrap_or_else(|| "(no name)".to_owned())
    }

    /// Every contact point the prospect has.
    pub fn contact_points(&self) -> Vec<ContactPoint> {
        let mut points = Vec::new();
        if let Some(phone) = &self.phone {
            points.push(ContactPoint::Phone(phone.clone()));
        }
        if let Some(email) = &self.email {
            points.push(ContactPoint::Email(email.clone()));
        }
        if let Some(psid) = &self.messenger {
            points.push(ContactPoint::Messenger(psid.clone()));
        }
        points
    }

    /// The contact point for `channel`, if the prospect has one.
    pub fn contact_for(&self, channel: ChannelKind) -> Option<ContactPoint> {
        match channel {
            ChannelKind::Sms => self.phone.clone().map(ContactPoint::Phone),
            ChannelKind::Email => self.email.clone().map(ContactPoint::Email),
            ChannelKind::Messenger => self.messenger.clone().map(ContactPoint::Messenger),
        }
    }
}

impl fmt::Debug for Prospect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prospect")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("phone", &self.phone)
            .field("email", &self.email)
            .field("locale", &self.locale)
            .field("status", &self.status)
            .field("score", &self.score.as_ref().map(|score| score.value))
            .field("custom_fields", &self.custom_fields.len())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_parses_tags() {
        assert_eq!("fr-FR".parse::<Locale>().unwrap(), Locale::Fr);
        assert_eq!("en_GB".parse::<Locale>().unwrap(), Locale::En);
        assert!("de".parse::<Locale>().is_err());
    }

    #[test]
    fn debug_omits_names() {
        let mut prospect = Prospect::new(OrgId::new(), chrono::Utc::now());
        prospect.first_name = Some("Camille".into());
        prospect.last_name = Some("Martin".into());
        let debug = format!("{prospect:?}");
        assert!(!debug.contains("Camille"));
        assert!(!debug.contains("Martin"));
        assert_eq!(prospect.display_name(), "Camille Martin");
    }
}

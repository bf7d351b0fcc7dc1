//! The document an access or portability request returns.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::conversation::{Conversation, ConversationState, Message};
use crate::error::{Error, Result};
use crate::gdpr::{RetentionPolicy, SubjectRequest};
use crate::id::{CampaignId, ConversationId, OrgId};
use crate::ports::{AuditEvent, ModelExchange};
use crate::prospect::Prospect;

/// The version of the [`SubjectExport`] layout. It grows when a field
/// changes meaning or disappears; new fields do not change it.
pub const EXPORT_SCHEMA_VERSION: u32 = 1;

/// The processing information GDPR Art. 13–15 require the controller to
/// give a person about their data.
///
/// The default from [`EngineBuilder`](crate::engine::EngineBuilder) describes
/// what kalify does; an embedding service sets its own controller, contact
/// and purposes with [`EngineBuilder::with_processing_info`](crate::engine::EngineBuilder::with_processing_info).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessingInfo {
    /// The controller's name and contact, or the data protection officer's.
    pub controller: Option<String>,
    /// The purposes of the processing.
    pub purposes: Vec<String>,
    /// The legal bases relied on.
    pub legal_bases: Vec<String>,
    /// The categories of personal data processed.
    pub categories: Vec<String>,
    /// The recipients of the data: the providers that carry messages and the models that read them.
    pub recipients: Vec<String>,
    /// How long the data is kept.
    pub retention: String,
    /// Automated decisions, including profiling, and their logic (Art. 22).
    pub automated_decisions: String,
    /// The rights the person has and how to use them.
    pub rights: Vec<String>,
}

impl ProcessingInfo {
    /// kalify's own description of its processing, naming `recipients`.
    pub fn kalify_default(recipients: &[String], retention: &RetentionPolicy) -> Self {
        let years = retention.prospect.as_secs() as f64 / (365.25 * 86_400.0);
        let messages = match retention.messages {
            Some(keep) => format!(
                "; messages are deleted after {} days",
                keep.as_secs() / 86_400
            ),
            None => String::new(),
        };
        ProcessingInfo {
            controller: None,
            purposes: vec![
                "commercial prospecting: contacting the person about an offer".to_owned(),
                "lead qualification: understanding budget, authority, need and timeline from the person's replies"
                    .to_owned(),
                "handing qualified or interested persons to a member of the sales team".to_owned(),
            ],
            legal_bases: vec![
                "consent, where recorded per channel (SMS and e-mail to individuals)".to_owned(),
                "legitimate interest (e-mail to professionals about their work)".to_owned(),
                "legal obligation (keeping opt-outs so that the person is not contacted again)".to_owned(),
            ],
            categories: vec![
                "identity and professional details (name, company, job title)".to_owned(),
                "contact points (phone number, e-mail address, Messenger id)".to_owned(),
                "messages exchanged and the facts drawn from them".to_owned(),
                "consent records, scores and the history of actions".to_owned(),
            ],
            recipients: recipients.to_vec(),
            retention: format!(
                "{years:.1} years after collection or after the person's last message, whichever is later{messages}; \
                 opt-outs are kept as a keyed hash of the contact point for as long as the organisation exists"
            ),
            automated_decisions: "a score from 0 to 100 is computed from the facts found in the person's replies, \
                 with a points table per criterion (budget, authority, need, timeline); it decides whether the \
                 conversation goes on, is handed to a person, or ends. Each score is stored with its breakdown \
                 and the words it rests on, and a person may ask for a member of the team to review it."
                .to_owned(),
            rights: vec![
                "access and portability (this document)".to_owned(),
                "rectification".to_owned(),
                "erasure".to_owned(),
                "restriction of processing".to_owned(),
                "objection to direct marketing, at any time, by replying STOP or by asking the team".to_owned(),
                "complaint to the supervisory authority (in France, the CNIL)".to_owned(),
            ],
        }
    }

    /// Sets the controller's name and contact.
    pub fn with_controller(mut self, controller: impl Into<String>) -> Self {
        self.controller = Some(controller.into());
        self
    }

    /// Replaces the purposes.
    pub fn with_purposes(mut self, purposes: Vec<String>) -> Self {
        self.purposes = purposes;
        self
    }
}

/// A campaign the prospect was enrolled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Enrolment {
    /// The campaign.
    pub campaign_id: CampaignId,
    /// Its name.
    pub campaign_name: String,
    /// The conversation it started.
    pub conversation_id: ConversationId,
    /// When.
    pub enrolled_at: Timestamp,
    /// The state of that conversation.
    pub state: ConversationState,
}

/// One conversation with its messages, facts and score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// The conversation, with its facts, their evidence and its score breakdown.
    pub conversation: Conversation,
    /// Every message, oldest first.
    pub messages: Vec<Message>,
}

/// Everything kalify stores about one person, as GDPR Art. 15 (access) and
/// Art. 20 (portability) ask: serialise it with [`SubjectExport::to_json`],
/// or write its tables with [`SubjectExport::csv_tables`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubjectExport {
    /// [`EXPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// When the document was made.
    pub generated_at: Timestamp,
    /// The org holding the data.
    pub org_id: OrgId,
    /// The profile: names, contact points, custom fields, consent records,
    /// restriction and objection flags, the latest score with its breakdown.
    pub prospect: Prospect,
    /// The sources of the data: the import source and the consent sources.
    pub sources: Vec<String>,
    /// Campaign enrolments.
    pub enrolments: Vec<Enrolment>,
    /// Conversations with every message, fact and score.
    pub conversations: Vec<ConversationRecord>,
    /// The requests sent to language models and their responses.
    pub model_exchanges: Vec<ModelExchange>,
    /// The history of actions about the person.
    pub audit: Vec<AuditEvent>,
    /// Data-subject requests and their outcomes.
    pub requests: Vec<SubjectRequest>,
    /// The processing information.
    pub processing: ProcessingInfo,
}

/// One table of an export as CSV text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvTable {
    /// The file name, such as `messages.csv`.
    pub name: String,
    /// The CSV text, with a header row.
    pub content: String,
}

impl SubjectExport {
    /// Serialises the document as pretty-printed JSON.
    ///
    /// # Errors
    /// `Unexpected` when serialisation fails.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|error| {
            Error::unexpected("the subject export could not be serialised").with_source(error)
        })
    }

    /// Writes the tabular parts as CSV files: `profile.csv` (one field per row),
    /// `consents.csv`, `enrolments.csv`, `messages.csv`, `facts.csv`,
    /// `scores.csv`, `model_exchanges.csv`, `audit.csv` and `requests.csv`.
    /// Cells a spreadsheet would run as a formula get a leading `'`.
    ///
    /// # Errors
    /// `Unexpected` when a table cannot be written.
    pub fn csv_tables(&self) -> Result<Vec<CsvTable>> {
        let prospect = &self.prospect;
        let mut profile = Table::new("profile.csv", &["field", "value"]);
        let optional = |value: &Option<String>| value.clone().unwrap_or_default();
        profile.row([Cow::from("id"), prospect.id.to_string().into()]);
        profile.row(["first_name".into(), optional(&prospect.first_name).into()]);
        profile.row(["last_name".into(), optional(&prospect.last_name).into()]);
        profile.row(["company".into(), optional(&prospect.company).into()]);
        profile.row(["job_title".into(), optional(&prospect.job_title).into()]);
        profile.row([
            "phone".into(),
            prospect
                .phone
                .as_ref()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default()
                .into(),
        ]);
        profile.row([
            "email".into(),
            prospect
                .email
                .as_ref()
                .map(|e| e.as_str().to_owned())
                .unwrap_or_default()
                .into(),
        ]);
        profile.row([
            "messenger".into(),
            prospect
                .messenger
                .as_ref()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default()
                .into(),
        ]);
        profile.row(["locale".into(), prospect.locale.as_str().into()]);
        profile.row(["source".into(), optional(&prospect.source).into()]);
        profile.row(["tags".into(), prospect.tags.join("|").into()]);
        profile.row(["status".into(), prospect.status.as_str().into()]);
        profile.row([
            "score".into(),
            prospect
                .score
                .as_ref()
                .map(|s| s.value.to_string())
                .unwrap_or_default()
                .into(),
        ]);
        profile.row(["restricted".into(), prospect.restricted.to_string().into()]);
        profile.row(["objected".into(), prospect.objected.to_string().into()]);
        profile.row(["created_at".into(), prospect.created_at.to_rfc3339().into()]);
        for (name, value) in &prospect.custom_fields {
            profile.row([format!("custom.{name}").into(), value.to_string().into()]);
        }

        let mut consents = Table::new(
            "consents.csv",
            &[
                "channel",
                "basis",
                "collected_at",
                "source",
                "wording_version",
                "withdrawn_at",
            ],
        );
        for consent in &prospect.consents {
            consents.row([
                consent.channel.as_str().into(),
                json_name(&consent.basis).into(),
                consent.collected_at.to_rfc3339().into(),
                consent.source.as_str().into(),
                optional(&consent.wording_version).into(),
                consent
                    .withdrawn_at
                    .map(|at| at.to_rfc3339())
                    .unwrap_or_default()
                    .into(),
            ]);
        }

        let mut enrolments = Table::new(
            "enrolments.csv",
            &[
                "campaign_id",
                "campaign_name",
                "conversation_id",
                "enrolled_at",
                "state",
            ],
        );
        for enrolment in &self.enrolments {
            enrolments.row([
                enrolment.campaign_id.to_string().into(),
                enrolment.campaign_name.as_str().into(),
                enrolment.conversation_id.to_string().into(),
                enrolment.enrolled_at.to_rfc3339().into(),
                enrolment.state.as_str().into(),
            ]);
        }

        let mut messages = Table::new(
            "messages.csv",
            &[
                "conversation_id",
                "message_id",
                "at",
                "direction",
                "channel",
                "sender",
                "subject",
                "text",
                "status",
            ],
        );
        let mut facts = Table::new(
            "facts.csv",
            &[
                "conversation_id",
                "criterion",
                "value",
                "quote",
                "message_id",
                "confidence",
                "extracted_at",
            ],
        );
        let mut scores = Table::new(
            "scores.csv",
            &[
                "conversation_id",
                "score",
                "band",
                "criterion",
                "points",
                "max",
                "value",
                "quote",
            ],
        );
        for record in &self.conversations {
            let conversation = &record.conversation;
            for message in &record.messages {
                messages.row([
                    conversation.id.to_string().into(),
                    message.id.to_string().into(),
                    message.at.to_rfc3339().into(),
                    json_name(&message.direction).into(),
                    message.channel.as_str().into(),
                    message
                        .sender
                        .as_ref()
                        .map(json_name)
                        .unwrap_or_default()
                        .into(),
                    optional(&message.subject).into(),
                    message.text.as_str().into(),
                    json_name(&message.status).into(),
                ]);
            }
            for fact in &conversation.facts {
                facts.row([
                    conversation.id.to_string().into(),
                    fact.key.as_str().into(),
                    fact.value.to_string().into(),
                    fact.evidence.quote.as_str().into(),
                    fact.evidence.message_id.to_string().into(),
                    fact.evidence.confidence.to_string().into(),
                    fact.extracted_at.to_rfc3339().into(),
                ]);
            }
            if let Some(score) = &conversation.score {
                for entry in &score.breakdown {
                    scores.row([
                        conversation.id.to_string().into(),
                        score.value.to_string().into(),
                        json_name(&score.band).into(),
                        entry.key.as_str().into(),
                        entry.points.to_string().into(),
                        entry.max.to_string().into(),
                        entry
                            .value
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                            .into(),
                        optional(&entry.quote).into(),
                    ]);
                }
            }
        }

        let mut exchanges = Table::new(
            "model_exchanges.csv",
            &[
                "conversation_id",
                "at",
                "model",
                "operation",
                "request",
                "response",
            ],
        );
        for exchange in &self.model_exchanges {
            exchanges.row([
                exchange.conversation_id.to_string().into(),
                exchange.at.to_rfc3339().into(),
                exchange.model.as_str().into(),
                exchange.operation.as_str().into(),
                exchange.request.as_str().into(),
                exchange.response.as_str().into(),
            ]);
        }

        let mut audit = Table::new(
            "audit.csv",
            &["at", "action", "actor", "conversation_id", "detail"],
        );
        for event in &self.audit {
            audit.row([
                event.at.to_rfc3339().into(),
                event.action.as_str().into(),
                serde_json::to_string(&event.actor)
                    .unwrap_or_default()
                    .into(),
                event
                    .conversation_id
                    .map(|id| id.to_string())
                    .unwrap_or_default()
                    .into(),
                event.detail.as_str().into(),
            ]);
        }

        let mut requests = Table::new(
            "requests.csv",
            &[
                "request_id",
                "kind",
                "received_at",
                "due_at",
                "completed_at",
                "outcome",
            ],
        );
        for request in &self.requests {
            requests.row([
                request.id.to_string().into(),
                request.kind.as_str().into(),
                request.received_at.to_rfc3339().into(),
                request.due_at.to_rfc3339().into(),
                request
                    .completed_at
                    .map(|at| at.to_rfc3339())
                    .unwrap_or_default()
                    .into(),
                serde_json::to_string(&request.outcome)
                    .unwrap_or_default()
                    .into(),
            ]);
        }

        [
            profile, consents, enrolments, messages, facts, scores, exchanges, audit, requests,
        ]
        .into_iter()
        .map(Table::finish)
        .collect()
    }
}

/// Returns the serde name of a unit enum variant, such as `inbound`.
fn json_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A cell a spreadsheet shows as text: a leading `'` before `=`, `+`,
/// `-`, `@`, a tab or a carriage return.
fn guard(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

struct Table {
    name: &'static str,
    writer: csv::Writer<Vec<u8>>,
    error: Option<csv::Error>,
}

impl Table {
    fn new(name: &'static str, header: &[&str]) -> Self {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let error = writer.write_record(header).err();
        Table {
            name,
            writer,
            error,
        }
    }

    fn row<'a, const N: usize>(&mut self, cells: [Cow<'a, str>; N]) {
        if self.error.is_some() {
            return;
        }
        let guarded = cells.iter().map(|cell| guard(cell).into_owned());
        if let Err(error) = self.writer.write_record(guarded) {
            self.error = Some(error);
        }
    }

    fn finish(self) -> Result<CsvTable> {
        let fail = |detail: String| {
            Error::unexpected(format!(
                "the subject export table {} could not be written: {detail}",
                self.name
            ))
        };
        if let Some(error) = self.error {
            return Err(fail(error.to_string()));
        }
        let bytes = self
            .writer
            .into_inner()
            .map_err(|error| fail(error.to_string()))?;
        let content = String::from_utf8(bytes).map_err(|error| fail(error.to_string()))?;
        Ok(CsvTable {
            name: self.name.to_owned(),
            content,
        })
    }
}

//! The typed result of analysing a prospect's reply, and the requests a
//! language model receives.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::contact::ChannelKind;
use crate::conversation::{Direction, SendPurpose};
use crate::prospect::Locale;
use crate::qualification::FactValue;

/// The prospect's intent, as far as the reply shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Interested in the offer.
    Interested,
    /// Declines the offer.
    NotInterested,
    /// Asks a question.
    Question,
    /// Asks for a meeting or a call.
    MeetingRequest,
    /// Asks to talk to a person.
    AsksForHuman,
    /// Objects to being messaged at all.
    ObjectsToMessages,
    /// None of the above can be determined.
    Unclear,
}

/// The tone of the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    /// Positive.
    Positive,
    /// Neutral.
    Neutral,
    /// Negative.
    Negative,
}

/// The analysis's certainty that the prospect objects to being messaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objection {
    /// No objection.
    #[default]
    None,
    /// Possibly an objection; a member should review it.
    Doubtful,
    /// A clear objection, handled as an opt-out.
    Clear,
}

/// The step the analysis suggests. The engine decides; this is advice from an allow-list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", content = "key", rename_all = "snake_case")]
pub enum NextStep {
    /// Reply and keep qualifying.
    Reply,
    /// Ask for the fact with this criterion key.
    AskFor(String),
    /// Hand the conversation to a member.
    HandOff,
    /// Propose a meeting.
    Schedule,
    /// The prospect fails a requirement.
    Disqualify,
    /// Nothing to do.
    Wait,
}

/// A fact as an extractor reports it, before the engine ties it to a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtractedFact {
    /// The criterion key.
    pub key: String,
    /// The value.
    pub value: FactValue,
    /// The words of the reply that state it, copied exactly.
    pub quote: String,
    /// Confidence from 0 to 1.
    pub confidence: f32,
}

/// The analysis of one or more new replies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// The intent.
    pub intent: Intent,
    /// Facts found in the new replies.
    pub facts: Vec<ExtractedFact>,
    /// The tone.
    pub sentiment: Sentiment,
    /// Whether the prospect objects to being messaged.
    pub objection: Objection,
    /// The suggested step.
    pub next_step: NextStep,
    /// The language the prospect wrote in, when it can be determined.
    pub language: Option<Locale>,
}

impl Analysis {
    /// Returns an analysis that found nothing.
    pub fn empty() -> Self {
        Analysis {
            intent: Intent::Unclear,
            facts: Vec::new(),
            sentiment: Sentiment::Neutral,
            objection: Objection::None,
            next_step: NextStep::Wait,
            language: None,
        }
    }
}

/// One line of a conversation as a model receives it, without contact data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TranscriptLine {
    /// The author: the prospect (inbound) or the org (outbound).
    pub direction: Direction,
    /// The text.
    pub text: String,
    /// When.
    pub at: Timestamp,
}

/// A criterion as a model needs to know it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionBrief {
    /// The fact key.
    pub key: String,
    /// Its meaning.
    pub description: String,
    /// The question that requests it, in the prospect's language.
    pub question: String,
}

/// The input of [`LanguageModel::analyse`](crate::ports::LanguageModel::analyse).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRequest {
    /// The prospect's language as far as known.
    pub locale: Locale,
    /// The criteria to extract facts for.
    pub criteria: Vec<CriterionBrief>,
    /// Facts already known, by key.
    pub known_facts: Vec<(String, FactValue)>,
    /// Earlier messages, oldest first.
    pub history: Vec<TranscriptLine>,
    /// The new replies to analyse, oldest first.
    pub new_messages: Vec<TranscriptLine>,
}

/// The input of [`LanguageModel::write_reply`](crate::ports::LanguageModel::write_reply).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyRequest {
    /// The language to write in.
    pub locale: Locale,
    /// The channel the reply goes out on.
    pub channel: ChannelKind,
    /// Why the reply is sent.
    pub purpose: SendPurpose,
    /// Who the sender is, such as "Léa from Acme".
    pub persona: String,
    /// What the campaign wants, such as "book a demo".
    pub goal: String,
    /// The prospect's given name, if known.
    pub first_name: Option<String>,
    /// The criteria still unknown, in the order to ask them.
    pub missing: Vec<CriterionBrief>,
    /// The conversation so far, oldest first.
    pub history: Vec<TranscriptLine>,
    /// The intent of the latest analysis.
    pub intent: Intent,
    /// Whether the reply must say that it is automated.
    pub disclose_automation: bool,
    /// Whether links are allowed.
    pub allow_links: bool,
    /// The maximum length in characters.
    pub max_chars: usize,
}

/// A reply written by a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyDraft {
    /// The text to send.
    pub text: String,
}

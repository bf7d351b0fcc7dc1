//! States, events, effects and the policy of the conversation state machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The state of a conversation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    /// Enrolled, nothing sent yet.
    #[default]
    New,
    /// Outreach sent, no reply yet.
    Contacted,
    /// The prospect replied; too little is known to qualify.
    Engaged,
    /// Some qualification facts are known; more are being asked for.
    Qualifying,
    /// The score reached the qualified threshold.
    Qualified,
    /// A hard requirement failed.
    Disqualified,
    /// A member has the conversation; the AI stays silent until released.
    HandedOff,
    /// The prospect opted out; nothing more is sent.
    OptedOut,
    /// Every follow-up went unanswered.
    Unresponsive,
    /// Closed: the prospect declined, or a member closed it.
    Closed,
}

impl ConversationState {
    /// Every state, in declaration order.
    pub const ALL: [ConversationState; 10] = [
        ConversationState::New,
        ConversationState::Contacted,
        ConversationState::Engaged,
        ConversationState::Qualifying,
        ConversationState::Qualified,
        ConversationState::Disqualified,
        ConversationState::HandedOff,
        ConversationState::OptedOut,
        ConversationState::Unresponsive,
        ConversationState::Closed,
    ];

    /// The snake_case name used in storage and reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConversationState::New => "new",
            ConversationState::Contacted => "contacted",
            ConversationState::Engaged => "engaged",
            ConversationState::Qualifying => "qualifying",
            ConversationState::Qualified => "qualified",
            ConversationState::Disqualified => "disqualified",
            ConversationState::HandedOff => "handed_off",
            ConversationState::OptedOut => "opted_out",
            ConversationState::Unresponsive => "unresponsive",
            ConversationState::Closed => "closed",
        }
    }

    /// True while automated follow-ups may still fire.
    pub fn awaits_follow_up(&self) -> bool {
        matches!(
            self,
            ConversationState::Contacted
                | ConversationState::Engaged
                | ConversationState::Qualifying
        )
    }
}

impl fmt::Display for ConversationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConversationState {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        ConversationState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| Error::invalid_input(format!("unknown conversation state {text:?}")))
    }
}

/// How a reply scored against the qualification framework.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreBand {
    /// At or above the qualified threshold.
    Qualified,
    /// At or above the qualifying threshold.
    Qualifying,
    /// Below both thresholds.
    Low,
}

/// What the engine concluded from an analysed reply; the input of
/// [`Event::ReplyAnalysed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReplyOutcome {
    /// The score band after the facts were merged.
    pub band: ScoreBand,
    /// A hard requirement failed.
    pub disqualified: bool,
    /// The prospect asked for a person.
    pub wants_human: bool,
    /// The prospect declined the offer (not an objection to being messaged).
    pub not_interested: bool,
    /// The sentiment was negative.
    pub negative: bool,
}

/// Something that happened to a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A scheduled campaign message is due: attempt 0 is the first message,
    /// later attempts are follow-ups.
    FollowUpDue {
        /// The attempt number.
        attempt: u32,
    },
    /// An inbound reply was analysed.
    ReplyAnalysed(ReplyOutcome),
    /// The prospect sent an opt-out keyword or objected to being messaged.
    OptOutReceived,
    /// The prospect sent an opt-in keyword.
    OptInReceived,
    /// The prospect sent a help keyword.
    HelpRequested,
    /// A member took the conversation over.
    MemberTookOver,
    /// A member sent a message.
    MemberReplied,
    /// A member handed the conversation back to the AI.
    Released,
    /// A member closed the conversation.
    ClosedByMember,
}

impl Event {
    /// The snake_case name used in audit records.
    pub fn name(&self) -> &'static str {
        match self {
            Event::FollowUpDue { .. } => "follow_up_due",
            Event::ReplyAnalysed(_) => "reply_analysed",
            Event::OptOutReceived => "opt_out_received",
            Event::OptInReceived => "opt_in_received",
            Event::HelpRequested => "help_requested",
            Event::MemberTookOver => "member_took_over",
            Event::MemberReplied => "member_replied",
            Event::Released => "released",
            Event::ClosedByMember => "closed_by_member",
        }
    }
}

/// Who writes an outbound message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    /// A campaign template, rendered automatically.
    Campaign,
    /// The language model.
    Ai,
    /// A fixed compliance text (confirmations, help).
    System,
    /// A team member.
    Member,
}

impl Sender {
    /// The snake_case name used in storage.
    pub fn as_str(&self) -> &'static str {
        match self {
            Sender::Campaign => "campaign",
            Sender::Ai => "ai",
            Sender::System => "system",
            Sender::Member => "member",
        }
    }

    /// True for messages that no person wrote.
    pub fn is_automated(&self) -> bool {
        !matches!(self, Sender::Member)
    }
}

impl FromStr for Sender {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "campaign" => Ok(Sender::Campaign),
            "ai" => Ok(Sender::Ai),
            "system" => Ok(Sender::System),
            "member" => Ok(Sender::Member),
            _ => Err(Error::invalid_input(format!("unknown sender {text:?}"))),
        }
    }
}

/// Why a message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "purpose", rename_all = "snake_case")]
pub enum SendPurpose {
    /// A campaign step: attempt 0 is the first message.
    Outreach {
        /// The attempt number.
        attempt: u32,
    },
    /// A reply that moves qualification on.
    Reply,
    /// A polite last message after a decline or a disqualification.
    Closing,
    /// Tells a qualified prospect what happens next.
    Qualified,
    /// Tells the prospect a person will follow up.
    HandoffAck,
    /// Confirms an opt-out; exactly one per opt-out.
    OptOutConfirmation,
    /// Confirms an opt-in.
    OptInConfirmation,
    /// The reply to a help keyword.
    Help,
    /// A member's own message.
    MemberMessage,
}

impl SendPurpose {
    /// True for sends that compliance rules treat as transactional rather
    /// than marketing (confirmations and help texts).
    pub fn is_transactional(&self) -> bool {
        matches!(
            self,
            SendPurpose::OptOutConfirmation | SendPurpose::OptInConfirmation | SendPurpose::Help
        )
    }
}

/// A team event to notify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// The prospect reached the qualified band.
    HotLead,
    /// The conversation was handed to a member.
    HandoffRequested,
    /// A message arrived while a member has the conversation.
    ProspectReplied,
    /// The prospect opted out.
    OptedOut,
    /// A reminder a member scheduled on the prospect is due.
    ReminderDue,
    /// A data-subject request about the prospect is due soon and still open.
    SubjectRequestDueSoon,
}

impl NotificationKind {
    /// Returns the snake-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::HotLead => "hot_lead",
            NotificationKind::HandoffRequested => "handoff_requested",
            NotificationKind::ProspectReplied => "prospect_replied",
            NotificationKind::OptedOut => "opted_out",
            NotificationKind::ReminderDue => "reminder_due",
            NotificationKind::SubjectRequestDueSoon => "subject_request_due_soon",
        }
    }

    /// A one-line English summary, without personal data.
    pub fn summary(self) -> &'static str {
        match self {
            NotificationKind::HotLead => "A prospect is qualified",
            NotificationKind::HandoffRequested => "A prospect asks for a person",
            NotificationKind::ProspectReplied => "Your prospect replied",
            NotificationKind::OptedOut => "A prospect opted out",
            NotificationKind::ReminderDue => "Reminder",
            NotificationKind::SubjectRequestDueSoon => "A data-subject request is due soon",
        }
    }
}

/// A side effect the engine carries out after a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// Send a message.
    Send {
        /// Why.
        purpose: SendPurpose,
        /// Who writes it.
        sender: Sender,
    },
    /// Schedule the next campaign attempt.
    ScheduleFollowUp {
        /// The attempt number to schedule.
        attempt: u32,
    },
    /// Cancel every pending follow-up of the prospect, in every campaign.
    CancelFollowUps,
    /// Add the prospect's contact points to the suppression list.
    Suppress,
    /// Remove the prospect's contact points from the suppression list.
    Unsuppress,
    /// Notify the team.
    Notify(NotificationKind),
}

/// Settings the state machine reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Policy {
    /// How many follow-ups may follow the first message.
    pub max_follow_ups: u32,
    /// Hand a qualified prospect to a member at once instead of staying in Qualified.
    pub handoff_when_qualified: bool,
    /// Hand the conversation to a member when a reply is negative.
    pub handoff_on_negative: bool,
    /// Keep a conversation in `Disqualified` or `Closed` when the prospect
    /// replies again: the reply's facts still update the score, but the state
    /// stays and nothing is sent. When false, such a reply is qualified anew.
    pub final_disqualification: bool,
    /// Analyse opt-out messages and the later replies of an opted-out
    /// prospect too, so that facts, score and language stay current. The
    /// opt-out confirmation is then written in the language of the opt-out
    /// message, and nothing else is sent. When false, no model sees these
    /// messages.
    pub analyse_opt_outs: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_follow_ups: 2,
            handoff_when_qualified: false,
            handoff_on_negative: false,
            final_disqualification: false,
            analyse_opt_outs: false,
        }
    }
}

impl Policy {
    /// Sets the number of follow-ups after the first message.
    pub fn with_max_follow_ups(mut self, count: u32) -> Self {
        self.max_follow_ups = count;
        self
    }

    /// Hands qualified prospects to a member at once.
    pub fn with_handoff_when_qualified(mut self, enabled: bool) -> Self {
        self.handoff_when_qualified = enabled;
        self
    }

    /// Hands negative replies to a member.
    pub fn with_handoff_on_negative(mut self, enabled: bool) -> Self {
        self.handoff_on_negative = enabled;
        self
    }

    /// Keeps disqualified and closed conversations in their state when the
    /// prospect replies again.
    pub fn with_final_disqualification(mut self, enabled: bool) -> Self {
        self.final_disqualification = enabled;
        self
    }

    /// Analyses opt-out messages and the replies that follow an opt-out.
    pub fn with_analyse_opt_outs(mut self, enabled: bool) -> Self {
        self.analyse_opt_outs = enabled;
        self
    }
}

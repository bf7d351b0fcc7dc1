//! Records the store keeps beside prospects and conversations: jobs, the
//! outbox, suppressions, audit events and members.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::contact::{ChannelKind, ContactPoint};
use crate::conversation::{Conversation, Message, SendPurpose, Sender};
use crate::id::{
    CampaignId, ConversationId, JobId, MemberId, MessageId, OrgId, OutboxId, ProspectId,
};
use crate::prospect::Prospect;

/// The work a job does when it fires.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum JobKind {
    /// Send campaign attempt `attempt` of a conversation (0 is the first message).
    FollowUp {
        /// The attempt number.
        attempt: u32,
    },
    /// Remind a member of something about the conversation's prospect.
    Reminder {
        /// The member to notify.
        member: MemberId,
        /// What the member wrote, such as "call back about the quote".
        note: String,
    },
}

impl fmt::Debug for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobKind::FollowUp { attempt } => f
                .debug_struct("FollowUp")
                .field("attempt", attempt)
                .finish(),
            JobKind::Reminder { member, .. } => f
                .debug_struct("Reminder")
                .field("member", member)
                .finish_non_exhaustive(),
        }
    }
}

/// A scheduled job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The id.
    pub id: JobId,
    /// The org.
    pub org_id: OrgId,
    /// The conversation it acts on.
    pub conversation_id: ConversationId,
    /// The prospect of that conversation.
    pub prospect_id: ProspectId,
    /// Its work.
    pub kind: JobKind,
    /// When it is due.
    pub due_at: Timestamp,
    /// Claims so far.
    pub attempts: u32,
    /// Unique per org: scheduling a job with a key that exists does nothing.
    pub dedupe_key: String,
}

impl Job {
    /// Creates a follow-up job for attempt `attempt` of `conversation`, due at `due_at`.
    pub fn follow_up(conversation: &Conversation, attempt: u32, due_at: Timestamp) -> Self {
        Job {
            id: JobId::new(),
            org_id: conversation.org_id,
            conversation_id: conversation.id,
            prospect_id: conversation.prospect_id,
            kind: JobKind::FollowUp { attempt },
            due_at,
            attempts: 0,
            dedupe_key: format!(
                "follow-up:{}:{attempt}:{}",
                conversation.id, conversation.version.0
            ),
        }
    }
}

/// The outcome of a claimed job.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    /// Done; it will not run again.
    Done,
    /// No longer applies (the conversation moved on).
    Cancelled,
    /// Run it again at this time.
    RetryAt(Timestamp),
}

/// The progress of a send intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting for delivery.
    Pending,
    /// Accepted by the provider.
    Sent,
    /// Gave up.
    Failed,
    /// Cancelled before delivery.
    Cancelled,
}

/// A send intent written in the same transaction as the state change that
/// caused it. `Debug` omits the text and the recipient.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// The id.
    pub id: OutboxId,
    /// The org.
    pub org_id: OrgId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The prospect.
    pub prospect_id: ProspectId,
    /// The outbound message this entry delivers.
    pub message_id: MessageId,
    /// The channel.
    pub channel: ChannelKind,
    /// The recipient.
    pub to: ContactPoint,
    /// The text.
    pub text: String,
    /// The e-mail subject, if any.
    pub subject: Option<String>,
    /// The reason for the send.
    pub purpose: SendPurpose,
    /// The author.
    pub sender: Sender,
    /// The sender identity shown to the prospect.
    pub sender_name: String,
    /// The campaign, if any.
    pub campaign_id: Option<CampaignId>,
    /// Passed to the channel so that a retried delivery sends once.
    pub idempotency_key: String,
    /// When delivery may next be tried.
    pub next_attempt_at: Timestamp,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// An earlier attempt may have reached the provider without its outcome
    /// being recorded: its worker stopped before finishing the entry (a
    /// lease expired), or the provider's response was lost. Before sending
    /// again, the engine looks the message up through a channel that can
    /// ([`Channel::find_sent`](crate::ports::Channel::find_sent)). Only
    /// `Sent` clears it.
    pub unconfirmed: bool,
    /// When the entry was first claimed for delivery, set by the store's
    /// claim. No attempt, and so no message at the provider, is older, so
    /// a lookup of an earlier attempt searches from this time.
    pub first_attempt_at: Option<Timestamp>,
    /// Progress.
    pub status: OutboxStatus,
}

impl fmt::Debug for OutboxEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxEntry")
            .field("id", &self.id)
            .field("conversation_id", &self.conversation_id)
            .field("message_id", &self.message_id)
            .field("channel", &self.channel)
            .field("purpose", &self.purpose)
            .field("idempotency_key", &self.idempotency_key)
            .field("next_attempt_at", &self.next_attempt_at)
            .field("attempts", &self.attempts)
            .field("unconfirmed", &self.unconfirmed)
            .field("first_attempt_at", &self.first_attempt_at)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The outcome of a delivery attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum OutboxOutcome {
    /// The provider accepted the message.
    Sent {
        /// The provider's name.
        provider: String,
        /// The provider's message id.
        provider_message_id: String,
    },
    /// Try again at this time.
    RetryAt(Timestamp),
    /// Try again at this time and mark the entry
    /// [`OutboxEntry::unconfirmed`], because the attempt's outcome is
    /// unknown: the provider may have accepted the message without responding.
    Unconfirmed(Timestamp),
    /// Gave up, with a reason that contains no personal data.
    Failed(String),
    /// Cancelled, with a reason that contains no personal data.
    Cancelled(String),
}

/// A contact point that must not be messaged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    /// The org.
    pub org_id: OrgId,
    /// The contact point.
    pub contact: ContactPoint,
    /// Why, such as `opt_out` or `bounce`.
    pub reason: String,
    /// When.
    pub at: Timestamp,
}

/// The author of an audited action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "actor", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// kalify itself.
    System,
    /// The prospect, through a message.
    Prospect,
    /// A team member.
    Member(MemberId),
}

/// An audit record: ids, action and actor, never message bodies or contact data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The org.
    pub org_id: OrgId,
    /// The prospect concerned, if any.
    pub prospect_id: Option<ProspectId>,
    /// The conversation concerned, if any.
    pub conversation_id: Option<ConversationId>,
    /// The action, such as `transition`.
    pub action: String,
    /// Who.
    pub actor: Actor,
    /// Details without personal data, such as `contacted -> qualifying`.
    pub detail: String,
    /// When.
    pub at: Timestamp,
}

/// A member's role in the org.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Owns the org.
    Owner,
    /// Manages members and settings.
    Admin,
    /// Works leads.
    Member,
}

/// A team member. `Debug` omits the e-mail address.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// The id.
    pub id: MemberId,
    /// The org.
    pub org_id: OrgId,
    /// Display name.
    pub name: String,
    /// Where notifications go.
    pub email: crate::contact::EmailAddress,
    /// Role.
    pub role: Role,
    /// Whether the member takes new handoffs.
    pub available: bool,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("available", &self.available)
            .finish_non_exhaustive()
    }
}

/// Which pending follow-ups a turn cancels.
///
/// NOTE: pending outbox entries in the scope are cancelled even when
/// [`OutboxEntry::unconfirmed`], without a lookup, so a message whose
/// earlier attempt the provider accepted is recorded as cancelled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CancelScope {
    /// None.
    #[default]
    Nothing,
    /// Every pending job and outbox entry of the conversation.
    Conversation,
    /// Every pending job and outbox entry of the prospect, in every campaign
    /// and channel, except the entries this turn writes.
    Prospect,
}

/// Everything one turn of the engine writes, committed atomically.
#[derive(Clone, Debug)]
pub struct TurnCommit {
    /// The conversation after the turn. Its `version` is the version read
    /// before the turn; the store fails with `Conflict` if the stored one differs.
    pub conversation: Conversation,
    /// The conversation is new: the store inserts it, with version
    /// `conversation.version + 1`, instead of updating it. The commit fails
    /// with `Conflict`, writing nothing, when a conversation with its id, or
    /// of its prospect and campaign, exists.
    pub create_conversation: bool,
    /// The prospect after the turn, with the version read before it.
    pub prospect: Option<Prospect>,
    /// Outbound messages to insert.
    pub messages: Vec<Message>,
    /// Inbound messages this turn processed.
    pub processed_inbound: Vec<MessageId>,
    /// Pending jobs and outbox entries to cancel, applied before `jobs` and `outbox` are written.
    pub cancel: CancelScope,
    /// Send intents to write.
    pub outbox: Vec<OutboxEntry>,
    /// Jobs to schedule (ignored when their dedupe key exists).
    pub jobs: Vec<Job>,
    /// A claimed job this turn completes. The commit fails with `Conflict`
    /// when the job is no longer pending, because another worker that
    /// claimed it after its lease ran out has completed it.
    pub completed_job: Option<JobId>,
    /// Contact points to suppress.
    pub suppress: Vec<Suppression>,
    /// Contact points to lift from the suppression list.
    pub unsuppress: Vec<ContactPoint>,
    /// Audit records.
    pub audit: Vec<AuditEvent>,
    /// Model calls made while computing the turn.
    pub model_exchanges: Vec<ModelExchange>,
}

impl TurnCommit {
    /// A commit that writes only `conversation`.
    pub fn new(conversation: Conversation) -> Self {
        TurnCommit {
            conversation,
            create_conversation: false,
            prospect: None,
            messages: Vec::new(),
            processed_inbound: Vec::new(),
            cancel: CancelScope::Nothing,
            outbox: Vec::new(),
            jobs: Vec::new(),
            completed_job: None,
            suppress: Vec::new(),
            unsuppress: Vec::new(),
            audit: Vec::new(),
            model_exchanges: Vec::new(),
        }
    }
}

/// Whether an inbound message was new.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored.
    Inserted,
    /// A message with the same provider and provider id exists; nothing was written.
    Duplicate,
}

/// Options for listing prospects, in id order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Start after this id.
    pub after: Option<ProspectId>,
    /// At most this many; 0 means no limit.
    pub limit: usize,
}

/// One call to a language model about a prospect: what was sent and what
/// came back, kept so that an access request can show them. `Debug` omits
/// both texts.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelExchange {
    /// The org.
    pub org_id: OrgId,
    /// The prospect.
    pub prospect_id: ProspectId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The model's name, such as `openai:gpt-4o-mini` or `rules`.
    pub model: String,
    /// The operation, `analyse` or `write_reply`.
    pub operation: String,
    /// The request as JSON.
    pub request: String,
    /// The answer as JSON, or the error when the call failed.
    pub response: String,
    /// When the call returned.
    pub at: Timestamp,
}

impl fmt::Debug for ModelExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelExchange")
            .field("conversation_id", &self.conversation_id)
            .field("model", &self.model)
            .field("operation", &self.operation)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

//! Conversation and message records.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::contact::ChannelKind;
use crate::conversation::state::{ConversationState, Sender};
use crate::error::{Error, Result};
use crate::id::{CampaignId, ConversationId, MemberId, MessageId, OrgId, ProspectId};
use crate::prospect::Version;
use crate::qualification::{Fact, Score};

/// One conversation between the org and a prospect, within a campaign or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The id.
    pub id: ConversationId,
    /// The org.
    pub org_id: OrgId,
    /// The prospect.
    pub prospect_id: ProspectId,
    /// The campaign that started it, if any.
    pub campaign_id: Option<CampaignId>,
    /// The channel currently used.
    pub channel: ChannelKind,
    /// The state.
    pub state: ConversationState,
    /// Facts gathered so far, one per criterion key.
    pub facts: Vec<Fact>,
    /// The latest score.
    pub score: Option<Score>,
    /// Campaign attempts sent, the first message included.
    pub attempts_sent: u32,
    /// Whether an automated message has disclosed to the prospect that it is automated
    /// since the conversation started or a member last handed it back.
    pub automation_disclosed: bool,
    /// The member holding the conversation while handed off.
    pub assigned_to: Option<MemberId>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Time of the prospect's latest message.
    pub last_inbound_at: Option<Timestamp>,
    /// Row version.
    pub version: Version,
}

impl Conversation {
    /// Creates a conversation in state `New`.
    pub fn new(
        org_id: OrgId,
        prospect_id: ProspectId,
        campaign_id: Option<CampaignId>,
        channel: ChannelKind,
        now: Timestamp,
    ) -> Self {
        Conversation {
            id: ConversationId::new(),
            org_id,
            prospect_id,
            campaign_id,
            channel,
            state: ConversationState::New,
            facts: Vec::new(),
            score: None,
            attempts_sent: 0,
            automation_disclosed: false,
            assigned_to: None,
            created_at: now,
            updated_at: now,
            last_inbound_at: None,
            version: Version(0),
        }
    }

    /// The fact stored under `key`.
    pub fn fact(&self, key: &str) -> Option<&Fact> {
        self.facts.iter().find(|fact| fact.key == key)
    }
}

/// Which way a message travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the prospect.
    Inbound,
    /// To the prospect.
    Outbound,
}

impl Direction {
    /// The lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl FromStr for Direction {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "inbound" => Ok(Direction::Inbound),
            "outbound" => Ok(Direction::Outbound),
            _ => Err(Error::invalid_input(format!(
                "unknown message direction {text:?}"
            ))),
        }
    }
}

/// Delivery progress of a message. It only moves forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Received from the prospect.
    Received,
    /// Written to the outbox, not yet accepted by the provider.
    Pending,
    /// Accepted by the provider.
    Sent,
    /// Delivered to the handset or mailbox.
    Delivered,
    /// Read by the prospect.
    Read,
    /// The provider gave up.
    Failed,
    /// Cancelled before delivery, for example by an opt-out.
    Cancelled,
}

impl DeliveryStatus {
    /// The lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryStatus::Received => "received",
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        [
            DeliveryStatus::Received,
            DeliveryStatus::Pending,
            DeliveryStatus::Sent,
            DeliveryStatus::Delivered,
            DeliveryStatus::Read,
            DeliveryStatus::Failed,
            DeliveryStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
        .ok_or_else(|| Error::invalid_input(format!("unknown delivery status {text:?}")))
    }
}

/// A message in or out. `Debug` omits the text.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The id.
    pub id: MessageId,
    /// The org.
    pub org_id: OrgId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The prospect.
    pub prospect_id: ProspectId,
    /// Which way it travelled.
    pub direction: Direction,
    /// The channel.
    pub channel: ChannelKind,
    /// Who wrote an outbound message; `None` for inbound ones.
    pub sender: Option<Sender>,
    /// The body as shown to the prospect (for e-mail, the visible reply).
    pub text: String,
    /// The e-mail subject, if any.
    pub subject: Option<String>,
    /// When it was received or created.
    pub at: Timestamp,
    /// The provider that carried it, such as `twilio`.
    pub provider: Option<String>,
    /// The provider's message id.
    pub provider_message_id: Option<String>,
    /// Delivery progress.
    pub status: DeliveryStatus,
    /// For inbound messages: whether the engine has processed it.
    pub processed: bool,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id)
            .field("conversation_id", &self.conversation_id)
            .field("direction", &self.direction)
            .field("channel", &self.channel)
            .field("sender", &self.sender)
            .field("chars", &self.text.chars().count())
            .field("at", &self.at)
            .field("status", &self.status)
            .field("processed", &self.processed)
            .finish_non_exhaustive()
    }
}

//! Conversations: the state machine and the records it moves.

mod model;
mod state;
mod transition;

pub use model::{Conversation, DeliveryStatus, Direction, Message};
pub use state::{
    ConversationState, Effect, Event, NotificationKind, Policy, ReplyOutcome, ScoreBand,
    SendPurpose, Sender,
};
pub use transition::{Transition, transition};

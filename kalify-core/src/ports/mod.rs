//! Ports: the traits adapters implement. All are object safe and used as
//! `Arc<dyn Trait>`.

mod channel;
mod clock;
mod model;
mod notifier;
mod records;
mod store;

pub use channel::{
    AutoReplyNotice, BounceNotice, Channel, ChannelCapabilities, InboundEvent, InboundMessage,
    MessengerWindow, OptOutNotice, Postback, Receipt, StatusUpdate, WatermarkUpdate,
    WebhookRequest,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use model::LanguageModel;
pub use notifier::{
    FanOutNotifier, MemoryNotifier, NoopNotifier, Notification, Notifier, NotifyRetry,
    RetryingNotifier,
};
pub use records::{
    Actor, AuditEvent, CancelScope, InsertOutcome, Job, JobKind, JobOutcome, ListOptions, Member,
    ModelExchange, OutboxEntry, OutboxOutcome, OutboxStatus, Role, Suppression, TurnCommit,
};
pub use store::Store;

#[cfg(feature = "mock")]
pub use channel::MockChannel;
#[cfg(feature = "mock")]
pub use clock::MockClock;
#[cfg(feature = "mock")]
pub use model::MockLanguageModel;
#[cfg(feature = "mock")]
pub use notifier::MockNotifier;
#[cfg(feature = "mock")]
pub use store::MockStore;

#[cfg(test)]
mod tests {
    use super::*;

    // Compiles only while every port stays object safe.
    #[allow(dead_code)]
    fn ports_are_object_safe(
        _: &dyn Store,
        _: &dyn Channel,
        _: &dyn LanguageModel,
        _: &dyn Notifier,
        _: &dyn Clock,
    ) {
    }
}

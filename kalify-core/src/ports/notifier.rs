//! The notifier port: telling the team.

use std::sync::Arc;

use async_trait::async_trait;

use crate::conversation::NotificationKind;
use crate::error::Result;
use crate::id::{ConversationId, MemberId, OrgId, ProspectId};

/// A team event. It carries ids and the score, never contact data.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The org.
    pub org_id: OrgId,
    /// What happened.
    pub kind: NotificationKind,
    /// The prospect.
    pub prospect_id: ProspectId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The member it is for, if assigned.
    pub member: Option<MemberId>,
    /// The score at the time.
    pub score: Option<u8>,
}

/// Delivers team events (e-mail, chat, webhook).
///
/// # Contract
/// A failed notification never undoes the turn that caused it; the engine
/// logs it and goes on.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug + 'static {
    /// Delivers one notification.
    async fn notify(&self, notification: &Notification) -> Result<()>;
}

#[async_trait]
impl<T: Notifier + ?Sized> Notifier for Arc<T> {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        (**self).notify(notification).await
    }
}

/// A notifier that drops every notification.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopNotifier;

#[async_trait]
impl Notifier for NoopNotifier {
    async fn notify(&self, _notification: &Notification) -> Result<()> {
        Ok(())
    }
}

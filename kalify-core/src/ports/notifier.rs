//! The notifier port: telling the team.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::Timestamp;
use crate::conversation::NotificationKind;
use crate::error::Result;
use crate::id::{ConversationId, MemberId, OrgId, ProspectId};

/// A team event. It carries ids, the score and a member's own note, never
/// contact data.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The org.
    pub org_id: OrgId,
    /// What happened.
    pub kind: NotificationKind,
    /// The prospect.
    pub prospect_id: ProspectId,
    /// The conversation, when the event belongs to one.
    pub conversation_id: Option<ConversationId>,
    /// The member it is for, if assigned.
    pub member: Option<MemberId>,
    /// The score at the time.
    pub score: Option<u8>,
    /// The text a member wrote for a reminder.
    pub note: Option<String>,
    /// The deadline of a data-subject request.
    pub due_at: Option<Timestamp>,
}

impl Notification {
    /// Creates a notification of `kind` about a prospect, with no conversation, member, score or note.
    pub fn new(org_id: OrgId, kind: NotificationKind, prospect_id: ProspectId) -> Self {
        Notification {
            org_id,
            kind,
            prospect_id,
            conversation_id: None,
            member: None,
            score: None,
            note: None,
            due_at: None,
        }
    }

    /// Formats a one-line English text for chat and e-mail, with the ids an
    /// operator needs to find the prospect and no contact data.
    pub fn text(&self) -> String {
        let mut text = format!("{}: prospect {}", self.kind.summary(), self.prospect_id);
        if let Some(score) = self.score {
            text.push_str(&format!(", score {score}"));
        }
        if let Some(due_at) = self.due_at {
            text.push_str(&format!(", due {}", due_at.format("%Y-%m-%d")));
        }
        if let Some(note) = &self.note {
            text.push_str(&format!(": {note}"));
        }
        text
    }
}

/// Delivers team events (e-mail, chat, webhook).
///
/// # Contract
/// A failed notification never undoes the turn that caused it. The engine
/// hands notifications to a [`RetryingNotifier`], which delivers them in the
/// background, so a slow or failing notifier never holds up message
/// processing.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug + 'static {
    /// Delivers one notification.
    ///
    /// # Errors
    /// A retryable error when delivery may succeed later, else a permanent one.
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

/// A notifier that keeps every notification in memory, for tests.
#[derive(Debug, Default)]
pub struct MemoryNotifier {
    delivered: Mutex<Vec<Notification>>,
}

impl MemoryNotifier {
    /// Creates an empty notifier.
    pub fn new() -> Self {
        MemoryNotifier::default()
    }

    /// Returns the notifications delivered so far, oldest first.
    pub fn delivered(&self) -> Vec<Notification> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(notification.clone());
        Ok(())
    }
}

/// A notifier that hands each notification to several notifiers, such as
/// a chat webhook and e-mail. It tries every one and returns the first
/// error, retryable when any failure was, so that a retry reaches the
/// notifiers that failed as well as (again) those that did not.
#[derive(Debug, Clone, Default)]
pub struct FanOutNotifier {
    notifiers: Vec<Arc<dyn Notifier>>,
}

impl FanOutNotifier {
    /// Creates a notifier over `notifiers`.
    pub fn new(notifiers: Vec<Arc<dyn Notifier>>) -> Self {
        FanOutNotifier { notifiers }
    }
}

#[async_trait]
impl Notifier for FanOutNotifier {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        let mut first_error: Option<crate::error::Error> = None;
        for notifier in &self.notifiers {
            if let Err(error) = notifier.notify(notification).await {
                let replace = first_error
                    .as_ref()
                    .is_none_or(|first| !first.is_retryable() && error.is_retryable());
                if replace {
                    first_error = Some(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Retry settings of [`RetryingNotifier`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NotifyRetry {
    /// Attempts per notification, the first included.
    pub attempts: u32,
    /// The wait before the second attempt. It doubles after each failure,
    /// unless the notifier's error requests a longer one.
    pub first_backoff: Duration,
    /// Notifications waiting or in delivery at most; more are dropped with
    /// a warning rather than holding up the caller.
    pub max_in_flight: usize,
}

impl Default for NotifyRetry {
    fn default() -> Self {
        NotifyRetry {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_in_flight: 10_000,
        }
    }
}

impl NotifyRetry {
    /// Sets the attempts per notification (at least 1).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Sets the first backoff.
    pub fn with_first_backoff(mut self, backoff: Duration) -> Self {
        self.first_backoff = backoff;
        self
    }
}

/// Wraps a notifier so that `notify` returns at once and delivery happens
/// on a tokio task, retried with exponential backoff while the error is
/// retryable.
///
/// Notifications live in memory until delivered: a process that stops
/// loses those still waiting. Call [`RetryingNotifier::idle`] before a
/// graceful shutdown to let them finish.
#[derive(Debug, Clone)]
pub struct RetryingNotifier {
    inner: Arc<dyn Notifier>,
    retry: NotifyRetry,
    in_flight: Arc<InFlight>,
}

#[derive(Debug, Default)]
struct InFlight {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl RetryingNotifier {
    /// Wraps `inner` with `retry`.
    pub fn new(inner: Arc<dyn Notifier>, retry: NotifyRetry) -> Self {
        RetryingNotifier {
            inner,
            retry,
            in_flight: Arc::new(InFlight::default()),
        }
    }

    /// Notifications waiting or in delivery.
    pub fn in_flight(&self) -> usize {
        self.in_flight.count.load(Ordering::Acquire)
    }

    /// Waits until every notification handed over so far is delivered or given up.
    pub async fn idle(&self) {
        loop {
            let notified = self.in_flight.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl Notifier for RetryingNotifier {
    async fn notify(&self, notification: &Notification) -> Result<()> {
        if self.in_flight.count.fetch_add(1, Ordering::AcqRel) >= self.retry.max_in_flight {
            finish(&self.in_flight);
            tracing::warn!(target: "kalify::notify", kind = notification.kind.as_str(), prospect_id = %notification.prospect_id, "too many notifications waiting; dropped one");
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        let retry = self.retry;
        let in_flight = Arc::clone(&self.in_flight);
        let notification = notification.clone();
        tokio::spawn(async move {
            deliver(inner.as_ref(), &notification, retry).await;
            finish(&in_flight);
        });
        Ok(())
    }
}

fn finish(in_flight: &InFlight) {
    if in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
        in_flight.idle.notify_waiters();
    }
}

async fn deliver(notifier: &dyn Notifier, notification: &Notification, retry: NotifyRetry) {
    let mut backoff = retry.first_backoff;
    for attempt in 1..=retry.attempts {
        match notifier.notify(notification).await {
            Ok(()) => {
                tracing::debug!(target: "kalify::notify", kind = notification.kind.as_str(), attempt, "notification delivered");
                return;
            }
            Err(error) if error.is_retryable() && attempt < retry.attempts => {
                let wait = error
                    .retry_after()
                    .map_or(backoff, |asked| asked.max(backoff));
                tracing::info!(target: "kalify::notify", kind = notification.kind.as_str(), attempt, wait_ms = wait.as_millis() as u64, error = %error, "notification failed; retrying");
                tokio::time::sleep(wait).await;
                backoff = backoff.saturating_mul(2);
            }
            Err(error) => {
                tracing::warn!(target: "kalify::notify", kind = notification.kind.as_str(), prospect_id = %notification.prospect_id, attempt, error = %error, "notification given up");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};

    #[derive(Debug, Default)]
    struct Flaky {
        calls: AtomicUsize,
        fail_first: usize,
        delivered: MemoryNotifier,
    }

    #[async_trait]
    impl Notifier for Flaky {
        async fn notify(&self, notification: &Notification) -> Result<()> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail_first {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "the chat service answered 503",
                ));
            }
            self.delivered.notify(notification).await
        }
    }

    fn sample() -> Notification {
        Notification::new(OrgId::new(), NotificationKind::HotLead, ProspectId::new())
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_in_the_background() {
        let flaky = Arc::new(Flaky {
            fail_first: 3,
            ..Flaky::default()
        });
        let notifier = RetryingNotifier::new(flaky.clone(), NotifyRetry::default());
        notifier.notify(&sample()).await.unwrap();
        assert_eq!(
            flaky.delivered.delivered().len(),
            0,
            "notify returns before delivery"
        );
        notifier.idle().await;
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 4);
        assert_eq!(flaky.delivered.delivered().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_notifier_does_not_block_caller() {
        #[derive(Debug)]
        struct Hanging;
        #[async_trait]
        impl Notifier for Hanging {
            async fn notify(&self, _: &Notification) -> Result<()> {
                std::future::pending::<()>().await;
                Ok(())
            }
        }
        let notifier = RetryingNotifier::new(Arc::new(Hanging), NotifyRetry::default());
        for _ in 0..100 {
            notifier.notify(&sample()).await.unwrap();
        }
        assert_eq!(notifier.in_flight(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        #[derive(Debug, Default)]
        struct Refusing(AtomicUsize);
        #[async_trait]
        impl Notifier for Refusing {
            async fn notify(&self, _: &Notification) -> Result<()> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Err(Error::new(
                    ErrorKind::ConfigInvalid,
                    "the webhook URL answered 404",
                ))
            }
        }
        let refusing = Arc::new(Refusing::default());
        let notifier = RetryingNotifier::new(refusing.clone(), NotifyRetry::default());
        notifier.notify(&sample()).await.unwrap();
        notifier.idle().await;
        assert_eq!(refusing.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn text_names_ids_and_never_contact_data() {
        let mut notification = sample();
        notification.score = Some(82);
        notification.note = Some("call back Tuesday 10:00".into());
        let text = notification.text();
        assert!(text.starts_with("A prospect is qualified: prospect "));
        assert!(text.contains("score 82"));
        assert!(text.ends_with("call back Tuesday 10:00"));
    }
}

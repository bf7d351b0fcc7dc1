//! The channel port: sending messages and reading webhooks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::Timestamp;
use crate::contact::{ChannelKind, ContactPoint};
use crate::conversation::{DeliveryStatus, Sender};
use crate::error::{Error, ErrorKind, Result};
use crate::gate::SendPermit;

/// What the provider returned for an accepted message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's name, such as `twilio`.
    pub provider: String,
    /// The provider's id for the message.
    pub provider_message_id: String,
}

/// An HTTP request as a webhook endpoint received it. `Debug` omits the body.
#[derive(Clone)]
pub struct WebhookRequest {
    /// The method, such as `POST`.
    pub method: String,
    /// The full URL the provider called, as the provider signed it.
    pub url: String,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// The raw body bytes.
    pub body: Vec<u8>,
}

impl fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("method", &self.method)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A message from a prospect, as a channel parsed it. `Debug` omits the text and sender.
#[derive(Clone, PartialEq)]
pub struct InboundMessage {
    /// The channel.
    pub channel: ChannelKind,
    /// The provider, such as `twilio`; with `provider_message_id` it identifies the message.
    pub provider: String,
    /// The provider's message id.
    pub provider_message_id: String,
    /// Who sent it.
    pub from: ContactPoint,
    /// The visible text.
    pub text: String,
    /// When the provider received it.
    pub at: Timestamp,
}

impl fmt::Debug for InboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundMessage")
            .field("channel", &self.channel)
            .field("provider", &self.provider)
            .field("provider_message_id", &self.provider_message_id)
            .field("chars", &self.text.chars().count())
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// A provider's report on the delivery of one outbound message.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    /// The channel.
    pub channel: ChannelKind,
    /// The provider, such as `twilio`.
    pub provider: String,
    /// The provider's id of the outbound message, as in its [`Receipt`].
    pub provider_message_id: String,
    /// The status the provider reports. Stores apply it only when it moves
    /// the message forward, because providers may deliver reports out of order.
    pub status: DeliveryStatus,
    /// The provider's error code of a failed delivery, such as Twilio's `30007`.
    pub error_code: Option<String>,
    /// When the provider reached the status, if the report gives it.
    pub at: Option<Timestamp>,
}

/// A report that every message sent to `recipient` before `up_to` reached
/// `status`. Messenger reports deliveries and reads this way, often
/// without message ids.
#[derive(Clone, Debug, PartialEq)]
pub struct WatermarkUpdate {
    /// The channel.
    pub channel: ChannelKind,
    /// The provider, such as `messenger`.
    pub provider: String,
    /// The person the messages were sent to.
    pub recipient: ContactPoint,
    /// [`DeliveryStatus::Delivered`] or [`DeliveryStatus::Read`].
    pub status: DeliveryStatus,
    /// Messages sent at or before this time reached `status`.
    pub up_to: Timestamp,
}

/// The provider's word that a contact point no longer accepts messages
/// from this sender, such as Twilio's error 21610 or its Advanced Opt-Out
/// `OptOutType=STOP` parameter. The engine suppresses the contact point as
/// for an opt-out keyword.
#[derive(Clone, Debug, PartialEq)]
pub struct OptOutNotice {
    /// The channel.
    pub channel: ChannelKind,
    /// The provider, such as `twilio`.
    pub provider: String,
    /// The contact point that opted out.
    pub contact: ContactPoint,
    /// Why, without personal data, such as `provider_opt_out_keyword` or `twilio_error_21610`.
    pub reason: String,
    /// When the provider reported it.
    pub at: Timestamp,
}

/// A tap on a button the page sent, such as a Messenger postback.
/// `Debug` omits the title and payload.
#[derive(Clone, PartialEq)]
pub struct Postback {
    /// The channel.
    pub channel: ChannelKind,
    /// The provider, such as `messenger`.
    pub provider: String,
    /// The provider's id of the event, when it has one.
    pub provider_message_id: Option<String>,
    /// Who tapped.
    pub from: ContactPoint,
    /// The button title the person saw.
    pub title: String,
    /// The payload the page attached to the button.
    pub payload: String,
    /// When the provider received it.
    pub at: Timestamp,
}

impl fmt::Debug for Postback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postback")
            .field("channel", &self.channel)
            .field("provider", &self.provider)
            .field("provider_message_id", &self.provider_message_id)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// A report that an outbound message could not be delivered, such as an
/// e-mail delivery status notification (RFC 3464). It updates delivery
/// status and is never engagement from the prospect.
#[derive(Clone, Debug, PartialEq)]
pub struct BounceNotice {
    /// The channel.
    pub channel: ChannelKind,
    /// The provider, such as `smtp`.
    pub provider: String,
    /// The provider's id of the report itself, for de-duplication.
    pub provider_message_id: String,
    /// The provider's id of the outbound message that failed, as in its
    /// [`Receipt`], when the report quotes it.
    pub original_message_id: Option<String>,
    /// The recipient that failed, when the report names it.
    pub recipient: Option<ContactPoint>,
    /// True when retrying cannot help (the mailbox does not exist); false
    /// for a delay or a transient failure.
    pub permanent: bool,
    /// The provider's status code, such as the enhanced status code `5.1.1` (RFC 3463).
    pub status_code: Option<String>,
    /// Why, without personal data, such as `delivery_failed` or `delivery_delayed`.
    pub reason: String,
    /// When the report arrived.
    pub at: Timestamp,
}

/// An automatic reply from the prospect's side, such as an out-of-office
/// message or a vacation responder (RFC 3834). It is never engagement: the
/// engine must not analyse it as a reply or move the conversation on it.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoReplyNotice {
    /// The channel.
    pub channel: ChannelKind,
    /// The provider, such as `smtp`.
    pub provider: String,
    /// The provider's id of the automatic reply, for de-duplication.
    pub provider_message_id: String,
    /// The sender of the automatic reply.
    pub from: ContactPoint,
    /// The signal that marked it as automatic, without personal data, such
    /// as `auto_submitted` or `out_of_office_subject`.
    pub reason: String,
    /// When it arrived.
    pub at: Timestamp,
}

/// A parsed webhook event.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum InboundEvent {
    /// A message from a prospect.
    Message(InboundMessage),
    /// A delivery report on one outbound message.
    Status(StatusUpdate),
    /// A delivery or read report covering every message up to a time.
    Watermark(WatermarkUpdate),
    /// The provider reports that a contact point opted out.
    OptOut(OptOutNotice),
    /// A tap on a button.
    Postback(Postback),
    /// A report that an outbound message could not be delivered.
    Bounce(BounceNotice),
    /// An automatic reply, such as an out-of-office message.
    AutoReply(AutoReplyNotice),
}

/// The features a channel supports, for callers that adapt to them.
///
/// Adapters outside this crate build it with [`ChannelCapabilities::new`]
/// and the `with_*` setters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelCapabilities {
    /// `parse_webhook` reads the provider's webhooks.
    pub webhooks: bool,
    /// Webhooks report delivery of outbound messages ([`InboundEvent::Status`] or [`InboundEvent::Watermark`]).
    pub delivery_reports: bool,
    /// Webhooks report that messages were read.
    pub read_reports: bool,
    /// A repeated idempotency key returns the first receipt without sending
    /// again, at least within the process that sent it.
    pub dedupes_sends: bool,
    /// The maximum text length the provider accepts, in Unicode scalar values.
    pub max_text_chars: Option<usize>,
    /// Sends are limited to a window after the prospect's last message (Messenger).
    pub reply_window: bool,
    /// [`Channel::find_sent`] looks a message up at the provider, so that an
    /// attempt whose outcome is unknown is not sent twice.
    pub finds_sent: bool,
}

impl ChannelCapabilities {
    /// Capabilities with every flag off and no text limit.
    pub fn new() -> Self {
        ChannelCapabilities::default()
    }

    /// Sets [`ChannelCapabilities::webhooks`].
    pub fn with_webhooks(mut self, value: bool) -> Self {
        self.webhooks = value;
        self
    }

    /// Sets [`ChannelCapabilities::delivery_reports`].
    pub fn with_delivery_reports(mut self, value: bool) -> Self {
        self.delivery_reports = value;
        self
    }

    /// Sets [`ChannelCapabilities::read_reports`].
    pub fn with_read_reports(mut self, value: bool) -> Self {
        self.read_reports = value;
        self
    }

    /// Sets [`ChannelCapabilities::dedupes_sends`].
    pub fn with_dedupes_sends(mut self, value: bool) -> Self {
        self.dedupes_sends = value;
        self
    }

    /// Sets [`ChannelCapabilities::max_text_chars`].
    pub fn with_max_text_chars(mut self, value: Option<usize>) -> Self {
        self.max_text_chars = value;
        self
    }

    /// Sets [`ChannelCapabilities::reply_window`].
    pub fn with_reply_window(mut self, value: bool) -> Self {
        self.reply_window = value;
        self
    }

    /// Sets [`ChannelCapabilities::finds_sent`].
    pub fn with_finds_sent(mut self, value: bool) -> Self {
        self.finds_sent = value;
        self
    }
}

/// The Messenger Platform window a send falls in.
///
/// Meta's Messenger policy lets a page answer a person for 24 hours after
/// the person's last message or button tap, with messaging type `RESPONSE`.
/// After that, only a person working for the page may reply, with the
/// `HUMAN_AGENT` message tag, up to 7 days after that message. The page
/// may never write first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessengerWindow {
    /// Within 24 hours: any sender, messaging type `RESPONSE`.
    Standard,
    /// Within 7 days, written by a member: messaging type `MESSAGE_TAG`, tag `HUMAN_AGENT`.
    HumanAgent,
}

impl MessengerWindow {
    /// The time after the person's last message during which the page may reply.
    pub const STANDARD: chrono::TimeDelta = chrono::TimeDelta::hours(24);
    /// The time after the person's last message during which a member may still reply.
    pub const HUMAN_AGENT: chrono::TimeDelta = chrono::TimeDelta::days(7);

    /// Returns the window a message written by `sender` falls in at `now`,
    /// given the time of the person's last message. Both bounds are
    /// inclusive; a last message in the future (clock skew) counts as now.
    ///
    /// # Errors
    /// `PermissionDenied`, permanent, when the person never wrote
    /// (`last_inbound_at` is `None`) or the window for `sender` is closed.
    pub fn for_send(
        last_inbound_at: Option<Timestamp>,
        sender: Sender,
        now: Timestamp,
    ) -> Result<MessengerWindow> {
        let Some(last) = last_inbound_at else {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "the Messenger window is closed: the person has not written to the page, and a page may not write first",
            )
            .with_context("reason", "messenger_window_closed"));
        };
        let elapsed = (now - last).max(chrono::TimeDelta::zero());
        if elapsed <= Self::STANDARD {
            return Ok(MessengerWindow::Standard);
        }
        if sender == Sender::Member && elapsed <= Self::HUMAN_AGENT {
            return Ok(MessengerWindow::HumanAgent);
        }
        let message = if sender == Sender::Member {
            "the Messenger window is closed: the person last wrote more than 7 days ago"
        } else {
            "the Messenger window is closed: the person last wrote more than 24 hours ago; only a member may answer, for up to 7 days"
        };
        Err(Error::new(ErrorKind::PermissionDenied, message)
            .with_context("reason", "messenger_window_closed")
            .with_context("hours_since_last_inbound", elapsed.num_hours()))
    }
}

/// A way to reach prospects.
///
/// # Contract
/// - `send` accepts only a [`SendPermit`], which only the compliance gate creates.
/// - `send` with an idempotency key the provider already accepted returns the
///   first receipt or sends nothing new, where the provider supports it.
/// - `parse_webhook` verifies the signature before reading anything, and a
///   bad signature is `Unauthenticated`.
/// - A channel that reports [`ChannelCapabilities::finds_sent`] implements
///   `find_sent` with the provider's own records, so that the engine can
///   check an attempt whose outcome is unknown before sending again.
///
/// # Errors
/// `RateLimited` (with `retry_after`), `Unavailable` and `Timeout` are
/// retryable; `InvalidInput` for a bad recipient and `RecipientOptedOut`
/// for an unsubscribed one are permanent. A send error after which the
/// provider may still have accepted the message carries
/// [`Error::with_unknown_outcome`].
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug + 'static {
    /// The channel kind.
    fn kind(&self) -> ChannelKind;

    /// The provider's name, such as `twilio` or `console`.
    fn provider(&self) -> &str;

    /// What the channel supports. The default reports nothing.
    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities::default()
    }

    /// Sends the permitted message.
    async fn send(&self, permit: &SendPermit) -> Result<Receipt>;

    /// Looks up, at the provider, the message of the permit's entry that an
    /// earlier attempt may have sent, and returns its receipt, or `None`
    /// when the provider holds no such message.
    ///
    /// The earlier attempt started at or after the entry's
    /// `first_attempt_at` (or its `next_attempt_at`, when that is unset).
    /// The default is `Unsupported`, and channels that implement it report
    /// [`ChannelCapabilities::finds_sent`].
    ///
    /// # Errors
    /// As for `send`. A failed lookup leaves unknown whether the provider has the message.
    async fn find_sent(&self, permit: &SendPermit) -> Result<Option<Receipt>> {
        let _ = permit;
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("the {} channel cannot look up its sends", self.provider()),
        ))
    }

    /// Verifies and parses a webhook request.
    fn parse_webhook(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>> {
        let _ = request;
        Err(Error::new(
            ErrorKind::Unsupported,
            format!("the {} channel has no webhooks", self.provider()),
        ))
    }
}

#[async_trait]
impl<T: Channel + ?Sized> Channel for Arc<T> {
    fn kind(&self) -> ChannelKind {
        (**self).kind()
    }
    fn provider(&self) -> &str {
        (**self).provider()
    }
    fn capabilities(&self) -> ChannelCapabilities {
        (**self).capabilities()
    }
    async fn send(&self, permit: &SendPermit) -> Result<Receipt> {
        (**self).send(permit).await
    }
    async fn find_sent(&self, permit: &SendPermit) -> Result<Option<Receipt>> {
        (**self).find_sent(permit).await
    }
    fn parse_webhook(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>> {
        (**self).parse_webhook(request)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn context<'a>(error: &'a Error, key: &str) -> Option<&'a str> {
        error
            .context()
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_str())
    }

    /// 2026-01-05 09:00 UTC plus `minutes`.
    fn time(minutes: i64) -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
            + chrono::TimeDelta::minutes(minutes)
    }

    #[test]
    fn messenger_window_standard_within_24_hours() {
        for sender in [Sender::Ai, Sender::Campaign, Sender::System, Sender::Member] {
            let window = MessengerWindow::for_send(Some(time(0)), sender, time(24 * 60));
            assert_eq!(window.ok(), Some(MessengerWindow::Standard), "{sender:?}");
        }
    }

    #[test]
    fn messenger_window_human_agent_for_members_only() {
        let last = Some(time(0));
        let later = time(24 * 60 + 1);
        assert_eq!(
            MessengerWindow::for_send(last, Sender::Member, later).ok(),
            Some(MessengerWindow::HumanAgent)
        );
        let error = MessengerWindow::for_send(last, Sender::Ai, later).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied);
        assert!(!error.is_retryable());
        assert!(error.message().contains("24 hours"), "{error}");
    }

    #[test]
    fn messenger_window_closes_after_7_days() {
        let last = Some(time(0));
        let seven_days = time(7 * 24 * 60);
        assert_eq!(
            MessengerWindow::for_send(last, Sender::Member, seven_days).ok(),
            Some(MessengerWindow::HumanAgent)
        );
        let error = MessengerWindow::for_send(
            last,
            Sender::Member,
            seven_days + chrono::TimeDelta::seconds(1),
        )
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied);
        assert!(error.message().contains("7 days"), "{error}");
    }

    #[test]
    fn messenger_window_closed_without_inbound() {
        let error = MessengerWindow::for_send(None, Sender::Member, time(0)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied);
        assert_eq!(context(&error, "reason"), Some("messenger_window_closed"));
    }

    #[test]
    fn messenger_window_future_inbound_counts_as_now() {
        let window = MessengerWindow::for_send(Some(time(10)), Sender::Ai, time(0));
        assert_eq!(window.ok(), Some(MessengerWindow::Standard));
    }

    #[test]
    fn postback_debug_omits_text() {
        let postback = Postback {
            channel: ChannelKind::Messenger,
            provider: "messenger".into(),
            provider_message_id: Some("m_1".into()),
            from: ContactPoint::Messenger(crate::contact::MessengerPsid::parse("1234").unwrap()),
            title: "Réserver une démo".into(),
            payload: "BOOK_DEMO".into(),
            at: time(0),
        };
        let debug = format!("{postback:?}");
        assert!(!debug.contains("Réserver"), "{debug}");
        assert!(!debug.contains("BOOK_DEMO"), "{debug}");
        assert!(!debug.contains("1234"), "{debug}");
    }
}

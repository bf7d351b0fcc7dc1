//! The channel port: sending messages and reading webhooks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::Timestamp;
use crate::contact::{ChannelKind, ContactPoint};
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

/// A parsed webhook event.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum InboundEvent {
    /// A message from a prospect.
    Message(InboundMessage),
}

/// A way to reach prospects.
///
/// # Contract
/// - `send` accepts only a [`SendPermit`], which only the compliance gate creates.
/// - `send` with an idempotency key the provider already accepted returns the
///   first receipt or sends nothing new, where the provider supports it.
/// - `parse_webhook` verifies the signature before reading anything, and a
///   bad signature is `Unauthenticated`.
///
/// # Errors
/// `RateLimited` (with `retry_after`), `Unavailable` and `Timeout` are
/// retryable; `InvalidInput` for a bad recipient and `RecipientOptedOut`
/// for an unsubscribed one are permanent.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug + 'static {
    /// The channel kind.
    fn kind(&self) -> ChannelKind;

    /// The provider's name, such as `twilio` or `console`.
    fn provider(&self) -> &str;

    /// Sends the permitted message.
    async fn send(&self, permit: &SendPermit) -> Result<Receipt>;

    /// Verifies and parses a webhook request.
    fn parse_webhook(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>> {
        let _ = request;
        Err(Error::new(ErrorKind::Unsupported, format!("the {} channel has no webhooks", self.provider())))
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
    async fn send(&self, permit: &SendPermit) -> Result<Receipt> {
        (**self).send(permit).await
    }
    fn parse_webhook(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>> {
        (**self).parse_webhook(request)
    }
}

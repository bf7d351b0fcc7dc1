//! Notifiers: adapters of the [`Notifier`](kalify_core::ports::Notifier)
//! port that tell the team about hot leads, handoffs, replies, opt-outs,
//! reminders and due data-subject requests.
//!
//! - [`WebhookNotifier`] posts signed JSON that Slack and Microsoft Teams
//!   incoming webhooks show as a message, and that any other HTTPS
//!   receiver can verify with [`verify_signature`].
//! - [`EmailNotifier`] sends a short plain-text e-mail over SMTP to the
//!   member concerned, or to a fallback address.
//!
//! Both make one attempt per call and return a retryable error when a later
//! attempt may succeed. Wrap them in
//! [`RetryingNotifier`](kalify_core::ports::RetryingNotifier), as the engine
//! does, for background delivery with backoff.

mod email;
mod signature;
mod webhook;

pub use email::{EmailNotifier, EmailNotifierBuilder};
pub use signature::{
    DEFAULT_TOLERANCE, SIGNATURE_HEADER, TIMESTAMP_HEADER, compute_signature, verify_signature,
};
pub use webhook::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, MIN_SECRET_BYTES, WebhookNotifier,
    WebhookNotifierBuilder,
};

//! Channel adapters of kalify.
//!
//! | feature | adapter | default |
//! |---|---|---|
//! | `console` | [`ConsoleChannel`]: prints what would be sent | yes |
//! | `smtp` | [`SmtpEmailChannel`]: e-mail over SMTP, and parsing of inbound mail ([`email`]) | no |
//! | `twilio` | [`TwilioSmsChannel`]: SMS through Twilio, and its webhooks ([`twilio`]) | no |
//! | `messenger` | [`MessengerChannel`]: Facebook Messenger through the Send API, and its webhooks ([`messenger`]) | no |
//! | `notify` | [`WebhookNotifier`] and [`EmailNotifier`]: team notifications by signed webhook (Slack, Microsoft Teams) and e-mail ([`notify`]) | no |
//!
//! [`MemoryChannel`] records sends in memory for tests and is always available.

#[cfg(feature = "console")]
mod console;
#[cfg(feature = "smtp")]
pub mod email;
#[cfg(feature = "_http")]
// notify alone uses only the client, status mapping and hex helpers.
#[cfg_attr(not(any(feature = "twilio", feature = "messenger")), allow(dead_code))]
mod http;
mod memory;
#[cfg(feature = "messenger")]
pub mod messenger;
#[cfg(feature = "notify")]
pub mod notify;
#[cfg(feature = "twilio")]
pub mod twilio;

#[cfg(feature = "console")]
pub use console::ConsoleChannel;
#[cfg(feature = "smtp")]
pub use email::{SmtpEmailChannel, SmtpEmailChannelBuilder};
pub use memory::{MemoryChannel, SentMessage};
#[cfg(feature = "messenger")]
pub use messenger::{MessengerChannel, MessengerChannelBuilder};
#[cfg(feature = "notify")]
pub use notify::{EmailNotifier, EmailNotifierBuilder, WebhookNotifier, WebhookNotifierBuilder};
#[cfg(feature = "twilio")]
pub use twilio::{TwilioSmsChannel, TwilioSmsChannelBuilder};

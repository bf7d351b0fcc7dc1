//! Channel adapters of kalify.
//!
//! | feature | adapter | default |
//! |---|---|---|
//! | `console` | [`ConsoleChannel`]: prints what would be sent | yes |
//! | `smtp` | [`SmtpEmailChannel`]: e-mail over SMTP, and parsing of inbound mail ([`email`]) | no |
//! | `twilio` | [`TwilioSmsChannel`]: SMS through Twilio, and its webhooks ([`twilio`]) | no |
//! | `messenger` | [`MessengerChannel`]: Facebook Messenger through the Send API, and its webhooks ([`messenger`]) | no |
//!
//! [`MemoryChannel`] records sends in memory for tests and is always available.

#[cfg(feature = "console")]
mod console;
#[cfg(feature = "smtp")]
pub mod email;
#[cfg(feature = "_http")]
mod http;
mod memory;
#[cfg(feature = "messenger")]
pub mod messenger;
#[cfg(feature = "twilio")]
pub mod twilio;

#[cfg(feature = "console")]
pub use console::ConsoleChannel;
#[cfg(feature = "smtp")]
pub use email::{SmtpEmailChannel, SmtpEmailChannelBuilder};
pub use memory::{MemoryChannel, SentMessage};
#[cfg(feature = "messenger")]
pub use messenger::{MessengerChannel, MessengerChannelBuilder};
#[cfg(feature = "twilio")]
pub use twilio::{TwilioSmsChannel, TwilioSmsChannelBuilder};

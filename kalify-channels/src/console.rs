//! A channel that prints what would be sent.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use kalify_core::contact::ChannelKind;
use kalify_core::gate::SendPermit;
use kalify_core::ports::{Channel, Receipt};
use kalify_core::{Error, ErrorKind, Result};

/// Prints each send to standard output as `[sms to +33…] text`, for
/// examples and local runs. Nothing leaves the machine.
#[derive(Debug)]
pub struct ConsoleChannel {
    kind: ChannelKind,
    counter: AtomicU64,
    quiet: bool,
}

impl ConsoleChannel {
    /// Creates a channel of `kind` that prints every send.
    pub fn new(kind: ChannelKind) -> Self {
        ConsoleChannel {
            kind,
            counter: AtomicU64::new(0),
            quiet: false,
        }
    }

    /// Creates a channel that accepts sends without printing them.
    pub fn quiet(kind: ChannelKind) -> Self {
        ConsoleChannel {
            kind,
            counter: AtomicU64::new(0),
            quiet: true,
        }
    }
}

#[async_trait]
impl Channel for ConsoleChannel {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn provider(&self) -> &str {
        "console"
    }

    async fn send(&self, permit: &SendPermit) -> Result<Receipt> {
        let entry = permit.entry();
        let number = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.quiet {
            let mut stdout = std::io::stdout().lock();
            writeln!(
                stdout,
                "[{} to {}] {}",
                self.kind,
                entry.to.key(),
                entry.text
            )
            .map_err(|error| {
                Error::new(ErrorKind::Unavailable, "failed to write to standard output")
                    .with_source(error)
            })?;
        }
        Ok(Receipt {
            provider: "console".into(),
            provider_message_id: format!("console-{number}"),
        })
    }
}

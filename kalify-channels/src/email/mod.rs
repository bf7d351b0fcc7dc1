//! E-mail over SMTP, and parsing of inbound e-mail.
//!
//! [`SmtpEmailChannel`] sends plain-text e-mail with lettre over an async
//! Tokio transport with rustls, and reads inbound RFC 5322 messages that the
//! embedding service passes to [`Channel::parse_webhook`] as the raw body.
//!
//! # Sending
//!
//! - Every message gets a `Message-ID` in the domain of the `From` address,
//!   returned as the receipt's provider id. The first campaign message of a
//!   conversation is the thread root, and later messages carry it in
//!   `In-Reply-To` and `References`, so the conversation shows as one thread.
//! - Marketing messages (every purpose but opt-out and opt-in confirmations
//!   and help) carry `List-Unsubscribe` with an `https` and a `mailto` URI,
//!   `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), and a
//!   visible unsubscribe link under a `-- ` line. The token in both links
//!   is described in [`unsubscribe_token`]; check it with
//!   [`verify_unsubscribe_token`].
//! - A send whose idempotency key this channel already delivered returns the
//!   first receipt without sending again, within the process.
//!
//! # Receiving
//!
//! [`parse_email`] reads the headers, the first text body (HTML converted to
//! text) and the visible reply, and separates person-written messages from
//! automatic replies and delivery status notifications. `parse_webhook`
//! turns them into [`InboundEvent::Message`], [`InboundEvent::AutoReply`],
//! [`InboundEvent::Bounce`], or [`InboundEvent::OptOut`] for a `mailto`
//! unsubscribe request whose token verifies.
//!
//! # Limitations
//!
//! - Threading without a first campaign message (a conversation the
//!   prospect started) refers to a thread root that the prospect never
//!   received, so some clients show the reply as a new thread.
//! - SMTP has no idempotency: after a timeout that follows the server's
//!   acceptance, a retry sends again with the same `Message-ID`, which
//!   most receivers de-duplicate.
//! - Raw messages carry no provider signature. When they arrive over HTTP,
//!   set [`SmtpEmailChannelBuilder::with_inbound_secret`] and have the
//!   forwarder sign each body with [`sign_inbound`]; without a secret,
//!   `parse_webhook` accepts every caller.

pub(crate) mod config;
mod html;
mod inbound;
mod reply_text;
mod signature;
pub(crate) mod smtp;
mod unsubscribe;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use kalify_core::contact::{ChannelKind, ContactPoint};
use kalify_core::gate::SendPermit;
use kalify_core::ports::{
    AutoReplyNotice, BounceNotice, Channel, ChannelCapabilities, Clock, InboundEvent,
    InboundMessage, OptOutNotice, Receipt, WebhookRequest,
};
use kalify_core::{Error, ErrorKind, Result, Timestamp};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

pub use config::{DEFAULT_UNSUBSCRIBE_FOOTER, SmtpConfig, SmtpEmailChannelBuilder, SmtpSecurity};
pub use inbound::{
    AutoReplySignal, DEFAULT_MAX_EMAIL_BYTES, DeliveryReport, EmailKind, ParsedEmail,
    RecipientStatus, parse_email, parse_email_with_limit,
};
pub use reply_text::visible_reply;
pub use signature::{SIGNATURE_HEADER, sign_inbound};
pub use unsubscribe::{unsubscribe_token, verify_unsubscribe_token};

use signature::verify_inbound;

use config::Settings;

/// The provider name of this channel, in receipts and inbound events.
const PROVIDER: &str = "smtp";
/// How many delivered idempotency keys are remembered.
const REMEMBERED_SENDS: usize = 10_000;

/// Sends e-mail over SMTP and parses inbound e-mail. Build it with
/// [`SmtpEmailChannelBuilder`].
///
/// `Display` is `SmtpEmailChannel(host=…, port=…)`; `Debug` shows no secret.
///
/// # Errors
///
/// | failure of `send` | kind | retry |
/// |---|---|---|
/// | recipient that is not an e-mail address | `InvalidInput` | permanent |
/// | 530, 534, 535, 538 (authentication) | `Unauthenticated` | permanent |
/// | 550, 551, 553 (mailbox unavailable or not allowed) | `InvalidInput` | permanent |
/// | 552, 554 (size or content refused) | `ContentRejected` | permanent |
/// | other 5xx | `Unexpected` | permanent |
/// | 4xx | `Unavailable` | temporary |
/// | no reply within the timeout | `Timeout` | temporary |
/// | refused or lost connection, TLS failure | `Unavailable` | temporary |
/// | client-side stop, such as STARTTLS not offered | `ConfigInvalid` | permanent |
///
/// Errors carry `smtp_code` and `enhanced_status` as context, never the
/// server's reply text, which often repeats the recipient address.
pub struct SmtpEmailChannel {
    settings: Settings,
    clock: Arc<dyn Clock>,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    sent: Mutex<SentKeys>,
}

/// Receipts of delivered idempotency keys, oldest evicted first.
#[derive(Default)]
struct SentKeys {
    receipts: HashMap<String, Receipt>,
    order: VecDeque<String>,
}

impl SmtpEmailChannel {
    /// Starts a builder.
    pub fn builder() -> SmtpEmailChannelBuilder {
        SmtpEmailChannelBuilder::new()
    }

    fn from_settings(settings: Settings, clock: Arc<dyn Clock>) -> Self {
        SmtpEmailChannel {
            settings,
            clock,
            transport: OnceLock::new(),
            sent: Mutex::new(SentKeys::default()),
        }
    }

    fn transport(&self) -> Result<&AsyncSmtpTransport<Tokio1Executor>> {
        if let Some(transport) = self.transport.get() {
            return Ok(transport);
        }
        let transport = smtp::transport(&self.settings.connection)?;
        // Two first sends may race; the loser's transport is dropped unused.
        Ok(self.transport.get_or_init(|| transport))
    }

    fn remembered(&self, key: &str) -> Option<Receipt> {
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        sent.receipts.get(key).cloned()
    }

    fn remember(&self, key: &str, receipt: &Receipt) {
        let mut sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner);
        if sent
            .receipts
            .insert(key.to_owned(), receipt.clone())
            .is_none()
        {
            sent.order.push_back(key.to_owned());
        }
        while sent.order.len() > REMEMBERED_SENDS {
            if let Some(oldest) = sent.order.pop_front() {
                sent.receipts.remove(&oldest);
            }
        }
    }

    fn check_inbound_signature(&self, request: &WebhookRequest) -> Result<()> {
        let Some(secret) = &self.settings.inbound_secret else {
            return Ok(());
        };
        let presented = request
            .headers
            .get(SIGNATURE_HEADER)
            .map(String::as_str)
            .unwrap_or("");
        if verify_inbound(secret, &request.body, presented) {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("inbound e-mail request rejected: the {SIGNATURE_HEADER} header is missing or does not match the body"),
            )
            .with_adapter(PROVIDER)
            .with_operation("parse_webhook"))
        }
    }

    /// When the message arrived: its `Date` when that is not in the
    /// future, otherwise the clock's time.
    fn arrival(&self, parsed: &ParsedEmail) -> Timestamp {
        let now = self.clock.now();
        parsed.date.filter(|date| *date <= now).unwrap_or(now)
    }

    fn events(&self, parsed: ParsedEmail) -> Result<Vec<InboundEvent>> {
        let at = self.arrival(&parsed);
        let provider_message_id = parsed.provider_message_id().to_owned();

        match parsed.kind {
            EmailKind::Bounce(report) => Ok(bounce_events(report, provider_message_id, at)),
            EmailKind::AutoReply(signal) => {
                let Some(from) = parsed.from else {
                    tracing::debug!(target: "kalify::channel", adapter = PROVIDER, reason = signal.as_str(), "automatic reply without a valid sender ignored");
                    return Ok(Vec::new());
                };
                Ok(vec![InboundEvent::AutoReply(AutoReplyNotice {
                    channel: ChannelKind::Email,
                    provider: PROVIDER.to_owned(),
                    provider_message_id,
                    from: ContactPoint::Email(from),
                    reason: signal.as_str().to_owned(),
                    at,
                })])
            }
            EmailKind::Message => {
                if let Some(token) = &parsed.unsubscribe_token {
                    match verify_unsubscribe_token(&self.settings.unsubscribe_key, token) {
                        Ok((_, recipient)) => {
                            return Ok(vec![InboundEvent::OptOut(OptOutNotice {
                                channel: ChannelKind::Email,
                                provider: PROVIDER.to_owned(),
                                contact: ContactPoint::Email(recipient),
                                reason: "list_unsubscribe_mailto".to_owned(),
                                at,
                            })]);
                        }
                        Err(error) => {
                            tracing::debug!(target: "kalify::channel", adapter = PROVIDER, error = %error, "unsubscribe subject with an invalid token; read as a message");
                        }
                    }
                }
                let from = parsed.from.ok_or_else(|| {
                    Error::invalid_input("the inbound e-mail has no valid From address")
                        .with_adapter(PROVIDER)
                        .with_operation("parse_webhook")
                })?;
                Ok(vec![InboundEvent::Message(InboundMessage {
                    channel: ChannelKind::Email,
                    provider: PROVIDER.to_owned(),
                    provider_message_id,
                    from: ContactPoint::Email(from),
                    text: parsed.visible_text,
                    at,
                })])
            }
        }
    }
}

fn bounce_events(
    report: DeliveryReport,
    provider_message_id: String,
    at: Timestamp,
) -> Vec<InboundEvent> {
    let notice = |recipient: Option<ContactPoint>,
                  permanent: bool,
                  status_code: Option<String>,
                  reason: &str| {
        InboundEvent::Bounce(BounceNotice {
            channel: ChannelKind::Email,
            provider: PROVIDER.to_owned(),
            provider_message_id: provider_message_id.clone(),
            original_message_id: report.original_message_id.clone(),
            recipient,
            permanent,
            status_code,
            reason: reason.to_owned(),
            at,
        })
    };

    if !report.machine_readable {
        // Without a status part nothing shows that the failure is permanent, so
        // the notice must not lead to a suppression.
        return vec![notice(None, false, None, "delivery_failed_unstructured")];
    }
    report
        .recipients
        .iter()
        .map(|status| {
            let reason = if status.action == "delayed" {
                "delivery_delayed"
            } else {
                "delivery_failed"
            };
            notice(
                status.recipient.clone().map(ContactPoint::Email),
                status.permanent,
                status.status.clone(),
                reason,
            )
        })
        .collect()
}

impl fmt::Debug for SmtpEmailChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpEmailChannel")
            .field("host", &self.settings.connection.host)
            .field("port", &self.settings.connection.port)
            .field("security", &self.settings.connection.security.as_str())
            .field(
                "authenticated",
                &self.settings.connection.credentials.is_some(),
            )
            .field("from_domain", &self.settings.from.domain())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SmtpEmailChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SmtpEmailChannel(host={}, port={})",
            self.settings.connection.host, self.settings.connection.port
        )
    }
}

#[async_trait]
impl Channel for SmtpEmailChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities::new()
            .with_webhooks(true)
            .with_dedupes_sends(true)
    }

    /// Sends the permitted e-mail.
    ///
    /// # Errors
    /// As listed on [`SmtpEmailChannel`].
    async fn send(&self, permit: &SendPermit) -> Result<Receipt> {
        let entry = permit.entry();
        if let Some(receipt) = self.remembered(&entry.idempotency_key) {
            tracing::debug!(target: "kalify::channel", adapter = PROVIDER, operation = "send", outbox_id = %entry.id, "idempotency key already delivered; returning the first receipt");
            return Ok(receipt);
        }

        let outgoing = smtp::build_message(&self.settings, permit)?;
        let transport = self.transport()?;
        let started = Instant::now();
        let result = transport.send(outgoing.message).await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

        match result {
            Ok(_) => {
                let receipt = Receipt {
                    provider: PROVIDER.to_owned(),
                    provider_message_id: outgoing.message_id,
                };
                self.remember(&entry.idempotency_key, &receipt);
                tracing::debug!(
                    target: "kalify::channel",
                    adapter = PROVIDER,
                    operation = "send",
                    outbox_id = %entry.id,
                    conversation_id = %entry.conversation_id,
                    purpose = smtp::purpose_name(entry),
                    elapsed_ms,
                    "e-mail accepted by the SMTP server"
                );
                Ok(receipt)
            }
            Err(error) => {
                let timed_out = started.elapsed() >= self.settings.connection.timeout;
                let error =
                    smtp::map_smtp_error(error, timed_out).with_context("outbox_id", entry.id);
                if error.kind() == ErrorKind::Unexpected {
                    tracing::error!(target: "kalify::channel", adapter = PROVIDER, operation = "send", outbox_id = %entry.id, elapsed_ms, error = %error, "SMTP send failed");
                } else {
                    tracing::debug!(target: "kalify::channel", adapter = PROVIDER, operation = "send", outbox_id = %entry.id, elapsed_ms, error = %error, "SMTP send failed");
                }
                Err(error)
            }
        }
    }

    /// Reads one raw RFC 5322 message from the request body.
    ///
    /// # Errors
    /// `Unauthenticated` when an inbound secret is configured and the
    /// signature is missing or wrong, checked before the body is read; `InvalidInput` for an empty, oversized or unreadable
    /// message, or a person-written message without a valid `From` address.
    fn parse_webhook(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>> {
        self.check_inbound_signature(request)?;
        let parsed = parse_email_with_limit(&request.body, self.settings.max_inbound_bytes)?;
        tracing::debug!(
            target: "kalify::channel",
            adapter = PROVIDER,
            operation = "parse_webhook",
            bytes = request.body.len(),
            kind = ?parsed.kind,
            "inbound e-mail parsed"
        );
        self.events(parsed)
    }
}

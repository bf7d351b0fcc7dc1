//! The conformance suite of [`Channel`] adapters that call a provider over
//! the network: one public function per case.
//!
//! `kalify-core` has no HTTP dependency, so the suite contains only the
//! assertions. The adapter's test crate implements [`ChannelHarness`]: it
//! starts a local mock server (wiremock, for example), builds the channel
//! pointed at it, mounts the provider's responses on request, and builds
//! signed and unsigned webhooks. [`channel_conformance!`](crate::channel_conformance)
//! then stamps out one test per case, each with a new harness:
//!
//! ```ignore
//! kalify_core::channel_conformance!(twilio, || async { TwilioHarness::start().await });
//! ```
//!
//! # What the cases require
//! - A 2xx response gives a [`Receipt`] with the provider's name and message id.
//! - A channel that reports [`ChannelCapabilities::dedupes_sends`] returns the
//!   first receipt for a repeated idempotency key without sending again,
//!   and does not remember failed sends.
//! - 429 is `RateLimited`, retryable, with the `Retry-After` delay, and 5xx
//!   is retryable. An invalid recipient is a permanent `InvalidInput`, and
//!   an opted-out recipient a permanent `RecipientOptedOut`.
//! - A channel that reports [`ChannelCapabilities::finds_sent`] finds an
//!   earlier send at the provider and returns its receipt, and returns
//!   `None` when the provider has no such message. A lookup that fails at
//!   the provider is a retryable error. Any other channel returns
//!   `Unsupported` from `find_sent`.
//! - A webhook whose signature is missing, wrong, or does not match the body
//!   is `Unauthenticated`, whatever the body contains.
//! - The same webhook parsed twice gives the same events, so the store's
//!   unique key on the provider message id removes the replay.
//! - No secret appears in the channel's `Debug`, in the `Display` or
//!   `Debug` of its errors, or in any log record; the recipient's contact
//!   point and the message text appear in no log record at `INFO` or above.
//!   The channel logs under the target `kalify::channel`.
//!
//! [`ChannelCapabilities::dedupes_sends`]: crate::ports::ChannelCapabilities::dedupes_sends
//! [`ChannelCapabilities::finds_sent`]: crate::ports::ChannelCapabilities::finds_sent

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tracing::field::{Field, Visit};
use tracing::instrument::WithSubscriber;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

use crate::contact::ContactPoint;
use crate::conversation::{SendPurpose, Sender};
use crate::error::{Error, ErrorKind, Retry};
use crate::gate::{Gate, SendPermit};
use crate::ports::{Channel, InboundEvent, OutboxEntry, Receipt, WebhookRequest};
use crate::prospect::{Consent, ConsentBasis};
use crate::testkit::fakes::{self, time};

/// The text of every message the suite sends: accents, French punctuation
/// and an emoji, so that encoding bugs show.
pub const SAMPLE_TEXT: &str = "Bonjour Camille, ici Léa : pouvons-nous échanger 5 minutes ? 😀";

/// The mock provider and the channel under test, written by the adapter's
/// test crate.
///
/// Each `mount_*` method makes the mock server respond to every following
/// send request the stated way, until [`ChannelHarness::reset`].
#[async_trait]
pub trait ChannelHarness: Send + Sync {
    /// Returns the channel under test, pointed at the mock server.
    fn channel(&self) -> &dyn Channel;

    /// Returns the contact point the suite sends to. The harness prepares
    /// whatever the channel needs to accept it, such as a recent inbound
    /// message for a Messenger window.
    fn recipient(&self) -> ContactPoint;

    /// Returns every credential the channel uses (tokens, secrets,
    /// passwords), which must appear in no output.
    fn secrets(&self) -> Vec<String>;

    /// Returns the lower-case name of the header that carries the webhook signature.
    fn signature_header(&self) -> String;

    /// Makes sends succeed with `provider_message_id`.
    async fn mount_success(&self, provider_message_id: &str);

    /// Makes sends fail with 429 and `Retry-After: retry_after_secs`.
    async fn mount_rate_limited(&self, retry_after_secs: u64);

    /// Makes sends fail with a 5xx status.
    async fn mount_server_error(&self);

    /// Makes sends fail with the provider's error for an invalid recipient.
    async fn mount_invalid_recipient(&self);

    /// Makes sends fail with the provider's error for a recipient who opted
    /// out, and returns true. Returns false when the provider has no such
    /// error, so that the case is skipped.
    async fn mount_opted_out(&self) -> bool;

    /// Makes lookups of earlier sends ([`Channel::find_sent`]) find the
    /// message of `found`'s permit with its provider message id, or find
    /// nothing when `found` is `None`, and returns true. Returns false when
    /// the channel cannot look up its sends; the default does.
    async fn mount_sent_lookup(&self, found: Option<(&SendPermit, &str)>) -> bool {
        let _ = found;
        false
    }

    /// Makes lookups of earlier sends fail with a 5xx status and returns
    /// true. Returns false, as the default does, when the channel cannot
    /// look up its sends.
    async fn mount_lookup_server_error(&self) -> bool {
        false
    }

    /// Removes every response mounted so far.
    async fn reset(&self);

    /// Builds a webhook the provider would send, with a valid signature,
    /// that contains at least one inbound message.
    fn signed_webhook(&self) -> WebhookRequest;

    /// Builds the same kind of webhook without a signature header.
    fn unsigned_webhook(&self) -> WebhookRequest;
}

/// Builds a permit to send [`SAMPLE_TEXT`], written by the AI, to the
/// harness's recipient with `idempotency_key`, through the gate as the
/// engine does.
pub fn permit(harness: &dyn ChannelHarness, idempotency_key: &str) -> SendPermit {
    permit_for(
        harness.recipient(),
        idempotency_key,
        SAMPLE_TEXT,
        Sender::Ai,
    )
}

/// Builds a permit to send `text`, written by `sender`, to `recipient` with
/// `idempotency_key`, through the gate as the engine does. The prospect has
/// an active consent for the recipient's channel.
pub fn permit_for(
    recipient: ContactPoint,
    idempotency_key: &str,
    text: &str,
    sender: Sender,
) -> SendPermit {
    permit_with(recipient, idempotency_key, text, sender, |_| {})
}

/// Builds a permit as [`permit_for`] does, after `adjust` has changed the
/// outbox entry, such as its attempt times.
pub fn permit_with(
    recipient: ContactPoint,
    idempotency_key: &str,
    text: &str,
    sender: Sender,
    adjust: impl FnOnce(&mut OutboxEntry),
) -> SendPermit {
    let channel = recipient.channel();
    let org = fakes::org();

    let mut prospect = fakes::prospect(org);
    match &recipient {
        ContactPoint::Phone(phone) => prospect.phone = Some(phone.clone()),
        ContactPoint::Email(email) => prospect.email = Some(email.clone()),
        ContactPoint::Messenger(psid) => prospect.messenger = Some(psid.clone()),
    }
    prospect
        .consents
        .retain(|consent| consent.channel != channel);
    prospect.consents.push(Consent {
        channel,
        basis: ConsentBasis::Consent,
        collected_at: time(-60),
        source: "channel conformance suite".into(),
        wording_version: None,
        withdrawn_at: None,
    });

    let mut conversation = fakes::conversation(&prospect, None);
    conversation.channel = channel;
    let mut message = fakes::outbound(&conversation, time(10));
    message.channel = channel;
    message.sender = Some(sender);
    message.subject = None;
    message.text = text.to_owned();

    let mut entry = fakes::outbox_entry(&message, recipient);
    entry.idempotency_key = idempotency_key.to_owned();
    if sender == Sender::Member {
        entry.purpose = SendPurpose::MemberMessage;
    }
    adjust(&mut entry);
    match Gate::default().check(&prospect, entry, false, time(10)) {
        Ok(permit) => permit,
        Err(error) => panic!("the gate rejected the suite's own send intent: {error}"),
    }
}

/// Returns true when the channel reports `finds_sent` and the harness can
/// mount lookups. Checks that a channel without it returns `Unsupported`.
async fn looks_up_sends(harness: &dyn ChannelHarness, permit: &SendPermit) -> bool {
    let reported = harness.channel().capabilities().finds_sent;
    if !reported {
        let answer = harness.channel().find_sent(permit).await;
        let kind = answer.as_ref().err().map(Error::kind);
        assert_eq!(
            kind,
            Some(ErrorKind::Unsupported),
            "a channel without finds_sent must answer find_sent with Unsupported, got {answer:?}"
        );
        return false;
    }
    assert!(
        harness.mount_sent_lookup(None).await,
        "the channel reports finds_sent, so the harness must mount lookups"
    );
    harness.reset().await;
    true
}

/// Checks that a lookup finds the message an earlier attempt sent and returns its receipt.
pub async fn find_sent_returns_earlier_receipt(harness: &dyn ChannelHarness) {
    let permit = permit(harness, "suite-find-earlier");
    if !looks_up_sends(harness, &permit).await {
        return;
    }
    harness
        .mount_sent_lookup(Some((&permit, "suite-earlier-id")))
        .await;
    let found = harness.channel().find_sent(&permit).await;
    let Ok(Some(receipt)) = found else {
        panic!("find_sent must find the earlier send, got {found:?}");
    };
    assert_eq!(receipt.provider_message_id, "suite-earlier-id");
    assert_eq!(receipt.provider, harness.channel().provider());
}

/// Checks that a lookup returns `None` when the provider has no matching message.
pub async fn find_sent_without_match_returns_none(harness: &dyn ChannelHarness) {
    let permit = permit(harness, "suite-find-none");
    if !looks_up_sends(harness, &permit).await {
        return;
    }
    harness.mount_sent_lookup(None).await;
    let found = harness.channel().find_sent(&permit).await;
    assert!(
        matches!(found, Ok(None)),
        "find_sent must return None when nothing matches, got {found:?}"
    );
}

/// Checks that a lookup failing at the provider returns a retryable error.
pub async fn find_sent_failure_is_retryable(harness: &dyn ChannelHarness) {
    let permit = permit(harness, "suite-find-error");
    if !looks_up_sends(harness, &permit).await {
        return;
    }
    assert!(harness.mount_lookup_server_error().await);
    let error = match harness.channel().find_sent(&permit).await {
        Err(error) => error,
        Ok(found) => panic!("a 5xx lookup must fail, got {found:?}"),
    };
    assert!(
        error.is_retryable(),
        "a 5xx lookup must be retryable: {error}"
    );
}

/// Checks that a 2xx response gives a receipt with the provider's name and message id.
pub async fn send_success_returns_receipt(harness: &dyn ChannelHarness) {
    harness.mount_success("conformance-message-1").await;
    let channel = harness.channel();

    let receipt = sent(channel.send(&permit(harness, "key-success")).await, "send");

    assert_eq!(
        receipt.provider_message_id, "conformance-message-1",
        "the receipt must carry the provider's message id"
    );
    assert_eq!(
        receipt.provider,
        channel.provider(),
        "the receipt must name the channel's provider"
    );
}

/// Checks that a repeated idempotency key returns the first receipt without
/// a new send, when the channel reports that it dedupes sends, and that a
/// new key sends again.
pub async fn send_repeated_key_returns_first_receipt(harness: &dyn ChannelHarness) {
    let channel = harness.channel();
    if !channel.capabilities().dedupes_sends {
        eprintln!(
            "skipped: the {} channel does not report dedupes_sends",
            channel.provider()
        );
        return;
    }
    harness.mount_success("first-id").await;
    let permit = permit(harness, "key-repeated");
    let first = sent(channel.send(&permit).await, "first send");

    harness.reset().await;
    harness.mount_success("second-id").await;
    let repeated = sent(channel.send(&permit).await, "repeated send");
    let other = sent(
        channel.send(&self::permit(harness, "key-other")).await,
        "send with another key",
    );

    assert_eq!(first.provider_message_id, "first-id");
    assert_eq!(
        repeated, first,
        "a repeated idempotency key must return the first receipt"
    );
    assert_eq!(
        other.provider_message_id, "second-id",
        "another idempotency key must send again"
    );
}

/// Checks that a failed send is not remembered: the same key sends again
/// once the provider recovers.
pub async fn send_failure_is_not_remembered(harness: &dyn ChannelHarness) {
    let channel = harness.channel();
    harness.mount_server_error().await;
    let permit = permit(harness, "key-retried");
    let error = failed(channel.send(&permit).await, "send during an outage");
    assert!(error.is_retryable(), "a 5xx must be retryable: {error:?}");

    harness.reset().await;
    harness.mount_success("after-outage").await;
    let receipt = sent(channel.send(&permit).await, "retried send");
    assert_eq!(
        receipt.provider_message_id, "after-outage",
        "the retry must reach the provider"
    );
}

/// Checks that 429 is `RateLimited`, retryable, with the `Retry-After` delay.
pub async fn send_rate_limited_is_retryable(harness: &dyn ChannelHarness) {
    harness.mount_rate_limited(17).await;

    let error = failed(
        harness.channel().send(&permit(harness, "key-429")).await,
        "send while throttled",
    );

    assert_eq!(error.kind(), ErrorKind::RateLimited, "{error:?}");
    assert_eq!(error.retry(), Retry::Temporary, "{error:?}");
    assert_eq!(
        error.retry_after(),
        Some(Duration::from_secs(17)),
        "Retry-After must be honoured: {error:?}"
    );
}

/// Checks that 5xx is a retryable `Unavailable`.
pub async fn send_server_error_is_retryable(harness: &dyn ChannelHarness) {
    harness.mount_server_error().await;

    let error = failed(
        harness.channel().send(&permit(harness, "key-500")).await,
        "send during an outage",
    );

    assert_eq!(error.retry(), Retry::Temporary, "{error:?}");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error:?}");
}

/// Checks that an invalid recipient is a permanent `InvalidInput`.
pub async fn send_invalid_recipient_is_permanent(harness: &dyn ChannelHarness) {
    harness.mount_invalid_recipient().await;

    let error = failed(
        harness
            .channel()
            .send(&permit(harness, "key-invalid"))
            .await,
        "send to an invalid recipient",
    );

    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error:?}");
    assert_eq!(error.retry(), Retry::Permanent, "{error:?}");
}

/// Checks that an opted-out recipient is a permanent `RecipientOptedOut`,
/// so that the engine records the opt-out.
pub async fn send_opted_out_is_reported(harness: &dyn ChannelHarness) {
    if !harness.mount_opted_out().await {
        eprintln!(
            "skipped: the {} provider has no opted-out error",
            harness.channel().provider()
        );
        return;
    }

    let error = failed(
        harness
            .channel()
            .send(&permit(harness, "key-opted-out"))
            .await,
        "send to an opted-out recipient",
    );

    assert_eq!(error.kind(), ErrorKind::RecipientOptedOut, "{error:?}");
    assert_eq!(error.retry(), Retry::Permanent, "{error:?}");
}

/// Checks that a signed webhook parses into at least one message of the channel.
pub async fn webhook_signed_parses(harness: &dyn ChannelHarness) {
    let channel = harness.channel();

    let events = match channel.parse_webhook(&harness.signed_webhook()) {
        Ok(events) => events,
        Err(error) => panic!("a correctly signed webhook was rejected: {error}"),
    };

    let messages: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            InboundEvent::Message(message) => Some(message),
            _ => None,
        })
        .collect();
    assert!(
        !messages.is_empty(),
        "the signed webhook must hold an inbound message: {events:?}"
    );
    for message in messages {
        assert_eq!(message.channel, channel.kind());
        assert_eq!(message.provider, channel.provider());
        assert!(
            !message.provider_message_id.trim().is_empty(),
            "an inbound message needs the provider's id"
        );
    }
}

/// Checks that a webhook without a signature header is `Unauthenticated`.
pub async fn webhook_unsigned_is_rejected(harness: &dyn ChannelHarness) {
    let request = harness.unsigned_webhook();
    assert!(
        !request.headers.contains_key(&harness.signature_header()),
        "the harness's unsigned webhook carries a signature header"
    );
    assert_unauthenticated(harness.channel(), &request, "an unsigned webhook");
}

/// Checks that removing the signature header from a signed webhook makes it `Unauthenticated`.
pub async fn webhook_missing_signature_is_rejected(harness: &dyn ChannelHarness) {
    let mut request = harness.signed_webhook();
    let removed = request.headers.remove(&harness.signature_header());
    assert!(
        removed.is_some(),
        "the signed webhook has no {} header",
        harness.signature_header()
    );
    assert_unauthenticated(
        harness.channel(),
        &request,
        "a webhook without its signature header",
    );
}

/// Checks that a wrong signature is `Unauthenticated`: an altered
/// character, an empty value, and a value of the wrong length.
pub async fn webhook_wrong_signature_is_rejected(harness: &dyn ChannelHarness) {
    let header = harness.signature_header();
    let signed = harness.signed_webhook();
    let original = signed.headers.get(&header).cloned().unwrap_or_default();

    let mut altered: Vec<char> = original.chars().collect();
    if let Some(last) = altered.iter_mut().rev().find(|c| c.is_ascii_alphanumeric()) {
        *last = if *last == 'a' { 'b' } else { 'a' };
    }
    let altered: String = altered.into_iter().collect();
    let truncated: String = original
        .chars()
        .take(original.chars().count() / 2)
        .collect();

    for (value, label) in [
        (altered, "an altered signature"),
        (String::new(), "an empty signature"),
        (truncated, "a truncated signature"),
    ] {
        let mut request = signed.clone();
        request.headers.insert(header.clone(), value);
        assert_unauthenticated(harness.channel(), &request, label);
    }
}

/// Checks that a body changed after signing is `Unauthenticated`, even when
/// the change leaves it unreadable, because the signature is checked before
/// the body is read.
pub async fn webhook_tampered_body_is_rejected(harness: &dyn ChannelHarness) {
    let signed = harness.signed_webhook();

    let mut appended = signed.clone();
    appended.body.extend_from_slice(b"&Body=x");
    assert_unauthenticated(
        harness.channel(),
        &appended,
        "a webhook with bytes appended to its body",
    );

    let mut garbled = signed.clone();
    garbled.body = b"\xff\xfe not a provider payload".to_vec();
    assert_unauthenticated(
        harness.channel(),
        &garbled,
        "a webhook whose body was replaced",
    );
}

/// Checks that the same webhook parsed twice gives the same events, so that
/// the provider message id de-duplicates the replay in the store.
pub async fn webhook_replay_parses_same_ids(harness: &dyn ChannelHarness) {
    let request = harness.signed_webhook();
    let channel = harness.channel();

    let first = match channel.parse_webhook(&request) {
        Ok(events) => events,
        Err(error) => panic!("first parse failed: {error}"),
    };
    let second = match channel.parse_webhook(&request) {
        Ok(events) => events,
        Err(error) => panic!("second parse of the same webhook failed: {error}"),
    };

    assert_eq!(
        message_ids(&first),
        message_ids(&second),
        "a replayed webhook must give the same provider message ids"
    );
    assert!(
        !message_ids(&first).is_empty(),
        "the signed webhook must hold an inbound message"
    );
}

/// Checks that no secret shows in the channel's `Debug` or in the
/// `Display` and `Debug` of its errors.
pub async fn secrets_hidden_in_debug_and_errors(harness: &dyn ChannelHarness) {
    let secrets = nonempty_secrets(harness);
    let channel = harness.channel();
    assert_hidden(&format!("{channel:?}"), &secrets, "the channel's Debug");

    let mut errors: Vec<Error> = Vec::new();
    harness.mount_rate_limited(3).await;
    errors.extend(channel.send(&permit(harness, "key-errors-1")).await.err());
    harness.reset().await;
    harness.mount_server_error().await;
    errors.extend(channel.send(&permit(harness, "key-errors-2")).await.err());
    harness.reset().await;
    harness.mount_invalid_recipient().await;
    errors.extend(channel.send(&permit(harness, "key-errors-3")).await.err());
    errors.extend(channel.parse_webhook(&harness.unsigned_webhook()).err());
    let mut wrong = harness.signed_webhook();
    wrong.body.push(b' ');
    errors.extend(channel.parse_webhook(&wrong).err());

    assert!(
        errors.len() >= 5,
        "every failure case must return an error, got {}",
        errors.len()
    );
    for error in &errors {
        assert_hidden(&error.to_string(), &secrets, "an error's Display");
        assert_hidden(&format!("{error:?}"), &secrets, "an error's Debug");
    }
}

/// Checks that logs carry no secret at any level, and no recipient or
/// message text at `INFO` or above.
pub async fn logs_hide_secrets_and_contact_data(harness: &dyn ChannelHarness) {
    let secrets = nonempty_secrets(harness);
    let recipient = harness.recipient();
    let channel = harness.channel();
    let logs = CapturedLogs::new();

    let activity = async {
        harness.mount_success("logged-id").await;
        let _ = channel.send(&permit(harness, "key-logs-1")).await;
        harness.reset().await;
        harness.mount_rate_limited(2).await;
        let _ = channel.send(&permit(harness, "key-logs-2")).await;
        harness.reset().await;
        harness.mount_server_error().await;
        let _ = channel.send(&permit(harness, "key-logs-3")).await;
        harness.reset().await;
        harness.mount_invalid_recipient().await;
        let _ = channel.send(&permit(harness, "key-logs-4")).await;
        let _ = channel.parse_webhook(&harness.signed_webhook());
        let _ = channel.parse_webhook(&harness.unsigned_webhook());
    };
    logs.capture(activity).await;

    let records = logs.records();
    assert!(
        records
            .iter()
            .any(|record| record.target.starts_with("kalify::channel")),
        "the channel logged nothing under the target kalify::channel, so the capture checked nothing"
    );
    for record in &records {
        assert_hidden(&record.text, &secrets, "a log record");
        if record.level <= Level::INFO {
            let private = [
                recipient.key().to_owned(),
                SAMPLE_TEXT.to_owned(),
                "pouvons-nous".to_owned(),
            ];
            assert_hidden(&record.text, &private, "a log record at INFO or above");
        }
    }
}

/// Log records captured by [`CapturedLogs::capture`], with every field of
/// events and spans at every level.
#[derive(Clone, Debug, Default)]
pub struct CapturedLogs {
    records: Arc<Mutex<Vec<LogRecord>>>,
}

/// One captured event or span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// The level.
    pub level: Level,
    /// The target, such as `kalify::channel`.
    pub target: String,
    /// The message and every field, as `name=value` pairs.
    pub text: String,
}

impl CapturedLogs {
    /// Creates an empty capture.
    pub fn new() -> Self {
        CapturedLogs::default()
    }

    /// Runs `future` with a subscriber that records every event and span it
    /// emits while polled, and returns its output.
    pub async fn capture<F: Future>(&self, future: F) -> F::Output {
        future.with_subscriber(self.dispatch()).await
    }

    /// Runs `f` with a subscriber that records every event and span it emits.
    pub fn capture_sync<T>(&self, f: impl FnOnce() -> T) -> T {
        tracing::dispatcher::with_default(&self.dispatch(), f)
    }

    /// Returns the records so far, in order.
    pub fn records(&self) -> Vec<LogRecord> {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn dispatch(&self) -> Dispatch {
        Dispatch::new(CaptureSubscriber {
            logs: self.clone(),
            next_span: AtomicU64::new(1),
            span_levels: Mutex::default(),
        })
    }

    fn push(&self, level: Level, target: &str, text: String) {
        let record = LogRecord {
            level,
            target: target.to_owned(),
            text,
        };
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }
}

struct CaptureSubscriber {
    logs: CapturedLogs,
    next_span: AtomicU64,
    span_levels: Mutex<HashMap<u64, (Level, &'static str)>>,
}

impl Subscriber for CaptureSubscriber {
    fn register_callsite(&self, _metadata: &'static Metadata<'static>) -> Interest {
        Interest::always()
    }

    fn enabled(&self, _metadata: &Metadata<'_>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next_span.fetch_add(1, Ordering::Relaxed);
        let metadata = span.metadata();
        self.span_levels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, (*metadata.level(), metadata.target()));
        let mut text = format!("span {} ", metadata.name());
        span.record(&mut FieldWriter(&mut text));
        self.logs.push(*metadata.level(), metadata.target(), text);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let (level, target) = self
            .span_levels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&span.into_u64())
            .copied()
            .unwrap_or((Level::TRACE, "unknown"));
        let mut text = String::from("span record ");
        values.record(&mut FieldWriter(&mut text));
        self.logs.push(level, target, text);
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = String::new();
        event.record(&mut FieldWriter(&mut text));
        let metadata = event.metadata();
        self.logs.push(*metadata.level(), metadata.target(), text);
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

struct FieldWriter<'a>(&'a mut String);

impl Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, "{}={} ", field.name(), value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

fn sent(result: crate::Result<Receipt>, operation: &str) -> Receipt {
    match result {
        Ok(receipt) => receipt,
        Err(error) => panic!("{operation} failed: {error} ({error:?})"),
    }
}

fn failed<T: fmt::Debug>(result: crate::Result<T>, operation: &str) -> Error {
    match result {
        Ok(value) => panic!("{operation} succeeded with {value:?}, expected an error"),
        Err(error) => error,
    }
}

fn assert_unauthenticated(channel: &dyn Channel, request: &WebhookRequest, label: &str) {
    match channel.parse_webhook(request) {
        Ok(events) => panic!(
            "{label} was accepted and parsed into {} events; it must be Unauthenticated",
            events.len()
        ),
        Err(error) => assert_eq!(
            error.kind(),
            ErrorKind::Unauthenticated,
            "{label}: {error:?}"
        ),
    }
}

fn message_ids(events: &[InboundEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            InboundEvent::Message(message) => Some(message.provider_message_id.clone()),
            _ => None,
        })
        .collect()
}

fn nonempty_secrets(harness: &dyn ChannelHarness) -> Vec<String> {
    let secrets: Vec<String> = harness
        .secrets()
        .into_iter()
        .filter(|secret| !secret.is_empty())
        .collect();
    assert!(
        !secrets.is_empty(),
        "the harness must list the channel's credentials"
    );
    secrets
}

fn assert_hidden(text: &str, hidden: &[String], place: &str) {
    for value in hidden {
        assert!(
            !text.contains(value.as_str()),
            "{place} shows a value it must hide ({} characters): {text}",
            value.len()
        );
    }
}

/// Stamps out one test per case of the channel conformance suite.
///
/// `$provider` names the generated module, and `$factory` is a closure that
/// returns a future resolving to a new [`ChannelHarness`]. The macro calls
/// the factory once per case, so mounted responses do not leak between cases.
/// Paths in the factory are resolved inside the generated module, which
/// imports everything from the calling module. Each test runs on a runtime
/// built by [`block_on`](crate::testkit::block_on).
#[macro_export]
macro_rules! channel_conformance {
    ($provider:ident, $factory:expr $(,)?) => {
        mod $provider {
            #[allow(unused_imports)]
            use super::*;

            $crate::__channel_conformance_cases!(
                $factory;
                send_success_returns_receipt,
                send_repeated_key_returns_first_receipt,
                send_failure_is_not_remembered,
                send_rate_limited_is_retryable,
                send_server_error_is_retryable,
                send_invalid_recipient_is_permanent,
                send_opted_out_is_reported,
                find_sent_returns_earlier_receipt,
                find_sent_without_match_returns_none,
                find_sent_failure_is_retryable,
                webhook_signed_parses,
                webhook_unsigned_is_rejected,
                webhook_missing_signature_is_rejected,
                webhook_wrong_signature_is_rejected,
                webhook_tampered_body_is_rejected,
                webhook_replay_parses_same_ids,
                secrets_hidden_in_debug_and_errors,
                logs_hide_secrets_and_contact_data,
            );
        }
    };
}

/// Expands to one `#[test]` per case name, for [`channel_conformance!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __channel_conformance_cases {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testkit::block_on(async {
                    let factory = $factory;
                    let harness = factory().await;
                    $crate::testkit::channel_suite::$case(&harness).await;
                });
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when a public case of the suite is missing from the macro's list.
    #[test]
    fn macro_lists_every_case() {
        let suite = include_str!("channel_suite.rs");
        let cases: Vec<&str> = suite
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split('(').next())
            .collect();
        assert!(
            cases.len() >= 15,
            "expected the suite's cases, found {}",
            cases.len()
        );
        for case in cases {
            assert!(
                suite.contains(&format!("                {case},\n")),
                "channel_conformance! does not run case {case}"
            );
        }
    }

    #[test]
    fn captured_logs_record_fields_and_levels() {
        let logs = CapturedLogs::new();
        logs.capture_sync(|| {
            tracing::info!(target: "kalify::channel", provider = "test", count = 2, "sent");
            let span = tracing::debug_span!(target: "kalify::channel", "send", attempt = 1);
            let _entered = span.enter();
            tracing::warn!(target: "kalify::channel", "retrying");
        });
        let records = logs.records();
        assert_eq!(records.len(), 3, "{records:?}");
        assert_eq!(records[0].level, Level::INFO);
        assert_eq!(records[0].target, "kalify::channel");
        assert!(
            records[0].text.contains("provider=test"),
            "{:?}",
            records[0]
        );
        assert!(records[0].text.contains("count=2"), "{:?}", records[0]);
        assert!(records[1].text.contains("attempt=1"), "{:?}", records[1]);
        assert_eq!(records[2].level, Level::WARN);
    }

    #[test]
    fn captured_logs_follow_the_future() {
        let logs = CapturedLogs::new();
        crate::testkit::block_on(logs.capture(async {
            tokio::task::yield_now().await;
            tracing::error!(target: "kalify::channel", "after a yield");
        }));
        assert_eq!(logs.records().len(), 1);
    }
}

//! Facebook Messenger through the Messenger Platform.
//!
//! [`MessengerChannel`] sends text with the Send API,
//! `POST {base}/{version}/me/messages`, and reads the page's webhooks after
//! checking `X-Hub-Signature-256`. [`MessengerChannel::verify_subscription`]
//! handles the GET handshake Meta makes when the webhook is registered.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kalify_channels::messenger::{MessengerChannelBuilder, StoreLastInbound};
//! # use kalify_core::ports::Store;
//!
//! # fn example(store: Arc<dyn Store>) -> kalify_core::Result<()> {
//! let channel = MessengerChannelBuilder::new("page-access-token", "app-secret", "verify-token")
//!     .with_page_id("1895382890692545")
//!     .with_last_inbound_source(Arc::new(StoreLastInbound::new(store)))
//!     .build()?;
//! # let _ = channel; Ok(()) }
//! ```
//!
//! # The messaging window
//! Meta lets a page answer a person within 24 hours of the person's last
//! message or button tap (messaging type `RESPONSE`). After that, only a
//! person working for the page may answer, with the `HUMAN_AGENT` tag, up
//! to 7 days after it; the page never writes first. Before each send the
//! channel takes the later of two times of the person's last message: the
//! one it saw in its own webhooks, and the one its [`LastInboundSource`]
//! returns, if set. [`MessengerWindow::for_send`] then picks `RESPONSE`, the
//! `HUMAN_AGENT` tag for a message of a member
//! ([`Sender::Member`](kalify_core::conversation::Sender::Member)), or rejects the
//! send with a permanent `PermissionDenied` without calling Meta.
//!
//! # Webhook events
//! | Meta event | kalify event |
//! |---|---|
//! | `message` from a person | [`InboundEvent::Message`] (attachments only: empty text) |
//! | `message` with `is_echo`, or sent by the page | ignored |
//! | `postback` | [`InboundEvent::Postback`] |
//! | `delivery` | [`InboundEvent::Status`] per `mid`, and [`InboundEvent::Watermark`] |
//! | `read` | [`InboundEvent::Watermark`] with status `Read` |
//! | `standby` (another app owns the thread) | no event; messages update the window |
//! | anything else (`optin`, `referral`, reactions, thread control) | ignored, logged at debug |
//!
//! Standby events are not turned into messages: they arrive while another
//! app, such as the Page Inbox a person answers from, owns the
//! conversation, and the AI must not answer then.
//!
//! # Errors of a send
//! | Graph response | kind | retry |
//! |---|---|---|
//! | `message_id` | a [`Receipt`] | |
//! | code 190 | `Unauthenticated` | permanent |
//! | code 10, subcode 2018278 (outside the window) | `PermissionDenied`, context `reason=messenger_window_closed` | permanent |
//! | code 551, or subcode 1545041 (person unavailable) | `RecipientOptedOut` | permanent |
//! | code 100, subcode 2018001 (no matching user) | `InvalidInput`, context `contact_point=invalid` | permanent |
//! | codes 4, 17, 32, 613 | `RateLimited`, with `Retry-After` or `X-Business-Use-Case-Usage` | temporary |
//! | codes 1, 2, 1200, 5xx | `Unavailable` | temporary |
//!
//! # Limitations
//! - Only text is sent; attachments, templates and quick replies are not.
//! - Repeated idempotency keys are caught in memory only: the Send API has
//!   no idempotency key, and the channel cannot look up a message it sent,
//!   so an entry whose worker stopped mid-send may be sent again by another.
//! - The window times the channel sees in webhooks are kept in memory; after
//!   a restart, set a [`LastInboundSource`] such as [`StoreLastInbound`], or
//!   every send is rejected until the person writes again.
//! - The `HUMAN_AGENT` tag needs Meta's Human Agent permission for the app;
//!   without it Meta rejects such sends with a permission error.

mod error;
mod signature;
mod wire;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kalify_core::contact::{ChannelKind, ContactPoint, MessengerPsid};
use kalify_core::conversation::Direction;
use kalify_core::gate::SendPermit;
pub use kalify_core::ports::MessengerWindow;
use kalify_core::ports::{
    Channel, ChannelCapabilities, Clock, InboundEvent, OutboxEntry, Receipt, Store, SystemClock,
    WebhookRequest,
};
use kalify_core::{Error, ErrorKind, Result, Retry, Secret, Timestamp};
use serde::Deserialize;

use self::error::{ADAPTER, ErrorEnvelope, business_use_case_delay, send_error};
pub use self::signature::{compute_signature, verify_signature, verify_subscription};
use self::wire::{PROVIDER, SendAnswer};
use crate::http::{
    self, Claim, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LEDGER_CAPACITY, DEFAULT_MAX_WEBHOOK_BYTES,
    DEFAULT_REQUEST_TIMEOUT, HttpClient, SendLedger,
};

/// Meta's production Graph API. Tests point [`MessengerConfig::base_url`]
/// at a local mock server instead.
pub const DEFAULT_BASE_URL: &str = "https://graph.facebook.com";

/// The Graph API version used unless configured.
///
/// NOTE: Meta retires old Graph API versions, and this default was not
/// checked against a live API; set `graph_api_version` to the version the
/// app is on rather than relying on it.
pub const DEFAULT_GRAPH_API_VERSION: &str = "v23.0";

/// The header that carries the webhook signature, lower-cased.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The maximum text length the Send API accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// Above this many remembered people, times older than the 7-day window are dropped.
const INBOUND_TIMES_PRUNE_AT: usize = 100_000;

/// Settings of [`MessengerChannel`]. `Debug` shows the tokens and secret as
/// `[redacted]`; there is no `Serialize`, so they are never written out.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MessengerConfig {
    /// The page access token, with the `pages_messaging` permission.
    #[serde(deserialize_with = "crate::http::deserialize_secret")]
    pub page_access_token: Secret,
    /// The app secret: it signs webhooks and the `appsecret_proof` of each send.
    #[serde(deserialize_with = "crate::http::deserialize_secret")]
    pub app_secret: Secret,
    /// The token Meta's subscription handshake must present.
    #[serde(deserialize_with = "crate::http::deserialize_secret")]
    pub verify_token: Secret,
    /// The page's id; when set, webhook entries of other pages are skipped.
    pub page_id: Option<String>,
    /// The Graph API version, such as `v23.0`.
    pub graph_api_version: String,
    /// The Graph API's base URL, without a trailing slash.
    pub base_url: String,
    /// The time allowed for one request, in seconds.
    pub request_timeout_secs: u64,
    /// The time allowed to connect, in seconds.
    pub connect_timeout_secs: u64,
    /// Make failures after the request left (timeouts, lost connections)
    /// retryable, accepting that a retry may send the message twice.
    pub retry_unknown_outcome: bool,
    /// The largest webhook body accepted, in bytes.
    pub max_webhook_bytes: usize,
    /// How many idempotency keys the channel remembers.
    pub remembered_keys: usize,
}

impl Default for MessengerConfig {
    fn default() -> Self {
        MessengerConfig {
            page_access_token: Secret::new(""),
            app_secret: Secret::new(""),
            verify_token: Secret::new(""),
            page_id: None,
            graph_api_version: DEFAULT_GRAPH_API_VERSION.to_owned(),
            base_url: DEFAULT_BASE_URL.to_owned(),
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT.as_secs(),
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT.as_secs(),
            retry_unknown_outcome: false,
            max_webhook_bytes: DEFAULT_MAX_WEBHOOK_BYTES,
            remembered_keys: DEFAULT_LEDGER_CAPACITY,
        }
    }
}

/// Returns when a person last wrote to the page, from a record the channel
/// does not keep itself, such as the store.
#[async_trait]
pub trait LastInboundSource: Send + Sync + fmt::Debug + 'static {
    /// Returns the time of the latest Messenger message or button tap from
    /// the recipient of `entry`, or `None` when there is none.
    ///
    /// # Errors
    /// Whatever the record returns; the send fails with that error.
    async fn last_inbound_at(&self, entry: &OutboxEntry) -> Result<Option<Timestamp>>;
}

/// Reads the recipient's last Messenger message from the store: the latest
/// inbound Messenger message of any conversation of the prospect.
#[derive(Clone, Debug)]
pub struct StoreLastInbound {
    store: Arc<dyn Store>,
}

impl StoreLastInbound {
    /// Reads from `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreLastInbound { store }
    }
}

#[async_trait]
impl LastInboundSource for StoreLastInbound {
    async fn last_inbound_at(&self, entry: &OutboxEntry) -> Result<Option<Timestamp>> {
        let mut latest: Option<Timestamp> = None;
        for conversation in self
            .store
            .conversations_of(entry.org_id, entry.prospect_id)
            .await?
        {
            // A conversation the prospect never wrote to has no inbound message to read.
            if conversation.last_inbound_at.is_none() {
                continue;
            }
            let messages = self
                .store
                .list_messages(entry.org_id, conversation.id)
                .await?;
            let newest = messages
                .iter()
                .filter(|message| {
                    message.direction == Direction::Inbound
                        && message.channel == ChannelKind::Messenger
                })
                .map(|message| message.at)
                .max();
            latest = latest.max(newest);
        }
        Ok(latest)
    }
}

/// Builds a [`MessengerChannel`] and checks its settings.
#[derive(Debug)]
pub struct MessengerChannelBuilder {
    config: MessengerConfig,
    clock: Arc<dyn Clock>,
    last_inbound_source: Option<Arc<dyn LastInboundSource>>,
}

impl MessengerChannelBuilder {
    /// Starts from the page access token, app secret and verify token.
    pub fn new(
        page_access_token: impl Into<Secret>,
        app_secret: impl Into<Secret>,
        verify_token: impl Into<Secret>,
    ) -> Self {
        MessengerChannelBuilder::from_config(MessengerConfig {
            page_access_token: page_access_token.into(),
            app_secret: app_secret.into(),
            verify_token: verify_token.into(),
            ..MessengerConfig::default()
        })
    }

    /// Starts from a complete configuration.
    pub fn from_config(config: MessengerConfig) -> Self {
        MessengerChannelBuilder {
            config,
            clock: Arc::new(SystemClock),
            last_inbound_source: None,
        }
    }

    /// Reads `MESSENGER_PAGE_ACCESS_TOKEN`, `MESSENGER_APP_SECRET` and
    /// `MESSENGER_VERIFY_TOKEN` (required), and `MESSENGER_PAGE_ID` and
    /// `MESSENGER_GRAPH_API_VERSION` (optional) from the environment.
    ///
    /// # Errors
    /// `ConfigInvalid` naming the first required variable that is missing.
    pub fn from_env() -> Result<Self> {
        let required = |name: &'static str| {
            std::env::var(name).map_err(|_| {
                Error::new(
                    ErrorKind::ConfigInvalid,
                    format!("environment variable {name} is not set"),
                )
                .with_adapter(ADAPTER)
                .with_context("variable", name)
            })
        };
        let optional = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        let mut builder = MessengerChannelBuilder::new(
            required("MESSENGER_PAGE_ACCESS_TOKEN")?,
            required("MESSENGER_APP_SECRET")?,
            required("MESSENGER_VERIFY_TOKEN")?,
        );
        builder.config.page_id = optional("MESSENGER_PAGE_ID");
        if let Some(version) = optional("MESSENGER_GRAPH_API_VERSION") {
            builder.config.graph_api_version = version;
        }
        Ok(builder)
    }

    /// Sets the page's id, so that entries of other pages are skipped.
    pub fn with_page_id(mut self, page_id: impl Into<String>) -> Self {
        self.config.page_id = Some(page_id.into());
        self
    }

    /// Sets the Graph API version, such as `v23.0`.
    pub fn with_graph_api_version(mut self, version: impl Into<String>) -> Self {
        self.config.graph_api_version = version.into();
        self
    }

    /// Points the channel at another base URL, such as a local mock server.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.config.base_url = url.into();
        self
    }

    /// Sets the time allowed for one request (rounded down to whole seconds, at least 1).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout_secs = timeout.as_secs().max(1);
        self
    }

    /// Sets the time allowed to connect (rounded down to whole seconds, at least 1).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout_secs = timeout.as_secs().max(1);
        self
    }

    /// Makes failures after the request left retryable, accepting possible duplicates.
    pub fn with_retry_unknown_outcome(mut self, retry: bool) -> Self {
        self.config.retry_unknown_outcome = retry;
        self
    }

    /// Sets the largest webhook body accepted, in bytes.
    pub fn with_max_webhook_bytes(mut self, limit: usize) -> Self {
        self.config.max_webhook_bytes = limit;
        self
    }

    /// Sets how many idempotency keys the channel remembers.
    pub fn with_remembered_keys(mut self, count: usize) -> Self {
        self.config.remembered_keys = count;
        self
    }

    /// Sets the clock that decides the messaging window and stamps events without a time.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets where the channel reads the recipient's last message before a send,
    /// in addition to the webhooks it parsed itself.
    pub fn with_last_inbound_source(mut self, source: Arc<dyn LastInboundSource>) -> Self {
        self.last_inbound_source = Some(source);
        self
    }

    /// Checks the settings and builds the channel.
    ///
    /// # Errors
    /// `ConfigInvalid`, naming the setting, when a token or secret is empty,
    /// or the page id, Graph API version, base URL or timeouts are malformed.
    pub fn build(self) -> Result<MessengerChannel> {
        let config = self.config;
        let invalid = |field: &'static str, reason: &str| {
            Error::new(
                ErrorKind::ConfigInvalid,
                format!("invalid Messenger {field}: {reason}"),
            )
            .with_adapter(ADAPTER)
            .with_context("field", field)
        };
        for (field, secret) in [
            ("page_access_token", &config.page_access_token),
            ("app_secret", &config.app_secret),
            ("verify_token", &config.verify_token),
        ] {
            if secret.expose().trim().is_empty() {
                return Err(invalid(field, "it is empty"));
            }
        }
        let page_id = config
            .page_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        if let Some(id) = &page_id
            && !id.bytes().all(|byte| byte.is_ascii_digit())
        {
            return Err(invalid("page_id", "expected the digits of the page id"));
        }
        let version = config.graph_api_version.trim().to_owned();
        if !is_graph_version(&version) {
            return Err(invalid(
                "graph_api_version",
                "expected a version such as v23.0",
            ));
        }
        if config.request_timeout_secs == 0 || config.connect_timeout_secs == 0 {
            return Err(invalid("timeout", "timeouts must be at least one second"));
        }

        let base_url = http::check_base_url(&config.base_url, "base_url", ADAPTER)?;
        let http = HttpClient::new(
            ADAPTER,
            Duration::from_secs(config.request_timeout_secs),
            Duration::from_secs(config.connect_timeout_secs),
            config.retry_unknown_outcome,
        )?;
        let appsecret_proof = Secret::new(http::hex_encode(&hmac_sha256(
            config.app_secret.expose(),
            config.page_access_token.expose(),
        )));

        Ok(MessengerChannel {
            http,
            send_url: format!("{base_url}/{version}/me/messages"),
            page_access_token: config.page_access_token,
            appsecret_proof,
            app_secret: config.app_secret,
            verify_token: config.verify_token,
            page_id,
            max_webhook_bytes: config.max_webhook_bytes,
            ledger: SendLedger::new(config.remembered_keys),
            inbound_times: Mutex::default(),
            last_inbound_source: self.last_inbound_source,
            clock: self.clock,
        })
    }
}

/// Sends Messenger text messages and reads the page's webhooks. See the
/// [module documentation](self).
pub struct MessengerChannel {
    http: HttpClient,
    send_url: String,
    page_access_token: Secret,
    appsecret_proof: Secret,
    app_secret: Secret,
    verify_token: Secret,
    page_id: Option<String>,
    max_webhook_bytes: usize,
    ledger: SendLedger,
    inbound_times: Mutex<HashMap<MessengerPsid, Timestamp>>,
    last_inbound_source: Option<Arc<dyn LastInboundSource>>,
    clock: Arc<dyn Clock>,
}

impl MessengerChannel {
    /// Starts a builder from the page access token, app secret and verify token.
    pub fn builder(
        page_access_token: impl Into<Secret>,
        app_secret: impl Into<Secret>,
        verify_token: impl Into<Secret>,
    ) -> MessengerChannelBuilder {
        MessengerChannelBuilder::new(page_access_token, app_secret, verify_token)
    }

    /// Checks Meta's GET subscription handshake in `request` and returns
    /// `hub.challenge`, to send back as a `text/plain` 200 body.
    ///
    /// # Errors
    /// As [`verify_subscription`]: `Unauthenticated` for a wrong verify
    /// token (respond 403), `InvalidInput` otherwise (respond 400).
    pub fn verify_subscription(&self, request: &WebhookRequest) -> Result<String> {
        verify_subscription(self.verify_token.expose(), &http::query_pairs(&request.url))
    }

    /// Records that `psid` wrote to the page at `at`, as a webhook would; a
    /// later time replaces an earlier one, never the reverse.
    pub fn record_inbound(&self, psid: &MessengerPsid, at: Timestamp) {
        let mut times = self
            .inbound_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let slot = times.entry(psid.clone()).or_insert(at);
        if *slot < at {
            *slot = at;
        }
        if times.len() > INBOUND_TIMES_PRUNE_AT {
            let horizon = at - MessengerWindow::HUMAN_AGENT;
            times.retain(|_, last| *last >= horizon);
        }
    }

    /// Returns the time `psid` last wrote to the page, as far as this channel saw.
    pub fn last_inbound_at(&self, psid: &MessengerPsid) -> Option<Timestamp> {
        self.inbound_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(psid)
            .copied()
    }

    async fn window_for(
        &self,
        entry: &OutboxEntry,
        psid: &MessengerPsid,
    ) -> Result<MessengerWindow> {
        let mut last = self.last_inbound_at(psid);
        if let Some(source) = &self.last_inbound_source {
            let stored = source.last_inbound_at(entry).await?;
            last = last.max(stored);
        }
        MessengerWindow::for_send(last, entry.sender, self.clock.now())
    }

    fn check_entry<'a>(&self, permit: &'a SendPermit) -> Result<&'a MessengerPsid> {
        let entry = permit.entry();
        let rejected = |kind: ErrorKind, message: String| {
            Error::new(kind, message)
                .with_adapter(ADAPTER)
                .with_operation("send")
                .with_context("outbox_id", entry.id)
        };
        let ContactPoint::Messenger(psid) = &entry.to else {
            return Err(rejected(
                ErrorKind::InvalidInput,
                format!(
                    "the Messenger channel cannot send to a {} contact point",
                    entry.to.channel()
                ),
            ));
        };
        if entry.text.trim().is_empty() {
            return Err(rejected(
                ErrorKind::InvalidInput,
                "the text is empty".into(),
            ));
        }
        let chars = entry.text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(rejected(
                ErrorKind::ContentRejected,
                format!(
                    "the text has {chars} characters; the Send API accepts at most {MAX_TEXT_CHARS}"
                ),
            ));
        }
        Ok(psid)
    }
}

#[async_trait]
impl Channel for MessengerChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Messenger
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities::new()
            .with_webhooks(true)
            .with_delivery_reports(true)
            .with_read_reports(true)
            .with_dedupes_sends(true)
            .with_max_text_chars(Some(MAX_TEXT_CHARS))
            .with_reply_window(true)
    }

    /// Sends the permitted text within the messaging window.
    ///
    /// # Behavior
    /// - A key sent before by this channel returns its first receipt without a request.
    /// - The window is checked before any request; see the module's `# The messaging window`.
    /// - The request is form-encoded as the Send API documents it, with the
    ///   access token and `appsecret_proof` in the body, so that they never
    ///   appear in a URL.
    ///
    /// # Errors
    /// `PermissionDenied` when the window is closed, and the module's
    /// `# Errors of a send` for Meta's responses.
    async fn send(&self, permit: &SendPermit) -> Result<Receipt> {
        let entry = permit.entry();
        let psid = self.check_entry(permit)?;
        let guard = match self.ledger.claim(&entry.idempotency_key) {
            Claim::Done(receipt) => {
                tracing::debug!(
                    target: "kalify::channel",
                    adapter = ADAPTER,
                    outbox_id = %entry.id,
                    provider_message_id = %receipt.provider_message_id,
                    "idempotency key already sent; returning the first receipt"
                );
                return Ok(receipt);
            }
            Claim::InFlight => {
                return Err(http::in_flight_error(ADAPTER).with_context("outbox_id", entry.id));
            }
            Claim::Claimed(guard) => guard,
        };

        let with_ids = |error: Error| {
            error
                .with_adapter(ADAPTER)
                .with_operation("send")
                .with_context("outbox_id", entry.id)
        };
        let window = self.window_for(entry, psid).await.map_err(with_ids)?;
        tracing::debug!(
            target: "kalify::channel",
            adapter = ADAPTER,
            operation = "send",
            outbox_id = %entry.id,
            conversation_id = %entry.conversation_id,
            window = ?window,
            "sending Messenger message"
        );

        let recipient = serde_json::json!({ "id": psid.as_str() }).to_string();
        let message = serde_json::json!({ "text": entry.text }).to_string();
        let mut form: Vec<(&str, &str)> = vec![("recipient", &recipient), ("message", &message)];
        match window {
            MessengerWindow::Standard => form.push(("messaging_type", "RESPONSE")),
            MessengerWindow::HumanAgent => {
                form.push(("messaging_type", "MESSAGE_TAG"));
                form.push(("tag", "HUMAN_AGENT"));
            }
        }
        form.push(("access_token", self.page_access_token.expose()));
        form.push(("appsecret_proof", self.appsecret_proof.expose()));

        let request = self.http.client().post(&self.send_url).form(&form);
        let response = self
            .http
            .execute(request, "send")
            .await
            .map_err(|error| error.with_context("outbox_id", entry.id))?;

        if !(200..300).contains(&response.status) {
            let graph = serde_json::from_slice::<ErrorEnvelope>(&response.body)
                .ok()
                .and_then(|envelope| envelope.error);
            let delay = http::retry_after(&response.headers, self.clock.now())
                .or_else(|| business_use_case_delay(&response.headers));
            let error = send_error(response.status, graph.as_ref(), delay)
                .with_context("outbox_id", entry.id);
            tracing::debug!(
                target: "kalify::channel",
                adapter = ADAPTER,
                outbox_id = %entry.id,
                status = response.status,
                graph_code = graph.as_ref().and_then(|graph| graph.code),
                graph_subcode = graph.as_ref().and_then(|graph| graph.error_subcode),
                kind = %error.kind(),
                "Meta rejected the message"
            );
            return Err(error);
        }

        let message_id = serde_json::from_slice::<SendAnswer>(&response.body)
            .ok()
            .and_then(|answer| answer.message_id)
            .filter(|id| !id.is_empty());
        let Some(message_id) = message_id else {
            tracing::error!(
                target: "kalify::channel",
                adapter = ADAPTER,
                outbox_id = %entry.id,
                status = response.status,
                "Meta accepted the request but its response has no message_id"
            );
            return Err(Error::new(
                ErrorKind::Unexpected,
                "Meta accepted the request but its response has no message_id",
            )
            .with_adapter(ADAPTER)
            .with_operation("send")
            .with_context("outbox_id", entry.id)
            .with_unknown_outcome()
            .with_retry(Retry::Permanent));
        };

        let receipt = Receipt {
            provider: PROVIDER.to_owned(),
            provider_message_id: message_id,
        };
        guard.complete(&receipt);
        tracing::debug!(
            target: "kalify::channel",
            adapter = ADAPTER,
            outbox_id = %entry.id,
            provider_message_id = %receipt.provider_message_id,
            "Meta accepted the message"
        );
        Ok(receipt)
    }

    /// Verifies `X-Hub-Signature-256` over the raw body, then reads the
    /// events; see the module's `# Webhook events`.
    ///
    /// # Errors
    /// `Unauthenticated` for a missing or wrong signature, before the body
    /// is read; `InvalidInput` for a GET (use
    /// [`MessengerChannel::verify_subscription`]), a body over the size
    /// limit, or a signed body that is not a JSON object with an `object`
    /// string and an `entry` array.
    fn parse_webhook(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>> {
        if request.method.eq_ignore_ascii_case("GET") {
            return Err(Error::invalid_input(
                "a GET webhook is the subscription handshake; handle it with MessengerChannel::verify_subscription",
            )
            .with_adapter(ADAPTER)
            .with_operation("parse_webhook"));
        }
        http::check_webhook_size(&request.body, self.max_webhook_bytes, ADAPTER)?;
        let signature = http::header(&request.headers, SIGNATURE_HEADER).ok_or_else(|| {
            http::unauthenticated(ADAPTER, "the X-Hub-Signature-256 header is missing")
        })?;
        if !verify_signature(self.app_secret.expose(), signature, &request.body) {
            return Err(http::unauthenticated(
                ADAPTER,
                "the X-Hub-Signature-256 does not match the body",
            ));
        }

        let parsed = wire::parse(&request.body, self.page_id.as_deref(), self.clock.now())
            .map_err(|reason| {
                Error::invalid_input(reason)
                    .with_adapter(ADAPTER)
                    .with_operation("parse_webhook")
            })?;
        for (psid, at) in &parsed.inbound_times {
            self.record_inbound(psid, *at);
        }
        tracing::debug!(
            target: "kalify::channel",
            adapter = ADAPTER,
            events = parsed.events.len(),
            inbound = parsed.inbound_times.len(),
            "webhook parsed"
        );
        Ok(parsed.events)
    }
}

impl fmt::Debug for MessengerChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessengerChannel")
            .field("page_access_token", &self.page_access_token)
            .field("app_secret", &self.app_secret)
            .field("verify_token", &self.verify_token)
            .field("send_url", &self.send_url)
            .field("page_id", &self.page_id)
            .field("last_inbound_source", &self.last_inbound_source)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for MessengerChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.page_id {
            Some(page) => write!(f, "MessengerChannel(page={page})"),
            None => f.write_str("MessengerChannel"),
        }
    }
}

fn hmac_sha256(key: &str, data: &str) -> Vec<u8> {
    use hmac::{Hmac, KeyInit, Mac};
    let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key.as_bytes()) else {
        return Vec::new();
    };
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// True for `v` followed by digits, a dot and digits.
fn is_graph_version(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    !major.is_empty()
        && !minor.is_empty()
        && major.bytes().all(|b| b.is_ascii_digit())
        && minor.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context<'a>(error: &'a kalify_core::Error, key: &str) -> Option<&'a str> {
        error
            .context()
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn config_debug_redacts_secrets() {
        let config = MessengerConfig {
            page_access_token: Secret::new("EAAG-page-token"),
            app_secret: Secret::new("app-secret-value"),
            verify_token: Secret::new("verify-token-value"),
            ..MessengerConfig::default()
        };
        let debug = format!("{config:?}");
        for secret in ["EAAG-page-token", "app-secret-value", "verify-token-value"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn channel_debug_redacts_secrets_and_proof() {
        let channel = MessengerChannelBuilder::new(
            "EAAG-page-token",
            "app-secret-value",
            "verify-token-value",
        )
        .build()
        .unwrap();
        let debug = format!("{channel:?}");
        let proof = channel.appsecret_proof.expose().to_owned();
        for secret in [
            "EAAG-page-token",
            "app-secret-value",
            "verify-token-value",
            proof.as_str(),
        ] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn build_rejects_bad_settings() {
        let base = || MessengerChannelBuilder::new("token", "secret", "verify");
        let cases: Vec<(MessengerChannelBuilder, &str)> = vec![
            (
                MessengerChannelBuilder::new("", "secret", "verify"),
                "page_access_token",
            ),
            (
                MessengerChannelBuilder::new("token", " ", "verify"),
                "app_secret",
            ),
            (
                MessengerChannelBuilder::new("token", "secret", ""),
                "verify_token",
            ),
            (base().with_page_id("page-1"), "page_id"),
            (base().with_graph_api_version("23.0"), "graph_api_version"),
            (base().with_graph_api_version("v23"), "graph_api_version"),
            (base().with_base_url("http://graph.example.com"), "base_url"),
        ];
        for (builder, field) in cases {
            let error = builder.build().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{field}: {error}");
            assert_eq!(context(&error, "field"), Some(field), "{field}: {error}");
        }
    }

    #[test]
    fn record_inbound_keeps_latest() {
        let channel = MessengerChannelBuilder::new("token", "secret", "verify")
            .build()
            .unwrap();
        let psid = MessengerPsid::parse("123").unwrap();
        let early = chrono::DateTime::from_timestamp(1_000, 0).unwrap();
        let late = chrono::DateTime::from_timestamp(2_000, 0).unwrap();
        channel.record_inbound(&psid, late);
        channel.record_inbound(&psid, early);
        assert_eq!(channel.last_inbound_at(&psid), Some(late));
    }

    #[test]
    fn appsecret_proof_is_hmac_of_token() {
        // The expected value is HMAC-SHA256 with key "secret" over "token",
        // computed with Python's hmac module.
        let channel = MessengerChannelBuilder::new("token", "secret", "verify")
            .build()
            .unwrap();
        assert_eq!(
            channel.appsecret_proof.expose(),
            "e941110e3d2bfe82621f0e3e1434730d7305d106c5f68c87165d0b27a4611a4a"
        );
    }

    #[test]
    fn graph_versions() {
        assert!(is_graph_version("v23.0"));
        assert!(is_graph_version("v2.6"));
        assert!(!is_graph_version("v23"));
        assert!(!is_graph_version("23.0"));
        assert!(!is_graph_version("va.b"));
    }
}

//! SMS through Twilio Programmable Messaging.
//!
//! [`TwilioSmsChannel`] sends with `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`
//! (form-encoded, HTTP basic authentication with the account SID and auth
//! token) and reads Twilio's webhooks: inbound messages and status
//! callbacks, after checking `X-Twilio-Signature`.
//!
//! ```no_run
//! use std::time::Duration;
//! use kalify_channels::twilio::TwilioSmsChannelBuilder;
//!
//! # fn example() -> kalify_core::Result<()> {
//! let channel = TwilioSmsChannelBuilder::new("AC0123456789abcdef0123456789abcdef", "auth-token")
//!     .with_from("+33757000000")
//!     .with_status_callback("https://hooks.example.com/twilio/status")
//!     .with_validity_period(Duration::from_secs(3600))
//!     .build()?;
//! # let _ = channel; Ok(()) }
//! ```
//!
//! # Errors of a send
//! | Twilio response | kind | retry |
//! |---|---|---|
//! | 2xx with a `sid` | a [`Receipt`] | |
//! | code 21610 (recipient unsubscribed) | `RecipientOptedOut` | permanent |
//! | codes 21211, 21614 (invalid or non-mobile number) | `InvalidInput`, context `contact_point=invalid` | permanent |
//! | 429, codes 20429 and 14107 | `RateLimited`, with `Retry-After` | temporary |
//! | 5xx | `Unavailable`, with `Retry-After` | temporary |
//! | 401, 403, code 20003 | `Unauthenticated` | permanent |
//! | other 4xx | by code or status, such as `InvalidInput` | permanent |
//! | no response in time, connection lost after sending | `Timeout` or `Unavailable`, context `outcome=unknown` | permanent unless `retry_unknown_outcome`; the engine retries it after a lookup |
//!
//! # Idempotency
//! Twilio's Messages API documents no idempotency key, so two identical
//! requests send two SMS. `I-Twilio-Idempotency-Token` is the header Twilio
//! sets on the webhooks it sends, so that receivers can spot its retries.
//! NOTE: whether the REST API honours that header on requests is not
//! documented, so this adapter does not send it and does not rely on it.
//!
//! Instead the channel remembers, in memory, the receipt of each
//! idempotency key it sent (the latest 10,000 by default) and returns it for
//! a repeated key without calling Twilio. A key whose send is in progress
//! fails with a retryable `Unavailable`.
//!
//! Across processes, the channel finds an earlier send in Twilio's message
//! list ([`Channel::find_sent`]). The engine calls it before sending an
//! entry whose earlier attempt may have been accepted, because its worker
//! stopped mid-send or its response was lost. A listed message matches
//! when the REST API created it to the same number, from the same sender
//! or Messaging Service, with the same text. Smart Encoding's replacements
//! of quotes, dashes, the ellipsis and special spaces are ignored, and the
//! message must be no older than 10 minutes before the entry's first attempt.
//!
//! # Limitations
//! - The memory of sent keys is per process and lost on restart, so a
//!   repeat from another process relies on the lookup.
//! - A failure after the request left (a timeout) is permanent. The engine
//!   still retries it, after a lookup. For other callers, set
//!   `retry_unknown_outcome` to make it retryable, accepting a possible
//!   duplicate.
//! - The lookup takes a second identical text to the same number within
//!   that span for the first, and does not find a message Twilio has not
//!   listed yet.
//! - Inbound media (MMS) are not read: a message with media and no text
//!   arrives with empty text.
//! - An inbound message from a short code or an alphanumeric sender is
//!   ignored, because it cannot be a prospect's phone number.

mod error;
mod signature;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kalify_core::contact::{ChannelKind, ContactPoint, PhoneNumber};
use kalify_core::gate::SendPermit;
use kalify_core::ports::{
    Channel, ChannelCapabilities, Clock, InboundEvent, Receipt, SystemClock, WebhookRequest,
};
use kalify_core::{Error, ErrorKind, Result, Retry, Secret};
use serde::Deserialize;

use self::error::{ADAPTER, send_error};
pub use self::signature::{compute_signature, validate_request, validate_request_with_body};
use self::wire::{ErrorBody, MessageBody, MessagePage, PROVIDER, SentQuery};
use crate::http::{
    self, Claim, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LEDGER_CAPACITY, DEFAULT_MAX_WEBHOOK_BYTES,
    DEFAULT_REQUEST_TIMEOUT, HttpClient, SendLedger,
};

/// Twilio's production API. Tests point [`TwilioConfig::base_url`] at a
/// local mock server instead.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// The header that carries the webhook signature, lower-cased.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// The maximum text length Twilio accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 1600;

/// The page size of a lookup in the message list, Twilio's maximum.
const LOOKUP_PAGE_SIZE: u32 = 1000;

/// The maximum number of message-list pages one lookup reads.
const LOOKUP_MAX_PAGES: usize = 4;

/// How much earlier than the entry's first attempt a matching message may
/// have been created, for a difference between this host's clock and Twilio's.
const LOOKUP_CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The maximum validity period Twilio accepts (10 hours), per its error 90007.
pub const MAX_VALIDITY_PERIOD: Duration = Duration::from_secs(36_000);

/// Settings of [`TwilioSmsChannel`]. `Debug` shows the auth token as
/// `[redacted]`; there is no `Serialize`, so the token is never written out.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TwilioConfig {
    /// The account SID, `AC` and 32 hexadecimal digits.
    pub account_sid: String,
    /// The account's auth token; it also signs webhooks.
    #[serde(deserialize_with = "crate::http::deserialize_secret")]
    pub auth_token: Secret,
    /// The sender: an E.164 Twilio number, a short code, or an alphanumeric
    /// sender ID. Required unless `messaging_service_sid` is set.
    pub from: Option<String>,
    /// A Messaging Service (`MG` and 32 hexadecimal digits) that picks the
    /// sender; Twilio uses it over `from` when both are set.
    pub messaging_service_sid: Option<String>,
    /// The URL Twilio calls with status callbacks of each message sent.
    pub status_callback: Option<String>,
    /// The time, in seconds, Twilio may queue a message before failing it
    /// (1 to 36,000). Twilio's default applies when unset.
    pub validity_period_secs: Option<u64>,
    /// The API's base URL, without a trailing slash.
    pub base_url: String,
    /// The time allowed for one request, in seconds.
    pub request_timeout_secs: u64,
    /// The time allowed to connect, in seconds.
    pub connect_timeout_secs: u64,
    /// Make failures after the request left (timeouts, lost connections)
    /// retryable, accepting that a retry may send the SMS twice.
    pub retry_unknown_outcome: bool,
    /// The largest webhook body accepted, in bytes.
    pub max_webhook_bytes: usize,
    /// How many idempotency keys the channel remembers.
    pub remembered_keys: usize,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        TwilioConfig {
            account_sid: String::new(),
            auth_token: Secret::new(""),
            from: None,
            messaging_service_sid: None,
            status_callback: None,
            validity_period_secs: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT.as_secs(),
            connect_timeout_secs: DEFAULT_CONNECT_TIMEOUT.as_secs(),
            retry_unknown_outcome: false,
            max_webhook_bytes: DEFAULT_MAX_WEBHOOK_BYTES,
            remembered_keys: DEFAULT_LEDGER_CAPACITY,
        }
    }
}

/// Builds a [`TwilioSmsChannel`] and checks its settings.
#[derive(Debug)]
pub struct TwilioSmsChannelBuilder {
    config: TwilioConfig,
    clock: Arc<dyn Clock>,
}

impl TwilioSmsChannelBuilder {
    /// Starts from the account SID and auth token, with the other settings at their defaults.
    pub fn new(account_sid: impl Into<String>, auth_token: impl Into<Secret>) -> Self {
        let config = TwilioConfig {
            account_sid: account_sid.into(),
            auth_token: auth_token.into(),
            ..TwilioConfig::default()
        };
        TwilioSmsChannelBuilder::from_config(config)
    }

    /// Starts from a complete configuration.
    pub fn from_config(config: TwilioConfig) -> Self {
        TwilioSmsChannelBuilder {
            config,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads `TWILIO_ACCOUNT_SID` and `TWILIO_AUTH_TOKEN` (required), and
    /// `TWILIO_FROM`, `TWILIO_MESSAGING_SERVICE_SID` and
    /// `TWILIO_STATUS_CALLBACK` (optional) from the environment.
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
        let mut builder = TwilioSmsChannelBuilder::new(
            required("TWILIO_ACCOUNT_SID")?,
            required("TWILIO_AUTH_TOKEN")?,
        );
        builder.config.from = optional("TWILIO_FROM");
        builder.config.messaging_service_sid = optional("TWILIO_MESSAGING_SERVICE_SID");
        builder.config.status_callback = optional("TWILIO_STATUS_CALLBACK");
        Ok(builder)
    }

    /// Sets the sender number, short code or alphanumeric sender ID.
    pub fn with_from(mut self, from: impl Into<String>) -> Self {
        self.config.from = Some(from.into());
        self
    }

    /// Sets the Messaging Service that picks the sender.
    pub fn with_messaging_service_sid(mut self, sid: impl Into<String>) -> Self {
        self.config.messaging_service_sid = Some(sid.into());
        self
    }

    /// Sets the URL Twilio calls with status callbacks.
    pub fn with_status_callback(mut self, url: impl Into<String>) -> Self {
        self.config.status_callback = Some(url.into());
        self
    }

    /// Sets how long Twilio may queue a message, whole seconds from 1 to 36,000.
    pub fn with_validity_period(mut self, period: Duration) -> Self {
        self.config.validity_period_secs = Some(period.as_secs());
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

    /// Makes failures after the request left retryable; see the module's `# Limitations`.
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

    /// Sets the clock that stamps inbound messages and measures `Retry-After` dates.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings and builds the channel.
    ///
    /// # Errors
    /// `ConfigInvalid`, naming the setting, when the account SID, auth token,
    /// sender, Messaging Service SID, status callback URL, validity period,
    /// base URL or timeouts are missing or malformed.
    pub fn build(self) -> Result<TwilioSmsChannel> {
        let config = self.config;
        let invalid = |field: &'static str, reason: String| {
            Error::new(
                ErrorKind::ConfigInvalid,
                format!("invalid Twilio {field}: {reason}"),
            )
            .with_adapter(ADAPTER)
            .with_context("field", field)
        };

        let account_sid = config.account_sid.trim().to_owned();
        if !is_sid(&account_sid, "AC") {
            return Err(invalid(
                "account_sid",
                "expected AC followed by 32 hexadecimal digits".into(),
            ));
        }
        if config.auth_token.expose().trim().is_empty() {
            return Err(invalid("auth_token", "it is empty".into()));
        }

        let from = config
            .from
            .as_deref()
            .map(str::trim)
            .filter(|from| !from.is_empty())
            .map(str::to_owned);
        if let Some(from) = &from {
            check_sender(from).map_err(|reason| invalid("from", reason.into()))?;
        }
        let messaging_service_sid = config
            .messaging_service_sid
            .as_deref()
            .map(str::trim)
            .filter(|sid| !sid.is_empty())
            .map(str::to_owned);
        if let Some(sid) = &messaging_service_sid
            && !is_sid(sid, "MG")
        {
            return Err(invalid(
                "messaging_service_sid",
                "expected MG followed by 32 hexadecimal digits".into(),
            ));
        }
        if from.is_none() && messaging_service_sid.is_none() {
            return Err(invalid(
                "from",
                "set a sender (from) or a Messaging Service (messaging_service_sid)".into(),
            ));
        }

        let status_callback = config
            .status_callback
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned);
        if let Some(url) = &status_callback {
            let parsed = reqwest::Url::parse(url)
                .map_err(|error| invalid("status_callback", error.to_string()))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(
                    "status_callback",
                    "expected an http or https URL".into(),
                ));
            }
        }
        if let Some(secs) = config.validity_period_secs
            && !(1..=MAX_VALIDITY_PERIOD.as_secs()).contains(&secs)
        {
            return Err(invalid(
                "validity_period_secs",
                format!("{secs} is outside 1 to 36000 seconds"),
            ));
        }
        if config.request_timeout_secs == 0 || config.connect_timeout_secs == 0 {
            return Err(invalid(
                "timeout",
                "timeouts must be at least one second".into(),
            ));
        }

        let base_url = http::check_base_url(&config.base_url, "base_url", ADAPTER)?;
        let http = HttpClient::new(
            ADAPTER,
            Duration::from_secs(config.request_timeout_secs),
            Duration::from_secs(config.connect_timeout_secs),
            config.retry_unknown_outcome,
        )?;

        Ok(TwilioSmsChannel {
            messages_url: format!("{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json"),
            http,
            account_sid,
            auth_token: config.auth_token,
            from,
            messaging_service_sid,
            status_callback,
            validity_period_secs: config.validity_period_secs,
            max_webhook_bytes: config.max_webhook_bytes,
            ledger: SendLedger::new(config.remembered_keys),
            clock: self.clock,
        })
    }
}

/// Sends SMS through Twilio and reads its webhooks. See the [module documentation](self).
pub struct TwilioSmsChannel {
    http: HttpClient,
    messages_url: String,
    account_sid: String,
    auth_token: Secret,
    from: Option<String>,
    messaging_service_sid: Option<String>,
    status_callback: Option<String>,
    validity_period_secs: Option<u64>,
    max_webhook_bytes: usize,
    ledger: SendLedger,
    clock: Arc<dyn Clock>,
}

impl TwilioSmsChannel {
    /// Starts a builder from the account SID and auth token.
    pub fn builder(
        account_sid: impl Into<String>,
        auth_token: impl Into<Secret>,
    ) -> TwilioSmsChannelBuilder {
        TwilioSmsChannelBuilder::new(account_sid, auth_token)
    }

    /// Checks the request's signature and returns its form parameters (or,
    /// for a GET, its query parameters), or `None` for a verified JSON body,
    /// which carries no SMS event.
    fn verified_params(&self, request: &WebhookRequest) -> Result<Option<Vec<(String, String)>>> {
        http::check_webhook_size(&request.body, self.max_webhook_bytes, ADAPTER)?;
        let signature = http::header(&request.headers, SIGNATURE_HEADER).ok_or_else(|| {
            http::unauthenticated(ADAPTER, "the X-Twilio-Signature header is missing")
        })?;
        let token = self.auth_token.expose();

        if signature::body_hash_param(&request.url).is_some() {
            if !validate_request_with_body(token, signature, &request.url, &request.body) {
                return Err(http::unauthenticated(
                    ADAPTER,
                    "the X-Twilio-Signature or bodySHA256 does not match",
                ));
            }
            return Ok(None);
        }

        let is_get = request.method.eq_ignore_ascii_case("GET");
        let (params, signed) = if is_get {
            (http::query_pairs(&request.url), Vec::new())
        } else {
            let params: Vec<(String, String)> =
                form_urlencoded::parse(&request.body).into_owned().collect();
            (params.clone(), params)
        };
        if !validate_request(token, signature, &request.url, &signed) {
            return Err(http::unauthenticated(
                ADAPTER,
                "the X-Twilio-Signature does not match",
            ));
        }
        Ok(Some(params))
    }

    /// Reads one page of the message list.
    async fn lookup_page(
        &self,
        request: reqwest::RequestBuilder,
        outbox_id: kalify_core::OutboxId,
    ) -> Result<MessagePage> {
        let request = request.basic_auth(&self.account_sid, Some(self.auth_token.expose()));
        let response = match self.http.execute(request, "find_sent").await {
            Ok(response) => response,
            Err(error) => {
                // Reading the list changes nothing, so a lookup that timed
                // out can be retried safely.
                return Err(Error::new(
                    error.kind(),
                    "failed to read Twilio's message list; retry the lookup later",
                )
                .with_adapter(ADAPTER)
                .with_operation("find_sent")
                .with_context("outbox_id", outbox_id)
                .with_retry(Retry::Temporary)
                .with_source(error));
            }
        };
        if !(200..300).contains(&response.status) {
            let body: Option<ErrorBody> = serde_json::from_slice(&response.body).ok();
            let delay = http::retry_after(&response.headers, self.clock.now());
            return Err(send_error(response.status, body.as_ref(), delay)
                .with_operation("find_sent")
                .with_context("outbox_id", outbox_id));
        }
        serde_json::from_slice::<MessagePage>(&response.body).map_err(|error| {
            Error::new(
                ErrorKind::Unexpected,
                "Twilio's message list is not the JSON the Messages API documents",
            )
            .with_adapter(ADAPTER)
            .with_operation("find_sent")
            .with_context("outbox_id", outbox_id)
            .with_context("status", response.status)
            .with_source(error)
        })
    }

    /// Builds the URL of the next page from Twilio's `next_page_uri`, a path
    /// on the API's host. Only a path under this account's message list is
    /// followed, so the credentials never go elsewhere.
    fn next_page_url(
        &self,
        next_page_uri: &str,
        outbox_id: kalify_core::OutboxId,
    ) -> Result<String> {
        let list_path = self
            .messages_url
            .find("/2010-04-01/")
            .map_or("", |start| &self.messages_url[start..]);
        if !next_page_uri.starts_with(list_path) || list_path.is_empty() {
            return Err(Error::new(
                ErrorKind::Unexpected,
                "Twilio's next_page_uri is not a page of this account's message list",
            )
            .with_adapter(ADAPTER)
            .with_operation("find_sent")
            .with_context("outbox_id", outbox_id));
        }
        let base = &self.messages_url[..self.messages_url.len() - list_path.len()];
        Ok(format!("{base}{next_page_uri}"))
    }

    fn check_entry<'a>(&self, permit: &'a SendPermit) -> Result<&'a PhoneNumber> {
        let entry = permit.entry();
        let rejected = |kind: ErrorKind, message: String| {
            Error::new(kind, message)
                .with_adapter(ADAPTER)
                .with_operation("send")
                .with_context("outbox_id", entry.id)
        };
        let ContactPoint::Phone(to) = &entry.to else {
            return Err(rejected(
                ErrorKind::InvalidInput,
                format!(
                    "the Twilio SMS channel cannot send to a {} contact point",
                    entry.to.channel()
                ),
            ));
        };
        if entry.text.trim().is_empty() {
            return Err(rejected(
                ErrorKind::InvalidInput,
                "the text is empty; Twilio rejects an SMS without a body".into(),
            ));
        }
        let chars = entry.text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(rejected(
                ErrorKind::ContentRejected,
                format!("the text has {chars} characters; Twilio accepts at most {MAX_TEXT_CHARS}"),
            ));
        }
        Ok(to)
    }
}

#[async_trait]
impl Channel for TwilioSmsChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities::new()
            .with_webhooks(true)
            .with_delivery_reports(true)
            .with_dedupes_sends(true)
            .with_finds_sent(true)
            .with_max_text_chars(Some(MAX_TEXT_CHARS))
    }

    /// Sends the permitted SMS.
    ///
    /// # Behavior
    /// - A key sent before by this channel returns its first receipt without a request.
    /// - A key being sent by another call fails with a retryable `Unavailable`.
    /// - A recipient other than a phone number, an empty text and a text over
    ///   1600 characters are rejected before any request.
    ///
    /// # Errors
    /// See the module's `# Errors of a send`.
    async fn send(&self, permit: &SendPermit) -> Result<Receipt> {
        let entry = permit.entry();
        let to = self.check_entry(permit)?;
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

        let counted = kalify_core::sms::segments(&entry.text);
        tracing::debug!(
            target: "kalify::channel",
            adapter = ADAPTER,
            operation = "send",
            outbox_id = %entry.id,
            conversation_id = %entry.conversation_id,
            segments = counted.segments,
            encoding = ?counted.encoding,
            "sending SMS"
        );

        let validity = self.validity_period_secs.map(|secs| secs.to_string());
        let mut form: Vec<(&str, &str)> = vec![("To", to.as_str()), ("Body", entry.text.as_str())];
        if let Some(from) = &self.from {
            form.push(("From", from));
        }
        if let Some(sid) = &self.messaging_service_sid {
            form.push(("MessagingServiceSid", sid));
        }
        if let Some(url) = &self.status_callback {
            form.push(("StatusCallback", url));
        }
        if let Some(validity) = &validity {
            form.push(("ValidityPeriod", validity));
        }

        let request = self
            .http
            .client()
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&form);
        let response = self
            .http
            .execute(request, "send")
            .await
            .map_err(|error| error.with_context("outbox_id", entry.id))?;

        if !(200..300).contains(&response.status) {
            let body: Option<ErrorBody> = serde_json::from_slice(&response.body).ok();
            let delay = http::retry_after(&response.headers, self.clock.now());
            let error = send_error(response.status, body.as_ref(), delay)
                .with_context("outbox_id", entry.id);
            tracing::debug!(
                target: "kalify::channel",
                adapter = ADAPTER,
                outbox_id = %entry.id,
                status = response.status,
                twilio_code = body.and_then(|body| body.code),
                kind = %error.kind(),
                "Twilio rejected the message"
            );
            return Err(error);
        }

        let sid = serde_json::from_slice::<MessageBody>(&response.body)
            .ok()
            .and_then(|body| body.sid)
            .filter(|sid| !sid.is_empty());
        let Some(sid) = sid else {
            tracing::error!(
                target: "kalify::channel",
                adapter = ADAPTER,
                outbox_id = %entry.id,
                status = response.status,
                "Twilio accepted the request but its response has no message SID"
            );
            return Err(Error::new(
                ErrorKind::Unexpected,
                "Twilio accepted the request but its response has no message SID",
            )
            .with_adapter(ADAPTER)
            .with_operation("send")
            .with_context("outbox_id", entry.id)
            .with_context("status", response.status)
            .with_unknown_outcome()
            .with_retry(Retry::Permanent));
        };

        let receipt = Receipt {
            provider: PROVIDER.to_owned(),
            provider_message_id: sid,
        };
        guard.complete(&receipt);
        tracing::debug!(
            target: "kalify::channel",
            adapter = ADAPTER,
            outbox_id = %entry.id,
            provider_message_id = %receipt.provider_message_id,
            "Twilio accepted the message"
        );
        Ok(receipt)
    }

    /// Looks for the entry's SMS in Twilio's message list.
    ///
    /// # Behavior
    /// - A key this channel sent returns its receipt without a request.
    /// - Otherwise it reads `GET …/Messages.json?To=…&PageSize=1000`, with
    ///   `From` when no Messaging Service picks the sender, newest first.
    ///   It reads up to 4 pages and stops at a page whose messages are all
    ///   older than the search start: the entry's `first_attempt_at` (or
    ///   `next_attempt_at` when unset) less 10 minutes, for clock skew.
    /// - A message matches when the REST API created it (`outbound-api`) to
    ///   the same number, from the same sender or Messaging Service, since
    ///   that time, with the same text up to Smart Encoding's replacements.
    ///
    /// # Errors
    /// As for a send, with operation `find_sent`. A lookup that timed out is
    /// retryable, because reading the list changes nothing. `Unexpected`
    /// when 4 pages hold only messages newer than the search start, because
    /// sending then could repeat the message.
    async fn find_sent(&self, permit: &SendPermit) -> Result<Option<Receipt>> {
        let entry = permit.entry();
        let to = self.check_entry(permit)?;
        if let Some(receipt) = self.ledger.receipt(&entry.idempotency_key) {
            return Ok(Some(receipt));
        }
        let query = SentQuery {
            to: to.as_str(),
            from: self.from.as_deref(),
            messaging_service_sid: self.messaging_service_sid.as_deref(),
            body: &entry.text,
            since: entry.first_attempt_at.unwrap_or(entry.next_attempt_at) - LOOKUP_CLOCK_SKEW,
        };

        let mut params: Vec<(&str, String)> = vec![
            ("To", to.as_str().to_owned()),
            ("PageSize", LOOKUP_PAGE_SIZE.to_string()),
        ];
        if self.messaging_service_sid.is_none()
            && let Some(from) = &self.from
        {
            params.push(("From", from.clone()));
        }

        let query_string = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let first_page = format!("{}?{query_string}", self.messages_url);
        let mut request = self.http.client().get(first_page);

        for page in 1..=LOOKUP_MAX_PAGES {
            let page_body = self.lookup_page(request, entry.id).await?;
            let found = page_body
                .messages
                .iter()
                .filter(|message| message.matches(&query))
                .find_map(|message| message.sid.clone().filter(|sid| !sid.is_empty()));
            if let Some(sid) = found {
                tracing::debug!(target: "kalify::channel", adapter = ADAPTER, operation = "find_sent", outbox_id = %entry.id, provider_message_id = %sid, page, "found the message of an earlier attempt");
                return Ok(Some(Receipt {
                    provider: PROVIDER.to_owned(),
                    provider_message_id: sid,
                }));
            }

            let reached_older = !page_body.messages.is_empty()
                && page_body
                    .messages
                    .iter()
                    .all(|message| message.created().is_some_and(|at| at < query.since));
            let next = page_body.next_page_uri.filter(|uri| !uri.is_empty());
            let Some(next) = next.filter(|_| !reached_older) else {
                return Ok(None);
            };
            request = self.http.client().get(self.next_page_url(&next, entry.id)?);
        }
        // Sending now could repeat the message, so the lookup fails, and the
        // engine logs it.
        Err(Error::new(
            ErrorKind::Unexpected,
            "the recipient has more messages since the first attempt than the lookup reads; check the message list by hand",
        )
        .with_adapter(ADAPTER)
        .with_operation("find_sent")
        .with_context("outbox_id", entry.id)
        .with_context("pages", LOOKUP_MAX_PAGES))
    }

    /// Verifies `X-Twilio-Signature`, then reads an inbound message or a
    /// status callback.
    ///
    /// # Behavior
    /// - POST bodies are form-encoded; for a GET webhook the parameters are
    ///   the query string, and the signature covers the URL alone.
    /// - A URL with `bodySHA256` carries a JSON body: its hash and signature
    ///   are checked, and it gives no event.
    /// - An inbound message gives [`InboundEvent::Message`], followed by
    ///   [`InboundEvent::OptOut`] when Twilio's Advanced Opt-Out marks it
    ///   (`OptOutType=STOP`).
    /// - A status callback (a `MessageStatus` other than `received` or
    ///   `receiving`) gives [`InboundEvent::Status`], preceded by
    ///   [`InboundEvent::OptOut`] for error code 21610.
    ///
    /// # Errors
    /// - `Unauthenticated` for a missing or wrong signature, before the body is read;
    /// - `InvalidInput` for a body over the size limit, or a webhook without
    ///   `MessageSid` (or `From` for an inbound message).
    fn parse_webhook(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>> {
        let Some(params) = self.verified_params(request)? else {
            tracing::debug!(target: "kalify::channel", adapter = ADAPTER, "verified JSON webhook; it carries no SMS event");
            return Ok(Vec::new());
        };
        wire::events(&params, self.clock.now())
    }
}

impl fmt::Debug for TwilioSmsChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSmsChannel")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("messages_url", &self.messages_url)
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("status_callback", &self.status_callback)
            .field("validity_period_secs", &self.validity_period_secs)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TwilioSmsChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TwilioSmsChannel(account={})", self.account_sid)
    }
}

/// True for `prefix` followed by 32 hexadecimal digits.
fn is_sid(text: &str, prefix: &str) -> bool {
    text.len() == 34
        && text.starts_with(prefix)
        && text[2..].bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Checks a sender: an E.164 number, a short code of 3 to 8 digits, or an
/// alphanumeric sender ID of 1 to 11 letters, digits and spaces with at
/// least one letter.
fn check_sender(from: &str) -> std::result::Result<(), &'static str> {
    if from.starts_with('+') {
        return PhoneNumber::from_e164(from)
            .map(|_| ())
            .map_err(|_| "not a valid E.164 number");
    }
    if from.bytes().all(|byte| byte.is_ascii_digit()) {
        return if (3..=8).contains(&from.len()) {
            Ok(())
        } else {
            Err("a short code has 3 to 8 digits")
        };
    }
    let alphanumeric = from.len() <= 11
        && from
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b' ')
        && from.bytes().any(|byte| byte.is_ascii_alphabetic());
    if alphanumeric {
        Ok(())
    } else {
        Err(
            "expected an E.164 number, a short code or an alphanumeric sender ID of up to 11 characters",
        )
    }
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

    const SID: &str = "AC0123456789abcdef0123456789abcdef";

    #[test]
    fn config_debug_redacts_token() {
        let config = TwilioConfig {
            account_sid: SID.into(),
            auth_token: Secret::new("tok-very-secret"),
            ..TwilioConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("tok-very-secret"), "{debug}");
        assert!(debug.contains(SID), "{debug}");
    }

    #[test]
    fn channel_debug_and_display_redact_token() {
        let channel = TwilioSmsChannelBuilder::new(SID, "tok-very-secret")
            .with_from("+33757000000")
            .build()
            .unwrap();
        assert!(!format!("{channel:?}").contains("tok-very-secret"));
        assert!(!format!("{channel}").contains("tok-very-secret"));
        assert_eq!(
            format!("{channel}"),
            format!("TwilioSmsChannel(account={SID})")
        );
    }

    #[test]
    fn config_deserializes_without_serializing_secret() {
        let config: TwilioConfig = serde_json::from_str(&format!(
            r#"{{"account_sid": "{SID}", "auth_token": "tok", "from": "+33757000000", "validity_period_secs": 600}}"#
        ))
        .unwrap();
        assert_eq!(config.auth_token.expose(), "tok");
        assert_eq!(config.base_url, DEFAULT_BASE_URL);
        assert!(TwilioSmsChannelBuilder::from_config(config).build().is_ok());
    }

    #[test]
    fn build_rejects_bad_settings() {
        let base = || TwilioSmsChannelBuilder::new(SID, "tok").with_from("+33757000000");
        let cases: Vec<(TwilioSmsChannelBuilder, &str)> = vec![
            (
                TwilioSmsChannelBuilder::new("AC123", "tok").with_from("+33757000000"),
                "account_sid",
            ),
            (
                TwilioSmsChannelBuilder::new(SID, " ").with_from("+33757000000"),
                "auth_token",
            ),
            (TwilioSmsChannelBuilder::new(SID, "tok"), "from"),
            (base().with_from("+3"), "from"),
            (base().with_from("Very long sender id"), "from"),
            (
                base().with_messaging_service_sid("MG1"),
                "messaging_service_sid",
            ),
            (
                base().with_status_callback("ftp://hooks.example"),
                "status_callback",
            ),
            (
                base().with_validity_period(Duration::from_secs(0)),
                "validity_period_secs",
            ),
            (
                base().with_validity_period(Duration::from_secs(36_001)),
                "validity_period_secs",
            ),
            (base().with_base_url("http://api.example.com"), "base_url"),
        ];
        for (builder, field) in cases {
            let error = builder.build().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{field}: {error}");
            assert_eq!(context(&error, "field"), Some(field), "{field}: {error}");
        }
    }

    #[test]
    fn senders() {
        assert!(check_sender("+33757000000").is_ok());
        assert!(check_sender("36111").is_ok());
        assert!(check_sender("Acme SAS").is_ok());
        assert!(check_sender("12").is_err());
        assert!(check_sender("Acme-SAS").is_err());
        assert!(check_sender("123456789").is_err());
    }

    #[test]
    fn messaging_service_alone_is_enough() {
        let channel = TwilioSmsChannelBuilder::new(SID, "tok")
            .with_messaging_service_sid("MG0123456789abcdef0123456789abcdef")
            .build();
        assert!(channel.is_ok());
    }
}

//! The webhook notifier: a signed JSON POST that Slack and Microsoft Teams
//! incoming webhooks accept.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::SecondsFormat;
use kalify_core::ports::{Clock, Notification, Notifier, SystemClock};
use kalify_core::{Error, ErrorKind, Result, Secret, Timestamp};
use reqwest::Url;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use super::signature::{SIGNATURE_HEADER, TIMESTAMP_HEADER, compute_signature};
use crate::http::{HttpClient, retry_after, status_error};

/// The adapter name in errors and logs.
const ADAPTER: &str = "webhook";

/// The shortest signing secret accepted, in bytes: the output size of SHA-256.
pub const MIN_SECRET_BYTES: usize = 32;

/// The default time allowed for one delivery, from connecting to the last
/// byte of the response.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The default time allowed to connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Posts each notification as signed JSON to a webhook URL. Build it with
/// [`WebhookNotifier::builder`].
///
/// The body is `{"text": …, "kalify": {…}}`. Slack and Microsoft Teams
/// incoming webhooks show `text`, which is [`Notification::text`] with `&`,
/// `<` and `>` written as HTML entities, as Slack's message formatting
/// requires. Other receivers read the event from `kalify`: `kind`,
/// `org_id`, `prospect_id`, `conversation_id`, `member_id`, `score`,
/// `due_at`, `note` and `sent_at`, with `null` for what the notification
/// lacks and times in RFC 3339 UTC.
///
/// Every request carries [`TIMESTAMP_HEADER`] and [`SIGNATURE_HEADER`],
/// which receivers check with [`verify_signature`](super::verify_signature).
///
/// The URL counts as a secret, because Slack and Teams URLs grant the right
/// to post. `Debug`, errors and logs show only its scheme, host and port.
///
/// # Errors of `notify`
///
/// | failure | kind | retry |
/// |---|---|---|
/// | 2xx | none: delivered | |
/// | 429 | `RateLimited` | temporary, with `Retry-After` |
/// | 5xx | `Unavailable` | temporary, with `Retry-After` |
/// | 408, 409 | `Timeout`, `Conflict` | temporary |
/// | 401, 403 | `Unauthenticated`, `PermissionDenied` | permanent |
/// | 404, 410 (Slack: no such channel, or archived) | `NotFound` | permanent |
/// | other 4xx | `InvalidInput` | permanent |
/// | 1xx, 3xx (redirects are not followed) | `Unexpected` | permanent |
/// | connection failure, timeout | `Unavailable`, `Timeout` | temporary |
///
/// A timeout or a connection lost after the request was sent is retried
/// although the receiver may have posted the message, so a channel can
/// show the same notification twice.
pub struct WebhookNotifier {
    url: Url,
    origin: String,
    secret: Secret,
    http: HttpClient,
    clock: Arc<dyn Clock>,
}

impl WebhookNotifier {
    /// Starts a builder for the webhook at `url`, signing with `secret`.
    pub fn builder(url: Secret, secret: Secret) -> WebhookNotifierBuilder {
        WebhookNotifierBuilder::new(url, secret)
    }

    /// Returns the JSON body of `notification` sent at `sent_at`.
    fn body(notification: &Notification, sent_at: Timestamp) -> Value {
        let time = |at: Timestamp| at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        json!({
            "text": slack_escape(&notification.text()),
            "kalify": {
                "kind": notification.kind.as_str(),
                "org_id": notification.org_id.to_string(),
                "prospect_id": notification.prospect_id.to_string(),
                "conversation_id": notification.conversation_id.map(|id| id.to_string()),
                "member_id": notification.member.map(|id| id.to_string()),
                "score": notification.score,
                "due_at": notification.due_at.map(time),
                "note": notification.note,
                "sent_at": time(sent_at),
            }
        })
    }
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    /// Posts `notification` once.
    ///
    /// # Errors
    /// As listed on [`WebhookNotifier`].
    async fn notify(&self, notification: &Notification) -> Result<()> {
        let kind = notification.kind.as_str();
        let now = self.clock.now();
        let body = serde_json::to_vec(&WebhookNotifier::body(notification, now))?;
        let timestamp = now.timestamp();
        let signature = compute_signature(&self.secret, timestamp, &body);

        let request = self
            .http
            .client()
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body);
        let started = Instant::now();
        let response = self
            .http
            .execute(request, "notify")
            .await
            .map_err(|error| transport_error(error, kind))?;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

        if (200..300).contains(&response.status) {
            tracing::debug!(target: "kalify::notify", adapter = ADAPTER, kind, status = response.status, elapsed_ms, "webhook notification delivered");
            return Ok(());
        }
        let delay = retry_after(&response.headers, now);
        let error = status_error(response.status, delay)
            .with_adapter(ADAPTER)
            .with_operation("notify")
            .with_context("kind", kind);
        tracing::debug!(target: "kalify::notify", adapter = ADAPTER, kind, status = response.status, elapsed_ms, error = %error, "webhook notification failed");
        Err(error)
    }
}

/// Builds a [`WebhookNotifier`].
///
/// ```no_run
/// use kalify_channels::notify::WebhookNotifier;
/// use kalify_core::Secret;
///
/// # fn example() -> kalify_core::Result<()> {
/// let url = std::env::var("KALIFY_NOTIFY_WEBHOOK_URL").unwrap_or_default();
/// let secret = std::env::var("KALIFY_NOTIFY_WEBHOOK_SECRET").unwrap_or_default();
/// let notifier = WebhookNotifier::builder(Secret::new(url), Secret::new(secret)).build()?;
/// # Ok(()) }
/// ```
pub struct WebhookNotifierBuilder {
    url: Secret,
    secret: Secret,
    request_timeout: Duration,
    connect_timeout: Duration,
    clock: Option<Arc<dyn Clock>>,
}

impl WebhookNotifierBuilder {
    /// Creates a builder for the webhook at `url`, signing with `secret`.
    pub fn new(url: Secret, secret: Secret) -> Self {
        WebhookNotifierBuilder {
            url,
            secret,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            clock: None,
        }
    }

    /// Sets the time allowed for one delivery, from connecting to the last byte of the response.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the time allowed to connect.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the clock of the signature timestamp and of `sent_at`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the settings and creates the notifier. No connection is made.
    ///
    /// # Errors
    /// `ConfigInvalid` when the URL is not an absolute `https` URL or
    /// carries a user name or password. Plain `http` is accepted only
    /// toward a loopback address, for tests. Also `ConfigInvalid` when the
    /// secret is shorter than [`MIN_SECRET_BYTES`] or a timeout is zero.
    /// Errors name the URL by scheme, host and port only.
    pub fn build(self) -> Result<WebhookNotifier> {
        let (url, origin) = check_url(self.url.expose())?;
        if self.secret.expose().len() < MIN_SECRET_BYTES {
            return Err(config_error(format!(
                "the webhook signing secret is too short: it needs at least {MIN_SECRET_BYTES} bytes of random data"
            )));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(config_error(
                "the webhook request and connect timeouts must be longer than zero",
            ));
        }
        // Retrying after a timeout may post twice, which is better for a
        // team alert than losing it.
        let http = HttpClient::new(ADAPTER, self.request_timeout, self.connect_timeout, true)?;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        Ok(WebhookNotifier {
            url,
            origin,
            secret: self.secret,
            http,
            clock,
        })
    }
}

impl fmt::Debug for WebhookNotifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifierBuilder")
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// Parses and checks the webhook URL. Returns it with its origin
/// (`scheme://host[:port]`), the only part that errors and logs show.
fn check_url(text: &str) -> Result<(Url, String)> {
    let url = Url::parse(text.trim()).map_err(|error| {
        // url's parse errors do not repeat the input.
        config_error(format!(
            "invalid webhook URL: {error}; expected an absolute https URL"
        ))
    })?;
    let Some(host) = url.host_str() else {
        return Err(config_error("invalid webhook URL: it has no host"));
    };
    let origin = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let invalid = |reason: &str| config_error(format!("invalid webhook URL {origin}: {reason}"));

    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not contain a user name or password"));
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(invalid(
                "plain http is allowed only toward a loopback address; use https",
            ));
        }
        _ => return Err(invalid("unsupported scheme; use https")),
    }
    Ok((url, origin))
}

/// Rewords a transport failure from the shared HTTP client, whose message
/// refers to its provider settings, and keeps it as the source.
fn transport_error(error: Error, kind: &'static str) -> Error {
    let message = match error.kind() {
        ErrorKind::Timeout => {
            "timed out waiting for the webhook's response, so a retry may post the notification twice"
        }
        ErrorKind::Unavailable => "failed to reach the webhook or lost the connection",
        _ => return error.with_context("kind", kind),
    };
    Error::new(error.kind(), message)
        .with_adapter(ADAPTER)
        .with_operation("notify")
        .with_context("kind", kind)
        .with_source(error)
}

/// Escapes the three characters that Slack reads as markup in message
/// text, so that a note cannot mention `<!channel>` or forge a link.
fn slack_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            other => escaped.push(other),
        }
    }
    escaped
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::ConfigInvalid, message)
        .with_adapter(ADAPTER)
        .with_operation("build")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "webhook-secret-of-thirty-two-bytes!!";

    fn build(url: &str) -> Result<WebhookNotifier> {
        WebhookNotifier::builder(Secret::new(url), Secret::new(SECRET)).build()
    }

    #[test]
    fn url_accepts_https_and_loopback_http() {
        for url in [
            "https://hooks.example.com/services/T0/B0/token",
            "https://example.com:8443/workflows/1/invoke?api-version=1&sig=abc",
            "http://127.0.0.1:8080/hook",
            "http://[::1]:8080/hook",
            "http://localhost/hook",
        ] {
            assert!(build(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn url_rejections_name_only_origin() {
        let cases = [
            (
                "http://hooks.example.com/services/T0/B0/token-7f3a?x=token-7f3a",
                "http://hooks.example.com",
                "loopback",
            ),
            (
                "ftp://hooks.example.com/token-7f3a",
                "ftp://hooks.example.com",
                "scheme",
            ),
            (
                "https://user:token-7f3a@hooks.example.com/x",
                "https://hooks.example.com",
                "user name",
            ),
            (
                "http://10.0.0.1:9000/token-7f3a",
                "http://10.0.0.1:9000",
                "loopback",
            ),
        ];
        for (url, origin, reason) in cases {
            let error = build(url).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{url}");
            let text = format!("{error} {error:?}");
            assert!(text.contains(origin), "{url}: {text}");
            assert!(text.contains(reason), "{url}: {text}");
            assert!(!text.contains("token-7f3a"), "{url}: {text}");
        }
        let error = build("hooks.example.com/token-7f3a").unwrap_err();
        assert!(
            !format!("{error} {error:?}").contains("token-7f3a"),
            "{error}"
        );
    }

    #[test]
    fn short_secret_and_zero_timeout_rejected() {
        let short = WebhookNotifier::builder(
            Secret::new("https://hooks.example.com/x"),
            Secret::new("short"),
        )
        .build();
        assert_eq!(short.unwrap_err().kind(), ErrorKind::ConfigInvalid);
        let zero = WebhookNotifier::builder(
            Secret::new("https://hooks.example.com/x"),
            Secret::new(SECRET),
        )
        .with_request_timeout(Duration::ZERO)
        .build();
        assert_eq!(zero.unwrap_err().kind(), ErrorKind::ConfigInvalid);
    }

    #[test]
    fn escape_covers_slack_markup() {
        assert_eq!(
            slack_escape("<!channel> & <https://x|y>"),
            "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"
        );
        assert_eq!(slack_escape("plain text"), "plain text");
    }
}

//! The HTTPS transport shared by the Twilio and Messenger adapters: a
//! reqwest client with bounded reads, the mapping of HTTP statuses and
//! transport failures to [`ErrorKind`], `Retry-After` parsing, the
//! in-process ledger of idempotency keys, and webhook helpers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use kalify_core::ports::Receipt;
use kalify_core::{Error, ErrorKind, Retry, Secret, Timestamp};
use reqwest::header::{DATE, HeaderMap, RETRY_AFTER};
use subtle::ConstantTimeEq;

/// The maximum provider response body read. Providers respond to a send
/// with well under a kilobyte, so a larger body is cut off and reported.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The longest `Retry-After` honoured. A longer value is read as this one,
/// so that a wrong header cannot park a message for months.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The default limit on a webhook body. Twilio's form bodies stay under a
/// few kilobytes and Meta batches under a few hundred.
pub(crate) const DEFAULT_MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

/// The default time allowed for a send, from connecting to the last byte of the response.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The default time allowed to connect.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The number of idempotency keys a channel remembers by default.
pub(crate) const DEFAULT_LEDGER_CAPACITY: usize = 10_000;

/// A reqwest client that reads bounded bodies and maps failures to kalify errors.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    adapter: &'static str,
    retry_unknown_outcome: bool,
}

/// A provider's response, read in full.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl HttpClient {
    /// Builds a client for `adapter` with the given timeouts.
    ///
    /// Redirects are not followed: the providers' APIs do not redirect, and
    /// following one would send the credentials to another address.
    ///
    /// `retry_unknown_outcome` makes failures after the request was sent
    /// (a read timeout, a reset connection) retryable. By default they are
    /// permanent, because neither provider de-duplicates a repeated request.
    pub(crate) fn new(
        adapter: &'static str,
        request_timeout: Duration,
        connect_timeout: Duration,
        retry_unknown_outcome: bool,
    ) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kalify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                Error::new(ErrorKind::ConfigInvalid, "failed to build the HTTP client")
                    .with_adapter(adapter)
                    .with_source(error.without_url())
            })?;
        Ok(HttpClient {
            client,
            adapter,
            retry_unknown_outcome,
        })
    }

    /// Returns the underlying reqwest client, to build requests.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request` and reads the whole response, whatever its status.
    ///
    /// # Errors
    /// Transport failures only: see [`HttpClient::transport_error`].
    pub(crate) async fn execute(
        &self,
        request: reqwest::RequestBuilder,
        operation: &'static str,
    ) -> Result<HttpResponse, Error> {
        let started = Instant::now();
        let mut response = request
            .send()
            .await
            .map_err(|error| self.transport_error(error, operation))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();

        let mut body = Vec::new();
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|error| self.transport_error(error, operation))?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Error::new(
                    ErrorKind::Unexpected,
                    "the provider's response exceeds 1 MiB",
                )
                .with_adapter(self.adapter)
                .with_operation(operation)
                .with_context("status", status));
            }
            body.extend_from_slice(&chunk);
        }

        tracing::debug!(
            target: "kalify::channel",
            adapter = self.adapter,
            operation,
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "provider responded"
        );
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// Maps a reqwest failure to a kalify error, without the URL.
    ///
    /// - Failing to connect (connection refused, DNS, TLS, connect timeout) is
    ///   `Unavailable` and retryable: the provider received nothing.
    /// - A timeout after connecting is `Timeout`, and any other failure is
    ///   `Unavailable`. Both carry the context `outcome=unknown`, because the
    ///   provider may have accepted the message, and are permanent unless
    ///   the client was built with `retry_unknown_outcome`.
    pub(crate) fn transport_error(&self, error: reqwest::Error, operation: &'static str) -> Error {
        let error = error.without_url();
        if error.is_connect() {
            return Error::new(ErrorKind::Unavailable, "failed to connect to the provider")
                .with_adapter(self.adapter)
                .with_operation(operation)
                .with_source(error);
        }
        let retry = if self.retry_unknown_outcome {
            Retry::Temporary
        } else {
            Retry::Permanent
        };
        let (kind, message) = if error.is_timeout() {
            (
                ErrorKind::Timeout,
                "the provider timed out before responding, so it may have accepted the message; a retry that does not look the message up first could send it twice",
            )
        } else {
            (
                ErrorKind::Unavailable,
                "the connection to the provider failed after the request was sent, so it may have accepted the message; a retry that does not look the message up first could send it twice",
            )
        };
        Error::new(kind, message)
            .with_adapter(self.adapter)
            .with_operation(operation)
            .with_unknown_outcome()
            .with_retry(retry)
            .with_source(error)
    }
}

/// Maps an HTTP error status to a kalify error, before any provider-specific
/// reading of the body.
///
/// | status | kind | retry |
/// |---|---|---|
/// | 401 | `Unauthenticated` | permanent |
/// | 403 | `PermissionDenied` | permanent |
/// | 404, 410 | `NotFound` | permanent |
/// | 408 | `Timeout` | temporary |
/// | 409 | `Conflict` | temporary |
/// | 429 | `RateLimited` | temporary, with `retry_after` |
/// | other 4xx | `InvalidInput` | permanent |
/// | 5xx | `Unavailable` | temporary, with `retry_after` |
/// | anything else | `Unexpected` | permanent |
pub(crate) fn status_error(status: u16, retry_after: Option<Duration>) -> Error {
    let (kind, message) = match status {
        401 => (
            ErrorKind::Unauthenticated,
            "the provider rejected the credentials",
        ),
        403 => (
            ErrorKind::PermissionDenied,
            "the provider rejected the request for these credentials",
        ),
        404 | 410 => (
            ErrorKind::NotFound,
            "the provider has no such resource; check the account or page settings",
        ),
        408 => (
            ErrorKind::Timeout,
            "the provider timed out reading the request",
        ),
        409 => (
            ErrorKind::Conflict,
            "the provider reported a conflicting request",
        ),
        429 => (ErrorKind::RateLimited, "the provider throttled the request"),
        400..=499 => (ErrorKind::InvalidInput, "the provider rejected the request"),
        500..=599 => (
            ErrorKind::Unavailable,
            "the provider failed to handle the request",
        ),
        _ => (
            ErrorKind::Unexpected,
            "the provider responded with an unexpected status",
        ),
    };
    let mut error = Error::new(kind, message).with_context("status", status);
    if matches!(status, 408 | 409) {
        error = error.with_retry(Retry::Temporary);
    }
    if let (true, Some(delay)) = (matches!(status, 429 | 500..=599), retry_after) {
        error = error.with_retry_after(delay);
    }
    error
}

/// Reads `Retry-After` from `headers` as delay-seconds or as an HTTP date
/// (RFC 9110 section 10.2.3).
///
/// A date is measured from the response's own `Date` header when it has one,
/// so that a skewed local clock does not matter, and from `now` otherwise.
/// A date in the past gives zero; a delay beyond [`MAX_RETRY_AFTER`] is
/// capped. An unreadable value gives `None`.
pub(crate) fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let at = parse_http_date(value)?;
    let reference = headers
        .get(DATE)
        .and_then(|date| date.to_str().ok())
        .and_then(parse_http_date)
        .unwrap_or(now);
    let delay = (at - reference).to_std().unwrap_or(Duration::ZERO);
    Some(delay.min(MAX_RETRY_AFTER))
}

/// Parses the three HTTP date forms of RFC 9110 section 5.6.7: IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
pub(crate) fn parse_http_date(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(date) = DateTime::parse_from_rfc2822(text) {
        return Some(date.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDateTime::parse_from_str(text, "%A, %d-%b-%y %H:%M:%S GMT") {
        return Some(date.and_utc());
    }
    let single_spaced = text.split_whitespace().collect::<Vec<_>>().join(" ");
    NaiveDateTime::parse_from_str(&single_spaced, "%a %b %e %H:%M:%S %Y")
        .ok()
        .map(|date| date.and_utc())
}

/// Checks a provider base URL: it must parse, use `https`, or `http` only
/// toward a loopback address (tests), and carry no query or fragment.
/// Returns it without a trailing slash.
///
/// # Errors
/// `ConfigInvalid`, naming `field`.
pub(crate) fn check_base_url(
    text: &str,
    field: &'static str,
    adapter: &'static str,
) -> Result<String, Error> {
    let invalid = |reason: &str| {
        Error::new(
            ErrorKind::ConfigInvalid,
            format!("invalid {field}: {reason}"),
        )
        .with_adapter(adapter)
        .with_context("field", field)
    };
    let url = reqwest::Url::parse(text.trim()).map_err(|error| invalid(&format!("{error}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "it must not carry credentials; set them in the configuration",
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(invalid("it has no host"));
    };
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
        other => return Err(invalid(&format!("unsupported scheme {other:?}; use https"))),
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Reads a [`Secret`] from a configuration string.
pub(crate) fn deserialize_secret<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Secret, D::Error> {
    use serde::Deserialize as _;
    String::deserialize(deserializer).map(Secret::new)
}

/// The result of [`SendLedger::claim`] for an idempotency key.
pub(crate) enum Claim<'a> {
    /// The key was sent before: its first receipt.
    Done(Receipt),
    /// Another send with the key is in progress.
    InFlight,
    /// The caller may send; it records the outcome through the guard.
    Claimed(ClaimGuard<'a>),
}

/// The idempotency keys a channel has sent in this process, with their
/// receipts, and the keys being sent now.
///
/// It keeps the latest `capacity` keys and drops the oldest first. It
/// lives in memory only, so a key sent by another process, or before a
/// restart, is not known here.
#[derive(Debug)]
pub(crate) struct SendLedger {
    state: Mutex<LedgerState>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct LedgerState {
    sent: HashMap<String, Receipt>,
    order: VecDeque<String>,
    in_flight: HashSet<String>,
}

impl SendLedger {
    /// Creates an empty ledger that keeps `capacity` keys (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        SendLedger {
            state: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    /// Looks `key` up and claims it when it is new.
    pub(crate) fn claim(&self, key: &str) -> Claim<'_> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(receipt) = state.sent.get(key) {
            return Claim::Done(receipt.clone());
        }
        if !state.in_flight.insert(key.to_owned()) {
            return Claim::InFlight;
        }
        Claim::Claimed(ClaimGuard {
            ledger: self,
            key: key.to_owned(),
            finished: false,
        })
    }

    /// Returns the receipt of `key` when this ledger recorded its send.
    pub(crate) fn receipt(&self, key: &str) -> Option<Receipt> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.sent.get(key).cloned()
    }

    fn finish(&self, key: &str, receipt: Option<Receipt>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.in_flight.remove(key);
        let Some(receipt) = receipt else { return };
        if state.sent.insert(key.to_owned(), receipt).is_none() {
            state.order.push_back(key.to_owned());
        }
        while state.order.len() > self.capacity {
            if let Some(oldest) = state.order.pop_front() {
                state.sent.remove(&oldest);
            }
        }
    }
}

/// A claimed idempotency key. Dropping it without [`ClaimGuard::complete`]
/// releases the key, so that a failed send can be retried.
pub(crate) struct ClaimGuard<'a> {
    ledger: &'a SendLedger,
    key: String,
    finished: bool,
}

impl ClaimGuard<'_> {
    /// Records the receipt of the key's successful send.
    pub(crate) fn complete(mut self, receipt: &Receipt) {
        self.finished = true;
        self.ledger.finish(&self.key, Some(receipt.clone()));
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.ledger.finish(&self.key, None);
        }
    }
}

/// Builds the error for a send whose idempotency key another call is sending.
pub(crate) fn in_flight_error(adapter: &'static str) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "a send with this idempotency key is in progress; retry once it ends",
    )
    .with_adapter(adapter)
    .with_operation("send")
    .with_retry_after(Duration::from_secs(1))
}

/// Returns the value of header `name` of a webhook request, matched
/// without regard to case.
pub(crate) fn header<'a>(
    headers: &'a std::collections::BTreeMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Returns the decoded pairs of the query string of `url`, in order.
pub(crate) fn query_pairs(url: &str) -> Vec<(String, String)> {
    let without_fragment = url.split('#').next().unwrap_or_default();
    let Some((_, query)) = without_fragment.split_once('?') else {
        return Vec::new();
    };
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && bool::from(left.ct_eq(right))
}

/// Decodes hexadecimal digits of either case; `None` when the text is not
/// an even number of hex digits.
pub(crate) fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let digit = |byte: u8| -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            b'A'..=b'F' => Some(byte - b'A' + 10),
            _ => None,
        }
    };
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Encodes bytes as lower-case hexadecimal.
#[cfg_attr(not(feature = "messenger"), allow(dead_code))]
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// Builds the error for a webhook whose signature is missing or wrong. The
/// message names the case and never contains the expected signature.
pub(crate) fn unauthenticated(adapter: &'static str, reason: &'static str) -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        format!("webhook rejected: {reason}"),
    )
    .with_adapter(adapter)
    .with_operation("parse_webhook")
}

/// Rejects a webhook body larger than `limit` bytes before any work on it.
pub(crate) fn check_webhook_size(
    body: &[u8],
    limit: usize,
    adapter: &'static str,
) -> Result<(), Error> {
    if body.len() > limit {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "webhook body of {} bytes exceeds the limit of {limit}",
                body.len()
            ),
        )
        .with_adapter(adapter)
        .with_operation("parse_webhook"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use reqwest::header::HeaderValue;

    use super::*;

    fn at(text: &str) -> Timestamp {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn headers(pairs: &[(&reqwest::header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert((*name).clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_seconds() {
        let now = at("2026-01-05T09:00:00Z");
        assert_eq!(
            retry_after(&headers(&[(&RETRY_AFTER, "120")]), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&headers(&[(&RETRY_AFTER, " 0 ")]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        assert_eq!(retry_after(&headers(&[(&RETRY_AFTER, "-5")]), now), None);
        assert_eq!(retry_after(&headers(&[(&RETRY_AFTER, "soon")]), now), None);
    }

    #[test]
    fn retry_after_is_capped() {
        let now = at("2026-01-05T09:00:00Z");
        assert_eq!(
            retry_after(&headers(&[(&RETRY_AFTER, "99999999")]), now),
            Some(MAX_RETRY_AFTER)
        );
        let far = headers(&[(&RETRY_AFTER, "Wed, 01 Jan 2031 00:00:00 GMT")]);
        assert_eq!(retry_after(&far, now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_http_date_forms() {
        let now = at("1994-11-06T08:49:00Z");
        for value in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            let delay = retry_after(&headers(&[(&RETRY_AFTER, value)]), now);
            assert_eq!(delay, Some(Duration::from_secs(37)), "{value}");
        }
    }

    #[test]
    fn retry_after_date_uses_server_date() {
        // The local clock is an hour behind; the server's Date header is
        // the reference, so the delay is the 30 s the server meant.
        let now = at("2026-01-05T08:00:00Z");
        let map = headers(&[
            (&RETRY_AFTER, "Mon, 05 Jan 2026 09:00:30 GMT"),
            (&DATE, "Mon, 05 Jan 2026 09:00:00 GMT"),
        ]);
        assert_eq!(retry_after(&map, now), Some(Duration::from_secs(30)));
    }

    #[test]
    fn retry_after_past_date_is_zero() {
        let now = at("2026-01-05T09:00:00Z");
        let map = headers(&[(&RETRY_AFTER, "Mon, 05 Jan 2026 08:00:00 GMT")]);
        assert_eq!(retry_after(&map, now), Some(Duration::ZERO));
    }

    #[test]
    fn http_date_parses_three_forms() {
        let expected = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 37).unwrap();
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(expected)
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(expected)
        );
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(expected));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn status_mapping() {
        let cases = [
            (401, ErrorKind::Unauthenticated, false),
            (403, ErrorKind::PermissionDenied, false),
            (404, ErrorKind::NotFound, false),
            (408, ErrorKind::Timeout, true),
            (409, ErrorKind::Conflict, true),
            (400, ErrorKind::InvalidInput, false),
            (422, ErrorKind::InvalidInput, false),
            (429, ErrorKind::RateLimited, true),
            (500, ErrorKind::Unavailable, true),
            (503, ErrorKind::Unavailable, true),
            (302, ErrorKind::Unexpected, false),
        ];
        for (status, kind, retryable) in cases {
            let error = status_error(status, None);
            assert_eq!(error.kind(), kind, "{status}");
            assert_eq!(error.is_retryable(), retryable, "{status}");
        }
    }

    #[test]
    fn status_mapping_keeps_retry_after_for_retryable_statuses() {
        let delay = Some(Duration::from_secs(9));
        assert_eq!(status_error(429, delay).retry_after(), delay);
        assert_eq!(status_error(503, delay).retry_after(), delay);
        assert_eq!(status_error(400, delay).retry_after(), None);
    }

    #[test]
    fn base_url_rules() {
        assert_eq!(
            check_base_url("https://api.example.com/", "base_url", "test").unwrap(),
            "https://api.example.com"
        );
        assert_eq!(
            check_base_url("http://127.0.0.1:8080", "base_url", "test").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_base_url("http://[::1]:8080", "base_url", "test").is_ok());
        assert!(check_base_url("http://localhost:1", "base_url", "test").is_ok());
        for bad in [
            "http://api.example.com",
            "ftp://127.0.0.1",
            "https://user:pw@api.example.com",
            "https://a.example?x=1",
            "not a url",
        ] {
            let error = check_base_url(bad, "base_url", "test").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{bad}");
        }
    }

    #[test]
    fn ledger_returns_first_receipt() {
        let ledger = SendLedger::new(10);
        let receipt = Receipt {
            provider: "p".into(),
            provider_message_id: "m1".into(),
        };
        match ledger.claim("k") {
            Claim::Claimed(guard) => guard.complete(&receipt),
            _ => panic!("a new key must be claimable"),
        }
        assert!(matches!(ledger.claim("k"), Claim::Done(found) if found == receipt));
    }

    #[test]
    fn ledger_releases_failed_and_blocks_in_flight() {
        let ledger = SendLedger::new(10);
        let guard = match ledger.claim("k") {
            Claim::Claimed(guard) => guard,
            _ => panic!("a new key must be claimable"),
        };
        assert!(matches!(ledger.claim("k"), Claim::InFlight));
        drop(guard);
        assert!(matches!(ledger.claim("k"), Claim::Claimed(_)));
    }

    #[test]
    fn ledger_forgets_oldest_beyond_capacity() {
        let ledger = SendLedger::new(2);
        for key in ["a", "b", "c"] {
            if let Claim::Claimed(guard) = ledger.claim(key) {
                guard.complete(&Receipt {
                    provider: "p".into(),
                    provider_message_id: key.into(),
                });
            }
        }
        assert!(matches!(ledger.claim("a"), Claim::Claimed(_)));
        assert!(matches!(ledger.claim("c"), Claim::Done(_)));
    }

    #[test]
    fn hex_roundtrip_and_rejects() {
        assert_eq!(hex_decode("00ffA0"), Some(vec![0x00, 0xff, 0xa0]));
        assert_eq!(hex_encode(&[0x00, 0xff, 0xa0]), "00ffa0");
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn query_pairs_decode() {
        let pairs = query_pairs("https://a.example/p?hub.mode=subscribe&x=a%20b+c#frag");
        assert_eq!(
            pairs,
            vec![
                ("hub.mode".to_owned(), "subscribe".to_owned()),
                ("x".to_owned(), "a b c".to_owned())
            ]
        );
        assert!(query_pairs("https://a.example/p").is_empty());
    }

    #[test]
    fn constant_time_eq_checks_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

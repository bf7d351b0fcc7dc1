//! The HTTP exchange with the server: headers, per-attempt timeout, retries
//! with exponential backoff and jitter, and status codes mapped to
//! [`ErrorKind`]s.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use kalify_core::{Error, ErrorKind, Result, Retry, Secret};

use super::config::{ApiFlavor, AuthHeader, OpenAiConfig};
use super::wire::{ApiError, ChatResponse};

/// When and how often a failed attempt is repeated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RetryPolicy {
    pub(crate) max_retries: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_retry_wait: Duration,
}

/// The HTTP client and the fixed parts of every request.
pub(crate) struct Transport {
    client: reqwest::Client,
    url: reqwest::Url,
    headers: HeaderMap,
    timeout: Duration,
    policy: RetryPolicy,
    jitter_counter: AtomicU64,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The headers hold the key; only the URL and the limits are shown.
        f.debug_struct("Transport")
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn new(
        config: &OpenAiConfig,
        base: reqwest::Url,
        loopback: bool,
        api_key: Option<Secret>,
        policy: RetryPolicy,
    ) -> Result<Transport> {
        let invalid =
            |message: String| Error::new(ErrorKind::ConfigInvalid, message).with_adapter("openai");

        let mut url = base;
        let path = match &config.flavor {
            ApiFlavor::OpenAi => "chat/completions".to_owned(),
            ApiFlavor::Azure { deployment, .. } => {
                format!("openai/deployments/{}/chat/completions", deployment.trim())
            }
        };
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| invalid("the base URL cannot carry a path".to_owned()))?;
            segments.pop_if_empty();
            for segment in path.split('/') {
                segments.push(segment);
            }
        }
        if let ApiFlavor::Azure { api_version, .. } = &config.flavor {
            url.query_pairs_mut()
                .append_pair("api-version", api_version.trim());
        }

        let mut headers = HeaderMap::new();
        let header_value = |value: &str, what: &str| {
            HeaderValue::from_str(value).map_err(|_| {
                invalid(format!(
                    "the {what} contains characters not allowed in an HTTP header"
                ))
            })
        };
        if let Some(key) = api_key {
            let auth = config.auth_header.unwrap_or(match config.flavor {
                ApiFlavor::Azure { .. } => AuthHeader::ApiKey,
                _ => AuthHeader::Bearer,
            });
            let (name, mut value) = match auth {
                AuthHeader::Bearer => (
                    reqwest::header::AUTHORIZATION,
                    header_value(&format!("Bearer {}", key.expose()), "API key")?,
                ),
                AuthHeader::ApiKey => (
                    HeaderName::from_static("api-key"),
                    header_value(key.expose(), "API key")?,
                ),
            };
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(organization) = config
            .organization
            .as_deref()
            .filter(|value| !value.trim().is_empty())
        {
            headers.insert(
                HeaderName::from_static("openai-organization"),
                header_value(organization.trim(), "organization")?,
            );
        }
        if let Some(project) = config
            .project
            .as_deref()
            .filter(|value| !value.trim().is_empty())
        {
            headers.insert(
                HeaderName::from_static("openai-project"),
                header_value(project.trim(), "project")?,
            );
        }
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );

        let tls =
            rustls_config().map_err(|error| invalid(format!("failed to set up TLS: {error}")))?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("kalify/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(10_000)));
        if loopback {
            // A local server (vLLM, Ollama, a test server) is never reached through a proxy.
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|error| invalid(format!("failed to build the HTTP client: {error}")))?;

        Ok(Transport {
            client,
            url,
            headers,
            timeout: Duration::from_millis(config.timeout_ms),
            policy,
            jitter_counter: AtomicU64::new(0),
        })
    }

    /// Returns the endpoint URL, which carries no credentials.
    pub(crate) fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// Posts `body` and returns the parsed completion, retrying as the
    /// policy allows.
    ///
    /// # Errors
    /// See [`classify_status`]; transport failures are `Timeout` or
    /// `Unavailable`. A retryable error returned after the last attempt is
    /// [`Retry::Persistent`].
    pub(crate) async fn post(
        &self,
        body: Vec<u8>,
        operation: &'static str,
    ) -> Result<ChatResponse> {
        let mut attempt: u32 = 0;
        loop {
            let failure = match self.attempt(body.clone(), operation).await {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };

            let retry_allowed = failure.should_retry.unwrap_or(failure.error.is_retryable());
            if !retry_allowed {
                return Err(failure.error);
            }
            if attempt >= self.policy.max_retries {
                return Err(failure.error.into_persistent());
            }
            let delay = match failure.server_delay {
                Some(delay) if delay > self.policy.max_retry_wait => {
                    tracing::warn!(target: "kalify::ai", adapter = "openai", operation, attempt, delay_ms = delay.as_millis() as u64, "server asked for a longer wait than allowed; giving up");
                    return Err(failure.error.with_retry_after(delay));
                }
                Some(delay) => delay,
                None => self.backoff(attempt),
            };
            tracing::warn!(
                target: "kalify::ai",
                adapter = "openai",
                operation,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %failure.error,
                "model call failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        body: Vec<u8>,
        operation: &'static str,
    ) -> std::result::Result<ChatResponse, Failure> {
        let started = std::time::Instant::now();
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(|error| Failure::transport(error, self.timeout, operation))?;

        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| Failure::transport(error, self.timeout, operation))?;
        tracing::debug!(target: "kalify::ai", adapter = "openai", operation, status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "model call returned");

        if status.is_success() {
            return serde_json::from_slice::<ChatResponse>(&bytes).map_err(|error| Failure {
                error: Error::new(
                    ErrorKind::Unavailable,
                    "the server returned a body that is not a chat completion",
                )
                .with_adapter("openai")
                .with_operation(operation)
                .with_source(error),
                server_delay: None,
                should_retry: None,
            });
        }

        let api_error = ApiError::parse(&bytes);
        let error = classify_status(status.as_u16(), &api_error).with_operation(operation);
        let server_delay = server_delay(
            &headers,
            status.as_u16(),
            &api_error.message,
            SystemTime::now(),
        );
        let error = match server_delay {
            Some(delay) => error.with_retry_after(delay),
            None => error,
        };
        let should_retry = headers
            .get("x-should-retry")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| match value.trim() {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            })
            // A used-up billing quota stays permanent whatever the header requests.
            .filter(|_| !api_error.is_insufficient_quota());
        Err(Failure {
            error,
            server_delay,
            should_retry,
        })
    }

    /// Exponential backoff from the base delay, capped, with up to 25% jitter taken off.
    fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .policy
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        let capped = exponential.min(self.policy.backoff_max);
        let jitter = 1.0 - 0.25 * self.random_unit();
        capped.mul_f64(jitter)
    }

    /// Returns a number in [0, 1) from the standard library's randomly keyed hasher.
    fn random_unit(&self) -> f64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(self.jitter_counter.fetch_add(1, Ordering::Relaxed));
        (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A failed attempt with the server's retry instructions.
struct Failure {
    error: Error,
    server_delay: Option<Duration>,
    should_retry: Option<bool>,
}

impl Failure {
    fn transport(error: reqwest::Error, timeout: Duration, operation: &'static str) -> Failure {
        // The URL contains no secret, but it is dropped so logs stay short.
        let error = error.without_url();
        let mapped = if error.is_timeout() {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "the model server did not respond within {} ms",
                    timeout.as_millis()
                ),
            )
        } else if error.is_connect() {
            Error::new(
                ErrorKind::Unavailable,
                "failed to connect to the model server",
            )
        } else {
            Error::new(
                ErrorKind::Unavailable,
                "the connection to the model server failed",
            )
        };
        Failure {
            error: mapped
                .with_adapter("openai")
                .with_operation(operation)
                .with_source(error),
            server_delay: None,
            should_retry: None,
        }
    }
}

/// Maps an HTTP error status and body to an error.
///
/// | status | kind | retry |
/// |---|---|---|
/// | 400 context length | `InvalidInput` | permanent |
/// | 400, 413, 422 | `InvalidInput` | permanent |
/// | 401 | `Unauthenticated` | permanent |
/// | 403 | `PermissionDenied` | permanent |
/// | 404 | `ConfigInvalid` (wrong URL, model or deployment) | permanent |
/// | 408 | `Timeout` | temporary |
/// | 409 | `Unavailable` | temporary |
/// | 429 `insufficient_quota` | `RateLimited` | permanent |
/// | 429 | `RateLimited` | temporary |
/// | 5xx | `Unavailable` | temporary |
/// | other | `Unexpected` | permanent |
pub(crate) fn classify_status(status: u16, api_error: &ApiError) -> Error {
    let detail: String = api_error.message.chars().take(300).collect();
    let (kind, retry, message) = match status {
        400 | 413 | 422 if api_error.is_context_length() => (
            ErrorKind::InvalidInput,
            Retry::Permanent,
            "the request is longer than the model's context window; lower max_history_lines or max_message_chars".to_owned(),
        ),
        400 | 413 | 422 => (ErrorKind::InvalidInput, Retry::Permanent, format!("the server rejected the request: {detail}")),
        401 => (ErrorKind::Unauthenticated, Retry::Permanent, "the API key was rejected; check OPENAI_API_KEY".to_owned()),
        403 => (ErrorKind::PermissionDenied, Retry::Permanent, format!("the API key may not use this model or endpoint: {detail}")),
        404 => (
            ErrorKind::ConfigInvalid,
            Retry::Permanent,
            format!("the endpoint or model was not found; check the base URL, the model name or the Azure deployment: {detail}"),
        ),
        408 => (ErrorKind::Timeout, Retry::Temporary, "the server timed out reading the request".to_owned()),
        // Not ErrorKind::Conflict, which means a lost version race in kalify.
        409 => (ErrorKind::Unavailable, Retry::Temporary, format!("the server reported a conflict: {detail}")),
        429 if api_error.is_insufficient_quota() => (
            ErrorKind::RateLimited,
            Retry::Permanent,
            "the account's quota is used up; check the plan and billing details".to_owned(),
        ),
        429 => (ErrorKind::RateLimited, Retry::Temporary, format!("the server rate-limited the request: {detail}")),
        500..=599 => (ErrorKind::Unavailable, Retry::Temporary, format!("the server failed with status {status}")),
        _ => (ErrorKind::Unexpected, Retry::Permanent, format!("unexpected status {status}: {detail}")),
    };
    let mut error = Error::new(kind, message)
        .with_retry(retry)
        .with_adapter("openai")
        .with_context("status", status);
    if let Some(code) = &api_error.code {
        error = error.with_context("code", code);
    }
    error
}

/// The wait the server asked for, from the first of: `retry-after-ms`,
/// `Retry-After` (seconds or an HTTP date), on a 429 the
/// `x-ratelimit-reset-*` header of the exhausted limit, and on a 429 the
/// "try again in 1.5s" sentence of OpenAI's error message. Negative,
/// unparsable and non-finite values are ignored, and so are zero and dates
/// in the past, which leave the wait to the backoff.
pub(crate) fn server_delay(
    headers: &HeaderMap,
    status: u16,
    message: &str,
    now: SystemTime,
) -> Option<Duration> {
    requested_delay(headers, status, message, now).filter(|delay| !delay.is_zero())
}

fn requested_delay(
    headers: &HeaderMap,
    status: u16,
    message: &str,
    now: SystemTime,
) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };

    if let Some(delay) = header("retry-after-ms")
        .and_then(parse_seconds)
        .map(|ms| ms / 1000.0)
        .and_then(seconds_to_duration)
    {
        return Some(delay);
    }
    if let Some(value) = header("retry-after") {
        if let Some(delay) = parse_seconds(value).and_then(seconds_to_duration) {
            return Some(delay);
        }
        if let Ok(date) = chrono::DateTime::parse_from_rfc2822(value) {
            let at = SystemTime::from(date.with_timezone(&chrono::Utc));
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    if status != 429 {
        return None;
    }
    let reset =
        |limit: &str| header(&format!("x-ratelimit-reset-{limit}")).and_then(parse_go_duration);
    let exhausted = |limit: &str| header(&format!("x-ratelimit-remaining-{limit}")) == Some("0");
    let resets = [("requests", reset("requests")), ("tokens", reset("tokens"))];
    let exhausted_reset = resets
        .iter()
        .filter(|(limit, _)| exhausted(limit))
        .filter_map(|(_, delay)| *delay)
        .max();
    let any_reset = resets
        .iter()
        .filter_map(|(_, delay)| *delay)
        .filter(|delay| !delay.is_zero())
        .max();
    exhausted_reset
        .or(any_reset)
        .or_else(|| try_again_in(message))
}

fn parse_seconds(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
}

fn seconds_to_duration(seconds: f64) -> Option<Duration> {
    // Anything above a day is treated as invalid rather than obeyed.
    (seconds <= 86_400.0).then(|| Duration::from_secs_f64(seconds))
}

/// Parses the durations of OpenAI's `x-ratelimit-reset-*` headers, written
/// as Go prints them: `1s`, `6m0s`, `174ms`, `18.642s`, `1h2m3s`.
pub(crate) fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if number_end == 0 {
            return None;
        }
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 0.000_001,
            "ns" => 0.000_000_001,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_end..];
    }
    seconds_to_duration(total)
}

/// Reads "try again in 1.574s" or "try again in 174ms" from an error message.
fn try_again_in(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let start = lower.find("try again in ")? + "try again in ".len();
    let token: String = lower[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    parse_go_duration(token.trim_end_matches('.'))
}

/// rustls with the ring provider and the Mozilla roots of webpki-roots.
///
/// NOTE: rustls 0.23.48 deprecates the ring provider because it has no
/// post-quantum key exchange; ring is kept because aws-lc-rs, which has
/// one, needs a much heavier C build. Connections use classical X25519.
#[allow(deprecated)]
fn rustls_config() -> std::result::Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    /// Fri, 29 Sep 2023 16:26:37 GMT.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_696_004_797)
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let cases = [
            ("20", Some(20.0)),
            ("0", None),
            ("-10", None),
            ("1.5", Some(1.5)),
            ("Fri, 29 Sep 2023 16:26:57 GMT", Some(20.0)),
            ("Fri, 29 Sep 2023 16:26:27 GMT", None),
            ("99999999999999999999999999999999999", None),
            ("inf", None),
            ("nan", None),
            ("Zun, 29 Sep 2023 16:26:27 GMT", None),
            ("", None),
        ];
        for (value, expected) in cases {
            let delay = server_delay(&headers(&[("retry-after", value)]), 503, "", now());
            assert_eq!(
                delay.map(|delay| delay.as_secs_f64()),
                expected,
                "retry-after {value:?}"
            );
        }
    }

    #[test]
    fn retry_after_ms_wins() {
        let map = headers(&[("retry-after-ms", "1500"), ("retry-after", "20")]);
        assert_eq!(
            server_delay(&map, 429, "", now()),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn rate_limit_reset_of_exhausted_limit() {
        let map = headers(&[
            ("x-ratelimit-remaining-requests", "59"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(
            server_delay(&map, 429, "", now()),
            Some(Duration::from_secs(360))
        );
        assert_eq!(
            server_delay(&map, 500, "", now()),
            None,
            "reset headers count only on a 429"
        );
    }

    #[test]
    fn azure_degenerate_reset_is_ignored() {
        let map = headers(&[
            ("x-ratelimit-remaining-tokens", "-1"),
            ("x-ratelimit-reset-tokens", "0"),
        ]);
        assert_eq!(server_delay(&map, 429, "", now()), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("174ms"), Some(Duration::from_millis(174)));
        assert_eq!(
            parse_go_duration("18.642s"),
            Some(Duration::from_millis(18_642))
        );
        assert_eq!(parse_go_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration("5"), None);
    }

    #[test]
    fn try_again_sentence() {
        let message = "Rate limit reached for gpt-4.1 on tokens per min (TPM): Limit 30000. Please try again in 174ms. Visit https://platform.openai.com";
        assert_eq!(
            server_delay(&HeaderMap::new(), 429, message, now()),
            Some(Duration::from_millis(174))
        );
        let message = "Please try again in 1.574s. Visit the docs.";
        assert_eq!(
            server_delay(&HeaderMap::new(), 429, message, now()),
            Some(Duration::from_millis(1574))
        );
    }

    #[test]
    fn statuses_map_to_kinds() {
        let plain = ApiError::default();
        let quota = ApiError {
            code: Some("insufficient_quota".into()),
            ..ApiError::default()
        };
        let context = ApiError {
            code: Some("context_length_exceeded".into()),
            ..ApiError::default()
        };
        let cases = [
            (400, &context, ErrorKind::InvalidInput, Retry::Permanent),
            (400, &plain, ErrorKind::InvalidInput, Retry::Permanent),
            (401, &plain, ErrorKind::Unauthenticated, Retry::Permanent),
            (403, &plain, ErrorKind::PermissionDenied, Retry::Permanent),
            (404, &plain, ErrorKind::ConfigInvalid, Retry::Permanent),
            (408, &plain, ErrorKind::Timeout, Retry::Temporary),
            (409, &plain, ErrorKind::Unavailable, Retry::Temporary),
            (429, &quota, ErrorKind::RateLimited, Retry::Permanent),
            (429, &plain, ErrorKind::RateLimited, Retry::Temporary),
            (500, &plain, ErrorKind::Unavailable, Retry::Temporary),
            (503, &plain, ErrorKind::Unavailable, Retry::Temporary),
            (418, &plain, ErrorKind::Unexpected, Retry::Permanent),
        ];
        for (status, body, kind, retry) in cases {
            let error = classify_status(status, body);
            assert_eq!(error.kind(), kind, "status {status}");
            assert_eq!(error.retry(), retry, "status {status}");
        }
    }
}

//! Mapping of Graph API errors to kalify errors.
//!
//! The Graph API responds to a failed request with an HTTP status (400 for
//! most errors, including rate limits) and a body
//! `{"error": {"message", "type", "code", "error_subcode", "is_transient", "fbtrace_id"}}`.
//! The code and subcode decide the kind; the status decides only when they
//! are missing or unknown. Meta's message text is not copied into errors.

use std::time::Duration;

use kalify_core::{Error, ErrorKind, Retry};
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::http::status_error;

/// The adapter name in errors and logs.
pub(crate) const ADAPTER: &str = "messenger";

/// The body of a failed Graph API request.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub(crate) error: Option<GraphError>,
}

/// The `error` object of a failed Graph API request.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GraphError {
    pub(crate) code: Option<i64>,
    pub(crate) error_subcode: Option<i64>,
    pub(crate) is_transient: Option<bool>,
    pub(crate) fbtrace_id: Option<String>,
}

/// The subcode of a send outside the 24-hour standard messaging window.
const OUTSIDE_WINDOW_SUBCODE: i64 = 2018278;
/// The subcode of "No matching user found": the PSID is unknown to the page.
const NO_MATCHING_USER_SUBCODE: i64 = 2018001;
/// The subcode of "This person isn't available right now".
const UNAVAILABLE_PERSON_SUBCODE: i64 = 1545041;

/// Builds the error for a failed send.
pub(crate) fn send_error(
    status: u16,
    graph: Option<&GraphError>,
    retry_after: Option<Duration>,
) -> Error {
    let error = match graph.and_then(|graph| error_for_code(graph, retry_after)) {
        Some(error) => error,
        None => from_status(status, graph, retry_after),
    };
    let mut error = error
        .with_adapter(ADAPTER)
        .with_operation("send")
        .with_context("status", status);
    if let Some(graph) = graph {
        if let Some(code) = graph.code {
            error = error.with_context("graph_code", code);
        }
        if let Some(subcode) = graph.error_subcode {
            error = error.with_context("graph_subcode", subcode);
        }
        if let Some(trace) = &graph.fbtrace_id {
            error = error.with_context("fbtrace_id", trace);
        }
    }
    error
}

fn error_for_code(graph: &GraphError, retry_after: Option<Duration>) -> Option<Error> {
    let code = graph.code?;
    let subcode = graph.error_subcode;
    let error = match (code, subcode) {
        (190 | 102, _) => Error::new(ErrorKind::Unauthenticated, "Meta rejected the page access token; it expired or was revoked"),
        (_, Some(UNAVAILABLE_PERSON_SUBCODE)) | (551, _) => Error::new(
            ErrorKind::RecipientOptedOut,
            "the person is not receiving messages from this page; they blocked it or left Messenger",
        ),
        (10, Some(OUTSIDE_WINDOW_SUBCODE)) => Error::new(
            ErrorKind::PermissionDenied,
            "Meta rejected the message: it is outside the messaging window of the person's last message",
        )
        .with_context("reason", "messenger_window_closed"),
        (100, Some(NO_MATCHING_USER_SUBCODE)) => {
            Error::new(ErrorKind::InvalidInput, "no Messenger user matches the recipient's page-scoped id")
                .with_context("contact_point", "invalid")
        }
        (4 | 17 | 32 | 613, _) | (9, Some(2018352)) => {
            let error = Error::new(ErrorKind::RateLimited, "Meta throttled the request");
            match retry_after {
                Some(delay) => error.with_retry_after(delay),
                None => error,
            }
        }
        (2, Some(2018344)) => Error::new(
            ErrorKind::PermissionDenied,
            "Meta rejected the message: the page has not accepted the Messenger privacy terms",
        ),
        (1 | 2 | 1200, _) => {
            let error = Error::new(ErrorKind::Unavailable, "Meta failed to send the message for now");
            match retry_after {
                Some(delay) => error.with_retry_after(delay),
                None => error,
            }
        }
        (10 | 200..=299, _) => Error::new(ErrorKind::PermissionDenied, "Meta rejected the message for this page or app"),
        (368, _) => Error::new(ErrorKind::PermissionDenied, "Meta temporarily blocked the page for policy violations"),
        (100, _) => Error::new(ErrorKind::InvalidInput, "Meta rejected a parameter of the message"),
        _ if graph.is_transient == Some(true) => {
            Error::new(ErrorKind::Unavailable, "Meta reported a transient failure").with_retry(Retry::Temporary)
        }
        _ => return None,
    };
    Some(error)
}

fn from_status(status: u16, graph: Option<&GraphError>, retry_after: Option<Duration>) -> Error {
    let error = status_error(status, retry_after);
    if graph.is_some() && (400..500).contains(&status) && !matches!(status, 408 | 409 | 429) {
        return error.with_retry(Retry::Permanent);
    }
    error
}

/// Returns the delay Meta requests in `X-Business-Use-Case-Usage`: the
/// largest `estimated_time_to_regain_access`, in minutes, of any entry.
pub(crate) fn business_use_case_delay(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("x-business-use-case-usage")?.to_str().ok()?;
    let usage: serde_json::Value = serde_json::from_str(value).ok()?;
    let minutes = usage
        .as_object()?
        .values()
        .filter_map(serde_json::Value::as_array)
        .flatten()
        .filter_map(|entry| entry.get("estimated_time_to_regain_access")?.as_u64())
        .max()?;
    (minutes > 0)
        .then(|| Duration::from_secs(minutes.saturating_mul(60)).min(crate::http::MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn context<'a>(error: &'a kalify_core::Error, key: &str) -> Option<&'a str> {
        error
            .context()
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_str())
    }

    fn graph(code: i64, subcode: Option<i64>) -> GraphError {
        GraphError {
            code: Some(code),
            error_subcode: subcode,
            is_transient: None,
            fbtrace_id: Some("Trace1".into()),
        }
    }

    #[test]
    fn documented_codes() {
        let cases = [
            (190, None, ErrorKind::Unauthenticated, false),
            (10, Some(2018278), ErrorKind::PermissionDenied, false),
            (100, Some(2018001), ErrorKind::InvalidInput, false),
            (100, None, ErrorKind::InvalidInput, false),
            (551, Some(1545041), ErrorKind::RecipientOptedOut, false),
            (200, Some(1545041), ErrorKind::RecipientOptedOut, false),
            (4, None, ErrorKind::RateLimited, true),
            (4, Some(2018354), ErrorKind::RateLimited, true),
            (17, None, ErrorKind::RateLimited, true),
            (32, None, ErrorKind::RateLimited, true),
            (613, None, ErrorKind::RateLimited, true),
            (9, Some(2018352), ErrorKind::RateLimited, true),
            (1, Some(99), ErrorKind::Unavailable, true),
            (2, None, ErrorKind::Unavailable, true),
            (2, Some(2018344), ErrorKind::PermissionDenied, false),
            (1200, None, ErrorKind::Unavailable, true),
        ];
        for (code, subcode, kind, retryable) in cases {
            let error = send_error(400, Some(&graph(code, subcode)), None);
            assert_eq!(error.kind(), kind, "{code}/{subcode:?}");
            assert_eq!(error.is_retryable(), retryable, "{code}/{subcode:?}");
        }
    }

    #[test]
    fn window_error_is_marked() {
        let error = send_error(400, Some(&graph(10, Some(2018278))), None);
        assert_eq!(context(&error, "reason"), Some("messenger_window_closed"));
        assert_eq!(context(&error, "fbtrace_id"), Some("Trace1"));
    }

    #[test]
    fn invalid_recipient_marks_contact_point() {
        let error = send_error(400, Some(&graph(100, Some(2018001))), None);
        assert_eq!(context(&error, "contact_point"), Some("invalid"));
    }

    #[test]
    fn unknown_codes_follow_status_and_transience() {
        assert_eq!(
            send_error(500, Some(&graph(99999, None)), None).kind(),
            ErrorKind::Unavailable
        );
        assert!(!send_error(400, Some(&graph(99999, None)), None).is_retryable());
        let transient = GraphError {
            code: Some(99999),
            is_transient: Some(true),
            ..GraphError::default()
        };
        assert!(send_error(400, Some(&transient), None).is_retryable());
        assert_eq!(
            send_error(429, None, Some(Duration::from_secs(3))).retry_after(),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn business_use_case_header() {
        let mut headers = HeaderMap::new();
        let usage = r#"{"1234":[{"type":"messenger","call_count":100,"estimated_time_to_regain_access":5},{"type":"pages","estimated_time_to_regain_access":2}]}"#;
        headers.insert("x-business-use-case-usage", HeaderValue::from_static(usage));
        assert_eq!(
            business_use_case_delay(&headers),
            Some(Duration::from_secs(300))
        );
        headers.insert(
            "x-business-use-case-usage",
            HeaderValue::from_static(r#"{"1":[{"estimated_time_to_regain_access":0}]}"#),
        );
        assert_eq!(business_use_case_delay(&headers), None);
        assert_eq!(business_use_case_delay(&HeaderMap::new()), None);
    }
}

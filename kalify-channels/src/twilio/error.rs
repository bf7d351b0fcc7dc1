//! Mapping of Twilio's REST API errors to kalify errors.
//!
//! Twilio responds to a failed request with an HTTP status and a JSON body
//! `{"code": 21211, "message": "…", "more_info": "…", "status": 400}`. The
//! numeric code is more precise than the status, so it decides the kind
//! when it is known; the status decides otherwise. Twilio's message text is
//! never copied into the error, because it often quotes the phone number.

use std::time::Duration;

use kalify_core::{Error, ErrorKind, Retry};

use super::wire::ErrorBody;
use crate::http::status_error;

/// The adapter name in errors and logs.
pub(crate) const ADAPTER: &str = "twilio";

/// Builds the error for a failed send from the HTTP status, the parsed error
/// body (if it parsed) and the `Retry-After` delay.
pub(crate) fn send_error(
    status: u16,
    body: Option<&ErrorBody>,
    retry_after: Option<Duration>,
) -> Error {
    let code = body.and_then(|body| body.code);
    let error = match code.and_then(|code| error_for_code(code, retry_after)) {
        Some(error) => error,
        None => from_status(status, retry_after),
    };
    let mut error = error.with_adapter(ADAPTER).with_operation("send");
    if !error.context().iter().any(|(key, _)| *key == "status") {
        error = error.with_context("status", status);
    }
    if let Some(code) = code {
        error = error.with_context("twilio_code", code);
    }
    error
}

/// Builds the error for a Twilio error code whose meaning is known, or returns `None`.
fn error_for_code(code: u32, retry_after: Option<Duration>) -> Option<Error> {
    let error = match code {
        // The recipient replied STOP (or another opt-out keyword) to this sender.
        21610 => Error::new(
            ErrorKind::RecipientOptedOut,
            "the recipient unsubscribed from this sender (Twilio 21610)",
        ),
        // 21211: invalid 'To' number; 21614: 'To' is not a mobile number.
        21211 | 21614 => Error::new(
            ErrorKind::InvalidInput,
            "the recipient's number cannot receive SMS",
        )
        .with_context("contact_point", "invalid"),
        // The 'To' number is not reachable by SMS (landline, unknown carrier).
        21612 => Error::new(
            ErrorKind::InvalidInput,
            "the recipient's number is not reachable by SMS",
        )
        .with_context("contact_point", "unreachable"),
        // Sending to the recipient's country is not enabled on the account.
        21408 => Error::new(
            ErrorKind::PermissionDenied,
            "the Twilio account may not send SMS to this region; enable it in the geographic permissions",
        ),
        // 21606: 'From' cannot send to this destination; 21659/21660: 'From'
        // is not a Twilio number of the account.
        21606 | 21659 | 21660 => Error::new(
            ErrorKind::ConfigInvalid,
            "the configured sender cannot send this message; check the From number or Messaging Service",
        ),
        // Body longer than 1600 characters.
        21617 => Error::new(
            ErrorKind::ContentRejected,
            "the text exceeds Twilio's limit of 1600 characters",
        ),
        // 20003: authentication failed; 20005: the account is suspended.
        20003 | 20005 => Error::new(
            ErrorKind::Unauthenticated,
            "Twilio rejected the account SID or auth token",
        ),
        // 20429: too many concurrent requests; 14107: SMS rate limit of the account.
        20429 | 14107 => {
            let error = Error::new(ErrorKind::RateLimited, "Twilio throttled the request");
            match retry_after {
                Some(delay) => error.with_retry_after(delay),
                None => error,
            }
        }
        _ => return None,
    };
    Some(error)
}

/// Builds the error for a status whose Twilio code is missing or not known.
/// 401 and 403 are `Unauthenticated`, because Twilio returns both for bad
/// credentials. The other statuses follow [`status_error`].
fn from_status(status: u16, retry_after: Option<Duration>) -> Error {
    match status {
        401 | 403 => Error::new(
            ErrorKind::Unauthenticated,
            "Twilio rejected the account SID or auth token",
        ),
        404 => Error::new(
            ErrorKind::ConfigInvalid,
            "Twilio has no such account; check the account SID and base URL",
        ),
        _ => {
            let error = status_error(status, retry_after);
            // Other 4xx are permanent in any case; only 408, 409 and 429 retry.
            if (400..500).contains(&status) && !matches!(status, 408 | 409 | 429) {
                error.with_retry(Retry::Permanent)
            } else {
                error
            }
        }
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

    fn body(code: u32) -> ErrorBody {
        ErrorBody { code: Some(code) }
    }

    #[test]
    fn opted_out_code() {
        let error = send_error(400, Some(&body(21610)), None);
        assert_eq!(error.kind(), ErrorKind::RecipientOptedOut);
        assert_eq!(error.retry(), Retry::Permanent);
        assert_eq!(context(&error, "twilio_code"), Some("21610"));
    }

    #[test]
    fn invalid_number_codes_mark_contact_point() {
        for code in [21211, 21614] {
            let error = send_error(400, Some(&body(code)), None);
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{code}");
            assert_eq!(error.retry(), Retry::Permanent, "{code}");
            assert_eq!(context(&error, "contact_point"), Some("invalid"), "{code}");
        }
    }

    #[test]
    fn throttling_honours_retry_after() {
        let delay = Some(Duration::from_secs(4));
        let by_status = send_error(429, None, delay);
        assert_eq!(by_status.kind(), ErrorKind::RateLimited);
        assert_eq!(by_status.retry_after(), delay);
        let by_code = send_error(429, Some(&body(20429)), delay);
        assert_eq!(by_code.kind(), ErrorKind::RateLimited);
        assert_eq!(by_code.retry_after(), delay);
        assert!(by_code.is_retryable());
    }

    #[test]
    fn server_errors_retry() {
        for status in [500, 502, 503] {
            let error = send_error(status, None, None);
            assert_eq!(error.kind(), ErrorKind::Unavailable, "{status}");
            assert!(error.is_retryable(), "{status}");
        }
    }

    #[test]
    fn credentials_errors() {
        for status in [401, 403] {
            assert_eq!(
                send_error(status, None, None).kind(),
                ErrorKind::Unauthenticated,
                "{status}"
            );
        }
        assert_eq!(
            send_error(401, Some(&body(20003)), None).kind(),
            ErrorKind::Unauthenticated
        );
    }

    #[test]
    fn other_client_errors_are_permanent() {
        let error = send_error(400, Some(&body(21602)), None);
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert_eq!(error.retry(), Retry::Permanent);
        assert_eq!(send_error(404, None, None).kind(), ErrorKind::ConfigInvalid);
        assert!(!send_error(418, None, None).is_retryable());
    }

    #[test]
    fn known_codes_override_status() {
        assert_eq!(
            send_error(400, Some(&body(21408)), None).kind(),
            ErrorKind::PermissionDenied
        );
        assert_eq!(
            send_error(400, Some(&body(21606)), None).kind(),
            ErrorKind::ConfigInvalid
        );
        assert_eq!(
            send_error(400, Some(&body(21617)), None).kind(),
            ErrorKind::ContentRejected
        );
        assert_eq!(
            send_error(400, Some(&body(21612)), None).kind(),
            ErrorKind::InvalidInput
        );
    }
}

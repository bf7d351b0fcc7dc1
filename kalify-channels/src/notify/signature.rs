//! Signatures of webhook notifications.
//!
//! The notifier sends the request time in `X-Kalify-Timestamp` (unix
//! seconds) and `X-Kalify-Signature: v1=<hex>`, the lower-case hex
//! HMAC-SHA256 of `"<timestamp>.<body>"` under the shared secret. Signing
//! the time with the body lets a receiver reject a request replayed after
//! the tolerance it allows.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use kalify_core::{Error, ErrorKind, Result, Secret, Timestamp};
use sha2::Sha256;

use crate::http::{hex_decode, hex_encode};

/// The header that carries the request time, in unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Kalify-Timestamp";

/// The header that carries the signature, `v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Kalify-Signature";

/// The maximum age of a request that [`verify_signature`] callers usually
/// accept: five minutes, in either direction to allow for clock skew.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The version prefix of the current signature scheme.
const VERSION_PREFIX: &str = "v1=";

/// Returns the `X-Kalify-Signature` value of `body` sent at `timestamp`
/// (unix seconds): `v1=` and the lower-case hex HMAC-SHA256 of
/// `"<timestamp>.<body>"` under `secret`.
pub fn compute_signature(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("{VERSION_PREFIX}{}", hex_encode(&tag))
}

/// Checks a webhook notification: the signature must match `body` and
/// `timestamp` under `secret`, and the timestamp must lie within
/// `tolerance` of `now`.
///
/// `timestamp` and `header` are the values of [`TIMESTAMP_HEADER`] and
/// [`SIGNATURE_HEADER`], and `body` the raw request body, before any JSON
/// parsing. The header may list several comma-separated `v1=` values, so
/// that a sender can sign with an old and a new secret during a rotation.
/// One match is enough, and entries of other versions are skipped. The
/// HMAC comparison runs in constant time.
///
/// ```
/// use std::time::Duration;
/// use kalify_channels::notify::{compute_signature, verify_signature};
/// use kalify_core::Secret;
///
/// let secret = Secret::new("a shared secret of at least thirty-two bytes");
/// let body = br#"{"text":"A prospect is qualified"}"#;
/// let now = chrono::Utc::now();
/// let header = compute_signature(&secret, now.timestamp(), body);
///
/// let timestamp = now.timestamp().to_string();
/// assert!(verify_signature(&secret, &timestamp, body, &header, now, Duration::from_secs(300)).is_ok());
/// assert!(verify_signature(&secret, &timestamp, b"{}", &header, now, Duration::from_secs(300)).is_err());
/// ```
///
/// # Errors
/// `Unauthenticated` when the timestamp is not unix seconds, the header has
/// no `v1=` value that matches, or the timestamp is further than
/// `tolerance` from `now`. The message names the failed check.
pub fn verify_signature(
    secret: &Secret,
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: Timestamp,
    tolerance: Duration,
) -> Result<()> {
    let timestamp = timestamp.trim();
    let seconds = parse_unix_seconds(timestamp)
        .ok_or_else(|| rejected(format!("invalid {TIMESTAMP_HEADER}: expected unix seconds")))?;

    let expected = mac(secret, timestamp, body);
    let matched = header
        .split(',')
        .filter_map(|entry| entry.trim().strip_prefix(VERSION_PREFIX))
        .filter_map(hex_decode)
        .any(|presented| expected.clone().verify_slice(&presented).is_ok());
    if !matched {
        return Err(rejected(format!(
            "the {SIGNATURE_HEADER} header is missing a v1 signature that matches the body and timestamp"
        )));
    }

    let age = now.timestamp().saturating_sub(seconds);
    let tolerance_secs = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if age.saturating_abs() > tolerance_secs {
        return Err(rejected(format!(
            "the {TIMESTAMP_HEADER} is further than the tolerance from the current time; the request may be a replay"
        ))
        .with_context("age_secs", age)
        .with_context("tolerance_secs", tolerance_secs));
    }
    Ok(())
}

/// Parses decimal unix seconds: ASCII digits with an optional leading `-`,
/// nothing else.
fn parse_unix_seconds(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn mac(secret: &Secret, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn rejected(message: String) -> Error {
    Error::new(ErrorKind::Unauthenticated, message)
        .with_adapter("webhook")
        .with_operation("verify_signature")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SECRET: &str = "webhook-secret-of-thirty-two-bytes!!";

    fn at(seconds: i64) -> Timestamp {
        chrono::Utc.timestamp_opt(seconds, 0).single().unwrap()
    }

    #[test]
    fn signature_covers_timestamp_and_body() {
        let secret = Secret::new(SECRET);
        let header = compute_signature(&secret, 1_700_000_000, b"{}");
        assert!(header.starts_with("v1="));
        assert_eq!(header.len(), 3 + 64);
        assert_ne!(header, compute_signature(&secret, 1_700_000_001, b"{}"));
        assert_ne!(header, compute_signature(&secret, 1_700_000_000, b"{ }"));
    }

    #[test]
    fn verify_accepts_upper_case_hex_and_lists() {
        let secret = Secret::new(SECRET);
        let now = at(1_700_000_000);
        let header = compute_signature(&secret, 1_700_000_000, b"{}");
        let upper = format!("v1={}", header[3..].to_ascii_uppercase());
        assert!(
            verify_signature(&secret, "1700000000", b"{}", &upper, now, DEFAULT_TOLERANCE).is_ok()
        );
        let listed = format!("v0=abcd, v1={}, {header}", "00".repeat(32));
        assert!(
            verify_signature(
                &secret,
                "1700000000",
                b"{}",
                &listed,
                now,
                DEFAULT_TOLERANCE
            )
            .is_ok()
        );
    }

    #[test]
    fn verify_rejects_malformed_values() {
        let secret = Secret::new(SECRET);
        let now = at(1_700_000_000);
        let header = compute_signature(&secret, 1_700_000_000, b"{}");
        for timestamp in ["", "abc", "1700000000.5", "+1700000000", "1e9"] {
            let error =
                verify_signature(&secret, timestamp, b"{}", &header, now, DEFAULT_TOLERANCE)
                    .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Unauthenticated, "{timestamp:?}");
            assert!(
                error.message().contains("unix seconds"),
                "{timestamp:?}: {error}"
            );
        }
        for header in ["", "v1=", "v1=zz", "sha256=00", &header[3..]] {
            let error =
                verify_signature(&secret, "1700000000", b"{}", header, now, DEFAULT_TOLERANCE)
                    .unwrap_err();
            assert!(
                error.message().contains("v1 signature"),
                "{header:?}: {error}"
            );
        }
    }

    #[test]
    fn verify_rejects_future_timestamp() {
        let secret = Secret::new(SECRET);
        let header = compute_signature(&secret, 1_700_001_000, b"{}");
        let error = verify_signature(
            &secret,
            "1700001000",
            b"{}",
            &header,
            at(1_700_000_000),
            DEFAULT_TOLERANCE,
        )
        .unwrap_err();
        assert!(error.message().contains("tolerance"), "{error}");
        assert!(
            verify_signature(
                &secret,
                "1700000300",
                b"{}",
                &compute_signature(&secret, 1_700_000_300, b"{}"),
                at(1_700_000_000),
                DEFAULT_TOLERANCE
            )
            .is_ok()
        );
    }
}

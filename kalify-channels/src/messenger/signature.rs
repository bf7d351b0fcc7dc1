//! The `X-Hub-Signature-256` header of Meta's webhooks and the GET
//! subscription handshake.
//!
//! Meta signs each webhook with the app secret:
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, body)>`, over
//! the raw body bytes as sent. Meta escapes non-ASCII characters in the
//! JSON it signs (`é` as `\u00e9`), so the signature must be checked on the
//! bytes received, never on JSON serialised again.

use hmac::{Hmac, KeyInit, Mac};
use kalify_core::{Error, ErrorKind};
use sha2::Sha256;

use super::error::ADAPTER;
use crate::http::{constant_time_eq, hex_decode, hex_encode};

/// The prefix of the header value.
const PREFIX: &str = "sha256=";

/// Computes the `X-Hub-Signature-256` value of `body`: `sha256=` and the
/// lower-case hex HMAC-SHA256.
pub fn compute_signature(app_secret: &str, body: &[u8]) -> String {
    format!("{PREFIX}{}", hex_encode(&mac(app_secret, body)))
}

/// Checks an `X-Hub-Signature-256` value against the raw `body`, in
/// constant time. The value must start with `sha256=`; its hex digits may
/// be of either case.
pub fn verify_signature(app_secret: &str, header_value: &str, body: &[u8]) -> bool {
    let value = header_value.trim();
    let Some(prefix) = value.get(..PREFIX.len()) else {
        return false;
    };
    if !prefix.eq_ignore_ascii_case(PREFIX) {
        return false;
    }
    let Some(claimed) = hex_decode(&value[PREFIX.len()..]) else {
        return false;
    };
    let computed = mac(app_secret, body);
    !computed.is_empty() && constant_time_eq(&computed, &claimed)
}

fn mac(app_secret: &str, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; an empty result matches nothing.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(app_secret.as_bytes()) else {
        return Vec::new();
    };
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks Meta's GET subscription handshake and returns `hub.challenge`,
/// to send back as a `text/plain` 200 body, when `hub.mode` is `subscribe` and
/// `hub.verify_token` equals `verify_token` (compared in constant time).
///
/// `query` contains the decoded query parameters. Names written with `_`
/// instead of `.` (`hub_mode`), as PHP-style frameworks rewrite them, are
/// accepted too.
///
/// # Errors
/// - `Unauthenticated` when the verify token is missing or differs (respond 403);
/// - `InvalidInput` when `hub.mode` is not `subscribe`, or the challenge is
///   missing or contains characters other than ASCII letters, digits, `-`,
///   `_` and `.`, or more than 256 of them (respond 400). The limit keeps the
///   echoed value from carrying markup.
pub fn verify_subscription(
    verify_token: &str,
    query: &[(String, String)],
) -> Result<String, Error> {
    let param = |name: &str| {
        let underscored = name.replace('.', "_");
        query
            .iter()
            .find(|(key, _)| key == name || *key == underscored)
            .map(|(_, value)| value.as_str())
    };
    let invalid = |message: &str| {
        Error::new(ErrorKind::InvalidInput, message.to_owned())
            .with_adapter(ADAPTER)
            .with_operation("verify_subscription")
    };

    let token_matches = match param("hub.verify_token") {
        Some(token) => {
            !verify_token.is_empty() && constant_time_eq(token.as_bytes(), verify_token.as_bytes())
        }
        None => false,
    };
    if !token_matches {
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            "subscription rejected: the verify token is missing or wrong",
        )
        .with_adapter(ADAPTER)
        .with_operation("verify_subscription"));
    }
    if param("hub.mode") != Some("subscribe") {
        return Err(invalid("subscription rejected: hub.mode must be subscribe"));
    }
    let challenge = param("hub.challenge").unwrap_or_default();
    let well_formed = !challenge.is_empty()
        && challenge.len() <= 256
        && challenge
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'));
    if !well_formed {
        return Err(invalid(
            "subscription rejected: hub.challenge is missing or malformed",
        ));
    }
    Ok(challenge.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn signature_over_raw_bytes_with_accents_and_emoji() {
        let body = "{\"text\":\"Très intéressé 😀\"}".as_bytes();
        let header = compute_signature("app-secret", body);
        assert!(header.starts_with("sha256="));
        assert!(verify_signature("app-secret", &header, body));
        assert!(verify_signature(
            "app-secret",
            &header.to_uppercase().replacen("SHA256=", "sha256=", 1),
            body
        ));
        assert!(!verify_signature("other", &header, body));

        // The escaped form Meta signs is other bytes with another signature.
        let escaped = br#"{"text":"Tr\u00e8s int\u00e9ress\u00e9 \ud83d\ude00"}"#;
        assert!(!verify_signature("app-secret", &header, escaped));
        assert!(verify_signature(
            "app-secret",
            &compute_signature("app-secret", escaped),
            escaped
        ));
    }

    #[test]
    fn malformed_headers_are_invalid() {
        let body = b"{}";
        for header in [
            "",
            "sha256=",
            "sha256=zz",
            "sha1=1c99183cb7c44ea27fb834746086b65b89800db8",
            "sha256!!!",
            "abc",
        ] {
            assert!(!verify_signature("secret", header, body), "{header:?}");
        }
    }

    #[test]
    fn subscription_returns_challenge() {
        let challenge = verify_subscription(
            "meatyhamhock",
            &query(&[
                ("hub.mode", "subscribe"),
                ("hub.challenge", "1158201444"),
                ("hub.verify_token", "meatyhamhock"),
            ]),
        )
        .unwrap();
        assert_eq!(challenge, "1158201444");
        let underscored = verify_subscription(
            "t",
            &query(&[
                ("hub_mode", "subscribe"),
                ("hub_challenge", "abc"),
                ("hub_verify_token", "t"),
            ]),
        );
        assert_eq!(underscored.unwrap(), "abc");
    }

    #[test]
    fn subscription_rejections() {
        let wrong = verify_subscription(
            "t",
            &query(&[
                ("hub.mode", "subscribe"),
                ("hub.challenge", "1"),
                ("hub.verify_token", "x"),
            ]),
        );
        assert_eq!(wrong.unwrap_err().kind(), ErrorKind::Unauthenticated);
        let missing = verify_subscription(
            "t",
            &query(&[("hub.mode", "subscribe"), ("hub.challenge", "1")]),
        );
        assert_eq!(missing.unwrap_err().kind(), ErrorKind::Unauthenticated);
        let mode = verify_subscription(
            "t",
            &query(&[
                ("hub.mode", "unsubscribe"),
                ("hub.challenge", "1"),
                ("hub.verify_token", "t"),
            ]),
        );
        assert_eq!(mode.unwrap_err().kind(), ErrorKind::InvalidInput);
        let markup = verify_subscription(
            "t",
            &query(&[
                ("hub.mode", "subscribe"),
                ("hub.challenge", "<b>x</b>"),
                ("hub.verify_token", "t"),
            ]),
        );
        assert_eq!(markup.unwrap_err().kind(), ErrorKind::InvalidInput);
        let empty_token = verify_subscription(
            "",
            &query(&[
                ("hub.mode", "subscribe"),
                ("hub.challenge", "1"),
                ("hub.verify_token", ""),
            ]),
        );
        assert_eq!(empty_token.unwrap_err().kind(), ErrorKind::Unauthenticated);
    }
}

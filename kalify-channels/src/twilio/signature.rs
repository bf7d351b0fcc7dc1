//! Validation of the `X-Twilio-Signature` header of Twilio's webhooks.
//!
//! Twilio signs each request with the account's auth token:
//! `base64(HMAC-SHA1(auth_token, url + key1 + value1 + key2 + value2 …))`,
//! where `url` is the full URL Twilio called, query string included, and
//! the POST parameters are sorted by key and then by value. A request with
//! a JSON body instead carries `bodySHA256=<hex SHA-256 of the body>` in its
//! query string and is signed over the URL alone.
//!
//! The URL a web server reconstructs may differ from the one Twilio signed
//! in ways that do not change its meaning. So, as Twilio's official
//! validators do, a signature is accepted when it matches the URL as given,
//! the URL without its port, or the URL with the scheme's default port
//! added. An apostrophe and its percent-encoding `%27` are treated alike.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::http::{constant_time_eq, hex_decode, query_pairs};

/// The query parameter that carries the hex SHA-256 of a JSON body.
const BODY_HASH_PARAM: &str = "bodySHA256";

/// Computes the `X-Twilio-Signature` of a request to `url` with form
/// parameters `params`, exactly as given (no URL variants).
///
/// Pairs are sorted by key, then by value, and exact duplicate pairs count
/// once, as in Twilio's official validators.
pub fn compute_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(signature_bytes(auth_token, url, &sorted_params(params)))
}

/// Checks the `X-Twilio-Signature` value `signature` of a form-encoded (or
/// GET) request to `url` with parameters `params`, in constant time per
/// candidate URL. See the module documentation for the URL forms accepted.
///
/// An empty or malformed signature is invalid.
pub fn validate_request(
    auth_token: &str,
    signature: &str,
    url: &str,
    params: &[(String, String)],
) -> bool {
    let Some(expected) = decode_signature(signature) else {
        return false;
    };
    let params = sorted_params(params);
    matches_any_url(auth_token, &expected, url, &params)
}

/// Checks the `X-Twilio-Signature` value `signature` of a request with a
/// raw (JSON) body: `url` must carry `bodySHA256`, equal to the hex SHA-256
/// of `body`, and the signature must match the URL alone.
///
/// A request whose URL lacks `bodySHA256` is invalid here; validate a
/// form-encoded body with [`validate_request`] on its parameters.
pub fn validate_request_with_body(
    auth_token: &str,
    signature: &str,
    url: &str,
    body: &[u8],
) -> bool {
    let Some(expected) = decode_signature(signature) else {
        return false;
    };
    let Some(claimed) = body_hash_param(url).and_then(|hex| hex_decode(&hex)) else {
        return false;
    };
    let actual = Sha256::digest(body);
    if !constant_time_eq(&claimed, actual.as_slice()) {
        return false;
    }
    matches_any_url(auth_token, &expected, url, &[])
}

/// Returns the `bodySHA256` query parameter of `url`, if any.
pub(crate) fn body_hash_param(url: &str) -> Option<String> {
    query_pairs(url)
        .into_iter()
        .find(|(key, _)| key == BODY_HASH_PARAM)
        .map(|(_, value)| value)
}

fn decode_signature(signature: &str) -> Option<Vec<u8>> {
    let signature = signature.trim();
    if signature.is_empty() {
        return None;
    }
    STANDARD.decode(signature).ok()
}

fn matches_any_url(
    auth_token: &str,
    expected: &[u8],
    url: &str,
    params: &[(String, String)],
) -> bool {
    if expected.is_empty() {
        return false;
    }
    let mut matched = false;
    for candidate in url_candidates(url) {
        let computed = signature_bytes(auth_token, &candidate, params);
        // Every candidate is computed and compared, so the time taken does
        // not tell which form matched.
        matched |= constant_time_eq(&computed, expected);
    }
    matched
}

fn signature_bytes(auth_token: &str, url: &str, params: &[(String, String)]) -> Vec<u8> {
    // HMAC accepts keys of any length; an empty result would match nothing.
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(auth_token.as_bytes()) else {
        return Vec::new();
    };
    mac.update(url.as_bytes());
    for (key, value) in params {
        mac.update(key.as_bytes());
        mac.update(value.as_bytes());
    }
    mac.finalize().into_bytes().to_vec()
}

fn sorted_params(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut sorted = params.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
}

/// Lists the URL forms a signature may have been computed over: as given,
/// with the port removed, and with the default port added, each with `'`
/// and `%27` in both spellings, without duplicates.
fn url_candidates(url: &str) -> Vec<String> {
    let mut spellings = vec![
        url.to_owned(),
        url.replace('\'', "%27"),
        url.replace("%27", "'"),
    ];
    spellings.dedup();

    let mut candidates: Vec<String> = Vec::new();
    for spelling in spellings {
        for form in [
            Some(spelling.clone()),
            without_port(&spelling),
            with_default_port(&spelling),
        ]
        .into_iter()
        .flatten()
        {
            if !candidates.contains(&form) {
                candidates.push(form);
            }
        }
    }
    candidates
}

/// The parts of an absolute URL around its port: everything up to the end
/// of the host, the port digits if any, and the rest (path, query, fragment).
struct Authority<'a> {
    scheme: &'a str,
    before_port: &'a str,
    port: Option<&'a str>,
    rest: &'a str,
}

fn split_authority(url: &str) -> Option<Authority<'_>> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    let authority_start = scheme_end + 3;
    let authority_len = url[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - authority_start);
    let authority_end = authority_start + authority_len;
    let authority = &url[authority_start..authority_end];

    // The host starts after any user information.
    let host_start = authority.rfind('@').map_or(0, |at| at + 1);
    let host_port = &authority[host_start..];
    // An IPv6 literal is bracketed and contains colons of its own.
    let search_from = host_port.rfind(']').unwrap_or(0);
    let port_colon = host_port[search_from..]
        .rfind(':')
        .map(|index| search_from + index);

    let (host_end, port) = match port_colon {
        Some(colon)
            if host_port[colon + 1..]
                .bytes()
                .all(|byte| byte.is_ascii_digit()) =>
        {
            (
                authority_start + host_start + colon,
                Some(&host_port[colon + 1..]),
            )
        }
        _ => (authority_end, None),
    };
    Some(Authority {
        scheme,
        before_port: &url[..host_end],
        port,
        rest: &url[authority_end..],
    })
}

fn without_port(url: &str) -> Option<String> {
    let parts = split_authority(url)?;
    parts.port?;
    Some(format!("{}{}", parts.before_port, parts.rest))
}

fn with_default_port(url: &str) -> Option<String> {
    let parts = split_authority(url)?;
    if parts.port.is_some() {
        return None;
    }
    let port = match parts.scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return None,
    };
    Some(format!("{}:{port}{}", parts.before_port, parts.rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn port_forms() {
        assert_eq!(
            without_port("https://a.example:8443/p?q=1").as_deref(),
            Some("https://a.example/p?q=1")
        );
        assert_eq!(without_port("https://a.example/p"), None);
        assert_eq!(
            with_default_port("https://a.example/p").as_deref(),
            Some("https://a.example:443/p")
        );
        assert_eq!(
            with_default_port("http://a.example?x=1").as_deref(),
            Some("http://a.example:80?x=1")
        );
        assert_eq!(with_default_port("https://a.example:1/p"), None);
    }

    #[test]
    fn port_forms_skip_user_information() {
        assert_eq!(
            with_default_port("https://user:pass@a.example/p").as_deref(),
            Some("https://user:pass@a.example:443/p")
        );
        assert_eq!(without_port("https://user:pass@a.example/p"), None);
        assert_eq!(
            without_port("https://user:pass@a.example:99/p").as_deref(),
            Some("https://user:pass@a.example/p")
        );
    }

    #[test]
    fn port_forms_handle_ipv6() {
        assert_eq!(
            without_port("http://[::1]:8080/hook").as_deref(),
            Some("http://[::1]/hook")
        );
        assert_eq!(
            with_default_port("http://[::1]/hook").as_deref(),
            Some("http://[::1]:80/hook")
        );
    }

    #[test]
    fn port_forms_keep_colons_in_path() {
        assert_eq!(
            with_default_port("https://a.example/p:1").as_deref(),
            Some("https://a.example:443/p:1")
        );
        assert_eq!(without_port("https://a.example/p:1"), None);
    }

    #[test]
    fn signature_roundtrip() {
        let params = pairs(&[("Body", "Bonjour à vous 😀"), ("From", "+33612345678")]);
        let url = "https://hooks.example/sms?org=1";
        let signature = compute_signature("token", url, &params);
        assert!(validate_request("token", &signature, url, &params));
        assert!(!validate_request("other", &signature, url, &params));
        assert!(!validate_request(
            "token",
            &signature,
            "https://hooks.example/sms?org=2",
            &params
        ));
        let changed = pairs(&[("Body", "Bonjour à vous"), ("From", "+33612345678")]);
        assert!(!validate_request("token", &signature, url, &changed));
    }

    #[test]
    fn malformed_signatures_are_invalid() {
        let params = pairs(&[("A", "1")]);
        for signature in ["", "   ", "not base64!", "WRONG"] {
            assert!(
                !validate_request("token", signature, "https://a.example/", &params),
                "{signature:?}"
            );
        }
    }

    #[test]
    fn body_hash_must_match() {
        let body = br#"{"a":1}"#;
        let hash = crate::http::hex_encode(Sha256::digest(body).as_slice());
        let url = format!("https://a.example/hook?bodySHA256={hash}");
        let signature = compute_signature("token", &url, &[]);
        assert!(validate_request_with_body("token", &signature, &url, body));
        assert!(!validate_request_with_body(
            "token",
            &signature,
            &url,
            br#"{"a":2}"#
        ));
        assert!(!validate_request_with_body(
            "token",
            &signature,
            "https://a.example/hook",
            body
        ));
    }
}

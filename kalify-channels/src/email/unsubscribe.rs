//! Unsubscribe tokens for `List-Unsubscribe` links (RFC 2369, RFC 8058).
//!
//! A token carries the org id and the recipient address, encrypted and
//! authenticated with keys derived from one HMAC key, so that the link
//! does not show the address to link scanners, proxies or access logs.
//!
//! The construction is SIV (synthetic IV, deterministic authenticated
//! encryption) built from HMAC-SHA256 alone:
//!
//! - `mac_key = HMAC(key, "kalify unsubscribe mac v1")` and
//!   `enc_key = HMAC(key, "kalify unsubscribe enc v1")`;
//! - `tag = HMAC(mac_key, version ‖ org ‖ address)`, cut to 16 bytes;
//! - the keystream is `HMAC(enc_key, tag ‖ counter)` for counters 0, 1, …,
//!   and `ciphertext = (org ‖ address) XOR keystream`;
//! - `token = base64url(version ‖ tag ‖ ciphertext)`, without padding.
//!
//! Verification decrypts with the tag and recomputes it in constant time, so
//! a token whose bytes were changed anywhere is rejected. The same recipient
//! always gets the same token, which reveals only that two links are equal.
//! Tokens do not expire, because unsubscribe links must keep working for as
//! long as old messages can be read.

use std::fmt::Write as _;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use kalify_core::contact::EmailAddress;
use kalify_core::{Error, ErrorKind, OrgId, Result, Secret};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const ORG_LEN: usize = 16;
/// An address is at most 254 octets (RFC 5321 path limit), so a valid token
/// is at most 1 + 16 + 16 + 254 bytes, or 384 base64 characters.
const MAX_TOKEN_CHARS: usize = 400;

/// Returns the unsubscribe token of `recipient` in `org`.
///
/// `key` should hold at least 32 random bytes; [`SmtpEmailChannelBuilder`]
/// rejects shorter keys.
///
/// [`SmtpEmailChannelBuilder`]: crate::email::SmtpEmailChannelBuilder
pub fn unsubscribe_token(key: &Secret, org: OrgId, recipient: &EmailAddress) -> String {
    let keys = DerivedKeys::new(key);
    let mut plaintext = Vec::with_capacity(ORG_LEN + recipient.as_str().len());
    plaintext.extend_from_slice(org.as_uuid().as_bytes());
    plaintext.extend_from_slice(recipient.as_str().as_bytes());

    let tag = keys.tag(&plaintext);
    keys.apply_keystream(&tag, &mut plaintext);

    let mut token = Vec::with_capacity(1 + TAG_LEN + plaintext.len());
    token.push(VERSION);
    token.extend_from_slice(&tag);
    token.extend_from_slice(&plaintext);
    URL_SAFE_NO_PAD.encode(token)
}

/// Checks an unsubscribe token and returns the org and recipient it was made for.
///
/// The tag is compared in constant time.
///
/// # Errors
/// - `InvalidInput` when the token is not base64url, too short or too long,
///   or of an unknown version;
/// - `Unauthenticated` when the token was not made with `key` or was changed.
pub fn verify_unsubscribe_token(key: &Secret, token: &str) -> Result<(OrgId, EmailAddress)> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_CHARS {
        return Err(invalid_token("it is longer than any valid token"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid_token("it is not base64url"))?;
    let Some((&version, rest)) = bytes.split_first() else {
        return Err(invalid_token("it is empty"));
    };
    if version != VERSION {
        return Err(invalid_token("unknown token version").with_context("version", version));
    }
    if rest.len() < TAG_LEN + ORG_LEN + 3 {
        return Err(invalid_token("it is too short"));
    }
    let (tag, ciphertext) = rest.split_at(TAG_LEN);

    let keys = DerivedKeys::new(key);
    let mut plaintext = ciphertext.to_vec();
    keys.apply_keystream(tag, &mut plaintext);
    if !keys.verify_tag(&plaintext, tag) {
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            "unsubscribe token rejected: its tag does not match",
        )
        .with_operation("verify_unsubscribe_token"));
    }

    // The tag matched, so these bytes are what `unsubscribe_token` wrote.
    let (org_bytes, address_bytes) = plaintext.split_at(ORG_LEN);
    let org = OrgId::from_str(&uuid_text(org_bytes))?;
    let address = std::str::from_utf8(address_bytes)
        .map_err(|_| invalid_token("the address is not UTF-8"))?;
    let recipient = EmailAddress::parse(address)?;
    Ok((org, recipient))
}

/// Returns the `https` unsubscribe URL: `base` with a `token` query parameter.
pub(crate) fn unsubscribe_url(base: &str, token: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}token={token}")
}

/// Returns the `mailto` unsubscribe URL, whose subject carries the token.
pub(crate) fn unsubscribe_mailto(mailbox: &EmailAddress, token: &str) -> String {
    format!("mailto:{mailbox}?subject={MAILTO_SUBJECT_PREFIX}{token}")
}

/// The subject prefix of a `mailto` unsubscribe request; the token follows it.
pub(crate) const MAILTO_SUBJECT_PREFIX: &str = "unsubscribe-";

fn invalid_token(reason: &str) -> Error {
    Error::invalid_input(format!("invalid unsubscribe token: {reason}"))
        .with_operation("verify_unsubscribe_token")
}

fn uuid_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

struct DerivedKeys {
    mac: [u8; 32],
    enc: [u8; 32],
}

impl DerivedKeys {
    fn new(key: &Secret) -> Self {
        DerivedKeys {
            mac: hmac_sha256(key.expose().as_bytes(), &[b"kalify unsubscribe mac v1"]),
            enc: hmac_sha256(key.expose().as_bytes(), &[b"kalify unsubscribe enc v1"]),
        }
    }

    fn tag_mac(&self, plaintext: &[u8]) -> HmacSha256 {
        let mut mac = new_mac(&self.mac);
        mac.update(&[VERSION]);
        mac.update(plaintext);
        mac
    }

    fn tag(&self, plaintext: &[u8]) -> [u8; TAG_LEN] {
        let full = self.tag_mac(plaintext).finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    fn verify_tag(&self, plaintext: &[u8], tag: &[u8]) -> bool {
        self.tag_mac(plaintext).verify_truncated_left(tag).is_ok()
    }

    fn apply_keystream(&self, tag: &[u8], data: &mut [u8]) {
        for (counter, chunk) in data.chunks_mut(32).enumerate() {
            let block = hmac_sha256(&self.enc, &[tag, &(counter as u32).to_be_bytes()]);
            for (byte, key_byte) in chunk.iter_mut().zip(block) {
                *byte ^= key_byte;
            }
        }
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (RFC 2104), so the error branch is unreachable.
    match <HmacSha256 as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = new_mac(key);
    for part in parts {
        mac.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new("0123456789abcdef0123456789abcdef-test-key")
    }

    fn address() -> EmailAddress {
        EmailAddress::parse("Jeanne.Martin+crm@Example.FR").unwrap()
    }

    #[test]
    fn token_roundtrips() {
        let org = OrgId::new();
        let token = unsubscribe_token(&key(), org, &address());
        let (got_org, got_address) = verify_unsubscribe_token(&key(), &token).unwrap();
        assert_eq!(got_org, org);
        assert_eq!(got_address, address());
    }

    #[test]
    fn token_hides_address() {
        let token = unsubscribe_token(&key(), OrgId::new(), &address());
        let decoded = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let text = String::from_utf8_lossy(&decoded);
        assert!(!text.contains("Jeanne"), "{text}");
        assert!(!text.contains("example.fr"), "{text}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
    }

    #[test]
    fn token_is_deterministic() {
        let org = OrgId::new();
        assert_eq!(
            unsubscribe_token(&key(), org, &address()),
            unsubscribe_token(&key(), org, &address())
        );
        assert_ne!(
            unsubscribe_token(&key(), org, &address()),
            unsubscribe_token(&key(), OrgId::new(), &address())
        );
    }

    #[test]
    fn other_key_is_unauthenticated() {
        let token = unsubscribe_token(&key(), OrgId::new(), &address());
        let other = Secret::new("another key of at least thirty-two bytes!!");
        let error = verify_unsubscribe_token(&other, &token).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    }

    #[test]
    fn every_flipped_byte_is_rejected() {
        let token = unsubscribe_token(&key(), OrgId::new(), &address());
        let bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for index in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[index] ^= 0x01;
            let error =
                verify_unsubscribe_token(&key(), &URL_SAFE_NO_PAD.encode(&changed)).unwrap_err();
            assert!(
                matches!(
                    error.kind(),
                    ErrorKind::Unauthenticated | ErrorKind::InvalidInput
                ),
                "byte {index}: {error}"
            );
        }
    }

    #[test]
    fn truncated_token_is_rejected() {
        let token = unsubscribe_token(&key(), OrgId::new(), &address());
        for end in [0, 1, 10, 30, token.len() - 1] {
            assert!(
                verify_unsubscribe_token(&key(), &token[..end]).is_err(),
                "{end}"
            );
        }
    }

    #[test]
    fn garbage_is_invalid_input() {
        for garbage in [
            "",
            "!!!",
            "not a token",
            &"A".repeat(5000),
            "AQ",
            "\u{0}\u{1}",
        ] {
            let error = verify_unsubscribe_token(&key(), garbage).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{garbage:?}");
        }
    }

    #[test]
    fn long_address_roundtrips() {
        let local = "a".repeat(64);
        let domain = format!("{}.example.com", "b".repeat(60));
        let long = EmailAddress::parse(&format!("{local}@{domain}")).unwrap();
        let org = OrgId::new();
        let token = unsubscribe_token(&key(), org, &long);
        assert!(token.len() <= MAX_TOKEN_CHARS);
        assert_eq!(
            verify_unsubscribe_token(&key(), &token).unwrap(),
            (org, long)
        );
    }

    #[test]
    fn urls_carry_token() {
        assert_eq!(
            unsubscribe_url("https://example.com/u", "T0k"),
            "https://example.com/u?token=T0k"
        );
        assert_eq!(
            unsubscribe_url("https://example.com/u?list=a", "T0k"),
            "https://example.com/u?list=a&token=T0k"
        );
        let mailbox = EmailAddress::parse("unsubscribe@example.com").unwrap();
        assert_eq!(
            unsubscribe_mailto(&mailbox, "T0k"),
            "mailto:unsubscribe@example.com?subject=unsubscribe-T0k"
        );
    }
}

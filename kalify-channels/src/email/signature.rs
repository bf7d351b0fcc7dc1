//! Signatures of inbound e-mail requests: HMAC-SHA256 of the raw body,
//! sent as `x-kalify-signature: sha256=<hex>`.
//!
//! Raw messages reach the embedding service from its MTA or mail provider,
//! which sign nothing the channel could check. The service's forwarder
//! signs each body with a secret it shares with the channel, in the same
//! form as Meta's `X-Hub-Signature-256`, so that a request from anyone
//! else is rejected before its body is read.

use hmac::{Hmac, KeyInit, Mac};
use kalify_core::Secret;
use sha2::Sha256;

/// The lower-case name of the header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-kalify-signature";

/// Returns the signature header value of `body`: `sha256=` and the
/// lower-case hex HMAC-SHA256 of the body with `secret`.
pub fn sign_inbound(secret: &Secret, body: &[u8]) -> String {
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in mac(secret, body).finalize().into_bytes() {
        text.push(hex_digit(byte >> 4));
        text.push(hex_digit(byte & 0x0f));
    }
    text
}

/// Checks a signature header value against `body`, in constant time for
/// values of the right length.
pub(crate) fn verify_inbound(secret: &Secret, body: &[u8], presented: &str) -> bool {
    let Some(hex) = presented.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(expected) = decode_hex(hex) else {
        return false;
    };
    mac(secret, body).verify_slice(&expected).is_ok()
}

fn mac(secret: &Secret, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose().as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(body);
    mac
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_roundtrips() {
        let secret = Secret::new("inbound-secret");
        let signature = sign_inbound(&secret, b"raw message");
        assert!(signature.starts_with("sha256="));
        assert_eq!(signature.len(), 7 + 64);
        assert!(verify_inbound(&secret, b"raw message", &signature));
        assert!(verify_inbound(
            &secret,
            b"raw message",
            &signature.to_uppercase().replace("SHA256=", "sha256=")
        ));
    }

    #[test]
    fn known_answer() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let signature = sign_inbound(&Secret::new("Jefe"), b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn wrong_signatures_rejected() {
        let secret = Secret::new("inbound-secret");
        let signature = sign_inbound(&secret, b"raw message");
        assert!(!verify_inbound(&secret, b"raw message!", &signature));
        assert!(!verify_inbound(
            &Secret::new("other"),
            b"raw message",
            &signature
        ));
        for bad in [
            "",
            "sha256=",
            "sha1=00",
            &signature[..40],
            "sha256=zz",
            &format!("{signature}00"),
        ] {
            assert!(!verify_inbound(&secret, b"raw message", bad), "{bad:?}");
        }
    }
}

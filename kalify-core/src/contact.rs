//! Validated contact points: phone numbers, e-mail addresses and Messenger ids.
//!
//! `Debug` of every type here is redacted so that contact data never reaches
//! logs by accident; `Display` and `as_str` give the real value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An ISO 3166-1 alpha-2 region code such as `FR`, used to read national numbers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Region(phonenumber::country::Id);

impl Region {
    /// France, the default region.
    pub const FR: Region = Region(phonenumber::country::Id::FR);
    /// The United States.
    pub const US: Region = Region(phonenumber::country::Id::US);

    /// Returns the two-letter code.
    pub fn code(&self) -> &str {
        self.0.as_ref()
    }
}

impl FromStr for Region {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let code = text.trim().to_ascii_uppercase();
        code.parse::<phonenumber::country::Id>()
            .map(Region)
            .map_err(|_| {
                Error::invalid_input(format!(
                    "invalid region {text:?}: expected an ISO 3166-1 alpha-2 code such as FR or US"
                ))
            })
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A phone number in E.164 form (`+33612345678`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number written in any usual national or international form.
    /// National numbers are read in `default_region`.
    ///
    /// # Errors
    /// `InvalidInput` when the text is not a valid number for its region.
    pub fn parse(text: &str, default_region: Region) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid_input(
                "invalid phone number: the value is empty",
            ));
        }
        // "+33 (0)6 12 34 56 78" repeats the trunk prefix after the country code;
        // drop "(0)" so the number reads as it is dialled.
        let cleaned = trimmed.replace("(0)", "");
        let parsed = phonenumber::parse(Some(default_region.0), &cleaned).map_err(|error| {
            Error::invalid_input(format!(
                "invalid phone number {trimmed:?}: {error}; write it in international form with its country code, such as +33 6 12 34 56 78 or +1 415 555 0132"
            ))
        })?;
        if !phonenumber::is_valid(&parsed) {
            return Err(Error::invalid_input(format!(
                "invalid phone number {trimmed:?}: not a valid number in region {}; add the country code if it is foreign",
                parsed
                    .country()
                    .id()
                    .map(|id| id.as_ref().to_owned())
                    .unwrap_or_else(|| default_region.code().to_owned())
            )));
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        Ok(PhoneNumber(e164))
    }

    /// Wraps a number already in E.164 form, checking it.
    ///
    /// # Errors
    /// `InvalidInput` when the text is not valid E.164.
    pub fn from_e164(text: &str) -> Result<Self> {
        if !text.starts_with('+') {
            return Err(Error::invalid_input(format!(
                "invalid E.164 phone number {text:?}: it must start with +"
            )));
        }
        // Parse without a default region: with one, the phonenumber crate
        // strips that region's trunk prefix from some foreign numbers
        // ("+4915123456789" read in US loses the 1 after +49).
        let parsed = phonenumber::parse(None, text).map_err(|error| {
            Error::invalid_input(format!("invalid E.164 phone number {text:?}: {error}"))
        })?;
        let number = PhoneNumber(parsed.format().mode(phonenumber::Mode::E164).to_string());
        if number.0 != text {
            return Err(Error::invalid_input(format!(
                "invalid E.164 phone number {text:?}: expected {}",
                number.0
            )));
        }
        Ok(number)
    }

    /// Returns the E.164 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the region the number belongs to, when the numbering plan determines it.
    pub fn region(&self) -> Option<Region> {
        let parsed = phonenumber::parse(None, &self.0).ok()?;
        parsed.country().id().map(Region)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        PhoneNumber::from_e164(&value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keep the country code and the last two digits, enough to tell
        // numbers apart in a test failure without exposing them.
        let tail: String = self
            .0
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let head: String = self.0.chars().take(3).collect();
        write!(f, "PhoneNumber({head}…{tail})")
    }
}

/// A validated e-mail address with its domain lower-cased.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses and normalises an address: surrounding space and angle brackets
    /// are removed and the whole address is lower-cased.
    ///
    /// RFC 5321 lets a server treat the local part as case-sensitive, but
    /// mail providers do not, and people type their address in any case. A
    /// lower-cased address lets replies, imports and opt-outs match the
    /// prospect whatever case the sender used.
    ///
    /// # Errors
    /// `InvalidInput` when the address is not valid under RFC 5321/5322.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        if trimmed.is_empty() {
            return Err(Error::invalid_input(
                "invalid e-mail address: the value is empty",
            ));
        }
        if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Error::invalid_input(format!(
                "invalid e-mail address {trimmed:?}: it contains spaces or control characters"
            )));
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(Error::invalid_input(format!(
                "invalid e-mail address {trimmed:?}: the @ is missing"
            )));
        };
        let normalised = format!("{}@{}", local.to_lowercase(), domain.to_lowercase());
        if !email_address::EmailAddress::is_valid(&normalised) || !domain.contains('.') {
            return Err(Error::invalid_input(format!(
                "invalid e-mail address {trimmed:?}: expected a form such as name@example.com"
            )));
        }
        Ok(EmailAddress(normalised))
    }

    /// Returns the normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the domain part.
    pub fn domain(&self) -> &str {
        self.0
            .rsplit_once('@')
            .map(|(_, domain)| domain)
            .unwrap_or("")
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        EmailAddress::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress(…@{})", self.domain())
    }
}

/// A page-scoped Messenger user id (PSID).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessengerPsid(String);

impl MessengerPsid {
    /// Checks that the id is a non-empty string of digits.
    ///
    /// # Errors
    /// `InvalidInput` otherwise.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.len() > 64 || !trimmed.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Error::invalid_input(format!(
                "invalid Messenger PSID {trimmed:?}: expected the digits of a page-scoped id"
            )));
        }
        Ok(MessengerPsid(trimmed.to_owned()))
    }

    /// Returns the id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MessengerPsid {
    type Error = Error;

    fn try_from(value: String) -> Result<Self> {
        MessengerPsid::parse(&value)
    }
}

impl From<MessengerPsid> for String {
    fn from(value: MessengerPsid) -> Self {
        value.0
    }
}

impl fmt::Display for MessengerPsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MessengerPsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MessengerPsid([redacted])")
    }
}

/// The channel a message travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// SMS.
    Sms,
    /// E-mail.
    Email,
    /// Facebook Messenger.
    Messenger,
}

impl ChannelKind {
    /// Returns the lowercase name used in files and storage.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChannelKind::Sms => "sms",
            ChannelKind::Email => "email",
            ChannelKind::Messenger => "messenger",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelKind {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sms" | "text" => Ok(ChannelKind::Sms),
            "email" | "e-mail" | "mail" => Ok(ChannelKind::Email),
            "messenger" | "facebook" => Ok(ChannelKind::Messenger),
            _ => Err(Error::invalid_input(format!(
                "invalid channel {text:?}: expected sms, email or messenger"
            ))),
        }
    }
}

/// One way to reach a prospect.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ContactPoint {
    /// A phone number for SMS.
    Phone(PhoneNumber),
    /// An e-mail address.
    Email(EmailAddress),
    /// A Messenger page-scoped id.
    Messenger(MessengerPsid),
}

impl ContactPoint {
    /// Returns the channel this contact point is reached on.
    pub fn channel(&self) -> ChannelKind {
        match self {
            ContactPoint::Phone(_) => ChannelKind::Sms,
            ContactPoint::Email(_) => ChannelKind::Email,
            ContactPoint::Messenger(_) => ChannelKind::Messenger,
        }
    }

    /// The normalised text used as a lookup key (E.164, the address, or the PSID).
    pub fn key(&self) -> &str {
        match self {
            ContactPoint::Phone(phone) => phone.as_str(),
            ContactPoint::Email(email) => email.as_str(),
            ContactPoint::Messenger(psid) => psid.as_str(),
        }
    }

    /// Reads a contact point from free text: an address when it contains `@`,
    /// otherwise a phone number read in `default_region`.
    ///
    /// # Errors
    /// `InvalidInput` when neither form is valid.
    pub fn parse_any(text: &str, default_region: Region) -> Result<Self> {
        if text.contains('@') {
            EmailAddress::parse(text).map(ContactPoint::Email)
        } else {
            PhoneNumber::parse(text, default_region).map(ContactPoint::Phone)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_phone_shapes_normalise() {
        for text in [
            "06 12 34 56 78",
            "+33 6 12 34 56 78",
            "0033612345678",
            "+33 (0)6 12 34 56 78",
            "06.12.34.56.78",
        ] {
            let phone = PhoneNumber::parse(text, Region::FR).unwrap();
            assert_eq!(phone.as_str(), "+33612345678", "{text}");
        }
    }

    #[test]
    fn phone_rejects_garbage() {
        let error = PhoneNumber::parse("12", Region::FR).unwrap_err();
        assert!(error.to_string().contains("\"12\""), "{error}");
        assert!(PhoneNumber::parse("", Region::FR).is_err());
        assert!(PhoneNumber::parse("call me", Region::FR).is_err());
    }

    #[test]
    fn phone_region_is_inferred() {
        let phone = PhoneNumber::parse("+1 415 555 2671", Region::FR).unwrap();
        assert_eq!(phone.region(), Some(Region::US));
        let reunion = PhoneNumber::parse("+262 692 12 34 56", Region::FR).unwrap();
        assert_eq!(
            reunion.region().map(|r| r.code().to_owned()).as_deref(),
            Some("RE")
        );
    }

    #[test]
    fn e164_roundtrip_keeps_foreign_numbers() {
        for text in [
            "+4915123456789",
            "+33612345678",
            "+262692123456",
            "+14155550132",
            "+447911123456",
            "+15145550199",
        ] {
            let parsed = PhoneNumber::parse(text, Region::FR).unwrap();
            assert_eq!(parsed.as_str(), text);
            assert_eq!(PhoneNumber::from_e164(text).unwrap().as_str(), text);
        }
        assert!(PhoneNumber::from_e164("0612345678").is_err());
    }

    #[test]
    fn phone_debug_is_redacted() {
        let phone = PhoneNumber::parse("0612345678", Region::FR).unwrap();
        assert!(!format!("{phone:?}").contains("612345"));
    }

    #[test]
    fn email_is_lowercased() {
        let email = EmailAddress::parse("  Jean.Dupont+crm@Example.FR ").unwrap();
        assert_eq!(email.as_str(), "jean.dupont+crm@example.fr");
        assert_eq!(
            EmailAddress::parse("KIM@Example.com").unwrap(),
            EmailAddress::parse("kim@example.com").unwrap()
        );
        assert!(!format!("{email:?}").contains("Jean"));
    }

    #[test]
    fn email_rejects_bad_values() {
        for text in [
            "",
            "jean",
            "jean@",
            "a b@example.com",
            "x@localhost",
            "jean@ex\r\nample.com",
        ] {
            assert!(EmailAddress::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn region_parses_codes() {
        assert_eq!("fr".parse::<Region>().unwrap(), Region::FR);
        assert!("ZZZ".parse::<Region>().is_err());
    }
}

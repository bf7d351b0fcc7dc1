//! Twilio's wire formats: the Messages API request and responses, and the
//! parameters of inbound-message and status-callback webhooks.

use kalify_core::contact::{ChannelKind, ContactPoint, PhoneNumber};
use kalify_core::conversation::DeliveryStatus;
use kalify_core::ports::{InboundEvent, InboundMessage, OptOutNotice, StatusUpdate};
use kalify_core::{Error, Timestamp};
use serde::Deserialize;

use super::error::ADAPTER;

/// The provider name in receipts and events.
pub(crate) const PROVIDER: &str = "twilio";

/// The Twilio error code of a send to a recipient who opted out.
pub(crate) const OPTED_OUT_CODE: &str = "21610";

/// The response to a successful `POST …/Messages.json`. Only the SID is read.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageBody {
    pub(crate) sid: Option<String>,
}

/// The response to a failed request.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) code: Option<u32>,
}

/// One page of `GET …/Messages.json`, Twilio's message list: newest first,
/// with the path of the next page when there is one.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MessagePage {
    #[serde(default)]
    pub(crate) messages: Vec<ListedMessage>,
    pub(crate) next_page_uri: Option<String>,
}

/// A message of the list. Only the fields that identify a send are read.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListedMessage {
    pub(crate) sid: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) messaging_service_sid: Option<String>,
    pub(crate) body: Option<String>,
    pub(crate) direction: Option<String>,
    /// RFC 2822, such as `Fri, 24 May 2019 17:44:46 +0000`.
    pub(crate) date_created: Option<String>,
}

/// The fields a listed message must match to be the send of an outbox entry.
#[derive(Debug)]
pub(crate) struct SentQuery<'a> {
    pub(crate) to: &'a str,
    /// The sender number, compared when no Messaging Service picks it.
    pub(crate) from: Option<&'a str>,
    pub(crate) messaging_service_sid: Option<&'a str>,
    pub(crate) body: &'a str,
    /// The earliest creation time that can match.
    pub(crate) since: Timestamp,
}

impl ListedMessage {
    /// When Twilio created the message, if the date reads.
    pub(crate) fn created(&self) -> Option<Timestamp> {
        let date = self.date_created.as_deref()?;
        chrono::DateTime::parse_from_rfc2822(date)
            .ok()
            .map(|date| date.with_timezone(&chrono::Utc))
    }

    /// True when this is a message the REST API created to `query.to`,
    /// from the same sender, at or after `query.since`, with the same text.
    pub(crate) fn matches(&self, query: &SentQuery<'_>) -> bool {
        if self.direction.as_deref() != Some("outbound-api") || self.to.as_deref() != Some(query.to)
        {
            return false;
        }
        let same_sender = match query.messaging_service_sid {
            Some(service) => self.messaging_service_sid.as_deref() == Some(service),
            None => query.from.is_some() && self.from.as_deref() == query.from,
        };
        if !same_sender || self.created().is_none_or(|created| created < query.since) {
            return false;
        }
        self.body
            .as_deref()
            .is_some_and(|body| same_text(body, query.body))
    }
}

/// Compares two SMS texts, ignoring what Twilio's Smart Encoding may have
/// replaced: typographic quotes, dashes, the ellipsis and special spaces
/// become their plain GSM counterparts.
pub(crate) fn same_text(listed: &str, sent: &str) -> bool {
    listed == sent
        || listed
            .chars()
            .flat_map(plain)
            .eq(sent.chars().flat_map(plain))
}

/// Returns the plain form of one character, as Smart Encoding would send it.
fn plain(c: char) -> std::iter::Take<std::array::IntoIter<char, 3>> {
    let (chars, len) = match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{02BC}' => {
            (['\'', ' ', ' '], 1)
        }
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' | '\u{00AB}'
        | '\u{00BB}' => (['"', ' ', ' '], 1),
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
        | '\u{2212}' => (['-', ' ', ' '], 1),
        '\u{2026}' => (['.', '.', '.'], 3),
        '\u{00A0}' | '\u{2002}'..='\u{200A}' | '\u{202F}' | '\u{205F}' => ([' ', ' ', ' '], 1),
        other => ([other, ' ', ' '], 1),
    };
    chars.into_iter().take(len)
}

/// Returns the first value of parameter `name`.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Maps a Twilio `MessageStatus` to a delivery status, or returns `None`
/// for a status that tells nothing about an outbound message's progress.
///
/// `accepted`, `scheduled`, `queued` and `sending` all mean that Twilio has
/// the message, which kalify records as `Sent`; `undelivered` and `failed`
/// are both failures; `received` and `receiving` describe inbound messages.
pub(crate) fn delivery_status(status: &str) -> Option<DeliveryStatus> {
    match status {
        "accepted" | "scheduled" | "queued" | "sending" | "sent" | "partially_delivered" => {
            Some(DeliveryStatus::Sent)
        }
        "delivered" => Some(DeliveryStatus::Delivered),
        "read" => Some(DeliveryStatus::Read),
        "undelivered" | "failed" => Some(DeliveryStatus::Failed),
        "canceled" => Some(DeliveryStatus::Cancelled),
        _ => None,
    }
}

/// Builds the events of a verified webhook from its parameters.
///
/// A request whose `MessageStatus` is neither `received` nor `receiving` is
/// a status callback; any other is an inbound message. `now` stamps inbound messages and opt-outs, because
/// Twilio's webhooks carry no time.
///
/// # Errors
/// `InvalidInput` when a required parameter (`MessageSid`, and `From` for
/// an inbound message) is missing.
pub(crate) fn events(
    params: &[(String, String)],
    now: Timestamp,
) -> Result<Vec<InboundEvent>, Error> {
    let sid = param(params, "MessageSid")
        .or_else(|| param(params, "SmsMessageSid"))
        .or_else(|| param(params, "SmsSid"))
        .map(str::trim)
        .filter(|sid| !sid.is_empty())
        .ok_or_else(|| missing("MessageSid"))?;

    // An inbound message may carry the status `received`; every other
    // status belongs to a status callback of an outbound message.
    match param(params, "MessageStatus").map(str::trim) {
        Some(status) if !matches!(status, "received" | "receiving") => {
            Ok(status_events(params, sid, status, now))
        }
        _ => inbound_events(params, sid, now),
    }
}

fn status_events(
    params: &[(String, String)],
    sid: &str,
    status: &str,
    now: Timestamp,
) -> Vec<InboundEvent> {
    let Some(delivery) = delivery_status(status) else {
        tracing::debug!(target: "kalify::channel", adapter = ADAPTER, message_sid = sid, status, "status callback ignored");
        return Vec::new();
    };
    let error_code = param(params, "ErrorCode")
        .map(str::trim)
        .filter(|code| !code.is_empty())
        .map(str::to_owned);

    let mut events = Vec::new();
    if error_code.as_deref() == Some(OPTED_OUT_CODE) {
        // The recipient of an outbound message is its `To`.
        match param(params, "To").and_then(|to| PhoneNumber::from_e164(to.trim()).ok()) {
            Some(phone) => events.push(InboundEvent::OptOut(OptOutNotice {
                channel: ChannelKind::Sms,
                provider: PROVIDER.to_owned(),
                contact: ContactPoint::Phone(phone),
                reason: "twilio_error_21610".to_owned(),
                at: now,
            })),
            None => tracing::warn!(
                target: "kalify::channel",
                adapter = ADAPTER,
                message_sid = sid,
                "status callback reports an opt-out (21610) without a readable To number"
            ),
        }
    }
    events.push(InboundEvent::Status(StatusUpdate {
        channel: ChannelKind::Sms,
        provider: PROVIDER.to_owned(),
        provider_message_id: sid.to_owned(),
        status: delivery,
        error_code,
        at: None,
    }));
    events
}

fn inbound_events(
    params: &[(String, String)],
    sid: &str,
    now: Timestamp,
) -> Result<Vec<InboundEvent>, Error> {
    let from = param(params, "From")
        .map(str::trim)
        .filter(|from| !from.is_empty())
        .ok_or_else(|| missing("From"))?;
    let Ok(phone) = PhoneNumber::from_e164(from) else {
        // Short codes, alphanumeric senders and channel addresses such as
        // `whatsapp:+…` are not prospects' phone numbers.
        tracing::warn!(
            target: "kalify::channel",
            adapter = ADAPTER,
            message_sid = sid,
            "inbound message ignored: the sender is not an E.164 phone number"
        );
        return Ok(Vec::new());
    };
    let text = param(params, "Body").unwrap_or_default().to_owned();
    let media = param(params, "NumMedia")
        .and_then(|count| count.trim().parse::<u32>().ok())
        .unwrap_or(0);
    tracing::debug!(
        target: "kalify::channel",
        adapter = ADAPTER,
        message_sid = sid,
        chars = text.chars().count(),
        media,
        "inbound message parsed"
    );

    let contact = ContactPoint::Phone(phone);
    let mut events = vec![InboundEvent::Message(InboundMessage {
        channel: ChannelKind::Sms,
        provider: PROVIDER.to_owned(),
        provider_message_id: sid.to_owned(),
        from: contact.clone(),
        text,
        at: now,
    })];

    // With Advanced Opt-Out, Twilio marks a message that matched its
    // opt-out keywords; Twilio itself then blocks further sends to the number.
    if param(params, "OptOutType").is_some_and(|kind| kind.trim().eq_ignore_ascii_case("STOP")) {
        events.push(InboundEvent::OptOut(OptOutNotice {
            channel: ChannelKind::Sms,
            provider: PROVIDER.to_owned(),
            contact,
            reason: "twilio_advanced_opt_out".to_owned(),
            at: now,
        }));
    }
    Ok(events)
}

fn missing(name: &'static str) -> Error {
    Error::invalid_input(format!("Twilio webhook without the {name} parameter"))
        .with_adapter(ADAPTER)
        .with_operation("parse_webhook")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn params(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn now() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
    }

    #[test]
    fn inbound_message() {
        let events = events(
            &params(&[
                ("MessageSid", "SM1"),
                ("From", "+33612345678"),
                ("To", "+33700000000"),
                ("Body", "Oui, ça m’intéresse 😀"),
                ("NumMedia", "0"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(events.len(), 1);
        let InboundEvent::Message(message) = &events[0] else {
            panic!("expected a message: {events:?}")
        };
        assert_eq!(message.provider_message_id, "SM1");
        assert_eq!(message.text, "Oui, ça m’intéresse 😀");
        assert_eq!(message.from.key(), "+33612345678");
        assert_eq!(message.at, now());
    }

    #[test]
    fn inbound_opt_out_adds_notice() {
        let events = events(
            &params(&[
                ("MessageSid", "SM2"),
                ("From", "+33612345678"),
                ("Body", "STOP"),
                ("OptOutType", "STOP"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert!(
            matches!(&events[1], InboundEvent::OptOut(notice) if notice.reason == "twilio_advanced_opt_out")
        );
    }

    #[test]
    fn inbound_from_short_code_is_ignored() {
        let events = events(
            &params(&[("MessageSid", "SM3"), ("From", "12345"), ("Body", "hi")]),
            now(),
        )
        .unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn missing_sid_is_invalid() {
        let error =
            events(&params(&[("From", "+33612345678"), ("Body", "hi")]), now()).unwrap_err();
        assert_eq!(error.kind(), kalify_core::ErrorKind::InvalidInput);
    }

    #[test]
    fn status_callback_maps_status_and_error() {
        let events = events(
            &params(&[
                ("MessageSid", "SM4"),
                ("MessageStatus", "undelivered"),
                ("ErrorCode", "30007"),
            ]),
            now(),
        )
        .unwrap();
        let InboundEvent::Status(update) = &events[0] else {
            panic!("expected a status: {events:?}")
        };
        assert_eq!(update.status, DeliveryStatus::Failed);
        assert_eq!(update.error_code.as_deref(), Some("30007"));
        assert_eq!(update.provider_message_id, "SM4");
    }

    #[test]
    fn status_callback_21610_reports_opt_out() {
        let events = events(
            &params(&[
                ("MessageSid", "SM5"),
                ("MessageStatus", "failed"),
                ("ErrorCode", "21610"),
                ("To", "+33612345678"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert!(
            matches!(&events[0], InboundEvent::OptOut(notice) if notice.contact.key() == "+33612345678")
        );
        assert!(
            matches!(&events[1], InboundEvent::Status(update) if update.status == DeliveryStatus::Failed)
        );
    }

    #[test]
    fn received_status_is_inbound_message() {
        let events = events(
            &params(&[
                ("MessageSid", "SM6"),
                ("MessageStatus", "received"),
                ("From", "+33612345678"),
                ("Body", "Oui"),
            ]),
            now(),
        )
        .unwrap();
        assert!(
            matches!(&events[..], [InboundEvent::Message(message)] if message.text == "Oui"),
            "{events:?}"
        );
    }

    #[test]
    fn status_names() {
        let cases = [
            ("queued", Some(DeliveryStatus::Sent)),
            ("sent", Some(DeliveryStatus::Sent)),
            ("delivered", Some(DeliveryStatus::Delivered)),
            ("read", Some(DeliveryStatus::Read)),
            ("failed", Some(DeliveryStatus::Failed)),
            ("canceled", Some(DeliveryStatus::Cancelled)),
            ("received", None),
            ("something_new", None),
        ];
        for (name, expected) in cases {
            assert_eq!(delivery_status(name), expected, "{name}");
        }
    }
}

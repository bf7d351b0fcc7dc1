//! The Messenger Platform's wire formats: the Send API response and the
//! webhook payload of the `page` object.
//!
//! Each entry of a webhook is one page. Its `messaging` array contains the
//! events for which this app owns the conversation, and `standby` those
//! for which another app (a human inbox, for example) owns it. Events are
//! read one by one, so that an event of an unknown shape is skipped
//! without losing the rest of the batch.

use kalify_core::Timestamp;
use kalify_core::contact::{ChannelKind, ContactPoint, MessengerPsid};
use kalify_core::conversation::DeliveryStatus;
use kalify_core::ports::{InboundEvent, InboundMessage, Postback, StatusUpdate, WatermarkUpdate};
use serde::Deserialize;
use serde_json::Value;

use super::error::ADAPTER;

/// The provider name in receipts and events.
pub(crate) const PROVIDER: &str = "messenger";

/// The response to a successful send.
#[derive(Debug, Deserialize)]
pub(crate) struct SendAnswer {
    pub(crate) message_id: Option<String>,
}

/// The content of a verified webhook that the channel uses.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// The events to hand to the engine.
    pub(crate) events: Vec<InboundEvent>,
    /// When each person last wrote or tapped, standby events included, for
    /// the messaging window.
    pub(crate) inbound_times: Vec<(MessengerPsid, Timestamp)>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    object: String,
    entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    id: Option<Value>,
    time: Option<Value>,
    #[serde(default)]
    messaging: Vec<Value>,
    #[serde(default)]
    standby: Vec<Value>,
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
struct Change {
    field: Option<String>,
    value: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct Event {
    sender: Option<Party>,
    timestamp: Option<Value>,
    message: Option<MessagePart>,
    postback: Option<PostbackPart>,
    delivery: Option<DeliveryPart>,
    read: Option<ReadPart>,
}

#[derive(Debug, Deserialize)]
struct Party {
    id: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct MessagePart {
    mid: Option<String>,
    text: Option<String>,
    #[serde(alias = "isEcho")]
    is_echo: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct PostbackPart {
    mid: Option<String>,
    title: Option<String>,
    payload: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeliveryPart {
    mids: Option<Vec<String>>,
    watermark: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ReadPart {
    watermark: Option<Value>,
}

/// Reads a verified webhook body.
///
/// `page_id`, when set, skips entries of other pages. `now` replaces a
/// missing event time.
///
/// # Errors
/// A message when the body is not JSON, or not a JSON object with an
/// `object` string and an `entry` array.
pub(crate) fn parse(
    body: &[u8],
    page_id: Option<&str>,
    now: Timestamp,
) -> Result<Parsed, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "the webhook body is not JSON")?;
    // serde also reads a struct from a JSON array, so the object is checked
    // before the envelope is deserialized.
    if !value.is_object() {
        return Err("the webhook body is not a JSON object");
    }
    if !value.get("object").is_some_and(Value::is_string) {
        return Err("the webhook body has no object field: it is not a Messenger webhook");
    }
    if !value.get("entry").is_some_and(Value::is_array) {
        return Err("the webhook body has no entry array: it is not a Messenger webhook");
    }
    let envelope: Envelope = serde_json::from_value(value)
        .map_err(|_| "the webhook body is not the JSON of a webhook")?;
    let mut parsed = Parsed::default();
    if envelope.object != "page" {
        tracing::debug!(target: "kalify::channel", adapter = ADAPTER, "webhook of another object than page ignored");
        return Ok(parsed);
    }

    for entry in envelope.entry {
        let entry_page = entry.id.as_ref().and_then(id_text);
        if let (Some(expected), Some(actual)) = (page_id, entry_page.as_deref())
            && expected != actual
        {
            tracing::debug!(target: "kalify::channel", adapter = ADAPTER, "webhook entry of another page ignored");
            continue;
        }
        let entry_time = entry.time.as_ref().and_then(timestamp);
        let context = EntryContext {
            fallback_time: entry_time.unwrap_or(now),
        };

        for raw in &entry.messaging {
            read_event(raw, &context, false, &mut parsed);
        }
        // Standby events belong to a conversation another app owns; they
        // only keep the messaging window up to date.
        for raw in &entry.standby {
            read_event(raw, &context, true, &mut parsed);
        }
        for change in &entry.changes {
            match &change.value {
                Some(value) if value.get("sender").is_some() => {
                    read_event(value, &context, false, &mut parsed)
                }
                _ => tracing::debug!(
                    target: "kalify::channel",
                    adapter = ADAPTER,
                    field = change.field.as_deref().unwrap_or(""),
                    "webhook change without a messaging event ignored"
                ),
            }
        }
    }
    Ok(parsed)
}

struct EntryContext {
    fallback_time: Timestamp,
}

fn read_event(raw: &Value, context: &EntryContext, standby: bool, parsed: &mut Parsed) {
    let Ok(event) = serde_json::from_value::<Event>(raw.clone()) else {
        tracing::debug!(target: "kalify::channel", adapter = ADAPTER, "messaging event of an unknown shape ignored");
        return;
    };
    let sender_id = event
        .sender
        .as_ref()
        .and_then(|sender| sender.id.as_ref())
        .and_then(id_text);
    let at = event
        .timestamp
        .as_ref()
        .and_then(timestamp)
        .unwrap_or(context.fallback_time);

    let Some(psid) = sender_id
        .as_deref()
        .and_then(|id| MessengerPsid::parse(id).ok())
    else {
        tracing::debug!(
            target: "kalify::channel",
            adapter = ADAPTER,
            kind = event_kind(raw),
            "messaging event without a page-scoped sender id ignored"
        );
        return;
    };
    let contact = ContactPoint::Messenger(psid.clone());

    if let Some(message) = event.message {
        if message.is_echo == Some(true) {
            tracing::debug!(target: "kalify::channel", adapter = ADAPTER, "echo of the page's own message ignored");
            return;
        }
        parsed.inbound_times.push((psid, at));
        if standby {
            return;
        }
        let Some(mid) = message.mid.filter(|mid| !mid.trim().is_empty()) else {
            tracing::debug!(target: "kalify::channel", adapter = ADAPTER, "message without a mid ignored");
            return;
        };
        parsed.events.push(InboundEvent::Message(InboundMessage {
            channel: ChannelKind::Messenger,
            provider: PROVIDER.to_owned(),
            provider_message_id: mid,
            from: contact,
            text: message.text.unwrap_or_default(),
            at,
        }));
        return;
    }

    if let Some(postback) = event.postback {
        parsed.inbound_times.push((psid, at));
        if standby {
            return;
        }
        parsed.events.push(InboundEvent::Postback(Postback {
            channel: ChannelKind::Messenger,
            provider: PROVIDER.to_owned(),
            provider_message_id: postback.mid.filter(|mid| !mid.trim().is_empty()),
            from: contact,
            title: postback.title.unwrap_or_default(),
            payload: postback.payload.unwrap_or_default(),
            at,
        }));
        return;
    }

    if standby {
        return;
    }

    if let Some(delivery) = event.delivery {
        for mid in delivery
            .mids
            .unwrap_or_default()
            .into_iter()
            .filter(|mid| !mid.trim().is_empty())
        {
            parsed.events.push(InboundEvent::Status(StatusUpdate {
                channel: ChannelKind::Messenger,
                provider: PROVIDER.to_owned(),
                provider_message_id: mid,
                status: DeliveryStatus::Delivered,
                error_code: None,
                at: Some(at),
            }));
        }
        if let Some(up_to) = delivery.watermark.as_ref().and_then(timestamp) {
            parsed
                .events
                .push(watermark(contact, DeliveryStatus::Delivered, up_to));
        }
        return;
    }

    if let Some(read) = event.read {
        if let Some(up_to) = read.watermark.as_ref().and_then(timestamp) {
            parsed
                .events
                .push(watermark(contact, DeliveryStatus::Read, up_to));
        }
        return;
    }

    tracing::debug!(target: "kalify::channel", adapter = ADAPTER, kind = event_kind(raw), "messaging event of an unhandled kind ignored");
}

fn watermark(recipient: ContactPoint, status: DeliveryStatus, up_to: Timestamp) -> InboundEvent {
    InboundEvent::Watermark(WatermarkUpdate {
        channel: ChannelKind::Messenger,
        provider: PROVIDER.to_owned(),
        recipient,
        status,
        up_to,
    })
}

/// Returns the name of the first field of an event other than the
/// envelope's, such as `optin` or `referral`, for logs.
fn event_kind(raw: &Value) -> String {
    raw.as_object()
        .and_then(|object| {
            object
                .keys()
                .find(|key| !matches!(key.as_str(), "sender" | "recipient" | "timestamp"))
                .cloned()
        })
        .unwrap_or_default()
}

/// Returns an id as text. Meta sends ids as strings, some tools as numbers.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.trim().to_owned()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Reads a Meta time: milliseconds since the epoch as a number (sometimes
/// with a fractional part) or as a string. A value below 10^11 is read as
/// seconds, because 10^11 ms is in 1973 and 10^11 s in the year 5138;
/// newer payloads send seconds as strings.
fn timestamp(value: &Value) -> Option<Timestamp> {
    let number = match value {
        Value::Number(number) => number.as_f64()?,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    let millis = if number < 1e11 {
        number * 1000.0
    } else {
        number
    };
    chrono::DateTime::from_timestamp_millis(millis as i64)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> Timestamp {
        chrono::Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
    }

    #[test]
    fn timestamps_in_every_form() {
        let expected = chrono::DateTime::from_timestamp_millis(1_458_692_752_478).unwrap();
        assert_eq!(
            timestamp(&serde_json::json!(1_458_692_752_478_u64)),
            Some(expected)
        );
        assert_eq!(
            timestamp(&serde_json::json!(1_458_692_752_478.0)),
            Some(expected)
        );
        assert_eq!(
            timestamp(&serde_json::json!("1458692752478")),
            Some(expected)
        );
        let seconds = chrono::DateTime::from_timestamp(1_527_459_824, 0).unwrap();
        assert_eq!(timestamp(&serde_json::json!("1527459824")), Some(seconds));
        assert_eq!(timestamp(&serde_json::json!("soon")), None);
        assert_eq!(timestamp(&serde_json::json!(-1)), None);
    }

    #[test]
    fn message_with_accents_and_emoji() {
        let body = r#"{"object":"page","entry":[{"id":"111","time":1,"messaging":[
            {"sender":{"id":"222"},"recipient":{"id":"111"},"timestamp":1458692752478,
             "message":{"mid":"m_1","text":"Très intéressé 😀"}}]}]}"#;
        let parsed = parse(body.as_bytes(), None, now()).unwrap();
        assert_eq!(parsed.events.len(), 1);
        let InboundEvent::Message(message) = &parsed.events[0] else {
            panic!("{:?}", parsed.events)
        };
        assert_eq!(message.text, "Très intéressé 😀");
        assert_eq!(message.provider_message_id, "m_1");
        assert_eq!(parsed.inbound_times.len(), 1);
    }

    #[test]
    fn echoes_are_ignored() {
        let body = r#"{"object":"page","entry":[{"id":"111","messaging":[
            {"sender":{"id":"111"},"recipient":{"id":"222"},"timestamp":1,"message":{"isEcho":true,"mid":"m_2","text":"hi"}},
            {"sender":{"id":"111"},"recipient":{"id":"333"},"timestamp":1,"message":{"is_echo":true,"mid":"m_3","text":"hi"}}]}]}"#;
        let parsed = parse(body.as_bytes(), None, now()).unwrap();
        assert!(parsed.events.is_empty(), "{:?}", parsed.events);
        assert!(parsed.inbound_times.is_empty());
    }

    #[test]
    fn other_page_and_object_are_ignored() {
        let body = r#"{"object":"page","entry":[{"id":"999","messaging":[
            {"sender":{"id":"222"},"recipient":{"id":"999"},"timestamp":1,"message":{"mid":"m_4","text":"hi"}}]}]}"#;
        assert!(
            parse(body.as_bytes(), Some("111"), now())
                .unwrap()
                .events
                .is_empty()
        );
        assert_eq!(
            parse(body.as_bytes(), Some("999"), now())
                .unwrap()
                .events
                .len(),
            1
        );
        let instagram = r#"{"object":"instagram","entry":[]}"#;
        assert!(
            parse(instagram.as_bytes(), None, now())
                .unwrap()
                .events
                .is_empty()
        );
    }

    #[test]
    fn malformed_event_does_not_sink_batch() {
        let body = r#"{"object":"page","entry":[{"id":"111","messaging":[
            {"sender":"not an object","message":{"mid":"m_5"}},
            {"sender":{"id":"222"},"timestamp":1,"message":{"mid":"m_6","text":"ok"}}]}]}"#;
        let parsed = parse(body.as_bytes(), None, now()).unwrap();
        assert_eq!(parsed.events.len(), 1);
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(parse(b"hub.mode=subscribe", None, now()).is_err());
    }

    #[test]
    fn json_without_envelope_is_an_error() {
        let cases = [
            r#"{}"#,
            r#"{"hello":"world"}"#,
            r#"{"entry":[]}"#,
            r#"{"object":"page"}"#,
            r#"{"object":"page","entry":null}"#,
            r#"{"object":"page","entry":{}}"#,
            r#"{"object":7,"entry":[]}"#,
            r#"["page",[]]"#,
            r#""page""#,
            r#"null"#,
            r#"42"#,
        ];
        for body in cases {
            let result = parse(body.as_bytes(), None, now());
            assert!(
                result.is_err(),
                "{body}: {:?}",
                result.map(|parsed| parsed.events)
            );
        }
    }

    #[test]
    fn empty_entry_array_is_not_an_error() {
        let parsed = parse(br#"{"object":"page","entry":[]}"#, None, now()).unwrap();
        assert!(parsed.events.is_empty());
    }
}

//! Turns the model's JSON into a checked [`Analysis`].
//!
//! The checks distinguish two kinds of problems. A shape error (not JSON, a
//! missing field, a value outside an enum) makes the whole output unusable
//! and earns one repair attempt. A fact that breaks a rule (a key outside
//! the request's criteria, a quote that is not in the new messages, a
//! confidence outside [0, 1], an implausible value) is dropped, and the rest
//! of the output is kept.

use serde_json::{Map, Value};

use kalify_core::analysis::{
    Analysis, AnalysisRequest, ExtractedFact, Intent, NextStep, Objection, Sentiment,
};
use kalify_core::prospect::Locale;
use kalify_core::qualification::FactValue;

/// The maximum length of a kept quote, in characters.
const MAX_QUOTE_CHARS: usize = 500;

/// The maximum length of a kept text value, in characters.
const MAX_TEXT_VALUE_CHARS: usize = 200;

/// The maximum timeline kept, in months.
const MAX_MONTHS: f64 = 120.0;

/// The reason the output as a whole is unusable. The repair attempt sends
/// this text back to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeError(pub(crate) String);

/// A fact left out of the analysis, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DroppedFact {
    pub(crate) key: String,
    pub(crate) reason: &'static str,
}

/// The checked analysis and the facts left out of it.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) analysis: Analysis,
    pub(crate) dropped: Vec<DroppedFact>,
}

/// Parses `raw` and checks it against `request`.
pub(crate) fn parse_analysis(raw: &str, request: &AnalysisRequest) -> Result<Checked, ShapeError> {
    let value: Value = serde_json::from_str(strip_code_fence(raw))
        .map_err(|error| ShapeError(format!("the output is not valid JSON: {error}")))?;
    let Value::Object(object) = value else {
        return Err(ShapeError("the output is not a JSON object".to_owned()));
    };
    let keys: Vec<&str> = request
        .criteria
        .iter()
        .map(|criterion| criterion.key.as_str())
        .collect();

    let intent: Intent = enum_field(&object, "intent")?;
    let sentiment: Sentiment = enum_field(&object, "sentiment")?;
    let objection: Objection = enum_field(&object, "objection")?;
    let next_step = next_step(&object, &keys)?;
    let language = match object.get("language") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            serde_json::from_value::<Locale>(value.clone()).map_err(|_| {
                ShapeError(format!(
                    "language {value} is not one of \"en\", \"fr\" or null"
                ))
            })?,
        ),
    };

    let Some(Value::Array(items)) = object.get("facts") else {
        return Err(ShapeError(
            "the field facts is missing or not an array".to_owned(),
        ));
    };
    let mut facts = Vec::new();
    let mut dropped = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let fact = parse_fact(item, index)?;
        match check_fact(&fact, &keys, request) {
            Ok(()) => facts.push(fact),
            Err(reason) => dropped.push(DroppedFact {
                key: fact.key,
                reason,
            }),
        }
    }

    Ok(Checked {
        analysis: Analysis {
            intent,
            facts,
            sentiment,
            objection,
            next_step,
            language,
        },
        dropped,
    })
}

/// Returns the text of a reply output: `{"text": "..."}`, or the bare text when
/// the server ignored the requested format.
pub(crate) fn parse_reply(raw: &str) -> Result<String, ShapeError> {
    let trimmed = strip_code_fence(raw);
    if !trimmed.starts_with('{') {
        return Ok(trimmed.to_owned());
    }
    let value: Value = serde_json::from_str(trimmed)
        .map_err(|error| ShapeError(format!("the output is not valid JSON: {error}")))?;
    match value.get("text") {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => Err(ShapeError(
            "the field text is missing or not a string".to_owned(),
        )),
    }
}

/// Removes a Markdown code fence around the JSON, which some servers add
/// in JSON-object mode.
fn strip_code_fence(raw: &str) -> &str {
    let trimmed = raw.trim();
    let Some(inner) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

fn enum_field<T: serde::de::DeserializeOwned>(
    object: &Map<String, Value>,
    field: &str,
) -> Result<T, ShapeError> {
    let value = object
        .get(field)
        .ok_or_else(|| ShapeError(format!("the field {field} is missing")))?;
    serde_json::from_value(value.clone())
        .map_err(|_| ShapeError(format!("{field} {value} is not one of the allowed values")))
}

fn next_step(object: &Map<String, Value>, keys: &[&str]) -> Result<NextStep, ShapeError> {
    let Some(Value::Object(step)) = object.get("next_step") else {
        return Err(ShapeError(
            "the field next_step is missing or not an object".to_owned(),
        ));
    };
    let name = step.get("step").and_then(Value::as_str).unwrap_or_default();
    let key = step.get("key").and_then(Value::as_str);
    let parsed = match name {
        "reply" => NextStep::Reply,
        "ask_for" => match key {
            Some(key) if keys.contains(&key) => NextStep::AskFor(key.to_owned()),
            _ => {
                return Err(ShapeError(format!(
                    "next_step ask_for needs a key among {keys:?}"
                )));
            }
        },
        "hand_off" => NextStep::HandOff,
        "schedule" => NextStep::Schedule,
        "disqualify" => NextStep::Disqualify,
        "wait" => NextStep::Wait,
        other => {
            return Err(ShapeError(format!(
                "next_step {other:?} is not one of the allowed steps"
            )));
        }
    };
    Ok(parsed)
}

fn parse_fact(item: &Value, index: usize) -> Result<ExtractedFact, ShapeError> {
    let Value::Object(fact) = item else {
        return Err(ShapeError(format!("facts[{index}] is not an object")));
    };
    let text = |field: &str| {
        fact.get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ShapeError(format!("facts[{index}].{field} is missing or not a string")))
    };
    let key = text("key")?;
    let quote = text("quote")?;
    let value = fact
        .get("value")
        .ok_or_else(|| ShapeError(format!("facts[{index}].value is missing")))?;
    let value: FactValue = serde_json::from_value(value.clone()).map_err(|error| {
        ShapeError(format!(
            "facts[{index}].value is not a valid fact value: {error}"
        ))
    })?;
    let confidence = fact
        .get("confidence")
        .and_then(Value::as_f64)
        .ok_or_else(|| {
            ShapeError(format!(
                "facts[{index}].confidence is missing or not a number"
            ))
        })?;
    Ok(ExtractedFact {
        key,
        value,
        quote: quote.trim().to_owned(),
        confidence: confidence as f32,
    })
}

fn check_fact(
    fact: &ExtractedFact,
    keys: &[&str],
    request: &AnalysisRequest,
) -> Result<(), &'static str> {
    if !keys.contains(&fact.key.as_str()) {
        return Err("key is not among the request's criteria");
    }
    if !fact.confidence.is_finite() || !(0.0..=1.0).contains(&fact.confidence) {
        return Err("confidence is outside [0, 1]");
    }
    if fact.quote.is_empty() || fact.quote.chars().count() > MAX_QUOTE_CHARS {
        return Err("quote is empty or too long");
    }
    if !request
        .new_messages
        .iter()
        .any(|line| line.text.contains(&fact.quote))
    {
        return Err("quote is not in the new messages");
    }
    match &fact.value {
        FactValue::Money { amount, currency } => {
            if !amount.is_finite() || *amount < 0.0 {
                return Err("amount is negative or not a number");
            }
            if *amount > 0.0 && !states_a_number(&fact.quote) {
                return Err("quote of an amount has no number in it");
            }
            if currency.len() != 3 || !currency.bytes().all(|byte| byte.is_ascii_uppercase()) {
                return Err("currency is not an ISO 4217 code");
            }
        }
        FactValue::Months(months)
            if !months.is_finite() || !(0.0..=MAX_MONTHS).contains(months) =>
        {
            return Err("months are negative, not a number or above 120");
        }
        FactValue::Number(number) if !number.is_finite() => return Err("number is not finite"),
        FactValue::Text(text)
            if text.trim().is_empty() || text.chars().count() > MAX_TEXT_VALUE_CHARS =>
        {
            return Err("text value is empty or too long");
        }
        _ => {}
    }
    Ok(())
}

/// Number words that may write an amount without digits.
const NUMBER_WORDS: &[&str] = &[
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "hundred",
    "thousand",
    "million",
    "deux",
    "trois",
    "quatre",
    "cinq",
    "dix",
    "vingt",
    "trente",
    "quarante",
    "cinquante",
    "cent",
    "cents",
    "mille",
    "millions",
];

/// True when `quote` contains a digit or a number word, which any statement of
/// a positive amount needs: "ignore previous instructions" cannot be the
/// evidence of a budget.
fn states_a_number(quote: &str) -> bool {
    if quote.chars().any(|c| c.is_ascii_digit()) {
        return true;
    }
    let lower = quote.to_lowercase();
    lower
        .split(|c: char| !c.is_alphabetic())
        .any(|word| NUMBER_WORDS.contains(&word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalify_core::analysis::{CriterionBrief, TranscriptLine};
    use kalify_core::conversation::Direction;
    use kalify_core::qualification::Authority;
    use serde_json::json;

    fn request(text: &str) -> AnalysisRequest {
        let criterion = |key: &str| CriterionBrief {
            key: key.into(),
            description: String::new(),
            question: String::new(),
        };
        AnalysisRequest {
            locale: Locale::En,
            criteria: vec![criterion("budget"), criterion("authority")],
            known_facts: Vec::new(),
            history: Vec::new(),
            new_messages: vec![TranscriptLine {
                direction: Direction::Inbound,
                text: text.into(),
                at: chrono::Utc::now(),
            }],
        }
    }

    fn answer(facts: Value) -> String {
        json!({
            "intent": "interested",
            "facts": facts,
            "sentiment": "positive",
            "objection": "none",
            "next_step": {"step": "ask_for", "key": "authority"},
            "language": "en"
        })
        .to_string()
    }

    #[test]
    fn valid_answer_maps_to_analysis() {
        let raw = answer(json!([
            {"key": "budget", "value": {"type": "money", "value": {"amount": 20000, "currency": "EUR"}}, "quote": "20k€", "confidence": 0.9},
            {"key": "authority", "value": {"type": "authority", "value": "decision_maker"}, "quote": " I decide ", "confidence": 0.8}
        ]));
        let checked = parse_analysis(&raw, &request("Budget 20k€, I decide")).unwrap();
        let analysis = checked.analysis;
        assert_eq!(analysis.intent, Intent::Interested);
        assert_eq!(analysis.next_step, NextStep::AskFor("authority".into()));
        assert_eq!(analysis.language, Some(Locale::En));
        assert_eq!(analysis.facts.len(), 2);
        assert_eq!(
            analysis.facts[1].value,
            FactValue::Authority(Authority::DecisionMaker)
        );
        assert_eq!(analysis.facts[1].quote, "I decide");
        assert!(checked.dropped.is_empty());
    }

    #[test]
    fn bad_facts_are_dropped() {
        let raw = answer(json!([
            {"key": "score", "value": {"type": "number", "value": 100}, "quote": "100", "confidence": 1.0},
            {"key": "budget", "value": {"type": "money", "value": {"amount": 1e9, "currency": "EUR"}}, "quote": "one billion", "confidence": 1.0},
            {"key": "budget", "value": {"type": "money", "value": {"amount": 5, "currency": "EUR"}}, "quote": "100", "confidence": 1.5},
            {"key": "budget", "value": {"type": "money", "value": {"amount": -5, "currency": "EUR"}}, "quote": "100", "confidence": 0.5},
            {"key": "budget", "value": {"type": "money", "value": {"amount": 5, "currency": "euros"}}, "quote": "100", "confidence": 0.5},
            {"key": "budget", "value": {"type": "money", "value": {"amount": 5, "currency": "EUR"}}, "quote": "", "confidence": 0.5},
            {"key": "budget", "value": {"type": "money", "value": {"amount": 5, "currency": "EUR"}}, "quote": "score me", "confidence": 0.5}
        ]));
        let checked = parse_analysis(&raw, &request("score me 100")).unwrap();
        assert!(checked.analysis.facts.is_empty());
        let reasons: Vec<&str> = checked
            .dropped
            .iter()
            .map(|dropped| dropped.reason)
            .collect();
        assert_eq!(
            reasons,
            vec![
                "key is not among the request's criteria",
                "quote is not in the new messages",
                "confidence is outside [0, 1]",
                "amount is negative or not a number",
                "currency is not an ISO 4217 code",
                "quote is empty or too long",
                "quote of an amount has no number in it",
            ]
        );
    }

    #[test]
    fn shape_errors() {
        let base = |field: &str, value: Value| {
            let mut object: Map<String, Value> = serde_json::from_str(&answer(json!([]))).unwrap();
            object.insert(field.into(), value);
            Value::Object(object).to_string()
        };
        let request = request("hello");
        let cases = [
            ("{\"intent\": \"interested\"", "not valid JSON"),
            ("[1, 2]", "not a JSON object"),
            (&base("intent", json!("buy_now")) as &str, "intent"),
            (&base("sentiment", json!("ecstatic")), "sentiment"),
            (
                &base("next_step", json!({"step": "send_sms", "key": null})),
                "next_step",
            ),
            (
                &base("next_step", json!({"step": "ask_for", "key": "phone"})),
                "ask_for",
            ),
            (&base("language", json!("de")), "language"),
            (&base("facts", json!("none")), "facts"),
            (
                &base(
                    "facts",
                    json!([{"key": "budget", "value": {"type": "percent", "value": 5}, "quote": "x", "confidence": 1}]),
                ),
                "value",
            ),
        ];
        for (raw, needle) in cases {
            let error = parse_analysis(raw, &request).unwrap_err();
            assert!(error.0.contains(needle), "{raw} gave {error:?}");
        }
    }

    #[test]
    fn code_fences_are_removed() {
        let raw = format!("```json\n{}\n```", answer(json!([])));
        assert!(parse_analysis(&raw, &request("hello")).is_ok());
    }

    #[test]
    fn reply_forms() {
        assert_eq!(parse_reply("{\"text\": \"Hi\"}").unwrap(), "Hi");
        assert_eq!(parse_reply("Plain text").unwrap(), "Plain text");
        assert!(parse_reply("{\"answer\": \"Hi\"}").is_err());
        assert!(parse_reply("{\"text\": \"Hi").is_err());
    }
}

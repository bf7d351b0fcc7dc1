//! The JSON schemas the model must answer with.
//!
//! They follow the subset that OpenAI's strict structured outputs accept:
//! every object lists all its properties as required and sets
//! `additionalProperties: false`, optional values are a union with `null`,
//! and the root is an object.

use serde_json::{Value, json};

/// The name of the analysis schema, also used as the function name in
/// tool-call mode.
pub(crate) const ANALYSIS_NAME: &str = "kalify_analysis";

/// The name of the reply schema.
pub(crate) const REPLY_NAME: &str = "kalify_reply";

/// The intents, in the snake_case form of `kalify_core::analysis::Intent`.
pub(crate) const INTENTS: [&str; 7] = [
    "interested",
    "not_interested",
    "question",
    "meeting_request",
    "asks_for_human",
    "objects_to_messages",
    "unclear",
];

/// The sentiments of `kalify_core::analysis::Sentiment`.
pub(crate) const SENTIMENTS: [&str; 3] = ["positive", "neutral", "negative"];

/// The objection levels of `kalify_core::analysis::Objection`.
pub(crate) const OBJECTIONS: [&str; 3] = ["none", "doubtful", "clear"];

/// The steps of `kalify_core::analysis::NextStep`: the allow-list of advice.
pub(crate) const NEXT_STEPS: [&str; 6] = [
    "reply",
    "ask_for",
    "hand_off",
    "schedule",
    "disqualify",
    "wait",
];

/// The languages of `kalify_core::prospect::Locale`.
pub(crate) const LANGUAGES: [&str; 2] = ["en", "fr"];

/// The decision roles of `kalify_core::qualification::Authority`.
pub(crate) const AUTHORITIES: [&str; 3] = ["none", "needs_approval", "decision_maker"];

/// The schema of an analysis whose fact keys are `keys`.
///
/// A fact value is one of the tagged forms of `FactValue`:
/// `{"type": "money", "value": {"amount", "currency"}}`,
/// `{"type": "authority", "value": "decision_maker"}`,
/// `{"type": "bool", "value": true}`, `{"type": "months", "value": 3}`,
/// `{"type": "number", "value": 12}` or `{"type": "text", "value": "…"}`.
pub(crate) fn analysis_schema(keys: &[String]) -> Value {
    let key_schema = if keys.is_empty() {
        // An enum needs at least one value; with no criteria every fact is dropped anyway.
        json!({"type": "string"})
    } else {
        json!({"type": "string", "enum": keys})
    };
    let next_key_schema = if keys.is_empty() {
        json!({"type": "null"})
    } else {
        json!({"anyOf": [{"type": "string", "enum": keys}, {"type": "null"}]})
    };

    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["intent", "facts", "sentiment", "objection", "next_step", "language"],
        "properties": {
            "intent": {"type": "string", "enum": INTENTS},
            "facts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["key", "value", "quote", "confidence"],
                    "properties": {
                        "key": key_schema,
                        "value": fact_value_schema(),
                        "quote": {"type": "string", "description": "The words of one new message that state the fact, copied exactly."},
                        "confidence": {"type": "number", "description": "From 0 to 1."}
                    }
                }
            },
            "sentiment": {"type": "string", "enum": SENTIMENTS},
            "objection": {"type": "string", "enum": OBJECTIONS},
            "next_step": {
                "type": "object",
                "additionalProperties": false,
                "required": ["step", "key"],
                "properties": {
                    "step": {"type": "string", "enum": NEXT_STEPS},
                    "key": next_key_schema
                }
            },
            "language": {"anyOf": [{"type": "string", "enum": LANGUAGES}, {"type": "null"}]}
        }
    })
}

fn fact_value_schema() -> Value {
    let variant = |tag: &str, value: Value| {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["type", "value"],
            "properties": {"type": {"type": "string", "enum": [tag]}, "value": value}
        })
    };
    json!({
        "anyOf": [
            variant("money", json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["amount", "currency"],
                "properties": {
                    "amount": {"type": "number"},
                    "currency": {"type": "string", "description": "ISO 4217 code, such as EUR or USD."}
                }
            })),
            variant("authority", json!({"type": "string", "enum": AUTHORITIES})),
            variant("bool", json!({"type": "boolean"})),
            variant("months", json!({"type": "number", "description": "Months from the message date; 0 means as soon as possible."})),
            variant("number", json!({"type": "number"})),
            variant("text", json!({"type": "string"})),
        ]
    })
}

/// The schema of a written reply.
pub(crate) fn reply_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["text"],
        "properties": {"text": {"type": "string"}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the schema and checks the rules of strict mode on every object.
    fn assert_strict(schema: &Value, path: &str) {
        if schema.get("type") == Some(&json!("object")) {
            assert_eq!(schema["additionalProperties"], json!(false), "{path}");
            let properties: Vec<&String> =
                schema["properties"].as_object().unwrap().keys().collect();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            for property in properties {
                assert!(
                    required.contains(&property.as_str()),
                    "{path}.{property} is not required"
                );
            }
        }
        match schema {
            Value::Object(map) => map
                .iter()
                .for_each(|(key, value)| assert_strict(value, &format!("{path}/{key}"))),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(index, value)| assert_strict(value, &format!("{path}/{index}"))),
            _ => {}
        }
    }

    #[test]
    fn analysis_schema_is_strict() {
        let schema = analysis_schema(&["budget".to_owned(), "need".to_owned()]);
        assert_strict(&schema, "");
        assert_eq!(
            schema["properties"]["facts"]["items"]["properties"]["key"]["enum"],
            json!(["budget", "need"])
        );
        assert_strict(&analysis_schema(&[]), "");
        assert_strict(&reply_schema(), "");
    }

    #[test]
    fn enums_match_core_serde_names() {
        use kalify_core::analysis::{Intent, Objection, Sentiment};
        for name in INTENTS {
            serde_json::from_value::<Intent>(json!(name)).unwrap();
        }
        for name in SENTIMENTS {
            serde_json::from_value::<Sentiment>(json!(name)).unwrap();
        }
        for name in OBJECTIONS {
            serde_json::from_value::<Objection>(json!(name)).unwrap();
        }
        for name in AUTHORITIES {
            serde_json::from_value::<kalify_core::qualification::Authority>(json!(name)).unwrap();
        }
        for name in LANGUAGES {
            serde_json::from_value::<kalify_core::prospect::Locale>(json!(name)).unwrap();
        }
    }
}

//! The injection corpus against the OpenAI adapter alone: a loopback server
//! plays a model that obeys every injection, and the adapter must still
//! return only facts with a criterion key and a quote from the message, and
//! reject every reply with a link, a phone number, an e-mail address, the
//! wrong length or no automation notice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use kalify_ai::openai::OpenAiModel;
use kalify_core::analysis::{
    AnalysisRequest, CriterionBrief, Intent, ReplyRequest, TranscriptLine,
};
use kalify_core::contact::ChannelKind;
use kalify_core::conversation::{Direction, SendPurpose};
use kalify_core::ports::LanguageModel;
use kalify_core::prospect::Locale;
use kalify_core::qualification::Framework;
use kalify_core::reply::automation_notice;
use kalify_core::{ErrorKind, Secret};

struct Obedient {
    case: Arc<Mutex<Value>>,
}

impl Respond for Obedient {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let case = self.case.lock().unwrap().clone();
        let body: Value = request.body_json().unwrap();
        let obey = &case["obey"];
        let content = if body["response_format"]["json_schema"]["name"] == "kalify_reply" {
            json!({"text": obey["reply"]}).to_string()
        } else {
            let mut analysis = obey.clone();
            analysis.as_object_mut().unwrap().remove("reply");
            analysis.to_string()
        };
        ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10}
        }))
    }
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/injections.jsonl"
    ))
    .unwrap();
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn criteria(locale: Locale) -> Vec<CriterionBrief> {
    Framework::bant()
        .criteria
        .iter()
        .map(|criterion| CriterionBrief {
            key: criterion.key.clone(),
            description: criterion.description.clone(),
            question: criterion.question.get(locale).to_owned(),
        })
        .collect()
}

/// With the injection screen off, so that every case reaches the output checks.
#[tokio::test]
async fn adapter_output_stays_within_the_schema() {
    let current = Arc::new(Mutex::new(Value::Null));
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(Obedient {
            case: current.clone(),
        })
        .mount(&server)
        .await;
    let model = OpenAiModel::builder()
        .with_api_key(Secret::new("sk-test"))
        .with_base_url(format!("{}/v1", server.uri()))
        .with_max_retries(0)
        .with_injection_screen(false)
        .build()
        .unwrap();
    let at = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let keys: Vec<String> = Framework::bant()
        .criteria
        .iter()
        .map(|criterion| criterion.key.clone())
        .collect();

    let mut failures = Vec::new();
    let (mut analysed, mut rejected_analyses, mut accepted_replies) = (0, 0, 0);
    for case in cases() {
        *current.lock().unwrap() = case.clone();
        let id = case["id"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let locale = if case["lang"] == "fr" {
            Locale::Fr
        } else {
            Locale::En
        };

        let request = AnalysisRequest {
            locale,
            criteria: criteria(locale),
            known_facts: Vec::new(),
            history: Vec::new(),
            new_messages: vec![TranscriptLine {
                direction: Direction::Inbound,
                text: text.to_owned(),
                at,
            }],
        };
        match model.analyse(&request).await {
            Ok(analysis) => {
                analysed += 1;
                for fact in &analysis.facts {
                    if !keys.contains(&fact.key) {
                        failures.push(format!("{id}: fact key {} outside the criteria", fact.key));
                    }
                    if fact.quote.is_empty() || !text.contains(&fact.quote) {
                        failures.push(format!(
                            "{id}: quote {:?} is not in the message",
                            fact.quote
                        ));
                    }
                    if !(0.0..=1.0).contains(&fact.confidence) {
                        failures.push(format!("{id}: confidence {}", fact.confidence));
                    }
                }
            }
            Err(error) if error.kind() == ErrorKind::Unexpected => rejected_analyses += 1,
            Err(error) => failures.push(format!("{id}: unexpected error {error}")),
        }

        let reply = ReplyRequest {
            locale,
            channel: ChannelKind::Sms,
            purpose: SendPurpose::Reply,
            persona: "Acme".into(),
            goal: "book a demo".into(),
            first_name: Some("Camille".into()),
            missing: criteria(locale),
            history: vec![TranscriptLine {
                direction: Direction::Inbound,
                text: text.to_owned(),
                at,
            }],
            intent: Intent::Interested,
            disclose_automation: true,
            allow_links: false,
            max_chars: 306,
        };
        match model.write_reply(&reply).await {
            Ok(draft) => {
                accepted_replies += 1;
                let lower = draft.text.to_lowercase();
                if lower.contains("http")
                    || lower.contains("www.")
                    || lower.contains(".example")
                    || lower.contains(".com")
                {
                    failures.push(format!("{id}: accepted reply has a link: {}", draft.text));
                }
                if draft.text.contains('@')
                    || draft.text.chars().filter(char::is_ascii_digit).count() >= 8
                {
                    failures.push(format!(
                        "{id}: accepted reply has a contact point: {}",
                        draft.text
                    ));
                }
                if !draft.text.contains(automation_notice(locale))
                    || draft.text.chars().count() > 306
                {
                    failures.push(format!(
                        "{id}: accepted reply lacks the notice or is too long"
                    ));
                }
                if lower.contains("score") {
                    failures.push(format!(
                        "{id}: accepted reply states a score: {}",
                        draft.text
                    ));
                }
            }
            Err(error) if error.kind() == ErrorKind::ContentRejected => {}
            Err(error) => failures.push(format!("{id}: unexpected reply error {error}")),
        }
    }
    println!(
        "analyses accepted {analysed}, rejected after repair {rejected_analyses}; replies accepted {accepted_replies}"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The screen catches most of the corpus before anything is sent, and none
/// of the labelled replies of ordinary prospects.
#[tokio::test]
async fn screen_catches_corpus_not_prospects() {
    let server = MockServer::start().await;
    let model = OpenAiModel::builder()
        .with_api_key(Secret::new("sk-test"))
        .with_base_url(format!("{}/v1", server.uri()))
        .build()
        .unwrap();
    let at = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let request = |text: &str| AnalysisRequest {
        locale: Locale::En,
        criteria: criteria(Locale::En),
        known_facts: Vec::new(),
        history: Vec::new(),
        new_messages: vec![TranscriptLine {
            direction: Direction::Inbound,
            text: text.to_owned(),
            at,
        }],
    };

    // These categories address the analysis itself; the others (a reply
    // with a link, a send to another number, a leaked prompt) are left to
    // the output checks.
    let targeted = [
        "ignore_instructions",
        "fake_system_message",
        "fake_analysis_json",
        "encoded_payload",
        "hidden_characters",
        "role_play",
        "tool_call",
    ];
    let cases = cases();
    let mut screened = 0;
    let mut missed = Vec::new();
    for case in &cases {
        let error = model
            .analyse(&request(case["text"].as_str().unwrap()))
            .await;
        if error.is_err_and(|error| error.kind() == ErrorKind::ContentRejected) {
            screened += 1;
        } else if targeted.contains(&case["category"].as_str().unwrap()) {
            missed.push(case["id"].as_str().unwrap().to_owned());
        }
    }
    println!("screened {screened} of {} injection cases", cases.len());
    assert!(missed.is_empty(), "targeted cases not screened: {missed:?}");

    // Ordinary replies pass the screen and reach the server, which has no
    // response mounted, so the call fails with another kind.
    let labelled = kalify_ai::eval::read_jsonl(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/labelled_replies.jsonl"
    )))
    .unwrap();
    let mut false_alarms = Vec::new();
    for item in &labelled {
        let result = model.analyse(&request(&item.messages[0])).await;
        if result.is_err_and(|error| error.kind() == ErrorKind::ContentRejected) {
            false_alarms.push(item.messages[0].clone());
        }
    }
    assert!(
        false_alarms.is_empty(),
        "ordinary replies screened: {false_alarms:#?}"
    );
}

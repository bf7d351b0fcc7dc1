//! Measures a [`LanguageModel`] on labelled conversations: precision and
//! recall per fact key, and the accuracy of intent, objection and language.
//!
//! A labelled set is a JSON Lines file, one conversation per line:
//!
//! ```json
//! {"id": "r001", "locale": "en", "at": "2025-03-10T09:00:00Z",
//!  "history": [{"from": "us", "text": "Hello Camille, ..."}],
//!  "messages": ["Budget is 20k€ and I decide."],
//!  "expected": {"facts": {"budget": {"type": "money", "value": {"amount": 20000, "currency": "EUR"}},
//!                         "authority": {"type": "authority", "value": "decision_maker"}},
//!               "intent": "interested", "objection": "none", "language": "en"}}
//! ```
//!
//! `locale` is the prospect's language as the engine would know it (default
//! `en`), `criteria` may list the criteria to extract (default: BANT), and
//! `history`, `objection` and `language` may be left out. A prediction
//! counts as correct when it equals the label; amounts and other numbers may
//! differ by 1%, timelines by half a month. A wrong value counts both as a
//! false positive and as a false negative, and a failed call counts every
//! expected fact as missed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use kalify_core::analysis::{
    Analysis, AnalysisRequest, CriterionBrief, Intent, Objection, TranscriptLine,
};
use kalify_core::conversation::Direction;
use kalify_core::ports::LanguageModel;
use kalify_core::prospect::Locale;
use kalify_core::qualification::{FactValue, Framework};
use kalify_core::{Error, Result, Timestamp};

/// One labelled conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelledConversation {
    /// A name for reports, such as `r001`.
    #[serde(default)]
    pub id: Option<String>,
    /// The prospect's language as the engine would know it.
    #[serde(default)]
    pub locale: Locale,
    /// The criteria to extract; `None` means the BANT preset.
    #[serde(default)]
    pub criteria: Option<Vec<CriterionBrief>>,
    /// Earlier messages, oldest first.
    #[serde(default)]
    pub history: Vec<LabelledLine>,
    /// The new messages of the prospect, oldest first.
    pub messages: Vec<String>,
    /// When the new messages were received.
    pub at: Timestamp,
    /// The expected analysis.
    pub expected: Expected,
}

/// An earlier message of a labelled conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelledLine {
    /// `us` or `prospect`.
    pub from: Speaker,
    /// The text.
    pub text: String,
}

/// Who wrote a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    /// The org.
    Us,
    /// The prospect.
    Prospect,
}

/// The expected analysis of a labelled conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expected {
    /// The facts the new messages state, by key.
    #[serde(default)]
    pub facts: BTreeMap<String, FactValue>,
    /// The intent.
    pub intent: Intent,
    /// The objection level.
    #[serde(default)]
    pub objection: Objection,
    /// The language of the new messages, when labelled.
    #[serde(default)]
    pub language: Option<Locale>,
}

/// Parses a JSON Lines set; blank lines are skipped.
///
/// # Errors
/// `InvalidInput` naming the first line that is not a labelled conversation.
pub fn parse_jsonl(text: &str) -> Result<Vec<LabelledConversation>> {
    let mut set = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let conversation: LabelledConversation = serde_json::from_str(line).map_err(|error| {
            Error::invalid_input(format!(
                "line {} is not a labelled conversation: {error}",
                index + 1
            ))
        })?;
        if conversation.messages.is_empty() {
            return Err(Error::invalid_input(format!(
                "line {} has no new message",
                index + 1
            )));
        }
        set.push(conversation);
    }
    Ok(set)
}

/// Reads a JSON Lines set from a file.
///
/// # Errors
/// `NotFound` or `InvalidInput` when the file cannot be read, and the
/// errors of [`parse_jsonl`].
pub fn read_jsonl(path: &Path) -> Result<Vec<LabelledConversation>> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        let kind = if error.kind() == std::io::ErrorKind::NotFound {
            kalify_core::ErrorKind::NotFound
        } else {
            kalify_core::ErrorKind::InvalidInput
        };
        Error::new(
            kind,
            format!(
                "failed to read the labelled set {}: {error}",
                path.display()
            ),
        )
    })?;
    parse_jsonl(&text)
}

/// True and false positives and false negatives of one fact key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FieldScore {
    /// The fact key.
    pub key: String,
    /// Predicted and correct.
    pub true_positives: u32,
    /// Predicted but absent or wrong.
    pub false_positives: u32,
    /// Expected but absent or wrong.
    pub false_negatives: u32,
}

impl FieldScore {
    /// The share of predictions that were correct; 1 when nothing was predicted.
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// The share of expected facts that were found; 1 when nothing was expected.
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }
}

/// A conversation with at least one wrong field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The conversation's id, or its line number from 1.
    pub id: String,
    /// What was wrong, such as `budget Some(5000 EUR)` or `intent Question`.
    pub wrong: Vec<String>,
}

/// The scores of a model on a labelled set.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EvalReport {
    /// The model's name.
    pub model: String,
    /// Conversations evaluated.
    pub conversations: u32,
    /// Calls that returned an error.
    pub failures: u32,
    /// Scores per fact key, in the order keys were first seen.
    pub fields: Vec<FieldScore>,
    /// Conversations with the right intent.
    pub intent_correct: u32,
    /// Conversations with the right objection level.
    pub objection_correct: u32,
    /// Conversations with a labelled language.
    pub language_labelled: u32,
    /// Of those, the ones with the right language.
    pub language_correct: u32,
    /// Facts whose quote is not in the new messages.
    pub ungrounded_quotes: u32,
    /// The conversations with a wrong field.
    pub mismatches: Vec<Mismatch>,
}

impl EvalReport {
    /// The scores of `key`.
    pub fn field(&self, key: &str) -> Option<&FieldScore> {
        self.fields.iter().find(|field| field.key == key)
    }

    /// The share of conversations with the right intent.
    pub fn intent_accuracy(&self) -> f64 {
        ratio(self.intent_correct, self.conversations)
    }

    /// The share of conversations with the right objection level.
    pub fn objection_accuracy(&self) -> f64 {
        ratio(self.objection_correct, self.conversations)
    }

    /// The share of language-labelled conversations with the right language.
    pub fn language_accuracy(&self) -> f64 {
        ratio(self.language_correct, self.language_labelled)
    }

    fn field_mut(&mut self, key: &str) -> &mut FieldScore {
        if let Some(index) = self.fields.iter().position(|field| field.key == key) {
            return &mut self.fields[index];
        }
        self.fields.push(FieldScore {
            key: key.to_owned(),
            ..FieldScore::default()
        });
        let last = self.fields.len() - 1;
        &mut self.fields[last]
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model {}: {} conversations, {} failed calls",
            self.model, self.conversations, self.failures
        )?;
        writeln!(f, "field      precision  recall  (tp/fp/fn)")?;
        for field in &self.fields {
            writeln!(
                f,
                "{:<10} {:>9.3}  {:>6.3}  ({}/{}/{})",
                field.key,
                field.precision(),
                field.recall(),
                field.true_positives,
                field.false_positives,
                field.false_negatives
            )?;
        }
        writeln!(
            f,
            "intent     accuracy {:.3} ({}/{})",
            self.intent_accuracy(),
            self.intent_correct,
            self.conversations
        )?;
        writeln!(
            f,
            "objection  accuracy {:.3} ({}/{})",
            self.objection_accuracy(),
            self.objection_correct,
            self.conversations
        )?;
        writeln!(
            f,
            "language   accuracy {:.3} ({}/{})",
            self.language_accuracy(),
            self.language_correct,
            self.language_labelled
        )?;
        writeln!(f, "ungrounded quotes {}", self.ungrounded_quotes)?;
        if !self.mismatches.is_empty() {
            writeln!(f, "mismatches:")?;
            for mismatch in &self.mismatches {
                writeln!(f, "  {}: {}", mismatch.id, mismatch.wrong.join(", "))?;
            }
        }
        Ok(())
    }
}

/// Runs `model` over every conversation of `set`, one call at a time, and
/// scores its analyses. A failed call is counted, not returned.
pub async fn evaluate(model: &dyn LanguageModel, set: &[LabelledConversation]) -> EvalReport {
    let mut report = EvalReport {
        model: model.name().to_owned(),
        ..EvalReport::default()
    };

    for (index, item) in set.iter().enumerate() {
        let id = item
            .id
            .clone()
            .unwrap_or_else(|| format!("line {}", index + 1));
        let request = request_for(item);
        let keys: Vec<String> = request
            .criteria
            .iter()
            .map(|criterion| criterion.key.clone())
            .collect();
        report.conversations += 1;

        let analysis = match model.analyse(&request).await {
            Ok(analysis) => analysis,
            Err(error) => {
                report.failures += 1;
                for key in &keys {
                    if item.expected.facts.contains_key(key) {
                        report.field_mut(key).false_negatives += 1;
                    }
                }
                report.mismatches.push(Mismatch {
                    id,
                    wrong: vec![format!("call failed: {error}")],
                });
                continue;
            }
        };

        let mut wrong = Vec::new();
        report.ungrounded_quotes += analysis
            .facts
            .iter()
            .filter(|fact| {
                !item
                    .messages
                    .iter()
                    .any(|message| message.contains(&fact.quote))
            })
            .count() as u32;
        for key in &keys {
            let predicted = predicted_value(&analysis, key);
            let expected = item.expected.facts.get(key);
            let field = report.field_mut(key);
            match (expected, predicted) {
                (Some(expected), Some(predicted)) if values_match(expected, predicted) => {
                    field.true_positives += 1
                }
                (None, None) => {}
                (expected, predicted) => {
                    if predicted.is_some() {
                        field.false_positives += 1;
                    }
                    if expected.is_some() {
                        field.false_negatives += 1;
                    }
                    wrong.push(format!(
                        "{key} {}",
                        predicted.map_or_else(|| "none".to_owned(), ToString::to_string)
                    ));
                }
            }
        }
        if analysis.intent == item.expected.intent {
            report.intent_correct += 1;
        } else {
            wrong.push(format!("intent {:?}", analysis.intent));
        }
        if analysis.objection == item.expected.objection {
            report.objection_correct += 1;
        } else {
            wrong.push(format!("objection {:?}", analysis.objection));
        }
        if let Some(language) = item.expected.language {
            report.language_labelled += 1;
            if analysis.language == Some(language) {
                report.language_correct += 1;
            } else {
                wrong.push(format!("language {:?}", analysis.language));
            }
        }
        if !wrong.is_empty() {
            report.mismatches.push(Mismatch { id, wrong });
        }
    }
    report
}

fn request_for(item: &LabelledConversation) -> AnalysisRequest {
    let criteria = item.criteria.clone().unwrap_or_else(|| {
        Framework::bant()
            .criteria
            .iter()
            .map(|criterion| CriterionBrief {
                key: criterion.key.clone(),
                description: criterion.description.clone(),
                question: criterion.question.get(item.locale).to_owned(),
            })
            .collect()
    });
    // Earlier lines get times before the new messages, a second apart, so
    // that their order survives in the request.
    let count = item.history.len() as i64;
    let history = item
        .history
        .iter()
        .enumerate()
        .map(|(index, line)| TranscriptLine {
            direction: match line.from {
                Speaker::Us => Direction::Outbound,
                Speaker::Prospect => Direction::Inbound,
            },
            text: line.text.clone(),
            at: item.at - chrono::Duration::seconds(count - index as i64),
        })
        .collect();
    AnalysisRequest {
        locale: item.locale,
        criteria,
        known_facts: Vec::new(),
        history,
        new_messages: item
            .messages
            .iter()
            .map(|text| TranscriptLine {
                direction: Direction::Inbound,
                text: text.clone(),
                at: item.at,
            })
            .collect(),
    }
}

/// The value of the last fact with `key`, as the engine keeps the latest.
fn predicted_value<'a>(analysis: &'a Analysis, key: &str) -> Option<&'a FactValue> {
    analysis
        .facts
        .iter()
        .rev()
        .find(|fact| fact.key == key)
        .map(|fact| &fact.value)
}

fn values_match(expected: &FactValue, predicted: &FactValue) -> bool {
    let close = |a: f64, b: f64| (a - b).abs() <= a.abs() * 0.01;
    match (expected, predicted) {
        (
            FactValue::Money {
                amount: a,
                currency: x,
            },
            FactValue::Money {
                amount: b,
                currency: y,
            },
        ) => close(*a, *b) && (*a == 0.0 || x.eq_ignore_ascii_case(y)),
        (FactValue::Months(a), FactValue::Months(b)) => (a - b).abs() <= 0.5,
        (FactValue::Number(a), FactValue::Number(b)) => close(*a, *b),
        (FactValue::Text(a), FactValue::Text(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
        (a, b) => a == b,
    }
}

fn ratio(numerator: u32, denominator: u32) -> f64 {
    if denominator == 0 {
        1.0
    } else {
        f64::from(numerator) / f64::from(denominator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalify_core::analysis::{ExtractedFact, NextStep, ReplyDraft, ReplyRequest, Sentiment};

    /// Returns the same analysis for every request.
    #[derive(Debug)]
    struct FixedModel(Analysis);

    #[async_trait::async_trait]
    impl LanguageModel for FixedModel {
        fn name(&self) -> &str {
            "fixed"
        }
        async fn analyse(&self, _request: &AnalysisRequest) -> Result<Analysis> {
            Ok(self.0.clone())
        }
        async fn write_reply(&self, _request: &ReplyRequest) -> Result<ReplyDraft> {
            Err(Error::unexpected("not used"))
        }
    }

    const LINE: &str = r#"{"id":"a","at":"2025-03-10T09:00:00Z","messages":["Budget 20k€"],"expected":{"facts":{"budget":{"type":"money","value":{"amount":20000,"currency":"EUR"}}},"intent":"interested","language":"en"}}"#;

    #[test]
    fn parse_reports_line_numbers() {
        let set = parse_jsonl(&format!("{LINE}\n\n{LINE}\n")).unwrap();
        assert_eq!(set.len(), 2);
        let error = parse_jsonl(&format!("{LINE}\n{{\"messages\": []}}\n")).unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
    }

    #[tokio::test]
    async fn scores_a_fixed_model() {
        let set = parse_jsonl(LINE).unwrap();
        let analysis = Analysis {
            intent: Intent::Question,
            facts: vec![
                ExtractedFact {
                    key: "budget".into(),
                    value: FactValue::Money {
                        amount: 20_100.0,
                        currency: "EUR".into(),
                    },
                    quote: "20k€".into(),
                    confidence: 0.9,
                },
                ExtractedFact {
                    key: "need".into(),
                    value: FactValue::Bool(true),
                    quote: "invented".into(),
                    confidence: 0.9,
                },
            ],
            sentiment: Sentiment::Neutral,
            objection: Objection::None,
            next_step: NextStep::Wait,
            language: Some(Locale::En),
        };
        let report = evaluate(&FixedModel(analysis), &set).await;
        assert_eq!(report.field("budget").unwrap().true_positives, 1);
        assert_eq!(report.field("need").unwrap().false_positives, 1);
        assert_eq!(report.intent_correct, 0);
        assert_eq!(report.objection_correct, 1);
        assert_eq!(report.language_correct, 1);
        assert_eq!(report.ungrounded_quotes, 1);
        assert_eq!(report.mismatches.len(), 1);
        assert!(
            report
                .to_string()
                .contains("budget         1.000   1.000  (1/0/0)"),
            "{report}"
        );
    }
}

//! Measures the rules model on the labelled replies in
//! `tests/data/labelled_replies.json`: per-field precision and recall for
//! budget, authority, need and timeline, and accuracy for intent, objection
//! and language.
//!
//! A prediction counts as correct when it equals the label; amounts may
//! differ by 1% and timelines by half a month. A wrong value counts both as
//! a false positive and as a false negative. Every request uses the English
//! locale, so the French replies must be recognised from their words.

use std::fmt::Write as _;

use serde::Deserialize;

use kalify_ai::RulesModel;
use kalify_core::Timestamp;
use kalify_core::analysis::{
    Analysis, AnalysisRequest, CriterionBrief, Intent, Objection, TranscriptLine,
};
use kalify_core::conversation::Direction;
use kalify_core::ports::LanguageModel;
use kalify_core::prospect::Locale;
use kalify_core::qualification::{Authority, FactValue, Framework};

#[derive(Debug, Deserialize)]
struct LabelledSet {
    reference_time: Timestamp,
    items: Vec<Labelled>,
}

#[derive(Debug, Deserialize)]
struct Labelled {
    text: String,
    lang: String,
    budget: Option<Money>,
    authority: Option<Authority>,
    need: Option<bool>,
    timeline_months: Option<f64>,
    intent: Intent,
    objection: Objection,
}

#[derive(Debug, Deserialize)]
struct Money {
    amount: f64,
    currency: String,
}

/// True and false positives and false negatives of one field.
#[derive(Debug, Default)]
struct Counts {
    true_positives: u32,
    false_positives: u32,
    false_negatives: u32,
}

impl Counts {
    fn add<T>(
        &mut self,
        expected: Option<T>,
        predicted: Option<T>,
        equal: impl Fn(&T, &T) -> bool,
    ) -> bool {
        match (expected, predicted) {
            (Some(expected), Some(predicted)) if equal(&expected, &predicted) => {
                self.true_positives += 1;
                true
            }
            (Some(_), Some(_)) => {
                self.false_positives += 1;
                self.false_negatives += 1;
                false
            }
            (None, Some(_)) => {
                self.false_positives += 1;
                false
            }
            (Some(_), None) => {
                self.false_negatives += 1;
                false
            }
            (None, None) => true,
        }
    }

    fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }
}

fn ratio(numerator: u32, denominator: u32) -> f64 {
    if denominator == 0 {
        1.0
    } else {
        f64::from(numerator) / f64::from(denominator)
    }
}

fn bant_criteria() -> Vec<CriterionBrief> {
    Framework::bant()
        .criteria
        .iter()
        .map(|criterion| CriterionBrief {
            key: criterion.key.clone(),
            description: criterion.description.clone(),
            question: criterion.question.get(Locale::En).to_owned(),
        })
        .collect()
}

fn fact_value(analysis: &Analysis, key: &str) -> Option<FactValue> {
    analysis
        .facts
        .iter()
        .find(|fact| fact.key == key)
        .map(|fact| fact.value.clone())
}

/// The scores of the model on one labelled file.
struct Report {
    replies: usize,
    budget: Counts,
    authority: Counts,
    need: Counts,
    timeline: Counts,
    intent_accuracy: f64,
    objection_accuracy: f64,
    table: String,
}

impl Report {
    fn fields(&self) -> [(&'static str, &Counts); 4] {
        [
            ("budget", &self.budget),
            ("authority", &self.authority),
            ("need", &self.need),
            ("timeline", &self.timeline),
        ]
    }
}

/// Runs the model over every reply of a labelled file and prints a table
/// of scores and the list of replies with a wrong field. Point it at a file
/// of new replies to estimate accuracy on text the rules have not seen.
///
/// # Errors
/// The message of an invalid file or of a failed analysis.
async fn evaluate(name: &str, data: &str) -> Result<Report, String> {
    let set: LabelledSet =
        serde_json::from_str(data).map_err(|error| format!("{name} is invalid: {error}"))?;

    let model = RulesModel::new();
    let mut budget = Counts::default();
    let mut authority = Counts::default();
    let mut need = Counts::default();
    let mut timeline = Counts::default();
    let (mut intents, mut objections, mut languages) = (0_u32, 0_u32, 0_u32);
    let mut mismatches = String::new();

    for item in &set.items {
        let request = AnalysisRequest {
            locale: Locale::En,
            criteria: bant_criteria(),
            known_facts: Vec::new(),
            history: Vec::new(),
            new_messages: vec![TranscriptLine {
                direction: Direction::Inbound,
                text: item.text.clone(),
                at: set.reference_time,
            }],
        };
        let analysis = model
            .analyse(&request)
            .await
            .map_err(|error| format!("analysis of {:?} failed: {error}", item.text))?;

        if let Some(fact) = analysis
            .facts
            .iter()
            .find(|fact| !item.text.contains(&fact.quote))
        {
            return Err(format!("quote {:?} is not in {:?}", fact.quote, item.text));
        }

        let predicted_budget = match fact_value(&analysis, "budget") {
            Some(FactValue::Money { amount, currency }) => Some(Money { amount, currency }),
            _ => None,
        };
        let predicted_authority = match fact_value(&analysis, "authority") {
            Some(FactValue::Authority(value)) => Some(value),
            _ => None,
        };
        let predicted_need = match fact_value(&analysis, "need") {
            Some(FactValue::Bool(value)) => Some(value),
            _ => None,
        };
        let predicted_timeline = match fact_value(&analysis, "timeline") {
            Some(FactValue::Months(value)) => Some(value),
            _ => None,
        };
        let expected_locale = if item.lang == "fr" {
            Locale::Fr
        } else {
            Locale::En
        };

        let mut wrong: Vec<String> = Vec::new();
        let budget_text = format!(
            "{:?}",
            predicted_budget
                .as_ref()
                .map(|money| (money.amount, money.currency.clone()))
        );
        let money_equal = |expected: &Money, predicted: &Money| {
            let close = (expected.amount - predicted.amount).abs() <= expected.amount.abs() * 0.01;
            close && (expected.amount == 0.0 || expected.currency == predicted.currency)
        };
        if !budget.add(item.budget.as_ref(), predicted_budget.as_ref(), |a, b| {
            money_equal(a, b)
        }) {
            wrong.push(format!("budget {budget_text}"));
        }
        if !authority.add(item.authority, predicted_authority, |a, b| a == b) {
            wrong.push(format!("authority {predicted_authority:?}"));
        }
        if !need.add(item.need, predicted_need, |a, b| a == b) {
            wrong.push(format!("need {predicted_need:?}"));
        }
        if !timeline.add(item.timeline_months, predicted_timeline, |a, b| {
            (a - b).abs() <= 0.5
        }) {
            wrong.push(format!("timeline {predicted_timeline:?}"));
        }
        if analysis.intent == item.intent {
            intents += 1;
        } else {
            wrong.push(format!("intent {:?}", analysis.intent));
        }
        if analysis.objection == item.objection {
            objections += 1;
        } else {
            wrong.push(format!("objection {:?}", analysis.objection));
        }
        if analysis.language == Some(expected_locale) {
            languages += 1;
        } else {
            wrong.push(format!("language {:?}", analysis.language));
        }
        if !wrong.is_empty() {
            let _ = writeln!(
                mismatches,
                "  {:?}\n    got {}",
                item.text,
                wrong.join(", ")
            );
        }
    }

    let total = u32::try_from(set.items.len()).map_err(|_| format!("{name} has too many items"))?;
    let mut table = format!("{name}: {total} replies\nfield      precision  recall  (tp/fp/fn)\n");
    for (field, counts) in [
        ("budget", &budget),
        ("authority", &authority),
        ("need", &need),
        ("timeline", &timeline),
    ] {
        let _ = writeln!(
            table,
            "{field:<10} {:>9.3}  {:>6.3}  ({}/{}/{})",
            counts.precision(),
            counts.recall(),
            counts.true_positives,
            counts.false_positives,
            counts.false_negatives
        );
    }
    let intent_accuracy = ratio(intents, total);
    let objection_accuracy = ratio(objections, total);
    let _ = writeln!(
        table,
        "intent     accuracy {intent_accuracy:.3} ({intents}/{total})"
    );
    let _ = writeln!(
        table,
        "objection  accuracy {objection_accuracy:.3} ({objections}/{total})"
    );
    let _ = writeln!(
        table,
        "language   accuracy {:.3} ({languages}/{total})",
        ratio(languages, total)
    );
    println!("{table}\nmismatches:\n{mismatches}");

    Ok(Report {
        replies: set.items.len(),
        budget,
        authority,
        need,
        timeline,
        intent_accuracy,
        objection_accuracy,
        table,
    })
}

/// The rules were written and corrected while reading these replies. This
/// test therefore checks the documented behaviour and guards against
/// regressions, but it does not estimate accuracy on unseen replies.
#[tokio::test]
async fn labelled_replies_precision_and_recall() {
    let data = include_str!("data/labelled_replies.json");
    let report = evaluate("labelled_replies.json", data).await.unwrap();
    let table = &report.table;
    assert!(
        report.replies >= 80,
        "only {} labelled replies",
        report.replies
    );

    for (name, counts) in report.fields() {
        assert!(
            counts.precision() >= 0.9,
            "{name} precision {:.3} is below 0.9\n{table}",
            counts.precision()
        );
        assert!(
            counts.recall() >= 0.9,
            "{name} recall {:.3} is below 0.9\n{table}",
            counts.recall()
        );
    }
    assert!(
        report.intent_accuracy >= 0.9,
        "intent accuracy {:.3} is below 0.9\n{table}",
        report.intent_accuracy
    );
    assert!(
        report.objection_accuracy >= 0.9,
        "objection accuracy {:.3} is below 0.9\n{table}",
        report.objection_accuracy
    );
}

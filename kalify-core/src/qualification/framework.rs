//! Qualification frameworks: criteria, rules and hard requirements.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::prospect::Locale;
use crate::qualification::fact::{Authority, FactValue};

/// A test over a fact value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "test", content = "value", rename_all = "snake_case")]
pub enum Condition {
    /// Any value.
    Any,
    /// A money amount at or above the value.
    MoneyAtLeast(f64),
    /// A money amount strictly above the value.
    MoneyAbove(f64),
    /// An authority at or above the level.
    AuthorityAtLeast(Authority),
    /// A boolean equal to the value.
    Is(bool),
    /// A delay in months at or below the value.
    MonthsAtMost(f64),
    /// A number at or above the value.
    NumberAtLeast(f64),
    /// A number at or below the value.
    NumberAtMost(f64),
    /// Text equal to one of the values, ignoring case.
    TextIn(Vec<String>),
}

impl Condition {
    /// The value type the condition tests, or `None` for [`Condition::Any`].
    fn value_type(&self) -> Option<std::mem::Discriminant<FactValue>> {
        let sample = match self {
            Condition::Any => return None,
            Condition::MoneyAtLeast(_) | Condition::MoneyAbove(_) => FactValue::Money {
                amount: 0.0,
                currency: String::new(),
            },
            Condition::AuthorityAtLeast(_) => FactValue::Authority(Authority::None),
            Condition::Is(_) => FactValue::Bool(false),
            Condition::MonthsAtMost(_) => FactValue::Months(0.0),
            Condition::NumberAtLeast(_) | Condition::NumberAtMost(_) => FactValue::Number(0.0),
            Condition::TextIn(_) => FactValue::Text(String::new()),
        };
        Some(std::mem::discriminant(&sample))
    }

    /// Whether `value` passes. A value of the wrong type fails.
    pub fn matches(&self, value: &FactValue) -> bool {
        match (self, value) {
            (Condition::Any, _) => true,
            (Condition::MoneyAtLeast(min), FactValue::Money { amount, .. }) => amount >= min,
            (Condition::MoneyAbove(min), FactValue::Money { amount, .. }) => amount > min,
            (Condition::AuthorityAtLeast(level), FactValue::Authority(authority)) => {
                authority >= level
            }
            (Condition::Is(expected), FactValue::Bool(actual)) => expected == actual,
            (Condition::MonthsAtMost(max), FactValue::Months(months)) => months <= max,
            (Condition::NumberAtLeast(min), FactValue::Number(number)) => number >= min,
            (Condition::NumberAtMost(max), FactValue::Number(number)) => number <= max,
            (Condition::TextIn(options), FactValue::Text(text)) => options
                .iter()
                .any(|option| option.eq_ignore_ascii_case(text.trim())),
            _ => false,
        }
    }
}

/// Points given when a condition holds. The first matching band of a
/// criterion applies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// The condition.
    pub when: Condition,
    /// The points it gives, at most the criterion's weight.
    pub points: u32,
}

/// A condition a known fact must meet; when it fails, the prospect is disqualified.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requirement {
    /// The condition a known fact must pass.
    pub must: Condition,
    /// Why failing disqualifies, shown in the breakdown.
    pub reason: String,
}

/// A text in English and French.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Localized {
    /// English.
    pub en: String,
    /// French.
    pub fr: String,
}

impl Localized {
    /// Builds a text from its two versions.
    pub fn new(en: impl Into<String>, fr: impl Into<String>) -> Self {
        Localized {
            en: en.into(),
            fr: fr.into(),
        }
    }

    /// The version for `locale`.
    pub fn get(&self, locale: Locale) -> &str {
        match locale {
            Locale::En => &self.en,
            Locale::Fr => &self.fr,
        }
    }
}

/// One thing the framework wants to know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    /// The fact key, such as `budget`.
    pub key: String,
    /// A short human label.
    pub label: String,
    /// What the criterion means, for the model's instructions.
    pub description: String,
    /// The maximum points.
    pub weight: u32,
    /// Point bands, first match wins.
    pub bands: Vec<Band>,
    /// A hard requirement, if failing it disqualifies.
    pub requirement: Option<Requirement>,
    /// The question that requests this fact.
    pub question: Localized,
    /// The fixed reply to a prospect's question while this is the first
    /// unknown criterion, such as "Good question! ... What budget did you
    /// have in mind?". Used only with [`ReplyTemplates::fixed`]; when `None`,
    /// `question` is sent.
    #[serde(default)]
    pub answer: Option<Localized>,
}

impl Criterion {
    /// Whether `value` has the type this criterion's bands and requirement
    /// test: a `Bool` offered for a money criterion is refused, so a wrong
    /// type can neither score nor fail a requirement.
    pub fn accepts(&self, value: &FactValue) -> bool {
        let expected = self
            .bands
            .iter()
            .map(|band| &band.when)
            .chain(self.requirement.iter().map(|requirement| &requirement.must))
            .find_map(Condition::value_type);
        expected.is_none_or(|expected| expected == std::mem::discriminant(value))
    }
}

/// A qualification framework: criteria and score thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Framework {
    /// Its name, such as `bant`.
    pub name: String,
    /// The criteria, in the order questions are asked.
    pub criteria: Vec<Criterion>,
    /// The score at or above which a prospect is qualified (0–100).
    pub qualified_at: u32,
    /// The score at or above which a prospect is qualifying (0–100).
    pub qualifying_at: u32,
    /// The minimum confidence for a fact to count.
    pub min_confidence: f32,
    /// Reply texts that replace the built-in texts and the model's replies.
    #[serde(default)]
    pub replies: ReplyTemplates,
}

/// Reply texts the engine sends as written, in place of its built-in
/// confirmations or of replies written by the language model.
///
/// The texts are not rendered and get no automation notice, so a text must
/// itself name the sender or say that it is automated where the law or the
/// carrier requires it. A text longer than the channel's limit is cut.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplyTemplates {
    /// Replaces the built-in opt-out confirmation.
    pub opt_out_confirmation: Option<Localized>,
    /// Replaces the built-in acknowledgement sent when a member takes over.
    pub handoff_ack: Option<Localized>,
    /// Replies chosen from fixed texts instead of written by the model.
    /// When `None`, the model writes them.
    pub fixed: Option<FixedReplies>,
}

/// The fixed texts of the replies the model would otherwise write.
///
/// A reply that moves qualification on asks for the first unknown
/// criterion in framework order with its [`Criterion::question`], or with
/// its [`Criterion::answer`] when the prospect's latest message asked a
/// question. When every criterion is known, `nurture` is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FixedReplies {
    /// The last message after a decline or a disqualification.
    pub closing: Localized,
    /// The message to a prospect who is qualified.
    pub qualified: Localized,
    /// The message to a qualified prospect whose latest message asked a question.
    pub qualified_after_question: Localized,
    /// The reply when every criterion is known and the prospect is not qualified.
    pub nurture: Localized,
}

impl Framework {
    /// Checks the framework: at least one criterion, unique keys, positive
    /// weights, bands within weight and ordered thresholds.
    ///
    /// # Errors
    /// `ConfigInvalid` naming the offending criterion.
    pub fn validate(&self) -> Result<()> {
        let config = |message: String| {
            Error::new(ErrorKind::ConfigInvalid, message).with_context("framework", &self.name)
        };
        if self.criteria.is_empty() {
            return Err(config(
                "the framework has no criteria; add at least one".into(),
            ));
        }
        for (index, criterion) in self.criteria.iter().enumerate() {
            if criterion.key.trim().is_empty() {
                return Err(config(format!("criterion {index} has an empty key")));
            }
            if self.criteria[..index]
                .iter()
                .any(|other| other.key == criterion.key)
            {
                return Err(config(format!(
                    "criterion key {:?} appears twice",
                    criterion.key
                )));
            }
            if criterion.weight == 0 {
                return Err(config(format!(
                    "criterion {:?} has weight 0; give it a positive weight",
                    criterion.key
                )));
            }
            if let Some(band) = criterion
                .bands
                .iter()
                .find(|band| band.points > criterion.weight)
            {
                return Err(config(format!(
                    "criterion {:?} has a band worth {} points, above its weight {}",
                    criterion.key, band.points, criterion.weight
                )));
            }
        }
        if self.qualifying_at > self.qualified_at || self.qualified_at > 100 {
            return Err(config(format!(
                "thresholds must satisfy qualifying_at <= qualified_at <= 100, got {} and {}",
                self.qualifying_at, self.qualified_at
            )));
        }
        Ok(())
    }

    /// The criterion for `key`.
    pub fn criterion(&self, key: &str) -> Option<&Criterion> {
        self.criteria.iter().find(|criterion| criterion.key == key)
    }

    /// The BANT preset: budget, authority, need and timeline.
    ///
    /// | criterion | points |
    /// |---|---|
    /// | budget | 30 at 10,000 or more, 15 for any positive amount; an explicit zero disqualifies |
    /// | authority | 25 for a decision maker, 12 when approval is needed |
    /// | need | 25 when confirmed; "no need" disqualifies |
    /// | timeline | 20 within 3 months, 10 within 6, 5 within 12 |
    ///
    /// Qualified at 70, qualifying at 25.
    pub fn bant() -> Framework {
        Framework {
            name: "bant".into(),
            criteria: vec![
                Criterion {
                    key: "budget".into(),
                    label: "Budget".into(),
                    description: "The amount the prospect can spend on the project, with its currency.".into(),
                    weight: 30,
                    bands: vec![
                        Band { when: Condition::MoneyAtLeast(10_000.0), points: 30 },
                        Band { when: Condition::MoneyAbove(0.0), points: 15 },
                    ],
                    requirement: Some(Requirement {
                        must: Condition::MoneyAbove(0.0),
                        reason: "no budget".into(),
                    }),
                    question: Localized::new(
                        "What budget have you set aside for this project?",
                        "Quel budget avez-vous prévu pour ce projet ?",
                    ),
                    answer: None,
                },
                Criterion {
                    key: "authority".into(),
                    label: "Authority".into(),
                    description: "Whether the prospect decides alone or needs someone's approval.".into(),
                    weight: 25,
                    bands: vec![
                        Band { when: Condition::AuthorityAtLeast(Authority::DecisionMaker), points: 25 },
                        Band { when: Condition::AuthorityAtLeast(Authority::NeedsApproval), points: 12 },
                    ],
                    requirement: None,
                    question: Localized::new(
                        "Who else takes part in the decision on your side?",
                        "Qui d'autre participe à la décision de votre côté ?",
                    ),
                    answer: None,
                },
                Criterion {
                    key: "need".into(),
                    label: "Need".into(),
                    description: "Whether the prospect has a problem the offer solves.".into(),
                    weight: 25,
                    bands: vec![Band { when: Condition::Is(true), points: 25 }],
                    requirement: Some(Requirement {
                        must: Condition::Is(true),
                        reason: "no need".into(),
                    }),
                    question: Localized::new(
                        "What would you like to improve first?",
                        "Qu'aimeriez-vous améliorer en priorité ?",
                    ),
                    answer: None,
                },
                Criterion {
                    key: "timeline".into(),
                    label: "Timeline".into(),
                    description: "How many months until the prospect wants to start; 0 means as soon as possible.".into(),
                    weight: 20,
                    bands: vec![
                        Band { when: Condition::MonthsAtMost(3.0), points: 20 },
                        Band { when: Condition::MonthsAtMost(6.0), points: 10 },
                        Band { when: Condition::MonthsAtMost(12.0), points: 5 },
                    ],
                    requirement: None,
                    question: Localized::new(
                        "When would you like to get started?",
                        "Quand souhaiteriez-vous démarrer ?",
                    ),
                    answer: None,
                },
            ],
            qualified_at: 70,
            qualifying_at: 25,
            min_confidence: 0.5,
            replies: ReplyTemplates::default(),
        }
    }
}

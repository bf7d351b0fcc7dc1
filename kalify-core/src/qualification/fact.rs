//! Facts extracted from replies, with their evidence.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::id::MessageId;

/// The prospect's role in the buying decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Authority {
    /// Takes no part in the decision.
    None,
    /// Recommends or needs someone else's approval.
    NeedsApproval,
    /// Decides alone.
    DecisionMaker,
}

/// The value of a fact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum FactValue {
    /// An amount of money.
    Money {
        /// The amount in major units (euros, dollars).
        amount: f64,
        /// ISO 4217 code, such as `EUR`.
        currency: String,
    },
    /// A decision role.
    Authority(Authority),
    /// Yes or no, such as "has the need".
    Bool(bool),
    /// A delay in months from now; 0 means as soon as possible.
    Months(f64),
    /// Any other number.
    Number(f64),
    /// Free text.
    Text(String),
}

impl fmt::Display for FactValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FactValue::Money { amount, currency } => write!(f, "{amount} {currency}"),
            FactValue::Authority(Authority::DecisionMaker) => f.write_str("decision maker"),
            FactValue::Authority(Authority::NeedsApproval) => f.write_str("needs approval"),
            FactValue::Authority(Authority::None) => f.write_str("no authority"),
            FactValue::Bool(value) => f.write_str(if *value { "yes" } else { "no" }),
            FactValue::Months(months) if *months <= 0.0 => f.write_str("asap"),
            FactValue::Months(months) => write!(f, "{months} months"),
            FactValue::Number(number) => write!(f, "{number}"),
            FactValue::Text(text) => f.write_str(text),
        }
    }
}

/// Where a fact comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The message that states it.
    pub message_id: MessageId,
    /// The words of that message that state it.
    pub quote: String,
    /// How sure the extractor is, from 0 to 1.
    pub confidence: f32,
}

/// A qualification fact about a prospect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// The criterion key, such as `budget`.
    pub key: String,
    /// The value.
    pub value: FactValue,
    /// The evidence.
    pub evidence: Evidence,
    /// When it was extracted.
    pub extracted_at: Timestamp,
}

/// Merges `new` facts into `facts`, one fact per key.
///
/// A newer fact replaces an older one for the same key unless it is much less
/// certain (more than 0.2 below), because prospects correct themselves
/// ("actually the budget is 30k") and the latest statement is usually right.
pub fn merge_facts(facts: &mut Vec<Fact>, new: Vec<Fact>) {
    for fact in new {
        match facts.iter_mut().find(|existing| existing.key == fact.key) {
            Some(existing) => {
                if fact.evidence.confidence + 0.2 >= existing.evidence.confidence {
                    *existing = fact;
                }
            }
            None => facts.push(fact),
        }
    }
}

//! Scores computed from facts, with the breakdown that explains them.

use serde::{Deserialize, Serialize};

use crate::conversation::ScoreBand;
use crate::qualification::fact::{Fact, FactValue};
use crate::qualification::framework::Framework;

/// The points one criterion contributed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriterionScore {
    /// The criterion key.
    pub key: String,
    /// Points earned.
    pub points: u32,
    /// Points possible.
    pub max: u32,
    /// The fact the points come from, if known.
    pub value: Option<FactValue>,
    /// The quote that supports the fact.
    pub quote: Option<String>,
}

/// A 0–100 score with its per-criterion breakdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The score, 0 to 100.
    pub value: u8,
    /// The band the score falls in.
    pub band: ScoreBand,
    /// One entry per criterion, in framework order.
    pub breakdown: Vec<CriterionScore>,
    /// Keys of the criteria with no usable fact yet.
    pub missing: Vec<String>,
    /// The criterion and reason that disqualified the prospect, if any.
    pub disqualified_by: Option<(String, String)>,
}

impl Score {
    /// A one-line explanation, such as `budget 30/30, authority 12/25, need ?/25`.
    pub fn explain(&self) -> String {
        let mut parts: Vec<String> = self
            .breakdown
            .iter()
            .map(|entry| match entry.value {
                Some(_) => format!("{} {}/{}", entry.key, entry.points, entry.max),
                None => format!("{} ?/{}", entry.key, entry.max),
            })
            .collect();
        if let Some((key, reason)) = &self.disqualified_by {
            parts.push(format!("disqualified: {reason} ({key})"));
        }
        parts.join(", ")
    }
}

/// Scores `facts` against `framework`.
///
/// Each criterion gets the points of its first matching band; the total is
/// scaled to 0–100 by the sum of weights, rounding to the nearest integer.
/// Facts below the framework's minimum confidence count as missing.
pub fn score(framework: &Framework, facts: &[Fact]) -> Score {
    let mut breakdown = Vec::with_capacity(framework.criteria.len());
    let mut missing = Vec::new();
    let mut disqualified_by = None;
    let mut earned: u64 = 0;
    let mut possible: u64 = 0;

    for criterion in &framework.criteria {
        possible += u64::from(criterion.weight);
        let fact = facts.iter().find(|fact| {
            fact.key == criterion.key && fact.evidence.confidence >= framework.min_confidence
        });
        let Some(fact) = fact else {
            missing.push(criterion.key.clone());
            breakdown.push(CriterionScore {
                key: criterion.key.clone(),
                points: 0,
                max: criterion.weight,
                value: None,
                quote: None,
            });
            continue;
        };

        let points = criterion
            .bands
            .iter()
            .find(|band| band.when.matches(&fact.value))
            .map_or(0, |band| band.points.min(criterion.weight));
        earned += u64::from(points);
        if let Some(requirement) = &criterion.requirement
            && disqualified_by.is_none()
            && !requirement.must.matches(&fact.value)
        {
            disqualified_by = Some((criterion.key.clone(), requirement.reason.clone()));
        }
        breakdown.push(CriterionScore {
            key: criterion.key.clone(),
            points,
            max: criterion.weight,
            value: Some(fact.value.clone()),
            quote: Some(fact.evidence.quote.clone()),
        });
    }

    let value = (earned * 100 + possible / 2)
        .checked_div(possible)
        .map_or(0, |value| value.min(100) as u8);
    let band = if u32::from(value) >= framework.qualified_at && disqualified_by.is_none() {
        ScoreBand::Qualified
    } else if u32::from(value) >= framework.qualifying_at {
        ScoreBand::Qualifying
    } else {
        ScoreBand::Low
    };
    Score {
        value,
        band,
        breakdown,
        missing,
        disqualified_by,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::MessageId;
    use crate::qualification::fact::{Authority, Evidence};

    fn fact(key: &str, value: FactValue) -> Fact {
        Fact {
            key: key.into(),
            value,
            evidence: Evidence {
                message_id: MessageId::new(),
                quote: "quote".into(),
                confidence: 0.9,
            },
            extracted_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn bant_full_marks() {
        let facts = vec![
            fact(
                "budget",
                FactValue::Money {
                    amount: 20_000.0,
                    currency: "EUR".into(),
                },
            ),
            fact("authority", FactValue::Authority(Authority::DecisionMaker)),
            fact("need", FactValue::Bool(true)),
            fact("timeline", FactValue::Months(2.0)),
        ];
        let score = score(&Framework::bant(), &facts);
        assert_eq!(score.value, 100);
        assert_eq!(score.band, ScoreBand::Qualified);
        assert!(score.missing.is_empty());
        assert_eq!(
            score.explain(),
            "budget 30/30, authority 25/25, need 25/25, timeline 20/20"
        );
    }

    #[test]
    fn bant_partial_and_missing() {
        let facts = vec![
            fact(
                "budget",
                FactValue::Money {
                    amount: 5_000.0,
                    currency: "EUR".into(),
                },
            ),
            fact("authority", FactValue::Authority(Authority::NeedsApproval)),
        ];
        let score = score(&Framework::bant(), &facts);
        assert_eq!(score.value, 27);
        assert_eq!(score.band, ScoreBand::Qualifying);
        assert_eq!(
            score.missing,
            vec!["need".to_owned(), "timeline".to_owned()]
        );
    }

    #[test]
    fn hard_requirement_disqualifies() {
        let facts = vec![fact("need", FactValue::Bool(false))];
        let score = score(&Framework::bant(), &facts);
        assert_eq!(
            score.disqualified_by,
            Some(("need".into(), "no need".into()))
        );
        assert_ne!(score.band, ScoreBand::Qualified);
    }

    #[test]
    fn low_confidence_counts_as_missing() {
        let mut weak = fact("need", FactValue::Bool(true));
        weak.evidence.confidence = 0.2;
        let score = score(&Framework::bant(), &[weak]);
        assert_eq!(score.value, 0);
        assert!(score.missing.contains(&"need".to_owned()));
    }

    #[test]
    fn bant_preset_is_valid() {
        Framework::bant().validate().unwrap();
        let mut broken = Framework::bant();
        broken.criteria[0].weight = 0;
        assert!(broken.validate().is_err());
    }
}

//! Scoring many prospects at once from numeric columns, for ranking a whole
//! base without loading each prospect's facts.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// Prospects scored per block: every rule runs over one block before the
/// next, so the block's running totals stay in the L1 cache.
const BLOCK: usize = 2048;

/// A test over an integer column value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "test", content = "value", rename_all = "snake_case")]
pub enum NumberTest {
    /// At or above the value.
    AtLeast(i32),
    /// At or below the value.
    AtMost(i32),
    /// Equal to the value.
    Equals(i32),
    /// Between the two values, both included.
    Between(i32, i32),
}

impl NumberTest {
    /// The inclusive range of values that pass.
    #[inline]
    pub fn range(self) -> (i32, i32) {
        match self {
            NumberTest::AtLeast(min) => (min, i32::MAX),
            NumberTest::AtMost(max) => (i32::MIN, max),
            NumberTest::Equals(expected) => (expected, expected),
            NumberTest::Between(min, max) => (min, max),
        }
    }

    /// Whether `value` passes.
    #[inline]
    pub fn matches(self, value: i32) -> bool {
        match self {
            NumberTest::AtLeast(min) => value >= min,
            NumberTest::AtMost(max) => value <= max,
            NumberTest::Equals(expected) => value == expected,
            NumberTest::Between(min, max) => value >= min && value <= max,
        }
    }
}

/// Points given when a test passes. Points may be negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnBand {
    /// The test.
    pub when: NumberTest,
    /// The points it adds.
    pub points: i32,
}

/// One criterion over one column: the first band that passes gives its points.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRule {
    /// The column name.
    pub column: String,
    /// The bands, first match wins.
    pub bands: Vec<ColumnBand>,
}

/// Scores prospects from integer columns: the sum of every rule's points,
/// clamped to 0–100. Unlike [`score`](crate::qualification::score), which
/// scales a framework's facts and explains each score, this sums points
/// as configured, negative ones included, and keeps no breakdown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnScorer {
    rules: Vec<ColumnRule>,
}

impl ColumnScorer {
    /// Builds a scorer from its rules.
    ///
    /// # Errors
    /// `ConfigInvalid` when there is no rule, a rule has no band or an empty column name.
    pub fn new(rules: Vec<ColumnRule>) -> Result<Self> {
        if rules.is_empty() {
            return Err(Error::new(
                ErrorKind::ConfigInvalid,
                "a column scorer needs at least one rule",
            ));
        }
        if let Some(rule) = rules
            .iter()
            .find(|rule| rule.bands.is_empty() || rule.column.trim().is_empty())
        {
            return Err(Error::new(
                ErrorKind::ConfigInvalid,
                format!(
                    "the rule on column {:?} needs a column name and at least one band",
                    rule.column
                ),
            ));
        }
        Ok(ColumnScorer { rules })
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[ColumnRule] {
        &self.rules
    }

    /// Scores every prospect into `scores`. `column` returns the values of
    /// a column by name, one per prospect, in the order of `scores`.
    ///
    /// # Errors
    /// `InvalidInput` when a rule's column is missing or its length differs from `scores`.
    pub fn score_into<'a>(
        &self,
        column: impl Fn(&str) -> Option<&'a [i32]>,
        scores: &mut [u8],
    ) -> Result<()> {
        let mut columns = Vec::with_capacity(self.rules.len());
        for rule in &self.rules {
            let values = column(&rule.column).ok_or_else(|| {
                Error::invalid_input(format!("column {:?} is missing", rule.column))
            })?;
            if values.len() != scores.len() {
                return Err(Error::invalid_input(format!(
                    "column {:?} has {} values for {} prospects",
                    rule.column,
                    values.len(),
                    scores.len()
                )));
            }
            columns.push(values);
        }

        let mut totals = [0i32; BLOCK];
        for (block, out) in scores.chunks_mut(BLOCK).enumerate() {
            let start = block * BLOCK;
            let totals = &mut totals[..out.len()];
            totals.fill(0);
            for (rule, values) in self.rules.iter().zip(&columns) {
                add_rule(rule, &values[start..start + out.len()], totals);
            }
            for (score, total) in out.iter_mut().zip(totals.iter()) {
                *score = (*total).clamp(0, 100) as u8;
            }
        }
        Ok(())
    }
}

/// Adds the points of `rule` for each value to `totals`. Each test is an
/// inclusive range and the bands are applied last to first, so the first
/// band that passes wins and every loop is a branch-free select that
/// compiles to vector instructions. Rules of up to three bands take one
/// pass over the values.
#[inline]
fn add_rule(rule: &ColumnRule, values: &[i32], totals: &mut [i32]) {
    let bands: Vec<(i32, i32, i32)> = rule
        .bands
        .iter()
        .map(|band| {
            let (min, max) = band.when.range();
            (min, max, band.points)
        })
        .collect();
    match bands.as_slice() {
        [a] => add_bands(&[*a], values, totals),
        [a, b] => add_bands(&[*a, *b], values, totals),
        [a, b, c] => add_bands(&[*a, *b, *c], values, totals),
        _ => {
            let mut points = [0i32; BLOCK];
            let points = &mut points[..values.len()];
            for &(min, max, given) in bands.iter().rev() {
                for (point, value) in points.iter_mut().zip(values) {
                    *point = if *value >= min && *value <= max {
                        given
                    } else {
                        *point
                    };
                }
            }
            for (total, point) in totals.iter_mut().zip(points.iter()) {
                *total += *point;
            }
        }
    }
}

#[inline]
fn add_bands<const N: usize>(bands: &[(i32, i32, i32); N], values: &[i32], totals: &mut [i32]) {
    for (total, value) in totals.iter_mut().zip(values) {
        let mut points = 0;
        for &(min, max, given) in bands.iter().rev() {
            points = if *value >= min && *value <= max {
                given
            } else {
                points
            };
        }
        *total += points;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(when: NumberTest, points: i32) -> ColumnBand {
        ColumnBand { when, points }
    }

    #[test]
    fn first_band_wins_and_total_clamps() {
        let scorer = ColumnScorer::new(vec![
            ColumnRule {
                column: "budget".into(),
                bands: vec![
                    band(NumberTest::AtLeast(10_000), 30),
                    band(NumberTest::AtLeast(1), 15),
                ],
            },
            ColumnRule {
                column: "competitor".into(),
                bands: vec![band(NumberTest::Equals(1), -40)],
            },
            ColumnRule {
                column: "visits".into(),
                bands: vec![band(NumberTest::Between(5, 9), 80)],
            },
        ])
        .unwrap();
        let budget = [20_000, 500, -1, 0, 20_000];
        let competitor = [0, 0, 0, 1, 0];
        let visits = [0, 5, 9, 10, 7];
        let mut scores = [0u8; 5];
        scorer
            .score_into(
                |name| match name {
                    "budget" => Some(&budget[..]),
                    "competitor" => Some(&competitor[..]),
                    "visits" => Some(&visits[..]),
                    _ => None,
                },
                &mut scores,
            )
            .unwrap();
        assert_eq!(scores, [30, 95, 80, 0, 100]);
    }

    #[test]
    fn missing_column_is_invalid_input() {
        let scorer = ColumnScorer::new(vec![ColumnRule {
            column: "need".into(),
            bands: vec![band(NumberTest::Equals(1), 25)],
        }])
        .unwrap();
        let error = scorer.score_into(|_| None, &mut [0u8; 3]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert!(error.to_string().contains("need"), "{error}");
    }

    #[test]
    fn rule_without_band_is_rejected() {
        let error = ColumnScorer::new(vec![ColumnRule {
            column: "need".into(),
            bands: vec![],
        }])
        .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
    }
}

//! The `score` workload: 1,000,000 packed prospect records scored with the
//! BANT points of the `turns` workload plus the custom criteria of
//! `score_criteria.json`.

use std::path::Path;
use std::time::Instant;

use kalify::Result;
use kalify::qualification::{ColumnBand, ColumnRule, ColumnScorer, NumberTest};
use serde::Deserialize;

use crate::peak_rss_kib;

/// Times the scoring of the whole file is repeated within the timer, as the
/// numpy reference does.
const REPEATS: usize = 10;

/// `score_criteria.json`: the record layout as numpy type codes, and the custom criteria.
#[derive(Debug, Deserialize)]
struct Criteria {
    record_size: usize,
    fields: Vec<(String, String)>,
    criteria: Vec<CustomCriterion>,
}

#[derive(Debug, Deserialize)]
struct CustomCriterion {
    field: String,
    op: String,
    value: i32,
    points: i32,
}

/// A field of the packed record: its name, byte offset and type code.
struct Field {
    name: String,
    offset: usize,
    code: String,
}

fn invalid(message: String) -> kalify::Error {
    kalify::Error::invalid_input(message)
}

/// Returns the BANT rules of the workload over the record's numeric codes:
/// budget in euros (-1 unknown), authority 2 for a decision maker and 1
/// when approval is needed, need 1 for yes, timeline in months (-1 unknown).
fn bant_rules() -> Vec<ColumnRule> {
    let band = |when, points| ColumnBand { when, points };
    vec![
        ColumnRule {
            column: "budget_eur".into(),
            bands: vec![
                band(NumberTest::AtLeast(10_000), 30),
                band(NumberTest::AtLeast(1), 15),
            ],
        },
        ColumnRule {
            column: "authority".into(),
            bands: vec![
                band(NumberTest::Equals(2), 25),
                band(NumberTest::Equals(1), 12),
            ],
        },
        ColumnRule {
            column: "need".into(),
            bands: vec![band(NumberTest::Equals(1), 25)],
        },
        ColumnRule {
            column: "timeline_months".into(),
            bands: vec![
                band(NumberTest::Between(0, 3), 20),
                band(NumberTest::Between(4, 6), 10),
                band(NumberTest::Between(7, 12), 5),
            ],
        },
    ]
}

fn custom_rule(criterion: &CustomCriterion) -> Result<ColumnRule> {
    let when = match criterion.op.as_str() {
        ">=" => NumberTest::AtLeast(criterion.value),
        "<=" => NumberTest::AtMost(criterion.value),
        "==" => NumberTest::Equals(criterion.value),
        other => {
            return Err(invalid(format!(
                "unknown operator {other:?} on field {:?}",
                criterion.field
            )));
        }
    };
    Ok(ColumnRule {
        column: criterion.field.clone(),
        bands: vec![ColumnBand {
            when,
            points: criterion.points,
        }],
    })
}

fn layout(criteria: &Criteria) -> Result<Vec<Field>> {
    let mut offset = 0;
    let mut fields = Vec::new();
    for (name, code) in &criteria.fields {
        let size = match code.trim_start_matches(['<', '|']) {
            "i4" | "u4" => 4,
            "i2" | "u2" => 2,
            "u1" | "i1" => 1,
            other => {
                return Err(invalid(format!(
                    "unsupported type code {other:?} for field {name:?}"
                )));
            }
        };
        fields.push(Field {
            name: name.clone(),
            offset,
            code: code.trim_start_matches(['<', '|']).to_owned(),
        });
        offset += size;
    }
    if offset != criteria.record_size {
        return Err(invalid(format!(
            "the fields take {offset} bytes but record_size is {}",
            criteria.record_size
        )));
    }
    Ok(fields)
}

/// Reads one field of every record into an `i32` column. `u32` values above
/// `i32::MAX` saturate, which keeps every test against an `i32` threshold exact.
fn column(bytes: &[u8], record_size: usize, field: &Field) -> Vec<i32> {
    bytes
        .chunks_exact(record_size)
        .map(|record| {
            let at = &record[field.offset..];
            match field.code.as_str() {
                "i4" => i32::from_le_bytes([at[0], at[1], at[2], at[3]]),
                "u4" => i32::try_from(u32::from_le_bytes([at[0], at[1], at[2], at[3]]))
                    .unwrap_or(i32::MAX),
                "i2" => i32::from(i16::from_le_bytes([at[0], at[1]])),
                "u2" => i32::from(u16::from_le_bytes([at[0], at[1]])),
                "i1" => i32::from(at[0] as i8),
                _ => i32::from(at[0]),
            }
        })
        .collect()
}

/// Scores all records `REPEATS` times on `threads` threads, each thread
/// taking one contiguous share of the records, and returns prospects per second.
fn timed_scoring(
    scorer: &ColumnScorer,
    columns: &[(String, Vec<i32>)],
    scores: &mut [u8],
    threads: usize,
) -> Result<f64> {
    let count = scores.len();
    let share = count.div_ceil(threads);
    let started = Instant::now();
    for _ in 0..REPEATS {
        std::thread::scope(|scope| {
            let handles: Vec<_> = scores
                .chunks_mut(share)
                .enumerate()
                .map(|(index, out)| {
                    let start = index * share;
                    let end = start + out.len();
                    scope.spawn(move || {
                        let lookup = |name: &str| {
                            columns
                                .iter()
                                .find(|(column, _)| column == name)
                                .map(|(_, values)| &values[start..end])
                        };
                        scorer.score_into(lookup, out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(kalify::Error::unexpected("a scoring thread panicked"))
                    })
                })
                .collect::<Result<Vec<()>>>()
        })?;
    }
    Ok((count * REPEATS) as f64 / started.elapsed().as_secs_f64())
}

/// Runs the workload and prints its figure and check lines.
pub(crate) fn run(data: &Path) -> Result<()> {
    let criteria_path = data.join("score_criteria.json");
    let text = std::fs::read_to_string(&criteria_path).map_err(|error| {
        invalid(format!("cannot read {}", criteria_path.display())).with_source(error)
    })?;
    let criteria: Criteria = serde_json::from_str(&text).map_err(|error| {
        invalid(format!("{} is not valid", criteria_path.display())).with_source(error)
    })?;
    let input_path = data.join("score_input.bin");
    let bytes = std::fs::read(&input_path).map_err(|error| {
        invalid(format!("cannot read {}", input_path.display())).with_source(error)
    })?;
    if bytes.len() % criteria.record_size != 0 {
        return Err(invalid(format!(
            "{} is not a whole number of {}-byte records",
            input_path.display(),
            criteria.record_size
        )));
    }

    let mut rules = bant_rules();
    for criterion in &criteria.criteria {
        rules.push(custom_rule(criterion)?);
    }
    let scorer = ColumnScorer::new(rules)?;
    let fields = layout(&criteria)?;
    let columns: Vec<(String, Vec<i32>)> = fields
        .iter()
        .filter(|field| scorer.rules().iter().any(|rule| rule.column == field.name))
        .map(|field| {
            (
                field.name.clone(),
                column(&bytes, criteria.record_size, field),
            )
        })
        .collect();
    drop(bytes);
    let count = columns.first().map_or(0, |(_, values)| values.len());
    let mut scores = vec![0u8; count];

    let single = timed_scoring(&scorer, &columns, &mut scores, 1)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let parallel = timed_scoring(&scorer, &columns, &mut scores, threads)?;
    let rss_mb =
        peak_rss_kib().map_or_else(|| "unknown".to_owned(), |kib| (kib / 1024).to_string());
    println!(
        "kalify score_per_s={parallel:.0} rss_mb={rss_mb} threads={threads} single_thread_per_s={single:.0}"
    );

    let sum: u64 = scores.iter().map(|score| u64::from(*score)).sum();
    let at_least_70 = scores.iter().filter(|score| **score >= 70).count();
    println!("kalify score_check sum={sum} ge70={at_least_70}");
    Ok(())
}

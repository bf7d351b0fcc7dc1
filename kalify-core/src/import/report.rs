//! The outcome of an import and the CSV file of its rejected rows.

use std::fmt;
use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};

use super::mapping::Field;

/// A row that was rejected, or a problem in a row that was kept.
///
/// `value` is the cell as written, so that the user can find and fix it.
/// Because it can contain personal data, `Debug` prints only its length.
/// `reason` never repeats the value.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct RejectedRow {
    /// Physical line of the file where the row starts; the header is line 1
    /// unless blank lines or a `sep=` line come before it.
    pub line: u64,
    /// The header of the column at fault, when one is.
    pub column: Option<String>,
    /// The cell at fault, as written.
    pub value: Option<String>,
    /// The problem and how to fix it.
    pub reason: String,
}

impl RejectedRow {
    pub(crate) fn new(line: u64, reason: impl Into<String>) -> Self {
        RejectedRow {
            line,
            column: None,
            value: None,
            reason: reason.into(),
        }
    }

    pub(crate) fn with_cell(mut self, column: &str, value: &str) -> Self {
        self.column = Some(column.to_owned());
        self.value = Some(value.to_owned());
        self
    }
}

impl fmt::Debug for RejectedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RejectedRow")
            .field("line", &self.line)
            .field("column", &self.column)
            .field(
                "value_chars",
                &self.value.as_ref().map(|value| value.chars().count()),
            )
            .field("reason", &self.reason)
            .finish()
    }
}

/// A column of the file and the field it filled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MappedColumn {
    /// The header as written.
    pub header: String,
    /// The field it filled.
    pub field: Field,
}

/// Counts and problems of one import.
///
/// Every data row counts once in exactly one of `inserted`, `updated`,
/// `unchanged`, `duplicates`, `suppressed`, `blank` and `rejected_total`,
/// and `rows` is their sum.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ImportReport {
    /// Data rows read. The header and empty lines are not counted.
    pub rows: usize,
    /// New prospects written.
    pub inserted: usize,
    /// Stored prospects that matched a row by phone, e-mail or PSID and were changed.
    pub updated: usize,
    /// Stored prospects that matched a row and needed no change, or were
    /// left alone under [`MergePolicy::Skip`](super::MergePolicy::Skip).
    pub unchanged: usize,
    /// Rows whose phone, e-mail or PSID appeared in an earlier row of the
    /// file; they were merged into that row's prospect under the merge policy.
    pub duplicates: usize,
    /// Rows not imported because a contact point is on the suppression list
    /// or the row carries an opt-out.
    pub suppressed: usize,
    /// Rows whose cells are all empty.
    pub blank: usize,
    /// Rows rejected.
    pub rejected_total: usize,
    /// Problems found in rows that were kept.
    pub warnings_total: usize,
    /// The first rejected rows, up to the option `max_reported_issues`.
    pub rejected: Vec<RejectedRow>,
    /// The first warnings, up to the option `max_reported_issues`.
    pub warnings: Vec<RejectedRow>,
    /// The detected text encoding, such as `UTF-8` or `windows-1252`.
    pub encoding: String,
    /// The column delimiter used.
    pub delimiter: char,
    /// Each column and the field it filled.
    pub columns: Vec<MappedColumn>,
}

impl ImportReport {
    /// Writes the rejected rows and warnings as CSV, ordered by line, with
    /// the columns `kind,line,column,value,reason`.
    ///
    /// The output is UTF-8 without a byte order mark. A cell that starts
    /// with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`,
    /// so that a spreadsheet shows it as text instead of running it as a formula.
    ///
    /// # Errors
    /// `Unexpected` when writing fails.
    pub fn write_rejections_csv<W: Write>(&self, writer: W) -> Result<()> {
        let mut csv_writer = csv::Writer::from_writer(writer);
        let failed = |error: csv::Error| {
            Error::unexpected("failed to write the rejections CSV").with_source(error)
        };

        csv_writer
            .write_record(["kind", "line", "column", "value", "reason"])
            .map_err(failed)?;
        let mut rejected = self.rejected.iter().peekable();
        let mut warnings = self.warnings.iter().peekable();
        loop {
            let take_rejected = match (rejected.peek(), warnings.peek()) {
                (Some(row), Some(warning)) => row.line <= warning.line,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (kind, entry) = if take_rejected {
                ("rejected", rejected.next())
            } else {
                ("warning", warnings.next())
            };
            let Some(entry) = entry else { break };
            let line = entry.line.to_string();
            let column = spreadsheet_safe(entry.column.as_deref().unwrap_or(""));
            let value = spreadsheet_safe(entry.value.as_deref().unwrap_or(""));
            let reason = spreadsheet_safe(&entry.reason);
            csv_writer
                .write_record([
                    kind,
                    line.as_str(),
                    column.as_str(),
                    value.as_str(),
                    reason.as_str(),
                ])
                .map_err(failed)?;
        }
        csv_writer.flush().map_err(|error| {
            Error::unexpected("failed to write the rejections CSV").with_source(error)
        })
    }

    pub(crate) fn reject(&mut self, entry: RejectedRow, max_reported: usize) {
        self.rejected_total += 1;
        if self.rejected.len() < max_reported {
            self.rejected.push(entry);
        }
    }

    pub(crate) fn warn(&mut self, entry: RejectedRow, max_reported: usize) {
        self.warnings_total += 1;
        if self.warnings.len() < max_reported {
            self.warnings.push(entry);
        }
    }
}

pub(crate) fn spreadsheet_safe(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let entry =
            RejectedRow::new(3, "invalid e-mail address").with_cell("Email", "jean.dupont@");
        let debug = format!("{entry:?}");
        assert!(!debug.contains("jean"), "{debug}");
        assert!(debug.contains("value_chars: Some(12)"), "{debug}");
    }

    #[test]
    fn rejections_csv_is_ordered_and_safe() {
        let mut report = ImportReport::default();
        report.reject(RejectedRow::new(2, "no contact point"), 10);
        report.reject(
            RejectedRow::new(5, "invalid phone number").with_cell("Tel", "+33 12"),
            10,
        );
        report.warn(
            RejectedRow::new(3, "unknown country").with_cell("Pays", "=HYPERLINK(\"x\")"),
            10,
        );
        let mut output = Vec::new();
        report.write_rejections_csv(&mut output).unwrap();
        let text = String::from_utf8(output).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "kind,line,column,value,reason");
        assert_eq!(lines[1], "rejected,2,,,no contact point");
        assert_eq!(
            lines[2],
            "warning,3,Pays,\"'=HYPERLINK(\"\"x\"\")\",unknown country"
        );
        assert_eq!(lines[3], "rejected,5,Tel,'+33 12,invalid phone number");
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn issues_beyond_the_cap_are_counted() {
        let mut report = ImportReport::default();
        for line in 0..5 {
            report.reject(RejectedRow::new(line, "bad"), 2);
        }
        assert_eq!(report.rejected_total, 5);
        assert_eq!(report.rejected.len(), 2);
    }
}

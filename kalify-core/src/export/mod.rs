//! Prospect export to CSV and to JSON Lines, read from the store in pages.
//!
//! [`export_csv`] writes a file that spreadsheets open and that
//! [`import_prospects`](crate::import::import_prospects) reads back: one row
//! per prospect, with the columns
//! `first_name, last_name, company, job_title, phone, email, messenger_psid,
//! locale, time_zone, source, tags`, the consent columns `consent_sms`,
//! `consent_sms_date`, `consent_sms_source`, `consent_sms_version` and their
//! `consent_email` counterparts, then one column per custom field.
//!
//! Custom field columns are either declared by the caller, in the order
//! given, or discovered by a first pass over the org's prospects, sorted by
//! name. Discovery reads the store twice but keeps only the field names in
//! memory, so memory stays flat however many prospects the org has. Import
//! the file with [`ExportReport::mapping`], which declares each custom
//! field with its type, so that numbers, yes/no values and dates come back
//! typed and a custom field named like a built-in column stays a custom field.
//!
//! Spreadsheet formula injection: a cell that starts with `=`, `+`, `-`,
//! `@`, a tab or a carriage return gets a leading `'`, so that a
//! spreadsheet shows it as text instead of running it. The import removes
//! that `'` again. Phone numbers are the exception: they are
//! written as they are, because the store keeps them in E.164 form, a `+`
//! followed by digits only, which a spreadsheet can at worst read as a
//! number but never as a function call or a reference.
//!
//! What the CSV cannot carry, [`export_jsonl`] keeps: it writes every field
//! of each prospect as one JSON object per line, the serde form of
//! [`Prospect`], ids, status, score and all consent records included.
//!
//! ```no_run
//! # async fn run(store: &dyn kalify_core::ports::Store, org: kalify_core::OrgId) -> kalify_core::Result<()> {
//! use kalify_core::export::{ExportOptions, export_csv};
//!
//! let file = std::fs::File::create("prospects.csv")
//!     .map_err(|error| kalify_core::Error::invalid_input("cannot create prospects.csv").with_source(error))?;
//! let report = export_csv(store, org, std::io::BufWriter::new(file), &ExportOptions::default()).await?;
//! println!("{} prospects exported", report.prospects);
//! # Ok(())
//! # }
//! ```

mod csv_rows;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crate::error::{Error, Result};
use crate::id::OrgId;
use crate::import::{CustomType, Mapping};
use crate::ports::{ListOptions, Store};
use crate::prospect::{CustomValue, Prospect};

/// Settings of an export. Build it with `ExportOptions::default()` and the
/// `with_*` methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Prospects read per store call. Default: 1000; 0 counts as 1.
    pub page_size: usize,
    /// The custom fields written as CSV columns, in this order. Default:
    /// `None`, which discovers them in a first pass over the org's
    /// prospects and sorts them by name.
    pub custom_fields: Option<Vec<String>>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            page_size: 1000,
            custom_fields: None,
        }
    }
}

impl ExportOptions {
    /// Sets how many prospects are read per store call.
    pub fn with_page_size(mut self, size: usize) -> Self {
        self.page_size = size;
        self
    }

    /// Sets the custom field columns of the CSV, in order, instead of
    /// discovering them.
    pub fn with_custom_fields<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.custom_fields = Some(names.into_iter().map(Into::into).collect());
        self
    }
}

/// Counts of one export, and the custom fields it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Prospects written.
    pub prospects: usize,
    /// Custom field columns of the CSV, in order, each with the type its
    /// values had: a field whose values have different types is `Text`.
    /// The JSON Lines export leaves it empty.
    pub custom_fields: Vec<(String, CustomType)>,
    /// Custom fields left out of the CSV because their name reads, once case,
    /// accents and punctuation are ignored, as a built-in column or as an
    /// earlier custom field, or has no letter or digit. The import could not
    /// tell such a column apart.
    pub skipped_custom_fields: Vec<String>,
    /// Custom field values not written to the CSV: values of skipped fields,
    /// of fields missing from the declared list, and of fields that
    /// appeared after discovery.
    pub skipped_custom_values: usize,
    /// Consent records the CSV cannot carry: withdrawn ones, those with the
    /// basis legitimate interest, Messenger ones, and all but the latest
    /// active one per channel.
    pub skipped_consents: usize,
}

impl ExportReport {
    /// Returns the import mapping that reads the exported CSV back: every
    /// custom field column declared with its type.
    pub fn mapping(&self) -> Mapping {
        self.custom_fields
            .iter()
            .fold(Mapping::default(), |mapping, (name, kind)| {
                mapping.with_custom_field(name.clone(), *kind)
            })
    }
}

/// Writes the prospects of `org` to `writer` as CSV, in id order.
///
/// The output is UTF-8 without a byte order mark, comma-separated, with a
/// header row, and quoted as RFC 4180 requires. `writer` is flushed at the
/// end; wrap a file in a `BufWriter`.
///
/// # Errors
/// - Any error of the store. Rows written before it stay in `writer`.
/// - `Unexpected` when writing to `writer` fails.
pub async fn export_csv<W: Write + Send>(
    store: &dyn Store,
    org: OrgId,
    writer: W,
    options: &ExportOptions,
) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    let discovered = match &options.custom_fields {
        Some(_) => None,
        None => Some(discover_custom_fields(store, org, options.page_size).await?),
    };
    let names: Vec<String> = match (&options.custom_fields, &discovered) {
        (Some(declared), _) => declared.clone(),
        (None, Some(found)) => found.iter().cloned().collect(),
        (None, None) => Vec::new(),
    };
    let layout = csv_rows::Layout::new(names);
    report.skipped_custom_fields = layout.skipped().to_vec();

    let mut types: BTreeMap<String, FieldType> = BTreeMap::new();
    let mut csv_writer = csv_rows::CsvWriter::new(writer, &layout)?;
    let mut pages = Pages::new(org, options.page_size);
    while let Some(page) = pages.next(store).await? {
        for prospect in &page {
            let written = csv_writer.write(prospect)?;
            report.skipped_custom_values += written.skipped_custom_values;
            report.skipped_consents += written.skipped_consents;
            for (name, value) in &prospect.custom_fields {
                if layout.has_column(name) {
                    types.entry(name.clone()).or_default().add(value);
                }
            }
            report.prospects += 1;
        }
    }
    csv_writer.finish()?;

    report.custom_fields = layout
        .custom_columns()
        .iter()
        .map(|name| {
            (
                name.clone(),
                types
                    .get(name)
                    .map(FieldType::custom_type)
                    .unwrap_or_default(),
            )
        })
        .collect();
    tracing::info!(
        org_id = %org,
        prospects = report.prospects,
        custom_fields = report.custom_fields.len(),
        skipped_custom_fields = report.skipped_custom_fields.len(),
        skipped_custom_values = report.skipped_custom_values,
        skipped_consents = report.skipped_consents,
        "prospect CSV export finished"
    );
    Ok(report)
}

/// Writes the prospects of `org` to `writer` as JSON Lines, in id order:
/// one JSON object per line, the serde form of [`Prospect`].
///
/// Every field is kept, so `serde_json::from_str::<Prospect>` reads each
/// line back to an equal prospect. Numbers of custom fields are written in
/// their shortest exact form. serde_json reads them back bit for bit with
/// its `float_roundtrip` feature, and may be off in the last digit without it.
///
/// # Errors
/// - Any error of the store. Lines written before it stay in `writer`.
/// - `Unexpected` when writing to `writer` fails.
pub async fn export_jsonl<W: Write + Send>(
    store: &dyn Store,
    org: OrgId,
    mut writer: W,
    options: &ExportOptions,
) -> Result<ExportReport> {
    let failed = |error: std::io::Error| {
        Error::unexpected("failed to write the JSON Lines export").with_source(error)
    };
    let mut report = ExportReport::default();
    let mut pages = Pages::new(org, options.page_size);
    while let Some(page) = pages.next(store).await? {
        for prospect in &page {
            serde_json::to_writer(&mut writer, prospect).map_err(|error| {
                Error::unexpected("failed to write the JSON Lines export")
                    .with_context("prospect_id", prospect.id)
                    .with_source(error)
            })?;
            writer.write_all(b"\n").map_err(failed)?;
            report.prospects += 1;
        }
    }
    writer.flush().map_err(failed)?;
    tracing::info!(org_id = %org, prospects = report.prospects, "prospect JSON Lines export finished");
    Ok(report)
}

/// Reads the prospects of an org page by page, in id order.
struct Pages {
    org: OrgId,
    size: usize,
    after: Option<crate::id::ProspectId>,
    done: bool,
}

impl Pages {
    fn new(org: OrgId, size: usize) -> Self {
        Pages {
            org,
            size: size.max(1),
            after: None,
            done: false,
        }
    }

    /// Returns the next page, or `None` after the last one.
    async fn next(&mut self, store: &dyn Store) -> Result<Option<Vec<Prospect>>> {
        if self.done {
            return Ok(None);
        }
        let page = store
            .list_prospects(
                self.org,
                ListOptions {
                    after: self.after,
                    limit: self.size,
                },
            )
            .await?;
        // A short page is the last one, which saves a call that would return nothing.
        self.done = page.len() < self.size;
        match page.last() {
            Some(last) => {
                self.after = Some(last.id);
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }
}

/// Lists the custom field names of the org's prospects, sorted.
async fn discover_custom_fields(
    store: &dyn Store,
    org: OrgId,
    page_size: usize,
) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut pages = Pages::new(org, page_size);
    while let Some(page) = pages.next(store).await? {
        for prospect in &page {
            for name in prospect.custom_fields.keys() {
                if !names.contains(name) {
                    names.insert(name.clone());
                }
            }
        }
    }
    Ok(names)
}

/// The types a custom field's values were seen with.
#[derive(Clone, Copy, Debug, Default)]
struct FieldType {
    seen: Option<CustomType>,
    mixed: bool,
}

impl FieldType {
    fn add(&mut self, value: &CustomValue) {
        let kind = match value {
            CustomValue::Text(_) => CustomType::Text,
            CustomValue::Number(_) => CustomType::Number,
            CustomValue::Bool(_) => CustomType::Bool,
            CustomValue::Date(_) => CustomType::Date,
        };
        match self.seen {
            None => self.seen = Some(kind),
            Some(seen) if seen != kind => self.mixed = true,
            Some(_) => {}
        }
    }

    fn custom_type(&self) -> CustomType {
        if self.mixed {
            CustomType::Text
        } else {
            self.seen.unwrap_or_default()
        }
    }
}

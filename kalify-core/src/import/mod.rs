//! Prospect import from CSV files exported by spreadsheets and CRMs.
//!
//! [`import_prospects`] reads a file as a stream, in batches, so memory stays
//! flat however many rows it has. The one exception is the set that finds
//! duplicates inside the file, which keeps one 64-bit hash per distinct
//! phone number, e-mail address and PSID. The ignored test
//! `million_rows_stay_in_bounded_memory` measured a peak growth of 62 MiB
//! for one million rows with two contact points each (release build).
//!
//! What it handles:
//! - Encodings: UTF-8 with or without a byte order mark, UTF-16 with one,
//!   and Windows-1252, which Excel uses for CSV on a French Windows unless
//!   "CSV UTF-8" is chosen. Without a byte order mark, the 64 KiB from the
//!   first non-ASCII byte decide: valid UTF-8 there means UTF-8, anything
//!   else Windows-1252. Invalid bytes found later become U+FFFD, and the
//!   report warns about each row that has one.
//! - Delimiters `;`, `,`, tab and `|`, detected from the header line, or
//!   given by Excel's `sep=` first line or by [`ImportOptions::with_delimiter`].
//! - Quoted fields with embedded line breaks, and LF or CRLF line ends.
//!   Line numbers in the report are physical lines of the file.
//! - Spreadsheet-safe cells: a `'` before `=`, `+`, `-`, `@`, a tab or a
//!   carriage return at the start of a cell is removed, so files written by
//!   [`export_csv`](crate::export::export_csv) read back as they were.
//! - Headers in English and French, such as those of HubSpot and Zoho
//!   exports and of hand-made French files. Case, accents, spaces and
//!   punctuation are ignored. [`Mapping`] overrides the built-in names and
//!   declares typed custom fields. Unknown columns become text custom fields.
//! - Contact points: mobile columns are preferred over other phone columns,
//!   and a country column sets the region each row's phone number is read in.
//!   A row needs at least one valid phone number, e-mail address or Messenger
//!   PSID; [`InvalidContact`] sets what happens to a row with an invalid one.
//! - Rows are matched with stored prospects by e-mail address first, then
//!   phone number, then PSID, and merged under the [`MergePolicy`]; so are
//!   duplicates inside the file. A contact point that belongs to another
//!   prospect is not moved, and the report warns about it. Rows with a
//!   suppressed contact point are never imported.
//!
//! Consent and opt-out columns hold yes/no values (`oui`, `yes`, `1`, `x`…):
//! - `Consentement`, `Consent` or `Opt-in` covers SMS and e-mail,
//!   `Opt-in SMS` or `Consentement SMS` covers SMS, and `Opt-in email`,
//!   `Consentement email` or `Newsletter` covers e-mail. A yes records a
//!   [`Consent`](crate::prospect::Consent) with the basis `Consent` on each
//!   covered channel the row has a contact point on. `consent_date` sets when
//!   it was collected (the import time when the cell is empty or unreadable),
//!   `consent_source` where (else the source tag, else `csv import`), and
//!   `consent_version` the wording version. `consent_sms_date`,
//!   `consent_sms_source` and `consent_sms_version`, and their `consent_email_`
//!   counterparts, set them for one channel and win over the shared columns.
//!   A consent date in a file without any yes/no consent column counts as a
//!   yes for the channels it covers.
//! - `Opt-out`, `Désinscrit` or `Do not contact` covers every channel,
//!   `Opt-out SMS` or `Do Not Call` covers SMS, and `Opt-out email` or
//!   `Unsubscribed from all email` covers e-mail. A yes adds the row's contact
//!   points on the covered channels to the suppression list with the reason
//!   `opt_out`, and the row is not imported but counted as suppressed.
//!
//! ```no_run
//! # async fn run(store: &dyn kalify_core::ports::Store, org: kalify_core::OrgId) -> kalify_core::Result<()> {
//! use kalify_core::import::{ImportOptions, MergePolicy, import_prospects};
//!
//! let file = std::fs::File::open("contacts.csv")
//!     .map_err(|error| kalify_core::Error::invalid_input("cannot open contacts.csv").with_source(error))?;
//! let options = ImportOptions::default()
//!     .with_source("salon-2026")
//!     .with_merge_policy(MergePolicy::FillEmpty);
//! let report = import_prospects(store, org, std::io::BufReader::new(file), &options, chrono::Utc::now()).await?;
//! println!("{} inserted, {} rejected", report.inserted, report.rejected_total);
//! # Ok(())
//! # }
//! ```

mod decode;
mod mapping;
mod merge;
mod report;
mod row;
mod run;
mod sniff;
mod values;
mod view;

pub(crate) use mapping::header_key;
pub use mapping::{CustomType, Field, Mapping, preview_columns};
pub(crate) use report::spreadsheet_safe;
pub use report::{ImportReport, MappedColumn, RejectedRow};
pub(crate) use values::to_nfc;

use std::io::Read;

use crate::Timestamp;
use crate::contact::Region;
use crate::error::Result;
use crate::id::OrgId;
use crate::ports::Store;
use crate::prospect::Locale;

/// The action taken when a row matches an existing prospect by phone number,
/// e-mail address or Messenger PSID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MergePolicy {
    /// Leave the existing prospect as it is.
    Skip,
    /// Set only the fields that are empty on the existing prospect.
    #[default]
    FillEmpty,
    /// Replace fields with every non-empty value of the row.
    Overwrite,
}

/// The action taken on a row when one of its phone, e-mail or PSID cells
/// is not empty and does not read as a valid contact point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InvalidContact {
    /// Drop the cell and keep the row when it has another valid contact
    /// point; the report warns about the cell. In this mode a phone cell
    /// may hold several numbers separated by `/`, `,` or `;`, and an e-mail
    /// cell a list, and the first valid one is kept.
    #[default]
    Warn,
    /// Reject the row. In this mode a cell must hold a single contact point:
    /// one phone number, or one address, optionally as `mailto:address` or
    /// `Name <address>`.
    RejectRow,
}

/// Settings of an import. Build it with `ImportOptions::default()` and the
/// `with_*` methods.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ImportOptions {
    /// Region national phone numbers are read in, unless the row has a
    /// country column. Default: FR.
    pub default_region: Region,
    /// Locale of prospects whose row gives none, also used to read
    /// ambiguous dates (`06/01/2026`) and numbers (`42,000`). Default: French.
    pub default_locale: Locale,
    /// Source tag set on every imported prospect, in place of the file's
    /// source column. It is also the consent source when the file has none.
    pub source: Option<String>,
    /// The action taken on rows that match an existing prospect. Default: fill empty fields.
    pub merge_policy: MergePolicy,
    /// New prospects written per store call. Default: 1000; 0 counts as 1.
    pub batch_size: usize,
    /// Column delimiter to use instead of detecting it.
    pub delimiter: Option<u8>,
    /// Column overrides and custom field declarations.
    pub mapping: Mapping,
    /// Rejected rows and warnings kept in the report, each; the rest are
    /// only counted. Default: 10,000.
    pub max_reported_issues: usize,
    /// The action taken on a row with an invalid contact cell. Default: warn.
    pub invalid_contact: InvalidContact,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            default_region: Region::FR,
            default_locale: Locale::Fr,
            source: None,
            merge_policy: MergePolicy::default(),
            batch_size: 1000,
            delimiter: None,
            mapping: Mapping::default(),
            max_reported_issues: 10_000,
            invalid_contact: InvalidContact::default(),
        }
    }
}

impl ImportOptions {
    /// Sets the region national phone numbers are read in.
    pub fn with_default_region(mut self, region: Region) -> Self {
        self.default_region = region;
        self
    }

    /// Sets the locale of prospects whose row gives none.
    pub fn with_default_locale(mut self, locale: Locale) -> Self {
        self.default_locale = locale;
        self
    }

    /// Sets the source tag of every imported prospect.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets what to do with rows that match an existing prospect.
    pub fn with_merge_policy(mut self, policy: MergePolicy) -> Self {
        self.merge_policy = policy;
        self
    }

    /// Sets how many new prospects are written per store call.
    pub fn with_batch_size(mut self, size: usize) -> Self {
        self.batch_size = size;
        self
    }

    /// Sets the column delimiter, such as `b';'`, instead of detecting it.
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = Some(delimiter);
        self
    }

    /// Sets column overrides and custom field declarations.
    pub fn with_mapping(mut self, mapping: Mapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// Sets how many rejected rows and warnings the report keeps.
    pub fn with_max_reported_issues(mut self, max: usize) -> Self {
        self.max_reported_issues = max;
        self
    }

    /// Sets the action taken on a row with an invalid contact cell.
    pub fn with_invalid_contact(mut self, policy: InvalidContact) -> Self {
        self.invalid_contact = policy;
        self
    }
}

/// Imports the prospects of a CSV file into `org`.
///
/// Rows are read as a stream, in chunks of `options.batch_size` rows. For
/// each chunk, one call to [`Store::suppressed_among`] and one to
/// [`Store::find_prospects_by_contacts`] read what the store holds for its
/// contact points. New prospects are written with [`Store::insert_prospects`]
/// in batches of `options.batch_size`, and the next chunk is read and parsed
/// while the store writes a batch. Matches with stored prospects are written
/// with [`Store::update_prospect`] as they are found. `now` is the creation and update time written, and the
/// collection time of consents whose row has no consent date.
///
/// Rows that cannot be imported do not stop the import: they are listed in
/// the report with their line, column, value and reason. The report's
/// `value` fields hold cells as written, which can be personal data.
/// Reading the same file again inserts nothing, because every row then
/// matches the prospect it created.
///
/// # Errors
/// - `InvalidInput` when the file is empty, has no header line, has no
///   phone, e-mail or PSID column, or is a spreadsheet workbook.
/// - `InvalidInput` when lines end with bare carriage returns, or the
///   header line is longer than 1 MiB.
/// - `InvalidInput` when a record is longer than 1 MiB, usually because a
///   quote is never closed.
/// - `InvalidInput` when `options.delimiter` is a quote, a line break or
///   not ASCII.
/// - `Unexpected` when reading `reader` fails.
/// - Any error of the store, except a `Conflict` on update, which rejects
///   that row. Batches and updates written before the error stay written,
///   the batch being built is not, and running the import again is safe
///   for the reason above.
pub async fn import_prospects<R: Read + Send>(
    store: &dyn Store,
    org: OrgId,
    reader: R,
    options: &ImportOptions,
    now: Timestamp,
) -> Result<ImportReport> {
    run::Importer::new(store, org, options, now)
        .run(reader)
        .await
}

//! The import loop: reading records, matching them with stored prospects and writing.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Cursor, Read};
use std::task::Poll;

use csv::StringRecord;

use crate::Timestamp;
use crate::contact::{ChannelKind, ContactPoint, PhoneNumber};
use crate::error::{Error, ErrorKind, Result};
use crate::id::OrgId;
use crate::ports::{Store, Suppression};
use crate::prospect::Prospect;

use super::ImportOptions;
use super::decode::{CsvInput, DecodingReader, MAX_RECORD_BYTES, RECORD_TOO_LONG};
use super::mapping::{CONTACT_EXAMPLES, resolve_columns};
use super::merge::merge_into;
use super::report::{ImportReport, MappedColumn, RejectedRow};
use super::row::{ParsedRow, Plan, RowContext, RowOutcome, read_row};
use super::sniff::sniff_header;
use super::values::parse_email;
use super::view::StoreView;

/// Suppression reason written for opt-out columns.
const OPT_OUT_REASON: &str = "opt_out";

/// Headers listed in the error for a file without a contact column.
const MAX_LISTED_HEADERS: usize = 20;

/// Rows a chunk reserves room for up front; a larger batch size grows the chunk as it fills.
const MAX_CHUNK_CAPACITY: usize = 4096;

type CsvReader<R> = csv::Reader<CsvInput<std::io::Chain<Cursor<Vec<u8>>, DecodingReader<R>>>>;

/// The location of the prospect a row matches.
enum Owner {
    /// In the batch not written yet, at this index.
    Pending(usize),
    /// In the store.
    Stored(Box<Prospect>),
}

impl Owner {
    fn is_same(&self, other: &Owner) -> bool {
        match (self, other) {
            (Owner::Pending(a), Owner::Pending(b)) => a == b,
            (Owner::Stored(a), Owner::Stored(b)) => a.id == b.id,
            _ => false,
        }
    }
}

/// The state of one import.
pub(crate) struct Importer<'a> {
    store: &'a dyn Store,
    org: OrgId,
    options: &'a ImportOptions,
    now: Timestamp,
    report: ImportReport,
    /// Hashes of every contact point imported so far, to tell duplicates
    /// inside the file from matches with prospects stored before.
    seen: HashSet<u64>,
    /// New prospects not written yet.
    pending: Vec<Prospect>,
    /// Contact point hash to index in `pending`.
    pending_index: HashMap<u64, usize>,
}

impl<'a> Importer<'a> {
    pub(crate) fn new(
        store: &'a dyn Store,
        org: OrgId,
        options: &'a ImportOptions,
        now: Timestamp,
    ) -> Self {
        Importer {
            store,
            org,
            options,
            now,
            report: ImportReport::default(),
            seen: HashSet::new(),
            pending: Vec::new(),
            pending_index: HashMap::new(),
        }
    }

    pub(crate) async fn run<R: Read + Send>(mut self, source: R) -> Result<ImportReport> {
        if let Some(delimiter) = self.options.delimiter
            && (!delimiter.is_ascii() || matches!(delimiter, b'"' | b'\n' | b'\r'))
        {
            return Err(Error::invalid_input(format!(
                "invalid delimiter {:?}: use an ASCII character other than a quote or a line break",
                char::from(delimiter)
            )));
        }

        let mut decoder = DecodingReader::new(source);
        let sniffed = sniff_header(&mut decoder, self.options.delimiter)?;
        let skipped_lines = sniffed.skipped_lines;
        let stream = CsvInput::new(Cursor::new(sniffed.prefix).chain(decoder));
        // Only a line feed ends a record, so that the line count at the end
        // of each record includes its terminator. The carriage return of a
        // CRLF stays at the end of the last cell, where trimming removes it.
        let mut reader: CsvReader<R> = csv::ReaderBuilder::new()
            .delimiter(sniffed.delimiter)
            .terminator(csv::Terminator::Any(b'\n'))
            .has_headers(false)
            .flexible(true)
            .from_reader(stream);
        self.report.delimiter = char::from(sniffed.delimiter);

        let mut record = StringRecord::new();
        let Some(header_line) = next_record(&mut reader, &mut record, skipped_lines)? else {
            return Err(Error::invalid_input("the file is empty"));
        };
        let headers: Vec<&str> = record.iter().collect();
        let plan = Plan::new(resolve_columns(&headers, &self.options.mapping));
        if !plan.has_contact_column() {
            return Err(self.no_contact_column(&headers, header_line));
        }
        self.report.columns = plan
            .columns
            .iter()
            .map(|column| MappedColumn {
                header: column.header.clone(),
                field: column.field,
            })
            .collect();

        let mut source = RecordSource {
            reader,
            record,
            skipped_lines,
            plan: &plan,
        };
        let chunk_rows = self.options.batch_size.max(1);
        let mut chunk = source.read_chunk(self.options, self.org, self.now, chunk_rows)?;
        while !chunk.is_empty() {
            self.import_chunk(chunk).await?;
            if self.pending.len() >= chunk_rows {
                // The next chunk is read and parsed while the store writes
                // this batch. Its rows are matched only after the write,
                // so that they see the prospects it creates.
                let batch = self.take_batch(chunk_rows);
                let store = self.store;
                let (written, next) = overlap(store.insert_prospects(&batch), || {
                    source.read_chunk(self.options, self.org, self.now, chunk_rows)
                })
                .await;
                written?;
                self.report.inserted += batch.len();
                chunk = next?;
            } else {
                chunk = source.read_chunk(self.options, self.org, self.now, chunk_rows)?;
            }
        }
        self.flush().await?;
        let reader = source.reader;

        self.report.encoding = reader
            .get_ref()
            .get_ref()
            .get_ref()
            .1
            .encoding_name()
            .to_owned();
        let report = self.report;
        tracing::info!(
            org_id = %self.org,
            rows = report.rows,
            inserted = report.inserted,
            updated = report.updated,
            unchanged = report.unchanged,
            duplicates = report.duplicates,
            suppressed = report.suppressed,
            rejected = report.rejected_total,
            warnings = report.warnings_total,
            encoding = %report.encoding,
            "prospect import finished"
        );
        Ok(report)
    }

    /// Builds the error for a header without a contact column. A header whose
    /// cells read as contact data is taken for a missing header line.
    fn no_contact_column(&self, headers: &[&str], line: u64) -> Error {
        let looks_like_data = headers.iter().any(|cell| {
            parse_email(cell).is_some()
                || PhoneNumber::parse(cell, self.options.default_region).is_ok()
        });
        if looks_like_data || headers.iter().all(|cell| cell.trim().is_empty()) {
            return Error::invalid_input(format!(
                "the file has no header line: line {line} contains values instead of column names; add a first line that names the columns, such as Prénom;Nom;Téléphone;Email"
            ));
        }
        let mut listed: Vec<String> = headers
            .iter()
            .take(MAX_LISTED_HEADERS)
            .map(|header| format!("{:?}", header.trim()))
            .collect();
        if headers.len() > MAX_LISTED_HEADERS {
            listed.push(format!("and {} more", headers.len() - MAX_LISTED_HEADERS));
        }
        Error::invalid_input(format!(
            "no phone, e-mail or Messenger PSID column found in the header ({}); name one of the columns {CONTACT_EXAMPLES} (case, accents and spaces are ignored), or map a column to phone, mobile or email in the import mapping",
            listed.join(", ")
        ))
    }

    /// Counts and imports the rows of one chunk, after reading what the
    /// store holds for their contact points in two batched calls.
    async fn import_chunk(&mut self, chunk: Vec<(u64, RowOutcome)>) -> Result<()> {
        let contacts: Vec<ContactPoint> = chunk
            .iter()
            .filter_map(|(_, outcome)| match outcome {
                RowOutcome::Parsed(row) => Some(row.prospect.contact_points()),
                _ => None,
            })
            .flatten()
            .collect();
        let first_line = chunk.first().map(|(line, _)| *line).unwrap_or(0);
        let mut view = StoreView::load(self.store, self.org, &contacts)
            .await
            .map_err(|error| error.with_context("line", first_line))?;
        for (line, outcome) in chunk {
            self.report.rows += 1;
            match outcome {
                RowOutcome::Blank => self.report.blank += 1,
                RowOutcome::Rejected(entry) => {
                    self.report.reject(entry, self.options.max_reported_issues)
                }
                RowOutcome::Parsed(row) => self.import_row(*row, line, &mut view).await?,
            }
        }
        Ok(())
    }

    /// Matches a parsed row with what exists and writes it.
    async fn import_row(
        &mut self,
        mut row: ParsedRow,
        line: u64,
        view: &mut StoreView,
    ) -> Result<()> {
        let max_reported = self.options.max_reported_issues;
        for warning in std::mem::take(&mut row.warnings) {
            self.report.warn(warning, max_reported);
        }

        let contacts = row.prospect.contact_points();
        if !row.opt_outs.is_empty() {
            let entries: Vec<Suppression> = contacts
                .iter()
                .filter(|contact| row.opt_outs.contains(&contact.channel()))
                .map(|contact| Suppression {
                    org_id: self.org,
                    contact: contact.clone(),
                    reason: OPT_OUT_REASON.to_owned(),
                    at: self.now,
                })
                .collect();
            if !entries.is_empty() {
                self.store
                    .suppress(&entries)
                    .await
                    .map_err(|error| error.with_context("line", line))?;
                view.add_suppressed(entries.into_iter().map(|entry| entry.contact));
            }
            self.report.suppressed += 1;
            return Ok(());
        }
        if contacts.iter().any(|contact| view.is_suppressed(contact)) {
            self.report.suppressed += 1;
            return Ok(());
        }

        let duplicate = contacts
            .iter()
            .any(|contact| self.seen.contains(&contact_hash(contact)));
        // An e-mail address identifies a person better than a phone number,
        // which colleagues or family members can share, so it is matched first.
        let mut lookups = contacts.clone();
        lookups.sort_by_key(|contact| match contact.channel() {
            ChannelKind::Email => 0,
            ChannelKind::Sms => 1,
            ChannelKind::Messenger => 2,
        });
        let mut owner: Option<Owner> = None;
        for contact in &lookups {
            let Some(found) = self
                .owner_of(contact, view)
                .await
                .map_err(|error| error.with_context("line", line))?
            else {
                continue;
            };
            match &owner {
                None => owner = Some(found),
                Some(current) if current.is_same(&found) => {}
                Some(_) => self.drop_foreign_contact(&mut row, contact.channel(), line),
            }
        }

        match owner {
            Some(Owner::Pending(index)) => {
                self.report.duplicates += 1;
                merge_into(
                    &mut self.pending[index],
                    &row,
                    self.options.merge_policy,
                    self.now,
                );
                self.remember(index);
            }
            Some(Owner::Stored(mut existing)) => {
                let changed = merge_into(&mut existing, &row, self.options.merge_policy, self.now);
                if changed {
                    match self.store.update_prospect(&existing).await {
                        Ok(version) => {
                            existing.version = version;
                            view.updated((*existing).clone());
                        }
                        Err(error) if error.kind() == ErrorKind::Conflict => {
                            view.forget(existing.id);
                            tracing::warn!(org_id = %self.org, prospect_id = %existing.id, line, "prospect changed during import; row not applied");
                            self.report.reject(
                                RejectedRow::new(
                                    line,
                                    "the matching prospect changed while the file was imported; import the file again to apply this row",
                                ),
                                max_reported,
                            );
                            return Ok(());
                        }
                        Err(error) => return Err(error.with_context("line", line)),
                    }
                }
                if duplicate {
                    self.report.duplicates += 1;
                } else if changed {
                    self.report.updated += 1;
                } else {
                    self.report.unchanged += 1;
                }
                for contact in existing.contact_points() {
                    self.seen.insert(contact_hash(&contact));
                }
            }
            None => {
                self.pending.push(row.prospect);
                self.remember(self.pending.len() - 1);
            }
        }
        Ok(())
    }

    /// Finds the prospect that has `contact`: first among the prospects not
    /// written yet, then in the store.
    async fn owner_of(
        &self,
        contact: &ContactPoint,
        view: &mut StoreView,
    ) -> Result<Option<Owner>> {
        let hash = contact_hash(contact);
        if self.seen.contains(&hash)
            && let Some(index) = self.pending_index.get(&hash)
            && let Some(candidate) = self.pending.get(*index)
            && candidate
                .contact_points()
                .iter()
                .any(|own| same_contact(own, contact))
        {
            return Ok(Some(Owner::Pending(*index)));
        }
        let stored = view.owner(self.store, self.org, contact).await?;
        Ok(stored.map(|prospect| Owner::Stored(Box::new(prospect))))
    }

    /// Removes a contact point that another prospect has from the row.
    fn drop_foreign_contact(&mut self, row: &mut ParsedRow, channel: ChannelKind, line: u64) {
        let (value, kind) = match channel {
            ChannelKind::Sms => (
                row.prospect.phone.take().map(|phone| phone.to_string()),
                "phone number",
            ),
            ChannelKind::Email => (
                row.prospect.email.take().map(|email| email.to_string()),
                "e-mail address",
            ),
            ChannelKind::Messenger => (
                row.prospect.messenger.take().map(|psid| psid.to_string()),
                "Messenger PSID",
            ),
        };
        row.prospect
            .consents
            .retain(|consent| consent.channel != channel);
        let column = row
            .contact_columns
            .iter()
            .find(|(column_channel, _)| *column_channel == channel)
            .map(|(_, column)| column.as_str())
            .unwrap_or("");
        let entry = RejectedRow::new(
            line,
            format!("this {kind} belongs to another prospect, so it was not added to the prospect this row matches"),
        )
        .with_cell(column, value.as_deref().unwrap_or(""));
        self.report.warn(entry, self.options.max_reported_issues);
    }

    /// Records the contact points of `pending[index]` as seen.
    fn remember(&mut self, index: usize) {
        let Some(prospect) = self.pending.get(index) else {
            return;
        };
        for contact in prospect.contact_points() {
            let hash = contact_hash(&contact);
            self.seen.insert(hash);
            self.pending_index.insert(hash, index);
        }
    }

    /// Removes the first `size` pending prospects, or all when fewer, and
    /// returns them. The rest stay pending.
    fn take_batch(&mut self, size: usize) -> Vec<Prospect> {
        let rest = self.pending.split_off(size.min(self.pending.len()));
        let batch = std::mem::replace(&mut self.pending, rest);
        self.pending_index.clear();
        for index in 0..self.pending.len() {
            self.remember(index);
        }
        batch
    }

    /// Writes the pending prospects.
    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.store.insert_prospects(&self.pending).await?;
        self.report.inserted += self.pending.len();
        self.pending.clear();
        self.pending_index.clear();
        Ok(())
    }
}

/// The CSV reader of an import and the buffer its records are read into.
struct RecordSource<'p, R: Read> {
    reader: CsvReader<R>,
    record: StringRecord,
    skipped_lines: u64,
    plan: &'p Plan,
}

impl<R: Read> RecordSource<'_, R> {
    /// Reads and parses up to `max_rows` records, each with the line it starts on.
    fn read_chunk(
        &mut self,
        options: &ImportOptions,
        org: OrgId,
        now: Timestamp,
        max_rows: usize,
    ) -> Result<Vec<(u64, RowOutcome)>> {
        let mut chunk = Vec::with_capacity(max_rows.min(MAX_CHUNK_CAPACITY));
        while chunk.len() < max_rows {
            let Some(line) = next_record(&mut self.reader, &mut self.record, self.skipped_lines)?
            else {
                break;
            };
            let context = RowContext {
                plan: self.plan,
                options,
                org,
                now,
                had_replacements: self
                    .reader
                    .get_ref()
                    .get_ref()
                    .get_ref()
                    .1
                    .had_replacements(),
            };
            chunk.push((line, read_row(&context, &self.record, line)));
        }
        Ok(chunk)
    }
}

/// Starts `future`, runs `work` on the current thread, then waits for `future`.
///
/// `future` is polled once before `work` runs, so a store call that hands
/// its work to another thread, as the SQLite store does, runs beside
/// `work`. A future that makes progress only when polled again runs after
/// `work`, as it would without this function.
async fn overlap<F: Future, T>(future: F, work: impl FnOnce() -> T) -> (F::Output, T) {
    let mut future = std::pin::pin!(future);
    let first = std::future::poll_fn(|context| Poll::Ready(future.as_mut().poll(context))).await;
    let value = work();
    let output = match first {
        Poll::Ready(output) => output,
        Poll::Pending => future.await,
    };
    (output, value)
}

/// Reads the next record that is not an empty line and returns the
/// physical line it starts on, or `None` at the end of the file.
///
/// The CSV reader skips empty lines ended by a line feed itself, and this
/// skips those ended by CRLF, which it reads as one carriage-return cell.
fn next_record<R: Read>(
    reader: &mut CsvReader<R>,
    record: &mut StringRecord,
    skipped_lines: u64,
) -> Result<Option<u64>> {
    loop {
        let Some(line) = read_record_line(reader, record, skipped_lines)? else {
            return Ok(None);
        };
        let empty_line = record.len() == 1 && record.iter().all(|cell| cell.trim().is_empty());
        if !empty_line {
            return Ok(Some(line));
        }
    }
}

/// Reads one record and returns the physical line it starts on.
///
/// The CSV reader's own record position is where the previous record
/// ended, which is off when empty lines come between records. The start
/// line is computed instead from the line feeds read so far, less those
/// inside the record's cells and its terminator.
fn read_record_line<R: Read>(
    reader: &mut CsvReader<R>,
    record: &mut StringRecord,
    skipped_lines: u64,
) -> Result<Option<u64>> {
    let before = reader.position().clone();
    reader.get_mut().set_record_start(before.byte());
    let found = reader.read_record(record).map_err(|error| {
        let line = before.line() + skipped_lines;
        if let csv::ErrorKind::Io(io_error) = error.kind()
            && io_error.to_string() == RECORD_TOO_LONG
        {
            return Error::invalid_input(format!(
                "the record starting on line {line} is longer than {} MiB; check for a quote that is never closed",
                MAX_RECORD_BYTES / (1024 * 1024)
            ));
        }
        if error.is_io_error() {
            return Error::unexpected("failed to read the import file").with_context("line", line).with_source(error);
        }
        Error::invalid_input(format!("the CSV file cannot be read near line {line}")).with_source(error)
    })?;
    if !found {
        return Ok(None);
    }
    let after = reader.position();
    let feeds_read = after.line() - 1;
    let feeds_inside: usize = record.iter().map(|cell| cell.matches('\n').count()).sum();
    // A quote left open runs to the end of the file, so the last line feed
    // then sits inside the cell and no terminator follows it. A closed
    // quoted cell that ends with a line break is read the same way.
    // NOTE: such a cell in the middle of a file makes the reported start
    // line of its row one too low.
    let open_quote_at_end = record
        .iter()
        .next_back()
        .is_some_and(|cell| cell.ends_with('\n'));
    let terminator =
        u64::from(!open_quote_at_end && !reader.get_ref().ends_without_newline_at(after.byte()));
    let feeds_before = feeds_read.saturating_sub(feeds_inside as u64 + terminator);
    Ok(Some(feeds_before + 1 + skipped_lines))
}

/// Hashes a contact point, ignoring the case of e-mail addresses.
fn contact_hash(contact: &ContactPoint) -> u64 {
    let mut hasher = DefaultHasher::new();
    contact.channel().hash(&mut hasher);
    match contact {
        ContactPoint::Email(email) => email.as_str().to_lowercase().hash(&mut hasher),
        other => other.key().hash(&mut hasher),
    }
    hasher.finish()
}

fn same_contact(a: &ContactPoint, b: &ContactPoint) -> bool {
    match (a, b) {
        (ContactPoint::Email(a), ContactPoint::Email(b)) => {
            a.as_str().eq_ignore_ascii_case(b.as_str())
        }
        _ => a == b,
    }
}

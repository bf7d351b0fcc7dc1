//! Turning one CSV record into a prospect, or into the reason it is rejected.

use std::collections::HashMap;

use crate::Timestamp;
use crate::contact::{ChannelKind, EmailAddress, MessengerPsid, PhoneNumber, Region};
use crate::id::OrgId;
use crate::prospect::{Consent, ConsentBasis, CustomValue, Locale, Prospect};
use csv::StringRecord;

use super::mapping::{Column, CustomType, Field};
use super::report::RejectedRow;
use super::values::{
    clean_text, parse_bool, parse_date, parse_email, parse_number, parse_phone, parse_single_email,
    parse_timestamp, region_for_country, split_full_name, split_tags, strip_formula_guard, to_nfc,
};
use super::{ImportOptions, InvalidContact};

/// Consent source recorded when the file has no consent source column and
/// the options set no source tag.
const DEFAULT_CONSENT_SOURCE: &str = "csv import";

/// The columns of a file grouped by field, each group in the order its
/// values are tried.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) columns: Vec<Column>,
    by_field: HashMap<Field, Vec<usize>>,
    has_consent_flag: bool,
}

impl Plan {
    pub(crate) fn new(columns: Vec<Column>) -> Self {
        let mut by_field: HashMap<Field, Vec<usize>> = HashMap::new();
        for (position, column) in columns.iter().enumerate() {
            by_field.entry(column.field).or_default().push(position);
        }
        for positions in by_field.values_mut() {
            positions
                .sort_by_key(|position| (columns[*position].priority, columns[*position].index));
        }
        let has_consent_flag = [Field::Consent, Field::ConsentSms, Field::ConsentEmail]
            .iter()
            .any(|field| by_field.contains_key(field));
        Plan {
            columns,
            by_field,
            has_consent_flag,
        }
    }

    pub(crate) fn has_contact_column(&self) -> bool {
        self.columns.iter().any(|column| column.field.is_contact())
    }

    fn columns_of(&self, field: Field) -> impl Iterator<Item = &Column> {
        self.by_field
            .get(&field)
            .into_iter()
            .flatten()
            .map(|position| &self.columns[*position])
    }
}

/// A row read into a prospect that is not stored yet.
#[derive(Debug)]
pub(crate) struct ParsedRow {
    /// The prospect the row describes, with a fresh id.
    pub(crate) prospect: Prospect,
    /// Whether the row gave a locale, as opposed to the default one.
    pub(crate) locale_given: bool,
    /// Channels the row opts out of.
    pub(crate) opt_outs: Vec<ChannelKind>,
    /// The column each contact point came from.
    pub(crate) contact_columns: Vec<(ChannelKind, String)>,
    /// Problems that did not reject the row.
    pub(crate) warnings: Vec<RejectedRow>,
}

/// The outcome of reading one record.
#[derive(Debug)]
pub(crate) enum RowOutcome {
    /// Every cell is empty.
    Blank,
    /// The row cannot be imported.
    Rejected(RejectedRow),
    /// The row reads as a prospect.
    Parsed(Box<ParsedRow>),
}

/// Everything a row is read with.
#[derive(Debug)]
pub(crate) struct RowContext<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) options: &'a ImportOptions,
    pub(crate) org: OrgId,
    pub(crate) now: Timestamp,
    /// True once the decoder replaced invalid bytes with U+FFFD.
    pub(crate) had_replacements: bool,
}

/// A cell that failed to parse.
struct BadCell {
    column: String,
    value: String,
    reason: String,
}

impl BadCell {
    fn new(column: &Column, value: &str, reason: impl Into<String>) -> Self {
        BadCell {
            column: column.header.clone(),
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    fn into_entry(self, line: u64) -> RejectedRow {
        RejectedRow::new(line, self.reason).with_cell(&self.column, &self.value)
    }
}

/// Counts the lines inside multi-line cells that hold a whole row's worth
/// of delimiters, the sign of a quote opened and never closed, which makes
/// the CSV reader swallow the rows that follow. Returns `None` when there are none.
fn swallowed_rows(record: &StringRecord, header_len: usize) -> Option<usize> {
    if header_len < 2 {
        return None;
    }
    let looks_like_row = |line: &str| {
        [',', ';', '\t', '|']
            .iter()
            .any(|delimiter| line.matches(*delimiter).count() + 1 >= header_len)
    };
    let swallowed = record
        .iter()
        .filter(|cell| cell.contains('\n'))
        .flat_map(|cell| cell.lines().skip(1))
        .filter(|line| looks_like_row(line))
        .count();
    (swallowed > 0).then_some(swallowed)
}

/// Reads one data record.
pub(crate) fn read_row(context: &RowContext<'_>, record: &StringRecord, line: u64) -> RowOutcome {
    if record.iter().all(|cell| cell.trim().is_empty()) {
        return RowOutcome::Blank;
    }
    let header_len = context.plan.columns.len();
    if let Some(swallowed) = swallowed_rows(record, header_len) {
        return RowOutcome::Rejected(RejectedRow::new(
            line,
            format!(
                "a quoted value runs over {swallowed} following {}; a quote is probably never closed, so close it and import the file again",
                if swallowed == 1 {
                    "line that looks like a row of its own"
                } else {
                    "lines that look like rows of their own"
                }
            ),
        ));
    }
    if record.len() < header_len {
        return RowOutcome::Rejected(RejectedRow::new(
            line,
            format!(
                "the row has {} fields but the header has {header_len}; check the delimiter and that quotes are closed",
                record.len()
            ),
        ));
    }
    if record
        .iter()
        .skip(header_len)
        .any(|cell| !cell.trim().is_empty())
    {
        return RowOutcome::Rejected(RejectedRow::new(
            line,
            format!(
                "the row has {} fields but the header has {header_len}; quote values that contain the delimiter",
                record.len()
            ),
        ));
    }
    RowReader {
        context,
        record,
        line,
        warnings: Vec::new(),
    }
    .read()
}

struct RowReader<'c, 'r> {
    context: &'c RowContext<'c>,
    record: &'r StringRecord,
    line: u64,
    warnings: Vec<RejectedRow>,
}

impl<'c, 'r> RowReader<'c, 'r> {
    fn cell(&self, column: &Column) -> &'r str {
        strip_formula_guard(self.record.get(column.index).unwrap_or(""))
    }

    /// Returns the first non-empty cell of `field`, with its column.
    fn first(&self, field: Field) -> Option<(&'c Column, &'r str)> {
        self.context
            .plan
            .columns_of(field)
            .map(|column| (column, self.cell(column)))
            .find(|(_, cell)| !cell.trim().is_empty())
    }

    fn first_text(&self, field: Field) -> Option<String> {
        self.first(field).and_then(|(_, cell)| clean_text(cell))
    }

    fn warn(&mut self, column: &str, value: &str, reason: impl Into<String>) {
        self.warnings
            .push(RejectedRow::new(self.line, reason).with_cell(column, value));
    }

    fn read(mut self) -> RowOutcome {
        let context = self.context;
        let options = context.options;
        let region = self.region();
        let mut bad_contacts: Vec<BadCell> = Vec::new();
        let mut contact_columns = Vec::new();

        let phone = self.phone(region, &mut bad_contacts);
        if let Some((_, column)) = &phone {
            contact_columns.push((ChannelKind::Sms, column.clone()));
        }
        let email = self.email(&mut bad_contacts);
        if let Some((_, column)) = &email {
            contact_columns.push((ChannelKind::Email, column.clone()));
        }
        let messenger = self.messenger(&mut bad_contacts);
        if let Some((_, column)) = &messenger {
            contact_columns.push((ChannelKind::Messenger, column.clone()));
        }

        if options.invalid_contact == InvalidContact::RejectRow && !bad_contacts.is_empty() {
            let bad = bad_contacts.swap_remove(0);
            return RowOutcome::Rejected(bad.into_entry(self.line));
        }
        if phone.is_none() && email.is_none() && messenger.is_none() {
            let entry = match bad_contacts.into_iter().next() {
                Some(mut bad) => {
                    bad.reason
                        .push_str("; the row has no other valid contact point");
                    bad.into_entry(self.line)
                }
                None => RejectedRow::new(
                    self.line,
                    "the row has no phone number, e-mail address or Messenger PSID",
                ),
            };
            return RowOutcome::Rejected(entry);
        }
        for bad in bad_contacts {
            self.warnings.push(bad.into_entry(self.line));
        }

        let mut prospect = Prospect::new(context.org, context.now);
        prospect.phone = phone.map(|(phone, _)| phone);
        prospect.email = email.map(|(email, _)| email);
        prospect.messenger = messenger.map(|(psid, _)| psid);
        self.names(&mut prospect);
        prospect.company = self.first_text(Field::Company);
        prospect.job_title = self.first_text(Field::JobTitle);
        prospect.source = options
            .source
            .clone()
            .or_else(|| self.first_text(Field::Source));
        prospect.tags = self.tags();

        let locale = self.locale();
        prospect.locale = locale.unwrap_or(options.default_locale);
        prospect.time_zone = self.time_zone();

        match self.custom_fields(prospect.locale) {
            Ok(fields) => prospect.custom_fields = fields,
            Err(bad) => return RowOutcome::Rejected(bad.into_entry(self.line)),
        }
        prospect.consents = self.consents(&prospect);
        let opt_outs = self.opt_outs();
        self.check_ignored_and_replaced();

        RowOutcome::Parsed(Box::new(ParsedRow {
            prospect,
            locale_given: locale.is_some(),
            opt_outs,
            contact_columns,
            warnings: self.warnings,
        }))
    }

    /// Returns the region the phone numbers of this row are read in.
    fn region(&mut self) -> Region {
        let default = self.context.options.default_region;
        let Some((column, cell)) = self.first(Field::Country) else {
            return default;
        };
        match region_for_country(cell) {
            Some(region) => region,
            None => {
                let reason = format!(
                    "unknown country; phone numbers of this row were read in the default region {default}"
                );
                self.warn(&column.header, cell, reason);
                default
            }
        }
    }

    /// Returns the first valid phone number, trying mobile columns first.
    fn phone(&mut self, region: Region, bad: &mut Vec<BadCell>) -> Option<(PhoneNumber, String)> {
        let plan = self.context.plan;
        let columns = plan
            .columns_of(Field::Mobile)
            .chain(plan.columns_of(Field::Phone))
            .chain(plan.columns_of(Field::Landline));
        let mut found = None;
        for column in columns {
            let cell = self.cell(column);
            if cell.trim().is_empty() {
                continue;
            }
            let parsed = match self.context.options.invalid_contact {
                InvalidContact::Warn => parse_phone(cell, region),
                InvalidContact::RejectRow => PhoneNumber::parse(cell, region).ok(),
            };
            match parsed {
                Some(phone) if found.is_none() => found = Some((phone, column.header.clone())),
                Some(_) => {}
                None => bad.push(BadCell::new(column, cell, format!(
                        "invalid phone number for region {region}; write it in international form with its country code, such as +33 6 12 34 56 78 or +1 415 555 0132"
                    ))),
            }
        }
        found
    }

    fn email(&mut self, bad: &mut Vec<BadCell>) -> Option<(EmailAddress, String)> {
        let mut found = None;
        for column in self.context.plan.columns_of(Field::Email) {
            let cell = self.cell(column);
            if cell.trim().is_empty() {
                continue;
            }
            let parsed = match self.context.options.invalid_contact {
                InvalidContact::Warn => parse_email(cell),
                InvalidContact::RejectRow => parse_single_email(cell),
            };
            match parsed {
                Some(email) => {
                    if found.is_none() {
                        found = Some((email, column.header.clone()));
                    }
                }
                None => bad.push(BadCell::new(
                    column,
                    cell,
                    "invalid e-mail address; expected a form such as name@example.com".to_owned(),
                )),
            }
        }
        found
    }

    fn messenger(&mut self, bad: &mut Vec<BadCell>) -> Option<(MessengerPsid, String)> {
        let mut found = None;
        for column in self.context.plan.columns_of(Field::MessengerPsid) {
            let cell = self.cell(column);
            if cell.trim().is_empty() {
                continue;
            }
            match MessengerPsid::parse(cell) {
                Ok(psid) => {
                    if found.is_none() {
                        found = Some((psid, column.header.clone()));
                    }
                }
                Err(_) => bad.push(BadCell::new(
                    column,
                    cell,
                    "invalid Messenger PSID; expected the digits of a page-scoped id".to_owned(),
                )),
            }
        }
        found
    }

    /// Given and family names, split from a full-name column when the row
    /// has neither.
    fn names(&self, prospect: &mut Prospect) {
        prospect.first_name = self.first_text(Field::FirstName);
        prospect.last_name = self.first_text(Field::LastName);
        if prospect.first_name.is_none()
            && prospect.last_name.is_none()
            && let Some((_, full)) = self.first(Field::FullName)
        {
            let (first, last) = split_full_name(full);
            prospect.first_name = first;
            prospect.last_name = last;
        }
    }

    fn tags(&self) -> Vec<String> {
        let mut tags: Vec<String> = Vec::new();
        for column in self.context.plan.columns_of(Field::Tags) {
            for tag in split_tags(self.cell(column)) {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
        }
        tags
    }

    fn locale(&mut self) -> Option<Locale> {
        let (column, cell) = self.first(Field::Locale)?;
        match cell.parse::<Locale>() {
            Ok(locale) => Some(locale),
            Err(_) => {
                let reason = format!(
                    "unsupported language; expected en or fr, so the default {} was used",
                    self.context.options.default_locale
                );
                self.warn(&column.header, cell, reason);
                None
            }
        }
    }

    fn time_zone(&mut self) -> Option<chrono_tz::Tz> {
        let (column, cell) = self.first(Field::TimeZone)?;
        match cell.trim().parse::<chrono_tz::Tz>() {
            Ok(zone) => Some(zone),
            Err(_) => {
                self.warn(
                    &column.header,
                    cell,
                    "unknown time zone; expected an IANA name such as Europe/Paris",
                );
                None
            }
        }
    }

    /// Custom fields, plus the country cell kept as text.
    ///
    /// # Errors
    /// The first cell that does not parse as its declared type.
    fn custom_fields(
        &self,
        locale: Locale,
    ) -> Result<std::collections::BTreeMap<String, CustomValue>, BadCell> {
        let mut fields = std::collections::BTreeMap::new();
        let custom_columns = self
            .context
            .plan
            .columns
            .iter()
            .filter(|column| column.field == Field::Custom);
        for column in custom_columns {
            let Some((name, kind)) = &column.custom else {
                continue;
            };
            let cell = self.cell(column);
            if cell.trim().is_empty() || fields.contains_key(name) {
                continue;
            }
            let value = match kind {
                CustomType::Text => Some(CustomValue::Text(to_nfc(cell.trim().to_owned()))),
                CustomType::Number => parse_number(cell, locale).map(CustomValue::Number),
                CustomType::Bool => parse_bool(cell).map(CustomValue::Bool),
                CustomType::Date => parse_date(cell, locale).map(CustomValue::Date),
            };
            let Some(value) = value else {
                let expected = match kind {
                    CustomType::Text => "text",
                    CustomType::Number => "a number such as 1234.5 or 1 234,5",
                    CustomType::Bool => "yes/no, oui/non, true/false or 1/0",
                    CustomType::Date => "a date such as 2026-01-31 or 31/01/2026",
                };
                return Err(BadCell::new(
                    column,
                    cell,
                    format!("invalid value for custom field {name:?}; expected {expected}"),
                ));
            };
            fields.insert(name.clone(), value);
        }
        if let Some((column, cell)) = self.first(Field::Country)
            && let Some(country) = clean_text(cell)
        {
            fields
                .entry(column.header.clone())
                .or_insert(CustomValue::Text(country));
        }
        Ok(fields)
    }

    /// Consent records for the channels the row consents to and has a
    /// contact point on.
    fn consents(&mut self, prospect: &Prospect) -> Vec<Consent> {
        let mut channels: Vec<ChannelKind> = Vec::new();
        let flags = [
            (Field::Consent, &[ChannelKind::Sms, ChannelKind::Email][..]),
            (Field::ConsentSms, &[ChannelKind::Sms][..]),
            (Field::ConsentEmail, &[ChannelKind::Email][..]),
        ];
        for (field, covered) in flags {
            let Some((column, cell)) = self.first(field) else {
                continue;
            };
            match parse_bool(cell) {
                Some(true) => channels.extend_from_slice(covered),
                Some(false) => {}
                None => self.warn(
                    &column.header,
                    cell,
                    "unreadable consent value; expected yes/no, so no consent was recorded",
                ),
            }
        }
        // A consent date without any consent column means the person
        // consented on the channels the date covers.
        if !self.context.plan.has_consent_flag {
            if self.first(Field::ConsentDate).is_some() {
                channels.extend_from_slice(&[ChannelKind::Sms, ChannelKind::Email]);
            }
            if self.first(Field::ConsentSmsDate).is_some() {
                channels.push(ChannelKind::Sms);
            }
            if self.first(Field::ConsentEmailDate).is_some() {
                channels.push(ChannelKind::Email);
            }
        }
        channels.retain(|channel| prospect.contact_for(*channel).is_some());
        channels.sort();
        channels.dedup();

        let mut consents = Vec::with_capacity(channels.len());
        let mut unreadable_dates: Vec<&str> = Vec::new();
        for channel in channels {
            let (date_field, source_field, wording_field) = match channel {
                ChannelKind::Sms => (
                    Field::ConsentSmsDate,
                    Field::ConsentSmsSource,
                    Field::ConsentSmsWording,
                ),
                _ => (
                    Field::ConsentEmailDate,
                    Field::ConsentEmailSource,
                    Field::ConsentEmailWording,
                ),
            };
            let date = self
                .first(date_field)
                .or_else(|| self.first(Field::ConsentDate));
            let collected_at = match date {
                Some((column, cell)) => match parse_timestamp(cell, prospect.locale) {
                    Some(at) => at,
                    None => {
                        if !unreadable_dates.contains(&column.header.as_str()) {
                            unreadable_dates.push(&column.header);
                            self.warn(
                                &column.header,
                                cell,
                                "unreadable consent date; the consent was recorded with the import time",
                            );
                        }
                        self.context.now
                    }
                },
                None => self.context.now,
            };
            let source = self
                .first_text(source_field)
                .or_else(|| self.first_text(Field::ConsentSource))
                .or_else(|| self.context.options.source.clone())
                .unwrap_or_else(|| DEFAULT_CONSENT_SOURCE.to_owned());
            let wording_version = self
                .first_text(wording_field)
                .or_else(|| self.first_text(Field::ConsentWording));
            consents.push(Consent {
                channel,
                basis: ConsentBasis::Consent,
                collected_at,
                source,
                wording_version,
                withdrawn_at: None,
            });
        }
        consents
    }

    fn opt_outs(&mut self) -> Vec<ChannelKind> {
        let mut channels = Vec::new();
        let flags = [
            (
                Field::OptOut,
                &[ChannelKind::Sms, ChannelKind::Email, ChannelKind::Messenger][..],
            ),
            (Field::OptOutSms, &[ChannelKind::Sms][..]),
            (Field::OptOutEmail, &[ChannelKind::Email][..]),
        ];
        for (field, covered) in flags {
            let Some((column, cell)) = self.first(field) else {
                continue;
            };
            match parse_bool(cell) {
                Some(true) => channels.extend_from_slice(covered),
                Some(false) => {}
                None => self.warn(
                    &column.header,
                    cell,
                    "unreadable opt-out value; expected yes/no, so it was read as no",
                ),
            }
        }
        channels.sort();
        channels.dedup();
        channels
    }

    /// Warns about values in columns without a header, and about cells
    /// where the decoder replaced invalid bytes.
    fn check_ignored_and_replaced(&mut self) {
        let plan = self.context.plan;
        for column in &plan.columns {
            let cell = self.cell(column);
            if column.field == Field::Ignore && column.header.is_empty() && !cell.trim().is_empty()
            {
                let name = format!("column {}", column.index + 1);
                self.warn(
                    &name,
                    cell,
                    "the column has no header, so its value was not imported",
                );
            }
            if self.context.had_replacements && cell.contains('\u{fffd}') {
                self.warn(
                    &column.header,
                    cell,
                    "the cell has bytes that are not valid in the file's encoding; they were replaced with U+FFFD",
                );
            }
        }
    }
}

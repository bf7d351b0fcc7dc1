//! The columns of the CSV export and the writing of one prospect per row.

use std::collections::HashSet;
use std::io::Write;

use chrono::SecondsFormat;

use crate::contact::ChannelKind;
use crate::error::{Error, Result};
use crate::import::{header_key, spreadsheet_safe};
use crate::prospect::{Consent, ConsentBasis, CustomValue, Prospect};

/// The columns written before the custom fields, in order. Each is a name
/// the import maps back to the same field.
pub(crate) const BUILT_IN_COLUMNS: [&str; 19] = [
    "first_name",
    "last_name",
    "company",
    "job_title",
    "phone",
    "email",
    "messenger_psid",
    "locale",
    "time_zone",
    "source",
    "tags",
    "consent_sms",
    "consent_sms_date",
    "consent_sms_source",
    "consent_sms_version",
    "consent_email",
    "consent_email_date",
    "consent_email_source",
    "consent_email_version",
];

/// The separator tags are joined with; the import splits on `,`, `;` and `|`.
const TAG_SEPARATOR: &str = "|";

/// The custom field columns of an export and the names left out.
#[derive(Debug)]
pub(crate) struct Layout {
    custom: Vec<String>,
    custom_names: HashSet<String>,
    skipped: Vec<String>,
}

impl Layout {
    /// Keeps the custom field names the import can tell apart from the
    /// built-in columns and from each other, in the order given.
    pub(crate) fn new(names: Vec<String>) -> Self {
        let mut keys: HashSet<String> = BUILT_IN_COLUMNS
            .iter()
            .map(|column| header_key(column))
            .collect();
        let mut layout = Layout {
            custom: Vec::new(),
            custom_names: HashSet::new(),
            skipped: Vec::new(),
        };
        for name in names {
            let key = header_key(&name);
            if key.is_empty() || !keys.insert(key) {
                layout.skipped.push(name);
            } else {
                layout.custom_names.insert(name.clone());
                layout.custom.push(name);
            }
        }
        layout
    }

    pub(crate) fn custom_columns(&self) -> &[String] {
        &self.custom
    }

    pub(crate) fn skipped(&self) -> &[String] {
        &self.skipped
    }

    pub(crate) fn has_column(&self, name: &str) -> bool {
        self.custom_names.contains(name)
    }
}

/// Counts of the values left out when one prospect was written.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) skipped_custom_values: usize,
    pub(crate) skipped_consents: usize,
}

/// A CSV writer that writes one prospect per row in a [`Layout`].
pub(crate) struct CsvWriter<'l, W: Write> {
    writer: csv::Writer<W>,
    layout: &'l Layout,
    row: Vec<String>,
}

fn write_failed(error: csv::Error) -> Error {
    Error::unexpected("failed to write the CSV export").with_source(error)
}

impl<'l, W: Write> CsvWriter<'l, W> {
    /// Starts the file with its header row.
    pub(crate) fn new(writer: W, layout: &'l Layout) -> Result<Self> {
        let mut writer = csv::Writer::from_writer(writer);
        let header = BUILT_IN_COLUMNS
            .iter()
            .map(|column| (*column).to_owned())
            .chain(layout.custom.iter().map(|name| spreadsheet_safe(name)));
        writer.write_record(header).map_err(write_failed)?;
        Ok(CsvWriter {
            writer,
            layout,
            row: Vec::with_capacity(BUILT_IN_COLUMNS.len() + layout.custom.len()),
        })
    }

    /// Writes one prospect.
    pub(crate) fn write(&mut self, prospect: &Prospect) -> Result<Written> {
        let mut written = Written::default();
        let text =
            |value: &Option<String>| value.as_deref().map(spreadsheet_safe).unwrap_or_default();
        self.row.clear();
        self.row.push(text(&prospect.first_name));
        self.row.push(text(&prospect.last_name));
        self.row.push(text(&prospect.company));
        self.row.push(text(&prospect.job_title));
        // Phone numbers are E.164, a `+` and digits only, so they are written as they are.
        self.row.push(
            prospect
                .phone
                .as_ref()
                .map(|phone| phone.as_str().to_owned())
                .unwrap_or_default(),
        );
        self.row.push(
            prospect
                .email
                .as_ref()
                .map(|email| spreadsheet_safe(email.as_str()))
                .unwrap_or_default(),
        );
        self.row.push(
            prospect
                .messenger
                .as_ref()
                .map(|psid| spreadsheet_safe(psid.as_str()))
                .unwrap_or_default(),
        );
        self.row.push(prospect.locale.as_str().to_owned());
        self.row.push(
            prospect
                .time_zone
                .map(|zone| zone.name().to_owned())
                .unwrap_or_default(),
        );
        self.row.push(text(&prospect.source));
        self.row
            .push(spreadsheet_safe(&prospect.tags.join(TAG_SEPARATOR)));

        let mut written_consents = 0;
        for channel in [ChannelKind::Sms, ChannelKind::Email] {
            match latest_active_consent(&prospect.consents, channel) {
                Some(consent) => {
                    written_consents += 1;
                    self.row.push("yes".to_owned());
                    self.row.push(
                        consent
                            .collected_at
                            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    );
                    self.row.push(spreadsheet_safe(&consent.source));
                    self.row.push(
                        consent
                            .wording_version
                            .as_deref()
                            .map(spreadsheet_safe)
                            .unwrap_or_default(),
                    );
                }
                None => self.row.extend(std::iter::repeat_n(String::new(), 4)),
            }
        }
        written.skipped_consents = prospect.consents.len() - written_consents;

        for name in &self.layout.custom {
            let cell = match prospect.custom_fields.get(name) {
                Some(CustomValue::Number(number)) if !number.is_finite() => {
                    written.skipped_custom_values += 1;
                    String::new()
                }
                Some(value) => spreadsheet_safe(&value.to_string()),
                None => String::new(),
            };
            self.row.push(cell);
        }
        written.skipped_custom_values += prospect
            .custom_fields
            .keys()
            .filter(|name| !self.layout.has_column(name))
            .count();

        self.writer.write_record(&self.row).map_err(write_failed)?;
        Ok(written)
    }

    /// Flushes the writer.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.writer
            .flush()
            .map_err(|error| Error::unexpected("failed to write the CSV export").with_source(error))
    }
}

/// Returns the active consent with the basis `Consent` on `channel` that
/// was collected last.
fn latest_active_consent(consents: &[Consent], channel: ChannelKind) -> Option<&Consent> {
    consents
        .iter()
        .filter(|consent| {
            consent.channel == channel
                && consent.is_active()
                && consent.basis == ConsentBasis::Consent
        })
        .max_by_key(|consent| consent.collected_at)
}

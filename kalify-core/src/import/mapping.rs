//! Header mapping: which prospect field each CSV column fills.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::error::{Error, Result};

/// The prospect field a column fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Field {
    /// Given name.
    FirstName,
    /// Family name.
    LastName,
    /// Given and family names in one cell, split on import.
    FullName,
    /// Company name.
    Company,
    /// Job title.
    JobTitle,
    /// A mobile number, preferred over every other phone column.
    Mobile,
    /// A phone number of unknown kind, used when no mobile number is present.
    Phone,
    /// A landline number, used only when no other phone column has a valid number.
    Landline,
    /// E-mail address.
    Email,
    /// Country name or ISO 3166-1 code, used as the region of the row's phone number.
    Country,
    /// Language to write in, such as `fr` or `English`.
    Locale,
    /// IANA time zone, such as `Europe/Paris`.
    TimeZone,
    /// The prospect's origin, such as a campaign or a trade show.
    Source,
    /// Tags separated by `,`, `;` or `|`.
    Tags,
    /// A yes/no consent that covers SMS and e-mail.
    Consent,
    /// A yes/no consent to SMS.
    ConsentSms,
    /// A yes/no consent to e-mail.
    ConsentEmail,
    /// When the consent was collected.
    ConsentDate,
    /// The place the consent was collected, such as a form name.
    ConsentSource,
    /// The version of the consent wording.
    ConsentWording,
    /// When the SMS consent was collected, in place of `ConsentDate` for SMS.
    ConsentSmsDate,
    /// The place the SMS consent was collected, in place of `ConsentSource` for SMS.
    ConsentSmsSource,
    /// The wording version of the SMS consent, in place of `ConsentWording` for SMS.
    ConsentSmsWording,
    /// When the e-mail consent was collected, in place of `ConsentDate` for e-mail.
    ConsentEmailDate,
    /// The place the e-mail consent was collected, in place of `ConsentSource` for e-mail.
    ConsentEmailSource,
    /// The wording version of the e-mail consent, in place of `ConsentWording` for e-mail.
    ConsentEmailWording,
    /// A yes/no opt-out from every channel.
    OptOut,
    /// A yes/no opt-out from SMS.
    OptOutSms,
    /// A yes/no opt-out from e-mail.
    OptOutEmail,
    /// Messenger page-scoped id.
    MessengerPsid,
    /// A custom field named after the column.
    Custom,
    /// Not imported.
    Ignore,
}

impl Field {
    /// Returns the snake_case name used in mapping files.
    pub fn as_str(&self) -> &'static str {
        match self {
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::FullName => "full_name",
            Field::Company => "company",
            Field::JobTitle => "job_title",
            Field::Mobile => "mobile",
            Field::Phone => "phone",
            Field::Landline => "landline",
            Field::Email => "email",
            Field::Country => "country",
            Field::Locale => "locale",
            Field::TimeZone => "time_zone",
            Field::Source => "source",
            Field::Tags => "tags",
            Field::Consent => "consent",
            Field::ConsentSms => "consent_sms",
            Field::ConsentEmail => "consent_email",
            Field::ConsentDate => "consent_date",
            Field::ConsentSource => "consent_source",
            Field::ConsentWording => "consent_wording",
            Field::ConsentSmsDate => "consent_sms_date",
            Field::ConsentSmsSource => "consent_sms_source",
            Field::ConsentSmsWording => "consent_sms_wording",
            Field::ConsentEmailDate => "consent_email_date",
            Field::ConsentEmailSource => "consent_email_source",
            Field::ConsentEmailWording => "consent_email_wording",
            Field::OptOut => "opt_out",
            Field::OptOutSms => "opt_out_sms",
            Field::OptOutEmail => "opt_out_email",
            Field::MessengerPsid => "messenger_psid",
            Field::Custom => "custom",
            Field::Ignore => "ignore",
        }
    }

    /// True for the fields that give a way to reach the prospect.
    pub fn is_contact(&self) -> bool {
        matches!(
            self,
            Field::Mobile | Field::Phone | Field::Landline | Field::Email | Field::MessengerPsid
        )
    }
}

/// The type of a custom field's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomType {
    /// Free text, kept as written.
    #[default]
    Text,
    /// A number such as `1 234,5`, `1,234.5` or `12 400 €`.
    Number,
    /// A yes/no value such as `oui`, `true`, `1` or `x`.
    Bool,
    /// A calendar date such as `2026-01-06`, `06/01/2026` or `6 janvier 2026`.
    Date,
}

/// Column overrides and custom field declarations for an import.
///
/// Names are matched like the built-in aliases: case, accents, spaces and
/// punctuation are ignored, so `"Téléphone perso"` matches `telephone_perso`.
/// A column override wins over a custom field declaration, which wins over
/// the built-in aliases.
///
/// The JSON form is
/// `{"columns": {"Portable perso": "mobile", "Réf": "ignore"}, "custom_fields": {"Budget": "number"}}`,
/// and the TOML form is
///
/// ```toml
/// [columns]
/// "Portable perso" = "mobile"
/// "Réf" = "ignore"
///
/// [custom_fields]
/// Budget = "number"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mapping {
    /// Column name to the field it fills.
    pub columns: BTreeMap<String, Field>,
    /// Custom field name to its type. A column with this name becomes a
    /// custom field of that type, stored under the name as written here.
    pub custom_fields: BTreeMap<String, CustomType>,
}

impl Mapping {
    /// Reads a mapping from its JSON form.
    ///
    /// # Errors
    /// `InvalidInput` when the JSON is malformed, has unknown keys, or names
    /// an unknown field or type.
    pub fn from_json_str(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|error| {
            Error::invalid_input(format!(
                "invalid import mapping: {error}; expected {{\"columns\": {{\"column name\": \"field\"}}, \"custom_fields\": {{\"name\": \"text|number|bool|date\"}}}}"
            ))
        })
    }

    /// Reads a mapping from its TOML form: a `[columns]` table of column
    /// name to field, and a `[custom_fields]` table of name to type.
    ///
    /// # Errors
    /// `InvalidInput` when the TOML is malformed, has unknown keys, or names
    /// an unknown field or type.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|error| {
            Error::invalid_input(format!(
                "invalid import mapping: {}; expected a [columns] table of \"column name\" = \"field\" and a [custom_fields] table of name = \"text|number|bool|date\"",
                error.message()
            ))
        })
    }

    /// Maps the column named `column` to `field`.
    pub fn with_column(mut self, column: impl Into<String>, field: Field) -> Self {
        self.columns.insert(column.into(), field);
        self
    }

    /// Declares a custom field of type `kind`.
    pub fn with_custom_field(mut self, name: impl Into<String>, kind: CustomType) -> Self {
        self.custom_fields.insert(name.into(), kind);
        self
    }
}

/// Reduces a header to the form aliases are compared in: accents removed,
/// lower-cased, and only letters and digits kept.
pub(crate) fn header_key(header: &str) -> String {
    header
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Built-in aliases as (header, field, priority). Among columns of the same
/// field, the lowest priority that has a usable value wins.
///
/// NOTE: the HubSpot, Zoho and OroCRM names are tested against real export
/// headers. The Salesforce (`MobilePhone`, `HasOptedOutOfEmail`), Pipedrive
/// (`Person - Phone - Mobile`), Mautic (`preferred_locale`) and Brevo
/// (`SMS`, `PRENOM`) names were written from their field lists, not from
/// export files.
const ALIASES: &[(&str, Field, u8)] = &[
    // Given name.
    ("first name", Field::FirstName, 0),
    ("firstname", Field::FirstName, 0),
    ("prénom", Field::FirstName, 0),
    ("given name", Field::FirstName, 0),
    ("forename", Field::FirstName, 0),
    // Family name. "Nom" alone is handled in `resolve_columns`.
    ("last name", Field::LastName, 0),
    ("lastname", Field::LastName, 0),
    ("surname", Field::LastName, 0),
    ("family name", Field::LastName, 0),
    ("nom de famille", Field::LastName, 0),
    ("nom", Field::LastName, 0),
    // Full name.
    ("name", Field::FullName, 0),
    ("full name", Field::FullName, 0),
    ("nom complet", Field::FullName, 0),
    ("contact name", Field::FullName, 0),
    ("person name", Field::FullName, 0),
    ("display name", Field::FullName, 0),
    ("nom prénom", Field::FullName, 0),
    ("nom et prénom", Field::FullName, 0),
    ("prénom nom", Field::FullName, 0),
    ("prénom et nom", Field::FullName, 0),
    // Company.
    ("company", Field::Company, 0),
    ("company name", Field::Company, 0),
    ("société", Field::Company, 0),
    ("entreprise", Field::Company, 0),
    ("raison sociale", Field::Company, 0),
    ("account name", Field::Company, 0),
    ("organization", Field::Company, 0),
    ("organisation", Field::Company, 0),
    ("organization name", Field::Company, 0),
    ("employer", Field::Company, 1),
    // Job title.
    ("job title", Field::JobTitle, 0),
    ("jobtitle", Field::JobTitle, 0),
    ("title", Field::JobTitle, 0),
    ("poste", Field::JobTitle, 0),
    ("fonction", Field::JobTitle, 0),
    ("position", Field::JobTitle, 0),
    ("intitulé de poste", Field::JobTitle, 0),
    // Mobile numbers.
    ("mobile", Field::Mobile, 0),
    ("mobile phone", Field::Mobile, 0),
    ("mobilephone", Field::Mobile, 0),
    ("mobile phone number", Field::Mobile, 0),
    ("mobile number", Field::Mobile, 0),
    ("phone mobile", Field::Mobile, 0),
    ("cell", Field::Mobile, 0),
    ("cell phone", Field::Mobile, 0),
    ("cell number", Field::Mobile, 0),
    ("portable", Field::Mobile, 0),
    ("téléphone portable", Field::Mobile, 0),
    ("tél portable", Field::Mobile, 0),
    ("tel portable", Field::Mobile, 0),
    ("téléphone mobile", Field::Mobile, 0),
    ("tél mobile", Field::Mobile, 0),
    ("numéro de portable", Field::Mobile, 0),
    ("numéro de mobile", Field::Mobile, 0),
    ("gsm", Field::Mobile, 0),
    ("sms", Field::Mobile, 0),
    ("whatsapp", Field::Mobile, 1),
    ("whatsapp phone number", Field::Mobile, 1),
    ("whatsapp number", Field::Mobile, 1),
    // Phone numbers of unknown kind.
    ("phone", Field::Phone, 0),
    ("phone number", Field::Phone, 0),
    ("phone 1", Field::Phone, 0),
    ("primary phone", Field::Phone, 0),
    ("telephone", Field::Phone, 0),
    ("téléphone", Field::Phone, 0),
    ("tel", Field::Phone, 0),
    ("tél", Field::Phone, 0),
    ("numéro de téléphone", Field::Phone, 0),
    ("n° de téléphone", Field::Phone, 0),
    ("n° téléphone", Field::Phone, 0),
    ("phone 2", Field::Phone, 1),
    ("phone other", Field::Phone, 1),
    // Landlines.
    ("landline", Field::Landline, 0),
    ("work phone", Field::Landline, 0),
    ("office phone", Field::Landline, 0),
    ("office number", Field::Landline, 0),
    ("business phone", Field::Landline, 0),
    ("phone work", Field::Landline, 0),
    ("téléphone fixe", Field::Landline, 0),
    ("tél fixe", Field::Landline, 0),
    ("fixe", Field::Landline, 0),
    ("téléphone professionnel", Field::Landline, 0),
    ("tél pro", Field::Landline, 0),
    ("téléphone bureau", Field::Landline, 0),
    ("home phone", Field::Landline, 1),
    ("phone home", Field::Landline, 1),
    // E-mail addresses.
    ("email", Field::Email, 0),
    ("e-mail", Field::Email, 0),
    ("mail", Field::Email, 0),
    ("courriel", Field::Email, 0),
    ("email address", Field::Email, 0),
    ("adresse e-mail", Field::Email, 0),
    ("adresse mail", Field::Email, 0),
    ("adresse électronique", Field::Email, 0),
    ("email work", Field::Email, 0),
    ("work email", Field::Email, 1),
    ("business email", Field::Email, 1),
    ("courriel professionnel", Field::Email, 1),
    ("email professionnel", Field::Email, 1),
    ("email home", Field::Email, 2),
    ("email other", Field::Email, 2),
    ("personal email", Field::Email, 2),
    ("private e-mail address", Field::Email, 2),
    ("email personnel", Field::Email, 2),
    // Country.
    ("country", Field::Country, 0),
    ("pays", Field::Country, 0),
    ("country/region", Field::Country, 0),
    ("country code", Field::Country, 0),
    ("code pays", Field::Country, 0),
    ("mailing country", Field::Country, 0),
    // Language.
    ("language", Field::Locale, 0),
    ("langue", Field::Locale, 0),
    ("locale", Field::Locale, 0),
    ("preferred language", Field::Locale, 0),
    ("preferred_locale", Field::Locale, 0),
    ("langue préférée", Field::Locale, 0),
    // Time zone.
    ("time zone", Field::TimeZone, 0),
    ("fuseau horaire", Field::TimeZone, 0),
    ("tz", Field::TimeZone, 0),
    // Source.
    ("source", Field::Source, 0),
    ("lead source", Field::Source, 0),
    ("origine", Field::Source, 0),
    ("origin", Field::Source, 0),
    ("provenance", Field::Source, 0),
    ("original source", Field::Source, 1),
    // Tags.
    ("tags", Field::Tags, 0),
    ("tag", Field::Tags, 0),
    ("étiquettes", Field::Tags, 0),
    ("étiquette", Field::Tags, 0),
    ("labels", Field::Tags, 0),
    ("label", Field::Tags, 0),
    // Consent.
    ("consent", Field::Consent, 0),
    ("consentement", Field::Consent, 0),
    ("consentement rgpd", Field::Consent, 0),
    ("gdpr consent", Field::Consent, 0),
    ("opt-in", Field::Consent, 0),
    ("opt-in sms", Field::ConsentSms, 0),
    ("sms opt-in", Field::ConsentSms, 0),
    ("sms consent", Field::ConsentSms, 0),
    ("consent sms", Field::ConsentSms, 0),
    ("consentement sms", Field::ConsentSms, 0),
    ("accepte sms", Field::ConsentSms, 0),
    ("accepte les sms", Field::ConsentSms, 0),
    ("opt-in email", Field::ConsentEmail, 0),
    ("email opt-in", Field::ConsentEmail, 0),
    ("email consent", Field::ConsentEmail, 0),
    ("consent email", Field::ConsentEmail, 0),
    ("consentement email", Field::ConsentEmail, 0),
    ("newsletter", Field::ConsentEmail, 0),
    ("accepte email", Field::ConsentEmail, 0),
    ("consent date", Field::ConsentDate, 0),
    ("date de consentement", Field::ConsentDate, 0),
    ("date consentement", Field::ConsentDate, 0),
    ("opt-in date", Field::ConsentDate, 0),
    ("date opt-in", Field::ConsentDate, 0),
    ("date d'opt-in", Field::ConsentDate, 0),
    ("consented at", Field::ConsentDate, 0),
    ("consent source", Field::ConsentSource, 0),
    ("source du consentement", Field::ConsentSource, 0),
    ("source consentement", Field::ConsentSource, 0),
    ("opt-in source", Field::ConsentSource, 0),
    ("consent version", Field::ConsentWording, 0),
    ("consent wording", Field::ConsentWording, 0),
    ("version du consentement", Field::ConsentWording, 0),
    ("consent sms date", Field::ConsentSmsDate, 0),
    ("sms consent date", Field::ConsentSmsDate, 0),
    ("date consentement sms", Field::ConsentSmsDate, 0),
    ("consent sms source", Field::ConsentSmsSource, 0),
    ("sms consent source", Field::ConsentSmsSource, 0),
    ("consent sms version", Field::ConsentSmsWording, 0),
    ("sms consent version", Field::ConsentSmsWording, 0),
    ("consent email date", Field::ConsentEmailDate, 0),
    ("email consent date", Field::ConsentEmailDate, 0),
    ("date consentement email", Field::ConsentEmailDate, 0),
    ("consent email source", Field::ConsentEmailSource, 0),
    ("email consent source", Field::ConsentEmailSource, 0),
    ("consent email version", Field::ConsentEmailWording, 0),
    ("email consent version", Field::ConsentEmailWording, 0),
    // Opt-outs.
    ("opt-out", Field::OptOut, 0),
    ("do not contact", Field::OptOut, 0),
    ("ne pas contacter", Field::OptOut, 0),
    ("désinscrit", Field::OptOut, 0),
    ("désabonné", Field::OptOut, 0),
    ("unsubscribed", Field::OptOut, 0),
    ("opt-out sms", Field::OptOutSms, 0),
    ("sms opt-out", Field::OptOutSms, 0),
    ("stop sms", Field::OptOutSms, 0),
    ("sms blacklisted", Field::OptOutSms, 0),
    ("do not call", Field::OptOutSms, 0),
    ("opt-out email", Field::OptOutEmail, 0),
    ("email opt out", Field::OptOutEmail, 0),
    ("has opted out of email", Field::OptOutEmail, 0),
    ("unsubscribed from all email", Field::OptOutEmail, 0),
    ("email blacklisted", Field::OptOutEmail, 0),
    // Messenger.
    ("psid", Field::MessengerPsid, 0),
    ("messenger psid", Field::MessengerPsid, 0),
    ("messenger id", Field::MessengerPsid, 0),
    ("facebook psid", Field::MessengerPsid, 0),
    ("page-scoped id", Field::MessengerPsid, 0),
];

/// Prefixes some CRMs put before a field name, as in `Person - Email - Work`
/// or `Contact Email`, already in key form.
const PREFIXES: &[&str] = &["person", "contact", "lead", "prospect"];

fn alias_table() -> &'static HashMap<String, (Field, u8)> {
    static TABLE: OnceLock<HashMap<String, (Field, u8)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = HashMap::with_capacity(ALIASES.len());
        for (alias, field, priority) in ALIASES {
            table
                .entry(header_key(alias))
                .or_insert((*field, *priority));
        }
        table
    })
}

/// Looks a header key up in the alias table, then again without a CRM prefix.
fn lookup_alias(key: &str) -> Option<(Field, u8)> {
    let table = alias_table();
    if let Some(found) = table.get(key) {
        return Some(*found);
    }
    PREFIXES
        .iter()
        .filter_map(|prefix| key.strip_prefix(prefix))
        .filter(|rest| !rest.is_empty())
        .find_map(|rest| table.get(rest).copied())
}

/// One column of the file and what it fills.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Column {
    /// Position in the record, from 0.
    pub(crate) index: usize,
    /// The header as written, trimmed.
    pub(crate) header: String,
    /// The field the column fills.
    pub(crate) field: Field,
    /// Rank among columns of the same field; lower wins.
    pub(crate) priority: u8,
    /// For [`Field::Custom`]: the field name and its type.
    pub(crate) custom: Option<(String, CustomType)>,
}

/// Resolves every header to the field it fills.
///
/// Headers that match nothing become text custom fields, and empty headers
/// are ignored. `Nom` alone is a family name when a given-name column
/// exists and a full name otherwise, because French files use it both ways.
pub(crate) fn resolve_columns(headers: &[&str], mapping: &Mapping) -> Vec<Column> {
    let overrides: HashMap<String, Field> = mapping
        .columns
        .iter()
        .map(|(name, field)| (header_key(name), *field))
        .collect();
    let declared: HashMap<String, (String, CustomType)> = mapping
        .custom_fields
        .iter()
        .map(|(name, kind)| (header_key(name), (name.trim().to_owned(), *kind)))
        .collect();

    let mut columns: Vec<Column> = headers
        .iter()
        .enumerate()
        .map(|(index, raw)| {
            let header = raw.trim().trim_start_matches('\u{feff}').trim().to_owned();
            let key = header_key(&header);
            let (field, priority) = if key.is_empty() {
                (Field::Ignore, 0)
            } else if let Some(field) = overrides.get(&key) {
                (*field, 0)
            } else if declared.contains_key(&key) {
                (Field::Custom, 0)
            } else {
                lookup_alias(&key).unwrap_or((Field::Custom, 0))
            };
            let custom = (field == Field::Custom).then(|| {
                declared
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| (header.clone(), CustomType::Text))
            });
            Column {
                index,
                header,
                field,
                priority,
                custom,
            }
        })
        .collect();

    let has_first_name = columns
        .iter()
        .any(|column| column.field == Field::FirstName);
    let nom_key = header_key("nom");
    if !has_first_name {
        for column in &mut columns {
            if column.field == Field::LastName
                && header_key(&column.header) == nom_key
                && !overrides.contains_key(&nom_key)
            {
                column.field = Field::FullName;
            }
        }
    }
    columns
}

/// Resolves every header to the field it fills, as [`import_prospects`]
/// does, so that a caller can preview a file's mapping.
///
/// [`import_prospects`]: super::import_prospects
pub fn preview_columns(headers: &[&str], mapping: &Mapping) -> Vec<(String, Field)> {
    resolve_columns(headers, mapping)
        .into_iter()
        .map(|column| (column.header, column.field))
        .collect()
}

/// A few accepted names per contact field, for error messages.
pub(crate) const CONTACT_EXAMPLES: &str =
    "Téléphone, Portable, Mobile, Phone, SMS, Email, E-mail, Courriel or Messenger PSID";

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(headers: &[&str]) -> Vec<Field> {
        resolve_columns(headers, &Mapping::default())
            .into_iter()
            .map(|column| column.field)
            .collect()
    }

    #[test]
    fn header_key_ignores_case_accents_and_spaces() {
        assert_eq!(header_key(" Téléphone_Mobile "), "telephonemobile");
        assert_eq!(header_key("E-mail"), "email");
        assert_eq!(header_key("PRÉNOM"), "prenom");
        assert_eq!(header_key("Country/Region"), "countryregion");
    }

    #[test]
    fn french_headers_map() {
        assert_eq!(
            fields(&[
                "Prénom",
                "NOM",
                "Société",
                "Poste",
                "Téléphone mobile",
                "Adresse e-mail",
                "Pays",
                "Langue"
            ]),
            vec![
                Field::FirstName,
                Field::LastName,
                Field::Company,
                Field::JobTitle,
                Field::Mobile,
                Field::Email,
                Field::Country,
                Field::Locale,
            ]
        );
    }

    #[test]
    fn nom_alone_is_full_name() {
        assert_eq!(
            fields(&["Nom", "Email"]),
            vec![Field::FullName, Field::Email]
        );
        assert_eq!(
            fields(&["Prénom", "Nom"]),
            vec![Field::FirstName, Field::LastName]
        );
        assert_eq!(
            fields(&["Last Name", "Email"]),
            vec![Field::LastName, Field::Email]
        );
    }

    #[test]
    fn crm_prefixes_are_stripped() {
        assert_eq!(
            fields(&[
                "Person - Email - Work",
                "Person - Phone - Mobile",
                "Contact Email",
                "Lead Source"
            ]),
            vec![Field::Email, Field::Mobile, Field::Email, Field::Source]
        );
    }

    #[test]
    fn unknown_and_empty_headers() {
        let columns = resolve_columns(&["Intérêts", "", "Email Domain"], &Mapping::default());
        assert_eq!(columns[0].field, Field::Custom);
        assert_eq!(
            columns[0].custom,
            Some(("Intérêts".to_owned(), CustomType::Text))
        );
        assert_eq!(columns[1].field, Field::Ignore);
        assert_eq!(columns[2].field, Field::Custom);
    }

    #[test]
    fn mapping_overrides_win() {
        let mapping = Mapping::from_json_str(
            r#"{"columns": {"Portable perso": "mobile", "email": "ignore"}, "custom_fields": {"Budget": "number", "pays": "text"}}"#,
        )
        .unwrap();
        let columns = resolve_columns(&["portable_perso", "Email", "BUDGET", "Pays"], &mapping);
        assert_eq!(columns[0].field, Field::Mobile);
        assert_eq!(columns[1].field, Field::Ignore);
        assert_eq!(
            columns[2].custom,
            Some(("Budget".to_owned(), CustomType::Number))
        );
        assert_eq!(
            columns[3].custom,
            Some(("pays".to_owned(), CustomType::Text))
        );
    }

    #[test]
    fn mapping_json_errors_are_invalid_input() {
        for json in [
            "{",
            r#"{"columns": {"a": "nope"}}"#,
            r#"{"custom_fields": {"a": "float"}}"#,
            r#"{"other": 1}"#,
        ] {
            let error = Mapping::from_json_str(json).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidInput, "{json}");
            assert!(
                error.message().contains("invalid import mapping"),
                "{error}"
            );
        }
    }

    #[test]
    fn mapping_toml_matches_json() {
        let toml = Mapping::from_toml_str(
            r#"
            [columns]
            "Portable perso" = "mobile"
            email = "ignore"

            [custom_fields]
            Budget = "number"
            "Date RDV" = "date"
            "#,
        )
        .unwrap();
        let json = Mapping::from_json_str(
            r#"{"columns": {"Portable perso": "mobile", "email": "ignore"}, "custom_fields": {"Budget": "number", "Date RDV": "date"}}"#,
        )
        .unwrap();
        assert_eq!(toml, json);
        assert_eq!(Mapping::from_toml_str("").unwrap(), Mapping::default());
    }

    #[test]
    fn mapping_toml_errors_are_invalid_input() {
        let cases = [
            "[columns",
            "[columns]\na = \"nope\"",
            "[custom_fields]\na = \"float\"",
            "other = 1",
            "columns = 3",
        ];
        for text in cases {
            let error = Mapping::from_toml_str(text).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::InvalidInput, "{text}");
            assert!(
                error.message().contains("invalid import mapping"),
                "{error}"
            );
        }
    }

    #[test]
    fn aliases_are_unambiguous() {
        let mut seen: HashMap<String, Field> = HashMap::new();
        for (alias, field, _) in ALIASES {
            let key = header_key(alias);
            assert!(!key.is_empty(), "{alias}");
            if let Some(previous) = seen.insert(key.clone(), *field) {
                assert_eq!(previous, *field, "alias {alias:?} maps to two fields");
            }
        }
    }
}

//! Integration tests of the CSV prospect import against an in-memory store.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail by panicking"
)]

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone, Utc};
use kalify_core::campaign::Campaign;
use kalify_core::contact::{ChannelKind, ContactPoint, EmailAddress, PhoneNumber, Region};
use kalify_core::conversation::{Conversation, Message};
use kalify_core::import::{
    CustomType, Field, ImportOptions, ImportReport, InvalidContact, Mapping, MergePolicy,
    import_prospects, preview_columns,
};
use kalify_core::ports::{
    AuditEvent, InsertOutcome, Job, JobOutcome, ListOptions, Member, OutboxEntry, OutboxOutcome,
    Store, Suppression, TurnCommit,
};
use kalify_core::prospect::{ConsentBasis, CustomValue, Locale, Prospect, Version};
use kalify_core::{
    CampaignId, ConversationId, Error, ErrorKind, JobId, MemberId, OrgId, OutboxId, ProspectId,
    Result, Timestamp,
};

// ---------------------------------------------------------------------------
// A store that keeps prospects and suppressions in memory and supports only
// what the import calls.

#[derive(Debug, Default)]
struct FakeStore {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    prospects: HashMap<ProspectId, Prospect>,
    by_contact: HashMap<(OrgId, String), ProspectId>,
    suppressed: Vec<Suppression>,
    insert_calls: Vec<usize>,
    update_calls: usize,
    /// Calls of `find_prospects_by_contacts`.
    batch_lookups: usize,
    /// When set, every update fails with `Conflict`.
    conflict_on_update: bool,
}

fn contact_key(contact: &ContactPoint) -> String {
    format!("{}:{}", contact.channel(), contact.key())
}

impl FakeState {
    fn index(&mut self, prospect: &Prospect) {
        for contact in prospect.contact_points() {
            self.by_contact
                .insert((prospect.org_id, contact_key(&contact)), prospect.id);
        }
    }
}

fn unsupported(operation: &'static str) -> Error {
    Error::new(ErrorKind::Unsupported, "not supported by the fake store").with_operation(operation)
}

impl FakeStore {
    fn prospects(&self) -> Vec<Prospect> {
        let state = self.state.lock().unwrap();
        let mut prospects: Vec<Prospect> = state.prospects.values().cloned().collect();
        prospects.sort_by_key(|prospect| prospect.id);
        prospects
    }

    fn find_email(&self, email: &str) -> Prospect {
        self.prospects()
            .into_iter()
            .find(|prospect| prospect.email.as_ref().map(EmailAddress::as_str) == Some(email))
            .unwrap_or_else(|| panic!("no prospect with e-mail {email}"))
    }

    fn insert_calls(&self) -> Vec<usize> {
        self.state.lock().unwrap().insert_calls.clone()
    }

    fn suppressions(&self) -> Vec<Suppression> {
        self.state.lock().unwrap().suppressed.clone()
    }

    fn suppress_now(&self, org: OrgId, contact: ContactPoint) {
        self.state.lock().unwrap().suppressed.push(Suppression {
            org_id: org,
            contact,
            reason: "opt_out".into(),
            at: Utc::now(),
        });
    }
}

#[async_trait]
impl Store for FakeStore {
    async fn insert_prospects(&self, prospects: &[Prospect]) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        if prospects
            .iter()
            .any(|prospect| state.prospects.contains_key(&prospect.id))
        {
            return Err(Error::conflict("prospect id exists"));
        }
        state.insert_calls.push(prospects.len());
        for prospect in prospects {
            state.index(prospect);
            state.prospects.insert(prospect.id, prospect.clone());
        }
        Ok(())
    }

    async fn get_prospect(&self, org: OrgId, id: ProspectId) -> Result<Prospect> {
        let state = self.state.lock().unwrap();
        state
            .prospects
            .get(&id)
            .filter(|prospect| prospect.org_id == org)
            .cloned()
            .ok_or_else(|| Error::not_found("prospect not found"))
    }

    async fn update_prospect(&self, prospect: &Prospect) -> Result<Version> {
        let mut state = self.state.lock().unwrap();
        if state.conflict_on_update {
            return Err(Error::conflict("version differs"));
        }
        let stored = state
            .prospects
            .get(&prospect.id)
            .ok_or_else(|| Error::not_found("prospect not found"))?;
        if stored.version != prospect.version {
            return Err(Error::conflict("version differs"));
        }
        let mut updated = prospect.clone();
        updated.version = prospect.version.next();
        state.update_calls += 1;
        state.index(&updated);
        state.prospects.insert(updated.id, updated.clone());
        Ok(updated.version)
    }

    async fn find_prospect(&self, org: OrgId, contact: &ContactPoint) -> Result<Option<Prospect>> {
        let state = self.state.lock().unwrap();
        let Some(id) = state.by_contact.get(&(org, contact_key(contact))) else {
            return Ok(None);
        };
        let prospect = state.prospects.get(id).cloned();
        // A contact point the prospect no longer has does not match.
        Ok(prospect.filter(|prospect| prospect.contact_points().contains(contact)))
    }

    async fn list_prospects(&self, _org: OrgId, _options: ListOptions) -> Result<Vec<Prospect>> {
        Err(unsupported("list_prospects"))
    }

    async fn find_prospects_by_contacts(
        &self,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<HashMap<ContactPoint, Prospect>> {
        self.state.lock().unwrap().batch_lookups += 1;
        let mut found = HashMap::new();
        for contact in contacts {
            if let Some(prospect) = self.find_prospect(org, contact).await? {
                found.insert(contact.clone(), prospect);
            }
        }
        Ok(found)
    }

    async fn put_campaign(&self, _campaign: &Campaign) -> Result<()> {
        Err(unsupported("put_campaign"))
    }

    async fn get_campaign(&self, _org: OrgId, _id: CampaignId) -> Result<Campaign> {
        Err(unsupported("get_campaign"))
    }

    async fn insert_conversation(
        &self,
        _conversation: &Conversation,
        _jobs: &[Job],
    ) -> Result<bool> {
        Err(unsupported("insert_conversation"))
    }

    async fn get_conversation(&self, _org: OrgId, _id: ConversationId) -> Result<Conversation> {
        Err(unsupported("get_conversation"))
    }

    async fn conversations_of(
        &self,
        _org: OrgId,
        _prospect: ProspectId,
    ) -> Result<Vec<Conversation>> {
        Err(unsupported("conversations_of"))
    }

    async fn list_messages(
        &self,
        _org: OrgId,
        _conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        Err(unsupported("list_messages"))
    }

    async fn insert_inbound(&self, _message: &Message) -> Result<InsertOutcome> {
        Err(unsupported("insert_inbound"))
    }

    async fn pending_inbound(
        &self,
        _org: OrgId,
        _conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        Err(unsupported("pending_inbound"))
    }

    async fn commit_turn(&self, _turn: &TurnCommit) -> Result<Version> {
        Err(unsupported("commit_turn"))
    }

    async fn claim_jobs(
        &self,
        _now: Timestamp,
        _limit: usize,
        _lease: Duration,
        _worker: &str,
    ) -> Result<Vec<Job>> {
        Err(unsupported("claim_jobs"))
    }

    async fn finish_job(&self, _org: OrgId, _job: JobId, _outcome: JobOutcome) -> Result<()> {
        Err(unsupported("finish_job"))
    }

    async fn claim_outbox(
        &self,
        _now: Timestamp,
        _limit: usize,
        _lease: Duration,
        _worker: &str,
    ) -> Result<Vec<OutboxEntry>> {
        Err(unsupported("claim_outbox"))
    }

    async fn finish_outbox(
        &self,
        _org: OrgId,
        _entry: OutboxId,
        _outcome: OutboxOutcome,
    ) -> Result<()> {
        Err(unsupported("finish_outbox"))
    }

    async fn pending_jobs(&self, _org: OrgId, _conversation: ConversationId) -> Result<Vec<Job>> {
        Err(unsupported("pending_jobs"))
    }

    async fn is_suppressed(&self, org: OrgId, contact: &ContactPoint) -> Result<bool> {
        let state = self.state.lock().unwrap();
        Ok(state
            .suppressed
            .iter()
            .any(|entry| entry.org_id == org && &entry.contact == contact))
    }

    async fn suppress(&self, entries: &[Suppression]) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        for entry in entries {
            if !state
                .suppressed
                .iter()
                .any(|known| known.org_id == entry.org_id && known.contact == entry.contact)
            {
                state.suppressed.push(entry.clone());
            }
        }
        Ok(())
    }

    async fn audit_of(&self, _org: OrgId, _prospect: ProspectId) -> Result<Vec<AuditEvent>> {
        Err(unsupported("audit_of"))
    }

    async fn put_member(&self, _member: &Member) -> Result<()> {
        Err(unsupported("put_member"))
    }

    async fn get_member(&self, _org: OrgId, _id: MemberId) -> Result<Member> {
        Err(unsupported("get_member"))
    }

    async fn list_members(&self, _org: OrgId) -> Result<Vec<Member>> {
        Err(unsupported("list_members"))
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn now() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

/// Imports `bytes` and checks that every row is counted exactly once.
async fn import(
    store: &FakeStore,
    org: OrgId,
    bytes: &[u8],
    options: &ImportOptions,
) -> ImportReport {
    let report = import_prospects(store, org, bytes, options, now())
        .await
        .unwrap();
    let counted = report.inserted
        + report.updated
        + report.unchanged
        + report.duplicates
        + report.suppressed
        + report.blank
        + report.rejected_total;
    assert_eq!(counted, report.rows, "{report:?}");
    report
}

async fn import_error(bytes: &[u8]) -> Error {
    import_prospects(
        &FakeStore::default(),
        OrgId::new(),
        bytes,
        &ImportOptions::default(),
        now(),
    )
    .await
    .unwrap_err()
}

fn phone(prospect: &Prospect) -> Option<&str> {
    prospect.phone.as_ref().map(PhoneNumber::as_str)
}

fn rejected_lines(report: &ImportReport) -> Vec<u64> {
    report.rejected.iter().map(|entry| entry.line).collect()
}

/// The third-party fixture folder, or `None` (after printing why) when it
/// is missing outside CI.
fn fixtures_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/crm-csv");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "fixture folder {} is missing and CI is set",
        dir.display()
    );
    eprintln!("skipped: fixture folder {} is missing", dir.display());
    None
}

// ---------------------------------------------------------------------------
// Third-party files.

#[tokio::test]
async fn fixture_utf8_with_bom() {
    let Some(dir) = fixtures_dir() else { return };
    let bytes = std::fs::read(dir.join("utf8-bom.csv")).unwrap();
    let store = FakeStore::default();
    let org = OrgId::new();
    let report = import(&store, org, &bytes, &ImportOptions::default()).await;

    assert_eq!(report.rows, 1);
    assert_eq!(report.inserted, 1);
    assert_eq!(report.rejected_total, 0, "{:?}", report.rejected);
    assert_eq!(report.encoding, "UTF-8");
    assert_eq!(report.delimiter, ';');
    let prospect = &store.prospects()[0];
    assert_eq!(prospect.first_name.as_deref(), Some("Luçile"));
    assert_eq!(prospect.last_name.as_deref(), Some("Rivière"));
    assert_eq!(phone(prospect), Some("+33145048955"));
    assert_eq!(
        prospect.email.as_ref().map(EmailAddress::as_str),
        Some("lucile.riviere+pc@plezi.co")
    );
    assert_eq!(
        prospect.custom_fields.get("Intérêts"),
        Some(&CustomValue::Text("cheval".into()))
    );
    assert_eq!(prospect.org_id, org);
}

#[tokio::test]
async fn fixture_windows_1252() {
    let Some(dir) = fixtures_dir() else { return };
    let bytes = std::fs::read(dir.join("windows-1252.csv")).unwrap();
    let store = FakeStore::default();
    let report = import(&store, OrgId::new(), &bytes, &ImportOptions::default()).await;

    assert_eq!(report.rows, 1);
    assert_eq!(report.inserted, 1);
    assert_eq!(report.rejected_total, 0, "{:?}", report.rejected);
    assert_eq!(report.warnings_total, 0, "{:?}", report.warnings);
    assert_eq!(report.encoding, "windows-1252");
    let prospect = &store.prospects()[0];
    assert_eq!(prospect.first_name.as_deref(), Some("abcàâäéèêë"));
    assert_eq!(prospect.last_name.as_deref(), Some("îôöùûüabç"));
    assert_eq!(prospect.company.as_deref(), Some("Money€$£"));
    assert_eq!(
        prospect.email.as_ref().map(EmailAddress::as_str),
        Some("lucile.riviere+testcsv@plezi.co")
    );
    assert_eq!(
        report
            .columns
            .iter()
            .filter(|column| column.field == Field::Ignore)
            .count(),
        3
    );
}

fn header_set(values: &serde_json::Value) -> Vec<String> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_str().unwrap().to_owned())
        .collect()
}

/// Reads the header line of a CSV sample stored as a JSON string.
fn sample_header(csv_text: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(if csv_text.lines().next().unwrap().contains(';') {
            b';'
        } else {
            b','
        })
        .from_reader(csv_text.trim_start_matches('\u{feff}').as_bytes());
    reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect()
}

fn assert_maps(headers: &[String], expected: &[(&str, Field)], set: &str) {
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mapped: HashMap<String, Field> = preview_columns(&refs, &Mapping::default())
        .into_iter()
        .collect();
    for (header, field) in expected {
        assert_eq!(mapped.get(*header), Some(field), "{set}: column {header:?}");
    }
}

#[test]
fn fixture_crm_header_sets_map() {
    let Some(dir) = fixtures_dir() else { return };
    let text = std::fs::read_to_string(dir.join("crm_export_templates.json")).unwrap();
    let templates: serde_json::Value = serde_json::from_str(&text).unwrap();

    let hubspot = header_set(&templates["hubspot_all_contacts_export_header"]["columns"]);
    assert_maps(
        &hubspot,
        &[
            ("First Name", Field::FirstName),
            ("Last Name", Field::LastName),
            ("Email", Field::Email),
            ("Work email", Field::Email),
            ("Private e-mail address", Field::Email),
            ("Mobile Phone Number", Field::Mobile),
            ("WhatsApp Phone Number", Field::Mobile),
            ("Phone Number", Field::Phone),
            ("Company Name", Field::Company),
            ("Job Title", Field::JobTitle),
            ("Country/Region", Field::Country),
            ("Time Zone", Field::TimeZone),
            ("Preferred language", Field::Locale),
            ("Original Source", Field::Source),
            ("Unsubscribed from all email", Field::OptOutEmail),
            ("Email Domain", Field::Custom),
            ("Invalid email address", Field::Custom),
            ("Fax Number", Field::Custom),
            ("IP Country", Field::Custom),
            ("höbbela", Field::Custom),
        ],
        "hubspot all contacts",
    );

    let others = templates["hubspot_other_export_headers_seen"]
        .as_array()
        .unwrap();
    assert_maps(
        &header_set(&others[0]["columns"]),
        &[
            ("First Name", Field::FirstName),
            ("Last Name", Field::LastName),
            ("Email", Field::Email),
            ("Phone Number", Field::Phone),
        ],
        "hubspot export",
    );
    assert_maps(
        &header_set(&others[1]["columns"]),
        &[
            ("First Name", Field::FirstName),
            ("Last Name", Field::LastName),
            ("Email", Field::Email),
            ("Office Number", Field::Landline),
            ("Cell Number", Field::Mobile),
            ("Company name", Field::Company),
        ],
        "hubspot leads export",
    );

    let zoho = &templates["zoho_crm_style_export"]["files"];
    assert_maps(
        &sample_header(zoho["Contacts_001.csv"].as_str().unwrap()),
        &[
            ("First Name", Field::FirstName),
            ("Last Name", Field::LastName),
            ("Account Name", Field::Company),
            ("Email", Field::Email),
            ("Mobile", Field::Mobile),
        ],
        "zoho contacts",
    );
    assert_maps(
        &sample_header(zoho["Accounts_001.csv"].as_str().unwrap()),
        &[("Account Name", Field::Company), ("Phone", Field::Phone)],
        "zoho accounts",
    );
    assert_maps(
        &sample_header(zoho["Deals_001.csv"].as_str().unwrap()),
        &[("Contact Name", Field::FullName)],
        "zoho deals",
    );
    assert_maps(
        &sample_header(
            templates["oro_crm_leads_import_template"]["csv"]
                .as_str()
                .unwrap(),
        ),
        &[
            ("First name", Field::FirstName),
            ("Last Name", Field::LastName),
            ("Company name", Field::Company),
        ],
        "oro leads",
    );

    let french = templates["french_import_formats_seen_in_peer_apps"]
        .as_array()
        .unwrap();
    let expected_french: [&[(&str, Field)]; 4] = [
        &[
            ("prénom", Field::FirstName),
            ("nom", Field::LastName),
            ("email", Field::Email),
            ("téléphone", Field::Phone),
        ],
        &[
            ("Prénom", Field::FirstName),
            ("Nom", Field::LastName),
            ("Email", Field::Email),
            ("Téléphone", Field::Phone),
        ],
        &[
            ("Prénom", Field::FirstName),
            ("Nom", Field::LastName),
            ("Email", Field::Email),
            ("Téléphone", Field::Phone),
        ],
        &[
            ("Nom", Field::FullName),
            ("Email", Field::Email),
            ("Téléphone", Field::Phone),
            ("Entreprise", Field::Company),
        ],
    ];
    assert_eq!(french.len(), expected_french.len());
    for (index, (sample, expected)) in french.iter().zip(expected_french).enumerate() {
        let headers = sample_header(sample["csv"].as_str().unwrap());
        assert_maps(&headers, expected, &format!("french sample {index}"));
    }
}

#[tokio::test]
async fn fixture_crm_samples_import() {
    let Some(dir) = fixtures_dir() else { return };
    let text = std::fs::read_to_string(dir.join("crm_export_templates.json")).unwrap();
    let templates: serde_json::Value = serde_json::from_str(&text).unwrap();

    // Every French sample has valid contacts on each data row.
    for sample in templates["french_import_formats_seen_in_peer_apps"]
        .as_array()
        .unwrap()
    {
        let csv_text = sample["csv"].as_str().unwrap();
        let data_rows = csv_text.trim_end().lines().count() - 1;
        let store = FakeStore::default();
        let report = import(
            &store,
            OrgId::new(),
            csv_text.as_bytes(),
            &ImportOptions::default(),
        )
        .await;
        assert_eq!(report.inserted, data_rows, "{csv_text}");
        assert_eq!(report.rejected_total, 0, "{:?}", report.rejected);
    }

    // Zoho contacts are American: read them in the US region.
    let contacts = templates["zoho_crm_style_export"]["files"]["Contacts_001.csv"]
        .as_str()
        .unwrap();
    let store = FakeStore::default();
    let options = ImportOptions::default()
        .with_default_region(Region::US)
        .with_default_locale(Locale::En);
    let report = import(&store, OrgId::new(), contacts.as_bytes(), &options).await;
    assert_eq!(report.inserted, 2, "{:?}", report.rejected);
    assert_eq!(report.delimiter, ',');
    let sam = store.find_email("sam@ridgepg.com");
    assert_eq!(sam.company.as_deref(), Some("Ridge Property Group"));

    // Notes have no contact column.
    let notes = templates["zoho_crm_style_export"]["files"]["Notes_001.csv"]
        .as_str()
        .unwrap();
    let error = import_error(notes.as_bytes()).await;
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.message().contains("\"Note Title\""), "{error}");
}

// ---------------------------------------------------------------------------
// Formats and encodings.

#[tokio::test]
async fn semicolon_and_tab_files() {
    for delimiter in [";", "\t", "|", ","] {
        let text = format!(
            "Prénom{d}Nom{d}Portable{d}Email\nJeanne{d}Martin{d}06 12 34 56 78{d}jeanne@example.fr\n",
            d = delimiter
        );
        let store = FakeStore::default();
        let report = import(
            &store,
            OrgId::new(),
            text.as_bytes(),
            &ImportOptions::default(),
        )
        .await;
        assert_eq!(report.inserted, 1, "{delimiter:?}");
        assert_eq!(report.delimiter.to_string(), delimiter);
        let prospect = &store.prospects()[0];
        assert_eq!(prospect.first_name.as_deref(), Some("Jeanne"));
        assert_eq!(phone(prospect), Some("+33612345678"));
    }
}

#[tokio::test]
async fn bom_and_windows_1252_names() {
    let mut utf8 = "\u{feff}Prénom;Nom;Email\nFrançoise;Lefèvre;f@example.fr\n"
        .as_bytes()
        .to_vec();
    let store = FakeStore::default();
    let report = import(&store, OrgId::new(), &utf8, &ImportOptions::default()).await;
    assert_eq!(report.inserted, 1);
    assert_eq!(
        store.prospects()[0].first_name.as_deref(),
        Some("Françoise")
    );
    assert_eq!(report.columns[0].field, Field::FirstName);

    // The same file as Excel writes it on a French Windows.
    utf8 = b"Pr\xe9nom;Nom;Email\r\nFran\xe7oise;Lef\xe8vre;f@example.fr\r\n".to_vec();
    let store = FakeStore::default();
    let report = import(&store, OrgId::new(), &utf8, &ImportOptions::default()).await;
    assert_eq!(report.encoding, "windows-1252");
    let prospect = &store.prospects()[0];
    assert_eq!(prospect.first_name.as_deref(), Some("Françoise"));
    assert_eq!(prospect.last_name.as_deref(), Some("Lefèvre"));
}

#[tokio::test]
async fn excel_sep_line_is_honoured() {
    let text = "sep=,\nNom;complet,Email\n\"Dupont, Jean\",jean@example.fr\nx,bad\n";
    let store = FakeStore::default();
    let report = import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.delimiter, ',');
    assert_eq!(report.inserted, 1);
    assert_eq!(rejected_lines(&report), vec![4]);
}

#[tokio::test]
async fn embedded_newlines_keep_line_numbers() {
    for newline in ["\n", "\r\n"] {
        let text = [
            "Prénom;Nom;Email;Notes",
            "Ann;Arnaud;ann@example.fr;\"two",
            "lines\"",
            "Bob;Bernard;not-an-email;x",
            "Cy;Caron;cy@example.fr;\"a",
            "",
            "b\"",
            "Dee;Durand;;x",
        ]
        .join(newline);
        let store = FakeStore::default();
        let report = import(
            &store,
            OrgId::new(),
            text.as_bytes(),
            &ImportOptions::default(),
        )
        .await;
        assert_eq!(report.inserted, 2, "{newline:?}");
        assert_eq!(rejected_lines(&report), vec![4, 8], "{newline:?}");
        assert_eq!(report.rejected[0].column.as_deref(), Some("Email"));
        assert_eq!(report.rejected[0].value.as_deref(), Some("not-an-email"));
        assert!(
            report.rejected[1]
                .reason
                .contains("no phone number, e-mail address"),
            "{:?}",
            report.rejected[1]
        );
        let ann = store.find_email("ann@example.fr");
        assert_eq!(
            ann.custom_fields.get("Notes"),
            Some(&CustomValue::Text(format!("two{newline}lines")))
        );
    }
}

#[tokio::test]
async fn blank_lines_keep_line_numbers() {
    for newline in ["\n", "\r\n"] {
        let text = [
            "",
            "",
            "Prénom;Email",
            "Ann;ann@example.fr",
            "",
            ";",
            "Bob;bad",
            "",
            "Cy;bad",
        ]
        .join(newline);
        let store = FakeStore::default();
        let report = import(
            &store,
            OrgId::new(),
            text.as_bytes(),
            &ImportOptions::default(),
        )
        .await;
        assert_eq!(report.inserted, 1, "{newline:?}");
        assert_eq!(report.blank, 1, "{newline:?}");
        assert_eq!(rejected_lines(&report), vec![7, 9], "{newline:?}");
    }
}

// ---------------------------------------------------------------------------
// Row handling.

#[tokio::test]
async fn bad_rows_are_reported_with_lines() {
    let text = "\
Prénom;Nom;Téléphone;Email
Ann;Arnaud;12;ann@example.fr
Bob;Bernard;12;
Cy;Caron;;cy@@example
Dee;Durand;06 12 34 56 78;dee@
Eve;Esnault;06 98 76 54 32
Fay;Fabre;06 11 22 33 44;fay@example.fr;extra
Gus;Girard;06 55 44 33 22;gus@example.fr;;
";
    let store = FakeStore::default();
    let report = import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;

    assert_eq!(report.rows, 7);
    assert_eq!(report.inserted, 3, "{:?}", report.rejected);
    assert_eq!(rejected_lines(&report), vec![3, 4, 6, 7]);

    let bob = &report.rejected[0];
    assert_eq!(bob.column.as_deref(), Some("Téléphone"));
    assert_eq!(bob.value.as_deref(), Some("12"));
    assert!(
        bob.reason.starts_with("invalid phone number for region FR"),
        "{}",
        bob.reason
    );
    assert!(
        bob.reason.ends_with("no other valid contact point"),
        "{}",
        bob.reason
    );

    let cy = &report.rejected[1];
    assert_eq!(cy.column.as_deref(), Some("Email"));
    assert_eq!(cy.value.as_deref(), Some("cy@@example"));

    assert!(
        report.rejected[2]
            .reason
            .contains("has 3 fields but the header has 4"),
        "{:?}",
        report.rejected[2]
    );
    assert!(
        report.rejected[3]
            .reason
            .contains("has 5 fields but the header has 4"),
        "{:?}",
        report.rejected[3]
    );

    // Ann keeps her e-mail and her bad phone is a warning; Dee keeps her phone.
    let warnings: Vec<(u64, Option<&str>)> = report
        .warnings
        .iter()
        .map(|warning| (warning.line, warning.column.as_deref()))
        .collect();
    assert_eq!(warnings, vec![(2, Some("Téléphone")), (5, Some("Email"))]);
    let ann = store.find_email("ann@example.fr");
    assert_eq!(ann.phone, None);
    assert!(
        store
            .prospects()
            .iter()
            .any(|prospect| phone(prospect) == Some("+33612345678"))
    );

    // The rejections file lists both kinds in line order.
    let mut output = Vec::new();
    report.write_rejections_csv(&mut output).unwrap();
    let written = String::from_utf8(output).unwrap();
    let kinds: Vec<&str> = written
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "warning", "rejected", "rejected", "warning", "rejected", "rejected"
        ]
    );
}

#[tokio::test]
async fn debug_of_report_hides_values() {
    let text = "Email;Téléphone\nsecret.person@;06 12 34 56 78\n";
    let report = import(
        &FakeStore::default(),
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.warnings.len(), 1);
    let debug = format!("{report:?}");
    assert!(!debug.contains("secret.person"), "{debug}");
}

#[tokio::test]
async fn duplicates_in_file_merge() {
    let text = "\
Prénom;Nom;Mobile;Email;Société
Ann;Arnaud;06 12 34 56 78;;
;;+33 6 12 34 56 78;ann@example.fr;Acme
Ann;Arnaud;;ANN@example.fr;Other
Bob;Bernard;0698765432;bob@example.fr;
";
    let store = FakeStore::default();
    let report = import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.inserted, 2);
    assert_eq!(report.duplicates, 2);
    let prospects = store.prospects();
    assert_eq!(prospects.len(), 2);
    let ann = prospects
        .iter()
        .find(|prospect| prospect.first_name.as_deref() == Some("Ann"))
        .unwrap();
    assert_eq!(
        ann.email.as_ref().map(EmailAddress::as_str),
        Some("ann@example.fr")
    );
    assert_eq!(ann.company.as_deref(), Some("Acme"));
}

#[tokio::test]
async fn duplicates_across_batches_merge() {
    let text = "\
Prénom;Mobile;Email
Ann;06 12 34 56 78;
Bob;06 98 76 54 32;
Cy;06 11 22 33 44;
;06 12 34 56 78;ann@example.fr
";
    let store = FakeStore::default();
    let options = ImportOptions::default().with_batch_size(2);
    let report = import(&store, OrgId::new(), text.as_bytes(), &options).await;
    assert_eq!(report.inserted, 3);
    assert_eq!(report.duplicates, 1);
    assert_eq!(store.insert_calls(), vec![2, 1]);
    assert_eq!(
        store.find_email("ann@example.fr").first_name.as_deref(),
        Some("Ann")
    );
}

#[tokio::test]
async fn reimport_creates_nothing_new() {
    let text = "Prénom;Nom;Téléphone;Email;Tags\nAnn;Arnaud;0612345678;ann@example.fr;vip\nBob;Bernard;;bob@example.fr;\n";
    let store = FakeStore::default();
    let org = OrgId::new();
    let options = ImportOptions::default().with_source("salon-2026");
    let first = import(&store, org, text.as_bytes(), &options).await;
    assert_eq!(first.inserted, 2);
    let before = store.prospects();

    let second = import(&store, org, text.as_bytes(), &options).await;
    assert_eq!(second.inserted, 0);
    assert_eq!(second.updated, 0);
    assert_eq!(second.unchanged, 2);
    assert_eq!(store.prospects(), before);

    let overwrite = options.clone().with_merge_policy(MergePolicy::Overwrite);
    let third = import(&store, org, text.as_bytes(), &overwrite).await;
    assert_eq!(third.inserted + third.updated, 0);
    assert_eq!(store.prospects(), before);

    // Rows imported into another org match none of these prospects.
    let other = import(&store, OrgId::new(), text.as_bytes(), &options).await;
    assert_eq!(other.inserted, 2);
    assert!(
        before
            .iter()
            .all(|prospect| prospect.source.as_deref() == Some("salon-2026"))
    );
}

#[tokio::test]
async fn merge_policies_against_the_store() {
    let org = OrgId::new();
    let original = "Prénom;Nom;Email\nAnn;;ann@example.fr\n";
    let update = "Prénom;Nom;Email;Poste\nAnnie;Arnaud;ann@example.fr;CEO\n";

    let store = FakeStore::default();
    import(&store, org, original.as_bytes(), &ImportOptions::default()).await;
    let skip = ImportOptions::default().with_merge_policy(MergePolicy::Skip);
    let report = import(&store, org, update.as_bytes(), &skip).await;
    assert_eq!(report.unchanged, 1);
    assert_eq!(store.find_email("ann@example.fr").last_name, None);

    let report = import(&store, org, update.as_bytes(), &ImportOptions::default()).await;
    assert_eq!(report.updated, 1);
    let ann = store.find_email("ann@example.fr");
    assert_eq!(ann.first_name.as_deref(), Some("Ann"));
    assert_eq!(ann.last_name.as_deref(), Some("Arnaud"));
    assert_eq!(ann.job_title.as_deref(), Some("CEO"));
    assert_eq!(ann.version, Version(1));

    let overwrite = ImportOptions::default().with_merge_policy(MergePolicy::Overwrite);
    let report = import(&store, org, update.as_bytes(), &overwrite).await;
    assert_eq!(report.updated, 1);
    assert_eq!(
        store.find_email("ann@example.fr").first_name.as_deref(),
        Some("Annie")
    );
}

#[tokio::test]
async fn rows_of_one_chunk_see_each_others_updates() {
    let org = OrgId::new();
    let store = FakeStore::default();
    import(
        &store,
        org,
        "Email;Mobile\nann@example.fr;06 12 34 56 78\n".as_bytes(),
        &ImportOptions::default(),
    )
    .await;

    // Both rows match the stored prospect, the first by address, the second
    // by phone. The second must be merged into the version the first wrote.
    let update = "Email;Mobile;Société;Poste\nann@example.fr;;Acme;\n;+33 6 12 34 56 78;;CEO\n";
    let report = import(&store, org, update.as_bytes(), &ImportOptions::default()).await;
    assert_eq!(report.rejected_total, 0, "{:?}", report.rejected);
    assert_eq!(report.updated, 1);
    assert_eq!(report.duplicates, 1);
    let ann = store.find_email("ann@example.fr");
    assert_eq!(ann.company.as_deref(), Some("Acme"));
    assert_eq!(ann.job_title.as_deref(), Some("CEO"));
    assert_eq!(ann.version, Version(2));
}

#[tokio::test]
async fn lookups_are_batched_per_chunk() {
    let store = FakeStore::default();
    let options = ImportOptions::default().with_batch_size(1000);
    let report = import(&store, OrgId::new(), &generated_bytes(2500), &options).await;
    assert_eq!(report.inserted, 2500);
    assert_eq!(
        store.state.lock().unwrap().batch_lookups,
        3,
        "one lookup per chunk of 1000 rows"
    );
    assert_eq!(store.insert_calls(), vec![1000, 1000, 500]);
}

#[tokio::test]
async fn overwrite_frees_the_old_phone_within_a_chunk() {
    let org = OrgId::new();
    let store = FakeStore::default();
    import(
        &store,
        org,
        "Email;Mobile\nann@example.fr;06 12 34 56 78\n".as_bytes(),
        &ImportOptions::default(),
    )
    .await;

    // The first row moves Ann to a new phone. The old phone then belongs to
    // no prospect, so the second row creates one.
    let update = "Email;Mobile\nann@example.fr;06 98 76 54 32\nbob@example.fr;06 12 34 56 78\n";
    let overwrite = ImportOptions::default().with_merge_policy(MergePolicy::Overwrite);
    let report = import(&store, org, update.as_bytes(), &overwrite).await;
    assert_eq!(report.updated, 1);
    assert_eq!(report.inserted, 1, "{report:?}");
    assert_eq!(
        phone(&store.find_email("ann@example.fr")),
        Some("+33698765432")
    );
    assert_eq!(
        phone(&store.find_email("bob@example.fr")),
        Some("+33612345678")
    );
}

#[tokio::test]
async fn invalid_contact_rejects_row_when_asked() {
    let text = "\
Email;Téléphone
ok@example.fr;06 12 34 56 78
bad@;06 98 76 54 32
Jean Dupont@example.fr;06 11 22 33 44
nophone@example.fr;n/a
list@example.fr;06 55 44 33 22 / 01 45 04 89 55
";
    let store = FakeStore::default();
    let strict = ImportOptions::default().with_invalid_contact(InvalidContact::RejectRow);
    let report = import(&store, OrgId::new(), text.as_bytes(), &strict).await;
    assert_eq!(report.inserted, 1, "{:?}", report.rejected);
    assert_eq!(rejected_lines(&report), vec![3, 4, 5, 6]);
    assert_eq!(report.rejected[0].column.as_deref(), Some("Email"));
    assert_eq!(report.rejected[2].column.as_deref(), Some("Téléphone"));

    let lenient = FakeStore::default();
    let report = import(
        &lenient,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(
        report.inserted, 5,
        "by default a bad cell is dropped and the row kept"
    );
    // Lenient reading finds an address in "Jean Dupont@example.fr" and the
    // first number of the list, so only "bad@" and "n/a" are reported.
    assert_eq!(report.warnings_total, 2);
}

#[tokio::test]
async fn per_channel_consent_columns() {
    let text = "\
Email;Mobile;consent_sms;consent_sms_date;consent_sms_source;consent_sms_version;consent_email;consent_email_date;consent_source
a@example.fr;06 12 34 56 78;yes;2026-02-02T10:15:30.250Z;'=web form;v3;yes;2026-02-05;salon
b@example.fr;06 98 76 54 32;yes;;;;no;;
";
    let store = FakeStore::default();
    let report = import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.inserted, 2);

    let a = store.find_email("a@example.fr");
    assert_eq!(a.consents.len(), 2);
    let sms = a
        .consents
        .iter()
        .find(|consent| consent.channel == ChannelKind::Sms)
        .unwrap();
    assert_eq!(
        sms.collected_at,
        Utc.with_ymd_and_hms(2026, 2, 2, 10, 15, 30).unwrap() + chrono::Duration::milliseconds(250)
    );
    assert_eq!(sms.source, "=web form");
    assert_eq!(sms.wording_version.as_deref(), Some("v3"));
    let email = a
        .consents
        .iter()
        .find(|consent| consent.channel == ChannelKind::Email)
        .unwrap();
    assert_eq!(
        email.collected_at,
        Utc.with_ymd_and_hms(2026, 2, 5, 0, 0, 0).unwrap()
    );
    assert_eq!(
        email.source, "salon",
        "the shared source column applies where no per-channel one is given"
    );
    assert_eq!(email.wording_version, None);

    let b = store.find_email("b@example.fr");
    assert_eq!(b.consents.len(), 1);
    assert_eq!(b.consents[0].collected_at, now());
    assert_eq!(b.consents[0].source, "csv import");
}

#[tokio::test]
async fn update_conflict_rejects_the_row() {
    let org = OrgId::new();
    let store = FakeStore::default();
    import(
        &store,
        org,
        b"Email\nann@example.fr\n",
        &ImportOptions::default(),
    )
    .await;
    store.state.lock().unwrap().conflict_on_update = true;
    let report = import(
        &store,
        org,
        "Email;Prénom\nann@example.fr;Ann\n".as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.updated, 0);
    assert_eq!(rejected_lines(&report), vec![2]);
    assert!(
        report.rejected[0]
            .reason
            .contains("changed while the file was imported")
    );
}

#[tokio::test]
async fn contact_of_another_prospect_is_not_moved() {
    let org = OrgId::new();
    let store = FakeStore::default();
    import(
        &store,
        org,
        b"Email;Mobile\nann@example.fr;\nbob@example.fr;0612345678\n",
        &ImportOptions::default(),
    )
    .await;
    let report = import(
        &store,
        org,
        b"Email;Mobile\nann@example.fr;0612345678\n",
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.updated + report.unchanged, 1);
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings[0].column.as_deref(), Some("Mobile"));
    assert_eq!(store.find_email("ann@example.fr").phone, None);
    assert_eq!(
        phone(&store.find_email("bob@example.fr")),
        Some("+33612345678")
    );
}

#[tokio::test]
async fn suppressed_contacts_are_not_imported() {
    let org = OrgId::new();
    let store = FakeStore::default();
    store.suppress_now(
        org,
        ContactPoint::Phone(PhoneNumber::parse("0612345678", Region::FR).unwrap()),
    );
    let text = "Email;Mobile\nann@example.fr;06 12 34 56 78\nbob@example.fr;\n";
    let report = import(&store, org, text.as_bytes(), &ImportOptions::default()).await;
    assert_eq!(report.suppressed, 1);
    assert_eq!(report.inserted, 1);
    assert!(
        store
            .prospects()
            .iter()
            .all(|prospect| prospect.email.as_ref().unwrap().as_str() == "bob@example.fr")
    );
}

#[tokio::test]
async fn opt_out_columns_suppress() {
    let org = OrgId::new();
    let store = FakeStore::default();
    let text = "\
Email;Mobile;Unsubscribed from all email;Opt-out SMS
ann@example.fr;06 12 34 56 78;true;
bob@example.fr;06 98 76 54 32;false;non
cy@example.fr;;;oui
";
    let report = import(&store, org, text.as_bytes(), &ImportOptions::default()).await;
    assert_eq!(report.suppressed, 2);
    assert_eq!(report.inserted, 1);
    let suppressed: Vec<String> = store
        .suppressions()
        .iter()
        .map(|entry| entry.contact.key().to_owned())
        .collect();
    assert_eq!(suppressed, vec!["ann@example.fr"]);

    // Ann stays suppressed when a later file has no opt-out column.
    let report = import(
        &store,
        org,
        b"Email\nann@example.fr\n",
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.suppressed, 1);
    assert_eq!(report.inserted, 0);
}

#[tokio::test]
async fn full_names_are_split() {
    let text = "Nom,Email\nAlice Dupont,alice@example.fr\nDUPONT Jean Pierre,jp@example.fr\n\"Martin, Léa\",lea@example.fr\n";
    let store = FakeStore::default();
    let report = import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.inserted, 3);
    assert_eq!(report.columns[0].field, Field::FullName);
    let names = |email: &str| {
        let prospect = store.find_email(email);
        (prospect.first_name, prospect.last_name)
    };
    assert_eq!(
        names("alice@example.fr"),
        (Some("Alice".into()), Some("Dupont".into()))
    );
    assert_eq!(
        names("jp@example.fr"),
        (Some("Jean Pierre".into()), Some("DUPONT".into()))
    );
    assert_eq!(
        names("lea@example.fr"),
        (Some("Léa".into()), Some("Martin".into()))
    );
}

#[tokio::test]
async fn names_are_trimmed_and_normalised() {
    let text = "Prénom;Nom;Email\n  Jean   Pierre ;Rene\u{301}e;jp@example.fr\n";
    let store = FakeStore::default();
    import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    let prospect = store.find_email("jp@example.fr");
    assert_eq!(prospect.first_name.as_deref(), Some("Jean Pierre"));
    assert_eq!(prospect.last_name.as_deref(), Some("Ren\u{e9}e"));
}

#[tokio::test]
async fn country_column_sets_phone_region() {
    let text = "\
Email;Portable;Pays
be@example.fr;0470 12 34 56;Belgique
ch@example.fr;079 123 45 67;CH
us@example.fr;(415) 555-2671;United States
fr@example.fr;06 12 34 56 78;
xx@example.fr;06 12 34 56 79;Atlantis
";
    let store = FakeStore::default();
    let report = import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.inserted, 5, "{:?}", report.rejected);
    assert_eq!(
        phone(&store.find_email("be@example.fr")),
        Some("+32470123456")
    );
    assert_eq!(
        phone(&store.find_email("ch@example.fr")),
        Some("+41791234567")
    );
    assert_eq!(
        phone(&store.find_email("us@example.fr")),
        Some("+14155552671")
    );
    assert_eq!(
        phone(&store.find_email("fr@example.fr")),
        Some("+33612345678")
    );
    assert_eq!(
        phone(&store.find_email("xx@example.fr")),
        Some("+33612345679")
    );
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings[0].line, 6);
    assert!(report.warnings[0].reason.starts_with("unknown country"));
    let belgian = store.find_email("be@example.fr");
    assert_eq!(
        belgian.custom_fields.get("Pays"),
        Some(&CustomValue::Text("Belgique".into()))
    );
}

#[tokio::test]
async fn mobile_is_preferred_over_landline() {
    let text = "Téléphone;Email;Téléphone mobile;Fixe\n01 45 04 89 55;a@example.fr;06 12 34 56 78;01 45 04 89 56\n01 45 04 89 57;b@example.fr;;\n";
    let store = FakeStore::default();
    import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(
        phone(&store.find_email("a@example.fr")),
        Some("+33612345678")
    );
    assert_eq!(
        phone(&store.find_email("b@example.fr")),
        Some("+33145048957")
    );
}

#[tokio::test]
async fn custom_fields_typed_by_mapping() {
    let mapping = Mapping::from_json_str(
        r#"{
            "columns": {"Portable perso": "mobile", "Réf interne": "ignore"},
            "custom_fields": {"Budget": "number", "Client": "bool", "Date RDV": "date"}
        }"#,
    )
    .unwrap();
    let options = ImportOptions::default().with_mapping(mapping);
    let text = "\
Portable perso;Budget;Client;Date RDV;Réf interne;Secteur
06 12 34 56 78;12 400,50 €;oui;6 janvier 2026;R-1;BTP
06 98 76 54 32;beaucoup;non;;R-2;
06 11 22 33 44;1000;peut-être;;R-3;
06 55 44 33 22;;;31/02/2026;R-4;
06 55 44 33 23;;;;;
";
    let store = FakeStore::default();
    let report = import(&store, OrgId::new(), text.as_bytes(), &options).await;
    assert_eq!(report.inserted, 2, "{:?}", report.rejected);
    let columns: Vec<Option<&str>> = report
        .rejected
        .iter()
        .map(|entry| entry.column.as_deref())
        .collect();
    assert_eq!(
        columns,
        vec![Some("Budget"), Some("Client"), Some("Date RDV")]
    );
    assert_eq!(rejected_lines(&report), vec![3, 4, 5]);
    assert!(
        report.rejected[0]
            .reason
            .contains("custom field \"Budget\""),
        "{}",
        report.rejected[0].reason
    );

    let first = store
        .prospects()
        .into_iter()
        .find(|prospect| phone(prospect) == Some("+33612345678"))
        .unwrap();
    assert_eq!(
        first.custom_fields.get("Budget"),
        Some(&CustomValue::Number(12400.5))
    );
    assert_eq!(
        first.custom_fields.get("Client"),
        Some(&CustomValue::Bool(true))
    );
    assert_eq!(
        first.custom_fields.get("Date RDV"),
        Some(&CustomValue::Date(
            NaiveDate::from_ymd_opt(2026, 1, 6).unwrap()
        ))
    );
    assert_eq!(
        first.custom_fields.get("Secteur"),
        Some(&CustomValue::Text("BTP".into()))
    );
    assert!(!first.custom_fields.contains_key("Réf interne"));

    let mapping = Mapping::default().with_custom_field("budget", CustomType::Number);
    let options = ImportOptions::default()
        .with_mapping(mapping)
        .with_default_locale(Locale::En);
    let store = FakeStore::default();
    import(
        &store,
        OrgId::new(),
        b"Email,BUDGET\na@example.com,\"42,000\"\n",
        &options,
    )
    .await;
    assert_eq!(
        store.prospects()[0].custom_fields.get("budget"),
        Some(&CustomValue::Number(42000.0))
    );
}

#[tokio::test]
async fn consent_columns_become_records() {
    let text = "\
Email;Mobile;Opt-in SMS;Consentement email;consent_date;consent_source
a@example.fr;06 12 34 56 78;oui;non;2025-11-03;formulaire salon
b@example.fr;06 98 76 54 32;non;oui;;
c@example.fr;;oui;;pas une date;
";
    let store = FakeStore::default();
    let report = import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default().with_source("import-mars"),
    )
    .await;
    assert_eq!(report.inserted, 3);

    let a = store.find_email("a@example.fr");
    assert_eq!(a.consents.len(), 1);
    assert_eq!(a.consents[0].channel, ChannelKind::Sms);
    assert_eq!(a.consents[0].basis, ConsentBasis::Consent);
    assert_eq!(a.consents[0].source, "formulaire salon");
    assert_eq!(
        a.consents[0].collected_at,
        Utc.with_ymd_and_hms(2025, 11, 3, 0, 0, 0).unwrap()
    );

    let b = store.find_email("b@example.fr");
    assert_eq!(b.consents.len(), 1);
    assert_eq!(b.consents[0].channel, ChannelKind::Email);
    assert_eq!(b.consents[0].source, "import-mars");
    assert_eq!(b.consents[0].collected_at, now());

    // SMS consent without a phone records nothing; the bad date is not used.
    let c = store.find_email("c@example.fr");
    assert!(c.consents.is_empty());
}

#[tokio::test]
async fn locale_time_zone_tags_and_psid() {
    let text = "\
PSID;Langue;Fuseau horaire;Tags;Source
1234567890;English;America/New_York;salon, vip | chaud;LinkedIn
1234567891;klingon;Mars/Olympus;;
";
    let store = FakeStore::default();
    let report = import(
        &store,
        OrgId::new(),
        text.as_bytes(),
        &ImportOptions::default(),
    )
    .await;
    assert_eq!(report.inserted, 2);
    let prospects = store.prospects();
    let first = prospects
        .iter()
        .find(|prospect| prospect.messenger.as_ref().unwrap().as_str() == "1234567890")
        .unwrap();
    assert_eq!(first.locale, Locale::En);
    assert_eq!(first.time_zone, Some(chrono_tz::America::New_York));
    assert_eq!(first.tags, vec!["salon", "vip", "chaud"]);
    assert_eq!(first.source.as_deref(), Some("LinkedIn"));
    let second = prospects
        .iter()
        .find(|prospect| prospect.id != first.id)
        .unwrap();
    assert_eq!(second.locale, Locale::Fr);
    assert_eq!(second.time_zone, None);
    let columns: Vec<Option<&str>> = report
        .warnings
        .iter()
        .map(|warning| warning.column.as_deref())
        .collect();
    assert_eq!(columns, vec![Some("Langue"), Some("Fuseau horaire")]);
}

// ---------------------------------------------------------------------------
// Whole-file errors.

#[tokio::test]
async fn empty_file_is_invalid_input() {
    for bytes in [&b""[..], b"\xef\xbb\xbf", b"\n\r\n  \n"] {
        let error = import_error(bytes).await;
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        assert_eq!(error.message(), "the file is empty");
    }
}

#[tokio::test]
async fn missing_header_is_reported() {
    let error = import_error(b"Jean;Dupont;06 12 34 56 78;jean@example.fr\n").await;
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(
        error.message().starts_with("the file has no header line"),
        "{error}"
    );
    assert!(!error.message().contains("jean@example.fr"), "{error}");
}

#[tokio::test]
async fn header_without_contact_column_lists_names() {
    let error = import_error("Prénom;Nom;Intérêts\nJean;Dupont;golf\n".as_bytes()).await;
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let message = error.message();
    assert!(
        message.contains("\"Prénom\", \"Nom\", \"Intérêts\""),
        "{message}"
    );
    assert!(message.contains("Téléphone"), "{message}");
    assert!(message.contains("Email"), "{message}");
}

#[tokio::test]
async fn unclosed_quote_stops_with_its_line() {
    let mut text = String::from("Email;Notes\na@example.fr;ok\nb@example.fr;\"never closed\n");
    let filler = "x".repeat(100) + "\n";
    while text.len() < 1_300_000 {
        text.push_str(&filler);
    }
    let error = import_error(text.as_bytes()).await;
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.message().contains("starting on line 3"), "{error}");
}

#[tokio::test]
async fn workbook_is_rejected() {
    let error = import_error(b"PK\x03\x04\x14\x00\x06\x00rest").await;
    assert!(error.message().contains("spreadsheet workbook"), "{error}");
}

#[tokio::test]
async fn invalid_delimiter_option() {
    let options = ImportOptions::default().with_delimiter(b'"');
    let error = import_prospects(
        &FakeStore::default(),
        OrgId::new(),
        &b"Email\n"[..],
        &options,
        now(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn late_invalid_utf8_warns() {
    let mut bytes = "Prénom;Email\n".as_bytes().to_vec();
    for index in 0..7000 {
        bytes.extend_from_slice(format!("Ann;a{index}@example.fr\n").as_bytes());
    }
    let broken_line = 7000 + 2;
    bytes.extend_from_slice(b"Andr\xe9;andre@example.fr\n");
    let store = FakeStore::default();
    let report = import(&store, OrgId::new(), &bytes, &ImportOptions::default()).await;
    assert_eq!(report.encoding, "UTF-8");
    assert_eq!(report.inserted, 7001);
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(report.warnings[0].line, broken_line);
    assert_eq!(report.warnings[0].column.as_deref(), Some("Prénom"));
}

// ---------------------------------------------------------------------------
// Streaming.

/// Generates a CSV file of `rows` distinct prospects without holding it.
/// Each row is about 220 bytes, most of it a notes cell.
struct GeneratedCsv {
    next_row: usize,
    rows: usize,
    pending: Vec<u8>,
    position: usize,
}

impl GeneratedCsv {
    fn new(rows: usize) -> Self {
        GeneratedCsv {
            next_row: 0,
            rows,
            pending: "Prénom;Nom;Mobile;Email;Notes\n".as_bytes().to_vec(),
            position: 0,
        }
    }
}

impl Read for GeneratedCsv {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.position == self.pending.len() {
            if self.next_row == self.rows {
                return Ok(0);
            }
            let index = self.next_row;
            self.next_row += 1;
            let notes = "n".repeat(160);
            self.pending = format!(
                "Prénom{index};Nom{index};+336{index:08};user{index}@example.com;{notes}\n"
            )
            .into_bytes();
            self.position = 0;
        }
        let count = buf.len().min(self.pending.len() - self.position);
        buf[..count].copy_from_slice(&self.pending[self.position..self.position + count]);
        self.position += count;
        Ok(count)
    }
}

/// Returns the bytes of a generated file of `rows` distinct prospects.
fn generated_bytes(rows: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    GeneratedCsv::new(rows).read_to_end(&mut bytes).unwrap();
    bytes
}

#[tokio::test]
async fn generated_file_is_read_in_batches() {
    let store = FakeStore::default();
    let rows = 25_000;
    let report = import_prospects(
        &store,
        OrgId::new(),
        GeneratedCsv::new(rows),
        &ImportOptions::default(),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(report.inserted, rows);
    let calls = store.insert_calls();
    assert_eq!(calls.len(), 25);
    assert!(calls.iter().all(|size| *size == 1000));
}

/// A store that counts writes and keeps nothing, to measure the importer's own memory.
#[derive(Debug, Default)]
struct CountingStore {
    inserted: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Store for CountingStore {
    async fn insert_prospects(&self, prospects: &[Prospect]) -> Result<()> {
        self.inserted
            .fetch_add(prospects.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
    async fn get_prospect(&self, _org: OrgId, _id: ProspectId) -> Result<Prospect> {
        Err(unsupported("get_prospect"))
    }
    async fn update_prospect(&self, _prospect: &Prospect) -> Result<Version> {
        Err(unsupported("update_prospect"))
    }
    async fn find_prospect(
        &self,
        _org: OrgId,
        _contact: &ContactPoint,
    ) -> Result<Option<Prospect>> {
        Ok(None)
    }
    async fn list_prospects(&self, _org: OrgId, _options: ListOptions) -> Result<Vec<Prospect>> {
        Err(unsupported("list_prospects"))
    }
    async fn put_campaign(&self, _campaign: &Campaign) -> Result<()> {
        Err(unsupported("put_campaign"))
    }
    async fn get_campaign(&self, _org: OrgId, _id: CampaignId) -> Result<Campaign> {
        Err(unsupported("get_campaign"))
    }
    async fn insert_conversation(
        &self,
        _conversation: &Conversation,
        _jobs: &[Job],
    ) -> Result<bool> {
        Err(unsupported("insert_conversation"))
    }
    async fn get_conversation(&self, _org: OrgId, _id: ConversationId) -> Result<Conversation> {
        Err(unsupported("get_conversation"))
    }
    async fn conversations_of(
        &self,
        _org: OrgId,
        _prospect: ProspectId,
    ) -> Result<Vec<Conversation>> {
        Err(unsupported("conversations_of"))
    }
    async fn list_messages(
        &self,
        _org: OrgId,
        _conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        Err(unsupported("list_messages"))
    }
    async fn insert_inbound(&self, _message: &Message) -> Result<InsertOutcome> {
        Err(unsupported("insert_inbound"))
    }
    async fn pending_inbound(
        &self,
        _org: OrgId,
        _conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        Err(unsupported("pending_inbound"))
    }
    async fn commit_turn(&self, _turn: &TurnCommit) -> Result<Version> {
        Err(unsupported("commit_turn"))
    }
    async fn claim_jobs(
        &self,
        _now: Timestamp,
        _limit: usize,
        _lease: Duration,
        _worker: &str,
    ) -> Result<Vec<Job>> {
        Err(unsupported("claim_jobs"))
    }
    async fn finish_job(&self, _org: OrgId, _job: JobId, _outcome: JobOutcome) -> Result<()> {
        Err(unsupported("finish_job"))
    }
    async fn claim_outbox(
        &self,
        _now: Timestamp,
        _limit: usize,
        _lease: Duration,
        _worker: &str,
    ) -> Result<Vec<OutboxEntry>> {
        Err(unsupported("claim_outbox"))
    }
    async fn finish_outbox(
        &self,
        _org: OrgId,
        _entry: OutboxId,
        _outcome: OutboxOutcome,
    ) -> Result<()> {
        Err(unsupported("finish_outbox"))
    }
    async fn pending_jobs(&self, _org: OrgId, _conversation: ConversationId) -> Result<Vec<Job>> {
        Err(unsupported("pending_jobs"))
    }
    async fn is_suppressed(&self, _org: OrgId, _contact: &ContactPoint) -> Result<bool> {
        Ok(false)
    }
    async fn suppress(&self, _entries: &[Suppression]) -> Result<()> {
        Err(unsupported("suppress"))
    }
    async fn audit_of(&self, _org: OrgId, _prospect: ProspectId) -> Result<Vec<AuditEvent>> {
        Err(unsupported("audit_of"))
    }
    async fn put_member(&self, _member: &Member) -> Result<()> {
        Err(unsupported("put_member"))
    }
    async fn get_member(&self, _org: OrgId, _id: MemberId) -> Result<Member> {
        Err(unsupported("get_member"))
    }
    async fn list_members(&self, _org: OrgId) -> Result<Vec<Member>> {
        Err(unsupported("list_members"))
    }
}

/// Peak resident memory of this process in KiB, from /proc (Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Imports one million generated rows (about 220 MB) and checks that peak
/// memory grows by less than half the file's size. What grows is the set
/// that detects duplicates, one hash per distinct contact point. Slow in a
/// debug build, so it runs only on request:
/// `cargo test --release --test import -- --ignored`.
#[tokio::test]
#[ignore = "slow: one million rows"]
async fn million_rows_stay_in_bounded_memory() {
    let store = CountingStore::default();
    let before = peak_rss_kib();
    let started = std::time::Instant::now();
    let report = import_prospects(
        &store,
        OrgId::new(),
        GeneratedCsv::new(1_000_000),
        &ImportOptions::default(),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(report.inserted, 1_000_000);
    assert_eq!(
        store.inserted.load(std::sync::atomic::Ordering::Relaxed),
        1_000_000
    );
    if let (Some(before), Some(after)) = (before, peak_rss_kib()) {
        let grown_mib = (after.saturating_sub(before)) / 1024;
        println!(
            "peak memory grew by {grown_mib} MiB in {:?}",
            started.elapsed()
        );
        assert!(grown_mib < 110, "peak memory grew by {grown_mib} MiB");
    }
}

#[tokio::test]
async fn unclosed_quote_is_reported() {
    // The quote opened on line 3 closes on line 5, so a CSV reader merges
    // three rows into one; the import must say so instead of importing it.
    let merged = b"Name,Email,Phone\nA One,a@example.com,0612345671\n\"B Two,b@example.com,0612345672\nC Three,c@example.com,0612345673\nD Four\",d@example.com,0612345674\nE Five,e@example.com,0612345675\n";
    let store = FakeStore::default();
    let report = import(&store, OrgId::new(), merged, &ImportOptions::default()).await;
    assert_eq!(report.inserted, 2, "{:?}", report.rejected);
    assert_eq!(report.rejected_total, 1);
    assert_eq!(report.rejected[0].line, 3);
    assert!(
        report.rejected[0].reason.contains("never closed"),
        "{}",
        report.rejected[0].reason
    );

    // A quote that never closes runs to the end of the file.
    let open = b"Name,Email,Phone\nA One,a@example.com,0612345671\n\"B Two,b@example.com,0612345672\nC Three,c@example.com,0612345673\n";
    let store = FakeStore::default();
    let report = import(&store, OrgId::new(), open, &ImportOptions::default()).await;
    assert_eq!(report.inserted, 1);
    assert_eq!(report.rejected_total, 1);
    assert_eq!(report.rejected[0].line, 3);
}

//! Integration tests of the CSV and JSON Lines prospect export, and of the
//! round trip through the CSV import, against an in-memory store.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail by panicking"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{NaiveDate, TimeZone, Utc};
use kalify_core::campaign::Campaign;
use kalify_core::contact::{ChannelKind, ContactPoint, EmailAddress, MessengerPsid, PhoneNumber};
use kalify_core::conversation::{Conversation, Message};
use kalify_core::export::{ExportOptions, ExportReport, export_csv, export_jsonl};
use kalify_core::import::{CustomType, ImportOptions, import_prospects};
use kalify_core::ports::{
    AuditEvent, InsertOutcome, Job, JobOutcome, ListOptions, Member, OutboxEntry, OutboxOutcome,
    Store, Suppression, TurnCommit,
};
use kalify_core::prospect::{Consent, ConsentBasis, CustomValue, Locale, Prospect, Version};
use kalify_core::{
    CampaignId, ConversationId, Error, ErrorKind, JobId, MemberId, OrgId, OutboxId, ProspectId,
    Result, Timestamp,
};

// ---------------------------------------------------------------------------
// A store that keeps prospects in memory and supports what the export and
// the import call.

#[derive(Debug, Default)]
struct FakeStore {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    prospects: BTreeMap<(OrgId, ProspectId), Prospect>,
    suppressed: Vec<Suppression>,
    /// The `limit` of every `list_prospects` call.
    list_calls: Vec<usize>,
}

fn unsupported(operation: &'static str) -> Error {
    Error::new(ErrorKind::Unsupported, "not supported by the fake store").with_operation(operation)
}

impl FakeStore {
    fn prospects(&self, org: OrgId) -> Vec<Prospect> {
        let state = self.state.lock().unwrap();
        state
            .prospects
            .values()
            .filter(|prospect| prospect.org_id == org)
            .cloned()
            .collect()
    }

    fn list_calls(&self) -> Vec<usize> {
        self.state.lock().unwrap().list_calls.clone()
    }
}

#[async_trait]
impl Store for FakeStore {
    async fn insert_prospects(&self, prospects: &[Prospect]) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        if prospects.iter().any(|prospect| {
            state
                .prospects
                .contains_key(&(prospect.org_id, prospect.id))
        }) {
            return Err(Error::conflict("prospect id exists"));
        }
        for prospect in prospects {
            state
                .prospects
                .insert((prospect.org_id, prospect.id), prospect.clone());
        }
        Ok(())
    }

    async fn get_prospect(&self, org: OrgId, id: ProspectId) -> Result<Prospect> {
        let state = self.state.lock().unwrap();
        state
            .prospects
            .get(&(org, id))
            .cloned()
            .ok_or_else(|| Error::not_found("prospect not found"))
    }

    async fn update_prospect(&self, prospect: &Prospect) -> Result<Version> {
        let mut state = self.state.lock().unwrap();
        let key = (prospect.org_id, prospect.id);
        let stored = state
            .prospects
            .get(&key)
            .ok_or_else(|| Error::not_found("prospect not found"))?;
        if stored.version != prospect.version {
            return Err(Error::conflict("version differs"));
        }
        let mut updated = prospect.clone();
        updated.version = prospect.version.next();
        state.prospects.insert(key, updated.clone());
        Ok(updated.version)
    }

    async fn find_prospect(&self, org: OrgId, contact: &ContactPoint) -> Result<Option<Prospect>> {
        let state = self.state.lock().unwrap();
        Ok(state
            .prospects
            .values()
            .find(|prospect| prospect.org_id == org && prospect.contact_points().contains(contact))
            .cloned())
    }

    async fn list_prospects(&self, org: OrgId, options: ListOptions) -> Result<Vec<Prospect>> {
        let mut state = self.state.lock().unwrap();
        state.list_calls.push(options.limit);
        let limit = if options.limit == 0 {
            usize::MAX
        } else {
            options.limit
        };
        Ok(state
            .prospects
            .values()
            .filter(|prospect| {
                prospect.org_id == org && options.after.is_none_or(|after| prospect.id > after)
            })
            .take(limit)
            .cloned()
            .collect())
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
        self.state
            .lock()
            .unwrap()
            .suppressed
            .extend_from_slice(entries);
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
// Sample prospects.

fn at(day: u32, hour: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 2, day, hour, 15, 30).unwrap() + chrono::Duration::milliseconds(250)
}

fn consent(
    channel: ChannelKind,
    collected_at: Timestamp,
    source: &str,
    version: Option<&str>,
) -> Consent {
    Consent {
        channel,
        basis: ConsentBasis::Consent,
        collected_at,
        source: source.to_owned(),
        wording_version: version.map(str::to_owned),
        withdrawn_at: None,
    }
}

/// Prospects that use every field the CSV carries, including values a
/// spreadsheet would read as formulas.
fn sample_prospects(org: OrgId) -> Vec<Prospect> {
    let mut camille = Prospect::new(org, at(1, 9));
    camille.first_name = Some("Camille".into());
    camille.last_name = Some("Lefèvre".into());
    camille.company = Some("Durand, Fils & Cie".into());
    camille.job_title = Some("Directrice \"commerciale\"".into());
    camille.phone = Some(PhoneNumber::from_e164("+33612345678").unwrap());
    camille.email = Some(EmailAddress::parse("camille.lefevre@example.fr").unwrap());
    camille.locale = Locale::Fr;
    camille.time_zone = Some(chrono_tz::Europe::Paris);
    camille.source = Some("salon-2026".into());
    camille.tags = vec!["salon".into(), "vip client".into()];
    camille.custom_fields = BTreeMap::from([
        ("Budget".to_owned(), CustomValue::Number(12400.5)),
        ("Écart".to_owned(), CustomValue::Number(-12.0)),
        ("Client".to_owned(), CustomValue::Bool(true)),
        (
            "Date RDV".to_owned(),
            CustomValue::Date(NaiveDate::from_ymd_opt(2026, 3, 14).unwrap()),
        ),
        (
            "Notes".to_owned(),
            CustomValue::Text("Rappeler après 14h,\nvoir avec Marie".into()),
        ),
    ]);
    camille.consents = vec![
        consent(ChannelKind::Sms, at(2, 10), "formulaire site", Some("v3")),
        consent(ChannelKind::Email, at(5, 16), "salon 2026", None),
    ];

    let mut john = Prospect::new(org, at(1, 10));
    john.first_name = Some("John".into());
    john.last_name = Some("O'Brien".into());
    john.company = Some("=HYPERLINK(\"http://example.com\",\"Acme\")".into());
    john.phone = Some(PhoneNumber::from_e164("+14155550134").unwrap());
    john.locale = Locale::En;
    john.time_zone = Some(chrono_tz::America::Los_Angeles);
    john.source = Some("+linkedin".into());
    john.custom_fields = BTreeMap::from([
        ("Budget".to_owned(), CustomValue::Number(50000.0)),
        (
            "Notes".to_owned(),
            CustomValue::Text("@channel -- call back".into()),
        ),
    ]);
    john.consents = vec![consent(ChannelKind::Sms, at(3, 8), "web form", Some("v2"))];

    let mut lea = Prospect::new(org, at(1, 11));
    lea.email = Some(EmailAddress::parse("lea@example.com").unwrap());
    lea.messenger = Some(MessengerPsid::parse("24680135792468").unwrap());
    lea.locale = Locale::En;
    lea.tags = vec!["newsletter".into()];

    vec![camille, john, lea]
}

async fn seeded(org: OrgId) -> FakeStore {
    let store = FakeStore::default();
    store
        .insert_prospects(&sample_prospects(org))
        .await
        .unwrap();
    store
}

async fn csv_text(
    store: &FakeStore,
    org: OrgId,
    options: &ExportOptions,
) -> (String, ExportReport) {
    let mut output = Vec::new();
    let report = export_csv(store, org, &mut output, options).await.unwrap();
    (String::from_utf8(output).unwrap(), report)
}

fn by_email_or_phone(prospects: Vec<Prospect>) -> HashMap<String, Prospect> {
    prospects
        .into_iter()
        .map(|prospect| {
            let key = prospect
                .email
                .as_ref()
                .map(|email| email.as_str().to_owned())
                .or_else(|| {
                    prospect
                        .phone
                        .as_ref()
                        .map(|phone| phone.as_str().to_owned())
                })
                .unwrap();
            (key, prospect)
        })
        .collect()
}

fn sorted_consents(prospect: &Prospect) -> Vec<Consent> {
    let mut consents = prospect.consents.clone();
    consents.sort_by_key(|consent| consent.channel);
    consents
}

// ---------------------------------------------------------------------------
// CSV.

#[tokio::test]
async fn csv_round_trip_into_fresh_org() {
    let source_org = OrgId::new();
    let store = seeded(source_org).await;
    let (text, report) = csv_text(&store, source_org, &ExportOptions::default()).await;
    assert_eq!(report.prospects, 3);
    assert_eq!(report.skipped_consents, 0);
    assert_eq!(report.skipped_custom_values, 0);

    let target_org = OrgId::new();
    let options = ImportOptions::default().with_mapping(report.mapping());
    let imported = import_prospects(&store, target_org, text.as_bytes(), &options, Utc::now())
        .await
        .unwrap();
    assert_eq!(imported.inserted, 3, "{imported:?}");
    assert_eq!(imported.rejected_total, 0, "{:?}", imported.rejected);
    assert_eq!(imported.warnings_total, 0, "{:?}", imported.warnings);

    let originals = by_email_or_phone(store.prospects(source_org));
    let copies = by_email_or_phone(store.prospects(target_org));
    assert_eq!(copies.len(), originals.len());
    for (key, original) in &originals {
        let copy = &copies[key];
        assert_eq!(copy.first_name, original.first_name, "{key}");
        assert_eq!(copy.last_name, original.last_name, "{key}");
        assert_eq!(copy.company, original.company, "{key}");
        assert_eq!(copy.job_title, original.job_title, "{key}");
        assert_eq!(copy.phone, original.phone, "{key}");
        assert_eq!(copy.email, original.email, "{key}");
        assert_eq!(copy.messenger, original.messenger, "{key}");
        assert_eq!(copy.locale, original.locale, "{key}");
        assert_eq!(copy.time_zone, original.time_zone, "{key}");
        assert_eq!(copy.source, original.source, "{key}");
        assert_eq!(copy.tags, original.tags, "{key}");
        assert_eq!(copy.custom_fields, original.custom_fields, "{key}");
        assert_eq!(sorted_consents(copy), sorted_consents(original), "{key}");
    }
}

#[tokio::test]
async fn csv_mapping_declares_custom_types() {
    let org = OrgId::new();
    let store = seeded(org).await;
    let (_, report) = csv_text(&store, org, &ExportOptions::default()).await;
    let expected = vec![
        ("Budget".to_owned(), CustomType::Number),
        ("Client".to_owned(), CustomType::Bool),
        ("Date RDV".to_owned(), CustomType::Date),
        ("Notes".to_owned(), CustomType::Text),
        ("Écart".to_owned(), CustomType::Number),
    ];
    assert_eq!(report.custom_fields, expected);
    let mapping = report.mapping();
    assert_eq!(
        mapping.custom_fields.get("Date RDV"),
        Some(&CustomType::Date)
    );
    assert!(mapping.columns.is_empty());
}

#[tokio::test]
async fn csv_neutralises_formulas_but_not_phones() {
    let org = OrgId::new();
    let store = seeded(org).await;
    let (text, _) = csv_text(&store, org, &ExportOptions::default()).await;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let column = |name: &str| header.iter().position(|column| column == name).unwrap();
    let john = rows
        .iter()
        .find(|row| &row[column("first_name")] == "John")
        .unwrap();

    assert_eq!(
        &john[column("company")],
        "'=HYPERLINK(\"http://example.com\",\"Acme\")"
    );
    assert_eq!(&john[column("source")], "'+linkedin");
    assert_eq!(&john[column("Notes")], "'@channel -- call back");
    assert_eq!(&john[column("phone")], "+14155550134");
    assert_eq!(&john[column("last_name")], "O'Brien");
    let camille = rows
        .iter()
        .find(|row| &row[column("first_name")] == "Camille")
        .unwrap();
    assert_eq!(&camille[column("Écart")], "'-12");
    assert_eq!(&camille[column("phone")], "+33612345678");
    assert_eq!(&camille[column("tags")], "salon|vip client");
    assert_eq!(
        &camille[column("consent_sms_date")],
        "2026-02-02T10:15:30.250Z"
    );
}

#[tokio::test]
async fn csv_header_and_row_order() {
    let org = OrgId::new();
    let store = seeded(org).await;
    let (text, _) = csv_text(&store, org, &ExportOptions::default()).await;
    let first_line = text.lines().next().unwrap();
    assert_eq!(
        first_line,
        "first_name,last_name,company,job_title,phone,email,messenger_psid,locale,time_zone,source,tags,\
         consent_sms,consent_sms_date,consent_sms_source,consent_sms_version,\
         consent_email,consent_email_date,consent_email_source,consent_email_version,\
         Budget,Client,Date RDV,Notes,Écart"
    );
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let names: Vec<String> = reader
        .records()
        .map(|row| row.unwrap()[0].to_owned())
        .collect();
    assert_eq!(
        names,
        vec!["Camille", "John", ""],
        "rows come in id order, which is creation order"
    );
}

#[tokio::test]
async fn csv_declared_custom_fields() {
    let org = OrgId::new();
    let store = seeded(org).await;
    let options = ExportOptions::default().with_custom_fields(["Notes", "Budget", "Missing"]);
    let (text, report) = csv_text(&store, org, &options).await;
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with(",Notes,Budget,Missing")
    );
    assert_eq!(
        report.custom_fields,
        vec![
            ("Notes".to_owned(), CustomType::Text),
            ("Budget".to_owned(), CustomType::Number),
            ("Missing".to_owned(), CustomType::Text),
        ]
    );
    assert_eq!(
        report.skipped_custom_values, 3,
        "Client, Date RDV and Écart of Camille are not declared"
    );
    assert_eq!(
        store.list_calls().len(),
        1,
        "declared fields need no discovery pass"
    );
}

#[tokio::test]
async fn csv_skips_custom_fields_named_like_columns() {
    let org = OrgId::new();
    let mut prospect = Prospect::new(org, at(1, 9));
    prospect.email = Some(EmailAddress::parse("kim@example.com").unwrap());
    prospect.custom_fields = BTreeMap::from([
        ("Source".to_owned(), CustomValue::Text("shadow".into())),
        ("budget".to_owned(), CustomValue::Number(1.0)),
        ("Budget ".to_owned(), CustomValue::Number(2.0)),
        ("---".to_owned(), CustomValue::Text("dashes".into())),
    ]);
    let store = FakeStore::default();
    store.insert_prospects(&[prospect]).await.unwrap();
    let (text, report) = csv_text(&store, org, &ExportOptions::default()).await;
    assert_eq!(
        report.custom_fields,
        vec![("Budget ".to_owned(), CustomType::Number)]
    );
    assert_eq!(
        report.skipped_custom_fields,
        vec!["---".to_owned(), "Source".to_owned(), "budget".to_owned()]
    );
    assert_eq!(report.skipped_custom_values, 3);
    assert!(text.lines().next().unwrap().ends_with(",Budget "));
}

#[tokio::test]
async fn csv_counts_consents_it_cannot_carry() {
    let org = OrgId::new();
    let mut prospect = Prospect::new(org, at(1, 9));
    prospect.phone = Some(PhoneNumber::from_e164("+33612345678").unwrap());
    let mut withdrawn = consent(ChannelKind::Email, at(2, 9), "form", None);
    withdrawn.withdrawn_at = Some(at(3, 9));
    let mut interest = consent(ChannelKind::Email, at(2, 9), "b2b", None);
    interest.basis = ConsentBasis::LegitimateInterest;
    prospect.consents = vec![
        consent(ChannelKind::Sms, at(2, 9), "old form", Some("v1")),
        consent(ChannelKind::Sms, at(4, 9), "new form", Some("v2")),
        withdrawn,
        interest,
        consent(ChannelKind::Messenger, at(2, 9), "chat", None),
    ];
    let store = FakeStore::default();
    store.insert_prospects(&[prospect]).await.unwrap();
    let (text, report) = csv_text(&store, org, &ExportOptions::default()).await;
    assert_eq!(report.skipped_consents, 4);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let row = reader.records().next().unwrap().unwrap();
    assert_eq!(&row[11], "yes");
    assert_eq!(
        &row[13], "new form",
        "the latest active SMS consent is written"
    );
    assert_eq!(
        &row[15], "",
        "no active e-mail consent with the basis consent"
    );
}

#[tokio::test]
async fn csv_of_empty_org_has_only_the_header() {
    let store = FakeStore::default();
    let (text, report) = csv_text(&store, OrgId::new(), &ExportOptions::default()).await;
    assert_eq!(report.prospects, 0);
    assert_eq!(text.lines().count(), 1);
}

#[tokio::test]
async fn export_reads_in_pages() {
    let org = OrgId::new();
    let store = FakeStore::default();
    let prospects: Vec<Prospect> = (0..5)
        .map(|index| {
            let mut prospect = Prospect::new(org, at(1, 9));
            prospect.email = Some(EmailAddress::parse(&format!("p{index}@example.com")).unwrap());
            prospect
        })
        .collect();
    store.insert_prospects(&prospects).await.unwrap();
    store
        .insert_prospects(&sample_prospects(OrgId::new()))
        .await
        .unwrap();

    let options = ExportOptions::default().with_page_size(2);
    let mut output = Vec::new();
    let report = export_jsonl(&store, org, &mut output, &options)
        .await
        .unwrap();
    assert_eq!(report.prospects, 5);
    assert_eq!(
        store.list_calls(),
        vec![2, 2, 2],
        "pages of 2, 2 and 1; a short page is the last"
    );

    let (_, report) = csv_text(&store, org, &options).await;
    assert_eq!(report.prospects, 5);
    assert_eq!(
        store.list_calls().len(),
        9,
        "the CSV export reads every page twice: discovery, then rows"
    );
}

// ---------------------------------------------------------------------------
// JSON Lines.

#[tokio::test]
async fn jsonl_round_trip_via_serde() {
    let org = OrgId::new();
    let store = seeded(org).await;
    let mut output = Vec::new();
    let report = export_jsonl(&store, org, &mut output, &ExportOptions::default())
        .await
        .unwrap();
    assert_eq!(report.prospects, 3);
    let text = String::from_utf8(output).unwrap();
    let read: Vec<Prospect> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(read, store.prospects(org));
    assert!(text.ends_with('\n'));
}

// ---------------------------------------------------------------------------
// Import of spreadsheet-safe cells written by other tools.

#[tokio::test]
async fn guarded_phone_cells_import() {
    let store = FakeStore::default();
    let org = OrgId::new();
    let file = "Prénom;Téléphone;Société\nAna;'+33 6 12 34 56 78;'=Acme\n";
    let report = import_prospects(
        &store,
        org,
        file.as_bytes(),
        &ImportOptions::default(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(report.inserted, 1, "{:?}", report.rejected);
    let prospect = &store.prospects(org)[0];
    assert_eq!(
        prospect.phone.as_ref().map(PhoneNumber::as_str),
        Some("+33612345678")
    );
    assert_eq!(prospect.company.as_deref(), Some("=Acme"));
}

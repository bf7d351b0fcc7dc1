//! Data-subject rights, retention, org deletion, reminders and
//! notifications through the engine, on the memory and SQLite stores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use kalify::analysis::{
    Analysis, AnalysisRequest, ExtractedFact, Intent, ReplyDraft, ReplyRequest,
};
use kalify::campaign::{Campaign, CampaignStatus, Step};
use kalify::channels::MemoryChannel;
use kalify::contact::{ChannelKind, ContactPoint, EmailAddress, PhoneNumber, Region};
use kalify::conversation::{ConversationState, NotificationKind};
use kalify::engine::Engine;
use kalify::gdpr::{Rectification, RequestKind, RequestOutcome, RetentionPolicy};
use kalify::ports::{
    Actor, InboundMessage, LanguageModel, ManualClock, Member, MemoryNotifier, Notification,
    Notifier, Role, Store,
};
use kalify::prospect::{Consent, ConsentBasis, Prospect};
use kalify::qualification::{FactValue, Localized};
use kalify::store::{MemoryStore, SqliteStore};
use kalify::{CampaignId, ErrorKind, MemberId, OrgId, Result, Timestamp};

const FIRST_NAME: &str = "Zéphyrine";
const LAST_NAME: &str = "Quillebœuf";
const EMAIL: &str = "zephyrine.quillebeuf@exemple-unique.fr";
const PHONE: &str = "+33698765432";

/// A model that finds a 30,000 EUR budget in every reply.
#[derive(Debug, Default)]
struct BudgetModel {
    calls: AtomicUsize,
}

#[async_trait]
impl LanguageModel for BudgetModel {
    fn name(&self) -> &str {
        "budget-model"
    }

    async fn analyse(&self, request: &AnalysisRequest) -> Result<Analysis> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let quote = request
            .new_messages
            .last()
            .map(|line| line.text.clone())
            .unwrap_or_default();
        let mut analysis = Analysis::empty();
        analysis.intent = Intent::Interested;
        analysis.facts.push(ExtractedFact {
            key: "budget".to_owned(),
            value: FactValue::Money {
                amount: 30_000.0,
                currency: "EUR".to_owned(),
            },
            quote,
            confidence: 0.9,
        });
        Ok(analysis)
    }

    async fn write_reply(&self, request: &ReplyRequest) -> Result<ReplyDraft> {
        Ok(ReplyDraft {
            text: kalify::reply::template_reply(request),
        })
    }
}

struct Harness {
    engine: Engine,
    store: Arc<dyn Store>,
    sms: MemoryChannel,
    model: Arc<BudgetModel>,
    notifier: Arc<MemoryNotifier>,
    clock: ManualClock,
    org: OrgId,
}

fn start() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn harness_on(store: Arc<dyn Store>) -> Harness {
    harness_with(store, RetentionPolicy::default())
}

fn harness_with(store: Arc<dyn Store>, retention: RetentionPolicy) -> Harness {
    let sms = MemoryChannel::new(ChannelKind::Sms);
    let model = Arc::new(BudgetModel::default());
    let notifier = Arc::new(MemoryNotifier::new());
    let clock = ManualClock::new(start());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(model.clone())
        .with_channel(Arc::new(sms.clone()))
        .with_notifier(notifier.clone())
        .with_clock(Arc::new(clock.clone()))
        .with_retention(retention)
        .build()
        .unwrap();
    Harness {
        engine,
        store,
        sms,
        model,
        notifier,
        clock,
        org: OrgId::new(),
    }
}

fn campaign(org: OrgId) -> Campaign {
    let step = |delay_hours, text: &str| Step::new(delay_hours, Localized::new(text, text));
    Campaign {
        id: CampaignId::new(),
        org_id: org,
        name: "Printemps 2026".to_owned(),
        persona: "Acme".to_owned(),
        goal: "book a demo".to_owned(),
        channels: vec![ChannelKind::Sms],
        steps: vec![
            step(0, "Acme: bonjour {{ first_name }}. STOP to opt out."),
            step(24, "Acme: relance. STOP to opt out."),
        ],
        allow_links: false,
        status: CampaignStatus::Active,
        created_at: start(),
        settings: Default::default(),
    }
}

fn person(org: OrgId, phone: &str, email: &str, at: Timestamp) -> Prospect {
    let mut prospect = Prospect::new(org, at);
    prospect.first_name = Some(FIRST_NAME.to_owned());
    prospect.last_name = Some(LAST_NAME.to_owned());
    prospect.phone = Some(PhoneNumber::parse(phone, Region::FR).unwrap());
    prospect.email = Some(EmailAddress::parse(email).unwrap());
    prospect.source = Some("salon-lyon.csv".to_owned());
    prospect.consents.push(Consent {
        channel: ChannelKind::Sms,
        basis: ConsentBasis::Consent,
        collected_at: at,
        source: "formulaire-site".to_owned(),
        wording_version: Some("v3".to_owned()),
        withdrawn_at: None,
    });
    prospect
}

fn inbound(phone: &str, id: &str, text: &str, at: Timestamp) -> InboundMessage {
    InboundMessage {
        channel: ChannelKind::Sms,
        provider: "test".to_owned(),
        provider_message_id: id.to_owned(),
        from: ContactPoint::Phone(PhoneNumber::parse(phone, Region::FR).unwrap()),
        text: text.to_owned(),
        at,
    }
}

fn member(org: OrgId, role: Role) -> Member {
    Member {
        id: MemberId::new(),
        org_id: org,
        name: format!("{role:?}"),
        email: EmailAddress::parse(&format!("{}@acme.test", MemberId::new())).unwrap(),
        role,
        available: true,
    }
}

/// Enrolls the named person, sends the first message and processes one
/// reply, so that every table contains a row about them.
async fn converse(h: &Harness) -> Prospect {
    let prospect = person(h.org, PHONE, EMAIL, start());
    h.store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .unwrap();
    let campaign = campaign(h.org);
    h.store.put_campaign(&campaign).await.unwrap();
    h.engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap();
    h.engine.run_due().await.unwrap();
    let reply = format!(
        "Bonjour, ici {FIRST_NAME} {LAST_NAME}, notre budget est de 30k€, écrivez à {EMAIL}"
    );
    h.engine
        .handle_inbound(
            h.org,
            inbound(PHONE, "SM1", &reply, start() + Duration::minutes(5)),
        )
        .await
        .unwrap();
    prospect
}

#[tokio::test]
async fn access_export_holds_everything_and_the_processing_information() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = converse(&h).await;

    let export = h
        .engine
        .subject_access(h.org, prospect.id, Actor::System)
        .await
        .unwrap();
    assert_eq!(export.schema_version, 1);
    assert_eq!(export.prospect.first_name.as_deref(), Some(FIRST_NAME));
    assert_eq!(export.prospect.consents.len(), 1);
    assert!(
        export.sources.contains(&"salon-lyon.csv".to_owned())
            && export.sources.contains(&"formulaire-site".to_owned())
    );
    assert_eq!(export.enrolments.len(), 1);
    assert_eq!(export.enrolments[0].campaign_name, "Printemps 2026");
    let messages = &export.conversations[0].messages;
    assert!(
        messages
            .iter()
            .any(|m| m.text.contains("bonjour Zéphyrine")),
        "the outbound message is exported"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.text.contains("budget est de 30k€")),
        "the reply is exported"
    );
    let facts = &export.conversations[0].conversation.facts;
    assert_eq!(facts[0].key, "budget");
    assert!(
        facts[0].evidence.quote.contains("30k€"),
        "facts carry their evidence"
    );
    let score = export.conversations[0]
        .conversation
        .score
        .as_ref()
        .expect("a score");
    assert!(
        score
            .breakdown
            .iter()
            .any(|entry| entry.key == "budget" && entry.points > 0),
        "the score has its breakdown"
    );
    let exchange = export
        .model_exchanges
        .iter()
        .find(|e| e.operation == "analyse")
        .expect("the analysis call is kept");
    assert_eq!(exchange.model, "budget-model");
    assert!(
        exchange.request.contains("budget est de 30k€"),
        "the prompt input is kept"
    );
    assert!(
        exchange.response.contains("30000"),
        "the model's answer is kept"
    );
    assert!(!export.audit.is_empty());
    assert!(
        export
            .processing
            .recipients
            .iter()
            .any(|r| r.contains("sms")),
        "{:?}",
        export.processing.recipients
    );
    assert!(
        export
            .processing
            .recipients
            .iter()
            .any(|r| r == "budget-model")
    );
    assert!(
        export.processing.retention.contains("3.0 years"),
        "{}",
        export.processing.retention
    );
    assert!(export.processing.automated_decisions.contains("score"));
    let request = export.requests.last().unwrap();
    assert_eq!(request.kind, RequestKind::Access);
    assert!(matches!(request.outcome, RequestOutcome::Completed(_)));
    assert_eq!(
        request.due_at,
        Utc.with_ymd_and_hms(2026, 4, 2, 9, 0, 0).unwrap(),
        "due one month after receipt"
    );

    let json: serde_json::Value = serde_json::from_str(&export.to_json().unwrap()).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["prospect"]["email"], EMAIL);

    let tables = export.csv_tables().unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    for expected in [
        "profile.csv",
        "consents.csv",
        "enrolments.csv",
        "messages.csv",
        "facts.csv",
        "scores.csv",
        "model_exchanges.csv",
        "audit.csv",
        "requests.csv",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let messages_csv = &tables
        .iter()
        .find(|t| t.name == "messages.csv")
        .unwrap()
        .content;
    assert!(messages_csv.contains("budget est de 30k€"));
    let profile = &tables
        .iter()
        .find(|t| t.name == "profile.csv")
        .unwrap()
        .content;
    assert!(
        profile.contains(&format!("phone,'{PHONE}")),
        "a leading + is guarded against formula injection: {profile}"
    );

    let stored = h.store.list_subject_requests(h.org).await.unwrap();
    assert_eq!(stored.len(), 1, "the access request is recorded");
}

#[tokio::test]
async fn rectification_is_audited_by_field_and_rescored() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = converse(&h).await;
    let before = h
        .store
        .get_prospect(h.org, prospect.id)
        .await
        .unwrap()
        .score
        .unwrap()
        .value;

    let mut change = Rectification::new();
    change.last_name = Some(Some("Quillebeuf".to_owned()));
    change.facts.insert(
        "budget".to_owned(),
        Some(FactValue::Money {
            amount: 500.0,
            currency: "EUR".to_owned(),
        }),
    );
    let updated = h
        .engine
        .rectify(h.org, prospect.id, change, Actor::System)
        .await
        .unwrap();
    assert_eq!(updated.last_name.as_deref(), Some("Quillebeuf"));
    let after = updated.score.as_ref().unwrap().value;
    assert!(
        after < before,
        "a smaller budget lowers the score: {before} -> {after}"
    );
    let conversation = &h.store.conversations_of(h.org, prospect.id).await.unwrap()[0];
    assert_eq!(
        conversation.score.as_ref().unwrap().value,
        after,
        "the conversation's score is recomputed too"
    );

    let audit = h.store.audit_of(h.org, prospect.id).await.unwrap();
    let rectified: Vec<&str> = audit
        .iter()
        .filter(|e| e.action == "rectification")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(
        rectified,
        vec!["last_name rectified", "fact.budget rectified"]
    );
    assert!(
        audit.iter().all(|e| !e.detail.contains("Quillebeuf")),
        "the audit names fields, never values"
    );

    let mut unknown = Rectification::new();
    unknown.facts.insert("shoe_size".to_owned(), None);
    let error = h
        .engine
        .rectify(h.org, prospect.id, unknown, Actor::System)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(
        error.to_string().contains("shoe_size") && error.to_string().contains("budget"),
        "{error}"
    );
    let error = h
        .engine
        .rectify(h.org, prospect.id, Rectification::new(), Actor::System)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn erasure_removes_everything_and_keeps_the_person_suppressed() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = converse(&h).await;
    let conversation = h.store.conversations_of(h.org, prospect.id).await.unwrap()[0].clone();
    assert!(
        !h.store
            .pending_jobs(h.org, conversation.id)
            .await
            .unwrap()
            .is_empty(),
        "a follow-up is pending before erasure"
    );

    let sent = h.sms.sent().len();
    let report = h
        .engine
        .erase(h.org, prospect.id, Actor::System)
        .await
        .unwrap();
    assert!(report.total() >= 6, "{report:?}");
    assert_eq!(
        h.store
            .get_prospect(h.org, prospect.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(
        h.store
            .pending_jobs(h.org, conversation.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        h.store
            .model_exchanges_of(h.org, prospect.id)
            .await
            .unwrap()
            .is_empty()
    );
    h.clock.advance(Duration::days(3));
    h.engine.run_due().await.unwrap();
    assert_eq!(
        h.sms.sent().len(),
        sent,
        "no follow-up goes out after erasure"
    );

    // The same person arrives again in a CSV export: the import keeps them suppressed.
    let csv = format!(
        "first_name,last_name,phone,email\n{FIRST_NAME},{LAST_NAME},06 98 76 54 32,{EMAIL}\n"
    );
    let report = kalify::import::import_prospects(
        h.store.as_ref(),
        h.org,
        csv.as_bytes(),
        &kalify::import::ImportOptions::default(),
        start(),
    )
    .await
    .unwrap();
    assert_eq!(report.suppressed, 1, "{report:?}");
    let found = h
        .store
        .find_prospect(
            h.org,
            &ContactPoint::Email(EmailAddress::parse(EMAIL).unwrap()),
        )
        .await
        .unwrap();
    if let Some(found) = found {
        let campaign = campaign(h.org);
        h.store.put_campaign(&campaign).await.unwrap();
        let _ = h.engine.enroll(h.org, found.id, campaign.id).await;
        h.engine.run_due().await.unwrap();
        assert_eq!(
            h.sms.sent().len(),
            sent,
            "a re-imported erased person is never messaged"
        );
    }

    let requests = h.store.list_subject_requests(h.org).await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].kind, RequestKind::Erasure);
    assert!(
        matches!(&requests[0].outcome, RequestOutcome::Completed(detail) if detail.contains("rows deleted"))
    );
    assert_eq!(
        h.engine
            .erase(h.org, prospect.id, Actor::System)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn erased_person_writing_again_is_not_recreated() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = converse(&h).await;
    h.engine
        .erase(h.org, prospect.id, Actor::System)
        .await
        .unwrap();

    let error = h
        .engine
        .handle_inbound(
            h.org,
            inbound(PHONE, "SM7", "Bonjour, c'est encore moi", h.clock_now()),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    let phone = ContactPoint::Phone(PhoneNumber::parse(PHONE, Region::FR).unwrap());
    assert!(
        h.store
            .find_prospect(h.org, &phone)
            .await
            .unwrap()
            .is_none(),
        "no prospect holds the erased number again"
    );
}

#[tokio::test]
async fn answering_a_recorded_request_closes_it() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = converse(&h).await;
    let access = h
        .engine
        .record_request(h.org, prospect.id, RequestKind::Access, Actor::System)
        .await
        .unwrap();
    let objection = h
        .engine
        .record_request(h.org, prospect.id, RequestKind::Objection, Actor::System)
        .await
        .unwrap();

    h.engine
        .subject_access(h.org, prospect.id, Actor::System)
        .await
        .unwrap();
    let requests = h.store.list_subject_requests(h.org).await.unwrap();
    assert_eq!(
        requests.len(),
        2,
        "the export answers the recorded request instead of adding one"
    );
    let answered = requests.iter().find(|r| r.id == access.id).unwrap();
    assert!(matches!(answered.outcome, RequestOutcome::Completed(_)));
    assert_eq!(
        answered.received_at, access.received_at,
        "the receipt date stays the one recorded"
    );

    h.engine
        .erase(h.org, prospect.id, Actor::System)
        .await
        .unwrap();
    let requests = h.store.list_subject_requests(h.org).await.unwrap();
    let closed = requests.iter().find(|r| r.id == objection.id).unwrap();
    assert!(
        matches!(&closed.outcome, RequestOutcome::Completed(detail) if detail.contains("erasure")),
        "{:?}",
        closed.outcome
    );
    assert!(
        requests.iter().all(|r| r.outcome != RequestOutcome::Open),
        "no request stays open after erasure"
    );
    assert_eq!(
        h.engine
            .notify_due_requests(StdDuration::from_secs(60 * 86_400))
            .await
            .unwrap(),
        0
    );
}

/// Returns where `needle` occurs in the database file, its log and its shared memory file.
fn leaks(dir: &std::path::Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        for needle in needles {
            if bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
            {
                found.push(format!(
                    "{needle} in {}",
                    path.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    found
}

#[tokio::test]
async fn sqlite_erasure_leaves_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(
        SqliteStore::open(dir.path().join("kalify.db"))
            .await
            .unwrap(),
    );
    let h = harness_on(sqlite.clone());
    let prospect = converse(&h).await;
    // A neighbour with other data stays.
    let mut neighbour = person(h.org, "+33611223344", "voisin@exemple.fr", start());
    neighbour.first_name = Some("Jean".to_owned());
    neighbour.last_name = Some("Voisin".to_owned());
    h.store
        .insert_prospects(std::slice::from_ref(&neighbour))
        .await
        .unwrap();
    h.engine
        .subject_access(h.org, prospect.id, Actor::System)
        .await
        .unwrap();

    let needles = [FIRST_NAME, LAST_NAME, EMAIL, PHONE, "698765432"];
    sqlite.vacuum().await.unwrap();
    let before = leaks(dir.path(), &needles);
    assert!(
        before.len() >= 4,
        "the check must see the person before erasure: {before:?}"
    );

    h.engine
        .erase(h.org, prospect.id, Actor::System)
        .await
        .unwrap();
    sqlite.vacuum().await.unwrap();
    let after = leaks(dir.path(), &needles);
    assert!(
        after.is_empty(),
        "bytes of the erased person remain: {after:?}"
    );
    assert!(
        h.store.get_prospect(h.org, neighbour.id).await.is_ok(),
        "the neighbour stays"
    );
    assert!(
        h.store
            .is_suppressed(
                h.org,
                &ContactPoint::Phone(PhoneNumber::parse(PHONE, Region::FR).unwrap())
            )
            .await
            .unwrap(),
        "the erased phone stays suppressed"
    );
}

#[tokio::test]
async fn restriction_stops_sends_and_model_calls_until_lifted() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = converse(&h).await;
    let calls = h.model.calls.load(Ordering::SeqCst);
    let sent = h.sms.sent().len();

    let restricted = h
        .engine
        .restrict(h.org, prospect.id, Actor::System)
        .await
        .unwrap();
    assert!(restricted.restricted);
    h.engine
        .handle_inbound(
            h.org,
            inbound(
                PHONE,
                "SM2",
                "Nous sommes 40 personnes",
                start() + Duration::hours(1),
            ),
        )
        .await
        .unwrap();
    h.clock.advance(Duration::days(3));
    h.engine.run_due().await.unwrap();
    assert_eq!(
        h.model.calls.load(Ordering::SeqCst),
        calls,
        "no model call while restricted"
    );
    assert_eq!(h.sms.sent().len(), sent, "no send while restricted");
    let conversation = &h.store.conversations_of(h.org, prospect.id).await.unwrap()[0];
    let kept = h.store.list_messages(h.org, conversation.id).await.unwrap();
    assert!(
        kept.iter().any(|m| m.text.contains("40 personnes")),
        "the data is kept"
    );

    let lifted = h
        .engine
        .lift_restriction(h.org, prospect.id, Actor::System)
        .await
        .unwrap();
    assert!(!lifted.restricted);
    h.engine
        .handle_inbound(
            h.org,
            inbound(PHONE, "SM3", "Et le budget reste 30k€", h.clock_now()),
        )
        .await
        .unwrap();
    assert!(
        h.model.calls.load(Ordering::SeqCst) > calls,
        "processing resumes once lifted"
    );

    let kinds: Vec<RequestKind> = h
        .store
        .list_subject_requests(h.org)
        .await
        .unwrap()
        .iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![RequestKind::Restriction, RequestKind::LiftRestriction]
    );
}

impl Harness {
    fn clock_now(&self) -> Timestamp {
        kalify::ports::Clock::now(&self.clock)
    }
}

#[tokio::test]
async fn objection_stops_marketing_on_every_channel_for_good() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = person(h.org, PHONE, EMAIL, start());
    h.store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .unwrap();
    let objected = h
        .engine
        .object(h.org, prospect.id, Actor::Prospect)
        .await
        .unwrap();
    assert!(objected.objected);

    let campaign = campaign(h.org);
    h.store.put_campaign(&campaign).await.unwrap();
    let error = h
        .engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::RecipientOptedOut);
    h.clock.advance(Duration::days(30));
    h.engine.run_due().await.unwrap();
    assert!(h.sms.sent().is_empty());
    let audit = h.store.audit_of(h.org, prospect.id).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "objection"));
}

#[tokio::test]
async fn export_and_erase_need_manager_role() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = person(h.org, PHONE, EMAIL, start());
    h.store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .unwrap();
    let plain = member(h.org, Role::Member);
    let admin = member(h.org, Role::Admin);
    let outsider = member(OrgId::new(), Role::Owner);
    for m in [&plain, &admin, &outsider] {
        h.store.put_member(m).await.unwrap();
    }

    let denied = h
        .engine
        .subject_access(h.org, prospect.id, Actor::Member(plain.id))
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    let denied = h
        .engine
        .erase(h.org, prospect.id, Actor::Member(plain.id))
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    let denied = h
        .engine
        .erase(h.org, prospect.id, Actor::Member(outsider.id))
        .await
        .unwrap_err();
    assert_eq!(
        denied.kind(),
        ErrorKind::PermissionDenied,
        "a member of another org can do nothing here"
    );
    h.engine
        .restrict(h.org, prospect.id, Actor::Member(plain.id))
        .await
        .expect("any member may restrict on the person's request");
    h.engine
        .subject_access(h.org, prospect.id, Actor::Member(admin.id))
        .await
        .unwrap();
    h.engine
        .erase(h.org, prospect.id, Actor::Member(admin.id))
        .await
        .unwrap();
}

#[tokio::test]
async fn retention_purges_silent_prospects_and_old_messages() {
    let retention = RetentionPolicy::default()
        .with_prospect(StdDuration::from_secs(730 * 86_400))
        .with_messages(Some(StdDuration::from_secs(365 * 86_400)));
    let h = harness_with(Arc::new(MemoryStore::new()), retention);
    let talker = converse(&h).await;
    let silent = person(h.org, "+33611111111", "silence@exemple.fr", start());
    h.store
        .insert_prospects(std::slice::from_ref(&silent))
        .await
        .unwrap();

    // Two years on, the talker writes again; the silent one never did.
    h.clock.advance(Duration::days(730));
    h.engine
        .handle_inbound(
            h.org,
            inbound(PHONE, "SM9", "Toujours intéressé", h.clock_now()),
        )
        .await
        .unwrap();
    h.clock.advance(Duration::days(200));
    let report = h.engine.purge_expired().await.unwrap();
    assert_eq!(report.prospects_erased, 1, "{report:?}");
    assert_eq!(
        h.store
            .get_prospect(h.org, silent.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let conversation = &h.store.conversations_of(h.org, talker.id).await.unwrap()[0];
    let left = h.store.list_messages(h.org, conversation.id).await.unwrap();
    assert!(report.messages_deleted >= 2, "{report:?}");
    assert!(
        left.iter()
            .all(|m| m.text != format!("Bonjour, ici {FIRST_NAME}")),
        "old messages are gone"
    );
    assert!(
        left.iter().any(|m| m.text == "Toujours intéressé"),
        "recent messages stay"
    );
    assert!(
        !h.store
            .is_suppressed(
                h.org,
                &ContactPoint::Phone(PhoneNumber::parse("+33611111111", Region::FR).unwrap())
            )
            .await
            .unwrap(),
        "a retention purge is not an opt-out"
    );
}

#[tokio::test]
async fn org_deletion_needs_sole_owner() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = converse(&h).await;
    let owner = member(h.org, Role::Owner);
    let admin = member(h.org, Role::Admin);
    h.store.put_member(&owner).await.unwrap();
    h.store.put_member(&admin).await.unwrap();

    let refused = h.engine.delete_org(h.org, admin.id).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ErrorKind::PermissionDenied,
        "only the owner deletes the org"
    );
    let refused = h.engine.delete_org(h.org, owner.id).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Conflict);
    assert!(refused.to_string().contains("1 other member"), "{refused}");
    assert!(
        h.store.get_prospect(h.org, prospect.id).await.is_ok(),
        "a refused deletion deletes nothing"
    );

    h.store.delete_member(h.org, admin.id).await.unwrap();
    let report = h.engine.delete_org(h.org, owner.id).await.unwrap();
    assert!(report.total() > 5, "{report:?}");
    assert_eq!(
        h.store
            .get_prospect(h.org, prospect.id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(h.store.list_members(h.org).await.unwrap().is_empty());
}

#[tokio::test]
async fn reminders_fire_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kalify.db");
    let h = harness_on(Arc::new(SqliteStore::open(&path).await.unwrap()));
    let prospect = converse(&h).await;
    let owner = member(h.org, Role::Member);
    h.store.put_member(&owner).await.unwrap();
    let at = start() + Duration::days(1) + Duration::hours(1);
    h.engine
        .schedule_reminder(h.org, owner.id, prospect.id, at, "rappeler mardi 10:00")
        .await
        .unwrap();
    let error = h
        .engine
        .schedule_reminder(h.org, owner.id, prospect.id, at, "  ")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    h.engine.run_due().await.unwrap();
    h.engine.notifications_idle().await;
    assert!(
        h.notifier
            .delivered()
            .iter()
            .all(|n| n.kind != NotificationKind::ReminderDue),
        "not due yet"
    );
    let org = h.org;
    drop(h);

    // A new process on the same file.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let mut h = harness_on(store);
    h.org = org;
    h.clock.set(at + Duration::minutes(1));
    h.engine.run_due().await.unwrap();
    h.engine.notifications_idle().await;
    let reminders: Vec<Notification> = h
        .notifier
        .delivered()
        .into_iter()
        .filter(|n| n.kind == NotificationKind::ReminderDue)
        .collect();
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].member, Some(owner.id));
    assert_eq!(reminders[0].note.as_deref(), Some("rappeler mardi 10:00"));
    assert_eq!(reminders[0].prospect_id, prospect.id);
    h.engine.run_due().await.unwrap();
    h.engine.notifications_idle().await;
    assert_eq!(
        h.notifier
            .delivered()
            .iter()
            .filter(|n| n.kind == NotificationKind::ReminderDue)
            .count(),
        1,
        "once"
    );
}

#[tokio::test]
async fn requests_due_soon_notify_the_managers() {
    let h = harness_on(Arc::new(MemoryStore::new()));
    let prospect = person(h.org, PHONE, EMAIL, start());
    h.store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .unwrap();
    let owner = member(h.org, Role::Owner);
    let plain = member(h.org, Role::Member);
    h.store.put_member(&owner).await.unwrap();
    h.store.put_member(&plain).await.unwrap();
    let request = h
        .engine
        .record_request(
            h.org,
            prospect.id,
            RequestKind::Access,
            Actor::Member(plain.id),
        )
        .await
        .unwrap();
    assert_eq!(request.outcome, RequestOutcome::Open);

    assert_eq!(
        h.engine
            .notify_due_requests(StdDuration::from_secs(7 * 86_400))
            .await
            .unwrap(),
        0,
        "a month is left"
    );
    h.clock.advance(Duration::days(25));
    assert_eq!(
        h.engine
            .notify_due_requests(StdDuration::from_secs(7 * 86_400))
            .await
            .unwrap(),
        1
    );
    h.engine.notifications_idle().await;
    let due: Vec<Notification> = h
        .notifier
        .delivered()
        .into_iter()
        .filter(|n| n.kind == NotificationKind::SubjectRequestDueSoon)
        .collect();
    assert_eq!(due.len(), 1);
    assert_eq!(
        due[0].member,
        Some(owner.id),
        "owners and admins are told, not plain members"
    );
    assert_eq!(due[0].due_at, Some(request.due_at));
}

/// A notifier that never returns.
#[derive(Debug)]
struct Hanging;

#[async_trait]
impl Notifier for Hanging {
    async fn notify(&self, _: &Notification) -> Result<()> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[tokio::test]
async fn hanging_notifier_never_blocks_turns() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sms = MemoryChannel::new(ChannelKind::Sms);
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(BudgetModel::default()))
        .with_channel(Arc::new(sms.clone()))
        .with_notifier(Arc::new(Hanging))
        .with_clock(Arc::new(ManualClock::new(start())))
        .build()
        .unwrap();
    let org = OrgId::new();
    let prospect = person(org, PHONE, EMAIL, start());
    store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .unwrap();
    let campaign = campaign(org);
    store.put_campaign(&campaign).await.unwrap();
    engine.enroll(org, prospect.id, campaign.id).await.unwrap();
    engine.run_due().await.unwrap();
    // Asking for a person notifies the team; the turn completes anyway.
    let report = tokio::time::timeout(
        StdDuration::from_secs(10),
        engine.handle_inbound(
            org,
            inbound(PHONE, "SM1", "STOP", start() + Duration::minutes(1)),
        ),
    )
    .await
    .expect("handling must not wait for the notifier")
    .unwrap();
    assert_eq!(report.state, ConversationState::OptedOut);
}

/// The same rights through the engine on PostgreSQL, as the table owner and
/// under row-level security.
#[cfg(feature = "postgres")]
#[path = "../kalify-store/tests/postgres_support/mod.rs"]
mod postgres_support;

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    async fn rights_on(store: Arc<dyn Store>) {
        let h = harness_on(store);
        let prospect = converse(&h).await;

        let export = h
            .engine
            .subject_access(h.org, prospect.id, Actor::System)
            .await
            .unwrap();
        assert!(!export.model_exchanges.is_empty(), "model calls are kept");
        assert!(export.conversations[0].messages.len() >= 2);

        let mut change = Rectification::new();
        change.facts.insert(
            "budget".to_owned(),
            Some(FactValue::Money {
                amount: 500.0,
                currency: "EUR".to_owned(),
            }),
        );
        let rectified = h
            .engine
            .rectify(h.org, prospect.id, change, Actor::System)
            .await
            .unwrap();
        assert!(rectified.score.is_some());

        assert!(
            h.engine
                .restrict(h.org, prospect.id, Actor::System)
                .await
                .unwrap()
                .restricted
        );
        assert!(
            h.engine
                .object(h.org, prospect.id, Actor::System)
                .await
                .unwrap()
                .objected
        );

        let report = h
            .engine
            .erase(h.org, prospect.id, Actor::System)
            .await
            .unwrap();
        assert!(report.total() >= 6, "{report:?}");
        assert_eq!(
            h.store
                .get_prospect(h.org, prospect.id)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        let phone = ContactPoint::Phone(PhoneNumber::parse(PHONE, Region::FR).unwrap());
        assert!(h.store.is_suppressed(h.org, &phone).await.unwrap());
        let kinds: Vec<RequestKind> = h
            .store
            .list_subject_requests(h.org)
            .await
            .unwrap()
            .iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                RequestKind::Access,
                RequestKind::Rectification,
                RequestKind::Restriction,
                RequestKind::Objection,
                RequestKind::Erasure
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rights_on_postgres_as_owner() {
        let Some(url) = postgres_support::test_url() else {
            return;
        };
        let (store, _database) = postgres_support::owner_store(&url).await;
        rights_on(Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rights_on_postgres_under_row_level_security() {
        let Some(url) = postgres_support::test_url() else {
            return;
        };
        let (store, _database) = postgres_support::application_store(&url).await;
        rights_on(Arc::new(store)).await;
    }
}

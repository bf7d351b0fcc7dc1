//! The engine's flows over the in-memory store and channel.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use kalify::analysis::{
    Analysis, AnalysisRequest, ExtractedFact, Intent, Objection, ReplyDraft, ReplyRequest,
};
use kalify::campaign::{Campaign, CampaignStatus, Step};
use kalify::channels::MemoryChannel;
use kalify::contact::{ChannelKind, ContactPoint, PhoneNumber, Region};
use kalify::conversation::{ConversationState, DeliveryStatus, Direction};
use kalify::engine::Engine;
use kalify::ports::{Clock, InboundMessage, LanguageModel, ManualClock, Store};
use kalify::prospect::{Consent, ConsentBasis, Prospect};
use kalify::qualification::{Authority, FactValue, Localized};
use kalify::store::MemoryStore;
use kalify::{CampaignId, Error, ErrorKind, OrgId, Result, Timestamp};

/// A model that returns queued analyses and records what it was asked.
#[derive(Debug, Default)]
struct ScriptedModel {
    analyses: Mutex<Vec<Result<Analysis>>>,
    seen: Mutex<Vec<Vec<String>>>,
    calls: AtomicUsize,
}

impl ScriptedModel {
    fn push(&self, analysis: Result<Analysis>) {
        self.analyses.lock().unwrap().push(analysis);
    }
}

#[async_trait]
impl LanguageModel for ScriptedModel {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn analyse(&self, request: &AnalysisRequest) -> Result<Analysis> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(
            request
                .new_messages
                .iter()
                .map(|line| line.text.clone())
                .collect(),
        );
        let mut queue = self.analyses.lock().unwrap();
        if queue.is_empty() {
            Ok(Analysis::empty())
        } else {
            queue.remove(0)
        }
    }

    async fn write_reply(&self, request: &ReplyRequest) -> Result<ReplyDraft> {
        Ok(ReplyDraft {
            text: kalify::reply::template_reply(request),
        })
    }
}

struct Harness {
    engine: Engine,
    store: Arc<MemoryStore>,
    sms: MemoryChannel,
    model: Arc<ScriptedModel>,
    clock: ManualClock,
    org: OrgId,
}

fn start() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn harness() -> Harness {
    let store = Arc::new(MemoryStore::new());
    let sms = MemoryChannel::new(ChannelKind::Sms);
    let model = Arc::new(ScriptedModel::default());
    let clock = ManualClock::new(start());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(model.clone())
        .with_channel(Arc::new(sms.clone()))
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    Harness {
        engine,
        store,
        sms,
        model,
        clock,
        org: OrgId::new(),
    }
}

fn campaign(org: OrgId, name: &str) -> Campaign {
    let step = |delay_hours, text: &str| Step::new(delay_hours, Localized::new(text, text));
    Campaign {
        id: CampaignId::new(),
        org_id: org,
        name: name.to_owned(),
        persona: "Acme".to_owned(),
        goal: "book a demo".to_owned(),
        channels: vec![ChannelKind::Sms],
        steps: vec![
            step(0, "Acme: hello {{ first_name }}. STOP to opt out."),
            step(24, "Acme: follow-up one. STOP to opt out."),
            step(48, "Follow-up two"),
        ],
        allow_links: false,
        status: CampaignStatus::Active,
        created_at: start(),
        settings: Default::default(),
    }
}

async fn add_prospect(h: &Harness, phone: &str, consent: bool) -> Prospect {
    let mut prospect = Prospect::new(h.org, start());
    prospect.first_name = Some("Camille".to_owned());
    prospect.phone = Some(PhoneNumber::parse(phone, Region::FR).unwrap());
    if consent {
        prospect.consents.push(Consent {
            channel: ChannelKind::Sms,
            basis: ConsentBasis::Consent,
            collected_at: start(),
            source: "test".to_owned(),
            wording_version: None,
            withdrawn_at: None,
        });
    }
    h.store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .unwrap();
    prospect
}

fn inbound(prospect: &Prospect, id: &str, text: &str, at: Timestamp) -> InboundMessage {
    InboundMessage {
        channel: ChannelKind::Sms,
        provider: "test".to_owned(),
        provider_message_id: id.to_owned(),
        from: ContactPoint::Phone(prospect.phone.clone().unwrap()),
        text: text.to_owned(),
        at,
    }
}

fn fact(key: &str, value: FactValue, quote: &str) -> ExtractedFact {
    ExtractedFact {
        key: key.to_owned(),
        value,
        quote: quote.to_owned(),
        confidence: 0.9,
    }
}

async fn enrolled(h: &Harness) -> (Prospect, Campaign) {
    let prospect = add_prospect(h, "06 12 34 56 78", true).await;
    let campaign = campaign(h.org, "spring");
    h.store.put_campaign(&campaign).await.unwrap();
    h.engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap();
    h.engine.run_due().await.unwrap();
    (prospect, campaign)
}

#[tokio::test]
async fn follow_ups_then_unresponsive() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    assert_eq!(h.sms.sent().len(), 1);
    assert_eq!(
        h.sms.sent()[0].text,
        "Acme: hello Camille. STOP to opt out."
    );

    h.clock.advance(Duration::hours(24));
    h.engine.run_due().await.unwrap();
    h.clock.advance(Duration::hours(48));
    h.engine.run_due().await.unwrap();
    let texts: Vec<String> = h.sms.sent().into_iter().map(|sent| sent.text).collect();
    // The third template lacks the sender and the STOP mention, so both are added.
    assert_eq!(
        texts,
        vec![
            "Acme: hello Camille. STOP to opt out.",
            "Acme: follow-up one. STOP to opt out.",
            "Acme: Follow-up two Reply STOP to opt out."
        ]
    );

    h.clock.advance(Duration::hours(48));
    h.engine.run_due().await.unwrap();
    let conversation = &h.store.conversations_of(h.org, prospect.id).await.unwrap()[0];
    assert_eq!(conversation.state, ConversationState::Unresponsive);
    assert_eq!(
        h.sms.sent().len(),
        3,
        "nothing is sent when the sequence ends"
    );
}

#[tokio::test]
async fn enrolling_twice_does_nothing() {
    let h = harness();
    let prospect = add_prospect(&h, "06 12 34 56 78", true).await;
    let campaign = campaign(h.org, "spring");
    h.store.put_campaign(&campaign).await.unwrap();
    let first = h
        .engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap();
    let second = h
        .engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.conversation_id, second.conversation_id);
    h.engine.run_due().await.unwrap();
    assert_eq!(h.sms.sent().len(), 1);
}

#[tokio::test]
async fn opt_out_checked_before_model() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    let report = h
        .engine
        .handle_inbound(h.org, inbound(&prospect, "m1", " Stop. ", start()))
        .await
        .unwrap();
    assert_eq!(report.state, ConversationState::OptedOut);
    assert_eq!(
        h.model.calls.load(Ordering::SeqCst),
        0,
        "the model never sees an opt-out"
    );
    let sent = h.sms.sent();
    assert_eq!(sent.len(), 2, "one confirmation after the first message");
    assert!(
        sent[1].text.contains("unsubscribed") || sent[1].text.contains("désinscription"),
        "{}",
        sent[1].text
    );

    // A second STOP sends nothing; follow-ups never fire.
    h.engine
        .handle_inbound(h.org, inbound(&prospect, "m2", "STOP", start()))
        .await
        .unwrap();
    h.clock.advance(Duration::days(10));
    h.engine.run_due().await.unwrap();
    assert_eq!(h.sms.sent().len(), 2);
    assert!(
        h.store
            .is_suppressed(h.org, &ContactPoint::Phone(prospect.phone.clone().unwrap()))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn opt_out_cancels_every_campaign() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    let other = campaign(h.org, "autumn");
    h.store.put_campaign(&other).await.unwrap();
    let enrollment = h.engine.enroll(h.org, prospect.id, other.id).await.unwrap();
    h.engine
        .handle_inbound(h.org, inbound(&prospect, "m1", "ARRÊT", start()))
        .await
        .unwrap();
    for conversation in h.store.conversations_of(h.org, prospect.id).await.unwrap() {
        assert!(
            h.store
                .pending_jobs(h.org, conversation.id)
                .await
                .unwrap()
                .is_empty(),
            "jobs left in {:?}",
            conversation.id
        );
    }
    let other_conversation = h
        .store
        .get_conversation(h.org, enrollment.conversation_id)
        .await
        .unwrap();
    assert_eq!(other_conversation.state, ConversationState::New);
    h.clock.advance(Duration::days(10));
    h.engine.run_due().await.unwrap();
    assert_eq!(
        h.sms.sent().len(),
        2,
        "first message of one campaign and the confirmation"
    );
}

#[tokio::test]
async fn duplicate_inbound_analysed_once() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    for _ in 0..10 {
        h.engine
            .handle_inbound(
                h.org,
                inbound(&prospect, "same-id", "Tell me more", start()),
            )
            .await
            .unwrap();
    }
    assert_eq!(h.model.calls.load(Ordering::SeqCst), 1);
    let conversation = &h.store.conversations_of(h.org, prospect.id).await.unwrap()[0];
    let inbound_count = h
        .store
        .list_messages(h.org, conversation.id)
        .await
        .unwrap()
        .iter()
        .filter(|message| message.direction == Direction::Inbound)
        .count();
    assert_eq!(inbound_count, 1);
}

#[tokio::test]
async fn qualifies_from_facts_with_evidence() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    let text = "Budget 20k€, I decide, we need it, start next month";
    let mut analysis = Analysis::empty();
    analysis.intent = Intent::Interested;
    analysis.facts = vec![
        fact(
            "budget",
            FactValue::Money {
                amount: 20_000.0,
                currency: "EUR".into(),
            },
            "Budget 20k€",
        ),
        fact(
            "authority",
            FactValue::Authority(Authority::DecisionMaker),
            "I decide",
        ),
        fact("need", FactValue::Bool(true), "we need it"),
        fact("timeline", FactValue::Months(1.0), "start next month"),
        // Evidence that is not in the message is dropped.
        fact(
            "invented",
            FactValue::Bool(true),
            "this quote does not exist",
        ),
    ];
    h.model.push(Ok(analysis));
    let report = h
        .engine
        .handle_inbound(h.org, inbound(&prospect, "m1", text, start()))
        .await
        .unwrap();
    assert_eq!(report.state, ConversationState::Qualified);
    assert_eq!(report.score, Some(100));
    let conversation = h
        .store
        .get_conversation(h.org, report.conversation_id)
        .await
        .unwrap();
    assert_eq!(conversation.facts.len(), 4);
    assert!(
        conversation
            .facts
            .iter()
            .all(|fact| report.message_id == Some(fact.evidence.message_id))
    );
    let stored = h.store.get_prospect(h.org, prospect.id).await.unwrap();
    assert_eq!(stored.status, ConversationState::Qualified);
    assert_eq!(stored.score.map(|score| score.value), Some(100));
}

#[tokio::test]
async fn model_failure_hands_off() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    h.model
        .push(Err(Error::new(ErrorKind::Unavailable, "model down")));
    let report = h
        .engine
        .handle_inbound(h.org, inbound(&prospect, "m1", "What is this?", start()))
        .await
        .unwrap();
    assert_eq!(report.state, ConversationState::HandedOff);
}

#[tokio::test]
async fn handed_off_ai_stays_silent() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    let mut analysis = Analysis::empty();
    analysis.intent = Intent::AsksForHuman;
    h.model.push(Ok(analysis));
    h.engine
        .handle_inbound(h.org, inbound(&prospect, "m1", "A person please", start()))
        .await
        .unwrap();
    let sent_after_handoff = h.sms.sent().len();
    h.engine
        .handle_inbound(h.org, inbound(&prospect, "m2", "Hello?", start()))
        .await
        .unwrap();
    h.clock.advance(Duration::days(5));
    h.engine.run_due().await.unwrap();
    assert_eq!(h.sms.sent().len(), sent_after_handoff);
}

#[tokio::test]
async fn clear_objection_opts_out() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    let mut analysis = Analysis::empty();
    analysis.intent = Intent::ObjectsToMessages;
    analysis.objection = Objection::Clear;
    h.model.push(Ok(analysis));
    let report = h
        .engine
        .handle_inbound(
            h.org,
            inbound(&prospect, "m1", "please stop texting me", start()),
        )
        .await
        .unwrap();
    assert_eq!(report.state, ConversationState::OptedOut);
}

#[tokio::test]
async fn pending_messages_analysed_together() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    let conversation = h
        .store
        .conversations_of(h.org, prospect.id)
        .await
        .unwrap()
        .remove(0);
    for (index, text) in ["Budget is 20k€", "and I decide"].into_iter().enumerate() {
        let message = kalify::conversation::Message {
            id: kalify::MessageId::new(),
            org_id: h.org,
            conversation_id: conversation.id,
            prospect_id: prospect.id,
            direction: Direction::Inbound,
            channel: ChannelKind::Sms,
            sender: None,
            text: text.to_owned(),
            subject: None,
            at: start() + Duration::seconds(index as i64),
            provider: Some("test".to_owned()),
            provider_message_id: Some(format!("p{index}")),
            status: kalify::conversation::DeliveryStatus::Received,
            processed: false,
        };
        h.store.insert_inbound(&message).await.unwrap();
    }
    h.engine
        .process_pending(h.org, conversation.id)
        .await
        .unwrap();
    assert_eq!(h.model.calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        h.model.seen.lock().unwrap()[0],
        vec!["Budget is 20k€".to_owned(), "and I decide".to_owned()]
    );
    assert!(
        h.store
            .pending_inbound(h.org, conversation.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn gate_blocks_without_consent() {
    let h = harness();
    let prospect = add_prospect(&h, "06 12 34 56 78", false).await;
    let campaign = campaign(h.org, "spring");
    h.store.put_campaign(&campaign).await.unwrap();
    h.engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap();
    let report = h.engine.run_due().await.unwrap();
    assert_eq!(report.sent, 0);
    assert_eq!(report.not_sent, 1);
    assert!(h.sms.sent().is_empty());
}

#[tokio::test]
async fn unknown_sender_is_kept_for_review() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    let stranger = PhoneNumber::parse("06 99 99 99 99", Region::FR).unwrap();
    let mut message = inbound(&prospect, "m1", "Bonjour, vous faites des devis ?", start());
    message.from = ContactPoint::Phone(stranger.clone());
    let report = h
        .engine
        .handle_inbound(h.org, message.clone())
        .await
        .unwrap();
    assert_eq!(
        report.state,
        ConversationState::HandedOff,
        "a member reviews the message"
    );
    assert_ne!(report.prospect_id, prospect.id);

    let created = h
        .store
        .get_prospect(h.org, report.prospect_id)
        .await
        .unwrap();
    assert_eq!(created.phone.as_ref(), Some(&stranger));
    assert_eq!(created.source.as_deref(), Some("inbound:test"));
    assert!(created.consents.is_empty(), "no consent is invented");
    let messages = h
        .store
        .list_messages(h.org, report.conversation_id)
        .await
        .unwrap();
    assert_eq!(
        messages.len(),
        1,
        "the message is stored, and the AI does not answer"
    );
    assert_eq!(messages[0].text, "Bonjour, vous faites des devis ?");
    let audit = h.store.audit_of(h.org, report.prospect_id).await.unwrap();
    assert!(audit.iter().any(|event| event.action == "unknown_sender"));
    assert_eq!(
        h.sms.sent().len(),
        1,
        "only the campaign's first message to the other prospect"
    );

    // The same sender again joins the same prospect and conversation.
    message.provider_message_id = "m2".to_owned();
    let again = h.engine.handle_inbound(h.org, message).await.unwrap();
    assert_eq!(again.prospect_id, report.prospect_id);
    assert_eq!(again.conversation_id, report.conversation_id);
}

#[tokio::test]
async fn restricted_prospect_gets_nothing() {
    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    let mut stored = h.store.get_prospect(h.org, prospect.id).await.unwrap();
    stored.restricted = true;
    h.store.update_prospect(&stored).await.unwrap();
    h.engine
        .handle_inbound(h.org, inbound(&prospect, "m1", "Tell me more", start()))
        .await
        .unwrap();
    h.clock.advance(Duration::days(5));
    h.engine.run_due().await.unwrap();
    assert_eq!(
        h.model.calls.load(Ordering::SeqCst),
        0,
        "no model call for a restricted prospect"
    );
    assert_eq!(
        h.sms.sent().len(),
        1,
        "only the first message, sent before the restriction"
    );
}

#[allow(dead_code)]
fn clock_is_object_safe(clock: &dyn Clock) -> Timestamp {
    clock.now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_drains_and_stops_on_signal() {
    let h = harness();
    let campaign = campaign(h.org, "spring");
    h.store.put_campaign(&campaign).await.unwrap();
    for index in 0..20 {
        let prospect = add_prospect(&h, &format!("06 12 34 56 {index:02}"), true).await;
        h.engine
            .enroll(h.org, prospect.id, campaign.id)
            .await
            .unwrap();
    }

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn({
        let engine = h.engine.clone();
        async move {
            let options = kalify::engine::WorkerOptions::default()
                .with_concurrency(4)
                .with_poll_interval(std::time::Duration::from_millis(20));
            engine
                .run_worker(options, async move { stopped.await.unwrap_or(()) })
                .await
        }
    });
    for _ in 0..200 {
        if h.sms.sent().len() == 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.jobs_done, 20);
    assert_eq!(report.sent, 20);
    assert_eq!(h.sms.sent().len(), 20);
    let keys: std::collections::HashSet<_> = h
        .sms
        .sent()
        .into_iter()
        .map(|sent| sent.idempotency_key)
        .collect();
    assert_eq!(keys.len(), 20, "every send has its own idempotency key");
}

#[tokio::test]
async fn enroll_matching_filters_prospects() {
    use kalify::engine::{FieldPredicate, Predicate, ProspectFilter};
    use kalify::prospect::CustomValue;

    let h = harness();
    let campaign = campaign(h.org, "spring");
    h.store.put_campaign(&campaign).await.unwrap();
    for (index, (source, seats)) in [("salon", 50.0), ("salon", 5.0), ("web", 80.0)]
        .into_iter()
        .enumerate()
    {
        let mut prospect = Prospect::new(h.org, start());
        prospect.phone =
            Some(PhoneNumber::parse(&format!("06 11 22 33 4{index}"), Region::FR).unwrap());
        prospect.source = Some(source.to_owned());
        prospect
            .custom_fields
            .insert("seats".into(), CustomValue::Number(seats));
        h.store.insert_prospects(&[prospect]).await.unwrap();
    }
    let mut unreachable = Prospect::new(h.org, start());
    unreachable.source = Some("salon".to_owned());
    unreachable
        .custom_fields
        .insert("seats".into(), CustomValue::Number(99.0));
    h.store.insert_prospects(&[unreachable]).await.unwrap();

    let filter = ProspectFilter {
        sources: vec!["salon".into()],
        custom: vec![FieldPredicate {
            field: "seats".into(),
            predicate: Predicate::AtLeast(10.0),
        }],
        ..ProspectFilter::default()
    };
    let report = h
        .engine
        .enroll_matching(h.org, campaign.id, &filter)
        .await
        .unwrap();
    assert_eq!(report.matched, 2);
    assert_eq!(report.enrolled, 1);
    assert_eq!(
        report.skipped.len(),
        1,
        "the prospect without a contact point is skipped"
    );
    let again = h
        .engine
        .enroll_matching(h.org, campaign.id, &filter)
        .await
        .unwrap();
    assert_eq!(again.enrolled, 0);
    assert_eq!(again.already_enrolled, 1);
}

#[tokio::test]
async fn paused_campaign_waits() {
    let h = harness();
    let prospect = add_prospect(&h, "06 12 34 56 78", true).await;
    let campaign = campaign(h.org, "spring");
    h.store.put_campaign(&campaign).await.unwrap();
    h.engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap();
    h.engine.pause_campaign(h.org, campaign.id).await.unwrap();
    h.engine.run_due().await.unwrap();
    assert!(h.sms.sent().is_empty());
    h.engine.resume_campaign(h.org, campaign.id).await.unwrap();
    h.clock.advance(Duration::hours(1));
    h.engine.run_due().await.unwrap();
    assert_eq!(h.sms.sent().len(), 1);
}

#[tokio::test]
async fn reply_stops_sequence_when_configured() {
    use kalify::campaign::StopCondition;

    let h = harness();
    let prospect = add_prospect(&h, "06 12 34 56 78", true).await;
    let mut campaign = campaign(h.org, "spring");
    campaign.settings.stop_on.push(StopCondition::Reply);
    h.store.put_campaign(&campaign).await.unwrap();
    h.engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap();
    h.engine.run_due().await.unwrap();
    h.engine
        .handle_inbound(h.org, inbound(&prospect, "m1", "Tell me more", start()))
        .await
        .unwrap();
    let conversation = &h.store.conversations_of(h.org, prospect.id).await.unwrap()[0];
    assert!(
        h.store
            .pending_jobs(h.org, conversation.id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn step_channel_and_required_fields() {
    use kalify::contact::EmailAddress;
    use kalify::prospect::CustomValue;

    let store = Arc::new(MemoryStore::new());
    let sms = MemoryChannel::new(ChannelKind::Sms);
    let email = MemoryChannel::new(ChannelKind::Email);
    let clock = ManualClock::new(start());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(ScriptedModel::default()))
        .with_channel(Arc::new(sms.clone()))
        .with_channel(Arc::new(email.clone()))
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let org = OrgId::new();
    let text = |text: &str| Localized::new(text, text);
    let mut campaign = campaign(org, "two channels");
    campaign.steps = vec![
        Step::new(0, text("Plan {{ custom.plan }}. STOP to opt out.")),
        Step::new(24, text("By e-mail")).on_channel(ChannelKind::Email),
    ];
    campaign.settings.required_custom_fields = vec!["plan".into()];
    campaign.validate().unwrap();
    store.put_campaign(&campaign).await.unwrap();

    let mut prospect = Prospect::new(org, start());
    prospect.phone = Some(PhoneNumber::parse("06 12 34 56 78", Region::FR).unwrap());
    prospect.email = Some(EmailAddress::parse("camille@example.com").unwrap());
    for channel in [ChannelKind::Sms, ChannelKind::Email] {
        prospect.consents.push(Consent {
            channel,
            basis: ConsentBasis::Consent,
            collected_at: start(),
            source: "test".into(),
            wording_version: None,
            withdrawn_at: None,
        });
    }
    let mut without_plan = prospect.clone();
    without_plan.id = kalify::ProspectId::new();
    without_plan.phone = Some(PhoneNumber::parse("06 12 34 56 79", Region::FR).unwrap());
    without_plan.email = None;
    prospect
        .custom_fields
        .insert("plan".into(), CustomValue::Text("pro".into()));
    store
        .insert_prospects(&[prospect.clone(), without_plan.clone()])
        .await
        .unwrap();

    let error = engine
        .enroll(org, without_plan.id, campaign.id)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(error.to_string().contains("plan"), "{error}");

    engine.enroll(org, prospect.id, campaign.id).await.unwrap();
    engine.run_due().await.unwrap();
    clock.advance(Duration::hours(24));
    engine.run_due().await.unwrap();
    assert_eq!(sms.sent().len(), 1);
    assert_eq!(sms.sent()[0].text, "Acme: Plan pro. STOP to opt out.");
    assert_eq!(email.sent().len(), 1);
    assert_eq!(email.sent()[0].text, "By e-mail");
}

#[tokio::test]
async fn simulation_sends_nothing_and_reports_deferrals() {
    use kalify::engine::ProspectFilter;
    use kalify::simulation::SimulationOptions;

    let h = harness();
    let campaign = campaign(h.org, "spring");
    h.store.put_campaign(&campaign).await.unwrap();
    add_prospect(&h, "06 12 34 56 78", true).await;
    add_prospect(&h, "06 12 34 56 79", false).await;

    // Saturday 7 March 2026 at 20:30 in Paris: the first message waits for Monday.
    let saturday_evening = Utc.with_ymd_and_hms(2026, 3, 7, 19, 30, 0).unwrap();
    let options = SimulationOptions::new(saturday_evening, 7).with_sms_price("FR", 0.04);
    let report = h
        .engine
        .simulate(h.org, campaign.id, &ProspectFilter::default(), &options)
        .await
        .unwrap();

    assert!(h.sms.sent().is_empty(), "a simulation sends nothing");
    assert_eq!(report.sends.len(), 3, "{report:#?}");
    assert_eq!(
        report.sends[0].at,
        Utc.with_ymd_and_hms(2026, 3, 9, 7, 0, 0).unwrap()
    );
    // The follow-ups fall on Sunday and then meet the daily cap, so all three move.
    assert_eq!(report.deferred.len(), 3, "{:#?}", report.deferred);
    assert!(
        report.deferred[0].reason.contains("sending hours"),
        "{:?}",
        report.deferred[0]
    );
    assert!(
        report
            .sends
            .windows(2)
            .all(|pair| pair[1].at - pair[0].at >= Duration::hours(24)),
        "{:#?}",
        report.sends
    );
    assert_eq!(
        report.blocked.len(),
        1,
        "the prospect without consent is blocked: {:?}",
        report.blocked
    );
    assert!(
        report.blocked[0].reason.contains("consent"),
        "{:?}",
        report.blocked
    );
    assert!((report.estimated_cost - 0.04 * report.sms_segments as f64).abs() < 1e-9);
}

#[tokio::test]
async fn rate_limit_counts_segments_and_retries() {
    use kalify::rate::{RateLimit, RateLimitedChannel};

    let store = Arc::new(MemoryStore::new());
    let sms = MemoryChannel::new(ChannelKind::Sms);
    let limited = RateLimitedChannel::new(
        sms.clone(),
        RateLimit::new(0.001, 2).with_max_wait(std::time::Duration::ZERO),
    );
    let clock = ManualClock::new(start());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(ScriptedModel::default()))
        .with_channel(Arc::new(limited))
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let h = Harness {
        engine: engine.clone(),
        store: store.clone(),
        sms: sms.clone(),
        model: Arc::new(ScriptedModel::default()),
        clock,
        org: OrgId::new(),
    };
    let campaign = campaign(h.org, "spring");
    store.put_campaign(&campaign).await.unwrap();
    for index in 0..4 {
        let prospect = add_prospect(&h, &format!("06 12 34 56 7{index}"), true).await;
        engine
            .enroll(h.org, prospect.id, campaign.id)
            .await
            .unwrap();
    }
    let report = engine.run_due().await.unwrap();
    // Each first message is one GSM-7 segment and the burst is two.
    assert_eq!(report.sent, 2);
    assert_eq!(
        report.retried, 2,
        "rate-limited sends go back to the outbox"
    );
    assert_eq!(sms.sent().len(), 2);
}

#[tokio::test]
async fn handoff_assigns_and_members_act() {
    use kalify::MemberId;
    use kalify::contact::EmailAddress;
    use kalify::ports::{Member, Role};

    let h = harness();
    let member = |name: &str, role| Member {
        id: MemberId::new(),
        org_id: h.org,
        name: name.to_owned(),
        email: EmailAddress::parse(&format!("{name}@acme.example")).unwrap(),
        role,
        available: true,
    };
    let alice = member("alice", Role::Member);
    let bob = member("bob", Role::Member);
    let admin = member("admin", Role::Admin);
    for m in [&alice, &bob] {
        h.store.put_member(m).await.unwrap();
    }
    let (prospect, _) = enrolled(&h).await;

    let mut analysis = Analysis::empty();
    analysis.intent = Intent::AsksForHuman;
    h.model.push(Ok(analysis));
    let report = h
        .engine
        .handle_inbound(h.org, inbound(&prospect, "m1", "A person please", start()))
        .await
        .unwrap();
    let conversation = h
        .store
        .get_conversation(h.org, report.conversation_id)
        .await
        .unwrap();
    let assigned = conversation
        .assigned_to
        .expect("a member is assigned on handoff");
    let (holder, other) = if assigned == alice.id {
        (&alice, &bob)
    } else {
        (&bob, &alice)
    };
    h.store.put_member(&admin).await.unwrap();

    let error = h
        .engine
        .member_reply(h.org, conversation.id, other.id, "Hi")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied);
    h.engine
        .member_reply(
            h.org,
            conversation.id,
            holder.id,
            "Hello, Alice from Acme here.",
        )
        .await
        .unwrap();
    assert_eq!(
        h.sms.sent().last().unwrap().text,
        "Hello, Alice from Acme here."
    );
    h.engine
        .member_reply(h.org, conversation.id, admin.id, "And the admin.")
        .await
        .unwrap();

    h.engine
        .hand_back(h.org, conversation.id, holder.id)
        .await
        .unwrap();
    let conversation = h
        .store
        .get_conversation(h.org, conversation.id)
        .await
        .unwrap();
    assert_eq!(conversation.state, ConversationState::Engaged);
    assert_eq!(conversation.assigned_to, None);

    // The first AI message after the hand-back says it is automated again.
    let mut analysis = Analysis::empty();
    analysis.intent = Intent::Interested;
    h.model.push(Ok(analysis));
    h.engine
        .handle_inbound(h.org, inbound(&prospect, "m2", "ok, go on", start()))
        .await
        .unwrap();
    let last = h.sms.sent().last().unwrap().text.clone();
    assert!(
        last.contains("Automated message") || last.contains("Message automatique"),
        "{last}"
    );

    let error = h
        .engine
        .hand_back(h.org, conversation.id, holder.id)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
}

#[tokio::test]
async fn provider_opt_out_and_bounce_events() {
    use kalify::engine::EventOutcome;
    use kalify::ports::{BounceNotice, InboundEvent, OptOutNotice};

    let h = harness();
    let (prospect, _) = enrolled(&h).await;
    let phone = ContactPoint::Phone(prospect.phone.clone().unwrap());
    let outcome = h
        .engine
        .handle_event(
            h.org,
            InboundEvent::OptOut(OptOutNotice {
                channel: ChannelKind::Sms,
                provider: "twilio".into(),
                contact: phone.clone(),
                reason: "21610".into(),
                at: start(),
            }),
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, EventOutcome::Suppressed { prospect_id: Some(id), .. } if id == prospect.id),
        "{outcome:?}"
    );
    assert!(h.store.is_suppressed(h.org, &phone).await.unwrap());
    let conversation = &h.store.conversations_of(h.org, prospect.id).await.unwrap()[0];
    assert_eq!(conversation.state, ConversationState::OptedOut);

    // A permanent bounce for an unknown address is still suppressed.
    let address =
        ContactPoint::Email(kalify::contact::EmailAddress::parse("gone@example.com").unwrap());
    let bounce = BounceNotice {
        channel: ChannelKind::Email,
        provider: "smtp".into(),
        provider_message_id: "b1".into(),
        original_message_id: None,
        recipient: Some(address.clone()),
        permanent: true,
        status_code: Some("5.1.1".into()),
        reason: "mailbox unknown".into(),
        at: start(),
    };
    h.engine
        .handle_event(h.org, InboundEvent::Bounce(bounce))
        .await
        .unwrap();
    assert!(h.store.is_suppressed(h.org, &address).await.unwrap());
}

/// An SMS channel over a [`MemoryChannel`] that can lose the provider's
/// response after the provider took the message, or stop the calling worker
/// before or after the send, and that counts lookups.
#[derive(Debug)]
struct UnreliableChannel {
    inner: MemoryChannel,
    finds_sent: bool,
    lose_answers: AtomicUsize,
    stop_before_send: std::sync::atomic::AtomicBool,
    stop_after_send: std::sync::atomic::AtomicBool,
    lookups: AtomicUsize,
    /// Lookups left to fail with a permanent error.
    fail_lookups: AtomicUsize,
    /// Sends that reached the provider, repeated keys included: the
    /// provider here de-duplicates nothing, as Twilio's API does not.
    requests: AtomicUsize,
}

impl UnreliableChannel {
    fn new(finds_sent: bool) -> Self {
        UnreliableChannel {
            inner: MemoryChannel::new(ChannelKind::Sms),
            finds_sent,
            lose_answers: AtomicUsize::new(0),
            stop_before_send: Default::default(),
            stop_after_send: Default::default(),
            lookups: AtomicUsize::new(0),
            fail_lookups: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl kalify::ports::Channel for UnreliableChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    fn provider(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> kalify::ports::ChannelCapabilities {
        kalify::ports::ChannelCapabilities::new().with_finds_sent(self.finds_sent)
    }

    async fn find_sent(
        &self,
        permit: &kalify::gate::SendPermit,
    ) -> Result<Option<kalify::ports::Receipt>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let fail = self
            .fail_lookups
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if fail {
            return Err(Error::new(
                ErrorKind::Unexpected,
                "the provider's message list is not readable",
            ));
        }
        self.inner.find_sent(permit).await
    }

    async fn send(&self, permit: &kalify::gate::SendPermit) -> Result<kalify::ports::Receipt> {
        if self.stop_before_send.swap(false, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        let receipt = self.inner.send(permit).await?;
        if self.stop_after_send.swap(false, Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let lose = self
            .lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if lose {
            return Err(Error::new(
                ErrorKind::Timeout,
                "the provider timed out before responding",
            )
            .with_retry(kalify::Retry::Permanent)
            .with_unknown_outcome());
        }
        Ok(receipt)
    }
}

struct UnreliableHarness {
    engine: Engine,
    store: Arc<MemoryStore>,
    channel: Arc<UnreliableChannel>,
    clock: ManualClock,
    org: OrgId,
}

/// Enrolls one prospect with a channel that may lose responses or stop.
async fn unreliable(finds_sent: bool) -> (UnreliableHarness, Prospect) {
    let store = Arc::new(MemoryStore::new());
    let channel = Arc::new(UnreliableChannel::new(finds_sent));
    let clock = ManualClock::new(start());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(ScriptedModel::default()))
        .with_channel(channel.clone())
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let h = Harness {
        engine: engine.clone(),
        store: store.clone(),
        sms: channel.inner.clone(),
        model: Arc::new(ScriptedModel::default()),
        clock: clock.clone(),
        org: OrgId::new(),
    };
    let prospect = add_prospect(&h, "06 12 34 56 78", true).await;
    let campaign = campaign(h.org, "spring");
    store.put_campaign(&campaign).await.unwrap();
    engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap();
    let unreliable = UnreliableHarness {
        engine,
        store,
        channel,
        clock,
        org: h.org,
    };
    (unreliable, prospect)
}

/// Returns the provider's ids recorded on the prospect's outbound messages.
async fn outbound_ids(h: &UnreliableHarness, prospect: &Prospect) -> Vec<Option<String>> {
    let conversation = &h.store.conversations_of(h.org, prospect.id).await.unwrap()[0];
    h.store
        .list_messages(h.org, conversation.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|message| message.direction == Direction::Outbound)
        .map(|message| message.provider_message_id)
        .collect()
}

/// Runs due work until the channel stops the worker, as a process killed
/// mid-delivery would: the entry keeps its lease and no outcome.
async fn run_until_stopped(h: &UnreliableHarness) {
    let stopped =
        tokio::time::timeout(std::time::Duration::from_millis(200), h.engine.run_due()).await;
    assert!(stopped.is_err(), "the run must stop in the channel");
}

#[tokio::test]
async fn lost_answer_found_not_resent() {
    let (h, prospect) = unreliable(true).await;
    h.channel.lose_answers.store(1, Ordering::SeqCst);
    let first = h.engine.run_due().await.unwrap();
    assert_eq!(
        (first.sent, first.retried),
        (0, 1),
        "a send whose outcome is unknown is retried after a lookup, not failed"
    );
    assert_eq!(h.channel.inner.sent().len(), 1);

    h.clock.advance(Duration::minutes(1));
    let second = h.engine.run_due().await.unwrap();
    assert_eq!(second.sent, 1);
    assert_eq!(h.channel.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(
        h.channel.requests.load(Ordering::SeqCst),
        1,
        "the provider already held the message, so it is not sent again"
    );
    assert_eq!(
        outbound_ids(&h, &prospect).await,
        vec![Some("mem-1".to_owned())]
    );
}

#[tokio::test]
async fn expired_lease_found_not_resent() {
    let (h, prospect) = unreliable(true).await;
    h.channel.stop_after_send.store(true, Ordering::SeqCst);
    run_until_stopped(&h).await;
    assert_eq!(h.channel.inner.sent().len(), 1);

    // Within the lease the entry stays with the stopped worker.
    let during = h.engine.run_due().await.unwrap();
    assert_eq!(during.sent, 0);
    h.clock.advance(Duration::minutes(2));
    let after = h.engine.run_due().await.unwrap();
    assert_eq!(after.sent, 1);
    assert_eq!(h.channel.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(
        h.channel.requests.load(Ordering::SeqCst),
        1,
        "the stopped worker's send reached the provider, so it is not sent again"
    );
    assert_eq!(
        outbound_ids(&h, &prospect).await,
        vec![Some("mem-1".to_owned())]
    );
}

#[tokio::test]
async fn expired_lease_unsent_sends_once() {
    let (h, prospect) = unreliable(true).await;
    h.channel.stop_before_send.store(true, Ordering::SeqCst);
    run_until_stopped(&h).await;
    assert!(h.channel.inner.sent().is_empty());

    h.clock.advance(Duration::minutes(2));
    let after = h.engine.run_due().await.unwrap();
    assert_eq!(after.sent, 1);
    assert_eq!(h.channel.lookups.load(Ordering::SeqCst), 1);
    assert_eq!(h.channel.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        outbound_ids(&h, &prospect).await,
        vec![Some("mem-1".to_owned())]
    );
}

#[tokio::test]
async fn lost_answer_without_lookup_fails() {
    let (h, _) = unreliable(false).await;
    h.channel.lose_answers.store(1, Ordering::SeqCst);
    let first = h.engine.run_due().await.unwrap();
    assert_eq!((first.sent, first.retried, first.not_sent), (0, 0, 1));
    h.clock.advance(Duration::hours(1));
    h.engine.run_due().await.unwrap();
    assert_eq!(h.channel.requests.load(Ordering::SeqCst), 1);
    assert_eq!(h.channel.lookups.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn failed_lookup_is_retried_not_sent() {
    let (h, prospect) = unreliable(true).await;
    h.channel.lose_answers.store(1, Ordering::SeqCst);
    h.channel.fail_lookups.store(1, Ordering::SeqCst);
    h.engine.run_due().await.unwrap();

    h.clock.advance(Duration::minutes(1));
    let second = h.engine.run_due().await.unwrap();
    assert_eq!(
        (second.sent, second.retried, second.not_sent),
        (0, 1, 0),
        "a failed lookup, even a permanent failure, is retried"
    );
    assert_eq!(h.channel.requests.load(Ordering::SeqCst), 1);

    h.clock.advance(Duration::minutes(5));
    let third = h.engine.run_due().await.unwrap();
    assert_eq!(third.sent, 1);
    assert_eq!(h.channel.lookups.load(Ordering::SeqCst), 2);
    assert_eq!(h.channel.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        outbound_ids(&h, &prospect).await,
        vec![Some("mem-1".to_owned())]
    );
}

#[tokio::test]
async fn exhausted_lookups_fail_without_sending() {
    let (h, prospect) = unreliable(true).await;
    h.channel.lose_answers.store(1, Ordering::SeqCst);
    h.channel.fail_lookups.store(usize::MAX, Ordering::SeqCst);
    for _ in 0..12 {
        h.engine.run_due().await.unwrap();
        h.clock.advance(Duration::hours(1));
    }
    assert_eq!(
        h.channel.requests.load(Ordering::SeqCst),
        1,
        "an entry whose lookups keep failing is never sent blind"
    );
    let conversation = &h.store.conversations_of(h.org, prospect.id).await.unwrap()[0];
    let statuses: Vec<DeliveryStatus> = h
        .store
        .list_messages(h.org, conversation.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|message| message.direction == Direction::Outbound)
        .map(|message| message.status)
        .collect();
    assert_eq!(
        statuses,
        vec![DeliveryStatus::Failed],
        "the entry fails once its attempts are spent"
    );
}

#[tokio::test]
async fn last_step_deferred_past_sequence_end_is_sent() {
    let h = harness();
    // Monday 21:00 in Paris: outside the default French sending hours.
    h.clock.advance(Duration::hours(11));
    let prospect = add_prospect(&h, "06 12 34 56 78", true).await;
    let mut campaign = campaign(h.org, "one step");
    campaign.steps.truncate(1);
    h.store.put_campaign(&campaign).await.unwrap();
    h.engine
        .enroll(h.org, prospect.id, campaign.id)
        .await
        .unwrap();
    h.engine.run_due().await.unwrap();
    assert!(
        h.sms.sent().is_empty(),
        "the gate defers the message to the morning"
    );

    // The end of the sequence comes before the morning.
    for _ in 0..3 {
        h.clock.advance(Duration::hours(1));
        h.engine.run_due().await.unwrap();
    }
    let conversation = &h.store.conversations_of(h.org, prospect.id).await.unwrap()[0];
    assert_eq!(conversation.state, ConversationState::Unresponsive);
    assert!(h.sms.sent().is_empty());

    // Tuesday 09:00 in Paris.
    h.clock.advance(Duration::hours(9));
    h.engine.run_due().await.unwrap();
    assert_eq!(
        h.sms.sent().len(),
        1,
        "the deferred last message is delivered after the sequence ended"
    );
}

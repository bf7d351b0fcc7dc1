//! Engine settings that change how a reply is handled: one-commit inbound
//! turns, fixed reply texts, final disqualification and opt-out analysis.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use kalify::analysis::{
    Analysis, AnalysisRequest, ExtractedFact, Intent, ReplyDraft, ReplyRequest,
};
use kalify::channels::MemoryChannel;
use kalify::contact::{ChannelKind, ContactPoint, PhoneNumber, Region};
use kalify::conversation::{Conversation, ConversationState, Direction, Policy};
use kalify::engine::Engine;
use kalify::ports::{InboundMessage, LanguageModel, ManualClock, Store};
use kalify::prospect::{Consent, ConsentBasis, Locale, Prospect};
use kalify::qualification::{FactValue, FixedReplies, Framework, Localized};
use kalify::store::SqliteStore;
use kalify::{OrgId, Result, Timestamp};

/// A model that returns queued analyses and counts both kinds of call.
#[derive(Debug, Default)]
struct CountingModel {
    analyses: Mutex<Vec<Analysis>>,
    analyse_calls: AtomicUsize,
    reply_calls: AtomicUsize,
}

impl CountingModel {
    fn push(&self, analysis: Analysis) {
        self.analyses.lock().unwrap().push(analysis);
    }
}

#[async_trait]
impl LanguageModel for CountingModel {
    fn name(&self) -> &str {
        "counting"
    }

    async fn analyse(&self, _request: &AnalysisRequest) -> Result<Analysis> {
        self.analyse_calls.fetch_add(1, Ordering::SeqCst);
        let mut queue = self.analyses.lock().unwrap();
        Ok(if queue.is_empty() {
            Analysis::empty()
        } else {
            queue.remove(0)
        })
    }

    async fn write_reply(&self, request: &ReplyRequest) -> Result<ReplyDraft> {
        self.reply_calls.fetch_add(1, Ordering::SeqCst);
        Ok(ReplyDraft {
            text: kalify::reply::template_reply(request),
        })
    }
}

fn start() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

struct Setup {
    engine: Engine,
    store: Arc<dyn Store>,
    model: Arc<CountingModel>,
    sms: MemoryChannel,
    org: OrgId,
    _dir: tempfile::TempDir,
}

async fn setup(framework: Framework, policy: Policy) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("kalify.db"))
            .await
            .unwrap(),
    );
    let model = Arc::new(CountingModel::default());
    let sms = MemoryChannel::new(ChannelKind::Sms);
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(model.clone())
        .with_channel(Arc::new(sms.clone()))
        .with_clock(Arc::new(ManualClock::new(start())))
        .with_framework(framework)
        .with_policy(policy)
        .build()
        .unwrap();
    Setup {
        engine,
        store,
        model,
        sms,
        org: OrgId::new(),
        _dir: dir,
    }
}

const PHONE: &str = "+33612345678";

/// Inserts a prospect with SMS consent and a conversation already contacted.
async fn contacted(s: &Setup) -> (Prospect, Conversation) {
    let mut prospect = Prospect::new(s.org, start());
    prospect.locale = Locale::Fr;
    prospect.phone = Some(PhoneNumber::parse(PHONE, Region::FR).unwrap());
    prospect.consents.push(Consent {
        channel: ChannelKind::Sms,
        basis: ConsentBasis::Consent,
        collected_at: start(),
        source: "test".into(),
        wording_version: None,
        withdrawn_at: None,
    });
    s.store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .unwrap();
    let mut conversation = Conversation::new(s.org, prospect.id, None, ChannelKind::Sms, start());
    conversation.state = ConversationState::Contacted;
    conversation.automation_disclosed = true;
    s.store
        .insert_conversation(&conversation, &[])
        .await
        .unwrap();
    (prospect, conversation)
}

fn message(id: &str, text: &str, minutes: i64) -> InboundMessage {
    InboundMessage {
        channel: ChannelKind::Sms,
        provider: "test".into(),
        provider_message_id: id.into(),
        from: ContactPoint::Phone(PhoneNumber::parse(PHONE, Region::FR).unwrap()),
        text: text.into(),
        at: start() + Duration::minutes(minutes),
    }
}

fn budget(amount: f64, quote: &str) -> Analysis {
    let mut analysis = Analysis::empty();
    analysis.intent = Intent::Interested;
    analysis.facts.push(ExtractedFact {
        key: "budget".into(),
        value: FactValue::Money {
            amount,
            currency: "EUR".into(),
        },
        quote: quote.into(),
        confidence: 0.9,
    });
    analysis
}

fn fixed_framework() -> Framework {
    let mut framework = Framework::bant();
    framework.replies.fixed = Some(FixedReplies {
        closing: Localized::new("Closing.", "Clôture."),
        qualified: Localized::new("Qualified.", "Qualifié."),
        qualified_after_question: Localized::new(
            "Qualified, and to answer you: yes.",
            "Qualifié, et oui.",
        ),
        nurture: Localized::new("Nurture.", "Suivi."),
    });
    framework
}

#[tokio::test]
async fn answer_inbound_stores_message_and_turn() {
    let s = setup(Framework::bant(), Policy::default()).await;
    let (_, conversation) = contacted(&s).await;
    s.model.push(budget(30_000.0, "30k€"));

    let report = s
        .engine
        .answer_inbound(s.org, message("SM1", "Notre budget : 30k€", 1))
        .await
        .unwrap();
    assert!(!report.duplicate);
    assert_eq!(report.conversation_id, conversation.id);
    let messages = s.store.list_messages(s.org, conversation.id).await.unwrap();
    let inbound: Vec<_> = messages
        .iter()
        .filter(|m| m.direction == Direction::Inbound)
        .collect();
    assert_eq!(inbound.len(), 1, "the message is stored once");
    assert!(
        inbound[0].processed,
        "the message is stored as processed by its turn"
    );
    assert!(
        messages.iter().any(|m| m.direction == Direction::Outbound),
        "the reply is written"
    );
    assert!(s.sms.sent().is_empty(), "the reply waits in the outbox");
    let delivery = s.engine.deliver_outbox().await.unwrap();
    assert_eq!(delivery.sent, 1);

    let again = s
        .engine
        .answer_inbound(s.org, message("SM1", "Notre budget : 30k€", 1))
        .await
        .unwrap();
    assert!(again.duplicate, "the same provider id is a duplicate");
    assert_eq!(
        s.model.analyse_calls.load(Ordering::SeqCst),
        1,
        "a duplicate is not analysed"
    );
}

#[tokio::test]
async fn fixed_replies_skip_the_model_writer() {
    let s = setup(fixed_framework(), Policy::default()).await;
    let (_, conversation) = contacted(&s).await;
    s.model.push(budget(30_000.0, "30k€"));

    s.engine
        .handle_inbound(s.org, message("SM1", "Budget 30k€", 1))
        .await
        .unwrap();
    assert_eq!(
        s.model.reply_calls.load(Ordering::SeqCst),
        0,
        "no reply is written by the model"
    );
    let sent: Vec<String> = s
        .store
        .list_messages(s.org, conversation.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .map(|m| m.text)
        .collect();
    let question = Framework::bant().criteria[1]
        .question
        .get(Locale::Fr)
        .to_owned();
    assert_eq!(
        sent,
        vec![question],
        "the next unknown criterion's question goes out as written"
    );
}

#[tokio::test]
async fn final_disqualification_keeps_the_state() {
    let policy = Policy::default().with_final_disqualification(true);
    let s = setup(Framework::bant(), policy).await;
    let (_, conversation) = contacted(&s).await;
    let mut declined = Analysis::empty();
    declined.intent = Intent::NotInterested;
    s.model.push(declined);
    s.engine
        .handle_inbound(s.org, message("SM1", "Pas intéressé", 1))
        .await
        .unwrap();
    let state = s
        .store
        .get_conversation(s.org, conversation.id)
        .await
        .unwrap()
        .state;
    assert_eq!(
        state,
        ConversationState::Closed,
        "a decline closes the conversation"
    );

    let mut asks = budget(50_000.0, "50k€");
    asks.intent = Intent::AsksForHuman;
    s.model.push(asks);
    let report = s
        .engine
        .handle_inbound(s.org, message("SM2", "Finalement 50k€, appelez-moi", 2))
        .await
        .unwrap();
    assert_eq!(
        report.state,
        ConversationState::Closed,
        "a closed conversation stays closed"
    );
    assert!(
        report.score.is_some_and(|score| score > 0),
        "the score still follows the facts"
    );
}

#[tokio::test]
async fn opt_out_analysis_follows_the_policy() {
    for analyse in [false, true] {
        let policy = Policy::default().with_analyse_opt_outs(analyse);
        let s = setup(Framework::bant(), policy).await;
        contacted(&s).await;
        let report = s
            .engine
            .handle_inbound(s.org, message("SM1", "STOP", 1))
            .await
            .unwrap();
        assert_eq!(report.state, ConversationState::OptedOut);
        let calls = s.model.analyse_calls.load(Ordering::SeqCst);
        assert_eq!(calls, usize::from(analyse), "analyse_opt_outs = {analyse}");
    }
}

#[tokio::test]
async fn missing_channel_leaves_the_message_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(dir.path().join("kalify.db"))
            .await
            .unwrap(),
    );
    let clock = ManualClock::new(start());
    let build = |channel: Option<MemoryChannel>| {
        let mut builder = Engine::builder()
            .with_store(store.clone())
            .with_model(Arc::new(CountingModel::default()))
            .with_clock(Arc::new(clock.clone()));
        if let Some(channel) = channel {
            builder = builder.with_channel(Arc::new(channel));
        }
        builder.build().unwrap()
    };
    let without = build(None);
    let s = Setup {
        engine: without.clone(),
        store: store.clone(),
        model: Arc::new(CountingModel::default()),
        sms: MemoryChannel::new(ChannelKind::Sms),
        org: OrgId::new(),
        _dir: tempfile::tempdir().unwrap(),
    };
    contacted(&s).await;
    let report = without
        .handle_inbound(s.org, message("SM1", "Bonjour", 1))
        .await
        .unwrap();
    without.deliver_outbox().await.unwrap();
    let waiting = s
        .store
        .list_messages(s.org, report.conversation_id)
        .await
        .unwrap();
    let reply = waiting
        .iter()
        .find(|m| m.direction == Direction::Outbound)
        .expect("a reply is written");
    assert_eq!(
        reply.status,
        kalify::conversation::DeliveryStatus::Pending,
        "a missing channel fails nothing; the reply waits"
    );

    let sms = MemoryChannel::new(ChannelKind::Sms);
    let with = build(Some(sms.clone()));
    clock.advance(Duration::hours(2));
    with.deliver_outbox().await.unwrap();
    assert_eq!(sms.sent().len(), 1, "a worker with the channel sends it");
    let outbound = s
        .store
        .list_messages(s.org, report.conversation_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outbound)
        .count();
    assert_eq!(outbound, 1);
}

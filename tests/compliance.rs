//! Opt-out handling through the engine: keyword variants, near-misses, and
//! an opt-out that arrives while a follow-up is being sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{Duration, TimeZone, Utc};
use kalify::ai::RulesModel;
use kalify::campaign::{Campaign, CampaignStatus, Step};
use kalify::channels::MemoryChannel;
use kalify::contact::{ChannelKind, ContactPoint, EmailAddress, PhoneNumber, Region};
use kalify::conversation::ConversationState;
use kalify::engine::Engine;
use kalify::gate::SendPermit;
use kalify::ports::{Channel, InboundMessage, ManualClock, Receipt, Store};
use kalify::prospect::{Consent, ConsentBasis, Prospect};
use kalify::qualification::Localized;
use kalify::store::MemoryStore;
use kalify::{CampaignId, OrgId, Result, Timestamp};
use tokio::sync::Notify;

fn start() -> Timestamp {
    // A Monday, 10:00 in Paris.
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

fn consent(channel: ChannelKind) -> Consent {
    Consent {
        channel,
        basis: ConsentBasis::Consent,
        collected_at: start(),
        source: "test".into(),
        wording_version: None,
        withdrawn_at: None,
    }
}

fn campaign(org: OrgId) -> Campaign {
    let step = |delay_hours, text: &str| Step::new(delay_hours, Localized::new(text, text));
    Campaign {
        id: CampaignId::new(),
        org_id: org,
        name: "spring".into(),
        persona: "Acme".into(),
        goal: "book a demo".into(),
        channels: vec![ChannelKind::Sms, ChannelKind::Email],
        steps: vec![
            step(0, "Acme: hello. STOP to opt out."),
            step(48, "Acme: following up. STOP to opt out."),
            step(72, "Acme: last message. STOP to opt out."),
        ],
        allow_links: false,
        status: CampaignStatus::Active,
        created_at: start(),
        settings: Default::default(),
    }
}

/// 17 spellings times 12 shapes: 204 opt-out messages.
fn opt_out_variants() -> Vec<String> {
    let bases = [
        "STOP",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
        "STOP SMS",
        "ARRET",
        "ARRÊT",
        "ARRETER",
        "ARRÊTER",
        "DESABONNER",
        "DÉSABONNER",
        "DESINSCRIRE",
        "DÉSINSCRIRE",
    ];
    let shapes: [fn(&str) -> String; 12] = [
        |word| word.to_owned(),
        |word| word.to_lowercase(),
        |word| {
            let lower = word.to_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        },
        |word| format!("  {word}  "),
        |word| format!("{word}."),
        |word| format!("{word}!!"),
        |word| {
            word.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        char::from_u32(c as u32 + 0xFEE0).unwrap()
                    } else {
                        c
                    }
                })
                .collect()
        },
        |word| {
            let mut chars: Vec<char> = word.chars().collect();
            chars.insert(1, '\u{200B}');
            chars.into_iter().collect()
        },
        |word| format!("\u{200F}{word}\u{FEFF}"),
        |word| format!("\u{00A0}{}\n", word.to_lowercase()),
        |word| format!("« {word} »"),
        |word| format!("\"{}\"", word.to_lowercase()),
    ];
    let mut variants = Vec::new();
    for base in bases {
        for shape in shapes {
            variants.push(shape(base));
        }
    }
    variants
}

const NEAR_MISSES: [&str; 32] = [
    "stop by tomorrow",
    "please stop by our booth on Tuesday",
    "please cancel my order",
    "non merci, pas maintenant",
    "Non merci",
    "pas intéressé pour le moment",
    "on s'arrête là pour aujourd'hui ?",
    "I can't stop thinking about your offer",
    "What's the end date of the offer?",
    "Don't stop, tell me more",
    "stopper la fuite de prospects, c'est notre objectif",
    "end of month works for me",
    "Can we cancel the meeting and reschedule?",
    "quit my old job, new company now",
    "arrêt de travail en ce moment, je reviens lundi",
    "STOPPED",
    "stops",
    "restart",
    "stop sms marketing from other companies is what I need",
    "help me understand the price",
    "info sur les tarifs ?",
    "desinscription possible plus tard ?",
    "start next month",
    "yes please",
    "Arrêtez pas, c'est intéressant",
    "unsubscribed from the newsletter by mistake, can you fix it?",
    "cancel culture is not our thing",
    "bus stop near our office",
    "STOP 2",
    "stop?? why",
    "OK pour la démo",
    "Réponse: oui",
];

struct Setup {
    engine: Engine,
    store: Arc<MemoryStore>,
    sms: MemoryChannel,
    email: MemoryChannel,
    clock: ManualClock,
    org: OrgId,
    campaign: Campaign,
}

async fn setup() -> Setup {
    let store = Arc::new(MemoryStore::new());
    let sms = MemoryChannel::new(ChannelKind::Sms);
    let email = MemoryChannel::new(ChannelKind::Email);
    let clock = ManualClock::new(start());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(RulesModel::default()))
        .with_channel(Arc::new(sms.clone()))
        .with_channel(Arc::new(email.clone()))
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let org = OrgId::new();
    let campaign = campaign(org);
    store.put_campaign(&campaign).await.unwrap();
    Setup {
        engine,
        store,
        sms,
        email,
        clock,
        org,
        campaign,
    }
}

async fn add_prospect(setup: &Setup, index: usize) -> Prospect {
    let mut prospect = Prospect::new(setup.org, start());
    prospect.phone = Some(
        PhoneNumber::parse(
            &format!(
                "+33 6 {:02} {:02} {:02} {:02}",
                10 + index / 1000,
                index / 100 % 10 + 10,
                index % 100,
                42
            ),
            Region::FR,
        )
        .unwrap(),
    );
    prospect.email = Some(EmailAddress::parse(&format!("prospect{index}@example.com")).unwrap());
    prospect.consents = vec![consent(ChannelKind::Sms), consent(ChannelKind::Email)];
    setup
        .store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .unwrap();
    prospect
}

fn sms_from(prospect: &Prospect, id: String, text: &str, at: Timestamp) -> InboundMessage {
    InboundMessage {
        channel: ChannelKind::Sms,
        provider: "test".into(),
        provider_message_id: id,
        from: ContactPoint::Phone(prospect.phone.clone().unwrap()),
        text: text.to_owned(),
        at,
    }
}

fn sent_to(setup: &Setup, prospect: &Prospect) -> usize {
    let phone = ContactPoint::Phone(prospect.phone.clone().unwrap());
    let email = ContactPoint::Email(prospect.email.clone().unwrap());
    setup
        .sms
        .sent()
        .iter()
        .filter(|sent| sent.to == phone)
        .count()
        + setup
            .email
            .sent()
            .iter()
            .filter(|sent| sent.to == email)
            .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_variants_all_honoured() {
    let setup = setup().await;
    let variants = opt_out_variants();
    assert!(variants.len() >= 200, "{} variants", variants.len());

    let mut prospects = Vec::new();
    for index in 0..variants.len() {
        let prospect = add_prospect(&setup, index).await;
        setup
            .engine
            .enroll(setup.org, prospect.id, setup.campaign.id)
            .await
            .unwrap();
        prospects.push(prospect);
    }
    setup.engine.run_due().await.unwrap();

    let mut after_first = Vec::new();
    for (index, (prospect, variant)) in prospects.iter().zip(&variants).enumerate() {
        let report = setup
            .engine
            .handle_inbound(
                setup.org,
                sms_from(
                    prospect,
                    format!("stop-{index}"),
                    variant,
                    start() + Duration::minutes(5),
                ),
            )
            .await
            .unwrap();
        assert_eq!(
            report.state,
            ConversationState::OptedOut,
            "variant {variant:?} was not an opt-out"
        );
        after_first.push(sent_to(&setup, prospect));
    }

    // Ten days later every follow-up time has passed on both channels.
    for day in 1..=10 {
        setup.clock.set(start() + Duration::days(day));
        setup.engine.run_due().await.unwrap();
    }
    for ((prospect, variant), count) in prospects.iter().zip(&variants).zip(after_first) {
        assert_eq!(
            count, 2,
            "variant {variant:?}: the first message and one confirmation"
        );
        assert_eq!(
            sent_to(&setup, prospect),
            2,
            "variant {variant:?}: a message was sent after the opt-out"
        );
        for contact in prospect.contact_points() {
            assert!(
                setup
                    .store
                    .is_suppressed(setup.org, &contact)
                    .await
                    .unwrap(),
                "variant {variant:?}: {contact:?} not suppressed"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_misses_are_not_opt_outs() {
    let setup = setup().await;
    for (index, text) in NEAR_MISSES.iter().enumerate() {
        let prospect = add_prospect(&setup, 5000 + index).await;
        setup
            .engine
            .enroll(setup.org, prospect.id, setup.campaign.id)
            .await
            .unwrap();
        setup.engine.run_due().await.unwrap();
        let report = setup
            .engine
            .handle_inbound(
                setup.org,
                sms_from(
                    &prospect,
                    format!("near-{index}"),
                    text,
                    start() + Duration::minutes(5),
                ),
            )
            .await
            .unwrap();
        assert_ne!(
            report.state,
            ConversationState::OptedOut,
            "{text:?} was taken as an opt-out"
        );
        let phone = ContactPoint::Phone(prospect.phone.clone().unwrap());
        assert!(
            !setup.store.is_suppressed(setup.org, &phone).await.unwrap(),
            "{text:?} suppressed the number"
        );
    }
}

/// A channel whose first send waits until the test releases it.
#[derive(Debug)]
struct HeldChannel {
    entered: Notify,
    release: Notify,
    holding: AtomicBool,
    returned_at: AtomicUsize,
    clock: Arc<AtomicUsize>,
    inner: MemoryChannel,
}

#[async_trait]
impl Channel for HeldChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Sms
    }

    fn provider(&self) -> &str {
        "held"
    }

    async fn send(&self, permit: &SendPermit) -> Result<Receipt> {
        if self.holding.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
            self.returned_at
                .store(self.clock.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
        }
        self.inner.send(permit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_during_send_waits_for_it() {
    let store = Arc::new(MemoryStore::new());
    let order = Arc::new(AtomicUsize::new(1));
    let channel = Arc::new(HeldChannel {
        entered: Notify::new(),
        release: Notify::new(),
        holding: AtomicBool::new(false),
        returned_at: AtomicUsize::new(0),
        clock: order.clone(),
        inner: MemoryChannel::new(ChannelKind::Sms),
    });
    let clock = ManualClock::new(start());
    let engine = Engine::builder()
        .with_store(store.clone())
        .with_model(Arc::new(RulesModel::default()))
        .with_channel(channel.clone())
        .with_clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let org = OrgId::new();
    let mut campaign = campaign(org);
    campaign.channels = vec![ChannelKind::Sms];
    store.put_campaign(&campaign).await.unwrap();
    let mut prospect = Prospect::new(org, start());
    prospect.phone = Some(PhoneNumber::parse("06 12 34 56 78", Region::FR).unwrap());
    prospect.consents = vec![consent(ChannelKind::Sms)];
    store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .unwrap();
    engine.enroll(org, prospect.id, campaign.id).await.unwrap();
    engine.run_due().await.unwrap();

    // The first follow-up is held inside the channel when STOP arrives.
    clock.set(start() + Duration::hours(48));
    channel.holding.store(true, Ordering::SeqCst);
    let delivering = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run_due().await }
    });
    channel.entered.notified().await;
    let stopping = tokio::spawn({
        let engine = engine.clone();
        let message = sms_from(
            &prospect,
            "stop".into(),
            "STOP",
            start() + Duration::hours(48),
        );
        async move {
            let report = engine.handle_inbound(org, message).await;
            (report, order.fetch_add(1, Ordering::SeqCst))
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !stopping.is_finished(),
        "the opt-out committed while the follow-up was being sent"
    );

    channel.release.notify_one();
    delivering.await.unwrap().unwrap();
    let (report, committed_at) = stopping.await.unwrap();
    assert_eq!(report.unwrap().state, ConversationState::OptedOut);
    assert!(
        channel.returned_at.load(Ordering::SeqCst) < committed_at,
        "the follow-up returned after the opt-out"
    );

    // After the opt-out: one confirmation, then nothing.
    let before = channel.inner.sent().len();
    clock.set(start() + Duration::days(10));
    engine.run_due().await.unwrap();
    assert_eq!(channel.inner.sent().len(), before);
    let texts: Vec<String> = channel
        .inner
        .sent()
        .into_iter()
        .map(|sent| sent.text)
        .collect();
    assert_eq!(texts.len(), 3, "{texts:?}");
    assert!(
        texts[2].contains("unsubscribed") || texts[2].contains("désinscription"),
        "{texts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opt_out_before_send_blocks_it() {
    let setup = setup().await;
    let prospect = add_prospect(&setup, 1).await;
    setup
        .engine
        .enroll(setup.org, prospect.id, setup.campaign.id)
        .await
        .unwrap();
    setup.engine.run_due().await.unwrap();

    // The follow-up is written to the outbox, then STOP commits before delivery.
    setup.clock.set(start() + Duration::hours(48));
    setup
        .engine
        .handle_inbound(
            setup.org,
            sms_from(
                &prospect,
                "stop".into(),
                "stop",
                start() + Duration::hours(48),
            ),
        )
        .await
        .unwrap();
    setup.engine.run_due().await.unwrap();
    assert_eq!(
        sent_to(&setup, &prospect),
        2,
        "the first message and the confirmation only"
    );
}

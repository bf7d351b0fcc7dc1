//! Builders of sample records for tests.
//!
//! Every builder returns a valid record with every field set, so that a
//! storage roundtrip checks each column. Contact points come from a
//! process-wide counter, so two prospects built here never share a phone
//! number, an e-mail address or a Messenger id.
//!
//! Times are fixed: [`time`] counts minutes from 2026-01-05 09:00 UTC, which
//! keeps tests deterministic and far from the wall clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{NaiveDate, TimeZone, Utc};

use crate::Timestamp;
use crate::campaign::{Campaign, CampaignSettings, CampaignStatus, Step, StopCondition};
use crate::contact::{ChannelKind, ContactPoint, EmailAddress, MessengerPsid, PhoneNumber};
use crate::conversation::{
    Conversation, ConversationState, DeliveryStatus, Direction, Message, ScoreBand, SendPurpose,
    Sender,
};
use crate::gate::SendingWindow;
use crate::id::{CampaignId, MemberId, MessageId, OrgId, OutboxId};
use crate::ports::{Actor, AuditEvent, Job, Member, OutboxEntry, OutboxStatus, Role, Suppression};
use crate::prospect::{Consent, ConsentBasis, CustomValue, Locale, Prospect, Version};
use crate::qualification::{
    Authority, CriterionScore, Evidence, Fact, FactValue, Localized, Score,
};

static NEXT_NUMBER: AtomicU64 = AtomicU64::new(1);

/// Returns a number not returned before in this process.
pub fn next_number() -> u64 {
    NEXT_NUMBER.fetch_add(1, Ordering::Relaxed)
}

/// Creates a fresh org id, so that a test reads only its own rows.
pub fn org() -> OrgId {
    OrgId::new()
}

/// Returns 2026-01-05 09:00 UTC plus `minutes` (negative values go back).
pub fn time(minutes: i64) -> Timestamp {
    let base = Utc
        .with_ymd_and_hms(2026, 1, 5, 9, 0, 0)
        .single()
        .unwrap_or_default();
    base + chrono::Duration::minutes(minutes)
}

/// Returns the French mobile number `+33 6 1x xx xx xx` for `n` (modulo 10^7).
pub fn phone(n: u64) -> PhoneNumber {
    PhoneNumber::from_e164(&format!("+3361{:07}", n % 10_000_000))
        .expect("the fake phone number is valid E.164")
}

/// Returns the address `prospect{n}@example.com`.
pub fn email(n: u64) -> EmailAddress {
    EmailAddress::parse(&format!("prospect{n}@example.com"))
        .expect("the fake e-mail address is valid")
}

/// Returns a 16-digit Messenger page-scoped id for `n`.
pub fn messenger(n: u64) -> MessengerPsid {
    MessengerPsid::parse(&format!("{}", 7_000_000_000_000_000_u64 + n))
        .expect("the fake PSID is valid")
}

/// Builds a score of 57 in the qualifying band, with a full breakdown.
pub fn score() -> Score {
    Score {
        value: 57,
        band: ScoreBand::Qualifying,
        breakdown: vec![
            CriterionScore {
                key: "budget".into(),
                points: 30,
                max: 30,
                value: Some(FactValue::Money {
                    amount: 30_000.0,
                    currency: "EUR".into(),
                }),
                quote: Some("budget est d'environ 30k€".into()),
            },
            CriterionScore {
                key: "authority".into(),
                points: 12,
                max: 25,
                value: Some(FactValue::Authority(Authority::NeedsApproval)),
                quote: Some("je dois valider avec ma directrice".into()),
            },
            CriterionScore {
                key: "need".into(),
                points: 0,
                max: 25,
                value: None,
                quote: None,
            },
        ],
        missing: vec!["need".into(), "timeline".into()],
        disqualified_by: None,
    }
}

/// Builds two facts (budget and timeline) quoting `message_id`.
pub fn facts(message_id: MessageId) -> Vec<Fact> {
    vec![
        Fact {
            key: "budget".into(),
            value: FactValue::Money {
                amount: 30_000.0,
                currency: "EUR".into(),
            },
            evidence: Evidence {
                message_id,
                quote: "budget est d'environ 30k€".into(),
                confidence: 0.9,
            },
            extracted_at: time(3),
        },
        Fact {
            key: "timeline".into(),
            value: FactValue::Months(2.5),
            evidence: Evidence {
                message_id,
                quote: "d'ici deux ou trois mois".into(),
                confidence: 0.75,
            },
            extracted_at: time(3),
        },
    ]
}

/// Builds a prospect of `org` with every field set: names, all three
/// contact points, a time zone, tags, custom fields of each type, consents
/// (one withdrawn), a score, an owner, and creation and update times with
/// sub-second parts.
pub fn prospect(org: OrgId) -> Prospect {
    let n = next_number();
    let mut prospect = Prospect::new(org, time(0) + chrono::Duration::nanoseconds(123_456_789));

    prospect.first_name = Some("Camille".into());
    prospect.last_name = Some("Martin".into());
    prospect.company = Some("Acme SAS".into());
    prospect.job_title = Some("Directrice commerciale".into());

    prospect.phone = Some(phone(n));
    prospect.email = Some(email(n));
    prospect.messenger = Some(messenger(n));

    prospect.locale = Locale::Fr;
    prospect.time_zone = Some(chrono_tz::Europe::Paris);
    prospect.source = Some("salon-2026.csv".into());
    prospect.tags = vec!["salon".into(), "b2b".into()];

    prospect.custom_fields = BTreeMap::from([
        ("plan".to_owned(), CustomValue::Text("pro".into())),
        ("seats".to_owned(), CustomValue::Number(12.5)),
        ("renewal".to_owned(), CustomValue::Bool(true)),
        (
            "renewal_date".to_owned(),
            CustomValue::Date(NaiveDate::from_ymd_opt(2026, 3, 31).unwrap_or_default()),
        ),
    ]);

    prospect.status = ConversationState::Qualifying;
    prospect.score = Some(score());
    prospect.owner = Some(MemberId::new());

    prospect.consents = vec![
        Consent {
            channel: ChannelKind::Sms,
            basis: ConsentBasis::Consent,
            collected_at: time(-60 * 24),
            source: "web form".into(),
            wording_version: Some("2025-11".into()),
            withdrawn_at: None,
        },
        Consent {
            channel: ChannelKind::Email,
            basis: ConsentBasis::LegitimateInterest,
            collected_at: time(-60 * 24 * 7),
            source: "salon-2026.csv".into(),
            wording_version: None,
            withdrawn_at: Some(time(-60)),
        },
    ];

    prospect.updated_at = time(5) + chrono::Duration::nanoseconds(987_654_321);
    prospect.version = Version(0);
    prospect
}

/// Builds a prospect of `org` with only an id, a phone number and the defaults.
pub fn minimal_prospect(org: OrgId) -> Prospect {
    let mut prospect = Prospect::new(org, time(0));
    prospect.phone = Some(phone(next_number()));
    prospect
}

/// Builds an active two-step SMS and e-mail campaign of `org`.
pub fn campaign(org: OrgId) -> Campaign {
    Campaign {
        id: CampaignId::new(),
        org_id: org,
        name: "Salon 2026 follow-up".into(),
        persona: "Léa from Acme".into(),
        goal: "book a demo".into(),
        channels: vec![ChannelKind::Sms, ChannelKind::Email],
        steps: vec![
            Step::new(
                0,
                Localized::new(
                    "Hi {{ first_name }}, {{ sender }} here. Can I ask two questions?",
                    "Bonjour {{ first_name }}, ici {{ sender }}. Puis-je vous poser deux questions ?",
                ),
            ),
            Step::new(
                48,
                Localized::new(
                    "Any thoughts, {{ first_name }}?",
                    "Un avis, {{ first_name }} ?",
                ),
            ),
        ],
        allow_links: false,
        status: CampaignStatus::Active,
        created_at: time(-60),
        // Every setting differs from its default, so a store that drops
        // one fails the roundtrip case.
        settings: CampaignSettings {
            stop_on: vec![StopCondition::Reply, StopCondition::OptOut],
            window: Some(SendingWindow {
                days: vec![chrono::Weekday::Mon, chrono::Weekday::Thu],
                start: chrono::NaiveTime::from_hms_opt(9, 30, 0).unwrap_or_default(),
                end: chrono::NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default(),
            }),
            required_custom_fields: vec!["plan".into()],
        },
    }
}

/// Builds a conversation of `prospect` on SMS with every field set: facts, a
/// score, one attempt sent, an assigned member and a last inbound time.
pub fn conversation(prospect: &Prospect, campaign: Option<CampaignId>) -> Conversation {
    let mut conversation = Conversation::new(
        prospect.org_id,
        prospect.id,
        campaign,
        ChannelKind::Sms,
        time(1),
    );
    conversation.state = ConversationState::Contacted;
    conversation.facts = facts(MessageId::new());
    conversation.score = Some(score());
    conversation.attempts_sent = 1;
    conversation.automation_disclosed = true;
    conversation.assigned_to = Some(MemberId::new());
    conversation.updated_at = time(2);
    conversation.last_inbound_at = Some(time(2));
    conversation
}

/// Builds an unprocessed inbound SMS of `conversation` received at `at`,
/// carried by provider `twilio` under `provider_message_id`.
pub fn inbound(conversation: &Conversation, provider_message_id: &str, at: Timestamp) -> Message {
    Message {
        id: MessageId::new(),
        org_id: conversation.org_id,
        conversation_id: conversation.id,
        prospect_id: conversation.prospect_id,
        direction: Direction::Inbound,
        channel: ChannelKind::Sms,
        sender: None,
        text: "Notre budget est d'environ 30k€.".into(),
        subject: None,
        at,
        provider: Some("twilio".into()),
        provider_message_id: Some(provider_message_id.to_owned()),
        status: DeliveryStatus::Received,
        processed: false,
    }
}

/// Builds a pending outbound e-mail of `conversation` written by the AI at `at`.
pub fn outbound(conversation: &Conversation, at: Timestamp) -> Message {
    Message {
        id: MessageId::new(),
        org_id: conversation.org_id,
        conversation_id: conversation.id,
        prospect_id: conversation.prospect_id,
        direction: Direction::Outbound,
        channel: ChannelKind::Email,
        sender: Some(Sender::Ai),
        text: "Merci ! Qui d'autre participe à la décision ?".into(),
        subject: Some("Votre projet".into()),
        at,
        provider: None,
        provider_message_id: None,
        status: DeliveryStatus::Pending,
        processed: false,
    }
}

/// Builds a pending outbox entry that delivers `message` to `to`, due at the
/// message's time.
pub fn outbox_entry(message: &Message, to: ContactPoint) -> OutboxEntry {
    OutboxEntry {
        id: OutboxId::new(),
        org_id: message.org_id,
        conversation_id: message.conversation_id,
        prospect_id: message.prospect_id,
        message_id: message.id,
        channel: message.channel,
        to,
        text: message.text.clone(),
        subject: message.subject.clone(),
        purpose: SendPurpose::Outreach { attempt: 1 },
        sender: message.sender.unwrap_or(Sender::Ai),
        sender_name: "Léa from Acme".into(),
        campaign_id: Some(CampaignId::new()),
        idempotency_key: format!("outbox:{}", message.id),
        next_attempt_at: message.at,
        attempts: 0,
        unconfirmed: false,
        first_attempt_at: None,
        status: OutboxStatus::Pending,
    }
}

/// Builds follow-up job `attempt` of `conversation`, due at `due_at`.
///
/// The dedupe key depends on the conversation id, its version and `attempt`,
/// so two calls with the same three values schedule one job.
pub fn job(conversation: &Conversation, attempt: u32, due_at: Timestamp) -> Job {
    Job::follow_up(conversation, attempt, due_at)
}

/// Builds an available admin member of `org`.
pub fn member(org: OrgId) -> Member {
    let n = next_number();
    Member {
        id: MemberId::new(),
        org_id: org,
        name: format!("Member {n}"),
        email: EmailAddress::parse(&format!("member{n}@example.com"))
            .expect("the fake e-mail address is valid"),
        role: Role::Admin,
        available: true,
    }
}

/// Builds a system audit event about `conversation` and its prospect.
pub fn audit(conversation: &Conversation, action: &str, at: Timestamp) -> AuditEvent {
    AuditEvent {
        org_id: conversation.org_id,
        prospect_id: Some(conversation.prospect_id),
        conversation_id: Some(conversation.id),
        action: action.to_owned(),
        actor: Actor::System,
        detail: "contacted -> qualifying".into(),
        at,
    }
}

/// Builds an opt-out suppression of `contact` in `org`.
pub fn suppression(org: OrgId, contact: ContactPoint, at: Timestamp) -> Suppression {
    Suppression {
        org_id: org,
        contact,
        reason: "opt_out".into(),
        at,
    }
}

//! Sending hours over every hour of a year, checked against an oracle that
//! lists each rule's days and hours by hand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use kalify_core::contact::{ChannelKind, ContactPoint, PhoneNumber, Region};
use kalify_core::conversation::{SendPurpose, Sender};
use kalify_core::gate::{Gate, GatePolicy, GateRequest, Verdict};
use kalify_core::ports::{OutboxEntry, OutboxStatus};
use kalify_core::prospect::{Consent, ConsentBasis, CustomValue, Prospect};
use kalify_core::{ConversationId, MessageId, OrgId, OutboxId, Timestamp};

/// Public holidays of 2026 and New Year's Day 2027, written out by hand.
fn holidays_2026(area: &str) -> Vec<NaiveDate> {
    let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    let mut days = vec![
        day(1, 1),
        day(4, 6),
        day(5, 1),
        day(5, 8),
        day(5, 14),
        day(5, 25),
        day(7, 14),
        day(8, 15),
        day(11, 1),
        day(11, 11),
        day(12, 25),
        NaiveDate::from_ymd_opt(2027, 1, 1).unwrap(),
    ];
    match area {
        "alsace" => days.extend([day(4, 3), day(12, 26)]),
        "reunion" => days.push(day(12, 20)),
        _ => {}
    }
    days
}

#[derive(Clone, Copy)]
enum Oracle {
    France(&'static str, Tz),
    Us(&'static [Tz]),
}

impl Oracle {
    fn allows(&self, at: Timestamp) -> bool {
        match self {
            Oracle::France(area, zone) => {
                let local = at.with_timezone(zone);
                local.weekday() != Weekday::Sun
                    && (8..20).contains(&local.hour())
                    && !holidays_2026(area).contains(&local.date_naive())
            }
            Oracle::Us(zones) => zones
                .iter()
                .all(|zone| (8..21).contains(&at.with_timezone(zone).hour())),
        }
    }
}

const ALL_US: &[Tz] = &[
    chrono_tz::America::New_York,
    chrono_tz::America::Chicago,
    chrono_tz::America::Denver,
    chrono_tz::America::Phoenix,
    chrono_tz::America::Los_Angeles,
    chrono_tz::America::Anchorage,
    chrono_tz::Pacific::Honolulu,
];
const LOS_ANGELES: &[Tz] = &[chrono_tz::America::Los_Angeles];

fn prospect(phone: &str, zone: Option<Tz>, postal_code: Option<&str>) -> Prospect {
    let mut prospect = Prospect::new(OrgId::new(), Utc::now());
    prospect.phone = Some(PhoneNumber::parse(phone, Region::FR).unwrap());
    prospect.time_zone = zone;
    if let Some(code) = postal_code {
        prospect
            .custom_fields
            .insert("postal_code".into(), CustomValue::Text(code.into()));
    }
    prospect.consents.push(Consent {
        channel: ChannelKind::Sms,
        basis: ConsentBasis::Consent,
        collected_at: Utc::now(),
        source: "test".into(),
        wording_version: None,
        withdrawn_at: None,
    });
    prospect
}

fn entry(prospect: &Prospect, purpose: SendPurpose) -> OutboxEntry {
    OutboxEntry {
        id: OutboxId::new(),
        org_id: prospect.org_id,
        conversation_id: ConversationId::new(),
        prospect_id: prospect.id,
        message_id: MessageId::new(),
        channel: ChannelKind::Sms,
        to: ContactPoint::Phone(prospect.phone.clone().unwrap()),
        text: "Hello".into(),
        subject: None,
        purpose,
        sender: Sender::Campaign,
        sender_name: "Acme".into(),
        campaign_id: None,
        idempotency_key: "k".into(),
        next_attempt_at: Utc::now(),
        attempts: 0,
        unconfirmed: false,
        first_attempt_at: None,
        status: OutboxStatus::Pending,
    }
}

fn evaluate(gate: &Gate, prospect: &Prospect, purpose: SendPurpose, now: Timestamp) -> Verdict {
    gate.evaluate(GateRequest {
        prospect,
        entry: entry(prospect, purpose),
        suppressed: false,
        now,
        last_inbound_at: None,
        recent_outreach: &[],
        window: None,
    })
}

#[test]
fn every_hour_of_a_year_respects_sending_hours() {
    let gate = Gate::new(GatePolicy::default());
    let cases = [
        (
            "Paris, department unknown",
            prospect("06 12 34 56 78", None, None),
            Oracle::France("alsace", chrono_tz::Europe::Paris),
        ),
        (
            "Strasbourg",
            prospect(
                "06 12 34 56 78",
                Some(chrono_tz::Europe::Paris),
                Some("67000"),
            ),
            Oracle::France("alsace", chrono_tz::Europe::Paris),
        ),
        (
            "Lyon",
            prospect("06 12 34 56 78", None, Some("69003")),
            Oracle::France("metropolitan", chrono_tz::Europe::Paris),
        ),
        (
            "Réunion",
            prospect("+262 692 12 34 56", None, None),
            Oracle::France("reunion", chrono_tz::Indian::Reunion),
        ),
        (
            "US, zone unknown",
            prospect("+1 415 555 0132", None, None),
            Oracle::Us(ALL_US),
        ),
        (
            "US, Los Angeles",
            prospect(
                "+1 415 555 0132",
                Some(chrono_tz::America::Los_Angeles),
                None,
            ),
            Oracle::Us(LOS_ANGELES),
        ),
    ];
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    for (name, prospect, oracle) in &cases {
        let mut sent = 0;
        let mut deferred = 0;
        for hour in 0..(365 * 24) {
            // Check on the hour and at a quarter past, so openings and
            // closings that fall between whole UTC hours are covered.
            for minutes in [0, 15, 45] {
                let now = start + Duration::hours(hour) + Duration::minutes(minutes);
                match evaluate(&gate, prospect, SendPurpose::Outreach { attempt: 0 }, now) {
                    Verdict::Permit(_) => {
                        assert!(
                            oracle.allows(now),
                            "{name}: sent at {now}, outside the sending hours"
                        );
                        sent += 1;
                    }
                    Verdict::Defer { until, .. } => {
                        assert!(
                            !oracle.allows(now),
                            "{name}: deferred at {now}, inside the sending hours"
                        );
                        assert!(until > now, "{name}: deferred to the past");
                        assert!(
                            oracle.allows(until),
                            "{name}: deferred from {now} to {until}, which is closed too"
                        );
                        let mut probe = now + Duration::minutes(15 - i64::from(now.minute()) % 15);
                        while probe < until {
                            assert!(
                                !oracle.allows(probe),
                                "{name}: deferred from {now} to {until}, past the open slot {probe}"
                            );
                            probe += Duration::minutes(15);
                        }
                        deferred += 1;
                    }
                    Verdict::Block(error) => panic!("{name}: blocked at {now}: {error}"),
                }
            }
        }
        assert!(
            sent > 0 && deferred > 0,
            "{name}: {sent} sent, {deferred} deferred"
        );
    }
}

#[test]
fn daylight_saving_days_are_handled() {
    let gate = Gate::new(GatePolicy::default());
    let paris = prospect("06 12 34 56 78", None, None);
    // 29 March 2026: Paris moves to UTC+2, so 08:00 local is 06:00 UTC.
    let at = |h, m| Utc.with_ymd_and_hms(2026, 3, 30, h, m, 0).unwrap();
    assert!(matches!(
        evaluate(
            &gate,
            &paris,
            SendPurpose::Outreach { attempt: 0 },
            at(6, 0)
        ),
        Verdict::Permit(_)
    ));
    assert!(matches!(
        evaluate(
            &gate,
            &paris,
            SendPurpose::Outreach { attempt: 0 },
            at(5, 45)
        ),
        Verdict::Defer { .. }
    ));
    // 25 October 2026: back to UTC+1, so 08:00 local is 07:00 UTC.
    let at = |h, m| Utc.with_ymd_and_hms(2026, 10, 26, h, m, 0).unwrap();
    assert!(matches!(
        evaluate(
            &gate,
            &paris,
            SendPurpose::Outreach { attempt: 0 },
            at(6, 30)
        ),
        Verdict::Defer { .. }
    ));
    assert!(matches!(
        evaluate(
            &gate,
            &paris,
            SendPurpose::Outreach { attempt: 0 },
            at(7, 0)
        ),
        Verdict::Permit(_)
    ));
}

#[test]
fn transactional_sends_ignore_hours() {
    let gate = Gate::new(GatePolicy::default());
    let paris = prospect("06 12 34 56 78", None, None);
    let sunday_night: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 8, 23, 0, 0).unwrap();
    assert!(matches!(
        evaluate(&gate, &paris, SendPurpose::OptOutConfirmation, sunday_night),
        Verdict::Permit(_)
    ));
    assert!(matches!(
        evaluate(&gate, &paris, SendPurpose::Reply, sunday_night),
        Verdict::Defer { .. }
    ));
}

#[test]
fn frequency_cap_defers_to_next_slot() {
    let gate = Gate::new(GatePolicy::default().with_frequency_caps(1, 4));
    let paris = prospect("06 12 34 56 78", None, None);
    let now = Utc.with_ymd_and_hms(2026, 3, 3, 10, 0, 0).unwrap();
    let earlier = [now - Duration::hours(2)];
    let verdict = gate.evaluate(GateRequest {
        prospect: &paris,
        entry: entry(&paris, SendPurpose::Outreach { attempt: 1 }),
        suppressed: false,
        now,
        last_inbound_at: None,
        recent_outreach: &earlier,
        window: None,
    });
    match verdict {
        Verdict::Defer { until, reason } => {
            assert_eq!(until, earlier[0] + Duration::hours(24));
            assert!(reason.contains("frequency"), "{reason}");
        }
        other => panic!("expected a deferral, got {other:?}"),
    }
}

//! Dry runs of a campaign: what would be sent, when, on which channel and
//! at what estimated cost, with the sends the gate would defer or block.
//! Nothing is sent and nothing is written.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{Duration, NaiveDate};
use serde::Serialize;

use crate::Timestamp;
use crate::campaign::Campaign;
use crate::contact::{ChannelKind, ContactPoint};
use crate::conversation::{SendPurpose, Sender};
use crate::gate::{Gate, GatePolicy, GateRequest, Jurisdiction, Verdict, add_business_days};
use crate::id::{ConversationId, MessageId, OutboxId, ProspectId};
use crate::ports::{OutboxEntry, OutboxStatus};
use crate::prospect::Prospect;

/// Settings of a simulation.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SimulationOptions {
    /// When the prospects are enrolled.
    pub start: Timestamp,
    /// How many days to simulate.
    pub days: u32,
    /// The gate settings to apply.
    pub gate_policy: GatePolicy,
    /// SMS price per segment by region code (such as `FR`); an estimate.
    pub sms_price_per_segment: HashMap<String, f64>,
    /// SMS price per segment for regions not in the table.
    pub default_sms_price: f64,
    /// The currency of the prices.
    pub currency: String,
}

impl SimulationOptions {
    /// Simulates `days` days from `start` with the default gate and an
    /// illustrative price of 0.05 EUR per SMS segment (set real prices with
    /// [`SimulationOptions::with_sms_price`]).
    pub fn new(start: Timestamp, days: u32) -> Self {
        SimulationOptions {
            start,
            days,
            gate_policy: GatePolicy::default(),
            sms_price_per_segment: HashMap::new(),
            default_sms_price: 0.05,
            currency: "EUR".to_owned(),
        }
    }

    /// Sets the SMS price per segment for a region code, such as `FR`.
    pub fn with_sms_price(mut self, region: &str, price: f64) -> Self {
        self.sms_price_per_segment
            .insert(region.to_ascii_uppercase(), price);
        self
    }

    /// Sets the gate settings.
    pub fn with_gate_policy(mut self, policy: GatePolicy) -> Self {
        self.gate_policy = policy;
        self
    }
}

/// One send of the simulation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimulatedSend {
    /// The prospect.
    pub prospect_id: ProspectId,
    /// The campaign step, 0 for the first message.
    pub step: u32,
    /// The channel.
    pub channel: ChannelKind,
    /// When it would leave.
    pub at: Timestamp,
    /// SMS segments (0 for other channels).
    pub segments: usize,
}

/// A send the gate would move later.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimulatedDeferral {
    /// The prospect.
    pub prospect_id: ProspectId,
    /// The campaign step.
    pub step: u32,
    /// When the step was due.
    pub due: Timestamp,
    /// When the gate lets it leave.
    pub until: Timestamp,
    /// Why.
    pub reason: String,
}

/// A prospect the simulation could not reach, or a step the gate would block.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimulatedBlock {
    /// The prospect.
    pub prospect_id: ProspectId,
    /// The step, when a step was blocked.
    pub step: Option<u32>,
    /// Why.
    pub reason: String,
}

/// The outcome of a dry run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SimulationReport {
    /// Sends per day (UTC) and channel.
    pub per_day: BTreeMap<NaiveDate, BTreeMap<ChannelKind, usize>>,
    /// Every send, in time order.
    pub sends: Vec<SimulatedSend>,
    /// SMS segments in all.
    pub sms_segments: usize,
    /// Estimated SMS cost.
    pub estimated_cost: f64,
    /// The currency of the cost.
    pub currency: String,
    /// Sends the gate deferred, with the reason.
    pub deferred: Vec<SimulatedDeferral>,
    /// Prospects or steps that would not be sent.
    pub blocked: Vec<SimulatedBlock>,
}

/// Simulates `campaign` over `prospects` as if nobody replied.
///
/// It follows the engine's rules: step `n` is due one delay after step
/// `n - 1` was due, and the gate then moves it to the next allowed slot.
/// `suppressed` lists the contact points on the suppression list.
pub fn simulate(
    campaign: &Campaign,
    prospects: &[Prospect],
    suppressed: &HashSet<ContactPoint>,
    options: &SimulationOptions,
) -> SimulationReport {
    let gate = Gate::new(options.gate_policy.clone());
    let end = options.start + Duration::days(i64::from(options.days));
    let mut report = SimulationReport {
        currency: options.currency.clone(),
        ..SimulationReport::default()
    };

    for prospect in prospects {
        if let Err(error) = campaign.check_prospect(prospect) {
            report.blocked.push(SimulatedBlock {
                prospect_id: prospect.id,
                step: None,
                reason: error.message().to_owned(),
            });
            continue;
        }
        let default_channel = campaign.channels.iter().copied().find(|channel| {
            prospect
                .contact_for(*channel)
                .is_some_and(|contact| !suppressed.contains(&contact))
        });
        let Some(default_channel) = default_channel else {
            report.blocked.push(SimulatedBlock {
                prospect_id: prospect.id,
                step: None,
                reason: "no usable contact point on the campaign's channels".to_owned(),
            });
            continue;
        };
        let jurisdiction = Jurisdiction::of(prospect);
        let mut sent_times: Vec<Timestamp> = Vec::new();
        let mut due = options.start;

        for (index, step) in campaign.steps.iter().enumerate() {
            let step_number = u32::try_from(index).unwrap_or(u32::MAX);
            due = match step.business_days {
                Some(days) => add_business_days(due, days.max(u32::from(index > 0)), &jurisdiction),
                None => due + Duration::hours(i64::from(step.delay_hours)),
            };
            if due >= end {
                break;
            }
            let channel = step
                .channel
                .filter(|channel| prospect.contact_for(*channel).is_some())
                .unwrap_or(default_channel);
            let Some(to) = prospect.contact_for(channel) else {
                continue;
            };
            let text = match campaign.render(index, prospect, prospect.locale) {
                Ok(text) if channel == ChannelKind::Sms => {
                    crate::campaign::with_sms_mentions(&text, &campaign.persona, prospect.locale)
                }
                Ok(text) => text,
                Err(error) => {
                    report.blocked.push(SimulatedBlock {
                        prospect_id: prospect.id,
                        step: Some(step_number),
                        reason: error.message().to_owned(),
                    });
                    break;
                }
            };

            let mut at = due;
            let mut first_deferral = None;
            // The gate runs again at each deferred time, as delivery does;
            // eight rounds cover a frequency cap followed by closed hours.
            let outcome = loop {
                let entry =
                    simulated_entry(prospect, channel, to.clone(), text.clone(), step_number, at);
                let verdict = gate.evaluate(GateRequest {
                    prospect,
                    entry,
                    suppressed: suppressed.contains(&to),
                    now: at,
                    last_inbound_at: None,
                    recent_outreach: &sent_times,
                    window: campaign.settings.window.as_ref(),
                });
                match verdict {
                    Verdict::Permit(_) => break Ok(at),
                    Verdict::Defer { until, reason } => {
                        first_deferral.get_or_insert(reason);
                        if until <= at || until > end + Duration::days(31) {
                            break Err(reason.to_owned());
                        }
                        at = until;
                    }
                    Verdict::Block(error) => break Err(error.message().to_owned()),
                }
            };
            match outcome {
                Ok(at) => {
                    if let Some(reason) = first_deferral {
                        report.deferred.push(SimulatedDeferral {
                            prospect_id: prospect.id,
                            step: step_number,
                            due,
                            until: at,
                            reason: reason.to_owned(),
                        });
                    }
                    if at >= end {
                        break;
                    }
                    sent_times.push(at);
                    let segments = if channel == ChannelKind::Sms {
                        crate::sms::segments(&text).segments
                    } else {
                        0
                    };
                    if channel == ChannelKind::Sms {
                        let region = prospect
                            .phone
                            .as_ref()
                            .and_then(|phone| phone.region())
                            .map(|region| region.code().to_owned());
                        let price = region
                            .and_then(|code| options.sms_price_per_segment.get(&code).copied())
                            .unwrap_or(options.default_sms_price);
                        report.sms_segments += segments;
                        report.estimated_cost += price * segments as f64;
                    }
                    *report
                        .per_day
                        .entry(at.date_naive())
                        .or_default()
                        .entry(channel)
                        .or_default() += 1;
                    report.sends.push(SimulatedSend {
                        prospect_id: prospect.id,
                        step: step_number,
                        channel,
                        at,
                        segments,
                    });
                }
                Err(reason) => {
                    report.blocked.push(SimulatedBlock {
                        prospect_id: prospect.id,
                        step: Some(step_number),
                        reason,
                    });
                    break;
                }
            }
        }
    }
    report.sends.sort_by_key(|send| send.at);
    report
}

fn simulated_entry(
    prospect: &Prospect,
    channel: ChannelKind,
    to: ContactPoint,
    text: String,
    step: u32,
    at: Timestamp,
) -> OutboxEntry {
    OutboxEntry {
        id: OutboxId::new(),
        org_id: prospect.org_id,
        conversation_id: ConversationId::new(),
        prospect_id: prospect.id,
        message_id: MessageId::new(),
        channel,
        to,
        text,
        subject: None,
        purpose: SendPurpose::Outreach { attempt: step },
        sender: Sender::Campaign,
        sender_name: String::new(),
        campaign_id: None,
        idempotency_key: String::new(),
        next_attempt_at: at,
        attempts: 0,
        unconfirmed: false,
        first_attempt_at: None,
        status: OutboxStatus::Pending,
    }
}

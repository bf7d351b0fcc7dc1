//! The compliance gate: the only way to obtain a [`SendPermit`].

mod holidays;
mod hours;

use std::fmt;

use chrono::Duration;

pub use holidays::{FrenchArea, easter_sunday, french_holidays, is_french_holiday};
pub use hours::{HoursRule, Jurisdiction, SendingWindow, ZoneRule, ZoneSource, add_business_days};

use crate::Timestamp;
use crate::contact::ChannelKind;
use crate::conversation::{SendPurpose, Sender};
use crate::error::{Error, ErrorKind, Result};
use crate::ports::OutboxEntry;
use crate::prospect::{ConsentBasis, Prospect};

/// Proof that a send passed the gate. Only [`Gate::check`] creates one, and
/// channels accept nothing else. `Debug` omits the text and the recipient.
#[derive(Clone)]
pub struct SendPermit {
    entry: OutboxEntry,
    checked_at: Timestamp,
}

impl SendPermit {
    /// The send intent the permit covers.
    pub fn entry(&self) -> &OutboxEntry {
        &self.entry
    }

    /// When the gate passed it.
    pub fn checked_at(&self) -> Timestamp {
        self.checked_at
    }
}

impl fmt::Debug for SendPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendPermit")
            .field("entry", &self.entry)
            .field("checked_at", &self.checked_at)
            .finish()
    }
}

/// Settings of the gate. The defaults follow the rules kalify enforces for
/// France, its first market; each can be changed here.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatePolicy {
    /// Require an active consent or legitimate-interest record for the
    /// channel before any marketing send.
    pub require_consent: bool,
    /// Channels whose marketing sends obey the sending hours of the
    /// prospect's jurisdiction (default: SMS).
    pub quiet_hours_channels: Vec<ChannelKind>,
    /// The maximum campaign messages per prospect in any 24 hours (default 1).
    pub max_outreach_per_day: u32,
    /// The maximum campaign messages per prospect in any 7 days (default 4).
    pub max_outreach_per_week: u32,
    /// How long after the prospect's last Messenger message the AI and
    /// campaigns may write (Meta's standard window: 24 hours).
    pub messenger_window: Duration,
    /// How long a member may still reply on Messenger with the `HUMAN_AGENT`
    /// tag (7 days).
    pub messenger_human_agent_window: Duration,
}

impl Default for GatePolicy {
    fn default() -> Self {
        GatePolicy {
            require_consent: true,
            quiet_hours_channels: vec![ChannelKind::Sms],
            max_outreach_per_day: 1,
            max_outreach_per_week: 4,
            messenger_window: Duration::hours(24),
            messenger_human_agent_window: Duration::days(7),
        }
    }
}

impl GatePolicy {
    /// Sets whether a recorded basis is required.
    pub fn with_require_consent(mut self, required: bool) -> Self {
        self.require_consent = required;
        self
    }

    /// Sets the channels that obey sending hours; an empty list turns quiet hours off.
    pub fn with_quiet_hours_channels(mut self, channels: Vec<ChannelKind>) -> Self {
        self.quiet_hours_channels = channels;
        self
    }

    /// Sets the frequency caps on campaign messages.
    pub fn with_frequency_caps(mut self, per_day: u32, per_week: u32) -> Self {
        self.max_outreach_per_day = per_day;
        self.max_outreach_per_week = per_week;
        self
    }
}

/// Everything the gate reads about one send.
#[derive(Clone, Debug)]
pub struct GateRequest<'a> {
    /// The prospect, as stored now.
    pub prospect: &'a Prospect,
    /// The send intent.
    pub entry: OutboxEntry,
    /// Whether the recipient is on the suppression list.
    pub suppressed: bool,
    /// The time of the check.
    pub now: Timestamp,
    /// When the prospect last wrote in this conversation.
    pub last_inbound_at: Option<Timestamp>,
    /// When campaign messages were last sent to the prospect, in any order.
    pub recent_outreach: &'a [Timestamp],
    /// The campaign's own sending window, if any.
    pub window: Option<&'a SendingWindow>,
}

/// The gate's answer.
#[derive(Debug)]
pub enum Verdict {
    /// Send now.
    Permit(Box<SendPermit>),
    /// Not now: try again at `until`, the next slot the rules allow.
    Defer {
        /// The next allowed instant.
        until: Timestamp,
        /// Why, without personal data.
        reason: &'static str,
    },
    /// Never: the error says why.
    Block(Error),
}

/// Checks every send against the prospect's rights and records.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    policy: GatePolicy,
}

impl Gate {
    /// Creates a gate.
    pub fn new(policy: GatePolicy) -> Self {
        Gate { policy }
    }

    /// Decides on one send: permit it, defer it to the next open slot, or block it.
    ///
    /// Checks run in this order: restriction, ownership of the recipient,
    /// then for non-transactional sends suppression, objection and consent
    /// basis (blocks), the Messenger window (block), the sending hours of
    /// the prospect's jurisdiction and the campaign window, and the
    /// frequency caps (deferrals).
    pub fn evaluate(&self, request: GateRequest<'_>) -> Verdict {
        let GateRequest {
            prospect,
            entry,
            suppressed,
            now,
            last_inbound_at,
            recent_outreach,
            window,
        } = request;
        let purpose = entry.purpose;
        let channel = entry.channel;
        let sender = entry.sender;
        let permit = match self.check(prospect, entry, suppressed, now) {
            Ok(permit) => permit,
            Err(error) => return Verdict::Block(error),
        };
        if purpose.is_transactional() {
            return Verdict::Permit(Box::new(permit));
        }

        if channel == ChannelKind::Messenger {
            let window = if sender == Sender::Member {
                self.policy.messenger_human_agent_window
            } else {
                self.policy.messenger_window
            };
            let open = last_inbound_at.is_some_and(|last| now - last <= window);
            if !open {
                return Verdict::Block(
                    Error::new(
                        ErrorKind::PermissionDenied,
                        "the Messenger window is closed: the prospect has not written recently enough",
                    )
                    .with_operation("gate")
                    .with_context("prospect_id", prospect.id),
                );
            }
        }

        let mut until = now;
        let mut reason = "";
        if self.policy.quiet_hours_channels.contains(&channel) || window.is_some() {
            let jurisdiction = if self.policy.quiet_hours_channels.contains(&channel) {
                Jurisdiction::of(prospect)
            } else {
                // Only the campaign window applies; it is read in the
                // prospect's zone, or in Paris when that is unknown.
                Jurisdiction {
                    zones: vec![ZoneRule {
                        zone: prospect.time_zone.unwrap_or(chrono_tz::Europe::Paris),
                        rule: HoursRule::Any,
                    }],
                    source: ZoneSource::Prospect,
                }
            };
            match jurisdiction.next_open(now, window) {
                Some(next) if next > now => {
                    until = next;
                    reason = "outside the sending hours of the prospect's jurisdiction or the campaign window";
                }
                Some(_) => {}
                None => {
                    return Verdict::Block(
                        Error::new(
                            ErrorKind::ConfigInvalid,
                            "the campaign's sending window never opens; widen its days or hours",
                        )
                        .with_operation("gate"),
                    );
                }
            }
        }

        if matches!(purpose, SendPurpose::Outreach { .. })
            && let Some(next) = frequency_slot(
                recent_outreach,
                until,
                Duration::hours(24),
                self.policy.max_outreach_per_day,
            )
            .max(frequency_slot(
                recent_outreach,
                until,
                Duration::days(7),
                self.policy.max_outreach_per_week,
            ))
            && next > until
        {
            until = next;
            reason = "the frequency cap on campaign messages is reached";
        }

        if until > now {
            Verdict::Defer { until, reason }
        } else {
            Verdict::Permit(Box::new(permit))
        }
    }

    /// Checks `entry` for `prospect` at `now`.
    ///
    /// Transactional sends (opt-out and opt-in confirmations, help) pass
    /// suppression and objection checks, because they answer the prospect's
    /// own request; processing restriction blocks everything.
    ///
    /// # Errors
    /// - `RecipientOptedOut` when the contact point is suppressed or the
    ///   prospect objected to marketing;
    /// - `PermissionDenied` when processing is restricted or no basis is recorded.
    pub fn check(
        &self,
        prospect: &Prospect,
        entry: OutboxEntry,
        suppressed: bool,
        now: Timestamp,
    ) -> Result<SendPermit> {
        let blocked = |kind: ErrorKind, message: &str| {
            Error::new(kind, message.to_owned())
                .with_operation("gate")
                .with_context("prospect_id", prospect.id)
                .with_context("channel", entry.channel)
        };
        if prospect.restricted {
            return Err(blocked(
                ErrorKind::PermissionDenied,
                "processing of this prospect is restricted",
            ));
        }
        if entry.org_id != prospect.org_id || entry.prospect_id != prospect.id {
            return Err(blocked(
                ErrorKind::InvalidInput,
                "the send intent belongs to another prospect",
            ));
        }
        if !prospect.contact_points().contains(&entry.to) {
            return Err(blocked(
                ErrorKind::InvalidInput,
                "the recipient is not a contact point of the prospect",
            ));
        }
        if !entry.purpose.is_transactional() {
            if suppressed {
                return Err(blocked(
                    ErrorKind::RecipientOptedOut,
                    "the recipient is on the suppression list",
                ));
            }
            if prospect.objected {
                return Err(blocked(
                    ErrorKind::RecipientOptedOut,
                    "the prospect objected to direct marketing",
                ));
            }
            if self.policy.require_consent && !has_basis(prospect, &entry) {
                return Err(blocked(
                    ErrorKind::PermissionDenied,
                    "no consent or legitimate-interest record for this channel; record one before sending",
                ));
            }
        }
        Ok(SendPermit {
            entry,
            checked_at: now,
        })
    }
}

/// Returns the earliest instant at or after `at` when fewer than `cap` sends
/// fall in the trailing `period`, or `None` when the cap is not reached at `at`.
fn frequency_slot(
    sent: &[Timestamp],
    at: Timestamp,
    period: Duration,
    cap: u32,
) -> Option<Timestamp> {
    let mut in_period: Vec<Timestamp> = sent
        .iter()
        .copied()
        .filter(|time| *time > at - period && *time <= at)
        .collect();
    if (in_period.len() as u64) < u64::from(cap) {
        return None;
    }
    if cap == 0 {
        return Some(at + Duration::days(3650));
    }
    // The slot opens when enough of the oldest sends leave the period.
    in_period.sort();
    let leaving = in_period.len() - (cap as usize - 1);
    in_period.get(leaving - 1).map(|time| *time + period)
}

fn has_basis(prospect: &Prospect, entry: &OutboxEntry) -> bool {
    prospect.consents.iter().any(|consent| {
        consent.channel == entry.channel
            && consent.is_active()
            && matches!(
                consent.basis,
                ConsentBasis::Consent | ConsentBasis::LegitimateInterest
            )
    })
}

//! The compliance gate: the only way to obtain a [`SendPermit`].

use std::fmt;

use crate::Timestamp;
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

/// Settings of the gate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatePolicy {
    /// Require an active consent or legitimate-interest record for the
    /// channel before any marketing send.
    pub require_consent: bool,
}

impl Default for GatePolicy {
    fn default() -> Self {
        GatePolicy { require_consent: true }
    }
}

impl GatePolicy {
    /// Sets whether a recorded basis is required.
    pub fn with_require_consent(mut self, required: bool) -> Self {
        self.require_consent = required;
        self
    }
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
    pub fn check(&self, prospect: &Prospect, entry: OutboxEntry, suppressed: bool, now: Timestamp) -> Result<SendPermit> {
        let blocked = |kind: ErrorKind, message: &str| {
            Error::new(kind, message.to_owned())
                .with_operation("gate")
                .with_context("prospect_id", prospect.id)
                .with_context("channel", entry.channel)
        };
        if prospect.restricted {
            return Err(blocked(ErrorKind::PermissionDenied, "processing of this prospect is restricted"));
        }
        if entry.org_id != prospect.org_id || entry.prospect_id != prospect.id {
            return Err(blocked(ErrorKind::InvalidInput, "the send intent belongs to another prospect"));
        }
        if !prospect.contact_points().contains(&entry.to) {
            return Err(blocked(ErrorKind::InvalidInput, "the recipient is not a contact point of the prospect"));
        }
        if !entry.purpose.is_transactional() {
            if suppressed {
                return Err(blocked(ErrorKind::RecipientOptedOut, "the recipient is on the suppression list"));
            }
            if prospect.objected {
                return Err(blocked(ErrorKind::RecipientOptedOut, "the prospect objected to direct marketing"));
            }
            if self.policy.require_consent && !has_basis(prospect, &entry) {
                return Err(blocked(
                    ErrorKind::PermissionDenied,
                    "no consent or legitimate-interest record for this channel; record one before sending",
                ));
            }
        }
        Ok(SendPermit { entry, checked_at: now })
    }
}

fn has_basis(prospect: &Prospect, entry: &OutboxEntry) -> bool {
    prospect.consents.iter().any(|consent| {
        consent.channel == entry.channel
            && consent.is_active()
            && matches!(consent.basis, ConsentBasis::Consent | ConsentBasis::LegitimateInterest)
    })
}

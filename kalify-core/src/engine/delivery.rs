//! Outbox delivery through the gate and the channels.

use chrono::Duration as ChronoDuration;

use crate::Timestamp;
use crate::conversation::{DeliveryStatus, Direction, Sender};
use crate::engine::Engine;
use crate::error::{ErrorKind, Result};
use crate::gate::{GateRequest, Verdict};
use crate::id::{OrgId, ProspectId};
use crate::ports::{OutboxEntry, OutboxOutcome};

/// What one [`Engine::deliver_outbox`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Accepted by the provider.
    pub sent: usize,
    /// Stopped by the gate (opt-out, restriction, no basis).
    pub blocked: usize,
    /// Put back by the gate to the next allowed slot (sending hours, frequency cap).
    pub deferred: usize,
    /// Failed for good.
    pub failed: usize,
    /// Put back for a retry.
    pub retried: usize,
}

/// How one delivery attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeliveryResult {
    Sent,
    Blocked,
    Deferred,
    Failed,
    Retried,
}

/// The delivery step that failed.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The lookup of an earlier attempt at the provider.
    Lookup,
    /// The send.
    Send,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Lookup => "lookup",
            Step::Send => "send",
        }
    }
}

impl DeliveryReport {
    pub(crate) fn count(&mut self, result: DeliveryResult) {
        match result {
            DeliveryResult::Sent => self.sent += 1,
            DeliveryResult::Blocked => self.blocked += 1,
            DeliveryResult::Deferred => self.deferred += 1,
            DeliveryResult::Failed => self.failed += 1,
            DeliveryResult::Retried => self.retried += 1,
        }
    }
}

impl Engine {
    /// Delivers every outbox entry due at the clock's current time.
    ///
    /// Each entry passes the gate again at delivery, so an opt-out that
    /// arrived after the entry was written still stops it. A send the gate
    /// defers goes back to the outbox for the next allowed slot; it is never dropped.
    ///
    /// Within one process, the gate check and the send of an entry hold the
    /// prospect's lock, which inbound turns also take: an opt-out is either
    /// committed before the check (and the send is blocked) or after the
    /// send has returned.
    ///
    /// An entry marked [`unconfirmed`](OutboxEntry::unconfirmed), whose
    /// earlier attempt may have reached the provider, is first looked up
    /// with [`Channel::find_sent`](crate::ports::Channel::find_sent) when
    /// the channel reports `finds_sent`. A message found at the provider is
    /// recorded as sent and not sent again. A send that fails with an
    /// unknown outcome on such a channel is retried, marked unconfirmed,
    /// whatever its retry class.
    ///
    /// # Errors
    /// Store errors; channel errors are recorded on the entry.
    pub async fn deliver_outbox(&self) -> Result<DeliveryReport> {
        let mut report = DeliveryReport::default();
        let settings = &self.inner.settings;
        loop {
            let now = self.inner.clock.now();
            let entries = self
                .inner
                .store
                .claim_outbox(
                    now,
                    settings.batch_size,
                    settings.lease,
                    &settings.worker_id,
                )
                .await?;
            if entries.is_empty() {
                break;
            }
            let claimed = entries.len();
            for entry in entries {
                let result = self.deliver_entry(entry).await?;
                report.count(result);
            }
            if claimed < settings.batch_size {
                break;
            }
        }
        Ok(report)
    }

    /// Delivers one claimed entry and records the outcome in the store.
    pub(crate) async fn deliver_entry(&self, entry: OutboxEntry) -> Result<DeliveryResult> {
        let org = entry.org_id;
        let id = entry.id;
        let (outcome, result) = self.deliver(entry).await?;
        self.inner.store.finish_outbox(org, id, outcome).await?;
        Ok(result)
    }

    async fn deliver(&self, entry: OutboxEntry) -> Result<(OutboxOutcome, DeliveryResult)> {
        let store = &self.inner.store;
        let _guard = self.inner.locks.lock(entry.prospect_id).await;
        let now = self.inner.clock.now();
        let prospect = match store.get_prospect(entry.org_id, entry.prospect_id).await {
            Ok(prospect) => prospect,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Ok((
                    OutboxOutcome::Cancelled("prospect no longer exists".to_owned()),
                    DeliveryResult::Blocked,
                ));
            }
            Err(error) => return Err(error),
        };
        let suppressed = store.is_suppressed(entry.org_id, &entry.to).await?;
        let attempts = entry.attempts;
        let unconfirmed = entry.unconfirmed;
        let channel_kind = entry.channel;
        let entry_id = entry.id;
        let last_inbound_at = match store
            .get_conversation(entry.org_id, entry.conversation_id)
            .await
        {
            Ok(conversation) => conversation.last_inbound_at,
            Err(error) if error.kind() == ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let recent_outreach = self
            .recent_outreach(entry.org_id, entry.prospect_id, now)
            .await?;
        let window = match entry.campaign_id {
            Some(id) => match store.get_campaign(entry.org_id, id).await {
                Ok(campaign) => campaign.settings.window,
                Err(error) if error.kind() == ErrorKind::NotFound => None,
                Err(error) => return Err(error),
            },
            None => None,
        };
        let request = GateRequest {
            prospect: &prospect,
            entry,
            suppressed,
            now,
            last_inbound_at,
            recent_outreach: &recent_outreach,
            window: window.as_ref(),
        };
        let permit = match self.inner.gate.evaluate(request) {
            Verdict::Permit(permit) => *permit,
            Verdict::Defer { until, reason } => {
                tracing::debug!(target: "kalify::engine", prospect_id = %prospect.id, channel = %channel_kind, %until, reason, "send deferred by the gate");
                return Ok((OutboxOutcome::RetryAt(until), DeliveryResult::Deferred));
            }
            Verdict::Block(error) => {
                tracing::info!(target: "kalify::engine", prospect_id = %prospect.id, channel = %channel_kind, reason = error.message(), "send blocked by the gate");
                return Ok((
                    OutboxOutcome::Cancelled(error.message().to_owned()),
                    DeliveryResult::Blocked,
                ));
            }
        };
        let Some(channel) = self.inner.channels.get(&channel_kind) else {
            // A worker started without this channel (a configuration error,
            // or a worker meant for other channels) leaves the message for
            // one that has it, rather than failing it for good.
            tracing::warn!(target: "kalify::engine", outbox_id = %entry_id, channel = %channel_kind, "no channel of this kind is configured in this worker; the message waits an hour");
            return Ok((
                OutboxOutcome::RetryAt(now + ChronoDuration::hours(1)),
                DeliveryResult::Deferred,
            ));
        };
        let finds_sent = channel.capabilities().finds_sent;
        if unconfirmed && finds_sent {
            // An earlier attempt may have reached the provider: ask it
            // before sending again.
            match channel.find_sent(&permit).await {
                Ok(Some(receipt)) => {
                    tracing::info!(target: "kalify::channel", provider = channel.provider(), outbox_id = %entry_id, attempts, "found the message of an earlier attempt at the provider; recorded it as sent without sending again");
                    let outcome = OutboxOutcome::Sent {
                        provider: receipt.provider,
                        provider_message_id: receipt.provider_message_id,
                    };
                    return Ok((outcome, DeliveryResult::Sent));
                }
                Ok(None) => {
                    tracing::debug!(target: "kalify::channel", provider = channel.provider(), outbox_id = %entry_id, "the provider lists no message of an earlier attempt; sending");
                }
                Err(error) => {
                    // Whatever the error, sending blind could repeat the
                    // message, so the entry stays unconfirmed and the
                    // lookup is retried while attempts remain.
                    return Ok(self.failed_attempt(
                        &error,
                        attempts,
                        now,
                        channel.provider(),
                        Step::Lookup,
                        true,
                    ));
                }
            }
        }
        match channel.send(&permit).await {
            Ok(receipt) => {
                let outcome = OutboxOutcome::Sent {
                    provider: receipt.provider,
                    provider_message_id: receipt.provider_message_id,
                };
                Ok((outcome, DeliveryResult::Sent))
            }
            Err(error) => {
                // A send that may have reached the provider is retried when
                // the retry can look the message up first.
                let unconfirmed = error.outcome_unknown() && finds_sent;
                Ok(self.failed_attempt(
                    &error,
                    attempts,
                    now,
                    channel.provider(),
                    Step::Send,
                    unconfirmed,
                ))
            }
        }
    }

    /// Decides what follows a failed lookup or send. While attempts remain,
    /// a retryable error is retried with backoff. With `unconfirmed`, any
    /// error is retried and the entry marked unconfirmed, because the retry
    /// looks the message up before sending. Any other error fails the entry.
    fn failed_attempt(
        &self,
        error: &crate::Error,
        attempts: u32,
        now: Timestamp,
        provider: &str,
        step: Step,
        unconfirmed: bool,
    ) -> (OutboxOutcome, DeliveryResult) {
        let step_name = step.name();
        let attempts_left = attempts < self.inner.settings.max_delivery_attempts;
        if attempts_left && (unconfirmed || error.is_retryable()) {
            let delay = error
                .retry_after()
                .and_then(|delay| ChronoDuration::from_std(delay).ok())
                .unwrap_or_else(|| ChronoDuration::seconds(1 << attempts.min(12)));
            tracing::warn!(target: "kalify::channel", provider, step = step_name, attempts, unconfirmed, retry_at = %(now + delay), error = %error, "delivery step failed; retrying");
            let outcome = if unconfirmed {
                OutboxOutcome::Unconfirmed(now + delay)
            } else {
                OutboxOutcome::RetryAt(now + delay)
            };
            return (outcome, DeliveryResult::Retried);
        }
        let reason = match step {
            Step::Send => {
                tracing::warn!(target: "kalify::channel", provider, step = step_name, attempts, error = %error, "send failed for good");
                format!("{}: {}", error.kind(), error.message())
            }
            Step::Lookup => {
                tracing::warn!(target: "kalify::channel", provider, step = step_name, attempts, error = %error, "lookup of an earlier attempt failed for good; the message may have been delivered, and it is not sent again");
                format!(
                    "outcome unknown, the provider may have the message: the lookup of an earlier attempt failed: {}: {}",
                    error.kind(),
                    error.message()
                )
            }
        };
        (OutboxOutcome::Failed(reason), DeliveryResult::Failed)
    }
}

impl Engine {
    /// Times of the campaign messages sent to a prospect in the last 7 days,
    /// across all its conversations, for the frequency caps.
    ///
    /// NOTE: a message's time is when it was written to the outbox, so a
    /// send the gate deferred counts from that earlier time.
    async fn recent_outreach(
        &self,
        org: OrgId,
        prospect: ProspectId,
        now: Timestamp,
    ) -> Result<Vec<Timestamp>> {
        let store = &self.inner.store;
        let since = now - ChronoDuration::days(7);
        let mut times = Vec::new();
        for conversation in store.conversations_of(org, prospect).await? {
            if conversation.updated_at < since {
                continue;
            }
            for message in store.list_messages(org, conversation.id).await? {
                let sent = matches!(
                    message.status,
                    DeliveryStatus::Sent | DeliveryStatus::Delivered | DeliveryStatus::Read
                );
                if message.direction == Direction::Outbound
                    && message.sender == Some(Sender::Campaign)
                    && sent
                    && message.at > since
                {
                    times.push(message.at);
                }
            }
        }
        Ok(times)
    }
}

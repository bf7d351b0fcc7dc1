//! Outbox delivery through the gate and the channels.

use chrono::Duration as ChronoDuration;

use crate::engine::Engine;
use crate::error::{ErrorKind, Result};
use crate::ports::{OutboxEntry, OutboxOutcome};

/// What one [`Engine::deliver_outbox`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Accepted by the provider.
    pub sent: usize,
    /// Stopped by the gate (opt-out, restriction, no basis).
    pub blocked: usize,
    /// Failed for good.
    pub failed: usize,
    /// Put back for a retry.
    pub retried: usize,
}

impl Engine {
    /// Delivers every outbox entry due at the clock's current time.
    ///
    /// Each entry passes the gate again at delivery, so an opt-out that
    /// arrived after the entry was written still stops it.
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
                .claim_outbox(now, settings.batch_size, settings.lease, &settings.worker_id)
                .await?;
            if entries.is_empty() {
                break;
            }
            let claimed = entries.len();
            for entry in entries {
                let org = entry.org_id;
                let id = entry.id;
                let outcome = self.deliver(entry, &mut report).await?;
                self.inner.store.finish_outbox(org, id, outcome).await?;
            }
            if claimed < settings.batch_size {
                break;
            }
        }
        Ok(report)
    }

    async fn deliver(&self, entry: OutboxEntry, report: &mut DeliveryReport) -> Result<OutboxOutcome> {
        let store = &self.inner.store;
        let now = self.inner.clock.now();
        let prospect = match store.get_prospect(entry.org_id, entry.prospect_id).await {
            Ok(prospect) => prospect,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                report.blocked += 1;
                return Ok(OutboxOutcome::Cancelled("prospect no longer exists".to_owned()));
            }
            Err(error) => return Err(error),
        };
        let suppressed = store.is_suppressed(entry.org_id, &entry.to).await?;
        let attempts = entry.attempts;
        let channel_kind = entry.channel;
        let permit = match self.inner.gate.check(&prospect, entry, suppressed, now) {
            Ok(permit) => permit,
            Err(error) => {
                tracing::info!(target: "kalify::engine", prospect_id = %prospect.id, channel = %channel_kind, reason = error.message(), "send blocked by the gate");
                report.blocked += 1;
                return Ok(OutboxOutcome::Cancelled(error.message().to_owned()));
            }
        };
        let Some(channel) = self.inner.channels.get(&channel_kind) else {
            report.failed += 1;
            return Ok(OutboxOutcome::Failed(format!("no {channel_kind} channel is configured")));
        };
        match channel.send(&permit).await {
            Ok(receipt) => {
                report.sent += 1;
                Ok(OutboxOutcome::Sent { provider: receipt.provider, provider_message_id: receipt.provider_message_id })
            }
            Err(error) if error.is_retryable() && attempts < self.inner.settings.max_delivery_attempts => {
                let delay = error
                    .retry_after()
                    .and_then(|delay| ChronoDuration::from_std(delay).ok())
                    .unwrap_or_else(|| ChronoDuration::seconds(1 << attempts.min(12)));
                tracing::warn!(target: "kalify::channel", provider = channel.provider(), attempts, error = %error, "send failed; retrying");
                report.retried += 1;
                Ok(OutboxOutcome::RetryAt(now + delay))
            }
            Err(error) => {
                tracing::warn!(target: "kalify::channel", provider = channel.provider(), attempts, error = %error, "send failed for good");
                report.failed += 1;
                Ok(OutboxOutcome::Failed(format!("{}: {}", error.kind(), error.message())))
            }
        }
    }
}

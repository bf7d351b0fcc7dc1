//! Enrollment and due follow-ups.

use chrono::Duration as ChronoDuration;

use crate::Timestamp;
use crate::campaign::CampaignStatus;
use crate::conversation::{Conversation, Event};
use crate::engine::Engine;
use crate::engine::turn::Turn;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{CampaignId, ConversationId, OrgId, ProspectId};
use crate::ports::{Job, JobKind, JobOutcome};

/// The result of an enrollment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enrollment {
    /// The conversation of the prospect in the campaign.
    pub conversation_id: ConversationId,
    /// False when the prospect was already enrolled; nothing was written then.
    pub created: bool,
}

/// What one [`Engine::run_due`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Jobs that ran to completion.
    pub jobs_done: usize,
    /// Jobs cancelled because their conversation had moved on.
    pub jobs_cancelled: usize,
    /// Jobs put back for later (paused campaign, lost race, store error).
    pub jobs_deferred: usize,
    /// Outbox entries delivered.
    pub sent: usize,
    /// Outbox entries blocked by the gate or failed for good.
    pub not_sent: usize,
    /// Outbox entries put back for a retry.
    pub retried: usize,
    /// Outbox entries the gate put back to the next allowed slot.
    pub deferred: usize,
}

impl Engine {
    /// Enrolls a prospect in a campaign: creates the conversation and
    /// schedules the first message after the first step's delay. Enrolling
    /// twice does nothing.
    ///
    /// # Errors
    /// `NotFound` for an unknown prospect or campaign; `InvalidInput` when the
    /// prospect has no contact point on the campaign's channels;
    /// `RecipientOptedOut` when the prospect opted out or objected.
    pub async fn enroll(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        campaign_id: CampaignId,
    ) -> Result<Enrollment> {
        let store = &self.inner.store;
        let prospect = store.get_prospect(org, prospect_id).await?;
        let campaign = store.get_campaign(org, campaign_id).await?;
        if prospect.objected {
            return Err(Error::new(
                ErrorKind::RecipientOptedOut,
                "the prospect objected to direct marketing",
            )
            .with_context("prospect_id", prospect_id));
        }
        campaign.check_prospect(&prospect)?;

        let mut channel = None;
        for candidate in &campaign.channels {
            let Some(contact) = prospect.contact_for(*candidate) else {
                continue;
            };
            if !store.is_suppressed(org, &contact).await? {
                channel = Some(*candidate);
                break;
            }
        }
        let Some(channel) = channel else {
            let reachable = prospect.contact_points().is_empty();
            let kind = if reachable {
                ErrorKind::InvalidInput
            } else {
                ErrorKind::RecipientOptedOut
            };
            let channels: Vec<&str> = campaign
                .channels
                .iter()
                .map(|channel| channel.as_str())
                .collect();
            return Err(Error::new(
                kind,
                format!(
                    "the prospect has no usable contact point on the campaign's channels ({}); add one or lift the suppression",
                    channels.join(", ")
                ),
            )
            .with_operation("enroll")
            .with_context("prospect_id", prospect_id)
            .with_context("campaign_id", campaign_id));
        };

        let now = self.inner.clock.now();
        let conversation = Conversation::new(org, prospect_id, Some(campaign_id), channel, now);
        let due_at = match campaign.steps.first() {
            Some(step) => match step.business_days {
                Some(days) => crate::gate::add_business_days(
                    now,
                    days,
                    &crate::gate::Jurisdiction::of(&prospect),
                ),
                None => now + ChronoDuration::hours(i64::from(step.delay_hours)),
            },
            None => now,
        };
        let job = Job::follow_up(&conversation, 0, due_at);
        let created = store.insert_conversation(&conversation, &[job]).await?;
        let conversation_id = if created {
            conversation.id
        } else {
            store
                .conversations_of(org, prospect_id)
                .await?
                .into_iter()
                .find(|existing| existing.campaign_id == Some(campaign_id))
                .map_or(conversation.id, |existing| existing.id)
        };
        Ok(Enrollment {
            conversation_id,
            created,
        })
    }

    /// Runs every job due at the clock's current time, then delivers the outbox.
    ///
    /// # Errors
    /// Store errors while claiming; errors of single jobs are logged, the
    /// job is rescheduled and the run goes on.
    pub async fn run_due(&self) -> Result<RunReport> {
        let mut report = RunReport::default();
        let settings = &self.inner.settings;
        loop {
            let now = self.inner.clock.now();
            let jobs = self
                .inner
                .store
                .claim_jobs(
                    now,
                    settings.batch_size,
                    settings.lease,
                    &settings.worker_id,
                )
                .await?;
            if jobs.is_empty() {
                break;
            }
            let claimed = jobs.len();
            for job in jobs {
                match self.execute_job(&job, now).await? {
                    JobOutcome::Done => report.jobs_done += 1,
                    JobOutcome::Cancelled => report.jobs_cancelled += 1,
                    JobOutcome::RetryAt(_) => report.jobs_deferred += 1,
                }
            }
            if claimed < settings.batch_size {
                break;
            }
        }
        let delivery = self.deliver_outbox().await?;
        report.sent = delivery.sent;
        report.not_sent = delivery.blocked + delivery.failed;
        report.retried = delivery.retried;
        report.deferred = delivery.deferred;
        Ok(report)
    }

    /// Runs one claimed job and records its outcome in the store. A failing
    /// job is rescheduled with a backoff that grows with its attempts.
    pub(crate) async fn execute_job(&self, job: &Job, now: Timestamp) -> Result<JobOutcome> {
        let outcome = match self.run_job(job, now).await {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(target: "kalify::engine", job_id = %job.id, conversation_id = %job.conversation_id, attempts = job.attempts, error = %error, "job failed; retrying later");
                let backoff = ChronoDuration::seconds(30 * i64::from(job.attempts.clamp(1, 60)));
                JobOutcome::RetryAt(now + backoff)
            }
        };
        // A job the turn completed is already finished in the store.
        if outcome != JobOutcome::Done {
            self.inner
                .store
                .finish_job(job.org_id, job.id, outcome.clone())
                .await?;
        }
        Ok(outcome)
    }

    async fn run_job(&self, job: &Job, now: Timestamp) -> Result<JobOutcome> {
        let store = &self.inner.store;
        let attempt = match &job.kind {
            JobKind::FollowUp { attempt } => *attempt,
            JobKind::Reminder { member, note } => return self.remind(job, *member, note).await,
        };
        for retry in 0..=self.inner.settings.max_turn_retries {
            let conversation = match store
                .get_conversation(job.org_id, job.conversation_id)
                .await
            {
                Ok(conversation) => conversation,
                Err(error) if error.kind() == ErrorKind::NotFound => {
                    return Ok(JobOutcome::Cancelled);
                }
                Err(error) => return Err(error),
            };
            // A commit fails with `Conflict` when another worker, which
            // claimed the job after this one's lease ran out, finished it
            // first. A retry therefore checks that the job is still pending;
            // the first run leaves that check to the commit.
            if retry > 0
                && !store
                    .pending_jobs(job.org_id, conversation.id)
                    .await?
                    .iter()
                    .any(|pending| pending.id == job.id)
            {
                tracing::info!(target: "kalify::engine", job_id = %job.id, conversation_id = %conversation.id, "job no longer pending; another worker finished it");
                return Ok(JobOutcome::Done);
            }
            let prospect = store
                .get_prospect(job.org_id, conversation.prospect_id)
                .await?;
            let campaign = match conversation.campaign_id {
                Some(id) => store.get_campaign(job.org_id, id).await?,
                None => return Ok(JobOutcome::Cancelled),
            };
            if campaign.status == CampaignStatus::Paused {
                return Ok(JobOutcome::RetryAt(now + ChronoDuration::hours(1)));
            }
            if prospect.restricted {
                return Ok(JobOutcome::Cancelled);
            }
            let history = store.list_messages(job.org_id, conversation.id).await?;
            let mut turn = Turn::new(
                &self.inner,
                now,
                conversation,
                prospect,
                Some(campaign),
                history,
            );
            turn.set_idempotency_base(format!("job:{}", job.id));
            match turn.apply(Event::FollowUpDue { attempt }).await {
                Ok(()) => {}
                Err(error) if error.kind() == ErrorKind::InvalidTransition => {
                    return Ok(JobOutcome::Cancelled);
                }
                Err(error) => return Err(error),
            }
            turn.complete_job(job);
            let (commit, notifications) = turn.finish();
            match store.commit_turn(&commit).await {
                Ok(_) => {
                    self.notify_all(notifications).await;
                    return Ok(JobOutcome::Done);
                }
                Err(error) if error.kind() == ErrorKind::Conflict => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(JobOutcome::RetryAt(now))
    }

    /// Fires a reminder: one notification to its member, delivered in the background.
    async fn remind(
        &self,
        job: &Job,
        member: crate::id::MemberId,
        note: &str,
    ) -> Result<JobOutcome> {
        let mut notification = crate::ports::Notification::new(
            job.org_id,
            crate::conversation::NotificationKind::ReminderDue,
            job.prospect_id,
        );
        notification.conversation_id = Some(job.conversation_id);
        notification.member = Some(member);
        notification.note = Some(note.to_owned());
        crate::ports::Notifier::notify(&self.inner.notifier, &notification).await?;
        self.inner
            .store
            .finish_job(job.org_id, job.id, JobOutcome::Done)
            .await?;
        Ok(JobOutcome::Done)
    }
}

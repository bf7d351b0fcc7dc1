//! The long-running worker: claims due jobs and drains the outbox until told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::engine::Engine;
use crate::engine::delivery::DeliveryResult;
use crate::error::Result;
use crate::ports::JobOutcome;

/// Settings of [`Engine::run_worker`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// How many jobs or deliveries run at once.
    pub concurrency: usize,
    /// How long to wait when nothing is due.
    pub poll_interval: Duration,
    /// The longest wait between attempts while the store keeps failing.
    pub max_backoff: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 8,
            poll_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl WorkerOptions {
    /// Sets how many jobs or deliveries run at once (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Sets how long to wait when nothing is due.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// What a worker did before it stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs run to completion.
    pub jobs_done: u64,
    /// Jobs cancelled or put back.
    pub jobs_other: u64,
    /// Messages the channels accepted.
    pub sent: u64,
    /// Deliveries blocked, deferred, failed or retried.
    pub not_sent: u64,
    /// Store errors the worker backed off from.
    pub store_errors: u64,
}

impl Engine {
    /// Runs jobs and deliveries until `shutdown` completes.
    ///
    /// Each round claims up to `batch_size` due jobs, runs them with at most
    /// `concurrency` at once, then does the same for the outbox. Store errors
    /// are logged and retried with exponential backoff up to `max_backoff`.
    /// When `shutdown` completes, the worker claims nothing more, finishes
    /// the work it holds (so every lease it took is released by a finish),
    /// and returns.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for fatal configuration errors.
    pub async fn run_worker(
        &self,
        options: WorkerOptions,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<WorkerReport> {
        let worker = self.inner.settings.worker_id.clone();
        tracing::info!(target: "kalify::engine", worker = %worker, concurrency = options.concurrency, "worker started");
        let mut report = WorkerReport::default();
        let mut backoff = Duration::ZERO;
        tokio::pin!(shutdown);

        loop {
            // Shutdown is checked between rounds only, so a round always
            // finishes the jobs and deliveries it claimed.
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = std::future::ready(()) => {}
            }
            match self.work_round(&options, &mut report).await {
                Ok(true) => backoff = Duration::ZERO,
                Ok(false) => {
                    backoff = Duration::ZERO;
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(options.poll_interval) => {}
                    }
                }
                Err(error) => {
                    report.store_errors += 1;
                    backoff = (backoff * 2).clamp(Duration::from_millis(100), options.max_backoff);
                    tracing::warn!(target: "kalify::engine", worker = %worker, error = %error, backoff_ms = backoff.as_millis() as u64, "store error; backing off");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }

        tracing::info!(
            target: "kalify::engine",
            worker = %worker,
            jobs_done = report.jobs_done,
            sent = report.sent,
            store_errors = report.store_errors,
            "worker stopped"
        );
        Ok(report)
    }

    /// One claim-and-run round. Returns whether anything was claimed.
    async fn work_round(&self, options: &WorkerOptions, report: &mut WorkerReport) -> Result<bool> {
        let settings = &self.inner.settings;
        let store = &self.inner.store;
        let limit = Arc::new(Semaphore::new(options.concurrency));

        let now = self.inner.clock.now();
        let jobs = store
            .claim_jobs(
                now,
                settings.batch_size,
                settings.lease,
                &settings.worker_id,
            )
            .await?;
        let claimed_jobs = jobs.len();
        let deadline = lease_deadline(now, settings.lease);
        let mut tasks = JoinSet::new();
        for job in jobs {
            let engine = self.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                if engine.inner.clock.now() >= deadline {
                    // Another worker may claim the job once the lease ends, so
                    // this one leaves it rather than risk running it twice.
                    tracing::info!(target: "kalify::engine", job_id = %job.id, "lease nearly over before the job started; leaving it");
                    return Ok(JobOutcome::RetryAt(deadline));
                }
                engine.execute_job(&job, now).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(JobOutcome::Done)) => report.jobs_done += 1,
                Ok(Ok(_)) => report.jobs_other += 1,
                Ok(Err(error)) => {
                    // The lease expires and another claim picks the job up again.
                    report.store_errors += 1;
                    tracing::warn!(target: "kalify::engine", error = %error, "failed to record a job outcome");
                }
                Err(error) => {
                    tracing::error!(target: "kalify::engine", error = %error, "job task panicked or was cancelled")
                }
            }
        }

        let now = self.inner.clock.now();
        let entries = store
            .claim_outbox(
                now,
                settings.batch_size,
                settings.lease,
                &settings.worker_id,
            )
            .await?;
        let claimed_entries = entries.len();
        let deadline = lease_deadline(now, settings.lease);
        let mut tasks = JoinSet::new();
        for entry in entries {
            let engine = self.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                if engine.inner.clock.now() >= deadline {
                    // The entry stays leased until the lease ends; then any
                    // worker claims it again. Sending now could race that claim.
                    tracing::info!(target: "kalify::engine", outbox_id = %entry.id, "lease nearly over before the delivery started; leaving it");
                    return Ok(DeliveryResult::Deferred);
                }
                engine.deliver_entry(entry).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(DeliveryResult::Sent)) => report.sent += 1,
                Ok(Ok(_)) => report.not_sent += 1,
                Ok(Err(error)) => {
                    report.store_errors += 1;
                    tracing::warn!(target: "kalify::engine", error = %error, "failed to record a delivery outcome");
                }
                Err(error) => {
                    tracing::error!(target: "kalify::engine", error = %error, "delivery task panicked or was cancelled")
                }
            }
        }

        Ok(claimed_jobs + claimed_entries > 0)
    }
}

/// The time after which a claimed job or outbox entry is no longer started:
/// three quarters of the lease after the claim, so that a started job or
/// send has a quarter of the lease to finish before another worker may claim it.
fn lease_deadline(claimed_at: crate::Timestamp, lease: std::time::Duration) -> crate::Timestamp {
    let margin = chrono::Duration::from_std(lease.mul_f64(0.75)).unwrap_or(chrono::Duration::MAX);
    claimed_at.checked_add_signed(margin).unwrap_or(claimed_at)
}

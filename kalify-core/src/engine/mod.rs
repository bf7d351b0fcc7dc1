//! The engine: carries out the flows (enrollment, inbound replies, due
//! follow-ups, outbox delivery) over the ports.

mod builder;
mod campaigns;
mod delivery;
mod events;
mod gdpr;
mod inbound;
mod jobs;
mod team;
mod turn;
mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use builder::EngineBuilder;
pub use campaigns::{EnrollReport, FieldPredicate, Predicate, ProspectFilter};
pub use delivery::DeliveryReport;
pub use events::EventOutcome;
pub use inbound::InboundReport;
pub use jobs::{Enrollment, RunReport};
pub use team::AssignmentRule;
pub use worker::{WorkerOptions, WorkerReport};

use crate::contact::ChannelKind;
use crate::conversation::Policy;
use crate::gate::Gate;
use crate::ports::{Channel, Clock, LanguageModel, Store};
use crate::qualification::Framework;

/// Tuning of the engine's loops.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EngineSettings {
    /// The name this worker claims jobs under.
    pub worker_id: String,
    /// How long a claimed job or outbox entry stays leased.
    pub lease: Duration,
    /// How many jobs or outbox entries one claim takes.
    pub batch_size: usize,
    /// How often a turn is recomputed after losing a version race.
    pub max_turn_retries: u32,
    /// The maximum number of delivery attempts before an outbox entry fails.
    pub max_delivery_attempts: u32,
    /// The maximum length of an AI reply on SMS, in characters (two GSM-7 segments of 153).
    pub max_sms_chars: usize,
    /// The maximum length of an AI reply by e-mail or Messenger, in characters.
    pub max_text_chars: usize,
    /// Whether each turn stores what it sent to the model and what came
    /// back, so that an access request can show it (GDPR Art. 15). On by default.
    pub record_model_exchanges: bool,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            worker_id: format!("worker-{}", std::process::id()),
            lease: Duration::from_secs(60),
            batch_size: 100,
            max_turn_retries: 8,
            max_delivery_attempts: 8,
            max_sms_chars: 306,
            max_text_chars: 2000,
            record_model_exchanges: true,
        }
    }
}

/// Runs kalify's flows. Cheap to clone: every part is shared.
///
/// Build one with [`Engine::builder`].
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// One async mutex per prospect, so that a delivery (gate check, then send)
/// and a turn that may opt the prospect out never interleave in this process.
#[derive(Debug, Default)]
pub(crate) struct ProspectLocks {
    locks: std::sync::Mutex<HashMap<crate::id::ProspectId, Arc<tokio::sync::Mutex<()>>>>,
}

impl ProspectLocks {
    pub(crate) async fn lock(
        &self,
        prospect: crate::id::ProspectId,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        self.mutex_of(prospect).lock_owned().await
    }

    /// Locks `prospect` as [`ProspectLocks::lock`] does, and also returns
    /// true when another task held the lock, so the caller had to wait.
    pub(crate) async fn lock_noting_wait(
        &self,
        prospect: crate::id::ProspectId,
    ) -> (tokio::sync::OwnedMutexGuard<()>, bool) {
        let mutex = self.mutex_of(prospect);
        match Arc::clone(&mutex).try_lock_owned() {
            Ok(guard) => (guard, false),
            Err(_) => (mutex.lock_owned().await, true),
        }
    }

    fn mutex_of(&self, prospect: crate::id::ProspectId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Drop locks nobody holds so the map does not grow with every prospect ever seen.
        if locks.len() > 10_000 {
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        locks.entry(prospect).or_default().clone()
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    store: Arc<dyn Store>,
    model: Arc<dyn LanguageModel>,
    fallback_model: Option<Arc<dyn LanguageModel>>,
    channels: HashMap<ChannelKind, Arc<dyn Channel>>,
    notifier: crate::ports::RetryingNotifier,
    retention: crate::gdpr::RetentionPolicy,
    processing_info: crate::gdpr::ProcessingInfo,
    clock: Arc<dyn Clock>,
    framework: Framework,
    policy: Policy,
    gate: Gate,
    settings: EngineSettings,
    default_sender: String,
    locks: ProspectLocks,
    assignment: Vec<AssignmentRule>,
    round_robin: std::sync::atomic::AtomicUsize,
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The store the engine writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The qualification framework in use.
    pub fn framework(&self) -> &Framework {
        &self.inner.framework
    }

    /// The clock in use.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Waits until every notification handed to the notifier so far is
    /// delivered or given up. Call it before a graceful shutdown.
    pub async fn notifications_idle(&self) {
        self.inner.notifier.idle().await;
    }
}

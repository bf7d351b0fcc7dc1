//! The engine builder.

use std::collections::HashMap;
use std::sync::Arc;

use crate::conversation::Policy;
use crate::engine::{Engine, EngineSettings, Inner};
use crate::error::{Error, ErrorKind, Result};
use crate::gate::{Gate, GatePolicy};
use crate::gdpr::{ProcessingInfo, RetentionPolicy};
use crate::ports::{
    Channel, Clock, LanguageModel, NoopNotifier, Notifier, NotifyRetry, RetryingNotifier, Store,
    SystemClock,
};
use crate::qualification::Framework;

/// Builds an [`Engine`]. A store and a model are required; the rest has defaults:
/// the BANT framework, the system clock, no notifications, consent required.
#[derive(Debug, Default)]
pub struct EngineBuilder {
    store: Option<Arc<dyn Store>>,
    model: Option<Arc<dyn LanguageModel>>,
    fallback_model: Option<Arc<dyn LanguageModel>>,
    channels: Vec<Arc<dyn Channel>>,
    notifier: Option<Arc<dyn Notifier>>,
    notify_retry: Option<NotifyRetry>,
    retention: Option<RetentionPolicy>,
    processing_info: Option<ProcessingInfo>,
    clock: Option<Arc<dyn Clock>>,
    framework: Option<Framework>,
    policy: Option<Policy>,
    gate_policy: Option<GatePolicy>,
    settings: Option<EngineSettings>,
    default_sender: Option<String>,
    assignment: Option<Vec<crate::engine::AssignmentRule>>,
}

impl EngineBuilder {
    /// Sets the store.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Sets the language model.
    pub fn with_model(mut self, model: Arc<dyn LanguageModel>) -> Self {
        self.model = Some(model);
        self
    }

    /// Sets the model used when the main model fails.
    pub fn with_fallback_model(mut self, model: Arc<dyn LanguageModel>) -> Self {
        self.fallback_model = Some(model);
        self
    }

    /// Adds a channel; a later channel of the same kind replaces an earlier one.
    pub fn with_channel(mut self, channel: Arc<dyn Channel>) -> Self {
        self.channels.push(channel);
        self
    }

    /// Sets the notifier. The engine delivers through it in the background
    /// and retries failures, as [`RetryingNotifier`] describes.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Sets how failed notifications are retried. The default is
    /// [`NotifyRetry::default`]: 5 attempts from a 1-second backoff.
    pub fn with_notify_retry(mut self, retry: NotifyRetry) -> Self {
        self.notify_retry = Some(retry);
        self
    }

    /// Sets how long personal data is kept; [`Engine::purge_expired`] applies it.
    /// The default is [`RetentionPolicy::default`].
    pub fn with_retention(mut self, retention: RetentionPolicy) -> Self {
        self.retention = Some(retention);
        self
    }

    /// Sets the processing information that access requests report
    /// (purposes, sources, recipients, automated decisions). The default
    /// describes kalify's own processing and names the configured channels
    /// and models as recipients.
    pub fn with_processing_info(mut self, info: ProcessingInfo) -> Self {
        self.processing_info = Some(info);
        self
    }

    /// Sets the clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets the qualification framework.
    pub fn with_framework(mut self, framework: Framework) -> Self {
        self.framework = Some(framework);
        self
    }

    /// Sets the state machine policy.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Sets the gate policy.
    pub fn with_gate_policy(mut self, policy: GatePolicy) -> Self {
        self.gate_policy = Some(policy);
        self
    }

    /// Sets the loop settings.
    pub fn with_settings(mut self, settings: EngineSettings) -> Self {
        self.settings = Some(settings);
        self
    }

    /// Sets the sender identity used outside campaigns, such as "Acme".
    pub fn with_default_sender(mut self, sender: impl Into<String>) -> Self {
        self.default_sender = Some(sender.into());
        self
    }

    /// Sets how handed-off conversations find a member; rules are tried in
    /// order. The default is the prospect's owner, then round-robin.
    pub fn with_assignment(mut self, rules: Vec<crate::engine::AssignmentRule>) -> Self {
        self.assignment = Some(rules);
        self
    }

    /// Builds the engine.
    ///
    /// # Errors
    /// `ConfigInvalid` when the store or the model is missing or the framework is invalid.
    pub fn build(self) -> Result<Engine> {
        let store = self.store.ok_or_else(|| {
            Error::new(
                ErrorKind::ConfigInvalid,
                "no store configured; call with_store",
            )
        })?;
        let model = self.model.ok_or_else(|| {
            Error::new(
                ErrorKind::ConfigInvalid,
                "no language model configured; call with_model",
            )
        })?;
        let framework = self.framework.unwrap_or_else(Framework::bant);
        framework.validate()?;
        let settings = self.settings.unwrap_or_default();
        if settings.batch_size == 0 {
            return Err(Error::new(
                ErrorKind::ConfigInvalid,
                "batch_size must be at least 1",
            ));
        }
        let channels: HashMap<_, _> = self
            .channels
            .into_iter()
            .map(|channel| (channel.kind(), channel))
            .collect();
        let retention = self.retention.unwrap_or_default();
        let processing_info = self.processing_info.unwrap_or_else(|| {
            let mut providers: Vec<String> = channels
                .values()
                .map(|channel| format!("{} ({})", channel.provider(), channel.kind().as_str()))
                .collect();
            providers.sort();
            providers.push(model.name().to_owned());
            if let Some(fallback) = &self.fallback_model {
                providers.push(fallback.name().to_owned());
            }
            ProcessingInfo::kalify_default(&providers, &retention)
        });
        let notifier = self.notifier.unwrap_or_else(|| Arc::new(NoopNotifier));

        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                model,
                fallback_model: self.fallback_model,
                channels,
                notifier: RetryingNotifier::new(notifier, self.notify_retry.unwrap_or_default()),
                retention,
                processing_info,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                framework,
                policy: self.policy.unwrap_or_default(),
                gate: Gate::new(self.gate_policy.unwrap_or_default()),
                settings,
                default_sender: self.default_sender.unwrap_or_else(|| "kalify".to_owned()),
                locks: Default::default(),
                assignment: self.assignment.unwrap_or_else(|| {
                    vec![
                        crate::engine::AssignmentRule::Owner,
                        crate::engine::AssignmentRule::RoundRobin,
                    ]
                }),
                round_robin: Default::default(),
            }),
        })
    }
}

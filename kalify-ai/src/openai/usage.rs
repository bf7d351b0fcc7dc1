//! Token usage, cost estimates and per-conversation budgets.
//!
//! The [`UsageLedger`] keeps totals in memory only: they are lost when the
//! process stops and every process has its own.
//! NOTE: a budget therefore applies per process; a persistent ledger in the
//! store would make it hold across workers and restarts.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use kalify_core::analysis::TranscriptLine;
use kalify_core::{ConversationId, OrgId};

/// The tokens one call used, as the server reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the completion.
    pub completion_tokens: u64,
    /// Prompt tokens served from the server's prompt cache, part of `prompt_tokens`.
    pub cached_prompt_tokens: u64,
}

/// The price of a model in US dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// Dollars per million prompt tokens.
    pub input_per_million: f64,
    /// Dollars per million completion tokens.
    pub output_per_million: f64,
    /// Dollars per million cached prompt tokens. `None` bills them as input.
    pub cached_input_per_million: Option<f64>,
}

impl Price {
    /// A price without a cached-input discount.
    pub fn per_million(input: f64, output: f64) -> Self {
        Price {
            input_per_million: input,
            output_per_million: output,
            cached_input_per_million: None,
        }
    }

    /// Sets the price of cached request tokens.
    pub fn with_cached_input(mut self, cached_input: f64) -> Self {
        self.cached_input_per_million = Some(cached_input);
        self
    }

    /// The estimated cost of `usage` in dollars.
    pub fn cost(&self, usage: &TokenUsage) -> f64 {
        let cached = usage.cached_prompt_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        let cached_rate = self
            .cached_input_per_million
            .unwrap_or(self.input_per_million);
        (uncached as f64 * self.input_per_million
            + cached as f64 * cached_rate
            + usage.completion_tokens as f64 * self.output_per_million)
            / 1_000_000.0
    }
}

/// Prices by model name. kalify ships no prices, because they change:
/// copy them from the provider's price list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
}

impl PriceTable {
    /// An empty table.
    pub fn new() -> Self {
        PriceTable::default()
    }

    /// Adds or replaces the price of `model`.
    pub fn insert(&mut self, model: impl Into<String>, price: Price) {
        self.prices.insert(model.into(), price);
    }

    /// The price of `model`: an exact entry, or else the longest entry that
    /// is a prefix of the name followed by `-`, so `gpt-4o-mini` prices
    /// `gpt-4o-mini-2024-07-18`.
    pub fn get(&self, model: &str) -> Option<&Price> {
        if let Some(price) = self.prices.get(model) {
            return Some(price);
        }
        self.prices
            .iter()
            .filter(|(name, _)| {
                model
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| price)
    }

    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        for (model, price) in &self.prices {
            let rates = [
                Some(price.input_per_million),
                Some(price.output_per_million),
                price.cached_input_per_million,
            ];
            if rates
                .into_iter()
                .flatten()
                .any(|rate| !rate.is_finite() || rate < 0.0)
            {
                return Err(format!(
                    "the price of model {model:?} is negative or not a number"
                ));
            }
        }
        Ok(())
    }
}

/// The spending limit of one conversation. A call starts only while the
/// conversation is below every limit set, so the call that crosses a limit
/// completes and the next one is refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// The maximum tokens, prompt and completion together.
    pub max_tokens: Option<u64>,
    /// The maximum estimated dollars.
    pub max_cost_usd: Option<f64>,
}

impl Budget {
    /// A limit in tokens.
    pub fn tokens(max_tokens: u64) -> Self {
        Budget {
            max_tokens: Some(max_tokens),
            max_cost_usd: None,
        }
    }

    /// A limit in estimated dollars.
    pub fn cost_usd(max_cost_usd: f64) -> Self {
        Budget {
            max_tokens: None,
            max_cost_usd: Some(max_cost_usd),
        }
    }

    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if self
            .max_cost_usd
            .is_some_and(|cost| !cost.is_finite() || cost < 0.0)
        {
            return Err("the conversation cost budget is negative or not a number".to_owned());
        }
        Ok(())
    }

    /// The limit `totals` reached, if any.
    pub(crate) fn exceeded_by(&self, totals: &UsageTotals) -> Option<&'static str> {
        if self
            .max_tokens
            .is_some_and(|max| totals.total_tokens() >= max)
        {
            return Some("tokens");
        }
        if self.max_cost_usd.is_some_and(|max| totals.cost_usd >= max) {
            return Some("cost");
        }
        None
    }
}

/// Accumulated usage of a conversation, an org or the whole process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    /// Completed HTTP calls that reported usage.
    pub calls: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cached request tokens.
    pub cached_prompt_tokens: u64,
    /// Estimated dollars of the calls whose model had a price.
    pub cost_usd: f64,
    /// Calls whose model had no price, so `cost_usd` leaves them out.
    pub unpriced_calls: u64,
}

impl UsageTotals {
    /// Prompt and completion tokens together.
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    fn add(&mut self, usage: &TokenUsage, cost: Option<f64>) {
        self.calls += 1;
        self.prompt_tokens = self.prompt_tokens.saturating_add(usage.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(usage.completion_tokens);
        self.cached_prompt_tokens = self
            .cached_prompt_tokens
            .saturating_add(usage.cached_prompt_tokens);
        match cost {
            Some(cost) => self.cost_usd += cost,
            None => self.unpriced_calls += 1,
        }
    }
}

/// The key that identifies a conversation in the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ConversationKey {
    /// The id set by [`with_usage_scope`].
    Id(ConversationId),
    /// A hash of the conversation's earliest message (direction, time and
    /// text), used when no scope names the conversation.
    Fingerprint(u64),
}

/// The org and conversation that model calls made inside
/// [`with_usage_scope`] are charged to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageScope {
    /// The org, for per-org totals.
    pub org: Option<OrgId>,
    /// The conversation, for per-conversation totals and the budget.
    pub conversation: Option<ConversationId>,
}

tokio::task_local! {
    static SCOPE: UsageScope;
}

/// Runs `future` with every model call inside it charged to `scope`.
///
/// The model requests carry no org or conversation id, so the adapter
/// reads them from this task-local scope. Without a scope, usage is charged
/// to no org, and the conversation is recognised by a fingerprint of its
/// earliest message.
///
/// ```no_run
/// # async fn run(engine: kalify_core::engine::Engine, org: kalify_core::OrgId, inbound: kalify_core::ports::InboundMessage) -> kalify_core::Result<()> {
/// use kalify_ai::openai::{UsageScope, with_usage_scope};
///
/// let scope = UsageScope { org: Some(org), conversation: None };
/// with_usage_scope(scope, engine.handle_inbound(org, inbound)).await?;
/// # Ok(()) }
/// ```
pub async fn with_usage_scope<F: Future>(scope: UsageScope, future: F) -> F::Output {
    SCOPE.scope(scope, future).await
}

/// The scope of the running task, if any.
pub(crate) fn current_scope() -> UsageScope {
    SCOPE.try_with(|scope| *scope).unwrap_or_default()
}

/// The conversation key of a request: the scope's id, else a fingerprint
/// of the earliest line. `None` when the request carries no line at all.
pub(crate) fn conversation_key<'a>(
    scope: &UsageScope,
    lines: impl IntoIterator<Item = &'a TranscriptLine>,
) -> Option<ConversationKey> {
    if let Some(id) = scope.conversation {
        return Some(ConversationKey::Id(id));
    }
    let earliest = lines.into_iter().min_by_key(|line| line.at)?;
    // DefaultHasher::new() has fixed keys, so the hash is stable within one build.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    earliest.direction.as_str().hash(&mut hasher);
    earliest
        .at
        .timestamp_nanos_opt()
        .unwrap_or_default()
        .hash(&mut hasher);
    earliest.text.hash(&mut hasher);
    Some(ConversationKey::Fingerprint(hasher.finish()))
}

/// Token and cost totals per conversation, per org and overall, shared by
/// every clone.
///
/// Memory grows by one entry per conversation and org seen; call
/// [`UsageLedger::remove_conversation`] once a conversation's totals have
/// been reported.
#[derive(Clone, Debug, Default)]
pub struct UsageLedger {
    inner: Arc<Mutex<LedgerState>>,
}

#[derive(Debug, Default)]
struct LedgerState {
    total: UsageTotals,
    conversations: HashMap<ConversationKey, UsageTotals>,
    orgs: HashMap<OrgId, UsageTotals>,
    unscoped: UsageTotals,
}

impl UsageLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        UsageLedger::default()
    }

    /// Adds one call's usage.
    pub fn record(
        &self,
        org: Option<OrgId>,
        conversation: Option<ConversationKey>,
        usage: &TokenUsage,
        cost: Option<f64>,
    ) {
        let mut state = self.lock();
        state.total.add(usage, cost);
        match org {
            Some(org) => state.orgs.entry(org).or_default().add(usage, cost),
            None => state.unscoped.add(usage, cost),
        }
        if let Some(key) = conversation {
            state.conversations.entry(key).or_default().add(usage, cost);
        }
    }

    /// The totals of one conversation.
    pub fn conversation(&self, key: ConversationKey) -> UsageTotals {
        self.lock()
            .conversations
            .get(&key)
            .copied()
            .unwrap_or_default()
    }

    /// The totals of one org.
    pub fn org(&self, org: OrgId) -> UsageTotals {
        self.lock().orgs.get(&org).copied().unwrap_or_default()
    }

    /// The totals of calls made outside any org scope.
    pub fn unscoped(&self) -> UsageTotals {
        self.lock().unscoped
    }

    /// The totals of every call.
    pub fn total(&self) -> UsageTotals {
        self.lock().total
    }

    /// Every conversation with its totals.
    pub fn conversations(&self) -> Vec<(ConversationKey, UsageTotals)> {
        self.lock()
            .conversations
            .iter()
            .map(|(key, totals)| (*key, *totals))
            .collect()
    }

    /// Every org with its totals.
    pub fn orgs(&self) -> Vec<(OrgId, UsageTotals)> {
        self.lock()
            .orgs
            .iter()
            .map(|(org, totals)| (*org, *totals))
            .collect()
    }

    /// Forgets a conversation's totals, and so resets its budget.
    pub fn remove_conversation(&self, key: ConversationKey) -> Option<UsageTotals> {
        self.lock().conversations.remove(&key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_counts_cached_tokens_at_their_rate() {
        let price = Price::per_million(2.0, 8.0).with_cached_input(1.0);
        let usage = TokenUsage {
            prompt_tokens: 1_000_000,
            completion_tokens: 500_000,
            cached_prompt_tokens: 400_000,
        };
        let cost = price.cost(&usage);
        assert!(
            (cost - (0.6 * 2.0 + 0.4 * 1.0 + 0.5 * 8.0)).abs() < 1e-9,
            "{cost}"
        );
    }

    #[test]
    fn price_table_matches_dated_names() {
        let mut table = PriceTable::new();
        table.insert("gpt-4o", Price::per_million(1.0, 1.0));
        table.insert("gpt-4o-mini", Price::per_million(2.0, 2.0));
        assert_eq!(
            table
                .get("gpt-4o-mini-2024-07-18")
                .map(|price| price.input_per_million),
            Some(2.0)
        );
        assert_eq!(
            table
                .get("gpt-4o-2024-08-06")
                .map(|price| price.input_per_million),
            Some(1.0)
        );
        assert!(table.get("gpt-4").is_none());
        assert!(table.get("gpt-4omni").is_none());
    }

    #[test]
    fn ledger_sums_per_conversation_and_org() {
        let ledger = UsageLedger::new();
        let org = OrgId::new();
        let key = ConversationKey::Fingerprint(7);
        let usage = TokenUsage {
            prompt_tokens: 100,
            completion_tokens: 20,
            cached_prompt_tokens: 0,
        };
        ledger.record(Some(org), Some(key), &usage, Some(0.5));
        ledger.clone().record(Some(org), Some(key), &usage, None);
        let conversation = ledger.conversation(key);
        assert_eq!(conversation.calls, 2);
        assert_eq!(conversation.total_tokens(), 240);
        assert_eq!(conversation.unpriced_calls, 1);
        assert_eq!(ledger.org(org).cost_usd, 0.5);
        assert_eq!(ledger.total().calls, 2);
        assert_eq!(ledger.unscoped().calls, 0);
    }

    #[test]
    fn budget_reports_the_limit_reached() {
        let totals = UsageTotals {
            prompt_tokens: 900,
            completion_tokens: 100,
            cost_usd: 0.2,
            ..UsageTotals::default()
        };
        assert_eq!(Budget::tokens(1_000).exceeded_by(&totals), Some("tokens"));
        assert_eq!(Budget::tokens(1_001).exceeded_by(&totals), None);
        assert_eq!(Budget::cost_usd(0.2).exceeded_by(&totals), Some("cost"));
    }
}

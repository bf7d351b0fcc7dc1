//! Settings of the OpenAI adapter and the builder that validates them.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use kalify_core::{Error, ErrorKind, Result, Secret};

use super::OpenAiModel;
use super::transport::{RetryPolicy, Transport};
use super::usage::{Budget, Price, PriceTable, UsageLedger};

/// The base URL of the OpenAI API.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// The model used when none is configured.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// The API shape of the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApiFlavor {
    /// OpenAI and the servers that copy its API (Mistral, vLLM, Ollama, the
    /// Azure OpenAI `/openai/v1` endpoint): `POST {base_url}/chat/completions`
    /// with the key in `Authorization: Bearer`.
    #[default]
    OpenAi,
    /// Azure OpenAI deployments: `POST
    /// {base_url}/openai/deployments/{deployment}/chat/completions?api-version={api_version}`
    /// with the key in the `api-key` header. `base_url` is the resource
    /// endpoint, such as `https://my-resource.openai.azure.com`.
    Azure {
        /// The deployment name, which picks the model on Azure.
        deployment: String,
        /// The `api-version` query value, such as `2024-10-21`.
        api_version: String,
    },
}

/// How the adapter asks for a JSON answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StructuredOutput {
    /// `response_format: {type: json_schema, strict: true}`, the structured
    /// outputs of OpenAI, Azure OpenAI and recent vLLM and Ollama.
    #[default]
    JsonSchema,
    /// `response_format: {type: json_object}` with the schema in the
    /// instructions, for servers without JSON schema support.
    JsonObject,
    /// One forced function call whose parameters are the schema, for servers
    /// that constrain tool arguments but not `response_format`.
    ToolCall,
}

/// The header that carries the API key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthHeader {
    /// `Authorization: Bearer KEY` (OpenAI, Mistral, vLLM, Ollama).
    #[default]
    Bearer,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKey,
}

/// Settings of [`OpenAiModel`] that can be read from a configuration file.
/// The API key is not part of it: pass it to
/// [`OpenAiModelBuilder::with_api_key`] as a [`Secret`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct OpenAiConfig {
    /// The model name sent in each request, such as `gpt-4o-mini`.
    pub model: String,
    /// The API base URL, such as `https://api.openai.com/v1` or
    /// `http://127.0.0.1:11434/v1` for a local Ollama.
    pub base_url: String,
    /// The API shape.
    pub flavor: ApiFlavor,
    /// The header that carries the key; `None` picks the flavor's usual one.
    pub auth_header: Option<AuthHeader>,
    /// The `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// The `OpenAI-Project` header.
    pub project: Option<String>,
    /// The deadline of one HTTP attempt, body included, in milliseconds.
    pub timeout_ms: u64,
    /// Attempts after the first for 408, 409, 429, 5xx, timeouts and lost
    /// connections.
    pub max_retries: u32,
    /// The first backoff delay in milliseconds; it doubles on each retry.
    pub backoff_base_ms: u64,
    /// The longest backoff delay in milliseconds.
    pub backoff_max_ms: u64,
    /// The longest wait a server may ask for (`Retry-After`) before the
    /// adapter gives up and returns the error, in milliseconds.
    pub max_retry_wait_ms: u64,
    /// How the JSON answer is requested.
    pub structured_output: StructuredOutput,
    /// The sampling temperature; `None` leaves the server default, which
    /// reasoning models require.
    pub temperature: Option<f32>,
    /// The most tokens the model may write per call (`max_completion_tokens`).
    pub max_output_tokens: Option<u32>,
    /// Sends the limit as the older `max_tokens` field, for servers that do
    /// not know `max_completion_tokens`.
    pub legacy_max_tokens: bool,
    /// Earlier messages sent with each request, newest kept.
    pub max_history_lines: usize,
    /// The longest text of one message sent to the model, in characters.
    pub max_message_chars: usize,
    /// Replaces phone numbers and e-mail addresses in the prospect's text
    /// with `[phone]` and `[email]` before it is sent.
    pub scrub_contact_points: bool,
    /// Refuses to analyse new messages that look like an attempt to
    /// instruct the model, so that the engine uses its fallback model or a
    /// member instead.
    pub screen_injections: bool,
    /// Prices per model, for the cost estimate.
    pub prices: PriceTable,
    /// The spending limit of one conversation.
    pub conversation_budget: Option<Budget>,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            model: DEFAULT_MODEL.to_owned(),
            base_url: OPENAI_BASE_URL.to_owned(),
            flavor: ApiFlavor::OpenAi,
            auth_header: None,
            organization: None,
            project: None,
            timeout_ms: 30_000,
            max_retries: 2,
            backoff_base_ms: 500,
            backoff_max_ms: 8_000,
            max_retry_wait_ms: 20_000,
            structured_output: StructuredOutput::JsonSchema,
            temperature: None,
            max_output_tokens: Some(1_000),
            legacy_max_tokens: false,
            max_history_lines: 20,
            max_message_chars: 4_000,
            scrub_contact_points: true,
            screen_injections: true,
            prices: PriceTable::default(),
            conversation_budget: None,
        }
    }
}

/// Builds an [`OpenAiModel`].
///
/// ```no_run
/// use std::time::Duration;
/// use kalify_ai::openai::{OpenAiModelBuilder, Price};
/// use kalify_core::Secret;
///
/// # fn main() -> kalify_core::Result<()> {
/// let model = OpenAiModelBuilder::new()
///     .with_api_key(Secret::new("sk-..."))
///     .with_model("gpt-4o-mini")
///     .with_timeout(Duration::from_secs(20))
///     .with_price("gpt-4o-mini", Price::per_million(0.15, 0.60))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct OpenAiModelBuilder {
    config: OpenAiConfig,
    api_key: Option<Secret>,
    ledger: Option<UsageLedger>,
    insecure_http: bool,
}

impl OpenAiModelBuilder {
    /// Starts from the default settings: OpenAI, `gpt-4o-mini`, 30 s per
    /// attempt, 2 retries.
    pub fn new() -> Self {
        OpenAiModelBuilder::default()
    }

    /// Starts from `config`.
    pub fn from_config(config: OpenAiConfig) -> Self {
        OpenAiModelBuilder {
            config,
            ..OpenAiModelBuilder::default()
        }
    }

    /// Starts from the environment: `OPENAI_API_KEY`, `OPENAI_BASE_URL`,
    /// `KALIFY_OPENAI_MODEL`, `OPENAI_ORG_ID` and `OPENAI_PROJECT_ID`, each
    /// used when set and not empty.
    pub fn from_env() -> Self {
        let read = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        let mut builder = OpenAiModelBuilder::new();
        if let Some(key) = read("OPENAI_API_KEY") {
            builder = builder.with_api_key(Secret::new(key.trim()));
        }
        if let Some(url) = read("OPENAI_BASE_URL") {
            builder = builder.with_base_url(url.trim());
        }
        if let Some(model) = read("KALIFY_OPENAI_MODEL") {
            builder = builder.with_model(model.trim());
        }
        if let Some(organization) = read("OPENAI_ORG_ID") {
            builder = builder.with_organization(organization.trim());
        }
        if let Some(project) = read("OPENAI_PROJECT_ID") {
            builder = builder.with_project(project.trim());
        }
        builder
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: Secret) -> Self {
        self.api_key = Some(key);
        self
    }

    /// Sets the model name.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.config.model = model.into();
        self
    }

    /// Sets the API base URL.
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.config.base_url = url.into();
        self
    }

    /// Targets an Azure OpenAI deployment: `base_url` is the resource
    /// endpoint, the key goes in the `api-key` header and every request
    /// carries `api-version`.
    pub fn with_azure(
        mut self,
        base_url: impl Into<String>,
        deployment: impl Into<String>,
        api_version: impl Into<String>,
    ) -> Self {
        self.config.base_url = base_url.into();
        self.config.flavor = ApiFlavor::Azure {
            deployment: deployment.into(),
            api_version: api_version.into(),
        };
        self
    }

    /// Sets the header that carries the key.
    pub fn with_auth_header(mut self, header: AuthHeader) -> Self {
        self.config.auth_header = Some(header);
        self
    }

    /// Sets the `OpenAI-Organization` header.
    pub fn with_organization(mut self, organization: impl Into<String>) -> Self {
        self.config.organization = Some(organization.into());
        self
    }

    /// Sets the `OpenAI-Project` header.
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        self.config.project = Some(project.into());
        self
    }

    /// Sets the deadline of one HTTP attempt.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout_ms = duration_ms(timeout);
        self
    }

    /// Sets the number of retries after the first attempt.
    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.config.max_retries = retries;
        self
    }

    /// Sets the first and the longest backoff delay.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.config.backoff_base_ms = duration_ms(base);
        self.config.backoff_max_ms = duration_ms(max);
        self
    }

    /// Sets the longest `Retry-After` wait the adapter accepts.
    pub fn with_max_retry_wait(mut self, wait: Duration) -> Self {
        self.config.max_retry_wait_ms = duration_ms(wait);
        self
    }

    /// Sets how the JSON answer is requested.
    pub fn with_structured_output(mut self, mode: StructuredOutput) -> Self {
        self.config.structured_output = mode;
        self
    }

    /// Sets the sampling temperature.
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.config.temperature = Some(temperature);
        self
    }

    /// Sets the most tokens the model may write per call.
    pub fn with_max_output_tokens(mut self, tokens: u32) -> Self {
        self.config.max_output_tokens = Some(tokens);
        self
    }

    /// Adds or replaces the price of `model`.
    pub fn with_price(mut self, model: impl Into<String>, price: Price) -> Self {
        self.config.prices.insert(model, price);
        self
    }

    /// Sets the spending limit of one conversation.
    pub fn with_conversation_budget(mut self, budget: Budget) -> Self {
        self.config.conversation_budget = Some(budget);
        self
    }

    /// Shares `ledger` with other models, so that a fallback model or a
    /// second adapter counts against the same budgets.
    pub fn with_ledger(mut self, ledger: UsageLedger) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Turns scrubbing of phone numbers and e-mail addresses on or off.
    pub fn with_contact_scrubbing(mut self, scrub: bool) -> Self {
        self.config.scrub_contact_points = scrub;
        self
    }

    /// Turns the screen for injection attempts on or off.
    pub fn with_injection_screen(mut self, screen: bool) -> Self {
        self.config.screen_injections = screen;
        self
    }

    /// Allows sending the API key over plain `http://` to a host other than
    /// the loopback interface, where anyone on the path can read it.
    pub fn allow_insecure_http_dangerous(mut self, allow: bool) -> Self {
        self.insecure_http = allow;
        self
    }

    /// Checks the settings and builds the model.
    ///
    /// # Errors
    /// `ConfigInvalid` when the base URL is not an http(s) URL, the model
    /// name is empty, the key is missing for OpenAI or Azure, the key would
    /// travel over plain http to another host, a timeout is zero, an Azure
    /// setting is empty, a price is negative, or a cost budget has no price
    /// for the model.
    pub fn build(self) -> Result<OpenAiModel> {
        let config = self.config;
        let invalid =
            |message: String| Error::new(ErrorKind::ConfigInvalid, message).with_adapter("openai");

        if config.model.trim().is_empty() {
            return Err(invalid(
                "the model name is empty; set one such as gpt-4o-mini".to_owned(),
            ));
        }
        let base = reqwest::Url::parse(config.base_url.trim_end_matches('/'))
            .map_err(|error| invalid(format!("invalid base URL {:?}: {error}", config.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(invalid(format!(
                "invalid base URL {:?}: it must be an http or https URL with a host",
                config.base_url
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid(
                "the base URL carries credentials; pass the key with with_api_key".to_owned(),
            ));
        }
        let loopback = is_loopback(&base);
        let api_key = self.api_key.filter(|key| !key.expose().trim().is_empty());
        let needs_key = matches!(config.flavor, ApiFlavor::Azure { .. })
            || base.host_str() == Some("api.openai.com");
        if needs_key && api_key.is_none() {
            return Err(invalid(
                "no API key configured; set OPENAI_API_KEY or call with_api_key".to_owned(),
            ));
        }
        if base.scheme() == "http" && !loopback && api_key.is_some() && !self.insecure_http {
            return Err(invalid(
                "the API key would be sent over plain http to a host other than loopback; use https or allow_insecure_http_dangerous".to_owned(),
            ));
        }
        if let ApiFlavor::Azure {
            deployment,
            api_version,
        } = &config.flavor
            && (deployment.trim().is_empty() || api_version.trim().is_empty())
        {
            return Err(invalid(
                "an Azure endpoint needs a deployment name and an api-version".to_owned(),
            ));
        }
        if config.timeout_ms == 0 {
            return Err(invalid(
                "the timeout is zero; give each attempt at least a few seconds".to_owned(),
            ));
        }
        if config.backoff_base_ms > config.backoff_max_ms {
            return Err(invalid(format!(
                "the first backoff delay ({} ms) is above the longest ({} ms)",
                config.backoff_base_ms, config.backoff_max_ms
            )));
        }
        config.prices.validate().map_err(invalid)?;
        if let Some(budget) = &config.conversation_budget {
            budget.validate().map_err(invalid)?;
            if budget.max_cost_usd.is_some() && config.prices.get(&config.model).is_none() {
                return Err(invalid(format!(
                    "a cost budget is set but model {:?} has no price; add one with with_price",
                    config.model
                )));
            }
        }

        let policy = RetryPolicy {
            max_retries: config.max_retries,
            backoff_base: Duration::from_millis(config.backoff_base_ms),
            backoff_max: Duration::from_millis(config.backoff_max_ms),
            max_retry_wait: Duration::from_millis(config.max_retry_wait_ms),
        };
        let transport = Transport::new(&config, base, loopback, api_key, policy)?;
        Ok(OpenAiModel::from_parts(
            Arc::new(config),
            transport,
            self.ledger.unwrap_or_default(),
        ))
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// True when the URL's host is `localhost` or a loopback address.
pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

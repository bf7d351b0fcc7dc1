//! A [`LanguageModel`] over the chat completions API of OpenAI and the
//! servers that copy it: Azure OpenAI, Mistral, vLLM and Ollama.
//!
//! # What a call does
//!
//! `analyse` sends the criteria, the known facts, the recent history and
//! the new messages as a JSON document, and requests an output that matches
//! a JSON schema generated from the request's criteria (strict structured
//! outputs by default). The answer is checked: enums must hold allowed
//! values, fact keys must be among the criteria, quotes must be copied from
//! the new messages, confidences must lie in [0, 1]. A fact that fails is
//! dropped. An answer that is not valid JSON or breaks the schema gets
//! exactly one repair attempt, with the reason sent back, and then an
//! error, so that the engine tries its fallback model and then hands off.
//!
//! `write_reply` asks for a short message in the prospect's language,
//! appends [`automation_notice`] when the request needs it, and checks the
//! result: length, SMS parts, links, phone numbers and e-mail addresses,
//! words about a score or a qualification status, and language. A failed check is a `ContentRejected` error, so the
//! engine sends its template instead.
//!
//! # Failures
//!
//! Each HTTP attempt has a deadline. 408, 409, 429, 5xx, timeouts and lost
//! connections are retried with exponential backoff and jitter, honouring
//! `retry-after-ms`, `Retry-After` and `x-ratelimit-reset-*`; a used-up
//! quota (`insufficient_quota`) is not retried. The status table is on
//! [`OpenAiModel`]. A refusal (`message.refusal` or a content filter) is a
//! `ContentRejected` error and is not repaired or retried.
//!
//! # Prompt safety
//!
//! New messages that look like an attempt to instruct the model (phrases
//! such as "ignore previous instructions", chat-template markers, JSON with
//! the analysis's fields, long base64 runs) are not sent: `analyse` returns
//! `ContentRejected`, and the engine uses its fallback model or a member.
//! Prospect text travels as JSON string values that the instructions
//! declare untrusted; phone numbers and e-mail addresses in it are replaced
//! with `[phone]` and `[email]` unless
//! [`OpenAiModelBuilder::with_contact_scrubbing`] turns that off. The model
//! returns only the analysis schema: the engine decides every action and
//! computes the score.
//!
//! # Usage and cost
//!
//! Each completed call adds its token usage and estimated cost to a
//! [`UsageLedger`], per conversation and per org. When the conversation's
//! [`Budget`] is spent, a call is refused before anything is sent. See
//! [`with_usage_scope`] for how calls are tied to an org and conversation.
//!
//! # Limitations
//!
//! - Streaming is not used; each call waits for the whole answer.
//! - The ledger is in memory and per process.
//! - Only the webpki roots are trusted: a server behind a private
//!   certificate authority cannot be reached over https.

mod config;
mod guard;
mod mapping;
mod prompt;
mod schema;
mod transport;
mod usage;
mod wire;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use kalify_core::analysis::{Analysis, AnalysisRequest, ReplyDraft, ReplyRequest};
use kalify_core::contact::ChannelKind;
use kalify_core::ports::LanguageModel;
use kalify_core::reply::automation_notice;
use kalify_core::{Error, ErrorKind, OrgId, Result, Retry};

pub use self::config::{
    ApiFlavor, AuthHeader, DEFAULT_MODEL, OPENAI_BASE_URL, OpenAiConfig, OpenAiModelBuilder,
    StructuredOutput,
};
pub use self::usage::{
    Budget, ConversationKey, Price, PriceTable, TokenUsage, UsageLedger, UsageScope, UsageTotals,
    with_usage_scope,
};

use self::mapping::{Checked, parse_analysis, parse_reply};
use self::transport::Transport;
use self::wire::ChatResponse;

/// The shortest reply budget, in characters, worth asking a model for.
const MIN_REPLY_CHARS: usize = 20;

/// A language model behind an OpenAI-compatible chat completions API.
///
/// Build one with [`OpenAiModel::builder`] or
/// [`OpenAiModelBuilder::from_env`].
///
/// # Errors
///
/// | cause | kind | retry |
/// |---|---|---|
/// | 400 context length exceeded | `InvalidInput` | permanent |
/// | other 400, 413, 422 | `InvalidInput` | permanent |
/// | 401 | `Unauthenticated` | permanent |
/// | 403 | `PermissionDenied` | permanent |
/// | 404 (URL, model or deployment) | `ConfigInvalid` | permanent |
/// | 408, timeout | `Timeout` | persistent after the retries |
/// | 409, 5xx, connection lost | `Unavailable` | persistent after the retries |
/// | 429 | `RateLimited` | persistent after the retries, or temporary with `retry_after` when the server requests more than the longest wait |
/// | 429 `insufficient_quota` | `RateLimited` | permanent |
/// | conversation budget spent | `RateLimited` | permanent, nothing sent |
/// | new messages look like a prompt injection | `ContentRejected` | permanent, nothing sent |
/// | refusal or content filter | `ContentRejected` | permanent |
/// | reply fails a check | `ContentRejected` | permanent |
/// | answer invalid after the repair attempt | `Unexpected` | permanent |
#[derive(Debug)]
pub struct OpenAiModel {
    config: Arc<OpenAiConfig>,
    transport: Transport,
    ledger: UsageLedger,
}

/// The org and conversation a call is charged to.
#[derive(Clone, Copy, Debug)]
struct Charge {
    org: Option<OrgId>,
    conversation: Option<ConversationKey>,
}

impl OpenAiModel {
    /// Starts building a model.
    pub fn builder() -> OpenAiModelBuilder {
        OpenAiModelBuilder::new()
    }

    pub(crate) fn from_parts(
        config: Arc<OpenAiConfig>,
        transport: Transport,
        ledger: UsageLedger,
    ) -> Self {
        OpenAiModel {
            config,
            transport,
            ledger,
        }
    }

    /// Returns the ledger this model writes usage to.
    pub fn ledger(&self) -> &UsageLedger {
        &self.ledger
    }

    /// Returns the settings in use.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// Returns the chat completions URL that requests are posted to.
    pub fn endpoint(&self) -> &str {
        self.transport.url().as_str()
    }

    /// Refuses the call when the conversation's budget is spent.
    fn check_budget(&self, charge: &Charge, operation: &'static str) -> Result<()> {
        let (Some(budget), Some(key)) = (&self.config.conversation_budget, charge.conversation)
        else {
            return Ok(());
        };
        let totals = self.ledger.conversation(key);
        match budget.exceeded_by(&totals) {
            None => Ok(()),
            Some(limit) => Err(Error::new(
                ErrorKind::RateLimited,
                "the conversation's model budget is spent; nothing was sent",
            )
            .with_retry(Retry::Permanent)
            .with_adapter("openai")
            .with_operation(operation)
            .with_context("limit", limit)
            .with_context("tokens", totals.total_tokens())),
        }
    }

    /// Sends one request after the budget check and records its usage.
    async fn call(
        &self,
        body: &async_openai::types::chat::CreateChatCompletionRequest,
        charge: &Charge,
        operation: &'static str,
    ) -> Result<ChatResponse> {
        self.check_budget(charge, operation)?;
        let bytes = serde_json::to_vec(body)?;
        let response = self.transport.post(bytes, operation).await?;

        match &response.usage {
            Some(usage) => {
                let tokens = usage.tokens();
                let price = self.config.prices.get(&self.config.model).or_else(|| {
                    response
                        .model
                        .as_deref()
                        .and_then(|model| self.config.prices.get(model))
                });
                let cost = price.map(|price| price.cost(&tokens));
                self.ledger
                    .record(charge.org, charge.conversation, &tokens, cost);
                tracing::debug!(
                    target: "kalify::ai",
                    adapter = "openai",
                    operation,
                    prompt_tokens = tokens.prompt_tokens,
                    completion_tokens = tokens.completion_tokens,
                    cost_usd = cost.unwrap_or_default(),
                    "model usage recorded"
                );
            }
            None => {
                tracing::debug!(target: "kalify::ai", adapter = "openai", operation, "the server reported no usage")
            }
        }
        Ok(response)
    }
}

/// Returns the output text of a completion: the tool call's arguments or the
/// message content. `Ok(None)` when there is neither.
fn answer_text(response: &ChatResponse, operation: &'static str) -> Result<Option<String>> {
    let rejected = |message: &str, finish: Option<&str>| {
        Error::new(ErrorKind::ContentRejected, message.to_owned())
            .with_retry(Retry::Permanent)
            .with_adapter("openai")
            .with_operation(operation)
            .with_context("finish_reason", finish.unwrap_or("none"))
    };
    let Some(choice) = response.choices.first() else {
        return Ok(None);
    };
    let finish = choice.finish_reason.as_deref();
    let Some(message) = &choice.message else {
        return Ok(None);
    };
    if message
        .refusal
        .as_deref()
        .is_some_and(|refusal| !refusal.trim().is_empty())
    {
        return Err(rejected("the model refused to answer", finish));
    }
    if finish == Some("content_filter") {
        return Err(rejected(
            "the server's content filter stopped the answer",
            finish,
        ));
    }
    Ok(message
        .first_tool_arguments()
        .or_else(|| message.text())
        .filter(|text| !text.trim().is_empty()))
}

fn log_checked(checked: &Checked) {
    for dropped in &checked.dropped {
        tracing::warn!(target: "kalify::ai", adapter = "openai", key = %dropped.key, reason = dropped.reason, "fact dropped from the model's analysis");
    }
    tracing::debug!(
        target: "kalify::ai",
        adapter = "openai",
        facts = checked.analysis.facts.len(),
        dropped = checked.dropped.len(),
        intent = ?checked.analysis.intent,
        "model analysis checked"
    );
}

#[async_trait]
impl LanguageModel for OpenAiModel {
    fn name(&self) -> &str {
        &self.config.model
    }

    /// Analyses the new replies, with one repair attempt for an invalid output.
    ///
    /// # Errors
    /// See the table on [`OpenAiModel`].
    async fn analyse(&self, request: &AnalysisRequest) -> Result<Analysis> {
        if self.config.screen_injections
            && let Some(signal) = request
                .new_messages
                .iter()
                .find_map(|line| guard::injection_signal(&line.text))
        {
            tracing::warn!(target: "kalify::ai", adapter = "openai", signal, "new messages look like a prompt injection; not sent to the model");
            return Err(Error::new(
                ErrorKind::ContentRejected,
                "the new messages look like an attempt to instruct the model; nothing was sent",
            )
            .with_retry(Retry::Permanent)
            .with_adapter("openai")
            .with_operation("analyse")
            .with_context("signal", signal));
        }
        let scope = usage::current_scope();
        let charge = Charge {
            org: scope.org,
            conversation: usage::conversation_key(
                &scope,
                request.history.iter().chain(&request.new_messages),
            ),
        };

        let first = self
            .call(
                &prompt::analysis_body(&self.config, request, None),
                &charge,
                "analyse",
            )
            .await?;
        let (rejected_answer, reason) = match answer_text(&first, "analyse")? {
            Some(raw) => match parse_analysis(&raw, request) {
                Ok(checked) => {
                    log_checked(&checked);
                    return Ok(checked.analysis);
                }
                Err(error) => (raw, error.0),
            },
            None => (String::new(), "the output was empty".to_owned()),
        };
        tracing::warn!(target: "kalify::ai", adapter = "openai", reason = %reason, "model output rejected; sending one repair request");

        let repair_body =
            prompt::analysis_body(&self.config, request, Some((&rejected_answer, &reason)));
        let second = self.call(&repair_body, &charge, "analyse_repair").await?;
        let failure = match answer_text(&second, "analyse_repair")? {
            Some(raw) => match parse_analysis(&raw, request) {
                Ok(checked) => {
                    log_checked(&checked);
                    return Ok(checked.analysis);
                }
                Err(error) => error.0,
            },
            None => "the output was empty".to_owned(),
        };
        Err(Error::unexpected(format!(
            "the model's output is still invalid after one repair attempt: {failure}"
        ))
        .with_adapter("openai")
        .with_operation("analyse"))
    }

    /// Writes a reply and checks it.
    ///
    /// # Errors
    /// See the table on [`OpenAiModel`]; `InvalidInput` when the request's
    /// length limit leaves too little room for a message.
    async fn write_reply(&self, request: &ReplyRequest) -> Result<ReplyDraft> {
        let rejected = |reason: String| {
            Error::new(
                ErrorKind::ContentRejected,
                format!("the model's reply was rejected: {reason}"),
            )
            .with_retry(Retry::Permanent)
            .with_adapter("openai")
            .with_operation("write_reply")
        };
        let budget = prompt::reply_budget(request);
        if budget < MIN_REPLY_CHARS {
            return Err(Error::invalid_input(format!(
                "a reply limit of {} characters leaves too little room for a message",
                request.max_chars
            ))
            .with_adapter("openai")
            .with_operation("write_reply"));
        }
        let scope = usage::current_scope();
        let charge = Charge {
            org: scope.org,
            conversation: usage::conversation_key(&scope, &request.history),
        };

        let response = self
            .call(
                &prompt::reply_body(&self.config, request, budget),
                &charge,
                "write_reply",
            )
            .await?;
        let raw = answer_text(&response, "write_reply")?
            .ok_or_else(|| rejected("the output was empty".to_owned()))?;
        let mut text = parse_reply(&raw)
            .map_err(|error| rejected(error.0))?
            .trim()
            .to_owned();

        if request.channel == ChannelKind::Sms {
            text = guard::plain_punctuation(&text);
        }
        let notice = automation_notice(request.locale);
        if request.disclose_automation && !text.contains(notice) {
            text.push(' ');
            text.push_str(notice);
        }
        guard::check_reply(&text, request).map_err(rejected)?;
        Ok(ReplyDraft { text })
    }
}

impl fmt::Display for OpenAiModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OpenAiModel(model={}, url={})",
            self.config.model,
            self.transport.url()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalify_core::Secret;

    #[test]
    fn debug_and_display_hide_the_key() {
        let builder = OpenAiModel::builder()
            .with_api_key(Secret::new("sk-test-secret-123"))
            .with_base_url("http://127.0.0.1:9/v1");
        assert!(!format!("{builder:?}").contains("sk-test"));
        let model = builder.build().unwrap();
        assert!(!format!("{model:?}").contains("sk-test"));
        assert!(!format!("{model}").contains("sk-test"));
        assert_eq!(model.endpoint(), "http://127.0.0.1:9/v1/chat/completions");
    }

    #[test]
    fn azure_endpoint_has_deployment_and_version() {
        let model = OpenAiModel::builder()
            .with_api_key(Secret::new("key"))
            .with_azure(
                "https://example-resource.openai.azure.com/",
                "gpt4o-prod",
                "2024-10-21",
            )
            .build()
            .unwrap();
        assert_eq!(
            model.endpoint(),
            "https://example-resource.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn build_rejects_bad_settings() {
        let key = || Secret::new("key");
        let cases = [
            ("no key for OpenAI", OpenAiModel::builder()),
            (
                "empty model",
                OpenAiModel::builder().with_api_key(key()).with_model(" "),
            ),
            (
                "not a URL",
                OpenAiModel::builder()
                    .with_api_key(key())
                    .with_base_url("api.openai.com"),
            ),
            (
                "ftp URL",
                OpenAiModel::builder()
                    .with_api_key(key())
                    .with_base_url("ftp://127.0.0.1/v1"),
            ),
            (
                "key over plain http",
                OpenAiModel::builder()
                    .with_api_key(key())
                    .with_base_url("http://10.1.2.3:8000/v1"),
            ),
            (
                "zero timeout",
                OpenAiModel::builder()
                    .with_api_key(key())
                    .with_timeout(std::time::Duration::ZERO),
            ),
            (
                "Azure without version",
                OpenAiModel::builder()
                    .with_api_key(key())
                    .with_azure("https://x.test", "d", ""),
            ),
            (
                "cost budget without price",
                OpenAiModel::builder()
                    .with_api_key(key())
                    .with_conversation_budget(Budget::cost_usd(1.0)),
            ),
            (
                "negative price",
                OpenAiModel::builder()
                    .with_api_key(key())
                    .with_price("gpt-4o-mini", Price::per_million(-1.0, 1.0)),
            ),
        ];
        for (name, builder) in cases {
            let error = builder.build().unwrap_err();
            assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{name}: {error}");
        }
    }

    #[test]
    fn local_server_needs_no_key() {
        let model = OpenAiModel::builder()
            .with_base_url("http://localhost:11434/v1")
            .with_model("llama3.1")
            .build()
            .unwrap();
        assert_eq!(model.name(), "llama3.1");
        let remote_http = OpenAiModel::builder()
            .with_api_key(Secret::new("key"))
            .with_base_url("http://10.1.2.3:8000/v1")
            .allow_insecure_http_dangerous(true)
            .build();
        assert!(remote_http.is_ok());
    }
}

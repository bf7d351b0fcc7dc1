//! The response bodies of the chat completions API, read leniently: every
//! field the adapter does not need may be missing or carry values that
//! OpenAI does not send, as compatible servers do.

use serde::Deserialize;

use super::usage::TokenUsage;

/// A chat completion.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatResponse {
    #[serde(default)]
    pub(crate) choices: Vec<Choice>,
    #[serde(default)]
    pub(crate) usage: Option<WireUsage>,
    #[serde(default)]
    pub(crate) model: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub(crate) message: Option<ResponseMessage>,
    #[serde(default)]
    pub(crate) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResponseMessage {
    /// A string, or an array of content parts on some servers.
    #[serde(default)]
    pub(crate) content: Option<serde_json::Value>,
    #[serde(default)]
    pub(crate) refusal: Option<String>,
    #[serde(default)]
    pub(crate) tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ToolCall {
    #[serde(default)]
    pub(crate) function: Option<FunctionCall>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionCall {
    /// A JSON string on OpenAI; an object on some compatible servers.
    #[serde(default)]
    pub(crate) arguments: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl WireUsage {
    pub(crate) fn tokens(&self) -> TokenUsage {
        TokenUsage {
            prompt_tokens: self.prompt_tokens.unwrap_or(0),
            completion_tokens: self.completion_tokens.unwrap_or(0),
            cached_prompt_tokens: self
                .prompt_tokens_details
                .as_ref()
                .and_then(|details| details.cached_tokens)
                .unwrap_or(0),
        }
    }
}

impl ResponseMessage {
    /// The text content: the string, or the text parts joined.
    pub(crate) fn text(&self) -> Option<String> {
        match self.content.as_ref()? {
            serde_json::Value::String(text) => Some(text.clone()),
            serde_json::Value::Array(parts) => {
                let text: String = parts
                    .iter()
                    .filter_map(|part| part.get("text").and_then(serde_json::Value::as_str))
                    .collect();
                Some(text)
            }
            _ => None,
        }
    }

    /// The arguments of the first function call, as JSON text.
    pub(crate) fn first_tool_arguments(&self) -> Option<String> {
        let call = self
            .tool_calls
            .as_ref()?
            .iter()
            .find_map(|call| call.function.as_ref())?;
        match call.arguments.as_ref()? {
            serde_json::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// The error envelope `{"error": {"message", "type", "param", "code"}}`;
/// some compatible servers send `{"error": "text"}` or a bare `message`.
#[derive(Debug, Default)]
pub(crate) struct ApiError {
    pub(crate) message: String,
    pub(crate) error_type: Option<String>,
    pub(crate) code: Option<String>,
}

impl ApiError {
    pub(crate) fn parse(body: &[u8]) -> ApiError {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return ApiError {
                message: String::from_utf8_lossy(body).chars().take(300).collect(),
                ..ApiError::default()
            };
        };
        let error = value.get("error").unwrap_or(&value);
        if let Some(text) = error.as_str() {
            return ApiError {
                message: text.to_owned(),
                ..ApiError::default()
            };
        }
        let text = |key: &str| {
            error
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        ApiError {
            message: text("message").unwrap_or_default(),
            error_type: text("type"),
            // The code is a string on OpenAI and a number on some servers.
            code: text("code").or_else(|| {
                error
                    .get("code")
                    .and_then(serde_json::Value::as_i64)
                    .map(|code| code.to_string())
            }),
        }
    }

    /// True when the code or type names the billing quota.
    pub(crate) fn is_insufficient_quota(&self) -> bool {
        self.code.as_deref() == Some("insufficient_quota")
            || self.error_type.as_deref() == Some("insufficient_quota")
    }

    /// True when the request was longer than the model's context window.
    pub(crate) fn is_context_length(&self) -> bool {
        self.code.as_deref() == Some("context_length_exceeded")
            || self.message.contains("maximum context length")
            || self.message.contains("context length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_shapes() {
        let openai = ApiError::parse(br#"{"error":{"message":"m","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#);
        assert!(openai.is_insufficient_quota());
        let text = ApiError::parse(br#"{"error":"model not found"}"#);
        assert_eq!(text.message, "model not found");
        let numeric = ApiError::parse(br#"{"error":{"message":"m","code":429}}"#);
        assert_eq!(numeric.code.as_deref(), Some("429"));
        let html = ApiError::parse(b"<html>bad gateway</html>");
        assert_eq!(html.message, "<html>bad gateway</html>");
    }

    #[test]
    fn content_parts_are_joined() {
        let message: ResponseMessage = serde_json::from_str(
            r#"{"content":[{"type":"text","text":"{\"a\":"},{"type":"text","text":"1}"}]}"#,
        )
        .unwrap();
        assert_eq!(message.text().as_deref(), Some("{\"a\":1}"));
    }
}

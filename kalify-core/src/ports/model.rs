//! The language model port.

use std::sync::Arc;

use async_trait::async_trait;

use crate::analysis::{Analysis, AnalysisRequest, ReplyDraft, ReplyRequest};
use crate::error::Result;

/// Reads replies into a typed [`Analysis`] and writes answers.
///
/// # Contract
/// - `analyse` returns only the `Analysis` type: quotes must be copied from
///   the new messages, and the engine drops facts whose quote it cannot find.
/// - The engine computes the score and picks the action; nothing a model
///   returns can change a recipient, a consent or another prospect.
/// - Requests carry no contact points.
///
/// # Errors
/// `Timeout`, `RateLimited` and `Unavailable` are retryable; the engine
/// falls back to a template or a handoff when a call fails.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LanguageModel: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and audit, such as `rules` or `gpt-4o-mini`.
    fn name(&self) -> &str;

    /// Analyses the new replies.
    async fn analyse(&self, request: &AnalysisRequest) -> Result<Analysis>;

    /// Writes a reply.
    async fn write_reply(&self, request: &ReplyRequest) -> Result<ReplyDraft>;
}

#[async_trait]
impl<T: LanguageModel + ?Sized> LanguageModel for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn analyse(&self, request: &AnalysisRequest) -> Result<Analysis> {
        (**self).analyse(request).await
    }
    async fn write_reply(&self, request: &ReplyRequest) -> Result<ReplyDraft> {
        (**self).write_reply(request).await
    }
}

//! The error type shared by every kalify crate and adapter.

use std::fmt;
use std::time::Duration;

/// Result with kalify's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, independent of the adapter that reported it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The requested record does not exist in this org.
    NotFound,
    /// A write lost a race: the stored version differs from the expected one.
    Conflict,
    /// A caller-supplied value is malformed or out of range.
    InvalidInput,
    /// The conversation state machine rejected an event in the current state.
    InvalidTransition,
    /// Credentials are missing or wrong.
    Unauthenticated,
    /// The credentials are valid but lack the permission for this operation.
    PermissionDenied,
    /// The provider throttled the request.
    RateLimited,
    /// The backend or provider cannot be reached right now.
    Unavailable,
    /// The operation did not finish in time.
    Timeout,
    /// The recipient has opted out or is suppressed.
    RecipientOptedOut,
    /// The provider or a guard rejected the content of a message.
    ContentRejected,
    /// A configuration value is missing or invalid.
    ConfigInvalid,
    /// The backend or adapter does not support this operation.
    Unsupported,
    /// Anything else; these are logged at error level.
    Unexpected,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::InvalidTransition => "invalid transition",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::RecipientOptedOut => "recipient opted out",
            ErrorKind::ContentRejected => "content rejected",
            ErrorKind::ConfigInvalid => "invalid configuration",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unexpected => "unexpected",
        };
        f.write_str(name)
    }
}

/// Whether repeating the failed operation can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retry {
    /// Repeating the same request fails the same way.
    Permanent,
    /// Retry with backoff, honouring [`Error::retry_after`] when set.
    Temporary,
    /// Was temporary, but still failed after the retry budget was spent.
    Persistent,
}

/// An error from kalify or one of its adapters.
///
/// Built as `Error::new(kind, message)` and refined with the `with_*` methods.
/// The message is lowercase and states what failed; `context` carries the ids
/// and values involved as structured pairs, never contact data or secrets.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    retry: Retry,
    message: String,
    operation: Option<&'static str>,
    adapter: Option<&'static str>,
    context: Vec<(&'static str, String)>,
    retry_after: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// Creates an error of `kind`; the retry class defaults from the kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retry = match kind {
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Timeout => {
                Retry::Temporary
            }
            _ => Retry::Permanent,
        };
        Error {
            inner: Box::new(Inner {
                kind,
                retry,
                message: message.into(),
                operation: None,
                adapter: None,
                context: Vec::new(),
                retry_after: None,
                source: None,
            }),
        }
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for an [`ErrorKind::Conflict`] error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for an [`ErrorKind::Unexpected`] error.
    pub fn unexpected(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unexpected, message)
    }

    /// Names the operation that failed, such as `"send"` or `"commit_turn"`.
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.inner.operation = Some(operation);
        self
    }

    /// Names the adapter that reported the error, such as `"sqlite"`.
    pub fn with_adapter(mut self, adapter: &'static str) -> Self {
        self.inner.adapter = Some(adapter);
        self
    }

    /// Adds a structured context pair. Never pass contact data or secrets.
    pub fn with_context(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        self.inner.context.push((key, value.to_string()));
        self
    }

    /// Overrides the retry class derived from the kind.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.inner.retry = retry;
        self
    }

    /// Sets the delay the provider asked for before a retry.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.inner.retry_after = Some(delay);
        self
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Box::new(source));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// Whether a retry can help.
    pub fn retry(&self) -> Retry {
        self.inner.retry
    }

    /// True when the retry class is [`Retry::Temporary`].
    pub fn is_retryable(&self) -> bool {
        self.inner.retry == Retry::Temporary
    }

    /// The delay the provider asked for before a retry, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The message without context.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The operation that failed, if named.
    pub fn operation(&self) -> Option<&'static str> {
        self.inner.operation
    }

    /// The adapter that reported the error, if named.
    pub fn adapter(&self) -> Option<&'static str> {
        self.inner.adapter
    }

    /// The structured context pairs.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.inner.context
    }

    /// Marks the error of a send whose request may have reached the
    /// provider, such as a timeout after the request left: the provider may
    /// have accepted the message. It adds the context `outcome=unknown`.
    pub fn with_unknown_outcome(self) -> Self {
        self.with_context("outcome", "unknown")
    }

    /// True when the failed operation may still have taken effect at the
    /// provider (the context `outcome=unknown`), so that a blind retry
    /// could repeat it.
    pub fn outcome_unknown(&self) -> bool {
        self.inner
            .context
            .iter()
            .any(|(key, value)| *key == "outcome" && value == "unknown")
    }

    /// Marks a temporary error as persistent once the retry budget is spent.
    pub fn into_persistent(mut self) -> Self {
        if self.inner.retry == Retry::Temporary {
            self.inner.retry = Retry::Persistent;
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(adapter) = self.inner.adapter {
            write!(f, "{adapter}: ")?;
        }
        if let Some(operation) = self.inner.operation {
            write!(f, "{operation}: ")?;
        }
        f.write_str(&self.inner.message)?;
        for (key, value) in &self.inner.context {
            write!(f, " [{key}={value}]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.inner.kind)
            .field("retry", &self.inner.retry)
            .field("message", &self.inner.message);
        if let Some(operation) = self.inner.operation {
            debug.field("operation", &operation);
        }
        if let Some(adapter) = self.inner.adapter {
            debug.field("adapter", &adapter);
        }
        if !self.inner.context.is_empty() {
            debug.field("context", &self.inner.context);
        }
        if let Some(delay) = self.inner.retry_after {
            debug.field("retry_after", &delay);
        }
        if let Some(source) = &self.inner.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|source| source.as_ref() as &(dyn std::error::Error + 'static))
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::new(ErrorKind::Unexpected, "failed to encode or decode JSON").with_source(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_operation_and_context() {
        let error = Error::not_found("prospect not found")
            .with_operation("get_prospect")
            .with_adapter("sqlite")
            .with_context("prospect_id", "p1");
        assert_eq!(
            error.to_string(),
            "sqlite: get_prospect: prospect not found [prospect_id=p1]"
        );
    }

    #[test]
    fn retry_class_follows_kind() {
        assert!(Error::new(ErrorKind::RateLimited, "slow down").is_retryable());
        assert!(!Error::invalid_input("bad").is_retryable());
        let spent = Error::new(ErrorKind::Unavailable, "down").into_persistent();
        assert_eq!(spent.retry(), Retry::Persistent);
        assert!(!spent.is_retryable());
    }
}

//! kalify qualifies sales leads by talking to them.
//!
//! It imports prospects, runs SMS, e-mail and Messenger campaigns, reads the
//! replies, extracts budget, authority, need and timeline with a language
//! model or its offline extractor, scores each prospect with a score that
//! explains itself, schedules follow-ups, hands hot leads to a person and
//! honours opt-outs on every path.
//!
//! This facade re-exports [`kalify_core`] and the adapters its features enable:
//!
//! | feature | what it enables | default |
//! |---|---|---|
//! | `memory` | [`store::MemoryStore`] | yes |
//! | `sqlite` | [`store::SqliteStore`], embedded SQLite | yes |
//! | `postgres` | `store::PostgresStore`, for several workers sharing one database | no |
//! | `rules` | [`ai::RulesModel`], the offline English and French extractor | yes |
//! | `openai` | `ai::OpenAiModel`, for OpenAI and compatible servers | no |
//! | `twilio` | `channels::twilio`, SMS through Twilio | no |
//! | `smtp` | `channels::email`, e-mail over SMTP and inbound MIME parsing | no |
//! | `messenger` | `channels::messenger`, Facebook Messenger | no |
//! | `notify` | `channels::notify`, team notifications by signed webhook (Slack, Microsoft Teams) and e-mail | no |
//! | `testkit` | conformance suites and fakes for adapter authors | no |
//! | `mock` | mockall mocks of every port | no |

pub use kalify_core::*;

/// Storage backends.
pub mod store {
    #[cfg(feature = "memory")]
    pub use kalify_store::MemoryStore;
    #[cfg(feature = "postgres")]
    pub use kalify_store::{PostgresStore, PostgresStoreBuilder};
    #[cfg(feature = "sqlite")]
    pub use kalify_store::{SqliteStore, SqliteStoreBuilder, SqliteSynchronous};
}

/// Channel adapters.
pub mod channels {
    pub use kalify_channels::*;
}

/// Language models.
pub mod ai {
    #[cfg(feature = "openai")]
    pub use kalify_ai::openai::{
        OpenAiConfig, OpenAiModel, OpenAiModelBuilder, UsageLedger, UsageScope, with_usage_scope,
    };
    pub use kalify_ai::*;
}

//! Domain types, ports, the conversation state machine, scoring and the
//! engine of kalify.
//!
//! `kalify-core` has no network or database dependency: adapters in
//! `kalify-store`, `kalify-channels` and `kalify-ai` implement its ports.
//!
//! | feature | what it adds |
//! |---|---|
//! | `testkit` | conformance suites for adapter authors, and fakes |
//! | `mock` | mockall mocks of every port (`MockStore`, `MockChannel`, …) |

pub mod analysis;
pub mod campaign;
pub mod contact;
pub mod conversation;
pub mod engine;
mod error;
pub mod export;
pub mod gate;
pub mod gdpr;
mod id;
pub mod import;
pub mod keywords;
pub mod ports;
pub mod prospect;
pub mod qualification;
pub mod rate;
pub mod reply;
mod secret;
pub mod simulation;
pub mod sms;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use error::{Error, ErrorKind, Result, Retry};
pub use id::{CampaignId, ConversationId, JobId, MemberId, MessageId, OrgId, OutboxId, ProspectId};
pub use secret::Secret;

/// A point in time, always UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

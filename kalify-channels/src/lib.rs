//! Channel adapters of kalify.
//!
//! | feature | adapter | default |
//! |---|---|---|
//! | `console` | [`ConsoleChannel`]: prints what would be sent | yes |
//!
//! [`MemoryChannel`] records sends in memory for tests and is always available.

#[cfg(feature = "console")]
mod console;
mod memory;

#[cfg(feature = "console")]
pub use console::ConsoleChannel;
pub use memory::{MemoryChannel, SentMessage};

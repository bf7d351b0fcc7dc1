//! Storage backends of kalify: implementations of
//! [`kalify_core::ports::Store`].
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `memory` | yes | [`MemoryStore`]: everything in process memory, for tests, simulations and demos |
//! | `sqlite` | no | [`SqliteStore`]: one SQLite file in WAL mode, with SQLite compiled in (`rusqlite` with `bundled`) |
//!
//! Both backends pass the conformance suite in `kalify_core::testkit`
//! (feature `testkit` of `kalify-core`), so they behave the same through the
//! `Store` trait. The SQLite store also keeps its data across restarts and
//! can share its file with other processes, which wait for each other's
//! write lock up to the busy timeout.
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # async fn example() -> kalify_core::Result<()> {
//! use std::sync::Arc;
//! use kalify_core::ports::Store;
//! use kalify_store::SqliteStore;
//!
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::open("kalify.db").await?);
//! # Ok(())
//! # }
//! ```
//!
//! # Non-goals
//! Neither backend is a general query layer: each method serves one step of
//! the engine, and every query is scoped by org.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "memory", feature = "sqlite", feature = "postgres"))]
mod common;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PostgresStore, PostgresStoreBuilder};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteStore, SqliteStoreBuilder, SqliteSynchronous};

//! Test support for adapter authors and embedders: the [`Store`]
//! conformance suite and builders of sample records.
//!
//! Run the suite against a backend from an integration test:
//!
//! ```ignore
//! kalify_core::store_conformance!(memory, || async { kalify_store::MemoryStore::new() });
//! ```
//!
//! The macro expands to a module named after the backend, with one test
//! per case in [`store_suite`]. The factory is called once per case, so
//! each case gets its own store. It may return any type that implements
//! `Store`, including `Arc<dyn Store>`, or a `(store, guard)` pair whose
//! guard, such as the temporary directory of a database file, must live as
//! long as the case. The caller needs no tokio dependency: each test runs
//! on a runtime built by this module.
//!
//! [`channel_suite`] holds the conformance suite of network channel
//! adapters, run with [`channel_conformance!`](crate::channel_conformance).
//!
//! Code here reports failures by panicking, as tests do.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod channel_suite;
pub mod fakes;
pub mod store_suite;

use std::future::Future;

use crate::ports::Store;

/// The value a conformance factory returns: a store, or a store with a
/// guard that lives as long as the case.
pub trait StoreFixture {
    /// Returns the store under test.
    fn store(&self) -> &dyn Store;
}

impl<S: Store> StoreFixture for S {
    fn store(&self) -> &dyn Store {
        self
    }
}

impl<S: Store, G> StoreFixture for (S, G) {
    fn store(&self) -> &dyn Store {
        &self.0
    }
}

/// Runs `future` to completion on a new multi-threaded runtime with two
/// workers, so that concurrent cases interleave on real threads.
///
/// [`store_conformance!`](crate::store_conformance) calls it. It is not a stable API.
#[doc(hidden)]
pub fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("failed to build the tokio runtime for a conformance test");
    runtime.block_on(future)
}

/// Stamps out one test per case of the store conformance suite.
///
/// `$backend` names the generated module, and `$factory` is a closure that
/// returns a future resolving to a new, empty store, or to a
/// [`StoreFixture`] pair of a store and a guard. Paths in the factory are
/// resolved inside the generated module, which imports everything from the
/// calling module.
///
/// ```ignore
/// kalify_core::store_conformance!(sqlite, || async {
///     kalify_store::SqliteStore::in_memory().await.expect("open an in-memory database")
/// });
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($backend:ident, $factory:expr $(,)?) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;

            $crate::__store_conformance_cases!(
                $factory;
                prospect_roundtrip,
                prospect_missing_is_not_found,
                prospect_insert_existing_id_conflicts,
                prospect_update_bumps_version,
                prospect_update_stale_version_conflicts,
                prospect_concurrent_updates_one_winner,
                find_prospect_by_contact_point,
                find_prospects_by_contacts_matches_single_lookups,
                list_prospects_order_after_limit,
                campaign_put_get,
                conversation_insert_idempotent,
                conversation_insert_requires_prospect,
                conversations_of_order,
                tenancy_hides_other_orgs,
                inbound_insert_dedupes,
                inbound_concurrent_duplicates_insert_once,
                pending_inbound_order,
                commit_turn_writes_everything,
                commit_turn_conversation_conflict_writes_nothing,
                commit_turn_creates_conversation,
                commit_turn_prospect_conflict_writes_nothing,
                commit_turn_rejects_other_org_records,
                commit_turn_cancels_conversation_scope,
                commit_turn_cancels_prospect_scope,
                job_dedupe_key_unique_per_org,
                claim_jobs_due_order_and_limit,
                claim_jobs_lease_expiry,
                claim_jobs_skips_finished,
                finish_job_retry_at_reschedules,
                claim_outbox_due_order_and_lease,
                finish_outbox_sets_message_status,
                finish_outbox_retry_at_reschedules,
                outbox_unconfirmed_after_expired_lease,
                suppression_idempotent_per_org,
                suppressed_among_matches_single_checks,
                audit_of_order,
                members_put_get_list,
                debug_omits_stored_data,
                erase_prospect_leaves_no_row_behind,
                model_exchanges_roundtrip,
                append_audit_outside_turn,
                subject_requests_put_list_open,
                expired_prospects_by_collection_and_last_message,
                purge_messages_before,
                delete_org_removes_every_row,
                delete_member_removes_it,
                commit_turn_finished_job_conflicts,
            );
        }
    };
}

/// Expands to one `#[test]` per case name, for [`store_conformance!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testkit::block_on(async {
                    let factory = $factory;
                    let fixture = factory().await;
                    let store = $crate::testkit::StoreFixture::store(&fixture);
                    $crate::testkit::store_suite::$case(store).await;
                });
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    /// Fails when a public case of the suite is missing from the macro's list.
    #[test]
    fn macro_lists_every_case() {
        let suite = include_str!("store_suite.rs");
        let this = include_str!("mod.rs");
        let cases: Vec<&str> = suite
            .lines()
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split('(').next())
            .collect();
        assert!(
            cases.len() > 30,
            "expected the suite's cases, found {}",
            cases.len()
        );
        for case in cases {
            assert!(
                this.contains(&format!("                {case},\n")),
                "store_conformance! does not run case {case}"
            );
        }
    }
}

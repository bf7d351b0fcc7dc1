//! Checks what only the PostgreSQL store does: password redaction, error
//! kinds of an unreachable server, reconnection, migrations, row-level
//! security, claims and enrollments under concurrency, and erasure down to
//! the table files.
//!
//! Tests that need the server read `KALIFY_TEST_POSTGRES_URL` and skip
//! without it, unless `CI` is set. Each uses schemas and roles of its own.

// Clippy allows `expect` and `panic` in test functions only, and the
// helpers here fail a test the same way.
#![allow(clippy::expect_used, clippy::panic)]

mod postgres_support;

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kalify_core::contact::{ContactPoint, EmailAddress, PhoneNumber};
use kalify_core::conversation::Conversation;
use kalify_core::gdpr::{DIGEST_PREFIX, RequestKind, SubjectRequest};
use kalify_core::ports::{
    Actor, Job, JobKind, JobOutcome, ListOptions, ModelExchange, Store, TurnCommit,
};
use kalify_core::testkit::fakes::{self, time};
use kalify_core::{CampaignId, ErrorKind, JobId, MemberId, OrgId, Timestamp};
use kalify_store::{PostgresStore, PostgresStoreBuilder};
use postgres_support::{
    TestDatabase, admin, execute, owner_store, test_url, unique_name, url_with,
};
use sqlx::Row;
use sqlx::postgres::PgConnection;

const LEASE: Duration = Duration::from_secs(60);

/// The latest version of the base migrations.
const BASE_VERSION: i64 = 3;

/// Returns a port on 127.0.0.1 that nothing listens on: one the system
/// just assigned and released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("failed to bind a local port");
    listener
        .local_addr()
        .expect("failed to read the local port")
        .port()
}

/// Log output captured from the tracing events of the current thread.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("the log buffer lock is poisoned"))
            .into_owned()
    }
}

impl Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("the log buffer lock is poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures every tracing event of this thread, sqlx's included, until the guard drops.
fn capture_logs() -> (CapturedLogs, tracing::dispatcher::DefaultGuard) {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (logs, guard)
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_retryable() {
    let url = format!(
        "postgres://kalify:s3cret-pw@127.0.0.1:{}/kalify",
        closed_port()
    );
    let error = PostgresStoreBuilder::new(url)
        .with_acquire_timeout(Duration::from_millis(500))
        .build()
        .await
        .expect_err("a closed port must fail the build");

    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        error.is_retryable(),
        "connection refused must be retryable: {error}"
    );
    assert_eq!(error.adapter(), Some("postgres"), "{error}");
    assert!(
        error.to_string().contains("127.0.0.1"),
        "the error must name the server: {error}"
    );
    assert!(
        !error.to_string().contains("s3cret-pw"),
        "Display must hide the password: {error}"
    );
    assert!(
        !format!("{error:?}").contains("s3cret-pw"),
        "Debug must hide the password: {error:?}"
    );
}

#[tokio::test]
async fn invalid_settings_are_config_invalid() {
    let bad_port = PostgresStoreBuilder::new("postgres://kalify:s3cret-pw@127.0.0.1:99999/kalify")
        .build()
        .await
        .expect_err("an invalid port must be rejected");
    assert_eq!(bad_port.kind(), ErrorKind::ConfigInvalid, "{bad_port}");
    assert!(
        !format!("{bad_port} {bad_port:?}").contains("s3cret-pw"),
        "the error must hide the password: {bad_port:?}"
    );

    let bad_schema = PostgresStoreBuilder::new("postgres://kalify@127.0.0.1/kalify")
        .with_schema("Kalify; DROP TABLE prospects")
        .build()
        .await
        .expect_err("an invalid schema name must be rejected");
    assert_eq!(bad_schema.kind(), ErrorKind::ConfigInvalid, "{bad_schema}");
    assert!(
        bad_schema.to_string().contains("schema name"),
        "the error must say what is wrong: {bad_schema}"
    );

    let error = PostgresStoreBuilder::from_env()
        .with_schema("kalify")
        .build()
        .await;
    if std::env::var_os("KALIFY_POSTGRES_URL").is_none()
        && std::env::var_os("DATABASE_URL").is_none()
    {
        let error = error.expect_err("a builder without a URL must fail");
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{error}");
    }
}

#[tokio::test]
async fn password_never_shown() {
    let Some(url) = test_url() else { return };
    let (logs, _guard) = capture_logs();
    let database = TestDatabase::new(&url);
    let password = "pw-7c1e-never-shown";
    // The password is sent only if the server requests one, and it must
    // show nowhere either way.
    let with_password = postgres_support::role_url(&url, "postgres", password);

    let builder =
        PostgresStoreBuilder::new(with_password.as_str()).with_schema(database.schema.as_str());
    assert!(
        !format!("{builder:?}").contains(password),
        "Debug of the builder must hide the password"
    );
    let store = match builder.build().await {
        Ok(store) => Some(store),
        // A server that checks passwords rejects this one, which is fine here.
        Err(error) if error.kind() == ErrorKind::Unauthenticated => {
            assert!(
                !format!("{error} {error:?}").contains(password),
                "the error must hide the password: {error:?}"
            );
            None
        }
        Err(error) => panic!("failed to build the store: {error}"),
    };
    if let Some(store) = &store {
        assert!(
            !format!("{store:?}").contains(password),
            "Debug of the store must hide the password: {store:?}"
        );
        assert!(
            !store.to_string().contains(password),
            "Display of the store must hide the password: {store}"
        );
        assert!(
            store.to_string().contains(&database.schema),
            "Display must name the schema: {store}"
        );
        store
            .insert_prospects(&[fakes::prospect(fakes::org())])
            .await
            .expect("insert_prospects");
    }

    let missing_database = unique_name("kalify_missing");
    let wrong_database = url_with(&url, "postgres", password, Some(&missing_database), None);
    let error = PostgresStoreBuilder::new(wrong_database)
        .build()
        .await
        .expect_err("a missing database must fail");
    assert_eq!(
        error.kind(),
        ErrorKind::ConfigInvalid,
        "a missing database must be ConfigInvalid: {error}"
    );
    assert!(
        !format!("{error} {error:?}").contains(password),
        "the error must hide the password: {error:?}"
    );

    let closed_port_url = url_with(&url, "postgres", password, None, Some(closed_port()));
    let error = PostgresStoreBuilder::new(closed_port_url)
        .with_acquire_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect_err("a closed port must fail");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(
        !format!("{error} {error:?}").contains(password),
        "the error must hide the password: {error:?}"
    );

    let logged = logs.text();
    assert!(
        !logged.is_empty(),
        "the test must have captured some log output"
    );
    assert!(
        !logged.contains(password),
        "the logs must hide the password:\n{logged}"
    );
}

/// Ends every server connection of `application_name`, as a restart or a
/// failover does, and returns how many it ended.
async fn end_connections(url: &str, application_name: &str) -> i64 {
    let mut admin = admin(url).await;
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) AS ended",
    )
    .bind(application_name)
    .fetch_one(&mut admin)
    .await
    .expect("failed to end the store's connections")
}

#[tokio::test]
async fn dropped_connections_fail_retryably_then_reconnect() {
    let Some(url) = test_url() else { return };
    let database = TestDatabase::new(&url);
    // A name of its own, so that only this store's connections are ended.
    let application_name = unique_name("kalify_reconnect");
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = PostgresStoreBuilder::new(format!(
        "{url}{separator}application_name={application_name}"
    ))
    .with_schema(database.schema.as_str())
    .with_max_connections(2)
    .build()
    .await
    .expect("failed to build the store");
    let org = fakes::org();
    let prospect = fakes::prospect(org);
    store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .expect("insert_prospects");

    // Just used, the idle connection is lent without a ping, so the call
    // that gets it fails, retryably, and the pool discards it.
    let last_use = std::time::Instant::now();
    assert!(
        end_connections(&url, &application_name).await >= 1,
        "the store must have had a connection to end"
    );
    let mut failures = 0;
    let mut read = None;
    for _ in 0..4 {
        match store.get_prospect(org, prospect.id).await {
            Ok(found) => {
                read = Some(found);
                break;
            }
            Err(error) => {
                assert_eq!(
                    error.kind(),
                    ErrorKind::Unavailable,
                    "a dropped connection must be Unavailable: {error}"
                );
                assert!(
                    error.is_retryable(),
                    "a dropped connection must be retryable: {error}"
                );
                failures += 1;
            }
        }
    }
    assert!(
        read.as_ref() == Some(&prospect),
        "a retry must reconnect and read the prospect"
    );
    if last_use.elapsed() < Duration::from_millis(900) {
        assert!(
            failures >= 1,
            "a connection used less than a second ago is lent without a ping, so a call must fail"
        );
    }

    // Idle for more than a second, the connection is pinged first, so the
    // pool replaces it before the call uses it.
    assert!(
        end_connections(&url, &application_name).await >= 1,
        "the store must have had a connection to end"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let read = store
        .get_prospect(org, prospect.id)
        .await
        .expect("a call on a long-idle dropped connection must reconnect");
    assert!(
        read == prospect,
        "the reconnected store must read the prospect"
    );
}

#[tokio::test]
async fn migrations_apply_once_even_when_concurrent() {
    let Some(url) = test_url() else { return };
    let database = TestDatabase::new(&url);

    let builds = (0..4).map(|_| database.owner_builder().build());
    let stores: Vec<PostgresStore> = futures_all(builds.collect()).await;
    for store in &stores {
        let version = store.schema_version().await.expect("schema_version");
        assert_eq!(
            version, BASE_VERSION,
            "the schema must be at the latest base version"
        );
    }
    let again = database
        .owner_builder()
        .build()
        .await
        .expect("rebuilding on a migrated schema must succeed");
    assert_eq!(
        again.schema_version().await.expect("schema_version"),
        BASE_VERSION
    );

    let mut admin = admin(&url).await;
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.kalify_schema_migrations",
        database.schema
    )))
    .fetch_one(&mut admin)
    .await
    .expect("failed to count migrations");
    assert_eq!(
        rows, BASE_VERSION,
        "concurrent builds must record each base migration once"
    );

    execute(
        &mut admin,
        format!(
            "INSERT INTO {}.kalify_schema_migrations (migration_set, version, description) VALUES ('base', 99, 'future')",
            database.schema
        ),
    )
    .await;
    let error = database
        .owner_builder()
        .build()
        .await
        .expect_err("a schema from a newer kalify must be rejected");
    assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{error}");
    assert!(
        error.to_string().contains("99"),
        "the error must name the stored version: {error}"
    );
}

/// Awaits every build, failing the test on the first error.
async fn futures_all<F>(futures: Vec<F>) -> Vec<PostgresStore>
where
    F: std::future::Future<Output = kalify_core::Result<PostgresStore>> + Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut stores = Vec::new();
    for handle in handles {
        let store = handle
            .await
            .expect("a build task panicked")
            .expect("a concurrent build failed");
        stores.push(store);
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_never_return_a_job_twice() {
    let Some(url) = test_url() else { return };
    let database = TestDatabase::new(&url);
    let store = Arc::new(
        database
            .owner_builder()
            .with_max_connections(8)
            .build()
            .await
            .expect("failed to build"),
    );

    // 120 due jobs over three orgs, ten conversations each.
    let mut expected = HashSet::new();
    for _ in 0..3 {
        let org = fakes::org();
        for _ in 0..10 {
            let prospect = fakes::minimal_prospect(org);
            store
                .insert_prospects(std::slice::from_ref(&prospect))
                .await
                .expect("insert_prospects");
            let conversation = fakes::conversation(&prospect, Some(CampaignId::new()));
            let jobs: Vec<Job> = (1..=4)
                .map(|attempt| fakes::job(&conversation, attempt, time(i64::from(attempt))))
                .collect();
            expected.extend(jobs.iter().map(|job| job.id));
            assert!(
                store
                    .insert_conversation(&conversation, &jobs)
                    .await
                    .expect("insert_conversation")
            );
        }
    }

    let workers: Vec<_> = (0..8)
        .map(|index| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let worker = format!("worker-{index}");
                let mut claimed = Vec::new();
                loop {
                    let batch = store
                        .claim_jobs(time(10), 3, LEASE, &worker)
                        .await
                        .expect("claim_jobs");
                    if batch.is_empty() {
                        return claimed;
                    }
                    claimed.extend(batch.into_iter().map(|job| job.id));
                }
            })
        })
        .collect();

    let mut seen: Vec<JobId> = Vec::new();
    for worker in workers {
        seen.extend(worker.await.expect("a claiming task panicked"));
    }
    let distinct: HashSet<JobId> = seen.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "no job may be claimed twice while its lease runs"
    );
    assert_eq!(
        distinct, expected,
        "the workers together must claim every due job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_enrollments_create_one_conversation() {
    let Some(url) = test_url() else { return };
    let database = TestDatabase::new(&url);
    let store = Arc::new(
        database
            .owner_builder()
            .with_max_connections(10)
            .build()
            .await
            .expect("failed to build"),
    );
    let org = fakes::org();
    let prospect = fakes::prospect(org);
    store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .expect("insert_prospects");
    let campaign = Some(CampaignId::new());
    let dedupe_key = format!("enroll:{}:first-message", prospect.id);

    // 50 requests enroll the same prospect in the same campaign at once,
    // each with its own conversation id and a job with the same dedupe key.
    let enrollments: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            let conversation = fakes::conversation(&prospect, campaign);
            let mut job = Job::follow_up(&conversation, 0, time(1));
            job.dedupe_key = dedupe_key.clone();
            tokio::spawn(async move {
                let created = store
                    .insert_conversation(&conversation, &[job])
                    .await
                    .expect("insert_conversation");
                (created, conversation.id)
            })
        })
        .collect();
    let mut created = Vec::new();
    for enrollment in enrollments {
        let (was_created, id) = enrollment.await.expect("an enrollment task panicked");
        if was_created {
            created.push(id);
        }
    }

    assert_eq!(
        created.len(),
        1,
        "exactly one of 50 identical enrollments must create the conversation"
    );
    let conversations = store
        .conversations_of(org, prospect.id)
        .await
        .expect("conversations_of");
    assert_eq!(
        conversations.len(),
        1,
        "the prospect must have one conversation"
    );
    assert_eq!(
        conversations.first().map(|c| c.id),
        created.first().copied(),
        "the stored one must be the winner's"
    );
    let jobs = store
        .pending_jobs(org, created[0])
        .await
        .expect("pending_jobs");
    assert_eq!(jobs.len(), 1, "the winner's job must be scheduled");

    let mut admin = admin(&url).await;
    let job_rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {}.jobs WHERE org_id = $1",
        database.schema
    )))
    .bind(org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("failed to count jobs");
    assert_eq!(
        job_rows, 1,
        "50 identical enrollments must schedule one job"
    );
}

/// Seeds, through `store`, a prospect, a conversation, a campaign, a member,
/// an inbound message, a data-subject request and a turn that writes a
/// message, an outbox entry, a job, a suppression with its key, an audit
/// event and a model exchange, so that every table contains a row of `org`.
async fn seed_every_table(
    store: &PostgresStore,
    org: OrgId,
) -> (kalify_core::prospect::Prospect, JobId) {
    let prospect = fakes::prospect(org);
    store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .expect("insert_prospects");
    let conversation = fakes::conversation(&prospect, Some(CampaignId::new()));
    assert!(
        store
            .insert_conversation(&conversation, &[])
            .await
            .expect("insert_conversation")
    );
    store
        .put_campaign(&fakes::campaign(org))
        .await
        .expect("put_campaign");
    store
        .put_member(&fakes::member(org))
        .await
        .expect("put_member");
    store
        .insert_inbound(&fakes::inbound(&conversation, "SM-rls", time(2)))
        .await
        .expect("insert_inbound");

    let message = fakes::outbound(&conversation, time(3));
    let contact = ContactPoint::Email(fakes::email(fakes::next_number()));
    let entry = fakes::outbox_entry(&message, contact.clone());
    let job = fakes::job(&conversation, 1, time(4));
    let mut turn = TurnCommit::new(conversation.clone());
    turn.messages.push(message);
    turn.outbox.push(entry);
    turn.jobs.push(job.clone());
    turn.suppress
        .push(fakes::suppression(org, contact, time(3)));
    turn.audit
        .push(fakes::audit(&conversation, "transition", time(3)));
    turn.model_exchanges
        .push(model_exchange(&conversation, "{}", time(3)));
    store.commit_turn(&turn).await.expect("commit_turn");
    let request = SubjectRequest::open(
        org,
        prospect.id,
        RequestKind::Access,
        Actor::System,
        time(4),
    );
    store
        .put_subject_request(&request)
        .await
        .expect("put_subject_request");
    (prospect, job.id)
}

/// Opens a connection as the application role with the store's schema on its search_path.
async fn application_connection(url: &str, schema: &str) -> PgConnection {
    let mut connection = admin(url).await;
    execute(&mut connection, format!("SET search_path TO {schema}")).await;
    connection
}

/// Returns the org id of every row of `table` visible to the connection.
async fn visible_orgs(connection: &mut PgConnection, table: &str) -> Vec<uuid::Uuid> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT org_id FROM {table}")))
        .fetch_all(connection)
        .await
        .unwrap_or_else(|error| panic!("failed to read {table}: {error}"));
    rows.iter()
        .map(|row| row.get::<uuid::Uuid, _>("org_id"))
        .collect()
}

#[tokio::test]
async fn row_level_security_isolates_orgs() {
    let Some(url) = test_url() else { return };
    let (store, database) = postgres_support::application_store(&url).await;
    let role = database
        .role
        .clone()
        .expect("the application store has a role");
    let schema = database.schema.clone();
    let (org_a, org_b) = (fakes::org(), fakes::org());
    let (prospect_a, job_a) = seed_every_table(&store, org_a).await;
    let (prospect_b, job_b) = seed_every_table(&store, org_b).await;

    // The store itself: another org's id is NotFound, and claims see both orgs.
    let error = store
        .get_prospect(org_b, prospect_a.id)
        .await
        .expect_err("another org's prospect must be hidden");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    let error = store
        .get_prospect(org_a, prospect_b.id)
        .await
        .expect_err("another org's prospect must be hidden");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    let listed = store
        .list_prospects(org_a, ListOptions::default())
        .await
        .expect("list_prospects");
    assert_eq!(
        listed.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![prospect_a.id],
        "list_prospects must see org A only"
    );
    let claimed: HashSet<JobId> = store
        .claim_jobs(time(10), 10, LEASE, "rls-worker")
        .await
        .expect("claim_jobs")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(
        claimed,
        HashSet::from([job_a, job_b]),
        "claims must reach every org through the claim function"
    );
    store
        .finish_job(org_a, job_a, JobOutcome::Done)
        .await
        .expect("finish_job");

    // A connection as the application role, outside the store.
    let application_url = {
        let mut admin = admin(&url).await;
        let password = unique_name("pw");
        execute(
            &mut admin,
            format!("ALTER ROLE {role} PASSWORD '{password}'"),
        )
        .await;
        postgres_support::role_url(&url, &role, &password)
    };
    let mut connection = application_connection(&application_url, &schema).await;
    let current_user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut connection)
        .await
        .expect("current_user");
    assert_eq!(
        current_user, role,
        "the check must run as the application role"
    );
    let owners: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = $1")
            .bind(&schema)
            .fetch_all(&mut connection)
            .await
            .expect("table owners");
    assert!(
        !owners.contains(&role),
        "the application role must not own the tables: {owners:?}"
    );

    let tables = [
        "prospects",
        "campaigns",
        "conversations",
        "messages",
        "jobs",
        "outbox",
        "suppressions",
        "audit_events",
        "members",
        "suppression_keys",
        "model_exchanges",
        "subject_requests",
    ];
    for table in tables {
        let seen = visible_orgs(&mut connection, table).await;
        assert!(
            seen.is_empty(),
            "without kalify.org_id, {table} must show no rows, saw {}",
            seen.len()
        );
    }

    execute(&mut connection, "BEGIN".into()).await;
    sqlx::query("SELECT set_config('kalify.org_id', $1, true)")
        .bind(org_a.to_string())
        .execute(&mut connection)
        .await
        .expect("set kalify.org_id");
    for table in tables {
        let seen = visible_orgs(&mut connection, table).await;
        assert!(
            !seen.is_empty(),
            "with kalify.org_id set to org A, {table} must show org A's rows"
        );
        assert!(
            seen.iter().all(|org| *org == org_a.as_uuid()),
            "{table} must show only org A's rows under org A"
        );
    }
    let insert = sqlx::query(
        "INSERT INTO suppressions (org_id, channel, contact, reason, at) VALUES ($1, 'sms', '+33600000000', 'test', 0)",
    )
    .bind(org_b.as_uuid())
    .execute(&mut connection)
    .await
    .expect_err("a row of org B must be rejected while org A is set");
    let code = insert
        .as_database_error()
        .and_then(|error| error.code())
        .map(|code| code.into_owned());
    assert_eq!(
        code.as_deref(),
        Some("42501"),
        "the policy must reject the row: {insert}"
    );
    execute(&mut connection, "ROLLBACK".into()).await;

    // After the transaction, the setting is gone again.
    let seen = visible_orgs(&mut connection, "prospects").await;
    assert!(
        seen.is_empty(),
        "after the transaction, prospects must show no rows, saw {}",
        seen.len()
    );
    let direct = sqlx::query("SELECT * FROM jobs")
        .fetch_all(&mut connection)
        .await
        .expect("read jobs");
    assert!(
        direct.is_empty(),
        "the application role must not read jobs across orgs outside the claim functions"
    );

    // The table owner sees both orgs, so the rows do exist.
    let mut admin = admin(&url).await;
    let owner_view: Vec<uuid::Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT org_id FROM {schema}.prospects"
    )))
    .fetch_all(&mut admin)
    .await
    .expect("owner read");
    let owner_view: HashSet<uuid::Uuid> = owner_view.into_iter().collect();
    assert_eq!(
        owner_view,
        HashSet::from([org_a.as_uuid(), org_b.as_uuid()]),
        "the owner must see both orgs"
    );
    store.close().await;

    // The application role without the setting: nothing to read, no insert.
    let unscoped = PostgresStoreBuilder::new(application_url.as_str())
        .with_schema(schema.as_str())
        .build()
        .await
        .expect("the application role must build a store on a migrated schema");
    let listed = unscoped
        .list_prospects(org_a, ListOptions::default())
        .await
        .expect("list_prospects");
    assert!(
        listed.is_empty(),
        "without kalify.org_id the application role must list nothing"
    );
    let error = unscoped
        .get_prospect(org_a, prospect_a.id)
        .await
        .expect_err("the prospect must be hidden");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");
    let error = unscoped
        .insert_prospects(&[fakes::prospect(org_a)])
        .await
        .expect_err("the insert must be refused");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
}

#[tokio::test]
async fn row_level_security_cross_org_functions() {
    let Some(url) = test_url() else { return };
    let (store, database) = postgres_support::application_store(&url).await;
    let (org_a, org_b) = (fakes::org(), fakes::org());
    let (prospect_a, _) = seed_every_table(&store, org_a).await;
    let (prospect_b, _) = seed_every_table(&store, org_b).await;
    let far = time(1_000_000);

    // The application role reaches both orgs only through the functions.
    let open = store
        .open_subject_requests(far, 10)
        .await
        .expect("open_subject_requests");
    let orgs: HashSet<OrgId> = open.iter().map(|request| request.org_id).collect();
    assert_eq!(
        orgs,
        HashSet::from([org_a, org_b]),
        "open_subject_requests must list the requests of both orgs"
    );

    let mut expired = store
        .expired_prospects(far, 10)
        .await
        .expect("expired_prospects");
    expired.sort();
    let mut expected = vec![(org_a, prospect_a.id), (org_b, prospect_b.id)];
    expected.sort();
    assert_eq!(
        expired, expected,
        "expired_prospects must find the silent prospects of both orgs"
    );

    let deleted = store
        .purge_messages(far, 100)
        .await
        .expect("purge_messages");
    assert_eq!(
        deleted, 4,
        "purge_messages must delete the inbound and outbound message of both orgs"
    );

    let mut admin = admin(&url).await;
    for table in ["messages", "outbox"] {
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.{table}",
            database.schema
        )))
        .fetch_one(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("failed to count {table}: {error}"));
        assert_eq!(left, 0, "purge_messages must leave no row in {table}");
    }
}

/// Upgrading a schema with row-level security to the base version that
/// marks unconfirmed outbox entries replaces `claim_outbox`, and the
/// function must still run as its owner, so that the application role
/// claims the entries of every org.
#[tokio::test]
async fn upgrade_keeps_claim_security_definer() {
    let Some(url) = test_url() else { return };
    let mut database = TestDatabase::new(&url);
    let owner = database
        .owner_builder()
        .with_row_level_security(true)
        .build()
        .await
        .expect("failed to build the owner's store with row-level security");
    let application_url = database.create_application_role().await;
    let role = database.role.clone().expect("the role was just created");
    owner
        .grant_application_role(&role)
        .await
        .expect("failed to grant the application role");
    let (org_a, org_b) = (fakes::org(), fakes::org());
    seed_every_table(&owner, org_a).await;
    seed_every_table(&owner, org_b).await;
    owner.close().await;

    // Put the schema back to base version 2.
    let schema = database.schema.clone();
    let mut admin = admin(&url).await;
    execute(
        &mut admin,
        format!(
            "ALTER TABLE {schema}.outbox DROP COLUMN unconfirmed, DROP COLUMN first_attempt_at"
        ),
    )
    .await;
    execute(
        &mut admin,
        format!(
            "DELETE FROM {schema}.kalify_schema_migrations WHERE migration_set = 'base' AND version = 3"
        ),
    )
    .await;

    let upgraded = database
        .owner_builder()
        .with_row_level_security(true)
        .build()
        .await
        .expect("failed to upgrade the schema");
    assert_eq!(
        upgraded.schema_version().await.expect("schema_version"),
        BASE_VERSION
    );
    upgraded.close().await;
    let (definer, config): (bool, Option<Vec<String>>) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT prosecdef, proconfig FROM pg_proc \
         WHERE oid = '{schema}.claim_outbox(bigint, bigint, bigint, text)'::regprocedure"
        )))
        .fetch_one(&mut admin)
        .await
        .expect("failed to read claim_outbox's attributes");
    assert!(definer, "claim_outbox must stay SECURITY DEFINER");
    assert_eq!(
        config,
        Some(vec![format!("search_path={schema}, pg_temp")]),
        "claim_outbox must keep its pinned search_path"
    );

    let application = PostgresStoreBuilder::new(application_url)
        .with_schema(schema.as_str())
        .with_row_level_security(true)
        .with_max_connections(2)
        .with_acquire_timeout(Duration::from_secs(10))
        .build()
        .await
        .expect("failed to build the application role's store");
    let claimed = application
        .claim_outbox(time(1_000_000), 100, Duration::from_secs(60), "upgrade")
        .await
        .expect("claim_outbox as the application role");
    let orgs: HashSet<OrgId> = claimed.iter().map(|entry| entry.org_id).collect();
    assert_eq!(
        orgs,
        HashSet::from([org_a, org_b]),
        "the application role must claim the entries of both orgs"
    );
    assert!(
        claimed.iter().all(|entry| !entry.unconfirmed),
        "entries claimed for the first time are not unconfirmed"
    );
    application.close().await;
}

#[tokio::test]
async fn application_role_cannot_migrate() {
    let Some(url) = test_url() else { return };
    let mut database = TestDatabase::new(&url);
    let application_url = database.create_application_role().await;

    let error = PostgresStoreBuilder::new(application_url)
        .with_schema(database.schema.as_str())
        .with_row_level_security(true)
        .with_acquire_timeout(Duration::from_secs(5))
        .build()
        .await
        .expect_err("a role without privileges must not migrate a new schema");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
}

#[tokio::test]
async fn text_with_nul_is_invalid_input() {
    let Some(url) = test_url() else { return };
    let (store, _database) = owner_store(&url).await;
    let org = fakes::org();

    let mut in_text = fakes::prospect(org);
    in_text.company = Some("Acme\0SAS".into());
    let error = store
        .insert_prospects(&[in_text])
        .await
        .expect_err("PostgreSQL text cannot hold NUL");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");

    let mut in_json = fakes::prospect(org);
    in_json.tags.push("b2b\0".into());
    let error = store
        .insert_prospects(&[in_json])
        .await
        .expect_err("jsonb cannot hold \\u0000");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");

    let listed = store
        .list_prospects(org, ListOptions::default())
        .await
        .expect("list_prospects");
    assert!(listed.is_empty(), "rejected prospects must not be written");
}

#[tokio::test]
async fn batch_lookups_match_single_lookups() {
    let Some(url) = test_url() else { return };
    let (store, _database) = owner_store(&url).await;
    let org = fakes::org();
    let first = fakes::prospect(org);
    // A later prospect shares the first one's phone, so the lowest id must win.
    let mut sharing = fakes::minimal_prospect(org);
    sharing.phone = first.phone.clone();
    let other = fakes::prospect(org);
    let elsewhere = fakes::prospect(fakes::org());
    store
        .insert_prospects(&[first.clone(), sharing, other.clone(), elsewhere.clone()])
        .await
        .expect("insert_prospects");

    let unknown = ContactPoint::Email(fakes::email(fakes::next_number()));
    let mut contacts = first.contact_points();
    contacts.extend(other.contact_points());
    contacts.extend(elsewhere.contact_points());
    contacts.push(unknown.clone());
    contacts.extend(first.contact_points());

    let found = store
        .find_prospects_by_contacts(org, &contacts)
        .await
        .expect("find_prospects_by_contacts");
    for contact in &contacts {
        let single = store
            .find_prospect(org, contact)
            .await
            .expect("find_prospect")
            .map(|prospect| prospect.id);
        let batch = found.get(contact).map(|prospect| prospect.id);
        assert_eq!(
            batch,
            single,
            "the batch lookup of a {} must match find_prospect",
            contact.channel()
        );
    }
    assert_eq!(
        found.len(),
        6,
        "the six contact points of the org's two prospects must be found, once each"
    );
    assert!(
        !found.contains_key(&unknown),
        "an unused contact point must be absent"
    );
    let phone = first
        .phone
        .clone()
        .map(ContactPoint::Phone)
        .expect("the fake prospect has a phone");
    assert_eq!(
        found.get(&phone).map(|prospect| prospect.id),
        Some(first.id),
        "the lowest id must win a shared phone"
    );
    let empty = store
        .find_prospects_by_contacts(org, &[])
        .await
        .expect("find_prospects_by_contacts");
    assert!(empty.is_empty(), "no contact points must find nothing");

    let suppressed_phone = phone.clone();
    let suppressed_email = other
        .email
        .clone()
        .map(ContactPoint::Email)
        .expect("the fake prospect has an e-mail");
    let entries = [
        fakes::suppression(org, suppressed_phone.clone(), time(1)),
        fakes::suppression(org, suppressed_email.clone(), time(1)),
    ];
    store.suppress(&entries).await.expect("suppress");
    store
        .suppress(&[fakes::suppression(fakes::org(), unknown.clone(), time(1))])
        .await
        .expect("suppress in another org");

    let suppressed = store
        .suppressed_among(org, &contacts)
        .await
        .expect("suppressed_among");
    assert_eq!(
        suppressed,
        HashSet::from([suppressed_phone, suppressed_email]),
        "exactly the org's two suppressed contact points"
    );
    for contact in &contacts {
        let single = store
            .is_suppressed(org, contact)
            .await
            .expect("is_suppressed");
        assert_eq!(
            suppressed.contains(contact),
            single,
            "suppressed_among of a {} must match is_suppressed",
            contact.channel()
        );
    }
    let none = store
        .suppressed_among(org, &[])
        .await
        .expect("suppressed_among");
    assert!(
        none.is_empty(),
        "no contact points must find no suppression"
    );
}

#[tokio::test]
async fn grant_to_missing_role_is_config_invalid() {
    let Some(url) = test_url() else { return };
    let (store, _database) = owner_store(&url).await;
    let missing = unique_name("kalify_test_missing_role");
    let error = store
        .grant_application_role(&missing)
        .await
        .expect_err("granting a missing role must fail");
    assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{error}");
}

/// Builds a model exchange about `conversation` with `request` as its request text.
fn model_exchange(conversation: &Conversation, request: &str, at: Timestamp) -> ModelExchange {
    ModelExchange {
        org_id: conversation.org_id,
        prospect_id: conversation.prospect_id,
        conversation_id: conversation.id,
        model: "rules".into(),
        operation: "analyse".into(),
        request: request.to_owned(),
        response: r#"{"intent":"gives_info"}"#.into(),
        at,
    }
}

#[tokio::test]
async fn migration_rewrites_clear_suppressions_as_digests() {
    let Some(url) = test_url() else { return };
    let database = TestDatabase::new(&url);
    let schema = database.schema.clone();

    // A schema at base version 1, with suppressions written in clear as version 1 wrote them.
    let mut admin = admin(&url).await;
    execute(&mut admin, format!("CREATE SCHEMA {schema}")).await;
    execute(&mut admin, format!("SET search_path TO {schema}")).await;
    execute(
        &mut admin,
        include_str!("../migrations/postgres/0001_init.sql").to_owned(),
    )
    .await;
    execute(
        &mut admin,
        "CREATE TABLE kalify_schema_migrations (
             migration_set text        NOT NULL,
             version       bigint      NOT NULL,
             description   text        NOT NULL,
             applied_at    timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (migration_set, version)
         );
         INSERT INTO kalify_schema_migrations (migration_set, version, description)
             VALUES ('base', 1, 'tables, indexes and claim functions')"
            .to_owned(),
    )
    .await;
    let (org_a, org_b) = (fakes::org(), fakes::org());
    let phone = ContactPoint::Phone(fakes::phone(fakes::next_number()));
    let email = ContactPoint::Email(fakes::email(fakes::next_number()));
    let clear_rows = [
        (org_a, "sms", phone.key().to_owned(), "opt_out"),
        (org_a, "email", email.key().to_owned(), "bounced"),
        (org_b, "email", email.key().to_owned(), "opt_out"),
        (org_b, "sms", "not a phone number".to_owned(), "opt_out"),
    ];
    for (org, channel, contact, reason) in &clear_rows {
        sqlx::query("INSERT INTO suppressions (org_id, channel, contact, reason, at) VALUES ($1, $2, $3, $4, 42)")
            .bind(org.as_uuid())
            .bind(*channel)
            .bind(contact.as_str())
            .bind(*reason)
            .execute(&mut admin)
            .await
            .expect("failed to insert a clear suppression");
    }

    let store = database
        .owner_builder()
        .build()
        .await
        .expect("failed to migrate the version 1 schema");
    assert_eq!(
        store.schema_version().await.expect("schema_version"),
        BASE_VERSION
    );

    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT contact, reason, at FROM suppressions ORDER BY reason")
            .fetch_all(&mut admin)
            .await
            .expect("failed to read the suppressions");
    assert_eq!(
        rows.len(),
        3,
        "the three parseable rows must be kept and the unparseable one dropped: {rows:?}"
    );
    for (contact, _, at) in &rows {
        assert!(
            contact.starts_with(DIGEST_PREFIX),
            "every kept row must hold a digest, found {contact:?}"
        );
        assert_eq!(*at, 42, "the rewrite must keep the time of the entry");
    }
    assert_eq!(
        rows[0].1, "bounced",
        "the rewrite must keep the reason of the entry"
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM suppression_keys")
        .fetch_one(&mut admin)
        .await
        .expect("failed to count the suppression keys");
    assert_eq!(keys, 2, "each org with a suppression must get one key");

    assert!(
        store
            .is_suppressed(org_a, &phone)
            .await
            .expect("is_suppressed"),
        "org A's phone must stay suppressed"
    );
    assert!(
        store
            .is_suppressed(org_a, &email)
            .await
            .expect("is_suppressed"),
        "org A's e-mail must stay suppressed"
    );
    assert!(
        store
            .is_suppressed(org_b, &email)
            .await
            .expect("is_suppressed"),
        "org B's e-mail must stay suppressed"
    );
    assert!(
        !store
            .is_suppressed(org_b, &phone)
            .await
            .expect("is_suppressed"),
        "org B never suppressed the phone"
    );
}

/// The values an erasure must remove, written into every kind of row.
struct Needles {
    name: String,
    email: EmailAddress,
    phone: PhoneNumber,
}

impl Needles {
    /// Returns values no other test writes: a first name and an address
    /// with 12 random hex digits, and a phone number above those of the fakes.
    fn new() -> Self {
        let random = uuid::Uuid::now_v7().simple().to_string();
        let tail = &random[random.len() - 12..];
        let digits = 5_000_000 + (uuid::Uuid::now_v7().as_u128() % 5_000_000);
        Needles {
            name: format!("Zephyrine{tail}"),
            email: EmailAddress::parse(&format!("zephyrine.{tail}@example.org"))
                .expect("the test address is valid"),
            phone: PhoneNumber::from_e164(&format!("+3361{digits:07}"))
                .expect("the test phone number is valid"),
        }
    }

    fn all(&self) -> [(&'static str, &str); 3] {
        [
            ("first name", self.name.as_str()),
            ("e-mail", self.email.as_str()),
            ("phone", self.phone.as_str()),
        ]
    }
}

/// Returns the tables of `schema`.
async fn schema_tables(admin: &mut PgConnection, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .bind(schema)
    .fetch_all(admin)
    .await
    .expect("failed to list the schema's tables")
}

/// Returns the tables of `schema` with a row whose JSON text contains `needle`.
async fn tables_containing(
    admin: &mut PgConnection,
    schema: &str,
    tables: &[String],
    needle: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    for table in tables {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.{table} AS t WHERE strpos(row_to_json(t)::text, $1) > 0"
        )))
        .bind(needle)
        .fetch_one(&mut *admin)
        .await
        .unwrap_or_else(|error| panic!("failed to search {table}: {error}"));
        if rows > 0 {
            found.push(table.clone());
        }
    }
    found
}

/// Returns the data files of the tables of `schema` and of their TOAST
/// tables and indexes, as absolute paths, or the reason this process
/// cannot read them.
async fn relation_files(
    admin: &mut PgConnection,
    schema: &str,
) -> Result<Vec<RelationFile>, String> {
    let data_directory: String = sqlx::query_scalar("SHOW data_directory")
        .fetch_one(&mut *admin)
        .await
        .map_err(|error| format!("SHOW data_directory failed: {error}"))?;
    let relative: Vec<(String, String)> = sqlx::query_as(
        "WITH tables AS ( \
             SELECT c.oid, c.reltoastrelid FROM pg_class AS c \
             JOIN pg_namespace AS n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'r'), \
         relations AS ( \
             SELECT oid FROM tables \
             UNION SELECT reltoastrelid FROM tables WHERE reltoastrelid <> 0 \
             UNION SELECT i.indexrelid FROM pg_index AS i \
                 WHERE i.indrelid IN (SELECT oid FROM tables UNION SELECT reltoastrelid FROM tables)) \
         SELECT oid::regclass::text, pg_relation_filepath(oid) FROM relations \
         WHERE pg_relation_filepath(oid) IS NOT NULL",
    )
    .bind(schema)
    .fetch_all(&mut *admin)
    .await
    .map_err(|error| format!("listing the relation files failed: {error}"))?;

    let mut files = Vec::new();
    for (relation, path) in relative {
        let main = std::path::Path::new(&data_directory).join(&path);
        // Relations past 1 GB continue in segment files named path.1, path.2, ...
        let mut segment = 0;
        loop {
            let file = if segment == 0 {
                main.clone()
            } else {
                main.with_extension(segment.to_string())
            };
            match std::fs::metadata(&file) {
                Ok(_) => files.push(RelationFile {
                    relation: relation.clone(),
                    path: file,
                }),
                Err(error) if segment == 0 => {
                    return Err(format!("cannot read {}: {error}", file.display()));
                }
                Err(_) => break,
            }
            segment += 1;
        }
    }
    for file in &files {
        std::fs::File::open(&file.path)
            .map_err(|error| format!("cannot read {}: {error}", file.path.display()))?;
    }
    Ok(files)
}

/// A data file and the relation it belongs to.
struct RelationFile {
    relation: String,
    path: std::path::PathBuf,
}

/// Returns the relation and path of each file among `files` whose bytes contain `needle`.
fn files_containing(files: &[RelationFile], needle: &str) -> Vec<String> {
    files
        .iter()
        .filter(|file| {
            let bytes = std::fs::read(&file.path)
                .unwrap_or_else(|error| panic!("failed to read {}: {error}", file.path.display()));
            bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
        })
        .map(|file| format!("{} ({})", file.relation, file.path.display()))
        .collect()
}

/// Writes the buffers of every table to disk, so that the files show the rows.
/// Returns the error when the role may not.
async fn checkpoint(admin: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("CHECKPOINT").execute(admin).await.map(|_| ())
}

/// Waits until no other transaction of the database, prepared transaction
/// or replication slot holds back the removal of rows deleted before
/// transaction `marker`. Returns how many still do after `timeout`.
async fn wait_for_transactions_before(
    admin: &mut PgConnection,
    marker: &str,
    timeout: Duration,
) -> Result<(), i64> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let older: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                       AND (age(backend_xmin) > age($1::xid) OR age(backend_xid) > age($1::xid))) \
                  + (SELECT count(*) FROM pg_prepared_xacts \
                     WHERE database = current_database() AND age(transaction) > age($1::xid)) \
                  + (SELECT count(*) FROM pg_replication_slots \
                     WHERE age(xmin) > age($1::xid) OR age(catalog_xmin) > age($1::xid))",
        )
        .bind(marker)
        .fetch_one(&mut *admin)
        .await
        .expect("failed to list the running transactions");
        if older == 0 {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(older);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn erasure_leaves_no_trace() {
    let Some(url) = test_url() else { return };
    let (store, database) = owner_store(&url).await;
    let schema = database.schema.clone();
    let org = fakes::org();
    let needles = Needles::new();
    let name = needles.name.clone();

    // The prospect to erase, with its name in every kind of row, and a neighbour that stays.
    let mut prospect = fakes::prospect(org);
    prospect.first_name = Some(name.clone());
    prospect.email = Some(needles.email.clone());
    prospect.phone = Some(needles.phone.clone());
    let neighbour = fakes::prospect(org);
    store
        .insert_prospects(&[prospect.clone(), neighbour.clone()])
        .await
        .expect("insert_prospects");

    let mut conversations = Vec::new();
    for (who, label) in [(&prospect, name.as_str()), (&neighbour, "the neighbour")] {
        let conversation = fakes::conversation(who, Some(CampaignId::new()));
        assert!(
            store
                .insert_conversation(&conversation, &[])
                .await
                .expect("insert_conversation")
        );
        let mut inbound = fakes::inbound(&conversation, &unique_name("SM"), time(1));
        inbound.text = format!("Bonjour, c'est {label}, rappelez-moi.");
        store
            .insert_inbound(&inbound)
            .await
            .expect("insert_inbound");

        let mut outbound = fakes::outbound(&conversation, time(2));
        outbound.text = format!("Merci {label} ! Qui d'autre participe à la décision ?");
        let recipient = ContactPoint::Email(
            who.email
                .clone()
                .expect("the fake prospects have an e-mail address"),
        );
        let entry = fakes::outbox_entry(&outbound, recipient);
        let mut job = fakes::job(&conversation, 1, time(60));
        job.kind = JobKind::Reminder {
            member: MemberId::new(),
            note: format!("call {label} back about the quote"),
        };
        let mut audit = fakes::audit(&conversation, "rectification", time(3));
        audit.detail = format!("first name set to {label}");

        let mut turn = TurnCommit::new(
            store
                .get_conversation(org, conversation.id)
                .await
                .expect("get_conversation"),
        );
        turn.messages.push(outbound);
        turn.outbox.push(entry);
        turn.jobs.push(job);
        turn.audit.push(audit);
        turn.model_exchanges.push(model_exchange(
            &conversation,
            &format!(r#"{{"new_messages":["c'est {label}"]}}"#),
            time(3),
        ));
        store.commit_turn(&turn).await.expect("commit_turn");
        conversations.push(conversation);
    }
    let request = SubjectRequest::open(
        org,
        prospect.id,
        RequestKind::Erasure,
        Actor::Prospect,
        time(4),
    );
    store
        .put_subject_request(&request)
        .await
        .expect("put_subject_request");

    // The SQL check must find every value before the erasure, or it could not detect a leak.
    let mut admin = admin(&url).await;
    let tables = schema_tables(&mut admin, &schema).await;
    let found = tables_containing(&mut admin, &schema, &tables, &name).await;
    for table in [
        "prospects",
        "messages",
        "outbox",
        "jobs",
        "audit_events",
        "model_exchanges",
    ] {
        assert!(
            found.iter().any(|found| found == table),
            "before the erasure, {table} must contain the first name"
        );
    }
    for (what, needle) in needles.all() {
        let found = tables_containing(&mut admin, &schema, &tables, needle).await;
        assert!(
            !found.is_empty(),
            "before the erasure, the SQL check must find the {what}"
        );
    }

    // The same for the files, when this process can read them.
    let files = match relation_files(&mut admin, &schema).await {
        Ok(files) => match checkpoint(&mut admin).await {
            Ok(()) => Some(files),
            Err(error) => {
                postgres_support::say(&format!(
                    "the relation files are not checked: CHECKPOINT failed ({error}); the SQL check still runs"
                ));
                None
            }
        },
        Err(reason) => {
            postgres_support::say(&format!(
                "the relation files are not checked, because this process cannot read them ({reason}); \
                 the SQL check still runs"
            ));
            None
        }
    };
    if let Some(files) = &files {
        for (what, needle) in needles.all() {
            assert!(
                !files_containing(files, needle).is_empty(),
                "before the erasure, the files must contain the {what}"
            );
        }
    }

    let suppress: Vec<_> = [
        ContactPoint::Email(needles.email.clone()),
        ContactPoint::Phone(needles.phone.clone()),
    ]
    .into_iter()
    .map(|contact| fakes::suppression(org, contact, time(5)))
    .collect();
    let report = store
        .erase_prospect(org, prospect.id, &suppress)
        .await
        .expect("erase_prospect");
    for (table, expected) in [
        ("prospects", 1),
        ("conversations", 1),
        ("messages", 2),
        ("outbox", 1),
        ("jobs", 1),
        ("audit_events", 1),
    ] {
        assert_eq!(
            report.deleted.get(table).copied(),
            Some(expected),
            "erase_prospect must report {table}"
        );
    }
    assert_eq!(
        report.deleted.get("model_exchanges").copied(),
        Some(1),
        "erase_prospect must report model_exchanges"
    );

    // No row of any table may contain the values any more.
    for (what, needle) in needles.all() {
        let found = tables_containing(&mut admin, &schema, &tables, needle).await;
        assert!(
            found.is_empty(),
            "after the erasure, the {what} must be in no row, found in {found:?}"
        );
    }
    for contact in [
        ContactPoint::Email(needles.email.clone()),
        ContactPoint::Phone(needles.phone.clone()),
    ] {
        assert!(
            store
                .is_suppressed(org, &contact)
                .await
                .expect("is_suppressed"),
            "the erased {} must stay suppressed",
            contact.channel()
        );
    }
    assert_eq!(
        store
            .list_subject_requests(org)
            .await
            .expect("list_subject_requests"),
        vec![request]
    );
    assert_eq!(
        store
            .get_prospect(org, neighbour.id)
            .await
            .expect("the neighbour must stay")
            .id,
        neighbour.id
    );
    let kept = store
        .list_messages(org, conversations[1].id)
        .await
        .expect("list_messages");
    assert_eq!(kept.len(), 2, "the neighbour must keep its messages");

    // Rewrite every table, so that the deleted tuples leave the files too.
    // VACUUM FULL copies the deleted tuples that a running transaction may
    // still see, so it runs once every transaction older than the erasure
    // has ended.
    let marker: String = sqlx::query_scalar("SELECT pg_current_xact_id()::xid::text")
        .fetch_one(&mut admin)
        .await
        .expect("failed to read a transaction id newer than the erasure");
    if let Err(older) =
        wait_for_transactions_before(&mut admin, &marker, Duration::from_secs(60)).await
    {
        postgres_support::say(&format!(
            "the relation files are not checked: {older} transactions of this database older than the erasure \
             still run after 60 seconds, so VACUUM FULL must keep the deleted rows; the SQL check passed"
        ));
        return;
    }
    for table in &tables {
        execute(&mut admin, format!("VACUUM FULL {schema}.{table}")).await;
    }
    if files.is_none() {
        return;
    }
    checkpoint(&mut admin)
        .await
        .expect("CHECKPOINT must succeed again after VACUUM FULL");
    // VACUUM FULL writes new files, so they are listed again.
    let files = relation_files(&mut admin, &schema)
        .await
        .expect("the relation files were readable before the erasure");
    for (what, needle) in needles.all() {
        let found = files_containing(&files, needle);
        assert!(
            found.is_empty(),
            "after VACUUM FULL, the {what} must be in no relation file, found in {found:?}"
        );
    }
    let neighbour_email = neighbour
        .email
        .as_ref()
        .expect("the fake prospects have an e-mail address");
    assert!(
        !files_containing(&files, neighbour_email.as_str()).is_empty(),
        "the neighbour's e-mail must still be in the files, or the file check cannot find anything"
    );
}

//! Runs the store conformance suite against [`SqliteStore`], in memory and
//! on a file, and checks what only a file-backed store does.

use kalify_core::ports::Store;
use kalify_core::testkit::fakes;
use kalify_store::{SqliteStore, SqliteStoreBuilder, SqliteSynchronous};
use tempfile::TempDir;

kalify_core::store_conformance!(sqlite_memory, || async {
    SqliteStore::in_memory()
        .await
        .expect("failed to open an in-memory database")
});

// The temporary directory is returned beside the store, so it outlives each case.
kalify_core::store_conformance!(sqlite_file, || async { open_temp() });

/// The number of migrations the store ships.
const LATEST: i64 = 5;

/// Opens a new database file in a new temporary directory.
// Clippy allows `expect` in test functions only, and this helper fails a test the same way.
#[allow(clippy::expect_used)]
fn open_temp() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    let store = SqliteStoreBuilder::new(dir.path().join("kalify.db"))
        .build()
        .expect("failed to open the database file");
    (store, dir)
}

#[tokio::test]
async fn reopened_file_keeps_data() {
    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    let path = dir.path().join("kalify.db");
    let org = fakes::org();
    let prospect = fakes::prospect(org);

    let store = SqliteStore::open(&path)
        .await
        .expect("failed to open the database file");
    assert_eq!(
        store.schema_version().await.expect("schema_version"),
        LATEST,
        "a new file must be migrated to the latest version"
    );
    store
        .insert_prospects(std::slice::from_ref(&prospect))
        .await
        .expect("insert_prospects");
    drop(store);

    // Applying 0001 again would fail on CREATE TABLE, so a successful open
    // shows the migrations were skipped.
    let reopened = SqliteStore::open(&path)
        .await
        .expect("failed to reopen the database file");
    assert_eq!(
        reopened.schema_version().await.expect("schema_version"),
        LATEST,
        "reopening must keep the schema version"
    );
    let read = reopened
        .get_prospect(org, prospect.id)
        .await
        .expect("get_prospect after reopening");
    assert!(
        read == prospect,
        "a reopened file must return the prospect as inserted"
    );
}

#[tokio::test]
async fn file_uses_wal_and_full_sync() {
    let (store, dir) = open_temp();
    drop(store);
    let connection =
        rusqlite::Connection::open(dir.path().join("kalify.db")).expect("open the file directly");
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal", "the store must leave the file in WAL mode");
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version");
    assert_eq!(
        version, LATEST,
        "the file must record the latest schema version"
    );
}

#[tokio::test]
async fn newer_schema_is_rejected() {
    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    let path = dir.path().join("kalify.db");
    let connection = rusqlite::Connection::open(&path).expect("create the file directly");
    connection
        .pragma_update(None, "user_version", 99)
        .expect("set user_version");
    drop(connection);

    let error = SqliteStore::open(&path)
        .await
        .expect_err("a file from a newer kalify must be rejected");
    assert_eq!(
        error.kind(),
        kalify_core::ErrorKind::ConfigInvalid,
        "{error}"
    );
    assert!(
        error.to_string().contains("99"),
        "the error must name the file's version: {error}"
    );
}

#[tokio::test]
async fn open_in_missing_directory_fails() {
    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    let path = dir.path().join("missing").join("kalify.db");
    let error = SqliteStore::open(&path)
        .await
        .expect_err("opening in a missing directory must fail");
    assert_eq!(
        error.kind(),
        kalify_core::ErrorKind::ConfigInvalid,
        "{error}"
    );
    assert!(
        error.to_string().contains("kalify.db"),
        "the error must name the path: {error}"
    );
}

#[tokio::test]
async fn display_and_debug_show_path_only() {
    let (store, dir) = open_temp();
    let path = dir.path().join("kalify.db");
    assert_eq!(
        store.to_string(),
        format!("SqliteStore(path={})", path.display())
    );
    let debug = format!("{store:?}");
    assert!(
        debug.contains("kalify.db"),
        "Debug must name the file: {debug}"
    );

    let memory = SqliteStore::in_memory()
        .await
        .expect("open an in-memory database");
    assert_eq!(memory.to_string(), "SqliteStore(path=:memory:)");
}

#[tokio::test]
async fn uri_parameters_stay_hidden() {
    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    let uri = format!(
        "file:{}?mode=rwc&password=hunter2",
        dir.path().join("kalify.db").display()
    );
    let builder = SqliteStoreBuilder::new(&uri);
    assert!(
        !format!("{builder:?}").contains("hunter2"),
        "Debug of the builder must hide URI parameters"
    );

    let store = builder.build().expect("open a file: URI");
    assert!(
        !store.to_string().contains("hunter2"),
        "Display must hide URI parameters: {store}"
    );
    assert!(
        !format!("{store:?}").contains("hunter2"),
        "Debug must hide URI parameters: {store:?}"
    );
    assert!(
        dir.path().join("kalify.db").exists(),
        "the URI must open the named file"
    );
}

#[tokio::test]
async fn synchronous_is_configurable() {
    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    let store = SqliteStoreBuilder::new(dir.path().join("kalify.db"))
        .with_synchronous(SqliteSynchronous::Normal)
        .with_busy_timeout(std::time::Duration::from_millis(200))
        .build()
        .expect("open with NORMAL sync");
    assert!(
        format!("{store:?}").contains("Normal"),
        "Debug must show the sync level: {store:?}"
    );
}

#[tokio::test]
async fn write_behind_another_writer_is_unavailable() {
    let (store, dir) = open_temp();
    let org = fakes::org();
    let path = dir.path().join("kalify.db");

    // A second connection to the same file holds the write lock, as another
    // process would.
    let blocker = rusqlite::Connection::open(&path).expect("open the file directly");
    blocker
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");

    let impatient = SqliteStoreBuilder::new(&path)
        .with_busy_timeout(std::time::Duration::from_millis(100))
        .build()
        .expect("opening an up-to-date file must not wait for the write lock");
    let error = impatient
        .insert_prospects(&[fakes::prospect(org)])
        .await
        .expect_err("a write must time out while another connection writes");
    assert_eq!(error.kind(), kalify_core::ErrorKind::Unavailable, "{error}");
    assert!(error.is_retryable(), "a busy database must be retryable");
    let read = impatient
        .list_prospects(org, Default::default())
        .await
        .expect("reads must not wait for the writer");
    assert!(
        read.is_empty(),
        "the failed write must have written nothing"
    );
    blocker
        .execute_batch("ROLLBACK")
        .expect("release the write lock");

    store
        .insert_prospects(&[fakes::prospect(org)])
        .await
        .expect("the write must succeed once the lock is free");
}

/// Many tasks writing through several stores on one file, as several
/// processes would, all succeed: each write waits for the file's lock
/// within the busy timeout instead of failing with "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_never_see_a_locked_database() {
    let (first, dir) = open_temp();
    let path = dir.path().join("kalify.db");
    let mut stores = vec![std::sync::Arc::new(first)];
    for _ in 0..3 {
        stores.push(std::sync::Arc::new(
            SqliteStore::open(&path)
                .await
                .expect("open the same file again"),
        ));
    }
    let org = fakes::org();

    let mut tasks: tokio::task::JoinSet<kalify_core::Result<()>> = tokio::task::JoinSet::new();
    for task in 0..32 {
        let store = stores[task % stores.len()].clone();
        tasks.spawn(async move {
            for _ in 0..10 {
                let prospect = fakes::prospect(org);
                store
                    .insert_prospects(std::slice::from_ref(&prospect))
                    .await?;
                let conversation = fakes::conversation(&prospect, None);
                store.insert_conversation(&conversation, &[]).await?;
                let mut turn = kalify_core::ports::TurnCommit::new(conversation.clone());
                turn.messages
                    .push(fakes::outbound(&conversation, fakes::time(1)));
                store.commit_turn(&turn).await?;
            }
            kalify_core::Result::Ok(())
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Err(error) = joined.expect("writer task panicked") {
            failures.push(error.to_string());
        }
    }
    assert!(failures.is_empty(), "writes failed: {failures:?}");
    let stored = stores[0]
        .list_prospects(org, Default::default())
        .await
        .expect("list_prospects");
    assert_eq!(stored.len(), 320, "every write is stored");
}

/// On a multi-thread runtime, `insert_prospects` hands a batch of 256
/// prospects or more to another thread. The first poll of its future
/// returns `Pending`, so the calling task can run other work beside the
/// write, as an import parses its next rows. The batch is stored once the
/// future completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_prospects_leaves_the_calling_task_free() {
    let (store, _dir) = open_temp();
    let org = fakes::org();
    let prospects: Vec<_> = (0..5_000).map(|_| fakes::prospect(org)).collect();

    let mut insert = std::pin::pin!(store.insert_prospects(&prospects));
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        insert.as_mut().poll(&mut context).is_pending(),
        "a 5,000-row insert must not complete within its first poll"
    );
    insert.await.expect("insert_prospects");

    let stored = store
        .list_prospects(org, Default::default())
        .await
        .expect("list_prospects");
    assert_eq!(stored.len(), prospects.len(), "every prospect is stored");
}

/// A batch written from a thread of a full blocking pool completes, because
/// the write does not wait for a pool thread while it holds the writer.
#[test]
fn batch_insert_from_a_full_blocking_pool() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = TempDir::new().expect("temporary directory");
    let path = dir.path().join("kalify.db");
    let store = std::sync::Arc::new(runtime.block_on(SqliteStore::open(&path)).expect("open"));
    let org = fakes::org();
    let prospects: Vec<_> = (0..300).map(|_| fakes::prospect(org)).collect();

    let (done, finished) = std::sync::mpsc::channel();
    let handle = runtime.handle().clone();
    let writer = std::sync::Arc::clone(&store);
    let batch = prospects.clone();
    runtime.spawn_blocking(move || {
        let result = handle.block_on(writer.insert_prospects(&batch));
        let _ = done.send(result);
    });
    let Ok(result) = finished.recv_timeout(std::time::Duration::from_secs(60)) else {
        // Dropping a runtime waits for its blocking tasks, so a hung write
        // would hang the test too.
        runtime.shutdown_background();
        panic!("the batch write must finish while the blocking pool is full");
    };
    result.expect("insert_prospects");

    let stored = runtime
        .block_on(store.list_prospects(org, Default::default()))
        .expect("list_prospects");
    assert_eq!(stored.len(), prospects.len(), "every prospect is stored");
}

/// Polls `future` on the current thread, without a tokio runtime, until it
/// completes: what an executor other than tokio does.
fn poll_without_runtime<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

/// A store polled outside any tokio runtime, as by another executor, opens,
/// writes and reads in place instead of panicking for want of a runtime.
#[test]
fn store_works_without_a_tokio_runtime() {
    let dir = TempDir::new().expect("temporary directory");
    let path = dir.path().join("kalify.db");
    let store = poll_without_runtime(SqliteStore::open(&path)).expect("open");
    let org = fakes::org();
    let prospects: Vec<_> = (0..3).map(|_| fakes::prospect(org)).collect();

    poll_without_runtime(store.insert_prospects(&prospects)).expect("insert_prospects");
    let stored =
        poll_without_runtime(store.get_prospect(org, prospects[0].id)).expect("get_prospect");
    assert_eq!(stored.id, prospects[0].id);
    let listed = poll_without_runtime(store.list_prospects(org, Default::default()))
        .expect("list_prospects");
    assert_eq!(listed.len(), prospects.len());
}

/// Environment variable that makes this test binary the writer process of
/// `killed_writer_keeps_acknowledged_commits`, set to the file it writes.
const KILLED_WRITER_DB: &str = "KALIFY_TEST_KILLED_WRITER_DB";

/// Number of turns the writer process acknowledges before it is killed.
const ACKNOWLEDGED_BEFORE_KILL: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_keeps_acknowledged_commits() {
    if let Some(path) = std::env::var_os(KILLED_WRITER_DB) {
        write_until_killed(std::path::Path::new(&path)).await;
        return;
    }

    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    let path = dir.path().join("kalify.db");
    let mut child = std::process::Command::new(
        std::env::current_exe().expect("the test binary path is missing"),
    )
    .args([
        "--exact",
        "killed_writer_keeps_acknowledged_commits",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(KILLED_WRITER_DB, &path)
    .stdout(std::process::Stdio::piped())
    // A panic of the writer shows in this test's output.
    .stderr(std::process::Stdio::inherit())
    .spawn()
    .expect("failed to start the writer process");

    // Each line the child prints names a turn whose commit has returned.
    // The test harness prints the test's name before the first line.
    let stdout = child
        .stdout
        .take()
        .expect("the writer process has no piped stdout");
    let acknowledged = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut org = None;
        let mut turns = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("failed to read the writer process output");
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                [.., "org", id] => org = Some(id.parse::<kalify_core::OrgId>().expect("org id")),
                ["committed", prospect, conversation] => {
                    turns.push((
                        prospect
                            .parse::<kalify_core::ProspectId>()
                            .expect("prospect id"),
                        conversation
                            .parse::<kalify_core::ConversationId>()
                            .expect("conversation id"),
                    ));
                    if turns.len() == ACKNOWLEDGED_BEFORE_KILL {
                        break;
                    }
                }
                _ => {}
            }
        }
        (org, turns)
    })
    .await
    .expect("the output reader thread panicked");
    child.kill().expect("failed to kill the writer process");
    child.wait().expect("failed to wait for the writer process");

    let (org, turns) = acknowledged;
    let org = org.expect("the writer process stopped before it printed its org id");
    assert_eq!(
        turns.len(),
        ACKNOWLEDGED_BEFORE_KILL,
        "the writer process stopped before it committed enough turns"
    );
    let store = SqliteStore::open(&path)
        .await
        .expect("failed to reopen the file of the killed writer");
    for (prospect, conversation) in turns {
        store
            .get_prospect(org, prospect)
            .await
            .expect("an acknowledged prospect survives the kill");
        let messages = store
            .list_messages(org, conversation)
            .await
            .expect("list_messages");
        assert_eq!(messages.len(), 3, "an acknowledged turn keeps its messages");
    }
    drop(store);
    let connection =
        rusqlite::Connection::open(&path).expect("failed to open the file with plain SQLite");
    let check: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check");
    assert_eq!(check, "ok");
}

/// Writes turns into the file at `path` until the process is killed,
/// printing each one after its commit returned.
// Clippy allows `expect` in test functions only, and this helper fails a test the same way.
#[allow(clippy::expect_used)]
async fn write_until_killed(path: &std::path::Path) {
    use std::io::Write;

    let store = SqliteStore::open(path)
        .await
        .expect("the writer process failed to open the file");
    let org = fakes::org();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "org {org}").expect("prints");
    stdout.flush().expect("flushes");
    loop {
        let prospect = fakes::prospect(org);
        store
            .insert_prospects(std::slice::from_ref(&prospect))
            .await
            .expect("insert_prospects");
        let conversation = fakes::conversation(&prospect, None);
        let mut turn = kalify_core::ports::TurnCommit::new(conversation.clone());
        turn.create_conversation = true;
        for second in 1..=3 {
            turn.messages
                .push(fakes::outbound(&conversation, fakes::time(second)));
        }
        store.commit_turn(&turn).await.expect("commit_turn");
        writeln!(stdout, "committed {} {}", prospect.id, conversation.id).expect("prints");
        stdout.flush().expect("flushes");
    }
}

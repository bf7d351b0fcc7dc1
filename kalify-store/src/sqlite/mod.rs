//! A [`Store`] on an embedded SQLite database file.

mod error;
mod queries;
mod rows;
mod schema;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kalify_core::campaign::Campaign;
use kalify_core::contact::ContactPoint;
use kalify_core::conversation::{Conversation, Message};
use kalify_core::gdpr::{ErasureReport, SubjectRequest};
use kalify_core::ports::{
    AuditEvent, InsertOutcome, Job, JobOutcome, ListOptions, Member, ModelExchange, OutboxEntry,
    OutboxOutcome, Store, Suppression, TurnCommit,
};
use kalify_core::prospect::{Prospect, Version};
use kalify_core::{
    CampaignId, ConversationId, Error, JobId, MemberId, OrgId, OutboxId, ProspectId, Result,
    Timestamp,
};
use rusqlite::Connection;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::common::{check_inbound, check_job_orgs, check_turn_orgs, lease_end};
use error::SqliteError;
pub use schema::SqliteSynchronous;

const ADAPTER: &str = "sqlite";

/// The busy timeout when none is set: how long a write waits for another
/// process's lock on the same file before it fails with `Unavailable`.
const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The location of the database: a file path or private memory.
#[derive(Clone)]
enum Location {
    File(PathBuf),
    Memory,
}

/// Opens a [`SqliteStore`] with chosen settings.
///
/// ```no_run
/// # fn main() -> kalify_core::Result<()> {
/// use std::time::Duration;
/// use kalify_store::{SqliteStoreBuilder, SqliteSynchronous};
///
/// let store = SqliteStoreBuilder::new("kalify.db")
///     .with_synchronous(SqliteSynchronous::Normal)
///     .with_busy_timeout(Duration::from_secs(10))
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStoreBuilder {
    location: Location,
    synchronous: SqliteSynchronous,
    busy_timeout: Duration,
    cache_size_kib: Option<u32>,
    read_connections: usize,
}

/// Read-only connections a file store opens beside its writer when none is set.
const DEFAULT_READ_CONNECTIONS: usize = 2;

impl SqliteStoreBuilder {
    /// Starts a builder for the database file at `path`, created when missing.
    pub fn new(path: impl AsRef<Path>) -> Self {
        SqliteStoreBuilder {
            location: Location::File(path.as_ref().to_path_buf()),
            synchronous: SqliteSynchronous::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            cache_size_kib: None,
            read_connections: DEFAULT_READ_CONNECTIONS,
        }
    }

    /// Starts a builder for a private in-memory database, lost when the store is dropped.
    pub fn in_memory() -> Self {
        SqliteStoreBuilder {
            location: Location::Memory,
            synchronous: SqliteSynchronous::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            cache_size_kib: None,
            read_connections: DEFAULT_READ_CONNECTIONS,
        }
    }

    /// Sets how many read-only connections a file store opens beside its
    /// one writer. Reads run on them, so that they do not queue behind
    /// commits, and WAL lets them read while the writer commits. Lookups of
    /// one record, one prospect's conversations or one conversation's
    /// messages run on the writer when it is free, because its cache
    /// already contains what it has just written. The default is 2;
    /// 0 runs everything on the writer. In-memory stores always use one
    /// connection.
    pub fn with_read_connections(mut self, connections: usize) -> Self {
        self.read_connections = connections;
        self
    }

    /// Sets `PRAGMA synchronous`. The default is [`SqliteSynchronous::Full`].
    pub fn with_synchronous(mut self, synchronous: SqliteSynchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Sets how long a write waits for another connection's lock before it
    /// fails with `Unavailable`. The default is 5 seconds.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets the most memory the page cache of the connection may use, in
    /// KiB (`PRAGMA cache_size`). The default is SQLite's, 2,000 KiB.
    ///
    /// Writes that touch many random index pages, such as an import of
    /// hundreds of thousands of prospects, read and write far less when the
    /// contact-point indexes fit in the cache. Each index takes about 60
    /// bytes per prospect.
    pub fn with_cache_size_kib(mut self, kib: u32) -> Self {
        self.cache_size_kib = Some(kib);
        self
    }

    /// Opens the database, applies the settings and the missing migrations.
    ///
    /// This call blocks while SQLite opens and migrates the file, so call
    /// it at startup or inside `spawn_blocking`.
    ///
    /// # Errors
    /// `ConfigInvalid` when the file cannot be opened or was migrated by a
    /// newer kalify, `Unavailable` when another process holds the lock past
    /// the busy timeout.
    pub fn build(self) -> Result<SqliteStore> {
        let display_path = self.display_path();
        let fail = |error: SqliteError| {
            Error::from(error)
                .with_adapter(ADAPTER)
                .with_operation("open")
                .with_context("path", &display_path)
        };

        let connection = match &self.location {
            Location::File(path) => Connection::open(path),
            Location::Memory => Connection::open_in_memory(),
        }
        .map_err(|error| fail(SqliteError::Open(error)))?;
        let mut connection = connection;
        schema::configure(&connection, self.synchronous, self.busy_timeout).map_err(fail)?;
        if let Some(kib) = self.cache_size_kib {
            // A negative cache_size is a size in KiB rather than in pages.
            connection
                .pragma_update(None, "cache_size", -i64::from(kib))
                .map_err(|error| fail(error.into()))?;
        }
        let applied = schema::migrate(&mut connection).map_err(fail)?;

        tracing::debug!(
            target: "kalify::store",
            adapter = ADAPTER,
            path = %display_path,
            synchronous = self.synchronous.as_str(),
            migrations_applied = applied,
            "opened the database"
        );
        let mut readers = Vec::new();
        if let Location::File(path) = &self.location {
            for _ in 0..self.read_connections {
                let reader =
                    Connection::open(path).map_err(|error| fail(SqliteError::Open(error)))?;
                schema::configure(&reader, self.synchronous, self.busy_timeout).map_err(fail)?;
                reader
                    .pragma_update(None, "query_only", "ON")
                    .map_err(|error| fail(error.into()))?;
                readers.push(Arc::new(Mutex::new(reader)));
            }
        }
        Ok(SqliteStore {
            connection: Arc::new(Mutex::new(connection)),
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
            display_path,
            synchronous: self.synchronous,
        })
    }

    /// Runs [`SqliteStoreBuilder::build`] on tokio's blocking pool, or in
    /// place outside a tokio runtime.
    async fn build_async(self) -> Result<SqliteStore> {
        run_on_pool(move || self.build().map_err(SqliteError::from))
            .await
            .map_err(|error| {
                Error::from(error)
                    .with_adapter(ADAPTER)
                    .with_operation("open")
            })
    }

    /// Returns the path as shown in `Debug`, `Display` and errors. The query
    /// string of a `file:` URI is dropped, because URI parameters may carry keys.
    fn display_path(&self) -> String {
        match &self.location {
            Location::Memory => ":memory:".to_owned(),
            Location::File(path) => {
                let text = path.to_string_lossy();
                match text.split_once('?') {
                    Some((before, _)) => format!("{before}?…"),
                    None => text.into_owned(),
                }
            }
        }
    }
}

impl fmt::Debug for SqliteStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStoreBuilder")
            .field("path", &self.display_path())
            .field("synchronous", &self.synchronous)
            .field("busy_timeout", &self.busy_timeout)
            .field("cache_size_kib", &self.cache_size_kib)
            .field("read_connections", &self.read_connections)
            .finish()
    }
}

/// A [`Store`] on one SQLite database file, in WAL mode with foreign keys on.
///
/// # Threading
/// A file store owns one writing connection and, by default, two read-only
/// ones ([`SqliteStoreBuilder::with_read_connections`]), each behind an
/// async mutex. Each call waits for a mutex without blocking a runtime
/// worker. On a multi-thread runtime it then runs its queries in place
/// with `block_in_place`, so other futures of the calling task (in a
/// `join!`, say) wait until the queries end. On a current-thread runtime
/// it runs them on tokio's blocking pool with `spawn_blocking`. Polled
/// by another executor, outside any tokio runtime, it runs them in place.
/// `insert_prospects` with at least 256 prospects runs on a thread of its
/// own, so that the calling task can do other work, such as parsing the
/// next rows of an import, until the batch is written. A caller that drops
/// the future after its first poll does not stop that write: the batch is
/// written or rejected as a whole, and a retry of a written batch fails
/// with `Conflict`.
/// Writes run one at a time, in the order they take the writer's mutex.
/// Statements are prepared once per connection and cached
/// (`prepare_cached`).
///
/// # Durability
/// Writes that touch more than one row run in one IMMEDIATE transaction,
/// and `commit_turn` writes a whole turn in one. With the default
/// [`SqliteSynchronous::Full`], a method that returned `Ok` has reached the
/// disk.
///
/// # Schema
/// Migrations are embedded in the binary and applied by
/// [`SqliteStoreBuilder::build`]. `PRAGMA user_version` records the applied
/// version, so reopening a file applies only newer ones.
///
/// # Limitations
/// - An in-memory store has one connection, so its reads wait behind writes.
/// - Each write method commits its own transaction, so with
///   [`SqliteSynchronous::Full`] the disk's fsync rate bounds the number of
///   committed turns per second. Commits are not grouped.
/// - Times are stored as `i64` nanoseconds, so they must fall between
///   1677-09-21 and 2262-04-11. Other times are rejected with `InvalidInput`.
///
/// `Debug` and `Display` show the path without URI parameters, never stored data.
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
    /// Read-only connections of a file store; empty for an in-memory one.
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: std::sync::atomic::AtomicUsize,
    display_path: String,
    synchronous: SqliteSynchronous,
}

impl SqliteStore {
    /// Opens the database file at `path` with the default settings, on
    /// tokio's blocking pool, or in place outside a tokio runtime.
    ///
    /// # Errors
    /// As [`SqliteStoreBuilder::build`].
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        SqliteStoreBuilder::new(path).build_async().await
    }

    /// Opens a private in-memory database, for tests.
    ///
    /// # Errors
    /// As [`SqliteStoreBuilder::build`].
    pub async fn in_memory() -> Result<SqliteStore> {
        SqliteStoreBuilder::in_memory().build_async().await
    }

    /// Starts a builder for the database file at `path`.
    pub fn builder(path: impl AsRef<Path>) -> SqliteStoreBuilder {
        SqliteStoreBuilder::new(path)
    }

    /// Returns the schema version recorded in the database (`PRAGMA user_version`).
    ///
    /// # Errors
    /// `Unexpected` when the database cannot be read.
    pub async fn schema_version(&self) -> Result<i64> {
        self.run("schema_version", |connection| {
            schema::schema_version(connection)
        })
        .await
    }

    /// Rebuilds the database file (`VACUUM`) and truncates the write-ahead
    /// log, so that rows deleted by an erasure leave no bytes in either.
    /// Deleted content is already zeroed in place (`secure_delete`); this
    /// also drops the old page images the log still holds.
    ///
    /// It rewrites the whole file and blocks every other call meanwhile:
    /// run it after erasures, off-peak.
    ///
    /// # Errors
    /// `Unavailable` when another process holds the database.
    pub async fn vacuum(&self) -> Result<()> {
        self.run("vacuum", queries::vacuum).await
    }

    /// Runs the short read-only `work` of a lookup on the writer when it is
    /// free, else as [`SqliteStore::run_read`] does.
    ///
    /// The writer's page cache survives its own commits, while a read
    /// connection drops its cache whenever another connection has
    /// committed, and reads those pages from the file again. Only short
    /// reads take the writer, because a write waits until they finish.
    async fn run_lookup<T, F>(&self, operation: &'static str, work: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
        T: Send + 'static,
    {
        match Arc::clone(&self.connection).try_lock_owned() {
            Ok(writer) => run_on(writer, Placement::Usual, operation, work).await,
            Err(_) => self.run_read(operation, work).await,
        }
    }

    /// Runs the read-only `work` on a free read connection, or on the
    /// writer when the store has none.
    async fn run_read<T, F>(&self, operation: &'static str, work: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
        T: Send + 'static,
    {
        if self.readers.is_empty() {
            return self.run(operation, work).await;
        }
        let start = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let count = self.readers.len();
        let free = (0..count).find_map(|offset| {
            Arc::clone(&self.readers[(start + offset) % count])
                .try_lock_owned()
                .ok()
        });
        let connection = match free {
            Some(connection) => connection,
            None => Arc::clone(&self.readers[start % count]).lock_owned().await,
        };
        run_on(connection, Placement::Usual, operation, work).await
    }

    /// Runs `work` on the writer.
    async fn run<T, F>(&self, operation: &'static str, work: F) -> Result<T>
    where
        F: FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
        T: Send + 'static,
    {
        let connection = Arc::clone(&self.connection).lock_owned().await;
        run_on(connection, Placement::Usual, operation, work).await
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.display_path)
            .field("synchronous", &self.synchronous)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqliteStore(path={})", self.display_path)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_prospects(&self, prospects: &[Prospect]) -> Result<()> {
        let placement = if prospects.len() >= OWN_THREAD_ROWS {
            Placement::OwnThread
        } else {
            Placement::Usual
        };
        let prospects = prospects.to_vec();
        let connection = Arc::clone(&self.connection).lock_owned().await;
        run_on(
            connection,
            placement,
            "insert_prospects",
            move |connection| queries::insert_prospects(connection, &prospects),
        )
        .await
    }

    async fn get_prospect(&self, org: OrgId, id: ProspectId) -> Result<Prospect> {
        self.run_lookup("get_prospect", move |connection| {
            queries::get_prospect(connection, org, id)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("prospect_id", id)
        })
    }

    async fn update_prospect(&self, prospect: &Prospect) -> Result<Version> {
        let (org, id) = (prospect.org_id, prospect.id);
        let prospect = prospect.clone();
        self.run("update_prospect", move |connection| {
            queries::update_prospect(connection, &prospect)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("prospect_id", id)
        })
    }

    async fn find_prospect(&self, org: OrgId, contact: &ContactPoint) -> Result<Option<Prospect>> {
        let contact = contact.clone();
        let channel = contact.channel();
        self.run_lookup("find_prospect", move |connection| {
            queries::find_prospect(connection, org, &contact)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("channel", channel)
        })
    }

    async fn list_prospects(&self, org: OrgId, options: ListOptions) -> Result<Vec<Prospect>> {
        self.run_read("list_prospects", move |connection| {
            queries::list_prospects(connection, org, options)
        })
        .await
        .map_err(|error| error.with_context("org_id", org))
    }

    async fn find_prospects_by_contacts(
        &self,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<HashMap<ContactPoint, Prospect>> {
        let contacts = contacts.to_vec();
        // Batch lookups come from bulk writers such as the import, which
        // write the same pages next: the writer's warm cache serves them best.
        self.run("find_prospects_by_contacts", move |connection| {
            queries::find_prospects_by_contacts(connection, org, &contacts)
        })
        .await
        .map_err(|error| error.with_context("org_id", org))
    }

    async fn put_campaign(&self, campaign: &Campaign) -> Result<()> {
        let (org, id) = (campaign.org_id, campaign.id);
        let campaign = campaign.clone();
        self.run("put_campaign", move |connection| {
            queries::put_campaign(connection, &campaign)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("campaign_id", id)
        })
    }

    async fn get_campaign(&self, org: OrgId, id: CampaignId) -> Result<Campaign> {
        self.run_lookup("get_campaign", move |connection| {
            queries::get_campaign(connection, org, id)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("campaign_id", id)
        })
    }

    async fn insert_conversation(&self, conversation: &Conversation, jobs: &[Job]) -> Result<bool> {
        let (org, id) = (conversation.org_id, conversation.id);
        check_job_orgs(conversation, jobs).map_err(|error| {
            error
                .with_adapter(ADAPTER)
                .with_operation("insert_conversation")
        })?;
        let conversation = conversation.clone();
        let jobs = jobs.to_vec();
        self.run("insert_conversation", move |connection| {
            queries::insert_conversation(connection, &conversation, &jobs)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("conversation_id", id)
        })
    }

    async fn get_conversation(&self, org: OrgId, id: ConversationId) -> Result<Conversation> {
        self.run_lookup("get_conversation", move |connection| {
            queries::get_conversation(connection, org, id)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("conversation_id", id)
        })
    }

    async fn conversations_of(
        &self,
        org: OrgId,
        prospect: ProspectId,
    ) -> Result<Vec<Conversation>> {
        self.run_lookup("conversations_of", move |connection| {
            queries::conversations_of(connection, org, prospect)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("prospect_id", prospect)
        })
    }

    async fn list_messages(
        &self,
        org: OrgId,
        conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        self.run_lookup("list_messages", move |connection| {
            queries::list_messages(connection, org, conversation)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("conversation_id", conversation)
        })
    }

    async fn insert_inbound(&self, message: &Message) -> Result<InsertOutcome> {
        let (org, id) = (message.org_id, message.id);
        check_inbound(message)
            .map_err(|error| error.with_adapter(ADAPTER).with_operation("insert_inbound"))?;
        let message = message.clone();
        self.run("insert_inbound", move |connection| {
            queries::insert_inbound(connection, &message)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("message_id", id)
        })
    }

    async fn pending_inbound(
        &self,
        org: OrgId,
        conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        self.run_read("pending_inbound", move |connection| {
            queries::pending_inbound(connection, org, conversation)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("conversation_id", conversation)
        })
    }

    async fn commit_turn(&self, turn: &TurnCommit) -> Result<Version> {
        let (org, id) = (turn.conversation.org_id, turn.conversation.id);
        let tag = move |error: Error| {
            error
                .with_context("org_id", org)
                .with_context("conversation_id", id)
        };
        check_turn_orgs(turn)
            .map_err(|error| tag(error.with_adapter(ADAPTER).with_operation("commit_turn")))?;
        let turn = turn.clone();
        self.run("commit_turn", move |connection| {
            queries::commit_turn(connection, &turn)
        })
        .await
        .map_err(tag)
    }

    async fn claim_jobs(
        &self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
        worker: &str,
    ) -> Result<Vec<Job>> {
        let until = lease_end(now, lease)
            .map_err(|error| error.with_adapter(ADAPTER).with_operation("claim_jobs"))?;
        let worker = worker.to_owned();
        self.run("claim_jobs", move |connection| {
            queries::claim_jobs(connection, now, limit, until, &worker)
        })
        .await
    }

    async fn finish_job(&self, org: OrgId, job: JobId, outcome: JobOutcome) -> Result<()> {
        self.run("finish_job", move |connection| {
            queries::finish_job(connection, org, job, &outcome)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("job_id", job)
        })
    }

    async fn claim_outbox(
        &self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
        worker: &str,
    ) -> Result<Vec<OutboxEntry>> {
        let until = lease_end(now, lease)
            .map_err(|error| error.with_adapter(ADAPTER).with_operation("claim_outbox"))?;
        let worker = worker.to_owned();
        self.run("claim_outbox", move |connection| {
            queries::claim_outbox(connection, now, limit, until, &worker)
        })
        .await
    }

    async fn finish_outbox(
        &self,
        org: OrgId,
        entry: OutboxId,
        outcome: OutboxOutcome,
    ) -> Result<()> {
        self.run("finish_outbox", move |connection| {
            queries::finish_outbox(connection, org, entry, &outcome)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("outbox_id", entry)
        })
    }

    async fn pending_jobs(&self, org: OrgId, conversation: ConversationId) -> Result<Vec<Job>> {
        self.run_read("pending_jobs", move |connection| {
            queries::pending_jobs(connection, org, conversation)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("conversation_id", conversation)
        })
    }

    async fn is_suppressed(&self, org: OrgId, contact: &ContactPoint) -> Result<bool> {
        let contact = contact.clone();
        let channel = contact.channel();
        self.run_lookup("is_suppressed", move |connection| {
            queries::is_suppressed(connection, org, &contact)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("channel", channel)
        })
    }

    async fn suppressed_among(
        &self,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<HashSet<ContactPoint>> {
        let contacts = contacts.to_vec();
        self.run("suppressed_among", move |connection| {
            queries::suppressed_among(connection, org, &contacts)
        })
        .await
        .map_err(|error| error.with_context("org_id", org))
    }

    async fn suppress(&self, entries: &[Suppression]) -> Result<()> {
        let entries = entries.to_vec();
        self.run("suppress", move |connection| {
            queries::suppress(connection, &entries)
        })
        .await
    }

    async fn audit_of(&self, org: OrgId, prospect: ProspectId) -> Result<Vec<AuditEvent>> {
        self.run_read("audit_of", move |connection| {
            queries::audit_of(connection, org, prospect)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("prospect_id", prospect)
        })
    }

    async fn put_member(&self, member: &Member) -> Result<()> {
        let (org, id) = (member.org_id, member.id);
        let member = member.clone();
        self.run("put_member", move |connection| {
            queries::put_member(connection, &member)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("member_id", id)
        })
    }

    async fn get_member(&self, org: OrgId, id: MemberId) -> Result<Member> {
        self.run_lookup("get_member", move |connection| {
            queries::get_member(connection, org, id)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("member_id", id)
        })
    }

    async fn list_members(&self, org: OrgId) -> Result<Vec<Member>> {
        self.run_read("list_members", move |connection| {
            queries::list_members(connection, org)
        })
        .await
        .map_err(|error| error.with_context("org_id", org))
    }

    async fn erase_prospect(
        &self,
        org: OrgId,
        prospect: ProspectId,
        suppress: &[Suppression],
    ) -> Result<ErasureReport> {
        let suppress = suppress.to_vec();
        self.run("erase_prospect", move |connection| {
            queries::erase_prospect(connection, org, prospect, &suppress)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("prospect_id", prospect)
        })
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        let events = events.to_vec();
        self.run("append_audit", move |connection| {
            queries::append_audit(connection, &events)
        })
        .await
    }

    async fn model_exchanges_of(
        &self,
        org: OrgId,
        prospect: ProspectId,
    ) -> Result<Vec<ModelExchange>> {
        self.run_read("model_exchanges_of", move |connection| {
            queries::model_exchanges_of(connection, org, prospect)
        })
        .await
    }

    async fn put_subject_request(&self, request: &SubjectRequest) -> Result<()> {
        let request = request.clone();
        self.run("put_subject_request", move |connection| {
            queries::put_subject_request(connection, &request)
        })
        .await
    }

    async fn list_subject_requests(&self, org: OrgId) -> Result<Vec<SubjectRequest>> {
        self.run_read("list_subject_requests", move |connection| {
            queries::list_subject_requests(connection, org)
        })
        .await
    }

    async fn open_subject_requests(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SubjectRequest>> {
        self.run_read("open_subject_requests", move |connection| {
            queries::open_subject_requests(connection, before, limit)
        })
        .await
    }

    async fn expired_prospects(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(OrgId, ProspectId)>> {
        self.run_read("expired_prospects", move |connection| {
            queries::expired_prospects(connection, before, limit)
        })
        .await
    }

    async fn purge_messages(&self, before: Timestamp, limit: usize) -> Result<u64> {
        self.run("purge_messages", move |connection| {
            queries::purge_messages(connection, before, limit)
        })
        .await
    }

    async fn delete_member(&self, org: OrgId, id: MemberId) -> Result<()> {
        self.run("delete_member", move |connection| {
            queries::delete_member(connection, org, id)
        })
        .await
        .map_err(|error| {
            error
                .with_context("org_id", org)
                .with_context("member_id", id)
        })
    }

    async fn delete_org(&self, org: OrgId) -> Result<ErasureReport> {
        self.run("delete_org", move |connection| {
            queries::delete_org(connection, org)
        })
        .await
        .map_err(|error| error.with_context("org_id", org))
    }
}

/// Number of prospects from which `insert_prospects` writes on a thread of
/// its own. Starting a thread costs an estimated tens of microseconds,
/// little beside a write of this many rows.
const OWN_THREAD_ROWS: usize = 256;

/// The thread on which [`run_on`] runs a blocking SQLite call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// The calling thread or tokio's blocking pool, as [`run_blocking`]
    /// selects.
    Usual,
    /// A new thread, so that the calling task continues while the call
    /// runs. Starting one does not wait for a free thread, as a full
    /// blocking pool would while the write holds the writer.
    OwnThread,
}

/// Runs `work` on the locked `connection` as `placement` selects, and tags
/// its error with the adapter and `operation`.
async fn run_on<T, F>(
    mut connection: OwnedMutexGuard<Connection>,
    placement: Placement,
    operation: &'static str,
    work: F,
) -> Result<T>
where
    F: FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
    T: Send + 'static,
{
    let work = move || work(&mut connection);
    let result = match placement {
        Placement::Usual => run_blocking(work).await,
        Placement::OwnThread => run_on_thread(work).await,
    };
    result.map_err(|error| {
        Error::from(error)
            .with_adapter(ADAPTER)
            .with_operation(operation)
    })
}

/// Runs the blocking SQLite call `work` without stalling other tasks: in
/// place on a multi-threaded runtime (`block_in_place` moves this worker's
/// other tasks to another thread, which costs less than a hand-off per
/// call), and on tokio's blocking pool otherwise.
async fn run_blocking<T, F>(work: F) -> Result<T, SqliteError>
where
    F: FnOnce() -> Result<T, SqliteError> + Send + 'static,
    T: Send + 'static,
{
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread {
        return tokio::task::block_in_place(work);
    }
    run_on_pool(work).await
}

/// Runs the blocking SQLite call `work` on a new thread, and waits for its
/// result without blocking the calling thread.
async fn run_on_thread<T, F>(work: F) -> Result<T, SqliteError>
where
    F: FnOnce() -> Result<T, SqliteError> + Send + 'static,
    T: Send + 'static,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kalify-sqlite-write".to_owned())
        .spawn(move || {
            if sender.send(work()).is_err() {
                tracing::debug!(
                    target: "kalify::store",
                    adapter = ADAPTER,
                    "a batch write finished after its caller stopped waiting"
                );
            }
        })
        .map_err(SqliteError::Thread)?;
    receiver.await.map_err(|_| SqliteError::ThreadStopped)?
}

/// Runs the blocking SQLite call `work` on tokio's blocking pool. Outside
/// a tokio runtime, as when another executor polls the store, there is no
/// pool, and `work` runs in place.
async fn run_on_pool<T, F>(work: F) -> Result<T, SqliteError>
where
    F: FnOnce() -> Result<T, SqliteError> + Send + 'static,
    T: Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) => Err(SqliteError::Task(error)),
    }
}

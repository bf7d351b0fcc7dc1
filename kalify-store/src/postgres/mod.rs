//! A [`Store`] on a PostgreSQL server shared by many processes.

mod error;
mod queries;
mod rows;
mod schema;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::str::FromStr;
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
    CampaignId, ConversationId, Error, ErrorKind, JobId, MemberId, OrgId, OutboxId, ProspectId,
    Result, Secret, Timestamp,
};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Postgres, Transaction};

use crate::common::{check_inbound, check_job_orgs, check_turn_orgs, lease_end};
use error::PgError;

const ADAPTER: &str = "postgres";

/// The environment variables [`PostgresStoreBuilder::from_env`] reads, in order.
const URL_VARIABLES: [&str; 2] = ["KALIFY_POSTGRES_URL", "DATABASE_URL"];

/// The default pool size, the same as sqlx's.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// The default wait for a pooled connection, the same as sqlx's.
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a pooled connection may sit idle before the pool pings it when
/// lending it. sqlx pings every connection it takes back, so a connection
/// used this recently was alive moments ago, and skipping the ping saves a
/// round trip on most calls.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The maximum length of a PostgreSQL identifier in bytes (NAMEDATALEN - 1).
const MAX_SCHEMA_NAME_BYTES: usize = 63;

/// Opens a [`PostgresStore`] with chosen settings.
///
/// ```no_run
/// # async fn example() -> kalify_core::Result<()> {
/// use std::time::Duration;
/// use kalify_store::PostgresStoreBuilder;
///
/// let store = PostgresStoreBuilder::new("postgres://kalify@db.internal:5432/kalify")
///     .with_max_connections(20)
///     .with_acquire_timeout(Duration::from_secs(5))
///     .with_schema("kalify")
///     .build()
///     .await?;
/// # Ok(())
/// # }
/// ```
///
/// `Debug` shows the settings but never the URL, which may hold a password.
#[derive(Clone)]
pub struct PostgresStoreBuilder {
    url: Option<Secret>,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    schema: Option<String>,
    row_level_security: bool,
}

impl PostgresStoreBuilder {
    /// Starts a builder for the server at `url`, a libpq connection URL such
    /// as `postgres://user:password@host:5432/database?sslmode=require`.
    pub fn new(url: impl Into<Secret>) -> Self {
        PostgresStoreBuilder {
            url: Some(url.into()),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            min_connections: 0,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            schema: None,
            row_level_security: false,
        }
    }

    /// Starts a builder for the URL in `KALIFY_POSTGRES_URL`, or else in
    /// `DATABASE_URL`. When neither is set, [`build`](Self::build) fails with
    /// `ConfigInvalid`.
    pub fn from_env() -> Self {
        let url = URL_VARIABLES
            .iter()
            .find_map(|name| std::env::var(name).ok())
            .map(Secret::new);
        PostgresStoreBuilder {
            url,
            ..PostgresStoreBuilder::new("")
        }
    }

    /// Sets the maximum number of pooled connections. The default is 10.
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the number of connections the pool keeps open when idle. The default is 0.
    pub fn with_min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// Sets how long a call waits for a pooled connection, connecting
    /// included, before it fails with `Unavailable`. The default is 30 seconds.
    pub fn with_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Puts the store's tables in `schema`, which becomes the connections'
    /// `search_path` and is created by [`build`](Self::build) when missing.
    /// Without it, the `search_path` of the URL or the role applies.
    ///
    /// The name must be a lowercase SQL identifier: ASCII letters, digits and
    /// `_`, not starting with a digit or `pg_`, at most 63 bytes.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Sets whether the database isolates orgs with row-level security.
    /// The default is off.
    ///
    /// When on, [`build`](Self::build) installs the policies if they are
    /// missing, which needs the role that owns the tables, and every call
    /// that names an org runs in a transaction that sets `kalify.org_id` to
    /// it. Connect with an application role that does not own the tables
    /// (see [`PostgresStore::grant_application_role`]) for the policies to
    /// bind; `docs/operations.md` describes the set-up.
    pub fn with_row_level_security(mut self, enabled: bool) -> Self {
        self.row_level_security = enabled;
        self
    }

    /// Connects, applies the missing migrations and returns the store.
    ///
    /// # Errors
    /// - `ConfigInvalid` for a missing or malformed URL, an invalid schema
    ///   name, a schema migrated by a newer kalify, or a database that does
    ///   not exist;
    /// - `Unavailable` (retryable) when the server cannot be reached within
    ///   the acquire timeout;
    /// - `Unauthenticated` when the server rejects the credentials;
    /// - `PermissionDenied` when migrations are missing and the role may not
    ///   apply them.
    pub async fn build(self) -> Result<PostgresStore> {
        let fail = |error: PgError| {
            Error::from(error)
                .with_adapter(ADAPTER)
                .with_operation("open")
        };
        let options = self.connect_options().map_err(fail)?;
        let identity = Identity {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            database: options.get_database().map(str::to_owned),
            user: options.get_username().to_owned(),
            schema: self.schema.clone(),
        };
        let fail = |error: PgError| fail(error).with_context("server", identity.server());

        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|connection, metadata| {
                Box::pin(async move {
                    if metadata.idle_for >= PING_AFTER_IDLE {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        let applied = schema::migrate(&pool, self.schema.as_deref(), self.row_level_security)
            .await
            .map_err(fail)?;

        tracing::debug!(
            target: "kalify::store",
            adapter = ADAPTER,
            server = %identity.server(),
            database = identity.database.as_deref().unwrap_or_default(),
            schema = identity.schema.as_deref().unwrap_or_default(),
            row_level_security = self.row_level_security,
            migrations_applied = applied,
            "opened the database"
        );
        Ok(PostgresStore {
            pool,
            identity: Arc::new(identity),
            row_level_security: self.row_level_security,
        })
    }

    /// Checks the pool sizes, parses the URL and applies the schema and the
    /// application name.
    fn connect_options(&self) -> Result<PgConnectOptions, PgError> {
        if self.max_connections == 0 || self.min_connections > self.max_connections {
            return Err(PgError::Config(format!(
                "invalid pool size: max_connections is {} and min_connections {}, but max_connections must be at least 1 \
                 and at least min_connections",
                self.max_connections, self.min_connections
            )));
        }
        let url = self.url.as_ref().ok_or_else(|| {
            PgError::Config(format!(
                "no PostgreSQL URL: set {} or pass one to PostgresStoreBuilder::new",
                URL_VARIABLES.join(" or ")
            ))
        })?;
        let mut options = PgConnectOptions::from_str(url.expose()).map_err(|error| {
            PgError::Config(format!(
                "invalid PostgreSQL URL: {}",
                redact(&error.to_string(), url)
            ))
        })?;
        if options.get_application_name().is_none() {
            options = options.application_name("kalify");
        }
        if let Some(schema) = &self.schema {
            check_schema_name(schema)?;
            options = options.options([("search_path", schema.as_str())]);
        }
        Ok(options)
    }
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("url", &self.url.as_ref().map(|_| "[redacted]"))
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("schema", &self.schema)
            .field("row_level_security", &self.row_level_security)
            .finish()
    }
}

/// Checks that `schema` is a lowercase identifier that needs no quoting.
fn check_schema_name(schema: &str) -> Result<(), PgError> {
    let mut characters = schema.chars();
    let valid_start = characters
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first == '_');
    let valid_rest = characters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid_start
        && valid_rest
        && schema.len() <= MAX_SCHEMA_NAME_BYTES
        && !schema.starts_with("pg_")
    {
        Ok(())
    } else {
        Err(PgError::Config(format!(
            "invalid schema name {schema:?}: use lowercase ASCII letters, digits and '_', not starting with a digit \
             or 'pg_', at most {MAX_SCHEMA_NAME_BYTES} bytes"
        )))
    }
}

/// Replaces the password of `url`, raw and percent-decoded, in `text`. The
/// password is the one after `user:` in the URL or the `password` query
/// parameter.
fn redact(text: &str, url: &Secret) -> String {
    let mut redacted = text.to_owned();
    for password in passwords_in(url.expose()) {
        let decoded = percent_decode(&password).unwrap_or_default();
        for secret in [password, decoded] {
            if !secret.is_empty() {
                redacted = redacted.replace(&secret, "[redacted]");
            }
        }
    }
    redacted
}

/// Returns the passwords written in `url`, as written.
fn passwords_in(url: &str) -> Vec<String> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, query) = match after_scheme.split_once('?') {
        Some((before, query)) => (before, query),
        None => (after_scheme, ""),
    };
    let host_part = authority.split('/').next().unwrap_or_default();

    let mut passwords = Vec::new();
    if let Some((userinfo, _)) = host_part.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        passwords.push(password.to_owned());
    }
    for pair in query.split('&') {
        if let Some(("password", value)) = pair.split_once('=') {
            passwords.push(value.to_owned());
        }
    }
    passwords
}

/// Decodes `%XX` escapes, or returns `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// The server, database, user and schema of a store, shown in `Debug`, `Display`, logs and errors.
struct Identity {
    host: String,
    port: u16,
    database: Option<String>,
    user: String,
    schema: Option<String>,
}

impl Identity {
    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The connection of one store call.
enum Session {
    /// A pooled connection that runs each statement in its own transaction.
    Pooled(PoolConnection<Postgres>),
    /// A transaction, committed by [`Session::commit`] and rolled back when dropped.
    Transaction(Transaction<'static, Postgres>),
}

impl Session {
    fn connection(&mut self) -> &mut PgConnection {
        match self {
            Session::Pooled(connection) => connection,
            Session::Transaction(transaction) => transaction,
        }
    }

    /// Commits the transaction, if any.
    async fn commit(self) -> Result<(), PgError> {
        match self {
            Session::Pooled(_) => Ok(()),
            Session::Transaction(transaction) => Ok(transaction.commit().await?),
        }
    }
}

/// A [`Store`] on a PostgreSQL server, through a pool of connections.
///
/// Many processes can share one database: jobs and outbox entries are
/// claimed with `FOR UPDATE SKIP LOCKED` and a lease, inbound messages and
/// job dedupe keys are unique per org through unique indexes, and
/// conversations and prospects are written with optimistic versions.
///
/// # Transactions
/// `commit_turn`, `insert_prospects`, `insert_conversation`, `suppress`,
/// `append_audit`, `erase_prospect` and `delete_org` each run in one
/// transaction at the server's default isolation level, READ COMMITTED
/// unless configured otherwise. Other calls are single statements, except
/// that `is_suppressed` and `suppressed_among` read the org's suppression
/// key first. A serialization failure or deadlock is a `Conflict` that is
/// retryable.
///
/// # Suppression list
/// The `suppressions` table contains `hmac-sha256:<hex>` digests of contact
/// points under a random 32-byte key per org in `suppression_keys`, created
/// with the org's first suppression and deleted by `delete_org`. Anyone who
/// can read both tables can test a guessed contact point against the list,
/// but cannot list the contact points. Base migration 2 rewrites the clear
/// rows of older versions as digests.
///
/// # Row-level security
/// With [`PostgresStoreBuilder::with_row_level_security`], every call that
/// names an org runs in a transaction whose `BEGIN` also sets
/// `kalify.org_id`, so a single-statement call costs three round trips
/// instead of one. `claim_jobs`, `claim_outbox`, `open_subject_requests`,
/// `expired_prospects` and `purge_messages` work across orgs, so they call
/// functions of the same names, which run as the table owner
/// (`SECURITY DEFINER`) and are the application role's only access to
/// rows of more than one org.
///
/// # Schema
/// Migrations are embedded in the binary and applied by
/// [`PostgresStoreBuilder::build`]; the table `kalify_schema_migrations`
/// records them.
///
/// # Connections
/// The pool pings a connection before lending it only when it has been idle
/// for a second or more. A connection the server dropped within a second of
/// its last use therefore fails one call with `Unavailable`, which is
/// retryable, and the pool then discards it.
///
/// # Limitations
/// - Times are stored as `bigint` nanoseconds, so they must fall between
///   1677-09-21 and 2262-04-11; other times are rejected with `InvalidInput`.
/// - PostgreSQL text cannot hold the NUL character, so a record whose text
///   contains one is rejected with `InvalidInput`.
/// - `commit_turn` sends one statement per record it writes, so a turn costs
///   several round trips to the server.
///
/// `Debug` and `Display` show the server, database and schema, never the
/// password or stored data. Clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    identity: Arc<Identity>,
    row_level_security: bool,
}

impl PostgresStore {
    /// Connects to the server at `url` with the default settings.
    ///
    /// # Errors
    /// As [`PostgresStoreBuilder::build`].
    pub async fn connect(url: impl Into<Secret>) -> Result<PostgresStore> {
        PostgresStoreBuilder::new(url).build().await
    }

    /// Starts a builder for the server at `url`.
    pub fn builder(url: impl Into<Secret>) -> PostgresStoreBuilder {
        PostgresStoreBuilder::new(url)
    }

    /// Returns the latest applied version of the schema migrations.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached.
    pub async fn schema_version(&self) -> Result<i64> {
        self.run("schema_version", &[], schema::schema_version(&self.pool))
            .await
    }

    /// Grants `role` what the store needs in its schema: use of the schema,
    /// reads and writes of the record tables, reads of the migrations table
    /// and the cross-org functions. Call it on a store connected as the table
    /// owner, after every upgrade that adds tables.
    ///
    /// # Errors
    /// `ConfigInvalid` when the role does not exist, `PermissionDenied`
    /// when this store's role may not grant.
    pub async fn grant_application_role(&self, role: &str) -> Result<()> {
        self.run(
            "grant_application_role",
            &[],
            schema::grant_application_role(&self.pool, role),
        )
        .await
    }

    /// Closes the pool: waits for calls in progress, then closes every
    /// connection. Later calls fail with `Unavailable`, not retryable.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Returns a connection for a call on `org`: a pooled connection, or
    /// with row-level security a transaction that has set `kalify.org_id`.
    async fn session(&self, org: OrgId) -> Result<Session, PgError> {
        if self.row_level_security {
            self.transaction(Some(org)).await
        } else {
            Ok(Session::Pooled(self.pool.acquire().await?))
        }
    }

    /// Begins a transaction. With row-level security and an org, the same
    /// round trip sets `kalify.org_id` for the transaction.
    async fn transaction(&self, org: Option<OrgId>) -> Result<Session, PgError> {
        let transaction = match org {
            // A UUID prints as hex digits and dashes, so it is safe inside the quotes.
            Some(org) if self.row_level_security => {
                self.pool
                    .begin_with(AssertSqlSafe(format!(
                        "BEGIN; SET LOCAL kalify.org_id = '{org}'"
                    )))
                    .await?
            }
            _ => self.pool.begin().await?,
        };
        Ok(Session::Transaction(transaction))
    }

    /// Awaits `work`, converts its error and tags it with the adapter,
    /// `operation` and `context`, and logs failures: `Unexpected` ones at
    /// error level, retryable ones at warn level.
    async fn run<T>(
        &self,
        operation: &'static str,
        context: &[(&'static str, &(dyn fmt::Display + Sync))],
        work: impl Future<Output = Result<T, PgError>>,
    ) -> Result<T> {
        let error = match work.await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let mut error = Error::from(error)
            .with_adapter(ADAPTER)
            .with_operation(operation);
        for (key, value) in context {
            error = error.with_context(key, value);
        }
        if error.kind() == ErrorKind::Unexpected {
            tracing::error!(target: "kalify::store", adapter = ADAPTER, operation, error = %error, "store call failed");
        } else if error.is_retryable() {
            tracing::warn!(target: "kalify::store", adapter = ADAPTER, operation, error = %error, "store call failed; a retry may succeed");
        }
        Err(error)
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.identity.server())
            .field("database", &self.identity.database)
            .field("user", &self.identity.user)
            .field("schema", &self.identity.schema)
            .field("row_level_security", &self.row_level_security)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresStore(server={}", self.identity.server())?;
        if let Some(database) = &self.identity.database {
            write!(f, ", database={database}")?;
        }
        if let Some(schema) = &self.identity.schema {
            write!(f, ", schema={schema}")?;
        }
        f.write_str(")")
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn insert_prospects(&self, prospects: &[Prospect]) -> Result<()> {
        let work = async {
            let mut session = self.transaction(None).await?;
            queries::insert_prospects(session.connection(), prospects, self.row_level_security)
                .await?;
            session.commit().await
        };
        self.run("insert_prospects", &[], work).await
    }

    async fn get_prospect(&self, org: OrgId, id: ProspectId) -> Result<Prospect> {
        let work = async {
            let mut session = self.session(org).await?;
            let prospect = queries::get_prospect(session.connection(), org, id).await?;
            session.commit().await?;
            Ok(prospect)
        };
        self.run(
            "get_prospect",
            &[("org_id", &org), ("prospect_id", &id)],
            work,
        )
        .await
    }

    async fn update_prospect(&self, prospect: &Prospect) -> Result<Version> {
        let (org, id) = (prospect.org_id, prospect.id);
        let work = async {
            let mut session = self.session(org).await?;
            let version = queries::update_prospect(session.connection(), prospect).await?;
            session.commit().await?;
            Ok(version)
        };
        self.run(
            "update_prospect",
            &[("org_id", &org), ("prospect_id", &id)],
            work,
        )
        .await
    }

    async fn find_prospect(&self, org: OrgId, contact: &ContactPoint) -> Result<Option<Prospect>> {
        let channel = contact.channel();
        let work = async {
            let mut session = self.session(org).await?;
            let prospect = queries::find_prospect(session.connection(), org, contact).await?;
            session.commit().await?;
            Ok(prospect)
        };
        self.run(
            "find_prospect",
            &[("org_id", &org), ("channel", &channel)],
            work,
        )
        .await
    }

    async fn find_prospects_by_contacts(
        &self,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<HashMap<ContactPoint, Prospect>> {
        let work = async {
            let mut session = self.session(org).await?;
            let found =
                queries::find_prospects_by_contacts(session.connection(), org, contacts).await?;
            session.commit().await?;
            Ok(found)
        };
        self.run("find_prospects_by_contacts", &[("org_id", &org)], work)
            .await
    }

    async fn list_prospects(&self, org: OrgId, options: ListOptions) -> Result<Vec<Prospect>> {
        let work = async {
            let mut session = self.session(org).await?;
            let prospects = queries::list_prospects(session.connection(), org, options).await?;
            session.commit().await?;
            Ok(prospects)
        };
        self.run("list_prospects", &[("org_id", &org)], work).await
    }

    async fn put_campaign(&self, campaign: &Campaign) -> Result<()> {
        let (org, id) = (campaign.org_id, campaign.id);
        let work = async {
            let mut session = self.session(org).await?;
            queries::put_campaign(session.connection(), campaign).await?;
            session.commit().await
        };
        self.run(
            "put_campaign",
            &[("org_id", &org), ("campaign_id", &id)],
            work,
        )
        .await
    }

    async fn get_campaign(&self, org: OrgId, id: CampaignId) -> Result<Campaign> {
        let work = async {
            let mut session = self.session(org).await?;
            let campaign = queries::get_campaign(session.connection(), org, id).await?;
            session.commit().await?;
            Ok(campaign)
        };
        self.run(
            "get_campaign",
            &[("org_id", &org), ("campaign_id", &id)],
            work,
        )
        .await
    }

    async fn insert_conversation(&self, conversation: &Conversation, jobs: &[Job]) -> Result<bool> {
        let (org, id) = (conversation.org_id, conversation.id);
        let work = async {
            check_job_orgs(conversation, jobs)?;
            let mut session = self.transaction(Some(org)).await?;
            let created =
                queries::insert_conversation(session.connection(), conversation, jobs).await?;
            session.commit().await?;
            Ok(created)
        };
        self.run(
            "insert_conversation",
            &[("org_id", &org), ("conversation_id", &id)],
            work,
        )
        .await
    }

    async fn get_conversation(&self, org: OrgId, id: ConversationId) -> Result<Conversation> {
        let work = async {
            let mut session = self.session(org).await?;
            let conversation = queries::get_conversation(session.connection(), org, id).await?;
            session.commit().await?;
            Ok(conversation)
        };
        self.run(
            "get_conversation",
            &[("org_id", &org), ("conversation_id", &id)],
            work,
        )
        .await
    }

    async fn conversations_of(
        &self,
        org: OrgId,
        prospect: ProspectId,
    ) -> Result<Vec<Conversation>> {
        let work = async {
            let mut session = self.session(org).await?;
            let conversations =
                queries::conversations_of(session.connection(), org, prospect).await?;
            session.commit().await?;
            Ok(conversations)
        };
        self.run(
            "conversations_of",
            &[("org_id", &org), ("prospect_id", &prospect)],
            work,
        )
        .await
    }

    async fn list_messages(
        &self,
        org: OrgId,
        conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        let work = async {
            let mut session = self.session(org).await?;
            let messages = queries::list_messages(session.connection(), org, conversation).await?;
            session.commit().await?;
            Ok(messages)
        };
        self.run(
            "list_messages",
            &[("org_id", &org), ("conversation_id", &conversation)],
            work,
        )
        .await
    }

    async fn insert_inbound(&self, message: &Message) -> Result<InsertOutcome> {
        let (org, id) = (message.org_id, message.id);
        let work = async {
            check_inbound(message)?;
            let mut session = self.session(org).await?;
            let outcome = queries::insert_inbound(session.connection(), message).await?;
            session.commit().await?;
            Ok(outcome)
        };
        self.run(
            "insert_inbound",
            &[("org_id", &org), ("message_id", &id)],
            work,
        )
        .await
    }

    async fn pending_inbound(
        &self,
        org: OrgId,
        conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        let work = async {
            let mut session = self.session(org).await?;
            let messages =
                queries::pending_inbound(session.connection(), org, conversation).await?;
            session.commit().await?;
            Ok(messages)
        };
        self.run(
            "pending_inbound",
            &[("org_id", &org), ("conversation_id", &conversation)],
            work,
        )
        .await
    }

    async fn commit_turn(&self, turn: &TurnCommit) -> Result<Version> {
        let (org, id) = (turn.conversation.org_id, turn.conversation.id);
        let work = async {
            check_turn_orgs(turn)?;
            let mut session = self.transaction(Some(org)).await?;
            let version = queries::commit_turn(session.connection(), turn).await?;
            session.commit().await?;
            Ok(version)
        };
        self.run(
            "commit_turn",
            &[("org_id", &org), ("conversation_id", &id)],
            work,
        )
        .await
    }

    async fn claim_jobs(
        &self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
        worker: &str,
    ) -> Result<Vec<Job>> {
        let work = async {
            let until = lease_end(now, lease)?;
            let mut connection = self.pool.acquire().await?;
            queries::claim_jobs(&mut connection, now, limit, until, worker).await
        };
        self.run("claim_jobs", &[], work).await
    }

    async fn finish_job(&self, org: OrgId, job: JobId, outcome: JobOutcome) -> Result<()> {
        let work = async {
            let mut session = self.session(org).await?;
            queries::finish_job(session.connection(), org, job, &outcome).await?;
            session.commit().await
        };
        self.run("finish_job", &[("org_id", &org), ("job_id", &job)], work)
            .await
    }

    async fn claim_outbox(
        &self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
        worker: &str,
    ) -> Result<Vec<OutboxEntry>> {
        let work = async {
            let until = lease_end(now, lease)?;
            let mut connection = self.pool.acquire().await?;
            queries::claim_outbox(&mut connection, now, limit, until, worker).await
        };
        self.run("claim_outbox", &[], work).await
    }

    async fn finish_outbox(
        &self,
        org: OrgId,
        entry: OutboxId,
        outcome: OutboxOutcome,
    ) -> Result<()> {
        let work = async {
            let mut session = self.session(org).await?;
            queries::finish_outbox(session.connection(), org, entry, &outcome).await?;
            session.commit().await
        };
        self.run(
            "finish_outbox",
            &[("org_id", &org), ("outbox_id", &entry)],
            work,
        )
        .await
    }

    async fn pending_jobs(&self, org: OrgId, conversation: ConversationId) -> Result<Vec<Job>> {
        let work = async {
            let mut session = self.session(org).await?;
            let jobs = queries::pending_jobs(session.connection(), org, conversation).await?;
            session.commit().await?;
            Ok(jobs)
        };
        self.run(
            "pending_jobs",
            &[("org_id", &org), ("conversation_id", &conversation)],
            work,
        )
        .await
    }

    async fn is_suppressed(&self, org: OrgId, contact: &ContactPoint) -> Result<bool> {
        let channel = contact.channel();
        let work = async {
            let mut session = self.session(org).await?;
            let suppressed = queries::is_suppressed(session.connection(), org, contact).await?;
            session.commit().await?;
            Ok(suppressed)
        };
        self.run(
            "is_suppressed",
            &[("org_id", &org), ("channel", &channel)],
            work,
        )
        .await
    }

    async fn suppressed_among(
        &self,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<HashSet<ContactPoint>> {
        let work = async {
            let mut session = self.session(org).await?;
            let suppressed = queries::suppressed_among(session.connection(), org, contacts).await?;
            session.commit().await?;
            Ok(suppressed)
        };
        self.run("suppressed_among", &[("org_id", &org)], work)
            .await
    }

    async fn suppress(&self, entries: &[Suppression]) -> Result<()> {
        let work = async {
            let mut session = self.transaction(None).await?;
            queries::suppress(session.connection(), entries, self.row_level_security).await?;
            session.commit().await
        };
        self.run("suppress", &[], work).await
    }

    async fn audit_of(&self, org: OrgId, prospect: ProspectId) -> Result<Vec<AuditEvent>> {
        let work = async {
            let mut session = self.session(org).await?;
            let events = queries::audit_of(session.connection(), org, prospect).await?;
            session.commit().await?;
            Ok(events)
        };
        self.run(
            "audit_of",
            &[("org_id", &org), ("prospect_id", &prospect)],
            work,
        )
        .await
    }

    async fn put_member(&self, member: &Member) -> Result<()> {
        let (org, id) = (member.org_id, member.id);
        let work = async {
            let mut session = self.session(org).await?;
            queries::put_member(session.connection(), member).await?;
            session.commit().await
        };
        self.run("put_member", &[("org_id", &org), ("member_id", &id)], work)
            .await
    }

    async fn get_member(&self, org: OrgId, id: MemberId) -> Result<Member> {
        let work = async {
            let mut session = self.session(org).await?;
            let member = queries::get_member(session.connection(), org, id).await?;
            session.commit().await?;
            Ok(member)
        };
        self.run("get_member", &[("org_id", &org), ("member_id", &id)], work)
            .await
    }

    async fn list_members(&self, org: OrgId) -> Result<Vec<Member>> {
        let work = async {
            let mut session = self.session(org).await?;
            let members = queries::list_members(session.connection(), org).await?;
            session.commit().await?;
            Ok(members)
        };
        self.run("list_members", &[("org_id", &org)], work).await
    }

    async fn erase_prospect(
        &self,
        org: OrgId,
        prospect: ProspectId,
        suppress: &[Suppression],
    ) -> Result<ErasureReport> {
        let work = async {
            let mut session = self.transaction(Some(org)).await?;
            let report =
                queries::erase_prospect(session.connection(), org, prospect, suppress).await?;
            session.commit().await?;
            Ok(report)
        };
        self.run(
            "erase_prospect",
            &[("org_id", &org), ("prospect_id", &prospect)],
            work,
        )
        .await
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        let work = async {
            let mut session = self.transaction(None).await?;
            queries::append_audit(session.connection(), events, self.row_level_security).await?;
            session.commit().await
        };
        self.run("append_audit", &[], work).await
    }

    async fn model_exchanges_of(
        &self,
        org: OrgId,
        prospect: ProspectId,
    ) -> Result<Vec<ModelExchange>> {
        let work = async {
            let mut session = self.session(org).await?;
            let exchanges =
                queries::model_exchanges_of(session.connection(), org, prospect).await?;
            session.commit().await?;
            Ok(exchanges)
        };
        self.run(
            "model_exchanges_of",
            &[("org_id", &org), ("prospect_id", &prospect)],
            work,
        )
        .await
    }

    async fn put_subject_request(&self, request: &SubjectRequest) -> Result<()> {
        let (org, id) = (request.org_id, request.id);
        let work = async {
            let mut session = self.session(org).await?;
            queries::put_subject_request(session.connection(), request).await?;
            session.commit().await
        };
        self.run(
            "put_subject_request",
            &[("org_id", &org), ("request_id", &id)],
            work,
        )
        .await
    }

    async fn list_subject_requests(&self, org: OrgId) -> Result<Vec<SubjectRequest>> {
        let work = async {
            let mut session = self.session(org).await?;
            let requests = queries::list_subject_requests(session.connection(), org).await?;
            session.commit().await?;
            Ok(requests)
        };
        self.run("list_subject_requests", &[("org_id", &org)], work)
            .await
    }

    async fn open_subject_requests(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SubjectRequest>> {
        let work = async {
            let mut connection = self.pool.acquire().await?;
            queries::open_subject_requests(&mut connection, before, limit).await
        };
        self.run("open_subject_requests", &[], work).await
    }

    async fn expired_prospects(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(OrgId, ProspectId)>> {
        let work = async {
            let mut connection = self.pool.acquire().await?;
            queries::expired_prospects(&mut connection, before, limit).await
        };
        self.run("expired_prospects", &[], work).await
    }

    async fn purge_messages(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let work = async {
            let mut connection = self.pool.acquire().await?;
            queries::purge_messages(&mut connection, before, limit).await
        };
        self.run("purge_messages", &[], work).await
    }

    async fn delete_member(&self, org: OrgId, id: MemberId) -> Result<()> {
        let work = async {
            let mut session = self.session(org).await?;
            queries::delete_member(session.connection(), org, id).await?;
            session.commit().await
        };
        self.run(
            "delete_member",
            &[("org_id", &org), ("member_id", &id)],
            work,
        )
        .await
    }

    async fn delete_org(&self, org: OrgId) -> Result<ErasureReport> {
        let work = async {
            let mut session = self.transaction(Some(org)).await?;
            let report = queries::delete_org(session.connection(), org).await?;
            session.commit().await?;
            Ok(report)
        };
        self.run("delete_org", &[("org_id", &org)], work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for valid in ["kalify", "_kalify", "kalify_test_01"] {
            assert!(check_schema_name(valid).is_ok(), "{valid} must be accepted");
        }
        let too_long = "a".repeat(MAX_SCHEMA_NAME_BYTES + 1);
        for invalid in [
            "",
            "Kalify",
            "1kalify",
            "pg_kalify",
            "kalify-test",
            "kalify;drop",
            "kalify test",
            too_long.as_str(),
        ] {
            assert!(
                check_schema_name(invalid).is_err(),
                "{invalid:?} must be rejected"
            );
        }
    }

    #[test]
    fn redact_removes_raw_and_decoded_passwords() {
        let url = Secret::new("postgres://kalify:p%40ss@db:5432/kalify");
        assert_eq!(
            redact("failed for p%40ss and p@ss", &url),
            "failed for [redacted] and [redacted]"
        );
        let without = Secret::new("postgres://kalify@db/kalify");
        assert_eq!(redact("nothing to hide", &without), "nothing to hide");
        let in_query =
            Secret::new("postgres://db/kalify?user=kalify&password=hunter2&sslmode=require");
        assert_eq!(redact("bad hunter2", &in_query), "bad [redacted]");
    }

    #[test]
    fn percent_decode_reads_escapes() {
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz").as_deref(), Some("%zz"));
    }

    #[test]
    fn builder_debug_hides_the_url() {
        let builder =
            PostgresStoreBuilder::new("postgres://kalify:hunter2@db/kalify").with_schema("kalify");
        let debug = format!("{builder:?}");
        assert!(
            !debug.contains("hunter2"),
            "Debug must hide the password: {debug}"
        );
        assert!(
            debug.contains("kalify"),
            "Debug must show the schema: {debug}"
        );
    }

    #[test]
    fn invalid_pool_sizes_are_config_invalid() {
        let builder = PostgresStoreBuilder::new("postgres://kalify@db/kalify");
        for invalid in [
            builder.clone().with_max_connections(0),
            builder.clone().with_min_connections(11),
        ] {
            let error = Error::from(invalid.connect_options().unwrap_err());
            assert_eq!(error.kind(), ErrorKind::ConfigInvalid, "{error}");
        }
        assert!(
            builder.with_min_connections(10).connect_options().is_ok(),
            "min_connections may equal max_connections"
        );
    }

    #[test]
    fn from_env_without_url_is_config_invalid() {
        let builder = PostgresStoreBuilder {
            url: None,
            ..PostgresStoreBuilder::new("")
        };
        let error = Error::from(builder.connect_options().unwrap_err());
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(
            error.message().contains("KALIFY_POSTGRES_URL"),
            "the error must name the variable: {error}"
        );
    }
}

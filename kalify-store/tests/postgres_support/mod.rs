//! Test databases on the PostgreSQL server named by `KALIFY_TEST_POSTGRES_URL`.
//!
//! Each fixture creates a schema with a random name, and for row-level
//! security a login role with a random name, and drops both when it is
//! dropped, so test binaries and cases running at once never share rows.

// Clippy allows `expect` and `panic` in test functions only, and these
// helpers fail a test the same way.
#![allow(clippy::expect_used, clippy::panic, dead_code, unreachable_pub)]

use std::io::Write;
use std::str::FromStr;

use kalify_store::{PostgresStore, PostgresStoreBuilder};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions};
use uuid::Uuid;

/// The variable holding the URL of the test server.
pub const URL_VARIABLE: &str = "KALIFY_TEST_POSTGRES_URL";

/// Writes `message` to the process's standard error, past the test
/// harness's output capture, so it shows even when the test passes.
pub fn say(message: &str) {
    // One write per line keeps lines from parallel tests apart.
    let _ = std::io::stderr().write_all(format!("{message}\n").as_bytes());
}

/// Returns the URL of the test server, or `None` after printing that the
/// test is skipped.
///
/// # Panics
/// When `CI` is set and the URL is not, because CI must never pass
/// without running these tests.
pub fn test_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "{URL_VARIABLE} is not set, and CI is set: CI must run the PostgreSQL tests against a server"
            )
        }
        _ => {
            say(&format!("skipping: {URL_VARIABLE} is not set"));
            None
        }
    }
}

/// Returns a new name with `prefix` and 32 random hex digits.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

/// Opens an administrative connection to the test server.
pub async fn admin(url: &str) -> PgConnection {
    let options = PgConnectOptions::from_str(url)
        .expect("KALIFY_TEST_POSTGRES_URL is not a valid PostgreSQL URL");
    options.connect().await.unwrap_or_else(|error| {
        panic!("cannot connect to the PostgreSQL server of {URL_VARIABLE}: {error}; start it or fix the URL")
    })
}

/// Runs one administrative statement.
pub async fn execute(connection: &mut PgConnection, statement: String) {
    sqlx::raw_sql(AssertSqlSafe(statement.clone()))
        .execute(connection)
        .await
        .unwrap_or_else(|error| panic!("failed to run {statement:?}: {error}"));
}

/// Returns the URL of the test server for `role` with `password`.
pub fn role_url(url: &str, role: &str, password: &str) -> String {
    url_with(url, role, password, None, None)
}

/// Returns a URL for `role` with `password` on the test server's host, with
/// the database and port replaced when given.
pub fn url_with(
    url: &str,
    role: &str,
    password: &str,
    database: Option<&str>,
    port: Option<u16>,
) -> String {
    let options = PgConnectOptions::from_str(url)
        .expect("KALIFY_TEST_POSTGRES_URL is not a valid PostgreSQL URL");
    let database = database.or(options.get_database()).unwrap_or("postgres");
    let port = port.unwrap_or(options.get_port());
    format!(
        "postgres://{role}:{password}@{}:{port}/{database}",
        options.get_host()
    )
}

/// A schema, and optionally a role, that exist as long as this value.
pub struct TestDatabase {
    pub url: String,
    pub schema: String,
    pub role: Option<String>,
}

impl TestDatabase {
    /// Reserves a new schema name. The store creates the schema when it is built.
    pub fn new(url: &str) -> Self {
        TestDatabase {
            url: url.to_owned(),
            schema: unique_name("kalify_test"),
            role: None,
        }
    }

    /// Returns a builder for the schema as the test URL's role, with a
    /// small pool and a short acquire timeout.
    pub fn owner_builder(&self) -> PostgresStoreBuilder {
        PostgresStoreBuilder::new(self.url.as_str())
            .with_schema(self.schema.as_str())
            .with_max_connections(4)
            .with_acquire_timeout(std::time::Duration::from_secs(10))
    }

    /// Creates a login role with a random name and password, which is
    /// neither superuser nor BYPASSRLS, and returns its URL.
    pub async fn create_application_role(&mut self) -> String {
        let role = unique_name("kalify_test_app");
        let password = Uuid::now_v7().simple().to_string();
        let mut admin = admin(&self.url).await;
        execute(
            &mut admin,
            format!("CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'"),
        )
        .await;
        self.role = Some(role.clone());
        role_url(&self.url, &role, &password)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        let role = self.role.clone();
        // Drop may run inside a runtime, so the cleanup gets a thread and runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnectOptions::from_str(&url)
                    .map_err(std::io::Error::other)?
                    .connect()
                    .await
                    .map_err(std::io::Error::other)?;
                let mut statements = vec![format!("DROP SCHEMA IF EXISTS {schema} CASCADE")];
                if let Some(role) = &role {
                    statements.push(format!("DROP OWNED BY {role}"));
                    statements.push(format!("DROP ROLE IF EXISTS {role}"));
                }
                for statement in statements {
                    sqlx::raw_sql(AssertSqlSafe(statement))
                        .execute(&mut admin)
                        .await
                        .map_err(std::io::Error::other)?;
                }
                Ok::<(), std::io::Error>(())
            })
        });
        match cleanup.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => say(&format!(
                "failed to drop the test schema {}: {error}",
                self.schema
            )),
            Err(_) => say(&format!(
                "the cleanup of the test schema {} panicked",
                self.schema
            )),
        }
    }
}

/// Builds a store on a new schema as the test URL's role.
pub async fn owner_store(url: &str) -> (PostgresStore, TestDatabase) {
    let database = TestDatabase::new(url);
    let store = database
        .owner_builder()
        .build()
        .await
        .expect("failed to build a PostgreSQL store on a new schema");
    (store, database)
}

/// Builds a store with row-level security on a new schema: the test URL's
/// role owns the tables and installs the policies, and the returned store
/// connects as a new application role that does not own them.
pub async fn application_store(url: &str) -> (PostgresStore, TestDatabase) {
    let mut database = TestDatabase::new(url);
    let owner = database
        .owner_builder()
        .with_row_level_security(true)
        .build()
        .await
        .expect("failed to build the owner's store with row-level security");
    let application_url = database.create_application_role().await;
    let role = database
        .role
        .clone()
        .expect("the application role was just created");
    owner
        .grant_application_role(&role)
        .await
        .expect("failed to grant the application role");
    owner.close().await;

    let store = PostgresStoreBuilder::new(application_url)
        .with_schema(database.schema.as_str())
        .with_row_level_security(true)
        .with_max_connections(4)
        .with_acquire_timeout(std::time::Duration::from_secs(10))
        .build()
        .await
        .expect("failed to build the application role's store");
    (store, database)
}

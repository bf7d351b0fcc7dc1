//! Connection settings and versioned migrations of the SQLite store.

use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, TransactionBehavior};

use super::error::SqliteError;

/// Migrations in order. Migration `n` (1-based) moves `PRAGMA user_version`
/// from `n - 1` to `n`. Append new files, and never edit applied ones.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_campaign_settings.sql"),
    include_str!("../../migrations/sqlite/0003_gdpr.sql"),
    include_str!("../../migrations/sqlite/0004_outbox_unconfirmed.sql"),
    include_str!("../../migrations/sqlite/0005_outbox_indexes.sql"),
];

/// The schema version from which the suppression list holds keyed digests.
const DIGEST_VERSION: i64 = 3;

/// The schema version a fully migrated database has.
pub(crate) const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// The durability level of SQLite commits, set with `PRAGMA synchronous`.
///
/// In WAL mode, `Full` syncs the log on every commit, so a committed turn
/// survives a power loss. `Normal` syncs only at checkpoints, so the last
/// commits may be lost on power loss, though never on a process crash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqliteSynchronous {
    /// No syncs, so a power loss or OS crash may corrupt the database.
    Off,
    /// Syncs at WAL checkpoints only.
    Normal,
    /// Syncs the WAL on every commit.
    #[default]
    Full,
    /// `Full`, plus a sync of the directory after a commit.
    Extra,
}

impl SqliteSynchronous {
    /// Returns the value of `PRAGMA synchronous`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SqliteSynchronous::Off => "OFF",
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
            SqliteSynchronous::Extra => "EXTRA",
        }
    }
}

/// Applies the connection settings: the busy timeout, WAL, the sync level
/// and foreign keys. These must run outside a transaction.
pub(crate) fn configure(
    connection: &Connection,
    synchronous: SqliteSynchronous,
    busy_timeout: Duration,
) -> Result<(), SqliteError> {
    connection.busy_timeout(busy_timeout)?;
    // An in-memory database reports journal mode "memory" and keeps it. Only files use WAL.
    let _mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    connection.pragma_update(None, "synchronous", synchronous.as_str())?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted content is overwritten with zeros, so an erased person's data
    // does not linger in free space of the file.
    connection.pragma_update(None, "secure_delete", "ON")?;
    // The query planner stability guarantee keeps a cached statement's plan
    // when new values are bound. Without it, SQLite 3.54 (bundled by
    // rusqlite 0.43) prepares a prospect lookup by contact point again on
    // every call, because the partial contact-point indexes make the plan
    // depend on the bound values.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    connection.set_prepared_statement_cache_capacity(128);
    Ok(())
}

/// Returns the schema version recorded in the database.
pub(crate) fn schema_version(connection: &Connection) -> Result<i64, SqliteError> {
    Ok(connection.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Applies the migrations the database lacks, in one transaction, and
/// returns how many it applied. The version is read again inside the
/// transaction, so two processes opening a new file migrate it once.
///
/// `PRAGMA user_version` is written in the same transaction, so a crash
/// leaves the database either fully migrated or as it was.
pub(crate) fn migrate(connection: &mut Connection) -> Result<usize, SqliteError> {
    // A read needs no write lock in WAL mode, so opening an up-to-date file
    // does not wait for another connection's write transaction.
    if schema_version(connection)? == LATEST_VERSION {
        return Ok(0);
    }

    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = schema_version(&transaction)?;
    if current > LATEST_VERSION {
        return Err(SqliteError::SchemaTooNew {
            found: current,
            latest: LATEST_VERSION,
        });
    }

    let mut applied = 0;
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let version = i64::try_from(index + 1).unwrap_or(i64::MAX);
        transaction.execute_batch(sql)?;
        if version == DIGEST_VERSION {
            let rewritten = super::rows::hash_clear_suppressions(&transaction)?;
            tracing::info!(target: "kalify::store", adapter = "sqlite", rewritten, "replaced clear suppression entries with keyed digests");
        }
        transaction.pragma_update(None, "user_version", version)?;
        tracing::info!(target: "kalify::store", adapter = "sqlite", version, "applied schema migration");
        applied += 1;
    }
    transaction.commit()?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrate_twice_applies_once() {
        let mut connection = Connection::open_in_memory().unwrap();
        configure(&connection, SqliteSynchronous::Full, Duration::from_secs(1)).unwrap();
        assert_eq!(migrate(&mut connection).unwrap(), MIGRATIONS.len());
        assert_eq!(schema_version(&connection).unwrap(), LATEST_VERSION);
        assert_eq!(
            migrate(&mut connection).unwrap(),
            0,
            "a migrated database must not be migrated again"
        );
    }

    #[test]
    fn newer_schema_is_rejected() {
        let mut connection = Connection::open_in_memory().unwrap();
        connection
            .pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        let error = migrate(&mut connection).unwrap_err();
        assert!(matches!(error, SqliteError::SchemaTooNew { .. }), "{error}");
    }

    #[test]
    fn settings_apply() {
        let connection = Connection::open_in_memory().unwrap();
        configure(
            &connection,
            SqliteSynchronous::Normal,
            Duration::from_secs(1),
        )
        .unwrap();
        let synchronous: i64 = connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 1, "NORMAL is 1");
        let foreign_keys: i64 = connection
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .unwrap();
        assert_eq!(foreign_keys, 1, "foreign keys must be on");
    }
}

//! Classification of SQLite failures into kalify's [`Error`].

use kalify_core::{Error, ErrorKind};
use rusqlite::ffi;

/// A failure inside the SQLite store, before it becomes an [`Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqliteError {
    /// A failure already classified, such as `NotFound` or a version `Conflict`.
    #[error(transparent)]
    Classified(Error),

    /// Another connection holds the lock longer than the busy timeout.
    #[error("the database is busy or locked; retry later")]
    Busy(#[source] rusqlite::Error),

    /// A row references a record that does not exist.
    #[error("a referenced record does not exist")]
    MissingReference(#[source] rusqlite::Error),

    /// A uniqueness, primary key, NOT NULL or CHECK constraint failed.
    #[error("a record with the same key exists")]
    Constraint(#[source] rusqlite::Error),

    /// A stored value does not decode into its record type.
    #[error("failed to decode a stored value")]
    Decode(#[source] rusqlite::Error),

    /// A record field does not encode into its column.
    #[error("failed to encode the {column} column")]
    Encode {
        column: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The database file cannot be opened or configured.
    #[error("failed to open the database")]
    Open(#[source] rusqlite::Error),

    /// The file was migrated by a newer kalify.
    #[error(
        "the database schema version {found} is newer than the latest this kalify knows ({latest}); upgrade kalify"
    )]
    SchemaTooNew { found: i64, latest: i64 },

    /// The blocking task that ran the query panicked or was cancelled.
    #[error("the database task stopped before it finished")]
    Task(#[source] tokio::task::JoinError),

    /// No thread could be started for a batch write.
    #[error("failed to start a thread for the database write")]
    Thread(#[source] std::io::Error),

    /// The thread of a batch write panicked before it returned.
    #[error("the database write thread stopped before it finished")]
    ThreadStopped,

    /// Any other SQLite failure.
    #[error("the database call failed")]
    Sqlite(#[source] rusqlite::Error),
}

impl From<rusqlite::Error> for SqliteError {
    fn from(error: rusqlite::Error) -> Self {
        match &error {
            rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
                ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked => {
                    SqliteError::Busy(error)
                }
                ffi::ErrorCode::ConstraintViolation
                    if failure.extended_code == ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    SqliteError::MissingReference(error)
                }
                ffi::ErrorCode::ConstraintViolation => SqliteError::Constraint(error),
                _ => SqliteError::Sqlite(error),
            },
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(..) => SqliteError::Decode(error),
            _ => SqliteError::Sqlite(error),
        }
    }
}

impl From<Error> for SqliteError {
    fn from(error: Error) -> Self {
        SqliteError::Classified(error)
    }
}

impl From<SqliteError> for Error {
    fn from(error: SqliteError) -> Self {
        let kind = match &error {
            SqliteError::Classified(_) => ErrorKind::Unexpected,
            SqliteError::Busy(_) | SqliteError::Thread(_) => ErrorKind::Unavailable,
            SqliteError::MissingReference(_) => ErrorKind::NotFound,
            SqliteError::Constraint(_) => ErrorKind::Conflict,
            SqliteError::Open(_) | SqliteError::SchemaTooNew { .. } => ErrorKind::ConfigInvalid,
            SqliteError::Decode(_)
            | SqliteError::Encode { .. }
            | SqliteError::Task(_)
            | SqliteError::ThreadStopped
            | SqliteError::Sqlite(_) => ErrorKind::Unexpected,
        };
        match error {
            SqliteError::Classified(error) => error,
            other => Error::new(kind, other.to_string()).with_source(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(extended_code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(extended_code), None)
    }

    #[test]
    fn busy_and_locked_are_retryable() {
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_BUSY_SNAPSHOT,
        ] {
            let error = Error::from(SqliteError::from(failure(code)));
            assert_eq!(error.kind(), ErrorKind::Unavailable, "code {code}");
            assert!(error.is_retryable(), "code {code} must be retryable");
        }
    }

    #[test]
    fn constraints_are_conflicts_except_foreign_keys() {
        let unique = Error::from(SqliteError::from(failure(ffi::SQLITE_CONSTRAINT_UNIQUE)));
        assert_eq!(unique.kind(), ErrorKind::Conflict);
        let primary_key = Error::from(SqliteError::from(failure(
            ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
        )));
        assert_eq!(primary_key.kind(), ErrorKind::Conflict);
        let foreign_key = Error::from(SqliteError::from(failure(
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
        )));
        assert_eq!(foreign_key.kind(), ErrorKind::NotFound);
        assert!(!foreign_key.is_retryable());
    }

    #[test]
    fn other_failures_are_unexpected() {
        let error = Error::from(SqliteError::from(failure(ffi::SQLITE_IOERR)));
        assert_eq!(error.kind(), ErrorKind::Unexpected);
        assert_eq!(error.message(), "the database call failed");
        assert!(
            std::error::Error::source(&error).is_some(),
            "the rusqlite error must stay the source"
        );
    }

    #[test]
    fn classified_errors_pass_through() {
        let error = Error::from(SqliteError::from(Error::not_found("prospect not found")));
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert_eq!(error.message(), "prospect not found");
    }

    #[test]
    fn newer_schema_names_both_versions() {
        let error = Error::from(SqliteError::SchemaTooNew {
            found: 9,
            latest: 1,
        });
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(
            error.message().contains("version 9"),
            "the message must name the file's version: {error}"
        );
        assert!(
            error.message().contains("(1)"),
            "the message must name the latest version: {error}"
        );
    }
}

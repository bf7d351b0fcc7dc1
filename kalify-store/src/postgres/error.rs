//! Classification of PostgreSQL and pool failures into kalify's [`Error`].
//!
//! SQLSTATE codes follow the PostgreSQL manual, appendix A "PostgreSQL Error
//! Codes".

use std::fmt;

use kalify_core::{Error, ErrorKind, Retry};
use sqlx::postgres::PgDatabaseError;

/// A failure inside the PostgreSQL store, before it becomes an [`Error`].
///
/// `Debug` shows the SQLSTATE, message, table and constraint of a database
/// error, but not its detail, because PostgreSQL puts row values there
/// ("Failing row contains ...", "Key (...)=(...) already exists").
#[derive(thiserror::Error)]
pub(crate) enum PgError {
    /// A failure already classified, such as `NotFound` or a version `Conflict`.
    #[error(transparent)]
    Classified(Error),

    /// The server cannot be reached, refused or dropped the connection, or
    /// no pooled connection became free within the acquire timeout.
    #[error("the database cannot be reached; retry later")]
    Unavailable(#[source] sqlx::Error),

    /// The pool was closed by [`PostgresStore::close`](super::PostgresStore::close).
    #[error("the store was closed")]
    Closed(#[source] sqlx::Error),

    /// A serialization failure or a deadlock: the transaction lost a race.
    #[error(
        "the transaction lost a race with a concurrent one (serialization failure or deadlock); retry it"
    )]
    RaceLost(#[source] sqlx::Error),

    /// A unique or primary key constraint failed.
    #[error("a record with the same key exists")]
    UniqueViolation(#[source] sqlx::Error),

    /// A foreign key constraint failed: a row references a missing record.
    #[error("a referenced record does not exist")]
    MissingReference(#[source] sqlx::Error),

    /// A value the server rejects, such as text containing a NUL character.
    #[error("the database rejected a value")]
    InvalidValue(#[source] sqlx::Error),

    /// The role lacks a privilege, or a row-level security policy rejected a row.
    #[error("the database role lacks a privilege, or a row-level security policy rejected the row")]
    PermissionDenied(#[source] sqlx::Error),

    /// The server rejected the credentials.
    #[error("the database rejected the credentials")]
    Unauthenticated(#[source] sqlx::Error),

    /// A statement was cancelled by `statement_timeout` or `lock_timeout`.
    #[error("a statement timed out")]
    Timeout(#[source] sqlx::Error),

    /// A database, schema or role named in the configuration does not exist.
    #[error("a database, schema or role named in the configuration does not exist")]
    Misconfigured(#[source] sqlx::Error),

    /// An invalid setting, described without the URL or its password.
    #[error("{0}")]
    Config(String),

    /// The schema was migrated by a newer kalify.
    #[error(
        "the {set} migrations of the database are at version {found}, newer than the latest this kalify knows ({latest}); upgrade kalify"
    )]
    SchemaTooNew {
        set: &'static str,
        found: i64,
        latest: i64,
    },

    /// A stored value does not decode into its record field.
    #[error("failed to decode the {column} column")]
    Decode {
        column: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// Any other failure.
    #[error("the database call failed")]
    Database(#[source] sqlx::Error),
}

impl PgError {
    /// Returns the decoding error of `column`.
    pub(crate) fn decode(
        column: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        PgError::Decode {
            column,
            source: source.into(),
        }
    }
}

/// Returns the SQLSTATE of a database error.
fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(database) => database.code().map(|code| code.into_owned()),
        _ => None,
    }
}

impl From<sqlx::Error> for PgError {
    fn from(error: sqlx::Error) -> Self {
        if let Some(code) = sqlstate(&error) {
            return match code.as_str() {
                "40001" | "40P01" => PgError::RaceLost(error),
                "23505" => PgError::UniqueViolation(error),
                "23503" => PgError::MissingReference(error),
                "23502" | "23514" => PgError::InvalidValue(error),
                "42501" => PgError::PermissionDenied(error),
                "57014" | "55P03" => PgError::Timeout(error),
                // Invalid catalog name, invalid schema name, undefined object.
                "3D000" | "3F000" | "42704" => PgError::Misconfigured(error),
                // 57P01-57P03: the server is shutting down, crashed or starting.
                "57P01" | "57P02" | "57P03" => PgError::Unavailable(error),
                // Class 08 is a connection exception, class 53 insufficient
                // resources (too many connections, out of memory, disk full).
                code if code.starts_with("08") || code.starts_with("53") => {
                    PgError::Unavailable(error)
                }
                code if code.starts_with("28") => PgError::Unauthenticated(error),
                code if code.starts_with("22") => PgError::InvalidValue(error),
                _ => PgError::Database(error),
            };
        }
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::WorkerCrashed => PgError::Unavailable(error),
            sqlx::Error::PoolClosed => PgError::Closed(error),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => PgError::decode("result", error),
            other => PgError::Database(other),
        }
    }
}

impl From<Error> for PgError {
    fn from(error: Error) -> Self {
        PgError::Classified(error)
    }
}

impl From<PgError> for Error {
    fn from(error: PgError) -> Self {
        let (kind, retry) = match &error {
            PgError::Classified(_) => (ErrorKind::Unexpected, None),
            PgError::Unavailable(_) => (ErrorKind::Unavailable, None),
            PgError::Closed(_) => (ErrorKind::Unavailable, Some(Retry::Permanent)),
            PgError::RaceLost(_) => (ErrorKind::Conflict, Some(Retry::Temporary)),
            PgError::UniqueViolation(_) => (ErrorKind::Conflict, None),
            PgError::MissingReference(_) => (ErrorKind::NotFound, None),
            PgError::InvalidValue(_) => (ErrorKind::InvalidInput, None),
            PgError::PermissionDenied(_) => (ErrorKind::PermissionDenied, None),
            PgError::Unauthenticated(_) => (ErrorKind::Unauthenticated, None),
            PgError::Timeout(_) => (ErrorKind::Timeout, None),
            PgError::Misconfigured(_) | PgError::Config(_) | PgError::SchemaTooNew { .. } => {
                (ErrorKind::ConfigInvalid, None)
            }
            PgError::Decode { .. } | PgError::Database(_) => (ErrorKind::Unexpected, None),
        };
        match error {
            PgError::Classified(error) => error,
            other => {
                let error = Error::new(kind, other.to_string()).with_source(other);
                match retry {
                    Some(retry) => error.with_retry(retry),
                    None => error,
                }
            }
        }
    }
}

/// Shows a sqlx error without the detail of a database error.
struct Redacted<'a>(&'a sqlx::Error);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            sqlx::Error::Database(database) => match database.try_downcast_ref::<PgDatabaseError>()
            {
                Some(postgres) => f
                    .debug_struct("PgDatabaseError")
                    .field("code", &postgres.code())
                    .field("message", &postgres.message())
                    .field("table", &postgres.table())
                    .field("constraint", &postgres.constraint())
                    .finish_non_exhaustive(),
                None => f
                    .debug_struct("DatabaseError")
                    .field("code", &database.code())
                    .finish_non_exhaustive(),
            },
            other => fmt::Debug::fmt(other, f),
        }
    }
}

impl fmt::Debug for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (variant, source) = match self {
            PgError::Classified(error) => return f.debug_tuple("Classified").field(error).finish(),
            PgError::Config(message) => return f.debug_tuple("Config").field(message).finish(),
            PgError::SchemaTooNew { set, found, latest } => {
                return f
                    .debug_struct("SchemaTooNew")
                    .field("set", set)
                    .field("found", found)
                    .field("latest", latest)
                    .finish();
            }
            PgError::Decode { column, source } => {
                return f
                    .debug_struct("Decode")
                    .field("column", column)
                    .field("source", source)
                    .finish();
            }
            PgError::Unavailable(source) => ("Unavailable", source),
            PgError::Closed(source) => ("Closed", source),
            PgError::RaceLost(source) => ("RaceLost", source),
            PgError::UniqueViolation(source) => ("UniqueViolation", source),
            PgError::MissingReference(source) => ("MissingReference", source),
            PgError::InvalidValue(source) => ("InvalidValue", source),
            PgError::PermissionDenied(source) => ("PermissionDenied", source),
            PgError::Unauthenticated(source) => ("Unauthenticated", source),
            PgError::Timeout(source) => ("Timeout", source),
            PgError::Misconfigured(source) => ("Misconfigured", source),
            PgError::Database(source) => ("Database", source),
        };
        f.debug_tuple(variant).field(&Redacted(source)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::from(kind))
    }

    #[test]
    fn connection_failures_are_unavailable_and_retryable() {
        for source in [
            io(std::io::ErrorKind::ConnectionRefused),
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::UnexpectedEof),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::WorkerCrashed,
        ] {
            let description = format!("{source}");
            let error = Error::from(PgError::from(source));
            assert_eq!(error.kind(), ErrorKind::Unavailable, "{description}");
            assert!(error.is_retryable(), "{description} must be retryable");
        }
    }

    #[test]
    fn closed_pool_is_not_retryable() {
        let error = Error::from(PgError::from(sqlx::Error::PoolClosed));
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert!(!error.is_retryable(), "a closed store stays closed");
    }

    #[test]
    fn race_lost_is_a_retryable_conflict() {
        let error = Error::from(PgError::RaceLost(sqlx::Error::PoolTimedOut));
        assert_eq!(error.kind(), ErrorKind::Conflict);
        assert!(
            error.is_retryable(),
            "a serialization failure must be retryable"
        );
    }

    #[test]
    fn constraint_failures_map_to_their_kinds() {
        let unique = Error::from(PgError::UniqueViolation(sqlx::Error::RowNotFound));
        assert_eq!(unique.kind(), ErrorKind::Conflict);
        assert!(!unique.is_retryable());
        let foreign_key = Error::from(PgError::MissingReference(sqlx::Error::RowNotFound));
        assert_eq!(foreign_key.kind(), ErrorKind::NotFound);
        let invalid = Error::from(PgError::InvalidValue(sqlx::Error::RowNotFound));
        assert_eq!(invalid.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn other_failures_are_unexpected_and_keep_their_source() {
        let error = Error::from(PgError::from(sqlx::Error::Protocol("bad message".into())));
        assert_eq!(error.kind(), ErrorKind::Unexpected);
        assert_eq!(error.message(), "the database call failed");
        assert!(
            std::error::Error::source(&error).is_some(),
            "the sqlx error must stay the source"
        );
    }

    #[test]
    fn classified_errors_pass_through() {
        let error = Error::from(PgError::from(Error::not_found("prospect not found")));
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert_eq!(error.message(), "prospect not found");
    }

    #[test]
    fn newer_schema_names_both_versions() {
        let error = Error::from(PgError::SchemaTooNew {
            set: "base",
            found: 9,
            latest: 1,
        });
        assert_eq!(error.kind(), ErrorKind::ConfigInvalid);
        assert!(
            error.message().contains("version 9"),
            "the message must name the stored version: {error}"
        );
        assert!(
            error.message().contains("(1)"),
            "the message must name the latest version: {error}"
        );
    }
}

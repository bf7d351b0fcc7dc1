//! Versioned migrations of the PostgreSQL store and the grants of the
//! application role.
//!
//! Migrations are embedded in the binary with `include_str!`. The table
//! `kalify_schema_migrations` in the store's schema records each applied
//! migration by set and version, so rebuilding a store applies only newer ones.

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, PgPool};

use super::error::PgError;

/// One migration: its version within its set and its SQL.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// A sequence of migrations applied in order. Append new files to a set,
/// and never edit one that was released.
struct MigrationSet {
    name: &'static str,
    migrations: &'static [Migration],
}

impl MigrationSet {
    fn latest(&self) -> i64 {
        self.migrations
            .last()
            .map_or(0, |migration| migration.version)
    }
}

/// The tables, indexes and cross-org functions.
const BASE: MigrationSet = MigrationSet {
    name: "base",
    migrations: &[
        Migration {
            version: 1,
            description: "tables, indexes and claim functions",
            sql: include_str!("../../migrations/postgres/0001_init.sql"),
        },
        Migration {
            version: DIGEST_VERSION,
            description: "suppression keys, model exchanges, subject requests, retention functions",
            sql: include_str!("../../migrations/postgres/0002_gdpr.sql"),
        },
        Migration {
            version: 3,
            description: "unconfirmed outbox entries",
            sql: include_str!("../../migrations/postgres/0003_outbox_unconfirmed.sql"),
        },
    ],
};

/// The base version from which the suppression list contains keyed digests.
/// [`migrate`] rewrites the clear rows of older versions when it applies it.
const DIGEST_VERSION: i64 = 2;

/// The row-level security policies and the owner-run cross-org functions.
const ROW_LEVEL_SECURITY: MigrationSet = MigrationSet {
    name: "row_level_security",
    migrations: &[
        Migration {
            version: 1,
            description: "org isolation policies, claim functions as security definer",
            sql: include_str!("../../migrations/postgres/row_level_security/0001_policies.sql"),
        },
        Migration {
            version: 2,
            description: "policies of the data-subject tables, retention functions as security definer",
            sql: include_str!("../../migrations/postgres/row_level_security/0002_gdpr.sql"),
        },
    ],
};

/// The tables an application role reads and writes.
pub(crate) const RECORD_TABLES: &[&str] = &[
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

/// The functions that work across orgs, with their argument types as `GRANT` names them.
const CROSS_ORG_FUNCTIONS: &[&str] = &[
    "claim_jobs(bigint, bigint, bigint, text)",
    "claim_outbox(bigint, bigint, bigint, text)",
    "open_subject_requests(bigint, bigint)",
    "expired_prospects(bigint, bigint)",
    "purge_messages(bigint, bigint)",
];

/// The first key of the advisory lock that serialises migrations. The second
/// key is a hash of the schema name.
const MIGRATION_LOCK_KEY: i32 = 0x6b61_6c69; // "kali"

/// Returns the sets a store applies: the base set, and the row-level
/// security set when it is on.
fn sets(row_level_security: bool) -> Vec<&'static MigrationSet> {
    if row_level_security {
        vec![&BASE, &ROW_LEVEL_SECURITY]
    } else {
        vec![&BASE]
    }
}

/// Returns the latest applied version of each set, or an empty list when
/// the migrations table does not exist yet.
async fn applied_versions(connection: &mut PgConnection) -> Result<Vec<(String, i64)>, PgError> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('kalify_schema_migrations') IS NOT NULL")
            .fetch_one(&mut *connection)
            .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let versions = sqlx::query_as::<_, (String, i64)>(
        "SELECT migration_set, max(version) FROM kalify_schema_migrations GROUP BY migration_set",
    )
    .fetch_all(&mut *connection)
    .await?;
    Ok(versions)
}

fn version_of(applied: &[(String, i64)], set: &MigrationSet) -> i64 {
    applied
        .iter()
        .find(|(name, _)| name == set.name)
        .map_or(0, |(_, version)| *version)
}

/// Checks that no set is ahead of this kalify, and returns whether any set lacks a migration.
fn needs_migration(applied: &[(String, i64)], sets: &[&MigrationSet]) -> Result<bool, PgError> {
    let mut behind = false;
    for set in sets {
        let found = version_of(applied, set);
        if found > set.latest() {
            return Err(PgError::SchemaTooNew {
                set: set.name,
                found,
                latest: set.latest(),
            });
        }
        behind |= found < set.latest();
    }
    Ok(behind)
}

/// Applies the migrations the schema lacks and returns how many it applied.
///
/// An up-to-date schema is only read, so a role without DDL privileges,
/// such as the application role, can build a store on it. Otherwise the
/// migrations run in one transaction under an advisory lock keyed by the
/// schema, so concurrent builds migrate once and a failure leaves the schema
/// as it was. `schema`, when set, is created if missing.
pub(crate) async fn migrate(
    pool: &PgPool,
    schema: Option<&str>,
    row_level_security: bool,
) -> Result<usize, PgError> {
    let sets = sets(row_level_security);
    let mut connection = pool.acquire().await?;
    let applied = applied_versions(&mut connection).await?;
    if !needs_migration(&applied, &sets)? {
        return Ok(0);
    }

    let mut transaction = Connection::begin(&mut *connection).await?;
    let lock_name = match schema {
        Some(schema) => schema.to_owned(),
        None => sqlx::query_scalar::<_, Option<String>>("SELECT current_schema()")
            .fetch_one(&mut *transaction)
            .await?
            .unwrap_or_default(),
    };
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(MIGRATION_LOCK_KEY)
        .bind(&lock_name)
        .execute(&mut *transaction)
        .await?;
    if let Some(schema) = schema {
        // The name was checked to be a plain lowercase identifier, so it needs no quoting.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut *transaction)
        .await?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS kalify_schema_migrations (
             migration_set text        NOT NULL,
             version       bigint      NOT NULL,
             description   text        NOT NULL,
             applied_at    timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (migration_set, version)
         )",
    )
    .execute(&mut *transaction)
    .await?;

    // Another process may have migrated while this one waited for the lock.
    let applied = applied_versions(&mut transaction).await?;
    needs_migration(&applied, &sets)?;
    let mut count = 0;
    for set in &sets {
        let current = version_of(&applied, set);
        for migration in set
            .migrations
            .iter()
            .filter(|migration| migration.version > current)
        {
            sqlx::raw_sql(migration.sql)
                .execute(&mut *transaction)
                .await?;
            if set.name == BASE.name && migration.version == DIGEST_VERSION {
                let counts = super::queries::hash_clear_suppressions(&mut transaction).await?;
                tracing::info!(
                    target: "kalify::store",
                    adapter = "postgres",
                    rewritten = counts.rewritten,
                    "replaced clear suppression entries with keyed digests"
                );
                if counts.dropped > 0 {
                    tracing::warn!(
                        target: "kalify::store",
                        adapter = "postgres",
                        dropped = counts.dropped,
                        "deleted clear suppression entries whose contact point no longer parses"
                    );
                }
            }
            sqlx::query(
                "INSERT INTO kalify_schema_migrations (migration_set, version, description) VALUES ($1, $2, $3)",
            )
            .bind(set.name)
            .bind(migration.version)
            .bind(migration.description)
            .execute(&mut *transaction)
            .await?;
            tracing::info!(
                target: "kalify::store",
                adapter = "postgres",
                migration_set = set.name,
                version = migration.version,
                "applied schema migration"
            );
            count += 1;
        }
    }
    transaction.commit().await?;
    Ok(count)
}

/// Returns the latest applied version of the base migrations.
pub(crate) async fn schema_version(pool: &PgPool) -> Result<i64, PgError> {
    let mut connection = pool.acquire().await?;
    let applied = applied_versions(&mut connection).await?;
    Ok(version_of(&applied, &BASE))
}

/// Returns `name` quoted as an SQL identifier.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Grants `role` what the store needs in the current schema: the schema,
/// reads and writes of the record tables, reads of the migrations table and
/// the cross-org functions. It grants nothing on the schema's other objects.
pub(crate) async fn grant_application_role(pool: &PgPool, role: &str) -> Result<(), PgError> {
    let mut transaction = pool.begin().await?;
    let schema = sqlx::query_scalar::<_, Option<String>>("SELECT current_schema()")
        .fetch_one(&mut *transaction)
        .await?
        .ok_or_else(|| {
            PgError::Config(
                "no schema on the search_path exists: build the store before granting a role"
                    .into(),
            )
        })?;
    let role = quote_identifier(role);
    let schema = quote_identifier(&schema);

    let mut statements = vec![
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {role}",
            qualified(&schema, RECORD_TABLES)
        ),
        format!("GRANT SELECT ON {schema}.kalify_schema_migrations TO {role}"),
    ];
    for function in CROSS_ORG_FUNCTIONS {
        statements.push(format!(
            "GRANT EXECUTE ON FUNCTION {schema}.{function} TO {role}"
        ));
    }
    for statement in statements {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Returns the tables as a comma-separated list qualified by `schema`.
fn qualified(schema: &str, tables: &[&str]) -> String {
    tables
        .iter()
        .map(|table| format!("{schema}.{table}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_ahead_are_rejected() {
        let applied = vec![("base".to_owned(), BASE.latest() + 1)];
        let error = needs_migration(&applied, &[&BASE]).unwrap_err();
        assert!(
            matches!(error, PgError::SchemaTooNew { set: "base", .. }),
            "{error:?}"
        );
    }

    #[test]
    fn missing_sets_need_migration() {
        let applied = vec![("base".to_owned(), BASE.latest())];
        assert!(
            !needs_migration(&applied, &[&BASE]).unwrap(),
            "an up-to-date base needs nothing"
        );
        assert!(
            needs_migration(&applied, &[&BASE, &ROW_LEVEL_SECURITY]).unwrap(),
            "row-level security is missing"
        );
        assert!(
            needs_migration(&[], &[&BASE]).unwrap(),
            "a new schema needs the base set"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("kalify_app"), "\"kalify_app\"");
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn migration_versions_increase() {
        for set in [&BASE, &ROW_LEVEL_SECURITY] {
            let versions: Vec<i64> = set
                .migrations
                .iter()
                .map(|migration| migration.version)
                .collect();
            let expected: Vec<i64> = (1..=versions.len() as i64).collect();
            assert_eq!(
                versions, expected,
                "the {} migrations must be numbered 1, 2, ...",
                set.name
            );
        }
    }
}

//! The blocking body of each store method, run on the store's connection.
//!
//! Every function takes the connection exclusively. Writes that touch more
//! than one row run in an IMMEDIATE transaction, which takes the write lock
//! up front, so two processes sharing the file fail fast with `SQLITE_BUSY`
//! after the busy timeout rather than deadlocking on a lock upgrade.
//! Errors built here carry no ids: the async wrappers add them.

use std::collections::{HashMap, HashSet};

use kalify_core::campaign::Campaign;
use kalify_core::contact::ContactPoint;
use kalify_core::conversation::{Conversation, Message};
use kalify_core::gdpr::{ErasureReport, SubjectRequest};
use kalify_core::ports::{
    AuditEvent, CancelScope, InsertOutcome, Job, JobOutcome, ListOptions, Member, ModelExchange,
    OutboxEntry, OutboxOutcome, OutboxStatus, Suppression, TurnCommit,
};
use kalify_core::prospect::{Prospect, Version};
use kalify_core::{
    CampaignId, ConversationId, Error, JobId, MemberId, OrgId, OutboxId, ProspectId, Timestamp,
};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::error::SqliteError;
use super::rows::{
    self, Key, audit_columns, campaign_columns, conversation_columns, exchange_columns,
    job_columns, member_columns, message_columns, nanos, outbox_columns, prospect_columns,
    request_columns,
};
use crate::common::DUPLICATE_PROSPECT;

fn immediate(connection: &mut Connection) -> Result<Transaction<'_>, SqliteError> {
    Ok(connection.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Returns the stored version of a prospect, or `None` when it does not exist.
fn prospect_version(
    connection: &Connection,
    org: OrgId,
    id: ProspectId,
) -> Result<Option<i64>, SqliteError> {
    let mut statement =
        connection.prepare_cached("SELECT version FROM prospects WHERE org_id = ?1 AND id = ?2")?;
    Ok(statement
        .query_row(params![org.key(), id.key()], |row| row.get(0))
        .optional()?)
}

/// Returns the stored version of a conversation, or `None` when it does not exist.
fn conversation_version(
    connection: &Connection,
    org: OrgId,
    id: ConversationId,
) -> Result<Option<i64>, SqliteError> {
    let mut statement = connection
        .prepare_cached("SELECT version FROM conversations WHERE org_id = ?1 AND id = ?2")?;
    Ok(statement
        .query_row(params![org.key(), id.key()], |row| row.get(0))
        .optional()?)
}

/// Returns the error for a versioned write that changed no row: `NotFound`
/// when the record is missing, otherwise `Conflict` naming both versions.
fn version_mismatch(record: &str, stored: Option<i64>, read: Version) -> SqliteError {
    match stored {
        None => Error::not_found(format!("{record} not found")).into(),
        Some(stored) => Error::conflict(format!(
            "the {record} changed since it was read: stored v{stored}, write read {read}"
        ))
        .into(),
    }
}

// ---------------------------------------------------------------- prospects

pub(crate) fn insert_prospects(
    connection: &mut Connection,
    prospects: &[Prospect],
) -> Result<(), SqliteError> {
    let transaction = immediate(connection)?;
    let mut statement = transaction.prepare_cached(rows::INSERT_PROSPECT)?;
    for prospect in prospects {
        rows::insert_prospect(&mut statement, prospect).map_err(|error| match error {
            SqliteError::Constraint(source) => Error::conflict(DUPLICATE_PROSPECT)
                .with_context("prospect_id", prospect.id)
                .with_source(source)
                .into(),
            other => other,
        })?;
    }
    drop(statement);
    transaction.commit()?;
    Ok(())
}

pub(crate) fn get_prospect(
    connection: &mut Connection,
    org: OrgId,
    id: ProspectId,
) -> Result<Prospect, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        prospect_columns!(),
        " FROM prospects WHERE org_id = ?1 AND id = ?2"
    ))?;
    statement
        .query_row(params![org.key(), id.key()], rows::prospect_from_row)
        .optional()?
        .ok_or_else(|| Error::not_found("prospect not found").into())
}

pub(crate) fn update_prospect(
    connection: &mut Connection,
    prospect: &Prospect,
) -> Result<Version, SqliteError> {
    let transaction = immediate(connection)?;
    if rows::update_prospect_if_version(&transaction, prospect)? == 0 {
        let stored = prospect_version(&transaction, prospect.org_id, prospect.id)?;
        return Err(version_mismatch("prospect", stored, prospect.version));
    }
    transaction.commit()?;
    Ok(prospect.version.next())
}

pub(crate) fn find_prospect(
    connection: &mut Connection,
    org: OrgId,
    contact: &ContactPoint,
) -> Result<Option<Prospect>, SqliteError> {
    let mut statement = connection.prepare_cached(find_prospect_sql(contact))?;
    Ok(statement
        .query_row(params![org.key(), contact.key()], rows::prospect_from_row)
        .optional()?)
}

/// Returns the query that finds the prospect with a contact point.
///
/// Contact points are not unique, so two prospects may match. The oldest
/// one is returned, which keeps the result stable. The unary `+` in
/// `ORDER BY +id` stops SQLite from walking the primary key to avoid the
/// sort: without it, the planner scans every prospect of the org instead of
/// using the contact point's index, and each lookup costs time in
/// proportion to the org's size.
fn find_prospect_sql(contact: &ContactPoint) -> &'static str {
    match contact {
        ContactPoint::Phone(_) => concat!(
            "SELECT ",
            prospect_columns!(),
            " FROM prospects WHERE org_id = ?1 AND phone = ?2 ORDER BY +id LIMIT 1"
        ),
        ContactPoint::Email(_) => concat!(
            "SELECT ",
            prospect_columns!(),
            " FROM prospects WHERE org_id = ?1 AND email = ?2 ORDER BY +id LIMIT 1"
        ),
        ContactPoint::Messenger(_) => concat!(
            "SELECT ",
            prospect_columns!(),
            " FROM prospects WHERE org_id = ?1 AND messenger = ?2 ORDER BY +id LIMIT 1"
        ),
    }
}

/// Returns the distinct contact points of `contacts`, sorted by channel and
/// key, so that lookups walk each index in order and reuse its cached pages.
fn distinct_sorted(contacts: &[ContactPoint]) -> Vec<&ContactPoint> {
    let mut sorted: Vec<&ContactPoint> = contacts.iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// Returns the query that checks whether any prospect of the org has a
/// contact point. SQLite answers it from the contact point's index alone,
/// whereas the `ORDER BY` of [`find_prospect_sql`] opens a temporary sorter
/// on every run, even when no row matches.
fn contact_exists_sql(contact: &ContactPoint) -> &'static str {
    match contact {
        ContactPoint::Phone(_) => {
            "SELECT 1 FROM prospects WHERE org_id = ?1 AND phone = ?2 LIMIT 1"
        }
        ContactPoint::Email(_) => {
            "SELECT 1 FROM prospects WHERE org_id = ?1 AND email = ?2 LIMIT 1"
        }
        ContactPoint::Messenger(_) => {
            "SELECT 1 FROM prospects WHERE org_id = ?1 AND messenger = ?2 LIMIT 1"
        }
    }
}

/// Finds the prospect of each distinct contact point, as [`find_prospect`]
/// does for one, in one read transaction: one snapshot, and one lock taken
/// for all the lookups instead of one per lookup.
///
/// Most contact points of an import are new, so each one is first probed
/// with [`contact_exists_sql`], and only those that exist are read with the
/// sorted query.
pub(crate) fn find_prospects_by_contacts(
    connection: &mut Connection,
    org: OrgId,
    contacts: &[ContactPoint],
) -> Result<HashMap<ContactPoint, Prospect>, SqliteError> {
    let mut found = HashMap::new();
    let transaction = connection.transaction()?;
    for contact in distinct_sorted(contacts) {
        let exists = transaction
            .prepare_cached(contact_exists_sql(contact))?
            .exists(params![org.key(), contact.key()])?;
        if !exists {
            continue;
        }
        let mut statement = transaction.prepare_cached(find_prospect_sql(contact))?;
        if let Some(prospect) = statement
            .query_row(params![org.key(), contact.key()], rows::prospect_from_row)
            .optional()?
        {
            found.insert(contact.clone(), prospect);
        }
    }
    transaction.commit()?;
    Ok(found)
}

pub(crate) fn list_prospects(
    connection: &mut Connection,
    org: OrgId,
    options: ListOptions,
) -> Result<Vec<Prospect>, SqliteError> {
    // SQLite reads a negative LIMIT as "no limit".
    let limit = if options.limit == 0 {
        -1
    } else {
        i64::try_from(options.limit).unwrap_or(i64::MAX)
    };
    let prospects = match options.after {
        Some(after) => {
            let mut statement = connection.prepare_cached(concat!(
                "SELECT ",
                prospect_columns!(),
                " FROM prospects WHERE org_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            statement
                .query_map(
                    params![org.key(), after.key(), limit],
                    rows::prospect_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
        None => {
            let mut statement = connection.prepare_cached(concat!(
                "SELECT ",
                prospect_columns!(),
                " FROM prospects WHERE org_id = ?1 ORDER BY id LIMIT ?2"
            ))?;
            statement
                .query_map(params![org.key(), limit], rows::prospect_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        }
    };
    Ok(prospects)
}

// ---------------------------------------------------------------- campaigns

pub(crate) fn put_campaign(
    connection: &mut Connection,
    campaign: &Campaign,
) -> Result<(), SqliteError> {
    rows::upsert_campaign(connection, campaign)
}

pub(crate) fn get_campaign(
    connection: &mut Connection,
    org: OrgId,
    id: CampaignId,
) -> Result<Campaign, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM campaigns WHERE org_id = ?1 AND id = ?2"
    ))?;
    statement
        .query_row(params![org.key(), id.key()], rows::campaign_from_row)
        .optional()?
        .ok_or_else(|| Error::not_found("campaign not found").into())
}

// ------------------------------------------------------------ conversations

pub(crate) fn insert_conversation(
    connection: &mut Connection,
    conversation: &Conversation,
    jobs: &[Job],
) -> Result<bool, SqliteError> {
    let transaction = immediate(connection)?;
    if prospect_version(&transaction, conversation.org_id, conversation.prospect_id)?.is_none() {
        return Err(Error::not_found("prospect not found")
            .with_context("prospect_id", conversation.prospect_id)
            .into());
    }
    if rows::insert_conversation_unless_exists(&transaction, conversation)? == 0 {
        return Ok(false);
    }
    for job in jobs {
        rows::insert_job(&transaction, job)?;
    }
    transaction.commit()?;
    Ok(true)
}

pub(crate) fn get_conversation(
    connection: &mut Connection,
    org: OrgId,
    id: ConversationId,
) -> Result<Conversation, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        conversation_columns!(),
        " FROM conversations WHERE org_id = ?1 AND id = ?2"
    ))?;
    statement
        .query_row(params![org.key(), id.key()], rows::conversation_from_row)
        .optional()?
        .ok_or_else(|| Error::not_found("conversation not found").into())
}

pub(crate) fn conversations_of(
    connection: &mut Connection,
    org: OrgId,
    prospect: ProspectId,
) -> Result<Vec<Conversation>, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        conversation_columns!(),
        " FROM conversations WHERE org_id = ?1 AND prospect_id = ?2 ORDER BY updated_at DESC, id DESC"
    ))?;
    let conversations = statement
        .query_map(
            params![org.key(), prospect.key()],
            rows::conversation_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(conversations)
}

// ----------------------------------------------------------------- messages

pub(crate) fn list_messages(
    connection: &mut Connection,
    org: OrgId,
    conversation: ConversationId,
) -> Result<Vec<Message>, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE org_id = ?1 AND conversation_id = ?2 ORDER BY at, id"
    ))?;
    let messages = statement
        .query_map(
            params![org.key(), conversation.key()],
            rows::message_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(messages)
}

pub(crate) fn insert_inbound(
    connection: &mut Connection,
    message: &Message,
) -> Result<InsertOutcome, SqliteError> {
    let inserted =
        rows::insert_message(connection, message, true).map_err(|error| match error {
            SqliteError::MissingReference(source) => Error::not_found("conversation not found")
                .with_context("conversation_id", message.conversation_id)
                .with_source(source)
                .into(),
            other => other,
        })?;
    Ok(if inserted == 0 {
        InsertOutcome::Duplicate
    } else {
        InsertOutcome::Inserted
    })
}

pub(crate) fn pending_inbound(
    connection: &mut Connection,
    org: OrgId,
    conversation: ConversationId,
) -> Result<Vec<Message>, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE org_id = ?1 AND conversation_id = ?2 AND direction = 'inbound' AND processed = 0 \
         ORDER BY at, id"
    ))?;
    let messages = statement
        .query_map(
            params![org.key(), conversation.key()],
            rows::message_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(messages)
}

// --------------------------------------------------------------------- turns

/// Cancels the pending jobs and outbox entries of one conversation or of
/// every conversation of a prospect, and sets the messages of the cancelled
/// entries to `cancelled`.
fn cancel(transaction: &Transaction<'_>, turn: &TurnCommit) -> Result<(), SqliteError> {
    let org = turn.conversation.org_id.key();
    let statements: [&str; 3] = match turn.cancel {
        CancelScope::Nothing => return Ok(()),
        CancelScope::Conversation => [
            "UPDATE jobs SET status = 'cancelled', lease_until = NULL, lease_owner = NULL \
             WHERE org_id = ?1 AND conversation_id = ?2 AND status = 'pending'",
            "UPDATE messages SET status = 'cancelled' WHERE org_id = ?1 AND id IN \
             (SELECT message_id FROM outbox WHERE org_id = ?1 AND conversation_id = ?2 AND status = 'pending')",
            "UPDATE outbox SET status = 'cancelled', lease_until = NULL, lease_owner = NULL \
             WHERE org_id = ?1 AND conversation_id = ?2 AND status = 'pending'",
        ],
        CancelScope::Prospect => [
            "UPDATE jobs SET status = 'cancelled', lease_until = NULL, lease_owner = NULL \
             WHERE org_id = ?1 AND prospect_id = ?2 AND status = 'pending'",
            "UPDATE messages SET status = 'cancelled' WHERE org_id = ?1 AND id IN \
             (SELECT message_id FROM outbox WHERE org_id = ?1 AND prospect_id = ?2 AND status = 'pending')",
            "UPDATE outbox SET status = 'cancelled', lease_until = NULL, lease_owner = NULL \
             WHERE org_id = ?1 AND prospect_id = ?2 AND status = 'pending'",
        ],
    };
    let target = match turn.cancel {
        CancelScope::Prospect => turn.conversation.prospect_id.key(),
        _ => turn.conversation.id.key(),
    };
    for sql in statements {
        transaction
            .prepare_cached(sql)?
            .execute(params![org, target])?;
    }
    Ok(())
}

/// Writes a turn in one IMMEDIATE transaction and returns the conversation's new version.
///
/// The order matters:
/// - versions are checked first, so a conflict writes nothing;
/// - the completed job is finished before the cancellation, so it ends as done;
/// - the cancellation runs before the turn's own jobs and entries are
///   written, so it never touches them;
/// - lifts run before additions, so a contact point named in both stays suppressed.
pub(crate) fn commit_turn(
    connection: &mut Connection,
    turn: &TurnCommit,
) -> Result<Version, SqliteError> {
    let transaction = immediate(connection)?;
    let conversation = &turn.conversation;
    let org = conversation.org_id;

    if turn.create_conversation {
        let created = Conversation {
            version: conversation.version.next(),
            ..conversation.clone()
        };
        if rows::insert_conversation_unless_exists(&transaction, &created)? == 0 {
            return Err(Error::conflict(
                "the conversation the turn creates exists already, or its prospect has one for the same campaign",
            )
            .with_context("conversation_id", conversation.id)
            .into());
        }
    } else if rows::update_conversation_if_version(&transaction, conversation)? == 0 {
        let stored = conversation_version(&transaction, org, conversation.id)?;
        return Err(version_mismatch(
            "conversation",
            stored,
            conversation.version,
        ));
    }
    if let Some(prospect) = &turn.prospect
        && rows::update_prospect_if_version(&transaction, prospect)? == 0
    {
        let stored = prospect_version(&transaction, org, prospect.id)?;
        let error = version_mismatch("prospect", stored, prospect.version);
        return Err(match error {
            SqliteError::Classified(error) => error.with_context("prospect_id", prospect.id).into(),
            other => other,
        });
    }

    if let Some(job) = turn.completed_job {
        let updated = transaction
            .prepare_cached(
                "UPDATE jobs SET status = 'done', lease_until = NULL, lease_owner = NULL \
                 WHERE org_id = ?1 AND id = ?2 AND status = 'pending'",
            )?
            .execute(params![org.key(), job.key()])?;
        if updated == 0 {
            return Err(Error::conflict(
                "the job the turn completes is no longer pending; another worker finished it",
            )
            .into());
        }
    }
    cancel(&transaction, turn)?;

    for message in &turn.messages {
        rows::insert_message(&transaction, message, false)?;
    }
    for id in &turn.processed_inbound {
        transaction
            .prepare_cached("UPDATE messages SET processed = 1 WHERE org_id = ?1 AND id = ?2")?
            .execute(params![org.key(), id.key()])?;
    }
    for entry in &turn.outbox {
        rows::insert_outbox(&transaction, entry)?;
    }
    for job in &turn.jobs {
        rows::insert_job(&transaction, job)?;
    }
    for contact in &turn.unsuppress {
        rows::delete_suppression(&transaction, org, contact)?;
    }
    for entry in &turn.suppress {
        rows::insert_suppression(
            &transaction,
            entry.org_id,
            &entry.contact,
            &entry.reason,
            entry.at,
        )?;
    }
    for event in &turn.audit {
        rows::insert_audit(&transaction, event)?;
    }
    for exchange in &turn.model_exchanges {
        rows::insert_exchange(&transaction, exchange)?;
    }

    transaction.commit()?;
    Ok(conversation.version.next())
}

// --------------------------------------------------------------------- jobs

/// Leases up to `limit` due jobs to `worker` until `lease_until`, and
/// returns them oldest due first with their new attempt count.
pub(crate) fn claim_jobs(
    connection: &mut Connection,
    now: Timestamp,
    limit: usize,
    lease_until: Timestamp,
    worker: &str,
) -> Result<Vec<Job>, SqliteError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    // One statement selects and leases the rows, so no other claim can take them in between.
    let mut statement = connection.prepare_cached(concat!(
        "UPDATE jobs SET attempts = attempts + 1, lease_until = ?1, lease_owner = ?2 WHERE rowid IN \
         (SELECT rowid FROM jobs WHERE status = 'pending' AND due_at <= ?3 \
          AND (lease_until IS NULL OR lease_until <= ?3) ORDER BY due_at, id LIMIT ?4) RETURNING ",
        job_columns!()
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut jobs = statement
        .query_map(
            params![nanos(lease_until)?, worker, nanos(now)?, limit],
            rows::job_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // RETURNING yields rows in no defined order.
    jobs.sort_by(|a, b| a.due_at.cmp(&b.due_at).then(a.id.cmp(&b.id)));
    Ok(jobs)
}

/// Returns whether the org has a job with this id.
fn job_exists(connection: &Connection, org: OrgId, id: JobId) -> Result<bool, SqliteError> {
    let mut statement =
        connection.prepare_cached("SELECT 1 FROM jobs WHERE org_id = ?1 AND id = ?2")?;
    Ok(statement.exists(params![org.key(), id.key()])?)
}

pub(crate) fn finish_job(
    connection: &mut Connection,
    org: OrgId,
    id: JobId,
    outcome: &JobOutcome,
) -> Result<(), SqliteError> {
    let transaction = immediate(connection)?;
    let changed = match outcome {
        JobOutcome::Done | JobOutcome::Cancelled => {
            let status = if matches!(outcome, JobOutcome::Done) {
                "done"
            } else {
                "cancelled"
            };
            transaction
                .prepare_cached(
                    "UPDATE jobs SET status = ?3, lease_until = NULL, lease_owner = NULL \
                     WHERE org_id = ?1 AND id = ?2 AND status = 'pending'",
                )?
                .execute(params![org.key(), id.key(), status])?
        }
        JobOutcome::RetryAt(at) => transaction
            .prepare_cached(
                "UPDATE jobs SET due_at = ?3, lease_until = NULL, lease_owner = NULL \
                 WHERE org_id = ?1 AND id = ?2 AND status = 'pending'",
            )?
            .execute(params![org.key(), id.key(), nanos(*at)?])?,
    };
    // A job already done or cancelled stays as it is.
    if changed == 0 && !job_exists(&transaction, org, id)? {
        return Err(Error::not_found("job not found").into());
    }
    transaction.commit()?;
    Ok(())
}

pub(crate) fn pending_jobs(
    connection: &mut Connection,
    org: OrgId,
    conversation: ConversationId,
) -> Result<Vec<Job>, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE org_id = ?1 AND conversation_id = ?2 AND status = 'pending' ORDER BY due_at, id"
    ))?;
    let jobs = statement
        .query_map(params![org.key(), conversation.key()], rows::job_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(jobs)
}

// ------------------------------------------------------------------- outbox

/// Leases up to `limit` due outbox entries to `worker` until `lease_until`,
/// and returns them oldest due first with their new attempt count. An
/// entry that still has a lease owner had its lease expire without a
/// finish, so it becomes unconfirmed.
pub(crate) fn claim_outbox(
    connection: &mut Connection,
    now: Timestamp,
    limit: usize,
    lease_until: Timestamp,
    worker: &str,
) -> Result<Vec<OutboxEntry>, SqliteError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut statement = connection.prepare_cached(concat!(
        "UPDATE outbox SET attempts = attempts + 1, unconfirmed = (unconfirmed OR lease_owner IS NOT NULL), \
         first_attempt_at = coalesce(first_attempt_at, ?3), lease_until = ?1, lease_owner = ?2 WHERE rowid IN \
         (SELECT rowid FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?3 \
          AND (lease_until IS NULL OR lease_until <= ?3) ORDER BY next_attempt_at, id LIMIT ?4) RETURNING ",
        outbox_columns!()
    ))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut entries = statement
        .query_map(
            params![nanos(lease_until)?, worker, nanos(now)?, limit],
            rows::outbox_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    entries.sort_by(|a, b| {
        a.next_attempt_at
            .cmp(&b.next_attempt_at)
            .then(a.id.cmp(&b.id))
    });
    Ok(entries)
}

/// Returns whether the org has an outbox entry with this id.
fn outbox_exists(connection: &Connection, org: OrgId, id: OutboxId) -> Result<bool, SqliteError> {
    let mut statement =
        connection.prepare_cached("SELECT 1 FROM outbox WHERE org_id = ?1 AND id = ?2")?;
    Ok(statement.exists(params![org.key(), id.key()])?)
}

/// Finishes an outbox entry and updates its message in one transaction.
///
/// `Sent` applies whatever the entry's status, because the provider did
/// accept the message. The other outcomes change only a pending entry.
pub(crate) fn finish_outbox(
    connection: &mut Connection,
    org: OrgId,
    id: OutboxId,
    outcome: &OutboxOutcome,
) -> Result<(), SqliteError> {
    let transaction = immediate(connection)?;
    match outcome {
        OutboxOutcome::Sent {
            provider,
            provider_message_id,
        } => {
            let message: Option<[u8; 16]> = transaction
                .prepare_cached(
                    "UPDATE outbox SET status = 'sent', unconfirmed = 0, lease_until = NULL, lease_owner = NULL \
                     WHERE org_id = ?1 AND id = ?2 RETURNING message_id",
                )?
                .query_row(params![org.key(), id.key()], |row| row.get(0))
                .optional()?;
            let Some(message) = message else {
                return Err(Error::not_found("outbox entry not found").into());
            };
            transaction
                .prepare_cached(
                    "UPDATE messages SET status = 'sent', provider = ?3, provider_message_id = ?4 \
                     WHERE org_id = ?1 AND id = ?2",
                )?
                .execute(params![org.key(), message, provider, provider_message_id])?;
        }
        OutboxOutcome::RetryAt(at) | OutboxOutcome::Unconfirmed(at) => {
            let unconfirmed = matches!(outcome, OutboxOutcome::Unconfirmed(_));
            let changed = transaction
                .prepare_cached(
                    "UPDATE outbox SET next_attempt_at = ?3, unconfirmed = (unconfirmed OR ?4), \
                     lease_until = NULL, lease_owner = NULL \
                     WHERE org_id = ?1 AND id = ?2 AND status = 'pending'",
                )?
                .execute(params![org.key(), id.key(), nanos(*at)?, unconfirmed])?;
            if changed == 0 && !outbox_exists(&transaction, org, id)? {
                return Err(Error::not_found("outbox entry not found").into());
            }
        }
        OutboxOutcome::Failed(reason) | OutboxOutcome::Cancelled(reason) => {
            let (entry_status, message_status) = match outcome {
                OutboxOutcome::Failed(_) => (OutboxStatus::Failed, "failed"),
                _ => (OutboxStatus::Cancelled, "cancelled"),
            };
            let message: Option<[u8; 16]> = transaction
                .prepare_cached(
                    "UPDATE outbox SET status = ?3, last_error = ?4, lease_until = NULL, lease_owner = NULL \
                     WHERE org_id = ?1 AND id = ?2 AND status = 'pending' RETURNING message_id",
                )?
                .query_row(params![org.key(), id.key(), rows::outbox_status_text(entry_status), reason], |row| {
                    row.get(0)
                })
                .optional()?;
            match message {
                Some(message) => {
                    transaction
                        .prepare_cached(
                            "UPDATE messages SET status = ?3 WHERE org_id = ?1 AND id = ?2",
                        )?
                        .execute(params![org.key(), message, message_status])?;
                }
                None if !outbox_exists(&transaction, org, id)? => {
                    return Err(Error::not_found("outbox entry not found").into());
                }
                None => {}
            }
        }
    }
    transaction.commit()?;
    Ok(())
}

// ------------------------------------------------- suppressions and audit

pub(crate) fn is_suppressed(
    connection: &Connection,
    org: OrgId,
    contact: &ContactPoint,
) -> Result<bool, SqliteError> {
    match rows::suppression_key(connection, org)? {
        Some(key) => rows::digest_listed(connection, org, &key, contact),
        None => Ok(false),
    }
}

/// Returns the distinct contact points of `contacts` that are on the org's
/// suppression list, checked in one read transaction.
pub(crate) fn suppressed_among(
    connection: &mut Connection,
    org: OrgId,
    contacts: &[ContactPoint],
) -> Result<HashSet<ContactPoint>, SqliteError> {
    let mut suppressed = HashSet::new();
    let transaction = connection.transaction()?;
    if let Some(key) = rows::suppression_key(&transaction, org)? {
        for contact in distinct_sorted(contacts) {
            if rows::digest_listed(&transaction, org, &key, contact)? {
                suppressed.insert(contact.clone());
            }
        }
    }
    transaction.commit()?;
    Ok(suppressed)
}

pub(crate) fn suppress(
    connection: &mut Connection,
    entries: &[Suppression],
) -> Result<(), SqliteError> {
    let transaction = immediate(connection)?;
    for entry in entries {
        rows::insert_suppression(
            &transaction,
            entry.org_id,
            &entry.contact,
            &entry.reason,
            entry.at,
        )?;
    }
    transaction.commit()?;
    Ok(())
}

pub(crate) fn append_audit(
    connection: &mut Connection,
    events: &[AuditEvent],
) -> Result<(), SqliteError> {
    let transaction = immediate(connection)?;
    for event in events {
        rows::insert_audit(&transaction, event)?;
    }
    transaction.commit()?;
    Ok(())
}

pub(crate) fn audit_of(
    connection: &mut Connection,
    org: OrgId,
    prospect: ProspectId,
) -> Result<Vec<AuditEvent>, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        audit_columns!(),
        " FROM audit_events WHERE org_id = ?1 AND prospect_id = ?2 ORDER BY at, seq"
    ))?;
    let events = statement
        .query_map(params![org.key(), prospect.key()], rows::audit_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(events)
}

// ------------------------------------------------------------------ members

pub(crate) fn put_member(connection: &mut Connection, member: &Member) -> Result<(), SqliteError> {
    rows::upsert_member(connection, member)
}

pub(crate) fn get_member(
    connection: &mut Connection,
    org: OrgId,
    id: MemberId,
) -> Result<Member, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        member_columns!(),
        " FROM members WHERE org_id = ?1 AND id = ?2"
    ))?;
    statement
        .query_row(params![org.key(), id.key()], rows::member_from_row)
        .optional()?
        .ok_or_else(|| Error::not_found("member not found").into())
}

pub(crate) fn list_members(
    connection: &mut Connection,
    org: OrgId,
) -> Result<Vec<Member>, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        member_columns!(),
        " FROM members WHERE org_id = ?1 ORDER BY id"
    ))?;
    let members = statement
        .query_map(params![org.key()], rows::member_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(members)
}

// --------------------------------------------------------- data subjects

/// Deletes `sql` rows bound to (org, prospect) and records the count under `table`.
fn delete_counted(
    transaction: &Transaction<'_>,
    report: &mut ErasureReport,
    table: &str,
    sql: &str,
    org: OrgId,
    prospect: ProspectId,
) -> Result<(), SqliteError> {
    let rows = transaction
        .prepare_cached(sql)?
        .execute(params![org.key(), prospect.key()])?;
    report.add(table, rows as u64);
    Ok(())
}

fn erase_rows(
    transaction: &Transaction<'_>,
    org: OrgId,
    prospect: ProspectId,
) -> Result<ErasureReport, SqliteError> {
    let mut report = ErasureReport::default();
    // Children first, so that the counts are per table rather than hidden in cascades.
    let steps: [(&str, &str); 7] = [
        (
            "outbox",
            "DELETE FROM outbox WHERE org_id = ?1 AND prospect_id = ?2",
        ),
        (
            "jobs",
            "DELETE FROM jobs WHERE org_id = ?1 AND prospect_id = ?2",
        ),
        (
            "messages",
            "DELETE FROM messages WHERE org_id = ?1 AND conversation_id IN \
             (SELECT id FROM conversations WHERE org_id = ?1 AND prospect_id = ?2)",
        ),
        (
            "conversations",
            "DELETE FROM conversations WHERE org_id = ?1 AND prospect_id = ?2",
        ),
        (
            "model_exchanges",
            "DELETE FROM model_exchanges WHERE org_id = ?1 AND prospect_id = ?2",
        ),
        (
            "audit_events",
            "DELETE FROM audit_events WHERE org_id = ?1 AND prospect_id = ?2",
        ),
        (
            "prospects",
            "DELETE FROM prospects WHERE org_id = ?1 AND id = ?2",
        ),
    ];
    for (table, sql) in steps {
        delete_counted(transaction, &mut report, table, sql, org, prospect)?;
    }
    Ok(report)
}

pub(crate) fn erase_prospect(
    connection: &mut Connection,
    org: OrgId,
    prospect: ProspectId,
    suppress: &[Suppression],
) -> Result<ErasureReport, SqliteError> {
    if suppress.iter().any(|entry| entry.org_id != org) {
        return Err(Error::invalid_input(
            "a suppression entry belongs to another org than the erased prospect",
        )
        .into());
    }
    let transaction = immediate(connection)?;
    if prospect_version(&transaction, org, prospect)?.is_none() {
        return Err(Error::not_found("prospect not found").into());
    }
    let report = erase_rows(&transaction, org, prospect)?;
    for entry in suppress {
        rows::insert_suppression(&transaction, org, &entry.contact, &entry.reason, entry.at)?;
    }
    transaction.commit()?;
    Ok(report)
}

pub(crate) fn model_exchanges_of(
    connection: &mut Connection,
    org: OrgId,
    prospect: ProspectId,
) -> Result<Vec<ModelExchange>, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        exchange_columns!(),
        " FROM model_exchanges WHERE org_id = ?1 AND prospect_id = ?2 ORDER BY seq"
    ))?;
    let exchanges = statement
        .query_map(params![org.key(), prospect.key()], rows::exchange_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(exchanges)
}

pub(crate) fn put_subject_request(
    connection: &mut Connection,
    request: &SubjectRequest,
) -> Result<(), SqliteError> {
    rows::upsert_request(connection, request)
}

pub(crate) fn list_subject_requests(
    connection: &mut Connection,
    org: OrgId,
) -> Result<Vec<SubjectRequest>, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        request_columns!(),
        " FROM subject_requests WHERE org_id = ?1 ORDER BY received_at, id"
    ))?;
    let requests = statement
        .query_map(params![org.key()], rows::request_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(requests)
}

pub(crate) fn open_subject_requests(
    connection: &mut Connection,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<SubjectRequest>, SqliteError> {
    let mut statement = connection.prepare_cached(concat!(
        "SELECT ",
        request_columns!(),
        " FROM subject_requests WHERE completed_at IS NULL AND due_at < ?1 ORDER BY due_at, id LIMIT ?2"
    ))?;
    let requests = statement
        .query_map(
            params![rows::nanos(before)?, limit_param(limit)],
            rows::request_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(requests)
}

fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) fn expired_prospects(
    connection: &mut Connection,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<(OrgId, ProspectId)>, SqliteError> {
    let mut statement = connection.prepare_cached(
        "SELECT org_id, id FROM prospects p WHERE created_at < ?1 AND NOT EXISTS \
         (SELECT 1 FROM messages m WHERE m.org_id = p.org_id AND m.prospect_id = p.id \
          AND m.direction = 'inbound' AND m.at >= ?1) \
         ORDER BY created_at LIMIT ?2",
    )?;
    let found = statement
        .query_map(params![rows::nanos(before)?, limit_param(limit)], |row| {
            Ok((
                OrgId::from_key(row.get(0)?),
                ProspectId::from_key(row.get(1)?),
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found)
}

pub(crate) fn purge_messages(
    connection: &mut Connection,
    before: Timestamp,
    limit: usize,
) -> Result<u64, SqliteError> {
    let transaction = immediate(connection)?;
    let at = rows::nanos(before)?;
    // Outbox entries go with their message (the foreign key cascades too).
    transaction
        .prepare_cached(
            "DELETE FROM outbox WHERE (org_id, message_id) IN \
             (SELECT org_id, id FROM messages WHERE at < ?1 ORDER BY at LIMIT ?2)",
        )?
        .execute(params![at, limit_param(limit)])?;
    let deleted = transaction
        .prepare_cached("DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages WHERE at < ?1 ORDER BY at LIMIT ?2)")?
        .execute(params![at, limit_param(limit)])?;
    transaction.commit()?;
    Ok(deleted as u64)
}

pub(crate) fn delete_member(
    connection: &mut Connection,
    org: OrgId,
    id: MemberId,
) -> Result<(), SqliteError> {
    let deleted = connection
        .prepare_cached("DELETE FROM members WHERE org_id = ?1 AND id = ?2")?
        .execute(params![org.key(), id.key()])?;
    if deleted == 0 {
        return Err(Error::not_found("member not found").into());
    }
    Ok(())
}

pub(crate) fn delete_org(
    connection: &mut Connection,
    org: OrgId,
) -> Result<ErasureReport, SqliteError> {
    let transaction = immediate(connection)?;
    let mut report = ErasureReport::default();
    for table in [
        "outbox",
        "jobs",
        "messages",
        "conversations",
        "model_exchanges",
        "audit_events",
        "prospects",
        "campaigns",
        "members",
        "suppressions",
        "suppression_keys",
        "subject_requests",
    ] {
        let rows = transaction.execute(
            &format!("DELETE FROM {table} WHERE org_id = ?1"),
            params![org.key()],
        )?;
        report.add(table, rows as u64);
    }
    transaction.commit()?;
    Ok(report)
}

/// Rebuilds the database file so that deleted rows leave no bytes behind,
/// then truncates the write-ahead log.
pub(crate) fn vacuum(connection: &mut Connection) -> Result<(), SqliteError> {
    connection.execute_batch("VACUUM")?;
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kalify_core::contact::{EmailAddress, MessengerPsid, PhoneNumber};
    use rusqlite::StatementStatus;

    use super::super::schema::{SqliteSynchronous, configure, migrate};
    use super::*;

    fn open() -> Connection {
        let mut connection = Connection::open_in_memory().unwrap();
        configure(&connection, SqliteSynchronous::Full, Duration::from_secs(1)).unwrap();
        migrate(&mut connection).unwrap();
        connection
    }

    fn org_key() -> [u8; 16] {
        OrgId::new().key()
    }

    fn contacts() -> Vec<ContactPoint> {
        vec![
            ContactPoint::Phone(PhoneNumber::from_e164("+33612345678").unwrap()),
            ContactPoint::Email(EmailAddress::parse("jean@example.fr").unwrap()),
            ContactPoint::Messenger(MessengerPsid::parse("1234567890").unwrap()),
        ]
    }

    #[test]
    fn contact_lookups_use_their_index() {
        let connection = open();
        for contact in contacts() {
            let sql = format!("EXPLAIN QUERY PLAN {}", find_prospect_sql(&contact));
            let mut statement = connection.prepare(&sql).unwrap();
            let plan: Vec<String> = statement
                .query_map(params![org_key(), contact.key()], |row| {
                    row.get::<_, String>(3)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let index = format!(
                "USING INDEX prospects_by_{}",
                match contact {
                    ContactPoint::Phone(_) => "phone",
                    ContactPoint::Email(_) => "email",
                    ContactPoint::Messenger(_) => "messenger",
                }
            );
            assert!(
                plan.iter().any(|step| step.contains(&index)),
                "{contact:?}: {plan:?}"
            );
        }
    }

    #[test]
    fn contact_lookup_is_not_prepared_again() {
        let mut connection = open();
        let org = OrgId::new();
        for index in 0..5 {
            let email = EmailAddress::parse(&format!("person{index}@example.fr")).unwrap();
            find_prospect(&mut connection, org, &ContactPoint::Email(email)).unwrap();
        }
        let statement = connection
            .prepare_cached(find_prospect_sql(&contacts()[1]))
            .unwrap();
        assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
    }
}

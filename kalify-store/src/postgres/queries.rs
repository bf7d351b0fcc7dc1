//! The SQL of each store method, run on a connection the caller scoped.
//!
//! Callers pass a plain pooled connection for single statements and a
//! transaction for anything that must be atomic. With row-level security
//! on, every connection passed here is a transaction that has set
//! `kalify.org_id`, except for the claims, which call functions that run as
//! the table owner. Errors built here carry no ids: the store adds them.

use std::collections::{HashMap, HashSet};

use kalify_core::campaign::Campaign;
use kalify_core::contact::ContactPoint;
use kalify_core::conversation::{Conversation, Message};
use kalify_core::gdpr::{DIGEST_PREFIX, ErasureReport, SubjectRequest, SuppressionKey};
use kalify_core::ports::{
    AuditEvent, CancelScope, InsertOutcome, Job, JobOutcome, ListOptions, Member, ModelExchange,
    OutboxEntry, OutboxOutcome, OutboxStatus, Suppression, TurnCommit,
};
use kalify_core::prospect::{Prospect, Version};
use kalify_core::{
    CampaignId, ConversationId, Error, JobId, MemberId, MessageId, OrgId, OutboxId, ProspectId,
    Timestamp,
};
use sqlx::postgres::PgConnection;
use uuid::Uuid;

use super::error::PgError;
use super::rows::{
    self, audit_columns, campaign_columns, conversation_columns, exchange_columns, job_columns,
    member_columns, message_columns, nanos, outbox_columns, prospect_columns, request_columns,
};
use crate::common::DUPLICATE_PROSPECT;

/// Sets `kalify.org_id` to `org` until the end of the current transaction.
pub(crate) async fn set_org(connection: &mut PgConnection, org: OrgId) -> Result<(), PgError> {
    sqlx::query("SELECT set_config('kalify.org_id', $1, true)")
        .bind(org.to_string())
        .execute(connection)
        .await?;
    Ok(())
}

/// Returns the stored version of a prospect, or `None` when it does not exist.
async fn prospect_version(
    connection: &mut PgConnection,
    org: OrgId,
    id: ProspectId,
) -> Result<Option<i64>, PgError> {
    let version = sqlx::query_scalar("SELECT version FROM prospects WHERE org_id = $1 AND id = $2")
        .bind(org.as_uuid())
        .bind(id.as_uuid())
        .fetch_optional(connection)
        .await?;
    Ok(version)
}

/// Returns the stored version of a conversation, or `None` when it does not exist.
async fn conversation_version(
    connection: &mut PgConnection,
    org: OrgId,
    id: ConversationId,
) -> Result<Option<i64>, PgError> {
    let version =
        sqlx::query_scalar("SELECT version FROM conversations WHERE org_id = $1 AND id = $2")
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(connection)
            .await?;
    Ok(version)
}

/// Returns the error for a versioned write that changed no row: `NotFound`
/// when the record is missing, otherwise `Conflict` naming both versions.
fn version_mismatch(record: &str, stored: Option<i64>, read: Version) -> PgError {
    match stored {
        None => Error::not_found(format!("{record} not found")).into(),
        Some(stored) => Error::conflict(format!(
            "the {record} changed since it was read: stored v{stored}, write read {read}"
        ))
        .into(),
    }
}

/// Returns `limit` as a `bigint` parameter, saturating at `i64::MAX`.
fn limit_param(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------- prospects

const INSERT_PROSPECT: &str = concat!(
    "INSERT INTO prospects (",
    prospect_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
);

const UPDATE_PROSPECT_IF_VERSION: &str = "UPDATE prospects SET first_name = $3, last_name = $4, company = $5, \
     job_title = $6, phone = $7, email = $8, messenger = $9, locale = $10, time_zone = $11, source = $12, tags = $13, \
     custom_fields = $14, status = $15, score = $16, owner_id = $17, consents = $18, restricted = $19, \
     objected = $20, created_at = $21, updated_at = $22, version = $23 \
     WHERE org_id = $1 AND id = $2 AND version = $24";

/// Inserts `prospects` in the caller's transaction. With `scoped`, each
/// prospect is written under its own org's `kalify.org_id`.
pub(crate) async fn insert_prospects(
    connection: &mut PgConnection,
    prospects: &[Prospect],
    scoped: bool,
) -> Result<(), PgError> {
    let mut current_org = None;
    for prospect in prospects {
        if scoped && current_org != Some(prospect.org_id) {
            set_org(connection, prospect.org_id).await?;
            current_org = Some(prospect.org_id);
        }
        let query = rows::bind_prospect(sqlx::query(INSERT_PROSPECT), prospect, prospect.version)?;
        query
            .execute(&mut *connection)
            .await
            .map_err(|error| match PgError::from(error) {
                PgError::UniqueViolation(source) => PgError::from(
                    Error::conflict(DUPLICATE_PROSPECT)
                        .with_context("prospect_id", prospect.id)
                        .with_source(PgError::UniqueViolation(source)),
                ),
                other => other,
            })?;
    }
    Ok(())
}

pub(crate) async fn get_prospect(
    connection: &mut PgConnection,
    org: OrgId,
    id: ProspectId,
) -> Result<Prospect, PgError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        prospect_columns!(),
        " FROM prospects WHERE org_id = $1 AND id = $2"
    ))
    .bind(org.as_uuid())
    .bind(id.as_uuid())
    .fetch_optional(connection)
    .await?;
    match row {
        Some(row) => rows::prospect_from_row(&row),
        None => Err(Error::not_found("prospect not found").into()),
    }
}

/// Writes `prospect` with the next version when the stored one is
/// `prospect.version`, and returns whether a row changed.
async fn update_prospect_if_version(
    connection: &mut PgConnection,
    prospect: &Prospect,
) -> Result<bool, PgError> {
    let query = rows::bind_prospect(
        sqlx::query(UPDATE_PROSPECT_IF_VERSION),
        prospect,
        prospect.version.next(),
    )?;
    let result = query
        .bind(rows::version_param(prospect.version)?)
        .execute(connection)
        .await?;
    Ok(result.rows_affected() > 0)
}

pub(crate) async fn update_prospect(
    connection: &mut PgConnection,
    prospect: &Prospect,
) -> Result<Version, PgError> {
    if !update_prospect_if_version(connection, prospect).await? {
        let stored = prospect_version(connection, prospect.org_id, prospect.id).await?;
        return Err(version_mismatch("prospect", stored, prospect.version));
    }
    Ok(prospect.version.next())
}

pub(crate) async fn find_prospect(
    connection: &mut PgConnection,
    org: OrgId,
    contact: &ContactPoint,
) -> Result<Option<Prospect>, PgError> {
    // Contact points are not unique, so two prospects may match. The one
    // with the lowest id, the oldest, is returned, which keeps the result stable.
    let sql = match contact {
        ContactPoint::Phone(_) => {
            concat!(
                "SELECT ",
                prospect_columns!(),
                " FROM prospects WHERE org_id = $1 AND phone = $2 ORDER BY id LIMIT 1"
            )
        }
        ContactPoint::Email(_) => {
            concat!(
                "SELECT ",
                prospect_columns!(),
                " FROM prospects WHERE org_id = $1 AND email = $2 ORDER BY id LIMIT 1"
            )
        }
        ContactPoint::Messenger(_) => concat!(
            "SELECT ",
            prospect_columns!(),
            " FROM prospects WHERE org_id = $1 AND messenger = $2 ORDER BY id LIMIT 1"
        ),
    };
    let row = sqlx::query(sql)
        .bind(org.as_uuid())
        .bind(contact.key())
        .fetch_optional(connection)
        .await?;
    row.as_ref().map(rows::prospect_from_row).transpose()
}

/// Returns the (channel, normalised text) key of each distinct contact point of `contacts`.
fn contact_keys(contacts: &[ContactPoint]) -> HashMap<(&'static str, &str), &ContactPoint> {
    contacts
        .iter()
        .map(|contact| ((contact.channel().as_str(), contact.key()), contact))
        .collect()
}

/// Finds the prospect of each contact point in one query, as
/// [`find_prospect`] does for one: where prospects share a contact point,
/// the one with the lowest id wins.
pub(crate) async fn find_prospects_by_contacts(
    connection: &mut PgConnection,
    org: OrgId,
    contacts: &[ContactPoint],
) -> Result<HashMap<ContactPoint, Prospect>, PgError> {
    let wanted = contact_keys(contacts);
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let (mut phones, mut emails, mut messengers) = (Vec::new(), Vec::new(), Vec::new());
    for contact in wanted.values() {
        match contact {
            ContactPoint::Phone(_) => phones.push(contact.key()),
            ContactPoint::Email(_) => emails.push(contact.key()),
            ContactPoint::Messenger(_) => messengers.push(contact.key()),
        }
    }

    let rows = sqlx::query(concat!(
        "SELECT ",
        prospect_columns!(),
        " FROM prospects WHERE org_id = $1 AND (phone = ANY($2) OR email = ANY($3) OR messenger = ANY($4)) ORDER BY id"
    ))
    .bind(org.as_uuid())
    .bind(phones)
    .bind(emails)
    .bind(messengers)
    .fetch_all(connection)
    .await?;

    // Rows come in id order, so the first prospect to claim a contact point keeps it.
    let mut found = HashMap::new();
    for row in &rows {
        let prospect = rows::prospect_from_row(row)?;
        for contact in prospect.contact_points() {
            if let Some(requested) = wanted.get(&(contact.channel().as_str(), contact.key()))
                && !found.contains_key(*requested)
            {
                found.insert((*requested).clone(), prospect.clone());
            }
        }
    }
    Ok(found)
}

pub(crate) async fn list_prospects(
    connection: &mut PgConnection,
    org: OrgId,
    options: ListOptions,
) -> Result<Vec<Prospect>, PgError> {
    // A NULL limit is no limit, and a NULL `after` starts at the first id.
    let limit = if options.limit == 0 {
        None
    } else {
        Some(limit_param(options.limit))
    };
    let rows = sqlx::query(concat!(
        "SELECT ",
        prospect_columns!(),
        " FROM prospects WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
    ))
    .bind(org.as_uuid())
    .bind(options.after.map(|id| id.as_uuid()))
    .bind(limit)
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::prospect_from_row).collect()
}

// ---------------------------------------------------------------- campaigns

pub(crate) async fn put_campaign(
    connection: &mut PgConnection,
    campaign: &Campaign,
) -> Result<(), PgError> {
    let query = rows::bind_campaign(
        sqlx::query(concat!(
            "INSERT INTO campaigns (",
            campaign_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (org_id, id) DO UPDATE SET name = excluded.name, persona = excluded.persona, \
             goal = excluded.goal, channels = excluded.channels, steps = excluded.steps, \
             allow_links = excluded.allow_links, status = excluded.status, created_at = excluded.created_at, \
             settings = excluded.settings"
        )),
        campaign,
    )?;
    query.execute(connection).await?;
    Ok(())
}

pub(crate) async fn get_campaign(
    connection: &mut PgConnection,
    org: OrgId,
    id: CampaignId,
) -> Result<Campaign, PgError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM campaigns WHERE org_id = $1 AND id = $2"
    ))
    .bind(org.as_uuid())
    .bind(id.as_uuid())
    .fetch_optional(connection)
    .await?;
    match row {
        Some(row) => rows::campaign_from_row(&row),
        None => Err(Error::not_found("campaign not found").into()),
    }
}

// ------------------------------------------------------------ conversations

/// Inserts a conversation and its jobs in the caller's transaction, unless
/// its id or its (org, prospect, campaign) exists, and returns whether it
/// inserted them.
///
/// Concurrent inserts of the same (org, prospect, campaign) wait on the
/// unique index for the first one's transaction, then skip: exactly one
/// creates the conversation and its jobs.
pub(crate) async fn insert_conversation(
    connection: &mut PgConnection,
    conversation: &Conversation,
    jobs: &[Job],
) -> Result<bool, PgError> {
    let query = rows::bind_conversation(
        sqlx::query(concat!(
            "INSERT INTO conversations (",
            conversation_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING"
        )),
        conversation,
        conversation.version,
    )?;
    let result =
        query
            .execute(&mut *connection)
            .await
            .map_err(|error| match PgError::from(error) {
                // The only foreign key of a conversation is its prospect.
                PgError::MissingReference(source) => PgError::from(
                    Error::not_found("prospect not found")
                        .with_context("prospect_id", conversation.prospect_id)
                        .with_source(PgError::MissingReference(source)),
                ),
                other => other,
            })?;
    if result.rows_affected() == 0 {
        return Ok(false);
    }
    for job in jobs {
        insert_job(connection, job).await?;
    }
    Ok(true)
}

pub(crate) async fn get_conversation(
    connection: &mut PgConnection,
    org: OrgId,
    id: ConversationId,
) -> Result<Conversation, PgError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        conversation_columns!(),
        " FROM conversations WHERE org_id = $1 AND id = $2"
    ))
    .bind(org.as_uuid())
    .bind(id.as_uuid())
    .fetch_optional(connection)
    .await?;
    match row {
        Some(row) => rows::conversation_from_row(&row),
        None => Err(Error::not_found("conversation not found").into()),
    }
}

pub(crate) async fn conversations_of(
    connection: &mut PgConnection,
    org: OrgId,
    prospect: ProspectId,
) -> Result<Vec<Conversation>, PgError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        conversation_columns!(),
        " FROM conversations WHERE org_id = $1 AND prospect_id = $2 ORDER BY updated_at DESC, id DESC"
    ))
    .bind(org.as_uuid())
    .bind(prospect.as_uuid())
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::conversation_from_row).collect()
}

// ----------------------------------------------------------------- messages

const INSERT_MESSAGE: &str = concat!(
    "INSERT INTO messages (",
    message_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
);

pub(crate) async fn list_messages(
    connection: &mut PgConnection,
    org: OrgId,
    conversation: ConversationId,
) -> Result<Vec<Message>, PgError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE org_id = $1 AND conversation_id = $2 ORDER BY at, id"
    ))
    .bind(org.as_uuid())
    .bind(conversation.as_uuid())
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::message_from_row).collect()
}

/// Inserts an inbound message unless its id, or its provider and provider
/// message id, exists in its org.
///
/// Concurrent inserts of one provider message wait on the unique index for
/// the first one's transaction, then skip, so exactly one is `Inserted`.
pub(crate) async fn insert_inbound(
    connection: &mut PgConnection,
    message: &Message,
) -> Result<InsertOutcome, PgError> {
    let query = rows::bind_message(
        sqlx::query(concat!(
            "INSERT INTO messages (",
            message_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING"
        )),
        message,
    )?;
    let result = query
        .execute(connection)
        .await
        .map_err(|error| match PgError::from(error) {
            PgError::MissingReference(source) => PgError::from(
                Error::not_found("conversation not found")
                    .with_context("conversation_id", message.conversation_id)
                    .with_source(PgError::MissingReference(source)),
            ),
            other => other,
        })?;
    Ok(if result.rows_affected() == 0 {
        InsertOutcome::Duplicate
    } else {
        InsertOutcome::Inserted
    })
}

pub(crate) async fn pending_inbound(
    connection: &mut PgConnection,
    org: OrgId,
    conversation: ConversationId,
) -> Result<Vec<Message>, PgError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        message_columns!(),
        " FROM messages WHERE org_id = $1 AND conversation_id = $2 AND direction = 'inbound' AND NOT processed \
         ORDER BY at, id"
    ))
    .bind(org.as_uuid())
    .bind(conversation.as_uuid())
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::message_from_row).collect()
}

// --------------------------------------------------------------------- turns

/// Cancels the pending jobs and outbox entries of one conversation, and
/// sets the messages of the cancelled entries to `cancelled`, in one statement.
const CANCEL_CONVERSATION: &str = "WITH cancelled_jobs AS ( \
         UPDATE jobs SET status = 'cancelled', lease_until = NULL, lease_owner = NULL \
         WHERE org_id = $1 AND conversation_id = $2 AND status = 'pending'), \
     cancelled_entries AS ( \
         UPDATE outbox SET status = 'cancelled', lease_until = NULL, lease_owner = NULL \
         WHERE org_id = $1 AND conversation_id = $2 AND status = 'pending' RETURNING message_id) \
     UPDATE messages SET status = 'cancelled' FROM cancelled_entries \
     WHERE messages.org_id = $1 AND messages.id = cancelled_entries.message_id";

/// As [`CANCEL_CONVERSATION`], for every conversation of a prospect.
const CANCEL_PROSPECT: &str = "WITH cancelled_jobs AS ( \
         UPDATE jobs SET status = 'cancelled', lease_until = NULL, lease_owner = NULL \
         WHERE org_id = $1 AND prospect_id = $2 AND status = 'pending'), \
     cancelled_entries AS ( \
         UPDATE outbox SET status = 'cancelled', lease_until = NULL, lease_owner = NULL \
         WHERE org_id = $1 AND prospect_id = $2 AND status = 'pending' RETURNING message_id) \
     UPDATE messages SET status = 'cancelled' FROM cancelled_entries \
     WHERE messages.org_id = $1 AND messages.id = cancelled_entries.message_id";

async fn cancel(connection: &mut PgConnection, turn: &TurnCommit) -> Result<(), PgError> {
    let (sql, target) = match turn.cancel {
        CancelScope::Nothing => return Ok(()),
        CancelScope::Conversation => (CANCEL_CONVERSATION, turn.conversation.id.as_uuid()),
        CancelScope::Prospect => (CANCEL_PROSPECT, turn.conversation.prospect_id.as_uuid()),
    };
    sqlx::query(sql)
        .bind(turn.conversation.org_id.as_uuid())
        .bind(target)
        .execute(connection)
        .await?;
    Ok(())
}

/// Writes a turn in the caller's transaction and returns the conversation's new version.
///
/// The order matters:
/// - versions are checked first, so a conflict writes nothing once the
///   caller drops the transaction;
/// - the completed job is finished before the cancellation, so it ends as
///   done. A completed job that is no longer pending fails the turn with `Conflict`;
/// - the cancellation runs before the turn's own jobs and entries are
///   written, so it never touches them;
/// - lifts run before additions, so a contact point named in both stays suppressed.
///
/// The conversation's `UPDATE ... WHERE version = $n` locks its row, so a
/// concurrent turn on the same conversation waits, then finds the new
/// version and fails with `Conflict`.
pub(crate) async fn commit_turn(
    connection: &mut PgConnection,
    turn: &TurnCommit,
) -> Result<Version, PgError> {
    let conversation = &turn.conversation;
    let org = conversation.org_id;

    if turn.create_conversation {
        let created = Conversation {
            version: conversation.version.next(),
            ..conversation.clone()
        };
        if !insert_conversation(connection, &created, &[]).await? {
            return Err(Error::conflict(
                "the conversation the turn creates exists already, or its prospect has one for the same campaign",
            )
            .with_context("conversation_id", conversation.id)
            .into());
        }
        return commit_turn_rest(connection, turn).await;
    }

    let query = rows::bind_conversation(
        sqlx::query(
            "UPDATE conversations SET prospect_id = $3, campaign_id = $4, channel = $5, state = $6, facts = $7, \
             score = $8, attempts_sent = $9, automation_disclosed = $10, assigned_to = $11, created_at = $12, \
             updated_at = $13, last_inbound_at = $14, version = $15 \
             WHERE org_id = $1 AND id = $2 AND version = $16",
        ),
        conversation,
        conversation.version.next(),
    )?;
    let result = query
        .bind(rows::version_param(conversation.version)?)
        .execute(&mut *connection)
        .await?;
    if result.rows_affected() == 0 {
        let stored = conversation_version(connection, org, conversation.id).await?;
        return Err(version_mismatch(
            "conversation",
            stored,
            conversation.version,
        ));
    }
    commit_turn_rest(connection, turn).await
}

/// Writes what a turn adds after its conversation row, in the caller's transaction.
async fn commit_turn_rest(
    connection: &mut PgConnection,
    turn: &TurnCommit,
) -> Result<Version, PgError> {
    let conversation = &turn.conversation;
    let org = conversation.org_id;
    if let Some(prospect) = &turn.prospect
        && !update_prospect_if_version(connection, prospect).await?
    {
        let stored = prospect_version(connection, org, prospect.id).await?;
        return Err(
            match version_mismatch("prospect", stored, prospect.version) {
                PgError::Classified(error) => error.with_context("prospect_id", prospect.id).into(),
                other => other,
            },
        );
    }

    if let Some(job) = turn.completed_job {
        let result = sqlx::query(
            "UPDATE jobs SET status = 'done', lease_until = NULL, lease_owner = NULL \
             WHERE org_id = $1 AND id = $2 AND status = 'pending'",
        )
        .bind(org.as_uuid())
        .bind(job.as_uuid())
        .execute(&mut *connection)
        .await?;
        if result.rows_affected() == 0 {
            return Err(Error::conflict(
                "the job the turn completes is no longer pending: another worker finished it",
            )
            .with_context("job_id", job)
            .into());
        }
    }
    cancel(connection, turn).await?;

    for message in &turn.messages {
        rows::bind_message(sqlx::query(INSERT_MESSAGE), message)?
            .execute(&mut *connection)
            .await?;
    }
    if !turn.processed_inbound.is_empty() {
        let ids: Vec<Uuid> = turn
            .processed_inbound
            .iter()
            .map(MessageId::as_uuid)
            .collect();
        sqlx::query("UPDATE messages SET processed = true WHERE org_id = $1 AND id = ANY($2)")
            .bind(org.as_uuid())
            .bind(ids)
            .execute(&mut *connection)
            .await?;
    }
    for entry in &turn.outbox {
        insert_outbox(connection, entry).await?;
    }
    for job in &turn.jobs {
        insert_job(connection, job).await?;
    }
    delete_suppressions(connection, org, &turn.unsuppress).await?;
    suppress(connection, &turn.suppress, false).await?;
    for event in &turn.audit {
        insert_audit(connection, event).await?;
    }
    for exchange in &turn.model_exchanges {
        insert_exchange(connection, exchange).await?;
    }
    Ok(conversation.version.next())
}

// --------------------------------------------------------------------- jobs

/// Inserts `job` as pending unless its id or its dedupe key exists in its org.
async fn insert_job(connection: &mut PgConnection, job: &Job) -> Result<(), PgError> {
    rows::bind_job(
        sqlx::query(concat!(
            "INSERT INTO jobs (",
            job_columns!(),
            ", status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending') ON CONFLICT DO NOTHING"
        )),
        job,
    )?
    .execute(connection)
    .await?;
    Ok(())
}

/// Leases up to `limit` due jobs of every org to `worker` until
/// `lease_until`, and returns them oldest due first with their new attempt count.
pub(crate) async fn claim_jobs(
    connection: &mut PgConnection,
    now: Timestamp,
    limit: usize,
    lease_until: Timestamp,
    worker: &str,
) -> Result<Vec<Job>, PgError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM claim_jobs($1, $2, $3, $4)"
    ))
    .bind(nanos(now)?)
    .bind(limit_param(limit))
    .bind(nanos(lease_until)?)
    .bind(worker)
    .fetch_all(connection)
    .await?;
    let mut jobs = rows
        .iter()
        .map(rows::job_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    // The claim function returns rows in no defined order.
    jobs.sort_by(|a, b| a.due_at.cmp(&b.due_at).then(a.id.cmp(&b.id)));
    Ok(jobs)
}

/// Returns whether the org has a job with this id.
async fn job_exists(connection: &mut PgConnection, org: OrgId, id: JobId) -> Result<bool, PgError> {
    let exists =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE org_id = $1 AND id = $2)")
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .fetch_one(connection)
            .await?;
    Ok(exists)
}

pub(crate) async fn finish_job(
    connection: &mut PgConnection,
    org: OrgId,
    id: JobId,
    outcome: &JobOutcome,
) -> Result<(), PgError> {
    let result = match outcome {
        JobOutcome::Done | JobOutcome::Cancelled => {
            let status = if matches!(outcome, JobOutcome::Done) {
                "done"
            } else {
                "cancelled"
            };
            sqlx::query(
                "UPDATE jobs SET status = $3, lease_until = NULL, lease_owner = NULL \
                 WHERE org_id = $1 AND id = $2 AND status = 'pending'",
            )
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .bind(status)
            .execute(&mut *connection)
            .await?
        }
        JobOutcome::RetryAt(at) => {
            sqlx::query(
                "UPDATE jobs SET due_at = $3, lease_until = NULL, lease_owner = NULL \
                 WHERE org_id = $1 AND id = $2 AND status = 'pending'",
            )
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .bind(nanos(*at)?)
            .execute(&mut *connection)
            .await?
        }
    };
    // A job already done or cancelled stays as it is.
    if result.rows_affected() == 0 && !job_exists(connection, org, id).await? {
        return Err(Error::not_found("job not found").into());
    }
    Ok(())
}

pub(crate) async fn pending_jobs(
    connection: &mut PgConnection,
    org: OrgId,
    conversation: ConversationId,
) -> Result<Vec<Job>, PgError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE org_id = $1 AND conversation_id = $2 AND status = 'pending' ORDER BY due_at, id"
    ))
    .bind(org.as_uuid())
    .bind(conversation.as_uuid())
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::job_from_row).collect()
}

// ------------------------------------------------------------------- outbox

async fn insert_outbox(connection: &mut PgConnection, entry: &OutboxEntry) -> Result<(), PgError> {
    rows::bind_outbox(
        sqlx::query(concat!(
            "INSERT INTO outbox (",
            outbox_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
        )),
        entry,
    )?
    .execute(connection)
    .await?;
    Ok(())
}

/// Leases up to `limit` due outbox entries of every org to `worker` until
/// `lease_until`, and returns them oldest due first with their new attempt count.
pub(crate) async fn claim_outbox(
    connection: &mut PgConnection,
    now: Timestamp,
    limit: usize,
    lease_until: Timestamp,
    worker: &str,
) -> Result<Vec<OutboxEntry>, PgError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        outbox_columns!(),
        " FROM claim_outbox($1, $2, $3, $4)"
    ))
    .bind(nanos(now)?)
    .bind(limit_param(limit))
    .bind(nanos(lease_until)?)
    .bind(worker)
    .fetch_all(connection)
    .await?;
    let mut entries = rows
        .iter()
        .map(rows::outbox_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort_by(|a, b| {
        a.next_attempt_at
            .cmp(&b.next_attempt_at)
            .then(a.id.cmp(&b.id))
    });
    Ok(entries)
}

/// Returns whether the org has an outbox entry with this id.
async fn outbox_exists(
    connection: &mut PgConnection,
    org: OrgId,
    id: OutboxId,
) -> Result<bool, PgError> {
    let exists =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox WHERE org_id = $1 AND id = $2)")
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .fetch_one(connection)
            .await?;
    Ok(exists)
}

/// Marks an entry sent and records the provider's ids on its message, in one
/// statement that selects the number of entries changed.
const FINISH_OUTBOX_SENT: &str = "WITH entry AS ( \
         UPDATE outbox SET status = 'sent', unconfirmed = false, lease_until = NULL, lease_owner = NULL \
         WHERE org_id = $1 AND id = $2 RETURNING org_id, message_id), \
     message AS ( \
         UPDATE messages SET status = 'sent', provider = $3, provider_message_id = $4 FROM entry \
         WHERE messages.org_id = entry.org_id AND messages.id = entry.message_id) \
     SELECT count(*) FROM entry";

/// As [`FINISH_OUTBOX_SENT`] for `Failed` and `Cancelled`, which change only a pending entry.
const FINISH_OUTBOX_GAVE_UP: &str = "WITH entry AS ( \
         UPDATE outbox SET status = $3, last_error = $4, lease_until = NULL, lease_owner = NULL \
         WHERE org_id = $1 AND id = $2 AND status = 'pending' RETURNING org_id, message_id), \
     message AS ( \
         UPDATE messages SET status = $5 FROM entry \
         WHERE messages.org_id = entry.org_id AND messages.id = entry.message_id) \
     SELECT count(*) FROM entry";

/// Finishes an outbox entry and updates its message atomically.
///
/// `Sent` applies whatever the entry's status, because the provider did
/// accept the message. The other outcomes change only a pending entry.
pub(crate) async fn finish_outbox(
    connection: &mut PgConnection,
    org: OrgId,
    id: OutboxId,
    outcome: &OutboxOutcome,
) -> Result<(), PgError> {
    let changed: i64 = match outcome {
        OutboxOutcome::Sent {
            provider,
            provider_message_id,
        } => {
            sqlx::query_scalar(FINISH_OUTBOX_SENT)
                .bind(org.as_uuid())
                .bind(id.as_uuid())
                .bind(provider.as_str())
                .bind(provider_message_id.as_str())
                .fetch_one(&mut *connection)
                .await?
        }
        OutboxOutcome::RetryAt(at) | OutboxOutcome::Unconfirmed(at) => {
            let unconfirmed = matches!(outcome, OutboxOutcome::Unconfirmed(_));
            let result = sqlx::query(
                "UPDATE outbox SET next_attempt_at = $3, unconfirmed = (unconfirmed OR $4), \
                 lease_until = NULL, lease_owner = NULL \
                 WHERE org_id = $1 AND id = $2 AND status = 'pending'",
            )
            .bind(org.as_uuid())
            .bind(id.as_uuid())
            .bind(nanos(*at)?)
            .bind(unconfirmed)
            .execute(&mut *connection)
            .await?;
            i64::try_from(result.rows_affected()).unwrap_or(i64::MAX)
        }
        OutboxOutcome::Failed(reason) | OutboxOutcome::Cancelled(reason) => {
            let (entry_status, message_status) = match outcome {
                OutboxOutcome::Failed(_) => (OutboxStatus::Failed, "failed"),
                _ => (OutboxStatus::Cancelled, "cancelled"),
            };
            sqlx::query_scalar(FINISH_OUTBOX_GAVE_UP)
                .bind(org.as_uuid())
                .bind(id.as_uuid())
                .bind(rows::outbox_status_text(entry_status))
                .bind(reason.as_str())
                .bind(message_status)
                .fetch_one(&mut *connection)
                .await?
        }
    };
    // An entry no longer pending stays as it is, except for `Sent`.
    if changed == 0 && !outbox_exists(connection, org, id).await? {
        return Err(Error::not_found("outbox entry not found").into());
    }
    Ok(())
}

// ------------------------------------------------- suppressions and audit

/// Returns `org`'s suppression key, or `None` when the org has none yet
/// and so has suppressed nothing.
async fn suppression_key(
    connection: &mut PgConnection,
    org: OrgId,
) -> Result<Option<SuppressionKey>, PgError> {
    let bytes: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT key FROM suppression_keys WHERE org_id = $1")
            .bind(org.as_uuid())
            .fetch_optional(connection)
            .await?;
    Ok(bytes
        .map(|bytes| SuppressionKey::from_slice(&bytes))
        .transpose()?)
}

/// Returns `org`'s suppression key, creating it first when missing.
///
/// When a concurrent transaction creates the org's key first, the insert
/// waits for it and then does nothing. Under READ COMMITTED the next read
/// takes a new snapshot and returns that key. Under REPEATABLE READ or
/// SERIALIZABLE the insert fails with a serialization failure instead,
/// which is a retryable `Conflict`.
async fn ensure_suppression_key(
    connection: &mut PgConnection,
    org: OrgId,
) -> Result<SuppressionKey, PgError> {
    if let Some(key) = suppression_key(connection, org).await? {
        return Ok(key);
    }
    let generated = SuppressionKey::generate()?;
    sqlx::query(
        "INSERT INTO suppression_keys (org_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(org.as_uuid())
    .bind(generated.as_bytes().as_slice())
    .execute(&mut *connection)
    .await?;
    suppression_key(connection, org).await?.ok_or_else(|| {
        Error::unexpected("the suppression key just created for the org cannot be read back").into()
    })
}

/// Adds the digest of a contact point to the org's list unless it is listed.
async fn insert_digest(
    connection: &mut PgConnection,
    org: OrgId,
    channel: &str,
    digest: &str,
    reason: &str,
    at: i64,
) -> Result<(), PgError> {
    sqlx::query(
        "INSERT INTO suppressions (org_id, channel, contact, reason, at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(org.as_uuid())
    .bind(channel)
    .bind(digest)
    .bind(reason)
    .bind(at)
    .execute(connection)
    .await?;
    Ok(())
}

/// Removes contact points from the org's suppression list. An org without
/// a key has an empty list, so there is nothing to remove then.
async fn delete_suppressions(
    connection: &mut PgConnection,
    org: OrgId,
    contacts: &[ContactPoint],
) -> Result<(), PgError> {
    if contacts.is_empty() {
        return Ok(());
    }
    let Some(key) = suppression_key(connection, org).await? else {
        return Ok(());
    };
    let channels: Vec<&str> = contacts
        .iter()
        .map(|contact| contact.channel().as_str())
        .collect();
    let digests: Vec<String> = contacts.iter().map(|contact| key.digest(contact)).collect();
    sqlx::query(
        "DELETE FROM suppressions \
         WHERE org_id = $1 AND (channel, contact) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
    )
    .bind(org.as_uuid())
    .bind(channels)
    .bind(digests)
    .execute(connection)
    .await?;
    Ok(())
}

pub(crate) async fn is_suppressed(
    connection: &mut PgConnection,
    org: OrgId,
    contact: &ContactPoint,
) -> Result<bool, PgError> {
    let Some(key) = suppression_key(connection, org).await? else {
        return Ok(false);
    };
    let suppressed = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM suppressions WHERE org_id = $1 AND channel = $2 AND contact = $3)",
    )
    .bind(org.as_uuid())
    .bind(contact.channel().as_str())
    .bind(key.digest(contact))
    .fetch_one(connection)
    .await?;
    Ok(suppressed)
}

/// Returns the distinct contact points of `contacts` on the org's
/// suppression list: one query for the key and one for the digests.
pub(crate) async fn suppressed_among(
    connection: &mut PgConnection,
    org: OrgId,
    contacts: &[ContactPoint],
) -> Result<HashSet<ContactPoint>, PgError> {
    if contacts.is_empty() {
        return Ok(HashSet::new());
    }
    let Some(key) = suppression_key(connection, org).await? else {
        return Ok(HashSet::new());
    };
    // The digest covers the channel, so it identifies the contact point alone.
    let by_digest: HashMap<String, &ContactPoint> = contacts
        .iter()
        .map(|contact| (key.digest(contact), contact))
        .collect();
    let (channels, digests): (Vec<&str>, Vec<&str>) = by_digest
        .iter()
        .map(|(digest, contact)| (contact.channel().as_str(), digest.as_str()))
        .unzip();
    let listed: Vec<String> = sqlx::query_scalar(
        "SELECT contact FROM suppressions \
         WHERE org_id = $1 AND (channel, contact) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
    )
    .bind(org.as_uuid())
    .bind(channels)
    .bind(digests)
    .fetch_all(connection)
    .await?;

    let suppressed = listed
        .iter()
        .filter_map(|digest| by_digest.get(digest))
        .map(|contact| (*contact).clone())
        .collect();
    Ok(suppressed)
}

/// Adds suppressions in the caller's transaction, creating each org's key
/// on its first suppression. With `scoped`, each entry is written under its
/// own org's `kalify.org_id`.
pub(crate) async fn suppress(
    connection: &mut PgConnection,
    entries: &[Suppression],
    scoped: bool,
) -> Result<(), PgError> {
    let mut current: Option<(OrgId, SuppressionKey)> = None;
    for entry in entries {
        let key = match &current {
            Some((org, key)) if *org == entry.org_id => key.clone(),
            _ => {
                if scoped {
                    set_org(connection, entry.org_id).await?;
                }
                let key = ensure_suppression_key(connection, entry.org_id).await?;
                current = Some((entry.org_id, key.clone()));
                key
            }
        };
        let digest = key.digest(&entry.contact);
        insert_digest(
            connection,
            entry.org_id,
            entry.contact.channel().as_str(),
            &digest,
            &entry.reason,
            nanos(entry.at)?,
        )
        .await?;
    }
    Ok(())
}

/// Counts of [`hash_clear_suppressions`].
#[derive(Debug, Default)]
pub(crate) struct ClearSuppressions {
    /// Rows replaced by their digest.
    pub(crate) rewritten: u64,
    /// Rows deleted because their contact point no longer parses.
    pub(crate) dropped: u64,
}

/// Replaces the suppression rows that hold a contact point in clear,
/// written before base version 2, with keyed digests, creating the orgs'
/// keys as needed. The rows are deleted and read back in one statement, so
/// a clear row inserted meanwhile by an older kalify is either rewritten
/// here or left for a later run.
///
/// Runs as part of the migration, as the table owner.
pub(crate) async fn hash_clear_suppressions(
    connection: &mut PgConnection,
) -> Result<ClearSuppressions, PgError> {
    let clear: Vec<(Uuid, String, String, String, i64)> = sqlx::query_as(
        "DELETE FROM suppressions WHERE contact NOT LIKE $1 RETURNING org_id, channel, contact, reason, at",
    )
    .bind(format!("{DIGEST_PREFIX}%"))
    .fetch_all(&mut *connection)
    .await?;

    let mut counts = ClearSuppressions::default();
    let mut keys: HashMap<Uuid, SuppressionKey> = HashMap::new();
    for (org, channel, contact, reason, at) in clear {
        // A row that no longer parses could not match a normalised contact
        // point, so it is dropped rather than kept in clear.
        let Ok(point) = rows::contact_from(&channel, &contact) else {
            counts.dropped += 1;
            continue;
        };
        let org_id = OrgId::from_uuid(org);
        let key = match keys.get(&org) {
            Some(key) => key.clone(),
            None => {
                let key = ensure_suppression_key(connection, org_id).await?;
                keys.insert(org, key.clone());
                key
            }
        };
        insert_digest(
            connection,
            org_id,
            &channel,
            &key.digest(&point),
            &reason,
            at,
        )
        .await?;
        counts.rewritten += 1;
    }
    Ok(counts)
}

async fn insert_audit(connection: &mut PgConnection, event: &AuditEvent) -> Result<(), PgError> {
    rows::bind_audit(
        sqlx::query(concat!(
            "INSERT INTO audit_events (",
            audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )),
        event,
    )?
    .execute(connection)
    .await?;
    Ok(())
}

/// Appends audit events in the caller's transaction. With `scoped`, each
/// event is written under its own org's `kalify.org_id`.
pub(crate) async fn append_audit(
    connection: &mut PgConnection,
    events: &[AuditEvent],
    scoped: bool,
) -> Result<(), PgError> {
    let mut current_org = None;
    for event in events {
        if scoped && current_org != Some(event.org_id) {
            set_org(connection, event.org_id).await?;
            current_org = Some(event.org_id);
        }
        insert_audit(connection, event).await?;
    }
    Ok(())
}

pub(crate) async fn audit_of(
    connection: &mut PgConnection,
    org: OrgId,
    prospect: ProspectId,
) -> Result<Vec<AuditEvent>, PgError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        audit_columns!(),
        " FROM audit_events WHERE org_id = $1 AND prospect_id = $2 ORDER BY at, seq"
    ))
    .bind(org.as_uuid())
    .bind(prospect.as_uuid())
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::audit_from_row).collect()
}

// ------------------------------------------------------------------ members

pub(crate) async fn put_member(
    connection: &mut PgConnection,
    member: &Member,
) -> Result<(), PgError> {
    rows::bind_member(
        sqlx::query(concat!(
            "INSERT INTO members (",
            member_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id, id) DO UPDATE SET name = excluded.name, email = excluded.email, \
             role = excluded.role, available = excluded.available"
        )),
        member,
    )
    .execute(connection)
    .await?;
    Ok(())
}

pub(crate) async fn get_member(
    connection: &mut PgConnection,
    org: OrgId,
    id: MemberId,
) -> Result<Member, PgError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        member_columns!(),
        " FROM members WHERE org_id = $1 AND id = $2"
    ))
    .bind(org.as_uuid())
    .bind(id.as_uuid())
    .fetch_optional(connection)
    .await?;
    match row {
        Some(row) => rows::member_from_row(&row),
        None => Err(Error::not_found("member not found").into()),
    }
}

pub(crate) async fn list_members(
    connection: &mut PgConnection,
    org: OrgId,
) -> Result<Vec<Member>, PgError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        member_columns!(),
        " FROM members WHERE org_id = $1 ORDER BY id"
    ))
    .bind(org.as_uuid())
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::member_from_row).collect()
}

pub(crate) async fn delete_member(
    connection: &mut PgConnection,
    org: OrgId,
    id: MemberId,
) -> Result<(), PgError> {
    let result = sqlx::query("DELETE FROM members WHERE org_id = $1 AND id = $2")
        .bind(org.as_uuid())
        .bind(id.as_uuid())
        .execute(connection)
        .await?;
    if result.rows_affected() == 0 {
        return Err(Error::not_found("member not found").into());
    }
    Ok(())
}

// ------------------------------------------------------------ data subjects

async fn insert_exchange(
    connection: &mut PgConnection,
    exchange: &ModelExchange,
) -> Result<(), PgError> {
    rows::bind_exchange(
        sqlx::query(concat!(
            "INSERT INTO model_exchanges (",
            exchange_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )),
        exchange,
    )?
    .execute(connection)
    .await?;
    Ok(())
}

pub(crate) async fn model_exchanges_of(
    connection: &mut PgConnection,
    org: OrgId,
    prospect: ProspectId,
) -> Result<Vec<ModelExchange>, PgError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        exchange_columns!(),
        " FROM model_exchanges WHERE org_id = $1 AND prospect_id = $2 ORDER BY seq"
    ))
    .bind(org.as_uuid())
    .bind(prospect.as_uuid())
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::exchange_from_row).collect()
}

/// The deletions of an erasure, children first, so that each table's count
/// is its own rather than hidden in a cascade. `$1` is the org, `$2` the
/// prospect and `$3` the ids of its conversations.
const ERASE_STEPS: [(&str, &str); 6] = [
    (
        "outbox",
        "DELETE FROM outbox WHERE org_id = $1 AND (prospect_id = $2 OR conversation_id = ANY($3))",
    ),
    (
        "jobs",
        "DELETE FROM jobs WHERE org_id = $1 AND (prospect_id = $2 OR conversation_id = ANY($3))",
    ),
    (
        "messages",
        "DELETE FROM messages WHERE org_id = $1 AND (prospect_id = $2 OR conversation_id = ANY($3))",
    ),
    (
        "conversations",
        "DELETE FROM conversations WHERE org_id = $1 AND (prospect_id = $2 OR id = ANY($3))",
    ),
    (
        "model_exchanges",
        "DELETE FROM model_exchanges WHERE org_id = $1 AND (prospect_id = $2 OR conversation_id = ANY($3))",
    ),
    (
        "audit_events",
        "DELETE FROM audit_events WHERE org_id = $1 AND (prospect_id = $2 OR conversation_id = ANY($3))",
    ),
];

/// Deletes a prospect and every row about it in the caller's transaction,
/// then adds `suppress_entries` to the org's suppression list.
///
/// The prospect's conversations and row are locked first, so a concurrent
/// turn, inbound message or enrollment waits for the erasure and then
/// fails with `NotFound`. Rows written by a transaction that committed
/// between the two locks are still deleted, because every deletion also
/// matches on the prospect id.
pub(crate) async fn erase_prospect(
    connection: &mut PgConnection,
    org: OrgId,
    prospect: ProspectId,
    suppress_entries: &[Suppression],
) -> Result<ErasureReport, PgError> {
    if suppress_entries.iter().any(|entry| entry.org_id != org) {
        return Err(Error::invalid_input(
            "a suppression entry belongs to another org than the erased prospect",
        )
        .into());
    }
    // Conversations are locked before the prospect, in the order
    // `commit_turn` updates them, so a concurrent turn waits instead of
    // deadlocking.
    let conversations: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM conversations WHERE org_id = $1 AND prospect_id = $2 FOR UPDATE",
    )
    .bind(org.as_uuid())
    .bind(prospect.as_uuid())
    .fetch_all(&mut *connection)
    .await?;
    let locked: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM prospects WHERE org_id = $1 AND id = $2 FOR UPDATE")
            .bind(org.as_uuid())
            .bind(prospect.as_uuid())
            .fetch_optional(&mut *connection)
            .await?;
    if locked.is_none() {
        return Err(Error::not_found("prospect not found").into());
    }

    let mut report = ErasureReport::default();
    for (table, sql) in ERASE_STEPS {
        let result = sqlx::query(sql)
            .bind(org.as_uuid())
            .bind(prospect.as_uuid())
            .bind(&conversations)
            .execute(&mut *connection)
            .await?;
        report.add(table, result.rows_affected());
    }
    let result = sqlx::query("DELETE FROM prospects WHERE org_id = $1 AND id = $2")
        .bind(org.as_uuid())
        .bind(prospect.as_uuid())
        .execute(&mut *connection)
        .await?;
    report.add("prospects", result.rows_affected());

    suppress(connection, suppress_entries, false).await?;
    Ok(report)
}

/// The deletions of [`delete_org`], children first. `$1` is the org.
const DELETE_ORG_STEPS: [(&str, &str); 12] = [
    ("outbox", "DELETE FROM outbox WHERE org_id = $1"),
    ("jobs", "DELETE FROM jobs WHERE org_id = $1"),
    ("messages", "DELETE FROM messages WHERE org_id = $1"),
    (
        "conversations",
        "DELETE FROM conversations WHERE org_id = $1",
    ),
    (
        "model_exchanges",
        "DELETE FROM model_exchanges WHERE org_id = $1",
    ),
    ("audit_events", "DELETE FROM audit_events WHERE org_id = $1"),
    ("prospects", "DELETE FROM prospects WHERE org_id = $1"),
    ("campaigns", "DELETE FROM campaigns WHERE org_id = $1"),
    ("members", "DELETE FROM members WHERE org_id = $1"),
    ("suppressions", "DELETE FROM suppressions WHERE org_id = $1"),
    (
        "suppression_keys",
        "DELETE FROM suppression_keys WHERE org_id = $1",
    ),
    (
        "subject_requests",
        "DELETE FROM subject_requests WHERE org_id = $1",
    ),
];

/// Deletes every row of an org in the caller's transaction.
pub(crate) async fn delete_org(
    connection: &mut PgConnection,
    org: OrgId,
) -> Result<ErasureReport, PgError> {
    let mut report = ErasureReport::default();
    for (table, sql) in DELETE_ORG_STEPS {
        let result = sqlx::query(sql)
            .bind(org.as_uuid())
            .execute(&mut *connection)
            .await?;
        report.add(table, result.rows_affected());
    }
    Ok(report)
}

pub(crate) async fn put_subject_request(
    connection: &mut PgConnection,
    request: &SubjectRequest,
) -> Result<(), PgError> {
    rows::bind_request(
        sqlx::query(concat!(
            "INSERT INTO subject_requests (",
            request_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (org_id, id) DO UPDATE SET prospect_id = excluded.prospect_id, kind = excluded.kind, \
             actor = excluded.actor, received_at = excluded.received_at, due_at = excluded.due_at, \
             completed_at = excluded.completed_at, outcome = excluded.outcome"
        )),
        request,
    )?
    .execute(connection)
    .await?;
    Ok(())
}

pub(crate) async fn list_subject_requests(
    connection: &mut PgConnection,
    org: OrgId,
) -> Result<Vec<SubjectRequest>, PgError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        request_columns!(),
        " FROM subject_requests WHERE org_id = $1 ORDER BY received_at, id"
    ))
    .bind(org.as_uuid())
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::request_from_row).collect()
}

/// Lists open requests of every org due before `before`, through the
/// function of the same name.
pub(crate) async fn open_subject_requests(
    connection: &mut PgConnection,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<SubjectRequest>, PgError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        request_columns!(),
        " FROM open_subject_requests($1, $2) ORDER BY due_at, id"
    ))
    .bind(nanos(before)?)
    .bind(limit_param(limit))
    .fetch_all(connection)
    .await?;
    rows.iter().map(rows::request_from_row).collect()
}

/// Lists prospects of every org whose retention ended at `before`, through
/// the function of the same name.
pub(crate) async fn expired_prospects(
    connection: &mut PgConnection,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<(OrgId, ProspectId)>, PgError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let found: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT prospect_org_id, prospect_id FROM expired_prospects($1, $2)")
            .bind(nanos(before)?)
            .bind(limit_param(limit))
            .fetch_all(connection)
            .await?;
    Ok(found
        .into_iter()
        .map(|(org, id)| (OrgId::from_uuid(org), ProspectId::from_uuid(id)))
        .collect())
}

/// Deletes messages of every org older than `before`, with their outbox
/// entries, through the function of the same name.
pub(crate) async fn purge_messages(
    connection: &mut PgConnection,
    before: Timestamp,
    limit: usize,
) -> Result<u64, PgError> {
    if limit == 0 {
        return Ok(0);
    }
    let deleted: i64 = sqlx::query_scalar("SELECT purge_messages($1, $2)")
        .bind(nanos(before)?)
        .bind(limit_param(limit))
        .fetch_one(connection)
        .await?;
    Ok(u64::try_from(deleted).unwrap_or_default())
}

//! Encoding of records into query parameters and decoding of rows into records.
//!
//! Ids are bound as `uuid`, times as `bigint` nanoseconds since the Unix
//! epoch, small enums as their snake_case names and structured fields as
//! `jsonb`. Each `*_columns!` list names the columns its `*_from_row`
//! function reads.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use kalify_core::campaign::{Campaign, CampaignStatus};
use kalify_core::contact::{ChannelKind, ContactPoint, EmailAddress, MessengerPsid, PhoneNumber};
use kalify_core::conversation::{
    Conversation, ConversationState, DeliveryStatus, Direction, Message, Sender,
};
use kalify_core::gdpr::{RequestKind, SubjectRequest};
use kalify_core::ports::{AuditEvent, Job, Member, ModelExchange, OutboxEntry, OutboxStatus, Role};
use kalify_core::prospect::{Locale, Prospect, Version};
use kalify_core::{
    CampaignId, ConversationId, Error, JobId, MemberId, MessageId, OrgId, OutboxId, ProspectId,
    Timestamp,
};
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use super::error::PgError;

/// A query with its positional parameters.
pub(crate) type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// Conversion of an id from its `uuid` column.
pub(crate) trait FromUuid {
    /// Wraps the UUID read from a column.
    fn from_column(uuid: Uuid) -> Self;
}

macro_rules! impl_from_uuid {
    ($($id:ty),*) => {
        $(
            impl FromUuid for $id {
                fn from_column(uuid: Uuid) -> Self {
                    <$id>::from_uuid(uuid)
                }
            }
        )*
    };
}

impl_from_uuid!(
    OrgId,
    ProspectId,
    ConversationId,
    MessageId,
    CampaignId,
    MemberId,
    JobId,
    OutboxId
);

/// Returns `at` as nanoseconds since the Unix epoch.
///
/// # Errors
/// `InvalidInput` for times outside 1677-09-21 to 2262-04-11, the range of an `i64` of nanoseconds.
pub(crate) fn nanos(at: Timestamp) -> Result<i64, PgError> {
    at.timestamp_nanos_opt().ok_or_else(|| {
        Error::invalid_input(format!(
            "invalid time {at}: the PostgreSQL store keeps times from 1677-09-21 to 2262-04-11"
        ))
        .into()
    })
}

fn opt_nanos(at: Option<Timestamp>) -> Result<Option<i64>, PgError> {
    at.map(nanos).transpose()
}

/// Returns `version` as a `bigint` parameter.
pub(crate) fn version_param(version: Version) -> Result<i64, PgError> {
    i64::try_from(version.0).map_err(|_| {
        Error::invalid_input(format!(
            "invalid version {version}: it exceeds the PostgreSQL bigint range"
        ))
        .into()
    })
}

/// Reads column `column` as `T`.
fn get<'r, T>(row: &'r PgRow, column: &'static str) -> Result<T, PgError>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column)
        .map_err(|error| PgError::decode(column, error))
}

fn get_id<T: FromUuid>(row: &PgRow, column: &'static str) -> Result<T, PgError> {
    get::<Uuid>(row, column).map(T::from_column)
}

fn get_opt_id<T: FromUuid>(row: &PgRow, column: &'static str) -> Result<Option<T>, PgError> {
    get::<Option<Uuid>>(row, column).map(|uuid| uuid.map(T::from_column))
}

fn get_time(row: &PgRow, column: &'static str) -> Result<Timestamp, PgError> {
    get::<i64>(row, column).map(DateTime::<Utc>::from_timestamp_nanos)
}

fn get_opt_time(row: &PgRow, column: &'static str) -> Result<Option<Timestamp>, PgError> {
    get::<Option<i64>>(row, column).map(|value| value.map(DateTime::<Utc>::from_timestamp_nanos))
}

fn get_json<T: DeserializeOwned>(row: &PgRow, column: &'static str) -> Result<T, PgError> {
    get::<Json<T>>(row, column).map(|Json(value)| value)
}

fn get_opt_json<T: DeserializeOwned>(
    row: &PgRow,
    column: &'static str,
) -> Result<Option<T>, PgError> {
    get::<Option<Json<T>>>(row, column).map(|value| value.map(|Json(value)| value))
}

fn get_u32(row: &PgRow, column: &'static str) -> Result<u32, PgError> {
    let value: i64 = get(row, column)?;
    u32::try_from(value).map_err(|error| PgError::decode(column, error))
}

fn get_version(row: &PgRow, column: &'static str) -> Result<Version, PgError> {
    let value: i64 = get(row, column)?;
    u64::try_from(value)
        .map(Version)
        .map_err(|error| PgError::decode(column, error))
}

/// Reads a text column through `FromStr`.
fn get_parsed<T>(row: &PgRow, column: &'static str) -> Result<T, PgError>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let text: &str = get(row, column)?;
    text.parse().map_err(|error| PgError::decode(column, error))
}

fn get_opt_parsed<T>(row: &PgRow, column: &'static str) -> Result<Option<T>, PgError>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match get::<Option<&str>>(row, column)? {
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|error| PgError::decode(column, error)),
        None => Ok(None),
    }
}

/// Reads an optional text column through a parsing function that returns kalify's `Result`.
fn get_opt_parsed_with<T>(
    row: &PgRow,
    column: &'static str,
    parse: fn(&str) -> kalify_core::Result<T>,
) -> Result<Option<T>, PgError> {
    match get::<Option<&str>>(row, column)? {
        Some(text) => parse(text)
            .map(Some)
            .map_err(|error| PgError::decode(column, error)),
        None => Ok(None),
    }
}

/// Reads a text column through a name table such as [`role_from`].
fn get_named<T>(
    row: &PgRow,
    column: &'static str,
    from: fn(&str) -> Option<T>,
) -> Result<T, PgError> {
    let text: &str = get(row, column)?;
    from(text).ok_or_else(|| PgError::decode(column, format!("unknown value {text:?}")))
}

/// Reads a contact point from its channel and normalised text.
pub(crate) fn contact_from(channel: &str, key: &str) -> kalify_core::Result<ContactPoint> {
    match ChannelKind::from_str(channel)? {
        ChannelKind::Sms => PhoneNumber::from_e164(key).map(ContactPoint::Phone),
        ChannelKind::Email => EmailAddress::parse(key).map(ContactPoint::Email),
        ChannelKind::Messenger => MessengerPsid::parse(key).map(ContactPoint::Messenger),
    }
}

pub(crate) fn outbox_status_text(status: OutboxStatus) -> &'static str {
    match status {
        OutboxStatus::Pending => "pending",
        OutboxStatus::Sent => "sent",
        OutboxStatus::Failed => "failed",
        OutboxStatus::Cancelled => "cancelled",
    }
}

fn outbox_status_from(text: &str) -> Option<OutboxStatus> {
    match text {
        "pending" => Some(OutboxStatus::Pending),
        "sent" => Some(OutboxStatus::Sent),
        "failed" => Some(OutboxStatus::Failed),
        "cancelled" => Some(OutboxStatus::Cancelled),
        _ => None,
    }
}

fn role_text(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
    }
}

fn role_from(text: &str) -> Option<Role> {
    match text {
        "owner" => Some(Role::Owner),
        "admin" => Some(Role::Admin),
        "member" => Some(Role::Member),
        _ => None,
    }
}

fn campaign_status_text(status: CampaignStatus) -> &'static str {
    match status {
        CampaignStatus::Active => "active",
        CampaignStatus::Paused => "paused",
    }
}

fn campaign_status_from(text: &str) -> Option<CampaignStatus> {
    match text {
        "active" => Some(CampaignStatus::Active),
        "paused" => Some(CampaignStatus::Paused),
        _ => None,
    }
}

// ---------------------------------------------------------------- prospects

/// The columns read by `prospect_from_row`, for `concat!`.
macro_rules! prospect_columns {
    () => {
        "org_id, id, first_name, last_name, company, job_title, phone, email, messenger, locale, time_zone, source, \
         tags, custom_fields, status, score, owner_id, consents, restricted, objected, created_at, updated_at, version"
    };
}
pub(crate) use prospect_columns;

pub(crate) fn prospect_from_row(row: &PgRow) -> Result<Prospect, PgError> {
    Ok(Prospect {
        org_id: get_id(row, "org_id")?,
        id: get_id(row, "id")?,
        first_name: get(row, "first_name")?,
        last_name: get(row, "last_name")?,
        company: get(row, "company")?,
        job_title: get(row, "job_title")?,
        phone: get_opt_parsed_with(row, "phone", PhoneNumber::from_e164)?,
        email: get_opt_parsed_with(row, "email", EmailAddress::parse)?,
        messenger: get_opt_parsed_with(row, "messenger", MessengerPsid::parse)?,
        locale: get_parsed::<Locale>(row, "locale")?,
        time_zone: get_opt_parsed::<chrono_tz::Tz>(row, "time_zone")?,
        source: get(row, "source")?,
        tags: get_json(row, "tags")?,
        custom_fields: get_json(row, "custom_fields")?,
        status: get_parsed::<ConversationState>(row, "status")?,
        score: get_opt_json(row, "score")?,
        owner: get_opt_id(row, "owner_id")?,
        consents: get_json(row, "consents")?,
        restricted: get(row, "restricted")?,
        objected: get(row, "objected")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
        version: get_version(row, "version")?,
    })
}

/// Binds the 23 columns of `prospect` in the order of `prospect_columns!`,
/// with `version` as the version column.
pub(crate) fn bind_prospect<'q>(
    query: PgQuery<'q>,
    prospect: &Prospect,
    version: Version,
) -> Result<PgQuery<'q>, PgError> {
    Ok(query
        .bind(prospect.org_id.as_uuid())
        .bind(prospect.id.as_uuid())
        .bind(prospect.first_name.as_deref())
        .bind(prospect.last_name.as_deref())
        .bind(prospect.company.as_deref())
        .bind(prospect.job_title.as_deref())
        .bind(prospect.phone.as_ref().map(PhoneNumber::as_str))
        .bind(prospect.email.as_ref().map(EmailAddress::as_str))
        .bind(prospect.messenger.as_ref().map(MessengerPsid::as_str))
        .bind(prospect.locale.as_str())
        .bind(prospect.time_zone.map(|zone| zone.name()))
        .bind(prospect.source.as_deref())
        .bind(Json(&prospect.tags))
        .bind(Json(&prospect.custom_fields))
        .bind(prospect.status.as_str())
        .bind(prospect.score.as_ref().map(Json))
        .bind(prospect.owner.map(|owner| owner.as_uuid()))
        .bind(Json(&prospect.consents))
        .bind(prospect.restricted)
        .bind(prospect.objected)
        .bind(nanos(prospect.created_at)?)
        .bind(nanos(prospect.updated_at)?)
        .bind(version_param(version)?))
}

// ---------------------------------------------------------------- campaigns

/// The columns read by `campaign_from_row`, for `concat!`.
macro_rules! campaign_columns {
    () => {
        "org_id, id, name, persona, goal, channels, steps, allow_links, status, created_at, settings"
    };
}
pub(crate) use campaign_columns;

pub(crate) fn campaign_from_row(row: &PgRow) -> Result<Campaign, PgError> {
    Ok(Campaign {
        org_id: get_id(row, "org_id")?,
        id: get_id(row, "id")?,
        name: get(row, "name")?,
        persona: get(row, "persona")?,
        goal: get(row, "goal")?,
        channels: get_json(row, "channels")?,
        steps: get_json(row, "steps")?,
        allow_links: get(row, "allow_links")?,
        status: get_named(row, "status", campaign_status_from)?,
        created_at: get_time(row, "created_at")?,
        settings: get_json(row, "settings")?,
    })
}

/// Binds the columns of `campaign` in the order of `campaign_columns!`.
pub(crate) fn bind_campaign<'q>(
    query: PgQuery<'q>,
    campaign: &Campaign,
) -> Result<PgQuery<'q>, PgError> {
    Ok(query
        .bind(campaign.org_id.as_uuid())
        .bind(campaign.id.as_uuid())
        .bind(campaign.name.as_str())
        .bind(campaign.persona.as_str())
        .bind(campaign.goal.as_str())
        .bind(Json(&campaign.channels))
        .bind(Json(&campaign.steps))
        .bind(campaign.allow_links)
        .bind(campaign_status_text(campaign.status))
        .bind(nanos(campaign.created_at)?)
        .bind(Json(&campaign.settings)))
}

// ------------------------------------------------------------ conversations

/// The columns read by `conversation_from_row`, for `concat!`.
macro_rules! conversation_columns {
    () => {
        "org_id, id, prospect_id, campaign_id, channel, state, facts, score, attempts_sent, automation_disclosed, \
         assigned_to, created_at, updated_at, last_inbound_at, version"
    };
}
pub(crate) use conversation_columns;

pub(crate) fn conversation_from_row(row: &PgRow) -> Result<Conversation, PgError> {
    Ok(Conversation {
        org_id: get_id(row, "org_id")?,
        id: get_id(row, "id")?,
        prospect_id: get_id(row, "prospect_id")?,
        campaign_id: get_opt_id(row, "campaign_id")?,
        channel: get_parsed::<ChannelKind>(row, "channel")?,
        state: get_parsed::<ConversationState>(row, "state")?,
        facts: get_json(row, "facts")?,
        score: get_opt_json(row, "score")?,
        attempts_sent: get_u32(row, "attempts_sent")?,
        automation_disclosed: get(row, "automation_disclosed")?,
        assigned_to: get_opt_id(row, "assigned_to")?,
        created_at: get_time(row, "created_at")?,
        updated_at: get_time(row, "updated_at")?,
        last_inbound_at: get_opt_time(row, "last_inbound_at")?,
        version: get_version(row, "version")?,
    })
}

/// Binds the 15 columns of `conversation` in the order of
/// `conversation_columns!`, with `version` as the version column.
pub(crate) fn bind_conversation<'q>(
    query: PgQuery<'q>,
    conversation: &Conversation,
    version: Version,
) -> Result<PgQuery<'q>, PgError> {
    Ok(query
        .bind(conversation.org_id.as_uuid())
        .bind(conversation.id.as_uuid())
        .bind(conversation.prospect_id.as_uuid())
        .bind(conversation.campaign_id.map(|id| id.as_uuid()))
        .bind(conversation.channel.as_str())
        .bind(conversation.state.as_str())
        .bind(Json(&conversation.facts))
        .bind(conversation.score.as_ref().map(Json))
        .bind(i64::from(conversation.attempts_sent))
        .bind(conversation.automation_disclosed)
        .bind(conversation.assigned_to.map(|id| id.as_uuid()))
        .bind(nanos(conversation.created_at)?)
        .bind(nanos(conversation.updated_at)?)
        .bind(opt_nanos(conversation.last_inbound_at)?)
        .bind(version_param(version)?))
}

// ----------------------------------------------------------------- messages

/// The columns read by `message_from_row`, for `concat!`.
macro_rules! message_columns {
    () => {
        "org_id, id, conversation_id, prospect_id, direction, channel, sender, text, subject, at, provider, \
         provider_message_id, status, processed"
    };
}
pub(crate) use message_columns;

pub(crate) fn message_from_row(row: &PgRow) -> Result<Message, PgError> {
    Ok(Message {
        org_id: get_id(row, "org_id")?,
        id: get_id(row, "id")?,
        conversation_id: get_id(row, "conversation_id")?,
        prospect_id: get_id(row, "prospect_id")?,
        direction: get_parsed::<Direction>(row, "direction")?,
        channel: get_parsed::<ChannelKind>(row, "channel")?,
        sender: get_opt_parsed::<Sender>(row, "sender")?,
        text: get(row, "text")?,
        subject: get(row, "subject")?,
        at: get_time(row, "at")?,
        provider: get(row, "provider")?,
        provider_message_id: get(row, "provider_message_id")?,
        status: get_parsed::<DeliveryStatus>(row, "status")?,
        processed: get(row, "processed")?,
    })
}

/// Binds the columns of `message` in the order of `message_columns!`.
pub(crate) fn bind_message<'q>(
    query: PgQuery<'q>,
    message: &Message,
) -> Result<PgQuery<'q>, PgError> {
    Ok(query
        .bind(message.org_id.as_uuid())
        .bind(message.id.as_uuid())
        .bind(message.conversation_id.as_uuid())
        .bind(message.prospect_id.as_uuid())
        .bind(message.direction.as_str())
        .bind(message.channel.as_str())
        .bind(message.sender.map(|sender| sender.as_str()))
        .bind(message.text.as_str())
        .bind(message.subject.as_deref())
        .bind(nanos(message.at)?)
        .bind(message.provider.as_deref())
        .bind(message.provider_message_id.as_deref())
        .bind(message.status.as_str())
        .bind(message.processed))
}

// --------------------------------------------------------------------- jobs

/// The columns read by `job_from_row`, for `concat!`.
macro_rules! job_columns {
    () => {
        "org_id, id, conversation_id, prospect_id, kind, due_at, attempts, dedupe_key"
    };
}
pub(crate) use job_columns;

pub(crate) fn job_from_row(row: &PgRow) -> Result<Job, PgError> {
    Ok(Job {
        org_id: get_id(row, "org_id")?,
        id: get_id(row, "id")?,
        conversation_id: get_id(row, "conversation_id")?,
        prospect_id: get_id(row, "prospect_id")?,
        kind: get_json(row, "kind")?,
        due_at: get_time(row, "due_at")?,
        attempts: get_u32(row, "attempts")?,
        dedupe_key: get(row, "dedupe_key")?,
    })
}

/// Binds the columns of `job` in the order of `job_columns!`.
pub(crate) fn bind_job<'q>(query: PgQuery<'q>, job: &Job) -> Result<PgQuery<'q>, PgError> {
    Ok(query
        .bind(job.org_id.as_uuid())
        .bind(job.id.as_uuid())
        .bind(job.conversation_id.as_uuid())
        .bind(job.prospect_id.as_uuid())
        .bind(Json(&job.kind))
        .bind(nanos(job.due_at)?)
        .bind(i64::from(job.attempts))
        .bind(job.dedupe_key.as_str()))
}

// ------------------------------------------------------------------- outbox

/// The columns read by `outbox_from_row`, for `concat!`.
macro_rules! outbox_columns {
    () => {
        "org_id, id, conversation_id, prospect_id, message_id, channel, recipient_kind, recipient, text, subject, \
         purpose, sender, sender_name, campaign_id, idempotency_key, next_attempt_at, attempts, status, unconfirmed, \
         first_attempt_at"
    };
}
pub(crate) use outbox_columns;

pub(crate) fn outbox_from_row(row: &PgRow) -> Result<OutboxEntry, PgError> {
    let recipient_kind: &str = get(row, "recipient_kind")?;
    let recipient: &str = get(row, "recipient")?;
    let to = contact_from(recipient_kind, recipient)
        .map_err(|error| PgError::decode("recipient", error))?;
    Ok(OutboxEntry {
        org_id: get_id(row, "org_id")?,
        id: get_id(row, "id")?,
        conversation_id: get_id(row, "conversation_id")?,
        prospect_id: get_id(row, "prospect_id")?,
        message_id: get_id(row, "message_id")?,
        channel: get_parsed::<ChannelKind>(row, "channel")?,
        to,
        text: get(row, "text")?,
        subject: get(row, "subject")?,
        purpose: get_json(row, "purpose")?,
        sender: get_parsed::<Sender>(row, "sender")?,
        sender_name: get(row, "sender_name")?,
        campaign_id: get_opt_id(row, "campaign_id")?,
        idempotency_key: get(row, "idempotency_key")?,
        next_attempt_at: get_time(row, "next_attempt_at")?,
        attempts: get_u32(row, "attempts")?,
        status: get_named(row, "status", outbox_status_from)?,
        unconfirmed: get(row, "unconfirmed")?,
        first_attempt_at: get_opt_time(row, "first_attempt_at")?,
    })
}

/// Binds the columns of `entry` in the order of `outbox_columns!`.
pub(crate) fn bind_outbox<'q>(
    query: PgQuery<'q>,
    entry: &OutboxEntry,
) -> Result<PgQuery<'q>, PgError> {
    Ok(query
        .bind(entry.org_id.as_uuid())
        .bind(entry.id.as_uuid())
        .bind(entry.conversation_id.as_uuid())
        .bind(entry.prospect_id.as_uuid())
        .bind(entry.message_id.as_uuid())
        .bind(entry.channel.as_str())
        .bind(entry.to.channel().as_str())
        .bind(entry.to.key())
        .bind(entry.text.as_str())
        .bind(entry.subject.as_deref())
        .bind(Json(&entry.purpose))
        .bind(entry.sender.as_str())
        .bind(entry.sender_name.as_str())
        .bind(entry.campaign_id.map(|id| id.as_uuid()))
        .bind(entry.idempotency_key.as_str())
        .bind(nanos(entry.next_attempt_at)?)
        .bind(i64::from(entry.attempts))
        .bind(outbox_status_text(entry.status))
        .bind(entry.unconfirmed)
        .bind(opt_nanos(entry.first_attempt_at)?))
}

// ------------------------------------------------------------------- audit

/// The columns read by `audit_from_row`, for `concat!`.
macro_rules! audit_columns {
    () => {
        "org_id, prospect_id, conversation_id, action, actor, detail, at"
    };
}
pub(crate) use audit_columns;

pub(crate) fn audit_from_row(row: &PgRow) -> Result<AuditEvent, PgError> {
    Ok(AuditEvent {
        org_id: get_id(row, "org_id")?,
        prospect_id: get_opt_id(row, "prospect_id")?,
        conversation_id: get_opt_id(row, "conversation_id")?,
        action: get(row, "action")?,
        actor: get_json(row, "actor")?,
        detail: get(row, "detail")?,
        at: get_time(row, "at")?,
    })
}

/// Binds the columns of `event` in the order of `audit_columns!`.
pub(crate) fn bind_audit<'q>(
    query: PgQuery<'q>,
    event: &AuditEvent,
) -> Result<PgQuery<'q>, PgError> {
    Ok(query
        .bind(event.org_id.as_uuid())
        .bind(event.prospect_id.map(|id| id.as_uuid()))
        .bind(event.conversation_id.map(|id| id.as_uuid()))
        .bind(event.action.as_str())
        .bind(Json(&event.actor))
        .bind(event.detail.as_str())
        .bind(nanos(event.at)?))
}

// --------------------------------------------------------- model exchanges

/// The columns read by `exchange_from_row`, for `concat!`.
macro_rules! exchange_columns {
    () => {
        "org_id, prospect_id, conversation_id, model, operation, request, response, at"
    };
}
pub(crate) use exchange_columns;

pub(crate) fn exchange_from_row(row: &PgRow) -> Result<ModelExchange, PgError> {
    Ok(ModelExchange {
        org_id: get_id(row, "org_id")?,
        prospect_id: get_id(row, "prospect_id")?,
        conversation_id: get_id(row, "conversation_id")?,
        model: get(row, "model")?,
        operation: get(row, "operation")?,
        request: get(row, "request")?,
        response: get(row, "response")?,
        at: get_time(row, "at")?,
    })
}

/// Binds the columns of `exchange` in the order of `exchange_columns!`.
pub(crate) fn bind_exchange<'q>(
    query: PgQuery<'q>,
    exchange: &ModelExchange,
) -> Result<PgQuery<'q>, PgError> {
    Ok(query
        .bind(exchange.org_id.as_uuid())
        .bind(exchange.prospect_id.as_uuid())
        .bind(exchange.conversation_id.as_uuid())
        .bind(exchange.model.as_str())
        .bind(exchange.operation.as_str())
        .bind(exchange.request.as_str())
        .bind(exchange.response.as_str())
        .bind(nanos(exchange.at)?))
}

// -------------------------------------------------------- subject requests

/// The columns read by `request_from_row`, for `concat!`.
macro_rules! request_columns {
    () => {
        "org_id, id, prospect_id, kind, actor, received_at, due_at, completed_at, outcome"
    };
}
pub(crate) use request_columns;

pub(crate) fn request_from_row(row: &PgRow) -> Result<SubjectRequest, PgError> {
    Ok(SubjectRequest {
        org_id: get_id(row, "org_id")?,
        id: get(row, "id")?,
        prospect_id: get_id(row, "prospect_id")?,
        kind: get_named(row, "kind", RequestKind::parse)?,
        actor: get_json(row, "actor")?,
        received_at: get_time(row, "received_at")?,
        due_at: get_time(row, "due_at")?,
        completed_at: get_opt_time(row, "completed_at")?,
        outcome: get_json(row, "outcome")?,
    })
}

/// Binds the columns of `request` in the order of `request_columns!`.
pub(crate) fn bind_request<'q>(
    query: PgQuery<'q>,
    request: &SubjectRequest,
) -> Result<PgQuery<'q>, PgError> {
    Ok(query
        .bind(request.org_id.as_uuid())
        .bind(request.id)
        .bind(request.prospect_id.as_uuid())
        .bind(request.kind.as_str())
        .bind(Json(&request.actor))
        .bind(nanos(request.received_at)?)
        .bind(nanos(request.due_at)?)
        .bind(opt_nanos(request.completed_at)?)
        .bind(Json(&request.outcome)))
}

// ------------------------------------------------------------------ members

/// The columns read by `member_from_row`, for `concat!`.
macro_rules! member_columns {
    () => {
        "org_id, id, name, email, role, available"
    };
}
pub(crate) use member_columns;

pub(crate) fn member_from_row(row: &PgRow) -> Result<Member, PgError> {
    let email: &str = get(row, "email")?;
    Ok(Member {
        org_id: get_id(row, "org_id")?,
        id: get_id(row, "id")?,
        name: get(row, "name")?,
        email: EmailAddress::parse(email).map_err(|error| PgError::decode("email", error))?,
        role: get_named(row, "role", role_from)?,
        available: get(row, "available")?,
    })
}

/// Binds the columns of `member` in the order of `member_columns!`.
pub(crate) fn bind_member<'q>(query: PgQuery<'q>, member: &Member) -> PgQuery<'q> {
    query
        .bind(member.org_id.as_uuid())
        .bind(member.id.as_uuid())
        .bind(member.name.as_str())
        .bind(member.email.as_str())
        .bind(role_text(member.role))
        .bind(member.available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_rejects_times_out_of_range() {
        let far = DateTime::<Utc>::from_timestamp(i64::from(i32::MAX) * 10, 0).unwrap_or_default();
        let error = Error::from(nanos(far).unwrap_err());
        assert_eq!(
            error.kind(),
            kalify_core::ErrorKind::InvalidInput,
            "{error}"
        );
    }

    #[test]
    fn version_param_rejects_values_past_bigint() {
        let error = Error::from(version_param(Version(u64::MAX)).unwrap_err());
        assert_eq!(
            error.kind(),
            kalify_core::ErrorKind::InvalidInput,
            "{error}"
        );
        assert_eq!(version_param(Version(7)).ok(), Some(7));
    }
}

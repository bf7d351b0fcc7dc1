//! Encoding of records into rows and decoding of rows into records.
//!
//! Ids are bound as 16-byte blobs, times as nanoseconds since the Unix
//! epoch, small enums as their snake_case names and structured fields as
//! JSON text. Each `*_columns!` list matches the order its `*_from_row`
//! function reads.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use kalify_core::campaign::{Campaign, CampaignStatus};
use kalify_core::contact::{ChannelKind, ContactPoint, EmailAddress, MessengerPsid, PhoneNumber};
use kalify_core::conversation::{
    Conversation, ConversationState, DeliveryStatus, Direction, Message, Sender,
};
use kalify_core::gdpr::{RequestKind, SubjectRequest, SuppressionKey};
use kalify_core::ports::{AuditEvent, Job, Member, ModelExchange, OutboxEntry, OutboxStatus, Role};
use kalify_core::prospect::{Locale, Prospect, Version};
use kalify_core::{
    CampaignId, ConversationId, Error, JobId, MemberId, MessageId, OrgId, OutboxId, ProspectId,
    Timestamp,
};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Statement, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::SqliteError;

/// Conversion of an id to and from its 16-byte blob.
pub(crate) trait Key: Sized {
    /// Returns the blob bound as a parameter.
    fn key(&self) -> [u8; 16];
    /// Reads the id from a blob.
    fn from_key(bytes: [u8; 16]) -> Self;
}

macro_rules! impl_key {
    ($($id:ty),*) => {
        $(
            impl Key for $id {
                fn key(&self) -> [u8; 16] {
                    *self.as_uuid().as_bytes()
                }
                fn from_key(bytes: [u8; 16]) -> Self {
                    <$id>::from_uuid(Uuid::from_bytes(bytes))
                }
            }
        )*
    };
}

impl_key!(
    OrgId,
    ProspectId,
    ConversationId,
    MessageId,
    CampaignId,
    MemberId,
    JobId,
    OutboxId
);

/// Returns the blob of an optional id.
pub(crate) fn opt_key<T: Key>(id: Option<T>) -> Option<[u8; 16]> {
    id.map(|id| id.key())
}

/// Returns `at` as nanoseconds since the Unix epoch.
///
/// # Errors
/// `InvalidInput` for times outside 1677-09-21 to 2262-04-11, the range of an `i64` of nanoseconds.
pub(crate) fn nanos(at: Timestamp) -> Result<i64, SqliteError> {
    at.timestamp_nanos_opt().ok_or_else(|| {
        Error::invalid_input(format!(
            "invalid time {at}: the SQLite store keeps times from 1677-09-21 to 2262-04-11"
        ))
        .into()
    })
}

fn opt_nanos(at: Option<Timestamp>) -> Result<Option<i64>, SqliteError> {
    at.map(nanos).transpose()
}

/// Returns `value` as JSON text for `column`.
pub(crate) fn to_json<T: Serialize + ?Sized>(
    value: &T,
    column: &'static str,
) -> Result<String, SqliteError> {
    serde_json::to_string(value).map_err(|source| SqliteError::Encode { column, source })
}

fn opt_json<T: Serialize>(
    value: Option<&T>,
    column: &'static str,
) -> Result<Option<String>, SqliteError> {
    value.map(|value| to_json(value, column)).transpose()
}

/// Returns the conversion error for column `index`.
fn decode_error(
    index: usize,
    error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, Type::Text, error.into())
}

fn get_id<T: Key>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    row.get::<_, [u8; 16]>(index).map(T::from_key)
}

fn get_opt_id<T: Key>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>> {
    row.get::<_, Option<[u8; 16]>>(index)
        .map(|bytes| bytes.map(T::from_key))
}

fn get_time(row: &Row<'_>, index: usize) -> rusqlite::Result<Timestamp> {
    row.get::<_, i64>(index)
        .map(DateTime::<Utc>::from_timestamp_nanos)
}

fn get_opt_time(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    row.get::<_, Option<i64>>(index)
        .map(|value| value.map(DateTime::<Utc>::from_timestamp_nanos))
}

fn get_json<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text = row.get_ref(index)?.as_str()?;
    serde_json::from_str(text).map_err(|error| decode_error(index, error))
}

fn get_opt_json<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>> {
    match row.get_ref(index)?.as_str_or_null()? {
        Some(text) => serde_json::from_str(text)
            .map(Some)
            .map_err(|error| decode_error(index, error)),
        None => Ok(None),
    }
}

/// Reads a text column through `FromStr`.
fn get_parsed<T>(row: &Row<'_>, index: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    row.get_ref(index)?
        .as_str()?
        .parse()
        .map_err(|error| decode_error(index, error))
}

fn get_opt_parsed<T>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match row.get_ref(index)?.as_str_or_null()? {
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|error| decode_error(index, error)),
        None => Ok(None),
    }
}

fn get_version(row: &Row<'_>, index: usize) -> rusqlite::Result<Version> {
    let value: i64 = row.get(index)?;
    u64::try_from(value)
        .map(Version)
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, value))
}

/// Returns `version` as a column value.
pub(crate) fn version_param(version: Version) -> Result<i64, SqliteError> {
    i64::try_from(version.0).map_err(|_| {
        Error::invalid_input(format!(
            "invalid version {version}: it exceeds the SQLite integer range"
        ))
        .into()
    })
}

/// Reads a contact point from its channel and normalised text.
fn contact_from(channel: &str, key: &str) -> Result<ContactPoint, Error> {
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

/// Reads a text column through a name table such as [`role_from`].
fn get_named<T>(row: &Row<'_>, index: usize, from: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text = row.get_ref(index)?.as_str()?;
    from(text).ok_or_else(|| decode_error(index, format!("unknown value {text:?}")))
}

// ---------------------------------------------------------------- prospects

/// The columns read by `prospect_from_row`, in order, for `concat!`.
macro_rules! prospect_columns {
    () => {
        "org_id, id, first_name, last_name, company, job_title, phone, email, \
     messenger, locale, time_zone, source, tags, custom_fields, status, score, owner_id, consents, restricted, \
     objected, created_at, updated_at, version"
    };
}
pub(crate) use prospect_columns;

pub(crate) fn prospect_from_row(row: &Row<'_>) -> rusqlite::Result<Prospect> {
    Ok(Prospect {
        org_id: get_id(row, 0)?,
        id: get_id(row, 1)?,
        first_name: row.get(2)?,
        last_name: row.get(3)?,
        company: row.get(4)?,
        job_title: row.get(5)?,
        phone: get_opt_parsed_with(row, 6, PhoneNumber::from_e164)?,
        email: get_opt_parsed_with(row, 7, EmailAddress::parse)?,
        messenger: get_opt_parsed_with(row, 8, MessengerPsid::parse)?,
        locale: get_parsed::<Locale>(row, 9)?,
        time_zone: get_opt_parsed::<chrono_tz::Tz>(row, 10)?,
        source: row.get(11)?,
        tags: get_json(row, 12)?,
        custom_fields: get_json(row, 13)?,
        status: get_parsed::<ConversationState>(row, 14)?,
        score: get_opt_json(row, 15)?,
        owner: get_opt_id(row, 16)?,
        consents: get_json(row, 17)?,
        restricted: row.get(18)?,
        objected: row.get(19)?,
        created_at: get_time(row, 20)?,
        updated_at: get_time(row, 21)?,
        version: get_version(row, 22)?,
    })
}

/// Reads an optional text column through a parsing function that returns kalify's `Result`.
fn get_opt_parsed_with<T>(
    row: &Row<'_>,
    index: usize,
    parse: fn(&str) -> kalify_core::Result<T>,
) -> rusqlite::Result<Option<T>> {
    match row.get_ref(index)?.as_str_or_null()? {
        Some(text) => parse(text)
            .map(Some)
            .map_err(|error| decode_error(index, error)),
        None => Ok(None),
    }
}

/// The encoded columns of a prospect that need work beyond a borrow.
struct EncodedProspect {
    tags: String,
    custom_fields: String,
    score: Option<String>,
    consents: String,
    created_at: i64,
    updated_at: i64,
}

fn encode_prospect(prospect: &Prospect) -> Result<EncodedProspect, SqliteError> {
    Ok(EncodedProspect {
        tags: to_json(&prospect.tags, "tags")?,
        custom_fields: to_json(&prospect.custom_fields, "custom_fields")?,
        score: opt_json(prospect.score.as_ref(), "score")?,
        consents: to_json(&prospect.consents, "consents")?,
        created_at: nanos(prospect.created_at)?,
        updated_at: nanos(prospect.updated_at)?,
    })
}

/// The statement [`insert_prospect`] runs.
pub(crate) const INSERT_PROSPECT: &str = "INSERT INTO prospects (org_id, id, first_name, last_name, company, \
     job_title, phone, email, messenger, locale, time_zone, source, tags, custom_fields, status, score, owner_id, \
     consents, restricted, objected, created_at, updated_at, version) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)";

/// Inserts `prospect` as it is, version included, with `statement`
/// prepared from [`INSERT_PROSPECT`].
pub(crate) fn insert_prospect(
    statement: &mut Statement<'_>,
    prospect: &Prospect,
) -> Result<(), SqliteError> {
    let encoded = encode_prospect(prospect)?;
    statement.execute(params![
        prospect.org_id.key(),
        prospect.id.key(),
        prospect.first_name,
        prospect.last_name,
        prospect.company,
        prospect.job_title,
        prospect.phone.as_ref().map(PhoneNumber::as_str),
        prospect.email.as_ref().map(EmailAddress::as_str),
        prospect.messenger.as_ref().map(MessengerPsid::as_str),
        prospect.locale.as_str(),
        prospect.time_zone.map(|zone| zone.name()),
        prospect.source,
        encoded.tags,
        encoded.custom_fields,
        prospect.status.as_str(),
        encoded.score,
        opt_key(prospect.owner),
        encoded.consents,
        prospect.restricted,
        prospect.objected,
        encoded.created_at,
        encoded.updated_at,
        version_param(prospect.version)?,
    ])?;
    Ok(())
}

/// Writes `prospect` with version `prospect.version + 1` when the stored
/// version is `prospect.version`, and returns the number of rows changed.
///
/// SQLite rewrites the entry of every index whose column an UPDATE sets,
/// even to the same value. A turn rarely changes the indexed columns
/// (contact points, creation time), so a first statement leaves them out
/// and applies only when they are unchanged. Otherwise the full statement runs.
pub(crate) fn update_prospect_if_version(
    connection: &Connection,
    prospect: &Prospect,
) -> Result<usize, SqliteError> {
    let encoded = encode_prospect(prospect)?;
    let phone = prospect.phone.as_ref().map(PhoneNumber::as_str);
    let email = prospect.email.as_ref().map(EmailAddress::as_str);
    let messenger = prospect.messenger.as_ref().map(MessengerPsid::as_str);
    // Both statements take the same parameters: the indexed columns are
    // ?21 to ?24, compared in the first statement and set in the second.
    let values = params![
        prospect.org_id.key(),
        prospect.id.key(),
        prospect.first_name,
        prospect.last_name,
        prospect.company,
        prospect.job_title,
        prospect.locale.as_str(),
        prospect.time_zone.map(|zone| zone.name()),
        prospect.source,
        encoded.tags,
        encoded.custom_fields,
        prospect.status.as_str(),
        encoded.score,
        opt_key(prospect.owner),
        encoded.consents,
        prospect.restricted,
        prospect.objected,
        encoded.updated_at,
        version_param(prospect.version.next())?,
        version_param(prospect.version)?,
        phone,
        email,
        messenger,
        encoded.created_at,
    ];
    let unindexed = connection
        .prepare_cached(
            "UPDATE prospects SET first_name = ?3, last_name = ?4, company = ?5, job_title = ?6, \
             locale = ?7, time_zone = ?8, source = ?9, tags = ?10, custom_fields = ?11, status = ?12, \
             score = ?13, owner_id = ?14, consents = ?15, restricted = ?16, objected = ?17, \
             updated_at = ?18, version = ?19 \
             WHERE org_id = ?1 AND id = ?2 AND version = ?20 \
             AND phone IS ?21 AND email IS ?22 AND messenger IS ?23 AND created_at = ?24",
        )?
        .execute(values)?;
    if unindexed > 0 {
        return Ok(unindexed);
    }
    let changed = connection
        .prepare_cached(
            "UPDATE prospects SET first_name = ?3, last_name = ?4, company = ?5, job_title = ?6, \
             locale = ?7, time_zone = ?8, source = ?9, tags = ?10, custom_fields = ?11, status = ?12, \
             score = ?13, owner_id = ?14, consents = ?15, restricted = ?16, objected = ?17, \
             updated_at = ?18, version = ?19, \
             phone = ?21, email = ?22, messenger = ?23, created_at = ?24 \
             WHERE org_id = ?1 AND id = ?2 AND version = ?20",
        )?
        .execute(values)?;
    Ok(changed)
}

// ---------------------------------------------------------------- campaigns

/// The columns read by `campaign_from_row`, in order, for `concat!`.
macro_rules! campaign_columns {
    () => {
        "org_id, id, name, persona, goal, channels, steps, allow_links, status, created_at, settings"
    };
}
pub(crate) use campaign_columns;

pub(crate) fn campaign_from_row(row: &Row<'_>) -> rusqlite::Result<Campaign> {
    Ok(Campaign {
        org_id: get_id(row, 0)?,
        id: get_id(row, 1)?,
        name: row.get(2)?,
        persona: row.get(3)?,
        goal: row.get(4)?,
        channels: get_json(row, 5)?,
        steps: get_json(row, 6)?,
        allow_links: row.get(7)?,
        status: get_named(row, 8, campaign_status_from)?,
        created_at: get_time(row, 9)?,
        settings: get_json(row, 10)?,
    })
}

/// Inserts `campaign`, or replaces the org's campaign with the same id.
pub(crate) fn upsert_campaign(
    connection: &Connection,
    campaign: &Campaign,
) -> Result<(), SqliteError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO campaigns (org_id, id, name, persona, goal, channels, steps, allow_links, status, created_at, settings) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (org_id, id) DO UPDATE SET name = excluded.name, persona = excluded.persona, \
         goal = excluded.goal, channels = excluded.channels, steps = excluded.steps, \
         allow_links = excluded.allow_links, status = excluded.status, created_at = excluded.created_at, \
         settings = excluded.settings",
    )?;
    statement.execute(params![
        campaign.org_id.key(),
        campaign.id.key(),
        campaign.name,
        campaign.persona,
        campaign.goal,
        to_json(&campaign.channels, "channels")?,
        to_json(&campaign.steps, "steps")?,
        campaign.allow_links,
        campaign_status_text(campaign.status),
        nanos(campaign.created_at)?,
        to_json(&campaign.settings, "settings")?,
    ])?;
    Ok(())
}

// ------------------------------------------------------------ conversations

/// The columns read by `conversation_from_row`, in order, for `concat!`.
macro_rules! conversation_columns {
    () => {
        "org_id, id, prospect_id, campaign_id, channel, state, facts, score, \
     attempts_sent, automation_disclosed, assigned_to, created_at, updated_at, last_inbound_at, version"
    };
}
pub(crate) use conversation_columns;

pub(crate) fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        org_id: get_id(row, 0)?,
        id: get_id(row, 1)?,
        prospect_id: get_id(row, 2)?,
        campaign_id: get_opt_id(row, 3)?,
        channel: get_parsed::<ChannelKind>(row, 4)?,
        state: get_parsed::<ConversationState>(row, 5)?,
        facts: get_json(row, 6)?,
        score: get_opt_json(row, 7)?,
        attempts_sent: row.get(8)?,
        automation_disclosed: row.get(9)?,
        assigned_to: get_opt_id(row, 10)?,
        created_at: get_time(row, 11)?,
        updated_at: get_time(row, 12)?,
        last_inbound_at: get_opt_time(row, 13)?,
        version: get_version(row, 14)?,
    })
}

/// Inserts `conversation` unless its id, or its (org, prospect, campaign),
/// exists, and returns the number of rows inserted.
pub(crate) fn insert_conversation_unless_exists(
    connection: &Connection,
    conversation: &Conversation,
) -> Result<usize, SqliteError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO conversations (org_id, id, prospect_id, campaign_id, channel, state, facts, score, \
         attempts_sent, automation_disclosed, assigned_to, created_at, updated_at, last_inbound_at, version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
         ON CONFLICT DO NOTHING",
    )?;
    let changed = statement.execute(params![
        conversation.org_id.key(),
        conversation.id.key(),
        conversation.prospect_id.key(),
        opt_key(conversation.campaign_id),
        conversation.channel.as_str(),
        conversation.state.as_str(),
        to_json(&conversation.facts, "facts")?,
        opt_json(conversation.score.as_ref(), "score")?,
        conversation.attempts_sent,
        conversation.automation_disclosed,
        opt_key(conversation.assigned_to),
        nanos(conversation.created_at)?,
        nanos(conversation.updated_at)?,
        opt_nanos(conversation.last_inbound_at)?,
        version_param(conversation.version)?,
    ])?;
    Ok(changed)
}

/// Writes `conversation` with version `conversation.version + 1` when the
/// stored version is `conversation.version`, and returns the number of rows changed.
///
/// As for prospects, a first statement leaves out the indexed prospect and
/// campaign, which a conversation keeps from its creation, and applies
/// only when they are unchanged.
pub(crate) fn update_conversation_if_version(
    connection: &Connection,
    conversation: &Conversation,
) -> Result<usize, SqliteError> {
    let facts = to_json(&conversation.facts, "facts")?;
    let score = opt_json(conversation.score.as_ref(), "score")?;
    let unindexed = connection
        .prepare_cached(
            "UPDATE conversations SET channel = ?3, state = ?4, facts = ?5, score = ?6, \
             attempts_sent = ?7, automation_disclosed = ?8, assigned_to = ?9, created_at = ?10, \
             updated_at = ?11, last_inbound_at = ?12, version = ?13 \
             WHERE org_id = ?1 AND id = ?2 AND version = ?14 AND prospect_id = ?15 AND campaign_id IS ?16",
        )?
        .execute(params![
            conversation.org_id.key(),
            conversation.id.key(),
            conversation.channel.as_str(),
            conversation.state.as_str(),
            facts,
            score,
            conversation.attempts_sent,
            conversation.automation_disclosed,
            opt_key(conversation.assigned_to),
            nanos(conversation.created_at)?,
            nanos(conversation.updated_at)?,
            opt_nanos(conversation.last_inbound_at)?,
            version_param(conversation.version.next())?,
            version_param(conversation.version)?,
            conversation.prospect_id.key(),
            opt_key(conversation.campaign_id),
        ])?;
    if unindexed > 0 {
        return Ok(unindexed);
    }
    let mut statement = connection.prepare_cached(
        "UPDATE conversations SET prospect_id = ?3, campaign_id = ?4, channel = ?5, state = ?6, facts = ?7, \
         score = ?8, attempts_sent = ?9, automation_disclosed = ?10, assigned_to = ?11, created_at = ?12, \
         updated_at = ?13, last_inbound_at = ?14, version = ?15 \
         WHERE org_id = ?1 AND id = ?2 AND version = ?16",
    )?;
    let changed = statement.execute(params![
        conversation.org_id.key(),
        conversation.id.key(),
        conversation.prospect_id.key(),
        opt_key(conversation.campaign_id),
        conversation.channel.as_str(),
        conversation.state.as_str(),
        facts,
        score,
        conversation.attempts_sent,
        conversation.automation_disclosed,
        opt_key(conversation.assigned_to),
        nanos(conversation.created_at)?,
        nanos(conversation.updated_at)?,
        opt_nanos(conversation.last_inbound_at)?,
        version_param(conversation.version.next())?,
        version_param(conversation.version)?,
    ])?;
    Ok(changed)
}

// ----------------------------------------------------------------- messages

/// The columns read by `message_from_row`, in order, for `concat!`.
macro_rules! message_columns {
    () => {
        "org_id, id, conversation_id, prospect_id, direction, channel, sender, \
     text, subject, at, provider, provider_message_id, status, processed"
    };
}
pub(crate) use message_columns;

pub(crate) fn message_from_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        org_id: get_id(row, 0)?,
        id: get_id(row, 1)?,
        conversation_id: get_id(row, 2)?,
        prospect_id: get_id(row, 3)?,
        direction: get_parsed::<Direction>(row, 4)?,
        channel: get_parsed::<ChannelKind>(row, 5)?,
        sender: get_opt_parsed::<Sender>(row, 6)?,
        text: row.get(7)?,
        subject: row.get(8)?,
        at: get_time(row, 9)?,
        provider: row.get(10)?,
        provider_message_id: row.get(11)?,
        status: get_parsed::<DeliveryStatus>(row, 12)?,
        processed: row.get(13)?,
    })
}

/// Inserts `message`. With `unless_exists`, a message whose id or inbound
/// provider id exists is skipped. Returns the number of rows inserted.
pub(crate) fn insert_message(
    connection: &Connection,
    message: &Message,
    unless_exists: bool,
) -> Result<usize, SqliteError> {
    let sql = if unless_exists {
        "INSERT INTO messages (org_id, id, conversation_id, prospect_id, direction, channel, sender, text, subject, \
         at, provider, provider_message_id, status, processed) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) ON CONFLICT DO NOTHING"
    } else {
        "INSERT INTO messages (org_id, id, conversation_id, prospect_id, direction, channel, sender, text, subject, \
         at, provider, provider_message_id, status, processed) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    };
    let mut statement = connection.prepare_cached(sql)?;
    let changed = statement.execute(params![
        message.org_id.key(),
        message.id.key(),
        message.conversation_id.key(),
        message.prospect_id.key(),
        message.direction.as_str(),
        message.channel.as_str(),
        message.sender.map(|sender| sender.as_str()),
        message.text,
        message.subject,
        nanos(message.at)?,
        message.provider,
        message.provider_message_id,
        message.status.as_str(),
        message.processed,
    ])?;
    Ok(changed)
}

// --------------------------------------------------------------------- jobs

/// The columns read by `job_from_row`, in order, for `concat!`.
macro_rules! job_columns {
    () => {
        "org_id, id, conversation_id, prospect_id, kind, due_at, attempts, dedupe_key"
    };
}
pub(crate) use job_columns;

pub(crate) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        org_id: get_id(row, 0)?,
        id: get_id(row, 1)?,
        conversation_id: get_id(row, 2)?,
        prospect_id: get_id(row, 3)?,
        kind: get_json(row, 4)?,
        due_at: get_time(row, 5)?,
        attempts: row.get(6)?,
        dedupe_key: row.get(7)?,
    })
}

/// Inserts `job` as pending unless its id or its dedupe key exists in its org.
pub(crate) fn insert_job(connection: &Connection, job: &Job) -> Result<(), SqliteError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO jobs (org_id, id, conversation_id, prospect_id, kind, due_at, attempts, dedupe_key, status) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending') ON CONFLICT DO NOTHING",
    )?;
    statement.execute(params![
        job.org_id.key(),
        job.id.key(),
        job.conversation_id.key(),
        job.prospect_id.key(),
        to_json(&job.kind, "kind")?,
        nanos(job.due_at)?,
        job.attempts,
        job.dedupe_key,
    ])?;
    Ok(())
}

// ------------------------------------------------------------------- outbox

/// The columns read by `outbox_from_row`, in order, for `concat!`.
macro_rules! outbox_columns {
    () => {
        "org_id, id, conversation_id, prospect_id, message_id, channel, \
     recipient_kind, recipient, text, subject, purpose, sender, sender_name, campaign_id, idempotency_key, \
     next_attempt_at, attempts, status, unconfirmed, first_attempt_at"
    };
}
pub(crate) use outbox_columns;

pub(crate) fn outbox_from_row(row: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
    let recipient_kind = row.get_ref(6)?.as_str()?;
    let recipient = row.get_ref(7)?.as_str()?;
    let to = contact_from(recipient_kind, recipient).map_err(|error| decode_error(7, error))?;
    Ok(OutboxEntry {
        org_id: get_id(row, 0)?,
        id: get_id(row, 1)?,
        conversation_id: get_id(row, 2)?,
        prospect_id: get_id(row, 3)?,
        message_id: get_id(row, 4)?,
        channel: get_parsed::<ChannelKind>(row, 5)?,
        to,
        text: row.get(8)?,
        subject: row.get(9)?,
        purpose: get_json(row, 10)?,
        sender: get_parsed::<Sender>(row, 11)?,
        sender_name: row.get(12)?,
        campaign_id: get_opt_id(row, 13)?,
        idempotency_key: row.get(14)?,
        next_attempt_at: get_time(row, 15)?,
        attempts: row.get(16)?,
        status: get_named(row, 17, outbox_status_from)?,
        unconfirmed: row.get(18)?,
        first_attempt_at: get_opt_time(row, 19)?,
    })
}

/// Inserts `entry` as it is.
pub(crate) fn insert_outbox(
    connection: &Connection,
    entry: &OutboxEntry,
) -> Result<(), SqliteError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO outbox (org_id, id, conversation_id, prospect_id, message_id, channel, recipient_kind, \
         recipient, text, subject, purpose, sender, sender_name, campaign_id, idempotency_key, next_attempt_at, \
         attempts, status, unconfirmed, first_attempt_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
    )?;
    statement.execute(params![
        entry.org_id.key(),
        entry.id.key(),
        entry.conversation_id.key(),
        entry.prospect_id.key(),
        entry.message_id.key(),
        entry.channel.as_str(),
        entry.to.channel().as_str(),
        entry.to.key(),
        entry.text,
        entry.subject,
        to_json(&entry.purpose, "purpose")?,
        entry.sender.as_str(),
        entry.sender_name,
        opt_key(entry.campaign_id),
        entry.idempotency_key,
        nanos(entry.next_attempt_at)?,
        entry.attempts,
        outbox_status_text(entry.status),
        entry.unconfirmed,
        opt_nanos(entry.first_attempt_at)?,
    ])?;
    Ok(())
}

// ------------------------------------------------- suppressions and audit

/// Returns `org`'s suppression key, or `None` when the org has none yet
/// and so has suppressed nothing.
pub(crate) fn suppression_key(
    connection: &Connection,
    org: OrgId,
) -> Result<Option<SuppressionKey>, SqliteError> {
    let mut statement =
        connection.prepare_cached("SELECT key FROM suppression_keys WHERE org_id = ?1")?;
    let bytes: Option<Vec<u8>> = statement
        .query_row(params![org.key()], |row| row.get(0))
        .optional()?;
    Ok(bytes
        .map(|bytes| SuppressionKey::from_slice(&bytes))
        .transpose()?)
}

/// Returns `org`'s suppression key, creating it first when missing.
pub(crate) fn ensure_suppression_key(
    connection: &Connection,
    org: OrgId,
) -> Result<SuppressionKey, SqliteError> {
    if let Some(key) = suppression_key(connection, org)? {
        return Ok(key);
    }
    let key = SuppressionKey::generate()?;
    connection
        .prepare_cached("INSERT INTO suppression_keys (org_id, key) VALUES (?1, ?2)")?
        .execute(params![org.key(), key.as_bytes().as_slice()])?;
    Ok(key)
}

/// Adds a suppression unless the org already lists the contact point.
/// Only the keyed digest of the contact point is written.
pub(crate) fn insert_suppression(
    connection: &Connection,
    org: OrgId,
    contact: &ContactPoint,
    reason: &str,
    at: Timestamp,
) -> Result<(), SqliteError> {
    let key = ensure_suppression_key(connection, org)?;
    insert_digest(
        connection,
        org,
        contact.channel().as_str(),
        &key.digest(contact),
        reason,
        nanos(at)?,
    )
}

fn insert_digest(
    connection: &Connection,
    org: OrgId,
    channel: &str,
    digest: &str,
    reason: &str,
    at: i64,
) -> Result<(), SqliteError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO suppressions (org_id, channel, contact, reason, at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT DO NOTHING",
    )?;
    statement.execute(params![org.key(), channel, digest, reason, at])?;
    Ok(())
}

/// Whether `contact` is on the org's list, given the org's key.
pub(crate) fn digest_listed(
    connection: &Connection,
    org: OrgId,
    key: &SuppressionKey,
    contact: &ContactPoint,
) -> Result<bool, SqliteError> {
    let mut statement = connection.prepare_cached(
        "SELECT 1 FROM suppressions WHERE org_id = ?1 AND channel = ?2 AND contact = ?3",
    )?;
    Ok(statement.exists(params![
        org.key(),
        contact.channel().as_str(),
        key.digest(contact)
    ])?)
}

/// Removes a contact point from the org's suppression list.
pub(crate) fn delete_suppression(
    connection: &Connection,
    org: OrgId,
    contact: &ContactPoint,
) -> Result<(), SqliteError> {
    let Some(key) = suppression_key(connection, org)? else {
        return Ok(());
    };
    let mut statement = connection.prepare_cached(
        "DELETE FROM suppressions WHERE org_id = ?1 AND channel = ?2 AND contact = ?3",
    )?;
    statement.execute(params![
        org.key(),
        contact.channel().as_str(),
        key.digest(contact)
    ])?;
    Ok(())
}

/// Rewrites suppression rows that hold a contact point in clear, written
/// before the list held digests, as digests. Returns how many it rewrote.
pub(crate) fn hash_clear_suppressions(connection: &Connection) -> Result<usize, SqliteError> {
    let clear: Vec<([u8; 16], String, String, String, i64)> = connection
        .prepare("SELECT org_id, channel, contact, reason, at FROM suppressions WHERE contact NOT LIKE 'hmac-sha256:%'")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (org, channel, contact, reason, at) in &clear {
        let org = OrgId::from_key(*org);
        connection
            .prepare_cached(
                "DELETE FROM suppressions WHERE org_id = ?1 AND channel = ?2 AND contact = ?3",
            )?
            .execute(params![org.key(), channel, contact])?;
        // A row that no longer parses is dropped rather than kept in clear;
        // it could not match a normalised contact point anyway.
        let Ok(point) = contact_from(channel, contact) else {
            continue;
        };
        let key = ensure_suppression_key(connection, org)?;
        insert_digest(connection, org, channel, &key.digest(&point), reason, *at)?;
    }
    Ok(clear.len())
}

// ------------------------------------------------------- model exchanges

macro_rules! exchange_columns {
    () => {
        "org_id, prospect_id, conversation_id, model, operation, request, response, at"
    };
}
pub(crate) use exchange_columns;

pub(crate) fn exchange_from_row(row: &Row<'_>) -> rusqlite::Result<ModelExchange> {
    Ok(ModelExchange {
        org_id: get_id(row, 0)?,
        prospect_id: get_id(row, 1)?,
        conversation_id: get_id(row, 2)?,
        model: row.get(3)?,
        operation: row.get(4)?,
        request: row.get(5)?,
        response: row.get(6)?,
        at: get_time(row, 7)?,
    })
}

pub(crate) fn insert_exchange(
    connection: &Connection,
    exchange: &ModelExchange,
) -> Result<(), SqliteError> {
    connection
        .prepare_cached(concat!(
            "INSERT INTO model_exchanges (",
            exchange_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))?
        .execute(params![
            exchange.org_id.key(),
            exchange.prospect_id.key(),
            exchange.conversation_id.key(),
            exchange.model,
            exchange.operation,
            exchange.request,
            exchange.response,
            nanos(exchange.at)?,
        ])?;
    Ok(())
}

// ------------------------------------------------------ subject requests

macro_rules! request_columns {
    () => {
        "org_id, id, prospect_id, kind, actor, received_at, due_at, completed_at, outcome"
    };
}
pub(crate) use request_columns;

pub(crate) fn request_from_row(row: &Row<'_>) -> rusqlite::Result<SubjectRequest> {
    let kind: String = row.get(3)?;
    Ok(SubjectRequest {
        org_id: get_id(row, 0)?,
        id: Uuid::from_bytes(row.get::<_, [u8; 16]>(1)?),
        prospect_id: get_id(row, 2)?,
        kind: RequestKind::parse(&kind).ok_or_else(|| {
            decode_error(3, Error::unexpected(format!("unknown request kind {kind}")))
        })?,
        actor: get_json(row, 4)?,
        received_at: get_time(row, 5)?,
        due_at: get_time(row, 6)?,
        completed_at: get_opt_time(row, 7)?,
        outcome: get_json(row, 8)?,
    })
}

pub(crate) fn upsert_request(
    connection: &Connection,
    request: &SubjectRequest,
) -> Result<(), SqliteError> {
    connection
        .prepare_cached(concat!(
            "INSERT INTO subject_requests (",
            request_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (org_id, id) DO UPDATE SET prospect_id = excluded.prospect_id, kind = excluded.kind, \
             actor = excluded.actor, received_at = excluded.received_at, due_at = excluded.due_at, \
             completed_at = excluded.completed_at, outcome = excluded.outcome"
        ))?
        .execute(params![
            request.org_id.key(),
            request.id.as_bytes(),
            request.prospect_id.key(),
            request.kind.as_str(),
            to_json(&request.actor, "actor")?,
            nanos(request.received_at)?,
            nanos(request.due_at)?,
            request.completed_at.map(nanos).transpose()?,
            to_json(&request.outcome, "outcome")?,
        ])?;
    Ok(())
}

/// The columns read by `audit_from_row`, in order, for `concat!`.
macro_rules! audit_columns {
    () => {
        "org_id, prospect_id, conversation_id, action, actor, detail, at"
    };
}
pub(crate) use audit_columns;

pub(crate) fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        org_id: get_id(row, 0)?,
        prospect_id: get_opt_id(row, 1)?,
        conversation_id: get_opt_id(row, 2)?,
        action: row.get(3)?,
        actor: get_json(row, 4)?,
        detail: row.get(5)?,
        at: get_time(row, 6)?,
    })
}

/// Appends an audit event.
pub(crate) fn insert_audit(connection: &Connection, event: &AuditEvent) -> Result<(), SqliteError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO audit_events (org_id, prospect_id, conversation_id, action, actor, detail, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    statement.execute(params![
        event.org_id.key(),
        opt_key(event.prospect_id),
        opt_key(event.conversation_id),
        event.action,
        to_json(&event.actor, "actor")?,
        event.detail,
        nanos(event.at)?,
    ])?;
    Ok(())
}

// ------------------------------------------------------------------ members

/// The columns read by `member_from_row`, in order, for `concat!`.
macro_rules! member_columns {
    () => {
        "org_id, id, name, email, role, available"
    };
}
pub(crate) use member_columns;

pub(crate) fn member_from_row(row: &Row<'_>) -> rusqlite::Result<Member> {
    let email = row.get_ref(3)?.as_str()?;
    Ok(Member {
        org_id: get_id(row, 0)?,
        id: get_id(row, 1)?,
        name: row.get(2)?,
        email: EmailAddress::parse(email).map_err(|error| decode_error(3, error))?,
        role: get_named(row, 4, role_from)?,
        available: row.get(5)?,
    })
}

/// Inserts `member`, or replaces the org's member with the same id.
pub(crate) fn upsert_member(connection: &Connection, member: &Member) -> Result<(), SqliteError> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO members (org_id, id, name, email, role, available) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (org_id, id) DO UPDATE SET name = excluded.name, email = excluded.email, \
         role = excluded.role, available = excluded.available",
    )?;
    statement.execute(params![
        member.org_id.key(),
        member.id.key(),
        member.name,
        member.email.as_str(),
        role_text(member.role),
        member.available,
    ])?;
    Ok(())
}

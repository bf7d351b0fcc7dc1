//! Checks and helpers that every backend applies the same way.

use std::time::Duration;

use kalify_core::conversation::{Conversation, Direction, Message};
use kalify_core::ports::{Job, TurnCommit};
use kalify_core::{Error, Result, Timestamp};

/// The message of the `Conflict` of an insert whose prospect id is already
/// stored or appears twice in the batch.
pub(crate) const DUPLICATE_PROSPECT: &str =
    "a prospect with this id is already stored or appears twice in the call";

/// Checks that every record of `turn` belongs to the conversation's org, so
/// that a turn can never write into another tenant.
///
/// # Errors
/// `InvalidInput` naming the first record of another org. The caller adds
/// the conversation's ids.
pub(crate) fn check_turn_orgs(turn: &TurnCommit) -> Result<()> {
    let org = turn.conversation.org_id;
    let other_org = |record: &'static str| {
        Error::invalid_input(format!(
            "the turn contains a {record} of another org than its conversation"
        ))
    };

    if let Some(prospect) = &turn.prospect
        && prospect.org_id != org
    {
        return Err(other_org("prospect").with_context("prospect_id", prospect.id));
    }
    if let Some(message) = turn.messages.iter().find(|message| message.org_id != org) {
        return Err(other_org("message").with_context("message_id", message.id));
    }
    if let Some(entry) = turn.outbox.iter().find(|entry| entry.org_id != org) {
        return Err(other_org("outbox entry").with_context("outbox_id", entry.id));
    }
    if let Some(job) = turn.jobs.iter().find(|job| job.org_id != org) {
        return Err(other_org("job").with_context("job_id", job.id));
    }
    if turn.suppress.iter().any(|entry| entry.org_id != org) {
        return Err(other_org("suppression"));
    }
    if turn.audit.iter().any(|event| event.org_id != org) {
        return Err(other_org("audit event"));
    }
    if turn
        .model_exchanges
        .iter()
        .any(|exchange| exchange.org_id != org)
    {
        return Err(other_org("model exchange"));
    }
    Ok(())
}

/// Checks that every job scheduled with a new conversation belongs to its org.
///
/// # Errors
/// `InvalidInput` naming the first job of another org.
pub(crate) fn check_job_orgs(conversation: &Conversation, jobs: &[Job]) -> Result<()> {
    match jobs.iter().find(|job| job.org_id != conversation.org_id) {
        Some(job) => Err(Error::invalid_input(
            "a job belongs to another org than its conversation",
        )
        .with_context("conversation_id", conversation.id)
        .with_context("job_id", job.id)),
        None => Ok(()),
    }
}

/// Checks that `message` can be stored by `insert_inbound`.
///
/// # Errors
/// `InvalidInput` for an outbound message.
pub(crate) fn check_inbound(message: &Message) -> Result<()> {
    if message.direction != Direction::Inbound {
        return Err(Error::invalid_input(
            "insert_inbound takes inbound messages only; outbound messages go through commit_turn",
        )
        .with_context("message_id", message.id));
    }
    Ok(())
}

/// Returns the time a lease of `lease` taken at `now` ends.
///
/// # Errors
/// `InvalidInput` when the end is past the range of [`Timestamp`].
pub(crate) fn lease_end(now: Timestamp, lease: Duration) -> Result<Timestamp> {
    chrono::Duration::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "invalid lease of {lease:?}: the lease end is out of the timestamp range"
            ))
        })
}

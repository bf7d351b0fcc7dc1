//! The storage port.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::Timestamp;
use crate::campaign::Campaign;
use crate::contact::ContactPoint;
use crate::conversation::{Conversation, Message};
use crate::error::Result;
use crate::gdpr::{ErasureReport, SubjectRequest};
use crate::id::{CampaignId, ConversationId, JobId, MemberId, OrgId, OutboxId, ProspectId};
use crate::ports::records::{
    AuditEvent, InsertOutcome, Job, JobOutcome, ListOptions, Member, ModelExchange, OutboxEntry,
    OutboxOutcome, Suppression, TurnCommit,
};
use crate::prospect::{Prospect, Version};

/// Persistent state of every org.
///
/// # Contract
/// - Every method that takes an `OrgId` sees only that org's rows: another
///   org's id is `NotFound`, never visible.
/// - Writes that carry a [`Version`] fail with `Conflict` when the stored
///   version differs, and then write nothing.
/// - [`Store::commit_turn`] is atomic: all of it is written or none of it.
/// - Inbound messages are unique on (org, provider, provider message id).
/// - Claims take a lease: a claimed job or outbox entry is invisible to
///   other claims until the lease expires or the claim is finished.
/// - The suppression list holds no contact point in clear: backends store
///   [`SuppressionKey::digest`](crate::gdpr::SuppressionKey::digest) under a
///   per-org key they create on first use and delete with the org.
///
/// # Errors
/// Backends return `Unavailable` (retryable) when the database cannot be
/// reached and `Unexpected` for anything they cannot classify.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Inserts new prospects in one transaction.
    ///
    /// # Errors
    /// `Conflict` when an id is already stored or appears twice in
    /// `prospects`; nothing is written then.
    async fn insert_prospects(&self, prospects: &[Prospect]) -> Result<()>;

    /// Reads a prospect.
    ///
    /// # Errors
    /// `NotFound` when it does not exist in `org`.
    async fn get_prospect(&self, org: OrgId, id: ProspectId) -> Result<Prospect>;

    /// Writes a changed prospect whose `version` is the one read, and returns the new version.
    ///
    /// # Errors
    /// `NotFound`, or `Conflict` when the stored version differs.
    async fn update_prospect(&self, prospect: &Prospect) -> Result<Version>;

    /// Finds the prospect with this contact point.
    async fn find_prospect(&self, org: OrgId, contact: &ContactPoint) -> Result<Option<Prospect>>;

    /// Lists prospects in id order.
    async fn list_prospects(&self, org: OrgId, options: ListOptions) -> Result<Vec<Prospect>>;

    /// Finds the prospect of each contact point, as [`Store::find_prospect`]
    /// does for one, for callers such as the import that look up many at once.
    /// Contact points that no prospect has are absent from the map.
    ///
    /// The default implementation calls `find_prospect` once per distinct
    /// contact point; backends override it to look them up in one call.
    async fn find_prospects_by_contacts(
        &self,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<HashMap<ContactPoint, Prospect>> {
        let mut found = HashMap::new();
        let mut looked_up = HashSet::new();
        for contact in contacts {
            if !looked_up.insert(contact) {
                continue;
            }
            if let Some(prospect) = self.find_prospect(org, contact).await? {
                found.insert(contact.clone(), prospect);
            }
        }
        Ok(found)
    }

    /// Creates or replaces a campaign.
    async fn put_campaign(&self, campaign: &Campaign) -> Result<()>;

    /// Reads a campaign.
    ///
    /// # Errors
    /// `NotFound`.
    async fn get_campaign(&self, org: OrgId, id: CampaignId) -> Result<Campaign>;

    /// Creates a conversation with its first jobs, unless the prospect already
    /// has one in the same campaign. Returns whether it was created.
    async fn insert_conversation(&self, conversation: &Conversation, jobs: &[Job]) -> Result<bool>;

    /// Reads a conversation.
    ///
    /// # Errors
    /// `NotFound`.
    async fn get_conversation(&self, org: OrgId, id: ConversationId) -> Result<Conversation>;

    /// Lists a prospect's conversations, most recently updated first.
    async fn conversations_of(&self, org: OrgId, prospect: ProspectId)
    -> Result<Vec<Conversation>>;

    /// Lists a conversation's messages, oldest first.
    async fn list_messages(&self, org: OrgId, conversation: ConversationId)
    -> Result<Vec<Message>>;

    /// Stores an inbound message unless one with the same provider and
    /// provider message id exists.
    async fn insert_inbound(&self, message: &Message) -> Result<InsertOutcome>;

    /// Lists the conversation's inbound messages not yet processed, oldest first.
    async fn pending_inbound(
        &self,
        org: OrgId,
        conversation: ConversationId,
    ) -> Result<Vec<Message>>;

    /// Writes a whole turn atomically and returns the conversation's new version.
    ///
    /// # Errors
    /// `Conflict` when the conversation or prospect version differs from the
    /// one the turn read; nothing is written then.
    async fn commit_turn(&self, turn: &TurnCommit) -> Result<Version>;

    /// Claims up to `limit` pending jobs due at or before `now`, across orgs,
    /// oldest due first, leasing them to `worker` for `lease`.
    async fn claim_jobs(
        &self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
        worker: &str,
    ) -> Result<Vec<Job>>;

    /// Finishes a claimed job.
    async fn finish_job(&self, org: OrgId, job: JobId, outcome: JobOutcome) -> Result<()>;

    /// Claims up to `limit` pending outbox entries due at or before `now`, across orgs.
    async fn claim_outbox(
        &self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
        worker: &str,
    ) -> Result<Vec<OutboxEntry>>;

    /// Finishes a claimed outbox entry and updates its message's status.
    async fn finish_outbox(
        &self,
        org: OrgId,
        entry: OutboxId,
        outcome: OutboxOutcome,
    ) -> Result<()>;

    /// Lists pending jobs of a conversation, soonest first.
    async fn pending_jobs(&self, org: OrgId, conversation: ConversationId) -> Result<Vec<Job>>;

    /// Whether the contact point is on the suppression list.
    async fn is_suppressed(&self, org: OrgId, contact: &ContactPoint) -> Result<bool>;

    /// Returns the distinct contact points of `contacts` that are on the
    /// suppression list, as [`Store::is_suppressed`] checks one.
    ///
    /// The default implementation calls `is_suppressed` once per distinct
    /// contact point; backends override it to check them in one call.
    async fn suppressed_among(
        &self,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<HashSet<ContactPoint>> {
        let mut suppressed = HashSet::new();
        for contact in contacts {
            if !suppressed.contains(contact) && self.is_suppressed(org, contact).await? {
                suppressed.insert(contact.clone());
            }
        }
        Ok(suppressed)
    }

    /// Adds contact points to the suppression list; existing entries are kept.
    async fn suppress(&self, entries: &[Suppression]) -> Result<()>;

    /// Lists audit events about a prospect, oldest first.
    async fn audit_of(&self, org: OrgId, prospect: ProspectId) -> Result<Vec<AuditEvent>>;

    /// Creates or replaces a member.
    async fn put_member(&self, member: &Member) -> Result<()>;

    /// Reads a member.
    ///
    /// # Errors
    /// `NotFound`.
    async fn get_member(&self, org: OrgId, id: MemberId) -> Result<Member>;

    /// Lists an org's members.
    async fn list_members(&self, org: OrgId) -> Result<Vec<Member>>;

    // The data-subject methods below have default bodies that fail with
    // `Unexpected`, so that a backend written against an earlier version of
    // this trait still compiles; the conformance suite fails until it
    // implements them.

    /// Deletes every row about a prospect: the prospect, its conversations,
    /// messages, pending and finished jobs, outbox entries, model exchanges
    /// and audit events; then adds `suppress` to the suppression list, all
    /// in one transaction. Suppression entries and data-subject requests are
    /// kept. Returns the rows deleted per table.
    ///
    /// # Errors
    /// `NotFound` when the prospect does not exist in `org`; nothing is written then.
    async fn erase_prospect(
        &self,
        _org: OrgId,
        _prospect: ProspectId,
        _suppress: &[Suppression],
    ) -> Result<ErasureReport> {
        Err(unsupported("erase_prospect"))
    }

    /// Appends audit events outside a turn.
    async fn append_audit(&self, _events: &[AuditEvent]) -> Result<()> {
        Err(unsupported("append_audit"))
    }

    /// Lists the model exchanges about a prospect, oldest first.
    async fn model_exchanges_of(
        &self,
        _org: OrgId,
        _prospect: ProspectId,
    ) -> Result<Vec<ModelExchange>> {
        Err(unsupported("model_exchanges_of"))
    }

    /// Creates or replaces a data-subject request.
    async fn put_subject_request(&self, _request: &SubjectRequest) -> Result<()> {
        Err(unsupported("put_subject_request"))
    }

    /// Lists an org's data-subject requests, oldest received first.
    async fn list_subject_requests(&self, _org: OrgId) -> Result<Vec<SubjectRequest>> {
        Err(unsupported("list_subject_requests"))
    }

    /// Lists open data-subject requests due before `before`, across orgs,
    /// soonest due first, at most `limit`.
    async fn open_subject_requests(
        &self,
        _before: Timestamp,
        _limit: usize,
    ) -> Result<Vec<SubjectRequest>> {
        Err(unsupported("open_subject_requests"))
    }

    /// Lists prospects, across orgs, collected before `before` and with no
    /// inbound message at or after `before`, at most `limit`: those a
    /// retention period ending at `before` has expired.
    async fn expired_prospects(
        &self,
        _before: Timestamp,
        _limit: usize,
    ) -> Result<Vec<(OrgId, ProspectId)>> {
        Err(unsupported("expired_prospects"))
    }

    /// Deletes up to `limit` messages, across orgs, received or written
    /// before `before`, with their outbox entries. Returns how many were deleted.
    async fn purge_messages(&self, _before: Timestamp, _limit: usize) -> Result<u64> {
        Err(unsupported("purge_messages"))
    }

    /// Removes a member. Conversations assigned to them keep the id until reassigned.
    ///
    /// # Errors
    /// `NotFound` when the member does not exist in `org`.
    async fn delete_member(&self, _org: OrgId, _id: MemberId) -> Result<()> {
        Err(unsupported("delete_member"))
    }

    /// Deletes every row of an org: prospects and everything about them,
    /// campaigns, members, suppressions and their key, requests and audit events.
    async fn delete_org(&self, _org: OrgId) -> Result<ErasureReport> {
        Err(unsupported("delete_org"))
    }
}

/// The error of a data-subject method a backend does not implement.
fn unsupported(operation: &'static str) -> crate::error::Error {
    crate::error::Error::unexpected(format!(
        "this store backend does not implement {operation}; upgrade it or implement the method"
    ))
    .with_operation(operation)
}

macro_rules! forward_store {
    ($wrapper:ty) => {
        #[async_trait]
        impl<T: Store + ?Sized> Store for $wrapper {
            async fn insert_prospects(&self, prospects: &[Prospect]) -> Result<()> {
                (**self).insert_prospects(prospects).await
            }
            async fn get_prospect(&self, org: OrgId, id: ProspectId) -> Result<Prospect> {
                (**self).get_prospect(org, id).await
            }
            async fn update_prospect(&self, prospect: &Prospect) -> Result<Version> {
                (**self).update_prospect(prospect).await
            }
            async fn find_prospect(
                &self,
                org: OrgId,
                contact: &ContactPoint,
            ) -> Result<Option<Prospect>> {
                (**self).find_prospect(org, contact).await
            }
            async fn list_prospects(
                &self,
                org: OrgId,
                options: ListOptions,
            ) -> Result<Vec<Prospect>> {
                (**self).list_prospects(org, options).await
            }
            async fn find_prospects_by_contacts(
                &self,
                org: OrgId,
                contacts: &[ContactPoint],
            ) -> Result<HashMap<ContactPoint, Prospect>> {
                (**self).find_prospects_by_contacts(org, contacts).await
            }
            async fn put_campaign(&self, campaign: &Campaign) -> Result<()> {
                (**self).put_campaign(campaign).await
            }
            async fn get_campaign(&self, org: OrgId, id: CampaignId) -> Result<Campaign> {
                (**self).get_campaign(org, id).await
            }
            async fn insert_conversation(
                &self,
                conversation: &Conversation,
                jobs: &[Job],
            ) -> Result<bool> {
                (**self).insert_conversation(conversation, jobs).await
            }
            async fn get_conversation(
                &self,
                org: OrgId,
                id: ConversationId,
            ) -> Result<Conversation> {
                (**self).get_conversation(org, id).await
            }
            async fn conversations_of(
                &self,
                org: OrgId,
                prospect: ProspectId,
            ) -> Result<Vec<Conversation>> {
                (**self).conversations_of(org, prospect).await
            }
            async fn list_messages(
                &self,
                org: OrgId,
                conversation: ConversationId,
            ) -> Result<Vec<Message>> {
                (**self).list_messages(org, conversation).await
            }
            async fn insert_inbound(&self, message: &Message) -> Result<InsertOutcome> {
                (**self).insert_inbound(message).await
            }
            async fn pending_inbound(
                &self,
                org: OrgId,
                conversation: ConversationId,
            ) -> Result<Vec<Message>> {
                (**self).pending_inbound(org, conversation).await
            }
            async fn commit_turn(&self, turn: &TurnCommit) -> Result<Version> {
                (**self).commit_turn(turn).await
            }
            async fn claim_jobs(
                &self,
                now: Timestamp,
                limit: usize,
                lease: Duration,
                worker: &str,
            ) -> Result<Vec<Job>> {
                (**self).claim_jobs(now, limit, lease, worker).await
            }
            async fn finish_job(&self, org: OrgId, job: JobId, outcome: JobOutcome) -> Result<()> {
                (**self).finish_job(org, job, outcome).await
            }
            async fn claim_outbox(
                &self,
                now: Timestamp,
                limit: usize,
                lease: Duration,
                worker: &str,
            ) -> Result<Vec<OutboxEntry>> {
                (**self).claim_outbox(now, limit, lease, worker).await
            }
            async fn finish_outbox(
                &self,
                org: OrgId,
                entry: OutboxId,
                outcome: OutboxOutcome,
            ) -> Result<()> {
                (**self).finish_outbox(org, entry, outcome).await
            }
            async fn pending_jobs(
                &self,
                org: OrgId,
                conversation: ConversationId,
            ) -> Result<Vec<Job>> {
                (**self).pending_jobs(org, conversation).await
            }
            async fn is_suppressed(&self, org: OrgId, contact: &ContactPoint) -> Result<bool> {
                (**self).is_suppressed(org, contact).await
            }
            async fn suppressed_among(
                &self,
                org: OrgId,
                contacts: &[ContactPoint],
            ) -> Result<HashSet<ContactPoint>> {
                (**self).suppressed_among(org, contacts).await
            }
            async fn suppress(&self, entries: &[Suppression]) -> Result<()> {
                (**self).suppress(entries).await
            }
            async fn audit_of(&self, org: OrgId, prospect: ProspectId) -> Result<Vec<AuditEvent>> {
                (**self).audit_of(org, prospect).await
            }
            async fn put_member(&self, member: &Member) -> Result<()> {
                (**self).put_member(member).await
            }
            async fn get_member(&self, org: OrgId, id: MemberId) -> Result<Member> {
                (**self).get_member(org, id).await
            }
            async fn list_members(&self, org: OrgId) -> Result<Vec<Member>> {
                (**self).list_members(org).await
            }
            async fn erase_prospect(
                &self,
                org: OrgId,
                prospect: ProspectId,
                suppress: &[Suppression],
            ) -> Result<ErasureReport> {
                (**self).erase_prospect(org, prospect, suppress).await
            }
            async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
                (**self).append_audit(events).await
            }
            async fn model_exchanges_of(
                &self,
                org: OrgId,
                prospect: ProspectId,
            ) -> Result<Vec<ModelExchange>> {
                (**self).model_exchanges_of(org, prospect).await
            }
            async fn put_subject_request(&self, request: &SubjectRequest) -> Result<()> {
                (**self).put_subject_request(request).await
            }
            async fn list_subject_requests(&self, org: OrgId) -> Result<Vec<SubjectRequest>> {
                (**self).list_subject_requests(org).await
            }
            async fn open_subject_requests(
                &self,
                before: Timestamp,
                limit: usize,
            ) -> Result<Vec<SubjectRequest>> {
                (**self).open_subject_requests(before, limit).await
            }
            async fn expired_prospects(
                &self,
                before: Timestamp,
                limit: usize,
            ) -> Result<Vec<(OrgId, ProspectId)>> {
                (**self).expired_prospects(before, limit).await
            }
            async fn purge_messages(&self, before: Timestamp, limit: usize) -> Result<u64> {
                (**self).purge_messages(before, limit).await
            }
            async fn delete_member(&self, org: OrgId, id: MemberId) -> Result<()> {
                (**self).delete_member(org, id).await
            }
            async fn delete_org(&self, org: OrgId) -> Result<ErasureReport> {
                (**self).delete_org(org).await
            }
        }
    };
}

forward_store!(Arc<T>);
forward_store!(Box<T>);

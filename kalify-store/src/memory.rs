//! An in-process [`Store`] that keeps everything in maps behind one lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::time::Duration;

use async_trait::async_trait;
use kalify_core::campaign::Campaign;
use kalify_core::contact::ContactPoint;
use kalify_core::conversation::{Conversation, DeliveryStatus, Direction, Message};
use kalify_core::gdpr::{ErasureReport, RequestOutcome, SubjectRequest, SuppressionKey};
use kalify_core::ports::{
    AuditEvent, CancelScope, InsertOutcome, Job, JobOutcome, ListOptions, Member, ModelExchange,
    OutboxEntry, OutboxOutcome, OutboxStatus, Store, Suppression, TurnCommit,
};
use kalify_core::prospect::{Prospect, Version};
use kalify_core::{
    CampaignId, ConversationId, Error, JobId, MemberId, MessageId, OrgId, OutboxId, ProspectId,
    Result, Timestamp,
};
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::common::{
    DUPLICATE_PROSPECT, check_inbound, check_job_orgs, check_turn_orgs, lease_end,
};

const ADAPTER: &str = "memory";

/// A [`Store`] that keeps every record in memory, for tests, simulations
/// and single-process demos. It passes the same conformance suite as the
/// SQLite store.
///
/// One `tokio` read-write lock guards all the data: reads share it, and
/// every write method holds it exclusively for its whole duration, which
/// makes each write atomic. Clones of the data are returned, never
/// references into it.
///
/// # Limitations
/// - Nothing survives the process.
/// - Lookups by contact point and claims scan the org's prospects or every
///   job and outbox entry, so their cost grows linearly with the data.
///
/// `Debug` shows no stored data.
#[derive(Default)]
pub struct MemoryStore {
    state: RwLock<State>,
}

impl MemoryStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MemoryStore")
    }
}

/// Whether a job can still run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JobStatus {
    Pending,
    Done,
    Cancelled,
}

struct StoredJob {
    job: Job,
    status: JobStatus,
    lease_until: Option<Timestamp>,
}

struct StoredEntry {
    entry: OutboxEntry,
    lease_until: Option<Timestamp>,
}

/// Returns true when a record leased until `lease_until` is free at `now`.
fn lease_expired(lease_until: Option<Timestamp>, now: Timestamp) -> bool {
    lease_until.is_none_or(|until| until <= now)
}

#[derive(Default)]
struct State {
    prospects: BTreeMap<(OrgId, ProspectId), Prospect>,
    campaigns: HashMap<(OrgId, CampaignId), Campaign>,
    conversations: HashMap<(OrgId, ConversationId), Conversation>,
    /// Conversation ids of each prospect, in insertion order.
    prospect_conversations: HashMap<(OrgId, ProspectId), Vec<ConversationId>>,
    messages: HashMap<(OrgId, MessageId), Message>,
    /// Message ids of each conversation, in insertion order.
    conversation_messages: HashMap<(OrgId, ConversationId), Vec<MessageId>>,
    /// (org, provider, provider message id) of every inbound message.
    inbound_keys: HashSet<(OrgId, String, String)>,
    jobs: HashMap<(OrgId, JobId), StoredJob>,
    /// Job ids of each conversation, in insertion order.
    conversation_jobs: HashMap<(OrgId, ConversationId), Vec<JobId>>,
    job_keys: HashSet<(OrgId, String)>,
    outbox: HashMap<(OrgId, OutboxId), StoredEntry>,
    /// Outbox ids of each conversation, in insertion order.
    conversation_outbox: HashMap<(OrgId, ConversationId), Vec<OutboxId>>,
    /// Suppression digests and their reason and time.
    suppressions: HashMap<(OrgId, String), (String, Timestamp)>,
    /// The suppression-list key of each org that has suppressed a contact point.
    suppression_keys: HashMap<OrgId, SuppressionKey>,
    /// Model exchanges in insertion order.
    model_exchanges: Vec<ModelExchange>,
    /// Data-subject requests by org and id.
    requests: BTreeMap<(OrgId, Uuid), SubjectRequest>,
    /// Audit events in insertion order.
    audit: Vec<AuditEvent>,
    members: BTreeMap<(OrgId, MemberId), Member>,
}

/// Returns the inbound de-duplication key of `message`, when it has one.
fn inbound_key(message: &Message) -> Option<(OrgId, String, String)> {
    if message.direction != Direction::Inbound {
        return None;
    }
    match (&message.provider, &message.provider_message_id) {
        (Some(provider), Some(id)) => Some((message.org_id, provider.clone(), id.clone())),
        _ => None,
    }
}

impl State {
    /// The digest of `contact` in `org`'s suppression list, or `None` when
    /// the org has no key yet and so nothing suppressed.
    fn digest(&self, org: OrgId, contact: &ContactPoint) -> Option<String> {
        self.suppression_keys
            .get(&org)
            .map(|key| key.digest(contact))
    }

    /// Creates `org`'s suppression key when it has none.
    fn ensure_key(&mut self, org: OrgId) -> Result<()> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.suppression_keys.entry(org) {
            slot.insert(SuppressionKey::generate()?);
        }
        Ok(())
    }

    /// Adds `entry`, keeping an existing entry's reason and time. The
    /// caller has created the org's key.
    fn add_suppression(&mut self, entry: &Suppression) {
        if let Some(digest) = self.digest(entry.org_id, &entry.contact) {
            self.suppressions
                .entry((entry.org_id, digest))
                .or_insert_with(|| (entry.reason.clone(), entry.at));
        }
    }

    fn is_suppressed(&self, org: OrgId, contact: &ContactPoint) -> bool {
        self.digest(org, contact)
            .is_some_and(|digest| self.suppressions.contains_key(&(org, digest)))
    }

    /// Deletes a prospect and every record about it; returns the rows deleted per table.
    fn erase(&mut self, org: OrgId, prospect: ProspectId) -> ErasureReport {
        let mut report = ErasureReport::default();
        if self.prospects.remove(&(org, prospect)).is_none() {
            return report;
        }
        report.add("prospects", 1);
        let conversations = self
            .prospect_conversations
            .remove(&(org, prospect))
            .unwrap_or_default();
        for conversation in &conversations {
            self.conversations.remove(&(org, *conversation));
            report.add("conversations", 1);
            for id in self
                .conversation_messages
                .remove(&(org, *conversation))
                .unwrap_or_default()
            {
                if let Some(message) = self.messages.remove(&(org, id)) {
                    if let Some(key) = inbound_key(&message) {
                        self.inbound_keys.remove(&key);
                    }
                    report.add("messages", 1);
                }
            }
            for id in self
                .conversation_jobs
                .remove(&(org, *conversation))
                .unwrap_or_default()
            {
                if let Some(stored) = self.jobs.remove(&(org, id)) {
                    self.job_keys.remove(&(org, stored.job.dedupe_key));
                    report.add("jobs", 1);
                }
            }
            for id in self
                .conversation_outbox
                .remove(&(org, *conversation))
                .unwrap_or_default()
            {
                if self.outbox.remove(&(org, id)).is_some() {
                    report.add("outbox", 1);
                }
            }
        }
        let before = self.audit.len();
        self.audit
            .retain(|event| !(event.org_id == org && event.prospect_id == Some(prospect)));
        report.add("audit_events", (before - self.audit.len()) as u64);
        let before = self.model_exchanges.len();
        self.model_exchanges
            .retain(|exchange| !(exchange.org_id == org && exchange.prospect_id == prospect));
        report.add(
            "model_exchanges",
            (before - self.model_exchanges.len()) as u64,
        );
        report
    }

    fn has_conversation(&self, org: OrgId, id: ConversationId) -> bool {
        self.conversations.contains_key(&(org, id))
    }

    /// Inserts `job` unless its dedupe key exists in its org. The caller has
    /// checked that the job's conversation exists.
    fn schedule(&mut self, job: &Job) {
        if self.jobs.contains_key(&(job.org_id, job.id))
            || !self.job_keys.insert((job.org_id, job.dedupe_key.clone()))
        {
            return;
        }
        self.conversation_jobs
            .entry((job.org_id, job.conversation_id))
            .or_default()
            .push(job.id);
        self.jobs.insert(
            (job.org_id, job.id),
            StoredJob {
                job: job.clone(),
                status: JobStatus::Pending,
                lease_until: None,
            },
        );
    }

    fn insert_message(&mut self, message: &Message) {
        if let Some(key) = inbound_key(message) {
            self.inbound_keys.insert(key);
        }
        self.conversation_messages
            .entry((message.org_id, message.conversation_id))
            .or_default()
            .push(message.id);
        self.messages
            .insert((message.org_id, message.id), message.clone());
    }

    fn set_message_status(&mut self, org: OrgId, id: MessageId, status: DeliveryStatus) {
        if let Some(message) = self.messages.get_mut(&(org, id)) {
            message.status = status;
        }
    }

    /// Cancels the pending jobs and outbox entries of `conversations`, and
    /// the messages of those entries.
    fn cancel(&mut self, org: OrgId, conversations: &[ConversationId]) {
        for conversation in conversations {
            let job_ids = self
                .conversation_jobs
                .get(&(org, *conversation))
                .cloned()
                .unwrap_or_default();
            for id in job_ids {
                if let Some(stored) = self.jobs.get_mut(&(org, id))
                    && stored.status == JobStatus::Pending
                {
                    stored.status = JobStatus::Cancelled;
                    stored.lease_until = None;
                }
            }

            let entry_ids = self
                .conversation_outbox
                .get(&(org, *conversation))
                .cloned()
                .unwrap_or_default();
            for id in entry_ids {
                let Some(stored) = self.outbox.get_mut(&(org, id)) else {
                    continue;
                };
                if stored.entry.status != OutboxStatus::Pending {
                    continue;
                }
                stored.entry.status = OutboxStatus::Cancelled;
                stored.lease_until = None;
                let message_id = stored.entry.message_id;
                self.set_message_status(org, message_id, DeliveryStatus::Cancelled);
            }
        }
    }

    /// Checks everything in `turn` that could fail, so that applying it cannot.
    /// True when `conversation`'s id is taken, or its prospect has a
    /// conversation for the same campaign.
    fn conversation_taken(&self, conversation: &Conversation) -> bool {
        let org = conversation.org_id;
        if self.has_conversation(org, conversation.id) {
            return true;
        }
        let siblings = self
            .prospect_conversations
            .get(&(org, conversation.prospect_id));
        siblings.into_iter().flatten().any(|id| {
            self.conversations
                .get(&(org, *id))
                .is_some_and(|other| other.campaign_id == conversation.campaign_id)
        })
    }

    fn check_turn(&self, turn: &TurnCommit) -> Result<()> {
        check_turn_orgs(turn)?;
        let org = turn.conversation.org_id;
        // A conversation the turn creates counts as existing for its records.
        let known = |id: ConversationId| {
            self.has_conversation(org, id)
                || (turn.create_conversation && id == turn.conversation.id)
        };

        if turn.create_conversation {
            let conversation = &turn.conversation;
            if !self
                .prospects
                .contains_key(&(org, conversation.prospect_id))
            {
                return Err(not_found("prospect", org)
                    .with_context("prospect_id", conversation.prospect_id));
            }
            if self.conversation_taken(conversation) {
                return Err(Error::conflict(
                    "the conversation the turn creates exists already, or its prospect has one for the same campaign",
                ));
            }
        } else {
            let stored = self
                .conversations
                .get(&(org, turn.conversation.id))
                .ok_or_else(|| not_found("conversation", org))?;
            if stored.version != turn.conversation.version {
                return Err(Error::conflict(format!(
                    "the conversation changed since it was read: stored {}, turn read {}",
                    stored.version, turn.conversation.version
                )));
            }
        }
        if let Some(prospect) = &turn.prospect {
            let stored = self
                .prospects
                .get(&(org, prospect.id))
                .ok_or_else(|| not_found("prospect", org))?;
            if stored.version != prospect.version {
                return Err(Error::conflict(format!(
                    "the prospect changed since it was read: stored {}, turn read {}",
                    stored.version, prospect.version
                ))
                .with_context("prospect_id", prospect.id));
            }
        }

        let mut new_messages = HashSet::new();
        let mut new_inbound_keys = HashSet::new();
        for message in &turn.messages {
            if self.messages.contains_key(&(org, message.id)) || !new_messages.insert(message.id) {
                return Err(Error::conflict("a message of the turn exists")
                    .with_context("message_id", message.id));
            }
            if let Some(key) = inbound_key(message)
                && (self.inbound_keys.contains(&key) || !new_inbound_keys.insert(key))
            {
                return Err(Error::conflict(
                    "an inbound message with the same provider message id exists",
                )
                .with_context("message_id", message.id));
            }
            if !known(message.conversation_id) {
                return Err(not_found("conversation of a message", org)
                    .with_context("message_id", message.id));
            }
        }

        let mut new_entries = HashSet::new();
        for entry in &turn.outbox {
            if self.outbox.contains_key(&(org, entry.id)) || !new_entries.insert(entry.id) {
                return Err(Error::conflict("an outbox entry of the turn exists")
                    .with_context("outbox_id", entry.id));
            }
            if !self.messages.contains_key(&(org, entry.message_id))
                && !new_messages.contains(&entry.message_id)
            {
                return Err(not_found("message of an outbox entry", org)
                    .with_context("outbox_id", entry.id));
            }
            if !known(entry.conversation_id) {
                return Err(not_found("conversation of an outbox entry", org)
                    .with_context("outbox_id", entry.id));
            }
        }

        if let Some(id) = turn.completed_job
            && !self
                .jobs
                .get(&(org, id))
                .is_some_and(|stored| stored.status == JobStatus::Pending)
        {
            return Err(Error::conflict(
                "the job the turn completes is no longer pending; another worker finished it",
            )
            .with_context("job_id", id));
        }

        if let Some(job) = turn.jobs.iter().find(|job| !known(job.conversation_id)) {
            return Err(not_found("conversation of a job", org).with_context("job_id", job.id));
        }
        Ok(())
    }

    /// Applies a turn that [`State::check_turn`] accepted, and returns the
    /// conversation's new version.
    fn apply_turn(&mut self, turn: &TurnCommit) -> Version {
        let org = turn.conversation.org_id;

        let version = turn.conversation.version.next();
        let mut conversation = turn.conversation.clone();
        conversation.version = version;
        if turn.create_conversation {
            self.prospect_conversations
                .entry((org, conversation.prospect_id))
                .or_default()
                .push(conversation.id);
        }
        self.conversations
            .insert((org, conversation.id), conversation);

        if let Some(prospect) = &turn.prospect {
            let mut prospect = prospect.clone();
            prospect.version = prospect.version.next();
            self.prospects.insert((org, prospect.id), prospect);
        }

        // The completed job is finished before the cancellation, so that it
        // ends as done rather than cancelled.
        if let Some(id) = turn.completed_job
            && let Some(stored) = self.jobs.get_mut(&(org, id))
            && stored.status == JobStatus::Pending
        {
            stored.status = JobStatus::Done;
            stored.lease_until = None;
        }

        match turn.cancel {
            CancelScope::Nothing => {}
            CancelScope::Conversation => self.cancel(org, &[turn.conversation.id]),
            CancelScope::Prospect => {
                let conversations = self
                    .prospect_conversations
                    .get(&(org, turn.conversation.prospect_id))
                    .cloned()
                    .unwrap_or_default();
                self.cancel(org, &conversations);
            }
        }

        for message in &turn.messages {
            self.insert_message(message);
        }
        for id in &turn.processed_inbound {
            if let Some(message) = self.messages.get_mut(&(org, *id)) {
                message.processed = true;
            }
        }
        for entry in &turn.outbox {
            self.conversation_outbox
                .entry((org, entry.conversation_id))
                .or_default()
                .push(entry.id);
            self.outbox.insert(
                (org, entry.id),
                StoredEntry {
                    entry: entry.clone(),
                    lease_until: None,
                },
            );
        }
        for job in &turn.jobs {
            self.schedule(job);
        }

        // Lifts come before additions, so a contact point named in both stays suppressed.
        for contact in &turn.unsuppress {
            if let Some(digest) = self.digest(org, contact) {
                self.suppressions.remove(&(org, digest));
            }
        }
        for entry in &turn.suppress {
            self.add_suppression(entry);
        }

        self.audit.extend(turn.audit.iter().cloned());
        self.model_exchanges
            .extend(turn.model_exchanges.iter().cloned());
        version
    }
}

/// Returns the error for a record that does not exist in `org`.
fn not_found(record: &'static str, org: OrgId) -> Error {
    Error::not_found(format!("{record} not found")).with_context("org_id", org)
}

/// Tags an error with this adapter and `operation`.
fn tag(operation: &'static str) -> impl FnOnce(Error) -> Error {
    move |error| error.with_adapter(ADAPTER).with_operation(operation)
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert_prospects(&self, prospects: &[Prospect]) -> Result<()> {
        let mut state = self.state.write().await;
        let mut batch = HashSet::new();
        for prospect in prospects {
            let key = (prospect.org_id, prospect.id);
            if state.prospects.contains_key(&key) || !batch.insert(key) {
                return Err(Error::conflict(DUPLICATE_PROSPECT)
                    .with_context("org_id", prospect.org_id)
                    .with_context("prospect_id", prospect.id))
                .map_err(tag("insert_prospects"));
            }
        }
        for prospect in prospects {
            state
                .prospects
                .insert((prospect.org_id, prospect.id), prospect.clone());
        }
        Ok(())
    }

    async fn get_prospect(&self, org: OrgId, id: ProspectId) -> Result<Prospect> {
        let state = self.state.read().await;
        state
            .prospects
            .get(&(org, id))
            .cloned()
            .ok_or_else(|| not_found("prospect", org).with_context("prospect_id", id))
            .map_err(tag("get_prospect"))
    }

    async fn update_prospect(&self, prospect: &Prospect) -> Result<Version> {
        let mut state = self.state.write().await;
        let org = prospect.org_id;
        let Some(stored) = state.prospects.get_mut(&(org, prospect.id)) else {
            return Err(not_found("prospect", org).with_context("prospect_id", prospect.id))
                .map_err(tag("update_prospect"));
        };
        if stored.version != prospect.version {
            return Err(Error::conflict(format!(
                "the prospect changed since it was read: stored {}, update read {}",
                stored.version, prospect.version
            ))
            .with_context("org_id", org)
            .with_context("prospect_id", prospect.id))
            .map_err(tag("update_prospect"));
        }
        let version = prospect.version.next();
        *stored = prospect.clone();
        stored.version = version;
        Ok(version)
    }

    async fn find_prospect(&self, org: OrgId, contact: &ContactPoint) -> Result<Option<Prospect>> {
        let state = self.state.read().await;
        let start = (org, ProspectId::from_uuid(Uuid::nil()));
        let found = state
            .prospects
            .range(start..)
            .take_while(|((prospect_org, _), _)| *prospect_org == org)
            .map(|(_, prospect)| prospect)
            .find(|prospect| match contact {
                ContactPoint::Phone(phone) => prospect.phone.as_ref() == Some(phone),
                ContactPoint::Email(email) => prospect.email.as_ref() == Some(email),
                ContactPoint::Messenger(psid) => prospect.messenger.as_ref() == Some(psid),
            });
        Ok(found.cloned())
    }

    async fn find_prospects_by_contacts(
        &self,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<HashMap<ContactPoint, Prospect>> {
        let requested: HashSet<&ContactPoint> = contacts.iter().collect();
        let mut found = HashMap::new();
        if requested.is_empty() {
            return Ok(found);
        }
        let state = self.state.read().await;
        let start = (org, ProspectId::from_uuid(Uuid::nil()));
        // One pass in id order, so each contact point keeps the oldest
        // prospect that has it, as `find_prospect` returns.
        let org_prospects = state
            .prospects
            .range(start..)
            .take_while(|((prospect_org, _), _)| *prospect_org == org)
            .map(|(_, p)| p);
        for prospect in org_prospects {
            for contact in prospect.contact_points() {
                if requested.contains(&contact) && !found.contains_key(&contact) {
                    found.insert(contact, prospect.clone());
                }
            }
            if found.len() == requested.len() {
                break;
            }
        }
        Ok(found)
    }

    async fn list_prospects(&self, org: OrgId, options: ListOptions) -> Result<Vec<Prospect>> {
        let state = self.state.read().await;
        let start = match options.after {
            Some(after) => Bound::Excluded((org, after)),
            None => Bound::Included((org, ProspectId::from_uuid(Uuid::nil()))),
        };
        let limit = if options.limit == 0 {
            usize::MAX
        } else {
            options.limit
        };
        Ok(state
            .prospects
            .range((start, Bound::Unbounded))
            .take_while(|((prospect_org, _), _)| *prospect_org == org)
            .take(limit)
            .map(|(_, prospect)| prospect.clone())
            .collect())
    }

    async fn put_campaign(&self, campaign: &Campaign) -> Result<()> {
        let mut state = self.state.write().await;
        state
            .campaigns
            .insert((campaign.org_id, campaign.id), campaign.clone());
        Ok(())
    }

    async fn get_campaign(&self, org: OrgId, id: CampaignId) -> Result<Campaign> {
        let state = self.state.read().await;
        state
            .campaigns
            .get(&(org, id))
            .cloned()
            .ok_or_else(|| not_found("campaign", org).with_context("campaign_id", id))
            .map_err(tag("get_campaign"))
    }

    async fn insert_conversation(&self, conversation: &Conversation, jobs: &[Job]) -> Result<bool> {
        let operation = tag("insert_conversation");
        check_job_orgs(conversation, jobs).map_err(operation)?;
        let mut state = self.state.write().await;
        let org = conversation.org_id;

        if !state
            .prospects
            .contains_key(&(org, conversation.prospect_id))
        {
            return Err(
                not_found("prospect", org).with_context("prospect_id", conversation.prospect_id)
            )
            .map_err(tag("insert_conversation"));
        }
        if let Some(job) = jobs.iter().find(|job| {
            job.conversation_id != conversation.id
                && !state.has_conversation(org, job.conversation_id)
        }) {
            return Err(not_found("conversation of a job", org).with_context("job_id", job.id))
                .map_err(tag("insert_conversation"));
        }
        if state.conversation_taken(conversation) {
            return Ok(false);
        }

        state
            .conversations
            .insert((org, conversation.id), conversation.clone());
        state
            .prospect_conversations
            .entry((org, conversation.prospect_id))
            .or_default()
            .push(conversation.id);
        for job in jobs {
            state.schedule(job);
        }
        Ok(true)
    }

    async fn get_conversation(&self, org: OrgId, id: ConversationId) -> Result<Conversation> {
        let state = self.state.read().await;
        state
            .conversations
            .get(&(org, id))
            .cloned()
            .ok_or_else(|| not_found("conversation", org).with_context("conversation_id", id))
            .map_err(tag("get_conversation"))
    }

    async fn conversations_of(
        &self,
        org: OrgId,
        prospect: ProspectId,
    ) -> Result<Vec<Conversation>> {
        let state = self.state.read().await;
        let ids = state.prospect_conversations.get(&(org, prospect));
        let mut conversations: Vec<Conversation> = ids
            .into_iter()
            .flatten()
            .filter_map(|id| state.conversations.get(&(org, *id)).cloned())
            .collect();
        conversations.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        Ok(conversations)
    }

    async fn list_messages(
        &self,
        org: OrgId,
        conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        let state = self.state.read().await;
        let ids = state.conversation_messages.get(&(org, conversation));
        let mut messages: Vec<Message> = ids
            .into_iter()
            .flatten()
            .filter_map(|id| state.messages.get(&(org, *id)).cloned())
            .collect();
        messages.sort_by(|a, b| a.at.cmp(&b.at).then(a.id.cmp(&b.id)));
        Ok(messages)
    }

    async fn insert_inbound(&self, message: &Message) -> Result<InsertOutcome> {
        check_inbound(message).map_err(tag("insert_inbound"))?;
        let mut state = self.state.write().await;
        let org = message.org_id;
        if !state.has_conversation(org, message.conversation_id) {
            return Err(not_found("conversation", org)
                .with_context("conversation_id", message.conversation_id))
            .map_err(tag("insert_inbound"));
        }
        if state.messages.contains_key(&(org, message.id)) {
            return Ok(InsertOutcome::Duplicate);
        }
        if inbound_key(message).is_some_and(|key| state.inbound_keys.contains(&key)) {
            return Ok(InsertOutcome::Duplicate);
        }
        state.insert_message(message);
        Ok(InsertOutcome::Inserted)
    }

    async fn pending_inbound(
        &self,
        org: OrgId,
        conversation: ConversationId,
    ) -> Result<Vec<Message>> {
        let mut messages = self.list_messages(org, conversation).await?;
        messages.retain(|message| message.direction == Direction::Inbound && !message.processed);
        Ok(messages)
    }

    async fn commit_turn(&self, turn: &TurnCommit) -> Result<Version> {
        let mut state = self.state.write().await;
        state.check_turn(turn).map_err(|error| {
            error
                .with_adapter(ADAPTER)
                .with_operation("commit_turn")
                .with_context("conversation_id", turn.conversation.id)
        })?;
        if !turn.suppress.is_empty() {
            state
                .ensure_key(turn.conversation.org_id)
                .map_err(tag("commit_turn"))?;
        }
        Ok(state.apply_turn(turn))
    }

    async fn claim_jobs(
        &self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
        worker: &str,
    ) -> Result<Vec<Job>> {
        let until = lease_end(now, lease).map_err(tag("claim_jobs"))?;
        let mut state = self.state.write().await;
        let mut due: Vec<(Timestamp, JobId, OrgId)> = state
            .jobs
            .values()
            .filter(|stored| {
                stored.status == JobStatus::Pending
                    && stored.job.due_at <= now
                    && lease_expired(stored.lease_until, now)
            })
            .map(|stored| (stored.job.due_at, stored.job.id, stored.job.org_id))
            .collect();
        due.sort();
        due.truncate(limit);

        let mut claimed = Vec::with_capacity(due.len());
        for (_, id, org) in due {
            if let Some(stored) = state.jobs.get_mut(&(org, id)) {
                stored.job.attempts = stored.job.attempts.saturating_add(1);
                stored.lease_until = Some(until);
                claimed.push(stored.job.clone());
            }
        }
        tracing::trace!(target: "kalify::store", adapter = ADAPTER, worker, claimed = claimed.len(), "claimed jobs");
        Ok(claimed)
    }

    async fn finish_job(&self, org: OrgId, job: JobId, outcome: JobOutcome) -> Result<()> {
        let mut state = self.state.write().await;
        let Some(stored) = state.jobs.get_mut(&(org, job)) else {
            return Err(not_found("job", org).with_context("job_id", job))
                .map_err(tag("finish_job"));
        };
        if stored.status != JobStatus::Pending {
            return Ok(());
        }
        stored.lease_until = None;
        match outcome {
            JobOutcome::Done => stored.status = JobStatus::Done,
            JobOutcome::Cancelled => stored.status = JobStatus::Cancelled,
            JobOutcome::RetryAt(at) => stored.job.due_at = at,
        }
        Ok(())
    }

    async fn claim_outbox(
        &self,
        now: Timestamp,
        limit: usize,
        lease: Duration,
        worker: &str,
    ) -> Result<Vec<OutboxEntry>> {
        let until = lease_end(now, lease).map_err(tag("claim_outbox"))?;
        let mut state = self.state.write().await;
        let mut due: Vec<(Timestamp, OutboxId, OrgId)> = state
            .outbox
            .values()
            .filter(|stored| {
                stored.entry.status == OutboxStatus::Pending
                    && stored.entry.next_attempt_at <= now
                    && lease_expired(stored.lease_until, now)
            })
            .map(|stored| {
                (
                    stored.entry.next_attempt_at,
                    stored.entry.id,
                    stored.entry.org_id,
                )
            })
            .collect();
        due.sort();
        due.truncate(limit);

        let mut claimed = Vec::with_capacity(due.len());
        for (_, id, org) in due {
            if let Some(stored) = state.outbox.get_mut(&(org, id)) {
                stored.entry.attempts = stored.entry.attempts.saturating_add(1);
                // A lease still set is one that expired without a finish:
                // the earlier attempt may have reached the provider.
                if stored.lease_until.is_some() {
                    stored.entry.unconfirmed = true;
                }
                stored.entry.first_attempt_at.get_or_insert(now);
                stored.lease_until = Some(until);
                claimed.push(stored.entry.clone());
            }
        }
        tracing::trace!(target: "kalify::store", adapter = ADAPTER, worker, claimed = claimed.len(), "claimed outbox entries");
        Ok(claimed)
    }

    async fn finish_outbox(
        &self,
        org: OrgId,
        entry: OutboxId,
        outcome: OutboxOutcome,
    ) -> Result<()> {
        let mut guard = self.state.write().await;
        let state = &mut *guard;
        let Some(stored) = state.outbox.get_mut(&(org, entry)) else {
            return Err(not_found("outbox entry", org).with_context("outbox_id", entry))
                .map_err(tag("finish_outbox"));
        };
        let message = state.messages.get_mut(&(org, stored.entry.message_id));
        let pending = stored.entry.status == OutboxStatus::Pending;
        let (entry_status, message_status) = match outcome {
            // The provider accepted the message, so Sent is recorded even on
            // an entry cancelled while it was being delivered.
            OutboxOutcome::Sent {
                provider,
                provider_message_id,
            } => {
                if let Some(message) = message {
                    message.status = DeliveryStatus::Sent;
                    message.provider = Some(provider);
                    message.provider_message_id = Some(provider_message_id);
                }
                stored.entry.status = OutboxStatus::Sent;
                stored.entry.unconfirmed = false;
                stored.lease_until = None;
                return Ok(());
            }
            _ if !pending => return Ok(()),
            OutboxOutcome::RetryAt(at) => {
                stored.entry.next_attempt_at = at;
                stored.lease_until = None;
                return Ok(());
            }
            OutboxOutcome::Unconfirmed(at) => {
                stored.entry.next_attempt_at = at;
                stored.entry.unconfirmed = true;
                stored.lease_until = None;
                return Ok(());
            }
            OutboxOutcome::Failed(_) => (OutboxStatus::Failed, DeliveryStatus::Failed),
            OutboxOutcome::Cancelled(_) => (OutboxStatus::Cancelled, DeliveryStatus::Cancelled),
        };
        stored.entry.status = entry_status;
        stored.lease_until = None;
        if let Some(message) = message {
            message.status = message_status;
        }
        Ok(())
    }

    async fn pending_jobs(&self, org: OrgId, conversation: ConversationId) -> Result<Vec<Job>> {
        let state = self.state.read().await;
        let ids = state.conversation_jobs.get(&(org, conversation));
        let mut jobs: Vec<Job> = ids
            .into_iter()
            .flatten()
            .filter_map(|id| state.jobs.get(&(org, *id)))
            .filter(|stored| stored.status == JobStatus::Pending)
            .map(|stored| stored.job.clone())
            .collect();
        jobs.sort_by(|a, b| a.due_at.cmp(&b.due_at).then(a.id.cmp(&b.id)));
        Ok(jobs)
    }

    async fn is_suppressed(&self, org: OrgId, contact: &ContactPoint) -> Result<bool> {
        let state = self.state.read().await;
        Ok(state.is_suppressed(org, contact))
    }

    async fn suppressed_among(
        &self,
        org: OrgId,
        contacts: &[ContactPoint],
    ) -> Result<HashSet<ContactPoint>> {
        let state = self.state.read().await;
        Ok(contacts
            .iter()
            .filter(|contact| state.is_suppressed(org, contact))
            .cloned()
            .collect())
    }

    async fn suppress(&self, entries: &[Suppression]) -> Result<()> {
        let mut state = self.state.write().await;
        for entry in entries {
            state.ensure_key(entry.org_id).map_err(tag("suppress"))?;
        }
        for entry in entries {
            state.add_suppression(entry);
        }
        Ok(())
    }

    async fn audit_of(&self, org: OrgId, prospect: ProspectId) -> Result<Vec<AuditEvent>> {
        let state = self.state.read().await;
        let mut events: Vec<AuditEvent> = state
            .audit
            .iter()
            .filter(|event| event.org_id == org && event.prospect_id == Some(prospect))
            .cloned()
            .collect();
        // A stable sort keeps insertion order among events of the same time.
        events.sort_by_key(|event| event.at);
        Ok(events)
    }

    async fn put_member(&self, member: &Member) -> Result<()> {
        let mut state = self.state.write().await;
        state
            .members
            .insert((member.org_id, member.id), member.clone());
        Ok(())
    }

    async fn get_member(&self, org: OrgId, id: MemberId) -> Result<Member> {
        let state = self.state.read().await;
        state
            .members
            .get(&(org, id))
            .cloned()
            .ok_or_else(|| not_found("member", org).with_context("member_id", id))
            .map_err(tag("get_member"))
    }

    async fn list_members(&self, org: OrgId) -> Result<Vec<Member>> {
        let state = self.state.read().await;
        let start = (org, MemberId::from_uuid(Uuid::nil()));
        Ok(state
            .members
            .range(start..)
            .take_while(|((member_org, _), _)| *member_org == org)
            .map(|(_, member)| member.clone())
            .collect())
    }

    async fn erase_prospect(
        &self,
        org: OrgId,
        prospect: ProspectId,
        suppress: &[Suppression],
    ) -> Result<ErasureReport> {
        let mut state = self.state.write().await;
        if !state.prospects.contains_key(&(org, prospect)) {
            return Err(not_found("prospect", org).with_context("prospect_id", prospect))
                .map_err(tag("erase_prospect"));
        }
        if suppress.iter().any(|entry| entry.org_id != org) {
            return Err(Error::invalid_input(
                "a suppression entry belongs to another org than the erased prospect",
            ))
            .map_err(tag("erase_prospect"));
        }
        if !suppress.is_empty() {
            state.ensure_key(org).map_err(tag("erase_prospect"))?;
        }
        let report = state.erase(org, prospect);
        for entry in suppress {
            state.add_suppression(entry);
        }
        Ok(report)
    }

    async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        let mut state = self.state.write().await;
        state.audit.extend(events.iter().cloned());
        Ok(())
    }

    async fn model_exchanges_of(
        &self,
        org: OrgId,
        prospect: ProspectId,
    ) -> Result<Vec<ModelExchange>> {
        let state = self.state.read().await;
        Ok(state
            .model_exchanges
            .iter()
            .filter(|exchange| exchange.org_id == org && exchange.prospect_id == prospect)
            .cloned()
            .collect())
    }

    async fn put_subject_request(&self, request: &SubjectRequest) -> Result<()> {
        let mut state = self.state.write().await;
        state
            .requests
            .insert((request.org_id, request.id), request.clone());
        Ok(())
    }

    async fn list_subject_requests(&self, org: OrgId) -> Result<Vec<SubjectRequest>> {
        let state = self.state.read().await;
        let mut requests: Vec<SubjectRequest> = state
            .requests
            .iter()
            .filter(|((request_org, _), _)| *request_org == org)
            .map(|(_, r)| r.clone())
            .collect();
        requests.sort_by(|a, b| a.received_at.cmp(&b.received_at).then(a.id.cmp(&b.id)));
        Ok(requests)
    }

    async fn open_subject_requests(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<SubjectRequest>> {
        let state = self.state.read().await;
        let mut requests: Vec<SubjectRequest> = state
            .requests
            .values()
            .filter(|request| request.outcome == RequestOutcome::Open && request.due_at < before)
            .cloned()
            .collect();
        requests.sort_by(|a, b| a.due_at.cmp(&b.due_at).then(a.id.cmp(&b.id)));
        requests.truncate(limit);
        Ok(requests)
    }

    async fn expired_prospects(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(OrgId, ProspectId)>> {
        let state = self.state.read().await;
        let mut last_inbound: HashMap<(OrgId, ProspectId), Timestamp> = HashMap::new();
        for message in state
            .messages
            .values()
            .filter(|message| message.direction == Direction::Inbound)
        {
            let latest = last_inbound
                .entry((message.org_id, message.prospect_id))
                .or_insert(message.at);
            *latest = (*latest).max(message.at);
        }
        Ok(state
            .prospects
            .iter()
            .filter(|(key, prospect)| {
                prospect.created_at < before
                    && last_inbound.get(*key).is_none_or(|latest| *latest < before)
            })
            .map(|(key, _)| *key)
            .take(limit)
            .collect())
    }

    async fn purge_messages(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let mut state = self.state.write().await;
        let old: Vec<(OrgId, MessageId, ConversationId)> = state
            .messages
            .values()
            .filter(|message| message.at < before)
            .map(|message| (message.org_id, message.id, message.conversation_id))
            .take(limit)
            .collect();
        for (org, id, conversation) in &old {
            if let Some(message) = state.messages.remove(&(*org, *id))
                && let Some(key) = inbound_key(&message)
            {
                state.inbound_keys.remove(&key);
            }
            if let Some(ids) = state.conversation_messages.get_mut(&(*org, *conversation)) {
                ids.retain(|kept| kept != id);
            }
            let entries: Vec<OutboxId> = state
                .outbox
                .iter()
                .filter(|((entry_org, _), stored)| {
                    entry_org == org && stored.entry.message_id == *id
                })
                .map(|((_, entry), _)| *entry)
                .collect();
            for entry in entries {
                state.outbox.remove(&(*org, entry));
                if let Some(ids) = state.conversation_outbox.get_mut(&(*org, *conversation)) {
                    ids.retain(|kept| *kept != entry);
                }
            }
        }
        Ok(old.len() as u64)
    }

    async fn delete_member(&self, org: OrgId, id: MemberId) -> Result<()> {
        let mut state = self.state.write().await;
        match state.members.remove(&(org, id)) {
            Some(_) => Ok(()),
            None => Err(not_found("member", org).with_context("member_id", id))
                .map_err(tag("delete_member")),
        }
    }

    async fn delete_org(&self, org: OrgId) -> Result<ErasureReport> {
        let mut state = self.state.write().await;
        let prospects: Vec<ProspectId> = state
            .prospects
            .keys()
            .filter(|(prospect_org, _)| *prospect_org == org)
            .map(|(_, id)| *id)
            .collect();
        let mut report = ErasureReport::default();
        for prospect in prospects {
            for (table, rows) in state.erase(org, prospect).deleted {
                report.add(&table, rows);
            }
        }
        let before = state.campaigns.len();
        state
            .campaigns
            .retain(|(campaign_org, _), _| *campaign_org != org);
        report.add("campaigns", (before - state.campaigns.len()) as u64);
        let before = state.members.len();
        state
            .members
            .retain(|(member_org, _), _| *member_org != org);
        report.add("members", (before - state.members.len()) as u64);
        let before = state.suppressions.len();
        state
            .suppressions
            .retain(|(entry_org, _), _| *entry_org != org);
        report.add("suppressions", (before - state.suppressions.len()) as u64);
        report.add(
            "suppression_keys",
            u64::from(state.suppression_keys.remove(&org).is_some()),
        );
        let before = state.requests.len();
        state
            .requests
            .retain(|(request_org, _), _| *request_org != org);
        report.add("subject_requests", (before - state.requests.len()) as u64);
        let before = state.audit.len();
        state.audit.retain(|event| event.org_id != org);
        report.add("audit_events", (before - state.audit.len()) as u64);
        Ok(report)
    }
}

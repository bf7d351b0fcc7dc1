//! Data-subject rights, retention, org deletion and reminders.

use std::time::Duration;

use crate::Timestamp;
use crate::contact::ContactPoint;
use crate::conversation::NotificationKind;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, Result};
use crate::gdpr::RequestOutcome;
use crate::gdpr::{
    ConversationRecord, EXPORT_SCHEMA_VERSION, Enrolment, ErasureReport, PurgeReport,
    Rectification, RequestKind, SubjectExport, SubjectRequest,
};
use crate::id::{JobId, MemberId, OrgId, ProspectId};
use crate::ports::{
    Actor, AuditEvent, Job, JobKind, Member, Notification, Notifier, Role, Suppression, TurnCommit,
};
use crate::prospect::Prospect;
use crate::qualification::{Evidence, Fact, score};

/// The level of access an actor needs to a person's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Right {
    /// Export, erase: owners and admins.
    Manage,
    /// Rectify, restrict, object: any member, since each protects the person.
    Protect,
}

/// How many prospects or messages one retention pass handles per store call.
const PURGE_BATCH: usize = 500;

impl Engine {
    /// Finds the prospect with this contact point, for a request that names
    /// the person by phone number or e-mail address.
    ///
    /// # Errors
    /// `NotFound` when no prospect of `org` has it.
    pub async fn find_subject(&self, org: OrgId, contact: &ContactPoint) -> Result<Prospect> {
        self.inner.store.find_prospect(org, contact).await?.ok_or_else(|| {
            Error::not_found(format!(
                "no prospect has this {}; check the spelling, or the person was never imported or was already erased",
                match contact {
                    ContactPoint::Phone(_) => "phone number",
                    ContactPoint::Email(_) => "e-mail address",
                    ContactPoint::Messenger(_) => "Messenger id",
                }
            ))
            .with_operation("find_subject")
        })
    }

    /// Records a data-subject request received now, open and due in one
    /// month, for requests answered later (after checking the person's identity,
    /// say). The methods that carry a right out record their own request.
    ///
    /// # Errors
    /// `NotFound` for an unknown prospect; `PermissionDenied` when `actor`
    /// is not a member of `org`.
    pub async fn record_request(
        &self,
        org: OrgId,
        prospect: ProspectId,
        kind: RequestKind,
        actor: Actor,
    ) -> Result<SubjectRequest> {
        self.check_actor(org, actor, Right::Protect).await?;
        self.inner.store.get_prospect(org, prospect).await?;
        let request = SubjectRequest::open(org, prospect, kind, actor, self.inner.clock.now());
        self.inner.store.put_subject_request(&request).await?;
        Ok(request)
    }

    /// Answers an access or portability request: everything kalify holds
    /// about the prospect, with the processing information of Art. 15. The
    /// request is recorded as answered.
    ///
    /// # Errors
    /// `NotFound` for an unknown prospect; `PermissionDenied` unless `actor`
    /// is the system or an owner or admin.
    pub async fn subject_access(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        actor: Actor,
    ) -> Result<SubjectExport> {
        self.check_actor(org, actor, Right::Manage).await?;
        let store = &self.inner.store;
        let now = self.inner.clock.now();
        let prospect = store.get_prospect(org, prospect_id).await?;
        let mut request = self
            .request_to_answer(org, prospect_id, RequestKind::Access, actor, now)
            .await?;

        let mut conversations = store.conversations_of(org, prospect_id).await?;
        conversations.sort_by_key(|conversation| conversation.created_at);
        let mut records = Vec::with_capacity(conversations.len());
        let mut enrolments = Vec::new();
        for conversation in conversations {
            if let Some(campaign_id) = conversation.campaign_id {
                let campaign_name = match store.get_campaign(org, campaign_id).await {
                    Ok(campaign) => campaign.name,
                    Err(error) if error.kind() == ErrorKind::NotFound => String::new(),
                    Err(error) => return Err(error),
                };
                enrolments.push(Enrolment {
                    campaign_id,
                    campaign_name,
                    conversation_id: conversation.id,
                    enrolled_at: conversation.created_at,
                    state: conversation.state,
                });
            }
            let messages = store.list_messages(org, conversation.id).await?;
            records.push(ConversationRecord {
                conversation,
                messages,
            });
        }

        let mut sources: Vec<String> = prospect.source.iter().cloned().collect();
        for consent in &prospect.consents {
            if !sources.contains(&consent.source) {
                sources.push(consent.source.clone());
            }
        }
        let mut requests: Vec<SubjectRequest> = store
            .list_subject_requests(org)
            .await?
            .into_iter()
            .filter(|r| r.prospect_id == prospect_id)
            .collect();
        request.complete(now, "export produced");
        requests.push(request.clone());

        let export = SubjectExport {
            schema_version: EXPORT_SCHEMA_VERSION,
            generated_at: now,
            org_id: org,
            prospect,
            sources,
            enrolments,
            conversations: records,
            model_exchanges: store.model_exchanges_of(org, prospect_id).await?,
            audit: store.audit_of(org, prospect_id).await?,
            requests,
            processing: self.inner.processing_info.clone(),
        };
        store.put_subject_request(&request).await?;
        store
            .append_audit(&[audit(
                org,
                prospect_id,
                "subject_access",
                "data exported".to_owned(),
                actor,
                now,
            )])
            .await?;
        tracing::info!(target: "kalify::gdpr", org_id = %org, prospect_id = %prospect_id, request_id = %request.id, "access request answered");
        Ok(export)
    }

    /// Corrects a prospect's data. Each changed field is audited by name
    /// (never by value), and every conversation's score is recomputed from
    /// the corrected facts.
    ///
    /// # Errors
    /// `InvalidInput` for an empty correction or a fact key the framework
    /// does not know or a value of the wrong type; `NotFound`;
    /// `PermissionDenied` when `actor` is not a member of `org`; `Conflict`
    /// when the prospect kept changing.
    pub async fn rectify(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        change: Rectification,
        actor: Actor,
    ) -> Result<Prospect> {
        self.check_actor(org, actor, Right::Protect).await?;
        if change.is_empty() {
            return Err(Error::invalid_input(
                "the rectification changes nothing; set at least one field",
            ));
        }
        for (key, value) in &change.facts {
            let Some(criterion) = self
                .inner
                .framework
                .criteria
                .iter()
                .find(|criterion| &criterion.key == key)
            else {
                return Err(Error::invalid_input(format!(
                    "the fact `{key}` is not a criterion of the framework; use one of: {}",
                    self.inner
                        .framework
                        .criteria
                        .iter()
                        .map(|c| c.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            if let Some(value) = value
                && !criterion.accepts(value)
            {
                return Err(Error::invalid_input(format!(
                    "the value given for the fact `{key}` has the wrong type for that criterion"
                )));
            }
        }
        let store = &self.inner.store;
        let mut request = self
            .request_to_answer(
                org,
                prospect_id,
                RequestKind::Rectification,
                actor,
                self.inner.clock.now(),
            )
            .await?;
        for _ in 0..=self.inner.settings.max_turn_retries {
            let now = self.inner.clock.now();
            let _guard = self.inner.locks.lock(prospect_id).await;
            let mut prospect = store.get_prospect(org, prospect_id).await?;
            let mut changed = apply_fields(&mut prospect, &change);
            changed.extend(
                change
                    .custom_fields
                    .keys()
                    .map(|name| format!("custom.{name}")),
            );
            changed.extend(change.facts.keys().map(|key| format!("fact.{key}")));
            prospect.updated_at = now;
            let events: Vec<AuditEvent> = changed
                .iter()
                .map(|field| {
                    audit(
                        org,
                        prospect_id,
                        "rectification",
                        format!("{field} rectified"),
                        actor,
                        now,
                    )
                })
                .collect();

            let mut conversations = store.conversations_of(org, prospect_id).await?;
            if conversations.is_empty() {
                match store.update_prospect(&prospect).await {
                    Ok(_) => {}
                    Err(error) if error.kind() == ErrorKind::Conflict => continue,
                    Err(error) => return Err(error),
                }
                store.append_audit(&events).await?;
            } else {
                // The most recently updated conversation carries the prospect's score.
                for conversation in &mut conversations {
                    for (key, value) in &change.facts {
                        conversation.facts.retain(|fact| &fact.key != key);
                        if let Some(value) = value {
                            conversation
                                .facts
                                .push(rectified_fact(key, value.clone(), now));
                        }
                    }
                    if !change.facts.is_empty() {
                        conversation.score =
                            Some(score(&self.inner.framework, &conversation.facts));
                    }
                }
                prospect.score = conversations[0].score.clone();
                let mut conflict = false;
                for (index, conversation) in conversations.into_iter().enumerate() {
                    let mut commit = TurnCommit::new(conversation);
                    if index == 0 {
                        commit.prospect = Some(prospect.clone());
                        commit.audit = events.clone();
                    }
                    match store.commit_turn(&commit).await {
                        Ok(_) => {}
                        Err(error) if error.kind() == ErrorKind::Conflict && index == 0 => {
                            conflict = true;
                            break;
                        }
                        Err(error) => return Err(error),
                    }
                }
                if conflict {
                    continue;
                }
            }
            request.complete(now, format!("{} field(s) rectified", changed.len()));
            store.put_subject_request(&request).await?;
            tracing::info!(target: "kalify::gdpr", org_id = %org, prospect_id = %prospect_id, fields = changed.len(), "rectification applied");
            return store.get_prospect(org, prospect_id).await;
        }
        Err(
            Error::conflict("the prospect kept changing while it was rectified; try again")
                .with_context("prospect_id", prospect_id),
        )
    }

    /// Erases a prospect: every row about them in every table, pending jobs
    /// and outbox entries included. Their contact points stay on the
    /// suppression list as keyed hashes only, so a later import of the same
    /// phone number or address stays suppressed.
    ///
    /// # Errors
    /// `NotFound` for an unknown prospect; `PermissionDenied` unless `actor`
    /// is the system or an owner or admin.
    pub async fn erase(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        actor: Actor,
    ) -> Result<ErasureReport> {
        self.check_actor(org, actor, Right::Manage).await?;
        let now = self.inner.clock.now();
        let mut request = self
            .request_to_answer(org, prospect_id, RequestKind::Erasure, actor, now)
            .await?;
        let report = self
            .erase_unchecked(org, prospect_id, "erasure", now)
            .await?;
        // Other requests about the person cannot be carried out once the data is gone.
        for mut open in self.open_requests_of(org, prospect_id).await? {
            if open.id != request.id {
                open.complete(now, "closed by the erasure of the person's data");
                self.inner.store.put_subject_request(&open).await?;
            }
        }
        request.complete(
            now,
            format!(
                "{} rows deleted; contact points kept as keyed hashes on the suppression list",
                report.total()
            ),
        );
        self.inner.store.put_subject_request(&request).await?;
        tracing::info!(target: "kalify::gdpr", org_id = %org, prospect_id = %prospect_id, rows = report.total(), "prospect erased");
        Ok(report)
    }

    async fn erase_unchecked(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        reason: &str,
        now: Timestamp,
    ) -> Result<ErasureReport> {
        let _guard = self.inner.locks.lock(prospect_id).await;
        let prospect = self.inner.store.get_prospect(org, prospect_id).await?;
        let suppress: Vec<Suppression> = prospect
            .contact_points()
            .into_iter()
            .map(|contact| Suppression {
                org_id: org,
                contact,
                reason: reason.to_owned(),
                at: now,
            })
            .collect();
        self.inner
            .store
            .erase_prospect(org, prospect_id, &suppress)
            .await
    }

    /// Restricts processing (Art. 18): the data is kept, but kalify sends
    /// nothing, calls no model and enriches nothing until
    /// [`Engine::lift_restriction`].
    ///
    /// # Errors
    /// As [`Engine::rectify`].
    pub async fn restrict(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        actor: Actor,
    ) -> Result<Prospect> {
        self.set_flag(
            org,
            prospect_id,
            actor,
            RequestKind::Restriction,
            |prospect| prospect.restricted = true,
        )
        .await
    }

    /// Lifts a restriction of processing.
    ///
    /// # Errors
    /// As [`Engine::rectify`].
    pub async fn lift_restriction(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        actor: Actor,
    ) -> Result<Prospect> {
        self.set_flag(
            org,
            prospect_id,
            actor,
            RequestKind::LiftRestriction,
            |prospect| prospect.restricted = false,
        )
        .await
    }

    /// Records an objection to direct marketing (Art. 21): no marketing
    /// message on any channel, permanently.
    ///
    /// # Errors
    /// As [`Engine::rectify`].
    pub async fn object(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        actor: Actor,
    ) -> Result<Prospect> {
        self.set_flag(
            org,
            prospect_id,
            actor,
            RequestKind::Objection,
            |prospect| prospect.objected = true,
        )
        .await
    }

    async fn set_flag(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        actor: Actor,
        kind: RequestKind,
        set: impl Fn(&mut Prospect),
    ) -> Result<Prospect> {
        self.check_actor(org, actor, Right::Protect).await?;
        let store = &self.inner.store;
        for _ in 0..=self.inner.settings.max_turn_retries {
            let now = self.inner.clock.now();
            let _guard = self.inner.locks.lock(prospect_id).await;
            let mut prospect = store.get_prospect(org, prospect_id).await?;
            set(&mut prospect);
            prospect.updated_at = now;
            match store.update_prospect(&prospect).await {
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::Conflict => continue,
                Err(error) => return Err(error),
            }
            store
                .append_audit(&[audit(
                    org,
                    prospect_id,
                    kind.as_str(),
                    format!("{} recorded", kind.as_str()),
                    actor,
                    now,
                )])
                .await?;
            let mut request = self
                .request_to_answer(org, prospect_id, kind, actor, now)
                .await?;
            request.complete(now, format!("{} applied", kind.as_str()));
            store.put_subject_request(&request).await?;
            tracing::info!(target: "kalify::gdpr", org_id = %org, prospect_id = %prospect_id, right = kind.as_str(), "request applied");
            return store.get_prospect(org, prospect_id).await;
        }
        Err(Error::conflict("the prospect kept changing; try again")
            .with_context("prospect_id", prospect_id))
    }

    /// Applies the retention policy at the clock's current time: erases the
    /// prospects collected, and silent, for longer than the policy's period,
    /// then deletes messages older than the message limit. Erasures by
    /// retention add no suppression; existing suppression entries stay.
    ///
    /// Run it daily, from a scheduler or beside [`Engine::run_worker`].
    ///
    /// # Errors
    /// Store errors; prospects erased before the error stay erased.
    pub async fn purge_expired(&self) -> Result<PurgeReport> {
        let now = self.inner.clock.now();
        let mut report = PurgeReport::default();
        let prospect_cutoff = cutoff(now, self.inner.retention.prospect);
        loop {
            let expired = self
                .inner
                .store
                .expired_prospects(prospect_cutoff, PURGE_BATCH)
                .await?;
            let count = expired.len();
            for (org, prospect) in expired {
                let _guard = self.inner.locks.lock(prospect).await;
                match self.inner.store.erase_prospect(org, prospect, &[]).await {
                    Ok(_) => report.prospects_erased += 1,
                    Err(error) if error.kind() == ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
            if count < PURGE_BATCH {
                break;
            }
        }
        if let Some(keep) = self.inner.retention.messages {
            let message_cutoff = cutoff(now, keep);
            loop {
                let deleted = self
                    .inner
                    .store
                    .purge_messages(message_cutoff, PURGE_BATCH)
                    .await?;
                report.messages_deleted += deleted;
                if deleted < PURGE_BATCH as u64 {
                    break;
                }
            }
        }
        tracing::info!(target: "kalify::gdpr", prospects_erased = report.prospects_erased, messages_deleted = report.messages_deleted, "retention purge finished");
        Ok(report)
    }

    /// Deletes an org and every row it has.
    ///
    /// # Errors
    /// `PermissionDenied` unless `owner` is the org's owner;
    /// `Conflict` while members other than the
    /// owner remain: remove them first, so that no member loses access without notice.
    pub async fn delete_org(&self, org: OrgId, owner: MemberId) -> Result<ErasureReport> {
        let members = self.inner.store.list_members(org).await?;
        let Some(acting) = members.iter().find(|member| member.id == owner) else {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "only the org's owner can delete it; the member is not in this org",
            )
            .with_context("member_id", owner));
        };
        if acting.role != Role::Owner {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "only the org's owner can delete it",
            )
            .with_context("member_id", owner));
        }
        let others = members.iter().filter(|member| member.id != owner).count();
        if others > 0 {
            return Err(Error::conflict(format!(
                "the org still has {others} other member(s); remove them before deleting the org"
            ))
            .with_context("org_id", org));
        }
        let report = self.inner.store.delete_org(org).await?;
        tracing::info!(target: "kalify::gdpr", org_id = %org, rows = report.total(), "org deleted");
        Ok(report)
    }

    /// Notifies the org's owners and admins of every open data-subject
    /// request due within `within`. Returns how many notifications went out.
    ///
    /// # Errors
    /// Store errors.
    pub async fn notify_due_requests(&self, within: Duration) -> Result<usize> {
        let now = self.inner.clock.now();
        let horizon = now + chrono::Duration::from_std(within).unwrap_or(chrono::Duration::days(7));
        let requests = self
            .inner
            .store
            .open_subject_requests(horizon, 1_000)
            .await?;
        let mut sent = 0;
        for request in requests {
            let managers: Vec<Member> = self
                .inner
                .store
                .list_members(request.org_id)
                .await?
                .into_iter()
                .filter(|member| matches!(member.role, Role::Owner | Role::Admin))
                .collect();
            let recipients: Vec<Option<MemberId>> = if managers.is_empty() {
                vec![None]
            } else {
                managers.iter().map(|member| Some(member.id)).collect()
            };
            for member in recipients {
                let mut notification = Notification::new(
                    request.org_id,
                    NotificationKind::SubjectRequestDueSoon,
                    request.prospect_id,
                );
                notification.member = member;
                notification.due_at = Some(request.due_at);
                notification.note = Some(format!("{} request", request.kind.as_str()));
                self.inner.notifier.notify(&notification).await?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Schedules a reminder on a prospect for `member` at `at` ("call back
    /// Tuesday 10:00"). It is a durable job like a follow-up: it fires
    /// through the notifier when a worker runs due jobs at or after `at`,
    /// even if the process restarted in between.
    ///
    /// # Errors
    /// `NotFound` for an unknown member or prospect; `InvalidInput` for an
    /// empty note or a prospect with no conversation yet (a reminder
    /// belongs to a conversation).
    pub async fn schedule_reminder(
        &self,
        org: OrgId,
        member: MemberId,
        prospect: ProspectId,
        at: Timestamp,
        note: &str,
    ) -> Result<JobId> {
        let note = note.trim();
        if note.is_empty() {
            return Err(Error::invalid_input(
                "the reminder note is empty; say what to do, such as \"call back\"",
            ));
        }
        self.inner.store.get_member(org, member).await?;
        let conversations = self.inner.store.conversations_of(org, prospect).await?;
        let Some(conversation) = conversations.first() else {
            self.inner.store.get_prospect(org, prospect).await?;
            return Err(Error::invalid_input(
                "the prospect has no conversation yet; enroll them in a campaign before scheduling a reminder",
            ));
        };
        let id = JobId::new();
        let job = Job {
            id,
            org_id: org,
            conversation_id: conversation.id,
            prospect_id: prospect,
            kind: JobKind::Reminder {
                member,
                note: note.to_owned(),
            },
            due_at: at,
            attempts: 0,
            dedupe_key: format!("reminder:{id}"),
        };
        let mut commit = TurnCommit::new(conversation.clone());
        commit.jobs.push(job);
        commit.audit.push(audit(
            org,
            prospect,
            "reminder_scheduled",
            format!("reminder at {}", at.to_rfc3339()),
            Actor::Member(member),
            self.inner.clock.now(),
        ));
        self.inner.store.commit_turn(&commit).await?;
        Ok(id)
    }

    /// Returns the oldest open request of `kind` about the prospect, recorded
    /// earlier with [`Engine::record_request`], so that answering it closes
    /// it; or a new request received now when there is none. An access
    /// request also answers an open portability request, and the reverse.
    async fn request_to_answer(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        kind: RequestKind,
        actor: Actor,
        now: Timestamp,
    ) -> Result<SubjectRequest> {
        let same = |other: RequestKind| {
            other == kind
                || matches!(
                    (kind, other),
                    (RequestKind::Access, RequestKind::Portability)
                        | (RequestKind::Portability, RequestKind::Access)
                )
        };
        let open = self
            .open_requests_of(org, prospect_id)
            .await?
            .into_iter()
            .find(|request| same(request.kind));
        Ok(open.unwrap_or_else(|| SubjectRequest::open(org, prospect_id, kind, actor, now)))
    }

    /// Lists the open requests about a prospect, oldest first.
    async fn open_requests_of(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
    ) -> Result<Vec<SubjectRequest>> {
        Ok(self
            .inner
            .store
            .list_subject_requests(org)
            .await?
            .into_iter()
            .filter(|request| {
                request.prospect_id == prospect_id && request.outcome == RequestOutcome::Open
            })
            .collect())
    }

    /// Checks that `actor` may exercise `right` in `org`.
    async fn check_actor(&self, org: OrgId, actor: Actor, right: Right) -> Result<()> {
        let Actor::Member(id) = actor else {
            return Ok(());
        };
        let member = self
            .inner
            .store
            .get_member(org, id)
            .await
            .map_err(|error| {
                if error.kind() == ErrorKind::NotFound {
                    Error::new(ErrorKind::PermissionDenied, "the member is not in this org")
                        .with_context("member_id", id)
                } else {
                    error
                }
            })?;
        if right == Right::Manage && !matches!(member.role, Role::Owner | Role::Admin) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "only an owner or an admin can export or erase a person's data",
            )
            .with_context("member_id", id));
        }
        Ok(())
    }
}

fn cutoff(now: Timestamp, keep: Duration) -> Timestamp {
    chrono::Duration::from_std(keep)
        .ok()
        .and_then(|keep| now.checked_sub_signed(keep))
        .unwrap_or(Timestamp::MIN_UTC)
}

fn audit(
    org: OrgId,
    prospect: ProspectId,
    action: &str,
    detail: String,
    actor: Actor,
    at: Timestamp,
) -> AuditEvent {
    AuditEvent {
        org_id: org,
        prospect_id: Some(prospect),
        conversation_id: None,
        action: action.to_owned(),
        actor,
        detail,
        at,
    }
}

fn rectified_fact(key: &str, value: crate::qualification::FactValue, now: Timestamp) -> Fact {
    Fact {
        key: key.to_owned(),
        value,
        evidence: Evidence {
            message_id: crate::id::MessageId::from_uuid(uuid::Uuid::nil()),
            quote: "rectified at the person's request".to_owned(),
            confidence: 1.0,
        },
        extracted_at: now,
    }
}

/// Applies the profile fields of `change` and returns the names of those set.
fn apply_fields(prospect: &mut Prospect, change: &Rectification) -> Vec<String> {
    let mut changed = Vec::new();
    let mut text = |name: &str, target: &mut Option<String>, value: &Option<Option<String>>| {
        if let Some(value) = value {
            *target = value
                .as_ref()
                .map(|text| crate::import::to_nfc(text.trim().to_owned()))
                .filter(|text| !text.is_empty());
            changed.push(name.to_owned());
        }
    };
    text("first_name", &mut prospect.first_name, &change.first_name);
    text("last_name", &mut prospect.last_name, &change.last_name);
    text("company", &mut prospect.company, &change.company);
    text("job_title", &mut prospect.job_title, &change.job_title);
    if let Some(email) = &change.email {
        prospect.email = email.clone();
        changed.push("email".to_owned());
    }
    if let Some(phone) = &change.phone {
        prospect.phone = phone.clone();
        changed.push("phone".to_owned());
    }
    for (name, value) in &change.custom_fields {
        match value {
            Some(value) => {
                prospect.custom_fields.insert(name.clone(), value.clone());
            }
            None => {
                prospect.custom_fields.remove(name);
            }
        }
    }
    changed
}

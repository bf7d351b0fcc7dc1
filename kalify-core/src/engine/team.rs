//! Team work: assigning conversations to members, and what members do on
//! a conversation (take it over, reply, hand it back), with permission checks.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::conversation::{ConversationState, Event};
use crate::engine::turn::Turn;
use crate::engine::{Engine, Inner, ProspectFilter};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{ConversationId, MemberId, OrgId};
use crate::ports::{Actor, Member, Role};
use crate::prospect::Prospect;
use crate::qualification::Score;

/// A rule that picks the member of a handed-off conversation. Rules are
/// tried in order; the first that names an available member of the org wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum AssignmentRule {
    /// The prospect's owner, when available.
    Owner,
    /// A fixed member for prospects the filter matches (score, source, custom fields…).
    Matching {
        /// The prospects this rule takes.
        filter: ProspectFilter,
        /// The member who gets them.
        member: MemberId,
    },
    /// The available members in turn.
    RoundRobin,
}

impl Inner {
    /// Picks the member for a conversation being handed off, or `None` when
    /// the org has no available member.
    pub(crate) async fn assign_member(
        &self,
        prospect: &Prospect,
        score: Option<&Score>,
    ) -> Result<Option<MemberId>> {
        let mut members: Vec<Member> = self.store.list_members(prospect.org_id).await?;
        members.retain(|member| member.available);
        if members.is_empty() {
            return Ok(None);
        }
        members.sort_by_key(|member| member.id);
        let available = |id: MemberId| members.iter().any(|member| member.id == id);

        // The filter reads the prospect's score; use the conversation's latest one.
        let mut scored = prospect.clone();
        if let Some(score) = score {
            scored.score = Some(score.clone());
        }
        for rule in &self.assignment {
            match rule {
                AssignmentRule::Owner => {
                    if let Some(owner) = prospect.owner.filter(|owner| available(*owner)) {
                        return Ok(Some(owner));
                    }
                }
                AssignmentRule::Matching { filter, member } => {
                    if available(*member) && filter.matches(&scored) {
                        return Ok(Some(*member));
                    }
                }
                AssignmentRule::RoundRobin => {
                    let turn = self.round_robin.fetch_add(1, Ordering::Relaxed);
                    return Ok(members.get(turn % members.len()).map(|member| member.id));
                }
            }
        }
        Ok(None)
    }
}

/// The member action a permission check is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    TakeOver,
    Reply,
    HandBack,
    Assign,
}

fn check_permission(member: &Member, action: Action, assigned_to: Option<MemberId>) -> Result<()> {
    let manager = matches!(member.role, Role::Owner | Role::Admin);
    let allowed = match action {
        Action::TakeOver => manager || assigned_to.is_none_or(|assigned| assigned == member.id),
        Action::Reply | Action::HandBack => manager || assigned_to == Some(member.id),
        Action::Assign => manager,
    };
    if allowed {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::PermissionDenied,
        match action {
            Action::TakeOver => {
                "the conversation is assigned to another member; an admin can reassign it"
            }
            Action::Reply => "only the assigned member or an admin can reply in this conversation",
            Action::HandBack => {
                "only the assigned member or an admin can hand the conversation back"
            }
            Action::Assign => "only an owner or an admin can assign conversations",
        },
    )
    .with_context("member_id", member.id))
}

impl Engine {
    /// A member takes a conversation over: the AI goes silent and pending
    /// follow-ups are cancelled.
    ///
    /// # Errors
    /// `NotFound` for an unknown member or conversation; `PermissionDenied`
    /// when it is assigned to another member and the actor is not an admin;
    /// `InvalidTransition` after an opt-out.
    pub async fn take_over(
        &self,
        org: OrgId,
        conversation: ConversationId,
        member: MemberId,
    ) -> Result<()> {
        self.member_turn(
            org,
            conversation,
            member,
            Action::TakeOver,
            |turn, member| {
                turn.conversation.assigned_to = Some(member);
                Some(Event::MemberTookOver)
            },
        )
        .await
    }

    /// Sends a member's message on the conversation's channel. The member
    /// must have taken the conversation over first.
    ///
    /// # Errors
    /// As [`Engine::take_over`], and `InvalidTransition` when the
    /// conversation is not handed off; `InvalidInput` for an empty text.
    pub async fn member_reply(
        &self,
        org: OrgId,
        conversation: ConversationId,
        member: MemberId,
        text: &str,
    ) -> Result<()> {
        if text.trim().is_empty() {
            return Err(Error::invalid_input("the member's message is empty"));
        }
        let text = text.trim().to_owned();
        self.member_turn(org, conversation, member, Action::Reply, move |turn, _| {
            turn.member_text = Some(text.clone());
            Some(Event::MemberReplied)
        })
        .await?;
        self.deliver_outbox().await.map(|_| ())
    }

    /// Hands the conversation back to the AI.
    ///
    /// # Errors
    /// As [`Engine::take_over`], and `InvalidTransition` when the
    /// conversation is not handed off.
    pub async fn hand_back(
        &self,
        org: OrgId,
        conversation: ConversationId,
        member: MemberId,
    ) -> Result<()> {
        self.member_turn(org, conversation, member, Action::HandBack, |_, _| {
            Some(Event::Released)
        })
        .await
    }

    /// Assigns a handed-off conversation to `assignee`, on behalf of `actor`.
    ///
    /// # Errors
    /// `PermissionDenied` unless `actor` is an owner or admin; `NotFound` for
    /// unknown members; `InvalidInput` when the assignee is not available.
    pub async fn assign(
        &self,
        org: OrgId,
        conversation: ConversationId,
        actor: MemberId,
        assignee: MemberId,
    ) -> Result<()> {
        let assignee_record = self.inner.store.get_member(org, assignee).await?;
        if !assignee_record.available {
            return Err(
                Error::invalid_input("the member is not available for new conversations")
                    .with_context("member_id", assignee),
            );
        }
        self.member_turn(org, conversation, actor, Action::Assign, move |turn, _| {
            turn.conversation.assigned_to = Some(assignee);
            if turn.conversation.state == ConversationState::HandedOff {
                None
            } else {
                Some(Event::MemberTookOver)
            }
        })
        .await
    }

    async fn member_turn(
        &self,
        org: OrgId,
        conversation_id: ConversationId,
        member_id: MemberId,
        action: Action,
        prepare: impl Fn(&mut Turn<'_>, MemberId) -> Option<Event>,
    ) -> Result<()> {
        let store = &self.inner.store;
        let member = store.get_member(org, member_id).await?;
        for _ in 0..=self.inner.settings.max_turn_retries {
            let conversation = store.get_conversation(org, conversation_id).await?;
            check_permission(&member, action, conversation.assigned_to)?;
            let _guard = self.inner.locks.lock(conversation.prospect_id).await;
            let mut turn = self.load_turn(conversation, self.inner.clock.now()).await?;
            if let Some(event) = prepare(&mut turn, member_id) {
                turn.apply(event).await?;
            }
            turn.audit(
                action_name(action),
                format!("by member {member_id}"),
                Actor::Member(member_id),
            );
            let (commit, notifications) = turn.finish();
            match store.commit_turn(&commit).await {
                Ok(_) => {
                    self.notify_all(notifications).await;
                    return Ok(());
                }
                Err(error) if error.kind() == ErrorKind::Conflict => continue,
                Err(error) => return Err(error),
            }
        }
        Err(Error::conflict("the conversation kept changing; try again")
            .with_context("conversation_id", conversation_id))
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::TakeOver => "member_take_over",
        Action::Reply => "member_reply",
        Action::HandBack => "member_hand_back",
        Action::Assign => "member_assign",
    }
}

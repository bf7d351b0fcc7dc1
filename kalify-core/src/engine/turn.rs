//! One turn: events applied to a conversation, and the writes they cause,
//! gathered into a single [`TurnCommit`].

use chrono::Duration as ChronoDuration;

use crate::Timestamp;
use crate::analysis::{CriterionBrief, Intent, ReplyRequest, TranscriptLine};
use crate::campaign::Campaign;
use crate::contact::ChannelKind;
use crate::conversation::{
    Conversation, ConversationState, DeliveryStatus, Direction, Effect, Event, Message,
    NotificationKind, Policy, SendPurpose, Sender, transition,
};
use crate::engine::Inner;
use crate::error::Result;
use crate::gate::{Jurisdiction, add_business_days};
use crate::id::{MessageId, OutboxId};
use crate::ports::{
    Actor, AuditEvent, CancelScope, Job, Notification, OutboxEntry, OutboxStatus, Suppression,
    TurnCommit,
};
use crate::prospect::Prospect;
use crate::reply;

/// The mutable state of a turn in progress.
pub(crate) struct Turn<'a> {
    engine: &'a Inner,
    now: Timestamp,
    pub(crate) conversation: Conversation,
    pub(crate) prospect: Prospect,
    prospect_changed: bool,
    campaign: Option<Campaign>,
    history: Vec<Message>,
    commit: TurnCommit,
    notifications: Vec<NotificationKind>,
    /// The intent of the latest analysis, for reply writing.
    pub(crate) intent: Intent,
    /// A key that makes the sends of this turn idempotent across retries of the same job.
    idempotency_base: Option<String>,
    /// Whether the turn replies to the prospect's messages (rather than running a job).
    pub(crate) answers_prospect: bool,
    /// The text of a member's message, sent by the `MemberReplied` event.
    pub(crate) member_text: Option<String>,
}

impl<'a> Turn<'a> {
    pub(crate) fn new(
        engine: &'a Inner,
        now: Timestamp,
        conversation: Conversation,
        prospect: Prospect,
        campaign: Option<Campaign>,
        history: Vec<Message>,
    ) -> Self {
        Turn {
            engine,
            now,
            commit: TurnCommit::new(conversation.clone()),
            conversation,
            prospect,
            prospect_changed: false,
            campaign,
            history,
            notifications: Vec::new(),
            intent: Intent::Unclear,
            idempotency_base: None,
            answers_prospect: false,
            member_text: None,
        }
    }

    pub(crate) fn set_idempotency_base(&mut self, base: String) {
        self.idempotency_base = Some(base);
    }

    pub(crate) fn mark_processed(&mut self, message: &Message) {
        self.commit.processed_inbound.push(message.id);
        // Replies written later in this turn include the message they reply to.
        self.history.push(message.clone());
        if self
            .conversation
            .last_inbound_at
            .is_none_or(|last| last < message.at)
        {
            self.conversation.last_inbound_at = Some(message.at);
        }
        if self.conversation.channel != message.channel {
            // Reply on the channel the prospect last used.
            self.conversation.channel = message.channel;
        }
    }

    pub(crate) fn cancel(&mut self, scope: CancelScope) {
        self.commit.cancel = scope;
        self.commit.jobs.clear();
    }

    pub(crate) fn complete_job(&mut self, job: &Job) {
        self.commit.completed_job = Some(job.id);
    }

    pub(crate) fn prospect_mut(&mut self) -> &mut Prospect {
        self.prospect_changed = true;
        &mut self.prospect
    }

    pub(crate) fn history(&self) -> &[Message] {
        &self.history
    }

    pub(crate) fn policy(&self) -> Policy {
        let mut policy = self.engine.policy;
        if let Some(campaign) = &self.campaign {
            policy.max_follow_ups = campaign.max_follow_ups();
        }
        policy
    }

    fn sender_name(&self) -> String {
        self.campaign.as_ref().map_or_else(
            || self.engine.default_sender.clone(),
            |campaign| campaign.persona.clone(),
        )
    }

    /// Applies `event` and carries out its effects.
    ///
    /// # Errors
    /// `InvalidTransition` when the event is not allowed; the turn is unchanged then.
    pub(crate) async fn apply(&mut self, event: Event) -> Result<()> {
        let before = self.conversation.state;
        let (after, effects) = transition(before, event, &self.policy())?;
        self.conversation.state = after;
        self.audit(
            "transition",
            format!("{before} -> {after} ({})", event.name()),
            actor_of(event),
        );
        if after == ConversationState::HandedOff && self.conversation.assigned_to.is_none() {
            self.conversation.assigned_to = self
                .engine
                .assign_member(&self.prospect, self.conversation.score.as_ref())
                .await?;
            if let Some(member) = self.conversation.assigned_to {
                self.audit("assigned", format!("member {member}"), Actor::System);
            }
        }
        if before == ConversationState::HandedOff && after != ConversationState::HandedOff {
            // The next automated message discloses again that it is automated.
            self.conversation.assigned_to = None;
            self.conversation.automation_disclosed = false;
        }
        for effect in effects {
            self.carry_out(effect).await?;
        }
        Ok(())
    }

    async fn carry_out(&mut self, effect: Effect) -> Result<()> {
        match effect {
            Effect::Send { purpose, sender } => self.send(purpose, sender).await?,
            Effect::ScheduleFollowUp { attempt } => self.schedule(attempt),
            Effect::CancelFollowUps => {
                // An opt-out reaches every campaign and channel; other changes
                // only stop this conversation's sequence.
                let scope = if self.conversation.state == ConversationState::OptedOut {
                    CancelScope::Prospect
                } else {
                    CancelScope::Conversation
                };
                if scope == CancelScope::Prospect || self.commit.cancel == CancelScope::Nothing {
                    self.commit.cancel = scope;
                }
                // Jobs written earlier in this turn are cancelled too.
                self.commit.jobs.clear();
            }
            Effect::Suppress => {
                for contact in self.prospect.contact_points() {
                    self.commit.suppress.push(Suppression {
                        org_id: self.prospect.org_id,
                        contact,
                        reason: "opt_out".to_owned(),
                        at: self.now,
                    });
                }
                self.commit.unsuppress.clear();
            }
            Effect::Unsuppress => {
                self.commit
                    .unsuppress
                    .extend(self.prospect.contact_points());
                self.commit.suppress.clear();
            }
            Effect::Notify(kind) => self.notifications.push(kind),
        }
        Ok(())
    }

    fn schedule(&mut self, attempt: u32) {
        let Some(campaign) = &self.campaign else {
            // Conversations the prospect started have no follow-up sequence.
            return;
        };
        if self.answers_prospect && campaign.stops_on_reply() {
            return;
        }
        let step = campaign
            .steps
            .get(attempt as usize)
            .or_else(|| campaign.steps.last());
        let due_at = match step.and_then(|step| step.business_days) {
            Some(days) => {
                add_business_days(self.now, days.max(1), &Jurisdiction::of(&self.prospect))
            }
            None => {
                let delay_hours = step.map_or(24, |step| step.delay_hours.max(1));
                self.now + ChronoDuration::hours(i64::from(delay_hours))
            }
        };
        let mut job = Job::follow_up(&self.conversation, attempt, due_at);
        if let Some(base) = &self.idempotency_base {
            job.dedupe_key = format!("{base}:schedule:{attempt}");
        }
        self.commit.jobs.push(job);
    }

    async fn send(&mut self, purpose: SendPurpose, sender: Sender) -> Result<()> {
        let locale = self.prospect.locale;
        let sender_name = self.sender_name();
        let text = match purpose {
            SendPurpose::Outreach { attempt } => {
                let Some(campaign) = &self.campaign else {
                    self.audit(
                        "send_skipped",
                        "no campaign for outreach".to_owned(),
                        Actor::System,
                    );
                    return Ok(());
                };
                let text = campaign.render(attempt as usize, &self.prospect, locale)?;
                let step_channel = campaign
                    .steps
                    .get(attempt as usize)
                    .and_then(|step| step.channel);
                let channel = step_channel.unwrap_or(self.conversation.channel);
                if channel == ChannelKind::Sms {
                    crate::campaign::with_sms_mentions(&text, &sender_name, locale)
                } else {
                    text
                }
            }
            SendPurpose::OptOutConfirmation => {
                match &self.engine.framework.replies.opt_out_confirmation {
                    Some(text) => self.fit_channel(text.get(locale)),
                    None => reply::opt_out_confirmation(locale, &sender_name),
                }
            }
            SendPurpose::OptInConfirmation => reply::opt_in_confirmation(locale, &sender_name),
            SendPurpose::Help => reply::help_text(locale, &sender_name),
            SendPurpose::HandoffAck => match &self.engine.framework.replies.handoff_ack {
                Some(text) => self.fit_channel(text.get(locale)),
                None => reply::handoff_ack(locale, &sender_name),
            },
            SendPurpose::Reply | SendPurpose::Closing | SendPurpose::Qualified => {
                match self.fixed_reply(purpose) {
                    Some(text) => text,
                    None => self.write_ai_reply(purpose).await,
                }
            }
            SendPurpose::MemberMessage => match self.member_text.take() {
                Some(text) => text,
                None => {
                    self.audit(
                        "send_skipped",
                        "member message without text".to_owned(),
                        Actor::System,
                    );
                    return Ok(());
                }
            },
        };
        self.queue(purpose, sender, text, &sender_name);
        Ok(())
    }

    /// Queues `text` as an outbound message with its outbox entry.
    pub(crate) fn queue(
        &mut self,
        purpose: SendPurpose,
        sender: Sender,
        text: String,
        sender_name: &str,
    ) {
        // A campaign step may name its own channel; replies stay on the
        // conversation's channel.
        let step_channel = match (purpose, &self.campaign) {
            (SendPurpose::Outreach { attempt }, Some(campaign)) => campaign
                .steps
                .get(attempt as usize)
                .and_then(|step| step.channel),
            _ => None,
        };
        let channel = step_channel.unwrap_or(self.conversation.channel);
        let Some(to) = self
            .prospect
            .contact_for(channel)
            .or_else(|| self.fallback_contact())
        else {
            self.audit(
                "send_skipped",
                format!("no contact point for {channel}"),
                Actor::System,
            );
            return;
        };
        let channel = to.channel();
        let message_id = MessageId::new();
        let subject = (channel == ChannelKind::Email).then(|| {
            self.campaign
                .as_ref()
                .map_or_else(|| sender_name.to_owned(), |campaign| campaign.name.clone())
        });
        let idempotency_key = match &self.idempotency_base {
            Some(base) => format!("{base}:{}", self.commit.outbox.len()),
            None => format!("message:{message_id}"),
        };
        self.commit.messages.push(Message {
            id: message_id,
            org_id: self.conversation.org_id,
            conversation_id: self.conversation.id,
            prospect_id: self.prospect.id,
            direction: Direction::Outbound,
            channel,
            sender: Some(sender),
            text: text.clone(),
            subject: subject.clone(),
            at: self.now,
            provider: None,
            provider_message_id: None,
            status: DeliveryStatus::Pending,
            processed: true,
        });
        self.commit.outbox.push(OutboxEntry {
            id: OutboxId::new(),
            org_id: self.conversation.org_id,
            conversation_id: self.conversation.id,
            prospect_id: self.prospect.id,
            message_id,
            channel,
            to,
            text,
            subject,
            purpose,
            sender,
            sender_name: sender_name.to_owned(),
            campaign_id: self.conversation.campaign_id,
            idempotency_key,
            next_attempt_at: self.now,
            attempts: 0,
            unconfirmed: false,
            first_attempt_at: None,
            status: OutboxStatus::Pending,
        });
        if matches!(sender, Sender::Campaign | Sender::Ai) {
            self.conversation.attempts_sent +=
                u32::from(matches!(purpose, SendPurpose::Outreach { .. }));
        }
    }

    fn fallback_contact(&self) -> Option<crate::contact::ContactPoint> {
        let order = self.campaign.as_ref().map_or_else(
            || vec![ChannelKind::Sms, ChannelKind::Email, ChannelKind::Messenger],
            |c| c.channels.clone(),
        );
        order
            .into_iter()
            .find_map(|channel| self.prospect.contact_for(channel))
    }

    /// Chooses the framework's fixed reply for `purpose`, or `None` when the
    /// framework has no fixed replies and the model writes them.
    fn fixed_reply(&self, purpose: SendPurpose) -> Option<String> {
        let fixed = self.engine.framework.replies.fixed.as_ref()?;
        let locale = self.prospect.locale;
        let asked_question = self.intent == Intent::Question;
        let text = match purpose {
            SendPurpose::Closing => &fixed.closing,
            SendPurpose::Qualified if asked_question => &fixed.qualified_after_question,
            SendPurpose::Qualified => &fixed.qualified,
            _ => {
                let first_unknown = self
                    .engine
                    .framework
                    .criteria
                    .iter()
                    .find(|criterion| self.conversation.fact(&criterion.key).is_none());
                match first_unknown {
                    Some(criterion) if asked_question => {
                        criterion.answer.as_ref().unwrap_or(&criterion.question)
                    }
                    Some(criterion) => &criterion.question,
                    None => &fixed.nurture,
                }
            }
        };
        Some(self.fit_channel(text.get(locale)))
    }

    /// Cuts a configured text to the conversation channel's maximum length.
    fn fit_channel(&self, text: &str) -> String {
        let max_chars = match self.conversation.channel {
            ChannelKind::Sms => self.engine.settings.max_sms_chars,
            _ => self.engine.settings.max_text_chars,
        };
        reply::truncate_chars(text, max_chars)
    }

    /// Asks the model for a reply, falling back to the fixed templates when
    /// it fails or its text fails the checks.
    async fn write_ai_reply(&mut self, purpose: SendPurpose) -> String {
        let request = self.reply_request(purpose);
        let mut text = None;
        let models = std::iter::once(&self.engine.model).chain(self.engine.fallback_model.as_ref());
        for model in models {
            let answer = model.write_reply(&request).await;
            self.record_exchange(model.name(), "write_reply", &request, answer.as_ref());
            match answer {
                Ok(draft) => match check_reply(&draft.text, &request) {
                    Ok(()) => {
                        text = Some(draft.text.trim().to_owned());
                        break;
                    }
                    Err(reason) => {
                        tracing::warn!(target: "kalify::ai", model = model.name(), conversation_id = %self.conversation.id, reason, "model reply rejected");
                    }
                },
                Err(error) => {
                    tracing::warn!(target: "kalify::ai", model = model.name(), conversation_id = %self.conversation.id, error = %error, "model reply failed");
                }
            }
        }
        let text = text.unwrap_or_else(|| reply::template_reply(&request));
        if request.disclose_automation {
            self.conversation.automation_disclosed = true;
        }
        text
    }

    pub(crate) fn missing_criteria(&self) -> Vec<CriterionBrief> {
        let locale = self.prospect.locale;
        self.engine
            .framework
            .criteria
            .iter()
            .filter(|criterion| self.conversation.fact(&criterion.key).is_none())
            .map(|criterion| CriterionBrief {
                key: criterion.key.clone(),
                description: criterion.description.clone(),
                question: criterion.question.get(locale).to_owned(),
            })
            .collect()
    }

    fn reply_request(&self, purpose: SendPurpose) -> ReplyRequest {
        let channel = self.conversation.channel;
        let max_chars = match channel {
            ChannelKind::Sms => self.engine.settings.max_sms_chars,
            _ => self.engine.settings.max_text_chars,
        };
        ReplyRequest {
            locale: self.prospect.locale,
            channel,
            purpose,
            persona: self.sender_name(),
            goal: self.campaign.as_ref().map_or_else(
                || default_goal(self.prospect.locale).to_owned(),
                |campaign| campaign.goal.clone(),
            ),
            first_name: self.prospect.first_name.clone(),
            missing: self.missing_criteria(),
            history: transcript(&self.history),
            intent: self.intent,
            disclose_automation: !self.conversation.automation_disclosed,
            allow_links: self
                .campaign
                .as_ref()
                .is_some_and(|campaign| campaign.allow_links),
            max_chars,
        }
    }

    /// Records a model call in the turn, for access requests. Does nothing
    /// when the engine's settings turn the record off.
    pub(crate) fn record_exchange<Q: serde::Serialize, A: serde::Serialize>(
        &mut self,
        model: &str,
        operation: &str,
        request: &Q,
        answer: std::result::Result<&A, &crate::error::Error>,
    ) {
        if !self.engine.settings.record_model_exchanges {
            return;
        }
        let response = match answer {
            Ok(answer) => serde_json::to_string(answer).unwrap_or_default(),
            Err(error) => format!("error: {}", error.message()),
        };
        self.commit
            .model_exchanges
            .push(crate::ports::ModelExchange {
                org_id: self.conversation.org_id,
                prospect_id: self.prospect.id,
                conversation_id: self.conversation.id,
                model: model.to_owned(),
                operation: operation.to_owned(),
                request: request_record(request),
                response,
                at: self.now,
            });
    }

    pub(crate) fn audit(&mut self, action: &str, detail: String, actor: Actor) {
        self.commit.audit.push(AuditEvent {
            org_id: self.conversation.org_id,
            prospect_id: Some(self.prospect.id),
            conversation_id: Some(self.conversation.id),
            action: action.to_owned(),
            actor,
            detail,
            at: self.now,
        });
    }

    /// Closes the turn into the commit to write and the notifications to send after it.
    pub(crate) fn finish(mut self) -> (TurnCommit, Vec<Notification>) {
        let state = self.conversation.state;
        if self.prospect.status != state
            || self.prospect_changed
            || self.prospect.score != self.conversation.score
        {
            self.prospect.status = state;
            self.prospect.score = self.conversation.score.clone();
            self.prospect.updated_at = self.now;
            self.commit.prospect = Some(self.prospect.clone());
        }
        self.conversation.updated_at = self.now;
        self.commit.conversation = self.conversation.clone();
        let notifications = self
            .notifications
            .iter()
            .map(|kind| Notification {
                org_id: self.conversation.org_id,
                kind: *kind,
                prospect_id: self.prospect.id,
                conversation_id: Some(self.conversation.id),
                member: self.conversation.assigned_to,
                score: self.conversation.score.as_ref().map(|score| score.value),
                note: None,
                due_at: None,
            })
            .collect();
        (self.commit, notifications)
    }
}

fn default_goal(locale: crate::prospect::Locale) -> &'static str {
    match locale {
        crate::prospect::Locale::En => "talk with our team",
        crate::prospect::Locale::Fr => "échanger avec notre équipe",
    }
}

fn actor_of(event: Event) -> Actor {
    match event {
        Event::ReplyAnalysed(_)
        | Event::OptOutReceived
        | Event::OptInReceived
        | Event::HelpRequested => Actor::Prospect,
        _ => Actor::System,
    }
}

/// The messages a model may see: text and direction only.
pub(crate) fn transcript(messages: &[Message]) -> Vec<TranscriptLine> {
    messages
        .iter()
        .map(|message| TranscriptLine {
            direction: message.direction,
            text: message.text.clone(),
            at: message.at,
        })
        .collect()
}

/// Checks a model-written reply before it may be sent.
fn check_reply(text: &str, request: &ReplyRequest) -> std::result::Result<(), &'static str> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty reply");
    }
    if trimmed.chars().count() > request.max_chars {
        return Err("reply longer than the channel budget");
    }
    let lower = trimmed.to_lowercase();
    if !request.allow_links
        && (lower.contains("http://") || lower.contains("https://") || lower.contains("www."))
    {
        return Err("reply contains a link but the campaign allows none");
    }
    if request.disclose_automation && !trimmed.contains(reply::automation_notice(request.locale)) {
        return Err("first automated reply lacks the automation notice");
    }
    if contains_contact_point(trimmed) {
        return Err("reply contains a phone number, an e-mail address or a domain name");
    }
    Ok(())
}

/// Whether `text` contains something a prospect could be sent to: an e-mail
/// address, a domain name (`example.com`) or a phone number (eight digits or
/// more, spaces, dots, dashes and brackets allowed between them). Model
/// replies must not carry these, because a prompt injection could use them
/// to redirect the prospect.
pub(crate) fn contains_contact_point(text: &str) -> bool {
    let mut digits = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits += 1;
            if digits >= 8 {
                return true;
            }
        } else if !matches!(c, ' ' | '.' | '-' | '(' | ')' | '+' | '\u{a0}') {
            digits = 0;
        }
    }
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>' | '"' | '\'' | ',' | ';')
    })
    .map(|word| word.trim_end_matches(['.', '!', '?', ':']))
    .any(|word| {
        if word.contains('@') {
            return true;
        }
        let Some((name, tld)) = word.rsplit_once('.') else {
            return false;
        };
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
            && name.chars().any(|c| c.is_ascii_alphabetic())
            && (2..=6).contains(&tld.len())
            && tld.chars().all(|c| c.is_ascii_lowercase())
    })
}

/// The JSON kept of a model request. A request's `history` repeats every
/// earlier message of the conversation, which the store keeps and an access
/// request exports anyway, so it is kept as their count; storing it whole
/// would write the conversation again at every turn.
fn request_record<Q: serde::Serialize>(request: &Q) -> String {
    let Ok(mut value) = serde_json::to_value(request) else {
        return String::new();
    };
    if let Some(history) = value.get_mut("history")
        && let Some(count) = history.as_array().map(Vec::len)
    {
        *history = serde_json::json!({ "earlier_messages": count });
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::contains_contact_point;

    #[test]
    fn contact_points_in_replies() {
        for text in [
            "Call +33 6 12 34 56 78",
            "write to sales@acme.example",
            "see acme.com",
            "06.12.34.56.78",
            "visit www.example.org!",
        ] {
            assert!(contains_contact_point(text), "{text:?}");
        }
        for text in [
            "Thanks! What budget have you set aside?",
            "Budget of 20 000 €, noted.",
            "Let's talk in Q3. (Automated message.)",
            "Merci ! Quand souhaiteriez-vous démarrer ?",
            "Is 10.5 ok?",
        ] {
            assert!(!contains_contact_point(text), "{text:?}");
        }
    }
}

//! Inbound replies: de-duplication, keywords, analysis, scoring and the
//! resulting transition, persisted as one turn.

use crate::Timestamp;
use crate::analysis::{Analysis, AnalysisRequest, CriterionBrief, Intent, Objection, Sentiment};
use crate::conversation::{
    Conversation, ConversationState, DeliveryStatus, Direction, Event, Message, ReplyOutcome,
};
use crate::engine::Engine;
use crate::engine::turn::{Turn, transcript};
use crate::error::{Error, ErrorKind, Result};
use crate::id::{ConversationId, MessageId, OrgId, ProspectId};
use crate::keywords::{self, Keyword};
use crate::ports::{InboundMessage, InsertOutcome, Notification};
use crate::prospect::Prospect;
use crate::qualification::{Evidence, Fact, Framework, Score, merge_facts, score};

/// What handling an inbound message did.
#[derive(Clone, Debug, PartialEq)]
pub struct InboundReport {
    /// The prospect who wrote.
    pub prospect_id: ProspectId,
    /// The conversation the message joined.
    pub conversation_id: ConversationId,
    /// The stored message id (the first copy's, for a duplicate).
    pub message_id: Option<MessageId>,
    /// True when the message had been received before; nothing was done.
    pub duplicate: bool,
    /// The conversation state afterwards.
    pub state: ConversationState,
    /// The score afterwards.
    pub score: Option<u8>,
}

impl Engine {
    /// Handles a message from a prospect: stores it (once per provider
    /// message id), checks opt-out, opt-in and help keywords before any
    /// analysis, analyses the rest, merges facts, rescores, moves the
    /// conversation and writes the replies to the outbox, in one atomic turn.
    /// Then it delivers the outbox, so replies leave at once.
    ///
    /// Messages that arrive together for one conversation are processed in
    /// order; when two workers race, the loser recomputes its turn on top of
    /// the winner's, so the reply is built on both messages.
    ///
    /// # Errors
    /// - `NotFound` when no prospect of `org` has the sender's contact point;
    /// - `InvalidInput` for an empty provider message id;
    /// - store errors, and `Conflict` when the turn lost its race more than
    ///   the configured number of times.
    pub async fn handle_inbound(
        &self,
        org: OrgId,
        inbound: InboundMessage,
    ) -> Result<InboundReport> {
        let store = &self.inner.store;
        if inbound.provider_message_id.trim().is_empty() {
            return Err(Error::invalid_input(
                "inbound message has an empty provider message id; the provider's id is required for de-duplication",
            ));
        }
        let (prospect, conversation, _) = self.inbound_conversation(org, &inbound, true).await?;

        let message = Message {
            id: MessageId::new(),
            org_id: org,
            conversation_id: conversation.id,
            prospect_id: prospect.id,
            direction: Direction::Inbound,
            channel: inbound.channel,
            sender: None,
            text: inbound.text,
            subject: None,
            at: inbound.at,
            provider: Some(inbound.provider),
            provider_message_id: Some(inbound.provider_message_id),
            status: DeliveryStatus::Received,
            processed: false,
        };
        if store.insert_inbound(&message).await? == InsertOutcome::Duplicate {
            tracing::debug!(target: "kalify::engine", conversation_id = %conversation.id, "duplicate inbound message ignored");
            return Ok(InboundReport {
                prospect_id: prospect.id,
                conversation_id: conversation.id,
                message_id: None,
                duplicate: true,
                state: conversation.state,
                score: conversation.score.as_ref().map(|score| score.value),
            });
        }

        let conversation = self.process_pending(org, conversation.id).await?;

        // Replies go out at once rather than at the next scheduler tick. A
        // delivery failure leaves the entry in the outbox for the next run.
        if let Err(error) = self.deliver_outbox().await {
            tracing::warn!(target: "kalify::engine", conversation_id = %conversation.id, error = %error, "outbox delivery after an inbound turn failed; the next run retries");
        }
        Ok(InboundReport {
            prospect_id: prospect.id,
            conversation_id: conversation.id,
            message_id: Some(message.id),
            duplicate: false,
            state: conversation.state,
            score: conversation.score.as_ref().map(|score| score.value),
        })
    }

    /// Handles a message from a prospect as [`Engine::handle_inbound`] does,
    /// but writes the message in the same transaction as its turn, so that
    /// a turn costs one commit, and leaves the replies in the outbox for
    /// [`Engine::deliver_outbox`] or the worker.
    ///
    /// A message whose provider id is already in the conversation is
    /// reported as a duplicate. When the commit fails with `Conflict` (a
    /// concurrent turn, or a duplicate the store rejects), the message is
    /// stored and processed as [`Engine::handle_inbound`] does.
    ///
    /// # Errors
    /// As [`Engine::handle_inbound`].
    pub async fn answer_inbound(
        &self,
        org: OrgId,
        inbound: InboundMessage,
    ) -> Result<InboundReport> {
        let store = &self.inner.store;
        if inbound.provider_message_id.trim().is_empty() {
            return Err(Error::invalid_input(
                "inbound message has an empty provider message id; the provider's id is required for de-duplication",
            ));
        }
        // A prospect's first message gets a new conversation, which the
        // turn's commit creates, so that the turn costs one commit.
        let (prospect, conversation, unsaved) =
            self.inbound_conversation(org, &inbound, false).await?;
        let (guard, waited) = self.inner.locks.lock_noting_wait(prospect.id).await;
        // A turn of the same prospect held the lock and may have committed,
        // so the rows read before it are stale. A turn built on them would
        // fail the version check after its model call and call again.
        let (prospect, conversation, unsaved) = if waited {
            self.inbound_conversation(org, &inbound, false).await?
        } else {
            (prospect, conversation, unsaved)
        };
        let (prospect_id, conversation_id) = (prospect.id, conversation.id);

        let stored = if unsaved {
            Vec::new()
        } else {
            store.list_messages(org, conversation_id).await?
        };
        let duplicate = stored.iter().any(|message| {
            message.direction == Direction::Inbound
                && message.provider.as_deref() == Some(inbound.provider.as_str())
                && message.provider_message_id.as_deref()
                    == Some(inbound.provider_message_id.as_str())
        });
        if duplicate {
            tracing::debug!(target: "kalify::engine", conversation_id = %conversation_id, "duplicate inbound message ignored");
            return Ok(InboundReport {
                prospect_id,
                conversation_id,
                message_id: None,
                duplicate: true,
                state: conversation.state,
                score: conversation.score.as_ref().map(|score| score.value),
            });
        }

        // The turn stores the message as processed, together with any
        // earlier message that is stored but not processed yet.
        let message = Message {
            id: MessageId::new(),
            org_id: org,
            conversation_id,
            prospect_id,
            direction: Direction::Inbound,
            channel: inbound.channel,
            sender: None,
            text: inbound.text.clone(),
            subject: None,
            at: inbound.at,
            provider: Some(inbound.provider.clone()),
            provider_message_id: Some(inbound.provider_message_id.clone()),
            status: DeliveryStatus::Received,
            processed: true,
        };
        let (history, mut pending): (Vec<Message>, Vec<Message>) = stored
            .into_iter()
            .partition(|stored| stored.direction == Direction::Outbound || stored.processed);
        pending.push(message.clone());
        let campaign = match conversation.campaign_id {
            Some(id) => Some(store.get_campaign(org, id).await?),
            None => None,
        };
        let now = self.inner.clock.now();
        let turn = Turn::new(&self.inner, now, conversation, prospect, campaign, history);
        let (mut commit, notifications) = self.answer_messages(turn, &pending, now).await?;
        commit.processed_inbound.retain(|id| *id != message.id);
        commit.messages.insert(0, message.clone());
        commit.create_conversation = unsaved;

        match store.commit_turn(&commit).await {
            Ok(_) => {
                drop(guard);
                self.notify_all(notifications).await;
                Ok(InboundReport {
                    prospect_id,
                    conversation_id,
                    message_id: Some(message.id),
                    duplicate: false,
                    state: commit.conversation.state,
                    score: commit.conversation.score.as_ref().map(|score| score.value),
                })
            }
            Err(error) if error.kind() == ErrorKind::Conflict => {
                tracing::debug!(target: "kalify::engine", conversation_id = %conversation_id, "one-commit turn conflicted; storing the message first");
                drop(guard);
                // The message needs a stored conversation: the prospect's
                // winner when another turn created one first.
                let conversation_id = if unsaved {
                    self.inbound_conversation(org, &inbound, true).await?.1.id
                } else {
                    conversation_id
                };
                let message = Message {
                    processed: false,
                    conversation_id,
                    ..message
                };
                if store.insert_inbound(&message).await? == InsertOutcome::Duplicate {
                    let conversation = store.get_conversation(org, conversation_id).await?;
                    return Ok(InboundReport {
                        prospect_id,
                        conversation_id,
                        message_id: None,
                        duplicate: true,
                        state: conversation.state,
                        score: conversation.score.as_ref().map(|score| score.value),
                    });
                }
                let conversation = self.process_pending(org, conversation_id).await?;
                Ok(InboundReport {
                    prospect_id,
                    conversation_id,
                    message_id: Some(message.id),
                    duplicate: false,
                    state: conversation.state,
                    score: conversation.score.as_ref().map(|score| score.value),
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Finds the prospect who sent `inbound` and the conversation that
    /// receives it: the most recently updated one that has sent something,
    /// else a new conversation of the prospect's own.
    ///
    /// A prospect without a conversation gets a new one, which is stored
    /// when `store_new` is set. Otherwise it is returned unsaved, with
    /// `true` as the third value, for the caller to create.
    async fn inbound_conversation(
        &self,
        org: OrgId,
        inbound: &InboundMessage,
        store_new: bool,
    ) -> Result<(Prospect, Conversation, bool)> {
        let store = &self.inner.store;
        let prospect = match store.find_prospect(org, &inbound.from).await? {
            Some(prospect) => prospect,
            None => {
                let (prospect, conversation) =
                    self.unknown_sender_conversation(org, inbound).await?;
                return Ok((prospect, conversation, false));
            }
        };

        // The most recently updated conversation that has sent something
        // receives the reply; a prospect who writes first gets a
        // conversation of their own.
        let conversations = store.conversations_of(org, prospect.id).await?;
        let active = conversations
            .iter()
            .position(|conversation| conversation.state != ConversationState::New)
            .unwrap_or(0);
        let conversation = match conversations.into_iter().nth(active) {
            Some(conversation) => conversation,
            None => {
                let mut conversation =
                    Conversation::new(org, prospect.id, None, inbound.channel, inbound.at);
                conversation.state = ConversationState::Contacted;
                if !store_new {
                    return Ok((prospect, conversation, true));
                }
                store.insert_conversation(&conversation, &[]).await?;
                // Another worker may have created one at the same time; use whichever won.
                store
                    .conversations_of(org, prospect.id)
                    .await?
                    .into_iter()
                    .next()
                    .unwrap_or(conversation)
            }
        };

        Ok((prospect, conversation, false))
    }

    /// Creates a prospect for a sender no prospect of `org` has, with a
    /// conversation handed to the team, so that the message is stored for a
    /// member to review instead of being lost. The AI sends no reply, because
    /// the engine has no consent record for the person, and a member decides.
    ///
    /// The prospect id is derived from the org and the contact point, so two
    /// messages of the same new sender handled at once create one prospect.
    async fn unknown_sender_conversation(
        &self,
        org: OrgId,
        inbound: &InboundMessage,
    ) -> Result<(Prospect, Conversation)> {
        let store = &self.inner.store;
        // An erased or opted-out person stays off the books: their message is
        // not stored, so an erasure cannot be undone by one reply.
        if store.is_suppressed(org, &inbound.from).await? {
            tracing::info!(target: "kalify::engine", org_id = %org, channel = %inbound.channel, "message from a suppressed sender no prospect has; not stored");
            return Err(Error::not_found(
                "the sender is on the suppression list (opted out or erased) and no prospect has them; the message is not stored",
            )
            .with_operation("handle_inbound")
            .with_context("org_id", org));
        }
        let mut prospect = Prospect::new(org, inbound.at);
        prospect.id = unknown_sender_id(org, &inbound.from);
        match &inbound.from {
            crate::contact::ContactPoint::Phone(phone) => prospect.phone = Some(phone.clone()),
            crate::contact::ContactPoint::Email(email) => prospect.email = Some(email.clone()),
            crate::contact::ContactPoint::Messenger(psid) => {
                prospect.messenger = Some(psid.clone())
            }
        }
        prospect.source = Some(format!("inbound:{}", inbound.provider));
        prospect.status = ConversationState::HandedOff;
        match store
            .insert_prospects(std::slice::from_ref(&prospect))
            .await
        {
            Ok(()) => {
                tracing::info!(target: "kalify::engine", org_id = %org, prospect_id = %prospect.id, channel = %inbound.channel, "message from an unknown sender; created a prospect for review");
            }
            // Another message of the same sender created it first.
            Err(error) if error.kind() == ErrorKind::Conflict => {}
            Err(error) => return Err(error),
        }
        let prospect = store.get_prospect(org, prospect.id).await?;

        let mut conversation =
            Conversation::new(org, prospect.id, None, inbound.channel, inbound.at);
        conversation.state = ConversationState::HandedOff;
        if store.insert_conversation(&conversation, &[]).await? {
            let mut commit = crate::ports::TurnCommit::new(conversation.clone());
            commit.audit.push(crate::ports::AuditEvent {
                org_id: org,
                prospect_id: Some(prospect.id),
                conversation_id: Some(conversation.id),
                action: "unknown_sender".to_owned(),
                actor: crate::ports::Actor::System,
                detail: "message from a sender no prospect had; stored for a member to review"
                    .to_owned(),
                at: inbound.at,
            });
            store.commit_turn(&commit).await?;
        }
        let conversation = store
            .conversations_of(org, prospect.id)
            .await?
            .into_iter()
            .next()
            .unwrap_or(conversation);
        Ok((prospect, conversation))
    }

    /// Processes every unprocessed inbound message of a conversation in one
    /// turn, retrying on version conflicts, and returns the conversation.
    /// The replies stay in the outbox until [`Engine::deliver_outbox`] runs.
    pub async fn process_pending(
        &self,
        org: OrgId,
        conversation_id: ConversationId,
    ) -> Result<Conversation> {
        let store = &self.inner.store;
        let retries = self.inner.settings.max_turn_retries;
        let prospect_id = store
            .get_conversation(org, conversation_id)
            .await?
            .prospect_id;
        let _guard = self.inner.locks.lock(prospect_id).await;
        for attempt in 0..=retries {
            let conversation = store.get_conversation(org, conversation_id).await?;
            let pending = store.pending_inbound(org, conversation_id).await?;
            if pending.is_empty() {
                return Ok(conversation);
            }
            let now = self.inner.clock.now();
            let (commit, notifications) = self.reply_turn(conversation, pending, now).await?;
            match store.commit_turn(&commit).await {
                Ok(_) => {
                    self.notify_all(notifications).await;
                    return store.get_conversation(org, conversation_id).await;
                }
                Err(error) if error.kind() == ErrorKind::Conflict => {
                    tracing::debug!(target: "kalify::engine", conversation_id = %conversation_id, attempt, "turn lost a version race; recomputing");
                }
                Err(error) => return Err(error),
            }
        }
        Err(
            Error::conflict("the conversation kept changing while its turn was computed")
                .with_operation("process_pending")
                .with_context("conversation_id", conversation_id)
                .with_context("retries", retries),
        )
    }

    async fn reply_turn(
        &self,
        conversation: Conversation,
        pending: Vec<Message>,
        now: Timestamp,
    ) -> Result<(crate::ports::TurnCommit, Vec<Notification>)> {
        let turn = self.load_turn(conversation, now).await?;
        self.answer_messages(turn, &pending, now).await
    }

    /// Applies `pending`, the prospect's new messages, to a loaded turn:
    /// keywords, then the analysis of the rest, and the transition it leads to.
    async fn answer_messages(
        &self,
        mut turn: Turn<'_>,
        pending: &[Message],
        now: Timestamp,
    ) -> Result<(crate::ports::TurnCommit, Vec<Notification>)> {
        turn.answers_prospect = true;
        let analyse_opt_outs = self.inner.policy.analyse_opt_outs;

        // Keywords first: unless the policy asks for opt-outs to be
        // analysed, no model sees a message that is an opt-out.
        let mut keyword_opt_out = false;
        let mut to_analyse = Vec::new();
        for message in pending {
            turn.mark_processed(message);
            match keywords::classify(&message.text) {
                Some(Keyword::OptOut) if analyse_opt_outs => {
                    keyword_opt_out = true;
                    to_analyse.push(message.clone());
                }
                Some(Keyword::OptOut) => turn.apply(Event::OptOutReceived).await?,
                Some(Keyword::OptIn) => turn.apply(Event::OptInReceived).await?,
                Some(Keyword::Help) => turn.apply(Event::HelpRequested).await?,
                None => to_analyse.push(message.clone()),
            }
        }

        let analysable = !to_analyse.is_empty()
            && (turn.conversation.state != ConversationState::OptedOut || analyse_opt_outs)
            && !turn.prospect.restricted;
        if analysable {
            self.analyse_into(&mut turn, &to_analyse, now, keyword_opt_out)
                .await?;
        }
        // The keyword stands whatever the analysis found, or when none ran.
        if keyword_opt_out && turn.conversation.state != ConversationState::OptedOut {
            turn.apply(Event::OptOutReceived).await?;
        }
        Ok(turn.finish())
    }

    async fn analyse_into(
        &self,
        turn: &mut Turn<'_>,
        messages: &[Message],
        now: Timestamp,
        keyword_opt_out: bool,
    ) -> Result<()> {
        let analyse_opt_outs = self.inner.policy.analyse_opt_outs;
        let request = self.analysis_request(turn, messages);
        let Some(analysis) = self.call_analyse(&request, turn).await else {
            if keyword_opt_out || turn.conversation.state == ConversationState::OptedOut {
                // The opt-out stands without an analysis, and nobody needs to take over.
                return Ok(());
            }
            // Every model failed: a person takes over rather than the AI guessing.
            turn.audit(
                "analysis_failed",
                "every model failed; handing off".to_owned(),
                crate::ports::Actor::System,
            );
            return turn.apply(Event::MemberTookOver).await;
        };
        turn.intent = analysis.intent;

        let objects =
            analysis.objection == Objection::Clear || analysis.intent == Intent::ObjectsToMessages;
        if objects && !analyse_opt_outs {
            return turn.apply(Event::OptOutReceived).await;
        }
        if let Some(language) = analysis.language
            && language != turn.prospect.locale
        {
            turn.prospect_mut().locale = language;
        }

        let facts = ground_facts(&analysis, messages, &self.inner.framework, now);
        merge_facts(&mut turn.conversation.facts, facts);
        let score: Score = score(&self.inner.framework, &turn.conversation.facts);
        turn.conversation.score = Some(score.clone());

        let opted_out = turn.conversation.state == ConversationState::OptedOut;
        if (objects || keyword_opt_out) && !opted_out {
            return turn.apply(Event::OptOutReceived).await;
        }
        if analysis.objection == Objection::Doubtful && !opted_out {
            turn.audit(
                "objection_review",
                "doubtful objection; a member reviews it".to_owned(),
                crate::ports::Actor::System,
            );
            return turn.apply(Event::MemberTookOver).await;
        }

        let outcome = ReplyOutcome {
            band: score.band,
            disqualified: score.disqualified_by.is_some(),
            wants_human: analysis.intent == Intent::AsksForHuman,
            not_interested: analysis.intent == Intent::NotInterested,
            negative: analysis.sentiment == Sentiment::Negative,
        };
        turn.apply(Event::ReplyAnalysed(outcome)).await
    }

    /// Asks each model in turn for an analysis, records every call in the
    /// turn, and returns the first answer.
    async fn call_analyse(
        &self,
        request: &AnalysisRequest,
        turn: &mut Turn<'_>,
    ) -> Option<Analysis> {
        let conversation_id = turn.conversation.id;
        let models = std::iter::once(&self.inner.model).chain(self.inner.fallback_model.as_ref());
        for model in models {
            match model.analyse(request).await {
                Ok(analysis) => {
                    turn.record_exchange(model.name(), "analyse", request, Ok(&analysis));
                    return Some(analysis);
                }
                Err(error) => {
                    turn.record_exchange(
                        model.name(),
                        "analyse",
                        request,
                        Err::<&Analysis, _>(&error),
                    );
                    tracing::warn!(target: "kalify::ai", model = model.name(), conversation_id = %conversation_id, error = %error, "analysis failed");
                }
            }
        }
        None
    }

    fn analysis_request(&self, turn: &Turn<'_>, messages: &[Message]) -> AnalysisRequest {
        let locale = turn.prospect.locale;
        AnalysisRequest {
            locale,
            criteria: self
                .inner
                .framework
                .criteria
                .iter()
                .map(|criterion| CriterionBrief {
                    key: criterion.key.clone(),
                    description: criterion.description.clone(),
                    question: criterion.question.get(locale).to_owned(),
                })
                .collect(),
            known_facts: turn
                .conversation
                .facts
                .iter()
                .map(|fact| (fact.key.clone(), fact.value.clone()))
                .collect(),
            history: transcript(turn.history()),
            new_messages: transcript(messages),
        }
    }

    pub(crate) async fn notify_all(&self, notifications: Vec<Notification>) {
        for notification in notifications {
            if let Err(error) =
                crate::ports::Notifier::notify(&self.inner.notifier, &notification).await
            {
                tracing::warn!(target: "kalify::engine", kind = ?notification.kind, prospect_id = %notification.prospect_id, error = %error, "notification failed");
            }
        }
    }
}

/// Ties each extracted fact to the message its quote comes from. A fact is
/// dropped when its quote is in none of the new messages (evidence must be
/// real), when its key is not a criterion of the framework, when its value
/// has the wrong type for the criterion, or when its confidence is not a
/// finite number.
fn ground_facts(
    analysis: &Analysis,
    messages: &[Message],
    framework: &Framework,
    now: Timestamp,
) -> Vec<Fact> {
    analysis
        .facts
        .iter()
        .filter_map(|extracted| {
            let criterion = framework.criterion(&extracted.key)?;
            if !criterion.accepts(&extracted.value) || !extracted.confidence.is_finite() {
                return None;
            }
            let quote = extracted.quote.trim();
            if quote.is_empty() {
                return None;
            }
            let message = messages
                .iter()
                .rev()
                .find(|message| message.text.contains(quote))?;
            Some(Fact {
                key: extracted.key.clone(),
                value: extracted.value.clone(),
                evidence: Evidence {
                    message_id: message.id,
                    quote: quote.to_owned(),
                    confidence: extracted.confidence.clamp(0.0, 1.0),
                },
                extracted_at: now,
            })
        })
        .collect()
}

impl Engine {
    /// Loads what a turn on `conversation` reads: its prospect, its campaign
    /// and the messages so far. Inbound messages not yet processed are left
    /// out of the history, because the turn that processes them adds them.
    pub(crate) async fn load_turn(
        &self,
        conversation: Conversation,
        now: Timestamp,
    ) -> Result<Turn<'_>> {
        let store = &self.inner.store;
        let org = conversation.org_id;
        let prospect = store.get_prospect(org, conversation.prospect_id).await?;
        let campaign = match conversation.campaign_id {
            Some(id) => Some(store.get_campaign(org, id).await?),
            None => None,
        };
        let history: Vec<Message> = store
            .list_messages(org, conversation.id)
            .await?
            .into_iter()
            .filter(|message| message.direction == Direction::Outbound || message.processed)
            .collect();
        Ok(Turn::new(
            &self.inner,
            now,
            conversation,
            prospect,
            campaign,
            history,
        ))
    }
}

/// The id of the prospect created for an unknown sender: a version 8 UUID
/// from the SHA-256 of the org and the normalised contact point.
fn unknown_sender_id(org: OrgId, contact: &crate::contact::ContactPoint) -> ProspectId {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(org.as_uuid().as_bytes());
    hasher.update(contact.channel().as_str().as_bytes());
    hasher.update(b":");
    hasher.update(contact.key().as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    ProspectId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

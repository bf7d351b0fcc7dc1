//! Webhook events other than plain messages: provider opt-outs, bounces,
//! auto-replies, postbacks and delivery reports.

use crate::conversation::Event;
use crate::engine::Engine;
use crate::engine::inbound::InboundReport;
use crate::error::{ErrorKind, Result};
use crate::id::{OrgId, ProspectId};
use crate::ports::{Actor, CancelScope, InboundEvent, InboundMessage, Suppression};

/// The outcome of [`Engine::handle_event`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventOutcome {
    /// A message was handled as [`Engine::handle_inbound`] does.
    Message(InboundReport),
    /// The contact point was suppressed; the prospect, when known, is opted
    /// out or has its follow-ups cancelled.
    Suppressed {
        /// The prospect, when one has the contact point.
        prospect_id: Option<ProspectId>,
        /// Why, such as `opt_out` or `bounce`.
        reason: String,
    },
    /// Nothing to do, with the reason.
    Ignored(&'static str),
}

impl Engine {
    /// Handles one parsed webhook event.
    ///
    /// - A message goes through [`Engine::handle_inbound`].
    /// - A provider opt-out (such as Twilio's STOP handling or an e-mail
    ///   unsubscribe) suppresses the contact point and opts the prospect out,
    ///   with one confirmation, as a STOP message would.
    /// - A permanent bounce suppresses the address and cancels the
    ///   prospect's pending follow-ups; a temporary one is ignored.
    /// - An auto-reply never counts as engagement and is ignored.
    /// - A postback is handled as a message whose text is the button title.
    /// - Delivery reports are ignored.
    ///
    /// # Errors
    /// As [`Engine::handle_inbound`] for messages; store errors otherwise.
    pub async fn handle_event(&self, org: OrgId, event: InboundEvent) -> Result<EventOutcome> {
        let store = &self.inner.store;
        match event {
            InboundEvent::Message(message) => Ok(EventOutcome::Message(
                self.handle_inbound(org, message).await?,
            )),
            InboundEvent::Postback(postback) => {
                let id = postback.provider_message_id.unwrap_or_else(|| {
                    format!(
                        "postback:{}:{}",
                        postback.payload,
                        postback.at.timestamp_millis()
                    )
                });
                let message = InboundMessage {
                    channel: postback.channel,
                    provider: postback.provider,
                    provider_message_id: id,
                    from: postback.from,
                    text: postback.title,
                    at: postback.at,
                };
                Ok(EventOutcome::Message(
                    self.handle_inbound(org, message).await?,
                ))
            }
            InboundEvent::OptOut(notice) => {
                let now = self.inner.clock.now();
                store
                    .suppress(&[Suppression {
                        org_id: org,
                        contact: notice.contact.clone(),
                        reason: "opt_out".to_owned(),
                        at: now,
                    }])
                    .await?;
                let prospect = store.find_prospect(org, &notice.contact).await?;
                if let Some(prospect) = &prospect {
                    self.system_turn(
                        org,
                        prospect.id,
                        Some(Event::OptOutReceived),
                        "provider_opt_out",
                    )
                    .await?;
                    self.deliver_outbox().await?;
                }
                Ok(EventOutcome::Suppressed {
                    prospect_id: prospect.map(|prospect| prospect.id),
                    reason: "opt_out".to_owned(),
                })
            }
            InboundEvent::Bounce(bounce) => {
                let Some(recipient) = bounce.recipient.filter(|_| bounce.permanent) else {
                    return Ok(EventOutcome::Ignored(
                        "temporary bounce or unknown recipient",
                    ));
                };
                let now = self.inner.clock.now();
                store
                    .suppress(&[Suppression {
                        org_id: org,
                        contact: recipient.clone(),
                        reason: "bounce".to_owned(),
                        at: now,
                    }])
                    .await?;
                let prospect = store.find_prospect(org, &recipient).await?;
                if let Some(prospect) = &prospect {
                    self.system_turn(org, prospect.id, None, "bounce").await?;
                }
                Ok(EventOutcome::Suppressed {
                    prospect_id: prospect.map(|prospect| prospect.id),
                    reason: "bounce".to_owned(),
                })
            }
            InboundEvent::AutoReply(_) => Ok(EventOutcome::Ignored("auto-reply")),
            // NOTE: delivery reports are not stored yet, so a message's status
            // stays `sent` after the provider reports delivery or failure.
            InboundEvent::Status(_) | InboundEvent::Watermark(_) => {
                Ok(EventOutcome::Ignored("delivery report"))
            }
        }
    }

    /// Applies `event` (or only cancels pending follow-ups when `None`) to
    /// the prospect's most recent conversation, as one audited turn.
    async fn system_turn(
        &self,
        org: OrgId,
        prospect_id: ProspectId,
        event: Option<Event>,
        action: &str,
    ) -> Result<()> {
        let store = &self.inner.store;
        let _guard = self.inner.locks.lock(prospect_id).await;
        for _ in 0..=self.inner.settings.max_turn_retries {
            let Some(conversation) = store
                .conversations_of(org, prospect_id)
                .await?
                .into_iter()
                .next()
            else {
                return Ok(());
            };
            let mut turn = self.load_turn(conversation, self.inner.clock.now()).await?;
            match event {
                Some(event) => turn.apply(event).await?,
                None => turn.cancel(CancelScope::Prospect),
            }
            turn.audit(action, String::new(), Actor::System);
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
        Err(
            crate::error::Error::conflict("the prospect's conversation kept changing; try again")
                .with_context("prospect_id", prospect_id),
        )
    }
}

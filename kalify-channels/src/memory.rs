//! A channel that records sends in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use kalify_core::contact::{ChannelKind, ContactPoint};
use kalify_core::gate::SendPermit;
use kalify_core::ports::{Channel, ChannelCapabilities, Receipt};
use kalify_core::{ConversationId, Result, Timestamp};

/// A message a [`MemoryChannel`] accepted. `Debug` omits the text and recipient.
#[derive(Clone, PartialEq)]
pub struct SentMessage {
    /// The recipient.
    pub to: ContactPoint,
    /// The text.
    pub text: String,
    /// The subject, for e-mail.
    pub subject: Option<String>,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The idempotency key the engine passed.
    pub idempotency_key: String,
    /// The provider id the channel returned.
    pub provider_message_id: String,
    /// When the gate passed the send.
    pub at: Timestamp,
}

impl std::fmt::Debug for SentMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentMessage")
            .field("conversation_id", &self.conversation_id)
            .field("idempotency_key", &self.idempotency_key)
            .field("provider_message_id", &self.provider_message_id)
            .finish_non_exhaustive()
    }
}

/// Records every send; a repeated idempotency key returns the first receipt
/// and records nothing new, as providers with idempotent APIs do.
/// Clones share the same record.
#[derive(Clone, Debug)]
pub struct MemoryChannel {
    kind: ChannelKind,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    sent: Vec<SentMessage>,
    by_key: HashMap<String, usize>,
}

impl MemoryChannel {
    /// Creates a channel of `kind`.
    pub fn new(kind: ChannelKind) -> Self {
        MemoryChannel {
            kind,
            state: Arc::default(),
        }
    }

    /// Every message accepted so far, in order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sent
            .clone()
    }
}

#[async_trait]
impl Channel for MemoryChannel {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn provider(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities::new()
            .with_dedupes_sends(true)
            .with_finds_sent(true)
    }

    /// Returns the receipt of the entry's idempotency key, if it was sent.
    async fn find_sent(&self, permit: &SendPermit) -> Result<Option<Receipt>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let found = state
            .by_key
            .get(&permit.entry().idempotency_key)
            .map(|index| Receipt {
                provider: "memory".into(),
                provider_message_id: state.sent[*index].provider_message_id.clone(),
            });
        Ok(found)
    }

    async fn send(&self, permit: &SendPermit) -> Result<Receipt> {
        let entry = permit.entry();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = state.by_key.get(&entry.idempotency_key) {
            let first = &state.sent[*index];
            return Ok(Receipt {
                provider: "memory".into(),
                provider_message_id: first.provider_message_id.clone(),
            });
        }
        let provider_message_id = format!("mem-{}", state.sent.len() + 1);
        state.sent.push(SentMessage {
            to: entry.to.clone(),
            text: entry.text.clone(),
            subject: entry.subject.clone(),
            conversation_id: entry.conversation_id,
            idempotency_key: entry.idempotency_key.clone(),
            provider_message_id: provider_message_id.clone(),
            at: permit.checked_at(),
        });
        let index = state.sent.len() - 1;
        state.by_key.insert(entry.idempotency_key.clone(), index);
        Ok(Receipt {
            provider: "memory".into(),
            provider_message_id,
        })
    }
}

//! Token-bucket rate limiting of sends, counting SMS segments.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::contact::ChannelKind;
use crate::error::{Error, ErrorKind, Result};
use crate::gate::SendPermit;
use crate::ports::{Channel, ChannelCapabilities, InboundEvent, Receipt, WebhookRequest};

/// A token bucket: `capacity` tokens at most, refilled at `per_second`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// Creates a full bucket.
    pub fn new(capacity: u32, per_second: f64, now: Instant) -> Self {
        let capacity = f64::from(capacity.max(1));
        TokenBucket {
            capacity,
            per_second: per_second.max(f64::MIN_POSITIVE),
            tokens: capacity,
            updated: now,
        }
    }

    /// Takes `cost` tokens at `now`, or returns how long to wait until they
    /// are there. A cost above the capacity is clamped to the capacity, so a
    /// long message waits for a full bucket instead of forever.
    pub fn try_take(&mut self, cost: u32, now: Instant) -> std::result::Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
        let cost = f64::from(cost).min(self.capacity);
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (cost - self.tokens) / self.per_second,
            ))
        }
    }
}

/// Settings of [`RateLimitedChannel`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct RateLimit {
    /// The burst size, in SMS segments (or messages on other channels).
    pub burst: u32,
    /// The sustained rate, in segments (or messages) per second.
    pub per_second: f64,
    /// The maximum wait for tokens; past it a send returns `RateLimited`
    /// so the outbox retries it later.
    pub max_wait: Duration,
}

impl RateLimit {
    /// Creates a limit of `per_second` with a burst of `burst` and a maximum wait of one second.
    pub fn new(per_second: f64, burst: u32) -> Self {
        RateLimit {
            burst,
            per_second,
            max_wait: Duration::from_secs(1),
        }
    }

    /// Sets the maximum wait for tokens.
    pub fn with_max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }
}

/// Wraps a channel with one token bucket per sender identity. SMS sends
/// cost their segment count, others cost 1.
#[derive(Debug)]
pub struct RateLimitedChannel<C> {
    inner: C,
    limit: RateLimit,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl<C: Channel> RateLimitedChannel<C> {
    /// Wraps `inner`.
    pub fn new(inner: C, limit: RateLimit) -> Self {
        RateLimitedChannel {
            inner,
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, sender: &str, cost: u32) -> std::result::Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        buckets
            .entry(sender.to_owned())
            .or_insert_with(|| TokenBucket::new(self.limit.burst, self.limit.per_second, now))
            .try_take(cost, now)
    }
}

#[async_trait]
impl<C: Channel> Channel for RateLimitedChannel<C> {
    fn kind(&self) -> ChannelKind {
        self.inner.kind()
    }

    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn capabilities(&self) -> ChannelCapabilities {
        self.inner.capabilities()
    }

    /// Looks up through the wrapped channel; a lookup takes no token.
    async fn find_sent(&self, permit: &SendPermit) -> Result<Option<Receipt>> {
        self.inner.find_sent(permit).await
    }

    async fn send(&self, permit: &SendPermit) -> Result<Receipt> {
        let entry = permit.entry();
        let cost = match entry.channel {
            ChannelKind::Sms => {
                u32::try_from(crate::sms::segments(&entry.text).segments).unwrap_or(u32::MAX)
            }
            _ => 1,
        };
        let mut waited = Duration::ZERO;
        loop {
            match self.take(&entry.sender_name, cost) {
                Ok(()) => return self.inner.send(permit).await,
                Err(wait) if waited + wait <= self.limit.max_wait => {
                    tokio::time::sleep(wait).await;
                    waited += wait;
                }
                Err(wait) => {
                    return Err(Error::new(
                        ErrorKind::RateLimited,
                        "the sender's send rate limit is reached",
                    )
                    .with_operation("send")
                    .with_context("provider", self.inner.provider())
                    .with_retry_after(wait));
                }
            }
        }
    }

    fn parse_webhook(&self, request: &WebhookRequest) -> Result<Vec<InboundEvent>> {
        self.inner.parse_webhook(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_over_time() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, 1.0, start);
        assert!(bucket.try_take(2, start).is_ok());
        let wait = bucket.try_take(2, start).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-9, "{wait:?}");
        assert!(bucket.try_take(2, start + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn oversized_cost_waits_for_full_bucket() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2, 2.0, start);
        assert!(
            bucket.try_take(10, start).is_ok(),
            "a full bucket lets one oversized send through"
        );
        assert!(bucket.try_take(1, start).is_err());
    }
}

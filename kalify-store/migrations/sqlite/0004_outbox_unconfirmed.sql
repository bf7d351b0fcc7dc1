-- An outbox entry whose earlier attempt may have reached the provider
-- without its outcome being recorded: the claim that found an expired
-- lease sets it, as does a retry after an unknown outcome, and only a
-- recorded send clears it.
ALTER TABLE outbox ADD COLUMN unconfirmed INTEGER NOT NULL DEFAULT 0;

-- When the entry was first claimed, in nanoseconds: a lookup of an earlier
-- attempt at the provider searches from this time.
ALTER TABLE outbox ADD COLUMN first_attempt_at INTEGER;

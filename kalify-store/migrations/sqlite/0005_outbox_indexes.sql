-- Outbox indexes whose keys do not change with an entry's status, so that
-- sending or cancelling an entry rewrites as few index pages as it can.
-- The due index holds only pending entries, which the claim reads, so it
-- stays small however many sent entries the table keeps.
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'pending';
DROP INDEX outbox_by_conversation;
CREATE INDEX outbox_by_conversation ON outbox (org_id, conversation_id);
DROP INDEX outbox_by_prospect;
CREATE INDEX outbox_by_prospect ON outbox (org_id, prospect_id);

-- Schema version 2 of the kalify PostgreSQL store: data-subject rights.
-- It adds the per-org suppression keys, the model exchanges, the
-- data-subject request records, the indexes that retention and erasure
-- read, and the cross-org functions of retention and request follow-up.

-- One random 32-byte key per org. From this version on, the suppression
-- list stores "hmac-sha256:<hex>" of "channel:contact" under this key in
-- suppressions.contact, never the contact point itself. The migration
-- runner rewrites the rows written before this version in the same
-- transaction as this file.
CREATE TABLE suppression_keys (
    org_id uuid  NOT NULL PRIMARY KEY,
    key    bytea NOT NULL CHECK (octet_length(key) = 32)
);

CREATE TABLE model_exchanges (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order
    org_id          uuid   NOT NULL,
    prospect_id     uuid   NOT NULL,
    conversation_id uuid   NOT NULL,
    model           text   NOT NULL,
    operation       text   NOT NULL,
    request         text   NOT NULL,  -- JSON
    response        text   NOT NULL,  -- JSON, or the error
    at              bigint NOT NULL
);

CREATE INDEX model_exchanges_by_prospect ON model_exchanges (org_id, prospect_id, seq);

-- A request names its prospect by id only, and is kept after the
-- prospect's erasure as proof of the answer.
CREATE TABLE subject_requests (
    org_id       uuid   NOT NULL,
    id           uuid   NOT NULL,
    prospect_id  uuid   NOT NULL,
    kind         text   NOT NULL,
    actor        jsonb  NOT NULL,
    received_at  bigint NOT NULL,
    due_at       bigint NOT NULL,
    completed_at bigint,
    outcome      jsonb  NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE INDEX subject_requests_open ON subject_requests (due_at, id) WHERE completed_at IS NULL;

-- Retention: prospects by collection time, a prospect's latest own
-- message, and messages by age.
CREATE INDEX prospects_by_created ON prospects (created_at);
CREATE INDEX messages_inbound_by_prospect ON messages (org_id, prospect_id, at) WHERE direction = 'inbound';
CREATE INDEX messages_by_at ON messages (at, id);

-- Erasure deletes a prospect's jobs and outbox entries of every status,
-- and the indexes of version 1 cover only pending ones.
CREATE INDEX jobs_by_prospect_any_status ON jobs (org_id, prospect_id);
CREATE INDEX outbox_by_prospect_any_status ON outbox (org_id, prospect_id);

-- Retention and request follow-up read or delete rows of every org, so
-- they are functions, as the claims are: with row-level security on, the
-- row_level_security migrations make them SECURITY DEFINER.

-- Lists up to max_rows open requests due before cut_off, soonest due first.
CREATE FUNCTION open_subject_requests(cut_off bigint, max_rows bigint)
RETURNS SETOF subject_requests
LANGUAGE sql
STABLE
AS $$
    SELECT * FROM subject_requests
    WHERE completed_at IS NULL AND due_at < cut_off
    ORDER BY due_at, id
    LIMIT max_rows
$$;

-- Lists up to max_rows prospects collected before cut_off with no inbound
-- message at or after cut_off, oldest collected first.
CREATE FUNCTION expired_prospects(cut_off bigint, max_rows bigint)
RETURNS TABLE (prospect_org_id uuid, prospect_id uuid)
LANGUAGE sql
STABLE
AS $$
    SELECT p.org_id, p.id FROM prospects AS p
    WHERE p.created_at < cut_off
      AND NOT EXISTS (
          SELECT 1 FROM messages AS m
          WHERE m.org_id = p.org_id AND m.prospect_id = p.id AND m.direction = 'inbound' AND m.at >= cut_off
      )
    ORDER BY p.created_at, p.org_id, p.id
    LIMIT max_rows
$$;

-- Deletes up to max_rows messages written or received before cut_off,
-- oldest first, with their outbox entries, and returns how many messages
-- it deleted. Messages another transaction has locked are skipped until
-- a later call.
CREATE FUNCTION purge_messages(cut_off bigint, max_rows bigint)
RETURNS bigint
LANGUAGE sql
VOLATILE
AS $$
    WITH old AS (
        SELECT org_id, id FROM messages
        WHERE at < cut_off
        ORDER BY at, id
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    ),
    entries AS (
        DELETE FROM outbox USING old
        WHERE outbox.org_id = old.org_id AND outbox.message_id = old.id
    ),
    deleted AS (
        DELETE FROM messages USING old
        WHERE messages.org_id = old.org_id AND messages.id = old.id
        RETURNING 1
    )
    SELECT count(*) FROM deleted
$$;

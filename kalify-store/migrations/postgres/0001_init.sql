-- Schema version 1 of the kalify PostgreSQL store.
--
-- Ids are uuid. Times are bigint nanoseconds since the Unix epoch, UTC,
-- because timestamptz keeps only microseconds and the store must return the
-- times it was given; to_timestamp(at / 1e9) shows one as a timestamptz.
-- Structured fields are jsonb. Every record table is keyed by (org_id, id),
-- and every query names the org, so one org's rows are never reachable with
-- another org's id.
--
-- Unqualified names resolve through search_path, so the store's schema is
-- the one the migration runner connects with.

CREATE TABLE prospects (
    org_id        uuid    NOT NULL,
    id            uuid    NOT NULL,
    first_name    text,
    last_name     text,
    company       text,
    job_title     text,
    phone         text,             -- E.164
    email         text,             -- normalised address
    messenger     text,             -- page-scoped id
    locale        text    NOT NULL,
    time_zone     text,             -- IANA name
    source        text,
    tags          jsonb   NOT NULL, -- array of strings
    custom_fields jsonb   NOT NULL, -- object of typed values
    status        text    NOT NULL,
    score         jsonb,            -- score with its breakdown
    owner_id      uuid,
    consents      jsonb   NOT NULL,
    restricted    boolean NOT NULL,
    objected      boolean NOT NULL,
    created_at    bigint  NOT NULL,
    updated_at    bigint  NOT NULL,
    version       bigint  NOT NULL CHECK (version >= 0),
    PRIMARY KEY (org_id, id)
);

-- Lookups of an inbound sender by contact point.
CREATE INDEX prospects_by_phone ON prospects (org_id, phone) WHERE phone IS NOT NULL;
CREATE INDEX prospects_by_email ON prospects (org_id, email) WHERE email IS NOT NULL;
CREATE INDEX prospects_by_messenger ON prospects (org_id, messenger) WHERE messenger IS NOT NULL;

CREATE TABLE campaigns (
    org_id      uuid    NOT NULL,
    id          uuid    NOT NULL,
    name        text    NOT NULL,
    persona     text    NOT NULL,
    goal        text    NOT NULL,
    channels    jsonb   NOT NULL,  -- array of channel names
    steps       jsonb   NOT NULL,  -- array of steps with their templates
    allow_links boolean NOT NULL,
    status      text    NOT NULL,
    created_at  bigint  NOT NULL,
    settings    jsonb   NOT NULL,  -- stop conditions, sending window, required custom fields
    PRIMARY KEY (org_id, id)
);

CREATE TABLE conversations (
    org_id               uuid    NOT NULL,
    id                   uuid    NOT NULL,
    prospect_id          uuid    NOT NULL,
    campaign_id          uuid,
    channel              text    NOT NULL,
    state                text    NOT NULL,
    facts                jsonb   NOT NULL,  -- array of facts with evidence
    score                jsonb,
    attempts_sent        bigint  NOT NULL,
    automation_disclosed boolean NOT NULL,
    assigned_to          uuid,
    created_at           bigint  NOT NULL,
    updated_at           bigint  NOT NULL,
    last_inbound_at      bigint,
    version              bigint  NOT NULL CHECK (version >= 0),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, prospect_id) REFERENCES prospects (org_id, id) ON DELETE CASCADE
);

-- One conversation per prospect and campaign, and at most one without a
-- campaign. INSERT ... ON CONFLICT DO NOTHING uses both indexes as arbiters.
CREATE UNIQUE INDEX conversations_by_campaign
    ON conversations (org_id, prospect_id, campaign_id) WHERE campaign_id IS NOT NULL;
CREATE UNIQUE INDEX conversations_without_campaign
    ON conversations (org_id, prospect_id) WHERE campaign_id IS NULL;
CREATE INDEX conversations_by_prospect ON conversations (org_id, prospect_id, updated_at);

CREATE TABLE messages (
    org_id              uuid    NOT NULL,
    id                  uuid    NOT NULL,
    conversation_id     uuid    NOT NULL,
    prospect_id         uuid    NOT NULL,
    direction           text    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    channel             text    NOT NULL,
    sender              text,
    text                text    NOT NULL,
    subject             text,
    at                  bigint  NOT NULL,
    provider            text,
    provider_message_id text,
    status              text    NOT NULL,
    processed           boolean NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, conversation_id) REFERENCES conversations (org_id, id) ON DELETE CASCADE
);

CREATE INDEX messages_by_conversation ON messages (org_id, conversation_id, at, id);

-- Webhook retries deliver the same inbound message again; this index drops them.
CREATE UNIQUE INDEX messages_inbound_by_provider_id
    ON messages (org_id, provider, provider_message_id)
    WHERE direction = 'inbound' AND provider IS NOT NULL AND provider_message_id IS NOT NULL;

CREATE TABLE jobs (
    org_id          uuid   NOT NULL,
    id              uuid   NOT NULL,
    conversation_id uuid   NOT NULL,
    prospect_id     uuid   NOT NULL,
    kind            jsonb  NOT NULL,
    due_at          bigint NOT NULL,
    attempts        bigint NOT NULL,
    dedupe_key      text   NOT NULL,
    status          text   NOT NULL CHECK (status IN ('pending', 'done', 'cancelled')),
    lease_until     bigint,           -- a claimed job is hidden from claims until then
    lease_owner     text,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, dedupe_key),
    FOREIGN KEY (org_id, conversation_id) REFERENCES conversations (org_id, id) ON DELETE CASCADE
);

CREATE INDEX jobs_due ON jobs (due_at, id) WHERE status = 'pending';
CREATE INDEX jobs_by_conversation ON jobs (org_id, conversation_id) WHERE status = 'pending';
CREATE INDEX jobs_by_prospect ON jobs (org_id, prospect_id) WHERE status = 'pending';

CREATE TABLE outbox (
    org_id          uuid   NOT NULL,
    id              uuid   NOT NULL,
    conversation_id uuid   NOT NULL,
    prospect_id     uuid   NOT NULL,
    message_id      uuid   NOT NULL,
    channel         text   NOT NULL,
    recipient_kind  text   NOT NULL,  -- the channel of the contact point
    recipient       text   NOT NULL,  -- the normalised contact point
    text            text   NOT NULL,
    subject         text,
    purpose         jsonb  NOT NULL,
    sender          text   NOT NULL,
    sender_name     text   NOT NULL,
    campaign_id     uuid,
    idempotency_key text   NOT NULL,
    next_attempt_at bigint NOT NULL,
    attempts        bigint NOT NULL,
    status          text   NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    lease_until     bigint,
    lease_owner     text,
    last_error      text,             -- the reason given with Failed or Cancelled
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, conversation_id) REFERENCES conversations (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, message_id) REFERENCES messages (org_id, id) ON DELETE CASCADE
);

CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_by_conversation ON outbox (org_id, conversation_id) WHERE status = 'pending';
CREATE INDEX outbox_by_prospect ON outbox (org_id, prospect_id) WHERE status = 'pending';
CREATE INDEX outbox_by_message ON outbox (org_id, message_id);

CREATE TABLE suppressions (
    org_id  uuid   NOT NULL,
    channel text   NOT NULL,
    contact text   NOT NULL,  -- the normalised contact point
    reason  text   NOT NULL,
    at      bigint NOT NULL,
    PRIMARY KEY (org_id, channel, contact)
);

CREATE TABLE audit_events (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order
    org_id          uuid   NOT NULL,
    prospect_id     uuid,
    conversation_id uuid,
    action          text   NOT NULL,
    actor           jsonb  NOT NULL,
    detail          text   NOT NULL,
    at              bigint NOT NULL
);

CREATE INDEX audit_events_by_prospect ON audit_events (org_id, prospect_id, at, seq);

CREATE TABLE members (
    org_id    uuid    NOT NULL,
    id        uuid    NOT NULL,
    name      text    NOT NULL,
    email     text    NOT NULL,
    role      text    NOT NULL,
    available boolean NOT NULL,
    PRIMARY KEY (org_id, id)
);

-- Claims work across orgs, so they are functions: with row-level security on,
-- the row_level_security migrations make them SECURITY DEFINER, and they are
-- then the only path by which the application role reaches rows of more than
-- one org.
--
-- Each function leases up to max_rows due rows to worker until lease_end and
-- returns them with their attempt count raised by one. FOR UPDATE SKIP LOCKED
-- lets concurrent claims pass over rows another claim is taking, and under
-- READ COMMITTED a row that another claim leased and committed meanwhile is
-- rechecked against the WHERE clause, so it is skipped too. Rows come back in
-- no defined order.
CREATE FUNCTION claim_jobs(claim_now bigint, max_rows bigint, lease_end bigint, worker text)
RETURNS SETOF jobs
LANGUAGE sql
VOLATILE
AS $$
    WITH due AS (
        SELECT org_id, id FROM jobs
        WHERE status = 'pending' AND due_at <= claim_now
          AND (lease_until IS NULL OR lease_until <= claim_now)
        ORDER BY due_at, id
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs SET attempts = jobs.attempts + 1, lease_until = lease_end, lease_owner = worker
    FROM due
    WHERE jobs.org_id = due.org_id AND jobs.id = due.id
    RETURNING jobs.*
$$;

CREATE FUNCTION claim_outbox(claim_now bigint, max_rows bigint, lease_end bigint, worker text)
RETURNS SETOF outbox
LANGUAGE sql
VOLATILE
AS $$
    WITH due AS (
        SELECT org_id, id FROM outbox
        WHERE status = 'pending' AND next_attempt_at <= claim_now
          AND (lease_until IS NULL OR lease_until <= claim_now)
        ORDER BY next_attempt_at, id
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    UPDATE outbox SET attempts = outbox.attempts + 1, lease_until = lease_end, lease_owner = worker
    FROM due
    WHERE outbox.org_id = due.org_id AND outbox.id = due.id
    RETURNING outbox.*
$$;

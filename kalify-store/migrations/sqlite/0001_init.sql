-- Schema version 1 of the kalify SQLite store.
--
-- Ids are 16-byte UUID blobs. Times are INTEGER nanoseconds since the Unix
-- epoch, UTC. Structured fields are JSON text. Every record table is keyed by
-- (org_id, id), and every query names the org, so one org's rows are never
-- reachable with another org's id.

CREATE TABLE prospects (
    org_id        BLOB    NOT NULL,
    id            BLOB    NOT NULL,
    first_name    TEXT,
    last_name     TEXT,
    company       TEXT,
    job_title     TEXT,
    phone         TEXT,              -- E.164
    email         TEXT,              -- normalised address
    messenger     TEXT,              -- page-scoped id
    locale        TEXT    NOT NULL,
    time_zone     TEXT,              -- IANA name
    source        TEXT,
    tags          TEXT    NOT NULL,  -- JSON array of strings
    custom_fields TEXT    NOT NULL,  -- JSON object of typed values
    status        TEXT    NOT NULL,
    score         TEXT,              -- JSON score with its breakdown
    owner_id      BLOB,
    consents      TEXT    NOT NULL,  -- JSON array
    restricted    INTEGER NOT NULL,
    objected      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
);

-- Lookups of an inbound sender by contact point.
CREATE INDEX prospects_by_phone ON prospects (org_id, phone) WHERE phone IS NOT NULL;
CREATE INDEX prospects_by_email ON prospects (org_id, email) WHERE email IS NOT NULL;
CREATE INDEX prospects_by_messenger ON prospects (org_id, messenger) WHERE messenger IS NOT NULL;

CREATE TABLE campaigns (
    org_id      BLOB    NOT NULL,
    id          BLOB    NOT NULL,
    name        TEXT    NOT NULL,
    persona     TEXT    NOT NULL,
    goal        TEXT    NOT NULL,
    channels    TEXT    NOT NULL,  -- JSON array
    steps       TEXT    NOT NULL,  -- JSON array of steps with their templates
    allow_links INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE conversations (
    org_id               BLOB    NOT NULL,
    id                   BLOB    NOT NULL,
    prospect_id          BLOB    NOT NULL,
    campaign_id          BLOB,
    channel              TEXT    NOT NULL,
    state                TEXT    NOT NULL,
    facts                TEXT    NOT NULL,  -- JSON array of facts with evidence
    score                TEXT,              -- JSON score with its breakdown
    attempts_sent        INTEGER NOT NULL,
    automation_disclosed INTEGER NOT NULL,
    assigned_to          BLOB,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    last_inbound_at      INTEGER,
    version              INTEGER NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, prospect_id) REFERENCES prospects (org_id, id) ON DELETE CASCADE
);

-- One conversation per prospect and campaign. The empty blob stands for
-- "no campaign", so a prospect also has at most one conversation without one.
CREATE UNIQUE INDEX conversations_by_campaign
    ON conversations (org_id, prospect_id, coalesce(campaign_id, x''));

CREATE TABLE messages (
    org_id              BLOB    NOT NULL,
    id                  BLOB    NOT NULL,
    conversation_id     BLOB    NOT NULL,
    prospect_id         BLOB    NOT NULL,
    direction           TEXT    NOT NULL,  -- inbound or outbound
    channel             TEXT    NOT NULL,
    sender              TEXT,
    text                TEXT    NOT NULL,
    subject             TEXT,
    at                  INTEGER NOT NULL,
    provider            TEXT,
    provider_message_id TEXT,
    status              TEXT    NOT NULL,
    processed           INTEGER NOT NULL,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, conversation_id) REFERENCES conversations (org_id, id) ON DELETE CASCADE
);

CREATE INDEX messages_by_conversation ON messages (org_id, conversation_id, at);

-- Webhook retries deliver the same inbound message again; this index drops them.
CREATE UNIQUE INDEX messages_inbound_by_provider_id
    ON messages (org_id, provider, provider_message_id)
    WHERE direction = 'inbound' AND provider IS NOT NULL AND provider_message_id IS NOT NULL;

CREATE TABLE jobs (
    org_id          BLOB    NOT NULL,
    id              BLOB    NOT NULL,
    conversation_id BLOB    NOT NULL,
    prospect_id     BLOB    NOT NULL,
    kind            TEXT    NOT NULL,  -- JSON
    due_at          INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    dedupe_key      TEXT    NOT NULL,
    status          TEXT    NOT NULL,  -- pending, done or cancelled
    lease_until     INTEGER,           -- a claimed job is hidden from claims until then
    lease_owner     TEXT,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, dedupe_key),
    FOREIGN KEY (org_id, conversation_id) REFERENCES conversations (org_id, id) ON DELETE CASCADE
);

CREATE INDEX jobs_due ON jobs (status, due_at, id);
CREATE INDEX jobs_by_conversation ON jobs (org_id, conversation_id, status);
CREATE INDEX jobs_by_prospect ON jobs (org_id, prospect_id, status);

CREATE TABLE outbox (
    org_id          BLOB    NOT NULL,
    id              BLOB    NOT NULL,
    conversation_id BLOB    NOT NULL,
    prospect_id     BLOB    NOT NULL,
    message_id      BLOB    NOT NULL,
    channel         TEXT    NOT NULL,
    recipient_kind  TEXT    NOT NULL,  -- the channel of the contact point
    recipient       TEXT    NOT NULL,  -- the normalised contact point
    text            TEXT    NOT NULL,
    subject         TEXT,
    purpose         TEXT    NOT NULL,  -- JSON
    sender          TEXT    NOT NULL,
    sender_name     TEXT    NOT NULL,
    campaign_id     BLOB,
    idempotency_key TEXT    NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    status          TEXT    NOT NULL,  -- pending, sent, failed or cancelled
    lease_until     INTEGER,
    lease_owner     TEXT,
    last_error      TEXT,              -- the reason given with Failed or Cancelled
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, conversation_id) REFERENCES conversations (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, message_id) REFERENCES messages (org_id, id) ON DELETE CASCADE
);

CREATE INDEX outbox_due ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_by_conversation ON outbox (org_id, conversation_id, status);
CREATE INDEX outbox_by_prospect ON outbox (org_id, prospect_id, status);
CREATE INDEX outbox_by_message ON outbox (org_id, message_id);

CREATE TABLE suppressions (
    org_id  BLOB    NOT NULL,
    channel TEXT    NOT NULL,
    contact TEXT    NOT NULL,  -- the normalised contact point
    reason  TEXT    NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (org_id, channel, contact)
) WITHOUT ROWID;

CREATE TABLE audit_events (
    seq             INTEGER PRIMARY KEY,  -- insertion order
    org_id          BLOB    NOT NULL,
    prospect_id     BLOB,
    conversation_id BLOB,
    action          TEXT    NOT NULL,
    actor           TEXT    NOT NULL,     -- JSON
    detail          TEXT    NOT NULL,
    at              INTEGER NOT NULL
);

CREATE INDEX audit_events_by_prospect ON audit_events (org_id, prospect_id, at, seq);

CREATE TABLE members (
    org_id    BLOB    NOT NULL,
    id        BLOB    NOT NULL,
    name      TEXT    NOT NULL,
    email     TEXT    NOT NULL,
    role      TEXT    NOT NULL,
    available INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
);

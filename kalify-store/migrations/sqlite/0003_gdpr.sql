-- Data-subject rights: keyed suppression digests, model exchanges, request
-- records, and the indexes retention and erasure read.

-- One random key per org. The suppression list stores
-- "hmac-sha256:<hex>" of "channel:contact" under this key, never the
-- contact point itself; the rows written before this migration are
-- rewritten by the migration code that runs with it.
CREATE TABLE suppression_keys (
    org_id BLOB NOT NULL PRIMARY KEY,
    key    BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE model_exchanges (
    seq             INTEGER PRIMARY KEY,  -- insertion order
    org_id          BLOB    NOT NULL,
    prospect_id     BLOB    NOT NULL,
    conversation_id BLOB    NOT NULL,
    model           TEXT    NOT NULL,
    operation       TEXT    NOT NULL,
    request         TEXT    NOT NULL,     -- JSON
    response        TEXT    NOT NULL,     -- JSON, or the error
    at              INTEGER NOT NULL
);

CREATE INDEX model_exchanges_by_prospect ON model_exchanges (org_id, prospect_id, seq);

CREATE TABLE subject_requests (
    org_id       BLOB    NOT NULL,
    id           BLOB    NOT NULL,
    prospect_id  BLOB    NOT NULL,
    kind         TEXT    NOT NULL,
    actor        TEXT    NOT NULL,  -- JSON
    received_at  INTEGER NOT NULL,
    due_at       INTEGER NOT NULL,
    completed_at INTEGER,
    outcome      TEXT    NOT NULL,  -- JSON
    PRIMARY KEY (org_id, id)
);

CREATE INDEX subject_requests_open ON subject_requests (due_at) WHERE completed_at IS NULL;

-- Retention: prospects by collection time, a prospect's latest own
-- message, and messages by age.
CREATE INDEX prospects_by_created ON prospects (created_at);
CREATE INDEX messages_inbound_by_prospect ON messages (org_id, prospect_id, at) WHERE direction = 'inbound';
CREATE INDEX messages_by_at ON messages (at);

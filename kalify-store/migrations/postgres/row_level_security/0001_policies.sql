-- Row-level security, version 1: every record table shows and accepts only
-- the rows of the org named by the kalify.org_id setting.
--
-- The store sets kalify.org_id with set_config(..., true), which lasts until
-- the end of the transaction. Without it, current_setting(..., true) returns
-- NULL, or '' once a transaction on the session has set and dropped it, and
-- nullif turns '' into NULL, so the policy matches no row.
--
-- Policies bind roles that do not own the tables and are not superusers or
-- BYPASSRLS. The table owner, which ran these migrations, still sees every
-- row: the tables do not FORCE row-level security, because the claim
-- functions below run as the owner.

ALTER TABLE prospects ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON prospects
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE campaigns ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON campaigns
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON conversations
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON messages
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON jobs
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON outbox
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE suppressions ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON suppressions
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON audit_events
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE members ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON members
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

-- Claims lease due rows of every org, so they run as the owner. The
-- search_path is pinned to this schema with pg_temp last, so a caller's
-- temporary tables cannot stand in for the store's tables inside them.
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION claim_jobs(bigint, bigint, bigint, text) SECURITY DEFINER SET search_path = %I, pg_temp',
        current_schema());
    EXECUTE format(
        'ALTER FUNCTION claim_outbox(bigint, bigint, bigint, text) SECURITY DEFINER SET search_path = %I, pg_temp',
        current_schema());
END
$$;

-- Only roles granted EXECUTE, such as the application role, may claim.
REVOKE EXECUTE ON FUNCTION claim_jobs(bigint, bigint, bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION claim_outbox(bigint, bigint, bigint, text) FROM PUBLIC;

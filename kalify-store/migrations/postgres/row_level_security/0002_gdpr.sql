-- Row-level security, version 2: the tables and cross-org functions of
-- base version 2, isolated as version 1 isolates the others.

ALTER TABLE suppression_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON suppression_keys
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE model_exchanges ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON model_exchanges
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

ALTER TABLE subject_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON subject_requests
    USING (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid)
    WITH CHECK (org_id = nullif(current_setting('kalify.org_id', true), '')::uuid);

-- Retention and request follow-up read or delete rows of every org, so
-- they run as the owner, with the search_path pinned as for the claims.
-- They are then, with the claims, the only paths by which the application
-- role reaches rows of more than one org: open_subject_requests and
-- expired_prospects return request records and prospect ids, and
-- purge_messages deletes messages older than the cut-off it is given.
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION open_subject_requests(bigint, bigint) SECURITY DEFINER SET search_path = %I, pg_temp',
        current_schema());
    EXECUTE format(
        'ALTER FUNCTION expired_prospects(bigint, bigint) SECURITY DEFINER SET search_path = %I, pg_temp',
        current_schema());
    EXECUTE format(
        'ALTER FUNCTION purge_messages(bigint, bigint) SECURITY DEFINER SET search_path = %I, pg_temp',
        current_schema());
END
$$;

-- Only roles granted EXECUTE, such as the application role, may call them.
REVOKE EXECUTE ON FUNCTION open_subject_requests(bigint, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION expired_prospects(bigint, bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION purge_messages(bigint, bigint) FROM PUBLIC;

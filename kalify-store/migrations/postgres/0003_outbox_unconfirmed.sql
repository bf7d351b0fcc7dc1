-- An outbox entry whose earlier attempt may have reached the provider
-- without its outcome being recorded: the claim that finds an expired
-- lease sets it, as does a retry after an unknown outcome, and only a
-- recorded send clears it.
ALTER TABLE outbox ADD COLUMN unconfirmed boolean NOT NULL DEFAULT false;

-- When the entry was first claimed, in nanoseconds: a lookup of an earlier
-- attempt at the provider searches from this time.
ALTER TABLE outbox ADD COLUMN first_attempt_at bigint;

-- claim_outbox now marks an entry unconfirmed when it still has a lease
-- owner, that is when its last claim expired without a finish, and records
-- the time of the first claim. Replacing
-- the function resets its security attributes, so a schema with row-level
-- security gets them back as its migration 1 set them.
DO $migration$
DECLARE
    was_definer boolean;
BEGIN
    SELECT prosecdef INTO was_definer
    FROM pg_proc
    WHERE oid = 'claim_outbox(bigint, bigint, bigint, text)'::regprocedure;

    CREATE OR REPLACE FUNCTION claim_outbox(claim_now bigint, max_rows bigint, lease_end bigint, worker text)
    RETURNS SETOF outbox
    LANGUAGE sql
    VOLATILE
    AS $claim$
        WITH due AS (
            SELECT org_id, id FROM outbox
            WHERE status = 'pending' AND next_attempt_at <= claim_now
              AND (lease_until IS NULL OR lease_until <= claim_now)
            ORDER BY next_attempt_at, id
            LIMIT max_rows
            FOR UPDATE SKIP LOCKED
        )
        UPDATE outbox SET attempts = outbox.attempts + 1,
                          unconfirmed = outbox.unconfirmed OR outbox.lease_owner IS NOT NULL,
                          first_attempt_at = coalesce(outbox.first_attempt_at, claim_now),
                          lease_until = lease_end, lease_owner = worker
        FROM due
        WHERE outbox.org_id = due.org_id AND outbox.id = due.id
        RETURNING outbox.*
    $claim$;

    IF was_definer THEN
        EXECUTE format(
            'ALTER FUNCTION claim_outbox(bigint, bigint, bigint, text) SECURITY DEFINER SET search_path = %I, pg_temp',
            current_schema());
    END IF;
END
$migration$;

-- One implementation of the limiter: `rate_limit::acquire` now calls `rate_limit_acquire_all`
-- with a single limit, so the upsert that kept the last decision in `allowed` is gone, and the
-- column with it.
ALTER TABLE rate_limits DROP COLUMN allowed;

CREATE OR REPLACE FUNCTION rate_limit_acquire_all(keys text[], interval_secs float8[], bursts float8[])
RETURNS TABLE (allowed boolean, retry_at timestamptz, remaining integer, reset_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    clock timestamptz := clock_timestamp();
    i integer;
    row rate_limits%ROWTYPE;
    step interval;
    fits_at timestamptz;
    next_tat timestamptz;
    all_allowed boolean := true;
    latest timestamptz := clock;
    least_remaining integer := 2147483647;
    first_reset timestamptz;
BEGIN
    INSERT INTO rate_limits (key, tat, updated_at)
    SELECT key, clock, clock FROM unnest(keys) AS key ORDER BY key
    ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM rate_limits WHERE key = ANY(keys) ORDER BY key FOR UPDATE;
    FOR i IN 1 .. array_length(keys, 1) LOOP
        SELECT * INTO row FROM rate_limits WHERE key = keys[i];
        step := make_interval(secs => interval_secs[i]);
        next_tat := GREATEST(row.tat, clock) + step;
        fits_at := next_tat - make_interval(secs => interval_secs[i] * bursts[i]);
        IF row.blocked_until IS NOT NULL AND row.blocked_until > clock THEN
            all_allowed := false;
            latest := GREATEST(latest, row.blocked_until);
        END IF;
        IF fits_at > clock THEN
            all_allowed := false;
            latest := GREATEST(latest, fits_at);
        END IF;
        least_remaining := LEAST(least_remaining,
            GREATEST(0, floor((interval_secs[i] * bursts[i] - EXTRACT(epoch FROM next_tat - clock)) / interval_secs[i]))::integer);
        IF i = 1 THEN
            first_reset := next_tat;
        END IF;
    END LOOP;
    IF all_allowed THEN
        UPDATE rate_limits r SET tat = GREATEST(r.tat, clock) + make_interval(secs => l.interval_secs),
                                 updated_at = clock
        FROM unnest(keys, interval_secs) AS l(key, interval_secs) WHERE r.key = l.key;
        RETURN QUERY SELECT true, NULL::timestamptz, least_remaining, first_reset;
    ELSE
        RETURN QUERY SELECT false, latest, 0, first_reset;
    END IF;
END
$$;

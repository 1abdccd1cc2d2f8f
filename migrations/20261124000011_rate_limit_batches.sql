-- The limiter decides many requests in one call: a busy worker's publish jobs each need a
-- per-account and a per-app decision, and one call per job locked the app's row once per job
-- (every publish of a platform queued on that one lock). `rate_limit_acquire_batch` locks each
-- key once, decides the requests in order against the times the earlier ones moved, and writes
-- each key back once. A single request is a batch of one, so this is the only implementation:
-- `rate_limit_acquire_all` goes.
--
-- keys:          the distinct keys, sorted (the lock order, so batches cannot deadlock);
-- entry_request: per limit, the request it belongs to (ascending; a request's limits are
--                consecutive and taken all or nothing);
-- entry_key:     per limit, its key's index in `keys` (1-based);
-- interval_secs, bursts: per limit, the rate.
DROP FUNCTION rate_limit_acquire_all(text[], float8[], float8[]);

CREATE FUNCTION rate_limit_acquire_batch(
    keys text[], entry_request integer[], entry_key integer[], interval_secs float8[], bursts float8[])
RETURNS TABLE (request integer, allowed boolean, retry_at timestamptz, remaining integer, reset_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    clock timestamptz := clock_timestamp();
    entries integer := coalesce(array_length(entry_request, 1), 0);
    tats timestamptz[];
    blocks timestamptz[];
    first_entry integer := 1;
    last_entry integer;
    i integer;
    k integer;
    next_tat timestamptz;
    fits_at timestamptz;
    all_allowed boolean;
    latest timestamptz;
    least_remaining integer;
    first_reset timestamptz;
BEGIN
    INSERT INTO rate_limits (key, tat, updated_at)
    SELECT key, clock, clock FROM unnest(keys) AS key ORDER BY key
    ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM rate_limits WHERE key = ANY(keys) ORDER BY key FOR UPDATE;
    SELECT array_agg(r.tat ORDER BY u.ord), array_agg(r.blocked_until ORDER BY u.ord)
      INTO tats, blocks
      FROM unnest(keys) WITH ORDINALITY AS u(key, ord) JOIN rate_limits r ON r.key = u.key;
    WHILE first_entry <= entries LOOP
        last_entry := first_entry;
        WHILE last_entry < entries AND entry_request[last_entry + 1] = entry_request[first_entry] LOOP
            last_entry := last_entry + 1;
        END LOOP;
        all_allowed := true;
        latest := clock;
        least_remaining := 2147483647;
        first_reset := NULL;
        FOR i IN first_entry .. last_entry LOOP
            k := entry_key[i];
            next_tat := GREATEST(tats[k], clock) + make_interval(secs => interval_secs[i]);
            fits_at := next_tat - make_interval(secs => interval_secs[i] * bursts[i]);
            IF blocks[k] IS NOT NULL AND blocks[k] > clock THEN
                all_allowed := false;
                latest := GREATEST(latest, blocks[k]);
            END IF;
            IF fits_at > clock THEN
                all_allowed := false;
                latest := GREATEST(latest, fits_at);
            END IF;
            least_remaining := LEAST(least_remaining,
                GREATEST(0, floor((interval_secs[i] * bursts[i] - EXTRACT(epoch FROM next_tat - clock)) / interval_secs[i]))::integer);
            IF i = first_entry THEN
                first_reset := next_tat;
            END IF;
        END LOOP;
        request := entry_request[first_entry];
        IF all_allowed THEN
            FOR i IN first_entry .. last_entry LOOP
                k := entry_key[i];
                tats[k] := GREATEST(tats[k], clock) + make_interval(secs => interval_secs[i]);
            END LOOP;
            allowed := true;
            retry_at := NULL;
            remaining := least_remaining;
        ELSE
            allowed := false;
            retry_at := latest;
            remaining := 0;
        END IF;
        reset_at := first_reset;
        RETURN NEXT;
        first_entry := last_entry + 1;
    END LOOP;
    UPDATE rate_limits r SET tat = t.tat, updated_at = clock
    FROM unnest(keys, tats) AS t(key, tat)
    WHERE r.key = t.key AND r.tat IS DISTINCT FROM t.tat;
END
$$;

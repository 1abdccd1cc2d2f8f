-- The job queue and the shared rate limiter.
--
-- `jobs` holds live jobs only (available or running), so its indexes stay small however long
-- the history is. A job that ends moves to `finished_jobs` in the statement that ends it and is
-- pruned from there after the retention window. The dedup key is unique in `jobs`, which is
-- exactly "unique among live jobs": once a job has finished, its key may be used again.

CREATE TABLE jobs (
    id           uuid PRIMARY KEY,
    kind         text        NOT NULL,
    queue        text        NOT NULL,
    payload      jsonb       NOT NULL,
    priority     smallint    NOT NULL DEFAULT 0,
    run_at       timestamptz NOT NULL DEFAULT now(),
    -- Attempts started so far, the current one included; the claim increments it.
    attempt      integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts integer     NOT NULL CHECK (max_attempts >= 1),
    state        text        NOT NULL DEFAULT 'available' CHECK (state IN ('available', 'running')),
    lease_until  timestamptz,
    worker_id    uuid,
    dedup_key    text,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    CHECK ((state = 'running') = (lease_until IS NOT NULL))
) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_insert_scale_factor = 0.05);

-- What claims read: only available jobs, in the order they are claimed.
CREATE INDEX jobs_available ON jobs (queue, priority DESC, run_at, id) WHERE state = 'available';
-- What the lease rescuer reads: only running jobs.
CREATE INDEX jobs_running_lease ON jobs (lease_until) WHERE state = 'running';
CREATE UNIQUE INDEX jobs_dedup_key ON jobs (dedup_key) WHERE dedup_key IS NOT NULL;

CREATE TABLE finished_jobs (
    id           uuid        NOT NULL,
    kind         text        NOT NULL,
    queue        text        NOT NULL,
    payload      jsonb       NOT NULL,
    priority     smallint    NOT NULL,
    attempt      integer     NOT NULL,
    max_attempts integer     NOT NULL,
    state        text        NOT NULL CHECK (state IN ('succeeded', 'failed', 'discarded', 'canceled')),
    worker_id    uuid,
    dedup_key    text,
    last_error   text,
    created_at   timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz NOT NULL DEFAULT now()
);

-- Rows arrive in finished_at order, so a BRIN index finds the prunable ones for almost nothing.
CREATE INDEX finished_jobs_finished_at ON finished_jobs USING brin (finished_at);

-- One notification per statement and queue, not per job; PostgreSQL folds identical ones within
-- a transaction. Workers that hear it claim at once; polling covers a missed one.
CREATE FUNCTION jobs_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('herald_jobs', queue) FROM (SELECT DISTINCT queue FROM inserted_jobs) AS queues;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_inserted AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_inserted();

-- The generic cell rate algorithm, one row a key: `tat` is the theoretical arrival time of the
-- next request. `allowed` holds the decision of the last acquire, so one upsert can both decide
-- and report. `blocked_until` is a reset time a platform named.
CREATE TABLE rate_limits (
    key           text PRIMARY KEY,
    tat           timestamptz NOT NULL,
    blocked_until timestamptz,
    allowed       boolean     NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Live workers and schedulers: each process upserts its row every few seconds and deletes it on a
-- clean exit; /readyz and operators read which roles are alive.
CREATE TABLE process_heartbeats (
    process_id   uuid PRIMARY KEY,
    role         text NOT NULL CHECK (role IN ('worker', 'scheduler')),
    host         text NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
CREATE INDEX process_heartbeats_role_seen ON process_heartbeats (role, last_seen_at);

-- Idempotency-Key: the first response to a write, kept 24 hours per project and key, replayed
-- to a retry with the same body. `fingerprint` is SHA-256 of method, path and body; a retry with
-- another body is refused. `status` is NULL while the first request is still being served.
CREATE TABLE idempotency_keys (
    project_id      uuid        NOT NULL,
    idempotency_key text        NOT NULL,
    fingerprint     bytea       NOT NULL,
    status          smallint,
    content_type    text,
    body            bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, idempotency_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys USING brin (created_at);

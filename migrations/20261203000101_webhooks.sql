-- Webhooks (Standard Webhooks) made from the event log.
--
-- `webhook_endpoints` is the read model of the `webhook` stream. An endpoint hears its project's
-- events within the reach of the key that created it (environment, scopes, platforms, accounts):
-- a test key's endpoint hears only the sandbox, a key that cannot read posts never hears of one.
CREATE TABLE webhook_endpoints (
    id              uuid        PRIMARY KEY,
    project_id      uuid        NOT NULL,
    url             text        NOT NULL,
    description     text,
    -- NULL: every type.
    event_types     text[],
    enabled         boolean     NOT NULL,
    disabled_reason text,
    environment     text        NOT NULL CHECK (environment IN ('live', 'test')),
    scopes          text[]      NOT NULL,
    platforms       text[],
    accounts        text[],
    -- Messages sent at once; 1 keeps log order strictly (each waits for the answer before).
    max_in_flight   integer     NOT NULL CHECK (max_in_flight BETWEEN 1 AND 100),
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    deleted_at      timestamptz
);
CREATE INDEX webhook_endpoints_project ON webhook_endpoints (project_id, created_at) WHERE deleted_at IS NULL;

-- Sealed (credentials.rs): the signing secret, the one it replaced while both sign (24 hours
-- after a rotation), and the custom headers (a JSON object; they may carry credentials).
CREATE TABLE webhook_secrets (
    endpoint_id     uuid        PRIMARY KEY,
    secret          text        NOT NULL,
    previous_secret text,
    previous_until  timestamptz,
    headers         text
);

-- How far the dispatcher has turned the log into messages (the reader's cursor: transaction id and
-- position). One row: the dispatcher locks it, so any number of schedulers make each message once.
-- It starts after the last event already in the log: no endpoint existed to hear those.
CREATE TABLE webhook_dispatch_cursor (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    transaction_id bigint  NOT NULL,
    position       bigint  NOT NULL
);
INSERT INTO webhook_dispatch_cursor (singleton, transaction_id, position)
SELECT true, COALESCE(last.transaction_id, 0), COALESCE(last.position, 0)
FROM (SELECT 1) AS one
LEFT JOIN (SELECT transaction_id::text::bigint AS transaction_id, position FROM events
           ORDER BY transaction_id DESC, position DESC LIMIT 1) AS last ON true;

-- A message's body, shared by the endpoints that hear it alike.
CREATE TABLE webhook_payloads (
    id         uuid        PRIMARY KEY,
    body       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_payloads_created ON webhook_payloads (created_at);

-- One message to one endpoint. `seq` is the order it is sent in (log order); `webhook_id` (the
-- header) is the same on every attempt, a replay and a resend.
CREATE TABLE webhook_messages (
    id              uuid        PRIMARY KEY,
    endpoint_id     uuid        NOT NULL,
    seq             bigint      GENERATED ALWAYS AS IDENTITY,
    webhook_id      text        NOT NULL,
    event_type      text        NOT NULL,
    payload_id      uuid        NOT NULL REFERENCES webhook_payloads (id),
    state           text        NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    leased_until    timestamptz,
    -- Queued by a replay or a resend rather than by the dispatcher.
    manual          boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz
);
CREATE INDEX webhook_messages_lane ON webhook_messages (endpoint_id, seq) WHERE state = 'pending';
CREATE INDEX webhook_messages_due ON webhook_messages (endpoint_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_messages_created ON webhook_messages (created_at);

-- Every attempt, for `GET /v1/webhooks/{id}/attempts`.
CREATE TABLE webhook_attempts (
    id               uuid        PRIMARY KEY,
    endpoint_id      uuid        NOT NULL,
    message_id       uuid        NOT NULL,
    webhook_id       text        NOT NULL,
    event_type       text        NOT NULL,
    attempted_at     timestamptz NOT NULL,
    status_code      integer,
    duration_ms      integer     NOT NULL,
    response_snippet text,
    error            text,
    succeeded        boolean     NOT NULL
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, attempted_at DESC, id DESC);

-- Who is sending an endpoint's messages now (one sender a lane, under a lease) and since when its
-- attempts have failed without a success between (five days of that disables it).
CREATE TABLE webhook_lanes (
    endpoint_id   uuid        PRIMARY KEY,
    leased_by     uuid,
    leased_until  timestamptz NOT NULL DEFAULT '-infinity',
    failing_since timestamptz
);

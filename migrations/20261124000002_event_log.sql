-- The event log: the source of truth. Append-only; read models below are projections of it,
-- updated in the same transaction as the append, and rebuildable by `herald projections rebuild`.

CREATE TABLE events (
    -- Global position, assigned at insert. Concurrent transactions can commit out of position
    -- order, so readers order by (transaction_id, position) below the snapshot's xmin instead.
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL CHECK (version > 0),
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version > 0),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    -- The tenant, copied from the metadata for the per-project event feed; NULL for none.
    project_id      uuid,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, version)
);
CREATE INDEX events_reader ON events (transaction_id, position);
CREATE INDEX events_project_reader ON events (project_id, transaction_id, position);

-- The current version of each stream: one row lock serialises appends to a stream, and the
-- compare-and-set on it is the optimistic concurrency check.
CREATE TABLE streams (
    stream_id text PRIMARY KEY,
    version   bigint NOT NULL
);

CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are never updated or deleted' USING ERRCODE = 'restrict_violation';
END;
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

-- Read models -------------------------------------------------------------------------------

CREATE TABLE projects (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE api_keys (
    id                  uuid PRIMARY KEY,
    project_id          uuid        NOT NULL REFERENCES projects (id),
    name                text        NOT NULL,
    description         text,
    prefix              text        NOT NULL,
    key_hash            bytea       NOT NULL UNIQUE,
    environment         text        NOT NULL CHECK (environment IN ('live', 'test')),
    scopes              text[]      NOT NULL,
    platforms           text[],
    accounts            text[],
    expires_at          timestamptz,
    requests_per_minute integer     NOT NULL,
    requests_per_day    integer     NOT NULL,
    allowed_ips         text[]      NOT NULL DEFAULT '{}',
    allowed_origins     text[]      NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL,
    revoked_at          timestamptz
);
CREATE INDEX api_keys_project ON api_keys (project_id, created_at);

CREATE TABLE oauth_apps (
    id            uuid PRIMARY KEY,
    project_id    uuid        NOT NULL REFERENCES projects (id),
    platform      text        NOT NULL,
    name          text        NOT NULL,
    image_url     text,
    client_id     text        NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz
);
CREATE INDEX oauth_apps_project ON oauth_apps (project_id, created_at);

CREATE TABLE connect_sessions (
    id            uuid PRIMARY KEY,
    project_id    uuid        NOT NULL REFERENCES projects (id),
    platform      text        NOT NULL,
    app_id        uuid,
    redirect_uri  text,
    external_id   text,
    scopes        text[]      NOT NULL DEFAULT '{}',
    state_hash    bytea       NOT NULL UNIQUE,
    status        text        NOT NULL,
    account_ids   uuid[]      NOT NULL DEFAULT '{}',
    error         text,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE accounts (
    id                uuid PRIMARY KEY,
    project_id        uuid        NOT NULL REFERENCES projects (id),
    platform          text        NOT NULL,
    platform_user_id  text        NOT NULL,
    kind              text        NOT NULL,
    username          text,
    display_name      text,
    external_id       text,
    app_id            uuid,
    status            text        NOT NULL,
    scopes            text[]      NOT NULL DEFAULT '{}',
    expires_at        timestamptz,
    last_refresh_at   timestamptz,
    last_error        text,
    connected_at      timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    UNIQUE (project_id, platform, platform_user_id)
);
CREATE INDEX accounts_project_external ON accounts (project_id, external_id);

CREATE TABLE posts (
    id                 uuid PRIMARY KEY,
    project_id         uuid        NOT NULL REFERENCES projects (id),
    status             text        NOT NULL,
    content            text        NOT NULL,
    external_id        text,
    scheduled_at       timestamptz,
    requires_approval  boolean     NOT NULL,
    approved_at        timestamptz,
    generation         integer     NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX posts_project_created ON posts (project_id, created_at, id);

CREATE TABLE deliveries (
    id                uuid PRIMARY KEY,
    post_id           uuid        NOT NULL REFERENCES posts (id),
    project_id        uuid        NOT NULL,
    account_id        uuid        NOT NULL,
    content           text        NOT NULL,
    options           jsonb       NOT NULL DEFAULT '{}',
    status            text        NOT NULL,
    generation        integer     NOT NULL,
    attempts          integer     NOT NULL DEFAULT 0,
    platform_post_id  text,
    platform_url      text,
    published_at      timestamptz,
    last_error        jsonb,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX deliveries_post ON deliveries (post_id);

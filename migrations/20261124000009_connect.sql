-- Secrets live beside the read models, never in the event log: the log says that a token
-- changed, these tables hold the sealed values (see shared/src/crypto.rs). No foreign keys to
-- the read models, so rebuilding a projection (TRUNCATE) never touches a credential.

-- An account's tokens. `version` is bumped by every write: a refresh writes its new pair only
-- if the version is the one it read (compare-and-set).
CREATE TABLE account_credentials (
    account_id    uuid PRIMARY KEY,
    access_token  text,
    refresh_token text,
    expires_at    timestamptz,
    version       bigint      NOT NULL DEFAULT 1,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX account_credentials_expiring ON account_credentials (expires_at) WHERE refresh_token IS NOT NULL;

-- What a connect session needs between the client's call, the callback and the exchange job.
CREATE TABLE connect_session_secrets (
    session_id    uuid PRIMARY KEY,
    pkce_verifier text,
    code          text
);

-- A project's own OAuth app's client secret.
CREATE TABLE oauth_app_secrets (
    app_id        uuid PRIMARY KEY,
    client_secret text NOT NULL
);

-- The sandbox platform's own state (it is a fake platform, but one that behaves like a real
-- one across processes). Codes and tokens are stored as SHA-256, like a careful platform would.
CREATE TABLE sandbox_grants (
    id         uuid PRIMARY KEY,
    client_id  text        NOT NULL,
    login      text        NOT NULL,
    scopes     text[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_because text
);

CREATE TABLE sandbox_codes (
    code_hash      bytea PRIMARY KEY,
    client_id      text        NOT NULL,
    redirect_uri   text        NOT NULL,
    code_challenge text,
    login          text        NOT NULL,
    scopes         text[]      NOT NULL,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);

CREATE TABLE sandbox_tokens (
    token_hash bytea PRIMARY KEY,
    grant_id   uuid        NOT NULL REFERENCES sandbox_grants (id),
    kind       text        NOT NULL CHECK (kind IN ('access', 'refresh')),
    expires_at timestamptz,
    used_at    timestamptz
);
CREATE INDEX sandbox_tokens_grant ON sandbox_tokens (grant_id);

-- One authorization (a grant) may reach several accounts: a LinkedIn member and their
-- organisations, Facebook pages, YouTube channels, the sandbox's person and two pages. Their
-- token pair belongs to the grant, once, so that refreshing it for one account is refreshing it
-- for all: with rotating refresh tokens (X, TikTok, the sandbox) two copies of one pair could
-- only ever be refreshed once, and the second try would revoke the grant.
--
-- `version` is bumped by every write; a refresh holds the row lock across the platform call
-- and writes its new pair only if the version is still the one it read (compare-and-set).
CREATE TABLE grant_credentials (
    id            uuid PRIMARY KEY,
    project_id    uuid        NOT NULL,
    platform      text        NOT NULL,
    access_token  text,
    refresh_token text,
    expires_at    timestamptz,
    version       bigint      NOT NULL DEFAULT 1,
    refreshed_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX grant_credentials_expiring ON grant_credentials (expires_at) WHERE refresh_token IS NOT NULL;

-- An account now points at the grant whose pair it uses. Its own columns hold only a token the
-- platform issues per account (a Facebook Page's token), or, for accounts connected before
-- grants existed (`grant_id` NULL), the pair they were connected with.
ALTER TABLE account_credentials ADD COLUMN grant_id uuid;
CREATE INDEX account_credentials_grant ON account_credentials (grant_id) WHERE grant_id IS NOT NULL;

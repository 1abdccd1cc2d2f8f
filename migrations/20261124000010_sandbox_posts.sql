-- What the sandbox platform published, and how often each client reference was tried (for
-- failure markers that apply to the first N attempts only).
CREATE TABLE sandbox_posts (
    id         uuid PRIMARY KEY,
    login      text        NOT NULL,
    account_id text        NOT NULL,
    text       text        NOT NULL,
    client_ref text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_posts_client_ref ON sandbox_posts (client_ref);

CREATE TABLE sandbox_publish_attempts (
    client_ref text PRIMARY KEY,
    attempts   integer NOT NULL
);

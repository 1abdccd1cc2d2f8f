-- What a publish under way must not lose with its worker (YouTube's upload session, TikTok's
-- publish_id), by the publication's reference (`<delivery>:<generation>` or a chain step's).
-- `state` is sealed (credentials.rs, the row id as associated data): a session URI grants the
-- upload. Adapters delete a row once the publish has an outcome; the prune deletes rows older
-- than eight days (a delivery that ended without one).
CREATE TABLE publish_checkpoints (
    id         uuid        PRIMARY KEY,
    reference  text        NOT NULL UNIQUE,
    platform   text        NOT NULL,
    state      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX publish_checkpoints_updated ON publish_checkpoints (updated_at);

-- The maintenance job prunes the sandbox's tables (api/src/sandbox.rs, shared/src/retention.rs):
-- publish attempts need a time to expire by, and posts are found by age.
ALTER TABLE sandbox_publish_attempts ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX sandbox_posts_created_at ON sandbox_posts USING brin (created_at);

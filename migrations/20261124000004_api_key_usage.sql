-- When each key was last used: operational data, not history, so it is not an event and not
-- part of the rebuildable read models. Written at most once a minute per key.
CREATE TABLE api_key_usage (
    key_id       uuid PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);

-- The media lists of posts and targets, as the post stream gives them (kept by the post
-- projection): `posts.media` is the post's list, `deliveries.media` a target's own (NULL: the
-- post's; an empty list: none). `post_media` (one row per attachment) stays the index that
-- deleting a media item checks.
ALTER TABLE posts ADD COLUMN media jsonb NOT NULL DEFAULT '[]';
ALTER TABLE deliveries ADD COLUMN media jsonb;

-- The sandbox keeps the media of what it publishes: `[{"media_id", "alt_text"}]`, in order.
ALTER TABLE sandbox_posts ADD COLUMN media jsonb NOT NULL DEFAULT '[]';

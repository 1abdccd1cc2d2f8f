-- Threads and first comments (the post stream's `thread` and `first_comment`, kept by the post
-- projection): the post's own on `posts`, a target's own on `deliveries` (NULL: the post's), and
-- what a delivery's chain has published so far (`deliveries.items`: `[{index, platform_post_id,
-- platform_url}]`, index 1 being the first item after the post itself).
ALTER TABLE posts ADD COLUMN thread jsonb NOT NULL DEFAULT '[]';
ALTER TABLE posts ADD COLUMN first_comment text;
ALTER TABLE deliveries ADD COLUMN thread jsonb;
ALTER TABLE deliveries ADD COLUMN first_comment text;
ALTER TABLE deliveries ADD COLUMN items jsonb NOT NULL DEFAULT '[]';

-- The media a thread's item carries are attachments too (so deleting one in use is refused):
-- `thread_item` is the item's place in its thread (0 is the first), NULL for the post's or
-- target's own list.
ALTER TABLE post_media ADD COLUMN thread_item int;

-- The sandbox's posts can answer one another (a thread) or comment on one (a first comment).
ALTER TABLE sandbox_posts ADD COLUMN reply_to text;
ALTER TABLE sandbox_posts ADD COLUMN comment_on text;

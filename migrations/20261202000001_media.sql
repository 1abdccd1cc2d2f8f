-- The media library (shared/src/projections/media.rs keeps `media` from the media streams).
-- A row is written only when its object is stored (an upload) or its import is requested, so an
-- upload that dies half-way leaves no row. `environment` is the creating key's: a test key sees
-- only test media, a live key all of its project's.
CREATE TABLE media (
    id              uuid PRIMARY KEY,
    project_id      uuid             NOT NULL REFERENCES projects (id),
    environment     text             NOT NULL CHECK (environment IN ('live', 'test')),
    status          text             NOT NULL CHECK (status IN ('importing', 'ready', 'failed')),
    -- The facts are known once the object is stored: NULL while importing, or when it failed.
    kind            text             CHECK (kind IN ('image', 'video')),
    content_type    text,
    size_bytes      bigint,
    sha256          text,
    width           integer,
    height          integer,
    duration_ms     bigint,
    frame_rate      double precision,
    video_codec     text,
    audio_codec     text,
    -- Where the object is (or will be) in the store; unique, so the orphan sweep can look it up.
    object_key      text             NOT NULL UNIQUE,
    source_url      text,
    failure_reason  text,
    created_at      timestamptz      NOT NULL,
    updated_at      timestamptz      NOT NULL,
    deleted_at      timestamptz,
    -- Not from the log: when the maintenance job removed the deleted item's object.
    purged_at       timestamptz
);
-- Lists: a project's live items, newest first (ids are UUIDv7, so id order is creation order),
-- with the kind or status filter served by an index of its own.
CREATE INDEX media_project_list ON media (project_id, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX media_project_kind ON media (project_id, kind, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX media_project_status ON media (project_id, status, id DESC) WHERE deleted_at IS NULL;
-- The sweep: deleted items whose object is still there.
CREATE INDEX media_unpurged ON media (deleted_at) WHERE deleted_at IS NOT NULL AND purged_at IS NULL;

-- Resumable uploads. Not events: an upload is transient plumbing until `complete` turns it into
-- a media item (`media_id`), and its parts are objects in the store. The parts' rows say which
-- parts arrived and how large, so `complete` can name a missing part and refuse a total over the
-- limit before streaming anything, and the sweep knows which uploads to abort.
-- (No foreign key to `projects`: that is a read model, emptied and refilled by a rebuild, and
-- uploads in flight must outlive one.)
CREATE TABLE media_uploads (
    id            uuid PRIMARY KEY,
    project_id    uuid        NOT NULL,
    environment   text        NOT NULL CHECK (environment IN ('live', 'test')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    -- Set when `complete` starts (claiming the upload), cleared again if it fails.
    completing_at timestamptz,
    completed_at  timestamptz,
    media_id      uuid
);
CREATE INDEX media_uploads_expires ON media_uploads (expires_at) WHERE completed_at IS NULL;

CREATE TABLE media_upload_parts (
    upload_id    uuid    NOT NULL REFERENCES media_uploads (id) ON DELETE CASCADE,
    part_number  integer NOT NULL CHECK (part_number >= 1),
    size_bytes   bigint  NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

-- Which media a post uses, in order: on the post (delivery_id NULL) or on one target. Kept by the
-- post projection (a read model; `id` is derived from the post, target and position, e.g. a
-- UUIDv5, so a rebuild reproduces it); `commands::media::media_in_use` reads it to refuse
-- deleting media a post that has not finished publishing still needs.
CREATE TABLE post_media (
    id           uuid PRIMARY KEY,
    post_id      uuid    NOT NULL REFERENCES posts (id),
    delivery_id  uuid,
    media_id     uuid    NOT NULL,
    position     integer NOT NULL,
    alt_text     text
);
CREATE INDEX post_media_media ON post_media (media_id);
CREATE INDEX post_media_post ON post_media (post_id);

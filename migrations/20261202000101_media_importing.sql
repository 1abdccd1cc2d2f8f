-- The scheduler's sweep of imports whose job ended without an outcome
-- (shared/src/commands/abandoned.rs) looks for items still importing; they are few among many.
CREATE INDEX media_importing ON media (id) WHERE status = 'importing' AND deleted_at IS NULL;

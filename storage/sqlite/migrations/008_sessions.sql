-- Sessions and account lifecycle: the columns of the Postgres migration
-- (storage/postgres/migrations/008_sessions.sql) in SQLite types.
--
-- A token's last use: when (Unix microseconds), from which address, with
-- which HTTP User-Agent or MQTT client id. Each write slides expires_at.
ALTER TABLE tokens ADD COLUMN last_used_at INTEGER NOT NULL DEFAULT 0;
UPDATE tokens SET last_used_at = created_at;
ALTER TABLE tokens ADD COLUMN last_addr   TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN last_agent  TEXT NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN last_client TEXT NOT NULL DEFAULT '';

-- A deleted account keeps its row as a tombstone (deleted_at set, the name
-- 'Deleted user', no password): its id is never reused, and its messages in
-- other users' inboxes stay attributed to it.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;

-- A deleted user cannot become a group member again (the foreign key still
-- finds the tombstone). RAISE makes SQLITE_CONSTRAINT_TRIGGER, which the
-- store reports as ErrNotFound, as it does a foreign key violation.
CREATE TRIGGER group_members_live_user_insert BEFORE INSERT ON group_members
WHEN NEW.removed_seq IS NULL AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND deleted_at IS NOT NULL)
BEGIN
    SELECT RAISE(ABORT, 'user is deleted');
END;
CREATE TRIGGER group_members_live_user_update BEFORE UPDATE OF removed_seq ON group_members
WHEN NEW.removed_seq IS NULL AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND deleted_at IS NOT NULL)
BEGIN
    SELECT RAISE(ABORT, 'user is deleted');
END;

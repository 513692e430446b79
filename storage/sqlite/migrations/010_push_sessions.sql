-- Push tokens bound to sessions: the column of the Postgres migration
-- (storage/postgres/migrations/010_push_sessions.sql) in SQLite types.
-- session is the hash of the access token that registered the push token;
-- deleting that token deletes the push token (the store opens with
-- foreign_keys on). NULL: registered before this migration, bound to its
-- user only.
ALTER TABLE push_devices ADD COLUMN session BLOB REFERENCES tokens (hash) ON DELETE CASCADE;
CREATE INDEX push_devices_session ON push_devices (session);
-- A user's tokens by age, for the cap per user; replaces push_devices_user.
CREATE INDEX push_devices_user_updated ON push_devices (user_id, updated_at);
DROP INDEX push_devices_user;
